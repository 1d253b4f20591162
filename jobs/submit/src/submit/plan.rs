//! What to submit: [`Options`] into a list of [`JobSpec`]s (pure; no AWS calls).

use super::SubmitError;
use super::cli::{Options, Overrides};

/// The part a job plays in one submission (the `role` in the JSON output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A plain job (or array job) as asked for.
    Job,
    /// The array job of a sharded pmtiles run.
    Shards,
    /// The job merging the shards' parts.
    Merge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Job => "job",
            Role::Shards => "shards",
            Role::Merge => "merge",
        }
    }
}

/// One SubmitJob request.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub role: Role,
    pub name: String,
    pub queue: String,
    pub definition: String,
    /// The container command override; `None` keeps the definition's command.
    pub command: Option<Vec<String>>,
    pub array_size: Option<i32>,
    /// Job ids known before submission (`--depends-on`).
    pub depends_on: Vec<String>,
    /// Also depend on the job at this index of the plan (submitted earlier).
    pub after: Option<usize>,
    pub overrides: Overrides,
}

/// The jobs to submit, in submission order.
pub fn plan(o: &Options) -> Result<Vec<JobSpec>, SubmitError> {
    let base = JobSpec {
        role: Role::Job,
        name: o.name.clone(),
        queue: o.queue.clone(),
        definition: o.definition.clone(),
        command: command(&o.job, &o.args),
        array_size: o.array_size,
        depends_on: o.depends_on.clone(),
        after: None,
        overrides: o.overrides.clone(),
    };
    let shards = match o.shards {
        None | Some(1) => return Ok(vec![base]),
        Some(n) => n,
    };
    let (at, out) = find_output(&o.args)?;
    if out.contains("{shard}") {
        return Err(SubmitError::Usage(format!(
            "pmtiles --shards: give the final output as -o (etl-submit adds the {{shard}} parts), got {out:?}"
        )));
    }
    let parts = format!("{out}.parts");
    let mut shard_args = o.args.clone();
    set_output(&mut shard_args, at, &format!("{parts}/{{shard}}.pmtiles"));
    let mut merge_cmd = vec!["pmtiles".to_owned(), "merge".to_owned(), out.clone()];
    merge_cmd.extend((0..shards).map(|i| format!("{parts}/{i}.pmtiles")));
    if o.args.iter().any(|a| a == "--force" || a == "-f") {
        merge_cmd.push("--force".to_owned());
    }
    // The merge writes the final object: the same S3 endpoint, addressing and encryption as
    // the shards that wrote the parts.
    merge_cmd.extend(s3_flags(&o.args));
    let array = JobSpec {
        role: Role::Shards,
        command: command(&o.job, &shard_args),
        array_size: i32::try_from(shards).ok(),
        ..base.clone()
    };
    let merge = JobSpec {
        role: Role::Merge,
        name: format!("{}-merge", o.name),
        command: Some(merge_cmd),
        array_size: None,
        depends_on: Vec::new(),
        after: Some(0),
        ..base
    };
    Ok(vec![array, merge])
}

/// `[JOB, ARGS...]` when there are ARGS; none keeps the definition's command.
pub fn command(job: &str, args: &[String]) -> Option<Vec<String>> {
    (!args.is_empty()).then(|| {
        std::iter::once(job.to_owned())
            .chain(args.iter().cloned())
            .collect()
    })
}

/// Where the output is given in the tiler's args.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OutputAt {
    /// `-o OUT` / `--output OUT`: the value is the argument at this index.
    Separate(usize),
    /// `--output=OUT` / `-o=OUT` / `-oOUT`: the argument at this index, with this prefix.
    Joined(usize, usize),
}

fn find_output(args: &[String]) -> Result<(OutputAt, String), SubmitError> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            break;
        }
        let hit = if a == "-o" || a == "--output" {
            let v = args.get(i + 1).ok_or_else(|| {
                SubmitError::Usage(format!("pmtiles --shards: {a} needs a value"))
            })?;
            Some((OutputAt::Separate(i + 1), v.clone()))
        } else if let Some(v) = a.strip_prefix("--output=") {
            Some((OutputAt::Joined(i, "--output=".len()), v.to_owned()))
        } else if let Some(v) = a.strip_prefix("-o=") {
            Some((OutputAt::Joined(i, 3), v.to_owned()))
        } else {
            a.strip_prefix("-o")
                .filter(|v| !v.is_empty())
                .map(|v| (OutputAt::Joined(i, 2), v.to_owned()))
        };
        if let Some(h) = hit {
            if found.is_some() {
                return Err(SubmitError::Usage(
                    "pmtiles --shards: the output (-o) is given twice".to_owned(),
                ));
            }
            if let OutputAt::Separate(_) = h.0 {
                i += 1;
            }
            found = Some(h);
        }
        i += 1;
    }
    match found {
        Some((_, v)) if v.is_empty() => Err(SubmitError::Usage(
            "pmtiles --shards: the output (-o) is empty".to_owned(),
        )),
        Some(f) => Ok(f),
        None => Err(SubmitError::Usage(
            "pmtiles --shards needs the output in the job args: -- ... -o s3://bucket/x.pmtiles"
                .to_owned(),
        )),
    }
}

fn set_output(args: &mut [String], at: OutputAt, value: &str) {
    match at {
        OutputAt::Separate(i) => args[i] = value.to_owned(),
        OutputAt::Joined(i, prefix) => {
            let head = args[i][..prefix].to_owned();
            args[i] = format!("{head}{value}");
        }
    }
}

