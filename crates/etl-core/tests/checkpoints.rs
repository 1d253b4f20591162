//! Checkpoint stores (local directory, S3 prefix, Postgres tables) and their leases, against the
//! real services scripts/test.sh starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::str::FromStr;
use std::time::Duration;

use etl_core::checkpoint::{Checkpoints, Lease, LeaseInfo, PostgresCheckpoints};
use etl_core::store::{Location, Precondition, S3Config, Store};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use common::{database_url, eventually, new_bucket, s3_store, unique};

const TTL: Duration = Duration::from_secs(30);

fn no_s3() -> Store {
    Store::new(S3Config::default())
}

async fn acquired(cp: &Checkpoints, scope: &str, owner: &str, ttl: Duration) -> Lease {
    match cp.acquire(scope, owner, ttl).await.expect("acquire") {
        Ok(lease) => lease,
        Err(info) => panic!("{owner} could not take the lease on {scope}: held by {info:?}"),
    }
}

async fn refused(cp: &Checkpoints, scope: &str, owner: &str) -> LeaseInfo {
    match cp.acquire(scope, owner, TTL).await.expect("acquire") {
        Ok(lease) => {
            lease.release().await;
            panic!("{owner} took the lease on {scope} while another owner held it")
        }
        Err(info) => info,
    }
}

/// Acquires the lease as soon as it is free: polls for up to 10 s, 50 ms apart.
async fn acquired_eventually(cp: &Checkpoints, scope: &str, owner: &str, what: &str) -> Lease {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match cp.acquire(scope, owner, TTL).await.expect("acquire") {
            Ok(lease) => return lease,
            Err(info) => assert!(
                std::time::Instant::now() < deadline,
                "gave up after 10 s waiting for {what}; still held by {info:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Save, load, overwrite and clear named states; two scopes never see each other's states.
async fn states_round_trip(cp: &Checkpoints, test: &str) {
    let a = unique(&format!("{test}-a"));
    let b = unique(&format!("{test}-b"));
    assert!(cp.load(&a).await.unwrap().is_empty(), "new scope is empty");

    cp.save(&a, "reader", &json!({"offset": 10, "file": "a.csv"}))
        .await
        .unwrap();
    cp.save(&a, "writer", &json!(7)).await.unwrap();
    cp.save(&a, "reader", &json!({"offset": 20, "file": "a.csv"}))
        .await
        .unwrap();
    cp.save(&b, "reader", &json!("other scope")).await.unwrap();

    let got = cp.load(&a).await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got["reader"], json!({"offset": 20, "file": "a.csv"}));
    assert_eq!(got["writer"], json!(7));
    let got_b = cp.load(&b).await.unwrap();
    assert_eq!(got_b.len(), 1, "{got_b:?}");
    assert_eq!(got_b["reader"], json!("other scope"));

    cp.clear(&a).await.unwrap();
    assert!(cp.load(&a).await.unwrap().is_empty(), "cleared scope");
    assert_eq!(cp.load(&b).await.unwrap().len(), 1, "clear is per scope");
    cp.clear(&a).await.expect("clearing an empty scope is Ok");

    // A scope can be reused after a clear.
    cp.save(&a, "writer", &json!(null)).await.unwrap();
    assert_eq!(cp.load(&a).await.unwrap()["writer"], Value::Null);
    cp.clear(&a).await.unwrap();
    cp.clear(&b).await.unwrap();
}

/// Saves of different names into one scope, issued concurrently by tasks of one worker (the lease
/// holder), must all succeed and all be kept: a named state is replaced only by its own name.
async fn concurrent_saves_keep_every_state(cp: Checkpoints, test: &str, bug: &str) {
    let cp = std::sync::Arc::new(cp);
    let scope = unique(test);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (cp, scope) = (cp.clone(), scope.clone());
            tokio::spawn(async move { cp.save(&scope, &format!("stage-{i}"), &json!(i)).await })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failed.push(e.to_string());
        }
    }
    let kept = cp.load(&scope).await.unwrap();
    assert!(
        failed.is_empty() && kept.len() == 8,
        "{bug}\nconcurrent saves of 8 different names into one scope: {} failed {failed:?}; \
         kept {:?}",
        failed.len(),
        kept.keys().collect::<Vec<_>>()
    );
    cp.clear(&scope).await.unwrap();
}

