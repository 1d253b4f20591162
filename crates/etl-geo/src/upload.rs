//! An uploaded file as a whole: its format found by content, unpacked when it is an
//! archive (KMZ, zipped Shapefiles, TAK data packages), and read as one stream of records
//! over named layers.
//!
//! Detection never trusts the extension: SQLite's header is a GeoPackage when its application id
//! says so (its feature tables are the layers), else MBTiles; a file starting with `PAR1` is
//! GeoParquet (one layer named after the file); a zip is a data package
//! when it holds `MANIFEST/manifest.xml`, a Shapefile set when it holds a `.shp`, a KMZ when it
//! holds a `.kml`; anything else goes to [`Format::sniff`] (JSON shape, XML root element,
//! FlatGeobuf magic, CSV header).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::archive::{self, ArchiveLimits, Budget, Entry};
use crate::error::ReadError;
use crate::format::{Format, describe_unknown};
use crate::formats::{FeatureSource, ReadOptions, Record};

mod kmz;
pub mod manifest;

use manifest::read_manifest;

/// How much of a file detection looks at.
const SNIFF_BYTES: usize = 64 * 1024;
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
/// A Shapefile's `.shp` starts with the big-endian file code 9994.
const SHP_MAGIC: &[u8] = &[0x00, 0x00, 0x27, 0x0a];
const READ_BUFFER: usize = 256 * 1024;

/// What an upload turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFormat {
    /// A single file of a feature format.
    Plain(Format),
    /// A zip holding `doc.kml` (or another `.kml`) and its icons.
    Kmz,
    /// A zip holding one or more Shapefile sets.
    ShapefileZip,
    /// A TAK data package: a zip with `MANIFEST/manifest.xml`.
    DataPackage,
    /// An MBTiles (SQLite) tile set: converted to PMTiles, not read as features.
    MBTiles,
    /// A GeoPackage: each feature table is a layer.
    GeoPackage,
    /// A GeoParquet file: one layer.
    GeoParquet,
}

impl UploadFormat {
    pub fn name(&self) -> &'static str {
        match self {
            UploadFormat::Plain(f) => f.name(),
            UploadFormat::Kmz => "kmz",
            UploadFormat::ShapefileZip => "shapefile",
            UploadFormat::DataPackage => "datapackage",
            UploadFormat::MBTiles => "mbtiles",
            UploadFormat::GeoPackage => "gpkg",
            UploadFormat::GeoParquet => "geoparquet",
        }
    }
}

/// Limits and reader settings for one upload.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    pub read: ReadOptions,
    /// One allowance for the whole upload: the archive and every archive nested in it, at
    /// any depth, share its total bytes and entry count.
    pub archive: ArchiveLimits,
    /// The layers of a GeoPackage to read (`--layer`); empty: every feature table.
    pub layers: Vec<String>,
    /// The format of a plain (not archive, GeoPackage, GeoParquet or Shapefile) upload
    /// (`--format`), whatever its content says.
    pub format: Option<Format>,
    /// KML documents a KML or KMZ upload's NetworkLinks name outside it, fetched by the
    /// caller: each is read as a layer of its own after the upload's.
    pub linked: Vec<LinkedDoc>,
}

/// A KML document a NetworkLink names, fetched to a local file.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedDoc {
    /// What the link named (its URL), for messages.
    pub label: String,
    pub path: PathBuf,
    /// Its layer's name.
    pub layer: String,
}

/// A file inside an archive upload that is not read as features: a KMZ's icons, a data
/// package's attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Its name inside the archive.
    pub name: String,
    pub bytes: u64,
    /// The CoT `uid` a data package's manifest attaches it to.
    pub uid: Option<String>,
}

/// One readable file of the upload.
#[derive(Debug)]
struct Part {
    /// Its name inside the archive, or `None` for a plain upload.
    label: Option<String>,
    path: PathBuf,
    kind: PartKind,
    /// Index of its first layer in [`Upload::layers`].
    layer_base: u32,
}

#[derive(Debug, Clone)]
enum PartKind {
    Plain(Format),
    Shapefile,
    /// One feature table of a GeoPackage.
    GeoPackage(String),
    GeoParquet,
}

