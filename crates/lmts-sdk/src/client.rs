//! The client: configuration, the connection pool, and the one request path every call takes,
//! the token endpoints' and any other signed request's alike (sign, send, classify, retry).

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::{
    signing::{HEADER_API_KEY, HEADER_IDENTITY, HEADER_SIGNATURE, HEADER_TIMESTAMP},
    wire::{FEATURES_HEADER, IDEMPOTENCY_KEY, IDEMPOTENT_DERIVE},
    HmacCredentials, Signer,
};
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue},
    redirect, Method, Url,
};
use tracing::Instrument;

use crate::{
    api_tokens::ApiTokens,
    clock::Clock,
    error::{retry_after, Error},
    request::RequestBuilder,
    response::SignedResponse,
    retry::RetryPolicy,
};

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// The base URL of the real Limitless API.
pub const DEFAULT_BASE_URL: &str = "https://api.limitless.exchange";
/// Environment variable for the base URL.
pub const ENV_API_URL: &str = "LIMITLESS_API_URL";
/// Environment variable for the token id.
pub const ENV_TOKEN_ID: &str = "LIMITLESS_API_TOKEN_ID";
/// Environment variable for the token secret.
pub const ENV_TOKEN_SECRET: &str = "LIMITLESS_API_TOKEN_SECRET";

/// Headers the SDK sets itself; extra headers may not name them.
const RESERVED_HEADERS: [&str; 7] = [
    HEADER_IDENTITY,
    HEADER_API_KEY,
    HEADER_TIMESTAMP,
    HEADER_SIGNATURE,
    "x-api-key",
    "content-length",
    "host",
];

/// A client of the API-token service. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    credentials: Option<Arc<Credentials>>,
}

struct Shared {
    http: reqwest::Client,
    base_url: Url,
    retry: RetryPolicy,
    clock: Clock,
    /// Server time minus local time, in milliseconds, learnt or set.
    clock_offset_ms: AtomicI64,
    /// Whether the service said it answers a repeated derive under one `Idempotency-Key` with
    /// the first (SPEC C2's `lmts-features: idempotent-derive`, on capabilities and derive).
    idempotent_derive: AtomicBool,
}

/// Credentials with their key prepared once.
pub(crate) struct Credentials {
    credentials: HmacCredentials,
    signer: Signer,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.shared.base_url.as_str())
            .field(
                "token_id",
                &self
                    .credentials
                    .as_ref()
                    .map(|c| c.credentials.token_id.as_str()),
            )
            .field("retry", &self.shared.retry)
            .field("clock_offset", &self.clock_offset())
            .finish_non_exhaustive()
    }
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// The client's HMAC credentials, signing each attempt afresh.
    Hmac,
    /// The `identity` header's value (`Bearer <token>`, marked sensitive), re-sent on each
    /// attempt.
    Identity(HeaderValue),
}

/// Whether repeating a request could repeat an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Repeating it changes nothing: safe methods (GET, HEAD, OPTIONS, TRACE), and a change
    /// the service promises to make once per `Idempotency-Key` (lmts's derive, SPEC C2).
    None,
    /// Every other method (SPEC B6's state-changing POST, PUT, PATCH, DELETE, and any unknown
    /// one): repeat only when the service certainly did not act.
    Changes,
}

impl Effect {
    /// The effect of `call` on a service that said whether it makes a keyed derive once.
    fn of(call: &Call, idempotent_derive: bool) -> Self {
        let keyed_derive = idempotent_derive
            && call.answerer == Answerer::TokenService
            && call.headers.contains_key(IDEMPOTENCY_KEY);
        if call.method.is_safe() || keyed_derive {
            Effect::None
        } else {
            Effect::Changes
        }
    }
}

/// Whether `headers` say the service makes a derive under one `Idempotency-Key` once.
fn says_idempotent_derive(headers: &HeaderMap) -> bool {
    headers
        .get_all(FEATURES_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|feature| feature.trim() == IDEMPOTENT_DERIVE)
}

/// Who answers a request, which says what an error status proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answerer {
    /// lmts's own token endpoints: a 429 or a 503 comes before any change (SPEC B2), so a
    /// state-changing call so refused may be repeated.
    TokenService,
    /// Any other service, maybe behind a gateway or proxy: only a 429 proves nothing was done
    /// (a 503 may come from a service that acted, or from a proxy in front of one).
    Any,
}

