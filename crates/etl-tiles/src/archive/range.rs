//! Where an archive's bytes come from: a ranged-read trait that a local file, any
//! `Read + Seek`, an in-memory buffer, the tile server's directory and S3 sources and
//! etl-pmtiles' HTTP(S) reader implement, so one directory walk ([`super::walk`]) serves them
//! all.
//!
//! The trait is asynchronous because the tile server is. The readers here answer at once (their
//! futures are always ready: they do blocking I/O when polled), and [`now`] drives a walk over
//! them to completion on the calling thread without any runtime.

use std::cell::RefCell;
use std::future::{Future, ready};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::ArchiveError;
use super::walk::check_within;

/// Byte ranges of one version of one archive.
///
/// The walk checks every range against [`RangeReader::size`] (and every length against the
/// limits in [`super`]) before it asks, so an implementation is never asked for more than the
/// archive holds; it must still answer exactly `len` bytes or an error, never fewer.
pub trait RangeReader {
    /// What a failed read is (an I/O error, an S3 or HTTP failure, "the object changed").
    type Error;

    /// The length of the archive in bytes, as of the version this reader reads.
    fn size(&self) -> u64;

    /// Exactly `len` bytes at `offset`.
    fn read_range(&self, offset: u64, len: u64)
    -> impl Future<Output = Result<Bytes, Self::Error>>;
}

/// A reader whose reads finish when they are made (blocking I/O, or memory). Every one is a
/// [`RangeReader`] whose futures are ready at once, so [`now`] can drive a walk over it.
pub trait BlockingRangeReader {
    /// The length of the archive in bytes.
    fn byte_len(&self) -> u64;

    /// Exactly `len` bytes at `offset`; a short read is [`ArchiveError::Truncated`].
    fn read_blocking(&self, offset: u64, len: u64) -> Result<Bytes, ArchiveError>;
}

impl<T: BlockingRangeReader> RangeReader for T {
    type Error = ArchiveError;

    fn size(&self) -> u64 {
        self.byte_len()
    }

    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, ArchiveError>> {
        ready(self.read_blocking(offset, len))
    }
}

/// A failed walk: the archive is corrupt (its own bytes say something impossible), or the
/// reader failed. Callers answer the two differently (a corrupt archive is a data error; a
/// reader error may be momentary).
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    #[error(transparent)]
    Corrupt(ArchiveError),
    #[error(transparent)]
    Source(E),
}

impl<E> From<ArchiveError> for ReadError<E> {
    fn from(e: ArchiveError) -> Self {
        ReadError::Corrupt(e)
    }
}

/// The readers of this module fail with an [`ArchiveError`] themselves (a short read is
/// [`ArchiveError::Truncated`]), so their walks fail with one too.
impl From<ReadError<ArchiveError>> for ArchiveError {
    fn from(e: ReadError<ArchiveError>) -> Self {
        match e {
            ReadError::Corrupt(e) | ReadError::Source(e) => e,
        }
    }
}

/// Runs a walk over readers whose reads are always ready (the ones in this module) to its end
/// on the calling thread. A future that is not ready at once (a reader that really waits)
/// is an error, never a blocked thread or a busy loop.
pub fn now<T, E>(fut: impl Future<Output = Result<T, E>>) -> Result<T, E>
where
    E: From<ArchiveError>,
{
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(E::from(ArchiveError::Io(std::io::Error::other(
            "an asynchronous reader was used where a synchronous one is required",
        )))),
    }
}

/// A short read means the file ends before the archive says it does.
fn read_error(e: std::io::Error, what: &str, offset: u64) -> ArchiveError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ArchiveError::Truncated(format!("{what} at offset {offset}: file ends early"))
    } else {
        ArchiveError::Io(e)
    }
}

/// A buffer for `len` bytes at `offset`, after checking they lie within the `size` bytes of the
/// archive: a reader never allocates more than the file holds.
fn buffer(offset: u64, len: u64, size: u64) -> Result<Vec<u8>, ArchiveError> {
    check_within("range", offset, len, size)?;
    let len = usize::try_from(len).map_err(|_| {
        ArchiveError::Truncated(format!("range at offset {offset}: length {len} too large"))
    })?;
    Ok(vec![0u8; len])
}

/// Any `Read + Seek` (a `Cursor`, a `BufReader<File>`) as a ranged reader: seek, then read.
/// Single-threaded (the stream's position is shared state).
pub struct IoReader<R> {
    r: RefCell<R>,
    size: u64,
}

