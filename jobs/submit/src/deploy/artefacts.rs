//! The artefacts under `deploy/`: loading, checking, placeholder substitution and the API requests
//! they become.
//!
//! Every check the JSON Schemas in `schemas/` express is repeated here (the binary carries no
//! JSON Schema validator), so `etl-submit deploy` refuses the same files the schema test does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DeployError;

/// The jobs a job definition may be for; `jobDefinitionName` is `etl-{job}`.
pub const KNOWN_JOBS: [&str; 4] = ["data", "pmtiles", "events", "retention"];
/// The profiles every job definition must size.
pub const PROFILES: [&str; 2] = ["dev-test", "prod"];
/// The first word of a command: the job the image entrypoint runs.
const ENTRYPOINT_JOBS: [&str; 4] = ["data", "pmtiles", "events", "tiles"];
/// Exit codes every job definition must retry (see the README's exit codes).
const RETRIED_EXIT_CODES: [&str; 3] = ["69", "75", "143"];
/// Batch accepts at most this many `evaluateOnExit` rules.
const MAX_RETRY_RULES: usize = 5;
/// Placeholders an artefact may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "IMAGE",
    "PROFILE",
    "UPLOAD_BUCKET",
    "JOB_QUEUE_ARN",
    "EVENTS_ROLE_ARN",
    "DATABASE_SECRET_ARN",
    "EXECUTION_ROLE_ARN",
    "JOB_ROLE_ARN",
];
/// The placeholders a `containerProperties.secrets[].valueFrom` may be (never a literal ARN).
pub const SECRET_PLACEHOLDERS: [&str; 1] = ["${DATABASE_SECRET_ARN}"];
/// What `containerProperties.executionRoleArn` must be, if present.
const EXECUTION_ROLE_PLACEHOLDER: &str = "${EXECUTION_ROLE_ARN}";
/// What `containerProperties.jobRoleArn` must be, if present.
const JOB_ROLE_PLACEHOLDER: &str = "${JOB_ROLE_ARN}";

// ---------------------------------------------------------------------------------------------
// Job definitions

/// `deploy/job-definitions/{job}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobDefinitionFile {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub job: String,
    pub job_definition_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub parameters: BTreeMap<String, String>,
    pub container_properties: ContainerProperties,
    pub retry_strategy: RetryStrategy,
    pub timeout: Timeout,
    pub propagate_tags: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub profiles: BTreeMap<String, Profile>,
}

/// Per-profile sizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    pub vcpus: u32,
    /// MiB.
    pub memory: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_duration_seconds: Option<i32>,
}

/// `containerProperties`, in the artefact and in the request (where `resourceRequirements` is
/// filled from the profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerProperties {
    pub image: String,
    pub command: Vec<String>,
    pub environment: Vec<KeyValue>,
    /// Secrets Manager / SSM values ECS puts in the environment (fetched with the execution role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Secret>,
    /// The role ECS uses to pull the image and fetch `secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// The role the job's own AWS calls (S3, ...) run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_role_arn: Option<String>,
    pub user: String,
    pub readonly_root_filesystem: bool,
    pub volumes: Vec<Volume>,
    pub mount_points: Vec<MountPoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_requirements: Vec<ResourceRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

/// One of `containerProperties.secrets`: the env var `name` gets the value of `valueFrom`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequirement {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryStrategy {
    pub attempts: i32,
    pub evaluate_on_exit: Vec<EvaluateOnExit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EvaluateOnExit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exit_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reason: Option<String>,
    pub action: String,
}

