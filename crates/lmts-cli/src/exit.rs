//! Exit codes and error printing.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command failed (the message says why) |
//! | 2 | the command line is wrong (clap's usage errors) |
//! | 3 | the configuration or input is wrong or incomplete |
//! | 4 | the service refused the request (a 4xx answer) |
//! | 5 | the service could not be reached, timed out, or failed (5xx) |

use std::error::Error;

use lmts_core::error_chain::error_chain;

/// The error type of every command.
pub type CommandError = Box<dyn Error + Send + Sync>;

/// A configuration or input problem: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// An error with advice on what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Hinted {
    /// The error.
    #[source]
    pub error: CommandError,
    /// What to do.
    pub hint: String,
}

/// A failed step of `lmts demo`: exit code 1.
#[cfg(feature = "server")]
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StepFailed(pub String);

/// The exit code for `error`.
pub fn code(error: &(dyn Error + 'static)) -> u8 {
    if let Some(hinted) = error.downcast_ref::<Hinted>() {
        return code(&*hinted.error);
    }
    if error.is::<ConfigError>() {
        return 3;
    }
    #[cfg(feature = "server")]
    if let Some(serve) = error.downcast_ref::<lmts_server::server::ServeError>() {
        use lmts_server::server::ServeError;
        return match serve {
            ServeError::Identity(_)
            | ServeError::Config(_)
            | ServeError::MissingMasterKey { .. }
            | ServeError::DataDir { .. }
            | ServeError::Tls(_) => 3,
            _ => 1,
        };
    }
    match error.downcast_ref::<lmts_sdk::Error>() {
        Some(
            lmts_sdk::Error::Config(_)
            | lmts_sdk::Error::InvalidInput(_)
            | lmts_sdk::Error::MissingCredentials,
        ) => 3,
        Some(lmts_sdk::Error::Api(api)) if api.status < 500 => 4,
        Some(_) => 5,
        None => 1,
    }
}

/// The line printed for `error`: its cause chain, then the hint if there is one.
pub fn message(error: &(dyn Error + 'static)) -> String {
    match error.downcast_ref::<Hinted>() {
        Some(hinted) => format!("{}; hint: {}", error_chain(&*hinted.error), hinted.hint),
        None => error_chain(error).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_how_far_the_request_got() {
        let config: CommandError = ConfigError("x".into()).into();
        assert_eq!(code(&*config), 3);
        let missing: CommandError = lmts_sdk::Error::MissingCredentials.into();
        assert_eq!(code(&*missing), 3);
        let hinted: CommandError = Hinted {
            error: missing,
            hint: "save one".into(),
        }
        .into();
        assert_eq!(code(&*hinted), 3);
        assert!(
            message(&*hinted).ends_with("; hint: save one"),
            "{}",
            message(&*hinted)
        );
        let other: CommandError = "plain".into();
        assert_eq!(code(&*other), 1);
    }
}
