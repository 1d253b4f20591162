//! The runner's own flags, shared by every job. Each also reads an environment variable.

use std::io::IsTerminal;

use crate::profile::Profile;
use crate::store::S3Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Named defaults: dev-test (local, small batches) or prod.
    #[arg(long, env = "ETL_PROFILE", default_value = "dev-test", global = true)]
    pub profile: Profile,

    /// Resolve config and check connectivity, print the plan, write nothing.
    #[arg(long, env = "ETL_DRY_RUN", global = true)]
    pub dry_run: bool,

    /// Print the job config's JSON Schema and exit.
    #[arg(long, global = true)]
    pub print_schema: bool,

    /// Log format; default: JSON when stdout is not a terminal.
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// Checkpoint store: a directory, s3://bucket/prefix/ or postgres://… (default: the job's).
    #[arg(long, env = "ETL_CHECKPOINT", global = true)]
    pub checkpoint: Option<String>,

    /// Lease lifetime without a heartbeat (e.g. 60s).
    #[arg(long, env = "ETL_LEASE_TTL", default_value = "60s", global = true)]
    pub lease_ttl: humantime::Duration,

    #[command(flatten)]
    pub s3: S3Args,

    /// KMS key id for SSE-KMS on every S3 object written.
    #[arg(long, env = "ETL_SSE_KMS_KEY_ID", global = true)]
    pub sse_kms_key_id: Option<String>,

    /// The logical time of a scheduled run (RFC 3339, or the rule event as JSON): the run key is
    /// made from it, so a tick delivered twice runs once; set it by hand to backfill a tick.
    #[arg(long, env = "ETL_LOGICAL_TIME", global = true)]
    pub logical_time: Option<String>,

    /// Multipart part size in bytes (minimum 5 MiB).
    #[arg(long, env = "ETL_S3_PART_SIZE", default_value_t = 8 * 1024 * 1024, global = true)]
    pub s3_part_size: usize,
}

impl CommonArgs {
    pub fn log_format(&self) -> LogFormat {
        if let Some(f) = self.log_format {
            return f;
        }
        if self.profile == Profile::Prod || !std::io::stdout().is_terminal() {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }

    /// The S3 settings of the flags: where S3 is, and how objects are written.
    pub fn s3_config(&self) -> S3Config {
        S3Config {
            sse_kms_key_id: self.sse_kms_key_id.clone().filter(|v| !v.trim().is_empty()),
            part_size: self.s3_part_size,
            ..self.s3.config()
        }
    }
}

/// How S3 is reached: shared by the jobs, the archive tools and the tile server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// S3 endpoint for S3-compatible servers (path-style addressing); also AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL.
    #[arg(
        id = "s3_endpoint",
        long = "s3-endpoint",
        env = "ETL_S3_ENDPOINT",
        global = true
    )]
    pub endpoint: Option<String>,

    /// Force path-style S3 addressing (the variable: empty, 0, false, no or off is off).
    #[arg(
        id = "s3_path_style",
        long = "s3-path-style",
        env = "ETL_S3_PATH_STYLE",
        global = true,
        value_parser = clap::builder::FalseyValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub path_style: bool,
}

impl S3Args {
    /// `--s3-endpoint`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> Option<String> {
        // An empty variable (a template that left it blank) means unset, not "".
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        set(&self.endpoint).or_else(|| {
            ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        })
    }

    /// A config for reading (no SSE-KMS key, the default part size).
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: self.endpoint(),
            region: None,
            force_path_style: self.path_style,
            sse_kms_key_id: None,
            part_size: 0,
            static_keys: None,
        }
    }
}
