//! Completing a multipart upload as S3 does: the parts become the object
//! without being read, hashed or written again.
//!
//! `s3s-fs` completes an upload by reading every part back in 64 KiB reads,
//! hashing it with MD5 a second time and writing the object anew — a full
//! extra pass over the data that a real object store does not make (S3 and
//! Ceph RGW stitch the stored parts by reference). That pass made the sandbox
//! charge a multipart writer, such as the relay's sink, about twice what it
//! charges a single `PUT`. Here each part's ETag is recorded as `s3s-fs`
//! answers its upload, and completion checks the client's part list against
//! those records (as S3 does: `InvalidPart`, `InvalidPartOrder`,
//! `EntityTooSmall`), joins the part files in the kernel (`copy_file_range`
//! through [`std::io::copy`]), and computes the S3 multipart ETag from the
//! recorded part digests: MD5 of the concatenated part MD5s, then `-<parts>`.
//!
//! The object, its metadata and its ETag are stored where `s3s-fs` 0.14 keeps
//! them (its on-disk layout, read from its source), so every other operation
//! still goes through `s3s-fs` unchanged; `multipart_upload_over_s3` in
//! `tests/s3_object_store.rs` reads them back through S3 to hold this true.
use std::io;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use md5::{Digest, Md5};
use s3s::dto::{
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, ETag, ListMultipartUploadsInput,
    ListMultipartUploadsOutput, ListPartsOutput, MultipartUpload, Timestamp,
};
use s3s::{S3Error, S3Result, s3_error};

use crate::velero::volumes::hex;

/// S3's minimum size for every part but the last.
const MIN_PART: u64 = 5 * 1024 * 1024;

/// Where `s3s-fs` keeps part `n` of an upload, and where its recorded digest goes.
fn part_path(root: &Path, upload: &str, n: i32) -> PathBuf {
    root.join(format!(".upload_id-{upload}.part-{n}"))
}

/// Named under the upload's prefix, so `s3s-fs`'s abort removes it too, and
/// not `.part-…`, so its `ListParts` does not list it.
fn digest_path(root: &Path, upload: &str, n: i32) -> PathBuf {
    root.join(format!(".upload_id-{upload}.md5-{n}"))
}

fn metadata_path(root: &Path, bucket: &str, key: &str, upload: Option<&str>) -> PathBuf {
    let upload = upload.map(|u| format!(".upload-{u}")).unwrap_or_default();
    root.join(format!(
        ".bucket-{}.object-{}{upload}.metadata.json",
        URL_SAFE_NO_PAD.encode(bucket),
        URL_SAFE_NO_PAD.encode(key)
    ))
}

fn internal_info_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        URL_SAFE_NO_PAD.encode(bucket),
        URL_SAFE_NO_PAD.encode(key)
    ))
}

/// The object's file, refusing a bucket or key that would leave the root.
fn object_path(root: &Path, bucket: &str, key: &str) -> S3Result<PathBuf> {
    let rel = Path::new(bucket).join(key);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(s3_error!(InvalidArgument, "key {key:?} leaves its bucket"));
    }
    Ok(root.join(rel))
}

fn io_error(what: &str, path: &Path, e: io::Error) -> S3Error {
    s3_error!(InternalError, "{what} {}: {e}", path.display())
}

/// Where an upload's bucket and key are recorded for `ListMultipartUploads`
/// (`s3s-fs` keeps only its owner); under the upload's prefix, so its abort
/// removes it too, and not `.part-…`, so its `ListParts` does not list it.
fn key_record_path(root: &Path, upload: &str) -> PathBuf {
    root.join(format!(".upload_id-{upload}.key.json"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyRecord {
    bucket: String,
    key: String,
}

/// Records which bucket and key an upload `s3s-fs` has just created is for.
pub(crate) async fn record_upload(
    root: &Path,
    upload: &str,
    bucket: &str,
    key: &str,
) -> S3Result<()> {
    let path = key_record_path(root, upload);
    let record = KeyRecord {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    };
    let body = serde_json::to_vec(&record)
        .map_err(|e| s3_error!(InternalError, "encoding upload record: {e}"))?;
    tokio::fs::write(&path, body)
        .await
        .map_err(|e| io_error("recording the upload", &path, e))
}

/// The uploads in progress in `bucket` under `prefix`, by key then id, as
/// S3 lists them (without paging: a sandbox holds few at once).
pub(crate) async fn list_uploads(
    root: &Path,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut uploads = Vec::new();
    let mut dir = tokio::fs::read_dir(root)
        .await
        .map_err(|e| io_error("reading the storage root", root, e))?;
    while let Some(entry) = dir
        .next_entry()
        .await
        .map_err(|e| io_error("reading the storage root", root, e))?
    {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".upload_id-"))
            .and_then(|n| n.strip_suffix(".key.json"))
        else {
            continue;
        };
        let Ok(body) = tokio::fs::read(entry.path()).await else {
            continue; // completed or aborted meanwhile
        };
        let Ok(record) = serde_json::from_slice::<KeyRecord>(&body) else {
            continue;
        };
        if record.bucket != input.bucket || !record.key.starts_with(&prefix) {
            continue;
        }
        let initiated = entry.metadata().await.ok().and_then(|m| m.modified().ok());
        uploads.push(MultipartUpload {
            key: Some(record.key),
            upload_id: Some(id.to_owned()),
            initiated: initiated.map(Timestamp::from),
            ..Default::default()
        });
    }
    uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
    Ok(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        delimiter: input.delimiter,
        max_uploads: Some(input.max_uploads.unwrap_or(1000)),
        is_truncated: Some(false),
        key_marker: Some(input.key_marker.unwrap_or_default()),
        upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
        encoding_type: input.encoding_type,
        uploads: (!uploads.is_empty()).then_some(uploads),
        ..Default::default()
    })
}

