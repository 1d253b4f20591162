//! The runner every binary shares: config resolution (CLI flag -> env -> profile -> default),
//! `--print-schema`, `--dry-run`, logs, metrics, signals, the run summary and the exit code.
//!
//! A job's `main` is one line: `etl_core::runner::main::<MyJob>()`.

mod args;
mod binary;
mod logging;
pub mod progress;
mod signals;
mod summary;

use std::ffi::OsString;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, FromArgMatches};
use tokio_util::sync::CancellationToken;

pub use args::{CommonArgs, LogFormat, S3Args};
pub use binary::Binary;
pub use logging::init as init_logging;
pub use summary::{RunStatus, RunSummary};

use crate::batch::BatchEnv;
use crate::error::{ExitKind, JobError};
use crate::job::{Job, JobContext, Outcome, RuntimeSettings};
use crate::metrics::{Stats, emf_line};
use crate::profile::Profile;
use crate::store::Store;

/// How long after SIGTERM a job may take to checkpoint before the runner exits anyway
/// (Batch and ECS send SIGKILL 30 s after SIGTERM). The whole stop sequence is this, plus
/// [`STOP_CLEANUP_LIMIT`], plus [`SHUTDOWN_LIMIT`]: 25 s, leaving margin under 30 s.
pub const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long clean-up tasks (lease release, upload abort) may take after a normal run.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(10);
/// How long clean-up tasks may take once a stop was requested.
pub const STOP_CLEANUP_LIMIT: Duration = Duration::from_secs(3);
/// How long the async runtime may take to shut down after the run.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

/// Parses the process arguments, runs the job and returns its exit code. A binary with
/// subcommands uses [`Binary`] instead.
pub fn main<J: Job>() -> std::process::ExitCode {
    Binary::<J>::new().main()
}

/// The clap command of a job: the job's flags plus the runner's.
pub fn command<J: Job>() -> clap::Command {
    let cmd = clap::Command::new(J::NAME)
        .about(J::ABOUT)
        .version(env!("CARGO_PKG_VERSION"));
    CommonArgs::augment_args(J::Config::augment_args(cmd))
}

/// The JSON Schema of a job's config, as checked in under `schemas/`.
pub fn schema<J: Job>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(J::Config)).unwrap_or_default()
}

/// Runs job `J` on `args` (program name first) and returns its exit code.
pub fn run_with_args<J: Job>(args: Vec<OsString>) -> std::process::ExitCode {
    Binary::<J>::new().run(args)
}

/// Runs job `J` on parsed arguments: `cmd` is the (sub)command `matches` came from.
fn run_matches<J: Job>(cmd: &clap::Command, matches: &clap::ArgMatches) -> i32 {
    let common = match CommonArgs::from_arg_matches(matches) {
        Ok(c) => c,
        Err(e) => return binary::clap_exit(&e),
    };
    let config = match resolve_config::<J>(cmd, matches, common.profile) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {}", J::NAME, e.message);
            return e.kind.code();
        }
    };
    logging::init(common.log_format(), common.profile);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", J::NAME);
            return ExitKind::Temporary.code();
        }
    };
    let code = runtime.block_on(execute::<J>(config, common));
    // Lease release tasks and aborted uploads had their chance in `execute`; never hang here.
    runtime.shutdown_timeout(SHUTDOWN_LIMIT);
    code
}

/// Applies profile defaults to every field the command line and environment left unset.
pub fn resolve_config<J: Job>(
    cmd: &clap::Command,
    matches: &clap::ArgMatches,
    profile: Profile,
) -> Result<J::Config, JobError> {
    let parsed =
        J::Config::from_arg_matches(matches).map_err(|e| JobError::usage(e.to_string()))?;
    let serde_json::Value::Object(defaults) = J::profile_defaults(profile) else {
        return Ok(parsed);
    };
    if defaults.is_empty() {
        return Ok(parsed);
    }
    let mut value =
        serde_json::to_value(&parsed).map_err(|e| JobError::config(format!("config: {e}")))?;
    for (key, default) in defaults {
        let known = cmd.get_arguments().any(|a| a.get_id() == key.as_str());
        let explicit = known
            && matches!(
                matches.value_source(&key),
                Some(clap::parser::ValueSource::CommandLine)
                    | Some(clap::parser::ValueSource::EnvVariable)
            );
        if !explicit && let Some(obj) = value.as_object_mut() {
            obj.insert(key, default);
        }
    }
    serde_json::from_value(value)
        .map_err(|e| JobError::config(format!("profile {profile} defaults: {e}")))
}

