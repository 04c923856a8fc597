//! One module per subcommand.

mod bench;
mod demo;
mod dev;
mod partners;
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
            Command::Serve(args) => serve::run(args).await,
            Command::Tokens(command) => tokens::run(command, &output).await,
            Command::Sign(args) => sign::run(args, &output),
            Command::Demo => demo::run(&output).await,
            Command::Bench(args) => bench::run(args, &output).await,
            Command::Partners(command) => partners::run(command, &output).await,
            Command::Dev(command) => dev::run(command, &output),
            Command::Completions { .. } => Ok(()),
        }
    })
}