/// One request, as built by a [`RequestBuilder`], before signing.
#[derive(Debug)]
pub(crate) struct Call {
    pub method: Method,
    /// The full URL; its path and query are what is signed.
    pub url: Url,
    /// The request's own headers (content type, caller's extras).
    pub headers: HeaderMap,
    /// The exact body bytes (empty: no body).
    pub body: Bytes,
    pub auth: Auth,
    pub answerer: Answerer,
}

/// A call ready for its attempts (built once by `Client::prepare`).
struct PreparedCall<'c> {
    call: Call,
    /// Path and query exactly as sent: what is signed.
    target: String,
    /// The credentials that sign each attempt, for HMAC calls.
    signing: Option<&'c Credentials>,
    effect: Effect,
}

/// The request target of `url` as it goes on the wire (origin form, already percent-encoded):
/// the path, and `?query` when the URL has a query (even an empty one). What is signed.
pub(crate) fn request_target(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The error of a request that got no complete answer.
fn transport_error(error: reqwest::Error) -> Error {
    if error.is_timeout() {
        Error::Timeout(error)
    } else {
        Error::Transport(error)
    }
}

impl Credentials {
    pub(crate) fn new(credentials: HmacCredentials) -> Self {
        Self {
            signer: credentials.signer(),
            credentials,
        }
    }

    /// The token id (never the secret).
    pub(crate) fn token_id(&self) -> &str {
        self.credentials.token_id.as_str()
    }

    /// The three `lmts-*` headers of a request signed at `now`; the signature marked sensitive.
    pub(crate) fn signed_headers(
        &self,
        now: DateTime<Utc>,
        method: &Method,
        target: &str,
        body: &[u8],
    ) -> Result<HeaderMap, Error> {
        let signed = self
            .signer
            .sign_request(self.token_id(), now, method.as_str(), target, body);
        let mut headers = HeaderMap::with_capacity(3);
        for (name, value) in signed.pairs() {
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| Error::InvalidInput(format!("{name} is not a valid header value")))?;
            value.set_sensitive(name == HEADER_SIGNATURE);
            headers.insert(HeaderName::from_static(name), value);
        }
        Ok(headers)
    }
}

