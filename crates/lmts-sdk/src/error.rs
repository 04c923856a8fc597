//! What can go wrong, and how far the request got.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

/// An SDK error. Each variant says how far the request got.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client is misconfigured (base URL, headers, environment); nothing was sent.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The call's input is invalid; nothing was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The call needs HMAC credentials and the client has none; nothing was sent.
    #[error("this call needs HMAC credentials: use Client::with_credentials or the builder")]
    MissingCredentials,
    /// The request could not be sent, or its answer not received.
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    /// No answer within the configured timeout.
    #[error("request timed out")]
    Timeout(#[source] reqwest::Error),
    /// The service answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The service does not do what the call asked for (it answered success without it), and
    /// what it did was undone where possible; the text says what, and what is left to do.
    #[error("unsupported by the service: {0}")]
    Unsupported(String),
    /// The service answered success with a body that does not parse.
    #[error("could not decode the {status} answer")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(api) => Some(api.status),
            Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error, when the service answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api),
            _ => None,
        }
    }
}

/// An error answer of the service, kept whole.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The messages of the NestJS body (`message`, string or array), else its `error`, `msg`
    /// or the raw text.
    pub messages: Vec<String>,
    /// The body's `error` field (the reason phrase), if any.
    pub error: Option<String>,
    /// The raw body.
    pub body: String,
    /// The `Retry-After` delay, if the service gave one.
    pub retry_after: Option<Duration>,
    /// The response headers (rate-limit headers among them).
    pub headers: HeaderMap,
}

impl ApiError {
    /// Builds the error from a response's parts; any body is accepted.
    pub(crate) fn from_parts(
        status: u16,
        headers: HeaderMap,
        body: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let json: Option<Value> = serde_json::from_str(&body).ok();
        let text = |key: &str| {
            json.as_ref()
                .and_then(|v| v.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let messages = match json.as_ref().and_then(|v| v.get("message")) {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => text("error")
                .or_else(|| text("msg"))
                .or_else(|| (!body.trim().is_empty()).then(|| body.trim().to_owned()))
                .into_iter()
                .collect(),
        };
        Self {
            status,
            messages,
            error: text("error"),
            body,
            retry_after,
            headers,
        }
    }

    /// The messages joined into one line.
    pub fn message(&self) -> String {
        self.messages.join("; ")
    }

    /// 400: the request was invalid.
    pub fn is_validation(&self) -> bool {
        self.status == 400
    }

    /// 401: not authenticated (identity token or HMAC signature refused).
    pub fn is_authentication(&self) -> bool {
        self.status == 401
    }

    /// 403: authenticated but not allowed.
    pub fn is_permission(&self) -> bool {
        self.status == 403
    }

    /// 404: no such resource.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    /// 409: a conflict with the partner's state (e.g. the token limit).
    pub fn is_conflict(&self) -> bool {
        self.status == 409
    }

    /// 429: rate limited; see [`ApiError::retry_after`].
    pub fn is_rate_limited(&self) -> bool {
        self.status == 429
    }

    /// 5xx: a fault of the service.
    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the service answered {}", self.status)?;
        if !self.messages.is_empty() {
            write!(f, ": {}", self.message())?;
        }
        Ok(())
    }
}

/// The `Retry-After` header as a delay: delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &str) -> ApiError {
        ApiError::from_parts(401, HeaderMap::new(), body.to_owned(), None)
    }

    #[test]
    fn messages_come_from_the_nestjs_body_or_its_fallbacks() {
        assert_eq!(
            parts(r#"{"statusCode":401,"message":"bad","error":"Unauthorized"}"#).messages,
            ["bad"]
        );
        let many = parts(r#"{"statusCode":400,"message":["a","b"],"error":"Bad Request"}"#);
        assert_eq!(many.message(), "a; b");
        assert_eq!(many.error.as_deref(), Some("Bad Request"));
        assert_eq!(parts(r#"{"error":"nope"}"#).messages, ["nope"]);
        assert_eq!(parts(r#"{"msg":"old style"}"#).messages, ["old style"]);
        assert_eq!(
            parts("<html>gateway</html>").messages,
            ["<html>gateway</html>"]
        );
        assert!(parts("").messages.is_empty());
        let shown = parts(r#"{"message":"bad"}"#).to_string();
        assert_eq!(shown, "the service answered 401: bad");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert("retry-after", later.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }
}
