//! Exit codes (DESIGN.md §3) and the error every job returns to the runner.
//!
//! AWS Batch `retryStrategy.evaluateOnExit` keys on the exit code, so the code says whether a retry
//! can help: 64/65/66/70/78 are permanent (66: an input that does not exist), 69/75/143 are
//! worth retrying.

use std::fmt;

/// What kind of failure ended a run; each maps to one process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// Bad command line (EX_USAGE).
    Usage,
    /// Bad input data; permanent, do not retry (EX_DATAERR).
    BadInput,
    /// A dependency (S3, Postgres) is unreachable; retry (EX_UNAVAILABLE).
    Unavailable,
    /// Temporary failure, e.g. the run key is leased by another worker; retry (EX_TEMPFAIL).
    Temporary,
    /// Configuration error; permanent (EX_CONFIG).
    Config,
    /// Stopped by SIGTERM after a checkpoint; a retry resumes.
    Stopped,
    /// A bug: a worker thread panicked or ended without saying so (EX_SOFTWARE). Nothing was
    /// published; a retry runs the same code on the same input, so it is not retried.
    Internal,
    /// A named input (file, directory, root) does not exist (EX_NOINPUT).
    NoInput,
    /// Reading or writing a local file failed (EX_IOERR).
    IoError,
    /// The operating system refused a resource, e.g. threads for the async runtime (EX_OSERR).
    OsError,
    /// The work itself ran and failed (`etl-submit --wait`: a submitted job FAILED).
    Failed,
}

impl ExitKind {
    /// The process exit code: the one mapping every binary uses.
    pub const fn code(self) -> i32 {
        match self {
            ExitKind::Failed => 1,
            ExitKind::Usage => 64,
            ExitKind::BadInput => 65,
            ExitKind::NoInput => 66,
            ExitKind::Unavailable => 69,
            ExitKind::Internal => 70,
            ExitKind::OsError => 71,
            ExitKind::IoError => 74,
            ExitKind::Temporary => 75,
            ExitKind::Config => 78,
            ExitKind::Stopped => 143,
        }
    }

    /// [`ExitKind::code`] for `main`'s return value.
    pub fn exit_code(self) -> std::process::ExitCode {
        // Every code above fits a byte.
        std::process::ExitCode::from(self.code() as u8)
    }

    /// What a clap parse error ends the process with, after printing it: success for `--help`
    /// and `--version` (clap reports them as errors), else a usage error.
    pub fn after_clap_error(e: &clap::Error) -> std::process::ExitCode {
        if let Err(print) = e.print() {
            eprintln!("{e} (and printing it failed: {print})");
        }
        if e.use_stderr() {
            ExitKind::Usage.exit_code()
        } else {
            std::process::ExitCode::SUCCESS
        }
    }

    /// Whether a later attempt of the same run can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ExitKind::Unavailable | ExitKind::Temporary | ExitKind::Stopped
        )
    }
}

/// A job's failure: a kind (the exit code) and a one-line message naming file, place and problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub kind: ExitKind,
    pub message: String,
}

impl JobError {
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        JobError {
            kind,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Usage, message)
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ExitKind::BadInput, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Unavailable, message)
    }
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Temporary, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Config, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Internal, message)
    }
    pub fn stopped() -> Self {
        Self::new(
            ExitKind::Stopped,
            "stopped by SIGTERM after committing a checkpoint; a rerun resumes",
        )
    }

    /// A worker thread that panicked: a bug, exit 70, never a result.
    pub fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Self::internal(format!("{what} panicked ({text}); nothing was published"))
    }

    /// Prefixes the message with context (a file name, a table), keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        JobError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_batch_contract() {
        assert_eq!(ExitKind::Usage.code(), 64);
        assert_eq!(ExitKind::BadInput.code(), 65);
        assert_eq!(ExitKind::Unavailable.code(), 69);
        assert_eq!(ExitKind::Temporary.code(), 75);
        assert_eq!(ExitKind::Config.code(), 78);
        assert_eq!(ExitKind::Stopped.code(), 143);
        assert_eq!(ExitKind::Internal.code(), 70);
        assert!(!ExitKind::Internal.retryable());
        assert_eq!(ExitKind::Failed.code(), 1);
        assert_eq!(ExitKind::NoInput.code(), 66);
        assert_eq!(ExitKind::OsError.code(), 71);
        assert_eq!(ExitKind::IoError.code(), 74);
        assert!(!ExitKind::BadInput.retryable());
        assert!(!ExitKind::Config.retryable());
        assert!(ExitKind::Stopped.retryable());
    }

    #[test]
    fn context_keeps_kind() {
        let e = JobError::bad_input("3:7: expected value").context("a.geojson");
        assert_eq!(e.kind, ExitKind::BadInput);
        assert_eq!(e.to_string(), "a.geojson: 3:7: expected value");
    }
}
