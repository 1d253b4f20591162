//! Fetching what a KML NetworkLink names, guarded against server-side request forgery: http
//! and https only; a host that is, or resolves to, a loopback, private, link-local, unspecified,
//! multicast or otherwise reserved address is refused unless `--allow-network-link-host`
//! names it; the connection goes to the addresses that were checked (no second lookup for a
//! rebinding DNS server to answer differently); redirects are followed (3 at most) with the
//! same checks; each answer is bounded in time and bytes.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::header::LOCATION;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// Why a link was not fetched; the message names the link.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: only http and https links are followed")]
    Scheme(String),
    #[error("{url}: {why} (name the host with --allow-network-link-host to allow it)")]
    Forbidden { url: String, why: String },
    #[error("{0}: no answer within the link timeout")]
    Timeout(String),
    #[error("{url}: {why}")]
    Failed { url: String, why: String },
    #[error("{url}: over the limit of {limit} bytes for one linked document")]
    TooLarge { url: String, limit: u64 },
}

/// Whether an address must not be reached from a worker on behalf of an upload.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let low_v4 = || {
                Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                )
            };
            // Forms that carry an IPv4 address: judged by it.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            if seg[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d (deprecated)
                || seg[..6] == [0, 0, 0, 0, 0xffff, 0] // SIIT ::ffff:0:a.b.c.d
                || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            // NAT64 64:ff9b::/96
            {
                return v6.is_loopback() || v6.is_unspecified() || forbidden_v4(low_v4());
            }
            if seg[0] == 0x2002 {
                // 6to4: the IPv4 address in bits 16..48.
                let v4 = Ipv4Addr::new(
                    (seg[1] >> 8) as u8,
                    seg[1] as u8,
                    (seg[2] >> 8) as u8,
                    seg[2] as u8,
                );
                return forbidden_v4(v4);
            }
            let first = seg[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (first == 0x64 && seg[1] == 0xff9b) // local-use NAT64 64:ff9b:1::/48 and the rest
                || (first == 0x2001 && seg[1] == 0) // Teredo 2001::/32
                || (first == 0x2001 && seg[1] == 0x0db8) // documentation
                || first == 0x0100 && seg[1..4] == [0, 0, 0] // discard-only 100::/64
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240 // reserved
}

/// An `--allow-network-link-host` entry, `HOST` or `HOST:PORT` (`[v6]:PORT`), split.
fn split_entry(entry: &str) -> (&str, Option<u16>) {
    let entry = entry.trim();
    if let Some(rest) = entry.strip_prefix('[') {
        // [v6] or [v6]:port
        return match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => match tail.strip_prefix(':').map(str::parse::<u16>) {
                Some(Ok(port)) => (host, Some(port)),
                // A port that is not one must not widen the entry to every port: it matches
                // no host at all.
                _ => (entry, None),
            },
            None => (rest, None),
        };
    }
    match entry.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// Whether `--allow-network-link-host` names `host` at all (any port): what the resolver
/// lets through; the port is checked on the URL.
fn allowed(allow: &[String], host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allow
        .iter()
        .any(|a| split_entry(a).0.eq_ignore_ascii_case(host))
}

/// Whether an entry names `host` with `port` (an entry without a port names every port).
fn allowed_at(allow: &[String], host: &str, port: Option<u16>) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allow.iter().any(|a| {
        let (h, p) = split_entry(a);
        h.eq_ignore_ascii_case(host) && (p.is_none() || p == port)
    })
}

/// The resolver the client connects through: every address a name resolves to is checked.
#[derive(Clone)]
struct Guarded {
    allow: Arc<Vec<String>>,
}

impl tower_service::Service<Name> for Guarded {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allowed(&allow, &host)
                && let Some(bad) = addrs.iter().find(|a| forbidden(a.ip()))
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves to {}, an address uploads may not reach",
                        bad.ip()
                    ),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector<Guarded>>;

/// A client for linked documents.
#[derive(Clone)]
pub struct Fetcher {
    client: Client<Https, Empty<Bytes>>,
    allow: Arc<Vec<String>>,
    timeout: Duration,
    max_bytes: u64,
}

