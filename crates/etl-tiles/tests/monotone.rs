//! A feature shown at zoom z is shown at z + 1 under the zoom-wide dropping strategies
//! (`--drop-densest-as-needed`, `--coalesce-densest-as-needed`), also across the zooms
//! `--extend-zooms-if-still-dropping` adds: the next zoom keeps what the zoom above showed while
//! its tiles fit their limits with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use etl_tiles::tiler::TilerOptions;
use serde_json::json;

mod support;
use support::*;

/// Clusters of points over a sparse background: dense enough that every zoom up to about
/// z10 must drop, with densities that differ from tile to tile.
fn clustered(n: u64) -> Vec<Feat> {
    let mut rng = Rng(77);
    let centres: Vec<(f64, f64, f64)> = (0..12)
        .map(|_| {
            (
                rng.range(-120.0, 120.0),
                rng.range(-60.0, 60.0),
                rng.range(0.05, 3.0),
            )
        })
        .collect();
    (0..n)
        .map(|i| {
            let (x, y) = if i % 5 == 0 {
                (rng.range(-170.0, 170.0), rng.range(-70.0, 70.0))
            } else {
                let (cx, cy, r) = centres[(rng.next() % centres.len() as u64) as usize];
                // A rough bell: the mean of three uniforms.
                let d =
                    |rng: &mut Rng| (rng.range(-r, r) + rng.range(-r, r) + rng.range(-r, r)) / 3.0;
                (cx + d(&mut rng), cy + d(&mut rng))
            };
            feat(0, Some(i), point(x, y), json!({"n": i}))
        })
        .collect()
}

/// Every id shown at z is shown at z + 1, for every zoom present; the ids that break this.
fn not_kept_up(by_zoom: &BTreeMap<u8, BTreeSet<u64>>) -> Vec<(u8, usize, usize)> {
    let mut bad = Vec::new();
    for (z, ids) in by_zoom {
        if let Some(up) = by_zoom.get(&(z + 1)) {
            let lost = ids.difference(up).count();
            if lost > 0 {
                bad.push((*z, lost, ids.len()));
            }
        }
    }
    bad
}

#[test]
fn drop_densest_keeps_at_z_plus_1_what_z_showed() {
    let feats = clustered(20_000);
    for coalesce in [false, true] {
        let o = TilerOptions {
            max_tile_features: 400,
            drop_densest: !coalesce,
            coalesce_densest: coalesce,
            // No thinning by rate: the strategy alone decides.
            drop_rate: 1.0,
            ..opts(0, 11)
        };
        let (bytes, report) = build(o, &["pts"], &feats).unwrap();
        assert!(report.zooms_respaced >= 5, "{report:?}");
        let by_zoom = ids_by_zoom(&bytes);
        assert_eq!(by_zoom.len(), 12);
        assert_eq!(not_kept_up(&by_zoom), [], "coalesce {coalesce}");
        // And the limits still hold.
        for (c, layers) in tiles(&bytes) {
            let n: usize = layers.iter().map(|l| l.features.len()).sum();
            assert!(n <= 400, "{c}: {n} features");
        }
        // Thinning happened: low zooms show far fewer points than the input.
        assert!(by_zoom[&1].len() * 5 < feats.len(), "{}", by_zoom[&1].len());
    }
}

#[test]
fn zooms_added_for_dropping_keep_what_the_zoom_above_showed() {
    let feats = clustered(6_000);
    let o = TilerOptions {
        max_tile_features: 150,
        drop_densest: true,
        extend_zooms: true,
        drop_rate: 1.0,
        ..opts(0, 3)
    };
    let (bytes, report) = build(o, &["pts"], &feats).unwrap();
    assert!(report.max_zoom > 4, "{report:?}");
    let by_zoom = ids_by_zoom(&bytes);
    assert_eq!(not_kept_up(&by_zoom), []);
}
