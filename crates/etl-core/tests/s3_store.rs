//! `Store` against a real S3-compatible server (moto or s3s-fs, started by scripts/test.sh):
//! single PUT and multipart writes, listing, conditional writes, pinned reads, error kinds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use etl_core::store::{Location, ObjectWriter, Precondition, S3Config, Store, StoreError};
use etl_core::{ExitKind, JobError};
use tokio::io::AsyncReadExt;

use common::{eventually, new_bucket, s3_config, s3_store};

const MIB: usize = 1024 * 1024;

fn loc(bucket: &str, key: &str) -> Location {
    Location::S3 {
        bucket: bucket.into(),
        key: key.into(),
    }
}

/// Deterministic bytes that are not a repeating short pattern (so a misplaced part shows).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `data` in `chunk`-sized writes on a blocking thread and hands the writer back
/// uncommitted.
async fn write_uncommitted(
    store: &Store,
    at: &Location,
    data: Vec<u8>,
    chunk: usize,
) -> Box<dyn ObjectWriter> {
    let mut w = store.writer(at).await.expect("writer");
    tokio::task::spawn_blocking(move || {
        for part in data.chunks(chunk) {
            w.write_all(part).expect("write");
        }
        w
    })
    .await
    .expect("writer thread")
}

async fn commit(w: Box<dyn ObjectWriter>) -> Result<etl_core::store::ObjectMeta, StoreError> {
    tokio::task::spawn_blocking(move || w.commit())
        .await
        .expect("commit thread")
}

async fn read_all(store: &Store, meta: &etl_core::store::ObjectMeta) -> Vec<u8> {
    let mut r = store.reader(meta).await.expect("reader");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    out
}

