//! Test harness: the real lmts-server in-process, and a scripted HTTP server for faults.
#![allow(dead_code, missing_docs)]

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use chrono::{DateTime, TimeDelta, Utc};
use lmts_sdk::{Client, HmacCredentials, RetryPolicy};
use lmts_server::{
    identity::dev::{DevIssuer, DEV_APP_ID},
    server::{Server, ServerConfig},
    TokenService,
};
use tempfile::TempDir;
use tokio::time::Instant;

pub const ALICE: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

pub fn now() -> DateTime<Utc> {
    lmts_sdk::clock::Clock::system().now()
}

/// The secret of [`credentials`].
pub const SECRET: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

/// The credentials the scripted tests sign with.
pub fn credentials() -> HmacCredentials {
    HmacCredentials::new("lmts_t", SECRET).unwrap()
}

/// A client of `base` signing with [`credentials`].
pub fn client(base: &str, retry: RetryPolicy) -> Client {
    Client::builder()
        .base_url(base)
        .retry_policy(retry)
        .credentials(credentials())
        .build()
        .unwrap()
}

/// Two retries with short backoffs.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

/// A 401 refusing the timestamp, its `Date` the server's clock at `server_time`.
pub fn window_refusal(server_time: DateTime<Utc>) -> Step {
    let refusal = r#"{"statusCode":401,"message":"lmts-timestamp is outside the window","error":"Unauthorized"}"#;
    Step::json(401, refusal).header("date", &httpdate::fmt_http_date(server_time.into()))
}

/// The real service on 127.0.0.1:0 in dev mode.
pub struct RealServer {
    pub base: String,
    pub service: TokenService,
    pub dir: TempDir,
}

impl RealServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.dev = true;
        let server = Server::bind(config).await.unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let service = server.service().clone();
        tokio::spawn(server.run(std::future::pending()));
        Self { base, service, dir }
    }

    pub fn identity_token(&self, account: &str) -> String {
        DevIssuer::load_or_create(self.dir.path())
            .unwrap()
            .issue(account, "privy.io", DEV_APP_ID, now(), TimeDelta::hours(1))
            .unwrap()
    }
}

/// One scripted answer.
#[derive(Clone)]
pub struct Step {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Step {
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the scripted server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A server answering from a script and recording every request.
#[derive(Clone)]
pub struct Scripted {
    pub base: String,
    steps: Arc<Mutex<VecDeque<Step>>>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl Scripted {
    pub async fn start(steps: Vec<Step>) -> Self {
        let steps = Arc::new(Mutex::new(VecDeque::from(steps)));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let steps = steps.clone();
            let recorded = recorded.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let steps = steps.clone();
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(Recorded {
                        method: method.to_string(),
                        target: uri.path_and_query().unwrap().as_str().to_owned(),
                        headers,
                        body: body.to_vec(),
                        at: Instant::now(),
                    });
                    let step = steps.lock().unwrap().pop_front();
                    let Some(step) = step else {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted")
                            .into_response();
                    };
                    tokio::time::sleep(step.delay).await;
                    let mut response = Response::builder().status(step.status);
                    for (name, value) in &step.headers {
                        response = response.header(name, value);
                    }
                    response.body(axum::body::Body::from(step.body)).unwrap()
                }
            }
        };
        let router = Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            base,
            steps,
            recorded,
        }
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}

/// A server that reads each request, then drops the connection after `reply` (possibly
/// nothing, possibly a truncated answer). Counts connections.
pub async fn dropping_server(reply: &'static str) -> (String, Arc<Mutex<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(Mutex::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            *counter.lock().unwrap() += 1;
            let mut buffer = vec![0u8; 65536];
            let mut read = 0;
            // Read the head and any declared body.
            loop {
                let n = stream.read(&mut buffer[read..]).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                read += n;
                let text = String::from_utf8_lossy(&buffer[..read]).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if read >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream.write_all(reply.as_bytes()).await;
            drop(stream);
        }
    });
    (base, count)
}

pub const DERIVED: &str = r#"{"apiKey":"lmts_x","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=","tokenId":"lmts_x","createdAt":"2026-03-23T12:34:56.789Z","scopes":["trading"],"profile":{"id":3,"account":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}}"#;
