#![no_main]

use etl_geo::{read_ewkb, write_ewkb};
use libfuzzer_sys::fuzz_target;

// Whatever reads must write back to bytes that read and write identically
// (compared as bytes: NaN coordinates defeat a comparison of geometries).
fuzz_target!(|data: &[u8]| {
    let Ok((srid, geometry)) = read_ewkb(data) else {
        return;
    };
    let mut first = Vec::new();
    write_ewkb(&geometry, srid, &mut first);
    let (srid2, geometry2) = read_ewkb(&first).expect("written EWKB reads back");
    assert_eq!(srid, srid2);
    let mut second = Vec::new();
    write_ewkb(&geometry2, srid2, &mut second);
    assert_eq!(first, second);
});
