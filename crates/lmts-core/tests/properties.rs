//! Property tests of the contract's pure parts: the canonical message, timestamps, the
//! signature decoder and the wire types. `PROPTEST_CASES=10000 cargo test -p lmts-core --test
//! properties` runs them harder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use lmts_core::{
    signing::{format_timestamp, parse_timestamp, CanonicalMessage, Signature},
    wire::{ApiToken, TokenId},
    Scope, Signer, TokenSecret,
};
use proptest::prelude::*;
use sha2::Sha256;

fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    // Years 0 to 9999, millisecond precision.
    (-62_167_219_200_000i64..253_402_300_799_999)
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

fn any_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Trading),
        Just(Scope::AccountCreation),
        Just(Scope::DelegatedSigning),
        Just(Scope::Withdrawal),
        "[a-z_]{1,20}".prop_map(|s| Scope::from(s.as_str())),
    ]
}

proptest! {
    #[test]
    fn the_canonical_message_is_the_four_parts_joined_by_newlines(
        timestamp in "[ -~]{0,40}",
        method in "[a-zA-Z]{1,10}",
        target in "/[ -~]{0,100}",
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        key in proptest::collection::vec(any::<u8>(), 1..100),
    ) {
        let message = CanonicalMessage::new(&timestamp, &method, &target, &body);
        let mut expected = format!("{timestamp}\n{}\n{target}\n", method.to_ascii_uppercase()).into_bytes();
        expected.extend_from_slice(&body);
        prop_assert_eq!(message.to_bytes(), expected.clone());

        let secret = TokenSecret::from_bytes(key.clone()).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(&expected);
        let bare: [u8; 32] = mac.finalize().into_bytes().into();
        let signature = Signer::new(&secret).sign(&message);
        prop_assert_eq!(signature.as_bytes(), &bare);
        prop_assert!(Signer::new(&secret).matches(&message, &signature));
    }

    #[test]
    fn timestamps_round_trip_at_millisecond_precision(at in any_time()) {
        let text = format_timestamp(at);
        prop_assert_eq!(text.len(), 24);
        prop_assert_eq!(parse_timestamp(&text).unwrap(), at);
        let full = DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc);
        prop_assert_eq!(full, at);
        prop_assert_eq!(text, at.to_rfc3339_opts(SecondsFormat::Millis, true));
    }

    #[test]
    fn timestamps_format_as_chrono_does_beyond_four_digit_years(
        ms in -100_000_000_000_000i64..1_000_000_000_000_000
    ) {
        let at = DateTime::from_timestamp_millis(ms).unwrap();
        prop_assert_eq!(format_timestamp(at), at.to_rfc3339_opts(SecondsFormat::Millis, true));
    }

    #[test]
    fn timestamp_parsing_never_panics_and_agrees_with_chrono(text in "\\PC{0,40}") {
        let ours = parse_timestamp(&text).ok();
        let chrono = DateTime::parse_from_rfc3339(&text).ok().map(|at| at.with_timezone(&Utc));
        prop_assert_eq!(ours, chrono);
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono_on_near_misses(
        text in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"
    ) {
        let ours = parse_timestamp(&text).ok();
        let chrono = DateTime::parse_from_rfc3339(&text).ok().map(|at| at.with_timezone(&Utc));
        prop_assert_eq!(ours, chrono, "{}", text);
    }

    #[test]
    fn the_signature_decoder_agrees_with_strict_base64(bytes in any::<[u8; 32]>(), noise in "[ -~]{0,60}") {
        let encoded = STANDARD.encode(bytes);
        let decoded = Signature::from_base64(&encoded).unwrap();
        prop_assert_eq!(decoded.as_bytes(), &bytes);
        let strict = STANDARD.decode(noise.as_bytes()).ok().filter(|d| d.len() == 32 && noise.len() == 44);
        let ours = Signature::from_base64(&noise).ok().map(|s| s.as_bytes().to_vec());
        prop_assert_eq!(ours, strict);
    }

    #[test]
    fn list_entries_round_trip_through_json(
        id in "[A-Za-z0-9_-]{1,40}",
        label in proptest::option::of("\\PC{0,128}"),
        scopes in proptest::collection::vec(any_scope(), 0..6),
        created in any_time(),
        used in proptest::option::of(any_time()),
        expires in proptest::option::of(any_time()),
        v4 in proptest::collection::vec((any::<[u8; 4]>(), 0u8..=32), 0..4),
    ) {
        let allowed_ips = v4
            .into_iter()
            .map(|(octets, prefix)| ipnet::Ipv4Net::new(octets.into(), prefix).unwrap().trunc().into())
            .collect();
        let token = ApiToken {
            token_id: TokenId::new(id), label, scopes, created_at: created,
            expires_at: expires, allowed_ips, last_used_at: used,
        };
        let json = serde_json::to_string(&token).unwrap();
        prop_assert_eq!(serde_json::from_str::<ApiToken>(&json).unwrap(), token);
    }

    #[test]
    fn any_scope_string_survives_a_round_trip(text in "\\PC{0,40}") {
        let scope = Scope::from(text.as_str());
        prop_assert_eq!(scope.as_str(), text.as_str());
        let json = serde_json::to_string(&scope).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
    }
}
