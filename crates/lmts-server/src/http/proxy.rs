//! The verifying reverse proxy (`lmts gateway`, `lmts serve --upstream`): every request passes
//! the gateway ([`super::gateway::pass`]) and, allowed, goes to the upstream over pooled
//! keep-alive connections with its target byte for byte, hop-by-hop headers dropped (RFC 9110
//! section 7.6.1), the grant headers set, and both bodies streamed (a signed request's body is
//! read whole first, because its signature covers it).

use std::{net::IpAddr, time::Duration};

use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{
    header::{self, HeaderName},
    uri::{Authority, PathAndQuery, Scheme},
    HeaderMap, HeaderValue, Uri, Version,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use super::{
    error::ApiError,
    gateway::{pass, GatewayState, PassedBody},
    hmac::{head_of, peer_address, raw_target},
};
use crate::service::{Grant, ServiceError};

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
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle: 256,
        }
    }
}

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Not an absolute `http://host[:port]` URL.
    #[error("{0:?} is not an absolute http:// URL (e.g. http://127.0.0.1:9000)")]
    NotAUrl(String),
    /// An `https://` upstream.
    #[error("https:// upstreams are not supported yet: reach the upstream over http:// on a private network")]
    Https,
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
    client: Client<HttpConnector, Body>,
    settings: UpstreamSettings,
}

impl Upstream {
    /// The upstream at `url` (`http://host[:port]`).
    pub fn new(url: &str, settings: UpstreamSettings) -> Result<Self, UpstreamError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| UpstreamError::NotAUrl(url.to_owned()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(UpstreamError::NotAUrl(url.to_owned()));
        };
        if *scheme == Scheme::HTTPS {
            return Err(UpstreamError::Https);
        }
        if *scheme != Scheme::HTTP {
            return Err(UpstreamError::NotAUrl(url.to_owned()));
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            return Err(UpstreamError::HasPath(url.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .build(connector);
        Ok(Self {
            scheme: scheme.clone(),
            authority: authority.clone(),
            client,
            settings,
        })
    }

    /// The upstream's origin, as `http://host:port`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Sends `request` and answers the upstream's response head, its body still streaming.
    async fn send(&self, request: Request) -> Result<Response, ApiError> {
        let target = request.uri().path_and_query().map(PathAndQuery::to_string);
        let sent = self.client.request(request);
        let response = match tokio::time::timeout(self.settings.timeout, sent).await {
            Err(_) => {
                tracing::warn!(upstream = %self.authority, ?target, "upstream did not answer in time");
                return Err(ApiError::UpstreamTimeout);
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream = %self.authority, error = %lmts_core::error_chain::error_chain(&error), "upstream unreachable");
                return Err(ApiError::UpstreamUnreachable);
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        parts.version = Version::default();
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// The state of the proxy: the gateway's, and where to.
#[derive(Debug, Clone)]
pub struct ProxyState {
    /// The gateway's doors' state.
    pub gateway: GatewayState,
    /// The upstream.
    pub upstream: Upstream,
}

/// Every route the router does not answer itself: passed through the gateway, then proxied.
pub async fn proxy(State(state): State<ProxyState>, request: Request) -> Response {
    match forward(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward(state: &ProxyState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let target = raw_target(&parts.uri);
    let head = head_of(&state.gateway.service, &parts, &parts.method, target);
    let (grant, body) = pass(&state.gateway, head, body).await?;
    let uri = Uri::builder()
        .scheme(state.upstream.scheme.clone())
        .authority(state.upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| ApiError::from(ServiceError::invalid("request target is not forwardable")))?;
    let peer = peer_address(&parts.extensions);
    let mut outgoing = Request::new(Body::empty());
    *outgoing.method_mut() = parts.method.clone();
    *outgoing.uri_mut() = uri;
    *outgoing.version_mut() = Version::HTTP_11;
    *outgoing.headers_mut() = upstream_headers(state, &parts.headers, &parts.uri, peer, &grant);
    // A read body's allowance is held until the upstream has answered.
    let (body, _allowance) = match body {
        PassedBody::Stream(body) => (body, None),
        PassedBody::Read(read) => (Body::from(read.bytes.clone()), Some(read)),
    };
    *outgoing.body_mut() = body;
    state.upstream.send(outgoing).await
}

/// The headers the upstream gets: the client's, less hop-by-hop ones and any grant header,
/// with the grant's, `Host` of the upstream and the `X-Forwarded-*` family.
fn upstream_headers(
    state: &ProxyState,
    received: &HeaderMap,
    uri: &Uri,
    peer: Option<IpAddr>,
    grant: &Grant,
) -> HeaderMap {
    let mut headers = received.clone();
    remove_hop_by_hop(&mut headers);
    headers.remove(header::EXPECT);
    grant.apply_to(&mut headers);
    let original_host = received.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
    });
    if let Some(host) = original_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Ok(host) = HeaderValue::try_from(state.upstream.authority.as_str()) {
        headers.insert(header::HOST, host);
    }
    set_forwarded_for(&mut headers, state, peer);
    headers
}

/// `X-Forwarded-For`: the chain a trusted proxy sent with the peer appended, or the peer alone
/// (what an untrusted client claims is dropped).
fn set_forwarded_for(headers: &mut HeaderMap, state: &ProxyState, peer: Option<IpAddr>) {
    let name = HeaderName::from_static("x-forwarded-for");
    let Some(peer) = peer else {
        headers.remove(&name);
        return;
    };
    let trusted = state
        .gateway
        .service
        .settings()
        .trusted_proxies
        .trusts(peer);
    let chain: Vec<&str> = if trusted {
        headers
            .get_all(&name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let mut value = chain.join(", ");
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str(&peer.to_string());
    headers.remove(&name);
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
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
