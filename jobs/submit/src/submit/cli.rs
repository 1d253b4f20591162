//! Command-line parsing: `etl-submit JOB [options] -- [JOB ARGS]` into [`Options`].

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::Parser;

use super::SubmitError;

/// The whole command line: a submission, or `deploy` and its flags.
#[derive(Debug, Parser)]
#[command(
    name = "etl-submit",
    version,
    about = "Submit a tak-etl job to AWS Batch (the image runs `etl JOB ARGS`)",
    after_help = "Prints the submitted jobs as one JSON document on stdout. Exit codes: 0 submitted \
                  (with --wait: all jobs SUCCEEDED), 1 a job FAILED, 64 bad usage, 69 the Batch API \
                  is unreachable, 75 throttled after retries, 78 a missing queue or job definition, \
                  70 any other API error.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    propagate_version = true
)]
pub struct Top {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A submission's flags; with a subcommand they are not asked for (their environment
    /// variables, e.g. ETL_BATCH_QUEUE, may still be set and are ignored).
    #[command(flatten)]
    pub submit: Cli,
}

/// What `etl-submit` does besides submitting.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register the job definitions and put the EventBridge rules that `deploy/` describes
    /// (idempotent; see `etl-submit deploy --help`).
    Deploy(crate::deploy::Args),
}

/// A submission's flags as clap sees them (validated further by [`Options::from_cli`]).
#[derive(Debug, clap::Args)]
pub struct Cli {
    /// The job to run: `data`, `pmtiles`, `events`, ... (the container command is `JOB ARGS`).
    /// Required unless a subcommand is given.
    #[arg(required = true)]
    pub job: Option<String>,
    /// Job queue.
    #[arg(long, env = "ETL_BATCH_QUEUE", default_value = "etl")]
    pub queue: String,
    /// Job definition (name, name:revision or ARN); default `etl-JOB`.
    #[arg(long)]
    pub definition: Option<String>,
    /// Submit an array job of this many children (2 to 10000).
    #[arg(long)]
    pub array_size: Option<i64>,
    /// A job id this job waits for (repeatable).
    #[arg(long = "depends-on", value_name = "ID")]
    pub depends_on: Vec<String>,
    /// A job parameter for `Ref::K` in the definition (repeatable).
    #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// An environment variable for the container (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// vCPUs for the container (e.g. 2, or 0.5 on Fargate).
    #[arg(long, value_parser = parse_vcpus)]
    pub vcpus: Option<String>,
    /// Memory for the container, in MiB.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(i64).range(1..))]
    pub memory: Option<i64>,
    /// Attempts (1 to 10) for the retry strategy.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub attempts: Option<i32>,
    /// Attempt timeout in seconds (at least 60, as Batch requires).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i32).range(60..))]
    pub timeout: Option<i32>,
    /// A tag on the submitted jobs (repeatable).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_kv)]
    pub tags: Vec<(String, String)>,
    /// Job name; default `etl-JOB-<UTC timestamp>`.
    #[arg(long)]
    pub name: Option<String>,
    /// `pmtiles` only: tile in N array children and merge their parts in a dependent job.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub shards: Option<u32>,
    /// Follow the jobs until they finish; exit 0 when all SUCCEEDED, 1 when one FAILED.
    #[arg(long)]
    pub wait: bool,
    /// Arguments for the job (after `--`).
    #[arg(last = true, value_name = "JOB ARGS")]
    pub args: Vec<String>,
}

/// Validated submission options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub job: String,
    pub queue: String,
    pub definition: String,
    pub name: String,
    pub array_size: Option<i32>,
    pub depends_on: Vec<String>,
    pub overrides: Overrides,
    pub shards: Option<u32>,
    pub wait: bool,
    pub args: Vec<String>,
}

/// What every job of one submission shares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub parameters: BTreeMap<String, String>,
    pub environment: Vec<(String, String)>,
    pub vcpus: Option<String>,
    pub memory_mib: Option<i64>,
    pub attempts: Option<i32>,
    pub timeout_secs: Option<i32>,
    pub tags: BTreeMap<String, String>,
}

/// Parses `K=V` (the value may contain `=` and be empty; the key may not be empty).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn parse_vcpus(s: &str) -> Result<String, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(s.to_owned()),
        _ => Err(format!("expected a positive number of vCPUs, got {s:?}")),
    }
}

/// Batch job names: 1 to 128 letters, digits, hyphens and underscores, starting alphanumeric.
pub fn valid_job_name(name: &str) -> bool {
    name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses the arguments after the program name. `Ok(Err(text))` is help or version output.
pub fn parse(args: Vec<OsString>) -> Result<Result<Top, String>, SubmitError> {
    let argv = std::iter::once(OsString::from("etl-submit")).chain(args);
    match Top::try_parse_from(argv) {
        Ok(cli) => Ok(Ok(cli)),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Ok(Err(e.to_string()))
            }
            _ => Err(SubmitError::Usage(e.to_string())),
        },
    }
}

