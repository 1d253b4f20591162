//! The etl-pmtiles job: expands the inputs into layers, reads them in parallel into the tiler,
//! builds the archive in a temporary file and publishes it atomically.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use etl_core::metrics::Stats;
use etl_core::store::{Location, ObjectMeta};
use etl_core::{ExitKind, Job, JobContext, JobError, Outcome};
use etl_geo::{FeatureId, Record};
use etl_tiles::tiler::{
    Added, AttrFilter, FeatureFilter, TileReport, Tiler, TilerError, TilerOptions,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::{MaxZoom, PmtilesConfig, parse_bytes, parse_max_zoom, parse_shard};
use crate::{output, sql};

pub struct PmtilesJob;

/// A batch of records from one input, on its way to the tiler.
pub struct Msg {
    pub layer: usize,
    /// Input index: with the record ordinal it forms the feature's stable key.
    pub input: u64,
    pub url: String,
    pub records: Vec<Record>,
}

/// Inputs read at once (each on its own blocking thread, a few batches ahead).
const PARALLEL_READERS: usize = 2;

/// A config checked for consistency.
struct Plan {
    config: PmtilesConfig,
    opts: TilerOptions,
    output: Location,
    /// (layer name from -L, or None: -l or the file name), input pattern.
    sources: Vec<(Option<String>, String)>,
    source: etl_sources::Source,
    sql: Option<(String, String)>,
    /// `--shard` or the Batch array position: (index, count).
    shard: Option<(u32, u32)>,
    /// No input named and stdin is piped: read it (as tippecanoe does).
    from_stdin: bool,
    /// Once spooled: stdin's layer and file.
    stdin_input: Option<(String, PathBuf)>,
}

fn plan(mut config: PmtilesConfig, batch: &etl_core::batch::BatchEnv) -> Result<Plan, JobError> {
    // --shard I/N, or an array child's position: each shard reads every input and makes its
    // share of the tile set, so each must write its own part (`etl-pmtiles merge` joins them).
    let shard = match &config.shard {
        Some(v) => Some(parse_shard(v)?),
        None => batch.shard(),
    };
    if let Some((index, count)) = shard {
        if !config.output.contains("{shard}") {
            return Err(JobError::usage(
                "a sharded run (--shard or an array job) needs {shard} in the output's name, so \
                 each shard writes its own part",
            ));
        }
        config.output = config.output.replace("{shard}", &index.to_string());
        let zoom_wide = [
            (config.drop_densest_as_needed, "--drop-densest-as-needed"),
            (
                config.coalesce_densest_as_needed,
                "--coalesce-densest-as-needed",
            ),
            (config.drop_smallest_as_needed, "--drop-smallest-as-needed"),
            (config.drop_fraction_as_needed, "--drop-fraction-as-needed"),
            (
                config.extend_zooms_if_still_dropping,
                "--extend-zooms-if-still-dropping",
            ),
        ];
        if let Some((_, flag)) = zoom_wide.iter().find(|(on, _)| *on) {
            return Err(JobError::usage(format!(
                "{flag} cannot be used with shard {index}/{count}: it decides from the tiles of \
                 a whole zoom, which other shards make; tile unsharded, or without it"
            )));
        }
    }
    let max_zoom = match parse_max_zoom(config.maximum_zoom.as_deref())? {
        MaxZoom::Fixed(z) => Some(z),
        MaxZoom::Guess => None,
    };
    if let Some(z) = max_zoom
        && config.minimum_zoom > z
    {
        return Err(JobError::usage(format!(
            "-Z {} is above -z {z}",
            config.minimum_zoom
        )));
    }
    let strategies: Vec<&str> = [
        (config.drop_densest_as_needed, "--drop-densest-as-needed"),
        (
            config.coalesce_densest_as_needed,
            "--coalesce-densest-as-needed",
        ),
        (config.drop_smallest_as_needed, "--drop-smallest-as-needed"),
        (config.drop_fraction_as_needed, "--drop-fraction-as-needed"),
    ]
    .into_iter()
    .filter_map(|(on, flag)| on.then_some(flag))
    .collect();
    if strategies.len() > 1 {
        return Err(JobError::usage(format!(
            "{} are alternatives; pick one",
            strategies.join(" and ")
        )));
    }
    if config.order_smallest_first && config.order_largest_first {
        return Err(JobError::usage(
            "--order-smallest-first and --order-largest-first are alternatives; pick one",
        ));
    }
    if !(config.drop_rate.is_finite() && config.drop_rate >= 0.0) {
        return Err(JobError::usage("-r: the drop rate must be a number >= 0"));
    }
    if !(config.simplification.is_finite() && config.simplification >= 0.0) {
        return Err(JobError::usage(
            "-S: the simplification must be a number >= 0",
        ));
    }
    // Only a limit in force must be above zero (the no-limit flags override -M / -O).
    if (config.maximum_tile_bytes == 0 && !config.no_tile_size_limit)
        || (config.maximum_tile_features == 0 && !config.no_feature_limit)
    {
        return Err(JobError::usage("-M and -O must be above zero"));
    }
    let memory = parse_bytes(&config.memory)?;
    let output = Location::parse(&config.output).map_err(JobError::from)?;
    if output.file_name().is_empty() {
        return Err(JobError::usage(format!(
            "-o {}: no file name",
            config.output
        )));
    }
    let mut sources: Vec<(Option<String>, String)> = Vec::new();
    for nl in &config.named_layers {
        let (name, input) = nl
            .split_once(':')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            .ok_or_else(|| JobError::usage(format!("-L {nl:?}: expected NAME:INPUT")))?;
        sources.push((Some(name.to_owned()), input.to_owned()));
    }
    sources.extend(
        config
            .inputs
            .iter()
            .filter(|i| !i.trim().is_empty())
            .map(|i| (None, i.trim().to_owned())),
    );
    let sql = match &config.sql {
        Some(q) => {
            let url = etl_core::postgres::resolve_url(config.database.as_deref(), |k| {
                std::env::var(k).ok()
            })
            .map_err(JobError::from)?;
            Some((url, q.clone()))
        }
        None => None,
    };
    let from_stdin = sources.is_empty() && sql.is_none() && crate::stdin::piped();
    if sources.is_empty() && sql.is_none() && !from_stdin {
        return Err(JobError::usage(
            "no input: give INPUT files, -L NAME:INPUT or --sql, or pipe GeoJSON on stdin",
        ));
    }
    let source = config.input_args.source(&config.input_layer)?;
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| stem(output.file_name()).to_owned());
    let tmp_dir = config.temporary_directory.as_ref().map(PathBuf::from);
    let feature_filter = match (&config.feature_filter, &config.feature_filter_file) {
        (Some(json), _) => {
            Some(FeatureFilter::parse(json).map_err(|e| JobError::usage(format!("-j: {e}")))?)
        }
        (None, Some(path)) => {
            let json = std::fs::read_to_string(path).map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    ExitKind::NoInput
                } else {
                    ExitKind::IoError
                };
                JobError::new(kind, format!("-J {path}: {e}"))
            })?;
            Some(
                FeatureFilter::parse(&json)
                    .map_err(|e| JobError::usage(format!("-J {path}: {e}")))?,
            )
        }
        (None, None) => None,
    };
    let opts = TilerOptions {
        min_zoom: config.minimum_zoom,
        max_zoom,
        base_zoom: config.base_zoom,
        drop_rate: config.drop_rate,
        buffer: config.buffer,
        simplification: config.simplification,
        max_tile_bytes: if config.no_tile_size_limit {
            usize::MAX
        } else {
            config.maximum_tile_bytes
        },
        max_tile_features: if config.no_feature_limit {
            usize::MAX
        } else {
            config.maximum_tile_features
        },
        drop_densest: config.drop_densest_as_needed,
        coalesce_densest: config.coalesce_densest_as_needed,
        drop_smallest: config.drop_smallest_as_needed,
        drop_fraction: config.drop_fraction_as_needed,
        extend_zooms: config.extend_zooms_if_still_dropping,
        tiny_polygon_reduction: !config.no_tiny_polygon_reduction,
        order: crate::flags::order_keys(&config),
        tile_format: crate::flags::tile_format(&config)?,
        attrs: AttrFilter {
            include: config.include.clone(),
            exclude: config.exclude.clone(),
            exclude_all: config.exclude_all,
        },
        feature_filter,
        cluster: crate::flags::cluster_options(&config)?,
        memory,
        tmp_dir,
        name: name.clone(),
        description: config.description.clone().unwrap_or(name),
        attribution: config.attribution.clone(),
        generator: concat!("etl-pmtiles ", env!("CARGO_PKG_VERSION")).to_owned(),
        shard,
    };
    Ok(Plan {
        config,
        opts,
        output,
        sources,
        source,
        sql,
        shard,
        from_stdin,
        stdin_input: None,
    })
}