/// An opened upload. Iterating yields its records in order, with `layer` indexing
/// [`Upload::layers`] and `ordinal` counting across all parts; a fatal error names the
/// archive entry it happened in.
///
/// An archive is extracted into a new `upload-*` folder of the scratch directory, which the
/// upload owns: it is removed before a fatal error is returned (from [`Upload::open`] or from
/// iterating), when the last record has been returned, and when the upload is dropped (an
/// early return, a panic unwinding), so nothing is left behind even if the caller exits
/// without dropping the upload.
pub struct Upload {
    pub format: UploadFormat,
    pub layers: Vec<String>,
    pub assets: Vec<Asset>,
    /// Parts of the upload not read, and why (a GeoPackage's views), for the log.
    pub skipped: Vec<String>,
    /// A data package's `<Configuration>` parameters (uid, name, …).
    pub package: Map<String, Value>,
    parts: VecDeque<Part>,
    current: Option<(FeatureSource, Option<String>, u32)>,
    opts: UploadOptions,
    ordinal: u64,
    /// No more records: the last was returned, or a fatal error.
    done: bool,
    path: PathBuf,
    /// Extracted files live here until the upload ends.
    scratch: Scratch,
}

/// The upload's folder in the scratch directory, removed by [`Scratch::remove`] or, on any
/// other path (an early return, a panic unwinding), when dropped.
#[derive(Default)]
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    /// Removes the folder and everything in it; a no-op when there is none or it is gone.
    fn remove(&mut self) -> io::Result<()> {
        match self.0.take() {
            None => Ok(()),
            Some(dir) => {
                let shown = dir.path().display().to_string();
                dir.close().map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("removing the scratch folder {shown}: {e}"),
                    )
                })
            }
        }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("format", &self.format)
            .field("layers", &self.layers)
            .field("assets", &self.assets.len())
            .finish()
    }
}

impl Upload {
    /// Detects and opens the upload at `path`. `stem` names the layer of a single-layer
    /// upload; archives are extracted under a new directory in `scratch`.
    pub fn open(
        path: &Path,
        stem: &str,
        scratch: &Path,
        opts: &UploadOptions,
    ) -> Result<Upload, ReadError> {
        let mut upload = Self::open_any(path, stem, scratch, opts)?;
        upload.add_linked();
        // `--layer` names GeoPackage tables; anything else would be read whole, so it is
        // refused rather than silently ignored.
        if !opts.layers.is_empty() && upload.format != UploadFormat::GeoPackage {
            return Err(ReadError::Refused(format!(
                "--layer {} picks the tables of a GeoPackage, and this is a {} upload",
                opts.layers.join(","),
                upload.format.name()
            )));
        }
        Ok(upload)
    }

