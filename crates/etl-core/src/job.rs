//! The `Job` trait every binary implements, and the context the runner hands it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::batch::BatchEnv;
use crate::error::JobError;
use crate::metrics::Stats;
use crate::profile::Profile;
use crate::runner::progress::Progress;
use crate::store::{S3Config, Store};

/// A job: a typed config (CLI flags, `ETL_*` env vars, profile defaults, JSON Schema) and a run.
pub trait Job: Send + Sync + 'static {
    /// The config struct; it is also the builder of the running job.
    type Config: clap::Args
        + clap::FromArgMatches
        + Serialize
        + DeserializeOwned
        + JsonSchema
        + Send
        + Sync
        + 'static;

    /// Binary name, e.g. `etl-data`.
    const NAME: &'static str;
    const ABOUT: &'static str;

    /// Defaults the profile sets for config fields left unset on the command line and in the
    /// environment, as a JSON object keyed by field name.
    fn profile_defaults(_profile: Profile) -> serde_json::Value {
        serde_json::json!({})
    }

    /// Checks the config and connectivity and returns what a run would do, writing nothing.
    fn dry_run(
        config: Self::Config,
        ctx: JobContext,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send;

    /// Does the work.
    fn run(
        config: Self::Config,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send;
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Nothing to do: the same run already completed, or every input was unchanged.
    Skipped,
}

/// Runner settings shared by every job (flags of the runner, not of the job).
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeSettings {
    /// Where checkpoints live, if the job's default is not wanted.
    pub checkpoint: Option<String>,
    /// How long a lease lives without a heartbeat.
    pub lease_ttl: Duration,
    /// This worker's identity in leases: Batch job id and attempt, or host and pid.
    pub owner: String,
    /// The tick of a scheduled run (`--logical-time` / `ETL_LOGICAL_TIME`); `None` for runs
    /// fired by data or by hand.
    pub logical_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a job gets from the runner.
#[derive(Clone)]
pub struct JobContext {
    pub job: &'static str,
    pub profile: Profile,
    /// Fires on SIGTERM/SIGINT: stop taking new work, checkpoint, return `JobError::stopped()`.
    pub shutdown: CancellationToken,
    pub store: Store,
    pub batch: BatchEnv,
    pub stats: Arc<Stats>,
    pub progress: Progress,
    pub settings: RuntimeSettings,
}

impl JobContext {
    /// A context for tests: local defaults, no signals, no Batch env, hidden progress.
    pub fn for_tests(job: &'static str) -> JobContext {
        JobContext {
            job,
            profile: Profile::DevTest,
            shutdown: CancellationToken::new(),
            store: Store::new(S3Config::default()),
            batch: BatchEnv::default(),
            stats: Arc::new(Stats::default()),
            progress: Progress::hidden(),
            settings: RuntimeSettings {
                checkpoint: None,
                lease_ttl: Duration::from_secs(30),
                owner: format!("test-{}", std::process::id()),
                logical_time: None,
            },
        }
    }
}
