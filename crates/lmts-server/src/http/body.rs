//! Reading a request body whole, within the configured limit.

use axum::body::{Body, Bytes};
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::service::ServiceError;

/// The whole body, refused when it is over `limit` bytes (checked on `Content-Length` first,
/// then while reading, so a chunked body cannot slip past).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ServiceError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ServiceError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ServiceError::TooLarge { limit })
        }
        Err(_) => Err(ServiceError::invalid("request body could not be read")),
    }
}
