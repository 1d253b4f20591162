//! Features piped on stdin. tippecanoe reads stdin when no input is named, and CloudTAK's
//! worker pipes its GeoJSON into tippecanoe that way (`../shared/cloudtak-contract.md`,
//! "Transform"). The stream is spooled to a temporary file first and then read as any input:
//! format detection by content, parallel parsing and bounded memory all need a file.

use std::io::IsTerminal;
use std::path::Path;

use etl_core::JobError;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Whether stdin can carry the input: a pipe or a redirected file, not a terminal (where a
/// forgotten input should be a usage error, not a silent wait).
pub fn piped() -> bool {
    !std::io::stdin().is_terminal()
}

/// Copies stdin to a temporary file in `dir` (the system's by default), removed when the
/// returned handle is dropped. SIGTERM stops the copy.
pub async fn spool(
    dir: Option<&Path>,
    shutdown: &CancellationToken,
    stopped: fn() -> JobError,
) -> Result<tempfile::NamedTempFile, JobError> {
    let temp_err = |e: std::io::Error| JobError::temporary(format!("spooling stdin: {e}"));
    let mut b = tempfile::Builder::new();
    b.prefix(".etl-pmtiles-stdin-");
    let file = match dir {
        Some(d) => b.tempfile_in(d),
        None => b.tempfile(),
    }
    .map_err(temp_err)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(temp_err)?);
    let mut input = tokio::io::stdin();
    let copied = tokio::select! {
        r = tokio::io::copy(&mut input, &mut out) => r.map_err(temp_err)?,
        () = shutdown.cancelled() => return Err(stopped()),
    };
    out.flush().await.map_err(temp_err)?;
    if copied == 0 {
        // Nothing named and nothing piped (stdin at /dev/null, say): the command is incomplete.
        return Err(JobError::usage(
            "no input: give INPUT files, -L NAME:INPUT or --sql, or pipe GeoJSON on stdin (stdin was empty)",
        ));
    }
    Ok(file)
}
