//! An S3 client other than Ferry's: curl's own SigV4 signing lists a bucket.

use std::process::Command;

use anyhow::{Context, Result};
use ferry_sandbox::s3::S3Server;

const EMPTY_SHA256_HEADER: &str =
    "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test]
async fn curl_sigv4_lists_a_bucket() -> Result<()> {
    let curl = std::path::Path::new("/usr/bin/curl");
    if !curl.exists() {
        println!("skipped: /usr/bin/curl is not installed");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = S3Server::start(dir.path(), "curl-ak", "curl-secret-key").await?;
    server.create_bucket("openshift-backups").await?;
    server
        .put_object(
            "openshift-backups",
            "backups/reg-2026-01-01-00-00-00/velero-backup.json",
            "{}",
        )
        .await?;

    let sigv4 = format!("aws:amz:{}:s3", server.region());
    let user = format!("{}:{}", server.access_key(), server.secret_key());
    let url = format!("{}/openshift-backups?list-type=2", server.endpoint());
    let run = |user: String, url: String| {
        let sigv4 = sigv4.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("/usr/bin/curl")
                .args([
                    "-sS",
                    "-w",
                    "\n%{http_code}",
                    "--aws-sigv4",
                    &sigv4,
                    "--user",
                    &user,
                ])
                // S3 wants the payload hash header with SigV4; curl 7.88 does
                // not add it by itself (this is the empty body's SHA-256).
                .args(["-H", EMPTY_SHA256_HEADER, &url])
                .output()
        })
    };

    let out = run(user, url.clone()).await??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text
        .rsplit_once('\n')
        .context("curl printed a status code")?;
    assert_eq!(code, "200", "body: {body}");
    assert!(body.contains("<ListBucketResult"), "body: {body}");
    assert!(
        body.contains("<Key>backups/reg-2026-01-01-00-00-00/velero-backup.json</Key>"),
        "body: {body}"
    );

    let bad = run(format!("{}:wrong", server.access_key()), url).await??;
    let bad_text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert!(
        bad_text.ends_with("403"),
        "wrong secret must get 403: {bad_text}"
    );
    Ok(())
}
