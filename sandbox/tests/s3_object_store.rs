//! The sandbox S3 endpoint against `object_store`, the S3 client Ferry's agent
//! uses: objects written in process are visible over S3 and vice versa,
//! multipart works, and a wrong secret is refused.

use std::time::Duration;

use anyhow::{Context, Result};
use ferry_sandbox::s3::S3Server;
use futures::TryStreamExt;
use md5::Digest;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutPayload, RetryConfig,
};

const ACCESS: &str = "ferry-access";
const SECRET: &str = "ferry-secret-key-0123456789";

/// No retries: the tests want the endpoint's first answer, not a backoff.
fn no_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 0,
        retry_timeout: Duration::from_secs(5),
    }
}

fn client(server: &S3Server, bucket: &str, secret: &str) -> Result<AmazonS3> {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_region(server.region())
        .with_bucket_name(bucket)
        .with_access_key_id(server.access_key())
        .with_secret_access_key(secret)
        .with_retry(no_retry())
        .build()
        .context("building the object_store S3 client")
}

async fn start() -> Result<(tempfile::TempDir, S3Server)> {
    let dir = tempfile::tempdir()?;
    let server = S3Server::start(dir.path(), ACCESS, SECRET).await?;
    Ok((dir, server))
}

#[tokio::test]
async fn put_get_list_delete_over_s3() -> Result<()> {
    let (_dir, server) = start().await?;
    server.create_bucket("velero-backups").await?;
    assert!(server.bucket_exists("velero-backups").await?);
    let store = client(&server, "velero-backups", SECRET)?;

    let key = Path::from("openshift-backups/backups/reg-1/velero-backup.json");
    store
        .put(&key, PutPayload::from_static(b"{\"kind\":\"Backup\"}"))
        .await?;
    let got = store.get(&key).await?.bytes().await?;
    assert_eq!(&got[..], b"{\"kind\":\"Backup\"}");

    // Written over S3, read in process.
    let local = server
        .get_object(
            "velero-backups",
            "openshift-backups/backups/reg-1/velero-backup.json",
        )
        .await?;
    assert_eq!(&local[..], b"{\"kind\":\"Backup\"}");

    // Written in process, read and listed over S3.
    server
        .put_object(
            "velero-backups",
            "openshift-backups/backups/reg-1/reg-1.tar.gz",
            vec![7u8; 1000],
        )
        .await?;
    let listed: Vec<_> = store
        .list(Some(&Path::from("openshift-backups/backups/reg-1")))
        .try_collect()
        .await?;
    let mut keys: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "openshift-backups/backups/reg-1/reg-1.tar.gz".to_owned(),
            "openshift-backups/backups/reg-1/velero-backup.json".to_owned(),
        ]
    );
    let tarball = listed
        .iter()
        .find(|m| m.location.as_ref().ends_with("tar.gz"))
        .context("tarball listed")?;
    assert_eq!(tarball.size, 1000);

    let with_delim = store
        .list_with_delimiter(Some(&Path::from("openshift-backups/backups")))
        .await?;
    let prefixes: Vec<String> = with_delim
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(prefixes, vec!["openshift-backups/backups/reg-1".to_owned()]);

    store.delete(&key).await?;
    let left = server
        .list_objects("velero-backups", "openshift-backups/")
        .await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, "openshift-backups/backups/reg-1/reg-1.tar.gz");
    assert_eq!(left[0].size, 1000);
    assert!(matches!(
        store.get(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));

    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn multipart_upload_over_s3() -> Result<()> {
    let (_dir, server) = start().await?;
    server.create_bucket("file-ceph-bucket").await?;
    let store = client(&server, "file-ceph-bucket", SECRET)?;

    // S3 requires every part but the last to be at least 5 MiB.
    let part_a = vec![b'a'; 5 * 1024 * 1024];
    let part_b = vec![b'b'; 1024];
    let key = Path::from("big/object.bin");
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata("ferry-source-version".into()),
        "v-42".into(),
    );
    let mut upload = store
        .put_multipart_opts(
            &key,
            PutMultipartOptions {
                attributes,
                ..Default::default()
            },
        )
        .await?;
    upload.put_part(PutPayload::from(part_a.clone())).await?;
    upload.put_part(PutPayload::from(part_b.clone())).await?;
    upload.complete().await?;

    let got = server
        .get_object("file-ceph-bucket", "big/object.bin")
        .await?;
    assert_eq!(got.len(), part_a.len() + part_b.len());
    assert_eq!(&got[..part_a.len()], &part_a[..]);
    assert_eq!(&got[part_a.len()..], &part_b[..]);
    let meta = store.head(&key).await?;
    assert_eq!(meta.size, (part_a.len() + part_b.len()) as u64);
    // S3's multipart ETag: MD5 of the parts' MD5s, then the part count.
    let mut of_parts = md5::Md5::new();
    of_parts.update(md5::Md5::digest(&part_a));
    of_parts.update(md5::Md5::digest(&part_b));
    let hex: String = of_parts
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(meta.e_tag.as_deref(), Some(format!("\"{hex}-2\"").as_str()));
    // The upload's metadata is the object's.
    let got = store.get(&key).await?;
    assert_eq!(
        got.attributes
            .get(&Attribute::Metadata("ferry-source-version".into()))
            .map(|v| v.as_ref()),
        Some("v-42")
    );
    // Nothing of the upload is left beside the buckets.
    let leftovers: Vec<String> = std::fs::read_dir(server.root())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "upload files left: {leftovers:?}");
    Ok(())
}

