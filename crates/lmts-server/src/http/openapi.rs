//! The OpenAPI 3 document of the service, served at `/openapi.json`, true to SPEC A1/A2/B1/B2.

use std::sync::OnceLock;

use axum::Json;
use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn retry_response(description: &str) -> Value {
    let mut response = error_response(description);
    response["headers"] = json!({
        "Retry-After": { "description": "seconds to wait", "schema": { "type": "integer", "minimum": 0 } }
    });
    response
}

fn responses(success_status: &str, success: Value, errors: &[(&str, &str)]) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(success_status.to_owned(), success);
    for (status, description) in errors {
        let response = if matches!(*status, "429" | "503") {
            retry_response(description)
        } else {
            error_response(description)
        };
        map.insert((*status).to_owned(), response);
    }
    Value::Object(map)
}

fn json_body(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// The document.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let identity = json!([{ "identity": [] }]);
        let hmac = json!([{ "lmtsApiKey": [], "lmtsTimestamp": [], "lmtsSignature": [] }]);
        json!({
            "openapi": "3.0.3",
            "info": {
                "title": "lmts: Limitless Exchange scoped API tokens",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Partner self-service API tokens: capabilities, derive, list, revoke."
            },
            "paths": {
                "/auth/api-tokens/capabilities": { "get": {
                    "operationId": "getCapabilities",
                    "security": identity,
                    "responses": responses("200", json_body("what the partner may do", json!({ "$ref": "#/components/schemas/PartnerCapabilities" })), &[
                        ("401", "identity token missing or refused"), ("403", "no wallet to map to a profile"),
                        ("429", "rate limited"), ("503", "a dependency is unavailable")
                    ])
                }},
                "/auth/api-tokens/derive": { "post": {
                    "operationId": "deriveToken",
                    "security": identity,
                    "requestBody": { "required": false, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/DeriveApiTokenInput" } } } },
                    "responses": responses("201", json_body("the new token; its secret is never shown again", json!({ "$ref": "#/components/schemas/DeriveApiTokenResponse" })), &[
                        ("400", "invalid body"), ("401", "identity token missing or refused"),
                        ("403", "scope not allowed, token management disabled, or no wallet"),
                        ("409", "the partner holds the maximum of active tokens"), ("413", "body over the limit"),
                        ("429", "rate limited"), ("503", "a dependency is unavailable")
                    ])
                }},
                "/auth/api-tokens": { "get": {
                    "operationId": "listTokens",
                    "security": hmac,
                    "responses": responses("200", json_body("the partner's live tokens", json!({ "type": "array", "items": { "$ref": "#/components/schemas/ApiToken" } })), &[
                        ("401", "HMAC authentication missing or refused"), ("403", "token management disabled"),
                        ("413", "body over the limit"), ("429", "rate limited"), ("503", "a dependency is unavailable")
                    ])
                }},
                "/auth/api-tokens/{tokenId}": { "delete": {
                    "operationId": "revokeToken",
                    "security": hmac,
                    "parameters": [{ "name": "tokenId", "in": "path", "required": true, "schema": { "type": "string", "minLength": 1 } }],
                    "responses": responses("200", json_body("revoked", json!({
                        "type": "object", "required": ["message"], "properties": { "message": { "type": "string" } }
                    })), &[
                        ("401", "HMAC authentication missing or refused"), ("403", "token management disabled"),
                        ("404", "no such live token of this partner"), ("413", "body over the limit"),
                        ("429", "rate limited"), ("503", "a dependency is unavailable")
                    ])
                }},
                "/health": { "get": {
                    "operationId": "health", "security": [],
                    "responses": { "200": json_body("the process answers", json!({ "type": "object", "required": ["status"], "properties": { "status": { "type": "string" } } })) }
                }},
                "/ready": { "get": {
                    "operationId": "ready", "security": [],
                    "responses": responses("200", json_body("the database answers", json!({ "type": "object", "required": ["status"], "properties": { "status": { "type": "string" } } })), &[("503", "the database is unavailable")])
                }}
            },
            "components": {
                "securitySchemes": {
                    "identity": { "type": "apiKey", "in": "header", "name": "identity", "description": "Bearer <Privy identity token>" },
                    "lmtsApiKey": { "type": "apiKey", "in": "header", "name": "lmts-api-key" },
                    "lmtsTimestamp": { "type": "apiKey", "in": "header", "name": "lmts-timestamp" },
                    "lmtsSignature": { "type": "apiKey", "in": "header", "name": "lmts-signature" }
                },
                "schemas": {
                    "Scope": { "type": "string", "enum": ["trading", "account_creation", "delegated_signing", "withdrawal"] },
                    "DateTime": { "type": "string", "format": "date-time", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$" },
                    "PartnerCapabilities": {
                        "type": "object", "required": ["partnerProfileId", "tokenManagementEnabled", "allowedScopes"],
                        "properties": {
                            "partnerProfileId": { "type": "integer", "minimum": 1, "maximum": 2147483647 },
                            "tokenManagementEnabled": { "type": "boolean" },
                            "allowedScopes": { "type": "array", "items": { "$ref": "#/components/schemas/Scope" } }
                        }
                    },
                    "DeriveApiTokenInput": {
                        "type": "object",
                        "properties": {
                            "label": { "type": "string", "maxLength": 128, "nullable": true },
                            "scopes": { "type": "array", "nullable": true, "items": { "$ref": "#/components/schemas/Scope" } }
                        }
                    },
                    "DeriveApiTokenResponse": {
                        "type": "object", "required": ["apiKey", "secret", "tokenId", "createdAt", "scopes", "profile"],
                        "properties": {
                            "apiKey": { "type": "string" },
                            "secret": { "type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$" },
                            "tokenId": { "type": "string" },
                            "createdAt": { "$ref": "#/components/schemas/DateTime" },
                            "scopes": { "type": "array", "items": { "$ref": "#/components/schemas/Scope" } },
                            "profile": {
                                "type": "object", "required": ["id", "account"],
                                "properties": {
                                    "id": { "type": "integer", "minimum": 1, "maximum": 2147483647 },
                                    "account": { "type": "string", "pattern": "^0x[0-9a-fA-F]{40}$" }
                                }
                            }
                        }
                    },
                    "ApiToken": {
                        "type": "object", "required": ["tokenId", "label", "scopes", "createdAt", "lastUsedAt"],
                        "properties": {
                            "tokenId": { "type": "string" },
                            "label": { "type": "string", "nullable": true },
                            "scopes": { "type": "array", "items": { "$ref": "#/components/schemas/Scope" } },
                            "createdAt": { "$ref": "#/components/schemas/DateTime" },
                            "lastUsedAt": { "allOf": [{ "$ref": "#/components/schemas/DateTime" }], "nullable": true }
                        }
                    },
                    "Error": {
                        "type": "object", "required": ["statusCode", "message", "error"],
                        "properties": {
                            "statusCode": { "type": "integer" },
                            "message": { "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] },
                            "error": { "type": "string" }
                        }
                    }
                }
            }
        })
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<&'static Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn every_route_of_the_contract_is_described() {
        let paths = document()["paths"].as_object().unwrap();
        for (path, method) in [
            ("/auth/api-tokens/capabilities", "get"),
            ("/auth/api-tokens/derive", "post"),
            ("/auth/api-tokens", "get"),
            ("/auth/api-tokens/{tokenId}", "delete"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
        assert!(
            document()["paths"]["/auth/api-tokens/derive"]["post"]["responses"]["201"].is_object()
        );
    }
}
