//! Exit codes and error printing.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command failed (the message says why) |
//! | 2 | the command line is wrong (clap's usage errors) |
//! | 3 | the configuration is wrong or incomplete |

use std::error::Error;

/// The error type of every command.
pub type CommandError = Box<dyn Error + Send + Sync>;

/// A configuration problem: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub use lmts_server::http::error::error_chain as chain;

/// The exit code for `error`.
pub fn code(error: &(dyn Error + 'static)) -> u8 {
    if error.is::<ConfigError>()
        || error
            .downcast_ref::<lmts_server::server::ServeError>()
            .is_some_and(|e| matches!(e, lmts_server::server::ServeError::Identity(_)))
    {
        3
    } else {
        1
    }
}
