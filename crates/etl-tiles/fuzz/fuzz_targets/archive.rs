//! Any bytes as a PMTiles archive: `verify`, the reader, the entry walk and the summary must
//! return errors, never panic or allocate without bound.
#![no_main]

use std::io::Cursor;

use etl_tiles::archive::{Archive, summarize, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify(Cursor::new(data), data.len() as u64);
    if let Ok(mut a) = Archive::open(Cursor::new(data)) {
        let _ = summarize(&mut a);
        let entries: Vec<_> = a.entries().take(64).filter_map(Result::ok).collect();
        for e in entries {
            let _ = a.read_tile(&e);
        }
    }
});
