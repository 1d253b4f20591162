//! Leases: who may run a run key right now.
//!
//! A lease is held until released or dropped; S3 and Postgres leases are heartbeated by a task.
//! When a heartbeat finds the lease gone (taken over after expiry, connection lost), `lost()`
//! fires and the job must stop before committing anything more.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Who holds a lease the caller could not take, and until when (ms since epoch) if it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub owner: String,
    pub until: Option<i64>,
}

/// An S3 lease document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseDoc {
    pub owner: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub until_ms: i64,
}

/// Whether `owner` may take a lease whose current document is `current` at time `now_ms`:
/// nobody holds it, it is ours already (a restarted attempt of the same worker), or it expired.
pub fn may_take(current: Option<&LeaseDoc>, owner: &str, now_ms: i64) -> bool {
    match current {
        None => true,
        Some(doc) => doc.owner == owner || doc.until_ms < now_ms,
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How often a lease of `ttl` is renewed: three chances before it expires.
pub fn heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(200))
}

/// After a failed renewal: whether to give the lease up now because it is valid (until
/// `until_ms`) for less than one more heartbeat `interval`, so the next attempt would come too
/// late. Firing before expiry leaves the job time to stop before another worker can take over.
pub fn renewal_gives_up(until_ms: i64, now_ms: i64, interval: Duration) -> bool {
    until_ms - now_ms < interval.as_millis() as i64
}

#[derive(Debug)]
pub struct Lease {
    lost: CancellationToken,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// Keeps an OS file lock alive for file leases.
    _file: Option<std::fs::File>,
}

impl Lease {
    pub(super) fn file(file: std::fs::File) -> Lease {
        Lease {
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
            task: None,
            _file: Some(file),
        }
    }

    /// A lease kept alive by `heartbeat`, a task that runs until `stop` fires and releases the
    /// lease on its way out, or cancels `lost` when renewal fails.
    pub(super) fn with_task(
        lost: CancellationToken,
        stop: CancellationToken,
        task: JoinHandle<()>,
    ) -> Lease {
        Lease {
            lost,
            stop,
            task: Some(task),
            _file: None,
        }
    }

    /// Fires when the lease can no longer be trusted.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Stops heartbeating and gives the lease up, waiting for the release to finish.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The task sees `stop` and releases by itself; the runner waits for it before exit.
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            crate::store::register_cleanup(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_rules() {
        let doc = LeaseDoc {
            owner: "a".into(),
            until_ms: 1000,
        };
        assert!(may_take(None, "b", 0));
        assert!(may_take(Some(&doc), "a", 500), "own lease can be retaken");
        assert!(!may_take(Some(&doc), "b", 500), "live lease of another");
        assert!(may_take(Some(&doc), "b", 1001), "expired lease");
    }

    #[test]
    fn renewal_gives_up_one_interval_before_expiry() {
        let ttl = Duration::from_secs(30);
        let interval = heartbeat_interval(ttl); // 10 s
        let until = 100_000;
        // Renewed at 70 s, failed at 80 s: 20 s left, one more try fits.
        assert!(!renewal_gives_up(until, 80_000, interval));
        assert!(
            !renewal_gives_up(until, 90_000, interval),
            "exactly one interval left"
        );
        // Failed again at 90.001 s: the next try would be after expiry.
        assert!(renewal_gives_up(until, 90_001, interval));
        assert!(renewal_gives_up(until, 100_000, interval));
        assert!(renewal_gives_up(until, 120_000, interval));
    }
}
