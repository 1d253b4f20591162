//! Where an object lives: a local path or an S3 bucket and key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl Location {
    /// Parses `s3://bucket/key`, `file:///path` or a bare path.
    pub fn parse(url: &str) -> Result<Location, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::InvalidUrl(format!(
                    "{url}: no bucket name after s3://"
                )));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(StoreError::InvalidUrl(format!("{url}: empty path")));
            }
            return Ok(Location::File(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(StoreError::InvalidUrl(format!(
                "{url}: unsupported scheme (expected a path, file:// or s3://)"
            )));
        }
        if url.is_empty() {
            return Err(StoreError::InvalidUrl("empty path".into()));
        }
        Ok(Location::File(PathBuf::from(url)))
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Location::S3 { .. })
    }

    /// The last path segment (file name or last key segment).
    pub fn file_name(&self) -> &str {
        match self {
            Location::File(p) => p.file_name().and_then(|n| n.to_str()).unwrap_or(""),
            Location::S3 { key, .. } => key.rsplit('/').next().unwrap_or(""),
        }
    }

    /// A sibling or child location: `name` is appended to the directory (a trailing `/` or a
    /// local directory) or replaces the last segment.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::File(p) => Location::File(p.join(name)),
            Location::S3 { bucket, key } => {
                let key = if key.is_empty() || key.ends_with('/') {
                    format!("{key}{name}")
                } else {
                    format!("{key}/{name}")
                };
                Location::S3 {
                    bucket: bucket.clone(),
                    key,
                }
            }
        }
    }

    /// The directory that holds this object (S3: the key prefix up to the last `/`).
    pub fn parent(&self) -> Location {
        match self {
            Location::File(p) => Location::File(
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
            ),
            Location::S3 { bucket, key } => Location::S3 {
                bucket: bucket.clone(),
                key: match key.rfind('/') {
                    Some(i) => key[..=i].to_string(),
                    None => String::new(),
                },
            },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Whether a path or key uses glob syntax.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            Location::parse("s3://b/a/k.geojson").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "a/k.geojson".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "".into()
            }
        );
        assert_eq!(
            Location::parse("file:///tmp/x").unwrap(),
            Location::File("/tmp/x".into())
        );
        assert_eq!(
            Location::parse("rel/x.csv").unwrap(),
            Location::File("rel/x.csv".into())
        );
        assert!(Location::parse("s3:///k").is_err());
        assert!(Location::parse("http://x/y").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn join_and_parent() {
        let d = Location::parse("s3://b/out/").unwrap();
        assert_eq!(d.join("x.json").to_string(), "s3://b/out/x.json");
        let f = Location::parse("s3://b/out/a.geojsonl").unwrap();
        assert_eq!(f.parent().to_string(), "s3://b/out/");
        assert_eq!(f.file_name(), "a.geojsonl");
        assert_eq!(
            Location::parse("a.geojsonl").unwrap().parent(),
            Location::File(".".into())
        );
    }
}
