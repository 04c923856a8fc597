//! One module per subcommand; the server commands' only with the `server` feature.

#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod backup;
#[cfg(feature = "server")]
mod bench;
#[cfg(feature = "server")]
mod demo;
#[cfg(feature = "server")]
mod dev;
#[cfg(feature = "server")]
mod gateway;
#[cfg(feature = "server")]
mod keys;
#[cfg(feature = "server")]
mod partners;
#[cfg(feature = "server")]
mod policy;
mod request;
#[cfg(feature = "server")]
mod serve;
mod sign;
mod tokens;

use clap::CommandFactory;

use crate::{
    cli::{Cli, Command},
    exit::CommandError,
    output::Output,
};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CommandError> {
    let output = Output::new(cli.output, cli.quiet);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "lmts", &mut std::io::stdout());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "server")]
            Command::Serve(args) => serve::run(args).await,
            #[cfg(feature = "server")]
            Command::Gateway(args) => gateway::run(args).await,
            Command::Tokens(command) => tokens::run(command, &output).await,
            Command::Sign(args) => sign::run(args, &output),
            Command::Request(args) => request::run(args, &output).await,
            #[cfg(feature = "server")]
            Command::Demo => demo::run(&output).await,
            #[cfg(feature = "server")]
            Command::Bench(args) => bench::run(args, &output).await,
            #[cfg(feature = "server")]
            Command::Partners(command) => partners::run(command, &output).await,
            #[cfg(feature = "server")]
            Command::Admin(command) => admin::run(command, &output).await,
            #[cfg(feature = "server")]
            Command::Dev(command) => dev::run(command, &output),
            #[cfg(feature = "server")]
            Command::Policy(command) => policy::run(command, &output),
            #[cfg(feature = "server")]
            Command::Keys(command) => keys::run(command, &output).await,
            #[cfg(feature = "server")]
            Command::Backup(args) => backup::backup(args, &output).await,
            #[cfg(feature = "server")]
            Command::Restore(args) => backup::restore(args, &output).await,
            Command::Completions { .. } => Ok(()),
        }
    })
}
