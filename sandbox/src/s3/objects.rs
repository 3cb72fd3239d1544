//! In-process access to the buckets for fixture and test code. It goes
//! through the same `s3s-fs` backend as the HTTP endpoint, so what is written
//! here is visible over S3 (with ETags and metadata) and vice versa.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode};

use super::backend::in_process;
use super::error::{Error, Result};
use super::server::S3Server;

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Hex MD5 for single-part objects, `<md5>-<parts>` for multipart ones.
    pub etag: String,
}

fn op_error(operation: &'static str, target: String, e: impl std::fmt::Display) -> Error {
    Error::Operation {
        operation,
        target,
        message: e.to_string(),
    }
}

fn s3_error(operation: &'static str, bucket: &str, key: Option<&str>, e: S3Error) -> Error {
    match (e.code(), key) {
        (S3ErrorCode::NoSuchBucket, _) => Error::NoSuchBucket {
            bucket: bucket.to_owned(),
        },
        (S3ErrorCode::NoSuchKey, Some(key)) => Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        _ => {
            let target = match key {
                Some(key) => format!("{bucket}/{key}"),
                None => bucket.to_owned(),
            };
            op_error(operation, target, e)
        }
    }
}

impl S3Server {
    /// Creates `bucket`; creating one that exists is not an error, so fixture
    /// code can be re-run.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        if self.bucket_exists(bucket).await? {
            return Ok(());
        }
        let input = CreateBucketInput::builder()
            .bucket(bucket.to_owned())
            .build()
            .map_err(|e| op_error("CreateBucket", bucket.to_owned(), e))?;
        match self.fs.create_bucket(in_process(input)).await {
            Ok(_) => Ok(()),
            // Lost a race with another creator: the bucket is there, as asked.
            Err(e)
                if matches!(
                    e.code(),
                    S3ErrorCode::BucketAlreadyExists | S3ErrorCode::BucketAlreadyOwnedByYou
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(s3_error("CreateBucket", bucket, None, e)),
        }
    }

    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        if !s3s::path::check_bucket_name(bucket) {
            return Ok(false);
        }
        let input = HeadBucketInput::builder()
            .bucket(bucket.to_owned())
            .build()
            .map_err(|e| op_error("HeadBucket", bucket.to_owned(), e))?;
        match self.fs.head_bucket(in_process(input)).await {
            Ok(_) => Ok(true),
            Err(e) if *e.code() == S3ErrorCode::NoSuchBucket => Ok(false),
            Err(e) => Err(s3_error("HeadBucket", bucket, None, e)),
        }
    }

    /// Names of all buckets, sorted.
    pub async fn list_buckets(&self) -> Result<Vec<String>> {
        let out = self
            .fs
            .list_buckets(in_process(ListBucketsInput::default()))
            .await
            .map_err(|e| op_error("ListBuckets", "all buckets".to_owned(), e))?;
        let mut names: Vec<String> = out
            .output
            .buckets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| b.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Writes an object (replacing any with the same key).
    pub async fn put_object(&self, bucket: &str, key: &str, data: impl Into<Bytes>) -> Result<()> {
        let data: Bytes = data.into();
        let len = i64::try_from(data.len())
            .map_err(|e| op_error("PutObject", format!("{bucket}/{key}"), e))?;
        let body = StreamingBlob::from(s3s::Body::from(data));
        self.put_object_blob(bucket, key, body, Some(len)).await
    }

    /// Writes an object from a byte stream, for fixtures too big to hold in
    /// memory at once.
    pub async fn put_object_stream<S, E>(&self, bucket: &str, key: &str, stream: S) -> Result<()>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send + Sync + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.put_object_blob(bucket, key, StreamingBlob::wrap(stream), None)
            .await
    }

    async fn put_object_blob(
        &self,
        bucket: &str,
        key: &str,
        body: StreamingBlob,
        len: Option<i64>,
    ) -> Result<()> {
        let input = PutObjectInput::builder()
            .bucket(bucket.to_owned())
            .key(key.to_owned())
            .body(Some(body))
            .content_length(len)
            .build()
            .map_err(|e| op_error("PutObject", format!("{bucket}/{key}"), e))?;
        if !self.bucket_exists(bucket).await? {
            return Err(Error::NoSuchBucket {
                bucket: bucket.to_owned(),
            });
        }
        self.fs
            .put_object(in_process(input))
            .await
            .map(|_| ())
            .map_err(|e| s3_error("PutObject", bucket, Some(key), e))
    }

    /// Reads a whole object into memory.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes> {
        let input = GetObjectInput::builder()
            .bucket(bucket.to_owned())
            .key(key.to_owned())
            .build()
            .map_err(|e| op_error("GetObject", format!("{bucket}/{key}"), e))?;
        let out = self
            .fs
            .get_object(in_process(input))
            .await
            .map_err(|e| s3_error("GetObject", bucket, Some(key), e))?;
        let mut buf = BytesMut::new();
        if let Some(mut body) = out.output.body {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| op_error("GetObject", format!("{bucket}/{key}"), e))?;
                buf.extend_from_slice(&chunk);
            }
        }
        Ok(buf.freeze())
    }

    /// Every object whose key starts with `prefix`, sorted by key (no
    /// delimiter: the listing is flat, as S3 gives it without one).
    pub async fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let input = ListObjectsV2Input::builder()
                .bucket(bucket.to_owned())
                .prefix(Some(prefix.to_owned()))
                .continuation_token(token.take())
                .build()
                .map_err(|e| op_error("ListObjectsV2", bucket.to_owned(), e))?;
            let out = self
                .fs
                .list_objects_v2(in_process(input))
                .await
                .map_err(|e| s3_error("ListObjectsV2", bucket, None, e))?
                .output;
            for object in out.contents.unwrap_or_default() {
                let Some(key) = object.key else { continue };
                objects.push(ObjectInfo {
                    key,
                    size: object.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: object
                        .e_tag
                        .map(|t| t.value().to_owned())
                        .unwrap_or_default(),
                });
            }
            match (out.is_truncated, out.next_continuation_token) {
                (Some(true), Some(next)) => token = Some(next),
                _ => break,
            }
        }
        Ok(objects)
    }

    /// Deletes an object; deleting a missing key is not an error (as in S3).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let input = DeleteObjectInput::builder()
            .bucket(bucket.to_owned())
            .key(key.to_owned())
            .build()
            .map_err(|e| op_error("DeleteObject", format!("{bucket}/{key}"), e))?;
        self.fs
            .delete_object(in_process(input))
            .await
            .map(|_| ())
            .map_err(|e| s3_error("DeleteObject", bucket, Some(key), e))
    }
}
