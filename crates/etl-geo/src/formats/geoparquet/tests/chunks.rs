//! The reader over any `ChunkReader`: the same records as from a `File`, one read per column
//! chunk (not per page), and claims the file cannot back (a page of 2 GiB, a 100 MiB footer,
//! column chunks past the data) refused before anything is read or allocated for them.

use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, FileReader, Length};
use parquet::file::serialized_reader::SerializedFileReader;

use super::super::open_chunks;
use super::read_with;
use crate::error::ReadError;
use crate::formats::{ReadOptions, Record};

const GEO: &str =
    r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB"}}}"#;

fn wkb_point(x: f64, y: f64) -> Vec<u8> {
    [1u8, 1, 0, 0, 0]
        .into_iter()
        .chain(x.to_le_bytes())
        .chain(y.to_le_bytes())
        .collect()
}

/// `rows` points with two properties, in row groups of `group` rows, pages of about 1 KiB.
fn points(rows: usize, group: usize, props: WriterProperties) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("geometry", DataType::Binary, true),
        Field::new("n", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let geometry: Vec<Vec<u8>> = (0..rows)
        .map(|i| wkb_point(i as f64 * 0.001, -(i as f64) * 0.002))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from_iter_values(geometry.iter())),
        Arc::new(Int64Array::from_iter_values(0..rows as i64)),
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("p{i}")),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut out = Vec::new();
    let props = props
        .into_builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.append_key_value_metadata(KeyValue::new("geo".into(), GEO.to_owned()));
    w.close().unwrap();
    out
}

/// The file's bytes in memory, every read recorded as (start, length).
struct Counting {
    bytes: Bytes,
    reads: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl Length for Counting {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A batch of ranges is recorded as (`u64::MAX`, how many), then each range as a read.
impl super::super::ChunkSource for Counting {
    fn get_ranges(&self, ranges: &[std::ops::Range<u64>]) -> parquet::errors::Result<Vec<Bytes>> {
        self.reads.lock().unwrap().push((u64::MAX, ranges.len()));
        ranges
            .iter()
            .map(|r| self.get_bytes(r.start, (r.end - r.start) as usize))
            .collect()
    }
}

impl ChunkReader for Counting {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let rest = self.bytes.len() - start as usize;
        Ok(self.get_bytes(start, rest)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.reads.lock().unwrap().push((start, length));
        let start = start as usize;
        Ok(self.bytes.slice(start..start + length))
    }
}

/// Every read asked of the underlying reader: (start, length).
pub(super) type Reads = Vec<(u64, usize)>;

pub(super) fn read_all(bytes: &[u8]) -> (Result<Vec<Record>, ReadError>, Reads) {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let reader = Counting {
        bytes: Bytes::copy_from_slice(bytes),
        reads: reads.clone(),
    };
    let records = open_chunks(reader, "mem.parquet", &ReadOptions::default())
        .and_then(|(source, _)| source.collect());
    let reads = reads.lock().unwrap().clone();
    (records, reads)
}

#[test]
fn each_column_chunk_is_one_read_and_the_records_are_the_files() {
    let props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_data_page_size_limit(1024)
        .set_write_batch_size(64)
        .build();
    let bytes = points(3000, 1000, props);
    let (records, reads) = read_all(&bytes);
    let records = records.unwrap();
    assert_eq!(records.len(), 3000);
    assert_eq!(
        records[2999].feature.as_ref().unwrap().properties["name"],
        "p2999"
    );
    // The same bytes from a file: the same records.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("points.parquet");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_with(&path, &ReadOptions::default()).unwrap(), records);

    let file = SerializedFileReader::new(Bytes::copy_from_slice(&bytes)).unwrap();
    let metadata = file.metadata();
    let mut pages = 0;
    for rg in 0..metadata.num_row_groups() {
        let group = file.get_row_group(rg).unwrap();
        for column in 0..group.num_columns() {
            pages += group.get_column_page_reader(column).unwrap().count();
        }
    }
    let chunks: Vec<(u64, u64)> = metadata
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns().iter().map(|c| c.byte_range()))
        .collect();
    assert_eq!(chunks.len(), 9);
    assert!(pages >= 5 * chunks.len(), "{pages} pages: too few to tell");
    // Every column chunk read once, whole, and nothing else inside the data.
    let data_end = chunks.iter().map(|(s, l)| s + l).max().unwrap();
    let mut inside: Vec<(u64, u64)> = reads
        .iter()
        .filter(|(s, _)| *s >= 4 && *s < data_end)
        .map(|&(s, l)| (s, l as u64))
        .collect();
    inside.sort_unstable();
    let mut expected = chunks.clone();
    expected.sort_unstable();
    assert_eq!(inside, expected, "reads inside the data");
    // Asked for together: a row group's three columns at once, once per row group.
    let batches: Vec<usize> = reads
        .iter()
        .filter(|(s, _)| *s == u64::MAX)
        .map(|&(_, n)| n)
        .collect();
    assert_eq!(batches, [3, 3, 3]);
}

/// A one-column GeoParquet file (Snappy, no dictionary, no statistics: one plain page), with
/// its page replaced by a header claiming `uncompressed` bytes and a body of zeros filling
/// the column chunk as the footer states it.
fn with_page_claiming(uncompressed: i32) -> Vec<u8> {
    with_page(|body| page_header(uncompressed, body, 50))
}

/// The same file with its column chunk replaced by `header(body)` and zeros: `body` is how
/// many bytes the chunk has after the header.
pub(super) fn with_page(header_of: impl Fn(i32) -> Vec<u8>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "geometry",
        DataType::Binary,
        true,
    )]));
    let geometry: Vec<Vec<u8>> = (0..50).map(|i| wkb_point(f64::from(i), 1.0)).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(BinaryArray::from_iter_values(geometry.iter())) as ArrayRef],
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.append_key_value_metadata(KeyValue::new("geo".into(), GEO.to_owned()));
    w.close().unwrap();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::copy_from_slice(&bytes))
        .unwrap();
    let (start, len) = metadata.row_group(0).column(0).byte_range();
    let (start, len) = (start as usize, len as usize);
    // The body fills what the header leaves of the column chunk; its length is in the header.
    let mut header = Vec::new();
    for _ in 0..3 {
        let body = len - header.len();
        header = header_of(body as i32);
    }
    assert!(header.len() < len);
    let mut page = header;
    page.resize(len, 0);
    bytes[start..start + len].copy_from_slice(&page);
    bytes
}

