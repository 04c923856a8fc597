//! The verifying reverse proxy (`lmts gateway`, `lmts serve --upstream`): every request passes
//! the gateway ([`super::gateway::pass`]) and, allowed, goes to the upstream over pooled
//! keep-alive connections with its target byte for byte, hop-by-hop headers dropped (RFC 9110
//! section 7.6.1), the grant headers set, and both bodies streamed (a signed request's body is
//! read whole first, because its signature covers it).

use std::{fmt::Write as _, path::PathBuf, sync::Arc, time::Duration};

use http_body_util::BodyExt;
use hyper::{body::Incoming, upgrade::OnUpgrade};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{
    header::{self, HeaderName},
    request::Parts,
    uri::{Authority, Scheme},
    HeaderMap, HeaderValue, StatusCode, Uri, Version,
};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};

use super::{
    error::ApiError,
    gateway::{pass, GatewayState, PassedBody},
    hmac::{head_of, peer_address, raw_target},
};
use crate::{
    service::{canonical_address, Grant, ServiceError, TunnelGuard},
    tls,
};
use lmts_core::signing::{HEADER_API_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// How the proxy treats its upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The longest wait for the upstream's response head (then 504).
    pub timeout: Duration,
    /// The longest wait to connect (then 502).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// The most idle connections kept.
    pub pool_max_idle: usize,
    /// The most requests at the upstream at once (each holds a connection until its answer's
    /// last byte); past it, 503. Counts against `ulimit -n` beside the client connections.
    pub max_in_flight: usize,
    /// The most WebSocket tunnels open at once; past it, 503.
    pub max_tunnels: usize,
    /// The longest a WebSocket tunnel stays open (a revoke does not close one already open).
    pub tunnel_lifetime: Duration,
    /// The roots an `https://` upstream's certificate is checked against (`--upstream-ca`,
    /// PEM); `None`: the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle: 256,
            max_in_flight: 1024,
            max_tunnels: 256,
            tunnel_lifetime: Duration::from_secs(3600),
            ca_file: None,
        }
    }
}

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Not an absolute `http://` or `https://` URL.
    #[error("{0:?} is not an absolute http:// or https:// URL (e.g. http://127.0.0.1:9000)")]
    NotAUrl(String),
    /// Roots given for an upstream reached without TLS.
    #[error("--upstream-ca is for an https:// upstream; this one is reached over plain http://")]
    CaWithoutTls,
    /// The roots to check an `https://` upstream against could not be loaded.
    #[error("{0}")]
    Roots(String),
    /// A URL with a path or query: the target is forwarded unchanged, so there is nothing to
    /// join it to.
    #[error("the upstream URL must not have a path or query ({0:?}): targets are forwarded byte for byte")]
    HasPath(String),
}

/// The service behind the proxy, and the pooled client that reaches it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// `authority` as the `Host` header every forwarded request carries.
    host: HeaderValue,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    settings: UpstreamSettings,
    in_flight: Arc<Semaphore>,
    tunnels: Arc<Semaphore>,
}

