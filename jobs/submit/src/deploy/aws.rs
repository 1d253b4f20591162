//! The AWS side: DescribeJobDefinitions/RegisterJobDefinition and DescribeRule/ListTargetsByRule/
//! PutRule/PutTargets/RemoveTargets.

use std::collections::BTreeMap;

use aws_sdk_batch::config::http::HttpResponse;
use aws_sdk_batch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_batch::types as bt;
use aws_sdk_eventbridge::types as et;

use super::DeployError;
use super::artefacts::{
    BatchParameters, ContainerProperties, EvaluateOnExit, InputTransformerRequest,
    JobDefinitionRequest, KeyValue, MountPoint, PutRuleRequest, PutTargetsRequest,
    ResourceRequirement, RetryStrategy, Secret, TargetRequest, Timeout, Volume,
};

pub(super) struct Clients {
    batch: aws_sdk_batch::Client,
    events: aws_sdk_eventbridge::Client,
}

/// Maps an SDK error: no answer, a 5xx or an unreadable answer is 69; a refusal (4xx) is 78.
fn classify<E>(
    operation: &'static str,
    resource: &str,
    err: SdkError<E, HttpResponse>,
) -> DeployError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let refused = match &err {
        SdkError::ServiceError(se) => se.raw().status().as_u16() < 500,
        SdkError::ConstructionFailure(_) => true,
        _ => false,
    };
    let detail = match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(&err).to_string(),
    }
    .replace('\n', " ");
    let resource = resource.to_string();
    if refused {
        DeployError::Client {
            operation,
            resource,
            detail,
        }
    } else {
        DeployError::Unavailable {
            operation,
            resource,
            detail,
        }
    }
}

fn build_error(operation: &'static str, resource: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Client {
        operation,
        resource: resource.to_string(),
        detail: format!("cannot build the request: {e}"),
    }
}

impl Clients {
    pub(super) fn new(config: &aws_config::SdkConfig) -> Self {
        Clients {
            batch: aws_sdk_batch::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
        }
    }

    /// The ARN of the job queue named `name`.
    pub(super) async fn job_queue_arn(&self, name: &str) -> Result<String, DeployError> {
        let out = self
            .batch
            .describe_job_queues()
            .job_queues(name)
            .send()
            .await
            .map_err(|e| classify("DescribeJobQueues", name, e))?;
        out.job_queues()
            .iter()
            .find_map(|q| q.job_queue_arn().map(str::to_string))
            .ok_or_else(|| DeployError::Client {
                operation: "DescribeJobQueues",
                resource: name.to_string(),
                detail: "no such job queue".into(),
            })
    }

