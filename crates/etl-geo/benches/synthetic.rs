//! Deterministic synthetic point features shaped like `gen_synthetic.py`'s
//! points.geojsonl, generated in the bench so it needs no data files.

#![allow(dead_code, reason = "each bench uses part of this module")]

use std::fmt::Write as _;

const CATEGORIES: [&str; 10] = [
    "cafe", "school", "shop", "park", "hospital", "bank", "bar", "pharmacy", "fuel", "hotel",
];

/// xorshift64*: enough randomness for realistic number lengths.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One Feature JSON text per element.
pub fn point_features(n: usize) -> Vec<String> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            let lon = ((rng.unit() * 340.0 - 170.0) * 1e6).round() / 1e6;
            let lat = ((rng.unit() * 140.0 - 60.0) * 1e6).round() / 1e6;
            let city = rng.next() % 400;
            let category = CATEGORIES[(rng.next() % 10) as usize];
            let value = ((rng.unit() * 3.0).exp() * 10.0 * 100.0).round() / 100.0;
            let mut s = String::with_capacity(200);
            let _ = write!(
                s,
                r#"{{"type":"Feature","id":{i},"properties":{{"city":{city},"category":"{category}","name":"poi {i}","value":{value}}},"geometry":{{"type":"Point","coordinates":[{lon},{lat}]}}}}"#
            );
            s
        })
        .collect()
}

pub fn ndjson(features: &[String]) -> Vec<u8> {
    let mut out = features.join("\n").into_bytes();
    out.push(b'\n');
    out
}

pub fn feature_collection(features: &[String]) -> Vec<u8> {
    let mut out = b"{\"type\":\"FeatureCollection\",\"features\":[\n".to_vec();
    out.extend_from_slice(features.join(",\n").as_bytes());
    out.extend_from_slice(b"\n]}\n");
    out
}
