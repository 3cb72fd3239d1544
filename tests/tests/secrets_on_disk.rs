//! Secrets the release binaries write to disk are their owner's only:
//! `ferry pki init`'s private keys (0600, in a 0700 directory) and
//! `ferry sandbox --stores-out`'s S3 credentials (0600).
#![cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use ferry_tests::bin;

fn mode(p: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .permissions()
        .mode()
        & 0o777)
}

#[test]
fn pki_init_writes_private_keys_for_their_owner_only() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("pki");
    let run = Command::new(bin("ferry")?)
        .args([
            "pki",
            "init",
            "--clusters",
            "a,b",
            "--clients",
            "admin",
            "--out",
        ])
        .arg(&out)
        .output()?;
    anyhow::ensure!(run.status.success(), "{run:?}");
    let mut keys = 0;
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        if path.display().to_string().ends_with("-key.pem") {
            assert_eq!(mode(&path)?, 0o600, "{}", path.display());
            keys += 1;
        }
    }
    assert_eq!(keys, 5, "CA, coordinator, two agents, one client");
    assert_eq!(mode(&out)?, 0o700);
    Ok(())
}

#[test]
fn sandbox_stores_file_is_for_its_owner_only() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let stores = tmp.path().join("stores.json");
    let run = Command::new(bin("ferry")?)
        .args([
            "sandbox",
            "--no-wait",
            "--platform",
            "1.9.9",
            "--registry",
            "reg=1.9.9",
        ])
        .arg("--dir")
        .arg(tmp.path().join("sandbox"))
        .arg("--stores-out")
        .arg(&stores)
        .output()?;
    anyhow::ensure!(run.status.success(), "{run:?}");
    assert!(
        std::fs::read_to_string(&stores)?.contains("secret"),
        "the file holds the S3 secret"
    );
    assert_eq!(mode(&stores)?, 0o600);
    Ok(())
}