impl EvaluateOnExit {
    fn is_catch_all_exit(&self) -> bool {
        self.on_reason.as_deref() == Some("*")
            && self.on_exit_code.is_none()
            && self.on_status_reason.is_none()
            && self.action.eq_ignore_ascii_case("EXIT")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeout {
    pub attempt_duration_seconds: i32,
}

/// A `RegisterJobDefinition` request, in the API's JSON shape (what `--dry-run` prints and what
/// the latest ACTIVE revision is compared with).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDefinitionRequest {
    pub job_definition_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub parameters: BTreeMap<String, String>,
    pub container_properties: ContainerProperties,
    pub retry_strategy: RetryStrategy,
    pub timeout: Timeout,
    pub propagate_tags: bool,
    pub tags: BTreeMap<String, String>,
}

impl JobDefinitionRequest {
    /// The form two requests are compared in: environment and secrets sorted, actions
    /// upper-case.
    pub fn normalized(mut self) -> Self {
        self.container_properties.environment.sort();
        self.container_properties.secrets.sort();
        for rule in &mut self.retry_strategy.evaluate_on_exit {
            rule.action = rule.action.to_ascii_uppercase();
        }
        self
    }
}

fn check_job_definition(jd: &JobDefinitionFile) -> Result<(), String> {
    if !KNOWN_JOBS.contains(&jd.job.as_str()) {
        return Err(format!(
            "job {:?} is not one of {}",
            jd.job,
            KNOWN_JOBS.join(", ")
        ));
    }
    let expected = format!("etl-{}", jd.job);
    if jd.job_definition_name != expected {
        return Err(format!(
            "jobDefinitionName {:?} must be {expected:?}",
            jd.job_definition_name
        ));
    }
    if jd.kind != "container" {
        return Err(format!("type {:?} must be \"container\"", jd.kind));
    }
    let cp = &jd.container_properties;
    if cp.image != "${IMAGE}" {
        return Err("containerProperties.image must be the ${IMAGE} placeholder".into());
    }
    match cp.command.first() {
        Some(word) if ENTRYPOINT_JOBS.contains(&word.as_str()) => {}
        other => {
            return Err(format!(
                "containerProperties.command must start with one of {} (got {other:?})",
                ENTRYPOINT_JOBS.join(", ")
            ));
        }
    }
    for arg in &cp.command {
        if let Some(name) = arg.strip_prefix("Ref::")
            && !jd.parameters.contains_key(name)
        {
            return Err(format!(
                "containerProperties.command uses {arg} but parameters has no default for {name:?}"
            ));
        }
    }
    if !cp
        .environment
        .iter()
        .any(|kv| kv.name == "ETL_PROFILE" && kv.value == "${PROFILE}")
    {
        return Err(
            "containerProperties.environment must set ETL_PROFILE to the ${PROFILE} placeholder"
                .into(),
        );
    }
    for (i, secret) in cp.secrets.iter().enumerate() {
        if !is_env_name(&secret.name) {
            return Err(format!(
                "containerProperties.secrets[{i}].name {:?} must match ^[A-Za-z_][A-Za-z0-9_]*$",
                secret.name
            ));
        }
        if !SECRET_PLACEHOLDERS.contains(&secret.value_from.as_str()) {
            return Err(format!(
                "containerProperties.secrets[{i}].valueFrom must be one of the placeholders {} (never a literal ARN)",
                SECRET_PLACEHOLDERS.join(", ")
            ));
        }
    }
    if cp
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| r != EXECUTION_ROLE_PLACEHOLDER)
    {
        return Err(format!(
            "containerProperties.executionRoleArn must be the {EXECUTION_ROLE_PLACEHOLDER} placeholder"
        ));
    }
    if cp
        .job_role_arn
        .as_deref()
        .is_some_and(|r| r != JOB_ROLE_PLACEHOLDER)
    {
        return Err(format!(
            "containerProperties.jobRoleArn must be the {JOB_ROLE_PLACEHOLDER} placeholder"
        ));
    }
    if !cp.secrets.is_empty() && cp.execution_role_arn.is_none() {
        return Err(
            "containerProperties.secrets needs containerProperties.executionRoleArn (ECS fetches secrets with it)"
                .into(),
        );
    }
    let non_root = cp
        .user
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .is_some_and(|(u, g)| u != 0 && g != 0);
    if !non_root {
        return Err(format!(
            "containerProperties.user {:?} must be a non-root numeric uid:gid (e.g. \"10001:10001\")",
            cp.user
        ));
    }
    if !cp.readonly_root_filesystem {
        return Err("containerProperties.readonlyRootFilesystem must be true".into());
    }
    if !cp.volumes.iter().any(|v| v.name == "scratch") {
        return Err("containerProperties.volumes must have the \"scratch\" volume".into());
    }
    if !cp
        .mount_points
        .iter()
        .any(|m| m.source_volume == "scratch" && m.container_path == "/work/tmp" && !m.read_only)
    {
        return Err(
            "containerProperties.mountPoints must mount \"scratch\" writable at /work/tmp".into(),
        );
    }
    for m in &cp.mount_points {
        if !cp.volumes.iter().any(|v| v.name == m.source_volume) {
            return Err(format!(
                "containerProperties.mountPoints names volume {:?}, which volumes lacks",
                m.source_volume
            ));
        }
    }
    if !cp.resource_requirements.is_empty() {
        return Err(
            "containerProperties.resourceRequirements comes from profiles; remove it".into(),
        );
    }
    check_retry(&jd.retry_strategy)?;
    if jd.timeout.attempt_duration_seconds < 60 {
        return Err("timeout.attemptDurationSeconds must be at least 60".into());
    }
    if !jd.propagate_tags {
        return Err("propagateTags must be true".into());
    }
    for p in PROFILES {
        let Some(profile) = jd.profiles.get(p) else {
            return Err(format!("profiles has no {p:?}"));
        };
        if profile.vcpus == 0 || profile.memory < 512 {
            return Err(format!(
                "profiles.{p}: vcpus must be >= 1 and memory >= 512 MiB"
            ));
        }
        if profile.attempt_duration_seconds.is_some_and(|s| s < 60) {
            return Err(format!(
                "profiles.{p}.attemptDurationSeconds must be at least 60"
            ));
        }
    }
    if let Some(other) = jd.profiles.keys().find(|k| !PROFILES.contains(&k.as_str())) {
        return Err(format!("profiles has unknown profile {other:?}"));
    }
    Ok(())
}

