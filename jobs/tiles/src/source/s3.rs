//! Archives under an S3 prefix, read by ranged GETs. Every GET carries `If-Match` with the ETag
//! the archive was opened at, so a replaced object is noticed on the next read (412) instead of
//! serving tiles through a directory of the old version.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use etl_core::store::{S3Config, S3Store};

use super::manifest::MANIFEST_EXT;
use super::{ARCHIVE_EXT, Handle, SourceError, Version};

/// An object listed by [`S3Source::list_detailed`].
#[derive(Debug, Clone)]
pub struct ListedObject {
    /// The whole key, prefix included.
    pub key: String,
    /// The ETag without its quotes.
    pub etag: String,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
}

#[derive(Clone)]
pub struct S3Source {
    client: Client,
    bucket: String,
    /// Empty or ending in '/'.
    prefix: String,
}

fn s3_err<E, R>(name: &str, operation: &'static str, err: &SdkError<E, R>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match err.message() {
        Some(m) => format!("{}: {m}", err.code().unwrap_or("error")),
        None => DisplayErrorContext(err).to_string(),
    };
    SourceError::S3 {
        name: name.to_string(),
        operation,
        message: message.replace('\n', " "),
    }
}

fn status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// An object's ETag: it is what every later read is checked against (`If-Match`) and what a
/// swap is seen by, so an answer without one is an error, not an identity that never changes.
fn need_etag<'a>(
    file: &str,
    operation: &'static str,
    etag: Option<&'a str>,
) -> Result<&'a str, SourceError> {
    etag.filter(|e| !e.is_empty())
        .ok_or_else(|| SourceError::S3 {
            name: file.to_string(),
            operation,
            message: "the response has no ETag".into(),
        })
}

impl S3Source {
    /// `rest` is `bucket/prefix/` (after `s3://`).
    pub async fn connect(rest: &str, config: S3Config) -> Result<S3Source, SourceError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(SourceError::S3 {
                name: format!("s3://{rest}"),
                operation: "connect",
                message: "no bucket in the URL (expected s3://bucket/prefix/)".into(),
            });
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let store = S3Store::connect(config)
            .await
            .map_err(|e| SourceError::S3 {
                name: format!("s3://{rest}"),
                operation: "connect",
                message: e.to_string(),
            })?;
        Ok(S3Source {
            client: store.client().clone(),
            bucket: bucket.to_string(),
            prefix,
        })
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn key(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    /// The names of the objects directly under the prefix that may be archives or manifests.
    pub async fn list(&self) -> Result<Vec<String>, SourceError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_err(&self.describe(), "ListObjectsV2", &e))?;
            for obj in page.contents() {
                let Some(file) = obj.key().and_then(|k| k.strip_prefix(self.prefix.as_str()))
                else {
                    continue;
                };
                if file.ends_with(ARCHIVE_EXT) || file.ends_with(MANIFEST_EXT) {
                    out.push(file.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Every object whose key starts with the prefix plus `under` (at any depth) and ends in
    /// `suffix`, with its ETag, size and modification time.
    pub async fn list_detailed(
        &self,
        under: &str,
        suffix: &str,
    ) -> Result<Vec<ListedObject>, SourceError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(under))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_err(&self.describe(), "ListObjectsV2", &e))?;
            for obj in page.contents() {
                let (Some(key), Some(etag)) = (obj.key(), obj.e_tag()) else {
                    continue;
                };
                if !key.ends_with(suffix) {
                    continue;
                }
                out.push(ListedObject {
                    key: key.to_string(),
                    etag: etag.trim_matches('"').to_string(),
                    size: obj.size().map_or(0, |s| s.max(0) as u64),
                    modified: obj
                        .last_modified()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                });
            }
        }
        Ok(out)
    }

    /// The current version of object `file` under the prefix, `None` when there is no such
    /// object. The version is named after the file; the caller renames it to its archive.
    pub async fn head(&self, file: &str) -> Result<Option<Version>, SourceError> {
        let key = self.key(file);
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(s3_err(file, "HeadObject", &e)),
        };
        let etag = need_etag(file, "HeadObject", out.e_tag())?;
        Ok(Some(Version {
            name: file.into(),
            file: file.into(),
            etag: etag.into(),
            len: out.content_length().map_or(0, |l| l.max(0) as u64),
            cache_control: out
                .cache_control()
                .filter(|c| !c.is_empty())
                .map(Into::into),
            handle: Handle::S3 { key: key.into() },
        }))
    }

    /// A whole small object and its ETag; empty bytes when it is larger than `limit`.
    pub async fn read_small(
        &self,
        file: &str,
        limit: u64,
    ) -> Result<Option<(Bytes, String)>, SourceError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(file))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(s3_err(file, "GetObject", &e)),
        };
        let etag = need_etag(file, "GetObject", out.e_tag())?.to_string();
        if out
            .content_length()
            .is_none_or(|l| l < 0 || l as u64 > limit)
        {
            // Not read: the connection is dropped with the unread body.
            return Ok(Some((Bytes::new(), etag)));
        }
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| SourceError::S3 {
                name: file.to_string(),
                operation: "GetObject",
                message: format!("reading the body: {e}"),
            })?
            .into_bytes();
        Ok(Some((body, etag)))
    }

    pub async fn read(
        &self,
        name: &str,
        key: &str,
        etag: &str,
        offset: u64,
        length: u64,
    ) -> Result<Bytes, SourceError> {
        let last = offset + length - 1;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={offset}-{last}"))
            .if_match(etag);
        let out = match req.send().await {
            Ok(out) => out,
            // Replaced (412) or deleted (404) since it was opened.
            Err(e) if matches!(status(&e), Some(412 | 404)) => {
                return Err(SourceError::Changed(name.to_string()));
            }
            Err(e) => return Err(s3_err(name, "GetObject", &e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| SourceError::S3 {
                name: name.to_string(),
                operation: "GetObject",
                message: format!("reading the body: {e}"),
            })?
            .into_bytes();
        if body.len() as u64 != length {
            return Err(SourceError::S3 {
                name: name.to_string(),
                operation: "GetObject",
                message: format!("asked for {length} bytes at {offset}, got {}", body.len()),
            });
        }
        Ok(body)
    }
}
