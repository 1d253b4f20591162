//! Ranged reads of one object version: the bytes `start..start + len` of the object as it was
//! listed, for readers that need random access (a Parquet footer, then its column chunks)
//! without copying the whole object first.
//!
//! An S3 read is a `GetObject` with `Range`, pinned to what the listing saw: `If-Match` its ETag
//! and, when the listing had one, its `VersionId`; the answer must carry the same ETag. An
//! object overwritten since is [`StoreError::Changed`], naming the bytes and the ETag read (a
//! retry lists the new version and reads it in place again), never a mix of two versions; a
//! listing or an answer without an ETag cannot be pinned and is an error (`MissingETag`), as
//! is an answer that is not exactly the bytes asked for.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;

use super::s3::{S3Store, required_etag, s3_err};
use super::{ObjectMeta, StoreError};

/// The range `start..start + len` of `meta`, checked against its listed size.
pub(super) fn checked_end(meta: &ObjectMeta, start: u64, len: u64) -> Result<u64, StoreError> {
    match start.checked_add(len) {
        Some(end) if end <= meta.size => Ok(end),
        _ => Err(StoreError::io(
            &meta.location,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "bytes {start}..{} asked for, beyond its {} bytes",
                    start.saturating_add(len),
                    meta.size
                ),
            ),
        )),
    }
}

/// A local file: the version is checked by size only (a file that shrank is changed).
pub(super) fn file_range(
    path: &Path,
    meta: &ObjectMeta,
    start: u64,
    len: u64,
) -> Result<Bytes, StoreError> {
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound(shown.to_string()),
        _ => StoreError::io(&shown, e),
    })?;
    let size = file
        .metadata()
        .map_err(|e| StoreError::io(&shown, e))?
        .len();
    if size != meta.size {
        return Err(StoreError::Changed(shown.to_string()));
    }
    let n = usize::try_from(len).map_err(|_| {
        StoreError::io(
            &shown,
            io::Error::new(io::ErrorKind::InvalidData, "a range too large to hold"),
        )
    })?;
    let mut buf = vec![0u8; n];
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => StoreError::Changed(shown.to_string()),
            _ => StoreError::io(&shown, e),
        })?;
    Ok(Bytes::from(buf))
}

impl S3Store {
    pub(super) async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        meta: &ObjectMeta,
        start: u64,
        len: u64,
    ) -> Result<Bytes, StoreError> {
        let loc = format!("s3://{bucket}/{key}");
        let last = start + len - 1;
        // Without the listing's ETag nothing would tell this version from a later one.
        let want = meta
            .etag
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| StoreError::S3 {
                location: loc.clone(),
                operation: "GetObject",
                message: format!(
                    "bytes {start}-{last}: the listing carries no ETag to pin the read to"
                ),
                status: None,
                code: Some("MissingETag".into()),
            })?;
        let changed =
            || StoreError::Changed(format!("{loc} (bytes {start}-{last} of ETag {want})"));
        let mut req = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={start}-{last}"));
        if let Some(v) = &meta.version_id {
            req = req.version_id(v);
        }
        let out = req.if_match(want).send().await.map_err(|e| {
            match s3_err(&loc, "GetObject", e) {
                // If-Match failed: overwritten since it was listed.
                StoreError::PreconditionFailed(_) => changed(),
                other => other,
            }
        })?;
        // A server that ignored If-Match (or Range) must not hand over another version's bytes.
        let got = required_etag(&loc, "GetObject", out.e_tag())?;
        if want.trim_matches('"') != got.trim_matches('"') {
            return Err(changed());
        }
        let expected_range = format!("bytes {start}-{last}/{}", meta.size);
        match out.content_range() {
            Some(r) if r == expected_range => {}
            // The same range of an object of another size: not the version listed.
            Some(r) if r.starts_with(&format!("bytes {start}-{last}/")) => {
                return Err(changed());
            }
            other => {
                return Err(bad_answer(
                    &loc,
                    format!(
                        "asked for {expected_range}, the answer holds {}",
                        other.unwrap_or("no Content-Range")
                    ),
                ));
            }
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::S3 {
                location: loc.clone(),
                operation: "GetObject",
                message: format!("reading bytes {start}-{last}: {e}"),
                status: None,
                code: None,
            })?
            .into_bytes();
        if bytes.len() as u64 != len {
            return Err(StoreError::S3 {
                location: loc,
                operation: "GetObject",
                message: format!(
                    "asked for {len} bytes at {start}, the answer held {}",
                    bytes.len()
                ),
                status: None,
                code: None,
            });
        }
        Ok(bytes)
    }
}

/// An answer that is not what was asked for (a server ignoring `Range`): worth a retry.
fn bad_answer(loc: &str, message: String) -> StoreError {
    StoreError::S3 {
        location: loc.to_owned(),
        operation: "GetObject",
        message,
        status: Some(206),
        code: Some("UnexpectedRange".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ExitKind;
    use crate::store::{S3Config, Store};

    fn meta_of(path: &Path) -> ObjectMeta {
        super::super::file::head(path).unwrap()
    }

    #[tokio::test]
    async fn a_local_range_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let store = Store::new(S3Config::default());
        let meta = meta_of(&path);
        assert_eq!(&store.read_range(&meta, 2, 3).await.unwrap()[..], b"234");
        assert_eq!(store.read_range(&meta, 10, 0).await.unwrap().len(), 0);
        let beyond = store.read_range(&meta, 8, 3).await.unwrap_err();
        assert!(
            beyond.to_string().contains("beyond its 10 bytes"),
            "{beyond}"
        );
        assert_eq!(crate::JobError::from(beyond).kind, ExitKind::BadInput);
        let overflow = store.read_range(&meta, u64::MAX, 2).await.unwrap_err();
        assert_eq!(crate::JobError::from(overflow).kind, ExitKind::BadInput);
        // Shorter since it was listed: changed, worth a retry.
        std::fs::write(&path, b"01234").unwrap();
        let changed = store.read_range(&meta, 0, 3).await.unwrap_err();
        assert!(matches!(changed, StoreError::Changed(_)), "{changed}");
        assert_eq!(crate::JobError::from(changed).kind, ExitKind::Temporary);
        std::fs::remove_file(&path).unwrap();
        let gone = store.read_range(&meta, 0, 3).await.unwrap_err();
        assert!(matches!(gone, StoreError::NotFound(_)), "{gone}");
    }
}
