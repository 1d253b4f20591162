//! `etl-events --cloudtak` end to end: the worker polls a loopback stand-in of CloudTAK's API
//! (tests/support/cloudtak.rs, recording every call) and reads and writes the S3 server
//! scripts/test.sh starts, as CloudTAK's events service would run it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::cloudtak::{Call, CloudTak};
use support::http::serve;
use support::{S3, etl_events, repo, s3_endpoint};

const SECRET: &str = "test-signing-secret";
const USER: &str = "ops@example.com";

fn store() -> etl_core::store::Store {
    etl_core::store::Store::new(etl_core::store::S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    })
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The worker, as CloudTAK's task definition runs it: only CloudTAK's variables, plus ours.
fn worker(api: &CloudTak, extra: &[(&str, &str)]) -> Child {
    let mut cmd = etl_events();
    cmd.env("ETL_CLOUDTAK", "true")
        .env("API_URL", &api.url)
        .env("SigningSecret", &api.secret)
        .env("ASSET_BUCKET", &api.bucket)
        .env("ETL_POLL_INTERVAL", "100ms")
        .env_remove("ETL_FAULT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// SIGTERM, then the exit code and stderr.
fn stop(child: Child) -> (i32, String) {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The child's output once it exits; killed (and the test failed, with its stderr) if it has
/// not exited within `limit`.
fn exit_within(mut child: Child, limit: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the worker did not exit within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn png() -> Vec<u8> {
    // A 1x1 PNG.
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0,
        0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ]
}

fn data_package() -> Vec<u8> {
    let cot = std::fs::read(repo("fixtures/formats/cot/single.cot")).unwrap();
    let manifest = r#"<MissionPackageManifest version="2">
  <Configuration>
    <Parameter name="uid" value="pkg-1"/>
    <Parameter name="name" value="Ops/Package"/>
  </Configuration>
  <Contents>
    <Content ignore="false" zipEntry="a1/single.cot"/>
    <Content ignore="false" zipEntry="a1/photo.jpg"><Parameter name="uid" value="ANDROID-abc123"/></Content>
    <Content ignore="false" zipEntry="icons/iconset.xml"/>
    <Content ignore="false" zipEntry="icons/General/tent.png"/>
    <Content ignore="false" zipEntry="maps/topo.xml"/>
    <Content ignore="false" zipEntry="layers/roads.geojson"/>
  </Contents>
</MissionPackageManifest>"#;
    let iconset = r#"<iconset uid="11111111-2222-3333-4444-555555555555" version="2" name="Camp" default_group="General"><icon name="tent.png" type2525b="a-f-G"/></iconset>"#;
    let topo = r#"<customMapSource><name>Topo</name><minZoom>0</minZoom><maxZoom>16</maxZoom><tileType>jpg</tileType><url>https://tiles.example/{$z}/{$x}/{$y}.jpg</url></customMapSource>"#;
    let roads = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"r1"},"geometry":{"type":"LineString","coordinates":[[-105,39.7],[-104.9,39.8]]}}]}"#;
    zip_of(&[
        ("MANIFEST/manifest.xml", manifest.as_bytes()),
        ("a1/single.cot", &cot),
        ("a1/photo.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"),
        ("icons/iconset.xml", iconset.as_bytes()),
        ("icons/General/tent.png", &png()),
        ("maps/topo.xml", topo.as_bytes()),
        ("layers/roads.geojson", roads.as_bytes()),
    ])
}

/// A KMZ whose placemarks use a packed icon and one served on loopback, with a NetworkLink to
/// a document served there too.
fn camp_kmz(base: &str) -> Vec<u8> {
    let doc = format!(
        r#"<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>
<Style id="tent"><IconStyle><Icon><href>files/tent.png</href></Icon></IconStyle></Style>
<NetworkLink><name>more</name><Link><href>{base}/more.kml</href></Link></NetworkLink>
<Placemark><name>Tent</name><styleUrl>#tent</styleUrl><Point><coordinates>-105.2,39.7</coordinates></Point></Placemark>
<Placemark><name>Pin</name><Style><IconStyle><Icon><href>{base}/pin.png</href></Icon></IconStyle></Style><Point><coordinates>-105.1,39.8</coordinates></Point></Placemark>
</Document></kml>"#
    );
    zip_of(&[("doc.kml", doc.as_bytes()), ("files/tent.png", &png())])
}