impl Fetcher {
    pub fn new(allow: &[String], timeout: Duration, max_bytes: u64) -> Result<Fetcher, String> {
        let allow = Arc::new(
            allow
                .iter()
                .map(|a| a.trim().to_owned())
                .collect::<Vec<_>>(),
        );
        let mut http = HttpConnector::new_with_resolver(Guarded {
            allow: allow.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("loading the system's TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(https),
            allow,
            timeout,
            max_bytes,
        })
    }

    /// Fetches `url` into `to`; the final URL (after redirects) and the bytes written.
    /// Nothing of a failed fetch is left at `to`.
    pub async fn get(&self, url: &url::Url, to: &Path) -> Result<(url::Url, u64), FetchError> {
        let r = match tokio::time::timeout(self.timeout, self.get_now(url, to)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(url.to_string())),
        };
        if r.is_err()
            && let Err(e) = tokio::fs::remove_file(to).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %to.display(), error = %e, "cannot remove a failed fetch");
        }
        r
    }

    async fn get_now(&self, url: &url::Url, to: &Path) -> Result<(url::Url, u64), FetchError> {
        let mut at = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            self.check(&at)?;
            let failed = |why: String| FetchError::Failed {
                url: at.to_string(),
                why,
            };
            let uri: hyper::Uri = at.as_str().parse().map_err(|e| failed(format!("{e}")))?;
            let req = hyper::Request::get(uri)
                .header(
                    "user-agent",
                    concat!("etl-events/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::new())
                .map_err(|e| failed(format!("{e}")))?;
            let resp = self.client.request(req).await.map_err(|e| {
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    text = format!("{text}: {c}");
                    cause = c.source();
                }
                if text.contains("uploads may not reach") {
                    FetchError::Forbidden {
                        url: at.to_string(),
                        why: text,
                    }
                } else {
                    failed(text)
                }
            })?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| at.join(l).ok())
                    .ok_or_else(|| failed(format!("HTTP {status} without a usable Location")))?;
                at = next;
                continue;
            }
            if status != StatusCode::OK {
                return Err(failed(format!("HTTP {status}")));
            }
            let mut body = resp.into_body();
            let mut file = tokio::fs::File::create(to)
                .await
                .map_err(|e| failed(format!("{}: {e}", to.display())))?;
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| failed(format!("reading the answer: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    total += data.len() as u64;
                    if total > self.max_bytes {
                        return Err(FetchError::TooLarge {
                            url: at.to_string(),
                            limit: self.max_bytes,
                        });
                    }
                    file.write_all(&data)
                        .await
                        .map_err(|e| failed(format!("{}: {e}", to.display())))?;
                }
            }
            file.flush()
                .await
                .map_err(|e| failed(format!("{}: {e}", to.display())))?;
            return Ok((at, total));
        }
        Err(FetchError::Failed {
            url: url.to_string(),
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The checks the URL itself allows: the scheme, and a host given as an address (which
    /// the connector does not look up, so the resolver never sees it).
    fn check(&self, url: &url::Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Scheme(url.to_string()));
        }
        let host = url.host_str().unwrap_or("");
        if allowed_at(&self.allow, host, url.port_or_known_default()) {
            return Ok(());
        }
        if allowed(&self.allow, host) {
            return Err(FetchError::Forbidden {
                url: url.to_string(),
                why: "that port of the host is not allowed".into(),
            });
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match ip {
            Some(ip) if forbidden(ip) => Err(FetchError::Forbidden {
                url: url.to_string(),
                why: format!("{ip} is an address uploads may not reach"),
            }),
            None if host.is_empty() => Err(FetchError::Failed {
                url: url.to_string(),
                why: "no host".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_uploads_may_not_reach() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::7f00:1",
            "::ffff:0:a00:5",
            "64:ff9b::a00:5",
            "64:ff9b:1::1",
            "2002:a00:5::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let f = Fetcher::new(&["127.0.0.1".into()], Duration::from_secs(1), 10).unwrap();
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(matches!(
            f.check(&u("file:///etc/passwd")),
            Err(FetchError::Scheme(_))
        ));
        assert!(matches!(
            f.check(&u("ftp://x/y.kml")),
            Err(FetchError::Scheme(_))
        ));
        assert!(matches!(
            f.check(&u("http://169.254.169.254/latest/meta-data")),
            Err(FetchError::Forbidden { .. })
        ));
        assert!(matches!(
            f.check(&u("http://[::1]:8080/x.kml")),
            Err(FetchError::Forbidden { .. })
        ));
        assert!(
            f.check(&u("http://127.0.0.1:8080/x.kml")).is_ok(),
            "allowed by name"
        );
        assert!(f.check(&u("https://example.org/x.kml")).is_ok());
        // With a port, only that port.
        let g = Fetcher::new(
            &[
                "127.0.0.1:8080".into(),
                "[::1]:9000".into(),
                "localhost".into(),
            ],
            Duration::from_secs(1),
            10,
        )
        .unwrap();
        assert!(g.check(&u("http://127.0.0.1:8080/x.kml")).is_ok());
        assert!(matches!(
            g.check(&u("http://127.0.0.1:6379/")),
            Err(FetchError::Forbidden { .. })
        ));
        assert!(matches!(
            g.check(&u("http://127.0.0.1/")),
            Err(FetchError::Forbidden { .. })
        ));
        assert!(g.check(&u("http://[::1]:9000/x.kml")).is_ok());
        assert!(matches!(
            g.check(&u("http://[::1]:9001/")),
            Err(FetchError::Forbidden { .. })
        ));
        assert!(
            g.check(&u("http://localhost:1234/x.kml")).is_ok(),
            "no port: every port"
        );
        assert_eq!(split_entry("::1"), ("::1", None));
        assert_eq!(split_entry("[::1]"), ("::1", None));
        assert_eq!(
            split_entry("[::1]:x"),
            ("[::1]:x", None),
            "never every port"
        );
        assert_eq!(split_entry("h:x"), ("h:x", None), "never every port");
        assert_eq!(split_entry(" h.example:80 "), ("h.example", Some(80)));
        // Numbers the url crate reads as IPv4, and IPv6 forms carrying private IPv4.
        for bad in [
            "http://167772165/x.kml",
            "http://0xa.5/x.kml",
            "http://012.0.0.5/x.kml",
            "http://user@169.254.169.254@example.org/",
            "http://[64:ff9b::a00:5]:8080/",
            "http://[::ffff:10.0.0.5]/",
        ] {
            let r = f.check(&u(bad));
            if bad.contains("example.org") {
                assert!(r.is_ok(), "{bad}: userinfo is not the host");
            } else {
                assert!(matches!(r, Err(FetchError::Forbidden { .. })), "{bad}");
            }
        }
    }
}
