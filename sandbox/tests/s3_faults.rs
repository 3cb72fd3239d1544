//! The S3 fault switch: while on, every request gets 503; switched off, the
//! endpoint serves again.

use std::time::Duration;

use anyhow::{Context, Result};
use ferry_sandbox::s3::S3Server;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStoreExt, RetryConfig};

#[tokio::test]
async fn unavailable_switch_answers_503_until_switched_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = S3Server::start(dir.path(), "ak", "secret-key-for-faults").await?;
    server.create_bucket("bsl").await?;
    server.put_object("bsl", "backups/x", "data").await?;
    let store = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_region(server.region())
        .with_bucket_name("bsl")
        .with_access_key_id(server.access_key())
        .with_secret_access_key(server.secret_key())
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: Duration::from_secs(2),
        })
        .build()?;
    let key = Path::from("backups/x");
    assert_eq!(&store.get(&key).await?.bytes().await?[..], b"data");

    server.set_unavailable(true);
    assert!(server.is_unavailable());
    let err = store
        .get(&key)
        .await
        .err()
        .context("request must fail while unavailable")?;
    assert!(err.to_string().contains("503"), "expected a 503, got {err}");

    // The in-process helpers are the fixture's back door and keep working.
    assert!(server.bucket_exists("bsl").await?);

    server.set_unavailable(false);
    assert_eq!(&store.get(&key).await?.bytes().await?[..], b"data");
    Ok(())
}

#[tokio::test]
async fn one_bucket_can_be_made_unavailable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = S3Server::start(dir.path(), "ak", "secret-key-for-faults").await?;
    for bucket in ["velero-bsl", "file-ceph-bucket"] {
        server.create_bucket(bucket).await?;
        server.put_object(bucket, "k", "v").await?;
    }
    let store = |bucket: &str| {
        AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_region(server.region())
            .with_bucket_name(bucket)
            .with_access_key_id(server.access_key())
            .with_secret_access_key(server.secret_key())
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: Duration::from_secs(2),
            })
            .build()
    };
    let bsl = store("velero-bsl")?;
    let obc = store("file-ceph-bucket")?;
    let key = Path::from("k");

    server.set_bucket_unavailable("velero-bsl", true);
    assert!(server.is_bucket_unavailable("velero-bsl"));
    assert!(!server.is_bucket_unavailable("file-ceph-bucket"));
    let err = bsl
        .get(&key)
        .await
        .err()
        .context("the faulty bucket must fail")?;
    assert!(err.to_string().contains("503"), "expected a 503, got {err}");
    assert_eq!(&obc.get(&key).await?.bytes().await?[..], b"v");

    server.set_bucket_unavailable("velero-bsl", false);
    assert_eq!(&bsl.get(&key).await?.bytes().await?[..], b"v");
    Ok(())
}
