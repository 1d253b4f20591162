//! The binary's start-up and stop: exit codes for bad settings, a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::process::Command;

use support::{fixtures, spawn_server};

fn etl_tiles(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-tiles"));
    cmd.args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("ETL_PROFILE")
        .env_remove("ETL_TILES_ROOT")
        .env_remove("ETL_TILES_JWT_SECRET")
        .env_remove("ETL_TILES_NO_AUTH")
        .env_remove("ETL_TILES_PUBLIC_URL")
        .env_remove("ETL_TILES_CORS_ORIGINS")
        .env("LOG_FORMAT", "json");
    cmd
}

/// The one line the binary prints for a setting it refuses.
fn reason(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("etl-tiles: "))
        .unwrap_or_else(|| panic!("no reason line: {stderr}"))
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn run(args: &[&str]) -> (i32, String) {
    let out = etl_tiles(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_exit_with_a_reason() {
    let root = fixtures().join("tiles");
    let root = root.to_str().unwrap();
    let (code, err) = run(&["serve"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--root"), "{err}");
    let (code, err) = run(&["serve", "--root", root, "--profile", "prod"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("ETL_TILES_JWT_SECRET"), "{err}");
    let (code, err) = run(&["serve", "--root", "/no/such/dir", "--no-auth"]);
    assert_eq!(code, 66, "{err}");
    assert!(err.contains("/no/such/dir"), "{err}");
    let (code, err) = run(&["serve", "--root", root, "--listen", "not-an-address"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("not-an-address"), "{err}");
    let (code, err) = run(&["serve", "--root", root, "--directory-cache", "lots"]);
    assert_eq!(code, 64, "{err}");
    let (code, err) = run(&[
        "serve",
        "--root",
        root,
        "--no-auth",
        "--cors-origins",
        "example.com",
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(reason(&err).contains("--cors-origins"), "{err}");
    // The old switch is gone: auth cannot be turned off by `--auth off`.
    let (code, err) = run(&["serve", "--root", root, "--auth", "off"]);
    assert_eq!(code, 64, "{err}");
    let (code, _) = run(&["--help"]);
    assert_eq!(code, 0);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let root = fixtures().join("tiles");
    let (mut server, url) = spawn_server(&root, &["--no-auth"], true);
    let addr = url.strip_prefix("http://").unwrap().to_string();
    // A keep-alive connection is open and idle when the signal arrives: it must not hold the
    // server up.
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 12];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = server.0.wait().unwrap().code();
    assert_eq!(code, Some(0));
    let mut err = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("stopping"), "{err}");
}

#[test]
fn auth_is_on_unless_turned_off_on_loopback() {
    let root = fixtures().join("tiles");
    let root = root.to_str().unwrap();
    // No flags at all: auth is on, and there is no secret.
    let (code, err) = run(&["serve", "--root", root]);
    assert_eq!(code, 64, "{err}");
    assert!(reason(&err).contains("ETL_TILES_JWT_SECRET"), "{err}");
    // A secret but no public URL.
    let (code, err) = run(&["serve", "--root", root, "--jwt-secret", SECRET]);
    assert_eq!(code, 64, "{err}");
    assert!(reason(&err).contains("--public-url"), "{err}");
    // Without auth on an address that is not loopback, by flag or environment.
    let (code, err) = run(&[
        "serve",
        "--root",
        root,
        "--no-auth",
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 64, "{err}");
    let line = reason(&err);
    assert!(
        line.contains("--no-auth") && line.contains("0.0.0.0"),
        "{line}"
    );
    let out = etl_tiles(&["serve", "--root", root, "--listen", "0.0.0.0:0"])
        .env("ETL_TILES_NO_AUTH", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(reason(&err).contains("--no-auth"), "{err}");
    // Lambda mode: never without auth, and a public URL is needed. The runtime address is never
    // reached: the settings are refused first.
    let lambda = |extra: &[(&str, &str)]| {
        let mut cmd = etl_tiles(&[]);
        cmd.env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("ETL_TILES_ROOT", root);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = lambda(&[
        ("ETL_TILES_NO_AUTH", "1"),
        ("ETL_TILES_PUBLIC_URL", "https://t.example"),
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(reason(&err).contains("Lambda"), "{err}");
    let (code, err) = lambda(&[("ETL_TILES_JWT_SECRET", SECRET)]);
    assert_eq!(code, Some(64), "{err}");
    assert!(reason(&err).contains("--public-url"), "{err}");
}

/// GET `path` from a running server; the status line.
fn status_of(url: &str, path: &str) -> String {
    let addr = url.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut conn,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply.lines().next().unwrap_or("").to_string()
}

#[test]
fn a_started_server_checks_tokens_unless_told_not_to_on_loopback() {
    let root = fixtures().join("tiles");
    let (_on, url) = spawn_server(
        &root,
        &[
            "--jwt-secret",
            SECRET,
            "--public-url",
            "https://tiles.example.com",
        ],
        false,
    );
    assert_eq!(
        status_of(&url, "/tiles/fixtures"),
        "HTTP/1.1 401 Unauthorized"
    );
    assert_eq!(status_of(&url, "/health"), "HTTP/1.1 200 OK");

    // ETL_TILES_NO_AUTH=1 on loopback: open, and the URLs point at the listener.
    use std::io::BufRead;
    let mut child = etl_tiles(&[
        "serve",
        "--root",
        root.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .env("ETL_TILES_NO_AUTH", "1")
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _off = support::Server(child);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert_eq!(status_of(&url, "/tiles/fixtures"), "HTTP/1.1 200 OK");
}
