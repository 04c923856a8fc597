//! The test harness: a real server on 127.0.0.1:0 over a temporary data directory, a reqwest
//! client, dev identity tokens, and HMAC signing through lmts-core.
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::{signing::format_timestamp, Signer, TokenSecret};
use lmts_server::{
    identity::dev::{DevIssuer, DEV_APP_ID},
    server::{Server, ServerConfig},
    TokenService,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};

pub const ALICE: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
pub const BOB: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

/// The master key of tests whose instances share a database (and so must share the key).
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// An instance on the PostgreSQL database at `url`, with [`MASTER_KEY`]; with `sibling`,
/// sharing its data directory (the dev issuer's key) too.
pub async fn on_postgres(
    url: &str,
    sibling: Option<&TestServer>,
    configure: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    TestServer::start_with(|config| {
        config.database_url = Some(url.to_owned());
        config.master_key = Some(MASTER_KEY.to_owned().into());
        if let Some(sibling) = sibling {
            config.data_dir = sibling.dir.path().to_owned();
        }
        configure(config);
    })
    .await
}

pub struct TestServer {
    pub base: String,
    pub service: TokenService,
    pub dir: TempDir,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Credentials of a derived token.
pub struct Creds {
    pub token_id: String,
    pub secret: TokenSecret,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, configure).await
    }

    pub async fn start_in(dir: TempDir, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.dev = true;
        configure(&mut config);
        let server = Server::bind(config).await.unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let service = server.service().clone();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            service,
            dir,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A server configured by `configure`, and a token of `ALICE`'s derived on it.
    pub async fn with_token(configure: impl FnOnce(&mut ServerConfig)) -> (Self, Creds) {
        let server = Self::start_with(configure).await;
        let (creds, _) = server.derive(ALICE, "{}").await;
        (server, creds)
    }

    /// Stops gracefully and hands back the data directory.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.handle.take().unwrap().await.unwrap();
        self.dir
    }

    /// An unauthenticated GET.
    pub async fn get(&self, target: &str) -> Response {
        self.client.get(self.url(target)).send().await.unwrap()
    }

    pub fn url(&self, target: &str) -> String {
        format!("{}{}", self.base, target)
    }

    pub fn identity_token(&self, account: &str) -> String {
        self.identity_token_at(account, now())
    }

    /// An identity token issued at `at` (for a service whose clock the test moved).
    pub fn identity_token_at(&self, account: &str, at: DateTime<Utc>) -> String {
        DevIssuer::load_or_create(self.dir.path())
            .unwrap()
            .issue(account, "privy.io", DEV_APP_ID, at, TimeDelta::hours(1))
            .unwrap()
    }

    pub async fn capabilities(&self, identity: &str) -> Response {
        self.client
            .get(self.url("/auth/api-tokens/capabilities"))
            .header("identity", format!("Bearer {identity}"))
            .send()
            .await
            .unwrap()
    }

    pub async fn derive_raw(&self, identity: &str, body: &str) -> Response {
        self.client
            .post(self.url("/auth/api-tokens/derive"))
            .header("identity", format!("Bearer {identity}"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Derives a token for `account` and returns its credentials and the whole answer.
    pub async fn derive(&self, account: &str, body: &str) -> (Creds, Value) {
        let response = self.derive_raw(&self.identity_token(account), body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let json: Value = response.json().await.unwrap();
        let creds = Creds {
            token_id: json["tokenId"].as_str().unwrap().to_owned(),
            secret: TokenSecret::from_base64(json["secret"].as_str().unwrap()).unwrap(),
        };
        (creds, json)
    }

    /// Sends a request signed now.
    pub async fn signed(
        &self,
        creds: &Creds,
        method: Method,
        target: &str,
        body: &str,
    ) -> Response {
        self.signed_at(creds, now(), method, target, body).await
    }

    /// Sends a request signed at `at`.
    pub async fn signed_at(
        &self,
        creds: &Creds,
        at: DateTime<Utc>,
        method: Method,
        target: &str,
        body: &str,
    ) -> Response {
        let headers = sign(creds, at, method.as_str(), target, body);
        self.send_with(method, target, body, &headers).await
    }

    /// Sends to `url_target` a request signed for `signed_target` (a gateway door's original).
    pub async fn signed_on(
        &self,
        creds: &Creds,
        method: Method,
        url_target: &str,
        signed_target: &str,
        body: &str,
    ) -> Response {
        let headers = sign(creds, now(), method.as_str(), signed_target, body);
        self.send_with(method, url_target, body, &headers).await
    }

    pub async fn send_with(
        &self,
        method: Method,
        target: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(target))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    pub async fn list(&self, creds: &Creds) -> Response {
        self.signed(creds, Method::GET, "/auth/api-tokens", "")
            .await
    }

    pub async fn revoke(&self, creds: &Creds, token_id: &str) -> Response {
        let target = format!("/auth/api-tokens/{token_id}");
        self.signed(creds, Method::DELETE, &target, "").await
    }

    /// Waits for the usage flusher to have run at least once more.
    pub async fn flush(&self) {
        self.service.run_maintenance().await;
    }
}

/// The three `lmts-*` headers for a request.
pub fn sign(
    creds: &Creds,
    at: DateTime<Utc>,
    method: &str,
    target: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    let headers = Signer::new(&creds.secret).sign_request(
        &creds.token_id,
        at,
        method,
        target,
        body.as_bytes(),
    );
    headers
        .pairs()
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect()
}

/// Sends `count` derives for `account` at once, in turn to each of `servers`; answers their
/// statuses.
pub async fn derive_at_once(
    servers: &[&TestServer],
    account: &str,
    count: usize,
) -> Vec<StatusCode> {
    let identity = format!("Bearer {}", servers[0].identity_token(account));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let server = servers[i % servers.len()];
        let request = server
            .client
            .post(server.url("/auth/api-tokens/derive"))
            .header("identity", identity.clone())
            .body("{}");
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    tasks.join_all().await
}

/// Asserts a NestJS-shaped error body with `status`, and returns its messages joined.
pub async fn assert_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status, "status");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["statusCode"], status.as_u16(), "{json}");
    assert_eq!(json["error"], status.canonical_reason().unwrap(), "{json}");
    match &json["message"] {
        Value::String(text) => {
            assert!(!text.is_empty());
            text.clone()
        }
        Value::Array(items) => {
            assert!(!items.is_empty());
            items
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join("; ")
        }
        other => panic!("message is neither a string nor an array: {other}"),
    }
}

