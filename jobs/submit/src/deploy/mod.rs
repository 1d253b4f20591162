//! `etl-submit deploy`: registers the Batch job definitions and puts the EventBridge rules that
//! `deploy/` describes, idempotently.
//!
//! A job definition gets a new revision only when the request differs from the latest ACTIVE
//! revision of that name; a rule is put (PutRule, PutTargets, RemoveTargets for targets no longer
//! described) only when it or its targets differ. One JSON line per resource goes to stdout.
//! `--dry-run` prints the requests it would send and calls no AWS API (except DescribeJobQueues
//! when `--queue` is a name rather than an ARN).

pub mod artefacts;
mod aws;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use etl_core::ExitKind;
use serde_json::json;

use artefacts::{JobDefinitionRequest, PutRuleRequest, PutTargetsRequest};

/// What can go wrong, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Bad flags or a placeholder without a value (64).
    #[error("{0}")]
    Usage(String),
    /// An artefact that does not parse or breaks its schema (65).
    #[error("{file}: {problem}")]
    Artefact { file: String, problem: String },
    /// The AWS API could not be reached or failed on its side (69).
    #[error("{operation} {resource}: AWS API unavailable: {detail}")]
    Unavailable {
        operation: &'static str,
        resource: String,
        detail: String,
    },
    /// The AWS API refused a request (ClientException and other 4xx) (78).
    #[error("{operation} {resource}: refused: {detail}")]
    Client {
        operation: &'static str,
        resource: String,
        detail: String,
    },
}

impl DeployError {
    /// The process exit code (sysexits, as the README lists them).
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            DeployError::Usage(_) => ExitKind::Usage,
            DeployError::Artefact { .. } => ExitKind::BadInput,
            DeployError::Unavailable { .. } => ExitKind::Unavailable,
            DeployError::Client { .. } => ExitKind::Config,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProfileArg {
    #[value(name = "dev-test")]
    DevTest,
    Prod,
}

impl ProfileArg {
    fn as_str(self) -> &'static str {
        match self {
            ProfileArg::DevTest => "dev-test",
            ProfileArg::Prod => "prod",
        }
    }
}

/// Registers the job definitions and puts the EventBridge rules under --dir.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sizing (resourceRequirements, timeout) and ETL_PROFILE of the job definitions.
    #[arg(long, value_enum, default_value = "dev-test")]
    profile: ProfileArg,
    /// Print the requests as JSON lines and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The image URI for ${IMAGE}.
    #[arg(long, env = "ETL_IMAGE")]
    image: Option<String>,
    /// The Batch job queue the rules submit to, as an ARN or a name (looked up) for ${JOB_QUEUE_ARN}.
    #[arg(long, env = "ETL_JOB_QUEUE")]
    queue: Option<String>,
    /// The upload bucket for ${UPLOAD_BUCKET}.
    #[arg(long, env = "ETL_UPLOAD_BUCKET")]
    upload_bucket: Option<String>,
    /// The IAM role EventBridge assumes to submit Batch jobs, for ${EVENTS_ROLE_ARN}.
    #[arg(long, env = "ETL_EVENTS_ROLE_ARN")]
    events_role_arn: Option<String>,
    /// The Secrets Manager secret (JSON) the jobs reach the database with, for
    /// ${DATABASE_SECRET_ARN} (ECS passes it to the job as ETL_DATABASE_SECRET).
    #[arg(long, env = "ETL_DATABASE_SECRET_ARN")]
    database_secret_arn: Option<String>,
    /// The IAM role ECS pulls the image and fetches the secrets with, for ${EXECUTION_ROLE_ARN}.
    #[arg(long, env = "ETL_EXECUTION_ROLE_ARN")]
    execution_role_arn: Option<String>,
    /// The IAM role the jobs' own AWS calls (S3) run as, for ${JOB_ROLE_ARN}.
    #[arg(long, env = "ETL_JOB_ROLE_ARN")]
    job_role_arn: Option<String>,
    /// Prepended to every job definition and rule name (e.g. `staging-`, or a test namespace).
    #[arg(long, default_value = "", value_parser = parse_prefix)]
    name_prefix: String,
    /// The artefact directory.
    #[arg(long, default_value = "deploy/")]
    dir: PathBuf,
}

fn parse_prefix(s: &str) -> Result<String, String> {
    if s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s.to_string())
    } else {
        Err("at most 16 of A-Z a-z 0-9 - _".into())
    }
}

fn flag_for(placeholder: &str) -> String {
    match placeholder {
        "IMAGE" => "--image (or ETL_IMAGE)".into(),
        "UPLOAD_BUCKET" => "--upload-bucket (or ETL_UPLOAD_BUCKET)".into(),
        "JOB_QUEUE_ARN" => "--queue (or ETL_JOB_QUEUE)".into(),
        "EVENTS_ROLE_ARN" => "--events-role-arn (or ETL_EVENTS_ROLE_ARN)".into(),
        "DATABASE_SECRET_ARN" => "--database-secret-arn (or ETL_DATABASE_SECRET_ARN)".into(),
        "EXECUTION_ROLE_ARN" => "--execution-role-arn (or ETL_EXECUTION_ROLE_ARN)".into(),
        "JOB_ROLE_ARN" => "--job-role-arn (or ETL_JOB_ROLE_ARN)".into(),
        other => format!("a value for {other}"),
    }
}

