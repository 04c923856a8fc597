//! `lmts`: serve the API-token service, administer partners, mint dev identity tokens.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod exit;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", exit::chain(&*error));
            ExitCode::from(exit::code(&*error))
        }
    }
}
