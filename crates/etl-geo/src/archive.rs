//! Zip archives from untrusted uploads (KMZ, zipped Shapefiles, TAK data packages),
//! listed and extracted under limits.
//!
//! Refused, before anything is written: entries whose names climb out of the archive
//! (`..`, absolute paths, drive letters, backslash tricks), names the file system cannot hold
//! or that collide (a file listed twice, a name that is both a file and a folder), symlinks,
//! encrypted entries, more entries than allowed. While extracting, the bytes actually inflated
//! are counted (the sizes a zip declares can lie): past the total limit, or past the ratio
//! limit of inflated to compressed bytes, extraction stops and everything extracted is removed
//! with the caller's scratch directory. One [`Budget`] can be shared by every archive of an
//! upload, nested ones included, so that nesting does not multiply the limits.
//!
//! Every way an archive's own structure can fail (hostile names, corrupt or truncated data, a
//! limit) is [`ReadError::Refused`]; only failures of the local disk are [`ReadError::Io`].

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::ReadError;

/// The longest name part most file systems hold (ext4, XFS, tmpfs: 255 bytes).
const MAX_NAME_PART_BYTES: usize = 255;
/// The longest entry name extracted; the scratch path comes on top, below `PATH_MAX`.
const MAX_NAME_BYTES: usize = 3072;
const COPY_BUFFER: usize = 64 * 1024;

/// Limits on what one upload's archives may expand to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchiveLimits {
    /// Total bytes all extracted entries may hold (of all archives sharing a [`Budget`]).
    pub max_total_bytes: u64,
    /// Largest ratio of inflated to compressed bytes for the archive and for any entry
    /// larger than 1 MiB (small entries compress well legitimately).
    pub max_ratio: u64,
    /// Most entries an archive may list (and all archives sharing a [`Budget`] together).
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

/// One upload's expansion allowance: the bytes inflated and the entries listed by every
/// archive extracted with it ([`extract_within`]), nested archives at any depth included,
/// count against one [`ArchiveLimits::max_total_bytes`] and [`ArchiveLimits::max_entries`].
#[derive(Debug, Clone)]
pub struct Budget {
    limits: ArchiveLimits,
    bytes: u64,
    entries: usize,
}

impl Budget {
    pub fn new(limits: &ArchiveLimits) -> Self {
        Budget {
            limits: *limits,
            bytes: 0,
            entries: 0,
        }
    }

    /// Bytes inflated so far by all archives extracted with this budget.
    pub fn bytes_used(&self) -> u64 {
        self.bytes
    }

    /// Entries listed so far by all archives extracted with this budget.
    pub fn entries_used(&self) -> usize {
        self.entries
    }

