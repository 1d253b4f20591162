//! Any bytes as an uploaded file: detection (SQLite magic, zip containers — KMZ, zipped
//! Shapefiles, TAK data packages — or a plain format by content), extraction and reading
//! every record. No panic, and it terminates.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use etl_geo::archive::ArchiveLimits;
use etl_geo::{ReadOptions, Upload, UploadOptions};
use libfuzzer_sys::fuzz_target;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("etl-fuzz-upload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fn options() -> &'static UploadOptions {
    static OPTS: OnceLock<UploadOptions> = OnceLock::new();
    OPTS.get_or_init(|| UploadOptions {
        read: ReadOptions::default(),
        archive: ArchiveLimits {
            max_total_bytes: 16 << 20,
            ..ArchiveLimits::default()
        },
        ..UploadOptions::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = scratch().join(format!("input-{n}"));
    std::fs::write(&path, data).expect("write input");
    if let Ok(upload) = Upload::open(&path, "x", scratch(), options()) {
        for r in upload {
            if r.is_err() {
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