/// Token ids of a list answer.
pub async fn listed_ids(response: Response) -> Vec<String> {
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = response.json().await.unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|t| t["tokenId"].as_str().unwrap().to_owned())
        .collect()
}

pub fn is_millis_rfc3339(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    text.len() == 24
        && text.ends_with('Z')
        && DateTime::parse_from_rfc3339(text).is_ok()
        && text.as_bytes()[19] == b'.'
}

/// The time, through the service's clock module.
pub fn now() -> DateTime<Utc> {
    lmts_server::clock::Clock::system().now()
}

/// A clock the test sets: it stands still between moves, so that a request lands on the
/// instant the test means. It starts at the system's time, so identity tokens issued now are
/// valid on it.
#[derive(Clone)]
pub struct TestClock {
    millis: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Default for TestClock {
    fn default() -> Self {
        Self {
            millis: std::sync::Arc::new(now().timestamp_millis().into()),
        }
    }
}

impl TestClock {
    /// The clock to give the service.
    pub fn clock(&self) -> lmts_server::clock::Clock {
        let this = self.clone();
        lmts_server::clock::Clock::from_fn(move || this.now())
    }

    /// The service's time.
    pub fn now(&self) -> DateTime<Utc> {
        let millis = self.millis.load(std::sync::atomic::Ordering::SeqCst);
        DateTime::from_timestamp_millis(millis).unwrap()
    }

    /// Moves the service's time to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.millis
            .store(at.timestamp_millis(), std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    format_timestamp(at)
}

/// A P-256 key pair for minting identity tokens with any claims.
pub struct TestKey {
    pkcs8: Vec<u8>,
    point: Vec<u8>,
}

impl TestKey {
    pub fn generate() -> Self {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            pkcs8: pkcs8.as_ref().to_vec(),
            point: pair.public_key().as_ref().to_vec(),
        }
    }

    /// The public key as a PEM SPKI document, as the Privy dashboard shows it.
    pub fn public_pem(&self) -> String {
        let mut der = hex_decode("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        der.extend_from_slice(&self.point);
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The public key as a JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&self.point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&self.point[33..65]),
        })
    }

    /// Signs `claims` with ES256 and header `kid`.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Privy-shaped claims for `account`, valid for an hour from now.
pub fn privy_claims(app_id: &str, account: &str) -> Value {
    let now = now().timestamp();
    let linked =
        serde_json::json!([{"type": "wallet", "address": account, "chain_type": "ethereum"}]);
    serde_json::json!({
        "iss": "privy.io",
        "aud": app_id,
        "sub": format!("did:privy:{}", account.to_lowercase()),
        "iat": now,
        "exp": now + 3600,
        "linked_accounts": linked.to_string(),
        "custom_metadata": "{}",
    })
}

/// Sends raw bytes over a fresh connection and returns the status and body of the answer.
pub async fn raw_http(server: &TestServer, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