    /// The latest ACTIVE revision of a job definition name.
    async fn latest_active(&self, name: &str) -> Result<Option<bt::JobDefinition>, DeployError> {
        let mut latest: Option<bt::JobDefinition> = None;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .batch
                .describe_job_definitions()
                .job_definition_name(name)
                .status("ACTIVE")
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeJobDefinitions", name, e))?;
            for jd in out.job_definitions() {
                let active = jd.status().is_none_or(|s| s.eq_ignore_ascii_case("ACTIVE"));
                if active
                    && jd.job_definition_name() == Some(name)
                    && latest
                        .as_ref()
                        .is_none_or(|l| jd.revision().unwrap_or(0) > l.revision().unwrap_or(0))
                {
                    latest = Some(jd.clone());
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(latest)
    }

    /// Registers `req` unless the latest ACTIVE revision already says the same.
    pub(super) async fn deploy_job_definition(
        &self,
        req: &JobDefinitionRequest,
    ) -> Result<(&'static str, i32), DeployError> {
        let name = req.job_definition_name.as_str();
        let wanted = req.clone().normalized();
        if let Some(existing) = self.latest_active(name).await?
            && let Some(have) = from_sdk(&existing)
            && have.normalized() == wanted
        {
            return Ok(("unchanged", existing.revision().unwrap_or(0)));
        }
        let out = self
            .batch
            .register_job_definition()
            .job_definition_name(name)
            .r#type(bt::JobDefinitionType::from(req.kind.as_str()))
            .set_parameters(Some(req.parameters.clone().into_iter().collect()))
            .container_properties(container_to_sdk(&req.container_properties))
            .retry_strategy(
                bt::RetryStrategy::builder()
                    .attempts(req.retry_strategy.attempts)
                    .set_evaluate_on_exit(Some(
                        req.retry_strategy
                            .evaluate_on_exit
                            .iter()
                            .map(|r| {
                                bt::EvaluateOnExit::builder()
                                    .set_on_exit_code(r.on_exit_code.clone())
                                    .set_on_status_reason(r.on_status_reason.clone())
                                    .set_on_reason(r.on_reason.clone())
                                    .action(bt::RetryAction::from(r.action.as_str()))
                                    .build()
                            })
                            .collect(),
                    ))
                    .build(),
            )
            .timeout(
                bt::JobTimeout::builder()
                    .attempt_duration_seconds(req.timeout.attempt_duration_seconds)
                    .build(),
            )
            .propagate_tags(req.propagate_tags)
            .set_tags(Some(req.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| classify("RegisterJobDefinition", name, e))?;
        Ok(("registered", out.revision().unwrap_or(0)))
    }

    /// Puts the rule and its targets unless they already are as described. Returns
    /// `created`, `updated` or `unchanged`.
    pub(super) async fn deploy_rule(
        &self,
        rule: &PutRuleRequest,
        targets: &PutTargetsRequest,
    ) -> Result<&'static str, DeployError> {
        let name = rule.name.as_str();
        let existing = match self.events.describe_rule().name(name).send().await {
            Ok(out) => Some(out),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(classify("DescribeRule", name, e)),
        };
        let mut stale_ids = Vec::new();
        if let Some(have) = &existing {
            let have_targets = self.list_targets(name).await?;
            let same_rule = have.description().unwrap_or("") == rule.description
                && have.state().map(|s| s.as_str()) == Some(rule.state.as_str())
                && have.schedule_expression() == rule.schedule_expression.as_deref()
                && same_json(have.event_pattern(), rule.event_pattern.as_deref());
            let wanted: BTreeMap<&str, &TargetRequest> =
                targets.targets.iter().map(|t| (t.id.as_str(), t)).collect();
            let mut same_targets = have_targets.len() == wanted.len();
            for t in &have_targets {
                let id = t.id();
                match (wanted.get(id), target_from_sdk(t)) {
                    (Some(w), Some(h)) if **w == h => {}
                    (Some(_), _) => same_targets = false,
                    (None, _) => {
                        same_targets = false;
                        stale_ids.push(id.to_string());
                    }
                }
            }
            if same_rule && same_targets {
                return Ok("unchanged");
            }
        }
        let mut put = self
            .events
            .put_rule()
            .name(name)
            .description(&rule.description)
            .state(et::RuleState::from(rule.state.as_str()));
        if let Some(p) = &rule.event_pattern {
            put = put.event_pattern(p);
        }
        if let Some(s) = &rule.schedule_expression {
            put = put.schedule_expression(s);
        }
        put.send().await.map_err(|e| classify("PutRule", name, e))?;
        let mut sdk_targets = Vec::new();
        for t in &targets.targets {
            sdk_targets.push(target_to_sdk(t).map_err(|e| build_error("PutTargets", name, e))?);
        }
        let out = self
            .events
            .put_targets()
            .rule(name)
            .set_targets(Some(sdk_targets))
            .send()
            .await
            .map_err(|e| classify("PutTargets", name, e))?;
        if out.failed_entry_count() > 0 {
            let detail = out
                .failed_entries()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {} {}",
                        f.target_id().unwrap_or("?"),
                        f.error_code().unwrap_or(""),
                        f.error_message().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(DeployError::Client {
                operation: "PutTargets",
                resource: name.to_string(),
                detail,
            });
        }
        if !stale_ids.is_empty() {
            self.events
                .remove_targets()
                .rule(name)
                .set_ids(Some(stale_ids))
                .send()
                .await
                .map_err(|e| classify("RemoveTargets", name, e))?;
        }
        Ok(if existing.is_some() {
            "updated"
        } else {
            "created"
        })
    }

    async fn list_targets(&self, rule: &str) -> Result<Vec<et::Target>, DeployError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .events
                .list_targets_by_rule()
                .rule(rule)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("ListTargetsByRule", rule, e))?;
            all.extend(out.targets().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(all)
    }
}

/// Two optional JSON documents with the same content.
fn same_json(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            match (
                serde_json::from_str::<serde_json::Value>(a),
                serde_json::from_str::<serde_json::Value>(b),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        _ => false,
    }
}

fn container_to_sdk(cp: &ContainerProperties) -> bt::ContainerProperties {
    bt::ContainerProperties::builder()
        .image(&cp.image)
        .set_command(Some(cp.command.clone()))
        .set_environment(Some(
            cp.environment
                .iter()
                .map(|kv| {
                    bt::KeyValuePair::builder()
                        .name(&kv.name)
                        .value(&kv.value)
                        .build()
                })
                .collect(),
        ))
        .set_secrets((!cp.secrets.is_empty()).then(|| {
            cp.secrets
                .iter()
                .map(|s| {
                    bt::Secret::builder()
                        .name(&s.name)
                        .value_from(&s.value_from)
                        .build()
                })
                .collect()
        }))
        .set_execution_role_arn(cp.execution_role_arn.clone())
        .set_job_role_arn(cp.job_role_arn.clone())
        .user(&cp.user)
        .readonly_root_filesystem(cp.readonly_root_filesystem)
        .set_volumes(Some(
            cp.volumes
                .iter()
                .map(|v| bt::Volume::builder().name(&v.name).build())
                .collect(),
        ))
        .set_mount_points(Some(
            cp.mount_points
                .iter()
                .map(|m| {
                    bt::MountPoint::builder()
                        .source_volume(&m.source_volume)
                        .container_path(&m.container_path)
                        .read_only(m.read_only)
                        .build()
                })
                .collect(),
        ))
        .set_resource_requirements(Some(
            cp.resource_requirements
                .iter()
                .map(|r| {
                    bt::ResourceRequirement::builder()
                        .r#type(bt::ResourceType::from(r.kind.as_str()))
                        .value(&r.value)
                        .build()
                })
                .collect(),
        ))
        .build()
}

/// A described revision in request form, or `None` when it has something deploy does not
/// manage (then it never equals a request and a new revision is registered).
fn from_sdk(jd: &bt::JobDefinition) -> Option<JobDefinitionRequest> {
    let cp = jd.container_properties()?;
    let volumes = cp
        .volumes()
        .iter()
        .map(|v| {
            let plain = v.host().is_none_or(|h| h.source_path().is_none())
                && v.efs_volume_configuration().is_none();
            plain.then(|| Volume {
                name: v.name().unwrap_or("").to_string(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let retry = jd.retry_strategy()?;
    Some(JobDefinitionRequest {
        job_definition_name: jd.job_definition_name()?.to_string(),
        kind: jd.r#type()?.to_string(),
        parameters: jd
            .parameters()
            .map(|p| p.clone().into_iter().collect())
            .unwrap_or_default(),
        container_properties: ContainerProperties {
            image: cp.image()?.to_string(),
            command: cp.command().to_vec(),
            environment: cp
                .environment()
                .iter()
                .map(|kv| KeyValue {
                    name: kv.name().unwrap_or("").to_string(),
                    value: kv.value().unwrap_or("").to_string(),
                })
                .collect(),
            secrets: cp
                .secrets()
                .iter()
                .map(|s| Secret {
                    name: s.name().unwrap_or("").to_string(),
                    value_from: s.value_from().unwrap_or("").to_string(),
                })
                .collect(),
            execution_role_arn: cp
                .execution_role_arn()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            job_role_arn: cp
                .job_role_arn()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            user: cp.user().unwrap_or("").to_string(),
            readonly_root_filesystem: cp.readonly_root_filesystem().unwrap_or(false),
            volumes,
            mount_points: cp
                .mount_points()
                .iter()
                .map(|m| MountPoint {
                    source_volume: m.source_volume().unwrap_or("").to_string(),
                    container_path: m.container_path().unwrap_or("").to_string(),
                    read_only: m.read_only().unwrap_or(false),
                })
                .collect(),
            resource_requirements: cp
                .resource_requirements()
                .iter()
                .map(|r| ResourceRequirement {
                    kind: r
                        .r#type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    value: r.value().unwrap_or("").to_string(),
                })
                .collect(),
        },
        retry_strategy: RetryStrategy {
            attempts: retry.attempts().unwrap_or(1),
            evaluate_on_exit: retry
                .evaluate_on_exit()
                .iter()
                .map(|r| EvaluateOnExit {
                    on_exit_code: r.on_exit_code().map(str::to_string),
                    on_status_reason: r.on_status_reason().map(str::to_string),
                    on_reason: r.on_reason().map(str::to_string),
                    action: r
                        .action()
                        .map(|a| a.as_str().to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        },
        timeout: Timeout {
            attempt_duration_seconds: jd.timeout()?.attempt_duration_seconds()?,
        },
        propagate_tags: jd.propagate_tags().unwrap_or(false),
        tags: jd
            .tags()
            .map(|t| t.clone().into_iter().collect())
            .unwrap_or_default(),
    })
}

fn target_to_sdk(t: &TargetRequest) -> Result<et::Target, aws_sdk_eventbridge::error::BuildError> {
    et::Target::builder()
        .id(&t.id)
        .arn(&t.arn)
        .role_arn(&t.role_arn)
        .batch_parameters(
            et::BatchParameters::builder()
                .job_definition(&t.batch_parameters.job_definition)
                .job_name(&t.batch_parameters.job_name)
                .build()?,
        )
        .input_transformer(
            et::InputTransformer::builder()
                .set_input_paths_map(Some(
                    t.input_transformer
                        .input_paths_map
                        .clone()
                        .into_iter()
                        .collect(),
                ))
                .input_template(&t.input_transformer.input_template)
                .build()?,
        )
        .build()
}

fn target_from_sdk(t: &et::Target) -> Option<TargetRequest> {
    let bp = t.batch_parameters()?;
    let it = t.input_transformer()?;
    Some(TargetRequest {
        id: t.id().to_string(),
        arn: t.arn().to_string(),
        role_arn: t.role_arn()?.to_string(),
        batch_parameters: BatchParameters {
            job_definition: bp.job_definition().to_string(),
            job_name: bp.job_name().to_string(),
        },
        input_transformer: InputTransformerRequest {
            input_paths_map: it
                .input_paths_map()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
            input_template: it.input_template().to_string(),
        },
    })
}
