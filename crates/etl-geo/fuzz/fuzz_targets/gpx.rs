//! Any bytes fed to the gpx reader: no panic, and reading terminates.
#![no_main]

use etl_geo::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etl_geo_fuzz::drain(Format::Gpx, data);
});
