//! The server's one source of time, so that tests can drive it.

pub use lmts_core::clock::Clock;
