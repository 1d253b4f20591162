//! Any bytes fed to the kml reader: no panic, and reading terminates.
#![no_main]

use etl_geo::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etl_geo_fuzz::drain(Format::Kml, data);
});