impl Client {
    /// A client for `base_url` with default settings and no credentials.
    pub fn new(base_url: impl AsRef<str>) -> Result<Self, Error> {
        Self::builder().base_url(base_url).build()
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from `LIMITLESS_API_URL` (default: the real API) and, when both are set,
    /// `LIMITLESS_API_TOKEN_ID` and `LIMITLESS_API_TOKEN_SECRET`.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut builder = Self::builder();
        if let Some(url) = var(ENV_API_URL) {
            builder = builder.base_url(url);
        }
        match (var(ENV_TOKEN_ID), var(ENV_TOKEN_SECRET)) {
            (Some(id), Some(secret)) => {
                let credentials = HmacCredentials::new(id, &secret)
                    .map_err(|error| Error::Config(format!("{ENV_TOKEN_SECRET}: {error}")))?;
                builder = builder.credentials(credentials);
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(format!(
                    "set both {ENV_TOKEN_ID} and {ENV_TOKEN_SECRET}, or neither"
                )))
            }
        }
        builder.build()
    }

    /// The same client signing with `credentials`; shares the connection pool and settings.
    pub fn with_credentials(&self, credentials: HmacCredentials) -> Client {
        Client {
            shared: self.shared.clone(),
            credentials: Some(Arc::new(Credentials::new(credentials))),
        }
    }

    /// The credentials this client signs with, if any.
    pub fn credentials(&self) -> Option<&HmacCredentials> {
        self.credentials.as_ref().map(|c| &c.credentials)
    }

    /// The API-token lifecycle: capabilities, derive, list, revoke.
    pub fn api_tokens(&self) -> ApiTokens<'_> {
        ApiTokens::new(self)
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.shared.base_url.as_str()
    }

    /// The offset added to the local clock when signing (server time minus local time).
    pub fn clock_offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.shared.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Sets the signing clock offset by hand (it is also learnt from refused timestamps).
    pub fn set_clock_offset(&self, offset: TimeDelta) {
        self.shared
            .clock_offset_ms
            .store(offset.num_milliseconds(), Ordering::Relaxed);
    }

    /// The time requests are signed at: the clock plus the learnt offset.
    pub fn signing_time(&self) -> DateTime<Utc> {
        self.shared.clock.now() + self.clock_offset()
    }

    /// A signed request to any path of the service: `path` is relative to the base URL, starts
    /// with `/`, and may carry a `?query`. Characters a URL path or query may not hold are
    /// percent-encoded; what is signed is the target exactly as it is then sent. See
    /// [`RequestBuilder`] for the retry rules and [`SignedResponse`] for the answer.
    pub fn request(&self, method: Method, path: impl AsRef<str>) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path.as_ref())
    }

    /// A signed `GET`: [`Client::request`] with [`Method::GET`].
    pub fn get(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A signed `POST`: [`Client::request`] with [`Method::POST`].
    pub fn post(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A signed `PUT`: [`Client::request`] with [`Method::PUT`].
    pub fn put(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A signed `PATCH`: [`Client::request`] with [`Method::PATCH`].
    pub fn patch(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A signed `DELETE`: [`Client::request`] with [`Method::DELETE`].
    pub fn delete(&self, path: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// The URL of `path` (starting with `/`, maybe with `?query`) under the base URL.
    pub(crate) fn url(&self, path: &str) -> Result<Url, Error> {
        if !path.starts_with('/') {
            return Err(Error::InvalidInput(format!(
                "the path {path:?} must start with / (it is relative to the base URL)"
            )));
        }
        let mut url = self.shared.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        Ok(url)
    }

    /// Runs a call: signs and sends it, retrying as the policy allows, and learning the clock
    /// offset once from a refused timestamp. Returns the last answer, whatever its status;
    /// an error only when no answer came (or the call could not be built).
    pub(crate) async fn execute(&self, call: Call) -> Result<SignedResponse, Error> {
        let call = self.prepare(call)?;
        let mut retries = 0;
        let mut learnt_offset = false;
        loop {
            let attempt = retries + u32::from(learnt_offset) + 1;
            let span = tracing::debug_span!("lmts_sdk.request", method = %call.call.method, target = %call.target, attempt);
            let request = self.build_request(&call)?;
            let answerer = call.call.answerer;
            let response = match self
                .receive(request, answerer)
                .instrument(span.clone())
                .await
            {
                Ok(response) => response,
                Err(error) => {
                    let Some(delay) =
                        self.retry_after_transport_error(call.effect, retries, &error)
                    else {
                        return Err(transport_error(error));
                    };
                    span.in_scope(|| tracing::debug!(error = %error, ?delay, "retrying after a transport error"));
                    tokio::time::sleep(delay).await;
                    retries += 1;
                    continue;
                }
            };
            if response.is_success() {
                return Ok(response);
            }
            if response.status() == 401
                && call.signing.is_some()
                && !learnt_offset
                && self.learn_offset(response.headers())
            {
                learnt_offset = true;
                span.in_scope(|| {
                    tracing::info!(
                        offset_ms = self.clock_offset().num_milliseconds(),
                        "signing clock offset learnt from the server's Date; retrying"
                    )
                });
                continue;
            }
            let Some(delay) =
                self.retry_after_answer((call.effect, call.call.answerer), retries, &response)
            else {
                return Ok(response);
            };
            span.in_scope(|| tracing::debug!(status = response.status(), ?delay, "retrying"));
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// What stays the same across a call's attempts: the signed target, the body, the effect,
    /// and the credentials that sign each attempt afresh. Refuses headers the SDK sets itself.
    fn prepare(&self, call: Call) -> Result<PreparedCall<'_>, Error> {
        if let Some(name) = call
            .headers
            .keys()
            .find(|name| RESERVED_HEADERS.contains(&name.as_str()))
        {
            return Err(Error::InvalidInput(format!(
                "header {name} is set by the SDK itself"
            )));
        }
        let signing = match call.auth {
            Auth::Hmac => Some(
                self.credentials
                    .as_deref()
                    .ok_or(Error::MissingCredentials)?,
            ),
            Auth::Identity(_) => None,
        };
        Ok(PreparedCall {
            target: request_target(&call.url),
            effect: Effect::of(&call, self.shared.idempotent_derive.load(Ordering::Relaxed)),
            signing,
            call,
        })
    }

    /// One attempt's request: HMAC calls are signed now, at the signing time.
    fn build_request(&self, prepared: &PreparedCall<'_>) -> Result<reqwest::RequestBuilder, Error> {
        let call = &prepared.call;
        let mut request = self
            .shared
            .http
            .request(call.method.clone(), call.url.clone())
            .headers(call.headers.clone());
        match (&call.auth, prepared.signing) {
            (Auth::Hmac, Some(credentials)) => {
                request = request.headers(credentials.signed_headers(
                    self.signing_time(),
                    &call.method,
                    &prepared.target,
                    &call.body,
                )?);
            }
            (Auth::Identity(value), _) => {
                request = request.header(HEADER_IDENTITY, value.clone());
            }
            (Auth::Hmac, None) => return Err(Error::MissingCredentials),
        }
        if !call.body.is_empty() {
            request = request.body(call.body.clone());
        }
        Ok(request)
    }

    /// Sends one attempt and reads its whole answer. Only the token service's answers may
    /// say that it makes a keyed derive once: any other service's (a `Client::request` to an
    /// API behind a gateway) could claim it and make derives repeat.
    async fn receive(
        &self,
        request: reqwest::RequestBuilder,
        answerer: Answerer,
    ) -> Result<SignedResponse, reqwest::Error> {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        if answerer == Answerer::TokenService && says_idempotent_derive(&headers) {
            self.shared.idempotent_derive.store(true, Ordering::Relaxed);
        }
        let wait = retry_after(&headers, SystemTime::from(self.shared.clock.now()));
        Ok(SignedResponse::new(
            status,
            headers,
            response.bytes().await?,
            wait,
        ))
    }

    /// The wait before retrying after a transport error, or `None` to give up. Only a refused
    /// connection proves the service never saw the request, so only then is a state-changing
    /// call repeated.
    fn retry_after_transport_error(
        &self,
        effect: Effect,
        retries: u32,
        error: &reqwest::Error,
    ) -> Option<Duration> {
        let may_retry = effect != Effect::Changes || error.is_connect();
        if may_retry && retries < self.shared.retry.max_retries {
            self.shared.retry.delay(retries, None)
        } else {
            None
        }
    }

    /// The wait before retrying after a non-2xx answer, or `None` to give up. A
    /// state-changing call is repeated only on answers that say it was not acted on: 429, and
    /// 503 from the token service.
    fn retry_after_answer(
        &self,
        (effect, answerer): (Effect, Answerer),
        retries: u32,
        response: &SignedResponse,
    ) -> Option<Duration> {
        let retryable = match (effect, answerer) {
            (Effect::None, _) => matches!(response.status(), 429 | 502 | 503 | 504),
            (Effect::Changes, Answerer::TokenService) => matches!(response.status(), 429 | 503),
            (Effect::Changes, Answerer::Any) => response.status() == 429,
        };
        if retryable && retries < self.shared.retry.max_retries {
            self.shared.retry.delay(retries, response.retry_after())
        } else {
            None
        }
    }

    /// Sets the clock offset from a response's `Date` when it differs from the current one by
    /// more than the `Date` header's one-second resolution can explain. Returns whether it did.
    fn learn_offset(&self, headers: &HeaderMap) -> bool {
        let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| httpdate::parse_http_date(value).ok())
        else {
            return false;
        };
        // `Date` truncates to the second: the server's time lies half a second later on average.
        let server = DateTime::<Utc>::from(server) + TimeDelta::milliseconds(500);
        let offset = server - self.shared.clock.now();
        if (offset - self.clock_offset()).abs() <= TimeDelta::milliseconds(1500) {
            return false;
        }
        self.set_clock_offset(offset);
        true
    }
}

/// The certificates of a PEM bundle, as roots to trust; an error when it holds none.
pub fn root_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, Error> {
    reqwest::Certificate::from_pem_bundle(pem)
        .ok()
        .filter(|roots| !roots.is_empty())
        .ok_or_else(|| Error::Config("a root certificate bundle holds no PEM certificate".into()))
}

/// Configures a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Option<HmacCredentials>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    extra_headers: Vec<(String, String)>,
    user_agent: String,
    clock: Clock,
    clock_offset: TimeDelta,
    root_certificates: Vec<Vec<u8>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            credentials: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            extra_headers: Vec::new(),
            user_agent: format!("lmts-sdk/{}", env!("CARGO_PKG_VERSION")),
            clock: Clock::system(),
            clock_offset: TimeDelta::zero(),
            root_certificates: Vec::new(),
        }
    }
}

impl ClientBuilder {
    /// The service's base URL (default: the real Limitless API).
    pub fn base_url(mut self, base_url: impl AsRef<str>) -> Self {
        self.base_url = base_url.as_ref().to_owned();
        self
    }

    /// HMAC credentials for list, revoke and any [`Client::request`].
    pub fn credentials(mut self, credentials: HmacCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The longest one attempt may take, from sending to the last byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest connecting may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A header sent with every request. The authentication headers cannot be set this way.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// The `User-Agent` (default `lmts-sdk/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The clock requests are signed with (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A known offset of the server's clock from the local one.
    pub fn clock_offset(mut self, offset: TimeDelta) -> Self {
        self.clock_offset = offset;
        self
    }

    /// Also trusts the certificate authorities of this PEM bundle, beside the built-in roots:
    /// for a deployment whose certificate a private authority issued.
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Builds the client; fails on a base URL that is not http(s), a reserved header, or a
    /// root certificate bundle without a certificate.
    pub fn build(self) -> Result<Client, Error> {
        let base_url = Url::parse(&self.base_url)
            .map_err(|error| Error::Config(format!("base URL {:?}: {error}", self.base_url)))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.query().is_some() {
            return Err(Error::Config(format!(
                "base URL {:?} must be http(s) without a query",
                self.base_url
            )));
        }
        let mut extra_headers = HeaderMap::new();
        for (name, value) in &self.extra_headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| Error::Config(format!("{name:?} is not a header name")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(Error::Config(format!(
                    "header {name} is set by the SDK itself"
                )));
            }
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| Error::Config(format!("the value of header {name} is not valid")))?;
            extra_headers.append(name, value);
        }
        let mut http = reqwest::Client::builder();
        for bundle in &self.root_certificates {
            for root in root_certificates(bundle)? {
                http = http.add_root_certificate(root);
            }
        }
        let http = http
            .default_headers(extra_headers)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // Below the 30 s a server (lmts's default, and most proxies') keeps an idle
            // connection: a pooled connection is dropped here before the server closes it, so
            // a request never races the close.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // A redirect would re-send the lmts-* headers, signed for this target, to another
            // (perhaps another host, where a signed GET could be replayed within the window):
            // a 3xx is answered to the caller instead.
            .redirect(redirect::Policy::none())
            .user_agent(self.user_agent)
            .build()
            .map_err(|error| Error::Config(format!("HTTP client: {error}")))?;
        let client = Client {
            shared: Arc::new(Shared {
                http,
                base_url,
                retry: self.retry,
                clock: self.clock,
                clock_offset_ms: AtomicI64::new(self.clock_offset.num_milliseconds()),
                idempotent_derive: AtomicBool::new(false),
            }),
            credentials: None,
        };
        Ok(match self.credentials {
            Some(credentials) => client.with_credentials(credentials),
            None => client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_base_path_and_the_query() {
        let client = Client::new("http://127.0.0.1:1/prefix/").unwrap();
        let url = client.url("/auth/api-tokens/tok%2Fx").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/prefix/auth/api-tokens/tok%2Fx"
        );
        let url = Client::new("http://h")
            .unwrap()
            .url("/orders?market=btc")
            .unwrap();
        assert_eq!(url.path(), "/orders");
        assert_eq!(url.query(), Some("market=btc"));
        assert_eq!(request_target(&url), "/orders?market=btc");
    }

    #[test]
    fn targets_are_percent_encoded_as_sent_and_paths_stay_under_the_base() {
        let client = Client::new("http://h/api").unwrap();
        let url = client.url("/orders/a b#c?q=x y&z=é").unwrap();
        assert_eq!(
            request_target(&url),
            "/api/orders/a%20b%23c?q=x%20y&z=%C3%A9"
        );
        assert_eq!(url.host_str(), Some("h"));
        let url = client.url("/x?").unwrap();
        assert_eq!(
            request_target(&url),
            "/api/x?",
            "an empty query is sent, so signed"
        );
        for outside in ["orders", "http://evil/x", ""] {
            assert!(
                matches!(client.url(outside), Err(Error::InvalidInput(_))),
                "{outside}"
            );
        }
    }

    #[test]
    fn bad_configuration_is_refused_before_any_request() {
        assert!(matches!(Client::new("not a url"), Err(Error::Config(_))));
        assert!(matches!(Client::new("ftp://h"), Err(Error::Config(_))));
        for reserved in ["lmts-signature", "Identity", "X-API-Key"] {
            let built = Client::builder().header(reserved, "x").build();
            assert!(matches!(built, Err(Error::Config(_))), "{reserved}");
        }
        assert!(Client::builder()
            .header("x-partner", "acme")
            .build()
            .is_ok());
    }

    #[test]
    fn debug_shows_no_secret() {
        let credentials = HmacCredentials::new("tok_1", "c3VwZXItc2VjcmV0LWtleQ==").unwrap();
        let client = Client::builder().credentials(credentials).build().unwrap();
        let printed = format!("{client:?}");
        assert!(
            printed.contains("tok_1") && !printed.contains("c3VwZXI"),
            "{printed}"
        );
    }
}
