//! Zip archives from untrusted uploads (KMZ, zipped Shapefiles, TAK data packages),
//! listed and extracted under limits.
//!
//! Refused, before anything is written: entries whose names climb out of the archive
//! (`..`, absolute paths, drive letters, backslash tricks), symlinks, encrypted entries,
//! more entries than allowed. While extracting, the bytes actually inflated are counted (the
//! sizes a zip declares can lie): past the total limit, or past the ratio limit of inflated
//! to compressed bytes, extraction stops and everything extracted is removed with the
//! caller's scratch directory.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::ReadError;

/// Limits on what one archive may expand to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchiveLimits {
    /// Total bytes all extracted entries may hold.
    pub max_total_bytes: u64,
    /// Largest ratio of inflated to compressed bytes for the archive and for any entry
    /// larger than 1 MiB (small entries compress well legitimately).
    pub max_ratio: u64,
    /// Most entries an archive may list.
    pub max_entries: usize,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_total_bytes: 4 << 30,
            max_ratio: 100,
            max_entries: 10_000,
        }
    }
}

/// One extracted file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry's name inside the archive, `/`-separated, as checked.
    pub name: String,
    /// Where it was extracted.
    pub path: PathBuf,
    /// Its inflated size.
    pub bytes: u64,
}

/// Whether `prefix` starts like a zip archive (local file header or an empty archive).
pub fn is_zip(prefix: &[u8]) -> bool {
    prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06")
}

/// The checked names of the files in the archive at `zip` (directories left out), in
/// archive order, without extracting anything.
pub fn list(zip: &Path, limits: &ArchiveLimits) -> Result<Vec<String>, ReadError> {
    let mut archive = open(zip)?;
    check_count(&archive, limits)?;
    let mut names = Vec::new();
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).map_err(zip_error)?;
        if let Some(name) = checked_name(&file)? {
            names.push(name);
        }
    }
    Ok(names)
}

/// Extracts every file of the archive at `zip` into the empty directory `into`, checking
/// names and limits; returns the entries in archive order. On error, files already
/// extracted stay in `into`: the caller owns that directory and removes it.
pub fn extract(zip: &Path, into: &Path, limits: &ArchiveLimits) -> Result<Vec<Entry>, ReadError> {
    let compressed_total = fs::metadata(zip)?.len().max(1);
    let mut archive = open(zip)?;
    check_count(&archive, limits)?;
    // Check every name before writing a byte.
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).map_err(zip_error)?;
        names.push(checked_name(&file)?);
    }
    let ratio_budget = compressed_total.saturating_mul(limits.max_ratio);
    let budget = limits.max_total_bytes.min(ratio_budget);
    let mut total = 0u64;
    let mut entries = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let Some(name) = name else { continue };
        let mut file = archive.by_index(i).map_err(zip_error)?;
        let path = name
            .split('/')
            .fold(into.to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        if path.exists() {
            return Err(refused(&name, "listed twice in the archive"));
        }
        let compressed = file.compressed_size().max(1);
        let mut out = File::create_new(&path)?;
        let remaining = budget.saturating_sub(total);
        let written = copy_limited(&mut file, &mut out, remaining.saturating_add(1))
            .map_err(|e| entry_io(&name, e))?;
        if written > remaining {
            return Err(if limits.max_total_bytes <= ratio_budget {
                ReadError::Refused(format!(
                    "zip bomb: entries expand to more than {} bytes in total (entry {name})",
                    limits.max_total_bytes
                ))
            } else {
                ReadError::Refused(format!(
                    "zip bomb: entries expand more than {}x the archive's size (entry {name})",
                    limits.max_ratio
                ))
            });
        }
        if written > 1 << 20 && written / compressed > limits.max_ratio {
            return Err(ReadError::Refused(format!(
                "zip bomb: entry {name} expands {}x (limit {}x)",
                written / compressed,
                limits.max_ratio
            )));
        }
        total = total.saturating_add(written);
        entries.push(Entry {
            name,
            path,
            bytes: written,
        });
    }
    Ok(entries)
}

fn open(zip: &Path) -> Result<zip::ZipArchive<File>, ReadError> {
    zip::ZipArchive::new(File::open(zip)?).map_err(zip_error)
}

