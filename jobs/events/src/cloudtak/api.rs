//! CloudTAK's API as its import worker calls it: the two kinds of bearer token, JSON requests
//! with a deadline each, and the import rows' shape (`../shared/cloudtak-contract.md` §1).
//!
//! Every call answers a [`Reply`] (any HTTP status) or, when no answer came (connection
//! refused, reset, timed out), a temporary [`JobError`]; callers decide what a status means
//! for them with [`Reply::error`] as the default.

use std::time::Duration;

use bytes::Bytes;
use etl_core::{ExitKind, JobError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::Method;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Longest one API call may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read: lists of at most 100 rows, each with the user's `config` (CloudTAK's
/// API takes JSON bodies up to 50 MB).
const MAX_REPLY: usize = 64 << 20;

/// Who a call is made as.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// The worker itself: `etl.<jwt{access:'import',internal:true[,id]}>`. The id, when given,
    /// must be the import of the path.
    Import(Option<&'a str>),
    /// The import's owner: `<jwt{access:'user',email}>`.
    User(&'a str),
}

/// An answer of any status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    /// `METHOD /path`, for messages.
    pub call: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`; a body that is not is the API's fault, worth a retry.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            JobError::temporary(format!(
                "CloudTAK API {}: an answer that is not what was expected ({e})",
                self.call
            ))
        })
    }

    /// The API's own words: the `message` of its `{status,message,messages}` error shape, else
    /// the start of the body, on one line.
    pub fn message(&self) -> String {
        let text = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        one_line(&text, 300)
    }

    /// The default meaning of a status that is not a success: refused credentials are the
    /// deployment's problem (exit 78), the API failing or throttling is worth a retry, any
    /// other refusal is about what was sent.
    pub fn error(&self) -> JobError {
        let message = format!(
            "CloudTAK API {}: HTTP {}: {}",
            self.call,
            self.status,
            self.message()
        );
        let kind = match self.status {
            401 | 403 => ExitKind::Config,
            408 | 425 | 429 | 500..=599 => ExitKind::Temporary,
            _ => ExitKind::BadInput,
        };
        JobError::new(kind, message)
    }
}

/// `text` on one line, at most `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", flat.get(..at).unwrap_or(flat)),
        None => flat.to_owned(),
    }
}

/// One import row, as the API lists and returns it; fields the worker does not use are left
/// out, unknown ones ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ImportRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub username: String,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub results: Vec<ResultRow>,
}

/// One result of an import.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ResultRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub type_id: String,
}

#[derive(Debug, Deserialize)]
struct ImportList {
    items: Vec<ImportRow>,
}

