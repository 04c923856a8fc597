//! The permissions a token can carry (SPEC A3).

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Wire value of [`Scope::Trading`].
pub const SCOPE_TRADING: &str = "trading";
/// Wire value of [`Scope::AccountCreation`].
pub const SCOPE_ACCOUNT_CREATION: &str = "account_creation";
/// Wire value of [`Scope::DelegatedSigning`].
pub const SCOPE_DELEGATED_SIGNING: &str = "delegated_signing";
/// Wire value of [`Scope::Withdrawal`].
pub const SCOPE_WITHDRAWAL: &str = "withdrawal";

/// One permission of an API token.
///
/// The four scopes of the contract have their own variants; any other string survives a
/// round trip as [`Scope::Unknown`], so a client keeps working when the service adds one.
/// Scopes order as the contract's table lists them, unknown ones last.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Place and cancel orders; every user may hold it.
    Trading,
    /// Create sub-account profiles under the partner.
    AccountCreation,
    /// Let the server sign orders for sub-accounts; requires [`Scope::Trading`] in the same token.
    DelegatedSigning,
    /// Withdraw from managed sub-accounts to partner-owned addresses.
    Withdrawal,
    /// A scope this version does not know.
    Unknown(String),
}

impl Scope {
    /// The scopes of the contract, in the contract's order.
    pub const KNOWN: [Scope; 4] = [
        Scope::Trading,
        Scope::AccountCreation,
        Scope::DelegatedSigning,
        Scope::Withdrawal,
    ];

    /// The scope's wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Trading => SCOPE_TRADING,
            Scope::AccountCreation => SCOPE_ACCOUNT_CREATION,
            Scope::DelegatedSigning => SCOPE_DELEGATED_SIGNING,
            Scope::Withdrawal => SCOPE_WITHDRAWAL,
            Scope::Unknown(other) => other,
        }
    }

    /// Whether this is one of the contract's scopes.
    pub fn is_known(&self) -> bool {
        !matches!(self, Scope::Unknown(_))
    }

    fn rank(&self) -> usize {
        Self::KNOWN
            .iter()
            .position(|known| known == self)
            .unwrap_or(Self::KNOWN.len())
    }
}

/// Puts requested scopes in the form a token holds them (SPEC B3): none means
/// `[trading]`, duplicates are merged, and the order is the contract's.
pub fn canonical_scopes(requested: impl IntoIterator<Item = Scope>) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = requested.into_iter().collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        scopes.push(Scope::Trading);
    }
    scopes
}

/// Scopes as their wire values joined by commas, e.g. `trading,withdrawal`.
pub fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// The rule between scopes: `delegated_signing` needs `trading` in the same token.
/// Returns a plain-words explanation when `scopes` breaks it.
pub fn check_scope_rules(scopes: &[Scope]) -> Result<(), &'static str> {
    if scopes.contains(&Scope::DelegatedSigning) && !scopes.contains(&Scope::Trading) {
        return Err("scope delegated_signing requires scope trading in the same token");
    }
    Ok(())
}

impl Ord for Scope {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| self.as_str().cmp(other.as_str()))
    }
}

impl PartialOrd for Scope {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Scope {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Scope::from(value))
    }
}

impl From<&str> for Scope {
    fn from(value: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|known| known.as_str() == value)
            .unwrap_or_else(|| Scope::Unknown(value.to_owned()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok(Scope::from(value.as_str()))
    }
}

/// In the OpenAPI document a scope is one of the contract's four strings: the service refuses
/// any other (SPEC B2), though a client keeps an unknown one as [`Scope::Unknown`].
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A permission of an API token (SPEC A3)."))
            .enum_values(Some(Scope::KNOWN.iter().map(Scope::as_str)))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Scope {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_scopes_round_trip_through_their_wire_values() {
        for scope in Scope::KNOWN {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope.as_str()));
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
        }
        assert_eq!(Scope::from("withdrawal"), Scope::Withdrawal);
    }

    #[test]
    fn an_unknown_scope_survives_a_round_trip() {
        let scope: Scope = serde_json::from_str("\"market_making\"").unwrap();
        assert_eq!(scope, Scope::Unknown("market_making".into()));
        assert!(!scope.is_known());
        assert_eq!(serde_json::to_string(&scope).unwrap(), "\"market_making\"");
    }

    #[test]
    fn canonical_scopes_default_merge_and_order() {
        assert_eq!(canonical_scopes([]), vec![Scope::Trading]);
        assert_eq!(
            canonical_scopes([
                Scope::Withdrawal,
                Scope::Trading,
                Scope::DelegatedSigning,
                Scope::Trading,
                Scope::AccountCreation,
            ]),
            Scope::KNOWN.to_vec()
        );
    }

    #[test]
    fn scopes_join_with_commas() {
        assert_eq!(
            join_scopes(&[Scope::Trading, Scope::Unknown("x".into())]),
            "trading,x"
        );
        assert_eq!(join_scopes(&[]), "");
    }

    #[test]
    fn delegated_signing_requires_trading() {
        assert!(check_scope_rules(&[Scope::DelegatedSigning]).is_err());
        assert!(check_scope_rules(&[Scope::Trading, Scope::DelegatedSigning]).is_ok());
        assert!(check_scope_rules(&[Scope::AccountCreation]).is_ok());
    }
}
