//! S3 and S3-compatible servers (custom endpoint, path-style addressing).
//!
//! Writes: a single PUT for small objects, a multipart upload for large ones whose Complete is the
//! only moment the object appears; any failure or a dropped writer aborts the upload.

use std::io::{self, Write};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use tokio::io::AsyncRead;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::location::has_glob;
use super::{Location, ObjectMeta, ObjectWriter, Precondition, StoreError};

/// S3 client settings; all optional, the AWS default chain supplies the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct S3Config {
    /// Custom endpoint (S3-compatible servers, tests); implies path-style addressing.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
    /// KMS key id for SSE-KMS on every object written.
    pub sse_kms_key_id: Option<String>,
    /// Multipart part size in bytes (minimum 5 MiB); 0 means the default of 8 MiB.
    pub part_size: usize,
    /// Keys to sign with instead of the default credential chain (CloudTAK's
    /// `AWS_S3_AccessKeyId`/`AWS_S3_SecretAccessKey`, for an S3-compatible server).
    #[serde(skip)]
    pub static_keys: Option<StaticKeys>,
}

/// An access key pair; its Debug output never shows the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

const DEFAULT_PART: usize = 8 * 1024 * 1024;
const MIN_PART: usize = 5 * 1024 * 1024;
/// Parts uploaded concurrently while the writer keeps filling the next one.
const PARTS_IN_FLIGHT: usize = 2;

/// Time allowed to establish a connection (TCP + TLS).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Time allowed between bytes read from a connection.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    config: S3Config,
}

pub(super) fn s3_err<E>(
    loc: &str,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    if status == Some(412) || err.code() == Some("PreconditionFailed") {
        return StoreError::PreconditionFailed(loc.to_string());
    }
    let object_op = matches!(operation, "HeadObject" | "GetObject" | "DeleteObject");
    if object_op
        && (status == Some(404) || matches!(err.code(), Some("NoSuchKey") | Some("NotFound")))
    {
        return StoreError::NotFound(loc.to_string());
    }
    let message = match err.message() {
        Some(m) => format!("{}: {m}", err.code().unwrap_or("error")),
        None => DisplayErrorContext(&err).to_string(),
    };
    StoreError::S3 {
        location: loc.to_string(),
        operation,
        message: message.replace('\n', " "),
        status,
        code: err.code().map(str::to_string),
    }
}

/// An ETag the service must send: without it no later `If-Match` could protect the object, so
/// an answer that lacks one is an error, never an empty string that silently matches nothing.
pub(super) fn required_etag(
    location: &str,
    operation: &'static str,
    etag: Option<&str>,
) -> Result<String, StoreError> {
    match etag.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => Ok(e.to_owned()),
        None => Err(StoreError::S3 {
            location: location.to_owned(),
            operation,
            message: "the answer carries no ETag".into(),
            status: None,
            code: Some("MissingETag".into()),
        }),
    }
}

/// An object's size the service must send: a missing (or negative) one is an error, never 0,
/// which would make the object look empty or a file read in place look truncated.
fn required_size(
    location: &str,
    operation: &'static str,
    size: Option<i64>,
) -> Result<u64, StoreError> {
    size.and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| StoreError::S3 {
            location: location.to_owned(),
            operation,
            message: match size {
                None => "the answer carries no object size".into(),
                Some(n) => format!("the answer gives the object a size of {n} bytes"),
            },
            status: None,
            code: Some("MissingSize".into()),
        })
}

fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

