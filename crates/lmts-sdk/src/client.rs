//! The client: configuration, the connection pool, and the request path every call takes
//! (build, sign, send, classify, retry).

use std::{
    fmt,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::{
    signing::{HEADER_API_KEY, HEADER_IDENTITY, HEADER_SIGNATURE, HEADER_TIMESTAMP},
    HmacCredentials, Signer,
};
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE},
    Method, Url,
};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::{
    api_tokens::ApiTokens,
    clock::Clock,
    error::{retry_after, ApiError, Error},
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
}

struct Credentials {
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

/// How a call authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// `identity: Bearer <token>`.
    Identity(&'a str),
    /// The client's HMAC credentials.
    Hmac,
}

/// Whether repeating a call could repeat an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Reads: safe to repeat.
    None,
    /// Derive and revoke: repeat only when the service certainly did not act.
    Changes,
}

/// One API call, before signing.
pub(crate) struct Call<'a> {
    pub method: Method,
    /// Path (segments already percent-encoded), relative to the base URL, starting with `/`.
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub auth: Auth<'a>,
    pub effect: Effect,
}

/// A call ready for its attempts (built once by `Client::prepare`).
struct PreparedCall<'c> {
    method: Method,
    url: Url,
    /// Path and query exactly as sent: what is signed.
    target: String,
    body: Vec<u8>,
    auth: PreparedAuth<'c>,
    effect: Effect,
}

/// How a prepared call authenticates.
enum PreparedAuth<'c> {
    /// The `identity` header's value, built once and re-sent on every attempt.
    Identity(HeaderValue),
    /// The credentials that sign each attempt.
    Hmac(&'c Credentials),
}

/// The error of a request that got no complete answer.
fn transport_error(error: reqwest::Error) -> Error {
    if error.is_timeout() {
        Error::Timeout(error)
    } else {
        Error::Transport(error)
    }
}

/// The body of a 2xx answer, decoded.
fn decode<T: DeserializeOwned>(
    status: u16,
    headers: HeaderMap,
    bytes: &[u8],
) -> Result<ApiResponse<T>, Error> {
    let body = serde_json::from_slice(bytes).map_err(|source| Error::Decode { status, source })?;
    Ok(ApiResponse {
        status,
        headers,
        body,
    })
}

/// A successful answer with its status and headers.
#[derive(Debug, Clone)]
pub struct ApiResponse<T> {
    status: u16,
    headers: HeaderMap,
    body: T,
}

impl<T> ApiResponse<T> {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The response headers (rate-limit headers, request id, date).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The decoded body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The decoded body, consuming the response.
    pub fn into_body(self) -> T {
        self.body
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
            credentials: Some(Arc::new(Credentials {
                signer: credentials.signer(),
                credentials,
            })),
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

    fn url(&self, path: &str) -> Url {
        let mut url = self.shared.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        url
    }

    /// Runs a call: builds, signs and sends it, decoding the answer, retrying as the policy
    /// allows, and learning the clock offset once from a refused timestamp.
    pub(crate) async fn execute<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<ApiResponse<T>, Error> {
        let call = self.prepare(call)?;
        let mut retries = 0;
        let mut learnt_offset = false;
        loop {
            let attempt = retries + u32::from(learnt_offset) + 1;
            let span = tracing::debug_span!("lmts_sdk.request", method = %call.method, target = %call.target, attempt);
            let request = self.build_request(&call)?;
            let received = async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
            }
            .instrument(span.clone())
            .await;
            let (status, headers, bytes) = match received {
                Ok(received) => received,
                Err(error) => {
                    match self.retry_after_transport_error(call.effect, retries, &error) {
                        Some(delay) => {
                            span.in_scope(|| tracing::debug!(error = %error, ?delay, "retrying after a transport error"));
                            tokio::time::sleep(delay).await;
                            retries += 1;
                            continue;
                        }
                        None => return Err(transport_error(error)),
                    }
                }
            };
            if (200..300).contains(&status) {
                return decode(status, headers, &bytes);
            }
            let error = self.api_error(status, headers, &bytes);
            if status == 401
                && matches!(call.auth, PreparedAuth::Hmac(_))
                && !learnt_offset
                && self.learn_offset(&error.headers)
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
            match self.retry_after_api_error(call.effect, retries, &error) {
                Some(delay) => {
                    span.in_scope(|| tracing::debug!(status, ?delay, "retrying"));
                    tokio::time::sleep(delay).await;
                    retries += 1;
                }
                None => return Err(Error::Api(Box::new(error))),
            }
        }
    }

