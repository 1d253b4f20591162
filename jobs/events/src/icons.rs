//! The icons a KML or KMZ upload's placemarks use (`IconStyle/Icon/href`), made into 32 px
//! PNGs for an iconset, as CloudTAK's worker makes them (sharp, height 32): packed in the KMZ
//! (relative to the document, never outside the archive), or fetched (http/https, through the
//! NetworkLink guard). Each is bounded: 1 MiB read, 4096 px a side decoded, 200 icons an upload.
//! An icon that cannot be had is skipped with a warning; the placemark keeps its `icon` as it
//! was.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use etl_core::JobError;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::links::fetch::Fetcher;
use crate::links::{Followed, LinkOptions};

/// Icons one upload may have.
pub const MAX_ICONS: usize = 200;
/// Bytes of one icon file.
pub const MAX_ICON_BYTES: u64 = 1 << 20;
/// Largest side of an icon image decoded.
const MAX_SIDE: u32 = 4096;
/// The height icons are made at (CloudTAK's).
pub const ICON_HEIGHT: u32 = 32;

/// One icon, ready for an iconset.
#[derive(Debug, Clone, PartialEq)]
pub struct Icon {
    /// What placemarks name it by (their `icon` property).
    pub href: String,
    /// Its name in the iconset: a path ending `.png`, at most 64 characters.
    pub name: String,
    pub png: Vec<u8>,
}

/// An upload's icons and the ones skipped.
#[derive(Debug, Default)]
pub struct Icons {
    pub icons: Vec<Icon>,
    pub skipped: Vec<String>,
}

impl Icons {
    /// What each href becomes in the placemarks once the iconset `uid` exists:
    /// `<uid>:<name without .png>`.
    pub fn names(&self, uid: &str) -> HashMap<String, String> {
        self.icons
            .iter()
            .map(|i| {
                let stem = i.name.strip_suffix(".png").unwrap_or(&i.name);
                (i.href.clone(), format!("{uid}:{stem}"))
            })
            .collect()
    }
}

/// A name for an icon: the href's path (a packed file's, or a URL's last segment) with `.png`
/// for its extension; a hash when that is empty, too long, or taken.
fn icon_name(href: &str, url: Option<&url::Url>, taken: &mut HashSet<String>) -> String {
    let path = match url {
        Some(u) if u.query().is_none() => u
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("")
            .to_owned(),
        Some(_) => String::new(),
        None => href.to_owned(),
    };
    // The extension of the last segment only.
    let last = path.rfind('/').map_or(0, |i| i + 1);
    let stem = match path.get(last..).and_then(|l| l.rfind('.')) {
        Some(dot) => path.get(..last + dot).unwrap_or(&path).to_owned(),
        None => path.clone(),
    };
    let clean = |s: &str| {
        !s.is_empty()
            && s.chars().count() <= 60
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ' '))
            && !s.split('/').any(|p| p.is_empty() || p == "." || p == "..")
    };
    let mut name = if clean(&stem) {
        format!("{stem}.png")
    } else {
        String::new()
    };
    let mut n = 0u32;
    while name.is_empty() || taken.contains(&name) {
        let mut h = Sha256::new();
        h.update(href.as_bytes());
        h.update(n.to_le_bytes());
        let h = hex::encode(h.finalize());
        name = format!("icon-{}.png", h.get(..12).unwrap_or(&h));
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// A packed file an href names, relative to the document at `doc` and inside `root`.
fn packed(root: &Path, doc: &Path, href: &str) -> Option<PathBuf> {
    let href = href.split(['?', '#']).next().unwrap_or(href);
    if href.starts_with('/') || href.contains('\\') || href.contains(':') {
        return None;
    }
    let mut at: Vec<String> = doc
        .parent()?
        .strip_prefix(root)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for seg in href.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            s => at.push(s.to_owned()),
        }
    }
    let path = at.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    // A symlink could not have been unpacked (the archive reader refuses them); the file
    // must be a plain file here.
    path.is_file().then_some(path)
}