fn call_names(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            let p = c
                .path
                .split('/')
                .map(|s| {
                    if s.len() == 36 && s.matches('-').count() == 4 {
                        "<uuid>"
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            format!("{} {} {}", c.method, p, c.status)
        })
        .collect()
}

fn asset_of(api: &CloudTak, id: &str) -> Value {
    let s = api.state();
    let results = s.imports[id]["results"].as_array().unwrap().clone();
    let asset = results
        .iter()
        .find(|r| r["type"] == "Asset")
        .unwrap_or_else(|| panic!("{id}: no Asset result in {results:?}"));
    s.assets[asset["type_id"].as_str().unwrap()].clone()
}

#[test]
fn mixed_imports_end_success_or_fail_with_cloudtaks_calls() {
    let s3 = S3::new();
    let api = CloudTak::start(SECRET, &s3.bucket, store());
    let gpx = std::fs::read(repo("fixtures/formats/gpx/gpx10.gpx")).unwrap();
    let shp = std::fs::read(repo("fixtures/crs/nztm/nztm_points.zip")).unwrap();
    let bomb = std::fs::read(repo("fixtures/hostile/zip-bomb.kmz")).unwrap();
    let topo = br#"<?xml version="1.0"?><customMapSource><name>Street</name><minZoom>1</minZoom><maxZoom>18</maxZoom><tileType>image/png</tileType><url>https://s.example/{$z}/{$x}/{$y}.png</url></customMapSource>"#;
    let (base, _asked) = serve(vec![
        ("/pin.png", 200, vec![], png()),
        (
            "/more.kml",
            200,
            vec![],
            br#"<kml xmlns="http://www.opengis.net/kml/2.2"><Placemark><name>Remote</name><Point><coordinates>-105,39.9</coordinates></Point></Placemark></kml>"#.to_vec(),
        ),
    ]);
    let uploads: Vec<(&str, &str, Vec<u8>)> = vec![
        ("a0000008", "camp.kmz", camp_kmz(&base)),
        ("a0000001", "Trail.GPX", gpx),
        ("a0000002", "points.zip", shp),
        ("a0000003", "notes.txt", b"just some words, no geometry\n".to_vec()),
        ("a0000004", "bomb.kmz", bomb),
        ("a0000005", "package.zip", data_package()),
        ("a0000006", "street.xml", topo.to_vec()),
        ("a0000007", "slow.geojson", br#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}"#.to_vec()),
        ("a0000009", "Tiles.MBTILES", std::fs::read(repo("fixtures/formats/mbtiles/vector-small.mbtiles")).unwrap()),
        ("a0000010", "wells.csv", b"name,lon,lat\nw1,-105.1,39.7\nw2,-105.2,39.8\n".to_vec()),
    ];
    for (id, name, bytes) in &uploads {
        let ext = std::path::Path::new(name)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap();
        s3.put(&format!("import/{id}{ext}"), bytes.clone());
        api.add_import(id, name, USER);
    }
    let gate = tempfile::tempdir().unwrap();
    let gate_path = gate.path().join("gate");
    let child = worker(
        &api,
        &[
            ("ETL_CONCURRENCY", "3"),
            ("ETL_IMPORT_TIMEOUT", "15s"),
            ("ETL_ALLOW_NETWORK_LINK_HOST", "127.0.0.1"),
            ("ETL_GC_GRACE", "1h"),
            (
                "ETL_FAULT",
                &format!("cloudtak.process:slow.geojson={}", gate_path.display()),
            ),
        ],
    );
    let ids: Vec<&str> = uploads.iter().map(|(id, _, _)| *id).collect();
    api.wait_for(Duration::from_secs(120), "every import to end", |s| {
        ids.iter()
            .all(|id| matches!(s.imports[*id]["status"].as_str(), Some("Success" | "Fail")))
    });
    let (code, stderr) = stop(child);
    assert_eq!(code, 143, "{stderr}");
    let status = |id: &str| api.status(id);
    let error = |id: &str| {
        api.state().imports[id]["error"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };

    // GPX: the raw file, the GeoJSON lines and the archive, with CloudTAK's calls in order.
    assert_eq!(status("a0000001"), "Success", "{}", error("a0000001"));
    let asset = asset_of(&api, "a0000001");
    let aid = asset["id"].as_str().unwrap();
    assert_eq!(asset["name"], "Trail.gpx");
    assert_eq!(
        asset["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ext"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [".geojsonld", ".pmtiles"]
    );
    let keys = s3.keys(&format!("profile/{USER}/{aid}"));
    assert_eq!(
        keys,
        [".geojsonld", ".gpx", ".pmtiles"].map(|e| format!("profile/{USER}/{aid}{e}"))
    );
    let pm = s3.get(&format!("profile/{USER}/{aid}.pmtiles")).unwrap().0;
    assert_eq!(&pm[..7], b"PMTiles");
    let lines = String::from_utf8(
        s3.get(&format!("profile/{USER}/{aid}.geojsonld"))
            .unwrap()
            .0,
    )
    .unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.contains("\"layer\":\"tracks\""), "{lines}");
    let calls = api.state().calls.clone();
    let mine: Vec<Call> = calls
        .iter()
        .filter(|c| {
            c.path.contains("a0000001")
                || c.path.contains(aid)
                || (c.path == "/api/profile/asset" && c.body["id"] == aid)
        })
        .cloned()
        .collect();
    assert_eq!(
        call_names(&mine),
        [
            "PATCH /api/import/a0000001 200",
            "POST /api/profile/asset 200",
            "POST /api/import/a0000001/result 200",
            "PATCH /api/profile/asset/<uuid> 200",
            "PATCH /api/profile/asset/<uuid> 200",
            "PATCH /api/import/a0000001 200",
        ]
    );
    assert_eq!(mine[0].body, json!({"status": "Running"}));
    assert!(
        mine[0].etl && mine[0].claims["id"] == "a0000001" && mine[0].claims["internal"] == true
    );
    assert_eq!(mine[1].claims["email"], USER);
    assert_eq!(
        mine[1].body,
        json!({"id": aid, "name": "Trail.gpx", "path": "/"})
    );
    assert_eq!(
        mine[2].body,
        json!({"name": "Trail.gpx", "type": "Asset", "type_id": aid})
    );
    assert_eq!(mine[3].body, json!({"artifacts": [{"ext": ".geojsonld"}]}));
    assert_eq!(
        mine[4].body,
        json!({"artifacts": [{"ext": ".geojsonld"}, {"ext": ".pmtiles"}]})
    );
    assert_eq!(mine[5].body, json!({"status": "Success"}));
    // Polls carry the worker's token without an id, and never ask for more than 3.
    let polls: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "GET" && c.path == "/api/import")
        .collect();
    for p in polls {
        assert!(p.etl && p.claims.get("id").is_none(), "{p:?}");
        let limit: usize = p
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("limit="))
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=100).contains(&limit), "{}", p.query);
        if p.query.contains("status=Pending") {
            assert!(limit <= 3, "{}", p.query);
        }
    }

    // A zipped Shapefile set is one asset, read whole.
    assert_eq!(status("a0000002"), "Success", "{}", error("a0000002"));
    assert_eq!(asset_of(&api, "a0000002")["name"], "points.zip");

    // Unsupported and hostile: Fail with one line naming the upload, and nothing created.
    assert_eq!(status("a0000003"), "Fail");
    assert!(
        error("a0000003").starts_with("notes.txt: unsupported input format"),
        "{}",
        error("a0000003")
    );
    assert_eq!(status("a0000004"), "Fail");
    assert!(
        error("a0000004").starts_with("bomb.kmz"),
        "{}",
        error("a0000004")
    );
    assert!(
        error("a0000004").contains("zip bomb"),
        "{}",
        error("a0000004")
    );
    for id in ["a0000003", "a0000004", "a0000007"] {
        assert!(!error(id).contains('\n'));
        assert_eq!(api.state().imports[id]["results"], json!([]), "{id}");
    }
    // Nothing was created for them: no asset named after them, and every object under
    // profile/ belongs to an asset the API knows.
    {
        let s = api.state();
        for name in ["notes.txt", "bomb.kmz", "slow.geojson"] {
            assert!(!s.assets.values().any(|a| a["name"] == name), "{name}");
        }
        let known: Vec<String> = s.assets.keys().cloned().collect();
        drop(s);
        for key in s3.keys("profile/") {
            assert!(known.iter().any(|id| key.contains(id.as_str())), "{key}");
        }
    }

    // The data package: its CoT as a feature (its attachment uploaded by hash), the GeoJSON
    // as an asset, the iconset with its icon, the map source as a basemap.
    assert_eq!(status("a0000005"), "Success", "{}", error("a0000005"));
    {
        let s = api.state();
        let f = &s.features[&(USER.to_owned(), "ANDROID-abc123".to_owned())];
        assert_eq!(f["path"], "/OpsPackage/");
        assert_eq!(f["properties"]["callsign"], "Alpha & Bravo");
        assert_eq!(
            f["geometry"]["coordinates"],
            json!([-104.9903, 39.7392, 1609.3])
        );
        let hash = f["properties"]["attachments"][0]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(hash.len(), 64);
        drop(s);
        assert_eq!(
            s3.keys("attachment/"),
            [format!("attachment/{hash}/photo.jpg")]
        );
        let s = api.state();
        let iconset = &s.iconsets["11111111-2222-3333-4444-555555555555"];
        assert_eq!(
            (iconset["name"].as_str(), iconset["version"].as_i64()),
            (Some("Camp"), Some(2))
        );
        assert_eq!(iconset["default_group"], "General");
        let camp: Vec<&Value> = s
            .icons
            .iter()
            .filter(|i| i["iconset"] == "11111111-2222-3333-4444-555555555555")
            .collect();
        assert_eq!(camp.len(), 1);
        assert_eq!(camp[0]["name"], "icons/General/tent.png");
        assert!(
            camp[0]["data"]
                .as_str()
                .unwrap()
                .starts_with("data:image/png;base64,iVBOR")
        );
        // Icons go in without regenerating the sprite each time, then once.
        let icon_calls: Vec<String> = s
            .calls
            .iter()
            .filter(|c| c.path.starts_with("/api/iconset/11111111"))
            .map(|c| {
                format!(
                    "{} {} {}",
                    c.method,
                    c.path.rsplit('/').next().unwrap(),
                    c.query
                )
            })
            .collect();
        assert_eq!(
            icon_calls,
            [
                "GET 11111111-2222-3333-4444-555555555555 ",
                "POST icon regen=false",
                "POST regen "
            ]
        );
        let topo = s.basemaps.iter().find(|b| b["name"] == "Topo").unwrap();
        assert_eq!(topo["format"], "jpeg");
        assert_eq!(topo["url"], "https://tiles.example/{$z}/{$x}/{$y}.jpg");
        let kinds: Vec<&str> = s.imports["a0000005"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Feature", "Asset", "Iconset", "Basemap"]);
    }
    // A map source on its own is a basemap, not an asset.
    assert_eq!(status("a0000006"), "Success", "{}", error("a0000006"));
    let street = api
        .state()
        .basemaps
        .iter()
        .find(|b| b["name"] == "Street")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            street["format"].as_str(),
            street["minzoom"].as_i64(),
            street["maxzoom"].as_i64()
        ),
        (Some("png"), Some(1), Some(18))
    );

    // The KMZ: its NetworkLink's placemark imported, its icons (packed and fetched) made an
    // iconset linked to the asset, and the placemarks' icons renamed into it.
    assert_eq!(status("a0000008"), "Success", "{}", error("a0000008"));
    let asset = asset_of(&api, "a0000008");
    let aid = asset["id"].as_str().unwrap().to_owned();
    let uid = asset["iconset"]
        .as_str()
        .expect("the asset names its iconset")
        .to_owned();
    {
        let s = api.state();
        assert_eq!(s.iconsets[&uid]["name"], "camp.kmz Icons");
        assert_eq!(s.iconsets[&uid]["internal"], true);
        let mut names: Vec<&str> = s
            .icons
            .iter()
            .filter(|i| i["iconset"] == uid.as_str())
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["files/tent.png", "pin.png"]);
        let kinds: Vec<&str> = s.imports["a0000008"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Asset", "Iconset"]);
    }
    let lines = String::from_utf8(
        s3.get(&format!("profile/{USER}/{aid}.geojsonld"))
            .unwrap()
            .0,
    )
    .unwrap();
    let mut icons: Vec<(String, String)> = lines
        .lines()
        .map(|l| {
            let f: Value = serde_json::from_str(l).unwrap();
            (
                f["properties"]["name"].as_str().unwrap().to_owned(),
                f["properties"]["icon"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    icons.sort();
    assert_eq!(
        icons,
        [
            ("Pin".to_owned(), format!("{uid}:pin")),
            ("Remote".to_owned(), String::new()),
            ("Tent".to_owned(), format!("{uid}:files/tent")),
        ]
    );

    // An MBTiles upload: the archive only, converted to PMTiles; a CSV: both artifacts.
    assert_eq!(status("a0000009"), "Success", "{}", error("a0000009"));
    let mb = asset_of(&api, "a0000009");
    assert_eq!(mb["name"], "Tiles.mbtiles");
    let exts: Vec<&str> = mb["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ext"].as_str().unwrap())
        .collect();
    assert_eq!(exts, [".pmtiles"]);
    let key = format!("profile/{USER}/{}.pmtiles", mb["id"].as_str().unwrap());
    assert_eq!(&s3.get(&key).unwrap().0[..7], b"PMTiles");
    assert_eq!(status("a0000010"), "Success", "{}", error("a0000010"));
    assert_eq!(
        asset_of(&api, "a0000010")["artifacts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Past its deadline: Fail, saying so.
    assert_eq!(status("a0000007"), "Fail");
    assert!(
        error("a0000007").contains("--import-timeout"),
        "{}",
        error("a0000007")
    );
    assert!(gate.path().join("gate.1.reached").exists());
    // Nothing left of the leases: every import ended.
    assert_eq!(s3.keys(".etl-events/"), Vec::<String>::new());
}

#[test]
fn a_killed_worker_leaves_a_row_another_takes_over_and_finishes() {
    let s3 = S3::new();
    let api = CloudTak::start(SECRET, &s3.bucket, store());
    let gpx = std::fs::read(repo("fixtures/formats/gpx/gpx10.gpx")).unwrap();
    s3.put("import/b0000001.gpx", gpx);
    api.add_import("b0000001", "walk.gpx", USER);
    // The first worker dies right after creating the asset, before recording the result.
    let first = exit_within(
        worker(
            &api,
            &[
                ("ETL_FAULT", "cloudtak.after_asset"),
                ("ETL_LEASE_TTL", "2s"),
            ],
        ),
        Duration::from_secs(120),
    );
    assert_ne!(first.status.code(), Some(0));
    assert_eq!(api.status("b0000001"), "Running");
    assert_eq!(api.state().assets.len(), 1);
    // A second worker sees the row abandoned (untouched for --reclaim-after, lease expired)
    // and finishes it: the same asset, not a second one.
    let second = worker(
        &api,
        &[("ETL_RECLAIM_AFTER", "2s"), ("ETL_LEASE_TTL", "2s")],
    );
    api.wait_for(
        Duration::from_secs(60),
        "the import to be taken over",
        |s| s.imports["b0000001"]["status"] == "Success",
    );
    let (code, stderr) = stop(second);
    assert_eq!(code, 143, "{stderr}");
    assert!(
        stderr.contains("taking over an abandoned import"),
        "{stderr}"
    );
    let s = api.state();
    assert_eq!(s.assets.len(), 1);
    let results = s.imports["b0000001"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let asset = s.assets.values().next().unwrap();
    assert_eq!(asset["artifacts"].as_array().unwrap().len(), 2);
    // The second POST of the same asset was refused, and the worker went on with it.
    let posts: Vec<u16> = s
        .calls
        .iter()
        .filter(|c| c.path == "/api/profile/asset")
        .map(|c| c.status)
        .collect();
    assert_eq!(posts, [200, 400]);
}

#[test]
fn sigterm_gives_an_import_back_and_the_next_worker_takes_it_at_once() {
    let s3 = S3::new();
    let api = CloudTak::start(SECRET, &s3.bucket, store());
    let gpx = std::fs::read(repo("fixtures/formats/gpx/gpx10.gpx")).unwrap();
    s3.put("import/c0000001.gpx", gpx);
    api.add_import("c0000001", "held.gpx", USER);
    let gate = tempfile::tempdir().unwrap();
    let gate_path = gate.path().join("gate");
    let first = worker(
        &api,
        &[(
            "ETL_FAULT",
            &format!("cloudtak.process:held.gpx={}", gate_path.display()),
        )],
    );
    // Held inside the import, its row Running.
    let reached = gate.path().join("gate.1.reached");
    api.wait_for(
        Duration::from_secs(60),
        "the worker to lock the import",
        |s| s.imports["c0000001"]["status"] == "Running",
    );
    let start = std::time::Instant::now();
    while !reached.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the import never reached its gate"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, stderr) = stop(first);
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("given back"), "{stderr}");
    assert_eq!(api.status("c0000001"), "Running");
    // With the default --reclaim-after (30 minutes), only the giving back lets the next
    // worker take it now.
    let second = worker(&api, &[]);
    api.wait_for(Duration::from_secs(60), "the import to be finished", |s| {
        s.imports["c0000001"]["status"] == "Success"
    });
    let (code, stderr) = stop(second);
    assert_eq!(code, 143, "{stderr}");
    let s = api.state();
    assert_eq!(s.assets.len(), 1);
    assert_eq!(
        s.imports["c0000001"]["results"].as_array().unwrap().len(),
        1
    );
    drop(s);
    assert_eq!(s3.keys(".etl-events/"), Vec::<String>::new());
}

#[test]
fn two_workers_on_one_queue_import_each_row_once() {
    let s3 = S3::new();
    let api = CloudTak::start(SECRET, &s3.bucket, store());
    let gpx = std::fs::read(repo("fixtures/formats/gpx/gpx10.gpx")).unwrap();
    let ids: Vec<String> = (0..8).map(|i| format!("d000000{i}")).collect();
    for id in &ids {
        s3.put(&format!("import/{id}.gpx"), gpx.clone());
        api.add_import(id, &format!("{id}.gpx"), USER);
    }
    let one = worker(&api, &[("ETL_CONCURRENCY", "2")]);
    let two = worker(&api, &[("ETL_CONCURRENCY", "2")]);
    api.wait_for(Duration::from_secs(120), "every import to end", |s| {
        ids.iter().all(|id| s.imports[id]["status"] == "Success")
    });
    let (a, ea) = stop(one);
    let (b, eb) = stop(two);
    assert_eq!((a, b), (143, 143), "{ea}\n{eb}");
    let s = api.state();
    assert_eq!(s.assets.len(), ids.len());
    for id in &ids {
        let results = s.imports[id]["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{id}: {results:?}");
        // Locked once: one PATCH Running succeeded per row.
        let running = s
            .calls
            .iter()
            .filter(|c| {
                c.path == format!("/api/import/{id}")
                    && c.body == json!({"status": "Running"})
                    && c.status == 200
            })
            .count();
        assert_eq!(running, 1, "{id}");
    }
    drop(s);
    assert_eq!(s3.keys(".etl-events/"), Vec::<String>::new());
}

#[test]
fn the_mode_needs_cloudtaks_settings() {
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = etl_events();
        cmd.env_remove("API_URL")
            .env_remove("SigningSecret")
            .env_remove("ASSET_BUCKET")
            .env("ETL_CLOUDTAK", "true");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("API_URL"), "{err}");
    let (code, err) = run(&[("API_URL", "http://127.0.0.1:9"), ("ASSET_BUCKET", "b")]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("SigningSecret"), "{err}");
    let (code, err) = run(&[("API_URL", "http://127.0.0.1:9"), ("SigningSecret", "s")]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("ASSET_BUCKET"), "{err}");
    let (code, err) = run(&[
        ("API_URL", "ftp://x"),
        ("SigningSecret", "s"),
        ("ASSET_BUCKET", "b"),
    ]);
    assert_eq!(code, 64, "{err}");
    // Another mode beside it is a usage error.
    let (code, err) = run(&[
        ("API_URL", "http://127.0.0.1:9"),
        ("SigningSecret", "s"),
        ("ASSET_BUCKET", "b"),
        ("ETL_SERVE", "true"),
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("--serve") && err.contains("--cloudtak"),
        "{err}"
    );
}