impl<R: Read + Seek> IoReader<R> {
    /// A reader of the first `size` bytes of `r`.
    pub fn new(r: R, size: u64) -> Self {
        IoReader {
            r: RefCell::new(r),
            size,
        }
    }

    /// A reader of the whole stream (its length is found by seeking to its end).
    pub fn whole(mut r: R) -> Result<Self, ArchiveError> {
        let size = r.seek(SeekFrom::End(0))?;
        Ok(Self::new(r, size))
    }

    pub fn into_inner(self) -> R {
        self.r.into_inner()
    }
}

impl<R: Read + Seek> BlockingRangeReader for IoReader<R> {
    fn byte_len(&self) -> u64 {
        self.size
    }

    fn read_blocking(&self, offset: u64, len: u64) -> Result<Bytes, ArchiveError> {
        let mut buf = buffer(offset, len, self.size)?;
        let mut r = self.r.try_borrow_mut().map_err(|_| {
            ArchiveError::Io(std::io::Error::other("archive reader used re-entrantly"))
        })?;
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(&mut buf)
            .map_err(|e| read_error(e, "range", offset))?;
        Ok(Bytes::from(buf))
    }
}

/// A local file read with positioned reads (`pread`): no shared position, so one reader can
/// serve many threads. Reads block the thread that polls them; async callers run the walk on a
/// blocking thread.
pub struct FileReader {
    file: std::fs::File,
    size: u64,
}

impl FileReader {
    /// Reads the file as it is now: its length is taken once, from the open handle (a file
    /// replaced at its path afterwards is not seen; one rewritten in place reads short, which is
    /// an error).
    pub fn new(file: std::fs::File) -> Result<Self, ArchiveError> {
        let size = file.metadata()?.len();
        Ok(FileReader { file, size })
    }

    pub fn open(path: &std::path::Path) -> Result<Self, ArchiveError> {
        Self::new(std::fs::File::open(path)?)
    }
}

impl BlockingRangeReader for FileReader {
    fn byte_len(&self) -> u64 {
        self.size
    }

    fn read_blocking(&self, offset: u64, len: u64) -> Result<Bytes, ArchiveError> {
        let mut buf = buffer(offset, len, self.size)?;
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| read_error(e, "range", offset))?;
        Ok(Bytes::from(buf))
    }
}

/// An archive held in memory (tests, fuzzing, an archive fetched whole). Reads share the buffer.
impl BlockingRangeReader for Bytes {
    fn byte_len(&self) -> u64 {
        self.len() as u64
    }

    fn read_blocking(&self, offset: u64, len: u64) -> Result<Bytes, ArchiveError> {
        let range = usize::try_from(offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            (end <= self.len()).then_some(start..end)
        });
        match range {
            Some(r) => Ok(self.slice(r)),
            None => Err(ArchiveError::Truncated(format!(
                "range at offset {offset}: length {len} ends beyond the {} bytes held",
                self.len()
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn readers_answer_exact_ranges_or_errors() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mem = Bytes::from(data.clone());
        let io = IoReader::new(std::io::Cursor::new(data.clone()), 256);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, &data).unwrap();
        let file = FileReader::open(&path).unwrap();
        for (offset, len) in [(0u64, 0u64), (0, 256), (10, 5), (255, 1)] {
            let want = &data[offset as usize..(offset + len) as usize];
            assert_eq!(&now(mem.read_range(offset, len)).unwrap()[..], want);
            assert_eq!(&now(io.read_range(offset, len)).unwrap()[..], want);
            assert_eq!(&now(file.read_range(offset, len)).unwrap()[..], want);
        }
        assert_eq!(file.size(), 256);
        for (offset, len) in [(250u64, 10u64), (u64::MAX, 2), (0, u64::MAX)] {
            assert!(now(mem.read_range(offset, len)).is_err());
            assert!(now(file.read_range(offset, len)).is_err());
        }
        assert!(matches!(
            now(io.read_range(250, 10)),
            Err(ArchiveError::Truncated(_))
        ));
    }

    #[test]
    fn a_pending_future_is_an_error_not_a_hang() {
        let r: Result<(), ArchiveError> = now(async {
            std::future::pending::<()>().await;
            Ok(())
        });
        assert!(matches!(r, Err(ArchiveError::Io(_))));
    }
}
