//! Serving HTTP/1.1 and HTTP/2 connections with a timeout on every phase and a bound on every
//! buffer (DESIGN 15): a request head must arrive within the header timeout, a connection
//! without a request in flight is closed after the same time, HTTP/2 peers must answer pings,
//! and HTTP/2 streams, windows and header lists are bounded. The number of open connections is
//! bounded too; on shutdown, in-flight requests get a grace period and then the connections
//! are dropped, whatever the clients do. With TLS, the handshake must end within the header
//! timeout too, and it counts against it: a connection without a request begun one header
//! timeout after it was accepted is closed (HTTP/2: told so with a GOAWAY) and dropped a
//! second later.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{body::Body, extract::ConnectInfo, Router};
use http::Request;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{watch, Semaphore},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Limits of the connections the service accepts.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// The longest a client may take to send a request head, and the longest a connection may
    /// stay open without a request in flight (HTTP/1.1 keep-alive and HTTP/2 alike).
    pub header_timeout: Duration,
    /// HTTP/2: how often an idle peer is pinged; a ping unanswered for as long closes the
    /// connection.
    pub http2_keepalive: Duration,
    /// HTTP/2: the most concurrent streams one connection may open.
    pub http2_max_streams: u32,
    /// The largest request head: HTTP/1.1 read buffer and HTTP/2 header list, in bytes.
    pub max_header_bytes: usize,
    /// The most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            http2_keepalive: Duration::from_secs(30),
            http2_max_streams: 64,
            max_header_bytes: 32 * 1024,
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// HTTP/2 flow-control windows: what a peer may send before the service has read it, per
/// stream and per connection, so that unread request bodies cost at most this much per
/// connection. A body larger than the stream window flows as the service reads it.
const HTTP2_STREAM_WINDOW: u32 = 16 * 1024;
const HTTP2_CONNECTION_WINDOW: u32 = 64 * 1024;

/// How long a connection that never began a request may take to close once told to.
const UNUSED_GRACE: Duration = Duration::from_secs(1);

/// Descriptors kept free for the database, key files and logs.
const RESERVED_DESCRIPTORS: usize = 64;

/// Serves `router` on `listener` (over TLS when given an acceptor) until `shutdown` completes,
/// then lets in-flight requests run for the grace period and drops whatever is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let builder = Arc::new(connection_builder(limits));
    let max_connections = effective_max_connections(limits.max_connections);
    let open = Arc::new(Semaphore::new(max_connections));
    let (phase, phase_seen) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    loop {
        // Shutdown is watched while waiting for a free slot too: at the cap, SIGTERM still ends
        // the accepting.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, or a connection reset before it was accepted: wait a
                // moment rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Answers are written whole; do not hold their last segment back for an ACK.
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            idle_timeout: limits.header_timeout,
            phase: phase_seen.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let activity = Arc::new(Activity::new());
            match tls {
                None => connection.run(stream, peer, activity).await,
                Some(acceptor) => connection.secure(&acceptor, stream, peer, activity).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = phase.send(Phase::Draining);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max_connections - open.available_permits(),
            "shutdown grace period over; dropping the connections still open"
        );
        let _ = phase.send(Phase::Closed);
        // Each connection task returns on `Closed`, dropping its connection; wait for that.
        let _ = open.acquire_many(all).await;
    }
}

/// Where the server is in its life, as every connection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting and serving.
    Serving,
    /// Shutting down: finish in-flight requests, take no new ones.
    Draining,
    /// The grace period is over: drop the connection now.
    Closed,
}

/// The hyper connection settings of `limits`.
fn connection_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .keep_alive_interval(limits.http2_keepalive)
        .keep_alive_timeout(limits.http2_keepalive);
    builder
}

/// `wanted`, or fewer when the process's descriptor limit would not allow that many.
fn effective_max_connections(wanted: usize) -> usize {
    let allowed = descriptor_limit()
        .map_or(wanted, |limit| limit.saturating_sub(RESERVED_DESCRIPTORS))
        .max(1);
    if allowed < wanted {
        tracing::warn!(
            wanted,
            allowed,
            "the descriptor limit (ulimit -n) caps open connections; raise it to serve more"
        );
    }
    wanted.min(allowed)
}