impl S3Store {
    pub async fn connect(config: S3Config) -> Result<S3Store, StoreError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            // S3-compatible servers do not all accept the flexible checksums that newer SDKs
            // send by default; ETags per part are all multipart needs.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        // A stalled connection must fail (and be retried by the SDK, then by Batch) rather
        // than hang the job until its Batch timeout.
        b = b.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build(),
        );
        if let Some(keys) = &config.static_keys {
            b = b.credentials_provider(aws_sdk_s3::config::Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.clone(),
                None,
                None,
                "static keys",
            ));
        }
        if let Some(ep) = &config.endpoint {
            b = b.endpoint_url(ep.clone()).force_path_style(true);
        } else if config.force_path_style {
            b = b.force_path_style(true);
        }
        if shared.region().is_none() {
            b = b.region(aws_config::Region::new("us-east-1"));
        }
        Ok(S3Store {
            client: Client::from_conf(b.build()),
            config,
        })
    }

    /// A store over `client` as it is (tests: a client for a loopback server).
    #[cfg(test)]
    pub(super) fn with_client(client: Client) -> S3Store {
        S3Store {
            client,
            config: S3Config::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn part_size(&self) -> usize {
        match self.config.part_size {
            0 => DEFAULT_PART,
            n => n.max(MIN_PART),
        }
    }

    pub(super) async fn check_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| s3_err(&format!("s3://{bucket}"), "HeadBucket", e))?;
        Ok(())
    }

    pub(super) async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err(&url(bucket, key), "HeadObject", e))?;
        Ok(ObjectMeta {
            location: Location::S3 {
                bucket: bucket.into(),
                key: key.into(),
            },
            size: required_size(&url(bucket, key), "HeadObject", out.content_length())?,
            etag: out.e_tag().map(str::to_string),
            version_id: out.version_id().map(str::to_string),
        })
    }

    /// A key, every object under a `prefix/`, or the objects matching a glob in the key.
    pub(super) async fn expand(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        if key.is_empty() || key.ends_with('/') {
            return self.list(bucket, key, None).await;
        }
        if has_glob(key) {
            let prefix_end = key.find(['*', '?', '[']).unwrap_or(key.len());
            let pattern = glob::Pattern::new(key).map_err(|e| {
                StoreError::InvalidUrl(format!("{}: bad glob pattern: {e}", url(bucket, key)))
            })?;
            return self.list(bucket, &key[..prefix_end], Some(&pattern)).await;
        }
        Ok(vec![self.head(bucket, key).await?])
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        pattern: Option<&glob::Pattern>,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_err(&url(bucket, prefix), "ListObjectsV2", e))?;
            for obj in page.contents() {
                let Some(key) = obj.key() else { continue };
                if key.ends_with('/') {
                    continue;
                }
                if let Some(p) = pattern
                    && !p.matches_with(
                        key,
                        glob::MatchOptions {
                            require_literal_separator: true,
                            ..Default::default()
                        },
                    )
                {
                    continue;
                }
                out.push(ObjectMeta {
                    location: Location::S3 {
                        bucket: bucket.into(),
                        key: key.into(),
                    },
                    size: required_size(&url(bucket, key), "ListObjectsV2", obj.size())?,
                    etag: obj.e_tag().map(str::to_string),
                    version_id: None,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn reader(
        &self,
        bucket: &str,
        key: &str,
        meta: &ObjectMeta,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some(v) = &meta.version_id {
            req = req.version_id(v);
        } else if let Some(etag) = &meta.etag {
            req = req.if_match(etag);
        }
        let out = req
            .send()
            .await
            .map_err(|e| s3_err(&url(bucket, key), "GetObject", e))?;
        Ok(Box::new(out.body.into_async_read()))
    }

    pub(super) async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match s3_err(&url(bucket, key), "GetObject", e) {
                    StoreError::NotFound(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let etag = required_etag(&url(bucket, key), "GetObject", out.e_tag())?;
        let bytes = out.body.collect().await.map_err(|e| StoreError::S3 {
            location: url(bucket, key),
            operation: "GetObject",
            message: e.to_string(),
            status: None,
            code: None,
        })?;
        Ok(Some((bytes.to_vec(), etag)))
    }

    pub(super) async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        cond: &Precondition,
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes));
        req = match cond {
            Precondition::None => req,
            Precondition::IfAbsent => req.if_none_match("*"),
            Precondition::IfMatch(etag) => req.if_match(etag),
        };
        if let Some(kms) = &self.config.sse_kms_key_id {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms);
        }
        let conditional = matches!(cond, Precondition::IfMatch(_));
        let out = req.send().await.map_err(|e| {
            match s3_err(&url(bucket, key), "PutObject", e) {
                // 409 ConditionalRequestConflict: a concurrent conditional write won.
                StoreError::S3 {
                    status: Some(409),
                    location,
                    ..
                } => StoreError::PreconditionFailed(location),
                // If-Match on an object deleted meanwhile: S3 answers 404 NoSuchKey. The
                // object is not the one the caller saw, which is what a failed precondition
                // says; a retry decides again.
                StoreError::S3 {
                    status: Some(404),
                    location,
                    ..
                }
                | StoreError::NotFound(location)
                    if conditional =>
                {
                    StoreError::PreconditionFailed(location)
                }
                other => other,
            }
        })?;
        required_etag(&url(bucket, key), "PutObject", out.e_tag())
    }

    /// Every object directly or indirectly below a raw key prefix (which need not end in `/`).
    pub(super) async fn list_prefix(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        self.list(bucket, prefix, None).await
    }

    pub(super) async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match s3_err(&url(bucket, key), "DeleteObject", e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// DeleteObject with `If-Match`: deletes only the version with this ETag. A missing object
    /// is not an error; another ETag is [`StoreError::PreconditionFailed`].
    pub(super) async fn delete_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match s3_err(&url(bucket, key), "DeleteObject", e) {
                StoreError::NotFound(_) => Ok(()),
                // 409 ConditionalRequestConflict: a concurrent conditional write won.
                StoreError::S3 {
                    status: Some(409),
                    location,
                    ..
                } => Err(StoreError::PreconditionFailed(location)),
                other => Err(other),
            },
        }
    }

    /// A writer whose commit fails with [`StoreError::PreconditionFailed`] when the key exists
    /// (`If-None-Match: *` on the PUT or on CompleteMultipartUpload).
    pub(super) fn writer_new(&self, bucket: &str, key: &str) -> Result<S3Writer, StoreError> {
        let mut w = self.writer(bucket, key)?;
        w.if_absent = true;
        Ok(w)
    }

    pub(super) fn writer(&self, bucket: &str, key: &str) -> Result<S3Writer, StoreError> {
        let handle = Handle::try_current().map_err(|e| {
            StoreError::Config(format!("{}: no async runtime: {e}", url(bucket, key)))
        })?;
        Ok(S3Writer {
            store: self.clone(),
            handle,
            bucket: bucket.into(),
            key: key.into(),
            part_size: self.part_size(),
            buf: Vec::new(),
            upload_id: None,
            in_flight: Vec::new(),
            done: Vec::new(),
            committed: false,
            if_absent: false,
        })
    }
}

