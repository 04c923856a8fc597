//! [`SignatureRecorder`]: a stand-in for a service behind lmts (an order API, say) that checks
//! each request's `lmts-*` signature as SPEC A4 and B7 say, over the raw target and body bytes
//! it received, and records the request with the verdict.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use lmts_core::{
    clock::Clock,
    signing::{
        CanonicalMessage, DEFAULT_WINDOW, HEADER_API_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    },
    HmacCredentials, Signer,
};

/// A request as the recorder received it, and whether its signature held.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The request target exactly as received (path and query, still percent-encoded).
    pub target: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body's bytes.
    pub body: Vec<u8>,
    /// `Ok` when the three headers name the expected token and sign this request within the
    /// window; otherwise why not.
    pub verdict: Result<(), String>,
}

impl Received {
    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What the recorder checks against.
struct Expected {
    token_id: String,
    signer: Signer,
    received: Mutex<Vec<Received>>,
}

/// A server on a free loopback port that verifies every request's signature with one
/// credential and records it. A signed request is answered 200 with the JSON
/// `{"method", "target", "body"}` it received and the header `x-recorder: verified`; any other
/// gets 401 with an A5 body naming the reason.
#[derive(Clone)]
pub struct SignatureRecorder {
    base: String,
    expected: Arc<Expected>,
}

impl SignatureRecorder {
    /// Starts the server on `127.0.0.1:0`, expecting requests signed with `credentials`.
    pub async fn start(credentials: &HmacCredentials) -> Self {
        let expected = Arc::new(Expected {
            token_id: credentials.token_id.to_string(),
            signer: credentials.signer(),
            received: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(record).with_state(expected.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|error| panic!("bind a loopback port: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the listener's address: {error}"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base: format!("http://{address}"),
            expected,
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.expected
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The signature check of one request.
fn verdict(
    expected: &Expected,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("{name} is missing"))
    };
    let api_key = header(HEADER_API_KEY)?;
    if api_key != expected.token_id {
        return Err(format!(
            "{HEADER_API_KEY} {api_key:?} is not the expected token"
        ));
    }
    let message = CanonicalMessage::new(header(HEADER_TIMESTAMP)?, method, target, body);
    expected
        .signer
        .verify(
            &message,
            header(HEADER_SIGNATURE)?,
            Clock::system().now(),
            DEFAULT_WINDOW,
        )
        .map(drop)
        .map_err(|error| error.to_string())
}

async fn record(
    State(expected): State<Arc<Expected>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or_else(
        || uri.path().to_owned(),
        |target| target.as_str().to_owned(),
    );
    let verdict = verdict(&expected, method.as_str(), &target, &headers, &body);
    let answer = match &verdict {
        Ok(()) => (
            StatusCode::OK,
            [("x-recorder", "verified")],
            Json(serde_json::json!({
                "method": method.as_str(),
                "target": target,
                "body": String::from_utf8_lossy(&body),
            })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "statusCode": 401,
                "message": reason,
                "error": "Unauthorized",
            })),
        )
            .into_response(),
    };
    expected
        .received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Received {
            method: method.to_string(),
            target,
            headers,
            body: body.to_vec(),
            verdict,
        });
    answer
}
