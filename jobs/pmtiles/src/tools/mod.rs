//! The archive tools: `verify FILE`, `show FILE`, `merge OUT PART...`, `extract IN OUT --bbox`
//! ([`extract`]). Every FILE, PART and OUT may be a local path or an `s3://` URL (S3 settings from the runner's flags, as for the jobs:
//! `--s3-endpoint`/`ETL_S3_ENDPOINT`, `AWS_ENDPOINT_URL[_S3]`, `--sse-kms-key-id`, the AWS
//! credential chain).
//! S3 inputs of verify, show and merge are downloaded to temporary files first (they read
//! whole archives); extract reads S3 and HTTP(S) archives by ranged requests. An S3 output is
//! built locally and uploaded whole.
//!
//! Exit codes: 0 success; 65 the archive is invalid (verify: the first problem, in one line;
//! merge: a part is invalid or the parts overlap); 66 a file does not exist; 64 bad usage;
//! 74 an I/O error.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use etl_core::ExitKind;
use etl_core::runner::CommonArgs;
use etl_core::store::{Location, S3Config, Store, StoreError};
use etl_tiles::archive::{Archive, MergeError, merge, summarize, verify};
use tempfile::NamedTempFile;

mod extract;
pub use extract::ExtractArgs;

/// The archive tools, subcommands of `etl-pmtiles`.
#[derive(Subcommand)]
pub enum Tool {
    /// Check header, directories, offsets and lengths, clustered order, zooms, bounds and
    /// vector_layers; exit 0 when valid, 65 with the first problem.
    Verify { file: String },
    /// Print header and metadata as JSON, with tiles per zoom and the largest tile.
    Show { file: String },
    /// Merge disjoint archives (e.g. the shards of a sharded run) into one clustered archive.
    Merge {
        out: String,
        #[arg(required = true)]
        parts: Vec<String>,
        /// Overwrite an existing OUT.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Copy the tiles of an area (a box or a region's polygons) and zoom range, byte for byte,
    /// into a new archive; IN may be a path, an s3:// URL or an http(s):// URL, read by ranged
    /// requests (only the area's directories and tiles).
    Extract(ExtractArgs),
}

/// What a store error means for the exit code: missing → 66, bad URL → 64, unreachable → 69,
/// access denied → 78, else 75.
fn store_kind(e: &StoreError) -> ExitKind {
    match e {
        StoreError::NotFound(_) => ExitKind::NoInput,
        StoreError::InvalidUrl(_) | StoreError::Config(_) => ExitKind::Usage,
        StoreError::S3 { status: None, .. } => ExitKind::Unavailable,
        StoreError::S3 {
            status: Some(404), ..
        } => ExitKind::NoInput,
        StoreError::S3 {
            status: Some(401 | 403),
            ..
        } => ExitKind::Config,
        _ => ExitKind::Temporary,
    }
}

/// Says what failed and gives its exit code ([`store_kind`]).
fn store_fail(what: &str, e: &StoreError) -> ExitCode {
    fail(store_kind(e), format!("{what}: {e}"))
}

/// S3 access for the tools: a runtime and a store, made on first use.
struct Remote {
    s3: S3Config,
    rt: Option<(tokio::runtime::Runtime, Store)>,
}

impl Remote {
    fn get(&mut self) -> Result<&(tokio::runtime::Runtime, Store), ExitCode> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| fail(ExitKind::OsError, format!("cannot start the runtime: {e}")))?;
            self.rt = Some((rt, Store::new(self.s3.clone())));
        }
        self.rt
            .as_ref()
            .ok_or_else(|| fail(ExitKind::Temporary, "no runtime"))
    }

    /// A local path for `arg`: the file itself, or a downloaded copy of an `s3://` object.
    fn local(&mut self, arg: &str) -> Result<(PathBuf, Option<NamedTempFile>), ExitCode> {
        if !arg.starts_with("s3://") {
            return Ok((PathBuf::from(arg), None));
        }
        let loc = Location::parse(arg).map_err(|e| store_fail(arg, &e))?;
        let (rt, store) = self.get()?;
        let tmp = NamedTempFile::new()
            .map_err(|e| fail(ExitKind::IoError, format!("temporary file: {e}")))?;
        let file = tmp
            .reopen()
            .map_err(|e| fail(ExitKind::IoError, format!("temporary file: {e}")))?;
        rt.block_on(async {
            let meta = store.head(&loc).await.map_err(|e| store_fail(arg, &e))?;
            let mut reader = store.reader(&meta).await.map_err(|e| store_fail(arg, &e))?;
            let mut out = tokio::fs::File::from_std(file);
            tokio::io::copy(&mut reader, &mut out)
                .await
                .map_err(|e| fail(ExitKind::Temporary, format!("{arg}: download: {e}")))?;
            Ok::<(), ExitCode>(())
        })?;
        Ok((tmp.path().to_path_buf(), Some(tmp)))
    }

    /// Uploads the finished local archive `file` to `out`.
    fn upload(&mut self, file: &NamedTempFile, out: &str) -> Result<(), ExitCode> {
        let loc = Location::parse(out).map_err(|e| store_fail(out, &e))?;
        let (rt, store) = self.get()?;
        let mut writer = rt
            .block_on(store.writer(&loc))
            .map_err(|e| store_fail(out, &e))?;
        let mut f = file
            .reopen()
            .map_err(|e| fail(ExitKind::IoError, format!("temporary file: {e}")))?;
        // The writer drives its own uploads on the runtime; dropping it unfinished aborts.
        let _guard = rt.enter();
        std::io::copy(&mut f, &mut writer)
            .map_err(|e| fail(ExitKind::Temporary, format!("{out}: upload: {e}")))?;
        writer.commit().map_err(|e| store_fail(out, &e))?;
        Ok(())
    }

    /// Whether `out` exists (an S3 object or a local path).
    fn exists(&mut self, out: &str) -> Result<bool, ExitCode> {
        if !out.starts_with("s3://") {
            return Ok(Path::new(out).exists());
        }
        let loc = Location::parse(out).map_err(|e| store_fail(out, &e))?;
        let (rt, store) = self.get()?;
        match rt.block_on(store.head(&loc)) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(store_fail(out, &e)),
        }
    }
}

