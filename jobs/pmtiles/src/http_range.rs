//! A PMTiles archive at an `http://` or `https://` URL, read by ranged GETs: the
//! [`RangeReader`] the archive walk of etl-tiles needs, for tools that read remote archives
//! without downloading them (a later `extract`).
//!
//! One version is read: the archive's length and ETag come from the first GET (its first
//! 16 KiB, which also answer the walk's first read), and every later GET carries `If-Match`
//! with that ETag, so an archive replaced while it is read fails the next read
//! (412, [`HttpError::Changed`]) instead of mixing two versions' directories and tiles. A server
//! that gives no strong ETag is read without that guard; each answer's `Content-Range` must still
//! name the length seen at open.
//!
//! HTTP/1.1 over hyper and rustls (the AWS SDK's own client stack: no new crates), with the
//! system's root certificates. Reads need a Tokio runtime.

use bytes::Bytes;
use etl_tiles::archive::{ROOT_SPACE, RangeReader};
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
    /// An answer was cut short, did not come within [`REQUEST_TIMEOUT`], or named another
    /// length than the archive's: a retry may succeed.
    #[error("{url}: {message}")]
    Interrupted { url: String, message: String },
}

/// How long one request may take, answer and body, before it is given up: this, plus a second
/// per [`SLOWEST_BYTES_PER_SECOND`] of body (so a slow link fails only below that rate).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The slowest transfer a request waits for (128 KiB/s, about 1 Mbit/s).
pub const SLOWEST_BYTES_PER_SECOND: u64 = 128 << 10;

/// One version of an archive behind a URL.
pub struct HttpReader {
    client: Client<Https, Empty<Bytes>>,
    url: String,
    uri: hyper::Uri,
    size: u64,
    /// The strong ETag of the version read, sent as `If-Match` with every range.
    etag: Option<HeaderValue>,
    /// The first bytes (up to 16 KiB), read at open.
    first: Bytes,
}

impl HttpReader {
    /// Opens the archive at `url` with a GET of its first 16 KiB (header and root directory,
    /// where the spec puts them): the answer gives the archive's length (`Content-Range`) and
    /// version (`ETag`), and its bytes serve the walk's first read. A GET rather than a HEAD,
    /// so presigned URLs (signed for GET only) work too.
    pub async fn open(url: &str) -> Result<HttpReader, HttpError> {
        tokio::time::timeout(REQUEST_TIMEOUT, Self::open_now(url))
            .await
            .map_err(|_| HttpError::Interrupted {
                url: url.to_string(),
                message: format!(
                    "GET of the first 16 KiB: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            })?
    }

    async fn open_now(url: &str) -> Result<HttpReader, HttpError> {
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
        let mut reader = HttpReader {
            client: Client::builder(TokioExecutor::new()).build(https),
            url: url.to_string(),
            uri,
            size: 0,
            etag: None,
            first: Bytes::new(),
        };
        let what = "GET of the first 16 KiB";
        let resp = reader.request(Some((0, ROOT_SPACE - 1))).await?;
        let headers = resp.headers();
        // Only a strong ETag can be matched byte for byte (RFC 9110 13.1.1).
        reader.etag = headers
            .get(ETAG)
            .filter(|v| !v.as_bytes().starts_with(b"W/"))
            .cloned();
        let total = headers
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok()?.rsplit_once('/')?.1.parse::<u64>().ok());
        reader.size = match resp.status() {
            StatusCode::PARTIAL_CONTENT => total,
            // Shorter than what was asked for, or a server without ranges: the whole archive,
            // taken only when it is small enough to be what was asked for.
            StatusCode::OK => headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .filter(|&len| len <= ROOT_SPACE),
            // A range from byte 0 is unsatisfiable only for an empty file (`bytes */0`, which
            // some servers leave out).
            StatusCode::RANGE_NOT_SATISFIABLE => Some(total.unwrap_or(0)),
            other => return Err(reader.status(what, other)),
        }
        .ok_or_else(|| {
            reader.protocol(format!(
                "{what}: no archive length in the answer ({} with Content-Range {:?}); a server \
                 that ignores Range requests cannot be read this way",
                resp.status(),
                headers.get(CONTENT_RANGE)
            ))
        })?;
        let want = reader.size.min(ROOT_SPACE);
        if resp.status() != StatusCode::RANGE_NOT_SATISFIABLE {
            reader.first = reader.body(resp, want, what).await?;
        }
        Ok(reader)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A GET of bytes `first..=last` (all when `None`), with `If-Match` once the version is
    /// known.
    async fn request(
        &self,
        range: Option<(u64, u64)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        let mut req = hyper::Request::builder().uri(self.uri.clone());
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

    fn interrupted(&self, message: String) -> HttpError {
        HttpError::Interrupted {
            url: self.url.clone(),
            message,
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
        // The walk's first read (header and root) was answered at open.
        if last < self.first.len() as u64 {
            return Ok(self.first.slice(offset as usize..=last as usize));
        }
        let resp = self.request(Some((offset, last))).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let want = format!("bytes {offset}-{last}/{}", self.size);
                let got = resp.headers().get(CONTENT_RANGE);
                if got.is_none_or(|g| g.as_bytes() != want.as_bytes()) {
                    return Err(self.interrupted(format!(
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
        self.body(resp, len, &what).await
    }

    /// The body of `resp`, which must be `len` bytes. At most one byte more is read: a longer
    /// body is an error, not memory.
    async fn body(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        len: u64,
        what: &str,
    ) -> Result<Bytes, HttpError> {
        let limit = usize::try_from(len.saturating_add(1)).unwrap_or(usize::MAX);
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| self.interrupted(format!("{what}: reading the body: {e}")))?
            .to_bytes();
        if body.len() as u64 != len {
            return Err(self.interrupted(format!("{what}: got {} bytes, not {len}", body.len())));
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
        let limit =
            REQUEST_TIMEOUT + std::time::Duration::from_secs(len / SLOWEST_BYTES_PER_SECOND);
        tokio::time::timeout(limit, self.get(offset, len))
            .await
            .map_err(|_| {
                self.interrupted(format!(
                    "GET bytes {offset}+{len}: no answer within {} s",
                    limit.as_secs()
                ))
            })?
    }
}