#[tokio::test]
async fn a_completion_that_does_not_match_its_parts_is_refused_and_stores_nothing() -> Result<()> {
    let (_dir, server) = start().await?;
    server.create_bucket("parts-bucket").await?;
    let store = client(&server, "parts-bucket", SECRET)?;
    let big = PutPayload::from(vec![b'x'; 5 * 1024 * 1024]);
    let small = PutPayload::from(vec![b'y'; 10]);

    // A part listed with an ETag that is not the stored part's.
    let key = Path::from("wrong-etag");
    let id = store.create_multipart(&key).await?;
    let first = store.put_part(&key, &id, 0, big.clone()).await?;
    let _second = store.put_part(&key, &id, 1, small.clone()).await?;
    let forged = PartId {
        content_id: "\"0123456789abcdef0123456789abcdef\"".into(),
    };
    let err = store
        .complete_multipart(&key, &id, vec![first.clone(), forged])
        .await
        .err()
        .context("a forged part ETag was accepted")?;
    assert!(err.to_string().contains("InvalidPart"), "{err}");
    assert!(store.head(&key).await.is_err(), "object stored anyway");
    // The same upload still completes with the true list.
    let second = store.put_part(&key, &id, 1, small.clone()).await?;
    store
        .complete_multipart(&key, &id, vec![first, second])
        .await?;
    assert_eq!(store.head(&key).await?.size, 5 * 1024 * 1024 + 10);

    // A part other than the last under 5 MiB.
    let key = Path::from("too-small");
    let id = store.create_multipart(&key).await?;
    let a = store.put_part(&key, &id, 0, small.clone()).await?;
    let b = store.put_part(&key, &id, 1, small).await?;
    let err = store
        .complete_multipart(&key, &id, vec![a, b])
        .await
        .err()
        .context("a 10-byte first part was accepted")?;
    assert!(err.to_string().contains("EntityTooSmall"), "{err}");
    assert!(store.head(&key).await.is_err(), "object stored anyway");

    // An upload id that does not exist.
    let err = store
        .complete_multipart(
            &key,
            &"6f1c4a52-0000-4000-8000-000000000000".to_string(),
            vec![PartId {
                content_id: "\"0123456789abcdef0123456789abcdef\"".into(),
            }],
        )
        .await
        .err()
        .context("an unknown upload completed")?;
    assert!(err.to_string().contains("NoSuchUpload"), "{err}");
    Ok(())
}

#[tokio::test]
async fn large_objects_read_whole_and_by_range() -> Result<()> {
    let (_dir, server) = start().await?;
    server.create_bucket("read-bucket").await?;
    let store = client(&server, "read-bucket", SECRET)?;
    // Larger than one read piece, and not a multiple of it.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 12_345u32)
        .map(|i| (i % 251) as u8)
        .collect();
    let key = Path::from("obj");
    store.put(&key, PutPayload::from(data.clone())).await?;
    let whole = store.get(&key).await?.bytes().await?;
    assert!(whole == data[..], "whole object differs");
    for (from, to) in [
        (0usize, 10usize),
        (262_143, 262_145),
        (1_000_001, data.len()),
    ] {
        let got = store.get_range(&key, from as u64..to as u64).await?;
        assert!(got == data[from..to], "range {from}..{to} differs");
    }
    let tail = store
        .get_opts(
            &key,
            object_store::GetOptions {
                range: Some(object_store::GetRange::Offset(2_500_000)),
                ..Default::default()
            },
        )
        .await?
        .bytes()
        .await?;
    assert!(tail == data[2_500_000..], "read from an offset differs");
    Ok(())
}

#[tokio::test]
async fn wrong_secret_is_refused_with_403() -> Result<()> {
    let (_dir, server) = start().await?;
    server.create_bucket("user-import").await?;
    server
        .put_object("user-import", "a.csv", "id,name\n")
        .await?;
    let store = client(&server, "user-import", "not-the-secret")?;

    let err = store
        .get(&Path::from("a.csv"))
        .await
        .err()
        .context("a request signed with the wrong secret must fail")?;
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "expected 403 PermissionDenied, got {err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn missing_bucket_is_reported() -> Result<()> {
    let (_dir, server) = start().await?;
    let err = server.put_object("no-such-bucket", "k", "v").await.err();
    assert!(
        matches!(err, Some(ferry_sandbox::s3::Error::NoSuchBucket { .. })),
        "{err:?}"
    );
    let store = client(&server, "no-such-bucket", SECRET)?;
    assert!(
        store
            .put(&Path::from("k"), PutPayload::from_static(b"v"))
            .await
            .is_err()
    );
    assert!(!server.bucket_exists("no-such-bucket").await?);
    Ok(())
}

#[tokio::test]
async fn listings_page_past_a_thousand_keys_and_streams_are_stored() -> Result<()> {
    let (_dir, server) = start().await?;
    server.create_bucket("response-ceph-bucket").await?;
    for i in 0..1100 {
        server
            .put_object("response-ceph-bucket", &format!("r/{i:05}"), format!("{i}"))
            .await?;
    }
    let chunks = futures::stream::iter(
        (0..4).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![i as u8; 1024]))),
    );
    server
        .put_object_stream("response-ceph-bucket", "streamed.bin", chunks)
        .await?;

    let local = server.list_objects("response-ceph-bucket", "r/").await?;
    assert_eq!(local.len(), 1100);
    assert_eq!(local[1099].key, "r/01099");

    let store = client(&server, "response-ceph-bucket", SECRET)?;
    let listed: Vec<_> = store.list(Some(&Path::from("r"))).try_collect().await?;
    assert_eq!(
        listed.len(),
        1100,
        "object_store follows continuation tokens"
    );
    let streamed = store
        .get(&Path::from("streamed.bin"))
        .await?
        .bytes()
        .await?;
    assert_eq!(streamed.len(), 4096);
    assert_eq!(streamed[3 * 1024], 3);
    Ok(())
}
