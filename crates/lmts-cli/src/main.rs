//! `lmts`: serve the API-token service, derive/list/revoke tokens, sign and send requests, administer
//! partners, mint dev identity tokens, and walk the whole lifecycle with `lmts demo`.
//!
//! The server commands (`serve`, `partners`, `dev`, `demo`, `bench`) come with the default
//! `server` feature; without it (`--no-default-features`) `lmts` is a client of `lmts-core` and
//! `lmts-sdk` alone: `tokens`, `sign`, `request` and `completions`.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod credentials_file;
mod exit;
mod output;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::Output::error(&exit::message(&*error));
            ExitCode::from(exit::code(&*error))
        }
    }
}
