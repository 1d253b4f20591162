//! Durability under faults: for every point where etl-events can die or an S3 request can fail
//! between two writes, a re-import of a key is killed or failed there, then run again, then
//! garbage-collected. After each step the output must be the previous complete version or the
//! new complete version (the manifest names only objects that exist with the SHA-256 it lists),
//! and after gc nothing the manifest does not name is left.
//!
//! Kill points are `ETL_FAULT` names compiled into the test build of the binary (etl-core's
//! `fault-injection` feature): the process aborts there as `kill -9` would. S3 faults come from
//! [`etl_testkit::FaultProxy`] between the binary and the S3 server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use etl_testkit::{Action, FaultProxy, Kind, Rule};
use serde_json::Value;
use support::{Run, S3, etl_events, s3_endpoint, sha256_hex};

/// The kill points of one import, in the order an import reaches them.
const KILL_POINTS: &[&str] = &[
    "publish.after_output@1",
    "publish.after_output@2",
    "publish.after_outputs",
    "publish.before_swap",
    "publish.after_swap",
];

fn kml(name: &str, n: usize) -> Vec<u8> {
    let mut s = String::from(r#"<kml xmlns="http://www.opengis.net/kml/2.2"><Document>"#);
    for i in 0..n {
        s.push_str(&format!(
            "<Placemark><name>{name}-{i}</name><Point><coordinates>{},{}</coordinates></Point></Placemark>",
            170.0 + (i % 50) as f64 * 0.01,
            -41.0 + (i / 50) as f64 * 0.01
        ));
    }
    s.push_str("</Document></kml>");
    s.into_bytes()
}

/// The state of an output folder: the manifest (if any) and every other object by name.
struct State {
    manifest: Option<Value>,
    objects: BTreeMap<String, Vec<u8>>,
}

impl State {
    fn local(dir: &Path, name: &str) -> State {
        let mut objects = BTreeMap::new();
        let mut manifest = None;
        for f in support::files_in(dir) {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            if f == format!("{name}.json") {
                manifest = Some(serde_json::from_slice(&bytes).unwrap());
            } else {
                objects.insert(f, bytes);
            }
        }
        State { manifest, objects }
    }

    fn s3(s3: &S3, prefix: &str, name: &str) -> State {
        let mut objects = BTreeMap::new();
        let mut manifest = None;
        for key in s3.keys(prefix) {
            let file = key.rsplit('/').next().unwrap().to_owned();
            if key.contains("/.etl-events/") {
                continue;
            }
            let (bytes, _) = s3.get(&key).unwrap();
            if file == format!("{name}.json") {
                manifest = Some(serde_json::from_slice(&bytes).unwrap());
            } else {
                objects.insert(file, bytes);
            }
        }
        State { manifest, objects }
    }

    /// The manifest names only objects that exist, with its sizes and hashes; returns the
    /// source ETag (the version) it was made from, or None when there is no manifest.
    #[track_caller]
    fn complete(&self, step: &str) -> Option<String> {
        let m = self.manifest.as_ref()?;
        let outputs = m["outputs"].as_array().unwrap();
        assert!(!outputs.is_empty(), "{step}: {m}");
        for o in outputs {
            let file = o["file"].as_str().unwrap();
            let bytes = self
                .objects
                .get(file)
                .unwrap_or_else(|| panic!("{step}: the manifest names {file}, which is missing"));
            assert_eq!(
                bytes.len() as u64,
                o["bytes"].as_u64().unwrap(),
                "{step}: {file}"
            );
            assert_eq!(
                sha256_hex(bytes),
                o["sha256"].as_str().unwrap(),
                "{step}: {file}"
            );
        }
        Some(m["source"]["etag"].as_str().unwrap_or("").to_owned())
    }

    /// After gc: nothing besides what the manifest names.
    #[track_caller]
    fn nothing_unreferenced(&self, step: &str) {
        let m = self.manifest.as_ref().unwrap();
        let named: Vec<&str> = m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["file"].as_str().unwrap())
            .collect();
        let extra: Vec<&String> = self
            .objects
            .keys()
            .filter(|k| !named.contains(&k.as_str()))
            .collect();
        assert!(extra.is_empty(), "{step}: left after gc: {extra:?}");
    }
}

