//! The archive appears whole or not at all, whatever fails: the process killed before and
//! after the rename of a local output, and before and after the multipart Complete of an S3
//! output; S3 requests failed, cut before they arrive, or answered after taking effect (through
//! the fault proxy). After each fault the output is the previous archive or a complete new one
//! (it verifies), and a rerun writes the new one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use etl_core::store::Location;
use etl_testkit::FaultProxy;

fn etl_pmtiles() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"));
    cmd.env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_SIZE");
    cmd
}

fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

/// Points with a `pad` of `pad` hex characters, which gzip cannot shrink much: the S3
/// cases need an archive of several 5 MiB parts at a low zoom.
fn points(path: &Path, n: usize, tag: &str, pad: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let mut text = String::with_capacity(pad);
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        while text.len() < pad {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(&format!("{x:016x}"));
        }
        writeln!(
            f,
            r#"{{"type":"Feature","properties":{{"tag":"{tag}","i":{i},"pad":"{text}"}},"geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
            -179.0 + (i % 3580) as f64 * 0.1,
            -80.0 + (i / 3580) as f64 * 0.05
        )
        .unwrap();
    }
}

fn verify_bytes(bytes: Vec<u8>) -> etl_tiles::archive::VerifyReport {
    let len = bytes.len() as u64;
    etl_tiles::archive::verify(std::io::Cursor::new(bytes), len).unwrap()
}

fn killed(out: &Output) -> bool {
    out.status.code().is_none()
        && String::from_utf8_lossy(&out.stderr).contains("fault injected at")
}

#[test]
fn a_local_archive_is_old_or_new_whatever_the_kill_point() {
    let mut covered = 0;
    for point in ["store.publish.before_rename", "store.publish.after_rename"] {
        let dir = tempfile::tempdir().unwrap();
        let (old_in, new_in) = (
            dir.path().join("old.geojsonl"),
            dir.path().join("new.geojsonl"),
        );
        points(&old_in, 2000, "old", 16);
        points(&new_in, 3000, "new", 16);
        let out = dir.path().join("o.pmtiles");
        let run = |input: &Path, fault: Option<&str>| {
            let mut cmd = etl_pmtiles();
            cmd.args([
                "-o",
                out.to_str().unwrap(),
                "-f",
                "-z6",
                input.to_str().unwrap(),
            ]);
            if let Some(f) = fault {
                cmd.env("ETL_FAULT", f);
            }
            cmd.output().unwrap()
        };
        assert!(run(&old_in, None).status.success());
        let old = std::fs::read(&out).unwrap();
        let r = run(&new_in, Some(point));
        assert!(
            killed(&r),
            "{point}: not killed there: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            r.status.code(),
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        let now = std::fs::read(&out).unwrap();
        verify_bytes(now.clone());
        if point.ends_with("before_rename") {
            assert_eq!(now, old, "{point}: the old archive stands");
        } else {
            assert_ne!(now, old, "{point}: the new archive is in place");
        }
        // What the killed run left (its temporary archive) looks abandoned once it is old and
        // unlocked: age it, and the next run sweeps it.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".etl-pmtiles-")
            {
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
                    .unwrap();
            }
        }
        assert!(run(&new_in, None).status.success());
        let fresh = std::fs::read(&out).unwrap();
        assert_ne!(fresh, old);
        verify_bytes(fresh);
        // Nothing half-written beside the output.
        let extra: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(extra.is_empty(), "{point}: {extra:?}");
        covered += 1;
    }
    assert_eq!(covered, 2);
}

#[test]
fn an_s3_archive_is_old_or_new_whatever_fails() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, bucket) = rt.block_on(etl_testkit::store_with_bucket(
        &s3_endpoint(),
        &format!("pmtiles-faults-{}", std::process::id()),
    ));
    let dir = tempfile::tempdir().unwrap();
    let (old_in, new_in) = (
        dir.path().join("old.geojsonl"),
        dir.path().join("new.geojsonl"),
    );
    points(&old_in, 5_500, "old", 2048);
    points(&new_in, 6_000, "new", 2048);
    let proxy = FaultProxy::start(&s3_endpoint()).unwrap();
    let get = |key: &str| {
        rt.block_on(store.get(&Location::parse(&format!("s3://{bucket}/{key}")).unwrap()))
            .unwrap()
            .map(|(b, _)| b)
    };
    let cases = etl_testkit::multipart_faults();
    let count = cases.len();
    let mut covered = 0;
    let mut seed: Option<Vec<u8>> = None;
    for (i, (what, rules, fault)) in cases.into_iter().enumerate() {
        let key = format!("case{i}.pmtiles");
        let url = format!("s3://{bucket}/{key}");
        let run = |input: &Path, via_proxy: bool, fault: Option<&str>| {
            let mut cmd = etl_pmtiles();
            cmd.env(
                "ETL_S3_ENDPOINT",
                if via_proxy {
                    proxy.endpoint()
                } else {
                    s3_endpoint()
                },
            )
            .env("ETL_S3_PART_SIZE", (5 << 20).to_string())
            .args([
                "-o",
                &url,
                "-f",
                "-z2",
                "-M",
                "4000000",
                input.to_str().unwrap(),
            ]);
            if let Some(f) = fault {
                cmd.env("ETL_FAULT", f);
            }
            cmd.output().unwrap()
        };
        // The previous archive: made once, then copied under each case's key.
        match &seed {
            None => {
                assert!(
                    run(&old_in, false, None).status.success(),
                    "{what}: first run"
                );
                seed = get(&key);
            }
            Some(bytes) => rt
                .block_on(store.put(
                    &Location::parse(&url).unwrap(),
                    bytes.clone(),
                    etl_core::store::Precondition::None,
                ))
                .map(|_| ())
                .unwrap(),
        }
        let old = get(&key).unwrap();
        assert!(
            old.len() > 5 << 20,
            "{what}: the archive must take several parts ({} bytes)",
            old.len()
        );
        proxy.arm(rules.clone());
        let r = run(&new_in, true, fault);
        let matched: Vec<u32> = (0..rules.len()).map(|n| proxy.matched(n)).collect();
        proxy.disarm();
        if fault.is_some() {
            assert!(killed(&r), "{what}: {}", String::from_utf8_lossy(&r.stderr));
        }
        assert!(
            matched.iter().all(|n| *n > 0),
            "{what}: a rule never matched"
        );
        let now = get(&key).unwrap();
        verify_bytes(now.clone());
        if !etl_testkit::may_complete(what) {
            assert_eq!(now, old, "{what}: the old archive stands");
            assert!(!r.status.success(), "{what}: the run must fail");
        }
        assert!(run(&new_in, false, None).status.success(), "{what}: rerun");
        let fresh = get(&key).unwrap();
        assert_ne!(fresh, old, "{what}");
        verify_bytes(fresh);
        covered += 1;
    }
    assert_eq!(covered, count);
}
