//! The bytes of a GeoParquet file as the Parquet library asks for them, from any
//! [`ChunkReader`]: a local `File`, or a ranged reader over object storage where each
//! [`ChunkReader::get_bytes`] is one request. The same path for both:
//!
//! - **Read ahead within a column chunk**: the library reads a column chunk page by page (a
//!   header, then its body), so a read inside one of the column chunks read fetches up to a
//!   window of that chunk at once — the whole chunk when it fits — and the next pages are
//!   served from it. A window never crosses the end of its column chunk, and only the
//!   current row group's windows are kept: at most one per column, [`READ_AHEAD`] bytes for
//!   all columns together (a page larger than its window is read whole, up to
//!   [`MAX_PAGE_BYTES`]). The library reads a row group's columns side by side, so the first
//!   read of a row group asks for every column's first window at once
//!   ([`ChunkSource::get_ranges`]: concurrent requests for a reader over the network), when
//!   together they fit [`READ_AHEAD`].
//! - **Page headers checked first**: before the library reads a page header (and allocates
//!   what it claims: a Snappy page is decompressed into a buffer of its stated size, zeroed
//!   first), the header's sizes are read here; a page claiming more than [`MAX_PAGE_BYTES`]
//!   is refused.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use parquet::errors::{ParquetError, Result};
use parquet::file::reader::{ChunkReader, Length};

use super::MAX_PAGE_BYTES;

/// Bytes read ahead for all the columns of a row group together.
const READ_AHEAD: u64 = 16 << 20;
/// Each column's window: its share of [`READ_AHEAD`], within these bounds.
const MIN_WINDOW: u64 = 256 << 10;
const MAX_WINDOW: u64 = 4 << 20;
/// Most bytes one read outside the column chunks (footer, headers) asks for at once.
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

#[derive(Default)]
struct State {
    /// Sorted by start.
    spans: Vec<Span>,
    window: u64,
    windows: Vec<Window>,
}

