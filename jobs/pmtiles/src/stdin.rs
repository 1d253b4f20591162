//! Features piped on stdin. tippecanoe reads stdin when no input is named, and CloudTAK's
//! worker pipes its GeoJSON into tippecanoe that way (`../shared/cloudtak-contract.md`,
//! "Transform"). The stream is spooled to a file first and then read as any input (format
//! detection by content, parallel parsing and bounded memory all need a file): `stdin` in a
//! locked work directory, removed when the run ends, and by a later run's sweep if this one
//! was killed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use etl_core::JobError;
use etl_core::scratch::WorkDir;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The work directories stdin is spooled into.
const PREFIX: &str = ".etl-pmtiles-stdin-";
/// Buffer of each side of the copy.
const BUF: usize = 1 << 20;

/// Whether stdin can carry the input: a pipe or a redirected file, not a terminal (where a
/// forgotten input should be a usage error, not a silent wait).
pub fn piped() -> bool {
    !std::io::stdin().is_terminal()
}

/// Copies stdin to `stdin` in a new work directory under `dir` (the system's temporary
/// directory by default); the directory goes when the returned handle is dropped. SIGTERM
/// stops the copy.
pub async fn spool(
    dir: Option<&Path>,
    shutdown: &CancellationToken,
    stopped: fn() -> JobError,
) -> Result<(WorkDir, PathBuf), JobError> {
    let parent = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let failed = |e: std::io::Error| {
        JobError::temporary(format!("spooling stdin under {}: {e}", parent.display()))
    };
    etl_core::scratch::sweep(&parent, PREFIX);
    let work = WorkDir::new_in(&parent, PREFIX).map_err(failed)?;
    let path = work.path().join("stdin");
    tracing::info!(spool = %path.display(), "no input named: reading features from stdin");
    let file = tokio::fs::File::create(&path).await.map_err(failed)?;
    let mut out = tokio::io::BufWriter::with_capacity(BUF, file);
    let mut input = tokio::io::BufReader::with_capacity(BUF, tokio::io::stdin());
    let copied = tokio::select! {
        r = tokio::io::copy_buf(&mut input, &mut out) => r.map_err(failed)?,
        () = shutdown.cancelled() => return Err(stopped()),
    };
    out.flush().await.map_err(failed)?;
    if copied == 0 {
        // Nothing named and nothing piped (stdin at /dev/null, say): the command is incomplete.
        return Err(JobError::usage(
            "no input: give INPUT files, -L NAME:INPUT or --sql, or pipe GeoJSON on stdin (stdin was empty)",
        ));
    }
    Ok((work, path))
}
