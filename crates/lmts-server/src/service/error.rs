//! Why the service refused or could not answer, in the domain's words. The HTTP adapter maps
//! each variant to its status in one place (`http::error`).

use lmts_core::error_chain::error_chain;

use crate::{crypto::CryptoError, identity::IdentityError, store::StoreError};

/// A refusal or a failure of the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request is malformed; one message per problem.
    #[error("invalid request: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The caller is not authenticated.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such resource, or not the caller's.
    #[error("not found: {0}")]
    NotFound(String),
    /// A limit of the partner's state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request body is over the limit.
    #[error("request body over the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client did not send its request body in time.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The caller's request budget is spent.
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be accepted.
        retry_after_secs: u64,
    },
    /// A dependency is down; try again.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A fault of the service; the detail went to the log, never to the caller.
    #[error("internal error")]
    Internal,
}

impl ServiceError {
    /// An invalid request with one message.
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(vec![message.into()])
    }

    /// A refusal for a spent budget, the wait rounded up to whole seconds (at least one).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        ServiceError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// An unauthenticated request with one message.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ServiceError::Unauthenticated(message.into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::NotCommitted(_) => {
                tracing::warn!(error = %error_chain(&error), "database unavailable");
                ServiceError::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => {
                tracing::error!(error = %error_chain(&other), "store failure");
                ServiceError::Internal
            }
        }
    }
}

impl From<CryptoError> for ServiceError {
    fn from(error: CryptoError) -> Self {
        tracing::error!(error = %error_chain(&error), "secret at rest could not be used");
        ServiceError::Internal
    }
}

impl From<IdentityError> for ServiceError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::NoWallet => ServiceError::Forbidden(error.to_string()),
            IdentityError::KeysUnavailable(_) => {
                tracing::warn!(error = %error_chain(&error), "identity keys unavailable");
                ServiceError::Unavailable(
                    "identity verification keys are unavailable; try again shortly".into(),
                )
            }
            other => ServiceError::Unauthenticated(other.to_string()),
        }
    }
}
