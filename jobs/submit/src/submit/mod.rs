//! `etl-submit JOB ...`: submits a tak-etl job (or a sharded pmtiles run) to AWS Batch and
//! optionally follows it (`--wait`).
//!
//! Exit codes: 0 submitted (with `--wait`: every job SUCCEEDED); 1 a job FAILED; 64 bad usage;
//! 69 the Batch API is unreachable (or answers with server errors); 70 another API error;
//! 75 throttled after the SDK's retries; 78 a missing queue or job definition (ClientException).

pub mod aws;
pub mod cli;
pub mod plan;
pub mod wait;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use etl_core::ExitKind;
use serde_json::{Value, json};

use plan::JobSpec;
use wait::{Backoff, Outcome, Tracker};

/// Why a submission did not succeed; [`SubmitError::exit_code`] gives the process exit code.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("AWS Batch is unreachable: {0}")]
    Unreachable(String),
    #[error("throttled by AWS Batch: {0}")]
    Throttled(String),
    #[error("AWS Batch rejected the request (missing queue or job definition?): {0}")]
    Client(String),
    #[error("AWS Batch error: {0}")]
    Api(String),
    #[error("job failed: {0}")]
    JobFailed(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

impl SubmitError {
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            SubmitError::JobFailed(_) => ExitKind::Failed,
            SubmitError::Usage(_) => ExitKind::Usage,
            SubmitError::Unreachable(_) => ExitKind::Unavailable,
            SubmitError::Api(_) => ExitKind::Internal,
            SubmitError::Io(_) => ExitKind::IoError,
            SubmitError::Throttled(_) => ExitKind::Temporary,
            SubmitError::Client(_) => ExitKind::Config,
        }
    }
}

/// One submitted job, as printed.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub spec: JobSpec,
    pub job_id: String,
    pub depends_on: Vec<String>,
}

/// The JSON document printed on stdout.
pub fn report(jobs: &[Submitted]) -> Value {
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut v = json!({
                "role": j.spec.role.as_str(),
                "jobName": j.spec.name,
                "jobId": j.job_id,
                "jobQueue": j.spec.queue,
                "jobDefinition": j.spec.definition,
            });
            if let Some(n) = j.spec.array_size {
                v["arraySize"] = json!(n);
            }
            if !j.depends_on.is_empty() {
                v["dependsOn"] = json!(j.depends_on);
            }
            if let Some(c) = &j.spec.command {
                v["command"] = json!(c);
            }
            v
        })
        .collect();
    json!({ "jobs": jobs })
}

/// The `etl-submit` entry point (`JOB ...` or `deploy ...`): `args` come after the program name.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match cli::parse(args) {
        Ok(Ok(cli::Top {
            command: Some(cli::Command::Deploy(args)),
            ..
        })) => return crate::deploy::main(args),
        Ok(Ok(cli::Top { submit, .. })) => submit,
        Ok(Err(help)) => {
            print!("{help}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("etl-submit: {e}");
            return e.exit_kind().exit_code();
        }
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let result = cli::Options::from_cli(cli, &stamp).and_then(|o| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(run(&o))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etl-submit: {e}");
            e.exit_kind().exit_code()
        }
    }
}

/// Submits the planned jobs, prints them, and with `--wait` follows them.
pub async fn run(o: &cli::Options) -> Result<(), SubmitError> {
    let specs = plan::plan(o)?;
    let client = aws::client().await;
    let mut done: Vec<Submitted> = Vec::new();
    for spec in specs {
        let after = spec
            .after
            .and_then(|i| done.get(i))
            .map(|s| s.job_id.clone());
        let job_id = match aws::submit(&client, &spec, after.as_deref()).await {
            Ok(id) => id,
            Err(e) => {
                // Say what was already submitted before failing.
                if !done.is_empty() {
                    eprintln!("etl-submit: submitted before the error: {}", report(&done));
                }
                return Err(e);
            }
        };
        let mut depends_on = spec.depends_on.clone();
        depends_on.extend(after);
        done.push(Submitted {
            spec,
            job_id,
            depends_on,
        });
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report(&done))?;
    out.flush()?;
    drop(out);
    if !o.wait {
        return Ok(());
    }
    let ids: Vec<String> = done.iter().map(|s| s.job_id.clone()).collect();
    follow(&client, &ids).await
}

/// Polls DescribeJobs until every job SUCCEEDED (Ok) or one FAILED (`JobFailed`).
pub async fn follow(client: &aws_sdk_batch::Client, ids: &[String]) -> Result<(), SubmitError> {
    let mut tracker = Tracker::default();
    let poll = std::env::var("ETL_SUBMIT_POLL_MS").ok();
    let mut backoff = Backoff::from_env(poll.as_deref());
    loop {
        let states = aws::describe(client, ids).await?;
        for s in &states {
            if let Some(line) = tracker.observe(s) {
                eprintln!("{line}");
            }
        }
        match wait::outcome(ids, &states) {
            Outcome::Succeeded => return Ok(()),
            Outcome::Failed(failed) => {
                let why: Vec<String> = states
                    .iter()
                    .filter(|s| failed.contains(&s.job_id))
                    .map(|s| {
                        format!(
                            "{}: {}",
                            s.job_id,
                            s.reason
                                .as_deref()
                                .unwrap_or("no reason given by AWS Batch")
                        )
                    })
                    .collect();
                return Err(SubmitError::JobFailed(why.join("; ")));
            }
            Outcome::Running => {}
        }
        if let Some(d) = backoff.next() {
            tokio::time::sleep(d).await;
        }
    }
}
