//! A PMTiles archive at an `http://` or `https://` URL, read by ranged GETs: the
//! [`RangeReader`] the archive walk of etl-tiles needs, for tools that read remote archives
//! without downloading them (a later `extract`).
//!
//! One version is read: the archive's length and ETag come from a HEAD at open, and every GET
//! carries `If-Match` with that ETag, so an archive replaced while it is read fails the next read
//! (412, [`HttpError::Changed`]) instead of mixing two versions' directories and tiles. A server
//! that gives no strong ETag is read without that guard; each answer's `Content-Range` must still
//! name the length seen at open.
//!
//! HTTP/1.1 over hyper and rustls (the AWS SDK's own client stack: no new crates), with the
//! system's root certificates. Reads need a Tokio runtime.

use bytes::Bytes;
use etl_tiles::archive::RangeReader;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderValue, IF_MATCH, RANGE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: not an http:// or https:// URL")]
    BadUrl { url: String },
    #[error("{url}: the system's root certificates could not be loaded: {message}")]
    Roots { url: String, message: String },
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    #[error("{url}: the server answered {status} to {what}")]
    Status {
        url: String,
        what: String,
        status: StatusCode,
    },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    /// The archive changed since it was opened (the ETag no longer matches); open it again.
    #[error("{url}: the archive changed while it was read")]
    Changed { url: String },
}

/// One version of an archive behind a URL.
pub struct HttpReader {
    client: Client<Https, Empty<Bytes>>,
    url: String,
    uri: hyper::Uri,
    size: u64,
    /// The strong ETag of the version read, sent as `If-Match` with every range.
    etag: Option<HeaderValue>,
}

impl HttpReader {
    /// HEADs `url` for the archive's length and version.
    pub async fn open(url: &str) -> Result<HttpReader, HttpError> {
        let uri: hyper::Uri = url
            .parse()
            .ok()
            .filter(|u: &hyper::Uri| matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| HttpError::BadUrl {
                url: url.to_string(),
            })?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| HttpError::Roots {
                url: url.to_string(),
                message: e.to_string(),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let mut reader = HttpReader {
            client,
            url: url.to_string(),
            uri,
            size: 0,
            etag: None,
        };
        let head = reader.request("HEAD", None).await?;
        if head.status() != StatusCode::OK {
            return Err(reader.status("HEAD", head.status()));
        }
        reader.size = head
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| reader.protocol("the HEAD answer has no Content-Length".into()))?;
        // Only a strong ETag can be matched byte for byte (RFC 9110 13.1.1).
        reader.etag = head
            .headers()
            .get(ETAG)
            .filter(|v| !v.as_bytes().starts_with(b"W/"))
            .cloned();
        Ok(reader)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn request(
        &self,
        method: &str,
        range: Option<(u64, u64)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(self.uri.clone());
        if let Some((first, last)) = range {
            req = req.header(RANGE, format!("bytes={first}-{last}"));
        }
        if let Some(etag) = &self.etag {
            req = req.header(IF_MATCH, etag.clone());
        }
        let req = req.body(Empty::new()).map_err(|e| HttpError::Request {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        self.client
            .request(req)
            .await
            .map_err(|e| HttpError::Request {
                url: self.url.clone(),
                message: format!("{e:#}").replace('\n', " "),
            })
    }

    fn status(&self, what: &str, status: StatusCode) -> HttpError {
        HttpError::Status {
            url: self.url.clone(),
            what: what.to_string(),
            status,
        }
    }

    fn protocol(&self, message: String) -> HttpError {
        HttpError::Protocol {
            url: self.url.clone(),
            message,
        }
    }

    async fn get(&self, offset: u64, len: u64) -> Result<Bytes, HttpError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let what = format!("GET bytes {offset}+{len}");
        let last = offset
            .checked_add(len - 1)
            .filter(|&last| last < self.size)
            .ok_or_else(|| self.protocol(format!("{what}: beyond the {} bytes", self.size)))?;
        let resp = self.request("GET", Some((offset, last))).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let want = format!("bytes {offset}-{last}/{}", self.size);
                let got = resp.headers().get(CONTENT_RANGE);
                if got.is_none_or(|g| g.as_bytes() != want.as_bytes()) {
                    return Err(self.protocol(format!(
                        "{what}: Content-Range is {got:?}, expected {want:?} (the archive may have \
                         changed)"
                    )));
                }
            }
            // A server that ignores Range sends the whole archive: fine only when that is what
            // was asked for.
            StatusCode::OK if offset == 0 && len == self.size => {}
            StatusCode::OK => {
                return Err(self.protocol(format!(
                    "{what}: the server ignores Range requests (200 with the whole file)"
                )));
            }
            StatusCode::PRECONDITION_FAILED => {
                return Err(HttpError::Changed {
                    url: self.url.clone(),
                });
            }
            other => return Err(self.status(&what, other)),
        }
        // At most one byte more than asked for is read: a longer body is an error, not memory.
        let limit = usize::try_from(len.saturating_add(1)).unwrap_or(usize::MAX);
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| self.protocol(format!("{what}: reading the body: {e}")))?
            .to_bytes();
        if body.len() as u64 != len {
            return Err(self.protocol(format!("{what}: got {} bytes", body.len())));
        }
        Ok(body)
    }
}

impl RangeReader for HttpReader {
    type Error = HttpError;

    fn size(&self) -> u64 {
        self.size
    }

    async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, HttpError> {
        self.get(offset, len).await
    }
}