/// A blocking `Write` that turns into a multipart upload once a part's worth of bytes arrived.
pub struct S3Writer {
    store: S3Store,
    handle: Handle,
    bucket: String,
    key: String,
    part_size: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    in_flight: Vec<JoinHandle<Result<CompletedPart, StoreError>>>,
    done: Vec<CompletedPart>,
    committed: bool,
    /// Never replace an existing object.
    if_absent: bool,
}

impl S3Writer {
    fn location(&self) -> String {
        url(&self.bucket, &self.key)
    }

    fn start_upload(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let mut req = self
            .store
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key);
        if let Some(kms) = &self.store.config.sse_kms_key_id {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms);
        }
        let loc = self.location();
        let out = self
            .handle
            .block_on(req.send())
            .map_err(|e| s3_err(&loc, "CreateMultipartUpload", e))?;
        let id = out.upload_id().unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(StoreError::S3 {
                location: loc,
                operation: "CreateMultipartUpload",
                message: "no upload id in the response".into(),
                status: None,
                code: None,
            });
        }
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Sends the buffered bytes as the next part, keeping at most PARTS_IN_FLIGHT uploads open.
    fn send_part(&mut self) -> Result<(), StoreError> {
        let upload_id = self.start_upload()?;
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        let part_number = (self.done.len() + self.in_flight.len() + 1) as i32;
        let body = std::mem::take(&mut self.buf);
        crate::fault::point("store.s3.part");
        let req = self
            .store
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body));
        let loc = self.location();
        self.in_flight.push(self.handle.spawn(async move {
            let out = req
                .send()
                .await
                .map_err(|e| s3_err(&loc, "UploadPart", e))?;
            Ok(CompletedPart::builder()
                .set_e_tag(out.e_tag().map(str::to_string))
                .part_number(part_number)
                .build())
        }));
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), StoreError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let first = self.in_flight.remove(0);
        let part = self.handle.block_on(first).map_err(|e| StoreError::S3 {
            location: self.location(),
            operation: "UploadPart",
            message: format!("upload task failed: {e}"),
            status: None,
            code: None,
        })??;
        self.done.push(part);
        Ok(())
    }

    fn finish(&mut self) -> Result<ObjectMeta, StoreError> {
        let loc = self.location();
        if self.upload_id.is_none() {
            let bytes = std::mem::take(&mut self.buf);
            let size = bytes.len() as u64;
            crate::fault::point("store.s3.before_put");
            let cond = if self.if_absent {
                Precondition::IfAbsent
            } else {
                Precondition::None
            };
            let etag =
                self.handle
                    .block_on(self.store.put(&self.bucket, &self.key, bytes, &cond))?;
            return Ok(self.meta(size, etag));
        }
        if !self.buf.is_empty() || self.done.is_empty() && self.in_flight.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let parts = std::mem::take(&mut self.done);
        let mut req = self
            .store
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if self.if_absent {
            req = req.if_none_match("*");
        }
        crate::fault::point("store.s3.before_complete");
        let out = self
            .handle
            .block_on(req.send())
            .map_err(|e| s3_err(&loc, "CompleteMultipartUpload", e))?;
        self.upload_id = None;
        crate::fault::point("store.s3.after_complete");
        let etag = required_etag(&loc, "CompleteMultipartUpload", out.e_tag())?;
        let head = self
            .handle
            .block_on(self.store.head(&self.bucket, &self.key))?;
        Ok(self.meta(head.size, etag))
    }

    fn meta(&self, size: u64, etag: String) -> ObjectMeta {
        ObjectMeta {
            location: Location::S3 {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
            },
            size,
            etag: Some(etag),
            version_id: None,
        }
    }

    fn abort(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        if let Some(id) = self.upload_id.take() {
            let req = self
                .store
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id);
            // Spawned, not blocked on: Drop may run on a runtime thread. A bucket lifecycle rule
            // (AbortIncompleteMultipartUpload) is the backstop if the process dies first.
            let loc = self.location();
            let task = self.handle.spawn(async move {
                if let Err(e) = req.send().await {
                    tracing::warn!(location = %loc, error = %DisplayErrorContext(&e), "abort of multipart upload failed");
                }
            });
            if Handle::try_current().is_err() {
                let _ = self.handle.block_on(task);
            } else {
                super::register_cleanup(task);
            }
        }
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.committed {
            return Err(io::Error::other("write after commit"));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.part_size {
            self.send_part().map_err(io::Error::other)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<ObjectMeta, StoreError> {
        let result = self.finish();
        if result.is_ok() {
            self.committed = true;
        }
        result
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if !self.committed {
            self.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_etag_is_an_error_not_an_empty_string() {
        assert_eq!(
            required_etag("s3://b/k", "PutObject", Some("\"abc\"")).unwrap(),
            "\"abc\""
        );
        for missing in [None, Some(""), Some("  ")] {
            let e = required_etag("s3://b/k", "PutObject", missing).unwrap_err();
            assert!(e.to_string().contains("no ETag"), "{e}");
            // Retryable: another answer may carry it.
            assert_eq!(crate::JobError::from(e).kind, crate::ExitKind::Unavailable);
        }
    }

    #[tokio::test]
    async fn client_has_connect_and_read_timeouts() {
        let store = S3Store::connect(S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            ..Default::default()
        })
        .await
        .expect("connect builds a client without I/O");
        let timeouts = store
            .client()
            .config()
            .timeout_config()
            .expect("a timeout config is set");
        assert_eq!(timeouts.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(timeouts.read_timeout(), Some(READ_TIMEOUT));
    }
}