impl State {
    /// The column chunk holding byte `at`.
    fn span_of(&self, at: u64) -> Option<usize> {
        let after = self.spans.partition_point(|s| s.start <= at);
        let i = after.checked_sub(1)?;
        (self.spans[i].end > at).then_some(i)
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
    /// The bytes `start..start + len`, through the column chunks' windows.
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
        let mut state = self.state();
        let Some(i) = state.span_of(start).filter(|&i| end <= state.spans[i].end) else {
            drop(state);
            return self.fetch(start, len);
        };
        if let Some(w) = state
            .windows
            .iter()
            .find(|w| w.span == i && w.start <= start && end <= w.start + w.bytes.len() as u64)
        {
            let from = (start - w.start) as usize;
            return Ok(w.bytes.slice(from..from + len as usize));
        }
        let span = state.spans[i];
        if start == span.start
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
                let all = self.inner.get_ranges(&ranges)?;
                state.windows.clear();
                for ((j, range), bytes) in group.into_iter().zip(ranges).zip(all) {
                    if bytes.len() as u64 != range.end - range.start {
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
                    .find(|w| w.span == i && end <= w.start + w.bytes.len() as u64)
                {
                    return Ok(w.bytes.slice(..len as usize));
                }
            }
        }
        let until = span.end.min(start.saturating_add(state.window)).max(end);
        let bytes = self.fetch(start, until - start)?;
        let State { spans, windows, .. } = &mut *state;
        windows.retain(|w| w.span != i && spans[w.span].group == span.group);
        windows.push(Window {
            span: i,
            start,
            bytes: bytes.clone(),
        });
        Ok(bytes.slice(..len as usize))
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

    /// How many bytes a read at `at` asks for: to the end of its column chunk, or a little.
    fn readable(&self, at: u64) -> u64 {
        let state = self.state();
        match state.span_of(at) {
            Some(i) => state.spans[i].end - at,
            None => (self.len - at).min(SMALL_READ),
        }
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

    /// Refuses the page whose header starts at `at` if it claims more than [`MAX_PAGE_BYTES`].
    fn check_page(&self, at: u64, end: u64) -> Result<()> {
        let mut peek = Peek {
            end,
            read: ChunkRead {
                shared: self.shared.clone(),
                pos: at,
            },
            budget: PEEK_BUDGET,
        };
        match peek.page_sizes() {
            Ok((uncompressed, compressed)) => {
                for (what, size) in [("uncompressed", uncompressed), ("compressed", compressed)] {
                    // Over the bound as a 64-bit value, or as the 32-bit one a reader may keep.
                    if size
                        .is_some_and(|n| n > MAX_PAGE_BYTES || i64::from(n as i32) > MAX_PAGE_BYTES)
                    {
                        return Err(ParquetError::General(format!(
                            "the page at byte {at} claims {} bytes {what}, more than the {} MiB read at once",
                            size.unwrap_or_default(),
                            MAX_PAGE_BYTES >> 20
                        )));
                    }
                }
                Ok(())
            }
            Err(Unpeekable::TooComplex) => Err(ParquetError::General(format!(
                "the page header at byte {at} is too deeply nested or too long to read"
            ))),
            // Not a header this reads: the library's own reader reports what is wrong.
            Err(Unpeekable::Malformed) => Ok(()),
            Err(Unpeekable::Read(e)) => Err(e),
        }
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
        let span = {
            let state = self.shared.state();
            state.span_of(start).map(|i| state.spans[i].end)
        };
        if let Some(end) = span {
            self.check_page(start, end)?;
        }
        Ok(ChunkRead {
            shared: self.shared.clone(),
            pos: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        self.shared.bytes_at(start, length as u64)
    }
}

/// Reads from a position on, through the column chunks' windows.
pub(super) struct ChunkRead<R> {
    shared: Arc<Shared<R>>,
    pos: u64,
}

impl<R: ChunkSource> Read for ChunkRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.shared.len {
            return Ok(0);
        }
        let n = self.shared.readable(self.pos).min(buf.len() as u64);
        let bytes = self
            .shared
            .bytes_at(self.pos, n)
            .map_err(io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.pos += bytes.len() as u64;
        Ok(bytes.len())
    }
}

/// Fields, elements and nesting a page header may have before its sizes are found.
const PEEK_BUDGET: u32 = 100_000;
const PEEK_DEPTH: u32 = 32;

enum Unpeekable {
    /// Not Thrift's compact encoding as this reads it.
    Malformed,
    /// More fields or nesting than any real header has.
    TooComplex,
    Read(ParquetError),
}

/// Reads the sizes of a page header (Thrift compact protocol: `PageHeader` fields 2,
/// `uncompressed_page_size`, and 3, `compressed_page_size`), skipping any other field in
/// whatever order they come, without holding any of it.
struct Peek<R> {
    read: ChunkRead<R>,
    /// The end of the column chunk: a header does not reach past it.
    end: u64,
    budget: u32,
}

impl<R: ChunkSource> Peek<R> {
    fn byte(&mut self) -> std::result::Result<u8, Unpeekable> {
        if self.read.pos >= self.end {
            return Err(Unpeekable::Malformed);
        }
        let mut b = [0u8; 1];
        match self.read.read(&mut b) {
            Ok(1) => Ok(b[0]),
            Ok(_) => Err(Unpeekable::Malformed),
            Err(e) => Err(Unpeekable::Read(ParquetError::External(Box::new(e)))),
        }
    }

    fn spend(&mut self) -> std::result::Result<(), Unpeekable> {
        self.budget = self.budget.checked_sub(1).ok_or(Unpeekable::TooComplex)?;
        Ok(())
    }

    fn varint(&mut self) -> std::result::Result<u64, Unpeekable> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Unpeekable::Malformed)
    }

    fn zigzag(&mut self) -> std::result::Result<i64, Unpeekable> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) {
        self.read.pos = self.read.pos.saturating_add(n);
    }

