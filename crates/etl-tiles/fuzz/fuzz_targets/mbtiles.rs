//! Any bytes as an MBTiles (SQLite) upload converted to PMTiles: no panic, and it terminates.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("etl-fuzz-mbtiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = scratch().join(format!("input-{n}.mbtiles"));
    std::fs::write(&path, data).expect("write input");
    let _ =
        etl_tiles::mbtiles::convert(&path, std::io::Cursor::new(Vec::new()), &Default::default());
    let _ = std::fs::remove_file(&path);
});
