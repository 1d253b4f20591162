//! Hostile GeoParquet: every one ends in a one-line error naming the file (or rejected rows),
//! never a panic, never a read past the caps.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::{fixture, read_with};
use crate::formats::ReadOptions;

/// A one-row Parquet file with a binary `geometry` column and this `geo` metadata.
fn with_geo(geo: &str) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("geometry", DataType::Binary, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let point: Vec<u8> = [1u8, 1, 0, 0, 0]
        .into_iter()
        .chain(1.0f64.to_le_bytes())
        .chain(2.0f64.to_le_bytes())
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from(vec![Some(point.as_slice())])),
        Arc::new(Int64Array::from(vec![7])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.append_key_value_metadata(KeyValue::new("geo".into(), geo.to_owned()));
    w.close().unwrap();
    out
}

fn read_bytes(bytes: &[u8]) -> Result<usize, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.parquet");
    std::fs::write(&path, bytes).unwrap();
    read_with(&path, &ReadOptions::default())
        .map(|r| r.len())
        .map_err(|e| e.to_string())
}

fn assert_refused(bytes: &[u8], expected: &str) {
    let e = read_bytes(bytes).unwrap_err();
    assert!(e.starts_with("hostile.parquet: "), "{e}");
    assert!(e.contains(expected), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn a_well_formed_file_reads() {
    let ok = r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB"}}}"#;
    assert_eq!(read_bytes(&with_geo(ok)), Ok(1));
}

#[test]
fn garbage_or_wrong_metadata_is_refused_naming_the_problem() {
    assert_refused(&with_geo("{not json"), "\"geo\" metadata is not valid JSON");
    assert_refused(
        &with_geo(
            r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"point"}}}"#,
        ),
        "its encoding is point but its coordinates are Binary",
    );
    assert_refused(
        &with_geo(
            r#"{"version":"1.1.0","primary_column":"geom","columns":{"geom":{"encoding":"WKB"}}}"#,
        ),
        "primary geometry column \"geom\" named in its \"geo\" metadata is not in the file",
    );
    assert_refused(
        &with_geo(r#"{"version":"1.1.0","primary_column":"n","columns":{"n":{"encoding":"WKB"}}}"#),
        "its encoding is WKB but the column holds Int64",
    );
}

#[test]
fn truncated_files_and_wrong_magic_are_refused() {
    let good = std::fs::read(fixture("points_wkb.parquet")).unwrap();
    assert_refused(&good[..good.len() - 100], "does not end with PAR1");
    assert_refused(&good[..8], "too short");
    let mut magic = good.clone();
    magic[..4].copy_from_slice(b"PAR2");
    assert_refused(&magic, "does not start with PAR1");
    let mut footer = good.clone();
    let at = footer.len() - 8;
    footer[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_refused(&footer, "its footer says 4294967295 bytes");
    let mut encrypted = good;
    let end = encrypted.len();
    encrypted[end - 4..].copy_from_slice(b"PARE");
    assert_refused(&encrypted, "encrypted");
}

/// Every single-byte corruption and every truncation of a real file either reads (values
/// may change, rows may be rejected) or fails with one line naming the file: never a panic.
#[test]
fn corrupt_bytes_anywhere_never_panic() {
    let good = std::fs::read(fixture("polygons_native.parquet")).unwrap();
    let mut outcomes = (0usize, 0usize);
    for at in (0..good.len()).step_by(7) {
        for flip in [0xffu8, 0x80] {
            let mut bad = good.clone();
            bad[at] ^= flip;
            match read_bytes(&bad) {
                Ok(_) => outcomes.0 += 1,
                Err(e) => {
                    assert!(e.starts_with("hostile.parquet: "), "byte {at}: {e}");
                    assert!(!e.contains('\n'), "byte {at}: {e}");
                    outcomes.1 += 1;
                }
            }
        }
    }
    for len in (0..good.len()).step_by(97) {
        let e = read_bytes(&good[..len]).unwrap_err();
        assert!(e.starts_with("hostile.parquet: "), "{len} bytes: {e}");
    }
    // Both happen: corrupt data pages are caught, and bytes nothing checks go through.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

#[test]
fn a_panic_in_the_parquet_library_keeps_its_message() {
    use super::super::guarded;
    let e = guarded(|| -> Result<(), String> { panic!("plain") }).unwrap_err();
    assert_eq!(e, "the Parquet decoder failed on this data: plain");
    let e = guarded(|| -> Result<(), String> { panic!("index {} out of range", 7) }).unwrap_err();
    assert_eq!(
        e,
        "the Parquet decoder failed on this data: index 7 out of range"
    );
    let e = guarded(|| -> Result<(), String> { std::panic::panic_any(7u8) }).unwrap_err();
    assert_eq!(e, "the Parquet decoder failed on this data");
}
