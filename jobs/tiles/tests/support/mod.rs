//! Shared test scaffolding: archives with known tiles, the app over a directory or S3 prefix,
//! requests through the router in-process, tokens.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use etl_tiles::archive::{ArchiveMeta, ArchiveWriter, Compression, HEADER_LEN, Header, TileType};
use etl_tiles::tile::{TileCoord, tile_id};
use etl_tileserver::app::{AppState, Cors, Settings, router};
use etl_tileserver::archives::{Archives, CacheSettings};
use etl_tileserver::auth::Auth;
use etl_tileserver::source::{DirSource, Source};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub mod cloudtak;

pub const SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The plain payload stored for a tile by [`write_archive`]: distinct per tile and per `tag`.
pub fn payload(tag: &str, z: u8, x: u32, y: u32) -> Vec<u8> {
    format!("{tag}:{z}/{x}/{y}").into_bytes()
}

/// Writes an archive holding `tiles` (gzip of [`payload`]) with zooms `minz..=maxz` in the
/// header, as `tile_type` (raster types are stored uncompressed).
pub fn write_archive(
    path: &Path,
    tag: &str,
    tiles: &[(u8, u32, u32)],
    minz: u8,
    maxz: u8,
    tile_type: TileType,
) {
    let tmp = path.with_extension("tmp");
    let raster = tile_type != TileType::Mvt;
    let mut ids: Vec<(u64, Vec<u8>)> = tiles
        .iter()
        .map(|&(z, x, y)| {
            let p = payload(tag, z, x, y);
            (
                tile_id(TileCoord { z, x, y }),
                if raster { p } else { gzip(&p) },
            )
        })
        .collect();
    ids.sort_by_key(|(id, _)| *id);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .unwrap();
    let mut w = ArchiveWriter::new(std::io::BufWriter::new(f)).unwrap();
    for (id, data) in &ids {
        w.add_tile(*id, data).unwrap();
    }
    let meta = ArchiveMeta {
        min_zoom: minz,
        max_zoom: maxz,
        bounds: [-10.0, -10.0, 10.0, 10.0],
        center: (0.0, 0.0, minz),
        metadata: serde_json::json!({
            "name": tag,
            "attribution": "test data",
            "vector_layers": [{"id": "things", "fields": {"kind": "String"}, "minzoom": minz, "maxzoom": maxz}],
        }),
    };
    let mut f = w.finish(&meta).unwrap().into_inner().unwrap();
    // The writer records the zooms of the tiles; the tests want the header's range as given,
    // and raster archives are rewritten as such.
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut head = [0u8; HEADER_LEN];
    f.read_exact(&mut head).unwrap();
    let mut h = Header::from_bytes(&head).unwrap();
    h.min_zoom = minz;
    h.max_zoom = maxz;
    if raster {
        h.tile_type = tile_type;
        h.tile_compression = Compression::None;
    }
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&h.to_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

/// A block of `side`² tiles at zoom `z`, enough (side ≥ 120) for the writer to use leaf
/// directories.
pub fn block(z: u8, side: u32) -> Vec<(u8, u32, u32)> {
    let mut v = Vec::new();
    for x in 0..side {
        for y in 0..side {
            v.push((z, x, y));
        }
    }
    v
}

/// `n` distinct tiles scattered over zoom `z` (a fixed pseudo-random pattern): irregular tile
/// ids do not compress, so a few thousand need leaf directories.
pub fn scatter(z: u8, n: usize) -> Vec<(u8, u32, u32)> {
    let side = 1u64 << z;
    let mut seen = std::collections::HashSet::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while seen.len() < n {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let v = state >> 16;
        seen.insert(((v % side) as u32, ((v / side) % side) as u32));
    }
    let mut v: Vec<(u8, u32, u32)> = seen.into_iter().map(|(x, y)| (z, x, y)).collect();
    v.sort();
    v
}

/// The public URL of the apps under test (also the `Host` [`request`] sends by default).
pub const PUBLIC_URL: &str = "http://tiles.test:8080";

/// `vec` (vector, z0-3, tiles at z0, z1 and a z3 block) and `img` (png, z2-4).
pub fn vec_and_img() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut tiles = vec![(0, 0, 0), (1, 0, 0), (1, 1, 1)];
    tiles.extend(block(3, 4));
    write_archive(
        &dir.path().join("vec.pmtiles"),
        "vec",
        &tiles,
        0,
        3,
        TileType::Mvt,
    );
    write_archive(
        &dir.path().join("img.pmtiles"),
        "img",
        &[(2, 1, 1), (3, 2, 2)],
        2,
        4,
        TileType::Png,
    );
    dir
}