/// With nothing named and stdin piped, stdin spooled to a file and made an input of the
/// layer `-l` names (else the output's stem, as a file name would give). The work directory
/// holding it is removed when the returned handle drops.
async fn take_stdin(
    plan: &mut Plan,
    ctx: &JobContext,
) -> Result<Option<etl_core::scratch::WorkDir>, JobError> {
    if !plan.from_stdin {
        return Ok(None);
    }
    let (work, path) =
        crate::stdin::spool(plan.opts.tmp_dir.as_deref(), &ctx.shutdown, stopped).await?;
    plan.stdin_input = Some((stdin_layer(plan), path));
    Ok(Some(work))
}

/// The layer stdin's features go to: `-l`, else the output's stem (as a file name would give).
fn stdin_layer(plan: &Plan) -> String {
    plan.config
        .layer
        .clone()
        .unwrap_or_else(|| stem(plan.output.file_name()).to_owned())
}

/// The file name without directory, `.gz` and its last extension: tippecanoe's layer name.
fn stem(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.strip_suffix(".gz").unwrap_or(base);
    match base.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => base,
    }
}

/// Inputs with their layers.
struct Inputs {
    layers: Vec<String>,
    objects: Vec<(usize, ObjectMeta)>,
    sql_layer: Option<usize>,
}

