//! The signed bytes are exactly the four parts joined by newlines, and the signature is the
//! bare HMAC of them, for any input.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use lmts_core::{signing::CanonicalMessage, Signer, TokenSecret};
use sha2::Sha256;

fuzz_target!(|input: (Vec<u8>, String, String, String, Vec<u8>)| {
    let (key, timestamp, method, target, body) = input;
    let Ok(secret) = TokenSecret::from_bytes(key.clone()) else {
        return;
    };
    let message = CanonicalMessage::new(&timestamp, &method, &target, &body);
    let mut expected =
        format!("{timestamp}\n{}\n{target}\n", method.to_ascii_uppercase()).into_bytes();
    expected.extend_from_slice(&body);
    assert_eq!(message.to_bytes(), expected);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&expected);
    let bare: [u8; 32] = mac.finalize().into_bytes().into();
    assert_eq!(Signer::new(&secret).sign(&message).as_bytes(), &bare);
});