/// What `--no-auth` on a loopback listener gives: no auth, no CORS, public caching.
pub fn dev_settings() -> Settings {
    Settings {
        cache_control: "public, max-age=86400".parse().unwrap(),
        public_url: PUBLIC_URL.into(),
        cors: Cors::Off,
        auth: None,
        inflate_limit: 4,
    }
}

/// The default: JWT auth, no CORS, private caching.
pub fn prod_settings() -> Settings {
    Settings {
        cache_control: "private, max-age=86400".parse().unwrap(),
        public_url: PUBLIC_URL.into(),
        cors: Cors::Off,
        auth: Some(Auth::new(SECRET.as_bytes(), "archives").unwrap()),
        inflate_limit: 4,
    }
}

pub fn app_with(
    source: Source,
    settings: Settings,
    cache: CacheSettings,
) -> (Router, Arc<AppState>) {
    let state = Arc::new(AppState::new(Archives::new(source, cache), settings));
    (router(state.clone()), state)
}

pub fn dir_app(dir: &Path, settings: Settings) -> (Router, Arc<AppState>) {
    let source = Source::Dir(DirSource::new(dir.to_str().unwrap()).unwrap());
    app_with(source, settings, CacheSettings::default())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `uri` with `headers` through the router.
pub async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Reply {
    request(app, "GET", uri, headers).await
}

pub async fn request(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    let mut has_host = false;
    for (k, v) in headers {
        has_host |= k.eq_ignore_ascii_case("host");
        b = b.header(*k, *v);
    }
    if !has_host {
        b = b.header("host", "tiles.test:8080");
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn token(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The repository's fixtures directory.
pub fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The hostile archives in fixtures/pmtiles/hostile/: each case of its expect.json: name, tile path, and the message part a failure must hold (open
/// or lookup) or the text the tile gunzips to.
pub fn hostile_cases() -> Vec<(String, String, Result<String, String>)> {
    let dir = fixtures().join("pmtiles/hostile");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expect.json")).unwrap()).unwrap();
    json.as_object()
        .unwrap()
        .iter()
        .map(|(name, c)| {
            let zxy: Vec<String> = c["tile"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
                .collect();
            let failure = c["open_error"].as_str().or(c["tile_error"].as_str());
            let outcome = match failure {
                Some(want) => Err(want.to_string()),
                None => Ok(c["tile_text"].as_str().unwrap().to_string()),
            };
            (name.clone(), zxy.join("/"), outcome)
        })
        .collect()
}

/// Asks `app` for the tile of every case in [`hostile_cases`] (served under the case's name),
/// twice: a failure is not cached as something else, and a leaf read once is not trusted the
/// second time round. A corrupt archive is a 500 naming the archive and the problem.
pub async fn assert_hostile_answers(app: &Router) {
    let gz = [("accept-encoding", "gzip")];
    let cases = hostile_cases();
    assert!(cases.len() >= 10, "expect.json lists {} cases", cases.len());
    for round in 0..2 {
        for (name, zxy, outcome) in &cases {
            let r = get(app, &format!("/tiles/{name}/{zxy}.pbf"), &gz).await;
            match outcome {
                Ok(text) => {
                    assert_eq!(
                        r.status,
                        StatusCode::OK,
                        "{name} round {round}: {}",
                        r.text()
                    );
                    assert_eq!(&String::from_utf8(gunzip(&r.body)).unwrap(), text);
                }
                Err(want) => {
                    assert_eq!(
                        r.status,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "{name} round {round}: {}",
                        r.text()
                    );
                    let error = r.json()["error"].as_str().unwrap().to_string();
                    assert!(
                        error.contains(&format!("archive {name} is corrupt"))
                            && error.contains(want.as_str()),
                        "{name}: {error:?} should name the archive and hold {want:?}"
                    );
                }
            }
        }
    }
}

/// A running `etl-tiles serve`, killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `etl-tiles serve --root ROOT` on a free loopback port (add `--no-auth` to `extra` for
/// no auth); returns it with its base URL (read from the `listening on` line). Stderr is piped
/// when `capture_stderr`, else inherited.
pub fn spawn_server(root: &Path, extra: &[&str], capture_stderr: bool) -> (Server, String) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-tiles"))
        .arg("serve")
        .arg("--root")
        .arg(root)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("ETL_PROFILE")
        .env_remove("ETL_TILES_JWT_SECRET")
        .env_remove("ETL_TILES_NO_AUTH")
        .env_remove("ETL_TILES_PUBLIC_URL")
        .env_remove("ETL_TILES_CORS_ORIGINS")
        .env_remove("SigningSecret")
        .env_remove("ASSET_BUCKET")
        .env_remove("PMTILES_URL")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (Server(child), url)
}

/// Publishes version `version` of archive `name` in `dir` as the import worker does: the
/// versioned file `NAME.VERSION.pmtiles` (tiles tagged `tag`), then the manifest `NAME.json`
/// replaced by rename. Returns the versioned file's name.
pub fn publish_local(
    dir: &Path,
    name: &str,
    version: &str,
    tag: &str,
    tiles: &[(u8, u32, u32)],
    maxz: u8,
) -> String {
    let file = format!("{name}.{version}.pmtiles");
    write_archive(&dir.join(&file), tag, tiles, 0, maxz, TileType::Mvt);
    write_manifest(dir, name, &manifest(name, version, &file));
    file
}

/// A manifest of version `version` whose pmtiles output is `file`.
pub fn manifest(name: &str, version: &str, file: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "version": version,
        "outputs": [
            {"url": format!("file:///out/{name}.{version}.geojsonl"), "file": format!("{name}.{version}.geojsonl"),
             "kind": "geojsonl", "bytes": 10, "sha256": "00"},
            {"url": format!("file:///out/{file}"), "file": file, "kind": "pmtiles", "bytes": 20, "sha256": "11"},
        ],
    })
}

/// Writes `NAME.json` in `dir` by rename of a temporary file (a new inode, as a swap makes).
pub fn write_manifest(dir: &Path, name: &str, doc: &serde_json::Value) {
    let tmp = dir.join(format!(".{name}.json.tmp"));
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.json"))).unwrap();
}

/// Names listed by `GET /` (JSON).
pub async fn listed(app: &Router, headers: &[(&str, &str)]) -> Vec<String> {
    let mut h = vec![("accept", "application/json")];
    h.extend_from_slice(headers);
    let r = get(app, "/", &h).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

/// Copies the MVT archive at `src` to `dst` with every tile transcoded to MLT (tile type 6,
/// gzip), as `etl-pmtiles --tile-format mlt` writes them.
pub fn mlt_copy(src: &Path, dst: &Path) {
    use etl_tiles::archive::Archive;
    let bytes = std::fs::read(src).unwrap();
    let mut a = Archive::open(std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(a.header().tile_type, TileType::Mvt);
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut w = ArchiveWriter::new(std::fs::File::create(dst).unwrap()).unwrap();
    w.set_tile_format(TileType::Mlt, Compression::Gzip);
    for e in entries {
        let mvt = gunzip(&a.read_tile(&e).unwrap());
        let mlt =
            etl_tiles::mlt::mvt_to_mlt(&mvt, false, etl_tiles::mlt::MltLimits::SERVE).unwrap();
        w.add_tile_run(e.tile_id, u64::from(e.run_length), &gzip(&mlt))
            .unwrap();
    }
    let h = a.header().clone();
    w.finish(&ArchiveMeta {
        min_zoom: h.min_zoom,
        max_zoom: h.max_zoom,
        bounds: h.bounds,
        center: (h.center_lon, h.center_lat, h.center_zoom),
        metadata: a.metadata().clone(),
    })
    .unwrap();
}

/// The features of an MVT tile, one line each, sorted (see `etl_tiles::mvt::feature_lines`).
pub fn mvt_features(mvt: &[u8]) -> Vec<String> {
    etl_tiles::mvt::feature_lines(mvt).unwrap()
}
