//! The signature header decoder agrees with strict standard base64 of exactly 32 bytes, and the
//! encoder gives back the text of whatever decoded.
#![no_main]

use base64::{engine::general_purpose::STANDARD, Engine as _};
use libfuzzer_sys::fuzz_target;
use lmts_core::signing::Signature;

fuzz_target!(|text: &str| {
    let ours = Signature::from_base64(text)
        .ok()
        .map(|s| s.as_bytes().to_vec());
    let strict = STANDARD
        .decode(text.as_bytes())
        .ok()
        .filter(|bytes| bytes.len() == 32 && text.len() == 44);
    assert_eq!(ours, strict, "{text:?}");
    // What decodes is canonical, so encoding it again gives the same text.
    if let Ok(signature) = Signature::from_base64(text) {
        assert_eq!(signature.to_base64(), text);
    }
});