/// One owner at a time; the refusal names the holder; a released lease can be taken.
async fn lease_is_exclusive(cp: &Checkpoints, test: &str) {
    let scope = unique(test);
    let other_scope = unique(test);
    let first = acquired(cp, &scope, "worker-1", TTL).await;
    assert!(!first.is_lost());
    let info = refused(cp, &scope, "worker-2").await;
    assert_eq!(info.owner, "worker-1", "the refusal names the holder");

    // Leases are per scope.
    let unrelated = acquired(cp, &other_scope, "worker-2", TTL).await;

    first.release().await;
    let second = acquired(cp, &scope, "worker-2", TTL).await;
    let info = refused(cp, &scope, "worker-1").await;
    assert_eq!(info.owner, "worker-2");
    assert!(!second.is_lost());
    second.release().await;
    unrelated.release().await;
}

async fn open_file(dir: &std::path::Path) -> Checkpoints {
    let cp = Checkpoints::open(&dir.join("cp").display().to_string(), &no_s3(), None)
        .await
        .unwrap();
    assert!(matches!(cp, Checkpoints::File(_)));
    cp
}

async fn open_s3(test: &str) -> (Checkpoints, Store, String) {
    let store = s3_store();
    let bucket = new_bucket(&store, test).await;
    let cp = Checkpoints::open(&format!("s3://{bucket}/cp/"), &store, None)
        .await
        .unwrap();
    assert!(matches!(cp, Checkpoints::S3(_)));
    (cp, store, bucket)
}

async fn open_pg() -> Checkpoints {
    let cp = Checkpoints::open(&database_url(), &no_s3(), None)
        .await
        .unwrap();
    assert!(cp.as_postgres().is_some());
    cp
}

/// A pool whose connections carry a unique application_name, so a test can find (and kill)
/// exactly its own backends.
async fn named_pool(app: &str) -> PgPool {
    let opts = PgConnectOptions::from_str(&database_url())
        .unwrap()
        .application_name(app);
    PgPoolOptions::new()
        .max_connections(3)
        .connect_with(opts)
        .await
        .expect("connecting to DATABASE_URL")
}

// ---- file ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_states() {
    let dir = tempfile::tempdir().unwrap();
    states_round_trip(&open_file(dir.path()).await, "file-states").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lease() {
    let dir = tempfile::tempdir().unwrap();
    lease_is_exclusive(&open_file(dir.path()).await, "file-lease").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lease_is_released_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cp = open_file(dir.path()).await;
    let lease = acquired(&cp, "run", "worker-1", TTL).await;
    assert_eq!(refused(&cp, "run", "worker-2").await.owner, "worker-1");
    drop(lease);
    acquired(&cp, "run", "worker-2", TTL).await.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_concurrent_saves_keep_every_state() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_saves_keep_every_state(
        open_file(dir.path()).await,
        "file-concurrent",
        "BUG src/checkpoint/file.rs: FileCheckpoints::save is an unlocked read-modify-write, and \
         write_atomic's temp name `.<scope>.json.tmp-<pid>` is shared by every save of a scope in \
         one process, so concurrent saves rename each other's temp file away (NotFound, which \
         maps to exit 78) or drop each other's states",
    )
    .await;
}

// ---- S3 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_states() {
    let (cp, store, bucket) = open_s3("s3-states").await;
    states_round_trip(&cp, "s3-states").await;
    // Only the checkpoint prefix is used.
    let objects = store.expand(&format!("s3://{bucket}")).await.unwrap();
    assert!(
        objects.iter().all(|m| m
            .location
            .to_string()
            .starts_with(&format!("s3://{bucket}/cp/"))),
        "{objects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lease() {
    let (cp, _, _) = open_s3("s3-lease").await;
    lease_is_exclusive(&cp, "s3-lease").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_release_removes_the_lease_object() {
    let (cp, store, bucket) = open_s3("s3-release").await;
    let lease_at = Location::parse(&format!("s3://{bucket}/cp/run.lease")).unwrap();
    let lease = acquired(&cp, "run", "worker-1", TTL).await;
    let (bytes, _) = store.get(&lease_at).await.unwrap().expect("lease object");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["owner"], "worker-1");
    assert!(doc["until_ms"].as_i64().unwrap() > chrono::Utc::now().timestamp_millis());
    lease.release().await;
    assert_eq!(
        store.get(&lease_at).await.unwrap(),
        None,
        "release deletes the lease object"
    );
}