async fn multipart_uploads(store: &Store, bucket: &str) -> Vec<(String, String)> {
    let out = store
        .s3()
        .await
        .unwrap()
        .client()
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("ListMultipartUploads");
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_string(),
                u.upload_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn etag_part_count(etag: &str) -> Option<u32> {
    etag.trim_matches('"').rsplit_once('-')?.1.parse().ok()
}

async fn delete_quietly(store: &Store, at: &Location) {
    let _ = store.delete(at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_object_is_one_put_and_reads_back() {
    let store = s3_store();
    let bucket = new_bucket(&store, "small-object").await;
    let at = loc(&bucket, "out/small.geojsonl");
    let data = pattern(100_000);

    let w = write_uncommitted(&store, &at, data.clone(), 4096).await;
    let meta = commit(w).await.expect("commit of a small object");
    assert_eq!(meta.size, data.len() as u64);
    let etag = meta.etag.clone().expect("commit returns an ETag");
    assert!(!etag.is_empty());
    assert_eq!(
        etag_part_count(&etag),
        None,
        "a small object must be a single PUT, got multipart ETag {etag}"
    );
    assert!(
        multipart_uploads(&store, &bucket).await.is_empty(),
        "a small object must not start a multipart upload"
    );

    let head = store.head(&at).await.expect("head");
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));
    assert_eq!(head.location, at);
    assert_eq!(read_all(&store, &head).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_lists_prefix_glob_and_single_key() {
    let store = s3_store();
    let bucket = new_bucket(&store, "expand").await;
    let keys = [
        "data/a.geojsonl",
        "data/b.csv",
        "data/sub/c.geojsonl",
        "data2/sibling.geojsonl",
        "datafile.geojsonl",
        "dir/one.geojsonl",
        "dir/two.geojsonl",
        "dir/three.csv",
        "dir/nested/four.geojsonl",
        "dir/one.geojsonl.bak",
    ];
    for (i, key) in keys.iter().enumerate() {
        store
            .put(&loc(&bucket, key), vec![b'x'; i + 1], Precondition::None)
            .await
            .unwrap();
    }
    let names = |found: Vec<etl_core::store::ObjectMeta>| -> Vec<String> {
        found.into_iter().map(|m| m.location.to_string()).collect()
    };
    let url = |key: &str| format!("s3://{bucket}/{key}");

    let under = store.expand(&url("data/")).await.unwrap();
    assert_eq!(
        names(under),
        vec![
            url("data/a.geojsonl"),
            url("data/b.csv"),
            url("data/sub/c.geojsonl")
        ],
        "a prefix/ expands to every object below it, and not to siblings sharing the stem"
    );

    let globbed = store.expand(&url("dir/*.geojsonl")).await.unwrap();
    assert_eq!(
        names(globbed),
        vec![url("dir/one.geojsonl"), url("dir/two.geojsonl")],
        "a glob matches whole keys within one directory level"
    );

    let single = store.expand(&url("dir/three.csv")).await.unwrap();
    assert_eq!(single.len(), 1);
    assert_eq!(single[0].location, loc(&bucket, "dir/three.csv"));
    assert_eq!(single[0].size, 8, "size of the 8th object written");
    assert!(single[0].etag.is_some());

    let whole = store.expand(&format!("s3://{bucket}")).await.unwrap();
    assert_eq!(whole.len(), keys.len(), "a bare bucket lists everything");

    assert!(
        matches!(
            store.expand(&url("dir/missing.csv")).await,
            Err(StoreError::NotFound(_))
        ),
        "a missing single key is NotFound"
    );
    assert!(
        store
            .expand(&url("nothing/*.csv"))
            .await
            .unwrap()
            .is_empty(),
        "a glob without matches is empty, not an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_is_multipart_and_appears_only_on_commit() {
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        ..s3_config()
    });
    let bucket = new_bucket(&store, "multipart").await;
    let at = loc(&bucket, "big/tiles.bin");
    let data = pattern(12 * MIB);

    let w = write_uncommitted(&store, &at, data.clone(), 256 * 1024).await;
    assert!(
        matches!(store.head(&at).await, Err(StoreError::NotFound(_))),
        "a multipart object must be invisible before commit"
    );
    let uploads = multipart_uploads(&store, &bucket).await;
    assert_eq!(
        uploads.len(),
        1,
        "one multipart upload in progress, got {uploads:?}"
    );
    assert_eq!(uploads[0].0, "big/tiles.bin");

    let meta = commit(w).await.unwrap_or_else(|e| {
        panic!(
            "commit of a multipart object failed: {e}\n(if the message mentions \
             CompleteMultipartUploadResponse: moto 5.2.1 answers with a wrong XML root, \
             getmoto/moto#10055; scripts/services.sh pins 5.2.5 but keeps an older install)"
        )
    });
    assert_eq!(meta.size, data.len() as u64);
    let etag = meta.etag.clone().unwrap();
    assert_eq!(
        etag_part_count(&etag),
        Some(3),
        "12 MiB in 5 MiB parts is 3 parts; ETag was {etag}"
    );

    let head = store.head(&at).await.expect("visible after commit");
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));
    assert!(read_all(&store, &head).await == data, "bytes differ");
    assert!(multipart_uploads(&store, &bucket).await.is_empty());
    delete_quietly(&store, &at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_multipart_writer_aborts_the_upload() {
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        ..s3_config()
    });
    let bucket = new_bucket(&store, "dropped-writer").await;
    let at = loc(&bucket, "out/partial.bin");

    let w = write_uncommitted(&store, &at, pattern(11 * MIB), MIB).await;
    assert_eq!(
        multipart_uploads(&store, &bucket).await.len(),
        1,
        "the writer should have started a multipart upload"
    );
    // Dropped on a blocking thread, as a job's writer thread would on an error.
    tokio::task::spawn_blocking(move || drop(w)).await.unwrap();

    eventually(
        "the dropped writer's multipart upload to be aborted",
        || async { multipart_uploads(&store, &bucket).await.is_empty() },
    )
    .await;
    assert!(matches!(
        store.head(&at).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .expand(&format!("s3://{bucket}/"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_writer_on_a_runtime_thread_aborts_the_upload() {
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        ..s3_config()
    });
    let bucket = new_bucket(&store, "dropped-async").await;
    let at = loc(&bucket, "out/partial.bin");
    let w = write_uncommitted(&store, &at, pattern(6 * MIB), MIB).await;
    assert_eq!(multipart_uploads(&store, &bucket).await.len(), 1);
    // Dropped on a runtime worker thread (e.g. a task holding it was cancelled).
    drop(w);
    eventually("the multipart upload to be aborted", || async {
        multipart_uploads(&store, &bucket).await.is_empty()
    })
    .await;
    assert!(matches!(
        store.head(&at).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commit_leaves_no_object_and_no_upload() {
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        ..s3_config()
    });
    let bucket = new_bucket(&store, "failed-commit").await;
    let at = loc(&bucket, "out/lost.bin");

    // Exactly two parts' worth: both parts are handed to background uploads during the writes.
    let w = write_uncommitted(&store, &at, pattern(10 * MIB), MIB).await;
    let uploads = multipart_uploads(&store, &bucket).await;
    assert_eq!(uploads.len(), 1);
    let client = store.s3().await.unwrap().client().clone();
    // Someone else (a lifecycle rule, an operator) aborts the upload under the writer. The
    // writer notices either at a part still in flight or at Complete (NoSuchUpload); both must
    // fail the commit.
    client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(&uploads[0].0)
        .upload_id(&uploads[0].1)
        .send()
        .await
        .unwrap();

    let result = commit(w).await;
    assert!(
        result.is_err(),
        "commit of an aborted upload must fail, got {result:?}"
    );
    let err = JobError::from(result.unwrap_err());
    assert_ne!(err.kind, ExitKind::BadInput, "{err}");
    assert!(matches!(
        store.head(&at).await,
        Err(StoreError::NotFound(_))
    ));
    eventually("no multipart upload left", || async {
        multipart_uploads(&store, &bucket).await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_into_a_deleted_bucket_fails() {
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        ..s3_config()
    });
    let bucket = new_bucket(&store, "deleted-bucket").await;
    let at = loc(&bucket, "out/orphan.bin");
    let w = write_uncommitted(&store, &at, pattern(6 * MIB), MIB).await;
    let client = store.s3().await.unwrap().client().clone();
    client.delete_bucket().bucket(&bucket).send().await.unwrap();

    let result = commit(w).await;
    assert!(
        result.is_err(),
        "commit into a deleted bucket must fail, got {result:?}"
    );
    // The bucket is gone, so is anything that could have been written into it.
    assert!(store.head(&at).await.is_err());
    assert!(store.check(&at).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_get_and_delete() {
    let store = s3_store();
    let bucket = new_bucket(&store, "conditional").await;
    let at = loc(&bucket, "cp/run.lease");

    assert_eq!(
        store.get(&at).await.unwrap(),
        None,
        "missing key reads as None"
    );
    store
        .delete(&at)
        .await
        .expect("deleting a missing key is Ok");

    let e1 = store
        .put(&at, b"first".to_vec(), Precondition::IfAbsent)
        .await
        .expect("create if absent");
    let second = store
        .put(&at, b"second".to_vec(), Precondition::IfAbsent)
        .await;
    assert!(
        matches!(second, Err(StoreError::PreconditionFailed(_))),
        "second IfAbsent must fail with PreconditionFailed, got {second:?}"
    );
    assert_eq!(
        store.get(&at).await.unwrap(),
        Some((b"first".to_vec(), e1.clone())),
        "the losing create must not change the object"
    );
    assert_eq!(
        JobError::from(second.unwrap_err()).kind,
        ExitKind::Temporary,
        "a lost race is retryable"
    );

    let stale = store
        .put(
            &at,
            b"stale".to_vec(),
            Precondition::IfMatch("\"0123456789abcdef0123456789abcdef\"".into()),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::PreconditionFailed(_))),
        "IfMatch with a wrong ETag must fail, got {stale:?}"
    );

    let e2 = store
        .put(&at, b"third".to_vec(), Precondition::IfMatch(e1.clone()))
        .await
        .expect("IfMatch with the current ETag");
    assert_ne!(e1, e2);
    assert_eq!(
        store.get(&at).await.unwrap(),
        Some((b"third".to_vec(), e2.clone()))
    );
    let old = store
        .put(&at, b"late".to_vec(), Precondition::IfMatch(e1))
        .await;
    assert!(
        matches!(old, Err(StoreError::PreconditionFailed(_))),
        "IfMatch with the previous ETag must fail, got {old:?}"
    );

    store.delete(&at).await.unwrap();
    assert_eq!(store.get(&at).await.unwrap(), None);
    store
        .put(&at, b"again".to_vec(), Precondition::IfAbsent)
        .await
        .expect("create after delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_of_a_missing_bucket_is_an_error() {
    let store = s3_store();
    let existing = new_bucket(&store, "check-ok").await;
    store
        .check(&loc(&existing, "out/"))
        .await
        .expect("check of an existing bucket");

    let missing = common::unique("no-such-bucket");
    let err = store
        .check(&loc(&missing, "out/"))
        .await
        .expect_err("check of a missing bucket must fail");
    let job = JobError::from(err);
    assert_ne!(
        job.kind,
        ExitKind::BadInput,
        "a missing bucket is not bad input data: {job}"
    );
    assert!(
        job.message.contains(&missing),
        "the message names the bucket: {job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Credentials must be set even though nothing answers.
    common::s3_endpoint();
    let store = Store::new(S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..Default::default()
    });
    let err = store
        .check(&loc("any-bucket", ""))
        .await
        .expect_err("nothing listens on a closed port");
    let job = JobError::from(err);
    assert_eq!(
        job.kind,
        ExitKind::Unavailable,
        "an unreachable S3 endpoint is a retryable dependency failure: {job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_pinned_to_etag_fails_after_overwrite() {
    let store = s3_store();
    let bucket = new_bucket(&store, "pinned-read").await;
    let at = loc(&bucket, "in/data.csv");
    store
        .put(&at, b"id,name\n1,old\n".to_vec(), Precondition::None)
        .await
        .unwrap();
    let meta = store.head(&at).await.unwrap();
    assert_eq!(read_all(&store, &meta).await, b"id,name\n1,old\n");

    store
        .put(
            &at,
            b"id,name\n1,new\n2,more\n".to_vec(),
            Precondition::None,
        )
        .await
        .unwrap();
    match store.reader(&meta).await {
        Err(StoreError::PreconditionFailed(_)) => {}
        Err(other) => panic!("expected PreconditionFailed, got {other:?}"),
        Ok(mut r) => {
            let mut out = Vec::new();
            let read = r.read_to_end(&mut out).await;
            panic!(
                "a read pinned to the old ETag must fail after an overwrite; it read {:?} ({read:?})",
                String::from_utf8_lossy(&out)
            );
        }
    }
    let fresh = store.head(&at).await.unwrap();
    assert_eq!(read_all(&store, &fresh).await, b"id,name\n1,new\n2,more\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_delete_only_removes_the_expected_version() {
    let store = s3_store();
    let bucket = new_bucket(&store, "cond-delete").await;
    let at = loc(&bucket, "lease");
    let first = store
        .put(&at, b"one".to_vec(), Precondition::None)
        .await
        .unwrap();
    let second = store
        .put(&at, b"two".to_vec(), Precondition::None)
        .await
        .unwrap();
    assert_ne!(first, second);
    let stale = store.delete_if_match(&at, &first).await;
    assert!(
        matches!(stale, Err(StoreError::PreconditionFailed(_))),
        "a stale ETag must not delete: {stale:?}"
    );
    assert_eq!(
        store.get(&at).await.unwrap().map(|(b, _)| b),
        Some(b"two".to_vec())
    );
    store.delete_if_match(&at, &second).await.unwrap();
    assert_eq!(store.get(&at).await.unwrap(), None);
    store
        .delete_if_match(&at, &second)
        .await
        .expect("a missing object is not an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_kms_key_is_requested_for_single_puts_and_multipart_uploads() {
    let key_id = "arn:aws:kms:us-east-1:123456789012:key/tak-etl-test";
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        sse_kms_key_id: Some(key_id.into()),
        ..s3_config()
    });
    let bucket = new_bucket(&store, "ssekms").await;
    for (name, size) in [("small.bin", 1024), ("big.bin", 11 * MIB)] {
        let at = loc(&bucket, name);
        let w = write_uncommitted(&store, &at, pattern(size), 256 * 1024).await;
        tokio::task::spawn_blocking(move || w.commit().unwrap())
            .await
            .unwrap();
        let head = store
            .s3()
            .await
            .unwrap()
            .client()
            .head_object()
            .bucket(&bucket)
            .key(name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("aws:kms"),
            "{name}"
        );
        assert_eq!(head.ssekms_key_id(), Some(key_id), "{name}");
    }
}

/// `writer_new` never replaces an object: a single PUT and a multipart upload onto an
/// existing key fail their precondition and leave the object as it was (no upload left open);
/// onto a free key they write normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_only_writers_never_replace_an_object() {
    let store = Store::new(S3Config {
        part_size: 5 * MIB,
        ..s3_config()
    });
    let bucket = new_bucket(&store, "newonly").await;
    let at = loc(&bucket, "v/a.v1.pmtiles");
    store
        .put(&at, b"first".to_vec(), Precondition::None)
        .await
        .unwrap();
    for (what, data) in [("small", pattern(1000)), ("multipart", pattern(11 * MIB))] {
        let mut w = store.writer_new(&at).await.unwrap();
        let w = tokio::task::spawn_blocking(move || {
            w.write_all(&data).unwrap();
            w
        })
        .await
        .unwrap();
        let r = commit(w).await;
        assert!(
            matches!(r, Err(StoreError::PreconditionFailed(_))),
            "{what}: {r:?}"
        );
        let (bytes, _) = store.get(&at).await.unwrap().unwrap();
        assert_eq!(bytes, b"first", "{what}: the object was replaced");
    }
    // The failed multipart writer was dropped on a blocking thread of the runtime, which
    // spawns its abort as a registered clean-up: await it, as the runner does before exit,
    // rather than racing it (this assertion failed once in CI when it ran first).
    etl_core::store::finish_cleanups(std::time::Duration::from_secs(60)).await;
    assert!(multipart_uploads(&store, &bucket).await.is_empty());
    let free = loc(&bucket, "v/a.v2.pmtiles");
    let mut w = store.writer_new(&free).await.unwrap();
    let w = tokio::task::spawn_blocking(move || {
        w.write_all(b"second").unwrap();
        w
    })
    .await
    .unwrap();
    commit(w).await.unwrap();
    assert_eq!(store.get(&free).await.unwrap().unwrap().0, b"second");
}
