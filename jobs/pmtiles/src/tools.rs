//! The archive tools: `verify FILE`, `show FILE`, `merge OUT PART...` (local files).
//!
//! Exit codes: 0 success; 65 the archive is invalid (verify: the first problem, in one line;
//! merge: a part is invalid or the parts overlap); 66 a file does not exist; 64 bad usage;
//! 74 an I/O error.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use etl_tiles::archive::{Archive, MergeError, merge, summarize, verify};

#[derive(Parser)]
#[command(name = "etl-pmtiles", about = "PMTiles archive tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check header, directories, offsets and lengths, clustered order, zooms, bounds and
    /// vector_layers; exit 0 when valid, 65 with the first problem.
    Verify { file: PathBuf },
    /// Print header and metadata as JSON, with tiles per zoom and the largest tile.
    Show { file: PathBuf },
    /// Merge disjoint archives (e.g. the shards of a sharded run) into one clustered archive.
    Merge {
        out: PathBuf,
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// Overwrite an existing OUT.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_IOERR: u8 = 74;
const EX_USAGE: u8 = 64;

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("etl-pmtiles: {msg}");
    ExitCode::from(code)
}

fn open(path: &Path) -> Result<(BufReader<File>, u64), ExitCode> {
    let f = File::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            EX_NOINPUT
        } else {
            EX_IOERR
        };
        fail(code, format!("{}: {e}", path.display()))
    })?;
    let len = f
        .metadata()
        .map_err(|e| fail(EX_IOERR, format!("{}: {e}", path.display())))?
        .len();
    Ok((BufReader::with_capacity(1 << 16, f), len))
}

/// Runs a tool subcommand from the process arguments.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.cmd {
        Cmd::Verify { file } => {
            let (r, len) = match open(&file) {
                Ok(x) => x,
                Err(c) => return c,
            };
            match verify(r, len) {
                Ok(rep) => {
                    let zooms = match (
                        rep.tiles_per_zoom.keys().next(),
                        rep.tiles_per_zoom.keys().last(),
                    ) {
                        (Some(a), Some(b)) => format!("z{a}-z{b}"),
                        _ => "no tiles".into(),
                    };
                    let _ = writeln!(
                        std::io::stdout(),
                        "{}: valid: {} tiles ({} entries, {} distinct), {zooms}, {} bytes",
                        file.display(),
                        rep.addressed_tiles,
                        rep.tile_entries,
                        rep.unique_tiles,
                        rep.total_size
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_DATAERR, format!("{}: {e}", file.display())),
            }
        }
        Cmd::Show { file } => {
            let (r, _) = match open(&file) {
                Ok(x) => x,
                Err(c) => return c,
            };
            let mut a = match Archive::open(r) {
                Ok(a) => a,
                Err(e) => return fail(EX_DATAERR, format!("{}: {e}", file.display())),
            };
            let header = a.header().clone();
            let metadata = a.metadata().clone();
            match summarize(&mut a) {
                Ok(s) => {
                    let v = s.to_json(&header, &metadata);
                    match serde_json::to_string_pretty(&v) {
                        Ok(t) => {
                            // A closed pipe (`show | head`) is not an error worth a panic.
                            let _ = writeln!(std::io::stdout(), "{t}");
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail(EX_IOERR, e),
                    }
                }
                Err(e) => fail(EX_DATAERR, format!("{}: {e}", file.display())),
            }
        }
        Cmd::Merge { out, parts, force } => merge_cmd(&out, &parts, force),
    }
}

fn merge_cmd(out: &Path, parts: &[PathBuf], force: bool) -> ExitCode {
    if out.exists() && !force {
        return fail(
            EX_USAGE,
            format!("{}: already exists; use -f to overwrite", out.display()),
        );
    }
    let mut archives = Vec::with_capacity(parts.len());
    for p in parts {
        let (r, _) = match open(p) {
            Ok(x) => x,
            Err(c) => return c,
        };
        match Archive::open(r) {
            Ok(a) => archives.push(a),
            Err(e) => return fail(EX_DATAERR, format!("{}: {e}", p.display())),
        }
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let tmp = match tempfile::Builder::new()
        .prefix(".etl-pmtiles-merge-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(&dir)
    {
        Ok(t) => t,
        Err(e) => return fail(EX_IOERR, format!("{}: {e}", dir.display())),
    };
    let file = match tmp.as_file().try_clone() {
        Ok(f) => f,
        Err(e) => return fail(EX_IOERR, e),
    };
    let (w, report) = match merge(archives, BufWriter::with_capacity(1 << 20, file)) {
        Ok(x) => x,
        Err(e) => {
            let code = match &e {
                MergeError::Write(_) => EX_IOERR,
                _ => EX_DATAERR,
            };
            let named = match &e {
                MergeError::Part { part, .. }
                | MergeError::NotMvt { part, .. }
                | MergeError::UnsupportedCompression { part, .. }
                | MergeError::CompressionMismatch { part, .. }
                | MergeError::Metadata { part, .. } => parts
                    .get(*part)
                    .map(|p| format!("{}: ", p.display()))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            return fail(code, format!("merge: {named}{e}"));
        }
    };
    let flushed = w
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all());
    if let Err(e) = flushed {
        return fail(EX_IOERR, format!("{}: {e}", out.display()));
    }
    if let Err(e) = tmp.persist(out) {
        return fail(EX_IOERR, format!("{}: {}", out.display(), e.error));
    }
    let _ = writeln!(
        std::io::stdout(),
        "{}: merged {} parts: {} tiles ({} distinct), {} bytes",
        out.display(),
        report.parts,
        report.tiles,
        report.tile_contents,
        report.bytes
    );
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}
