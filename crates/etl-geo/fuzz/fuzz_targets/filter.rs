//! `--where` filters: parsing any text and evaluating what parses against a few features never
//! panics, whatever the nesting or the patterns.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = etl_geo::filter::Filter::parse(text) else {
        return;
    };
    for props in [
        serde_json::json!({}),
        serde_json::json!({"a": 1, "b": "x%_", "c": null, "d": [1], "e": true, "f": "1e3"}),
    ] {
        let feature = etl_geo::Feature {
            properties: props.as_object().cloned().unwrap_or_default(),
            ..etl_geo::Feature::default()
        };
        let _ = filter.matches(&feature);
    }
});