    fn open_any(
        path: &Path,
        stem: &str,
        scratch: &Path,
        opts: &UploadOptions,
    ) -> Result<Upload, ReadError> {
        let prefix = read_prefix(path)?;
        let mut upload = Upload {
            format: UploadFormat::MBTiles,
            layers: Vec::new(),
            assets: Vec::new(),
            skipped: Vec::new(),
            package: Map::new(),
            parts: VecDeque::new(),
            current: None,
            opts: opts.clone(),
            ordinal: 0,
            done: false,
            path: path.to_path_buf(),
            scratch: Scratch::default(),
        };
        if prefix.starts_with(SQLITE_MAGIC) {
            if crate::formats::gpkg::is_geopackage(&prefix) {
                upload.format = UploadFormat::GeoPackage;
                upload.add_geopackage(path)?;
            }
            return Ok(upload);
        }
        if crate::formats::geoparquet::is_parquet(&prefix) {
            // Checked now (footer, "geo" metadata, columns), so a bad file fails at open.
            upload.format = UploadFormat::GeoParquet;
            upload.skipped = crate::formats::geoparquet::describe(path, &opts.read)?;
            let layer_base = upload.layers.len() as u32;
            upload.add_layer(stem);
            upload.parts.push_back(Part {
                label: None,
                path: path.to_path_buf(),
                kind: PartKind::GeoParquet,
                layer_base,
            });
            return Ok(upload);
        }
        if prefix.starts_with(SHP_MAGIC)
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("shp"))
        {
            // A loose Shapefile set: its `.dbf`, `.prj` and `.cpg` are read from beside it.
            upload.format = UploadFormat::ShapefileZip;
            let layer_base = upload.layers.len() as u32;
            upload.add_layer(stem);
            upload.parts.push_back(Part {
                label: None,
                path: path.to_path_buf(),
                kind: PartKind::Shapefile,
                layer_base,
            });
            return Ok(upload);
        }
        if archive::is_zip(&prefix) {
            let names = archive::list(path, &opts.archive)?;
            let dir = tempfile::Builder::new()
                .prefix("upload-")
                .tempdir_in(scratch)?;
            let into = dir.path().to_path_buf();
            // From here on the upload owns the folder: any error removes it.
            upload.scratch = Scratch(Some(dir));
            return match upload.add_archive(path, stem, &names, &into) {
                Ok(()) => Ok(upload),
                Err(e) => Err(upload.fail(e)),
            };
        }
        let format = opts
            .format
            .or_else(|| Format::sniff(&prefix))
            .ok_or_else(|| {
                ReadError::Refused(format!(
                    "unsupported input format: {}",
                    describe_unknown(&prefix)
                ))
            })?;
        upload.format = UploadFormat::Plain(format);
        upload.push_plain(None, path.to_path_buf(), format, stem);
        Ok(upload)
    }

    /// Appends the fetched documents of [`UploadOptions::linked`] to a KML or KMZ upload.
    fn add_linked(&mut self) {
        if !matches!(
            self.format,
            UploadFormat::Kmz | UploadFormat::Plain(Format::Kml)
        ) {
            return;
        }
        for doc in self.opts.linked.clone() {
            self.push_plain(Some(doc.label), doc.path, Format::Kml, &doc.layer);
        }
    }

    /// The path of an MBTiles upload, to convert as tiles.
    pub fn mbtiles(&self) -> Option<&Path> {
        (self.format == UploadFormat::MBTiles).then_some(self.path.as_path())
    }

    /// Ends the upload on the fatal error `e`: closes the part being read and removes the
    /// scratch folder before `e` is handed on; a failure to remove it is added to `e`.
    fn fail(&mut self, e: ReadError) -> ReadError {
        self.done = true;
        self.current = None;
        self.parts.clear();
        match self.scratch.remove() {
            Ok(()) => e,
            Err(cleanup) => with_cleanup_error(e, &cleanup),
        }
    }

    /// Extracts the zip at `path` (whose checked file names are `names`) into the scratch
    /// folder `dir` and adds its parts, with one expansion budget for it and any archive
    /// nested in it.
    fn add_archive(
        &mut self,
        path: &Path,
        stem: &str,
        names: &[String],
        dir: &Path,
    ) -> Result<(), ReadError> {
        let mut budget = Budget::new(&self.opts.archive);
        let has = |suffix: &str| {
            names
                .iter()
                .any(|n| n.to_ascii_lowercase().ends_with(suffix))
        };
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("MANIFEST/manifest.xml"))
        {
            self.format = UploadFormat::DataPackage;
            let entries = archive::extract_within(path, dir, &mut budget)?;
            self.add_package(stem, &entries, dir, &mut budget)?;
        } else if has(".shp") {
            self.format = UploadFormat::ShapefileZip;
            let entries = archive::extract_within(path, dir, &mut budget)?;
            self.add_shapefiles(&entries, "");
        } else if has(".kml") {
            self.format = UploadFormat::Kmz;
            let entries = archive::extract_within(path, dir, &mut budget)?;
            self.add_kmz(stem, None, &entries)?;
        } else {
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            return Err(ReadError::Refused(format!(
                "unsupported input format: a zip archive without MANIFEST/manifest.xml, a .shp or a .kml (it holds {}{})",
                if shown.is_empty() {
                    "nothing".to_owned()
                } else {
                    shown.join(", ")
                },
                if names.len() > 5 { ", …" } else { "" }
            )));
        }
        Ok(())
    }

    /// A GeoPackage: its feature tables (those `--layer` names, when it names any) as layers.
    fn add_geopackage(&mut self, path: &Path) -> Result<(), ReadError> {
        let (tables, views) = crate::formats::gpkg::layers(path)?;
        let wanted = &self.opts.layers;
        if let Some(view) = wanted.iter().find(|w| views.contains(w)) {
            return Err(ReadError::Refused(format!(
                "--layer {:?}: a view; views are not read (their SQL could run without bound)",
                crate::formats::excerpt(view)
            )));
        }
        self.skipped.extend(views.iter().map(|v| {
            format!(
                "layer {}: a view, not read",
                crate::formats::excerpt(&v.replace(['\n', '\r'], " "))
            )
        }));
        if let Some(missing) = wanted.iter().find(|w| !tables.contains(w)) {
            let shown: Vec<String> = tables
                .iter()
                .take(20)
                .map(|t| crate::formats::excerpt(&t.replace(['\n', '\r'], " ")).to_string())
                .collect();
            return Err(ReadError::Refused(format!(
                "--layer {:?}: the GeoPackage has no such feature table (it has {}{})",
                crate::formats::excerpt(missing),
                if shown.is_empty() {
                    "none".to_owned()
                } else {
                    shown.join(", ")
                },
                if tables.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )));
        }
        let chosen: Vec<&String> = tables
            .iter()
            .filter(|t| wanted.is_empty() || wanted.contains(t))
            .collect();
        if chosen.is_empty() {
            return Err(ReadError::Refused(
                "a GeoPackage without feature tables (tiles or attributes only are not read)"
                    .to_owned(),
            ));
        }
        for table in chosen {
            let layer_base = self.layers.len() as u32;
            self.add_layer(table);
            self.parts.push_back(Part {
                label: Some(format!("layer {table}")),
                path: path.to_path_buf(),
                kind: PartKind::GeoPackage(table.clone()),
                layer_base,
            });
        }
        Ok(())
    }

    fn push_plain(&mut self, label: Option<String>, path: PathBuf, format: Format, stem: &str) {
        let layer_base = self.layers.len() as u32;
        match format.layers() {
            [] => self.add_layer(stem),
            fixed => {
                let single = self.parts.is_empty() && label.is_none();
                for layer in fixed {
                    if single {
                        self.add_layer(layer);
                    } else {
                        self.add_layer(&format!("{stem}-{layer}"));
                    }
                }
            }
        }
        self.parts.push_back(Part {
            label,
            path,
            kind: PartKind::Plain(format),
            layer_base,
        });
    }

    /// Adds a layer, or a numbered one when the name is taken.
    fn add_layer(&mut self, name: &str) {
        let name = if name.is_empty() { "layer" } else { name };
        let mut candidate = name.to_owned();
        let mut n = 2;
        while self.layers.contains(&candidate) {
            candidate = format!("{name}-{n}");
            n += 1;
        }
        self.layers.push(candidate);
    }

    fn add_shapefiles(&mut self, entries: &[Entry], label_prefix: &str) {
        for e in entries {
            if e.name.to_ascii_lowercase().ends_with(".shp") {
                let layer_base = self.layers.len() as u32;
                self.add_layer(file_stem(&e.name));
                self.parts.push_back(Part {
                    label: Some(format!("{label_prefix}{}", e.name)),
                    path: e.path.clone(),
                    kind: PartKind::Shapefile,
                    layer_base,
                });
            }
        }
    }

    /// A TAK data package: every CoT event becomes a feature of the layer `stem`, files of
    /// other feature formats are read by their own format into layers named after them
    /// (KMZ and zipped Shapefiles included), and everything else is an attachment.
    fn add_package(
        &mut self,
        stem: &str,
        entries: &[Entry],
        dir: &Path,
        budget: &mut Budget,
    ) -> Result<(), ReadError> {
        let manifest = entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case("MANIFEST/manifest.xml"))
            .ok_or_else(|| {
                ReadError::Refused("data package without MANIFEST/manifest.xml".into())
            })?;
        let parsed = read_manifest(&manifest.path, self.opts.read.max_xml_text)
            .map_err(|e| in_part("MANIFEST/manifest.xml", e))?;
        self.package = parsed.settings;
        let mut cot_layer: Option<u32> = None;
        for e in entries {
            if e.name == manifest.name {
                continue;
            }
            let content = parsed.contents.iter().find(|c| c.entry == e.name);
            if content.is_some_and(|c| c.ignore) {
                continue;
            }
            let uid = content.and_then(|c| c.uid.clone());
            let prefix = read_prefix(&e.path)?;
            let name = file_stem(&e.name).to_owned();
            if archive::is_zip(&prefix) {
                let names = archive::list(&e.path, &self.opts.archive)
                    .map_err(|err| in_part(&e.name, err))?;
                let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
                let shapefiles = lower.iter().any(|n| n.ends_with(".shp"));
                if shapefiles || lower.iter().any(|n| n.ends_with(".kml")) {
                    // Inside the upload's scratch folder: removed with it.
                    let nested = tempfile::Builder::new()
                        .prefix("nested-")
                        .tempdir_in(dir)?
                        .keep();
                    let inner = archive::extract_within(&e.path, &nested, budget)
                        .map_err(|err| in_part(&e.name, err))?;
                    if shapefiles {
                        self.add_shapefiles(&inner, &format!("{}/", e.name));
                    } else {
                        self.add_kmz(&name, Some(&e.name), &inner)?;
                    }
                    continue;
                }
            } else if let Some(format) = Format::sniff(&prefix) {
                if format == Format::Cot {
                    let base = match cot_layer {
                        Some(base) => base,
                        None => {
                            let base = self.layers.len() as u32;
                            self.add_layer(stem);
                            cot_layer = Some(base);
                            base
                        }
                    };
                    self.parts.push_back(Part {
                        label: Some(e.name.clone()),
                        path: e.path.clone(),
                        kind: PartKind::Plain(Format::Cot),
                        layer_base: base,
                    });
                } else {
                    self.push_plain(Some(e.name.clone()), e.path.clone(), format, &name);
                }
                continue;
            }
            self.assets.push(Asset {
                name: e.name.clone(),
                bytes: e.bytes,
                uid,
            });
        }
        Ok(())
    }

    fn open_part(&self, part: &Part) -> Result<FeatureSource, ReadError> {
        match &part.kind {
            &PartKind::Plain(format) => {
                let file = File::open(&part.path)?;
                crate::formats::open(
                    format,
                    Box::new(BufReader::with_capacity(READ_BUFFER, file)),
                    &self.opts.read,
                )
            }
            PartKind::Shapefile => {
                crate::formats::shapefile::open_layer(&part.path, &self.opts.read)
            }
            PartKind::GeoPackage(table) => {
                crate::formats::gpkg::open_layer(&part.path, table, &self.opts.read)
            }
            PartKind::GeoParquet => crate::formats::geoparquet::open(&part.path, &self.opts.read),
        }
    }
}