/// `etl-submit deploy ARGS...`, parsed. Returns the exit code.
pub fn main(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etl-submit deploy: cannot start the async runtime: {e}");
            return ExitKind::OsError.exit_code();
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etl-submit deploy: {e}");
            e.exit_kind().exit_code()
        }
    }
}

/// The job definition and rule requests for one deployment.
struct Plan {
    job_definitions: Vec<JobDefinitionRequest>,
    rules: Vec<(PutRuleRequest, PutTargetsRequest)>,
}

fn plan(
    args: &Args,
    loaded: &artefacts::Artefacts,
    queue_arn: Option<String>,
) -> Result<Plan, DeployError> {
    let profile = args.profile.as_str();
    let values: BTreeMap<&str, Option<String>> = BTreeMap::from([
        ("IMAGE", non_empty(&args.image)),
        ("PROFILE", Some(profile.to_string())),
        ("UPLOAD_BUCKET", non_empty(&args.upload_bucket)),
        ("JOB_QUEUE_ARN", non_empty(&queue_arn)),
        ("EVENTS_ROLE_ARN", non_empty(&args.events_role_arn)),
        ("DATABASE_SECRET_ARN", non_empty(&args.database_secret_arn)),
        ("EXECUTION_ROLE_ARN", non_empty(&args.execution_role_arn)),
        ("JOB_ROLE_ARN", non_empty(&args.job_role_arn)),
    ]);
    let mut out = Plan {
        job_definitions: Vec::new(),
        rules: Vec::new(),
    };
    for (path, raw) in &loaded.job_definitions {
        let v = artefacts::substitute(path, raw, &values, &flag_for)?;
        // The placeholders were checked before substitution; the values are not re-checked.
        let file: artefacts::JobDefinitionFile =
            serde_json::from_value(v).map_err(|e| DeployError::Artefact {
                file: path.display().to_string(),
                problem: e.to_string(),
            })?;
        let request = file
            .request(profile, &args.name_prefix)
            .map_err(|problem| DeployError::Artefact {
                file: path.display().to_string(),
                problem,
            })?;
        out.job_definitions.push(request);
    }
    for (path, raw) in &loaded.rules {
        let v = artefacts::substitute(path, raw, &values, &flag_for)?;
        let rule: artefacts::RuleFile =
            serde_json::from_value(v).map_err(|e| DeployError::Artefact {
                file: path.display().to_string(),
                problem: e.to_string(),
            })?;
        let requests =
            rule.requests(&args.name_prefix)
                .map_err(|problem| DeployError::Artefact {
                    file: path.display().to_string(),
                    problem,
                })?;
        out.rules.push(requests);
    }
    Ok(out)
}

fn print_line(v: serde_json::Value) {
    println!("{v}");
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

fn print_dry_run(plan: &Plan) {
    for jd in &plan.job_definitions {
        print_line(json!({
            "kind": "job-definition",
            "name": jd.job_definition_name,
            "action": "dry-run",
            "request": {"RegisterJobDefinition": jd},
        }));
    }
    for (rule, targets) in &plan.rules {
        print_line(json!({
            "kind": "rule",
            "name": rule.name,
            "action": "dry-run",
            "request": {"PutRule": rule, "PutTargets": targets},
        }));
    }
}

async fn run(args: Args) -> Result<(), DeployError> {
    let loaded = artefacts::load_dir(&args.dir)?;
    let queue_is_name =
        !loaded.rules.is_empty() && non_empty(&args.queue).is_some_and(|q| !q.starts_with("arn:"));
    // A dry run with a queue ARN calls no API, so it does not even load the AWS config (which
    // may ask the instance metadata service for a region).
    let clients = if args.dry_run && !queue_is_name {
        None
    } else {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Some(aws::Clients::new(&config))
    };
    let queue_arn = match (non_empty(&args.queue), &clients) {
        (Some(q), Some(c)) if queue_is_name => Some(c.job_queue_arn(&q).await?),
        (q, _) => q,
    };
    let plan = plan(&args, &loaded, queue_arn)?;
    let clients = match clients {
        Some(c) if !args.dry_run => c,
        _ => {
            print_dry_run(&plan);
            return Ok(());
        }
    };
    for jd in &plan.job_definitions {
        let (action, revision) = clients.deploy_job_definition(jd).await?;
        print_line(json!({
            "kind": "job-definition",
            "name": jd.job_definition_name,
            "action": action,
            "revision": revision,
        }));
    }
    for (rule, targets) in &plan.rules {
        let action = clients.deploy_rule(rule, targets).await?;
        print_line(json!({
            "kind": "rule",
            "name": rule.name,
            "action": action,
            "targets": targets.targets.len(),
        }));
    }
    Ok(())
}
