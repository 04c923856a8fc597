//! Who is calling: Privy identity tokens for capabilities and derive, HMAC-signed requests for
//! list and revoke.

pub mod dev;
pub mod hmac;
pub mod identity;
