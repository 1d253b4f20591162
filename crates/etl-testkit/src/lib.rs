//! Test-only parts shared by the jobs' durability tests.
//!
//! [`FaultProxy`] sits on loopback in front of the S3 server and, for the requests of a chosen
//! kind, fails them (HTTP 500), cuts the connection before forwarding (the request never
//! happened), cuts it after forwarding (the request happened, the answer is lost), or delays
//! them. Rules count hits from when they are armed, so a test can say "the 2nd PUT and the
//! retries after it". Every request is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What an S3 request does, from its method, query and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PutObject (also a conditional one).
    Put,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    Delete,
    Get,
    Head,
    List,
    Other,
}

/// What happens to a matched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer 500 InternalError without forwarding.
    Fail,
    /// Close the connection without forwarding: the request never reached the server.
    CutBefore,
    /// Forward it, then close the connection instead of answering: it took effect, and the
    /// client cannot know.
    CutAfter,
    /// Forward it after this long.
    Delay(Duration),
}

/// Requests `from`..`from + times` (1-based, counted per kind since the rule was armed) whose
/// path contains `path_contains` get `action`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: Kind,
    pub from: u32,
    pub times: u32,
    pub action: Action,
    pub path_contains: Option<String>,
}

impl Rule {
    /// The `nth` request of `kind` and every retry of it the client makes (the SDK retries
    /// 500s and cut connections), so the failure sticks.
    pub fn sticky(kind: Kind, nth: u32, action: Action) -> Rule {
        Rule {
            kind,
            from: nth,
            times: 20,
            action,
            path_contains: None,
        }
    }
}

/// One fault case of an output written by multipart upload: what it is, the proxy rules, and
/// the `ETL_FAULT` kill point (if any).
pub type OutputFault = (&'static str, Vec<Rule>, Option<&'static str>);

/// The faults every multipart-uploaded output must survive (old or absent, or complete): a
/// part failed or cut, Complete failed or its answer lost after it took effect, and the
/// process killed between parts, before and after Complete (etl-core's store fault points).
pub fn multipart_faults() -> Vec<OutputFault> {
    vec![
        (
            "an UploadPart fails",
            vec![Rule::sticky(Kind::UploadPart, 2, Action::Fail)],
            None,
        ),
        (
            "an UploadPart is cut",
            vec![Rule::sticky(Kind::UploadPart, 1, Action::CutBefore)],
            None,
        ),
        (
            "Complete fails",
            vec![Rule::sticky(Kind::CompleteMultipartUpload, 1, Action::Fail)],
            None,
        ),
        (
            "Complete's answer is lost after it took effect",
            vec![Rule {
                times: 1,
                ..Rule::sticky(Kind::CompleteMultipartUpload, 1, Action::CutAfter)
            }],
            None,
        ),
        ("killed between parts", vec![], Some("store.s3.part@2")),
        (
            "killed before Complete",
            vec![],
            Some("store.s3.before_complete"),
        ),
        (
            "killed after Complete",
            vec![],
            Some("store.s3.after_complete"),
        ),
    ]
}

/// Whether a fault case may leave the new output in place (it took effect before the fault).
pub fn may_complete(what: &str) -> bool {
    what.contains("after it took effect") || what.contains("after Complete")
}

/// A store on the test S3 server at `endpoint` with a new bucket named `name` (lower case, `_`
/// turned into `-`); returns both. Panics when the server cannot be reached: a test that needs
/// it must fail, never skip.
pub async fn store_with_bucket(endpoint: &str, name: &str) -> (etl_core::store::Store, String) {
    let store = etl_core::store::Store::new(etl_core::store::S3Config {
        endpoint: Some(endpoint.to_owned()),
        ..Default::default()
    });
    let bucket = name.replace('_', "-").to_lowercase();
    let client = match store.s3().await {
        Ok(s3) => s3.client().clone(),
        Err(e) => panic!("S3 server at {endpoint}: {e} (run the tests through scripts/test.sh)"),
    };
    if let Err(e) = client.create_bucket().bucket(&bucket).send().await {
        panic!("creating bucket {bucket} at {endpoint}: {e:?}");
    }
    (store, bucket)
}

