//! `etl-pmtiles extract IN OUT (--bbox W,S,E,N | --region FILE) [--minzoom N] [--maxzoom N]`:
//! the tiles of an area copied byte for byte into a new archive (offline packages for TAK
//! devices).
//!
//! IN is read by ranged requests wherever it is: a local file, an `s3://` object (each GET
//! pinned to the ETag seen at open, so an object replaced mid-read fails instead of mixing
//! versions) or an `http(s)://` URL (the same with `If-Match`). Only the source's header,
//! root, the leaf directories that meet the area and the area's tiles are read, so a city out
//! of a planet archive costs megabytes, not the planet.
//!
//! A region is the polygons of a GeoJSON, GeoJSON sequence, KML, FlatGeobuf or CSV (WKT) file
//! (a path or an `s3://` URL): every tile that meets them is taken.
//!
//! Exit codes beyond the tools' own: 65 the source is damaged or the region is not polygons;
//! 66 IN or the region does not exist; 69 the server cannot be reached; 75 the archive changed
//! while it was read, or the server failed (a retry may help); 78 access denied.

use std::convert::Infallible;
use std::fmt::Display;
use std::io::BufReader;
use std::process::ExitCode;

use bytes::Bytes;
use clap::ArgGroup;
use etl_core::ExitKind;
use etl_core::store::{Location, ObjectMeta, Store, StoreError};
use etl_geo::geo_types::{Geometry, MultiPolygon};
use etl_geo::{Format, ReadOptions};
use etl_tiles::archive::{
    Area, ExtractError, ExtractReport, FileReader, MAX_REGION_EDGES, RangeReader, Region,
    check_area, extract, now,
};

use super::{Remote, fail, publish, say, store_fail, store_kind};
use crate::http_range::{HttpError, HttpReader};

/// `etl-pmtiles extract IN OUT (--bbox W,S,E,N | --region FILE) [--minzoom N] [--maxzoom N]`.
#[derive(clap::Args)]
#[command(group(ArgGroup::new("area").required(true).args(["bbox", "region"])))]
pub struct ExtractArgs {
    /// The archive to read: a path, an s3:// URL or an http(s):// URL.
    input: String,
    /// The archive to write: a path or an s3:// URL.
    out: String,
    /// The area: WEST,SOUTH,EAST,NORTH in degrees (west < east).
    #[arg(long, allow_hyphen_values = true)]
    bbox: Option<String>,
    /// The area: the polygons of a GeoJSON, KML, FlatGeobuf or CSV (WKT) file, a path or an
    /// s3:// URL; every tile they meet is taken.
    #[arg(long)]
    region: Option<String>,
    /// Lowest zoom to copy (default: the archive's).
    #[arg(long)]
    minzoom: Option<u8>,
    /// Highest zoom to copy (default: the archive's).
    #[arg(long)]
    maxzoom: Option<u8>,
    /// Overwrite an existing OUT.
    #[arg(short = 'f', long)]
    force: bool,
}

impl ExtractArgs {
    /// What `--dry-run` prints: the extract that would run.
    pub fn plan(&self) -> serde_json::Value {
        serde_json::json!({ "dry_run": {
            "extract": self.input, "out": self.out, "bbox": self.bbox, "region": self.region,
            "minzoom": self.minzoom, "maxzoom": self.maxzoom, "force": self.force,
        } })
    }
}

/// An S3 object version read by ranged GETs, each pinned to the ETag seen at open.
struct S3Ranged<'a> {
    store: &'a Store,
    meta: ObjectMeta,
}

impl RangeReader for S3Ranged<'_> {
    type Error = StoreError;

    fn size(&self) -> u64 {
        self.meta.size
    }

    async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        self.store.read_range(&self.meta, offset, len).await
    }
}

