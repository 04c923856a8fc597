//! Answers: [`SignedResponse`], any answer to a signed request, whole; [`ApiResponse`], a token
//! endpoint's successful answer, decoded.

use std::{borrow::Cow, time::Duration};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Error};

/// The answer to a [`RequestBuilder::send`](crate::RequestBuilder::send), of any status,
/// with its body read whole.
///
/// Like reqwest, a non-2xx answer is not an error until asked:
/// [`SignedResponse::error_for_status`] makes it the same [`Error::Api`] the token endpoints
/// return, its A5 body parsed into messages.
#[derive(Debug, Clone)]
pub struct SignedResponse {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    retry_after: Option<Duration>,
}

impl SignedResponse {
    pub(crate) fn new(
        status: u16,
        headers: HeaderMap,
        body: Bytes,
        retry_after: Option<Duration>,
    ) -> Self {
        Self {
            status,
            headers,
            body,
            retry_after,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The wait the answer's `Retry-After` asks for, if it has one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The body's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body's bytes, consuming the response.
    pub fn into_bytes(self) -> Bytes {
        self.body
    }

    /// The body as text (invalid UTF-8 replaced by U+FFFD).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body decoded from JSON; [`Error::Decode`] (with the status) when it does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            status: self.status,
            source,
        })
    }

    /// The response itself when its status is 2xx, else [`Error::Api`]: the status, the
    /// messages of an A5 body (or its fallbacks), the raw body, `Retry-After` and the headers.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body).into_owned();
        Err(Error::Api(Box::new(ApiError::from_parts(
            self.status,
            self.headers,
            body,
            self.retry_after,
        ))))
    }

    /// The JSON body decoded, with the status and headers.
    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<ApiResponse<T>, Error> {
        Ok(ApiResponse {
            body: self.json()?,
            status: self.status,
            headers: self.headers,
        })
    }
}

/// A successful answer with its status and headers.
#[derive(Debug, Clone)]
pub struct ApiResponse<T> {
    status: u16,
    headers: HeaderMap,
    body: T,
}

impl<T> ApiResponse<T> {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response headers (rate-limit headers, request id, date).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The decoded body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The decoded body, consuming the response.
    pub fn into_body(self) -> T {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &'static [u8]) -> SignedResponse {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "r1".parse().unwrap());
        SignedResponse::new(
            status,
            headers,
            Bytes::from_static(body),
            Some(Duration::from_secs(2)),
        )
    }

    #[test]
    fn error_for_status_keeps_a_success_and_types_a_refusal() {
        let ok = answer(204, b"").error_for_status().unwrap();
        assert_eq!(ok.status(), 204);
        let refused = answer(
            403,
            br#"{"statusCode":403,"message":["no","never"],"error":"Forbidden"}"#,
        )
        .error_for_status()
        .unwrap_err();
        let api = refused.api().unwrap();
        assert!(api.is_permission());
        assert_eq!(api.messages, ["no", "never"]);
        assert_eq!(api.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(api.headers["x-request-id"], "r1");
        let redirect = answer(302, b"").error_for_status().unwrap_err();
        assert_eq!(redirect.status(), Some(302));
    }

    #[test]
    fn bodies_read_as_bytes_text_or_json() {
        let response = answer(200, b"{\"a\":1}\xff");
        assert_eq!(response.bytes().len(), 8);
        assert!(response.text().ends_with('\u{fffd}'));
        let decoded = response.json::<serde_json::Value>().unwrap_err();
        assert!(
            matches!(decoded, Error::Decode { status: 200, .. }),
            "{decoded:?}"
        );
        let value: serde_json::Value = answer(201, br#"{"a":1}"#).json().unwrap();
        assert_eq!(value["a"], 1);
    }
}
