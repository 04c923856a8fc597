//! A source of the current time, for the crates that read it (feature `clock`): the SDK and
//! the server each take it through their own `clock` module, so that tests can drive time.
//! The core's own code never reads it: time is always an argument there.

use std::{fmt, sync::Arc};

use chrono::{DateTime, Utc};

/// Tells the time. Cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    #[allow(clippy::disallowed_methods)]
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that reads `now` from a function (tests use it to move time).
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