impl Upstream {
    /// The upstream at `url` (`http://host[:port]` or `https://host[:port]`).
    pub fn new(url: &str, settings: UpstreamSettings) -> Result<Self, UpstreamError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| UpstreamError::NotAUrl(url.to_owned()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(UpstreamError::NotAUrl(url.to_owned()));
        };
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(UpstreamError::NotAUrl(url.to_owned()));
        }
        if authority.as_str().contains('@') {
            return Err(UpstreamError::NotAUrl(
                "(a URL with credentials: they would travel in every Host header)".to_owned(),
            ));
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            return Err(UpstreamError::HasPath(url.to_owned()));
        }
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .build(connector(scheme, &settings)?);
        let host = HeaderValue::try_from(authority.as_str())
            .map_err(|_| UpstreamError::NotAUrl(url.to_owned()))?;
        Ok(Self {
            host,
            scheme: scheme.clone(),
            authority: authority.clone(),
            client,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            tunnels: Arc::new(Semaphore::new(settings.max_tunnels)),
            settings,
        })
    }

    /// The upstream's origin, as `scheme://host:port`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Sends `request` and answers the upstream's response head, its body still streaming (and
    /// holding its place among the requests in flight until its last byte). A request that
    /// asked to switch protocols (`client_upgrade`), answered 101, becomes a tunnel between
    /// the client and the upstream, holding its place until either side closes.
    async fn send(&self, request: Request, switch: Option<Switch>) -> Result<Response, ApiError> {
        let places = match switch {
            Some(_) => &self.tunnels,
            None => &self.in_flight,
        };
        let Ok(place) = Arc::clone(places).try_acquire_owned() else {
            tracing::debug!(upstream = %self.authority, "upstream requests in flight at their limit");
            return Err(ServiceError::Unavailable(
                "the gateway has as many requests at the service behind it as it allows; retry shortly".into(),
            )
            .into());
        };
        let uri = request.uri().clone();
        let sent = self.client.request(request);
        let response = match tokio::time::timeout(self.settings.timeout, sent).await {
            Err(_) => {
                tracing::warn!(%uri, "upstream did not answer in time");
                return Err(ApiError::UpstreamTimeout);
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream = %self.authority, error = %lmts_core::error_chain::error_chain(&error), "upstream unreachable");
                return Err(ApiError::UpstreamUnreachable);
            }
            Ok(Ok(response)) => response,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let switched = response
                .headers()
                .get(header::UPGRADE)
                .is_some_and(|protocol| protocol.as_bytes().eq_ignore_ascii_case(b"websocket"));
            return match switch {
                Some(switch) if switched => Ok(tunnel(
                    response,
                    switch,
                    place,
                    self.settings.tunnel_lifetime,
                )),
                _ => {
                    tracing::warn!(upstream = %self.authority, "upstream switched protocols unasked");
                    Err(ApiError::UpstreamUnreachable)
                }
            };
        }
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        parts.version = Version::default();
        let body = body.map_frame(move |frame| {
            let _held = &place;
            frame
        });
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// The connector to the upstream: TCP, and over it TLS for an `https://` one.
fn connector(
    scheme: &Scheme,
    settings: &UpstreamSettings,
) -> Result<HttpsConnector<HttpConnector>, UpstreamError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new();
    let builder = if *scheme == Scheme::HTTPS {
        let config = tls::upstream_client_config(settings.ca_file.as_deref())
            .map_err(|error| UpstreamError::Roots(error.to_string()))?;
        builder.with_tls_config(config).https_only()
    } else if settings.ca_file.is_some() {
        return Err(UpstreamError::CaWithoutTls);
    } else {
        let config =
            tls::trusting_nothing().map_err(|error| UpstreamError::Roots(error.to_string()))?;
        builder.with_tls_config(config).https_or_http()
    };
    Ok(builder.enable_http1().wrap_connector(http))
}

