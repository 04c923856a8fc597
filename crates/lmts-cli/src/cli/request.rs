//! The command line of `lmts request`: one signed request to any path of the service.

use clap::Args;

use super::{CredentialArgs, ServiceArgs};

/// Options of `lmts request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The HTTP method: GET, POST, PUT, PATCH, DELETE, or any other.
    pub method: String,
    /// The path and query, relative to the base URL, e.g. /orders?market=btc. Characters a URL
    /// may not hold are percent-encoded; the target is signed exactly as then sent.
    pub path: String,
    /// The body: text, @FILE to send a file's exact bytes, or @- to read standard input.
    #[arg(long)]
    pub body: Option<String>,
    /// A request header, "Name: value"; repeat for several. With a body and no Content-Type
    /// given, the content type is application/json.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}
