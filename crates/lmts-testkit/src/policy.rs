//! The route policy of SPEC C1's example, for the gateway's tests to start from.

/// SPEC C1's example policy: `POST /orders` needs `trading` (rule at line 4),
/// `* /portfolio/withdraw` needs `withdrawal` (line 9), `GET /markets/**` is public (line 14),
/// everything else is denied.
pub const SPEC_EXAMPLE: &str = r#"
default = "deny"

[[route]]
method = "POST"
path = "/orders"
scopes = ["trading"]

[[route]]
method = "*"
path = "/portfolio/withdraw"
scopes = ["withdrawal"]

[[route]]
method = "GET"
path = "/markets/**"
public = true
"#;