fn check_count(archive: &zip::ZipArchive<File>, limits: &ArchiveLimits) -> Result<(), ReadError> {
    if archive.len() > limits.max_entries {
        return Err(ReadError::Refused(format!(
            "zip archive lists {} entries (limit {})",
            archive.len(),
            limits.max_entries
        )));
    }
    Ok(())
}

/// The entry's name if it is a safe relative path; `None` for directories.
fn checked_name<R: Read>(file: &zip::read::ZipFile<'_, R>) -> Result<Option<String>, ReadError> {
    let raw = String::from_utf8_lossy(file.name_raw()).into_owned();
    let shown = crate::formats::excerpt(&raw).to_owned();
    if file.is_symlink() {
        return Err(refused(&shown, "is a symbolic link"));
    }
    if file.encrypted() {
        return Err(refused(&shown, "is encrypted"));
    }
    let name = raw.replace('\\', "/");
    if name.starts_with('/') || name.as_bytes().get(1) == Some(&b':') {
        return Err(refused(&shown, "has an absolute path"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refused(&shown, "climbs out of the archive (..)")),
            p if p.contains('\0') => return Err(refused(&shown, "has a NUL byte in its name")),
            p => parts.push(p),
        }
    }
    // The library's own check as a second opinion.
    if file.enclosed_name().is_none_or(|p| {
        p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    }) {
        return Err(refused(&shown, "has an unsafe path"));
    }
    if file.is_dir() || name.ends_with('/') || parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

fn copy_limited(from: &mut impl Read, to: &mut File, limit: u64) -> io::Result<u64> {
    let written = io::copy(&mut from.take(limit), to)?;
    to.flush()?;
    Ok(written)
}

fn refused(name: &str, why: &str) -> ReadError {
    ReadError::Refused(format!("zip entry {name:?} {why}"))
}

fn entry_io(name: &str, e: io::Error) -> ReadError {
    if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
        ReadError::Refused(format!("zip entry {name:?} is corrupt: {e}"))
    } else {
        ReadError::Io(e)
    }
}

fn zip_error(e: zip::result::ZipError) -> ReadError {
    match e {
        zip::result::ZipError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
            ReadError::Io(e)
        }
        other => ReadError::Refused(format!("corrupt zip archive: {other}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    fn make(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn run(bytes: &[u8], limits: &ArchiveLimits) -> Result<Vec<Entry>, ReadError> {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("in.zip");
        fs::write(&zip, bytes).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        extract(&zip, &out, limits)
    }

    #[test]
    fn extracts_nested_entries() {
        let bytes = make(&[("doc.kml", b"<kml/>"), ("files/icon.png", b"png")]);
        let entries = run(&bytes, &ArchiveLimits::default()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["doc.kml", "files/icon.png"]);
        assert_eq!(entries[1].bytes, 3);
    }

    #[test]
    fn refuses_escaping_names() {
        for name in [
            "../evil.kml",
            "a/../../evil",
            "/etc/passwd",
            "C:/x",
            "..\\x",
        ] {
            let bytes = make(&[(name, b"x")]);
            let err = run(&bytes, &ArchiveLimits::default()).unwrap_err();
            assert!(matches!(err, ReadError::Refused(_)), "{name}: {err}");
            assert!(err.to_string().contains("zip entry"), "{name}: {err}");
        }
    }

    #[test]
    fn refuses_bombs_by_total_and_ratio() {
        let zeros = vec![0u8; 4 << 20];
        let bytes = make(&[("a.bin", &zeros)]);
        let total = ArchiveLimits {
            max_total_bytes: 1 << 20,
            max_ratio: 1_000_000,
            ..ArchiveLimits::default()
        };
        let err = run(&bytes, &total).unwrap_err().to_string();
        assert!(
            err.contains("zip bomb") && err.contains("in total"),
            "{err}"
        );
        let err = run(&bytes, &ArchiveLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("zip bomb") && err.contains("100x"), "{err}");
    }

    #[test]
    fn corrupt_archives_are_refused() {
        let mut bytes = make(&[("doc.kml", &[b'x'; 5000])]);
        bytes.truncate(bytes.len() / 2);
        let err = run(&bytes, &ArchiveLimits::default()).unwrap_err();
        assert!(matches!(err, ReadError::Refused(_)), "{err}");
    }
}