/// Decodes an image and makes it a PNG `ICON_HEIGHT` px high.
pub fn to_icon(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(128 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    let (w, h) = (img.width().max(1), img.height().max(1));
    let width = ((u64::from(w) * u64::from(ICON_HEIGHT) + u64::from(h) / 2) / u64::from(h))
        .clamp(1, 256) as u32;
    let small = img.resize_exact(width, ICON_HEIGHT, image::imageops::FilterType::Lanczos3);
    let mut out = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Finds, reads or fetches, and converts the icons the upload's documents name.
pub async fn collect(
    followed: &Followed,
    links: &LinkOptions,
    max_xml_text: usize,
    work: &Path,
    cancel: &CancellationToken,
) -> Result<Icons, JobError> {
    let mut out = Icons::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut attempts = 0usize;
    // Made at the first remote icon: an upload without one needs no TLS roots.
    let mut fetcher: Option<Fetcher> = None;
    let dir = work.join("icons");
    for (doc, base) in &followed.docs {
        let hrefs = {
            let doc = doc.clone();
            tokio::task::spawn_blocking(move || etl_geo::kml_icon_hrefs(&doc, max_xml_text))
                .await
                .map_err(|e| crate::import::task_failed("icons", e))?
        };
        // A document that cannot be read fails where it is read as features.
        let Ok(hrefs) = hrefs else { continue };
        for href in hrefs {
            if cancel.is_cancelled() {
                return Err(crate::convert::stopped());
            }
            if !seen.insert(href.clone()) {
                continue;
            }
            // Failed icons count too: each costs a fetch or a decode.
            attempts += 1;
            if attempts > MAX_ICONS {
                out.skipped.push(format!(
                    "icon {href}: over the limit of {MAX_ICONS} icons an upload"
                ));
                continue;
            }
            let url = match (url::Url::parse(&href), base) {
                (Ok(u), _) => Some(u),
                (Err(url::ParseError::RelativeUrlWithoutBase), Some(b)) => b.join(&href).ok(),
                _ => None,
            };
            let bytes = match &url {
                Some(u) if !links.follow => {
                    out.skipped
                        .push(format!("icon {u}: not fetched (--no-network-links)"));
                    continue;
                }
                Some(u) => {
                    tokio::fs::create_dir_all(&dir)
                        .await
                        .map_err(|e| JobError::temporary(format!("{}: {e}", dir.display())))?;
                    let file = dir.join(format!("fetched-{}", out.icons.len() + out.skipped.len()));
                    if fetcher.is_none() {
                        fetcher = Some(
                            Fetcher::new(&links.allow_hosts, links.timeout, MAX_ICON_BYTES)
                                .map_err(JobError::config)?,
                        );
                    }
                    let Some(f) = fetcher.as_ref() else { continue };
                    let got = tokio::select! {
                        r = f.get(u, &file) => r,
                        _ = cancel.cancelled() => return Err(crate::convert::stopped()),
                    };
                    match got {
                        Ok(_) => tokio::fs::read(&file)
                            .await
                            .map_err(|e| JobError::temporary(format!("{}: {e}", file.display())))?,
                        Err(e) => {
                            out.skipped.push(format!("icon {e}"));
                            continue;
                        }
                    }
                }
                None => {
                    let file = followed
                        .unpacked
                        .as_deref()
                        .and_then(|root| packed(root, doc, &href));
                    let Some(file) = file else {
                        out.skipped.push(format!("icon {href}: not in the upload"));
                        continue;
                    };
                    let len = tokio::fs::metadata(&file)
                        .await
                        .map_err(|e| JobError::temporary(format!("{}: {e}", file.display())))?
                        .len();
                    if len > MAX_ICON_BYTES {
                        out.skipped
                            .push(format!("icon {href}: over {MAX_ICON_BYTES} bytes"));
                        continue;
                    }
                    tokio::fs::read(&file)
                        .await
                        .map_err(|e| JobError::temporary(format!("{}: {e}", file.display())))?
                }
            };
            let png = tokio::task::spawn_blocking(move || to_icon(&bytes))
                .await
                .map_err(|e| crate::import::task_failed("icons", e))?;
            match png {
                Ok(png) => out.icons.push(Icon {
                    name: icon_name(&href, url.as_ref(), &mut names),
                    href,
                    png,
                }),
                Err(e) => out
                    .skipped
                    .push(format!("icon {href}: not an image this worker reads ({e})")),
            }
        }
    }
    for s in &out.skipped {
        tracing::warn!("{s}");
    }
    crate::links::cap_skipped(&mut out.skipped);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 20, 20, 255]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn icons_are_32_px_high_pngs() {
        let out = to_icon(&png(64, 128)).unwrap();
        let img = image::load_from_memory(&out).unwrap();
        assert_eq!((img.width(), img.height()), (16, 32));
        assert!(to_icon(b"not an image").is_err());
    }

    #[test]
    fn names() {
        let mut taken = HashSet::new();
        assert_eq!(
            icon_name("files/tent.jpg", None, &mut taken),
            "files/tent.png"
        );
        let u = url::Url::parse("http://h/k/pushpin.png").unwrap();
        assert_eq!(icon_name(u.as_str(), Some(&u), &mut taken), "pushpin.png");
        let q = url::Url::parse("http://h/k/icon?v=1").unwrap();
        assert!(icon_name(q.as_str(), Some(&q), &mut taken).starts_with("icon-"));
        // Taken, or with parts that climb: a hash.
        assert!(icon_name("other/../files/tent.jpg", None, &mut taken).starts_with("icon-"));
        assert!(icon_name("files/tent.gif", None, &mut taken).starts_with("icon-"));
        assert_eq!(
            icon_name("v1.2/marker", None, &mut taken),
            "v1.2/marker.png"
        );
    }

    #[test]
    fn packed_files_stay_inside_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/files")).unwrap();
        std::fs::write(root.join("a/files/x.png"), b"x").unwrap();
        std::fs::write(root.join("top.png"), b"x").unwrap();
        let doc = root.join("a/doc.kml");
        assert_eq!(
            packed(root, &doc, "files/x.png"),
            Some(root.join("a/files/x.png"))
        );
        assert_eq!(packed(root, &doc, "../top.png"), Some(root.join("top.png")));
        assert_eq!(packed(root, &doc, "../../etc/passwd"), None);
        assert_eq!(packed(root, &doc, "/etc/passwd"), None);
        assert_eq!(packed(root, &doc, "missing.png"), None);
    }
}
