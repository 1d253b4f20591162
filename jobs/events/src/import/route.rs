//! Where an import's outputs go, and which sources may be imported at all.

use etl_core::JobError;
use etl_core::store::Location;

use crate::publish::Target;

/// Where one source's outputs go: `output`, then (for an S3 object) its bucket and its key's
/// folder, then the file name without its extension (or `name`). The bucket is part of the
/// layout so that the same key in two buckets never shares outputs.
pub fn target_for(output: &str, source: &Location, name: Option<&str>) -> Result<Target, JobError> {
    let root = Location::parse(output).map_err(|e| JobError::usage(format!("--output: {e}")))?;
    let root = match &root {
        // A prefix that does not end in '/' still names a folder.
        Location::S3 { bucket, key } if !key.is_empty() && !key.ends_with('/') => Location::S3 {
            bucket: bucket.clone(),
            key: format!("{key}/"),
        },
        _ => root,
    };
    if let Location::S3 { bucket, key } = source {
        check_key(bucket, key)?;
    }
    let file = source.file_name();
    let stem = match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file,
    };
    let given = name;
    let name = name.unwrap_or(stem);
    if name.is_empty()
        || name.contains(['/', '\\', '\0'])
        || name == "."
        || name == ".."
        || name.starts_with('.')
    {
        let why = format!("cannot name outputs after {source}");
        return Err(match given {
            Some(_) => JobError::usage(format!("--name: {why}")),
            None if source.is_s3() => JobError::bad_input(why),
            None => JobError::usage(format!("{why}: give --name")),
        });
    }
    let prefix = match source {
        Location::S3 { bucket, key } => {
            let folder = match key.rfind('/') {
                Some(i) => &key[..=i],
                None => "",
            };
            root.join(&format!("{bucket}/")).join(folder)
        }
        Location::File(_) => root,
    };
    Ok(Target {
        prefix,
        name: name.to_owned(),
    })
}

/// Refuses keys that could climb out of an output folder or name nothing: `.`/`..` segments,
/// a leading `/`, empty segments, NUL, a "folder" key ending in `/`.
pub fn check_key(bucket: &str, key: &str) -> Result<(), JobError> {
    let bad = |why: &str| {
        Err(JobError::bad_input(format!(
            "s3://{bucket}/{key}: {why}; nothing was imported"
        )))
    };
    if key.is_empty() || key.ends_with('/') {
        return bad("the key names a folder, not an object");
    }
    if key.contains('\0') {
        return bad("the key contains NUL");
    }
    if key.starts_with('/') {
        return bad("the key starts with /");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        // `.`/`..` climb; other dot-names would land in hidden folders gc and leases use.
        return bad("the key has an empty segment or one starting with '.'");
    }
    Ok(())
}

/// Whether event and queue imports may read `source`: only S3 objects under one of the
/// `allowed` (bucket, key prefix) pairs; never a local path; never a hostile key.
pub fn check_source(allowed: &[(String, String)], source: &Location) -> Result<(), JobError> {
    let Location::S3 { bucket, key } = source else {
        return Err(JobError::bad_input(format!(
            "{source}: event and queue imports read only s3:// objects, never local paths"
        )));
    };
    if allowed.is_empty() {
        return Err(JobError::config(
            "event and queue imports need --allow-source s3://bucket/prefix/ (ETL_ALLOW_SOURCE): the buckets they may read",
        ));
    }
    check_key(bucket, key)?;
    let ok = allowed.iter().any(|(b, prefix)| {
        let folder = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.clone()
        } else {
            format!("{prefix}/")
        };
        b == bucket && key.starts_with(&folder)
    });
    if !ok {
        return Err(JobError::bad_input(format!(
            "{source}: outside the allowed sources (--allow-source); nothing was imported"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn targets_follow_the_bucket_and_key_folder() {
        let src = Location::parse("s3://up/import/team alpha/route 1.kml").unwrap();
        let t = target_for("s3://out/processed", &src, None).unwrap();
        assert_eq!(
            t.manifest().to_string(),
            "s3://out/processed/up/import/team alpha/route 1.json"
        );
        // The same key in another bucket gets its own outputs.
        let other = target_for(
            "s3://out/processed",
            &Location::parse("s3://up2/import/team alpha/route 1.kml").unwrap(),
            None,
        )
        .unwrap();
        assert_ne!(other.manifest(), t.manifest());
        let t = target_for(
            "s3://out/",
            &Location::parse("s3://up/x.gpx").unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(t.manifest().to_string(), "s3://out/up/x.json");
        let t = target_for("out", &Location::parse("/data/a/b.tar.kmz").unwrap(), None).unwrap();
        assert_eq!(t.manifest().to_string(), "out/b.tar.json");
        let t = target_for(
            "out",
            &Location::parse("/data/noext").unwrap(),
            Some("mine"),
        )
        .unwrap();
        assert_eq!(t.manifest().to_string(), "out/mine.json");
        assert!(target_for("out", &Location::parse("/data/x.kml").unwrap(), Some("a/b")).is_err());
        assert!(
            target_for(
                "out",
                &Location::parse("/data/x.kml").unwrap(),
                Some(".hidden")
            )
            .is_err()
        );
    }

    #[test]
    fn hostile_keys_are_refused() {
        for key in [
            "import/../../etc/x.kml",
            "../x.kml",
            "/abs.kml",
            "import//x.kml",
            "import/./x.kml",
            "import/.x/a.kml",
            "import/.hidden.kml",
            "import/x\0.kml",
            "import/",
            "",
        ] {
            let e = target_for(
                "out",
                &Location::S3 {
                    bucket: "b".into(),
                    key: key.to_owned(),
                },
                None,
            )
            .unwrap_err();
            assert_eq!(e.kind, etl_core::ExitKind::BadInput, "{key:?}: {e}");
        }
    }

    #[test]
    fn sources_must_be_allowed() {
        let allowed = vec![
            ("up".to_owned(), "import/".to_owned()),
            ("all".to_owned(), String::new()),
        ];
        let ok = |u: &str| check_source(&allowed, &Location::parse(u).unwrap());
        assert!(ok("s3://up/import/a.kml").is_ok());
        assert!(ok("s3://all/any/where.kml").is_ok());
        for refused in [
            "s3://up/importx/a.kml",
            "s3://up/a.kml",
            "s3://other/import/a.kml",
            "/etc/passwd",
            "s3://up/import/../a.kml",
        ] {
            let e = ok(refused).unwrap_err();
            assert_eq!(e.kind, etl_core::ExitKind::BadInput, "{refused}: {e}");
        }
        // A prefix given without a trailing slash still names a folder.
        let no_slash = vec![("up".to_owned(), "import".to_owned())];
        assert!(
            check_source(
                &no_slash,
                &Location::parse("s3://up/importx/a.kml").unwrap()
            )
            .is_err()
        );
        // Nothing allowed: a configuration error, never an open door.
        let e = check_source(&[], &Location::parse("s3://up/import/a.kml").unwrap()).unwrap_err();
        assert_eq!(e.kind, etl_core::ExitKind::Config);
    }
}
