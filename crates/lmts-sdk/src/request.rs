//! A signed request to any path of the service, built in the shape of reqwest's
//! `RequestBuilder`; the token endpoints are built with it too.

use std::fmt;

use bytes::Bytes;
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE},
    Method,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    client::{Answerer, Auth, Call, Client},
    error::Error,
    response::{ApiResponse, SignedResponse},
};

/// A request being built by [`Client::request`] (or [`Client::get`], [`Client::post`], ...).
///
/// [`RequestBuilder::send`] signs it with the client's HMAC credentials over the exact target
/// and body bytes it sends, and runs it under the client's [`RetryPolicy`](crate::RetryPolicy):
/// a safe method (GET, HEAD, OPTIONS, TRACE) is retried after transport errors and 429, 502,
/// 503, 504; any other method only when the service certainly did not act on it: a refused
/// connection or a 429 (not a 503, which a service behind a gateway may send after acting).
/// Each attempt is signed afresh, and a 401 whose `Date` shows clock skew teaches the client
/// the server's clock and is retried once. A builder method given
/// something invalid records the error, and `send` returns it without sending anything.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    call: Result<Call, Error>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RequestBuilder");
        match &self.call {
            // Header names only: a caller's header may hold a credential.
            Ok(call) => debug
                .field("method", &call.method)
                .field("url", &call.url.as_str())
                .field("headers", &call.headers.keys().collect::<Vec<_>>())
                .field("body_bytes", &call.body.len()),
            Err(error) => debug.field("error", error),
        };
        debug.finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// A request signed with the client's HMAC credentials, without headers or body.
    pub(crate) fn new(client: Client, method: Method, path: &str) -> Self {
        let call = client.url(path).map(|url| Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            auth: Auth::Hmac,
            answerer: Answerer::Any,
        });
        Self { client, call }
    }

    /// Applies `change` to the call unless an earlier step failed.
    fn and_then(mut self, change: impl FnOnce(&mut Call) -> Result<(), Error>) -> Self {
        if let Ok(call) = &mut self.call {
            if let Err(error) = change(call) {
                self.call = Err(error);
            }
        }
        self
    }

    /// Appends `query` (anything serde serializes as key/value pairs, e.g. `&[("market",
    /// "btc")]` or a struct) to the URL's query, form-urlencoded as reqwest does.
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        self.and_then(|call| {
            let serialized = query
                .serialize(serde_urlencoded::Serializer::new(
                    &mut call.url.query_pairs_mut(),
                ))
                .map(drop);
            if call.url.query() == Some("") {
                call.url.set_query(None);
            }
            serialized.map_err(|error| Error::InvalidInput(format!("query: {error}")))
        })
    }

    /// Adds a header (appended: a name may repeat). The authentication headers, `host` and
    /// `content-length` are the SDK's: naming them makes [`RequestBuilder::send`] fail.
    pub fn header<K, V>(self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        HeaderValue: TryFrom<V>,
    {
        self.and_then(|call| {
            let name = HeaderName::try_from(name)
                .map_err(|_| Error::InvalidInput("invalid header name".into()))?;
            let value = HeaderValue::try_from(value).map_err(|_| {
                Error::InvalidInput(format!("the value of header {name} is not valid"))
            })?;
            call.headers.append(name, value);
            Ok(())
        })
    }

    /// Sets the body to `body` serialized as JSON (once: the bytes signed are the bytes sent),
    /// and `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        self.and_then(|call| {
            let bytes = serde_json::to_vec(body)
                .map_err(|error| Error::InvalidInput(format!("JSON body: {error}")))?;
            call.body = Bytes::from(bytes);
            call.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(())
        })
    }

    /// Sets the body to these exact bytes. No content type is added: set one with
    /// [`RequestBuilder::header`].
    pub fn body(self, body: impl Into<Bytes>) -> Self {
        self.and_then(|call| {
            call.body = body.into();
            Ok(())
        })
    }

    /// Authenticates with a Privy identity token instead of HMAC (capabilities, derive).
    pub(crate) fn identity(self, token: &str) -> Self {
        self.and_then(|call| {
            let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Error::InvalidInput("identity token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            call.auth = Auth::Identity(value);
            Ok(())
        })
    }

    /// Signs and sends the request (see the type's documentation for retries) and returns
    /// the last answer, whatever its status, like reqwest: use
    /// [`SignedResponse::error_for_status`] to turn a non-2xx answer into [`Error::Api`].
    ///
    /// Errors: [`Error::InvalidInput`] for what a builder method refused, a path without a
    /// leading `/` or a header the SDK sets itself; [`Error::MissingCredentials`] when the
    /// client has none; [`Error::Transport`] or [`Error::Timeout`] when no answer came.
    pub async fn send(self) -> Result<SignedResponse, Error> {
        self.client.execute(self.call?).await
    }

    /// Sends a request to one of lmts's token endpoints (whose 503 may be retried, SPEC B2) and
    /// decodes a 2xx answer's JSON body; any other status is an [`Error::Api`].
    pub(crate) async fn send_decoded<T: DeserializeOwned>(self) -> Result<ApiResponse<T>, Error> {
        self.and_then(|call| {
            call.answerer = Answerer::TokenService;
            Ok(())
        })
        .send()
        .await?
        .error_for_status()?
        .decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(builder: RequestBuilder) -> Result<Call, Error> {
        builder.call
    }

    #[test]
    fn query_pairs_are_appended_form_encoded_and_an_empty_query_vanishes() {
        let client = Client::new("http://h").unwrap();
        let url = call(
            client
                .get("/orders?a=1")
                .query(&[("market", "btc usd"), ("x", "&")]),
        )
        .unwrap()
        .url;
        assert_eq!(url.query(), Some("a=1&market=btc+usd&x=%26"));
        let empty: [(&str, &str); 0] = [];
        let url = call(client.get("/orders").query(&empty)).unwrap().url;
        assert_eq!(url.query(), None);
    }

    #[test]
    fn the_first_invalid_step_is_kept_and_nothing_after_it_applies() {
        let client = Client::new("http://h").unwrap();
        let refused = call(
            client
                .post("/x")
                .header("bad name", "v")
                .json(&serde_json::json!({"a": 1})),
        );
        assert!(
            matches!(&refused, Err(Error::InvalidInput(m)) if m == "invalid header name"),
            "{refused:?}"
        );
        let refused = call(client.post("/x").header("x-key", "line\nbreak"));
        assert!(
            matches!(&refused, Err(Error::InvalidInput(m)) if !m.contains("line")),
            "the value is not repeated: {refused:?}"
        );
        assert!(matches!(call(client.get("x")), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn json_serializes_once_and_sets_the_content_type() {
        let client = Client::new("http://h").unwrap();
        let call = call(client.post("/o").json(&serde_json::json!({"a": [1, 2]}))).unwrap();
        assert_eq!(&call.body[..], br#"{"a":[1,2]}"#);
        assert_eq!(call.headers[CONTENT_TYPE], "application/json");
        let raw = self::call(client.post("/o").body(&b"\x00raw"[..])).unwrap();
        assert_eq!(&raw.body[..], b"\x00raw");
        assert!(raw.headers.get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn debug_shows_header_names_but_not_values() {
        let client = Client::new("http://h").unwrap();
        let printed = format!("{:?}", client.get("/x").header("authorization", "hush"));
        assert!(
            printed.contains("authorization") && !printed.contains("hush"),
            "{printed}"
        );
    }
}
