//! `lmts gateway`: the verifying reverse proxy of SPEC C1, on the same store as `lmts serve`.

use lmts_server::server::{shutdown_signal, GatewayConfig, Server, ServerConfig};

use super::{
    policy,
    serve::{init_logging, node_config, upstream_settings},
};
use crate::{cli::GatewayArgs, exit::CommandError};

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(args: GatewayArgs) -> Result<(), CommandError> {
    init_logging(args.node.log_format);
    let policy = policy::load(&args.policy)?;
    let config = ServerConfig {
        token_endpoints: false,
        gateway: GatewayConfig {
            policy: Some(policy),
            upstream: Some(args.upstream),
            upstream_settings: upstream_settings(&args.upstream_args),
        },
        ..node_config(args.node)?
    };
    Server::bind(config).await?.run(shutdown_signal()).await?;
    Ok(())
}
