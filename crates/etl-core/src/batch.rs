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
}

impl BatchEnv {
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u32>().ok());
        BatchEnv {
            job_id: get("AWS_BATCH_JOB_ID").filter(|s| !s.is_empty()),
            attempt: num("AWS_BATCH_JOB_ATTEMPT"),
            array_index: num("AWS_BATCH_JOB_ARRAY_INDEX"),
            array_size: num("AWS_BATCH_JOB_ARRAY_SIZE"),
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