/// The soft limit on open descriptors, from `/proc/self/limits` (Linux); `None` elsewhere or
/// when unlimited.
fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One accepted connection and what it needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    idle_timeout: Duration,
    phase: watch::Receiver<Phase>,
}

impl Connection {
    /// Completes the TLS handshake, within the header timeout and before shutdown begins,
    /// then serves the connection.
    async fn secure(
        mut self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        activity: Arc<Activity>,
    ) {
        let secured = {
            let handshake = tokio::time::timeout(self.idle_timeout, acceptor.accept(stream));
            let stopping = self.phase.wait_for(|phase| *phase != Phase::Serving);
            tokio::select! {
                secured = handshake => secured,
                _ = stopping => return,
            }
        };
        match secured {
            Ok(Ok(stream)) => self.run(stream, peer, activity).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake not done in time"),
        }
    }

    /// Serves the connection until the peer closes it, it stays idle too long (`activity`
    /// began at its accepting), or shutdown begins (then in-flight requests finish first).
    async fn run<S>(mut self, stream: S, peer: SocketAddr, activity: Arc<Activity>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = {
            let (router, activity) = (self.router.clone(), activity.clone());
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let in_flight = activity.begin();
                let progress = activity.clone();
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await?;
                    drop(in_flight);
                    // Each frame of the answer is progress: a streamed answer (the gateway's)
                    // is not idleness, a stalled one is.
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(Progressing {
                            body,
                            activity: progress,
                        })
                    }))
                }
            })
        };
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut check = tokio::time::interval(self.idle_timeout.max(Duration::from_secs(1)) / 4);
        let mut closing = false;
        // A connection closing gracefully for being idle still owes its peer the answers in
        // flight; a peer that never reads them (a zero HTTP/2 window, unread pipelined answers)
        // would hold the slot forever, so the close is forced one idle timeout later.
        let force_close = tokio::time::sleep(Duration::MAX);
        tokio::pin!(force_close);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                changed = self.phase.changed() => {
                    if changed.is_err() || *self.phase.borrow() == Phase::Closed {
                        return;
                    }
                    if !closing {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                _ = check.tick(), if !closing => {
                    if activity.idle_for() >= self.idle_timeout {
                        tracing::debug!(%peer, "closing an idle connection");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        // One that never began a request owes no answer: it gets a moment to
                        // read the GOAWAY (HTTP/2), not another timeout, so a slow handshake
                        // and a slow first head share one.
                        let grace = if activity.used() {
                            self.idle_timeout
                        } else {
                            UNUSED_GRACE.min(self.idle_timeout)
                        };
                        force_close.as_mut().reset(Instant::now() + grace);
                    }
                }
                () = &mut force_close, if closing => {
                    tracing::debug!(%peer, "dropping a connection that would not close");
                    return;
                }
            }
        }
    }
}

/// Requests in flight on one connection, and when it last made progress.
struct Activity {
    started: Instant,
    /// Whether a request ever began.
    used: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when a request last ended or an answer last sent a frame.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            used: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// Marks a request in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.used.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Notes progress now: a request ended, or an answer's frame went out.
    fn touch(&self) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(now_ms, Ordering::Release);
    }

    /// Whether a request ever began on the connection.
    fn used(&self) -> bool {
        self.used.load(Ordering::Acquire)
    }

    /// How long the connection has made no progress (zero while a request is being handled).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(since)
    }
}

/// An answer's body that notes each frame as progress, and keeps its size hint (so that an
/// answer of known length still carries `Content-Length`).
struct Progressing {
    body: Body,
    activity: Arc<Activity>,
}

impl hyper::body::Body for Progressing {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(Some(Ok(_)))) {
            self.activity.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A request being handled (until its answer's head is ready).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
