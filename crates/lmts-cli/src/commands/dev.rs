//! `lmts dev identity-token`.

use chrono::TimeDelta;
use lmts_server::{clock::Clock, identity::dev::DevIssuer};

use crate::{
    cli::{DevCommand, IdentityTokenArgs},
    exit::{CommandError, ConfigError},
    output::Output,
};

/// A duration such as `90s`, `30m`, `1h` or `2d`.
fn parse_ttl(text: &str) -> Result<TimeDelta, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "--ttl {text:?} is not a duration such as 90s, 30m, 1h or 2d"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .and_then(TimeDelta::try_seconds)
        .filter(|ttl| *ttl > TimeDelta::zero())
        .ok_or_else(bad)
}

fn identity_token(args: IdentityTokenArgs, output: &Output) -> Result<(), CommandError> {
    let ttl = parse_ttl(&args.ttl)?;
    let issuer = DevIssuer::load_or_create(&args.data_dir.data_dir)?;
    let token = issuer.issue(
        &args.account,
        &args.issuer,
        &args.app_id,
        Clock::system().now(),
        ttl,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90s").unwrap(), TimeDelta::seconds(90));
        assert_eq!(parse_ttl("30m").unwrap(), TimeDelta::minutes(30));
        assert_eq!(parse_ttl("1h").unwrap(), TimeDelta::hours(1));
        assert_eq!(parse_ttl("2d").unwrap(), TimeDelta::days(2));
        for bad in ["", "h", "1", "1w", "-1h", "0s", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
