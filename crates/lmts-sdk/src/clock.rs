//! The SDK's one source of time: the system clock unless the builder was given another.

pub use lmts_core::clock::Clock;
