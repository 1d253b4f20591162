//! A KML or KMZ upload's NetworkLinks to documents outside it, fetched before the upload is
//! read, so that their placemarks are imported as layers of their own (CloudTAK's worker
//! follows them too). Links are followed to depth 3 (a linked document's own links are
//! depth 2), relative links of a fetched document against its URL; each fetch is guarded
//! ([`fetch`]) and bounded (`--network-link-timeout` 10 s, 16 MiB a document, 64 MiB and 50
//! documents an upload). A link that cannot be followed is skipped with a warning, as CloudTAK
//! skips it; it never fails the import. Links between documents packed in one KMZ are read
//! by etl-geo (`Upload`), not here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etl_core::JobError;
use etl_geo::archive::{self, ArchiveLimits};
use etl_geo::{Format, LinkedDoc};
use tokio_util::sync::CancellationToken;

pub mod fetch;

use fetch::Fetcher;

/// How deep links are followed from the upload's document.
pub const MAX_DEPTH: usize = 3;
/// Documents fetched for one upload at most.
pub const MAX_DOCUMENTS: usize = 50;
/// Bytes of one fetched document at most.
pub const MAX_DOCUMENT_BYTES: u64 = 16 << 20;
/// Bytes fetched for one upload at most.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;

/// Whether and how links are followed.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub follow: bool,
    /// Hosts (names or addresses) allowed even though they are loopback, private or
    /// link-local (`--allow-network-link-host`).
    pub allow_hosts: Vec<String>,
    pub timeout: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            follow: true,
            allow_hosts: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What following gave: documents to read as layers, and links skipped (with why).
#[derive(Debug, Default)]
pub struct Followed {
    pub linked: Vec<LinkedDoc>,
    pub skipped: Vec<String>,
    /// Every KML document of the upload (for a KMZ, each `.kml` it packs) and each fetched
    /// one with its URL: where icons are named.
    pub docs: Vec<(PathBuf, Option<url::Url>)>,
    /// Where a KMZ upload was unpacked (its icons are read from there).
    pub unpacked: Option<PathBuf>,
}

/// The first bytes of a file.
fn prefix(path: &Path) -> Result<Vec<u8>, JobError> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    let mut f = std::fs::File::open(path)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    let n = f
        .read(&mut buf)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    buf.truncate(n);
    Ok(buf)
}

/// The KML document of a file: itself when it is KML, the document of a KMZ (extracted into
/// `dir`, bounded by `limits`), or `None`.
/// Why a file's KML could not be had, and whether trying again could help (I/O).
#[derive(Debug)]
struct DocError {
    message: String,
    retryable: bool,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn kml_of(path: &Path, dir: &Path, limits: &ArchiveLimits) -> Result<Option<PathBuf>, DocError> {
    Ok(kml_docs_of(path, dir, limits)?.map(|(doc, _)| doc))
}

/// [`kml_of`], and for a KMZ every `.kml` it packs.
fn kml_docs_of(
    path: &Path,
    dir: &Path,
    limits: &ArchiveLimits,
) -> Result<Option<(PathBuf, Vec<PathBuf>)>, DocError> {
    let io = |message: String| DocError {
        message,
        retryable: true,
    };
    let head = prefix(path).map_err(|e| io(e.message))?;
    if archive::is_zip(&head) {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("{}: {e}", dir.display())))?;
        let entries = archive::extract(path, dir, limits).map_err(|e| DocError {
            retryable: matches!(e, etl_geo::ReadError::Io(_)),
            message: e.to_string(),
        })?;
        let is_kml = |n: &str| n.to_ascii_lowercase().ends_with(".kml");
        let doc = entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case("doc.kml"))
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| is_kml(&e.name) && !e.name.contains('/'))
            })
            .or_else(|| entries.iter().find(|e| is_kml(&e.name)));
        let all = entries
            .iter()
            .filter(|e| is_kml(&e.name))
            .map(|e| e.path.clone())
            .collect();
        return Ok(doc.map(|e| (e.path.clone(), all)));
    }
    let kml = Format::sniff(&head) == Some(Format::Kml);
    Ok(kml.then(|| (path.to_path_buf(), vec![path.to_path_buf()])))
}

/// A layer name from a URL: its file stem, made unique among `taken`.
fn layer_name(url: &url::Url, taken: &mut HashSet<String>) -> String {
    let stem = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .map(|last| last.rsplit_once('.').map_or(last, |(s, _)| s))
        .filter(|s| !s.is_empty())
        .unwrap_or("link")
        .to_owned();
    let mut name = stem.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}-{n}");
        n += 1;
    }
    name
}

