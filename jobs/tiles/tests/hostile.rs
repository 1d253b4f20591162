//! The hostile archives of fixtures/pmtiles/hostile/ served from a directory, held to the
//! expectations in its expect.json: the same file crates/etl-tiles/tests/hostile.rs holds the
//! synchronous readers to. A corrupt archive is a 500 naming the archive and the problem, never
//! a panic, a hang or a huge allocation; the valid one beside them is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

#[tokio::test]
async fn hostile_archives_are_named_errors() {
    let dir = fixtures().join("pmtiles/hostile");
    let (app, _) = dir_app(&dir, dev_settings());
    assert_hostile_answers(&app).await;
}
