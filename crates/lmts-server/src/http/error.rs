//! The one error type of the HTTP surface: a refusal of the service, or of HTTP itself. Each
//! maps to its status in [`ApiError::status`] and answers in the NestJS shape of SPEC A5.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use lmts_core::wire::{ApiErrorBody, ErrorMessage};

use crate::service::ServiceError;

/// An answer other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 502: the gateway's upstream could not be reached or broke off.
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    /// 504: the gateway's upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
}

impl ApiError {
    /// The HTTP status of this answer: the one place statuses are chosen.
    pub fn status(&self) -> StatusCode {
        let error = match self {
            ApiError::Service(error) => error,
            ApiError::MethodNotAllowed => return StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpstreamUnreachable => return StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout => return StatusCode::GATEWAY_TIMEOUT,
        };
        match error {
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ServiceError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds the client should wait before trying again, when the answer says so.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Service(ServiceError::Unavailable(_)) => Some(1),
            ApiError::Service(ServiceError::RateLimited { retry_after_secs }) => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    fn message(&self) -> ErrorMessage {
        let one = |text: &str| ErrorMessage::One(text.to_owned());
        let error = match self {
            ApiError::Service(error) => error,
            ApiError::MethodNotAllowed => return one("method not allowed on this path"),
            ApiError::UpstreamUnreachable => {
                return one("the service behind the gateway could not be reached")
            }
            ApiError::UpstreamTimeout => {
                return one("the service behind the gateway did not answer in time")
            }
        };
        match error {
            ServiceError::Invalid(messages) if messages.len() == 1 => one(&messages[0]),
            ServiceError::Invalid(messages) => ErrorMessage::Many(messages.clone()),
            ServiceError::Unauthenticated(text)
            | ServiceError::Forbidden(text)
            | ServiceError::NotFound(text)
            | ServiceError::Conflict(text)
            | ServiceError::Unavailable(text) => one(text),
            ServiceError::TooLarge { limit } => {
                ErrorMessage::One(format!("request body is over the limit of {limit} bytes"))
            }
            ServiceError::BodyTimeout => one("request body not received in time"),
            ServiceError::RateLimited { retry_after_secs } => ErrorMessage::One(format!(
                "rate limit exceeded; retry after {retry_after_secs} s"
            )),
            ServiceError::Internal => one("internal server error"),
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
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
