//! The storage behind the S3 endpoint: `s3s-fs` shared between the HTTP
//! service and the in-process helpers.
//!
//! `s3s-fs` names its temporary files from a per-instance counter, so two
//! `FileSystem`s over one root could collide; both paths therefore go through
//! one `Arc<FileSystem>`. `s3s` has no `S3` impl for `Arc<T>`, hence this
//! delegating wrapper over the operations `s3s-fs` implements. Listings are
//! our own (`list.rs` over `index.rs`), so every write here also tells the
//! bucket's index which key changed.

use std::path::PathBuf;
use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;

use super::index::ListIndex;
use super::list;

#[derive(Clone)]
pub(crate) struct SharedFs {
    fs: Arc<FileSystem>,
    /// The directory `s3s-fs` resolves its paths against.
    root: PathBuf,
    index: Arc<ListIndex>,
}

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
    pub(crate) fn new(fs: FileSystem, root: PathBuf) -> Self {
        Self {
            fs: Arc::new(fs),
            index: Arc::new(ListIndex::new(root.clone())),
            root,
        }
    }

    /// A key that is a directory on disk (other keys live under it, as
    /// `a` under `a/b`) is no object: S3 answers 404, not 500. Clients such
    /// as rclone probe such keys and retry a 500 for seconds.
    fn no_such_key_if_directory(&self, bucket: &str, key: &str) -> S3Result<()> {
        if key.is_empty() || key.split('/').any(|s| s == ".." || s == ".") {
            return Ok(());
        }
        if self.root.join(bucket).join(key).is_dir() {
            return Err(s3_error!(NoSuchKey));
        }
        Ok(())
    }

    /// One listing page of `bucket`, from its index.
    async fn page(&self, bucket: &str, query: list::Query) -> S3Result<list::Page> {
        if !s3s::path::check_bucket_name(bucket) || !self.root.join(bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        self.index
            .with_keys(bucket, move |files, keys| list::page(files, keys, &query))
            .await
            .map_err(|e| s3_error!(InternalError, "listing bucket {bucket}: {e}"))
    }

    /// Real S3 refuses writes into a missing bucket; `s3s-fs` would create the
    /// directory on the fly, so the check is made here.
    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let head = HeadBucketInput::builder()
            .bucket(bucket.to_owned())
            .build()
            .map_err(|e| s3_error!(InvalidRequest, "bad bucket name: {e}"))?;
        self.fs.head_bucket(in_process(head)).await.map(|_| ())
    }
}

