//! The one error type of the HTTP surface: each variant maps to its status through
//! [`ApiError::status`] and answers in the NestJS shape of SPEC A5.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use lmts_core::wire::{ApiErrorBody, ErrorMessage};

use crate::{crypto::CryptoError, store::StoreError};

/// An answer other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed; one message per problem.
    #[error("bad request: {}", .0.join("; "))]
    BadRequest(Vec<String>),
    /// 401: the caller is not authenticated.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such resource (or not the caller's).
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a limit of the partner's state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("payload too large: over {0} bytes")]
    PayloadTooLarge(usize),
    /// 429: the caller's request budget is spent.
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds until a request will be accepted.
        retry_after_secs: u64,
    },
    /// 503: a dependency is down; try again.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a fault of the service; the detail goes to the log, never to the client.
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A 400 with one message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(vec![message.into()])
    }

    /// A 401 with one message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::Unauthorized(message.into())
    }

    fn message(&self) -> ErrorMessage {
        let one = |text: &str| ErrorMessage::One(text.to_owned());
        match self {
            ApiError::BadRequest(messages) if messages.len() == 1 => one(&messages[0]),
            ApiError::BadRequest(messages) => ErrorMessage::Many(messages.clone()),
            ApiError::Unauthorized(text)
            | ApiError::Forbidden(text)
            | ApiError::NotFound(text)
            | ApiError::Conflict(text)
            | ApiError::Unavailable(text) => one(text),
            ApiError::MethodNotAllowed => one("method not allowed on this path"),
            ApiError::PayloadTooLarge(limit) => {
                ErrorMessage::One(format!("request body is over the limit of {limit} bytes"))
            }
            ApiError::TooManyRequests { retry_after_secs } => ErrorMessage::One(format!(
                "rate limit exceeded; retry after {retry_after_secs} s"
            )),
            ApiError::Internal => one("internal server error"),
        }
    }

    /// The error body of this answer.
    pub fn body(&self) -> ApiErrorBody {
        let status = self.status();
        ApiErrorBody {
            status_code: status.as_u16(),
            message: self.message(),
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let retry_after = match self {
            ApiError::Unavailable(_) => Some(1),
            ApiError::TooManyRequests { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::NotCommitted(_) => {
                tracing::warn!(error = %error_chain(&error), "database unavailable");
                ApiError::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => {
                tracing::error!(error = %error_chain(&other), "store failure");
                ApiError::Internal
            }
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(error: CryptoError) -> Self {
        tracing::error!(error = %error_chain(&error), "secret at rest could not be used");
        ApiError::Internal
    }
}

/// An error with its causes, `: `-separated, for the log.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