async fn expand(plan: &Plan, ctx: &JobContext) -> Result<Inputs, JobError> {
    let mut layers: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut layer_of = |name: &str| -> usize {
        if let Some(&i) = index.get(name) {
            return i;
        }
        layers.push(name.to_owned());
        index.insert(name.to_owned(), layers.len() - 1);
        layers.len() - 1
    };
    let mut objects = Vec::new();
    for (name, pattern) in &plan.sources {
        // Every shard (and every array child) reads all inputs: shards split the tile set,
        // not the files.
        let found = etl_sources::inputs::expand(
            &ctx.store,
            std::slice::from_ref(pattern),
            &etl_core::batch::BatchEnv::default(),
        )
        .await?;
        for meta in found {
            let layer = match (name, &plan.config.layer) {
                (Some(n), _) => n.clone(),
                (None, Some(l)) => l.clone(),
                (None, None) => stem(meta.location.file_name()).to_owned(),
            };
            objects.push((layer_of(&layer), meta));
        }
    }
    // The spooled stdin is one known file: taken as it is, never expanded as a pattern (its
    // directory may hold glob characters).
    if let Some((layer, path)) = &plan.stdin_input {
        let meta = ctx
            .store
            .head(&Location::File(path.clone()))
            .await
            .map_err(JobError::from)?;
        objects.push((layer_of(layer), meta));
    }
    let sql_layer = plan.sql.as_ref().map(|_| {
        let name = plan
            .config
            .layer
            .clone()
            .unwrap_or_else(|| stem(plan.output.file_name()).to_owned());
        layer_of(&name)
    });
    if objects.is_empty() && sql_layer.is_none() {
        return Err(JobError::config("no input files"));
    }
    Ok(Inputs {
        layers,
        objects,
        sql_layer,
    })
}