/// Prints a subcommand's result to stdout. A reader that went away (`show | head`) is not an
/// error; any other failure to write (a full disk under `> file`) is, so a truncated result
/// never ends with exit 0.
fn say(text: std::fmt::Arguments<'_>) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    match out
        .write_fmt(text)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(fail(ExitKind::IoError, format!("writing to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn fail(kind: ExitKind, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("etl-pmtiles: {msg}");
    kind.exit_code()
}

/// Opens a local archive; `name` is what the user gave (a path or the S3 URL it came from).
fn open(path: &Path, name: &str) -> Result<(BufReader<File>, u64), ExitCode> {
    let f = File::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            ExitKind::NoInput
        } else {
            ExitKind::IoError
        };
        fail(code, format!("{name}: {e}"))
    })?;
    let len = f
        .metadata()
        .map_err(|e| fail(ExitKind::IoError, format!("{name}: {e}")))?
        .len();
    Ok((BufReader::with_capacity(1 << 16, f), len))
}

/// Runs a tool, with the S3 settings of the runner's flags (`--s3-endpoint`, …, or their
/// environment variables).
pub fn run(tool: Tool, common: &CommonArgs) -> ExitCode {
    let mut remote = Remote {
        s3: common.s3_config(),
        rt: None,
    };
    let result = match tool {
        // `--dry-run` (or ETL_DRY_RUN): merge says what it would write and writes nothing;
        // verify and show only read.
        Tool::Merge { out, parts, force } if common.dry_run => {
            let plan =
                serde_json::json!({ "dry_run": { "merge": out, "parts": parts, "force": force } });
            println!("{plan}");
            Ok(ExitCode::SUCCESS)
        }
        Tool::Verify { file } => verify_cmd(&mut remote, &file),
        Tool::Show { file } => show_cmd(&mut remote, &file),
        Tool::Merge { out, parts, force } => merge_cmd(&mut remote, &out, &parts, force),
        Tool::Extract(x) if common.dry_run => {
            println!("{}", x.plan());
            Ok(ExitCode::SUCCESS)
        }
        Tool::Extract(x) => extract::run(&mut remote, &x),
    };
    result.unwrap_or_else(|code| code)
}

