//! Archives under an S3 prefix, read by ranged GETs. Every GET carries `If-Match` with the ETag
//! the archive was opened at, so a replaced object is noticed on the next read (412) instead of
//! serving tiles through a directory of the old version.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use etl_core::store::{S3Config, S3Store};

use super::{ARCHIVE_EXT, Handle, Listed, SourceError, Version};

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

impl S3Source {
    /// `rest` is `bucket/prefix/` (after `s3://`).
    pub async fn connect(rest: &str, endpoint: Option<&str>) -> Result<S3Source, SourceError> {
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
        let store = S3Store::connect(S3Config {
            endpoint: endpoint.map(str::to_string),
            ..S3Config::default()
        })
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

    fn key(&self, name: &str) -> String {
        format!("{}{name}{ARCHIVE_EXT}", self.prefix)
    }

    pub async fn list(&self) -> Result<Vec<Listed>, SourceError> {
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
                let Some(name) = obj
                    .key()
                    .and_then(|k| k.strip_prefix(self.prefix.as_str()))
                    .and_then(|k| k.strip_suffix(ARCHIVE_EXT))
                else {
                    continue;
                };
                if crate::request::archive_name(name).is_err() {
                    continue;
                }
                out.push(Listed {
                    name: name.to_string(),
                    bytes: obj.size().map_or(0, |s| s.max(0) as u64),
                });
            }
        }
        Ok(out)
    }

    /// The current version of an archive, `None` when there is no such object.
    pub async fn head(&self, name: &str) -> Result<Option<Version>, SourceError> {
        let key = self.key(name);
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
            Err(e) => return Err(s3_err(name, "HeadObject", &e)),
        };
        let etag = out.e_tag().unwrap_or_default();
        Ok(Some(Version {
            name: name.into(),
            etag: etag.into(),
            len: out.content_length().map_or(0, |l| l.max(0) as u64),
            handle: Handle::S3 { key: key.into() },
        }))
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
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={offset}-{last}"));
        if !etag.is_empty() {
            req = req.if_match(etag);
        }
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