fn owner_id(batch: &BatchEnv) -> String {
    // A Batch retry of the same job (same id, next attempt) may take over its own lease.
    if let Some(id) = &batch.job_id {
        return format!("batch:{id}");
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    // Two containers can share a host name and a pid (pid 1 in each): a random part makes the
    // owner unique per process, so one process never mistakes another's lease for its own.
    let nonce = {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
    };
    format!("{host}:{}:{:08x}", std::process::id(), nonce as u32)
}

async fn execute<J: Job>(config: J::Config, common: CommonArgs) -> i32 {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    signals::listen(shutdown.clone());
    let batch = BatchEnv::from_env();
    let mut batch_error = batch
        .validate()
        .err()
        .map(|m| JobError::config(format!("AWS Batch array: {m}")));
    let logical_time = match common
        .logical_time
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        None => None,
        Some(v) => match crate::schedule::parse_logical_time(v) {
            Ok(t) => Some(t),
            Err(m) => {
                batch_error = batch_error.or(Some(JobError::config(m)));
                None
            }
        },
    };
    let ctx = JobContext {
        job: J::NAME,
        profile: common.profile,
        shutdown: shutdown.clone(),
        store: Store::new(common.s3_config()),
        settings: RuntimeSettings {
            checkpoint: common.checkpoint.clone(),
            lease_ttl: common.lease_ttl.into(),
            owner: owner_id(&batch),
            logical_time,
        },
        batch,
        stats: Arc::new(Stats::default()),
        progress: progress::Progress::for_stderr(),
    };
    tracing::info!(job = J::NAME, profile = %common.profile, dry_run = common.dry_run, "starting");

    let result: Result<RunStatus, JobError> = if let Some(e) = batch_error {
        Err(e)
    } else if common.dry_run {
        match J::dry_run(config, ctx.clone()).await {
            Ok(plan) => {
                let text = serde_json::to_string(&serde_json::json!({ "dry_run": plan }))
                    .unwrap_or_default();
                println!("{text}");
                Ok(RunStatus::DryRun)
            }
            Err(e) => Err(e),
        }
    } else {
        let run = J::run(config, ctx.clone());
        tokio::select! {
            r = run => r.map(|o| match o {
                Outcome::Succeeded => RunStatus::Succeeded,
                Outcome::Skipped => RunStatus::Skipped,
            }),
            _ = signals::grace_expired(shutdown.clone(), STOP_GRACE) => Err(JobError::new(
                ExitKind::Stopped,
                format!("did not stop within {} s of SIGTERM; the last committed checkpoint stands", STOP_GRACE.as_secs()),
            )),
        }
    };
    ctx.progress.finish();
    // Aborted uploads and dropped leases finish their clean-up before the process goes; after a
    // stop request only briefly, so the summary is out before Batch's SIGKILL.
    let cleanup_limit = if shutdown.is_cancelled() {
        STOP_CLEANUP_LIMIT
    } else {
        CLEANUP_LIMIT
    };
    crate::store::finish_cleanups(cleanup_limit).await;

    let (status, code, error) = match &result {
        Ok(s) => (*s, 0, None),
        Err(e) => {
            tracing::error!(job = J::NAME, exit_code = e.kind.code(), "{}", e.message);
            let status = if e.kind == ExitKind::Stopped {
                RunStatus::Stopped
            } else {
                RunStatus::Failed
            };
            (status, e.kind.code(), Some(e.message.clone()))
        }
    };
    let elapsed = started.elapsed();
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let summary = RunSummary::new(J::NAME, &ctx, status, code, error, elapsed);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        emf_line(J::NAME, &ctx.stats, elapsed, code != 0, now_ms)
    );
    let _ = writeln!(out, "{}", summary.to_json());
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequence_fits_before_sigkill() {
        // Batch and ECS send SIGKILL 30 s after SIGTERM; the summary must be out before.
        let worst = STOP_GRACE + STOP_CLEANUP_LIMIT + SHUTDOWN_LIMIT;
        assert!(worst < Duration::from_secs(30), "{worst:?}");
        assert!(STOP_CLEANUP_LIMIT <= CLEANUP_LIMIT);
    }
}
