//! The bytes of a GeoParquet file as the Parquet library asks for them, from any
//! [`ChunkReader`]: a local `File`, or a ranged reader over object storage where each
//! [`ChunkReader::get_bytes`] is one request. The same path for both:
//!
//! - **Read ahead within a column chunk**: the library reads a column chunk page by page (a
//!   header, then its body), so a read inside one of the column chunks read fetches a window
//!   of that chunk at once — the whole chunk when it fits — and the next pages are served from
//!   it. A window never crosses the end of its column chunk; each column's window is its share
//!   of [`READ_AHEAD`] (within [`MIN_WINDOW`] and [`MAX_WINDOW`]), and the windows held, of
//!   the current row group only, never add up to more than [`READ_AHEAD`]: with more columns
//!   than fit, the oldest window is dropped first. A page larger than its column's window is
//!   read whole (up to [`MAX_PAGE_BYTES`]) and handed over, not kept. The library reads a row
//!   group's columns side by side, so the first read of a row group asks for every column's
//!   first window at once ([`ChunkSource::get_ranges`]: concurrent requests for a reader over
//!   the network), when together they fit [`READ_AHEAD`].
//! - **Reads bounded**: a read the library starts inside a column chunk (a page header) ends
//!   at the end of that chunk; one started outside every column chunk (the footer's last
//!   bytes) is one request of at most [`SMALL_READ`] bytes, and ends there.
//! - **Page headers checked first**: before the library reads a page header (and allocates
//!   what it claims: a Snappy page is decompressed into a buffer of its stated size, zeroed
//!   first), the header is read here to its end the way the library reads it ([`header`]); a
//!   page claiming more than [`MAX_PAGE_BYTES`], and a header that is corrupt or reaches past
//!   its column chunk, is refused.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, Bytes};
use parquet::errors::{ParquetError, Result};
use parquet::file::reader::{ChunkReader, Length};

use super::MAX_PAGE_BYTES;
use super::header::{self, Unreadable};

/// The most bytes of windows held, for all the columns of a row group together.
const READ_AHEAD: u64 = 16 << 20;
/// Each column's window: its share of [`READ_AHEAD`], within these bounds.
const MIN_WINDOW: u64 = 64 << 10;
const MAX_WINDOW: u64 = 4 << 20;
/// Most bytes a read started outside the column chunks (the footer's last bytes) reads.
const SMALL_READ: u64 = 64 << 10;

/// A [`ChunkReader`] that can also read several ranges at once. The default reads them one
/// after another; a reader over the network sends the requests together.
pub trait ChunkSource: ChunkReader {
    /// The bytes of each range, in order.
    fn get_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|r| self.get_bytes(r.start, (r.end - r.start) as usize))
            .collect()
    }
}

impl ChunkSource for std::fs::File {}

impl ChunkSource for Bytes {}

/// A column chunk read: its bytes `start..end` and its row group.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) group: usize,
}

/// A window read ahead: bytes from `start` of the column chunk `span`.
struct Window {
    span: usize,
    start: u64,
    bytes: Bytes,
}

impl Window {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

#[derive(Default)]
struct State {
    /// Sorted by start.
    spans: Vec<Span>,
    window: u64,
    /// Oldest first; together at most [`READ_AHEAD`] bytes.
    windows: Vec<Window>,
}

impl State {
    /// A column chunk holding byte `at`.
    fn span_of(&self, at: u64) -> Option<usize> {
        let after = self.spans.partition_point(|s| s.start <= at);
        let i = after.checked_sub(1)?;
        if self.spans[i].end > at {
            return Some(i);
        }
        // Column chunks that overlap (a corrupt footer): any that holds `at`.
        self.spans[..i].iter().rposition(|s| s.end > at)
    }

    /// Bytes held in windows.
    fn held(&self) -> u64 {
        self.windows.iter().map(|w| w.bytes.len() as u64).sum()
    }