/// Follows the links of the upload at `upload` (read as KML or KMZ; anything else has none),
/// fetching into `work`.
pub async fn follow(
    upload: &Path,
    work: &Path,
    opts: &LinkOptions,
    limits: &ArchiveLimits,
    max_xml_text: usize,
    cancel: &CancellationToken,
) -> Result<Followed, JobError> {
    let mut out = Followed::default();
    let dir = work.join("links");
    let unpacked = dir.join("upload");
    let root = {
        let (file, into, limits) = (upload.to_path_buf(), unpacked.clone(), *limits);
        match blocking(move || kml_docs_of(&file, &into, &limits)).await? {
            Ok(Some((doc, all))) => {
                out.docs = all.into_iter().map(|p| (p, None)).collect();
                if unpacked.exists() {
                    out.unpacked = Some(unpacked);
                }
                doc
            }
            // Not KML, or an archive that fails here fails where it is read, with its error.
            Ok(None) => return Ok(out),
            Err(e) if e.retryable => {
                return Err(JobError::temporary(format!(
                    "{}: {}",
                    upload.display(),
                    e.message
                )));
            }
            Err(_) => return Ok(out),
        }
    };
    if !opts.follow {
        return Ok(out);
    }
    // Made at the first remote link: a KML without one needs no TLS roots.
    let mut fetcher: Option<Fetcher> = None;
    let mut queue = std::collections::VecDeque::from([(root, None::<url::Url>, 0usize)]);
    let mut seen: HashSet<String> = HashSet::new();
    let mut layers: HashSet<String> = HashSet::new();
    let mut total = 0u64;
    let mut attempts = 0usize;
    while let Some((doc, base, depth)) = queue.pop_front() {
        if depth >= MAX_DEPTH {
            continue;
        }
        let hrefs = {
            let doc = doc.clone();
            match blocking(move || etl_geo::kml_network_links(&doc, max_xml_text)).await? {
                Ok(h) => h,
                Err(e) => {
                    // The upload's own document is read (and fails) as the upload.
                    if base.is_some() {
                        out.skipped
                            .push(format!("{}: {e}", base.as_ref().map_or("", |b| b.as_str())));
                    }
                    continue;
                }
            }
        };
        for href in hrefs {
            if cancel.is_cancelled() {
                return Err(crate::convert::stopped());
            }
            let url = match (url::Url::parse(&href), &base) {
                (Ok(u), _) => u,
                (Err(url::ParseError::RelativeUrlWithoutBase), Some(b)) => match b.join(&href) {
                    Ok(u) => u,
                    Err(e) => {
                        out.skipped.push(format!("network link {href:?}: {e}"));
                        continue;
                    }
                },
                // Relative to the upload: a file packed beside it (read by etl-geo when the
                // upload is a KMZ), or nothing that can be reached.
                (Err(url::ParseError::RelativeUrlWithoutBase), None) => continue,
                (Err(e), _) => {
                    out.skipped.push(format!("network link {href:?}: {e}"));
                    continue;
                }
            };
            let mut key = url.clone();
            key.set_fragment(None);
            if !seen.insert(key.to_string()) {
                continue;
            }
            // Failed fetches count too: 10,000 links that time out must not hold the import.
            attempts += 1;
            if attempts > MAX_DOCUMENTS || total >= MAX_TOTAL_BYTES {
                out.skipped.push(format!(
                    "network link {url}: over the limit of {MAX_DOCUMENTS} documents or {MAX_TOTAL_BYTES} bytes an upload"
                ));
                continue;
            }
            let n = out.linked.len() + out.skipped.len();
            let file = dir.join(format!("fetched-{n}"));
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| JobError::temporary(format!("{}: {e}", dir.display())))?;
            if fetcher.is_none() {
                fetcher = Some(
                    Fetcher::new(&opts.allow_hosts, opts.timeout, MAX_DOCUMENT_BYTES)
                        .map_err(JobError::config)?,
                );
            }
            let Some(fetcher_ref) = fetcher.as_ref() else {
                continue;
            };
            let (final_url, bytes) = tokio::select! {
                r = fetcher_ref.get(&url, &file) => match r {
                    Ok(got) => got,
                    Err(e) => {
                        out.skipped.push(format!("network link {e}"));
                        continue;
                    }
                },
                _ = cancel.cancelled() => return Err(crate::convert::stopped()),
            };
            total += bytes;
            let kml = {
                let (file, into, limits) =
                    (file.clone(), dir.join(format!("fetched-{n}.d")), *limits);
                blocking(move || kml_of(&file, &into, &limits)).await?
            };
            let kml = match kml {
                Ok(Some(k)) => k,
                Ok(None) => {
                    out.skipped.push(format!(
                        "network link {final_url}: not a KML or KMZ document"
                    ));
                    continue;
                }
                Err(e) => {
                    out.skipped.push(format!("network link {final_url}: {e}"));
                    continue;
                }
            };
            out.linked.push(LinkedDoc {
                label: final_url.to_string(),
                path: kml.clone(),
                layer: layer_name(&final_url, &mut layers),
            });
            out.docs.push((kml.clone(), Some(final_url.clone())));
            queue.push_back((kml, Some(final_url), depth + 1));
        }
    }
    for s in &out.skipped {
        tracing::warn!(upload = %upload.display(), "{s}");
    }
    cap_skipped(&mut out.skipped);
    Ok(out)
}

/// Most skipped links (or icons) listed one by one; the rest are counted in one line.
pub const MAX_SKIPPED_LISTED: usize = 20;

/// Keeps the first [`MAX_SKIPPED_LISTED`] and says how many more there were.
pub fn cap_skipped(skipped: &mut Vec<String>) {
    if skipped.len() > MAX_SKIPPED_LISTED {
        let more = skipped.len() - MAX_SKIPPED_LISTED;
        skipped.truncate(MAX_SKIPPED_LISTED);
        skipped.push(format!("… and {more} more"));
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::import::task_failed("network links", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_from_urls() {
        let mut taken = HashSet::new();
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            layer_name(&u("https://h/a/roads.kml?x=1"), &mut taken),
            "roads"
        );
        assert_eq!(
            layer_name(&u("https://h/b/roads.kmz"), &mut taken),
            "roads-2"
        );
        assert_eq!(layer_name(&u("https://h/"), &mut taken), "link");
    }
}
