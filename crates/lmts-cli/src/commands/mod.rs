//! One module per subcommand.

mod dev;
mod partners;
mod serve;

use crate::{cli::Cli, cli::Command, exit::CommandError};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Partners(command) => partners::run(command).await,
            Command::Dev(command) => dev::run(command).await,
        }
    })
}