    /// Keeps `w` as its column chunk's window: drops the chunk's earlier one and other row
    /// groups', then the oldest until all fit [`READ_AHEAD`].
    fn keep(&mut self, w: Window) {
        let group = self.spans[w.span].group;
        let spans = &self.spans;
        self.windows
            .retain(|o| o.span != w.span && spans[o.span].group == group);
        let len = w.bytes.len() as u64;
        let mut held = self.held();
        while held.saturating_add(len) > READ_AHEAD && !self.windows.is_empty() {
            let old = self.windows.remove(0);
            held -= old.bytes.len() as u64;
        }
        self.windows.push(w);
    }
}

struct Shared<R> {
    inner: R,
    len: u64,
    state: Mutex<State>,
}

impl<R> Shared<R> {
    /// The lock is only ever held for bookkeeping; a panic elsewhere leaves the state valid.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: ChunkSource> Shared<R> {
    /// The bytes `start..start + len`: from a window when they lie in one column chunk and
    /// fit its window; else read as asked and not kept.
    fn bytes_at(&self, start: u64, len: u64) -> Result<Bytes> {
        let end = match start.checked_add(len) {
            Some(end) if end <= self.len => end,
            _ => {
                return Err(ParquetError::EOF(format!(
                    "bytes {start}..{} asked for, past the end of the file ({} bytes)",
                    start.saturating_add(len),
                    self.len
                )));
            }
        };
        let span = {
            let state = self.state();
            state
                .span_of(start)
                .filter(|&i| end <= state.spans[i].end && len <= state.window)
        };
        match span {
            Some(i) => Ok(self.window_at(i, start, len)?.slice(..len as usize)),
            None => self.fetch(start, len),
        }
    }

    /// The bytes of column chunk `i` from `at` to the end of a window holding at least
    /// `need` of them (`at + need` within the chunk, `need` at most a window).
    fn window_at(&self, i: usize, at: u64, need: u64) -> Result<Bytes> {
        let mut state = self.state();
        if let Some(w) = state
            .windows
            .iter()
            .find(|w| w.span == i && w.start <= at && at + need <= w.end())
        {
            return Ok(w.bytes.slice((at - w.start) as usize..));
        }
        let span = state.spans[i];
        if at == span.start
            && !state
                .windows
                .iter()
                .any(|w| state.spans[w.span].group == span.group)
        {
            // The row group's first read: every column's first window together.
            let group: Vec<usize> = (0..state.spans.len())
                .filter(|&j| state.spans[j].group == span.group)
                .collect();
            let ranges: Vec<Range<u64>> = group
                .iter()
                .map(|&j| {
                    let s = state.spans[j];
                    s.start..s.end.min(s.start.saturating_add(state.window))
                })
                .collect();
            if ranges.iter().map(|r| r.end - r.start).sum::<u64>() <= READ_AHEAD {
                // The previous row group's windows go before the next are read.
                state.windows.clear();
                let all = self.inner.get_ranges(&ranges)?;
                if all.len() != ranges.len() {
                    return Err(ParquetError::EOF(format!(
                        "asked for {} ranges, read {}",
                        ranges.len(),
                        all.len()
                    )));
                }
                for ((j, range), bytes) in group.into_iter().zip(ranges).zip(all) {
                    if bytes.len() as u64 != range.end - range.start {
                        state.windows.clear();
                        return Err(ParquetError::EOF(format!(
                            "asked for {} bytes at {}, read {}",
                            range.end - range.start,
                            range.start,
                            bytes.len()
                        )));
                    }
                    state.windows.push(Window {
                        span: j,
                        start: range.start,
                        bytes,
                    });
                }
                if let Some(w) = state
                    .windows
                    .iter()
                    .find(|w| w.span == i && at + need <= w.end())
                {
                    return Ok(w.bytes.clone());
                }
            }
        }
        let len = (span.end - at).min(state.window).max(need);
        let bytes = self.fetch(at, len)?;
        state.keep(Window {
            span: i,
            start: at,
            bytes: bytes.clone(),
        });
        Ok(bytes)
    }