/// A local import of `input` into `out` with its own scratch directory, optionally with a
/// fault armed.
struct Local {
    _tmp: tempfile::TempDir,
    input: std::path::PathBuf,
    out: std::path::PathBuf,
    scratch: std::path::PathBuf,
}

impl Local {
    fn new() -> Local {
        let tmp = tempfile::tempdir().unwrap();
        let (input, out, scratch) = (
            tmp.path().join("sites.kml"),
            tmp.path().join("out"),
            tmp.path().join("scratch"),
        );
        std::fs::create_dir_all(&scratch).unwrap();
        Local {
            _tmp: tmp,
            input,
            out,
            scratch,
        }
    }

    fn import(&self, zoom: &str, fault: Option<&str>) -> Run {
        let mut cmd = etl_events();
        cmd.args([
            "--input",
            self.input.to_str().unwrap(),
            "--output",
            self.out.to_str().unwrap(),
            "--scratch",
            self.scratch.to_str().unwrap(),
            "-z",
            zoom,
        ]);
        if let Some(f) = fault {
            cmd.env("ETL_FAULT", f);
        }
        Run::from_output(cmd.output().unwrap())
    }
}

fn killed(r: &Run) -> bool {
    r.code == -1 && r.stderr.contains("fault injected at")
}

/// Kill points with local outputs: import v1, kill the import of v2 at the point, check,
/// rerun v2, check, gc, check.
#[test]
fn local_outputs_survive_a_kill_at_every_point() {
    let mut covered = 0;
    for point in KILL_POINTS {
        let l = Local::new();
        let (input, out, scratch) = (l.input.clone(), l.out.clone(), l.scratch.clone());
        let import = |fault: Option<&str>| l.import("6", fault);
        std::fs::write(&input, kml("one", 200)).unwrap();
        import(None).assert_code(0);
        let v1 = State::local(&out, "sites").complete("v1").unwrap();

        std::fs::write(&input, kml("two", 300)).unwrap();
        let r = import(Some(point));
        assert!(killed(&r), "{point}: not killed: {} {}", r.code, r.stderr);
        let after = State::local(&out, "sites").complete(point).unwrap();
        if *point == "publish.after_swap" {
            assert_ne!(after, v1, "{point}: the swap happened before the kill");
        } else {
            assert_eq!(after, v1, "{point}: the previous version must stand");
        }

        // The killed import's work directory stays behind; once it looks abandoned (old,
        // unlocked), the next import removes it.
        let left = support::entries_in(&scratch);
        assert_eq!(left.len(), 1, "{point}: {left:?}");
        support::age_entries(&scratch);
        let r = import(None);
        r.assert_code(0);
        assert!(
            support::entries_in(&scratch).is_empty(),
            "{point}: {:?}",
            support::entries_in(&scratch)
        );
        let v2 = State::local(&out, "sites")
            .complete(&format!("{point}, rerun"))
            .unwrap();
        assert_ne!(v2, v1, "{point}: the rerun imports v2");
        let m = State::local(&out, "sites").manifest.unwrap();
        assert_eq!(m["features"], 300, "{point}");
        // gc with the workers' settings keeps the superseded version the manifest promises.
        let superseded: Vec<String> = m["superseded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["file"].as_str().unwrap().to_owned())
            .collect();
        assert!(!superseded.is_empty(), "{point}: {m}");
        Run::from_output(
            etl_events()
                .args(["--gc", "--output", out.to_str().unwrap()])
                .output()
                .unwrap(),
        )
        .assert_code(0);
        for f in &superseded {
            assert!(
                out.join(f).exists(),
                "{point}: {f} deleted inside its grace"
            );
        }

        let gc = Run::from_output(
            etl_events()
                .args(["--gc", "--gc-now", "--output", out.to_str().unwrap()])
                .output()
                .unwrap(),
        );
        gc.assert_code(0);
        let s = State::local(&out, "sites");
        assert_eq!(s.complete(&format!("{point}, gc")), Some(v2.clone()));
        s.nothing_unreferenced(point);
        // gc again: nothing to do, nothing broken.
        Run::from_output(
            etl_events()
                .args(["--gc", "--gc-now", "--output", out.to_str().unwrap()])
                .output()
                .unwrap(),
        )
        .assert_code(0);
        assert_eq!(State::local(&out, "sites").complete("gc twice"), Some(v2));
        covered += 1;
    }
    assert_eq!(covered, KILL_POINTS.len());
}

/// A gc grace shorter than twice the import timeout could take an import in flight for an
/// orphan: refused, unless --gc-now says no import runs.
#[test]
fn a_short_gc_grace_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Run::from_output(
        etl_events()
            .args([
                "--gc",
                "--gc-grace",
                "10m",
                "--output",
                tmp.path().to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    r.assert_code(64);
    assert!(
        r.error().contains("twice --import-timeout"),
        "{}",
        r.error()
    );
}

/// A reader that dies mid-input: exit 70, nothing published, the previous version stands,
/// the scratch directory is left empty.
#[test]
fn a_panicking_reader_publishes_nothing() {
    let l = Local::new();
    let (input, out, scratch) = (l.input.clone(), l.out.clone(), l.scratch.clone());
    let import = |fault: Option<&str>| l.import("4", fault);
    std::fs::write(&input, kml("one", 100)).unwrap();
    import(None).assert_code(0);
    let v1 = State::local(&out, "sites").complete("v1").unwrap();
    std::fs::write(&input, kml("two", 5000)).unwrap();
    let r = import(Some("events.read_panic@2000"));
    r.assert_code(70);
    assert!(r.error().contains("panicked"), "{}", r.error());
    let s = State::local(&out, "sites");
    assert_eq!(s.complete("after the panic"), Some(v1));
    assert_eq!(
        s.objects.len(),
        2,
        "only v1's outputs: {:?}",
        s.objects.keys()
    );
    assert!(
        support::entries_in(&scratch).is_empty(),
        "{:?}",
        support::entries_in(&scratch)
    );
}

/// One S3 scenario: v1 imported cleanly, v2 imported through the proxy with `rules` armed;
/// the result must be v1 or v2 complete; then a clean rerun and gc.
struct S3Case {
    what: &'static str,
    rules: Vec<Rule>,
    /// The exit code of the faulty run (None: any code).
    code: Option<i32>,
    /// Whether the faulty run may have swapped in v2.
    may_swap: bool,
    fault: Option<&'static str>,
}

#[test]
fn s3_outputs_survive_failed_cut_and_killed_requests() {
    let cases = vec![
        S3Case {
            what: "the lease PUT fails",
            rules: vec![Rule {
                path_contains: Some(".lease".into()),
                ..Rule::sticky(Kind::Put, 1, Action::Fail)
            }],
            code: Some(75),
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "the first output PUT fails",
            rules: vec![Rule {
                path_contains: Some("/sites.v".into()),
                ..Rule::sticky(Kind::Put, 1, Action::Fail)
            }],
            code: Some(75),
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "the second output PUT is cut before it arrives",
            rules: vec![Rule {
                path_contains: Some("/sites.v".into()),
                ..Rule::sticky(Kind::Put, 2, Action::CutBefore)
            }],
            code: None,
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "the second output PUT's answer is lost after it took effect",
            rules: vec![Rule {
                path_contains: Some("/sites.v".into()),
                ..Rule::sticky(Kind::Put, 2, Action::CutAfter)
            }],
            code: None,
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "the manifest PUT fails",
            rules: vec![Rule {
                path_contains: Some(".json".into()),
                ..Rule::sticky(Kind::Put, 1, Action::Fail)
            }],
            code: Some(75),
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "the manifest PUT's answer is lost after it took effect",
            rules: vec![Rule {
                path_contains: Some("sites.json".into()),
                times: 1,
                ..Rule::sticky(Kind::Put, 1, Action::CutAfter)
            }],
            code: Some(0),
            may_swap: true,
            fault: None,
        },
        S3Case {
            what: "HEAD of the source fails",
            rules: vec![Rule::sticky(Kind::Head, 1, Action::Fail)],
            code: Some(75),
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "GET of the manifest fails",
            rules: vec![Rule {
                path_contains: Some("sites.json".into()),
                ..Rule::sticky(Kind::Get, 1, Action::Fail)
            }],
            code: Some(75),
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "the DELETE of a failed attempt's output fails",
            rules: vec![
                Rule {
                    path_contains: Some("/sites.v".into()),
                    ..Rule::sticky(Kind::Put, 2, Action::Fail)
                },
                Rule {
                    path_contains: Some("/sites.v".into()),
                    ..Rule::sticky(Kind::Delete, 1, Action::Fail)
                },
            ],
            code: Some(75),
            may_swap: false,
            fault: None,
        },
        S3Case {
            what: "killed after the outputs, before the swap",
            rules: vec![],
            code: None,
            may_swap: false,
            fault: Some("publish.before_swap"),
        },
        S3Case {
            what: "killed after the swap",
            rules: vec![],
            code: None,
            may_swap: true,
            fault: Some("publish.after_swap"),
        },
    ];
    let proxy = FaultProxy::start(&s3_endpoint()).unwrap();
    let mut covered = 0;
    for case in cases {
        let s3 = S3::new();
        let output = format!("s3://{}/processed/", s3.bucket);
        let prefix = format!("processed/{}/import/", s3.bucket);
        let allow = format!("s3://{}/import/", s3.bucket);
        let run = |etag: &str, via_proxy: bool, fault: Option<&str>| {
            let mut cmd = etl_events();
            cmd.env("ETL_ALLOW_SOURCE", &allow).args([
                "--bucket",
                &s3.bucket,
                "--key",
                "import/sites.kml",
                "--etag",
                etag,
                "--output",
                &output,
                "-z",
                "6",
            ]);
            // A killed run leaves its S3 lease behind until it expires.
            cmd.args(["--lease-ttl", "2s"]);
            if via_proxy {
                cmd.env("ETL_S3_ENDPOINT", proxy.endpoint());
            }
            if let Some(f) = fault {
                cmd.env("ETL_FAULT", f);
            }
            Run::from_output(cmd.output().unwrap())
        };
        // The rerun after a kill: exit 75 while the dead worker's lease is live, then it runs.
        let rerun = |etag: &str| {
            let start = std::time::Instant::now();
            loop {
                let r = run(etag, false, None);
                if r.code == 75 && r.error().contains("is publishing this output") {
                    assert!(
                        start.elapsed() < std::time::Duration::from_secs(60),
                        "the lease never expired"
                    );
                    continue;
                }
                return r;
            }
        };
        let e1 = s3.put("import/sites.kml", kml("one", 200));
        run(&e1, false, None).assert_code(0);
        assert_eq!(
            State::s3(&s3, &prefix, "sites").complete("v1"),
            Some(e1.clone())
        );

        let e2 = s3.put("import/sites.kml", kml("two", 300));
        proxy.arm(case.rules.clone());
        let r = run(&e2, true, case.fault);
        let matched: Vec<u32> = (0..case.rules.len()).map(|i| proxy.matched(i)).collect();
        proxy.disarm();
        if let Some(code) = case.code {
            assert_eq!(r.code, code, "{}: {}\n{}", case.what, r.error(), r.stderr);
        }
        if case.fault.is_some() {
            assert!(killed(&r), "{}: not killed: {}", case.what, r.stderr);
        }
        for (i, n) in matched.iter().enumerate() {
            assert!(
                *n > 0,
                "{}: rule {i} never matched: {:?}",
                case.what,
                proxy.log()
            );
        }
        let now = State::s3(&s3, &prefix, "sites").complete(case.what);
        if case.may_swap {
            assert!(
                now == Some(e1.clone()) || now == Some(e2.clone()),
                "{}",
                case.what
            );
        } else {
            assert_eq!(
                now,
                Some(e1.clone()),
                "{}: the previous version must stand",
                case.what
            );
        }

        let r = rerun(&e2);
        r.assert_code(0);
        assert_eq!(
            State::s3(&s3, &prefix, "sites").complete(&format!("{}, rerun", case.what)),
            Some(e2.clone())
        );
        let gc = Run::from_output(
            etl_events()
                .args(["--gc", "--gc-now", "--output", &output])
                .output()
                .unwrap(),
        );
        gc.assert_code(0);
        let s = State::s3(&s3, &prefix, "sites");
        assert_eq!(s.complete(&format!("{}, gc", case.what)), Some(e2));
        s.nothing_unreferenced(case.what);
        covered += 1;
    }
    assert_eq!(covered, 11);
}

/// Multipart uploads (outputs over the 5 MiB part size): a failed UploadPart and a failed
/// Complete leave the previous version and no object; the rerun and gc restore the invariant.
#[test]
fn s3_multipart_failures_leave_the_previous_version() {
    let proxy = FaultProxy::start(&s3_endpoint()).unwrap();
    for (what, rule) in [
        (
            "UploadPart fails",
            Rule::sticky(Kind::UploadPart, 2, Action::Fail),
        ),
        (
            "CompleteMultipartUpload fails",
            Rule::sticky(Kind::CompleteMultipartUpload, 1, Action::Fail),
        ),
    ] {
        let s3 = S3::new();
        let output = format!("s3://{}/out/", s3.bucket);
        let prefix = format!("out/{}/import/", s3.bucket);
        let allow = format!("s3://{}/import/", s3.bucket);
        let big = |tag: &str| {
            let mut s = String::new();
            for i in 0..40_000 {
                s.push_str(&format!(
                    r#"{{"type":"Feature","properties":{{"tag":"{tag}","pad":"{}"}},"geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
                    "x".repeat(120),
                    170.0 + (i % 200) as f64 * 0.01,
                    -41.0 + (i / 200) as f64 * 0.01
                ));
                s.push('\n');
            }
            s.into_bytes()
        };
        let run = |etag: &str, via_proxy: bool| {
            let mut cmd = etl_events();
            cmd.env("ETL_ALLOW_SOURCE", &allow)
                .env("ETL_S3_PART_SIZE", (5 << 20).to_string())
                .args([
                    "--bucket",
                    &s3.bucket,
                    "--key",
                    "import/big.geojsonl",
                    "--etag",
                    etag,
                    "--output",
                    &output,
                    "--outputs",
                    "geojsonl",
                ]);
            if via_proxy {
                cmd.env("ETL_S3_ENDPOINT", proxy.endpoint());
            }
            Run::from_output(cmd.output().unwrap())
        };
        let e1 = s3.put("import/big.geojsonl", big("one"));
        run(&e1, false).assert_code(0);
        let e2 = s3.put("import/big.geojsonl", big("two"));
        proxy.arm(vec![rule]);
        let r = run(&e2, true);
        let matched = proxy.matched(0);
        proxy.disarm();
        assert!(
            [69, 75].contains(&r.code),
            "{what}: a retryable exit: {}",
            r.stderr
        );
        assert!(matched > 0, "{what}: the rule never matched");
        let s = State::s3(&s3, &prefix, "big");
        assert_eq!(s.complete(what), Some(e1.clone()));
        assert_eq!(s.objects.len(), 1, "{what}: {:?}", s.objects.keys());
        run(&e2, false).assert_code(0);
        assert_eq!(State::s3(&s3, &prefix, "big").complete(what), Some(e2));
    }
}
