//! What every reader fuzz target checks: nothing panics, the iterator contract
//! holds, and every accepted feature survives write -> read unchanged.

use std::io::Cursor;

use etl_geo::{FeatureWriter, Format, OutputFormat, ReadOptions, open};

pub fn check_reader(format: Format, data: &[u8]) {
    let _ = Format::sniff(data);
    let Ok(source) = open(
        format,
        Box::new(Cursor::new(data.to_vec())),
        &ReadOptions::default(),
    ) else {
        return;
    };
    let mut failed = false;
    let mut ordinal = 0;
    let mut accepted = Vec::new();
    for item in source {
        assert!(!failed, "an item followed an error");
        match item {
            Ok(record) => {
                assert_eq!(record.ordinal, ordinal);
                ordinal += 1;
                if let Ok(feature) = record.feature {
                    accepted.push(feature);
                }
            }
            Err(e) => {
                failed = true;
                assert!(e.position().is_some() || e.is_io());
            }
        }
    }
    let mut writer = FeatureWriter::new(OutputFormat::GeoJsonSeq, Vec::new());
    for feature in &accepted {
        writer
            .write(feature)
            .expect("accepted features are writable");
    }
    let written = writer.finish().expect("writing to a Vec succeeds");
    let again: Vec<_> = open(
        Format::GeoJsonSeq,
        Box::new(Cursor::new(written)),
        &ReadOptions::default(),
    )
    .expect("written output opens")
    .map(|r| {
        r.expect("written output reads")
            .feature
            .expect("written output is valid")
    })
    .collect();
    assert_eq!(again, accepted, "features changed through write -> read");
}

/// What the targets of the import formats check: no input panics, and reading terminates.
/// (Their features are not round-tripped: KML styles, GPX and CoT properties are not what a
/// GeoJSON reader gives back byte for byte.)
pub fn drain(format: Format, data: &[u8]) {
    let Ok(source) = open(
        format,
        Box::new(Cursor::new(data.to_vec())),
        &ReadOptions::default(),
    ) else {
        return;
    };
    for item in source {
        if item.is_err() {
            break;
        }
    }
}
