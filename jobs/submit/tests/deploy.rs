//! `etl-submit deploy`: the artefacts under `deploy/` against their JSON Schemas (and the same
//! checks in the binary), and deployments against moto (started by `bash scripts/test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etl_submit::deploy::artefacts;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    repo().join("deploy")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    let schema = read(&repo().join("schemas").join(schema_file));
    assert!(
        jsonschema::draft202012::meta::is_valid(&schema),
        "schemas/{schema_file} is not a valid draft 2020-12 schema"
    );
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("schemas/{schema_file}: {e}"))
}

fn schema_errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_artefact_satisfies_its_schema_and_the_binary_checks() {
    let jd = validator("batch-job-definition.json");
    let rule = validator("eventbridge-rule.json");
    let mut files = Vec::new();
    all_files(&deploy_dir(), &mut files);
    files.sort();
    let mut jobs = Vec::new();
    let mut rules = 0;
    for path in &files {
        let parent = path.parent().and_then(|p| p.file_name()).unwrap();
        let v = read(path);
        let errors = if parent == "job-definitions" {
            jobs.push(v["job"].as_str().unwrap().to_string());
            schema_errors(&jd, &v)
        } else if parent == "rules" {
            rules += 1;
            schema_errors(&rule, &v)
        } else {
            panic!("{}: no schema applies to it", path.display());
        };
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    jobs.sort();
    assert_eq!(jobs, ["data", "events", "pmtiles", "retention"]);
    assert_eq!(rules, 3);
    let loaded = artefacts::load_dir(&deploy_dir()).unwrap();
    assert_eq!(loaded.job_definitions.len(), 4);
    assert_eq!(loaded.rules.len(), 3);
}

/// `mutate` breaks a copy of `deploy/{file}`: both the schema and the binary must refuse it.
fn assert_rejected(file: &str, what: &str, mutate: impl FnOnce(&mut Value)) {
    let path = deploy_dir().join(file);
    let mut v = read(&path);
    mutate(&mut v);
    let (schema, is_rule) = if file.starts_with("rules/") {
        ("eventbridge-rule.json", true)
    } else {
        ("batch-job-definition.json", false)
    };
    let errors = schema_errors(&validator(schema), &v);
    assert!(
        !errors.is_empty(),
        "{what}: the schema accepted {}",
        serde_json::to_string_pretty(&v).unwrap()
    );
    let checked = if is_rule {
        artefacts::check_rule_value(&path, &v).map(|_| ())
    } else {
        artefacts::check_job_definition_value(&path, &v).map(|_| ())
    };
    let err = checked.expect_err(what);
    assert_eq!(err.exit_kind().code(), 65, "{what}: {err}");
    assert!(err.to_string().contains(file), "{what}: {err}");
}

fn retry_rules(v: &mut Value) -> &mut Vec<Value> {
    v["retryStrategy"]["evaluateOnExit"].as_array_mut().unwrap()
}

#[test]
fn broken_job_definitions_are_rejected() {
    let f = "job-definitions/data.json";
    assert_rejected(f, "no catch-all", |v| {
        retry_rules(v).pop();
    });
    assert_rejected(f, "catch-all not last", |v| {
        let rules = retry_rules(v);
        let last = rules.pop().unwrap();
        rules.insert(0, last);
    });
    assert_rejected(f, "catch-all RETRYs", |v| {
        retry_rules(v).last_mut().unwrap()["action"] = json!("RETRY");
    });
    assert_rejected(f, "143 not retried", |v| {
        retry_rules(v).retain(|r| r["onExitCode"] != "143");
    });
    assert_rejected(f, "six rules", |v| {
        retry_rules(v).insert(0, json!({"onExitCode": "1", "action": "RETRY"}));
    });
    assert_rejected(f, "root user", |v| {
        v["containerProperties"]["user"] = json!("0:0")
    });
    assert_rejected(f, "root by name", |v| {
        v["containerProperties"]["user"] = json!("root")
    });
    assert_rejected(f, "no user", |v| {
        v["containerProperties"]
            .as_object_mut()
            .unwrap()
            .remove("user");
    });
    assert_rejected(f, "writable root", |v| {
        v["containerProperties"]["readonlyRootFilesystem"] = json!(false)
    });
    assert_rejected(f, "no scratch mount", |v| {
        v["containerProperties"]["mountPoints"] = json!([]);
    });
    assert_rejected(f, "hard-coded image", |v| {
        v["containerProperties"]["image"] = json!("tak-etl:latest")
    });
    assert_rejected(f, "unknown job", |v| {
        v["job"] = json!("export");
        v["jobDefinitionName"] = json!("etl-export");
    });
    assert_rejected(f, "no prod profile", |v| {
        v["profiles"].as_object_mut().unwrap().remove("prod");
    });
    assert_rejected(f, "literal secret ARN", |v| {
        v["containerProperties"]["secrets"][0]["valueFrom"] =
            json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:etl-db-AbCdEf")
    });
    assert_rejected(f, "secret without valueFrom", |v| {
        v["containerProperties"]["secrets"][0]
            .as_object_mut()
            .unwrap()
            .remove("valueFrom");
    });
    assert_rejected(f, "secret with a bad env name", |v| {
        v["containerProperties"]["secrets"][0]["name"] = json!("ETL-DATABASE-SECRET")
    });
    assert_rejected(f, "literal execution role ARN", |v| {
        v["containerProperties"]["executionRoleArn"] =
            json!("arn:aws:iam::123456789012:role/etl-execution")
    });
    assert_rejected(f, "literal job role ARN", |v| {
        v["containerProperties"]["jobRoleArn"] = json!("arn:aws:iam::123456789012:role/etl-job")
    });
    assert_rejected(f, "secrets without an execution role", |v| {
        v["containerProperties"]
            .as_object_mut()
            .unwrap()
            .remove("executionRoleArn");
    });
    assert_rejected(f, "unknown field", |v| v["privileged"] = json!(true));
    assert_rejected(f, "no timeout", |v| {
        v.as_object_mut().unwrap().remove("timeout");
    });
}

#[test]
fn broken_rules_are_rejected() {
    let f = "rules/import-object-created.json";
    assert_rejected(f, "hard-coded queue", |v| {
        v["Targets"][0]["Arn"] = json!("arn:aws:batch:us-east-1:1:job-queue/q")
    });
    assert_rejected(f, "unknown job definition", |v| {
        v["Targets"][0]["BatchParameters"]["JobDefinition"] = json!("etl-nope")
    });
    assert_rejected(f, "pattern and schedule", |v| {
        v["ScheduleExpression"] = json!("cron(0 3 * * ? *)")
    });
    assert_rejected(f, "neither pattern nor schedule", |v| {
        v.as_object_mut().unwrap().remove("EventPattern");
    });
    assert_rejected("rules/nightly-retention.json", "bad schedule", |v| {
        v["ScheduleExpression"] = json!("every night")
    });
    // Beyond the schema: the binary refuses a template placeholder the paths map lacks.
    let path = deploy_dir().join(f);
    let mut v = read(&path);
    v["Targets"][0]["InputTransformer"]["InputTemplate"]["Parameters"]["size"] = json!("<size>");
    let err = artefacts::check_rule_value(&path, &v).unwrap_err();
    assert!(err.to_string().contains("<size>"), "{err}");
}

#[test]
fn input_templates_send_placeholders_unquoted() {
    let loaded = artefacts::load_dir(&deploy_dir()).unwrap();
    let (path, raw) = loaded
        .rules
        .iter()
        .find(|(p, _)| p.ends_with("import-object-created.json"))
        .unwrap();
    let rule = artefacts::check_rule_value(path, raw).unwrap();
    let (_, targets) = rule.requests("").unwrap();
    let t = &targets.targets[0];
    assert_eq!(
        t.input_transformer.input_template,
        r#"{"Parameters":{"bucket":<bucket>,"key":<key>,"etag":<etag>,"sequencer":<sequencer>},"ContainerOverrides":{"Environment":[{"Name":"ETL_LOGICAL_TIME","Value":<time>}]}}"#
    );
    assert_eq!(
        t.input_transformer.input_paths_map["sequencer"],
        "$.detail.object.sequencer"
    );
    // What EventBridge makes of it for a sample event is the Batch SubmitJob input.
    let mut filled = t.input_transformer.input_template.clone();
    for (k, v) in [
        ("bucket", "up"),
        ("key", "import/a b.geojson"),
        ("etag", "e1"),
        ("sequencer", "0A"),
        ("time", "2026-01-01T00:00:00Z"),
    ] {
        filled = filled.replace(&format!("<{k}>"), &serde_json::to_string(v).unwrap());
    }
    let v: Value = serde_json::from_str(&filled).unwrap();
    assert_eq!(v["Parameters"]["key"], "import/a b.geojson");
    assert_eq!(
        v["ContainerOverrides"]["Environment"][0]["Value"],
        "2026-01-01T00:00:00Z"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary

fn etl_submit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-submit"));
    cmd.arg("deploy").args(args).current_dir(repo());
    for var in [
        "ETL_IMAGE",
        "ETL_JOB_QUEUE",
        "ETL_UPLOAD_BUCKET",
        "ETL_EVENTS_ROLE_ARN",
        "ETL_DATABASE_SECRET_ARN",
        "ETL_EXECUTION_ROLE_ARN",
        "ETL_JOB_ROLE_ARN",
    ] {
        cmd.env_remove(var);
    }
    // A shell that submits jobs has the submission's queue set; deploy must not care.
    cmd.env("ETL_BATCH_QUEUE", "prod-queue");
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const QUEUE: &str = "arn:aws:batch:us-east-1:123456789012:job-queue/etl";
const ROLE: &str = "arn:aws:iam::123456789012:role/etl-events";
const DATABASE_SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:etl-db-AbCdEf";
const EXECUTION_ROLE: &str = "arn:aws:iam::123456789012:role/etl-execution";
const JOB_ROLE: &str = "arn:aws:iam::123456789012:role/etl-job";

fn full_args<'a>(prefix: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--image",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tak-etl:test",
        "--queue",
        QUEUE,
        "--upload-bucket",
        "tak-uploads",
        "--events-role-arn",
        ROLE,
        "--database-secret-arn",
        DATABASE_SECRET,
        "--execution-role-arn",
        EXECUTION_ROLE,
        "--job-role-arn",
        JOB_ROLE,
        "--name-prefix",
        prefix,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn usage_and_artefact_errors_have_their_exit_codes() {
    let out = etl_submit(&["--profile", "staging"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    // A placeholder without a value is a usage error naming the flag.
    let out = etl_submit(
        &[
            "--dry-run",
            "--queue",
            QUEUE,
            "--upload-bucket",
            "b",
            "--events-role-arn",
            ROLE,
            "--database-secret-arn",
            DATABASE_SECRET,
            "--execution-role-arn",
            EXECUTION_ROLE,
            "--job-role-arn",
            JOB_ROLE,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--image"),
        "{}",
        text(&out)
    );
    // So is a missing --database-secret-arn (every other flag given).
    let mut args = full_args("x-", &["--dry-run"]);
    let at = args
        .iter()
        .position(|a| *a == "--database-secret-arn")
        .unwrap();
    args.drain(at..at + 2);
    let out = etl_submit(&args, &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--database-secret-arn"),
        "{}",
        text(&out)
    );

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("job-definitions")).unwrap();
    std::fs::create_dir_all(tmp.path().join("rules")).unwrap();
    let mut v = read(&deploy_dir().join("job-definitions/data.json"));
    v["containerProperties"]["user"] = json!("0:0");
    let bad = tmp.path().join("job-definitions/data.json");
    std::fs::write(&bad, serde_json::to_string(&v).unwrap()).unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = etl_submit(&full_args("x-", &["--dry-run", "--dir", dir]), &[]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", text(&out));
    assert!(
        stderr.contains(bad.to_str().unwrap()) && stderr.contains("non-root"),
        "{}",
        text(&out)
    );

    std::fs::write(&bad, "{ not json").unwrap();
    let out = etl_submit(&full_args("x-", &["--dry-run", "--dir", dir]), &[]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not valid JSON"),
        "{}",
        text(&out)
    );
}

#[test]
fn dry_run_prints_requests_without_aws() {
    // No endpoint at all: a dry run with a queue ARN calls no API.
    let out = etl_submit(
        &full_args("dry-", &["--dry-run", "--profile", "prod"]),
        &[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = lines(&out);
    assert_eq!(lines.len(), 7, "{}", text(&out));
    let pmtiles = lines
        .iter()
        .find(|l| l["name"] == "dry-etl-pmtiles")
        .unwrap();
    let req = &pmtiles["request"]["RegisterJobDefinition"];
    assert_eq!(
        req["containerProperties"]["image"],
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tak-etl:test"
    );
    assert_eq!(
        req["containerProperties"]["resourceRequirements"],
        json!([{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "16384"}])
    );
    assert_eq!(
        req["containerProperties"]["environment"],
        json!([{"name": "ETL_PROFILE", "value": "prod"}])
    );
    assert_eq!(
        req["containerProperties"]["executionRoleArn"],
        EXECUTION_ROLE
    );
    assert_eq!(req["containerProperties"]["jobRoleArn"], JOB_ROLE);
    assert!(req["containerProperties"].get("secrets").is_none(), "{req}");
    let data = lines.iter().find(|l| l["name"] == "dry-etl-data").unwrap();
    assert_eq!(
        data["request"]["RegisterJobDefinition"]["containerProperties"]["secrets"],
        json!([{"name": "ETL_DATABASE_SECRET", "valueFrom": DATABASE_SECRET}])
    );
    let import = lines
        .iter()
        .find(|l| l["name"] == "dry-etl-import-object-created")
        .unwrap();
    let pattern: Value = serde_json::from_str(
        import["request"]["PutRule"]["EventPattern"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pattern["detail"]["bucket"]["name"], json!(["tak-uploads"]));
    let target = &import["request"]["PutTargets"]["Targets"][0];
    assert_eq!(target["Arn"], QUEUE);
    assert_eq!(target["BatchParameters"]["JobDefinition"], "dry-etl-events");
}

// ---------------------------------------------------------------------------------------------
// Against moto

fn endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("S3_ENDPOINT is not set: run the tests with `bash scripts/test.sh`, which starts moto (Batch, EventBridge) and sets it")
    })
}

fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        (
            "AWS_REGION",
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ),
        (
            "AWS_ACCESS_KEY_ID",
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
        ),
    ]
}

fn deploy_against(endpoint: &str, args: &[&str]) -> Output {
    let env = aws_env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    etl_submit(args, &env)
}

/// A namespace no other test (or earlier run against the same moto) uses.
fn namespace(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}{:x}-", (nanos ^ std::process::id()) & 0xffffff)
}

fn unreachable(e: &dyn std::fmt::Debug) -> String {
    format!("moto at S3_ENDPOINT did not answer ({e:?}); run the tests with `bash scripts/test.sh`")
}

struct Aws {
    rt: tokio::runtime::Runtime,
    batch: aws_sdk_batch::Client,
    events: aws_sdk_eventbridge::Client,
}

impl Aws {
    fn new(endpoint: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_batch::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .load(),
        );
        Aws {
            batch: aws_sdk_batch::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            rt,
        }
    }

    /// name -> sorted revisions of the ACTIVE job definitions.
    fn revisions(&self, name: &str) -> Vec<i32> {
        let out = self
            .rt
            .block_on(
                self.batch
                    .describe_job_definitions()
                    .job_definition_name(name)
                    .status("ACTIVE")
                    .send(),
            )
            .unwrap_or_else(|e| panic!("{}", unreachable(&e)));
        let mut revs: Vec<i32> = out
            .job_definitions()
            .iter()
            .filter_map(|j| j.revision())
            .collect();
        revs.sort();
        revs
    }

    fn latest(&self, name: &str) -> aws_sdk_batch::types::JobDefinition {
        let out = self
            .rt
            .block_on(
                self.batch
                    .describe_job_definitions()
                    .job_definition_name(name)
                    .status("ACTIVE")
                    .send(),
            )
            .unwrap_or_else(|e| panic!("{}", unreachable(&e)));
        out.job_definitions()
            .iter()
            .max_by_key(|j| j.revision())
            .unwrap()
            .clone()
    }

    /// Rule names with the prefix, and a debug rendering of each rule's targets.
    fn rules(&self, prefix: &str) -> Vec<(String, String, String)> {
        let out = self
            .rt
            .block_on(self.events.list_rules().name_prefix(prefix).send())
            .unwrap_or_else(|e| panic!("{}", unreachable(&e)));
        let mut rules = Vec::new();
        for r in out.rules() {
            let name = r.name().unwrap().to_string();
            let targets = self
                .rt
                .block_on(self.events.list_targets_by_rule().rule(&name).send())
                .unwrap_or_else(|e| panic!("{}", unreachable(&e)));
            let targets: Vec<String> = targets
                .targets()
                .iter()
                .map(|t| {
                    let it = t.input_transformer().unwrap();
                    let paths: std::collections::BTreeMap<_, _> =
                        it.input_paths_map().unwrap().iter().collect();
                    format!(
                        "{} {} {:?} {:?} {paths:?} {}",
                        t.id(),
                        t.arn(),
                        t.role_arn(),
                        t.batch_parameters(),
                        it.input_template()
                    )
                })
                .collect();
            rules.push((name, format!("{r:?}"), targets.join("\n")));
        }
        rules.sort();
        rules
    }
}

fn by_name(lines: &[Value]) -> std::collections::BTreeMap<String, Value> {
    lines
        .iter()
        .map(|l| (l["name"].as_str().unwrap().to_string(), l.clone()))
        .collect()
}

#[test]
fn deploy_is_idempotent_and_profiles_register_new_revisions() {
    let endpoint = endpoint();
    let prefix = namespace("idem");
    let aws = Aws::new(&endpoint);

    let first = deploy_against(&endpoint, &full_args(&prefix, &["--profile", "dev-test"]));
    assert_eq!(
        first.status.code(),
        Some(0),
        "deploy against moto at {endpoint} failed (is it running? use `bash scripts/test.sh`):\n{}",
        text(&first)
    );
    let first = by_name(&lines(&first));
    assert_eq!(first.len(), 7, "{first:#?}");
    for (name, l) in &first {
        let expected = if l["kind"] == "rule" {
            "created"
        } else {
            "registered"
        };
        assert_eq!(l["action"], expected, "{name}: {l}");
    }
    let revisions: Vec<_> = ["data", "pmtiles", "events", "retention"]
        .iter()
        .map(|j| aws.revisions(&format!("{prefix}etl-{j}")))
        .collect();
    assert!(revisions.iter().all(|r| r.len() == 1), "{revisions:?}");
    // The database secret and both roles arrived (moto returns them in DescribeJobDefinitions).
    for (job, has_secret) in [
        ("data", true),
        ("pmtiles", false),
        ("events", true),
        ("retention", true),
    ] {
        let jd = aws.latest(&format!("{prefix}etl-{job}"));
        let cp = jd.container_properties().unwrap();
        assert_eq!(cp.execution_role_arn(), Some(EXECUTION_ROLE), "{job}");
        assert_eq!(cp.job_role_arn(), Some(JOB_ROLE), "{job}");
        let secrets: Vec<_> = cp
            .secrets()
            .iter()
            .map(|s| (s.name().unwrap(), s.value_from().unwrap()))
            .collect();
        if has_secret {
            assert_eq!(secrets, [("ETL_DATABASE_SECRET", DATABASE_SECRET)], "{job}");
        } else {
            assert!(secrets.is_empty(), "{job}: {secrets:?}");
        }
    }
    let rules = aws.rules(&prefix);
    assert_eq!(rules.len(), 3, "{rules:#?}");
    let import = rules
        .iter()
        .find(|r| r.0.ends_with("import-object-created"))
        .unwrap();
    assert!(
        import.2.contains(&format!("{prefix}etl-events")),
        "{import:?}"
    );
    assert!(import.2.contains("$.detail.object.sequencer"), "{import:?}");

    let second = deploy_against(&endpoint, &full_args(&prefix, &["--profile", "dev-test"]));
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let second = by_name(&lines(&second));
    for (name, l) in &second {
        assert_eq!(l["action"], "unchanged", "{name}: {l}");
        if l["kind"] == "job-definition" {
            assert_eq!(l["revision"], first[name]["revision"], "{name}");
        }
    }
    let revisions_again: Vec<_> = ["data", "pmtiles", "events", "retention"]
        .iter()
        .map(|j| aws.revisions(&format!("{prefix}etl-{j}")))
        .collect();
    assert_eq!(revisions, revisions_again);
    assert_eq!(
        rules,
        aws.rules(&prefix),
        "rules or targets changed on the second run"
    );

    let prod = deploy_against(&endpoint, &full_args(&prefix, &["--profile", "prod"]));
    assert_eq!(prod.status.code(), Some(0), "{}", text(&prod));
    let prod = by_name(&lines(&prod));
    for (name, l) in &prod {
        if l["kind"] == "job-definition" {
            assert_eq!(l["action"], "registered", "{name}: {l}");
            assert!(
                l["revision"].as_i64() > first[name]["revision"].as_i64(),
                "{name}: {l}"
            );
        } else {
            assert_eq!(l["action"], "unchanged", "{name}: {l}");
        }
    }
    let pmtiles = aws.latest(&format!("{prefix}etl-pmtiles"));
    let cp = pmtiles.container_properties().unwrap();
    let resources: Vec<_> = cp
        .resource_requirements()
        .iter()
        .map(|r| {
            (
                r.r#type().unwrap().as_str().to_string(),
                r.value().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        resources,
        [
            ("VCPU".to_string(), "4".to_string()),
            ("MEMORY".to_string(), "16384".to_string())
        ]
    );
    assert_eq!(cp.environment()[0].value(), Some("prod"));
    assert_eq!(cp.user(), Some("10001:10001"));
    assert_eq!(cp.readonly_root_filesystem(), Some(true));
    assert_eq!(
        pmtiles.timeout().unwrap().attempt_duration_seconds(),
        Some(21600)
    );
    let retry = pmtiles.retry_strategy().unwrap();
    assert_eq!(retry.attempts(), Some(3));
    assert_eq!(
        retry.evaluate_on_exit().last().unwrap().on_reason(),
        Some("*")
    );

    let again = deploy_against(&endpoint, &full_args(&prefix, &["--profile", "prod"]));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        lines(&again).iter().all(|l| l["action"] == "unchanged"),
        "{}",
        text(&again)
    );
}

#[test]
fn dry_run_on_a_fresh_namespace_creates_nothing() {
    let endpoint = endpoint();
    let prefix = namespace("dry");
    let aws = Aws::new(&endpoint);
    let out = deploy_against(&endpoint, &full_args(&prefix, &["--dry-run"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        lines(&out).iter().all(|l| l["action"] == "dry-run"),
        "{}",
        text(&out)
    );
    for j in ["data", "pmtiles", "events", "retention"] {
        assert!(aws.revisions(&format!("{prefix}etl-{j}")).is_empty(), "{j}");
    }
    assert!(aws.rules(&prefix).is_empty());
}

#[test]
fn unknown_queue_name_is_a_client_error_and_no_endpoint_is_unavailable() {
    let endpoint = endpoint();
    let prefix = namespace("err");
    let mut args = full_args(&prefix, &[]);
    let q = args.iter().position(|a| *a == QUEUE).unwrap();
    args[q] = "no-such-queue";
    let out = deploy_against(&endpoint, &args);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-queue"),
        "{}",
        text(&out)
    );

    // An event pattern EventBridge refuses (InvalidEventPatternException) is a refusal too.
    let tmp = copy_deploy_dir();
    let rule = tmp.path().join("rules/import-object-created.json");
    let mut v = read(&rule);
    v["EventPattern"]["source"] = json!("aws.s3");
    std::fs::write(&rule, serde_json::to_string(&v).unwrap()).unwrap();
    let out = deploy_against(
        &endpoint,
        &full_args(&prefix, &["--dir", tmp.path().to_str().unwrap()]),
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PutRule") && stderr.contains("InvalidEventPattern"),
        "{}",
        text(&out)
    );

    let out = deploy_against("http://127.0.0.1:9", &full_args(&prefix, &[]));
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
}

fn copy_deploy_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["job-definitions", "rules"] {
        std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(deploy_dir().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, tmp.path().join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    tmp
}

#[test]
fn a_changed_artefact_updates_only_what_changed() {
    let endpoint = endpoint();
    let prefix = namespace("chg");
    let aws = Aws::new(&endpoint);
    let first = deploy_against(&endpoint, &full_args(&prefix, &[]));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));

    let tmp = copy_deploy_dir();
    let dir = tmp.path().to_str().unwrap();
    let jd = tmp.path().join("job-definitions/retention.json");
    let mut v = read(&jd);
    v["parameters"]["older_than"] = json!("90d");
    std::fs::write(&jd, serde_json::to_string(&v).unwrap()).unwrap();
    let rule = tmp.path().join("rules/periodic-data.json");
    let mut v = read(&rule);
    v["Targets"][0]["Id"] = json!("etl-data-v2");
    v["State"] = json!("DISABLED");
    std::fs::write(&rule, serde_json::to_string(&v).unwrap()).unwrap();

    let out = deploy_against(&endpoint, &full_args(&prefix, &["--dir", dir]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = by_name(&lines(&out));
    let actions: Vec<(&str, &str)> = lines
        .iter()
        .map(|(n, l)| {
            (
                n.strip_prefix(&prefix).unwrap(),
                l["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("etl-data", "unchanged"),
            ("etl-events", "unchanged"),
            ("etl-import-object-created", "unchanged"),
            ("etl-nightly-retention", "unchanged"),
            ("etl-periodic-data", "updated"),
            ("etl-pmtiles", "unchanged"),
            ("etl-retention", "registered"),
        ]
    );
    assert_eq!(aws.revisions(&format!("{prefix}etl-retention")), [1, 2]);
    let latest = aws.latest(&format!("{prefix}etl-retention"));
    assert_eq!(latest.parameters().unwrap()["older_than"], "90d");
    let rules = aws.rules(&prefix);
    let periodic = rules
        .iter()
        .find(|r| r.0.ends_with("periodic-data"))
        .unwrap();
    assert!(periodic.1.contains("Disabled"), "{periodic:?}");
    assert!(
        periodic.2.starts_with("etl-data-v2 ") && !periodic.2.contains('\n'),
        "stale target left: {periodic:?}"
    );
}
