//! Helpers for the submission tests: the moto endpoint, raw HTTP (IAM, moto's config API), a
//! recording proxy, a private moto server, and Batch fixtures (role, compute environment, queue,
//! job definition) with unique names.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_batch::Client;
use aws_sdk_batch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_batch::types::{
    CeState, CeType, ComputeEnvironmentOrder, ContainerProperties, JobDefinitionType, JqState,
    ResourceRequirement, ResourceType,
};

const HINT: &str =
    "run the tests with `bash scripts/test.sh` (it starts moto and exports S3_ENDPOINT and AWS_*)";

/// The moto endpoint from `S3_ENDPOINT`; fails (never skips) when it is missing or unreachable.
pub fn moto() -> String {
    let e =
        std::env::var("S3_ENDPOINT").unwrap_or_else(|_| panic!("S3_ENDPOINT is not set: {HINT}"));
    let addr = host_port(&e);
    if let Err(err) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)) {
        panic!("moto at {e} is unreachable ({err}): {HINT}");
    }
    e
}

fn host_port(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A name unique to this test run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(host_port(endpoint)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        host_port(endpoint),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP answer: {resp}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Creates an IAM role in moto (the Batch compute environment needs one that exists).
pub fn create_role(endpoint: &str, name: &str) -> String {
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument=%7B%7D"
    );
    let (status, text) = http(
        endpoint,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        &body,
    );
    assert_eq!(status, 200, "CreateRole: {text}");
    format!("arn:aws:iam::123456789012:role/{name}")
}

/// A Batch client for `endpoint` with the test credentials.
pub fn batch(endpoint: &str) -> Client {
    let config = aws_sdk_batch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Client::from_conf(config)
}

/// A queue and a job definition to submit to.
pub struct Fixture {
    pub endpoint: String,
    pub client: Client,
    pub queue: String,
    pub definition: String,
}

/// Creates a role, an UNMANAGED compute environment, a queue and a job definition.
pub async fn fixture(endpoint: &str) -> Fixture {
    let client = batch(endpoint);
    let role = create_role(endpoint, &unique("role"));
    let ce = client
        .create_compute_environment()
        .compute_environment_name(unique("ce"))
        .r#type(CeType::Unmanaged)
        .state(CeState::Enabled)
        .service_role(role)
        .send()
        .await
        .unwrap();
    let queue = unique("q");
    client
        .create_job_queue()
        .job_queue_name(&queue)
        .state(JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            ComputeEnvironmentOrder::builder()
                .order(1)
                .compute_environment(ce.compute_environment_arn().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let definition = unique("etl");
    let res = |t, v: &str| ResourceRequirement::builder().r#type(t).value(v).build();
    client
        .register_job_definition()
        .job_definition_name(&definition)
        .r#type(JobDefinitionType::Container)
        .container_properties(
            ContainerProperties::builder()
                .image("tak-etl:test")
                .command("data")
                .resource_requirements(res(ResourceType::Vcpu, "1"))
                .resource_requirements(res(ResourceType::Memory, "512"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    Fixture {
        endpoint: endpoint.to_owned(),
        client,
        queue,
        definition,
    }
}

/// Runs `etl-submit ARGS` against `endpoint` (via `AWS_ENDPOINT_URL`).
pub fn submit(endpoint: &str, args: &[&str]) -> Output {
    submit_with(endpoint, args, &[])
}

/// [`submit`] with extra environment variables.
pub fn submit_with(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-submit"));
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_ENDPOINT_URL_BATCH")
        .env_remove("ETL_BATCH_QUEUE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("ETL_SUBMIT_POLL_MS", "50")
        .env_remove("AWS_PROFILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A recorded request: the first line and the body.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub line: String,
    pub body: String,
}

/// A proxy in front of `upstream` that records each request (one request per connection).
pub fn recording_proxy(upstream: &str) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (up, log2) = (host_port(upstream), log.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (up, log) = (up.clone(), log2.clone());
            std::thread::spawn(move || {
                let _ = proxy_one(conn, &up, &log);
            });
        }
    });
    (addr, log)
}

fn proxy_one(conn: TcpStream, upstream: &str, log: &Mutex<Vec<Recorded>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push(line);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    log.lock().unwrap().push(Recorded {
        line: head.first().cloned().unwrap_or_default().trim().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut up = TcpStream::connect(upstream)?;
    let mut req = head.concat();
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let mut conn = conn;
    conn.write_all(&resp)?;
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Both)
}

/// A private moto server (killed on drop), e.g. with `MOTO_SIMPLE_BATCH_FAIL_AFTER=0`.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start(env: &[(&str, &str)]) -> Moto {
        let venv = std::env::var("TAK_MOTO_VENV")
            .unwrap_or_else(|_| "/var/tmp/tak-etl-tools/moto-5.2.5".to_owned());
        let python = format!("{venv}/bin/python");
        assert!(
            std::path::Path::new(&python).exists(),
            "{python} is missing: {HINT} (it installs the moto venv)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let (status, _) = http(&moto.endpoint, "GET", "/moto-api/", &[], "");
                if status == 200 {
                    break;
                }
            }
            if let Ok(Some(st)) = moto.child.try_wait() {
                panic!("moto server exited early ({st})");
            }
            assert!(
                Instant::now() < deadline,
                "moto on port {port} did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, text) = http(
            &moto.endpoint,
            "POST",
            "/moto-api/config",
            &[("Content-Type", "application/json")],
            r#"{"batch": {"use_docker": false}}"#,
        );
        assert!((200..300).contains(&status), "moto config: {status} {text}");
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