/// tippecanoe keeps a feature id when it is a non-negative integer. A JSON integer beyond
/// `i64` reaches us as its text; a string id (even a numeric one) is not kept, as in tippecanoe
/// without `-pi`. (Such a text is told from a string by being an integer beyond `i64`.)
fn feature_id(id: Option<&FeatureId>) -> Option<u64> {
    match id? {
        FeatureId::Int(i) => u64::try_from(*i).ok(),
        FeatureId::Str(s) => s
            .parse::<u64>()
            .ok()
            .filter(|v| *v > i64::MAX as u64 && !s.starts_with('+')),
    }
}

/// SIGTERM: nothing was written, and a rerun starts over (no partial archive is kept).
fn stopped() -> JobError {
    JobError::new(
        etl_core::ExitKind::Stopped,
        "stopped by SIGTERM; no output was written and a rerun starts over",
    )
}

fn tiler_err(e: TilerError) -> JobError {
    use etl_tiles::tiler::FailureKind;
    let msg = e.to_string();
    match e.kind() {
        FailureKind::Usage => JobError::usage(msg),
        // Attributes too many for MLT: the input's (use MVT or drop attributes with -x/-y).
        FailureKind::BadInput if matches!(e, TilerError::Mlt { .. }) => JobError::bad_input(
            format!("{msg}; write MVT (--tile-format mvt) or leave attributes out (-x, -y)"),
        ),
        FailureKind::BadInput => JobError::bad_input(msg),
        FailureKind::Cancelled => stopped(),
        FailureKind::Temporary => JobError::temporary(msg),
        // The MLT encoder refused a tile we made: a defect, not the input's fault (a retry
        // would fail alike); the message names the tile.
        FailureKind::Internal => JobError::new(ExitKind::Internal, msg),
    }
}

/// Counters of the read side.
#[derive(Default)]
struct ReadCounts {
    no_geometry: u64,
    invalid: u64,
}

impl Job for PmtilesJob {
    type Config = PmtilesConfig;
    const NAME: &'static str = "etl-pmtiles";
    const ABOUT: &'static str = "Make a PMTiles archive of vector tiles from GeoJSON, CSV or a PostGIS query, with tippecanoe's flags";

    async fn dry_run(config: PmtilesConfig, ctx: JobContext) -> Result<Value, JobError> {
        let plan = plan(config, &ctx.batch)?;
        // A dry run does not consume stdin: it says it would read it, and into which layer.
        let inputs = if plan.from_stdin {
            Inputs {
                layers: vec![stdin_layer(&plan)],
                objects: Vec::new(),
                sql_layer: None,
            }
        } else {
            expand(&plan, &ctx).await?
        };
        let exists = output::exists(&ctx.store, &plan.output).await?;
        Ok(json!({
            "output": plan.output.to_string(),
            "output_exists": exists,
            "would_overwrite": exists && plan.config.force,
            "layers": inputs.layers,
            "inputs": inputs.objects.iter().map(|(l, m)| json!({"layer": inputs.layers.get(*l), "input": m.location.to_string(), "bytes": m.size})).collect::<Vec<_>>(),
            "sql": plan.sql.is_some(),
            "stdin": plan.from_stdin,
            "min_zoom": plan.opts.min_zoom,
            "max_zoom": plan.opts.max_zoom.map_or(json!("guess"), |z| json!(z)),
            "shard": plan.shard.map(|(i, n)| json!([i, n])),
        }))
    }