#[derive(Default)]
struct State {
    rules: Vec<(Rule, u32)>,
    log: Vec<(Kind, String, String)>,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) on a free loopback port.
    pub fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let upstream: Arc<str> = Arc::from(upstream.trim_end_matches('/'));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, upstream, client) = (st.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, st.clone(), upstream.clone(), client.clone())
                    });
                    // A cut connection ends here with an error, as intended.
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        eprintln!("fault proxy: connection ended: {e}");
                    }
                });
            }
        });
        Ok(FaultProxy {
            addr,
            state,
            _runtime: runtime,
        })
    }

    /// The endpoint to give the client instead of the server's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rules; counting starts again.
    pub fn arm(&self, rules: Vec<Rule>) {
        lock(&self.state).rules = rules.into_iter().map(|r| (r, 0)).collect();
    }

    /// Removes every rule.
    pub fn disarm(&self) {
        lock(&self.state).rules.clear();
    }

    /// How many requests a rule matched (its action applied or not), by rule index.
    pub fn matched(&self, rule: usize) -> u32 {
        lock(&self.state).rules.get(rule).map_or(0, |(_, n)| *n)
    }

    /// Every request seen: kind, method and path with query.
    pub fn log(&self) -> Vec<(Kind, String, String)> {
        lock(&self.state).log.clone()
    }
}

/// The kind of an S3 request (path-style).
pub fn classify(method: &str, path_and_query: &str, copy_source: bool) -> Kind {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let object = path.trim_start_matches('/').contains('/');
    match method {
        "PUT" if has("partNumber") && has("uploadId") => Kind::UploadPart,
        "PUT" if object && !copy_source => Kind::Put,
        "POST" if has("uploads") => Kind::CreateMultipartUpload,
        "POST" if has("uploadId") => Kind::CompleteMultipartUpload,
        "DELETE" if has("uploadId") => Kind::AbortMultipartUpload,
        "DELETE" if object => Kind::Delete,
        "GET" if !object || has("list-type") => Kind::List,
        "GET" => Kind::Get,
        "HEAD" if object => Kind::Head,
        _ => Kind::Other,
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    upstream: Arc<str>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let kind = classify(
        &method,
        &pq,
        req.headers().contains_key("x-amz-copy-source"),
    );
    let action = {
        let mut st = lock(&state);
        st.log.push((kind, method.clone(), pq.clone()));
        let mut chosen = None;
        for (rule, seen) in &mut st.rules {
            if rule.kind != kind
                || rule
                    .path_contains
                    .as_deref()
                    .is_some_and(|p| !pq.contains(p))
            {
                continue;
            }
            *seen += 1;
            if chosen.is_none() && *seen >= rule.from && *seen < rule.from + rule.times {
                chosen = Some(rule.action);
            }
        }
        chosen
    };
    match action {
        Some(Action::Fail) => {
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from_static(
                    b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>injected</Message></Error>",
                )))
                .map_err(std::io::Error::other);
        }
        Some(Action::CutBefore) => return Err(std::io::Error::other("injected: cut before")),
        Some(Action::Delay(d)) => tokio::time::sleep(d).await,
        Some(Action::CutAfter) | None => {}
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let mut forward = Request::builder()
        .method(parts.method)
        .uri(format!("{upstream}{pq}"));
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let forward = forward
        .body(Full::new(body))
        .map_err(std::io::Error::other)?;
    let answer = client
        .request(forward)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    if action == Some(Action::CutAfter) {
        return Err(std::io::Error::other("injected: cut after forwarding"));
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(classify("PUT", "/b/k.json", false), Kind::Put);
        assert_eq!(
            classify("PUT", "/b/k?partNumber=1&uploadId=x", false),
            Kind::UploadPart
        );
        assert_eq!(
            classify("POST", "/b/k?uploads", false),
            Kind::CreateMultipartUpload
        );
        assert_eq!(
            classify("POST", "/b/k?uploadId=x", false),
            Kind::CompleteMultipartUpload
        );
        assert_eq!(
            classify("DELETE", "/b/k?uploadId=x", false),
            Kind::AbortMultipartUpload
        );
        assert_eq!(classify("DELETE", "/b/k", false), Kind::Delete);
        assert_eq!(
            classify("GET", "/b?list-type=2&prefix=a", false),
            Kind::List
        );
        assert_eq!(classify("GET", "/b/k", false), Kind::Get);
        assert_eq!(classify("HEAD", "/b/k", false), Kind::Head);
        assert_eq!(classify("PUT", "/b", false), Kind::Other);
    }
}
