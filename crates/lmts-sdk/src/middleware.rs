//! Signing for reqwest-middleware (feature `middleware`): [`HmacSigning`] adds the three
//! `lmts-*` headers to every request of a `reqwest_middleware::ClientWithMiddleware`.

use std::{fmt, sync::Arc};

use lmts_core::HmacCredentials;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::{
    client::{request_target, Credentials},
    clock::Clock,
    error::Error,
};

/// A [`Middleware`] signing each request with HMAC credentials (SPEC A4): the body's bytes and
/// the URL's path and query exactly as reqwest sends them, at the clock's time.
///
/// Attach it after anything that changes the URL or the body, and after any retry middleware
/// (so that each attempt is signed afresh). A request whose body is a stream cannot be signed:
/// it fails with [`Error::InvalidInput`] inside `reqwest_middleware::Error::Middleware`,
/// unsent. It only signs: retries and clock-skew recovery are [`Client`](crate::Client)'s (to
/// sign with a known offset, give it a [`Clock`] that adds it).
///
/// ```no_run
/// # async fn run(credentials: lmts_sdk::HmacCredentials) -> Result<(), reqwest_middleware::Error> {
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(lmts_sdk::HmacSigning::new(credentials))
///     .build();
/// let answer = client.get("https://api.limitless.exchange/auth/api-tokens").send().await?;
/// # let _ = answer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HmacSigning {
    credentials: Arc<Credentials>,
    clock: Clock,
}

impl fmt::Debug for HmacSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSigning")
            .field("token_id", &self.credentials.token_id())
            .finish_non_exhaustive()
    }
}

impl HmacSigning {
    /// Signs with `credentials` at the system clock's time.
    pub fn new(credentials: HmacCredentials) -> Self {
        Self {
            credentials: Arc::new(Credentials::new(credentials)),
            clock: Clock::system(),
        }
    }

    /// Signs at `clock`'s time instead of the system clock's.
    pub fn clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// Sets the three headers on `request`, replacing any copies it carried.
    fn sign(&self, request: &mut Request) -> Result<(), Error> {
        let body = match request.body() {
            None => &[][..],
            Some(body) => body.as_bytes().ok_or_else(|| {
                Error::InvalidInput(
                    "a streaming request body cannot be signed: give the request its body as bytes"
                        .into(),
                )
            })?,
        };
        let target = request_target(request.url());
        let headers =
            self.credentials
                .signed_headers(self.clock.now(), request.method(), &target, body)?;
        request.headers_mut().extend(headers);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Middleware for HmacSigning {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.sign(&mut request)
            .map_err(reqwest_middleware::Error::middleware)?;
        next.run(request, extensions).await
    }
}

#[cfg(test)]
mod tests {
    use lmts_core::signing::{parse_timestamp, CanonicalMessage, DEFAULT_WINDOW};

    use super::*;

    fn signing_at(at: &str) -> HmacSigning {
        let credentials = HmacCredentials::new("lmts_t", "c3VwZXItc2VjcmV0LWtleQ==").unwrap();
        let at = parse_timestamp(at).unwrap();
        HmacSigning::new(credentials).clock(Clock::from_fn(move || at))
    }

    fn signing() -> HmacSigning {
        signing_at("2026-03-23T12:34:56.789Z")
    }

    fn request(method: &str, url: &str) -> Request {
        Request::new(method.parse().unwrap(), url.parse().unwrap())
    }

    #[test]
    fn it_reproduces_the_spec_vector_and_replaces_forged_headers() {
        let mut request = request("PATCH", "http://h/orders?market=btc");
        *request.body_mut() = Some(reqwest::Body::from(r#"{"foo":"bar"}"#));
        request
            .headers_mut()
            .insert("lmts-signature", "forged".parse().unwrap());
        signing().sign(&mut request).unwrap();
        let headers = request.headers();
        assert_eq!(headers["lmts-api-key"], "lmts_t");
        assert_eq!(headers["lmts-timestamp"], "2026-03-23T12:34:56.789Z");
        assert_eq!(headers.get_all("lmts-signature").iter().count(), 1);
        assert_eq!(
            headers["lmts-signature"],
            "mgMUpOd7FH4sOSti2MF30YKF9yDq+67VjFksPa5I5eE="
        );
    }

    #[test]
    fn the_clock_sets_the_signing_time_and_the_target_is_encoded_as_sent() {
        let mut request = request("GET", "http://h/a b?q=é");
        signing_at("2026-03-23T12:36:26.789Z")
            .sign(&mut request)
            .unwrap();
        let headers = request.headers();
        let stamp = headers["lmts-timestamp"].to_str().unwrap();
        assert_eq!(stamp, "2026-03-23T12:36:26.789Z");
        let message = CanonicalMessage::new(stamp, "GET", "/a%20b?q=%C3%A9", b"");
        let secret = lmts_core::TokenSecret::from_base64("c3VwZXItc2VjcmV0LWtleQ==").unwrap();
        let verified = lmts_core::Signer::new(&secret).verify(
            &message,
            headers["lmts-signature"].to_str().unwrap(),
            parse_timestamp(stamp).unwrap(),
            DEFAULT_WINDOW,
        );
        assert!(verified.is_ok(), "{verified:?}");
    }

    #[test]
    fn a_streaming_body_is_a_clear_error_not_a_panic() {
        let mut request = request("POST", "http://h/orders");
        *request.body_mut() = Some(reqwest::Body::wrap(String::from("{}")));
        let error = signing().sign(&mut request).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidInput(m) if m.contains("streaming")),
            "{error:?}"
        );
        assert!(request.headers().get("lmts-signature").is_none());
        let printed = format!("{:?}", signing());
        assert!(
            printed.contains("lmts_t") && !printed.contains("c3VwZXI"),
            "{printed}"
        );
    }
}