/// Fails with `NoSuchUpload`, as S3 does, for an upload that does not exist
/// (never made, completed or aborted); `s3s-fs` answered `AccessDenied`.
pub(crate) async fn require_upload(root: &Path, upload_id: &str) -> S3Result<()> {
    let Ok(upload) = uuid::Uuid::parse_str(upload_id) else {
        return Err(s3_error!(NoSuchUpload, "{upload_id:?} is not an upload id"));
    };
    match upload_owner(root, &upload.to_string()).await? {
        Some(_) => Ok(()),
        None => Err(s3_error!(NoSuchUpload)),
    }
}

/// Forgets an aborted upload's record, which `s3s-fs` keeps.
pub(crate) async fn forget_upload(root: &Path, upload_id: &str) {
    if let Ok(upload) = uuid::Uuid::parse_str(upload_id) {
        let _ = tokio::fs::remove_file(root.join(format!(".upload-{upload}.json"))).await;
    }
}

/// `s3s-fs` lists parts in directory order without ETags; S3 lists them by
/// number, each with the ETag its upload answered.
pub(crate) async fn complete_part_list(root: &Path, upload_id: &str, out: &mut ListPartsOutput) {
    let upload = uuid::Uuid::parse_str(upload_id).map(|u| u.to_string());
    if let (Some(parts), Ok(upload)) = (out.parts.as_mut(), upload) {
        parts.sort_by_key(|p| p.part_number);
        for part in parts.iter_mut() {
            let Some(n) = part.part_number else { continue };
            if let Ok(digest) = tokio::fs::read_to_string(digest_path(root, &upload, n)).await {
                part.e_tag = Some(ETag::Strong(digest));
            }
        }
    }
    out.is_truncated = Some(false);
}

/// Records the MD5 of a part `s3s-fs` has just stored (its ETag, in hex).
pub(crate) async fn record_part(root: &Path, upload: &str, n: i32, e_tag: &ETag) -> S3Result<()> {
    let path = digest_path(root, upload, n);
    tokio::fs::write(&path, e_tag.value())
        .await
        .map_err(|e| io_error("recording the digest of part", &path, e))
}

/// The access key an upload was created with, as `s3s-fs` recorded it;
/// `None` when the upload does not exist.
async fn upload_owner(root: &Path, upload: &str) -> S3Result<Option<Option<String>>> {
    let path = root.join(format!(".upload-{upload}.json"));
    match tokio::fs::read(&path).await {
        Ok(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| s3_error!(InternalError, "upload record {}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading upload record", &path, e)),
    }
}

/// Whether this request can be completed here; conditional completions
/// (`If-Match`, `If-None-Match`) are left to `s3s-fs`.
pub(crate) fn handles(input: &CompleteMultipartUploadInput) -> bool {
    input.if_match.is_none() && input.if_none_match.is_none()
}

