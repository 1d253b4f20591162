//! Format detection by content and the "unsupported input format" description: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = etl_geo::Format::sniff(data);
    let _ = etl_geo::describe_unknown(data);
});
