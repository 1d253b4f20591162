//! S3 answers lacking what a read relies on (an ETag, an object size), from a loopback server
//! giving canned answers: each is an error, never an unpinned read or a size of 0.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::s3::S3Store;
use super::{Location, ObjectMeta, StoreError};
use crate::JobError;
use crate::error::ExitKind;

/// A server on loopback answering every request with `answer` (status line, headers and
/// body); returns its URL and the number of requests it answered.
fn serve(answer: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            if stream.write_all(answer.as_bytes()).is_err() {
                continue;
            }
        }
    });
    (url, requests)
}

fn store(endpoint: &str) -> S3Store {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "canned"))
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    S3Store::with_client(aws_sdk_s3::Client::from_conf(config))
}

/// Bytes 0-2 of a 10-byte object, with this `ETag` header if any.
fn partial(etag: Option<&str>) -> String {
    let etag = etag.map(|e| format!("ETag: {e}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/10\r\nContent-Length: 3\r\n{etag}Connection: close\r\n\r\nabc"
    )
}

fn meta(etag: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        location: Location::S3 {
            bucket: "b".into(),
            key: "k".into(),
        },
        size: 10,
        etag: etag.map(str::to_owned),
        version_id: None,
    }
}

fn missing(e: &StoreError, what: &str) -> bool {
    matches!(e, StoreError::S3 { code: Some(c), .. } if c == what)
}

#[tokio::test]
async fn a_ranged_read_needs_an_etag_in_the_listing_and_in_the_answer() {
    let (url, requests) = serve(partial(None));
    let s3 = store(&url);
    // Listed without an ETag: refused before any request.
    let e = s3
        .read_range("b", "k", &meta(None), 0, 3)
        .await
        .unwrap_err();
    assert!(missing(&e, "MissingETag"), "{e:?}");
    assert!(
        e.to_string()
            .contains("bytes 0-2: the listing carries no ETag to pin the read to"),
        "{e}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    // Answered without one: nothing shows it is the version listed.
    let e = s3
        .read_range("b", "k", &meta(Some("\"e\"")), 0, 3)
        .await
        .unwrap_err();
    assert!(missing(&e, "MissingETag"), "{e:?}");
    assert!(e.to_string().contains("no ETag"), "{e}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // Both retried: another answer may carry it.
    assert_eq!(JobError::from(e).kind, ExitKind::Unavailable);
    // The same answer with the ETag listed is the bytes.
    let (url, _) = serve(partial(Some("\"e\"")));
    let bytes = store(&url)
        .read_range("b", "k", &meta(Some("\"e\"")), 0, 3)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"abc");
}

#[tokio::test]
async fn another_version_is_changed_naming_the_bytes_and_the_etag() {
    let (url, _) = serve(partial(Some("\"other\"")));
    let e = store(&url)
        .read_range("b", "k", &meta(Some("\"e\"")), 0, 3)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Changed(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("s3://b/k (bytes 0-2 of ETag \"e\"): the object changed"),
        "{e}"
    );
    assert_eq!(JobError::from(e).kind, ExitKind::Temporary);
}

#[tokio::test]
async fn an_object_without_a_size_is_an_error_not_empty() {
    // HEAD without Content-Length.
    let (url, _) = serve("HTTP/1.1 200 OK\r\nETag: \"e\"\r\nConnection: close\r\n\r\n".into());
    let e = store(&url).head("b", "k").await.unwrap_err();
    assert!(missing(&e, "MissingSize"), "{e:?}");
    assert_eq!(
        e.to_string(),
        "s3://b/k: S3 HeadObject failed: the answer carries no object size"
    );
    // A listing whose object has no Size.
    let xml = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
        "<Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>",
        "<IsTruncated>false</IsTruncated>",
        r#"<Contents><Key>k</Key><ETag>"e"</ETag></Contents></ListBucketResult>"#
    );
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
        xml.len()
    );
    let (url, _) = serve(answer);
    let e = store(&url).expand("b", "").await.unwrap_err();
    assert!(missing(&e, "MissingSize"), "{e:?}");
    assert!(e.to_string().contains("ListObjectsV2"), "{e}");
}
