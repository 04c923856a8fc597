//! The ceiling of the stack the gateway is built on (BENCHMARKS.md, issue #13): a reverse
//! proxy of hyper and hyper-util alone, with nothing checked, logged or counted.
//!
//! `cargo run --release -p lmts-server --example bare_proxy -- LISTEN UPSTREAM`

use std::{net::SocketAddr, sync::Arc};

use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_proxy LISTEN UPSTREAM (e.g. 127.0.0.1:19103 127.0.0.1:19100)";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: Arc<str> = args.next().ok_or(usage)?.into();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), upstream.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `request`, its target unchanged, to the upstream.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Arc<str>,
    mut request: Request<Incoming>,
) -> Result<Response<Incoming>, BoxError> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = format!("http://{upstream}{target}").parse()?;
    *request.uri_mut() = uri;
    Ok(client.request(request).await?)
}