/// `v` as a Thrift compact zigzag varint.
pub(super) fn int(out: &mut Vec<u8>, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A Thrift compact `PageHeader` of a PLAIN data page.
pub(super) fn page_header(uncompressed: i32, compressed: i32, values: i32) -> Vec<u8> {
    let mut h = vec![0x15, 0x00, 0x15];
    int(&mut h, uncompressed);
    h.push(0x15);
    int(&mut h, compressed);
    // Field 5, data_page_header: num_values, encoding PLAIN, levels RLE, RLE.
    h.extend([0x2c, 0x15]);
    int(&mut h, values);
    h.extend([0x15, 0x00, 0x15, 0x06, 0x15, 0x06, 0x00, 0x00]);
    h
}

#[test]
fn a_page_claiming_2_gib_is_refused_before_it_is_read() {
    let hostile = with_page_claiming(i32::MAX);
    let (records, reads) = read_all(&hostile);
    let e = records.unwrap_err().to_string();
    assert!(e.starts_with("mem.parquet: "), "{e}");
    assert!(
        e.contains("claims 2147483647 bytes uncompressed, more than the 256 MiB read at once"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    assert!(reads.iter().all(|&(_, len)| len < 64 << 10), "{reads:?}");
    // The same page claiming a plausible size passes the check and fails as the corrupt data
    // it is: the bound, not the data, refused the first.
    let (records, _) = read_all(&with_page_claiming(4096));
    let e = records.unwrap_err().to_string();
    assert!(
        e.starts_with("mem.parquet: corrupt data in row group 0"),
        "{e}"
    );
    assert!(!e.contains("claims"), "{e}");
}

/// A file of `len` bytes that is zeros but for its magic and footer length: nothing of it
/// may be read in bulk.
struct Sparse {
    len: u64,
    footer: u32,
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.len
    }
}

impl super::super::ChunkSource for Sparse {}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self
            .get_bytes(start, (self.len - start).min(8) as usize)?
            .reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        assert!(length <= 1 << 20, "{length} bytes read at {start}");
        let mut out = vec![0u8; length];
        for (i, b) in out.iter_mut().enumerate() {
            let at = start + i as u64;
            let tail = self.len - 8;
            *b = if at < 4 {
                b"PAR1"[at as usize]
            } else if at >= tail + 4 {
                b"PAR1"[(at - tail - 4) as usize]
            } else if at >= tail {
                self.footer.to_le_bytes()[(at - tail) as usize]
            } else {
                0
            };
        }
        Ok(out.into())
    }
}

#[test]
fn a_footer_over_64_mib_is_refused_unread() {
    let sparse = Sparse {
        len: 200 << 20,
        footer: 100 << 20,
    };
    let e = match open_chunks(sparse, "big.parquet", &ReadOptions::default()) {
        Ok(_) => panic!("opened"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        e,
        "big.parquet: a Parquet footer of 104857600 bytes, more than the 64 MiB read"
    );
}

#[test]
fn column_chunks_past_the_data_are_refused() {
    let good = points(100, 100, WriterProperties::default());
    // Footer intact, the data before it gone.
    let at = good.len() - 8;
    let footer = u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    let mut cut = good[..4].to_vec();
    cut.extend_from_slice(&good[good.len() - 8 - footer..]);
    let (records, reads) = read_all(&cut);
    let e = records.unwrap_err().to_string();
    assert!(
        e.starts_with("mem.parquet: truncated or corrupt Parquet file: row group 0, column \"geometry\": its data at bytes 4.."),
        "{e}"
    );
    assert!(
        e.ends_with("lies outside the file's 4 bytes of data"),
        "{e}"
    );
    // Only the magic and the footer were read.
    assert!(reads.len() <= 4, "{reads:?}");
}