    pub fn limits(&self) -> &ArchiveLimits {
        &self.limits
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
    extract_within(zip, into, &mut Budget::new(limits))
}

/// [`extract`], counting the inflated bytes and listed entries against `budget`, which the
/// other archives of the same upload (nested ones) share.
pub fn extract_within(
    zip: &Path,
    into: &Path,
    budget: &mut Budget,
) -> Result<Vec<Entry>, ReadError> {
    let limits = budget.limits;
    let compressed_total = fs::metadata(zip)?.len().max(1);
    let mut archive = open(zip)?;
    check_count(&archive, &limits)?;
    let entries_after = budget.entries.saturating_add(archive.len());
    if entries_after > limits.max_entries {
        return Err(ReadError::Refused(format!(
            "zip archives nested in the upload list more than {} entries together ({} with this one)",
            limits.max_entries, entries_after
        )));
    }
    budget.entries = entries_after;
    // Check every name before writing a byte.
    let mut names = Vec::with_capacity(archive.len());
    let mut files = HashSet::new();
    let mut folders = HashSet::new();
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).map_err(zip_error)?;
        let name = checked_name(&file)?;
        if let Some(name) = &name {
            check_collision(name, &mut files, &mut folders)?;
        }
        names.push(name);
    }
    let ratio_budget = compressed_total.saturating_mul(limits.max_ratio);
    let nested = budget.bytes > 0;
    let mut total = 0u64;
    let mut entries = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let Some(name) = name else { continue };
        let mut file = archive.by_index(i).map_err(zip_error)?;
        let path = name
            .split('/')
            .fold(into.to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| name_io(&name, e))?;
        }
        let compressed = file.compressed_size().max(1);
        let mut out = File::create_new(&path).map_err(|e| name_io(&name, e))?;
        let by_total = limits.max_total_bytes.saturating_sub(budget.bytes);
        let by_ratio = ratio_budget.saturating_sub(total);
        let remaining = by_total.min(by_ratio);
        let written = copy_limited(&mut file, &mut out, remaining.saturating_add(1), &name)?;
        if written > remaining {
            return Err(if by_total <= by_ratio {
                ReadError::Refused(format!(
                    "zip bomb: entries expand to more than {} bytes in total{} (entry {name})",
                    limits.max_total_bytes,
                    if nested {
                        ", counting every archive of the upload"
                    } else {
                        ""
                    }
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
        budget.bytes = budget.bytes.saturating_add(written);
        entries.push(Entry {
            name,
            path,
            bytes: written,
        });
    }
    Ok(entries)
}

fn open(zip: &Path) -> Result<zip::ZipArchive<File>, ReadError> {
    let archive = zip::ZipArchive::new(File::open(zip)?).map_err(zip_error)?;
    // The library keeps one of several entries of the same name: which one is ambiguous
    // (other tools may pick another), so such an archive is refused.
    if archive.has_duplicate_names() {
        return Err(ReadError::Refused(
            "zip archive has an entry name listed twice in its central directory".to_owned(),
        ));
    }
    Ok(archive)
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

/// Refuses a file listed twice, or a name that is a file and also a folder of another entry
/// (`a` and `a/b`): extracting either would fail on the file system.
fn check_collision(
    name: &str,
    files: &mut HashSet<String>,
    folders: &mut HashSet<String>,
) -> Result<(), ReadError> {
    if folders.contains(name) {
        return Err(refused(name, "is both a file and a folder in the archive"));
    }
    let mut end = 0;
    while let Some(slash) = name.get(end..).and_then(|rest| rest.find('/')) {
        end += slash;
        let folder = name.get(..end).unwrap_or(name);
        if files.contains(folder) {
            return Err(refused(
                name,
                "is inside a name that is a file in the archive",
            ));
        }
        folders.insert(folder.to_owned());
        end += 1;
    }
    if !files.insert(name.to_owned()) {
        return Err(refused(name, "listed twice in the archive"));
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
    if name.len() > MAX_NAME_BYTES {
        return Err(refused(
            &shown,
            &format!("has a name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refused(&shown, "climbs out of the archive (..)")),
            p if p.contains('\0') => return Err(refused(&shown, "has a NUL byte in its name")),
            p if p.len() > MAX_NAME_PART_BYTES => {
                return Err(refused(
                    &shown,
                    &format!("has a name part longer than {MAX_NAME_PART_BYTES} bytes"),
                ));
            }
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

/// Copies at most `limit` bytes. A failure to read (inflate) the entry is the archive's
/// fault unless the disk reported it; a failure to write is the local disk's.
fn copy_limited(
    from: &mut impl Read,
    to: &mut File,
    limit: u64,
    name: &str,
) -> Result<u64, ReadError> {
    let mut from = from.take(limit);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut written = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(archive_io(e, || format!("zip entry {name:?} is corrupt"))),
        };
        to.write_all(buf.get(..n).unwrap_or_default())?;
        written = written.saturating_add(n as u64);
    }
    to.flush()?;
    Ok(written)
}

fn refused(name: &str, why: &str) -> ReadError {
    ReadError::Refused(format!("zip entry {name:?} {why}"))
}

/// An error creating an entry's file or folders. The scratch directory is fresh and empty,
/// so a name that exists already, is not a folder, or is not a valid file name comes from
/// the archive; anything else (no space, permissions, a failing disk) is the local disk's.
fn name_io(name: &str, e: io::Error) -> ReadError {
    use io::ErrorKind as K;
    match e.kind() {
        K::AlreadyExists
        | K::NotADirectory
        | K::IsADirectory
        | K::InvalidFilename
        | K::InvalidInput => refused(
            crate::formats::excerpt(name),
            &format!("cannot be extracted under its name: {e}"),
        ),
        _ => ReadError::Io(e),
    }
}

/// An I/O error while reading an archive. What the disk reports (an OS error) is the local
/// disk's and may go away; what the zip and inflate code reports (corrupt or truncated data,
/// an impossible offset) is the archive's.
fn archive_io(e: io::Error, what: impl FnOnce() -> String) -> ReadError {
    match e.raw_os_error() {
        Some(_) if e.kind() != io::ErrorKind::InvalidInput => ReadError::Io(e),
        _ => ReadError::Refused(format!("{}: {e}", what())),
    }
}

fn zip_error(e: zip::result::ZipError) -> ReadError {
    match e {
        zip::result::ZipError::Io(e) => archive_io(e, || "corrupt zip archive".to_owned()),
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
    fn one_budget_spans_several_archives() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("in.zip");
        fs::write(&zip, make(&[("a.bin", &[7u8; 600])])).unwrap();
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            let out = dir.path().join(n.to_string());
            fs::create_dir(&out).unwrap();
            out
        };
        let limits = ArchiveLimits {
            max_total_bytes: 1000,
            max_ratio: 1_000_000,
            max_entries: 3,
        };
        let mut budget = Budget::new(&limits);
        assert_eq!(
            extract_within(&zip, &fresh(), &mut budget).unwrap().len(),
            1
        );
        assert_eq!((budget.bytes_used(), budget.entries_used()), (600, 1));
        // Alone, the same archive fits again; after the first, with the same budget, not.
        assert!(extract(&zip, &fresh(), &limits).is_ok());
        let err = extract_within(&zip, &fresh(), &mut budget).unwrap_err();
        assert!(matches!(err, ReadError::Refused(_)), "{err}");
        assert!(err.to_string().contains("counting every archive"), "{err}");
        // Entries likewise.
        let mut entries = Budget::new(&ArchiveLimits {
            max_entries: 1,
            ..limits
        });
        assert!(extract_within(&zip, &fresh(), &mut entries).is_ok());
        let err = extract_within(&zip, &fresh(), &mut entries).unwrap_err();
        assert!(err.to_string().contains("entries together"), "{err}");
    }

    #[test]
    fn colliding_names_are_refused_before_writing() {
        for names in [["a", "a/b"], ["a/b", "a"], ["x/a", "x/a/b"]] {
            let bytes = make(&[(names[0], b"1"), (names[1], b"2")]);
            let dir = tempfile::tempdir().unwrap();
            let zip = dir.path().join("in.zip");
            fs::write(&zip, bytes).unwrap();
            let out = dir.path().join("out");
            fs::create_dir(&out).unwrap();
            let err = extract(&zip, &out, &ArchiveLimits::default()).unwrap_err();
            assert!(matches!(err, ReadError::Refused(_)), "{names:?}: {err}");
            assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "{names:?}");
        }
    }

    #[test]
    fn disk_errors_stay_io_archive_errors_do_not() {
        let disk = archive_io(io::Error::from_raw_os_error(5), || "x".to_owned());
        assert!(disk.is_io(), "EIO: {disk}");
        let seek = archive_io(io::Error::from_raw_os_error(22), || "x".to_owned());
        assert!(matches!(seek, ReadError::Refused(_)), "EINVAL: {seek}");
        let data = archive_io(io::Error::new(io::ErrorKind::InvalidData, "bad"), || {
            "x".to_owned()
        });
        assert!(matches!(data, ReadError::Refused(_)), "{data}");
        let full = name_io("a", io::Error::from_raw_os_error(28));
        assert!(full.is_io(), "ENOSPC: {full}");
        let taken = name_io("a", io::Error::from(io::ErrorKind::AlreadyExists));
        assert!(matches!(taken, ReadError::Refused(_)), "{taken}");
    }

    #[test]
    fn corrupt_archives_are_refused() {
        let mut bytes = make(&[("doc.kml", &[b'x'; 5000])]);
        bytes.truncate(bytes.len() / 2);
        let err = run(&bytes, &ArchiveLimits::default()).unwrap_err();
        assert!(matches!(err, ReadError::Refused(_)), "{err}");
    }
}
