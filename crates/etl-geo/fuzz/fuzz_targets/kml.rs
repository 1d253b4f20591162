//! Any bytes fed to the kml reader: no panic, and reading terminates.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = etl_geo::open(
        etl_geo::Format::Kml,
        Box::new(std::io::Cursor::new(data.to_vec())),
        &etl_geo::ReadOptions::default(),
    ) else {
        return;
    };
    for r in source {
        if r.is_err() {
            break;
        }
    }
});