pub(super) fn run(remote: &mut Remote, x: &ExtractArgs) -> Result<ExitCode, ExitCode> {
    let zooms = (
        x.minzoom.unwrap_or(0),
        x.maxzoom.unwrap_or(etl_tiles::tile::MAX_ZOOM),
    );
    let area = match (&x.bbox, &x.region) {
        (Some(b), None) => Area::Bbox(parse_bbox(b)?),
        (None, Some(r)) => Area::Region(read_region(remote, r)?),
        _ => return Err(fail(ExitKind::Usage, "give one of --bbox and --region")),
    };
    // The area and zooms before any request.
    check_area::<Infallible>(&area, zooms).map_err(|e| fail(ExitKind::Usage, e))?;
    if !x.force && remote.exists(&x.out)? {
        return Err(fail(
            ExitKind::Usage,
            format!("{}: already exists; use -f to overwrite", x.out),
        ));
    }
    let input = x.input.as_str();
    let mut report = None;
    if input.starts_with("http://") || input.starts_with("https://") {
        let (rt, _) = remote.get()?;
        let handle = rt.handle().clone();
        let src = handle
            .block_on(HttpReader::open(input))
            .map_err(|e| fail(http_kind(&e), e))?;
        publish(remote, &x.out, |file| {
            let (w, r) = handle
                .block_on(extract(&src, file, &area, zooms))
                .map_err(|e| extract_fail(e, x, |e: &HttpError| (http_kind(e), e.to_string())))?;
            report = Some(r);
            Ok(w)
        })?;
    } else if input.starts_with("s3://") {
        let loc = Location::parse(input).map_err(|e| store_fail(input, &e))?;
        let (rt, store) = remote.get()?;
        let handle = rt.handle().clone();
        // A store of its own: `publish` needs the remote for the upload of an S3 OUT.
        let store = store.clone();
        let meta = handle
            .block_on(store.head(&loc))
            .map_err(|e| store_fail(input, &e))?;
        let src = S3Ranged {
            store: &store,
            meta,
        };
        publish(remote, &x.out, |file| {
            let (w, r) = handle
                .block_on(extract(&src, file, &area, zooms))
                .map_err(|e| extract_fail(e, x, |e: &StoreError| (store_kind(e), e.to_string())))?;
            report = Some(r);
            Ok(w)
        })?;
    } else {
        let src = FileReader::open(std::path::Path::new(input)).map_err(|e| {
            let kind = match &e {
                etl_tiles::archive::ArchiveError::Io(io)
                    if io.kind() == std::io::ErrorKind::NotFound =>
                {
                    ExitKind::NoInput
                }
                _ => ExitKind::IoError,
            };
            fail(kind, format!("{input}: {e}"))
        })?;
        publish(remote, &x.out, |file| {
            let (w, r) = now(extract(&src, file, &area, zooms)).map_err(|e| {
                extract_fail(e, x, |e: &etl_tiles::archive::ArchiveError| {
                    let kind = match e {
                        etl_tiles::archive::ArchiveError::Io(_) => ExitKind::IoError,
                        _ => ExitKind::BadInput,
                    };
                    (kind, e.to_string())
                })
            })?;
            report = Some(r);
            Ok(w)
        })?;
    }
    let report: ExtractReport =
        report.ok_or_else(|| fail(ExitKind::Internal, "extract: no report"))?;
    let what = x.bbox.as_deref().or(x.region.as_deref()).unwrap_or("");
    say(format_args!(
        "{}: extracted {} tiles ({} distinct) of {input} in {what}; read {} bytes in {} tile \
         requests and {} leaf directories",
        x.out,
        report.tiles,
        report.tile_contents,
        report.bytes_read,
        report.tile_reads,
        report.leaves_read
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// One line and an exit code for a failed extract; `source` says what a reader's own error
/// means.
fn extract_fail<E: Display>(
    e: ExtractError<E>,
    x: &ExtractArgs,
    source: impl Fn(&E) -> (ExitKind, String),
) -> ExitCode {
    match e {
        ExtractError::Area(m) => fail(ExitKind::Usage, m),
        ExtractError::Region(m) => fail(
            ExitKind::BadInput,
            format!("{m} ({})", x.region.as_deref().unwrap_or("--region")),
        ),
        ExtractError::Read(e) => fail(ExitKind::BadInput, format!("{}: {e}", x.input)),
        ExtractError::Damaged(m) => fail(ExitKind::BadInput, format!("{}: {m}", x.input)),
        ExtractError::Source(e) => {
            let (kind, m) = source(&e);
            fail(kind, format!("{}: {m}", x.input))
        }
        ExtractError::Write(e) => fail(ExitKind::IoError, format!("{}: {e}", x.out)),
    }
}

/// What an HTTP failure means: a missing archive 66, denied access 78, a server failure, a
/// changed archive, an answer cut short or too slow 75 (retry), an unreachable server 69, a
/// server that cannot serve ranges or answers nonsense 65.
fn http_kind(e: &HttpError) -> ExitKind {
    match e {
        HttpError::BadUrl { .. } => ExitKind::Usage,
        HttpError::Roots { .. } => ExitKind::OsError,
        HttpError::Request { .. } => ExitKind::Unavailable,
        HttpError::Status { status, .. } => match status.as_u16() {
            404 | 410 => ExitKind::NoInput,
            401 | 403 => ExitKind::Config,
            408 | 429 | 500..=599 => ExitKind::Temporary,
            _ => ExitKind::BadInput,
        },
        HttpError::Protocol { .. } => ExitKind::BadInput,
        HttpError::Changed { .. } | HttpError::Interrupted { .. } => ExitKind::Temporary,
    }
}

/// `--bbox W,S,E,N` as four numbers.
fn parse_bbox(s: &str) -> Result<[f64; 4], ExitCode> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            fail(
                ExitKind::Usage,
                format!("--bbox {s}: {e} (want WEST,SOUTH,EAST,NORTH)"),
            )
        })?;
    <[f64; 4]>::try_from(v).map_err(|_| {
        fail(
            ExitKind::Usage,
            format!("--bbox {s}: want four numbers, WEST,SOUTH,EAST,NORTH"),
        )
    })
}

