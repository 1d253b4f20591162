//! Checkpoints under an S3 prefix: `<prefix><scope>.json` (compare-and-swap on its ETag) and a
//! lease object `<prefix><scope>.lease` created with `If-None-Match: *`, renewed with `If-Match`.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::lease::{LeaseDoc, heartbeat_interval, may_take, now_ms, renewal_gives_up};
use super::{CheckpointError, Lease, LeaseInfo, States, decode_states, encode_states};
use crate::store::{Location, Precondition, Store, StoreError};

pub struct S3Checkpoints {
    store: Store,
    prefix: Location,
    /// Serialises read-modify-write of scope documents within this process.
    write: Mutex<()>,
}

impl S3Checkpoints {
    pub fn new(store: Store, prefix: Location) -> Self {
        S3Checkpoints {
            store,
            prefix,
            write: Mutex::new(()),
        }
    }

    pub fn describe(&self) -> String {
        self.prefix.to_string()
    }

    fn doc(&self, scope: &str) -> Location {
        self.prefix.join(&format!("{scope}.json"))
    }

    fn lease_loc(&self, scope: &str) -> Location {
        self.prefix.join(&format!("{scope}.lease"))
    }

    /// The scope's states and the ETag they were read at (None: no document yet).
    async fn load_versioned(
        &self,
        scope: &str,
    ) -> Result<(States, Option<String>), CheckpointError> {
        let loc = self.doc(scope);
        match self.store.get(&loc).await? {
            None => Ok((States::new(), None)),
            Some((bytes, etag)) => Ok((decode_states(&loc.to_string(), &bytes)?, Some(etag))),
        }
    }

    pub async fn load(&self, scope: &str) -> Result<States, CheckpointError> {
        Ok(self.load_versioned(scope).await?.0)
    }

    /// Read-modify-write under compare-and-swap on the ETag this call read, so a writer
    /// elsewhere is detected (`Conflict`) instead of overwritten; saves from this process are
    /// serialised so they never conflict with each other.
    pub async fn save(
        &self,
        scope: &str,
        name: &str,
        state: &Value,
    ) -> Result<(), CheckpointError> {
        let _guard = self.write.lock().await;
        let (mut states, etag) = self.load_versioned(scope).await?;
        states.insert(name.to_string(), state.clone());
        let cond = match etag {
            Some(etag) => Precondition::IfMatch(etag),
            None => Precondition::IfAbsent,
        };
        let loc = self.doc(scope);
        match self.store.put(&loc, encode_states(&states), cond).await {
            Ok(_) => Ok(()),
            Err(StoreError::PreconditionFailed(l)) => Err(CheckpointError::Conflict(l)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn clear(&self, scope: &str) -> Result<(), CheckpointError> {
        let _guard = self.write.lock().await;
        self.store.delete(&self.doc(scope)).await?;
        Ok(())
    }

    pub async fn acquire(
        &self,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Result<Lease, LeaseInfo>, CheckpointError> {
        let loc = self.lease_loc(scope);
        let doc = |owner: &str| LeaseDoc {
            owner: owner.to_string(),
            until_ms: now_ms() + ttl.as_millis() as i64,
        };
        let body = |d: &LeaseDoc| serde_json::to_vec(d).unwrap_or_default();
        // Two rounds: the holder may delete its lease between our create and our read.
        for _ in 0..2 {
            match self
                .store
                .put(&loc, body(&doc(owner)), Precondition::IfAbsent)
                .await
            {
                Ok(etag) => return Ok(Ok(self.heartbeat(loc, owner, ttl, etag))),
                Err(StoreError::PreconditionFailed(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let Some((bytes, etag)) = self.store.get(&loc).await? else {
                continue;
            };
            let current: Option<LeaseDoc> = serde_json::from_slice(&bytes).ok();
            if !may_take(current.as_ref(), owner, now_ms()) {
                let current = current.unwrap_or(LeaseDoc {
                    owner: String::new(),
                    until_ms: 0,
                });
                return Ok(Err(LeaseInfo {
                    owner: current.owner,
                    until: Some(current.until_ms),
                }));
            }
            match self
                .store
                .put(&loc, body(&doc(owner)), Precondition::IfMatch(etag))
                .await
            {
                Ok(etag) => return Ok(Ok(self.heartbeat(loc, owner, ttl, etag))),
                Err(StoreError::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Err(LeaseInfo {
            owner: "another worker (lease changed while acquiring)".into(),
            until: None,
        }))
    }

    fn heartbeat(&self, loc: Location, owner: &str, ttl: Duration, etag: String) -> Lease {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let store = self.store.clone();
        let owner = owner.to_string();
        let (lost_t, stop_t) = (lost.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut etag = etag;
            let mut until = now_ms() + ttl.as_millis() as i64;
            let interval = heartbeat_interval(ttl);
            loop {
                tokio::select! {
                    _ = stop_t.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
                let doc = LeaseDoc {
                    owner: owner.clone(),
                    until_ms: now_ms() + ttl.as_millis() as i64,
                };
                let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                // A renewal may take at most one interval: a stalled request must not carry the
                // lease past its expiry unnoticed.
                let renewed = tokio::time::timeout(
                    interval,
                    store.put(&loc, bytes, Precondition::IfMatch(etag.clone())),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Config(format!(
                        "{loc}: lease renewal timed out after {} ms",
                        interval.as_millis()
                    )))
                });
                match renewed {
                    Ok(new) => {
                        etag = new;
                        until = doc.until_ms;
                    }
                    Err(StoreError::PreconditionFailed(_)) => {
                        tracing::error!(lease = %loc, "lease taken over by another worker");
                        lost_t.cancel();
                        return;
                    }
                    Err(e) => {
                        if renewal_gives_up(until, now_ms(), interval) {
                            // The next attempt would come after expiry, when another worker
                            // may already have taken over: stop before that, not after.
                            tracing::error!(
                                lease = %loc,
                                error = %e,
                                "lease renewal failed and the lease expires within one heartbeat"
                            );
                            lost_t.cancel();
                            return;
                        }
                        tracing::warn!(lease = %loc, error = %e, "lease renewal failed; retrying");
                    }
                }
            }
            // Release: delete the lease object only if it is still ours.
            match store.delete_if_match(&loc, &etag).await {
                Ok(()) => {}
                Err(StoreError::PreconditionFailed(_)) => {
                    tracing::warn!(lease = %loc, "lease was taken over; left in place");
                }
                Err(StoreError::S3 {
                    status: Some(501), ..
                }) => {
                    // A server without conditional deletes: expire our document with If-Match
                    // (so nobody else's is touched), then delete.
                    let expired = LeaseDoc { owner, until_ms: 0 };
                    let bytes = serde_json::to_vec(&expired).unwrap_or_default();
                    if store
                        .put(&loc, bytes, Precondition::IfMatch(etag))
                        .await
                        .is_ok()
                    {
                        let _ = store.delete(&loc).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %loc, error = %e, "could not release the lease; it expires on its own");
                }
            }
        });
        Lease::with_task(lost, stop, task)
    }
}
