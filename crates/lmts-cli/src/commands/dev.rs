//! `lmts dev identity-token`.

use lmts_server::{clock::Clock, identity::dev::DevIssuer};

use crate::{
    cli::{DevCommand, IdentityTokenArgs},
    exit::CommandError,
    output::Output,
};

fn identity_token(args: IdentityTokenArgs, output: &Output) -> Result<(), CommandError> {
    let issuer = DevIssuer::load_or_create(&args.data_dir.data_dir)?;
    let token = issuer.issue(
        &args.account,
        &args.issuer,
        &args.app_id,
        Clock::system().now(),
        args.ttl,
    )?;
    if output.is_json() {
        output.json(&serde_json::json!({ "identityToken": token }));
    } else {
        println!("{token}");
    }
    Ok(())
}

/// Runs a `dev` subcommand.
pub fn run(command: DevCommand, output: &Output) -> Result<(), CommandError> {
    match command {
        DevCommand::IdentityToken(args) => identity_token(args, output),
    }
}
