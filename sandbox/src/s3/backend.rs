//! The storage behind the S3 endpoint: `s3s-fs` shared between the HTTP
//! service and the in-process helpers.
//!
//! `s3s-fs` names its temporary files from a per-instance counter, so two
//! `FileSystem`s over one root could collide; both paths therefore go through
//! one `Arc<FileSystem>`. `s3s` has no `S3` impl for `Arc<T>`, hence this
//! delegating wrapper over the operations `s3s-fs` implements.

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;

#[derive(Clone)]
pub(crate) struct SharedFs(pub(crate) Arc<FileSystem>, pub(crate) std::path::PathBuf);

/// Keys are files under the bucket's directory here: a key whose `..` (or
/// `.`) segment, or leading `/`, would resolve outside it — into another
/// bucket, or out of the root — is refused, where real S3 would store it
/// under that literal name.
fn check_key(bucket: &str, key: &str) -> S3Result<()> {
    if key.starts_with('/') || key.contains('\0') || key.split('/').any(|s| s == ".." || s == ".") {
        return Err(s3_error!(
            InvalidArgument,
            "the sandbox cannot store key {key:?} in bucket {bucket}: a '..' or '.' segment, or a leading '/', would leave the bucket"
        ));
    }
    Ok(())
}

impl SharedFs {
    /// A key that is a directory on disk (other keys live under it, as
    /// `a` under `a/b`) is no object: S3 answers 404, not 500. Clients such
    /// as rclone probe such keys and retry a 500 for seconds.
    fn no_such_key_if_directory(&self, bucket: &str, key: &str) -> S3Result<()> {
        if key.is_empty() || key.split('/').any(|s| s == ".." || s == ".") {
            return Ok(());
        }
        if self.1.join(bucket).join(key).is_dir() {
            return Err(s3_error!(NoSuchKey));
        }
        Ok(())
    }

    /// Real S3 refuses writes into a missing bucket; `s3s-fs` would create the
    /// directory on the fly, so the check is made here.
    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let head = HeadBucketInput::builder()
            .bucket(bucket.to_owned())
            .build()
            .map_err(|e| s3_error!(InvalidRequest, "bad bucket name: {e}"))?;
        self.0.head_bucket(in_process(head)).await.map(|_| ())
    }
}

/// Wraps an operation input into a request as if it came unsigned from inside
/// the process (the filesystem backend ignores the transport fields).
pub(crate) fn in_process<T>(input: T) -> S3Request<T> {
    S3Request {
        input,
        method: http::Method::GET,
        uri: http::Uri::from_static("/"),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

#[async_trait::async_trait]
impl S3 for SharedFs {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.0.create_bucket(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        if let CopySource::Bucket { bucket, key, .. } = &req.input.copy_source {
            check_key(bucket, key)?;
        }
        self.require_bucket(&req.input.bucket).await?;
        self.0.copy_object(req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.0.delete_bucket(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.0.delete_object(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        for o in &req.input.delete.objects {
            check_key(&req.input.bucket, &o.key)?;
        }
        self.0.delete_objects(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.0.get_bucket_location(req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.no_such_key_if_directory(&req.input.bucket, &req.input.key)?;
        let path = self.1.join(&req.input.bucket).join(&req.input.key);
        let mut out = self.0.get_object(req).await?;
        super::read::large_reads(path, &mut out.output);
        Ok(out)
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.0.head_bucket(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.no_such_key_if_directory(&req.input.bucket, &req.input.key)?;
        self.0.head_object(req).await
    }
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.0.list_buckets(req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.0.list_objects(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.0.list_objects_v2(req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.require_bucket(&req.input.bucket).await?;
        self.0.put_object(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.require_bucket(&req.input.bucket).await?;
        self.0.create_multipart_upload(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        let (upload, n) = (req.input.upload_id.clone(), req.input.part_number);
        let out = self.0.upload_part(req).await?;
        if let Some(e_tag) = &out.output.e_tag {
            super::multipart::record_part(&self.1, &upload, n, e_tag).await?;
        }
        Ok(out)
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        if let CopySource::Bucket { bucket, key, .. } = &req.input.copy_source {
            check_key(bucket, key)?;
        }
        self.0.upload_part_copy(req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.0.list_parts(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        if !super::multipart::handles(&req.input) {
            return self.0.complete_multipart_upload(req).await;
        }
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        super::multipart::complete(&self.1, req.input, access_key.as_deref())
            .await
            .map(S3Response::new)
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.0.abort_multipart_upload(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `../` key must not reach another bucket's directory (nor leave
    /// the root), whichever operation carries it.
    #[tokio::test]
    async fn keys_cannot_leave_their_bucket() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = std::fs::canonicalize(dir.path())?;
        let fs = SharedFs(
            Arc::new(FileSystem::new(&root).map_err(|e| anyhow::anyhow!("{e:?}"))?),
            root.clone(),
        );
        for b in ["a", "b"] {
            let input = CreateBucketInput::builder().bucket(b.to_owned()).build()?;
            fs.create_bucket(in_process(input)).await?;
        }
        std::fs::write(root.join("b").join("secret"), b"b's")?;
        for key in ["../b/evil", "x/../../b/evil", "./evil", "/evil"] {
            let put = PutObjectInput::builder()
                .bucket("a".to_owned())
                .key(key.to_owned())
                .body(Some(StreamingBlob::from(s3s::Body::from(
                    "evil".to_owned(),
                ))))
                .build()?;
            assert!(fs.put_object(in_process(put)).await.is_err(), "put {key}");
            let get = GetObjectInput::builder()
                .bucket("a".to_owned())
                .key(key.replace("evil", "secret"))
                .build()?;
            assert!(fs.get_object(in_process(get)).await.is_err(), "get {key}");
        }
        assert!(!root.join("b").join("evil").exists());
        assert!(!root.join("evil").exists());
        Ok(())
    }
}