pub(crate) async fn complete(
    root: &Path,
    input: CompleteMultipartUploadInput,
    access_key: Option<&str>,
) -> S3Result<CompleteMultipartUploadOutput> {
    let CompleteMultipartUploadInput {
        bucket,
        key,
        upload_id,
        multipart_upload,
        ..
    } = input;
    let upload = uuid::Uuid::parse_str(&upload_id)
        .map_err(|_| s3_error!(NoSuchUpload, "{upload_id:?} is not an upload id"))?
        .to_string();
    match upload_owner(root, &upload).await? {
        None => return Err(s3_error!(NoSuchUpload)),
        Some(owner) if owner.as_deref() != access_key => return Err(s3_error!(AccessDenied)),
        Some(_) => {}
    }
    let parts = multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "a completion must list at least one part"
        ));
    }
    let target = object_path(root, &bucket, &key)?;
    // Check the list against what was stored before anything changes.
    let mut digests = Vec::with_capacity(parts.len());
    let mut files = Vec::with_capacity(parts.len());
    let mut numbers = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let n = part
            .part_number
            .ok_or_else(|| s3_error!(InvalidPart, "part {} has no number", i + 1))?;
        // Ascending, not necessarily consecutive: S3 lets a client skip numbers.
        if numbers.last().is_some_and(|&last| n <= last) {
            return Err(s3_error!(
                InvalidPartOrder,
                "part {n} listed after part {}",
                numbers.last().copied().unwrap_or_default()
            ));
        }
        numbers.push(n);
        let recorded = match tokio::fs::read_to_string(digest_path(root, &upload, n)).await {
            Ok(d) => d,
            Err(_) => return Err(s3_error!(InvalidPart, "part {n} was not uploaded")),
        };
        if part.e_tag.as_ref().is_some_and(|t| t.value() != recorded) {
            return Err(s3_error!(
                InvalidPart,
                "part {n}: the ETag listed is not the stored part's"
            ));
        }
        let file = part_path(root, &upload, n);
        let size = tokio::fs::metadata(&file)
            .await
            .map_err(|_| s3_error!(InvalidPart, "part {n} was not uploaded"))?
            .len();
        if size < MIN_PART && i + 1 < parts.len() {
            return Err(s3_error!(
                EntityTooSmall,
                "part {n} has {size} bytes; every part but the last needs {MIN_PART}"
            ));
        }
        let digest: [u8; 16] = hex_digest(&recorded)
            .ok_or_else(|| s3_error!(InternalError, "part {n}: stored digest {recorded:?}"))?;
        digests.push(digest);
        files.push(file);
    }

    let tmp = root.join(format!(".tmp.complete-{upload}.internal.part"));
    let (joined, target2) = (tmp.clone(), target.clone());
    tokio::task::spawn_blocking(move || join_parts(&files, &joined, &target2))
        .await
        .map_err(|e| s3_error!(InternalError, "joining parts: {e}"))??;

    // The upload's metadata becomes the object's, as in `s3s-fs`.
    let pending = metadata_path(root, &bucket, &key, Some(&upload));
    if tokio::fs::try_exists(&pending).await.unwrap_or(false) {
        let done = metadata_path(root, &bucket, &key, None);
        tokio::fs::rename(&pending, &done)
            .await
            .map_err(|e| io_error("storing metadata", &done, e))?;
    }
    let mut all = Md5::new();
    for d in &digests {
        all.update(d);
    }
    let e_tag = format!("{}-{}", hex(&all.finalize()), digests.len());
    // A new object: nothing of an earlier one's info (its checksums) carries over.
    let info_path = internal_info_path(root, &bucket, &key);
    let mut info = serde_json::Map::new();
    info.insert("e_tag".into(), e_tag.clone().into());
    let body = serde_json::to_vec(&info)
        .map_err(|e| s3_error!(InternalError, "encoding object info: {e}"))?;
    tokio::fs::write(&info_path, body)
        .await
        .map_err(|e| io_error("storing object info", &info_path, e))?;
    // The upload is over: its record and digests go (its parts were joined).
    for n in numbers {
        let _ = tokio::fs::remove_file(digest_path(root, &upload, n)).await;
    }
    let _ = tokio::fs::remove_file(key_record_path(root, &upload)).await;
    let _ = tokio::fs::remove_file(root.join(format!(".upload-{upload}.json"))).await;
    tracing::debug!(%bucket, %key, %e_tag, "multipart upload completed");
    Ok(CompleteMultipartUploadOutput {
        bucket: Some(bucket),
        key: Some(key),
        e_tag: Some(ETag::Strong(e_tag)),
        ..Default::default()
    })
}

/// Joins the part files into `tmp` in the kernel, then moves it into place
/// and removes the parts: the object appears whole or not at all.
fn join_parts(parts: &[PathBuf], tmp: &Path, target: &Path) -> S3Result<()> {
    let result = (|| {
        let mut out =
            std::fs::File::create(tmp).map_err(|e| io_error("creating object file", tmp, e))?;
        for part in parts {
            let mut input =
                std::fs::File::open(part).map_err(|e| io_error("opening part", part, e))?;
            io::copy(&mut input, &mut out).map_err(|e| io_error("joining part", part, e))?;
        }
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error("creating directory", dir, e))?;
        }
        std::fs::rename(tmp, target).map_err(|e| io_error("storing object", target, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
        return result;
    }
    for part in parts {
        let _ = std::fs::remove_file(part);
    }
    Ok(())
}

fn hex_digest(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_leave_the_bucket_are_refused() {
        let root = Path::new("/srv/s3");
        assert!(object_path(root, "b", "a/../../x").is_err());
        assert!(object_path(root, "b", "/etc/passwd").is_err());
        assert_eq!(
            object_path(root, "b", "a/b.bin").ok(),
            Some(PathBuf::from("/srv/s3/b/a/b.bin"))
        );
    }

    #[test]
    fn hex_digests_round_trip() {
        let d = [0xab; 16];
        assert_eq!(hex_digest(&hex(&d)), Some(d));
        assert_eq!(hex_digest("xyz"), None);
    }
}
