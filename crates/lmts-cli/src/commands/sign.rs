//! `lmts sign`: the three `lmts-*` headers for a request, a ready curl command, or the
//! canonical message laid bare for whoever is chasing a signature mismatch.

use lmts_core::{
    signing::{
        format_timestamp, parse_timestamp, CanonicalMessage, HEADER_API_KEY, HEADER_SIGNATURE,
        HEADER_TIMESTAMP,
    },
    Signer,
};
use lmts_sdk::clock::Clock;

use crate::{
    cli::SignArgs,
    credentials_file,
    exit::{CommandError, ConfigError},
    output::Output,
};

/// The body's exact bytes: the text given, or a file's contents for `@FILE`.
pub(super) fn body_bytes(body: Option<&str>) -> Result<Vec<u8>, CommandError> {
    match body {
        None => Ok(Vec::new()),
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|error| ConfigError(format!("body file {path}: {error}")).into()),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The message with its separators visible: each line ends in `⏎` where a `\n` is signed.
fn explain(message: &CanonicalMessage<'_>, body: &[u8]) -> String {
    let bytes = message.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let parts: Vec<&str> = text.splitn(4, '\n').collect();
    let mut lines =
        vec!["canonical message (signed bytes; ⏎ marks each \\n separator):".to_owned()];
    for (name, part) in ["timestamp", "method", "target"].iter().zip(&parts) {
        lines.push(format!("  {name:<9} │{part}⏎"));
    }
    let shown_body = match parts.get(3) {
        Some(rest) if !rest.is_empty() => rest.replace('\n', "\\n").replace('\r', "\\r"),
        _ => "(empty: the message ends with the separator after the target)".into(),
    };
    lines.push(format!("  {:<9} │{shown_body}", "body"));
    lines.push(format!(
        "  {} bytes in all, body {} bytes",
        bytes.len(),
        body.len()
    ));
    lines.join("\n")
}

/// Runs `lmts sign`.
pub fn run(args: SignArgs, output: &Output) -> Result<(), CommandError> {
    let resolved = credentials_file::resolve(
        args.credentials.profile.as_deref(),
        &args.credentials.credentials_file,
    )?;
    if let Some(warning) = resolved.expiry_warning(Clock::system().now()) {
        output.warn(&warning);
    }
    let body = body_bytes(args.body.as_deref())?;
    let timestamp = match &args.timestamp {
        Some(given) => {
            parse_timestamp(given)
                .map_err(|_| ConfigError(format!("--timestamp {given:?} is not RFC 3339")))?;
            given.clone()
        }
        None => format_timestamp(Clock::system().now()),
    };
    if !args.path.starts_with('/') {
        return Err(ConfigError(format!(
            "--path {:?} must start with / (path and query as sent)",
            args.path
        ))
        .into());
    }
    let method = args.method.to_ascii_uppercase();
    let message = CanonicalMessage::new(&timestamp, &method, &args.path, &body);
    let signature = Signer::new(&resolved.credentials.secret)
        .sign(&message)
        .to_base64();
    let token_id = resolved.credentials.token_id.to_string();
    let headers = [
        (HEADER_API_KEY, token_id.as_str()),
        (HEADER_TIMESTAMP, timestamp.as_str()),
        (HEADER_SIGNATURE, signature.as_str()),
    ];

    if args.explain && !output.is_json() {
        println!("{}\n", explain(&message, &body));
    }
    if let Some(base) = &args.curl {
        let url = format!("{}{}", base.trim_end_matches('/'), args.path);
        let mut command = format!("curl -sS -X {method} {}", shell_quote(&url));
        for (name, value) in headers {
            command.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {value}"))));
        }
        if !body.is_empty() {
            command.push_str(" -H 'content-type: application/json' --data-binary ");
            command.push_str(
                &match args.body.as_deref().and_then(|b| b.strip_prefix('@')) {
                    Some(path) => shell_quote(&format!("@{path}")),
                    None => shell_quote(&String::from_utf8_lossy(&body)),
                },
            );
        }
        if output.is_json() {
            output.json(&serde_json::json!({ "curl": command }));
        } else {
            println!("{command}");
        }
        output.warn(
            "the signature is valid for the time window only and, for state-changing methods, once",
        );
        return Ok(());
    }
    if output.is_json() {
        let mut object = serde_json::Map::new();
        for (name, value) in headers {
            object.insert(name.to_owned(), value.into());
        }
        if args.explain {
            object.insert(
                "canonicalMessage".into(),
                String::from_utf8_lossy(&message.to_bytes()).into(),
            );
        }
        output.json(&object);
    } else {
        for (name, value) in headers {
            println!("{name}: {value}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote(r#"{"x":1}"#), r#"'{"x":1}'"#);
    }

    #[test]
    fn explain_shows_every_separator() {
        let message =
            CanonicalMessage::new("2026-03-23T12:34:56.789Z", "GET", "/auth/api-tokens", b"");
        let text = explain(&message, b"");
        assert!(text.contains("│2026-03-23T12:34:56.789Z⏎"), "{text}");
        assert!(
            text.contains("│GET⏎") && text.contains("│/auth/api-tokens⏎"),
            "{text}"
        );
        assert!(text.contains("(empty"), "{text}");
        let message = CanonicalMessage::new("t", "POST", "/x", b"a\nb");
        assert!(explain(&message, b"a\nb").contains("│a\\nb"));
    }
}