    /// One read of the underlying reader, checked for its length.
    fn fetch(&self, start: u64, len: u64) -> Result<Bytes> {
        let n = usize::try_from(len)
            .map_err(|_| ParquetError::General(format!("{len} bytes: too many to read")))?;
        let bytes = self.inner.get_bytes(start, n)?;
        if bytes.len() != n {
            return Err(ParquetError::EOF(format!(
                "asked for {n} bytes at {start}, read {}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// A [`ChunkReader`] that reads ahead within column chunks and checks page headers.
pub(super) struct Chunks<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for Chunks<R> {
    fn clone(&self) -> Self {
        Chunks {
            shared: self.shared.clone(),
        }
    }
}

impl<R: ChunkSource> Chunks<R> {
    pub(super) fn new(inner: R) -> Self {
        let len = inner.len();
        Chunks {
            shared: Arc::new(Shared {
                inner,
                len,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The column chunks that will be read (in bounds of the file, checked by the caller).
    pub(super) fn set_spans(&self, mut spans: Vec<Span>, columns: usize) {
        spans.sort_by_key(|s| s.start);
        let mut state = self.shared.state();
        state.window = (READ_AHEAD / columns.max(1) as u64).clamp(MIN_WINDOW, MAX_WINDOW);
        state.spans = spans;
        state.windows.clear();
    }

    /// Bytes held in windows.
    #[cfg(test)]
    pub(super) fn held(&self) -> u64 {
        self.shared.state().held()
    }

    /// Refuses the page whose header starts at `at`, in the column chunk ending at `end`, if
    /// the header is not one the library reads as it is read here, or claims more than
    /// [`MAX_PAGE_BYTES`].
    fn check_page(&self, mut peek: ChunkRead<R>) -> Result<()> {
        let (at, end) = (peek.pos, peek.end);
        let sizes = header::page_sizes(&mut peek).map_err(|e| match e {
            Unreadable::Malformed(why) => {
                ParquetError::General(format!("the page header at byte {at} is corrupt: {why}"))
            }
            Unreadable::PastEnd => ParquetError::General(format!(
                "the page header at byte {at} reaches past the end of its column chunk (byte {end})"
            )),
            Unreadable::TooComplex => ParquetError::General(format!(
                "the page header at byte {at} is too deeply nested or too long to read"
            )),
            Unreadable::Read(e) => e,
        })?;
        for (what, size) in [
            ("uncompressed", sizes.uncompressed),
            ("compressed", sizes.compressed),
        ] {
            if let Some(n) = size
                && i64::from(n) > MAX_PAGE_BYTES
            {
                return Err(ParquetError::General(format!(
                    "the page at byte {at} claims {n} bytes {what}, more than the {} MiB read at once",
                    MAX_PAGE_BYTES >> 20
                )));
            }
        }
        Ok(())
    }
}

impl<R: ChunkSource> Length for Chunks<R> {
    fn len(&self) -> u64 {
        self.shared.len
    }
}

impl<R: ChunkSource> ChunkReader for Chunks<R> {
    type T = ChunkRead<R>;

    /// The library reads page headers (and the footer's last bytes) this way.
    fn get_read(&self, start: u64) -> Result<ChunkRead<R>> {
        let read = ChunkRead::new(self.shared.clone(), start);
        if read.span.is_some() {
            self.check_page(ChunkRead::new(self.shared.clone(), start))?;
        }
        Ok(read)
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        self.shared.bytes_at(start, length as u64)
    }
}

/// Reads from a position on, to the end of the column chunk it started in (through its
/// windows), or at most [`SMALL_READ`] bytes in one request outside every column chunk.
pub(super) struct ChunkRead<R> {
    shared: Arc<Shared<R>>,
    /// The column chunk read.
    span: Option<usize>,
    pos: u64,
    /// Where the read ends.
    end: u64,
    /// Bytes from `pos` on, read already.
    buf: Bytes,
}

impl<R: ChunkSource> ChunkRead<R> {
    fn new(shared: Arc<Shared<R>>, start: u64) -> Self {
        let (span, end) = {
            let state = shared.state();
            match state.span_of(start) {
                Some(i) => (Some(i), state.spans[i].end),
                None => (None, shared.len.min(start.saturating_add(SMALL_READ))),
            }
        };
        ChunkRead {
            shared,
            span,
            pos: start,
            end,
            buf: Bytes::new(),
        }
    }

    /// Fills `buf` when it is empty, unless at the end.
    fn fill(&mut self) -> Result<()> {
        if !self.buf.is_empty() || self.pos >= self.end {
            return Ok(());
        }
        self.buf = match self.span {
            Some(i) => self.shared.window_at(i, self.pos, 1)?,
            None => self.shared.fetch(self.pos, self.end - self.pos)?,
        };
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.pos += n as u64;
    }
}

impl<R: ChunkSource> Read for ChunkRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.fill().map_err(io::Error::other)?;
        let n = self.buf.len().min(buf.len());
        buf[..n].copy_from_slice(&self.buf[..n]);
        self.advance(n);
        Ok(n)
    }
}

impl<R: ChunkSource> header::Source for ChunkRead<R> {
    fn byte(&mut self) -> std::result::Result<u8, Unreadable> {
        self.fill().map_err(Unreadable::Read)?;
        let b = *self.buf.first().ok_or(Unreadable::PastEnd)?;
        self.advance(1);
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> std::result::Result<(), Unreadable> {
        let to = self
            .pos
            .checked_add(n)
            .filter(|&to| to <= self.end)
            .ok_or(Unreadable::PastEnd)?;
        if n < self.buf.len() as u64 {
            self.buf.advance(n as usize);
        } else {
            self.buf = Bytes::new();
        }
        self.pos = to;
        Ok(())
    }
}
