//! tracing to stderr: JSON lines for machines, text for people; `RUST_LOG` filters.

use tracing_subscriber::EnvFilter;

use super::LogFormat;
use crate::profile::Profile;

pub fn init(format: LogFormat, _profile: Profile) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}