    async fn run(config: PmtilesConfig, ctx: JobContext) -> Result<Outcome, JobError> {
        let mut plan = plan(config, &ctx.batch)?;
        if !plan.config.force && output::exists(&ctx.store, &plan.output).await? {
            return Err(JobError::usage(format!(
                "{}: already exists; use -f to overwrite",
                plan.output
            )));
        }
        let temp = output::temp_for(&plan.output, plan.opts.tmp_dir.as_deref())?;
        // Spooled once the output's directory is known to work; kept until the run ends (the
        // readers read it).
        let _stdin_dir = take_stdin(&mut plan, &ctx).await?;
        let inputs = expand(&plan, &ctx).await?;

        // Readers: up to PARALLEL_READERS inputs parse at once, all feeding one channel.
        let (tx, rx) = mpsc::channel::<Result<Msg, JobError>>(2);
        let bytes_read = Arc::new(AtomicU64::new(0));
        let objects = inputs.objects.clone();
        let store = ctx.store.clone();
        let source = plan.source.clone();
        let feed = {
            let tx = tx.clone();
            let bytes_read = bytes_read.clone();
            tokio::spawn(async move {
                futures::stream::iter(objects.into_iter().enumerate())
                    .for_each_concurrent(PARALLEL_READERS, |(i, (layer, meta))| {
                        let (tx, store, ro, br) = (
                            tx.clone(),
                            store.clone(),
                            source.clone(),
                            bytes_read.clone(),
                        );
                        async move {
                            let url = meta.location.to_string();
                            let mut r = etl_sources::read::spawn(
                                store,
                                meta,
                                ro,
                                etl_sources::read::Shaping::default(),
                                0,
                                br,
                            );
                            while let Some(b) = r.recv().await {
                                let m = b.map(|b| Msg {
                                    layer,
                                    input: i as u64,
                                    url: url.clone(),
                                    records: b.records,
                                });
                                if tx.send(m).await.is_err() {
                                    return;
                                }
                            }
                        }
                    })
                    .await;
            })
        };
        let sql_task = match (&plan.sql, inputs.sql_layer) {
            (Some((url, q)), Some(layer)) => {
                let (url, q, tx) = (url.clone(), q.clone(), tx.clone());
                let input = inputs.objects.len() as u64;
                Some(tokio::spawn(async move {
                    if let Err(e) = sql::stream(&url, &q, layer, input, tx.clone()).await {
                        let _ = tx.send(Err(e)).await;
                    }
                }))
            }
            _ => None,
        };
        drop(tx);

        let opts = plan.opts.clone();
        let layers = inputs.layers.clone();
        let skip_invalid = plan.config.skip_invalid;
        let stats = ctx.stats.clone();
        let shutdown = ctx.shutdown.clone();
        let file = temp
            .as_file()
            .try_clone()
            .map_err(|e| JobError::temporary(format!("temporary archive: {e}")))?;
        let result = tokio::task::spawn_blocking(move || {
            tile_blocking(opts, layers, rx, file, skip_invalid, &stats, &shutdown)
        })
        .await
        .map_err(|e| JobError::temporary(format!("tiling task failed: {e}")));
        feed.abort();
        if let Some(t) = sql_task {
            t.abort();
        }
        let (report, counts) = result??;
        Stats::add(&ctx.stats.bytes_in, Stats::get(&bytes_read));
        let size = output::publish(&ctx.store, temp, &plan.output).await?;
        Stats::add(&ctx.stats.bytes_out, size);
        Stats::add(&ctx.stats.written, report.tiles);
        ctx.stats.add_output(plan.output.to_string());
        let largest = report
            .largest
            .map(|(t, n)| format!("{t} ({n} bytes)"))
            .unwrap_or_default();
        tracing::info!(
            output = %plan.output,
            features = report.features,
            tiles = report.tiles,
            bytes = size,
            min_zoom = report.min_zoom,
            max_zoom = report.max_zoom,
            guessed_zoom = ?report.guessed_zoom,
            largest = %largest,
            dropped = report.dropped,
            coalesced = report.coalesced,
            tiles_reduced = report.tiles_reduced,
            tiles_detail_reduced = report.tiles_detail_reduced,
            zooms_respaced = report.zooms_respaced,
            clusters = report.clusters,
            points_absorbed_by_clusters = report.clustered_points,
            clamped = report.clamped,
            filtered = report.filtered,
            no_geometry = counts.no_geometry,
            invalid_skipped = counts.invalid,
            fragments = report.fragments,
            spilled_bytes = report.spilled_bytes,
            cut_secs = report.cut_time.as_secs_f64(),
            assemble_secs = report.assemble_time.as_secs_f64(),
            "archive written"
        );
        if report.accumulate_truncated > 0 {
            tracing::warn!(
                accumulated_texts_cut = report.accumulate_truncated,
                max_bytes = etl_tiles::tiler::MAX_ACCUMULATED_TEXT,
                "accumulated text (concat/comma) was cut at its cap"
            );
        }
        if let Some(s) = &report.shard {
            tracing::info!(
                shard = s.index,
                shards = s.count,
                partition_zoom = s.partition_zoom,
                first_cell = s.cells.0,
                end_cell = s.cells.1,
                weight = s.weight,
                weights = ?s.weights,
                tiles = report.tiles,
                fragments = report.fragments,
                "shard written"
            );
        }
        for note in &report.guess_notes {
            tracing::info!("{note}");
        }
        if let Some(z) = report.guessed_zoom {
            tracing::info!("Choosing a maxzoom of -z{z}");
        }
        Ok(Outcome::Succeeded)
    }
}

