//! Every signing vector of `testdata/vectors.json` (SPEC A4) through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lmts_core::{signing::CanonicalMessage, Signer, TokenSecret};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    secret: String,
    timestamp: String,
    method: String,
    path: String,
    body: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../testdata/vectors.json");
    serde_json::from_str::<Vectors>(text).unwrap().vectors
}

#[test]
fn every_vector_signs_and_verifies() {
    let vectors = vectors();
    assert!(vectors.len() >= 8);
    for v in vectors {
        let signer = Signer::new(&TokenSecret::from_base64(&v.secret).unwrap());
        let message = CanonicalMessage::new(&v.timestamp, &v.method, &v.path, v.body.as_bytes());
        assert_eq!(signer.sign(&message).to_base64(), v.signature, "{}", v.name);
        let expected_text = format!("{}\n{}\n{}\n{}", v.timestamp, v.method, v.path, v.body);
        assert_eq!(message.to_string(), expected_text, "{}", v.name);
        assert_eq!(message.to_bytes(), expected_text.as_bytes(), "{}", v.name);
        let now = lmts_core::signing::parse_timestamp(&v.timestamp).unwrap();
        signer
            .verify(
                &message,
                &v.signature,
                now,
                lmts_core::signing::DEFAULT_WINDOW,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
    }
}

#[test]
fn sign_request_produces_the_vector_headers() {
    for v in vectors() {
        let signer = Signer::new(&TokenSecret::from_base64(&v.secret).unwrap());
        let at = lmts_core::signing::parse_timestamp(&v.timestamp).unwrap();
        let headers = signer.sign_request("tok", at, &v.method, &v.path, v.body.as_bytes());
        assert_eq!(headers.timestamp(), v.timestamp, "{}", v.name);
        assert_eq!(headers.signature(), v.signature, "{}", v.name);
        assert_eq!(headers.pairs()[0], ("lmts-api-key", "tok"));
        let debug = format!("{headers:?}");
        assert!(
            debug.contains(&v.signature) && debug.contains(&v.timestamp),
            "{debug}"
        );
    }
}
