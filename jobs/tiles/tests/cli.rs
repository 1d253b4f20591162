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
        .env("LOG_FORMAT", "json");
    cmd
}

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
    let (code, err) = run(&["serve", "--root", "/no/such/dir"]);
    assert_eq!(code, 66, "{err}");
    assert!(err.contains("/no/such/dir"), "{err}");
    let (code, err) = run(&["serve", "--root", root, "--listen", "not-an-address"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("not-an-address"), "{err}");
    let (code, err) = run(&["serve", "--root", root, "--directory-cache", "lots"]);
    assert_eq!(code, 64, "{err}");
    let (code, err) = run(&["serve", "--root", root, "--cors-origins", "example.com"]);
    assert_eq!(code, 64, "{err}");
    let (code, _) = run(&["--help"]);
    assert_eq!(code, 0);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let root = fixtures().join("tiles");
    let (mut server, url) = spawn_server(&root, &[], true);
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
