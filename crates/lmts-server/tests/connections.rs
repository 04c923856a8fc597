//! Connections have a timeout on every phase and a bound on every buffer (issue #12, finding 2):
//! a half-sent request head, an idle keep-alive connection and an idle HTTP/2 connection are
//! closed by the server; an oversized head is refused; HTTP/2 advertises its stream limit; and
//! shutdown ends within its grace period however slow a client is. Every wait is bounded, and
//! what is asserted is that the server acted, never how fast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Long enough for any server-side timeout these tests configure to have fired many times.
const PATIENCE: Duration = Duration::from_secs(15);

async fn short_timeouts() -> TestServer {
    TestServer::start_with(|config| {
        config.connections.header_timeout = Duration::from_secs(1);
        config.connections.http2_max_streams = 7;
        config.connections.max_header_bytes = 16 * 1024;
        config.connections.shutdown_grace = Duration::from_secs(1);
    })
    .await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or resets it); panics if it never does.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    received
}

/// Sends `bytes` on a fresh connection and answers what came back before the server closed it.
async fn answer_before_close(server: &TestServer, bytes: &[u8]) -> String {
    let mut stream = connect(server).await;
    let _ = stream.write_all(bytes).await;
    String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned()
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed() {
    let server = short_timeouts().await;
    let answer = answer_before_close(&server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(!answer.contains("200 OK"), "no request was completed");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = short_timeouts().await;
    let answer = answer_before_close(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK"),
        "the request was answered before the connection closed"
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = short_timeouts().await;
    let big = "a".repeat(64 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = answer_before_close(&server, request.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "refused, not served: {answer:.80}"
    );
}

/// An HTTP/2 connection by prior knowledge, its driver spawned; the handle ends when the
/// server closes the connection.
async fn http2_connection(
    server: &TestServer,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    http2_connection_with(server, &h2::client::Builder::new()).await
}

/// [`http2_connection`] with the client settings of `builder`.
async fn http2_connection_with(
    server: &TestServer,
    builder: &h2::client::Builder,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, connection) = builder.handshake(connect(server).await).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

/// A GET of `/health` on an HTTP/2 connection; answers the status.
async fn http2_health(
    server: &TestServer,
    sender: &mut h2::client::SendRequest<bytes::Bytes>,
) -> u16 {
    let request = http::Request::get(server.url("/health")).body(()).unwrap();
    let ready = sender.clone().ready().await.unwrap();
    *sender = ready;
    let (response, _) = sender.send_request(request, true).unwrap();
    response.await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_its_stream_limit_advertised() {
    let server = short_timeouts().await;
    let (mut sender, driver) = http2_connection(&server).await;
    assert_eq!(http2_health(&server, &mut sender).await, 200);
    assert_eq!(
        sender.current_max_send_streams(),
        7,
        "the server's SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the server closed the idle HTTP/2 connection")
        .unwrap();
}

#[tokio::test]
async fn a_peer_that_never_reads_its_answer_is_dropped() {
    let server = short_timeouts().await;
    // A window of zero: the server can send the answer's head but never its body.
    let mut zero_window = h2::client::Builder::new();
    zero_window.initial_window_size(0);
    let (mut sender, driver) = http2_connection_with(&server, &zero_window).await;
    let request = http::Request::get(server.url("/health")).body(()).unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let _pending = response;
    tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the server dropped the connection it could not finish")
        .unwrap();
}

#[tokio::test]
async fn shutdown_ends_within_its_grace_period_whatever_clients_do() {
    let server = short_timeouts().await;
    let (creds, _) = server.derive(ALICE, "{}").await;
    // A signed request whose body never comes: in flight until the server gives up on it.
    let mut head =
        String::from("GET /auth/api-tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n");
    for (name, value) in sign(&creds, now(), "GET", "/auth/api-tokens", "") {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n{");
    let mut stream = connect(&server).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut idle, _) = http2_connection(&server).await;
    assert_eq!(http2_health(&server, &mut idle).await, 200);
    tokio::time::timeout(PATIENCE, server.stop())
        .await
        .expect("the server stopped although clients held connections open");
}
