//! Archives resolved through import manifests in a local directory: `NAME.json` names the
//! immutable `NAME.<VERSION>.pmtiles` that is archive `NAME`; a swap of the manifest is served at
//! once; versioned files never show up under their own name; a manifest pointing anywhere else
//! is ignored (and logged), one naming a missing file is a clear 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};

use axum::http::StatusCode;
use etl_tiles::archive::TileType;
use support::*;

const V1: &str = "v20261206T221500Z-1a2b3c4d";
const V2: &str = "v20261207T080000Z-00ff00ff";
const V0: &str = "v20261201T000000Z-deadbeef";

const GZ: [(&str, &str); 1] = [("accept-encoding", "gzip")];

#[tokio::test]
async fn manifest_backed_archives_are_served_and_listed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = publish_local(d, "roads", V1, "v1", &[(0, 0, 0), (1, 1, 1)], 1);
    // A plain archive of the same name loses to the manifest; one without a manifest is served
    // as before; an orphaned version waiting for collection and other JSON are not archives.
    write_archive(
        &d.join("roads.pmtiles"),
        "plain-roads",
        &[(0, 0, 0)],
        0,
        0,
        TileType::Mvt,
    );
    write_archive(
        &d.join("rivers.pmtiles"),
        "rivers",
        &[(0, 0, 0)],
        0,
        0,
        TileType::Mvt,
    );
    write_archive(
        &d.join(format!("roads.{V0}.pmtiles")),
        "v0",
        &[(0, 0, 0)],
        0,
        0,
        TileType::Mvt,
    );
    std::fs::write(d.join("notes.json"), r#"{"outputs": []}"#).unwrap();
    std::fs::write(d.join("settings.json"), r#"{"zoom": 3}"#).unwrap();
    let (app, _) = dir_app(d, dev_settings());

    assert_eq!(listed(&app, &[]).await, ["rivers", "roads"]);
    let r = get(&app, "/", &[("accept", "application/json")]).await;
    let roads = r.json()["archives"][1].clone();
    assert_eq!(roads["name"], "roads");
    assert_eq!(roads["version"], V1, "the manifest's version");
    assert_eq!(r.json()["archives"][0]["version"], serde_json::Value::Null);
    assert_eq!(roads["maxzoom"], 1);
    assert_eq!(
        roads["bytes"].as_u64().unwrap(),
        std::fs::metadata(d.join(&file)).unwrap().len(),
        "the size of the version the manifest names"
    );
    let html = get(&app, "/", &[]).await.text();
    assert!(!html.contains(V1) && !html.contains(V0), "{html}");

    let r = get(&app, "/tiles/roads/1/1/1.pbf", &GZ).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(gunzip(&r.body), payload("v1", 1, 1, 1));
    assert_eq!(get(&app, "/tiles/roads", &[]).await.json()["maxzoom"], 1);
    let raw = get(&app, "/archives/roads.pmtiles", &[]).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body.as_ref(), std::fs::read(d.join(&file)).unwrap());
    assert_eq!(get(&app, "/view/roads", &[]).await.status, StatusCode::OK);
    let r = get(&app, "/tiles/rivers/0/0/0.pbf", &GZ).await;
    assert_eq!(gunzip(&r.body), payload("rivers", 0, 0, 0));

    // Versioned files, current or orphaned, are never archives of their own.
    for v in [V1, V0] {
        for uri in [
            format!("/tiles/roads.{v}"),
            format!("/tiles/roads.{v}/0/0/0.pbf"),
            format!("/archives/roads.{v}.pmtiles"),
            format!("/view/roads.{v}"),
        ] {
            assert_eq!(
                get(&app, &uri, &[]).await.status,
                StatusCode::NOT_FOUND,
                "{uri}"
            );
        }
    }
    for uri in ["/tiles/notes", "/tiles/settings", "/tiles/notes/0/0/0.pbf"] {
        assert_eq!(
            get(&app, uri, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_swapped_manifest_is_served_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = publish_local(d, "roads", V1, "v1", &[(0, 0, 0), (1, 1, 1)], 1);
    let (app, state) = dir_app(d, dev_settings());
    let before = get(&app, "/tiles/roads/0/0/0.pbf", &GZ).await;
    assert_eq!(gunzip(&before.body), payload("v1", 0, 0, 0));
    let tj = get(&app, "/tiles/roads", &[]).await;
    assert_eq!(tj.json()["maxzoom"], 1);

    // The next version, published as the worker does: new file, then the manifest by rename.
    publish_local(d, "roads", V2, "v2", &[(0, 0, 0), (2, 3, 3)], 2);
    let after = get(&app, "/tiles/roads/0/0/0.pbf", &GZ).await;
    assert_eq!(gunzip(&after.body), payload("v2", 0, 0, 0), "no stale tile");
    assert_ne!(after.header("etag"), before.header("etag"));
    let r = get(
        &app,
        "/tiles/roads",
        &[("if-none-match", tj.header("etag").unwrap())],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the old TileJSON ETag no longer matches"
    );
    assert_eq!(r.json()["maxzoom"], 2);
    assert_eq!(
        get(&app, "/tiles/roads/2/3/3.pbf", &GZ).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/tiles/roads/1/1/1.pbf", &GZ).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        state.archives.stats().archives,
        1,
        "one open version per name"
    );

    // The old version is collected: nothing changes for readers of the new one, and it is
    // not listed.
    std::fs::remove_file(d.join(&old)).unwrap();
    assert_eq!(
        get(&app, "/tiles/roads/2/3/3.pbf", &GZ).await.status,
        StatusCode::OK
    );
    assert_eq!(listed(&app, &[]).await, ["roads"]);

    // The manifest removed: no archive (the versioned file alone is not one).
    std::fs::remove_file(d.join("roads.json")).unwrap();
    assert_eq!(
        get(&app, "/tiles/roads/0/0/0.pbf", &GZ).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(listed(&app, &[]).await.is_empty());
}

#[tokio::test]
async fn manifests_pointing_outside_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("root");
    std::fs::create_dir(&d).unwrap();
    write_archive(
        &tmp.path().join("x.pmtiles"),
        "outside",
        &[(0, 0, 0)],
        0,
        0,
        TileType::Mvt,
    );
    write_archive(
        &d.join("other.pmtiles"),
        "other",
        &[(0, 0, 0)],
        0,
        0,
        TileType::Mvt,
    );
    let (app, _) = dir_app(&d, dev_settings());
    for bad in [
        "../x.pmtiles",
        "other.pmtiles",
        "/etc/passwd",
        "roads/../../x.pmtiles",
    ] {
        write_manifest(&d, "roads", &manifest("roads", V1, bad));
        let r = get(&app, "/tiles/roads/0/0/0.pbf", &GZ).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {}", r.text());
        assert_eq!(
            get(&app, "/archives/roads.pmtiles", &[]).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(listed(&app, &[]).await, ["other"], "{bad}");
        // A plain roads.pmtiles next to the ignored manifest is what `roads` is.
        write_archive(
            &d.join("roads.pmtiles"),
            "plain",
            &[(0, 0, 0)],
            0,
            0,
            TileType::Mvt,
        );
        let r = get(&app, "/tiles/roads/0/0/0.pbf", &GZ).await;
        assert_eq!(gunzip(&r.body), payload("plain", 0, 0, 0), "{bad}");
        std::fs::remove_file(d.join("roads.pmtiles")).unwrap();
    }
}

#[tokio::test]
async fn a_manifest_naming_a_missing_file_is_a_clear_500() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = format!("roads.{V1}.pmtiles");
    write_manifest(d, "roads", &manifest("roads", V1, &file));
    let (app, _) = dir_app(d, dev_settings());
    for uri in [
        "/tiles/roads",
        "/tiles/roads/0/0/0.pbf",
        "/archives/roads.pmtiles",
        "/view/roads",
    ] {
        let r = get(&app, uri, &GZ).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains("roads.json") && e.contains(&file), "{e}");
    }
    let r = get(&app, "/", &[("accept", "application/json")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.json()["archives"][0]["error"]
            .as_str()
            .unwrap()
            .contains(&file)
    );
    // Published after all: served at once.
    write_archive(&d.join(&file), "late", &[(0, 0, 0)], 0, 0, TileType::Mvt);
    let r = get(&app, "/tiles/roads/0/0/0.pbf", &GZ).await;
    assert_eq!(gunzip(&r.body), payload("late", 0, 0, 0));
}

/// The refusal is logged with the manifest's name, by the binary as deployed.
#[test]
fn an_ignored_manifest_is_logged_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), "roads", &manifest("roads", V1, "../x.pmtiles"));
    let (mut server, url) = spawn_server(dir.path(), &["--no-auth"], true);
    let addr = url.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /tiles/roads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(server.0.wait().unwrap().code(), Some(0));
    let mut err = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let line = err
        .lines()
        .find(|l| l.contains("ignored"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(line.contains("WARN") || line.contains("warn"), "{line}");
    assert!(
        line.contains("roads.json") && line.contains("../x.pmtiles"),
        "{line}"
    );
}