    /// What stays the same across a call's attempts: the URL, the signed target, the body, and
    /// the identity header or the credentials that sign each attempt afresh.
    fn prepare<'c>(&'c self, call: Call<'c>) -> Result<PreparedCall<'c>, Error> {
        let auth = match call.auth {
            Auth::Hmac => PreparedAuth::Hmac(
                self.credentials
                    .as_deref()
                    .ok_or(Error::MissingCredentials)?,
            ),
            Auth::Identity(token) => {
                let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    Error::InvalidInput("identity token is not a valid header value".into())
                })?;
                value.set_sensitive(true);
                PreparedAuth::Identity(value)
            }
        };
        let url = self.url(&call.path);
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Ok(PreparedCall {
            method: call.method,
            url,
            target,
            body: call.body.unwrap_or_default(),
            auth,
            effect: call.effect,
        })
    }

    /// One attempt's request: HMAC calls are signed now, at the signing time.
    fn build_request(&self, call: &PreparedCall<'_>) -> Result<reqwest::RequestBuilder, Error> {
        let mut request = self
            .shared
            .http
            .request(call.method.clone(), call.url.clone());
        match &call.auth {
            PreparedAuth::Identity(value) => {
                request = request.header(HEADER_IDENTITY, value.clone());
            }
            PreparedAuth::Hmac(credentials) => {
                let headers = credentials.signer.sign_request(
                    credentials.credentials.token_id.as_str(),
                    self.signing_time(),
                    call.method.as_str(),
                    &call.target,
                    &call.body,
                );
                for (name, value) in headers.pairs() {
                    let mut value = HeaderValue::try_from(value).map_err(|_| {
                        Error::InvalidInput(format!("{name} is not a valid header value"))
                    })?;
                    value.set_sensitive(name == HEADER_SIGNATURE);
                    request = request.header(name, value);
                }
            }
        }
        if !call.body.is_empty() {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(call.body.clone());
        }
        Ok(request)
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
        let may_retry = effect == Effect::None || error.is_connect();
        if may_retry && retries < self.shared.retry.max_retries {
            self.shared.retry.delay(retries, None)
        } else {
            None
        }
    }

    /// The wait before retrying after an error answer, or `None` to give up. A
    /// state-changing call is repeated only on answers that say it was not acted on (429, 503).
    fn retry_after_api_error(
        &self,
        effect: Effect,
        retries: u32,
        error: &ApiError,
    ) -> Option<Duration> {
        let retryable = match effect {
            Effect::None => matches!(error.status, 429 | 502 | 503 | 504),
            Effect::Changes => matches!(error.status, 429 | 503),
        };
        if retryable && retries < self.shared.retry.max_retries {
            self.shared.retry.delay(retries, error.retry_after)
        } else {
            None
        }
    }

    /// The error of a non-2xx answer, with the wait its `Retry-After` asks for.
    fn api_error(&self, status: u16, headers: HeaderMap, bytes: &[u8]) -> ApiError {
        let wait = retry_after(&headers, SystemTime::from(self.shared.clock.now()));
        ApiError::from_parts(
            status,
            headers,
            String::from_utf8_lossy(bytes).into_owned(),
            wait,
        )
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
        }
    }
}

impl ClientBuilder {
    /// The service's base URL (default: the real Limitless API).
    pub fn base_url(mut self, base_url: impl AsRef<str>) -> Self {
        self.base_url = base_url.as_ref().to_owned();
        self
    }

    /// HMAC credentials for list and revoke.
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

    /// Builds the client; fails on a base URL that is not http(s) or a reserved header.
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
        let http = reqwest::Client::builder()
            .default_headers(extra_headers)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // Below the 30 s a server (lmts's default, and most proxies') keeps an idle
            // connection: a pooled connection is dropped here before the server closes it, so
            // a request never races the close.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
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
        let url = client.url("/auth/api-tokens/tok%2Fx");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/prefix/auth/api-tokens/tok%2Fx"
        );
        let url = Client::new("http://h").unwrap().url("/orders?market=btc");
        assert_eq!(url.path(), "/orders");
        assert_eq!(url.query(), Some("market=btc"));
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