/// The API at one base URL, calling with tokens signed by one secret.
#[derive(Clone)]
pub struct Api {
    base: String,
    key: EncodingKey,
    client: Client<Https, Full<Bytes>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    /// `base` is `API_URL` (`https://map.example.com`); `secret` is `SigningSecret`.
    pub fn new(base: &str, secret: &str) -> Result<Api, JobError> {
        let trimmed = base.trim().trim_end_matches('/');
        let uri: hyper::Uri = trimmed
            .parse()
            .map_err(|e| JobError::usage(format!("CloudTAK API URL {base:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.host().is_none()
            || uri.query().is_some()
        {
            return Err(JobError::usage(format!(
                "CloudTAK API URL {base:?}: give http(s)://host[:port][/path] (API_URL)"
            )));
        }
        if secret.is_empty() {
            return Err(JobError::config(
                "SigningSecret is empty: the CloudTAK worker signs its API tokens with it",
            ));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| JobError::config(format!("loading the system's TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Api {
            base: trimmed.to_owned(),
            key: EncodingKey::from_secret(secret.as_bytes())
                .map_err(|e| JobError::config(format!("SigningSecret: {e}")))?,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `Authorization` header value for `auth`: HS256, `iat` as node's jsonwebtoken sets
    /// it, no `exp` (CloudTAK's own tokens have none).
    pub fn bearer(&self, auth: Auth<'_>) -> Result<String, JobError> {
        let iat = chrono::Utc::now().timestamp();
        let (prefix, claims) = match auth {
            Auth::Import(None) => (
                "etl.",
                json!({"access": "import", "internal": true, "iat": iat}),
            ),
            Auth::Import(Some(id)) => (
                "etl.",
                json!({"access": "import", "id": id, "internal": true, "iat": iat}),
            ),
            Auth::User(email) => ("", json!({"access": "user", "email": email, "iat": iat})),
        };
        let jwt = jsonwebtoken::encode(&Header::default(), &claims, &self.key)
            .map_err(|e| JobError::internal(format!("signing a CloudTAK API token: {e}")))?;
        Ok(format!("Bearer {prefix}{jwt}"))
    }

    /// One call: `path` below the base (segments already encoded with [`segment`]), `query`
    /// pairs encoded here, `body` sent as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Result<Reply, JobError> {
        let call = format!("{method} {path}");
        let mut url = format!("{}{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&segment(k));
            url.push('=');
            url.push_str(&segment(v));
        }
        let bearer = HeaderValue::from_str(&self.bearer(auth)?)
            .map_err(|e| JobError::internal(format!("{call}: token header: {e}")))?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(AUTHORIZATION, bearer);
        let payload = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b).map_err(|e| {
                    JobError::internal(format!("CloudTAK API {call}: encoding the body: {e}"))
                })?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| JobError::internal(format!("CloudTAK API {call}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                JobError::temporary(format!("CloudTAK API {call}: no answer: {}", chain(&e)))
            })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_REPLY)
                .collect()
                .await
                .map_err(|e| {
                    JobError::temporary(format!("CloudTAK API {call}: reading the answer: {e}"))
                })?
                .to_bytes();
            Ok::<_, JobError>(Reply {
                status,
                body,
                call: call.clone(),
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(JobError::temporary(format!(
                "CloudTAK API {call}: no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// `send`, then the default meaning of a status that is not a success.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Result<Reply, JobError> {
        let reply = self.send(method, path, query, auth, body).await?;
        if reply.ok() {
            Ok(reply)
        } else {
            Err(reply.error())
        }
    }

    /// Up to `limit` imports of `status`, oldest first (`GET /api/import`).
    pub async fn list(&self, status: &str, limit: usize) -> Result<Vec<ImportRow>, JobError> {
        let limit = limit.clamp(1, 100).to_string();
        let reply = self
            .expect(
                Method::GET,
                "/api/import",
                &[("limit", &limit), ("status", status)],
                Auth::Import(None),
                None,
            )
            .await?;
        Ok(reply.json::<ImportList>()?.items)
    }

    /// `PATCH /api/import/<id>` with `body`, as the worker.
    pub async fn patch_import(&self, id: &str, body: &Value) -> Result<Reply, JobError> {
        self.send(
            Method::PATCH,
            &format!("/api/import/{}", segment(id)),
            &[],
            Auth::Import(Some(id)),
            Some(body),
        )
        .await
    }

    /// Takes a Pending import: `Some(row)`, or `None` when another worker has it (the API
    /// answers 400 to a second `Running`).
    pub async fn lock(&self, id: &str) -> Result<Option<ImportRow>, JobError> {
        let reply = self.patch_import(id, &json!({"status": "Running"})).await?;
        match reply.status {
            400 => Ok(None),
            _ if reply.ok() => Ok(Some(reply.json()?)),
            _ => Err(reply.error()),
        }
    }

    /// The import as it is now (`GET /api/import/<id>`), with its results.
    pub async fn import(&self, id: &str) -> Result<ImportRow, JobError> {
        self.expect(
            Method::GET,
            &format!("/api/import/{}", segment(id)),
            &[],
            Auth::Import(Some(id)),
            None,
        )
        .await?
        .json()
    }
}

/// `s` percent-encoded for a path segment or a query value (everything but RFC 3986's
/// unreserved characters).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error and its causes on one line (hyper's client error says little by itself).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    one_line(&text, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_cloudtaks_claims() {
        let api = Api::new("http://127.0.0.1:9/", "s3cret").unwrap();
        let decode = |bearer: String, prefix: &str| -> Value {
            let jwt = bearer
                .strip_prefix("Bearer ")
                .and_then(|t| t.strip_prefix(prefix))
                .unwrap()
                .to_owned();
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<Value>(
                &jwt,
                &jsonwebtoken::DecodingKey::from_secret(b"s3cret").unwrap(),
                &v,
            )
            .unwrap()
            .claims
        };
        let c = decode(api.bearer(Auth::Import(None)).unwrap(), "etl.");
        assert_eq!(c["access"], "import");
        assert_eq!(c["internal"], true);
        assert!(c.get("id").is_none() && c.get("exp").is_none());
        let c = decode(api.bearer(Auth::Import(Some("abc"))).unwrap(), "etl.");
        assert_eq!(c["id"], "abc");
        let c = decode(api.bearer(Auth::User("a@b.c")).unwrap(), "");
        assert_eq!(
            (c["access"].as_str(), c["email"].as_str()),
            (Some("user"), Some("a@b.c"))
        );
        assert_eq!(api.base(), "http://127.0.0.1:9");
    }

    #[test]
    fn bad_urls_and_secrets_are_refused() {
        assert!(Api::new("ftp://x", "s").is_err());
        assert!(Api::new("http://", "s").is_err());
        assert!(Api::new("http://x?a=b", "s").is_err());
        assert_eq!(Api::new("http://x", "").unwrap_err().kind, ExitKind::Config);
    }

    #[test]
    fn statuses_have_meanings() {
        let reply = |status: u16, body: &str| Reply {
            status,
            body: Bytes::from(body.to_owned()),
            call: "PATCH /api/import/1".into(),
        };
        assert_eq!(reply(401, "{}").error().kind, ExitKind::Config);
        assert_eq!(reply(503, "").error().kind, ExitKind::Temporary);
        assert_eq!(reply(429, "").error().kind, ExitKind::Temporary);
        let e = reply(400, r#"{"status":400,"message":"Nope\nno","messages":[]}"#).error();
        assert_eq!(e.kind, ExitKind::BadInput);
        assert_eq!(
            e.message,
            "CloudTAK API PATCH /api/import/1: HTTP 400: Nope no"
        );
        assert_eq!(segment("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