/// A body whose bytes do not hash to the SHA-256 its signature claimed is
/// the client's fault (400 `XAmzContentSHA256Mismatch`, as S3 answers);
/// `s3s` notices it while `s3s-fs` reads the body, which calls any read
/// error internal (500), so clients retried it as a server fault.
fn payload_error(e: s3s::S3Error) -> s3s::S3Error {
    let mut cause = e.source().map(|c| c as &(dyn std::error::Error + 'static));
    while let Some(c) = cause {
        if c.to_string().contains("Sha256Mismatch") {
            // Not among s3s's codes: a custom one, with S3's status.
            let code = s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into());
            let mut e = s3s::S3Error::with_message(
                code,
                "the body's SHA-256 is not the one in x-amz-content-sha256",
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            return e;
        }
        cause = c.source();
    }
    e
}

/// What S3 reports for an object stored without a content type.
fn default_content_type() -> String {
    "binary/octet-stream".to_owned()
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
        let bucket = req.input.bucket.clone();
        // S3 tells the owner of an existing bucket so (`s3s-fs`: BucketAlreadyExists,
        // which S3 keeps for a bucket someone else owns).
        if s3s::path::check_bucket_name(&bucket) && self.root.join(&bucket).is_dir() {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        let out = self.fs.create_bucket(req).await?;
        self.index.reset(&bucket).await;
        Ok(out)
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
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.copy_object(req).await;
        self.index.touched(&bucket, &key).await;
        out
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        // `s3s-fs` removes a bucket with everything in it; S3 refuses.
        let one = list::Query {
            max_keys: 1,
            ..Default::default()
        };
        if !self.page(&bucket, one).await?.objects.is_empty() {
            return Err(s3_error!(
                BucketNotEmpty,
                "bucket {bucket} still holds objects: delete them first"
            ));
        }
        let out = self.fs.delete_bucket(req).await?;
        self.index.reset(&bucket).await;
        Ok(out)
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.delete_object(req).await?;
        self.index.removed(&bucket, [key.as_str()]).await;
        Ok(out)
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        for o in &req.input.delete.objects {
            check_key(&req.input.bucket, &o.key)?;
        }
        let bucket = req.input.bucket.clone();
        let out = self.fs.delete_objects(req).await?;
        let deleted = out.output.deleted.iter().flatten();
        let keys = deleted.filter_map(|d| d.key.as_deref());
        self.index.removed(&bucket, keys).await;
        Ok(out)
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.no_such_key_if_directory(&req.input.bucket, &req.input.key)?;
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let mut out = self.fs.get_object(req).await?;
        super::read::large_reads(path, &mut out.output);
        out.output.accept_ranges = Some("bytes".to_owned());
        out.output
            .content_type
            .get_or_insert_with(default_content_type);
        Ok(out)
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.no_such_key_if_directory(&req.input.bucket, &req.input.key)?;
        let range = req.input.range;
        let mut out = self.fs.head_object(req).await?;
        out.output.accept_ranges = Some("bytes".to_owned());
        out.output
            .content_type
            .get_or_insert_with(default_content_type);
        // A ranged HEAD answers as the ranged GET would, without the body
        // (`s3s-fs` ignores the range; `server.rs` makes the status 206).
        if let (Some(range), Some(length)) = (range, out.output.content_length) {
            let length = u64::try_from(length).unwrap_or(0);
            let span = range.check(length).map_err(|_| {
                s3_error!(
                    InvalidRange,
                    "the range is outside the object's {length} bytes"
                )
            })?;
            out.output.content_length = i64::try_from(span.end - span.start).ok();
            out.output.content_range = Some(format!(
                "bytes {}-{}/{length}",
                span.start,
                span.end.saturating_sub(1)
            ));
        }
        Ok(out)
    }
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let query = list::query_v1(&req.input)?;
        let page = self.page(&req.input.bucket, query).await?;
        list::answer_v1(req.input, page).map(S3Response::new)
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let query = list::query_v2(&req.input)?;
        let page = self.page(&req.input.bucket, query).await?;
        list::answer_v2(req.input, page).map(S3Response::new)
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.require_bucket(&req.input.bucket).await?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.put_object(req).await.map_err(payload_error);
        self.index.touched(&bucket, &key).await;
        out
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        self.require_bucket(&req.input.bucket).await?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.fs.create_multipart_upload(req).await?;
        if let Some(upload) = &out.output.upload_id {
            super::multipart::record_upload(&self.root, upload, &bucket, &key).await?;
        }
        Ok(out)
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        let (upload, n) = (req.input.upload_id.clone(), req.input.part_number);
        super::multipart::require_upload(&self.root, &upload).await?;
        let out = self.fs.upload_part(req).await.map_err(payload_error)?;
        if let Some(e_tag) = &out.output.e_tag {
            super::multipart::record_part(&self.root, &upload, n, e_tag).await?;
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
        self.fs.upload_part_copy(req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        let upload = req.input.upload_id.clone();
        super::multipart::require_upload(&self.root, &upload).await?;
        let mut out = self.fs.list_parts(req).await?;
        super::multipart::complete_part_list(&self.root, &upload, &mut out.output).await;
        Ok(out)
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        super::multipart::list_uploads(&self.root, req.input)
            .await
            .map(S3Response::new)
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        if !super::multipart::handles(&req.input) {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let out = self.fs.complete_multipart_upload(req).await;
            self.index.touched(&bucket, &key).await;
            return out;
        }
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = super::multipart::complete(&self.root, req.input, access_key.as_deref()).await;
        self.index.touched(&bucket, &key).await;
        out.map(S3Response::new)
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        check_key(&req.input.bucket, &req.input.key)?;
        let upload = req.input.upload_id.clone();
        super::multipart::require_upload(&self.root, &upload).await?;
        let out = self.fs.abort_multipart_upload(req).await?;
        super::multipart::forget_upload(&self.root, &upload).await;
        Ok(out)
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
        let fs = SharedFs::new(
            FileSystem::new(&root).map_err(|e| anyhow::anyhow!("{e:?}"))?,
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
