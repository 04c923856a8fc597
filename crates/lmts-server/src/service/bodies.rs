//! The request bodies held in memory, bounded for the whole process: each body is read only
//! against an allowance from one budget, so that many slow or large bodies at once cost at most
//! the budget, whatever the per-request limit.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ServiceError;

/// The budget of body bytes all requests may hold at once.
#[derive(Debug)]
pub(super) struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Bytes of the budget one request holds until it drops this.
#[derive(Debug)]
pub struct BodyAllowance {
    _bytes: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// A budget of `bytes` (at most 4 GiB).
    pub(super) fn new(bytes: usize) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
        }
    }

    /// An allowance of `bytes`, or a refusal while the budget is spent (the client should try
    /// again shortly; the refusal costs the service nothing).
    pub(super) fn reserve(&self, bytes: usize) -> Result<BodyAllowance, ServiceError> {
        if bytes == 0 {
            return Ok(BodyAllowance { _bytes: None });
        }
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX);
        match self.bytes.clone().try_acquire_many_owned(wanted) {
            Ok(permit) => Ok(BodyAllowance {
                _bytes: Some(permit),
            }),
            Err(_) => {
                tracing::warn!(bytes, "request body budget spent; refusing a body");
                Err(ServiceError::Unavailable(
                    "too many request bodies in flight; try again shortly".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_are_bounded_and_returned_when_dropped() {
        let budget = BodyBudget::new(100);
        let first = budget.reserve(60).unwrap();
        assert!(budget.reserve(60).is_err(), "over the budget");
        let second = budget.reserve(40).unwrap();
        drop(first);
        assert!(budget.reserve(60).is_ok(), "the first allowance came back");
        drop(second);
        assert!(budget.reserve(0).is_ok(), "an empty body costs nothing");
    }
}
