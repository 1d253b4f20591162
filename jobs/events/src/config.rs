//! The etl-events config: flags, `ETL_*` env vars, JSON Schema (`schemas/etl-events.json`).

use std::path::PathBuf;

use etl_core::JobError;
use etl_geo::archive::ArchiveLimits;
use etl_geo::{ReadOptions, UploadOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::convert::{ConvertOptions, TilesProfile};

/// Import uploads (GeoJSON, CSV, KML, KMZ, GPX, Shapefile zip, FlatGeobuf, CoT, TAK data packages,
/// MBTiles) into immutable PREFIX/NAME.<VERSION>.geojsonl + .pmtiles outputs and the manifest
/// PREFIX/NAME.json that commits them, from a file, an S3 event, or the imports queue (--serve).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, clap::Args)]
pub struct EventsConfig {
    /// The upload to import: a path or s3:// URL (the local run).
    #[arg(long, env = "ETL_INPUT")]
    pub input: Option<String>,

    /// Where outputs go: a directory or s3://bucket/prefix/. Event runs write under the object
    /// key's folder below it.
    #[arg(short = 'o', long, env = "ETL_OUTPUT")]
    pub output: Option<String>,

    /// Output NAME (default: the upload's file name without its extension).
    #[arg(long, env = "ETL_NAME")]
    pub name: Option<String>,

    /// An S3 notification, EventBridge or SQS-wrapped event: a file, or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub event: Option<String>,

    /// The event itself as JSON (what an EventBridge input transformer or a Lambda sets).
    #[arg(long = "event-json", env = "ETL_EVENT", hide_env_values = true)]
    pub event_json: Option<String>,

    /// One object by its parts (Batch parameters): bucket …
    #[arg(long, env = "ETL_BUCKET")]
    pub bucket: Option<String>,
    /// … key (not URL-encoded) …
    #[arg(long, env = "ETL_KEY")]
    pub key: Option<String>,
    /// … ETag …
    #[arg(long, env = "ETL_ETAG")]
    pub etag: Option<String>,
    /// … version id …
    #[arg(long = "version-id", env = "ETL_VERSION_ID")]
    pub version_id: Option<String>,
    /// … and the event's sequencer (orders events on one key).
    #[arg(long, env = "ETL_SEQUENCER")]
    pub sequencer: Option<String>,

    /// Run as a service: take imports from the `imports` table until SIGTERM.
    #[arg(long, env = "ETL_SERVE")]
    #[serde(default)]
    pub serve: bool,

    /// Run as CloudTAK's import worker (its `events` service): poll CloudTAK's API at this URL
    /// (or, given without a URL or as ETL_CLOUDTAK=true, at API_URL) for Pending imports, read
    /// them from ASSET_BUCKET and publish as CloudTAK's worker does, until SIGTERM.
    #[arg(long, env = "ETL_CLOUDTAK", value_name = "API_URL", num_args = 0..=1, default_missing_value = "true")]
    pub cloudtak: Option<String>,

    /// CloudTAK's API URL, for --cloudtak given without one.
    #[arg(long = "api-url", env = "API_URL", hide = true)]
    pub api_url: Option<String>,

    /// The secret CloudTAK signs its tokens with (--cloudtak).
    #[arg(long = "signing-secret", env = "SigningSecret", hide_env_values = true)]
    #[serde(skip_serializing)]
    pub signing_secret: Option<String>,

    /// CloudTAK's asset bucket: uploads under import/, outputs under profile/ (--cloudtak).
    #[arg(long = "asset-bucket", env = "ASSET_BUCKET")]
    pub asset_bucket: Option<String>,

    /// CloudTAK's S3 endpoint override (an S3-compatible server), with its keys below.
    #[arg(long = "cloudtak-s3-endpoint", env = "AWS_S3_Endpoint", hide = true)]
    pub cloudtak_s3_endpoint: Option<String>,
    #[arg(
        long = "cloudtak-s3-access-key-id",
        env = "AWS_S3_AccessKeyId",
        hide = true
    )]
    pub cloudtak_s3_access_key_id: Option<String>,
    #[arg(
        long = "cloudtak-s3-secret-access-key",
        env = "AWS_S3_SecretAccessKey",
        hide = true,
        hide_env_values = true
    )]
    #[serde(skip_serializing)]
    pub cloudtak_s3_secret_access_key: Option<String>,

    /// With --cloudtak: a Running import nobody holds and nobody has touched for this long is
    /// taken over (its worker died). Ours touch their imports every minute.
    #[arg(
        long = "reclaim-after",
        env = "ETL_RECLAIM_AFTER",
        default_value = "30m"
    )]
    #[serde(default = "default_reclaim_after")]
    pub reclaim_after: String,

    /// Imports processed at once by --serve and --cloudtak (default: the number of cores).
    #[arg(long, env = "ETL_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// PostgreSQL URL for --serve (default: DATABASE_URL, or the ETL_DATABASE_SECRET JSON).
    #[arg(long, env = "ETL_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,

    /// How long --serve waits before looking for work again when the queue is empty.
    #[arg(
        long = "poll-interval",
        env = "ETL_POLL_INTERVAL",
        default_value = "1s"
    )]
    pub poll_interval: String,

    /// Failed attempts after which a queued import is marked Fail even if the error was temporary.
    #[arg(long = "max-attempts", env = "ETL_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// Outputs to write: geojsonl, pmtiles (the manifest is always written).
    #[arg(long, env = "ETL_OUTPUTS", value_delimiter = ',', default_values_t = [String::from("geojsonl"), String::from("pmtiles")])]
    pub outputs: Vec<String>,

    /// Highest zoom of the PMTiles output, or g to guess it from the features' spacing (-zg).
    #[arg(
        short = 'z',
        long = "maximum-zoom",
        env = "ETL_MAXIMUM_ZOOM",
        default_value = "14",
        value_name = "N|g"
    )]
    pub maximum_zoom: String,

    /// How the PMTiles output is tiled: `etl`, a layer per input layer with 500 KB / 200k
    /// feature limits per tile and --maximum-zoom/--minimum-zoom; or `cloudtak`, what CloudTAK's
    /// import worker makes (its tippecanoe command): one layer `out`, z0–14, base zoom 6, no
    /// tile limits, described "Automatically Converted by @tak-ps/etl", which CloudTAK's map
    /// draws unchanged.
    #[arg(
        long = "profile-tiles",
        env = "ETL_PROFILE_TILES",
        value_enum,
        default_value_t = TilesProfile::Etl
    )]
    #[serde(default)]
    pub profile_tiles: TilesProfile,

    /// Lowest zoom of the PMTiles output.
    #[arg(
        short = 'Z',
        long = "minimum-zoom",
        env = "ETL_MINIMUM_ZOOM",
        default_value_t = 0
    )]
    pub minimum_zoom: u8,

    /// Largest upload accepted, in bytes; refused before it is read.
    #[arg(long = "max-bytes", env = "ETL_MAX_BYTES", default_value_t = 2 << 30)]
    pub max_bytes: u64,

    /// Most bytes an archive upload (KMZ, zip, data package) may expand to.
    #[arg(long = "max-unzipped-bytes", env = "ETL_MAX_UNZIPPED_BYTES", default_value_t = 4 << 30)]
    pub max_unzipped_bytes: u64,

    /// Largest ratio of expanded to compressed bytes an archive may have.
    #[arg(
        long = "max-zip-ratio",
        env = "ETL_MAX_ZIP_RATIO",
        default_value_t = 100
    )]
    pub max_zip_ratio: u64,

    /// Most entries an archive may list.
    #[arg(
        long = "max-zip-entries",
        env = "ETL_MAX_ZIP_ENTRIES",
        default_value_t = 10_000
    )]
    pub max_zip_entries: usize,

    /// Deepest JSON nesting accepted in GeoJSON uploads.
    #[arg(
        long = "max-json-depth",
        env = "ETL_MAX_JSON_DEPTH",
        default_value_t = 64
    )]
    pub max_json_depth: usize,

    /// GeoPackage layers (feature tables) to import, repeatable or comma separated; default
    /// every feature table.
    #[arg(long = "layer", env = "ETL_LAYER", value_delimiter = ',')]
    #[serde(default)]
    pub layer: Vec<String>,

    #[command(flatten)]
    #[serde(flatten)]
    pub input_args: etl_sources::InputArgs,

    /// Longest text one XML element (a KML `<coordinates>` or `<description>`, a GPX
    /// extension) may hold, in bytes (15 MiB: about half a million coordinates). What a
    /// single hostile text node can cost in memory: about 4x this.
    #[arg(long = "max-xml-text", env = "ETL_MAX_XML_TEXT", default_value_t = 15 << 20)]
    #[serde(default = "default_max_xml_text")]
    pub max_xml_text: usize,

    /// Do not follow a KML upload's NetworkLinks to documents outside it (followed by default,
    /// to depth 3, http and https only, never to loopback, private or link-local addresses).
    #[arg(long = "no-network-links", env = "ETL_NO_NETWORK_LINKS")]
    #[serde(default)]
    pub no_network_links: bool,

    /// A host NetworkLinks may reach although it is (or resolves to) a loopback, private or
    /// link-local address: a name or an address, with `:PORT` to allow only that port
    /// (`[v6]:PORT` for IPv6); repeatable or comma separated.
    #[arg(
        long = "allow-network-link-host",
        env = "ETL_ALLOW_NETWORK_LINK_HOST",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allow_network_link_host: Vec<String>,

    /// Longest one NetworkLink fetch may take, redirects included.
    #[arg(
        long = "network-link-timeout",
        env = "ETL_NETWORK_LINK_TIMEOUT",
        default_value = "10s"
    )]
    #[serde(default = "default_network_link_timeout")]
    pub network_link_timeout: String,

    /// Bytes the tiler may sort in memory before spilling to the scratch directory.
    #[arg(long = "tiler-memory", env = "ETL_TILER_MEMORY", default_value_t = 15 << 20)]
    pub tiler_memory: usize,

    /// Scratch directory for downloads, unpacked archives and temporary outputs (default: TMPDIR).
    #[arg(long, env = "ETL_SCRATCH")]
    pub scratch: Option<String>,

    /// Where event and queue imports may read from: s3://bucket/prefix/ (repeatable, or
    /// comma-separated in the env var). Required in those modes; local paths are never allowed
    /// there. The local run (--input) is not limited.
    #[arg(long = "allow-source", env = "ETL_ALLOW_SOURCE", value_delimiter = ',')]
    #[serde(default)]
    pub allow_source: Vec<String>,

    /// Longest one import may take, every phase included (download, unpacking, reading,
    /// tiling, MBTiles conversion, publishing); past it the import fails as a temporary error
    /// and, under --serve, its row is left for another worker.
    #[arg(
        long = "import-timeout",
        env = "ETL_IMPORT_TIMEOUT",
        default_value = "15m"
    )]
    #[serde(default = "default_import_timeout")]
    pub import_timeout: String,

    /// Garbage-collect the output prefix (--output) and exit: delete output versions no
    /// manifest names once they are older than --gc-grace. Imports do this for their own
    /// output after each success.
    #[arg(long, env = "ETL_GC")]
    #[serde(default)]
    pub gc: bool,

    /// How long an output version no manifest names (superseded, or left by a failed attempt)
    /// stays readable before gc deletes it. At least twice --import-timeout.
    #[arg(long = "gc-grace", env = "ETL_GC_GRACE", default_value = "1h")]
    #[serde(default = "default_gc_grace")]
    pub gc_grace: String,

    /// With --gc: delete every output version no manifest names as current, now — ignoring
    /// the grace period and the superseded versions manifests promise to keep. Only when no
    /// import is running and no reader holds an older manifest.
    #[arg(long = "gc-now", env = "ETL_GC_NOW", requires = "gc")]
    #[serde(default)]
    pub gc_now: bool,
}