/// The runner's S3 flags among a job's arguments (`--flag VALUE` or `--flag=VALUE`).
fn s3_flags(args: &[String]) -> Vec<String> {
    const WITH_VALUE: [&str; 3] = ["--s3-endpoint", "--sse-kms-key-id", "--s3-part-size"];
    const SWITCHES: [&str; 1] = ["--s3-path-style"];
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            out.push(arg.clone());
            out.extend(iter.next().cloned());
        } else if SWITCHES.contains(&arg.as_str())
            || WITH_VALUE.iter().chain(&SWITCHES).any(|f| {
                arg.strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with('='))
            })
        {
            out.push(arg.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::submit::cli::{Options, parse};

    fn opts(args: &[&str]) -> Options {
        let top = parse(args.iter().map(Into::into).collect())
            .unwrap()
            .unwrap();
        Options::from_cli(top.submit, "T").unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain() {
        let p = plan(&opts(&["data", "--depends-on", "x", "--", "--event", "-"])).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].role, Role::Job);
        assert_eq!(p[0].command, Some(s(&["data", "--event", "-"])));
        assert_eq!(p[0].depends_on, ["x"]);
        assert_eq!(p[0].name, "etl-data-T");
        let p = plan(&opts(&["data"])).unwrap();
        assert_eq!(p[0].command, None);
    }

    #[test]
    fn sharded() {
        let p = plan(&opts(&[
            "pmtiles",
            "--shards",
            "3",
            "--depends-on",
            "d",
            "--env",
            "A=1",
            "--",
            "--in",
            "s3://b/in",
            "-o",
            "s3://b/tiles/x.pmtiles",
            "--maxzoom",
            "12",
        ]))
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].role, Role::Shards);
        assert_eq!(p[0].array_size, Some(3));
        assert_eq!(p[0].depends_on, ["d"]);
        assert_eq!(
            p[0].command,
            Some(s(&[
                "pmtiles",
                "--in",
                "s3://b/in",
                "-o",
                "s3://b/tiles/x.pmtiles.parts/{shard}.pmtiles",
                "--maxzoom",
                "12",
            ]))
        );
        assert_eq!(p[1].role, Role::Merge);
        assert_eq!(p[1].name, "etl-pmtiles-T-merge");
        assert_eq!(p[1].after, Some(0));
        assert!(p[1].depends_on.is_empty());
        assert_eq!(p[1].array_size, None);
        assert_eq!(p[1].overrides.environment, [("A".into(), "1".into())]);
        assert_eq!(
            p[1].command,
            Some(s(&[
                "pmtiles",
                "merge",
                "s3://b/tiles/x.pmtiles",
                "s3://b/tiles/x.pmtiles.parts/0.pmtiles",
                "s3://b/tiles/x.pmtiles.parts/1.pmtiles",
                "s3://b/tiles/x.pmtiles.parts/2.pmtiles",
            ]))
        );
    }

    #[test]
    fn the_merge_job_writes_with_the_shards_s3_settings() {
        let p = plan(&opts(&[
            "pmtiles",
            "--shards",
            "2",
            "--",
            "-o",
            "s3://b/x.pmtiles",
            "--s3-endpoint",
            "http://minio:9000",
            "--sse-kms-key-id=K",
            "--s3-path-style",
            "-z",
            "9",
        ]))
        .unwrap();
        let merge = p[1].command.as_ref().unwrap();
        let tail: Vec<&str> = merge[5..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--s3-endpoint",
                "http://minio:9000",
                "--sse-kms-key-id=K",
                "--s3-path-style"
            ],
            "{merge:?}"
        );
    }

    #[test]
    fn output_forms() {
        for (args, want) in [
            (
                &["--output=o.pmtiles"][..],
                "--output=o.pmtiles.parts/{shard}.pmtiles",
            ),
            (&["-o=o.pmtiles"], "-o=o.pmtiles.parts/{shard}.pmtiles"),
            (&["-oo.pmtiles"], "-oo.pmtiles.parts/{shard}.pmtiles"),
        ] {
            let mut a = vec!["pmtiles", "--shards", "2", "--", "-f"];
            a.extend_from_slice(args);
            let p = plan(&opts(&a)).unwrap();
            assert_eq!(p[0].command.as_ref().unwrap()[2], want);
            assert_eq!(p[1].command.as_ref().unwrap()[2], "o.pmtiles");
            assert_eq!(p[1].command.as_ref().unwrap().last().unwrap(), "--force");
        }
    }

    #[test]
    fn one_shard_is_one_job() {
        let p = plan(&opts(&[
            "pmtiles",
            "--shards",
            "1",
            "--",
            "-o",
            "s3://b/x.pmtiles",
        ]))
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].role, Role::Job);
        assert_eq!(p[0].array_size, None);
        assert_eq!(
            p[0].command,
            Some(s(&["pmtiles", "-o", "s3://b/x.pmtiles"]))
        );
    }

    #[test]
    fn sharded_usage_errors() {
        for bad in [
            &["pmtiles", "--shards", "2", "--", "--in", "x"][..],
            &["pmtiles", "--shards", "2", "--", "-o"],
            &["pmtiles", "--shards", "2", "--", "-o", "a", "--output", "b"],
            &["pmtiles", "--shards", "2", "--", "-o", "a/{shard}.pmtiles"],
        ] {
            assert!(
                matches!(plan(&opts(bad)), Err(SubmitError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