/// Writes a lease document directly, as a (possibly dead) other worker would have left it.
async fn plant_lease(store: &Store, bucket: &str, scope: &str, owner: &str, until_ms: i64) {
    let at = Location::parse(&format!("s3://{bucket}/cp/{scope}.lease")).unwrap();
    let doc = serde_json::to_vec(&json!({"owner": owner, "until_ms": until_ms})).unwrap();
    store.put(&at, doc, Precondition::None).await.unwrap();
}

fn far_future_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() + 3_600_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_expired_lease_is_taken_over() {
    let (cp, store, bucket) = open_s3("s3-expired").await;
    plant_lease(&store, &bucket, "run", "dead", 1).await;
    let lease = acquired(&cp, "run", "alive", TTL).await;
    let at = Location::parse(&format!("s3://{bucket}/cp/run.lease")).unwrap();
    let (bytes, _) = store.get(&at).await.unwrap().unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        doc["owner"], "alive",
        "the lease document names the new owner"
    );
    lease.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_live_lease_of_another_owner_is_refused() {
    let (cp, store, bucket) = open_s3("s3-live").await;
    let until = far_future_ms();
    plant_lease(&store, &bucket, "run", "other", until).await;
    let info = refused(&cp, "run", "me").await;
    assert_eq!(
        info,
        LeaseInfo {
            owner: "other".into(),
            until: Some(until)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_same_owner_retakes_its_own_live_lease() {
    let (cp, store, bucket) = open_s3("s3-retake").await;
    plant_lease(&store, &bucket, "run", "me", far_future_ms()).await;
    let lease = acquired(&cp, "run", "me", TTL).await;
    assert_eq!(refused(&cp, "run", "you").await.owner, "me");
    lease.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lease_taken_over_fires_lost() {
    let (cp, store, bucket) = open_s3("s3-lost").await;
    // Short ttl: heartbeats every 200 ms.
    let lease = acquired(&cp, "run", "slow", Duration::from_millis(600)).await;
    assert!(!lease.is_lost());
    // Another worker overwrites the lease (as after an expiry it observed).
    plant_lease(&store, &bucket, "run", "fast", far_future_ms()).await;
    eventually("the heartbeat to notice the takeover", || async {
        lease.is_lost()
    })
    .await;
    lease.release().await;
    let at = Location::parse(&format!("s3://{bucket}/cp/run.lease")).unwrap();
    let (bytes, _) = store.get(&at).await.unwrap().expect("the new lease stays");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        doc["owner"], "fast",
        "releasing a lost lease must not touch the new owner's lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_saves_keep_every_state() {
    let (cp, _, _) = open_s3("s3-concurrent").await;
    concurrent_saves_keep_every_state(
        cp,
        "s3-concurrent",
        "BUG src/checkpoint/s3.rs: S3Checkpoints::save does load + If-Match put without holding a \
         lock across both, so concurrent saves through one S3Checkpoints race each other and all \
         but one fail with CheckpointError::Conflict (\"lease lost?\", exit 75)",
    )
    .await;
}

// ---- Postgres ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_states() {
    states_round_trip(&open_pg().await, "pg-states").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease() {
    lease_is_exclusive(&open_pg().await, "pg-lease").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_saves_keep_every_state() {
    concurrent_saves_keep_every_state(
        open_pg().await,
        "pg-concurrent",
        "src/checkpoint/postgres.rs: concurrent saves lost a state",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_save_in_commits_with_the_transaction() {
    let cp = open_pg().await;
    let pg = cp.as_postgres().unwrap();
    let scope = unique("pg-save-in");

    let mut tx = pg.pool().begin().await.unwrap();
    PostgresCheckpoints::save_in(&mut tx, &scope, "loader", &json!({"rows": 100}))
        .await
        .unwrap();
    assert!(
        cp.load(&scope).await.unwrap().is_empty(),
        "an uncommitted state is invisible to others"
    );
    tx.rollback().await.unwrap();
    assert!(
        cp.load(&scope).await.unwrap().is_empty(),
        "a rolled-back transaction leaves no state"
    );

    let mut tx = pg.pool().begin().await.unwrap();
    PostgresCheckpoints::save_in(&mut tx, &scope, "loader", &json!({"rows": 200}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        cp.load(&scope).await.unwrap()["loader"],
        json!({"rows": 200}),
        "a committed transaction keeps the state"
    );

    // Overwrite inside a transaction that fails later: the old state stays.
    let mut tx = pg.pool().begin().await.unwrap();
    PostgresCheckpoints::save_in(&mut tx, &scope, "loader", &json!({"rows": 300}))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(
        cp.load(&scope).await.unwrap()["loader"],
        json!({"rows": 200}),
        "a dropped transaction rolls back"
    );
    cp.clear(&scope).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_held_by_one_pool_blocks_another() {
    let a = open_pg().await;
    let b = open_pg().await;
    let scope = unique("pg-two-pools");
    let lease = acquired(&a, &scope, "pool-a", TTL).await;
    let info = refused(&b, &scope, "pool-b").await;
    assert_eq!(info.owner, "pool-a");
    assert!(
        info.until.unwrap_or(0) > chrono::Utc::now().timestamp_millis(),
        "the refusal says until when the lease runs: {info:?}"
    );
    lease.release().await;
    acquired(&b, &scope, "pool-b", TTL).await.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_dies_with_its_process() {
    let url = database_url();
    let scope = unique("pg-process-dies");
    // A "process" of its own: a runtime on its own thread that takes the lease and then vanishes
    // without releasing it (no Drop of the lease, no release query), as on SIGKILL.
    let (die, die_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
    let process = {
        let (url, scope) = (url.clone(), scope.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cp = Checkpoints::open(&url, &no_s3(), None).await.unwrap();
                let lease = acquired(&cp, &scope, "doomed", TTL).await;
                // Never released, never dropped: the process "dies" holding it.
                std::mem::forget(lease);
            });
            ready_tx.send(()).unwrap();
            die_rx.recv().unwrap();
            // Dropping the runtime drops the heartbeat task and its connection unpolled.
            drop(rt);
        })
    };
    tokio::task::spawn_blocking(move || ready.recv())
        .await
        .unwrap()
        .expect("the worker took the lease");

    let other = open_pg().await;
    assert_eq!(
        refused(&other, &scope, "survivor").await.owner,
        "doomed",
        "the lease is held while its process lives"
    );

    die.send(()).unwrap();
    tokio::task::spawn_blocking(move || process.join())
        .await
        .unwrap()
        .unwrap();

    acquired_eventually(
        &other,
        &scope,
        "survivor",
        "the dead process's lease to be free",
    )
    .await
    .release()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_lost_when_its_connection_dies() {
    let app = unique("pg-conn-dies");
    let pool = named_pool(&app).await;
    let cp = Checkpoints::open(&database_url(), &no_s3(), Some(pool.clone()))
        .await
        .unwrap();
    let scope = unique("pg-conn-dies");
    // Heartbeats every 333 ms.
    let lease = acquired(&cp, &scope, "victim", Duration::from_secs(1)).await;

    let other = open_pg().await;
    assert_eq!(refused(&other, &scope, "survivor").await.owner, "victim");

    // The server kills every backend of that pool, the lease's connection among them.
    let mut admin = sqlx::PgConnection::connect(&database_url()).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) t",
    )
    .bind(&app)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed >= 1, "found no backend of {app}");

    eventually("the heartbeat to notice the lost connection", || async {
        lease.is_lost()
    })
    .await;
    let lease2 = acquired(&other, &scope, "survivor", TTL).await;
    lease.release().await;
    assert_eq!(
        refused(&cp, &scope, "victim").await.owner,
        "survivor",
        "releasing a lost lease must not free the new owner's lease"
    );
    lease2.release().await;
    let _ = admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_released_by_drop_and_pool_close() {
    let app = unique("pg-drop");
    let pool = named_pool(&app).await;
    let cp = Checkpoints::open(&database_url(), &no_s3(), Some(pool.clone()))
        .await
        .unwrap();
    let scope = unique("pg-drop");
    let lease = acquired(&cp, &scope, "first", TTL).await;
    let other = open_pg().await;
    assert_eq!(refused(&other, &scope, "second").await.owner, "first");

    drop(lease);
    drop(cp);
    pool.close().await;
    acquired_eventually(&other, &scope, "second", "the dropped lease to be free")
        .await
        .release()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_lost_when_a_renewal_hangs() {
    let cp = open_pg().await;
    let scope = unique("pg-renew-hangs");
    // Heartbeats every 333 ms, each allowed 333 ms.
    let lease = acquired(&cp, &scope, "stalled", Duration::from_secs(1)).await;

    // Another transaction holds the lease row: the next renewal blocks on its row lock.
    let mut blocker = sqlx::PgConnection::connect(&database_url()).await.unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM etl_run WHERE run_key = $1 FOR UPDATE")
        .bind(&scope)
        .fetch_one(&mut *tx)
        .await
        .unwrap();

    eventually("a hanging renewal to count as a lost lease", || async {
        lease.is_lost()
    })
    .await;
    tx.rollback().await.unwrap();
    lease.release().await;
    let _ = blocker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_compare_and_save_in_fences_concurrent_writers() {
    let cp = open_pg().await;
    let pool = cp.as_postgres().unwrap().pool().clone();
    let scope = unique("pg-cas");
    let start = json!({"offset": 10});

    // No row yet: `None` creates it; a second `None` finds it and writes nothing.
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        PostgresCheckpoints::compare_and_save_in(&mut conn, &scope, "loader", None, &start)
            .await
            .unwrap()
    );
    assert!(
        !PostgresCheckpoints::compare_and_save_in(
            &mut conn,
            &scope,
            "loader",
            None,
            &json!({"offset": 99})
        )
        .await
        .unwrap(),
        "None when a row exists must not overwrite it"
    );
    drop(conn);
    assert_eq!(cp.load(&scope).await.unwrap()["loader"], start);

    // Two workers race from the same expected state.
    let mut tx1 = pool.begin().await.unwrap();
    assert!(
        PostgresCheckpoints::compare_and_save_in(
            &mut tx1,
            &scope,
            "loader",
            Some(&start),
            &json!({"offset": 20})
        )
        .await
        .unwrap(),
        "the first writer wins"
    );
    let (pool2, scope2, start2) = (pool.clone(), scope.clone(), start.clone());
    let second = tokio::spawn(async move {
        let mut tx2 = pool2.begin().await.unwrap();
        let won = PostgresCheckpoints::compare_and_save_in(
            &mut tx2,
            &scope2,
            "loader",
            Some(&start2),
            &json!({"offset": 30}),
        )
        .await
        .unwrap();
        if won {
            tx2.commit().await.unwrap();
        } else {
            tx2.rollback().await.unwrap();
        }
        won
    });
    // Let the second writer reach (and block on) the row before the first commits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second writer waits for the first"
    );
    tx1.commit().await.unwrap();
    assert!(
        !second.await.unwrap(),
        "the second writer must see that the checkpoint moved on"
    );
    assert_eq!(
        cp.load(&scope).await.unwrap()["loader"],
        json!({"offset": 20})
    );

    // A stale expectation after the fact writes nothing either.
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        !PostgresCheckpoints::compare_and_save_in(
            &mut conn,
            &scope,
            "loader",
            Some(&start),
            &json!({"offset": 40})
        )
        .await
        .unwrap()
    );
    drop(conn);
    cp.clear(&scope).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_release_after_an_unnoticed_takeover_keeps_the_new_lease() {
    let (cp, store, bucket) = open_s3("s3-release-late").await;
    // Long ttl: no heartbeat runs before the release, so only the release can notice.
    let lease = acquired(&cp, "run", "old", TTL).await;
    plant_lease(&store, &bucket, "run", "new", far_future_ms()).await;
    lease.release().await;
    let at = Location::parse(&format!("s3://{bucket}/cp/run.lease")).unwrap();
    let (bytes, _) = store.get(&at).await.unwrap().expect("the new lease stays");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["owner"], "new");
}
