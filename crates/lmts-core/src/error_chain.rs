//! An error with its causes on one line, for logs and for people: `error: cause: cause`.
//!
//! Library errors keep their cause in `source()` and out of their own message (house style), so
//! whoever prints one for a person walks the chain; [`ErrorChain`] does that as a `Display`,
//! without allocating, so that logging an error costs no `String`.
//!
//! ```
//! use lmts_core::error_chain::error_chain;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("cannot read the key file")]
//! struct KeyFileError(#[source] std::io::Error);
//!
//! let error = KeyFileError(std::io::Error::other("permission denied"));
//! assert_eq!(error_chain(&error).to_string(), "cannot read the key file: permission denied");
//! ```

use std::{error::Error, fmt};

/// Shows an error followed by each of its causes, `: `-separated.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

/// The cause chain of `error`, ready to print: `error_chain(&error)` in `format!` or as a
/// `tracing` field (`error = %error_chain(&error)`).
pub fn error_chain<'a>(error: &'a (dyn Error + 'a)) -> ErrorChain<'a> {
    ErrorChain(error)
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_follows_once_in_order() {
        let error = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(error_chain(&error).to_string(), "outer: middle: inner");
        assert_eq!(
            error_chain(&std::io::Error::other("alone")).to_string(),
            "alone"
        );
    }

    #[test]
    fn boxed_command_errors_print_their_chain() {
        let boxed: Box<dyn Error + Send + Sync> =
            Box::new(Outer(Middle(std::io::Error::other("inner"))));
        assert_eq!(format!("{}", error_chain(&*boxed)), "outer: middle: inner");
    }
}
