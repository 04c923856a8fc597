//! `lmts request`: one signed request to any path, sent by the SDK's `Client::request` (its
//! retry rules and clock-skew recovery included) with the saved or environment credentials,
//! and the whole answer printed: the status line, the headers, a blank line and the body
//! (`--quiet`: the body alone, byte for byte), or one JSON object `{status, headers, body}`.
//! A non-2xx answer is printed too, then ends the command with exit code 4 (or 5 for 5xx).

use std::io::{Read, Write};

use lmts_sdk::{header::CONTENT_TYPE, Method, SignedResponse, StatusCode};
use serde_json::{Map, Value};

use super::{sign, tokens};
use crate::{
    cli::RequestArgs,
    exit::{CommandError, ConfigError},
    output::Output,
};

/// The body's exact bytes: `@-` reads standard input, the rest as `lmts sign --body`.
fn body_bytes(body: Option<&str>) -> Result<Vec<u8>, CommandError> {
    if body == Some("@-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    sign::body_bytes(body)
}

/// `Name: value`, split at the first colon, blanks around both trimmed. The text is not
/// repeated in the error: it may hold a credential.
fn parse_header(text: &str) -> Result<(&str, &str), CommandError> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim(), value.trim())),
        _ => Err(ConfigError("a --header is not of the form \"Name: value\"".into()).into()),
    }
}

/// Runs `lmts request`.
pub async fn run(args: RequestArgs, output: &Output) -> Result<(), CommandError> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ConfigError(format!("{:?} is not an HTTP method", args.method)))?;
    let body = body_bytes(args.body.as_deref())?;
    let client = tokens::signing_client(&args.service, &args.credentials, output)?;
    let mut request = client.request(method, &args.path);
    let mut content_type_given = false;
    for header in &args.headers {
        let (name, value) = parse_header(header)?;
        content_type_given |= name.eq_ignore_ascii_case(CONTENT_TYPE.as_str());
        request = request.header(name, value);
    }
    if !body.is_empty() {
        if !content_type_given {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| tokens::hinted(error, &client, true))?;
    if output.is_json() {
        output.json(&answer_json(&response));
    } else {
        print_answer(&response, output.quiet)?;
    }
    response
        .error_for_status()
        .map(drop)
        .map_err(|error| tokens::hinted(error, &client, true))
}

/// `200 OK`: the status and its reason phrase, when it has one.
fn status_line(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason());
    match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// Prints the answer for people: status line, headers, a blank line, the body (ended by a
/// newline if it has none); quiet, the body's bytes alone.
fn print_answer(response: &SignedResponse, quiet: bool) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    let body = response.bytes();
    if quiet {
        out.write_all(body)?;
        out.flush()?;
        return Ok(());
    }
    writeln!(out, "{}", status_line(response.status()))?;
    for (name, value) in response.headers() {
        writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
    }
    writeln!(out)?;
    out.write_all(body)?;
    if !body.is_empty() && !body.ends_with(b"\n") {
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// The answer for scripts: `status`; `headers`, an object by lower-case name (a repeated
/// header's values joined with `, `); `body`, the parsed JSON when the content type is JSON
/// and it parses, else the text.
fn answer_json(response: &SignedResponse) -> Value {
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), value.into());
            }
        }
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .is_some_and(|media| media == "application/json" || media.ends_with("+json"));
    let body = if is_json {
        response.json::<Value>().ok()
    } else {
        None
    };
    serde_json::json!({
        "status": response.status(),
        "headers": headers,
        "body": body.unwrap_or_else(|| response.text().into_owned().into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_the_first_colon_and_bad_ones_are_not_echoed() {
        assert_eq!(
            parse_header("Idempotency-Key:  k:1 ").unwrap(),
            ("Idempotency-Key", "k:1")
        );
        assert_eq!(parse_header("x-empty:").unwrap(), ("x-empty", ""));
        for bad in ["no colon secret", ": value", "  :x"] {
            let error = parse_header(bad).unwrap_err();
            assert_eq!(crate::exit::code(&*error), 3, "{bad}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn status_lines_name_the_reason_when_there_is_one() {
        assert_eq!(status_line(200), "200 OK");
        assert_eq!(status_line(404), "404 Not Found");
        assert_eq!(status_line(599), "599");
    }
}
