//! An upstream for gateway tests: a real HTTP server on loopback that records every request
//! that reaches it (method, target as received, headers, body) and answers 200 with a header
//! of its own, a hop-by-hop header the gateway must drop, and the request's body echoed (with
//! its `Content-Type`).
//! Targets under `/slow` answer only after five seconds, to trip a gateway's timeout; under
//! `/drip`, the answer is five chunks (`drip 0` to `drip 4`) sent 600 ms apart; under `/ws`, a
//! request with `Upgrade: websocket` is answered 101 and every byte sent after it comes back.
//!
//! [`RecordingUpstream::verifying`] stands in for a service that checks signatures itself (an
//! order API behind nothing, say): each request's `lmts-*` signature is checked as SPEC A4 and
//! B7 say, over the raw target and body bytes, with one credential; a signed request is
//! answered 200 with the JSON `{"method", "target", "body"}` it received and the header
//! `x-recorder: verified`, any other 401 with an A5 body naming the reason.
//!
//! [`RecordingUpstream::start_tls`] serves the same over TLS, with a certificate the test
//! issued ([`crate::tls`]).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    response::{IntoResponse, Response},
    Json, Router,
};
use http::{HeaderMap, StatusCode};
use lmts_core::{
    clock::Clock,
    signing::{
        CanonicalMessage, DEFAULT_WINDOW, HEADER_API_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    },
    HmacCredentials, Signer,
};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::tls::IssuedCertificate;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The request target, path and query, as received.
    pub target: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// For [`RecordingUpstream::verifying`]: `Ok` when the three headers name the expected
    /// token and sign this request within the window, otherwise why not; `None` when no
    /// signature is checked.
    pub verdict: Option<Result<(), String>>,
}

impl Seen {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The recording upstream; stops when dropped.
#[derive(Debug)]
pub struct RecordingUpstream {
    address: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What the server task and its handle share.
#[derive(Debug)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    expected: Option<Expected>,
}

/// The credential a verifying upstream checks signatures with.
struct Expected {
    token_id: String,
    signer: Signer,
}

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expected")
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

impl RecordingUpstream {
    /// Starts one on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::serve(None, None).await
    }

    /// Starts one that speaks HTTPS only, presenting `certificate`.
    pub async fn start_tls(certificate: &IssuedCertificate) -> std::io::Result<Self> {
        Self::serve(None, Some(certificate.server_config())).await
    }

    /// Starts one that checks every request's signature with `credentials` (module docs).
    pub async fn verifying(credentials: &HmacCredentials) -> std::io::Result<Self> {
        Self::serve(
            Some(Expected {
                token_id: credentials.token_id.to_string(),
                signer: credentials.signer(),
            }),
            None,
        )
        .await
    }

    async fn serve(
        expected: Option<Expected>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            expected,
        });
        let router = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&shared));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = match tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }),
            Some(config) => tokio::spawn(serve_tls(listener, router, config)),
        };
        Ok(Self {
            address,
            scheme,
            shared,
            task,
        })
    }

    /// Its origin, `http://127.0.0.1:PORT` (`https://` when started with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    /// Its address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests it received.
    pub fn count(&self) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on `listener` over TLS until aborted.
async fn serve_tls(listener: TcpListener, router: Router, config: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

async fn record(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let echo = request.uri().path().starts_with("/ws")
        && request
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|value| value == "websocket");
    let upgrade = echo.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let slow = target.starts_with("/slow");
    let drip = target.starts_with("/drip");
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();
    let method = parts.method.to_string();
    let verdict = shared
        .expected
        .as_ref()
        .map(|expected| verdict(expected, &method, &target, &parts.headers, &body));
    let checked = verdict
        .clone()
        .map(|verdict| checked_answer(verdict, &method, &target, &body));
    shared
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            method,
            target,
            headers: parts.headers,
            body: body.to_vec(),
            verdict,
        });
    if let Some(answer) = checked {
        return answer;
    }
    if slow {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if let Some(upgrade) = upgrade {
        return switch_to_echo(upgrade);
    }
    let mut response = if drip {
        Response::new(Body::from_stream(dripping()))
    } else {
        Response::new(Body::from(body))
    };
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(http::header::CONTENT_TYPE, content_type);
    }
    headers.insert("x-upstream", http::HeaderValue::from_static("recorded"));
    headers.insert("x-hop", http::HeaderValue::from_static("drop me"));
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("x-hop"),
    );
    response
}

/// Five chunks, 600 ms apart.
fn dripping() -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::unfold(0, |n| async move {
        if n == 5 {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        Some((Ok(format!("drip {n}\n")), n + 1))
    })
}

/// Answers 101 and, once the connection has switched, echoes every byte back.
fn switch_to_echo(upgrade: hyper::upgrade::OnUpgrade) -> Response {
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    response
}

/// The signature check of one request.
fn verdict(
    expected: &Expected,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("{name} is missing"))
    };
    let api_key = header(HEADER_API_KEY)?;
    if api_key != expected.token_id {
        return Err(format!(
            "{HEADER_API_KEY} {api_key:?} is not the expected token"
        ));
    }
    let message = CanonicalMessage::new(header(HEADER_TIMESTAMP)?, method, target, body);
    expected
        .signer
        .verify(
            &message,
            header(HEADER_SIGNATURE)?,
            Clock::system().now(),
            DEFAULT_WINDOW,
        )
        .map(drop)
        .map_err(|error| error.to_string())
}

/// A verifying upstream's answer: what it received, or why the signature did not hold.
fn checked_answer(
    verdict: Result<(), String>,
    method: &str,
    target: &str,
    body: &[u8],
) -> Response {
    match verdict {
        Ok(()) => (
            StatusCode::OK,
            [("x-recorder", "verified")],
            Json(serde_json::json!({
                "method": method,
                "target": target,
                "body": String::from_utf8_lossy(body),
            })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "statusCode": 401,
                "message": reason,
                "error": "Unauthorized",
            })),
        )
            .into_response(),
    }
}
