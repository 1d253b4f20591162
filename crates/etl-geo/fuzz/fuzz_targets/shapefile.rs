//! Any bytes as a Shapefile set: the input is cut into `.shp`, `.dbf` and `.prj` parts (the first
//! two bytes give the `.shp` length, the next two the `.dbf` length), zipped (stored, so the bytes
//! reach the readers unchanged rather than failing a CRC) and read as an upload. No panic, and it
//! terminates. The `upload` target reaches the same readers only through mutated zips, whose
//! checksums stop most mutations.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use etl_geo::archive::ArchiveLimits;
use etl_geo::{ReadOptions, Upload, UploadOptions};
use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("etl-fuzz-shapefile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let len = |d: &mut &[u8]| {
        let b = take(d, 2);
        usize::from(b.first().copied().unwrap_or(0)) << 8
            | usize::from(b.get(1).copied().unwrap_or(0))
    };
    let shp_len = len(&mut data);
    let dbf_len = len(&mut data);
    let shp = take(&mut data, shp_len);
    let dbf = take(&mut data, dbf_len);
    let prj = data;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = scratch().join(format!("input-{n}.zip"));
    {
        let file = std::fs::File::create(&path).expect("create input");
        let mut zip = zip::ZipWriter::new(file);
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in [("x.shp", shp), ("x.dbf", dbf), ("x.prj", prj)] {
            zip.start_file(name, stored).expect("zip entry");
            zip.write_all(bytes).expect("zip write");
        }
        zip.finish().expect("zip finish");
    }
    let opts = UploadOptions {
        read: ReadOptions::default(),
        archive: ArchiveLimits {
            max_total_bytes: 16 << 20,
            ..ArchiveLimits::default()
        },
        ..UploadOptions::default()
    };
    if let Ok(upload) = Upload::open(&path, "x", scratch(), &opts) {
        for r in upload {
            if r.is_err() {
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
