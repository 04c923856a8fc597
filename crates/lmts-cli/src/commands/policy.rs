//! `lmts policy check | explain`: the gateway's route policy, read and judged offline.

use std::path::Path;

use lmts_core::Scope;
use lmts_server::service::policy::{Decision, RoutePolicy};
use serde_json::json;

use crate::{
    cli::PolicyCommand,
    exit::{CommandError, ConfigError, StepFailed},
    output::Output,
};

/// Runs a `policy` subcommand.
pub fn run(command: PolicyCommand, output: &Output) -> Result<(), CommandError> {
    match command {
        PolicyCommand::Check { file } => {
            let policy = load(&file)?;
            let (rules, default) = policy.summary();
            if output.is_json() {
                output.json(&json!({ "rules": rules, "default": default.to_string() }));
            } else {
                println!("{}: {rules} rule(s), default {default}", file.display());
            }
            Ok(())
        }
        PolicyCommand::Explain {
            file,
            method,
            target,
            scopes,
        } => explain(&load(&file)?, &method, &target, scopes.as_deref(), output),
    }
}

/// The route policy in `file`; one that cannot be read or does not parse is a configuration
/// error naming the file, and the line and reason.
pub(super) fn load(file: &Path) -> Result<RoutePolicy, CommandError> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| ConfigError(format!("cannot read {}: {error}", file.display())))?;
    RoutePolicy::parse(&text)
        .map_err(|error| ConfigError(format!("{}: {error}", file.display())).into())
}

/// Prints the deciding rule and what it requires; with `scopes`, fails (exit 1) when they do
/// not suffice.
fn explain(
    policy: &RoutePolicy,
    method: &str,
    target: &str,
    scopes: Option<&[String]>,
    output: &Output,
) -> Result<(), CommandError> {
    let decision = policy.decide(&method.to_ascii_uppercase(), target);
    let (rule, requires, required): (String, String, &[Scope]) = match &decision {
        Decision::Public { line } => (
            rule_name(policy, Some(*line)),
            "nothing: public".into(),
            &[],
        ),
        Decision::Requires { scopes: [], line } => {
            (rule_name(policy, *line), "a valid token".into(), &[])
        }
        Decision::Requires { scopes, line } => {
            let names: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
            (
                rule_name(policy, *line),
                format!("a valid token with {}", names.join(", ")),
                scopes,
            )
        }
        Decision::Deny => ("the default (deny)".into(), "refused: 403".into(), &[]),
    };
    let missing: Option<Vec<&str>> = scopes.map(|held| {
        required
            .iter()
            .map(Scope::as_str)
            .filter(|scope| !held.iter().any(|h| h == scope))
            .collect()
    });
    let allowed = missing
        .as_ref()
        .map(|missing| missing.is_empty() && decision != Decision::Deny);
    if output.is_json() {
        output.json(
            &json!({ "rule": rule, "requires": requires, "allowed": allowed, "missing": missing }),
        );
    } else {
        let mut fields = vec![("rule", rule), ("requires", requires)];
        if let Some(allowed) = allowed {
            fields.push(("allowed", if allowed { "yes".into() } else { "no".into() }));
        }
        output.fields(&fields);
    }
    match allowed {
        Some(false) => {
            Err(StepFailed(format!("{method} {target} is refused with those scopes")).into())
        }
        _ => Ok(()),
    }
}

fn rule_name(policy: &RoutePolicy, line: Option<usize>) -> String {
    match line.and_then(|line| Some((line, policy.rule_at(line)?))) {
        Some((line, written)) => format!("line {line}: {written}"),
        None => "the default (authenticated)".into(),
    }
}
