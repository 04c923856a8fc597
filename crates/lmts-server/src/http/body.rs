//! Reading a request body whole: within the size limit, against a deadline, and against an
//! allowance from the process's body budget.

use axum::body::{Body, Bytes, HttpBody};
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::service::{BodyAllowance, ServiceError, TokenService};

/// A body read whole, and the allowance that pays for it: keep both until the request is done.
#[derive(Debug)]
pub struct ReceivedBody {
    /// The body's bytes.
    pub bytes: Bytes,
    _allowance: BodyAllowance,
}

/// The whole body; refused when it is over the limit (checked on `Content-Length` first, then
/// while reading, so a chunked body cannot slip past), when it does not arrive within the body
/// timeout, or while the body budget is spent.
pub async fn read_body(
    service: &TokenService,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReceivedBody, ServiceError> {
    let settings = service.settings();
    let limit = settings.max_body_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ServiceError::TooLarge { limit });
    }
    let expected = match declared {
        Some(length) => usize::try_from(length).unwrap_or(limit),
        None if HttpBody::is_end_stream(&body) => 0,
        None => limit,
    };
    let allowance = service.reserve_body(expected)?;
    let collected =
        tokio::time::timeout(settings.body_timeout, Limited::new(body, limit).collect())
            .await
            .map_err(|_| ServiceError::BodyTimeout)?;
    match collected {
        Ok(collected) => Ok(ReceivedBody {
            bytes: collected.to_bytes(),
            _allowance: allowance,
        }),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ServiceError::TooLarge { limit })
        }
        Err(_) => Err(ServiceError::invalid("request body could not be read")),
    }
}