fn tile_blocking(
    opts: TilerOptions,
    layers: Vec<String>,
    mut rx: mpsc::Receiver<Result<Msg, JobError>>,
    file: std::fs::File,
    skip_invalid: bool,
    stats: &Stats,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(TileReport, ReadCounts), JobError> {
    let mut tiler = Tiler::new(opts, layers).map_err(tiler_err)?;
    let mut counts = ReadCounts::default();
    let handle = tokio::runtime::Handle::current();
    loop {
        // Wait for input or SIGTERM, whichever comes first: a stalled input (a locked table, a
        // slow S3 read) must not keep the job from stopping.
        let next = handle.block_on(async {
            tokio::select! {
                m = rx.recv() => Some(m),
                _ = shutdown.cancelled() => None,
            }
        });
        let Some(next) = next else {
            return Err(stopped());
        };
        let Some(msg) = next else { break };
        let msg = msg?;
        Stats::add(&stats.read, msg.records.len() as u64);
        for rec in msg.records {
            match rec.feature {
                Ok(f) => {
                    let key = (msg.input << 40) | (rec.ordinal & ((1 << 40) - 1));
                    let added = tiler
                        .add(
                            msg.layer,
                            key,
                            feature_id(f.id.as_ref()),
                            f.geometry.as_ref(),
                            &f.properties,
                        )
                        .map_err(tiler_err)?;
                    if added == Added::NoGeometry {
                        counts.no_geometry += 1;
                    }
                }
                Err(r) if skip_invalid => {
                    counts.invalid += 1;
                    Stats::add(&stats.rejected, 1);
                    tracing::debug!(input = %msg.url, line = rec.line, reason = %r.reason, "skipped invalid feature");
                }
                Err(r) => {
                    return Err(JobError::bad_input(format!(
                        "{}:{}: {} (use --skip-invalid to count and skip invalid features)",
                        msg.url, rec.line, r.reason
                    )));
                }
            }
        }
    }
    if tiler.clamped() > 0 {
        tracing::warn!(
            features = tiler.clamped(),
            "coordinates outside Web Mercator's range were clamped"
        );
    }
    if tiler.features() == 0 {
        return Err(JobError::bad_input(
            "no features: the inputs hold no feature with a geometry",
        ));
    }
    let out = BufWriter::with_capacity(1 << 20, file);
    let cancel = || shutdown.is_cancelled();
    let (mut out, report) = tiler.finish(out, &cancel).map_err(tiler_err)?;
    out.flush()
        .map_err(|e| JobError::temporary(format!("temporary archive: {e}")))?;
    Ok((report, counts))
}