fn default_max_xml_text() -> usize {
    15 << 20
}

fn default_import_timeout() -> String {
    "15m".into()
}

fn default_network_link_timeout() -> String {
    "10s".into()
}

fn default_reclaim_after() -> String {
    "30m".into()
}

fn default_gc_grace() -> String {
    "1h".into()
}

/// What a run is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Local {
        input: String,
    },
    Event {
        json: String,
    },
    Object(crate::event::ObjectRef),
    Serve,
    /// CloudTAK's import worker, polling the API at this URL.
    Cloudtak {
        api: String,
    },
    /// Garbage-collect the output prefix.
    Gc,
}

impl EventsConfig {
    /// The run's mode; exactly one way of naming work must be used.
    pub fn mode(&self) -> Result<Mode, JobError> {
        let bucket = self.bucket.as_deref().filter(|s| !s.is_empty());
        let key = self.key.as_deref().filter(|s| !s.is_empty());
        let mut modes = Vec::new();
        if self.serve {
            modes.push("--serve");
        }
        let cloudtak = self.cloudtak.as_deref().map(str::trim);
        if cloudtak.is_some_and(|c| !matches!(c, "false" | "0" | "")) {
            modes.push("--cloudtak");
        }
        if self.gc {
            modes.push("--gc");
        }
        if self.input.is_some() {
            modes.push("--input");
        }
        if self.event.is_some() || self.event_json.is_some() {
            modes.push("--event");
        }
        if bucket.is_some() || key.is_some() {
            modes.push("--bucket/--key");
        }
        if modes.len() > 1 {
            return Err(JobError::usage(format!(
                "choose one of {}: they name work in different ways",
                modes.join(", ")
            )));
        }
        if self.serve {
            return Ok(Mode::Serve);
        }
        if let Some(c) = cloudtak.filter(|c| !matches!(*c, "false" | "0" | "")) {
            let api = match c {
                "true" | "1" => self
                    .api_url
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| {
                        JobError::usage(
                            "--cloudtak needs CloudTAK's API URL: --cloudtak URL, or API_URL",
                        )
                    })?,
                url => url,
            };
            return Ok(Mode::Cloudtak {
                api: api.to_owned(),
            });
        }
        if self.gc {
            return Ok(Mode::Gc);
        }
        if let Some(input) = &self.input {
            return Ok(Mode::Local {
                input: input.clone(),
            });
        }
        if let Some(json) = &self.event_json {
            return Ok(Mode::Event { json: json.clone() });
        }
        if let Some(path) = &self.event {
            let json = if path == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| JobError::usage(format!("--event -: cannot read stdin: {e}")))?
            } else {
                std::fs::read_to_string(path)
                    .map_err(|e| JobError::usage(format!("--event {path}: {e}")))?
            };
            return Ok(Mode::Event { json });
        }
        match (bucket, key) {
            (Some(bucket), Some(key)) => {
                let opt = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
                Ok(Mode::Object(crate::event::ObjectRef {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    size: None,
                    etag: opt(&self.etag).map(|e| e.trim_matches('"').to_owned()),
                    version_id: opt(&self.version_id),
                    sequencer: opt(&self.sequencer),
                }))
            }
            (Some(_), None) | (None, Some(_)) => {
                Err(JobError::usage("--bucket and --key go together"))
            }
            (None, None) => Err(JobError::usage(
                "nothing to import: give --input FILE --output DIR, --event FILE|- (or ETL_EVENT), --bucket B --key K, --serve or --cloudtak",
            )),
        }
    }

    /// --poll-interval as a duration.
    pub fn poll_interval(&self) -> Result<std::time::Duration, JobError> {
        humantime::parse_duration(&self.poll_interval)
            .map_err(|e| JobError::usage(format!("--poll-interval {:?}: {e}", self.poll_interval)))
    }

    /// --import-timeout and --gc-grace, checked against each other.
    pub fn durations(&self) -> Result<(std::time::Duration, std::time::Duration), JobError> {
        let timeout = humantime::parse_duration(&self.import_timeout).map_err(|e| {
            JobError::usage(format!("--import-timeout {:?}: {e}", self.import_timeout))
        })?;
        let grace = humantime::parse_duration(&self.gc_grace)
            .map_err(|e| JobError::usage(format!("--gc-grace {:?}: {e}", self.gc_grace)))?;
        if timeout.is_zero() {
            return Err(JobError::usage("--import-timeout must be more than 0"));
        }
        // A --gc run's grace must cover the imports' too (use the same settings as the
        // workers); --gc-now is the operator's word that no import is in flight.
        if !self.gc_now && grace < timeout * 2 {
            return Err(JobError::usage(format!(
                "--gc-grace ({}) must be at least twice --import-timeout ({}): gc must never take an import in flight for an orphan",
                self.gc_grace, self.import_timeout
            )));
        }
        Ok((timeout, grace))
    }

    /// The --allow-source prefixes, parsed: each an s3://bucket/prefix (a bucket alone allows
    /// the whole bucket).
    pub fn allowed_sources(&self) -> Result<Vec<(String, String)>, JobError> {
        self.allow_source
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(|a| match etl_core::store::Location::parse(a) {
                Ok(etl_core::store::Location::S3 { bucket, key }) => Ok((bucket, key)),
                _ => Err(JobError::usage(format!(
                    "--allow-source {a:?}: give s3://bucket/prefix/ (local paths are never allowed for event and queue imports)"
                ))),
            })
            .collect()
    }

    /// The conversion settings.
    pub fn convert_options(&self) -> Result<ConvertOptions, JobError> {
        let mut geojsonl = false;
        let mut pmtiles = false;
        for o in &self.outputs {
            match o.trim() {
                "geojsonl" => geojsonl = true,
                "pmtiles" => pmtiles = true,
                other => {
                    return Err(JobError::usage(format!(
                        "--outputs: unknown output {other:?} (geojsonl, pmtiles)"
                    )));
                }
            }
        }
        let max_zoom = match self.maximum_zoom.as_str() {
            "g" => None,
            z => Some(
                z.parse::<u8>()
                    .ok()
                    .filter(|z| *z <= etl_tiles::tiler::MAX_TILER_ZOOM)
                    .ok_or_else(|| {
                        JobError::usage(format!("--maximum-zoom {z}: a zoom 0..=24 or g"))
                    })?,
            ),
        };
        if max_zoom.is_some_and(|z| z < self.minimum_zoom) {
            return Err(JobError::usage("--minimum-zoom is above --maximum-zoom"));
        }
        // The defaults of the two flags are the profile's zooms; anything else would make an
        // archive CloudTAK's map does not expect.
        if self.profile_tiles == TilesProfile::Cloudtak
            && (max_zoom != Some(14) || self.minimum_zoom != 0)
        {
            return Err(JobError::usage(
                "--profile-tiles cloudtak tiles z0-14, as CloudTAK does: leave out --maximum-zoom and --minimum-zoom",
            ));
        }
        let source = self.input_args.source(&self.layer)?;
        Ok(ConvertOptions {
            upload: UploadOptions {
                read: ReadOptions {
                    max_json_depth: self.max_json_depth,
                    max_xml_text: self.max_xml_text,
                    ..source.read
                },
                archive: ArchiveLimits {
                    max_total_bytes: self.max_unzipped_bytes,
                    max_ratio: self.max_zip_ratio,
                    max_entries: self.max_zip_entries,
                },
                layers: source.layers,
                format: source.format,
                linked: Vec::new(),
            },
            max_zoom,
            min_zoom: self.minimum_zoom,
            geojsonl,
            pmtiles,
            tiler_memory: self.tiler_memory,
            tiles: self.profile_tiles,
            icon_names: std::sync::Arc::default(),
            links: crate::links::LinkOptions {
                follow: !self.no_network_links,
                allow_hosts: self
                    .allow_network_link_host
                    .iter()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect(),
                timeout: humantime::parse_duration(&self.network_link_timeout).map_err(|e| {
                    JobError::usage(format!(
                        "--network-link-timeout {:?}: {e}",
                        self.network_link_timeout
                    ))
                })?,
            },
            scratch: self
                .scratch
                .as_ref()
                .map_or_else(std::env::temp_dir, PathBuf::from),
        })
    }
}