fn verify_cmd(remote: &mut Remote, arg: &str) -> Result<ExitCode, ExitCode> {
    let (path, _tmp) = remote.local(arg)?;
    let (r, len) = open(&path, arg)?;
    match verify(r, len) {
        Ok(rep) => {
            let zooms = match (
                rep.tiles_per_zoom.keys().next(),
                rep.tiles_per_zoom.keys().last(),
            ) {
                (Some(a), Some(b)) => format!("z{a}-z{b}"),
                _ => "no tiles".into(),
            };
            say(format_args!(
                "{arg}: valid: {} tiles ({} entries, {} distinct), {zooms}, {} bytes",
                rep.addressed_tiles, rep.tile_entries, rep.unique_tiles, rep.total_size
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(fail(ExitKind::BadInput, format!("{arg}: {e}"))),
    }
}

fn show_cmd(remote: &mut Remote, arg: &str) -> Result<ExitCode, ExitCode> {
    let (path, _tmp) = remote.local(arg)?;
    let (r, _) = open(&path, arg)?;
    let mut a = Archive::open(r).map_err(|e| fail(ExitKind::BadInput, format!("{arg}: {e}")))?;
    let header = a.header().clone();
    let metadata = a.metadata().clone();
    let s = summarize(&mut a).map_err(|e| fail(ExitKind::BadInput, format!("{arg}: {e}")))?;
    let text = serde_json::to_string_pretty(&s.to_json(&header, &metadata))
        .map_err(|e| fail(ExitKind::IoError, e))?;
    say(format_args!("{text}"))?;
    Ok(ExitCode::SUCCESS)
}

fn merge_cmd(
    remote: &mut Remote,
    out: &str,
    parts: &[String],
    force: bool,
) -> Result<ExitCode, ExitCode> {
    if !force && remote.exists(out)? {
        return Err(fail(
            ExitKind::Usage,
            format!("{out}: already exists; use -f to overwrite"),
        ));
    }
    // Downloaded copies of S3 parts live until the merge is done.
    let mut held = Vec::with_capacity(parts.len());
    let mut archives = Vec::with_capacity(parts.len());
    for p in parts {
        let (path, tmp) = remote.local(p)?;
        let (r, _) = open(&path, p)?;
        archives.push(Archive::open(r).map_err(|e| fail(ExitKind::BadInput, format!("{p}: {e}")))?);
        held.push(tmp);
    }
    let mut report = None;
    publish(remote, out, |file| {
        let (w, r) = merge(archives, file).map_err(|e| {
            let code = match &e {
                MergeError::Write(_) => ExitKind::IoError,
                _ => ExitKind::BadInput,
            };
            let named = match &e {
                MergeError::Part { part, .. }
                | MergeError::NotMvt { part, .. }
                | MergeError::TypeMismatch { part, .. }
                | MergeError::UnsupportedCompression { part, .. }
                | MergeError::CompressionMismatch { part, .. }
                | MergeError::Metadata { part, .. } => parts
                    .get(*part)
                    .map(|p| format!("{p}: "))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            fail(code, format!("merge: {named}{e}"))
        })?;
        report = Some(r);
        Ok(w)
    })?;
    let report = report.ok_or_else(|| fail(ExitKind::Internal, "merge: no report"))?;
    say(format_args!(
        "{out}: merged {} parts: {} tiles ({} distinct), {} bytes",
        report.parts, report.tiles, report.tile_contents, report.bytes
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Builds an output archive in a temporary file beside `out` (or in the temp dir for an
/// `s3://` OUT), then renames it into place (fsynced) or uploads it whole: `out` is the old
/// archive or the new one, never half of one.
fn publish(
    remote: &mut Remote,
    out: &str,
    build: impl FnOnce(BufWriter<File>) -> Result<BufWriter<File>, ExitCode>,
) -> Result<(), ExitCode> {
    let s3_out = out.starts_with("s3://");
    let dir = if s3_out {
        std::env::temp_dir()
    } else {
        Path::new(out)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let tmp = tempfile::Builder::new()
        .prefix(".etl-pmtiles-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(&dir)
        .map_err(|e| fail(ExitKind::IoError, format!("{}: {e}", dir.display())))?;
    // Locked while it is built: a tiling job's sweep of abandoned `.etl-pmtiles-` files in the
    // same directory leaves a live one alone, however long the build goes without writing.
    etl_core::scratch::lock_file(tmp.as_file()).map_err(|e| {
        fail(
            ExitKind::IoError,
            format!(
                "{}: cannot lock the temporary archive: {e}",
                tmp.path().display()
            ),
        )
    })?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| fail(ExitKind::IoError, e))?;
    let w = build(BufWriter::with_capacity(1 << 20, file))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(ExitKind::IoError, format!("{out}: {e}")))?;
    if s3_out {
        remote.upload(&tmp, out)
    } else {
        tmp.persist(out)
            .map(drop)
            .map_err(|e| fail(ExitKind::IoError, format!("{out}: {}", e.error)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_live_output_survives_another_run_s_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.pmtiles");
        let mut remote = Remote {
            s3: S3Config::default(),
            rt: None,
        };
        let mut swept = None;
        let r = publish(&mut remote, out.to_str().unwrap(), |mut file| {
            file.write_all(b"archive").unwrap();
            file.flush().unwrap();
            // Old enough to count as abandoned, but locked: the sweep must leave it.
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            file.get_ref().set_modified(old).unwrap();
            swept = Some(etl_core::scratch::sweep(dir.path(), ".etl-pmtiles-"));
            Ok(file)
        });
        assert!(r.is_ok());
        assert_eq!(swept, Some(Vec::new()), "the sweep removed a live build");
        assert_eq!(std::fs::read(&out).unwrap(), b"archive");
    }
}