/// Answers the upstream's 101 to the client and, once both sides have switched, copies bytes
/// between them until either closes.
fn tunnel(
    mut upstream: hyper::Response<Incoming>,
    switch: Switch,
    place: OwnedSemaphorePermit,
    lifetime: Duration,
) -> Response {
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let Switch { client, revoked } = switch;
    tokio::spawn(async move {
        let _place = place;
        match tokio::join!(client, upstream_upgrade) {
            (Ok(client), Ok(upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                let revoked = async move {
                    match revoked {
                        Some(mut guard) => guard.closed().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::timeout(lifetime, copied) => {}
                    () = revoked => tracing::debug!("a tunnel closed: its token was revoked or expired"),
                }
            }
            (client, upstream) => tracing::debug!(
                client_ok = client.is_ok(),
                upstream_ok = upstream.is_ok(),
                "a protocol switch did not complete"
            ),
        }
    });
    let (mut parts, _) = upstream.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        parts.headers.insert(header::UPGRADE, protocol);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    parts.version = Version::default();
    Response::from_parts(parts, Body::empty())
}

/// A request's switch to WebSocket: the client's side of it, and the hold on the token that
/// signed the handshake (none on a public route), whose revocation closes the tunnel.
struct Switch {
    client: OnUpgrade,
    revoked: Option<TunnelGuard>,
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with `Upgrade`),
/// when it is WebSocket: no other switch is forwarded.
fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(header::UPGRADE)?;
    (asks && protocol.as_bytes().eq_ignore_ascii_case(b"websocket")).then(|| protocol.clone())
}

/// The state of the proxy: the gateway's, and where to.
#[derive(Debug, Clone)]
pub struct ProxyState {
    /// The gateway's doors' state.
    pub gateway: GatewayState,
    /// The upstream.
    pub upstream: Upstream,
    /// How clients reach this listener, as `X-Forwarded-Proto` says it: `http` or `https`.
    pub client_scheme: &'static str,
}

/// Every route the router does not answer itself: passed through the gateway, then proxied.
pub async fn proxy(State(state): State<ProxyState>, request: Request) -> Response {
    match forward(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward(state: &ProxyState, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let upgrade = requested_upgrade(&parts.headers);
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let upgrade = upgrade.filter(|_| client_upgrade.is_some());
    let target = raw_target(&parts.uri);
    // Before the check: a revocation between the check and the tunnel closes the tunnel.
    let epoch = client_upgrade
        .as_ref()
        .map(|_| state.gateway.service.tunnel_epoch());
    let head = head_of(&state.gateway.service, &parts, &parts.method, target);
    let (grant, body) = pass(&state.gateway, head, body).await?;
    let uri = Uri::builder()
        .scheme(state.upstream.scheme.clone())
        .authority(state.upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| ApiError::from(ServiceError::invalid("request target is not forwardable")))?;
    let read_length = match &body {
        PassedBody::Read(read) => Some(read.bytes.len()),
        PassedBody::Stream(_) => None,
    };
    let mut outgoing = Request::new(Body::empty());
    *outgoing.method_mut() = parts.method.clone();
    *outgoing.uri_mut() = uri;
    *outgoing.version_mut() = Version::HTTP_11;
    *outgoing.headers_mut() = upstream_headers(state, &parts, &grant, read_length);
    if let Some(protocol) = upgrade {
        let headers = outgoing.headers_mut();
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // A read body's allowance is held until the upstream has answered.
    let (body, _allowance) = match body {
        PassedBody::Stream(body) => (body, None),
        PassedBody::Read(read) => (Body::from(read.bytes.clone()), Some(read)),
    };
    *outgoing.body_mut() = body;
    let switch = client_upgrade.zip(epoch).map(|(client, epoch)| Switch {
        client,
        revoked: match &grant {
            Grant::Token(token) => Some(state.gateway.service.open_tunnel(token, epoch)),
            Grant::Public => None,
        },
    });
    state.upstream.send(outgoing, switch).await
}

/// Headers some servers read as another method or path than the request's: never forwarded,
/// since the policy decided on the request's own.
const OVERRIDE_HEADERS: [&str; 4] = [
    "x-http-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-prefix",
];

/// Headers that describe the client or the original request: believed only from a trusted
/// proxy, and set by lmts otherwise.
const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "true-client-ip",
];

/// The headers the upstream gets: the client's, less hop-by-hop ones, any grant header, and
/// (on a public route, where nothing was verified) the `lmts-*` signing headers; with the
/// grant's, `Host` of the upstream, the `X-Forwarded-*` family, and the length of a body read
/// whole.
fn upstream_headers(
    state: &ProxyState,
    parts: &Parts,
    grant: &Grant,
    read_length: Option<usize>,
) -> HeaderMap {
    let received = &parts.headers;
    let mut headers = received.clone();
    remove_hop_by_hop(&mut headers);
    headers.remove(header::EXPECT);
    for name in OVERRIDE_HEADERS {
        headers.remove(name);
    }
    grant.apply_to(&mut headers);
    if matches!(grant, Grant::Public) {
        for name in [HEADER_API_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            headers.remove(name);
        }
    }
    match read_length {
        Some(length) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        // A chunked body goes on chunked: a length beside it would cut it short.
        None if received.contains_key(header::TRANSFER_ENCODING) => {
            headers.remove(header::CONTENT_LENGTH);
        }
        None => {}
    }
    set_forwarding(&mut headers, state, parts);
    headers
}

/// `Host` becomes the upstream's; `X-Forwarded-For` gets the peer appended to a trusted
/// proxy's chain (or alone); `X-Forwarded-Host` and `-Proto` are a trusted proxy's, else the
/// request's own. From anyone else, what [`FORWARDING_HEADERS`] claim is dropped first.
fn set_forwarding(headers: &mut HeaderMap, state: &ProxyState, parts: &Parts) {
    let peer = peer_address(&parts.extensions).map(canonical_address);
    let trusted_proxies = &state.gateway.service.settings().trusted_proxies;
    // The chain as one value: a trusted proxy's hops, then the peer.
    let mut forwarded_for = String::new();
    match peer {
        Some(peer) if trusted_proxies.trusts(peer) => {
            let hops = headers.get_all("x-forwarded-for").iter();
            for hop in hops.filter_map(|value| value.to_str().ok()) {
                forwarded_for.push_str(hop);
                forwarded_for.push_str(", ");
            }
        }
        _ => {
            for name in FORWARDING_HEADERS {
                headers.remove(name);
            }
        }
    }
    if let Some(peer) = peer {
        // Only a peer can be trusted, so the hops above always have this after them.
        let _ = write!(forwarded_for, "{peer}");
    }
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        let authority = parts.uri.authority()?;
        HeaderValue::try_from(authority.as_str()).ok()
    });
    let forwarded_host = HeaderName::from_static("x-forwarded-host");
    match original_host {
        Some(host) if !headers.contains_key(&forwarded_host) => {
            headers.insert(forwarded_host, host);
        }
        _ => {}
    }
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static(state.client_scheme));
    }
    headers.insert(header::HOST, state.upstream.host.clone());
    headers.remove("x-forwarded-for");
    if let Ok(value) = HeaderValue::try_from(forwarded_for) {
        if !value.is_empty() {
            headers.insert("x-forwarded-for", value);
        }
    }
}

/// The hop-by-hop headers of RFC 9110 section 7.6.1: those `Connection` names, and the ones
/// that only ever describe one connection.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}