    /// The two sizes of the header at the read position, as far as it has them.
    fn page_sizes(&mut self) -> std::result::Result<(Option<i64>, Option<i64>), Unpeekable> {
        let (mut uncompressed, mut compressed) = (None, None);
        let mut id = 0i64;
        while uncompressed.is_none() || compressed.is_none() {
            self.spend()?;
            let header = self.byte()?;
            if header == 0 {
                break;
            }
            let kind = header & 0x0f;
            let delta = i64::from(header >> 4);
            id = if delta == 0 {
                self.zigzag()?
            } else {
                id + delta
            };
            match (id, kind) {
                (2, 5) => uncompressed = Some(self.zigzag()?),
                (3, 5) => compressed = Some(self.zigzag()?),
                _ => self.skip(kind, false, 0)?,
            }
        }
        Ok((uncompressed, compressed))
    }

    /// Skips one value of Thrift compact type `kind` (`listed`: an element of a list, where
    /// a boolean takes a byte).
    fn skip(&mut self, kind: u8, listed: bool, depth: u32) -> std::result::Result<(), Unpeekable> {
        self.spend()?;
        if depth > PEEK_DEPTH {
            return Err(Unpeekable::TooComplex);
        }
        match kind {
            1 | 2 if !listed => {}
            1..=3 => self.skip_bytes(1),
            4..=6 => {
                self.varint()?;
            }
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n);
            }
            9 | 10 => {
                let header = self.byte()?;
                let n = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    self.skip(header & 0x0f, true, depth + 1)?;
                }
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let types = self.byte()?;
                    for _ in 0..n {
                        self.skip(types >> 4, true, depth + 1)?;
                        self.skip(types & 0x0f, true, depth + 1)?;
                    }
                }
            }
            12 => loop {
                self.spend()?;
                let header = self.byte()?;
                if header == 0 {
                    break;
                }
                if header >> 4 == 0 {
                    self.zigzag()?;
                }
                self.skip(header & 0x0f, false, depth + 1)?;
            },
            13 => self.skip_bytes(16),
            _ => return Err(Unpeekable::Malformed),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `header` at byte 100 of a file, inside a column chunk.
    fn check(header: &[u8]) -> Result<()> {
        let mut file = vec![0u8; 100];
        file.extend_from_slice(header);
        file.resize(file.len() + 100, 0);
        let chunks = Chunks::new(Bytes::from(file));
        let end = chunks.len() - 50;
        chunks.set_spans(
            vec![Span {
                start: 100,
                end,
                group: 0,
            }],
            1,
        );
        chunks.get_read(100).map(|_| ())
    }

    #[test]
    fn page_sizes_are_found_in_any_field_order() {
        // Fields 1, 2, 3 in order, then the data page header: 4096 bytes both ways.
        let plain = [0x15, 0x00, 0x15, 0x80, 0x40, 0x15, 0x80, 0x40, 0x00];
        assert!(check(&plain).is_ok());
        // A binary (field 8), a list of structs (field 9) and a nested struct (field 5)
        // first, then field 3 and field 2 by their long form: 2^30 bytes uncompressed.
        let mut reordered = vec![0x08, 0x10, 0x03, b'x', b'y', b'z'];
        reordered.extend([0x19, 0x2c, 0x15, 0x02, 0x00, 0x15, 0x04, 0x00]);
        reordered.extend([0x0c, 0x0a, 0x15, 0x00, 0x16, 0x02, 0x00]);
        reordered.extend([0x05, 0x06, 0x80, 0x40]);
        reordered.extend([0x05, 0x04, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00]);
        let e = check(&reordered).unwrap_err().to_string();
        assert!(e.contains("claims 1073741824 bytes uncompressed"), "{e}");
        // Nesting deeper than any header: refused, not followed.
        let mut deep = vec![0x1c; 40];
        deep.push(0x00);
        let e = check(&deep).unwrap_err().to_string();
        assert!(e.contains("too deeply nested"), "{e}");
        // Not a header this reads (an unknown type): left to the library to report.
        assert!(check(&[0x1e, 0x00]).is_ok());
    }
}
