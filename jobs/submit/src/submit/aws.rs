//! The AWS Batch calls: SubmitJob from a [`JobSpec`], DescribeJobs, and error classification.

use aws_sdk_batch::Client;
use aws_sdk_batch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_batch::operation::submit_job::builders::SubmitJobFluentBuilder;
use aws_sdk_batch::types::{
    ArrayProperties, ContainerOverrides, JobDependency, JobDetail, JobTimeout, KeyValuePair,
    ResourceRequirement, ResourceType, RetryStrategy,
};

use super::SubmitError;
use super::cli::Overrides;
use super::plan::JobSpec;
use super::wait::JobState;

/// A Batch client from the normal AWS configuration chain (region, credentials, and
/// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_BATCH` for a local endpoint).
pub async fn client() -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Client::new(&config)
}

/// The container overrides for a job, `None` when nothing is overridden.
pub fn container_overrides(
    command: Option<&[String]>,
    o: &Overrides,
) -> Option<ContainerOverrides> {
    let mut resources = Vec::new();
    if let Some(v) = &o.vcpus {
        resources.push(
            ResourceRequirement::builder()
                .r#type(ResourceType::Vcpu)
                .value(v)
                .build(),
        );
    }
    if let Some(m) = o.memory_mib {
        resources.push(
            ResourceRequirement::builder()
                .r#type(ResourceType::Memory)
                .value(m.to_string())
                .build(),
        );
    }
    if command.is_none() && o.environment.is_empty() && resources.is_empty() {
        return None;
    }
    let env = o
        .environment
        .iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect::<Vec<_>>();
    Some(
        ContainerOverrides::builder()
            .set_command(command.map(<[String]>::to_vec))
            .set_environment((!env.is_empty()).then_some(env))
            .set_resource_requirements((!resources.is_empty()).then_some(resources))
            .build(),
    )
}

/// Fills a SubmitJob request; `after` is the id of the plan's earlier job this one waits for.
pub fn fill(
    req: SubmitJobFluentBuilder,
    spec: &JobSpec,
    after: Option<&str>,
) -> SubmitJobFluentBuilder {
    let o = &spec.overrides;
    let depends: Vec<JobDependency> = spec
        .depends_on
        .iter()
        .map(String::as_str)
        .chain(after)
        .map(|id| JobDependency::builder().job_id(id).build())
        .collect();
    req.job_name(&spec.name)
        .job_queue(&spec.queue)
        .job_definition(&spec.definition)
        .set_array_properties(
            spec.array_size
                .map(|n| ArrayProperties::builder().size(n).build()),
        )
        .set_depends_on((!depends.is_empty()).then_some(depends))
        .set_parameters(
            (!o.parameters.is_empty()).then(|| o.parameters.clone().into_iter().collect()),
        )
        .set_container_overrides(container_overrides(spec.command.as_deref(), o))
        .set_retry_strategy(
            o.attempts
                .map(|n| RetryStrategy::builder().attempts(n).build()),
        )
        .set_timeout(
            o.timeout_secs
                .map(|s| JobTimeout::builder().attempt_duration_seconds(s).build()),
        )
        .set_tags((!o.tags.is_empty()).then(|| o.tags.clone().into_iter().collect()))
}

/// Submits one job; returns its id.
pub async fn submit(
    client: &Client,
    spec: &JobSpec,
    after: Option<&str>,
) -> Result<String, SubmitError> {
    let out = fill(client.submit_job(), spec, after)
        .send()
        .await
        .map_err(|e| classify(&format!("SubmitJob {}", spec.name), e))?;
    out.job_id().map(str::to_owned).ok_or_else(|| {
        SubmitError::Api(format!("SubmitJob {}: the answer has no jobId", spec.name))
    })
}

/// The current state of the given jobs (at most 100 ids, as DescribeJobs takes).
pub async fn describe(client: &Client, ids: &[String]) -> Result<Vec<JobState>, SubmitError> {
    let out = client
        .describe_jobs()
        .set_jobs(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| classify("DescribeJobs", e))?;
    Ok(out.jobs().iter().filter_map(state).collect())
}

fn state(j: &JobDetail) -> Option<JobState> {
    // Batch puts the reason on the job, sometimes only on the last attempt or its container.
    let reason = j
        .status_reason()
        .or_else(|| j.attempts().last().and_then(|a| a.status_reason()))
        .or_else(|| j.container().and_then(|c| c.reason()))
        .map(str::to_owned);
    Some(JobState {
        job_id: j.job_id()?.to_owned(),
        status: j.status()?.as_str().to_owned(),
        reason,
        summary: j
            .array_properties()
            .and_then(|a| a.status_summary())
            .map(|s| s.iter().map(|(k, v)| (k.clone(), *v)).collect()),
    })
}

/// Maps an SDK error onto the exit-code classes.
pub fn classify<E, R>(what: &str, e: SdkError<E, R>) -> SubmitError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let msg = format!("{what}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SubmitError::Unreachable(msg),
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            let text = se.err().message().unwrap_or_default();
            let msg = format!("{what}: {code}: {text}");
            error_class(code, msg)
        }
        _ => SubmitError::Api(msg),
    }
}

/// The exit-code class of a Batch error code.
pub fn error_class(code: &str, msg: String) -> SubmitError {
    match code {
        "ClientException" => SubmitError::Client(msg),
        "ThrottlingException"
        | "TooManyRequestsException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded" => SubmitError::Throttled(msg),
        "ServerException" | "ServiceUnavailable" | "ServiceUnavailableException" => {
            SubmitError::Unreachable(msg)
        }
        _ => SubmitError::Api(msg),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn overrides() {
        assert!(container_overrides(None, &Overrides::default()).is_none());
        let o = Overrides {
            environment: vec![("A".into(), "1".into())],
            vcpus: Some("2".into()),
            memory_mib: Some(4096),
            ..Overrides::default()
        };
        let cmd = vec!["data".to_owned(), "-x".to_owned()];
        let c = container_overrides(Some(&cmd), &o).unwrap();
        assert_eq!(c.command(), cmd);
        assert_eq!(c.environment()[0].name(), Some("A"));
        assert_eq!(c.environment()[0].value(), Some("1"));
        let r = c.resource_requirements();
        assert_eq!(
            (r[0].r#type(), r[0].value()),
            (Some(&ResourceType::Vcpu), Some("2"))
        );
        assert_eq!(
            (r[1].r#type(), r[1].value()),
            (Some(&ResourceType::Memory), Some("4096"))
        );
    }

    #[test]
    fn classes() {
        assert_eq!(
            error_class("ClientException", String::new())
                .exit_kind()
                .code(),
            78
        );
        assert_eq!(
            error_class("ThrottlingException", String::new())
                .exit_kind()
                .code(),
            75
        );
        assert_eq!(
            error_class("ServerException", String::new())
                .exit_kind()
                .code(),
            69
        );
        assert_eq!(
            error_class("Whatever", String::new()).exit_kind().code(),
            70
        );
    }
}
