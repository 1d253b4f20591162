//! Page headers read the way the Parquet library reads them (a repeated size field, a size
//! declared i64, a header reaching past its column chunk: all refused before the library
//! allocates anything), reads bounded by their column chunk, and the windows held bounded
//! however many columns a row group has.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use super::super::chunks::{Chunks, Span};
use super::chunks::{Reads, int, page_header, read_all, with_page};

const MIB: u64 = 1 << 20;

/// The rest of a data page header after field 2 or 3: field 5 (by its delta from `last`),
/// 50 values, PLAIN, RLE levels.
fn data_page(h: &mut Vec<u8>, last: u8) {
    h.push(((5 - last) << 4) | 0x0c);
    h.push(0x15);
    int(h, 50);
    h.extend([0x15, 0x00, 0x15, 0x06, 0x15, 0x06, 0x00, 0x00]);
}

fn assert_refused(bytes: &[u8], expected: &str) -> Reads {
    let (records, reads) = read_all(bytes);
    let e = records.unwrap_err().to_string();
    assert!(
        e.starts_with("mem.parquet: corrupt data in row group 0: "),
        "{e}"
    );
    assert!(e.contains(expected), "{e}");
    assert!(!e.contains('\n'), "{e}");
    reads
}

#[test]
fn a_size_repeated_in_the_header_is_read_as_the_library_reads_it() {
    // Snappy page: fields 2 and 3 say 100, then field 2 again by its long form says
    // i32::MAX, which is what the library keeps (and would allocate, zeroed).
    let hostile = with_page(|_| {
        let mut h = vec![0x15, 0x00, 0x15, 0xc8, 0x01, 0x15, 0xc8, 0x01];
        h.extend([0x05, 0x04, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
        data_page(&mut h, 2);
        h
    });
    let reads = assert_refused(
        &hostile,
        "claims 2147483647 bytes uncompressed, more than the 256 MiB read at once",
    );
    assert!(reads.iter().all(|&(_, len)| len < 64 << 10), "{reads:?}");
}

#[test]
fn a_size_declared_i64_is_read_as_the_library_reads_it() {
    let hostile = with_page(|body| {
        let mut h = vec![0x15, 0x00, 0x16];
        int(&mut h, i32::MAX);
        h.push(0x15);
        int(&mut h, body);
        data_page(&mut h, 3);
        h
    });
    assert_refused(
        &hostile,
        "claims 2147483647 bytes uncompressed, more than the 256 MiB read at once",
    );
    // The same declared as a binary: the library would read a varint where this reads a
    // length; not read as either.
    let hostile = with_page(|body| {
        let mut h = vec![0x15, 0x00, 0x18];
        int(&mut h, 4096);
        h.push(0x15);
        int(&mut h, body);
        data_page(&mut h, 3);
        h
    });
    assert_refused(
        &hostile,
        "is corrupt: an integer field declared of another type",
    );
}

#[test]
fn a_header_reaching_past_its_column_chunk_is_refused_unread() {
    // An unknown field 9, a binary of 1 GiB, first: the library would skip it by reading on.
    let hostile = with_page(|body| {
        let mut h = vec![0x98, 0x80, 0x80, 0x80, 0x80, 0x04];
        h.extend(page_header(4096, body, 50));
        h
    });
    let reads = assert_refused(&hostile, "reaches past the end of its column chunk");
    assert!(reads.len() <= 6, "{reads:?}");
}

/// A file of `len` bytes, zeros but for `head` at byte `at`; every read recorded.
struct Virtual {
    len: u64,
    at: u64,
    head: Vec<u8>,
    reads: Arc<Mutex<Reads>>,
}

impl Length for Virtual {
    fn len(&self) -> u64 {
        self.len
    }
}

impl super::super::ChunkSource for Virtual {}

impl ChunkReader for Virtual {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self
            .get_bytes(start, (self.len - start).min(8) as usize)?
            .reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if length as u64 > 64 * MIB {
            return Err(ParquetError::General(format!("{length} bytes at once")));
        }
        self.reads.lock().unwrap().push((start, length));
        let mut out = vec![0u8; length];
        let head_end = self.at + self.head.len() as u64;
        let (from, to) = (start.max(self.at), (start + length as u64).min(head_end));
        if from < to {
            out[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&self.head[(from - self.at) as usize..(to - self.at) as usize]);
        }
        Ok(out.into())
    }
}

fn virtual_file(len: u64, at: u64, head: &[u8]) -> (Chunks<Virtual>, Arc<Mutex<Reads>>) {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let chunks = Chunks::new(Virtual {
        len,
        at,
        head: head.to_vec(),
        reads: reads.clone(),
    });
    (chunks, reads)
}

fn span(start: u64, end: u64) -> Span {
    Span {
        start,
        end,
        group: 0,
    }
}

#[test]
fn a_read_ends_with_its_column_chunk_or_after_one_small_read() {
    // A page of 1 byte each way at byte 100, in the column chunk 100..300 of 64 MiB.
    let header = [0x15, 0x00, 0x15, 0x02, 0x15, 0x02, 0x00];
    let (chunks, reads) = virtual_file(64 * MIB, 100, &header);
    chunks.set_spans(vec![span(100, 300)], 1);
    let mut all = Vec::new();
    chunks.get_read(100).unwrap().read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(&all[..header.len()], header);
    assert_eq!(*reads.lock().unwrap(), [(100, 200)]);
    // Outside every column chunk: one read of at most 64 KiB, then the end, however much
    // the library skips.
    let read = chunks.get_read(MIB).unwrap();
    let skipped = io::copy(&mut read.take(1 << 30), &mut io::sink()).unwrap();
    assert_eq!(skipped, 64 << 10);
    assert_eq!(reads.lock().unwrap()[1..], [(MIB, 64 << 10)]);
}

#[test]
fn a_header_longer_than_its_column_chunk_is_refused_with_one_read() {
    // Field 9, a binary of 1 GiB, in a column chunk of 200 bytes of a 2 GiB file.
    let (chunks, reads) = virtual_file(2 << 30, 100, &[0x98, 0x80, 0x80, 0x80, 0x80, 0x04]);
    chunks.set_spans(vec![span(100, 300)], 1);
    let e = chunks.get_read(100).err().unwrap().to_string();
    assert!(
        e.contains(
            "the page header at byte 100 reaches past the end of its column chunk (byte 300)"
        ),
        "{e}"
    );
    assert_eq!(*reads.lock().unwrap(), [(100, 200)]);
}

#[test]
fn overlapping_column_chunks_still_have_their_pages_checked() {
    // A corrupt footer: 200..300 inside 100..10000; a page at 5000 claims 2 GiB.
    let mut header = vec![0x15, 0x00, 0x15];
    int(&mut header, i32::MAX);
    header.extend([0x15, 0x02, 0x00]);
    let (chunks, _) = virtual_file(MIB, 5000, &header);
    chunks.set_spans(vec![span(100, 10_000), span(200, 300)], 2);
    let e = chunks.get_read(5000).err().unwrap().to_string();
    assert!(e.contains("claims 2147483647 bytes uncompressed"), "{e}");
}

#[test]
fn windows_held_stay_within_read_ahead_however_many_columns() {
    const READ_AHEAD: u64 = 16 * MIB;
    // 400 columns of 1 MiB: a window of 64 KiB each would be 25 MiB together.
    let spans: Vec<Span> = (0..400)
        .map(|k| span(4 + k * MIB, 4 + (k + 1) * MIB))
        .collect();
    let (chunks, reads) = virtual_file(401 * MIB, 0, b"PAR1");
    chunks.set_spans(spans.clone(), spans.len());
    for s in &spans {
        chunks.get_bytes(s.start + 10, 100).unwrap();
        assert!(chunks.held() <= READ_AHEAD, "{} bytes held", chunks.held());
    }
    let reads = reads.lock().unwrap().clone();
    assert_eq!(reads.len(), 400);
    assert!(reads.iter().all(|&(_, len)| len == 64 << 10), "{reads:?}");
    // Pages larger than their column's window (2 MiB for 8 columns) are handed over, not
    // kept: 8 pages of 3 MiB would hold 24 MiB.
    let spans: Vec<Span> = (0..8)
        .map(|k| span(4 + k * 4 * MIB, 4 + (k + 1) * 4 * MIB))
        .collect();
    let (chunks, _) = virtual_file(33 * MIB, 0, b"PAR1");
    chunks.set_spans(spans.clone(), spans.len());
    for s in &spans {
        let page = chunks.get_bytes(s.start + 10, 3 << 20).unwrap();
        assert_eq!(page.len(), 3 << 20);
        assert_eq!(chunks.held(), 0);
    }
}