impl Iterator for Upload {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if let Some((source, label, base)) = &mut self.current {
                match source.next() {
                    Some(Ok(mut record)) => {
                        record.layer = record.layer.saturating_add(*base);
                        record.ordinal = self.ordinal;
                        self.ordinal = self.ordinal.saturating_add(1);
                        return Some(Ok(record));
                    }
                    Some(Err(e)) => {
                        let e = match label {
                            Some(label) => in_part(label, e),
                            None => e,
                        };
                        return Some(Err(self.fail(e)));
                    }
                    None => self.current = None,
                }
            }
            let Some(part) = self.parts.pop_front() else {
                // The last record has been returned: the extracted files are not needed.
                self.done = true;
                return self.scratch.remove().err().map(|e| Err(ReadError::Io(e)));
            };
            match self.open_part(&part) {
                Ok(source) => self.current = Some((source, part.label, part.layer_base)),
                Err(e) => {
                    let e = match &part.label {
                        Some(label) => in_part(label, e),
                        None => e,
                    };
                    return Some(Err(self.fail(e)));
                }
            }
        }
    }
}

/// `e` with the failure to remove the scratch folder added to its message, its kind kept.
fn with_cleanup_error(e: ReadError, cleanup: &io::Error) -> ReadError {
    match e {
        ReadError::Io(e) => ReadError::Io(io::Error::new(e.kind(), format!("{e}; and {cleanup}"))),
        ReadError::Refused(m) => ReadError::Refused(format!("{m}; and {cleanup}")),
        ReadError::Syntax {
            line,
            column,
            message,
        } => ReadError::Syntax {
            line,
            column,
            message: format!("{message}; and {cleanup}"),
        },
        ReadError::Invalid {
            line,
            column,
            message,
        } => ReadError::Invalid {
            line,
            column,
            message: format!("{message}; and {cleanup}"),
        },
    }
}

/// Prefixes an error with the archive entry it happened in.
fn in_part(label: &str, e: ReadError) -> ReadError {
    match e {
        ReadError::Io(e) => ReadError::Io(e),
        e if e.position().is_some() => ReadError::Refused(format!("{label}:{e}")),
        e => ReadError::Refused(format!("{label}: {e}")),
    }
}

fn read_prefix(path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut prefix = Vec::with_capacity(SNIFF_BYTES);
    File::open(path)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut prefix)?;
    Ok(prefix)
}

fn file_stem(name: &str) -> &str {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.rsplit_once('.').map_or(file, |(stem, _)| stem)
}
