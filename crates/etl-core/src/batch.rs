//! AWS Batch environment: job id, attempt, and array position.

use sha2::{Digest, Sha256};

/// What AWS Batch tells a container about itself through the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchEnv {
    pub job_id: Option<String>,
    /// 1-based attempt number.
    pub attempt: Option<u32>,
    /// 0-based index of this child in an array job.
    pub array_index: Option<u32>,
    pub array_size: Option<u32>,
    /// `AWS_BATCH_JOB_ARRAY_INDEX` as given (non-empty), so [`BatchEnv::validate`] can reject a
    /// value that did not parse instead of treating it as "not an array child".
    #[serde(skip)]
    pub raw_index: Option<String>,
    /// `AWS_BATCH_JOB_ARRAY_SIZE` as given (non-empty).
    #[serde(skip)]
    pub raw_size: Option<String>,
}

impl BatchEnv {
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u32>().ok());
        let raw = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        BatchEnv {
            job_id: get("AWS_BATCH_JOB_ID").filter(|s| !s.is_empty()),
            attempt: num("AWS_BATCH_JOB_ATTEMPT"),
            array_index: num("AWS_BATCH_JOB_ARRAY_INDEX"),
            array_size: num("AWS_BATCH_JOB_ARRAY_SIZE"),
            raw_index: raw("AWS_BATCH_JOB_ARRAY_INDEX"),
            raw_size: raw("AWS_BATCH_JOB_ARRAY_SIZE"),
        }
    }

    /// Checks the array position: an index without a valid size, an unparsable index, or an
    /// index outside the size would otherwise make this child silently process every key
    /// (duplicating its siblings' work). Returns a message naming the variables.
    pub fn validate(&self) -> Result<(), String> {
        let index = match (&self.raw_index, self.array_index) {
            (None, None) => return Ok(()),
            (Some(raw), None) => {
                return Err(format!(
                    "AWS_BATCH_JOB_ARRAY_INDEX={raw:?} is not a non-negative integer"
                ));
            }
            (_, Some(i)) => i,
        };
        match (self.array_size, &self.raw_size) {
            (Some(n), _) if n > 0 && index < n => Ok(()),
            (Some(n), _) if n > 0 => Err(format!(
                "AWS_BATCH_JOB_ARRAY_INDEX={index} is not below AWS_BATCH_JOB_ARRAY_SIZE={n}"
            )),
            (Some(n), _) => Err(format!(
                "AWS_BATCH_JOB_ARRAY_SIZE={n}: an array job needs a size of at least 1"
            )),
            (None, Some(raw)) => Err(format!(
                "AWS_BATCH_JOB_ARRAY_SIZE={raw:?} is not a positive integer \
                 (AWS_BATCH_JOB_ARRAY_INDEX={index})"
            )),
            (None, None) => Err(format!(
                "AWS_BATCH_JOB_ARRAY_INDEX={index} is set but AWS_BATCH_JOB_ARRAY_SIZE is not: \
                 set both to shard the input, or neither"
            )),
        }
    }

    /// The shard (index, size) this process handles, if it is an array child.
    pub fn shard(&self) -> Option<(u32, u32)> {
        match (self.array_index, self.array_size) {
            (Some(i), Some(n)) if n > 0 && i < n => Some((i, n)),
            _ => None,
        }
    }

    /// Whether `key` belongs to this process's shard: a stable hash of the key modulo the array
    /// size, so a retried child redoes exactly the same work.
    pub fn owns(&self, key: &str) -> bool {
        match self.shard() {
            None => true,
            Some((i, n)) => shard_of(key, n) == i,
        }
    }
}

/// Stable shard of a key among `n` shards (SHA-256 based: identical across builds and platforms).
pub fn shard_of(key: &str, n: u32) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_array_env() {
        let env = BatchEnv::from_lookup(|k| match k {
            "AWS_BATCH_JOB_ID" => Some("abc:1".into()),
            "AWS_BATCH_JOB_ATTEMPT" => Some("2".into()),
            "AWS_BATCH_JOB_ARRAY_INDEX" => Some("1".into()),
            "AWS_BATCH_JOB_ARRAY_SIZE" => Some("3".into()),
            _ => None,
        });
        assert_eq!(env.shard(), Some((1, 3)));
        assert_eq!(env.attempt, Some(2));
    }

    fn env_of(index: Option<&str>, size: Option<&str>) -> BatchEnv {
        BatchEnv::from_lookup(|k| match k {
            "AWS_BATCH_JOB_ARRAY_INDEX" => index.map(str::to_string),
            "AWS_BATCH_JOB_ARRAY_SIZE" => size.map(str::to_string),
            _ => None,
        })
    }

    #[test]
    fn validates_array_position() {
        assert_eq!(env_of(None, None).validate(), Ok(()));
        assert_eq!(env_of(Some("0"), Some("1")).validate(), Ok(()));
        assert_eq!(env_of(Some("2"), Some("3")).validate(), Ok(()));
        // A size alone (the parent of an array job) is harmless.
        assert_eq!(env_of(None, Some("3")).validate(), Ok(()));
        for (index, size) in [
            (Some("1"), None),
            (Some("1"), Some("")),
            (Some("1"), Some("x")),
            (Some("1"), Some("0")),
            (Some("3"), Some("3")),
            (Some("7"), Some("3")),
            (Some("-1"), Some("3")),
            (Some("one"), None),
        ] {
            let err = env_of(index, size)
                .validate()
                .expect_err("invalid position");
            assert!(err.contains("AWS_BATCH_JOB_ARRAY_"), "{err}");
        }
        let err = env_of(Some("1"), None).validate().unwrap_err();
        assert!(err.contains("AWS_BATCH_JOB_ARRAY_SIZE is not"), "{err}");
    }

    #[test]
    fn shards_partition_the_keys() {
        let keys: Vec<String> = (0..200).map(|i| format!("s3://b/k{i}.geojson")).collect();
        let n = 3;
        let mut seen = 0;
        for i in 0..n {
            let env = BatchEnv {
                array_index: Some(i),
                array_size: Some(n),
                ..Default::default()
            };
            let owned = keys.iter().filter(|k| env.owns(k)).count();
            assert!(owned > 0, "shard {i} got nothing");
            seen += owned;
        }
        assert_eq!(seen, keys.len(), "every key in exactly one shard");
        assert!(BatchEnv::default().owns("anything"));
    }
}