/// An environment variable name: `^[A-Za-z_][A-Za-z0-9_]*$`.
fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_retry(rs: &RetryStrategy) -> Result<(), String> {
    if !(2..=10).contains(&rs.attempts) {
        return Err(format!(
            "retryStrategy.attempts {} must be 2..=10",
            rs.attempts
        ));
    }
    let rules = &rs.evaluate_on_exit;
    if rules.len() > MAX_RETRY_RULES {
        return Err(format!(
            "retryStrategy.evaluateOnExit has {} rules; Batch accepts at most {MAX_RETRY_RULES}",
            rules.len()
        ));
    }
    match rules.last() {
        Some(last) if last.is_catch_all_exit() => {}
        _ => {
            return Err(
                "retryStrategy.evaluateOnExit must end with the catch-all {\"onReason\": \"*\", \"action\": \"EXIT\"}"
                    .into(),
            );
        }
    }
    for (i, rule) in rules[..rules.len() - 1].iter().enumerate() {
        if rule.action != "RETRY" {
            return Err(format!(
                "retryStrategy.evaluateOnExit[{i}]: only the last rule may EXIT; this one must RETRY"
            ));
        }
        if rule.on_exit_code.is_none()
            && rule.on_status_reason.is_none()
            && rule.on_reason.is_none()
        {
            return Err(format!(
                "retryStrategy.evaluateOnExit[{i}] matches nothing (needs onExitCode, onStatusReason or onReason)"
            ));
        }
        if let Some(code) = &rule.on_exit_code {
            let digits = code.strip_suffix('*').unwrap_or(code);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "retryStrategy.evaluateOnExit[{i}].onExitCode {code:?} must be digits with an optional trailing *"
                ));
            }
        }
    }
    for code in RETRIED_EXIT_CODES {
        if !rules
            .iter()
            .any(|r| r.on_exit_code.as_deref() == Some(code) && r.action == "RETRY")
        {
            return Err(format!(
                "retryStrategy.evaluateOnExit must RETRY exit code {code}"
            ));
        }
    }
    Ok(())
}

