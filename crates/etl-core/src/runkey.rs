//! Run identity: hash(job name, resolved config with its outputs, logical input).
//!
//! Not `AWS_BATCH_JOB_ID`: a resubmitted job must find its checkpoint, and the same input loaded
//! into another table is another run.

use sha2::{Digest, Sha256};

/// One logical input as the run key sees it: its URL and the version that was read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputVersion {
    pub url: String,
    pub etag: Option<String>,
    pub size: u64,
}

/// Computes the run key: 32 hex characters, stable for equal (job, config, inputs).
pub fn run_key(job: &str, config: &serde_json::Value, inputs: &[InputVersion]) -> String {
    let mut h = Sha256::new();
    h.update(job.as_bytes());
    h.update([0]);
    // serde_json::Value serialises maps in insertion order; canonicalise so key order cannot
    // change the identity.
    h.update(canonical(config).as_bytes());
    h.update([0]);
    for i in inputs {
        h.update(i.url.as_bytes());
        h.update([0]);
        h.update(i.etag.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(i.size.to_be_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn canonical(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(etag: &str) -> InputVersion {
        InputVersion {
            url: "s3://b/k".into(),
            etag: Some(etag.into()),
            size: 10,
        }
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = run_key("j", &json!({"a":1,"b":{"x":1,"y":2}}), &[input("e")]);
        let b = run_key("j", &json!({"b":{"y":2,"x":1},"a":1}), &[input("e")]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn config_and_input_version_change_the_key() {
        let base = run_key("j", &json!({"table":"a"}), &[input("e1")]);
        assert_ne!(base, run_key("j", &json!({"table":"b"}), &[input("e1")]));
        assert_ne!(base, run_key("j", &json!({"table":"a"}), &[input("e2")]));
        assert_ne!(base, run_key("k", &json!({"table":"a"}), &[input("e1")]));
    }
}