/// The polygons of the region file `arg`: every feature must be a polygon or multipolygon (a
/// collection of them counts); anything else, or a feature the reader rejects, is an error
/// naming the line.
fn read_region(remote: &mut Remote, arg: &str) -> Result<Region, ExitCode> {
    let (path, _held) = remote.local(arg)?;
    let file = std::fs::File::open(&path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ExitKind::NoInput
        } else {
            ExitKind::IoError
        };
        fail(kind, format!("--region {arg}: {e}"))
    })?;
    let mut input = BufReader::new(file);
    let format = match Format::from_path(arg) {
        Some(f) => f,
        None => {
            let prefix = std::io::BufRead::fill_buf(&mut input)
                .map_err(|e| fail(ExitKind::IoError, format!("--region {arg}: {e}")))?;
            Format::sniff(prefix).ok_or_else(|| {
                fail(
                    ExitKind::BadInput,
                    format!("--region {arg}: not GeoJSON, KML, FlatGeobuf or CSV"),
                )
            })?
        }
    };
    let bad = |m: String| fail(ExitKind::BadInput, format!("--region {arg}: {m}"));
    let records = etl_geo::open(format, Box::new(input), &ReadOptions::default())
        .map_err(|e| bad(e.to_string()))?;
    let mut polygons = MultiPolygon::<f64>(Vec::new());
    // Counted as they are read: a region too big is refused before it is all in memory.
    let mut vertices = 0usize;
    for rec in records {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let feature = rec
            .feature
            .map_err(|r| bad(format!("line {}: {}", rec.line, r.reason)))?;
        let Some(g) = feature.geometry else { continue };
        let before = polygons.0.len();
        add_polygons(g, &mut polygons)
            .map_err(|kind| bad(format!("line {}: a {kind}; a region is polygons", rec.line)))?;
        vertices += polygons
            .0
            .iter()
            .skip(before)
            .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
            .map(|r| r.0.len())
            .sum::<usize>();
        if vertices > MAX_REGION_EDGES + polygons.0.len() {
            return Err(bad(format!(
                "line {}: more than {MAX_REGION_EDGES} vertices; simplify the outline",
                rec.line
            )));
        }
    }
    if polygons.0.is_empty() {
        return Err(bad("no polygons".to_owned()));
    }
    Region::new::<Infallible>(&polygons)
        .map_err(|e| fail(ExitKind::BadInput, format!("{e} ({arg})")))
}

/// Adds the polygons of `g` to `out`; the kind of anything that is not a polygon.
fn add_polygons(g: Geometry<f64>, out: &mut MultiPolygon<f64>) -> Result<(), &'static str> {
    match g {
        Geometry::Polygon(p) => out.0.push(p),
        Geometry::MultiPolygon(m) => out.0.extend(m.0),
        Geometry::Rect(r) => out.0.push(r.to_polygon()),
        Geometry::Triangle(t) => out.0.push(t.to_polygon()),
        Geometry::GeometryCollection(c) => {
            for g in c.0 {
                add_polygons(g, out)?;
            }
        }
        Geometry::Point(_) | Geometry::MultiPoint(_) => return Err("point"),
        Geometry::Line(_) | Geometry::LineString(_) | Geometry::MultiLineString(_) => {
            return Err("line");
        }
    }
    Ok(())
}