impl JobDefinitionFile {
    /// The request for `profile`, names prefixed with `prefix` (placeholders already substituted).
    pub fn request(&self, profile: &str, prefix: &str) -> Result<JobDefinitionRequest, String> {
        let sizing = self
            .profiles
            .get(profile)
            .ok_or_else(|| format!("profiles has no {profile:?}"))?;
        let mut container_properties = self.container_properties.clone();
        container_properties.resource_requirements = vec![
            ResourceRequirement {
                kind: "VCPU".into(),
                value: sizing.vcpus.to_string(),
            },
            ResourceRequirement {
                kind: "MEMORY".into(),
                value: sizing.memory.to_string(),
            },
        ];
        Ok(JobDefinitionRequest {
            job_definition_name: format!("{prefix}{}", self.job_definition_name),
            kind: self.kind.clone(),
            parameters: self.parameters.clone(),
            container_properties,
            retry_strategy: self.retry_strategy.clone(),
            timeout: Timeout {
                attempt_duration_seconds: sizing
                    .attempt_duration_seconds
                    .unwrap_or(self.timeout.attempt_duration_seconds),
            },
            propagate_tags: self.propagate_tags,
            tags: self.tags.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// EventBridge rules

/// `deploy/rules/{name}.json`: PutRule fields plus the targets, in the EventBridge API's casing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RuleFile {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub name: String,
    pub description: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    pub targets: Vec<TargetFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TargetFile {
    pub id: String,
    pub arn: String,
    pub role_arn: String,
    pub batch_parameters: BatchParameters,
    pub input_transformer: InputTransformerFile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct BatchParameters {
    pub job_definition: String,
    pub job_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct InputTransformerFile {
    pub input_paths_map: BTreeMap<String, String>,
    /// A JSON object; a string value `"<name>"` naming an `InputPathsMap` key is sent unquoted.
    pub input_template: Value,
}

/// A `PutRule` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRuleRequest {
    pub name: String,
    pub description: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
}

/// One target of a `PutTargets` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetRequest {
    pub id: String,
    pub arn: String,
    pub role_arn: String,
    pub batch_parameters: BatchParameters,
    pub input_transformer: InputTransformerRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputTransformerRequest {
    pub input_paths_map: BTreeMap<String, String>,
    pub input_template: String,
}

/// A `PutTargets` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutTargetsRequest {
    pub rule: String,
    pub targets: Vec<TargetRequest>,
}

fn check_rule(rule: &RuleFile) -> Result<(), String> {
    let name_ok = rule.name.len() <= 48
        && rule.name.starts_with("etl-")
        && rule
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(format!(
            "Name {:?} must match ^etl-[a-z0-9-]+$ and be at most 48 characters",
            rule.name
        ));
    }
    if rule.state != "ENABLED" && rule.state != "DISABLED" {
        return Err(format!(
            "State {:?} must be ENABLED or DISABLED",
            rule.state
        ));
    }
    match (&rule.event_pattern, &rule.schedule_expression) {
        (Some(pattern), None) => {
            if !pattern
                .as_object()
                .is_some_and(|o| o.contains_key("source"))
            {
                return Err("EventPattern must be an object with a source".into());
            }
        }
        (None, Some(schedule)) => {
            let ok = (schedule.starts_with("cron(") || schedule.starts_with("rate("))
                && schedule.ends_with(')');
            if !ok {
                return Err(format!(
                    "ScheduleExpression {schedule:?} must be cron(...) or rate(...)"
                ));
            }
        }
        _ => return Err("exactly one of EventPattern and ScheduleExpression is needed".into()),
    }
    if rule.targets.is_empty() || rule.targets.len() > 5 {
        return Err("Targets must have 1 to 5 targets".into());
    }
    for (i, t) in rule.targets.iter().enumerate() {
        if t.arn != "${JOB_QUEUE_ARN}" {
            return Err(format!(
                "Targets[{i}].Arn must be the ${{JOB_QUEUE_ARN}} placeholder"
            ));
        }
        if t.role_arn != "${EVENTS_ROLE_ARN}" {
            return Err(format!(
                "Targets[{i}].RoleArn must be the ${{EVENTS_ROLE_ARN}} placeholder"
            ));
        }
        let known = KNOWN_JOBS
            .iter()
            .any(|j| t.batch_parameters.job_definition == format!("etl-{j}"));
        if !known {
            return Err(format!(
                "Targets[{i}].BatchParameters.JobDefinition {:?} is not a known job definition",
                t.batch_parameters.job_definition
            ));
        }
        let it = &t.input_transformer;
        for (k, path) in &it.input_paths_map {
            if !path.starts_with('$') {
                return Err(format!(
                    "Targets[{i}].InputTransformer.InputPathsMap.{k} {path:?} must be a JSON path ($...)"
                ));
            }
        }
        if !it.input_template.is_object() {
            return Err(format!(
                "Targets[{i}].InputTransformer.InputTemplate must be a JSON object"
            ));
        }
        let mut used = Vec::new();
        collect_template_placeholders(&it.input_template, &mut used);
        for name in used {
            if !it.input_paths_map.contains_key(&name) {
                return Err(format!(
                    "Targets[{i}].InputTransformer.InputTemplate uses <{name}>, which InputPathsMap lacks"
                ));
            }
        }
    }
    Ok(())
}

/// Names of `"<name>"` string values in a template.
fn collect_template_placeholders(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
                out.push(name.to_string());
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_template_placeholders(i, out)),
        Value::Object(map) => map
            .values()
            .for_each(|i| collect_template_placeholders(i, out)),
        _ => {}
    }
}

/// The template as EventBridge wants it: compact JSON with `"<name>"` unquoted.
pub fn render_input_template(
    template: &Value,
    paths: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut s = serde_json::to_string(template).map_err(|e| e.to_string())?;
    for name in paths.keys() {
        s = s.replace(&format!("\"<{name}>\""), &format!("<{name}>"));
    }
    Ok(s)
}

impl RuleFile {
    /// The PutRule and PutTargets requests, names prefixed with `prefix`.
    pub fn requests(&self, prefix: &str) -> Result<(PutRuleRequest, PutTargetsRequest), String> {
        let name = format!("{prefix}{}", self.name);
        let event_pattern = match &self.event_pattern {
            Some(p) => Some(serde_json::to_string(p).map_err(|e| e.to_string())?),
            None => None,
        };
        let put_rule = PutRuleRequest {
            name: name.clone(),
            description: self.description.clone(),
            state: self.state.clone(),
            event_pattern,
            schedule_expression: self.schedule_expression.clone(),
        };
        let mut targets = Vec::new();
        for t in &self.targets {
            targets.push(TargetRequest {
                id: t.id.clone(),
                arn: t.arn.clone(),
                role_arn: t.role_arn.clone(),
                batch_parameters: BatchParameters {
                    job_definition: format!("{prefix}{}", t.batch_parameters.job_definition),
                    job_name: t.batch_parameters.job_name.clone(),
                },
                input_transformer: InputTransformerRequest {
                    input_paths_map: t.input_transformer.input_paths_map.clone(),
                    input_template: render_input_template(
                        &t.input_transformer.input_template,
                        &t.input_transformer.input_paths_map,
                    )?,
                },
            });
        }
        Ok((
            put_rule,
            PutTargetsRequest {
                rule: name,
                targets,
            },
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Every artefact under a `deploy/` directory, checked (placeholders not yet substituted).
#[derive(Debug, Clone)]
pub struct Artefacts {
    pub job_definitions: Vec<(PathBuf, Value)>,
    pub rules: Vec<(PathBuf, Value)>,
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>, DeployError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DeployError::Artefact {
        file: dir.display().to_string(),
        problem: format!("cannot read the directory: {e}"),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| DeployError::Artefact {
                file: dir.display().to_string(),
                problem: format!("cannot read the directory: {e}"),
            })?
            .path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_json(path: &Path) -> Result<Value, DeployError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| artefact(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| artefact(path, format!("not valid JSON: {e}")))
}

fn artefact(path: &Path, problem: impl Into<String>) -> DeployError {
    DeployError::Artefact {
        file: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Parses and checks one job definition artefact.
pub fn check_job_definition_value(
    path: &Path,
    v: &Value,
) -> Result<JobDefinitionFile, DeployError> {
    check_placeholder_names(path, v)?;
    let jd: JobDefinitionFile =
        serde_json::from_value(v.clone()).map_err(|e| artefact(path, e.to_string()))?;
    check_job_definition(&jd).map_err(|p| artefact(path, p))?;
    Ok(jd)
}

/// Parses and checks one rule artefact.
pub fn check_rule_value(path: &Path, v: &Value) -> Result<RuleFile, DeployError> {
    check_placeholder_names(path, v)?;
    let rule: RuleFile =
        serde_json::from_value(v.clone()).map_err(|e| artefact(path, e.to_string()))?;
    check_rule(&rule).map_err(|p| artefact(path, p))?;
    Ok(rule)
}

/// Loads `dir/job-definitions/*.json` and `dir/rules/*.json` and checks each; the first bad file
/// is the error. Any other file or directory under `dir` is refused too, so nothing lies there
/// unchecked.
pub fn load_dir(dir: &Path) -> Result<Artefacts, DeployError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| artefact(dir, format!("cannot read the directory: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| artefact(dir, format!("cannot read the directory: {e}")))?;
        let name = entry.file_name();
        if name != "job-definitions" && name != "rules" {
            return Err(artefact(
                &entry.path(),
                "unexpected entry; deploy/ holds only job-definitions/ and rules/",
            ));
        }
    }
    let mut out = Artefacts {
        job_definitions: Vec::new(),
        rules: Vec::new(),
    };
    let mut names = Vec::new();
    for path in json_files(&dir.join("job-definitions"))? {
        let v = read_json(&path)?;
        let jd = check_job_definition_value(&path, &v)?;
        if names.contains(&jd.job_definition_name) {
            return Err(artefact(
                &path,
                format!("a second definition of {}", jd.job_definition_name),
            ));
        }
        names.push(jd.job_definition_name);
        out.job_definitions.push((path, v));
    }
    let mut rule_names = Vec::new();
    for path in json_files(&dir.join("rules"))? {
        let v = read_json(&path)?;
        let rule = check_rule_value(&path, &v)?;
        for t in &rule.targets {
            if !names.contains(&t.batch_parameters.job_definition) {
                return Err(artefact(
                    &path,
                    format!(
                        "targets job definition {}, which deploy/job-definitions/ does not define",
                        t.batch_parameters.job_definition
                    ),
                ));
            }
        }
        if rule_names.contains(&rule.name) {
            return Err(artefact(
                &path,
                format!("a second rule named {}", rule.name),
            ));
        }
        rule_names.push(rule.name);
        out.rules.push((path, v));
    }
    if out.job_definitions.is_empty() {
        return Err(artefact(
            &dir.join("job-definitions"),
            "no job definitions found",
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Placeholders

fn placeholders_in(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

fn walk_strings<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| walk_strings(i, f)),
        Value::Object(map) => {
            for (k, v) in map {
                f(k);
                walk_strings(v, f);
            }
        }
        _ => {}
    }
}

fn check_placeholder_names(path: &Path, v: &Value) -> Result<(), DeployError> {
    let mut unknown = None;
    walk_strings(v, &mut |s| {
        for name in placeholders_in(s) {
            if unknown.is_none() && !PLACEHOLDERS.contains(&name) {
                unknown = Some(name.to_string());
            }
        }
    });
    match unknown {
        Some(name) => Err(artefact(
            path,
            format!(
                "unknown placeholder ${{{name}}} (known: {})",
                PLACEHOLDERS.map(|p| format!("${{{p}}}")).join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Replaces every `${NAME}` with its value; a placeholder without a value is a usage error
/// naming `flag_for(NAME)`.
pub fn substitute(
    path: &Path,
    v: &Value,
    values: &BTreeMap<&str, Option<String>>,
    flag_for: &dyn Fn(&str) -> String,
) -> Result<Value, DeployError> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(path, s, values, flag_for)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| substitute(path, i, values, flag_for))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(
                    substitute_str(path, k, values, flag_for)?,
                    substitute(path, v, values, flag_for)?,
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn substitute_str(
    path: &Path,
    s: &str,
    values: &BTreeMap<&str, Option<String>>,
    flag_for: &dyn Fn(&str) -> String,
) -> Result<String, DeployError> {
    let mut out = s.to_string();
    for name in placeholders_in(s) {
        let value = values.get(name).and_then(|v| v.as_deref()).ok_or_else(|| {
            DeployError::Usage(format!(
                "{} uses ${{{name}}}: pass {}",
                path.display(),
                flag_for(name)
            ))
        })?;
        out = out.replace(&format!("${{{name}}}"), value);
    }
    Ok(out)
}
