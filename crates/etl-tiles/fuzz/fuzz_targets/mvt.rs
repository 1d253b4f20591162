//! Any bytes as an MVT tile: the decoder must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = etl_tiles::mvt::decode_tile(data);
});