impl Options {
    /// Validates the command line; `timestamp` names jobs without `--name` (`etl-JOB-<timestamp>`).
    pub fn from_cli(cli: Cli, timestamp: &str) -> Result<Options, SubmitError> {
        let usage = |m: String| Err(SubmitError::Usage(m));
        let Some(job) = cli.job else {
            return usage("JOB is missing (see etl-submit --help)".to_owned());
        };
        if !valid_job_name(&job) {
            return usage(format!(
                "JOB must be letters, digits, hyphens and underscores, got {job:?}"
            ));
        }
        let name = cli.name.unwrap_or_else(|| format!("etl-{job}-{timestamp}"));
        // The merge job of a sharded run is named NAME-merge.
        let max = if cli.shards.is_some_and(|n| n > 1) {
            122
        } else {
            128
        };
        if !valid_job_name(&name) || name.len() > max {
            return usage(format!(
                "--name must be 1 to {max} letters, digits, hyphens and underscores starting with a \
                 letter or digit, got {name:?}"
            ));
        }
        let array_size = match cli.array_size {
            None => None,
            Some(n) if (2..=10_000).contains(&n) => i32::try_from(n).ok(),
            Some(n) => {
                return usage(format!(
                    "--array-size must be 2 to 10000 (AWS Batch array jobs), got {n}"
                ));
            }
        };
        if cli.shards.is_some() {
            if job != "pmtiles" {
                return usage(format!("--shards is for the pmtiles job, not {job:?}"));
            }
            if array_size.is_some() {
                return usage("--shards and --array-size exclude each other".to_owned());
            }
        }
        if cli.queue.is_empty() {
            return usage("--queue (or ETL_BATCH_QUEUE) must not be empty".to_owned());
        }
        if let Some(id) = cli.depends_on.iter().find(|id| id.is_empty()) {
            return usage(format!("--depends-on needs a job id, got {id:?}"));
        }
        Ok(Options {
            definition: cli.definition.unwrap_or_else(|| format!("etl-{job}")),
            job,
            queue: cli.queue,
            name,
            array_size,
            depends_on: cli.depends_on,
            overrides: Overrides {
                parameters: cli.params.into_iter().collect(),
                environment: cli.env,
                vcpus: cli.vcpus,
                memory_mib: cli.memory,
                attempts: cli.attempts,
                timeout_secs: cli.timeout,
                tags: cli.tags.into_iter().collect(),
            },
            shards: cli.shards,
            wait: cli.wait,
            args: cli.args,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn opts(args: &[&str]) -> Result<Options, SubmitError> {
        let top = parse(args.iter().map(OsString::from).collect())?.expect("not help");
        Options::from_cli(top.submit, "20260101T000000Z")
    }

    #[test]
    fn kv() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_kv("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_kv("=b").is_err());
        assert!(parse_kv("ab").is_err());
    }

    #[test]
    fn defaults() {
        let o = opts(&["data", "--queue", "q"]).unwrap();
        assert_eq!(o.definition, "etl-data");
        assert_eq!(o.name, "etl-data-20260101T000000Z");
        assert_eq!(o.queue, "q");
        assert!(o.args.is_empty());
        assert_eq!(o.overrides, Overrides::default());
    }

    #[test]
    fn everything() {
        let o = opts(&[
            "events",
            "--queue",
            "q",
            "--definition",
            "d:3",
            "--array-size",
            "4",
            "--depends-on",
            "a",
            "--depends-on",
            "b",
            "--param",
            "p=1",
            "--env",
            "E=x=y",
            "--vcpus",
            "0.5",
            "--memory",
            "2048",
            "--attempts",
            "3",
            "--timeout",
            "600",
            "--tag",
            "t=v",
            "--name",
            "n1",
            "--wait",
            "--",
            "--event",
            "-",
            "-o",
            "x",
        ])
        .unwrap();
        assert_eq!(o.definition, "d:3");
        assert_eq!(o.array_size, Some(4));
        assert_eq!(o.depends_on, ["a", "b"]);
        assert_eq!(o.overrides.parameters["p"], "1");
        assert_eq!(o.overrides.environment, [("E".into(), "x=y".into())]);
        assert_eq!(o.overrides.vcpus.as_deref(), Some("0.5"));
        assert_eq!(o.overrides.memory_mib, Some(2048));
        assert_eq!(o.overrides.attempts, Some(3));
        assert_eq!(o.overrides.timeout_secs, Some(600));
        assert_eq!(o.overrides.tags["t"], "v");
        assert_eq!(o.name, "n1");
        assert!(o.wait);
        assert_eq!(o.args, ["--event", "-", "-o", "x"]);
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["data", "--array-size", "1"][..],
            &["data", "--array-size", "10001"],
            &["data", "--shards", "2"],
            &["pmtiles", "--shards", "2", "--array-size", "2"],
            &["pmtiles", "--shards", "0"],
            &["data", "--env", "novalue"],
            &["data", "--vcpus", "-1"],
            &["data", "--attempts", "11"],
            &["data", "--timeout", "59"],
            &["data", "--name", "bad name"],
            &["da ta"],
            &[],
            &["data", "--nope"],
        ] {
            assert!(
                matches!(opts(bad), Err(SubmitError::Usage(_))),
                "{bad:?} should be a usage error"
            );
        }
    }

    #[test]
    fn deploy_is_a_subcommand() {
        let top = parse(vec!["deploy".into(), "--dry-run".into()])
            .unwrap()
            .unwrap();
        assert!(matches!(top.command, Some(Command::Deploy(_))));
        assert!(top.submit.job.is_none());
        // Deploy's flags are its own, and JOB takes no second word.
        for bad in [&["deploy", "--queue-x"][..], &["data", "deploy"]] {
            let args = bad.iter().map(OsString::from).collect();
            assert!(
                matches!(parse(args), Err(SubmitError::Usage(_))),
                "{bad:?} should be a usage error"
            );
        }
        let top = parse(vec!["data".into()]).unwrap().unwrap();
        assert!(top.command.is_none());
        assert_eq!(top.submit.job.as_deref(), Some("data"));
    }

    #[test]
    fn help_is_not_an_error() {
        assert!(parse(vec!["--help".into()]).unwrap().is_err());
    }
}
