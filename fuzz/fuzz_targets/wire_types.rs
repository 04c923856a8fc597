//! The wire types never panic on any JSON, and what parses serialises and parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmts_core::wire::{ApiErrorBody, ApiToken, DeriveApiTokenInput, PartnerCapabilities};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(token) = serde_json::from_slice::<ApiToken>(bytes) {
        let again: ApiToken =
            serde_json::from_str(&serde_json::to_string(&token).unwrap()).unwrap();
        assert_eq!(again.token_id, token.token_id);
        assert_eq!(again.scopes, token.scopes);
    }
    if let Ok(input) = serde_json::from_slice::<DeriveApiTokenInput>(bytes) {
        let again: DeriveApiTokenInput =
            serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
        assert_eq!(again, input);
    }
    let _ = serde_json::from_slice::<PartnerCapabilities>(bytes);
    let _ = serde_json::from_slice::<ApiErrorBody>(bytes);
});
