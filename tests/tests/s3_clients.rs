//! Real S3 clients against `ferry sandbox`, as a person would point them at
//! it: rclone (`copy`, `ls`, `size`, `check`, `sync`) and the AWS CLI
//! (`s3 ls`, `s3 cp`). Each is skipped, saying why, when the tool is not
//! installed; `scripts/test` installs both where it can (rclone from
//! Debian's packages, the AWS CLI from PyPI into `.realstack/awscli`).
//!
//! rclone's recursive listing sends an empty `delimiter=`, which the
//! sandbox once answered with one common prefix: `rclone ls` and `check`
//! then saw nothing of what `rclone copy` had put there (issue 18).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// A `ferry sandbox` process serving until dropped.
struct Sandbox {
    child: Child,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// Starts a bare sandbox cluster and reads the connection details it
    /// prints (`-o json`) before it settles to serve.
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(ferry_tests::bin("ferry")?)
            .args(["sandbox", "-o", "json", "--dir"])
            .arg(dir.path().join("cluster"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ferry sandbox")?;
        let stdout = child.stdout.take().context("ferry sandbox's stdout")?;
        let mut text = String::new();
        let mut lines = BufReader::new(stdout).lines();
        let info: serde_json::Value = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("ferry sandbox ended before printing its details: {text}");
            };
            text.push_str(&line.context("reading ferry sandbox's output")?);
            text.push('\n');
            if let Ok(v) = serde_json::from_str(&text) {
                break v;
            }
        };
        let field = |f: &str| {
            info["s3"][f]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("ferry sandbox printed no s3.{f}: {info}"))
        };
        Ok(Sandbox {
            endpoint: field("endpoint")?,
            access_key: field("access_key_id")?,
            secret_key: field("secret_access_key")?,
            region: field("region")?,
            child,
            _dir: dir,
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on PATH, or `None`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs a client and fails, with its output, unless it succeeds.
fn run(mut cmd: Command, what: &str) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Local files to copy: nested directories, keys that need encoding, one
/// file large enough for a multipart upload at rclone's 5 MiB chunks.
fn make_tree(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for i in 0..60 {
        files.insert(
            format!("dir{}/sub{}/file-{i:02}.bin", i % 3, i % 2),
            format!("object {i} ").repeat(i * 7 + 1).into_bytes(),
        );
    }
    files.insert("top level.txt".into(), b"spaces in the name".to_vec());
    files.insert("unicode/ü-ñ-日本.txt".into(), "unicode".as_bytes().to_vec());
    files.insert("plus+and%percent.txt".into(), b"plus and percent".to_vec());
    files.insert(
        "big/twelve-mib.bin".into(),
        (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect(),
    );
    for (key, data) in &files {
        let path = root.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}

/// `rclone ls` output (`<size> <path>` lines) as path → size.
fn parse_ls(text: &str) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (size, path) = line
            .trim_start()
            .split_once(' ')
            .with_context(|| format!("unexpected rclone ls line {line:?}"))?;
        out.insert(path.to_owned(), size.parse()?);
    }
    Ok(out)
}

fn sizes(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, u64> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect()
}

#[test]
fn rclone_copy_ls_size_check_and_sync_against_ferry_sandbox() -> Result<()> {
    let Some(rclone) = on_path("rclone") else {
        eprintln!("SKIPPED: rclone is not installed (apt-get install rclone; scripts/test does)");
        return Ok(());
    };
    let sandbox = Sandbox::start()?;
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    let mut files = make_tree(&src)?;
    let config = work.path().join("rclone.conf");
    std::fs::write(&config, "")?;
    let rclone_cmd = |args: &[&str]| {
        let mut c = Command::new(&rclone);
        c.arg("--config")
            .arg(&config)
            .args(["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"])
            .args(["--retries", "1", "--low-level-retries", "1"])
            .env("RCLONE_CONFIG_SBX_TYPE", "s3")
            .env("RCLONE_CONFIG_SBX_PROVIDER", "Other")
            .env("RCLONE_CONFIG_SBX_ENDPOINT", &sandbox.endpoint)
            .env("RCLONE_CONFIG_SBX_ACCESS_KEY_ID", &sandbox.access_key)
            .env("RCLONE_CONFIG_SBX_SECRET_ACCESS_KEY", &sandbox.secret_key)
            .env("RCLONE_CONFIG_SBX_REGION", &sandbox.region)
            .env("RCLONE_CONFIG_SBX_FORCE_PATH_STYLE", "true")
            // rclone 1.60's S3 backend fails to start when AWS_CA_BUNDLE is
            // set (its HTTP transport is not the SDK's); the sandbox speaks
            // plain HTTP, so no CA bundle is wanted.
            .env_remove("AWS_CA_BUNDLE")
            .args(args);
        c
    };
    let src_arg = src.display().to_string();

    run(rclone_cmd(&["mkdir", "sbx:rclone"]), "rclone mkdir")?;
    run(rclone_cmd(&["copy", &src_arg, "sbx:rclone"]), "rclone copy")?;

    let ls = run(rclone_cmd(&["ls", "sbx:rclone"]), "rclone ls")?;
    let listed = parse_ls(&String::from_utf8_lossy(&ls.stdout))?;
    assert_eq!(
        listed,
        sizes(&files),
        "rclone ls lists what rclone copy put"
    );

    let size = run(rclone_cmd(&["size", "--json", "sbx:rclone"]), "rclone size")?;
    let size: serde_json::Value = serde_json::from_slice(&size.stdout)?;
    let bytes: u64 = files.values().map(|v| v.len() as u64).sum();
    assert_eq!(size["count"], files.len(), "rclone size: {size}");
    assert_eq!(size["bytes"], bytes, "rclone size: {size}");

    run(
        rclone_cmd(&["check", &src_arg, "sbx:rclone"]),
        "rclone check",
    )?;
    // Check must also see a difference: a file changed locally, its size
    // kept, so only the digests (the sandbox's ETags) can tell.
    std::fs::write(src.join("top level.txt"), b"SPACES IN THE NAME")?;
    files.insert("top level.txt".into(), b"SPACES IN THE NAME".to_vec());
    let differs = rclone_cmd(&["check", &src_arg, "sbx:rclone"]).output()?;
    ensure!(
        !differs.status.success(),
        "rclone check did not notice a file changed to the same size:\n{}",
        String::from_utf8_lossy(&differs.stderr)
    );

    // Sync: one file removed, one added, one changed (above).
    std::fs::remove_file(src.join("dir0/sub0/file-00.bin"))?;
    files.remove("dir0/sub0/file-00.bin");
    std::fs::write(src.join("added later.txt"), b"new")?;
    files.insert("added later.txt".into(), b"new".to_vec());
    run(rclone_cmd(&["sync", &src_arg, "sbx:rclone"]), "rclone sync")?;
    let ls = run(rclone_cmd(&["ls", "sbx:rclone"]), "rclone ls after sync")?;
    let listed = parse_ls(&String::from_utf8_lossy(&ls.stdout))?;
    assert_eq!(listed, sizes(&files), "rclone ls after rclone sync");
    run(
        rclone_cmd(&["check", &src_arg, "sbx:rclone"]),
        "rclone check after sync",
    )?;
    // And the bytes come back as they went.
    let back = work.path().join("back");
    run(
        rclone_cmd(&["copy", "sbx:rclone", &back.display().to_string()]),
        "rclone copy back",
    )?;
    for (key, data) in &files {
        let got = std::fs::read(back.join(key)).with_context(|| format!("reading back {key}"))?;
        ensure!(&got == data, "{key} came back different");
    }
    Ok(())
}

/// The AWS CLI: `$FERRY_AWS_CLI`, the one `scripts/test` installs into
/// `.realstack/awscli`, or one on PATH.
fn aws_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_AWS_CLI") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join(".realstack/awscli/bin/aws");
    if venv.is_file() {
        return Some(venv);
    }
    on_path("aws")
}

#[test]
fn aws_cli_s3_ls_and_cp_against_ferry_sandbox() -> Result<()> {
    let Some(aws) = aws_cli() else {
        eprintln!(
            "SKIPPED: the AWS CLI is not installed (pip install awscli; scripts/test installs it into .realstack/awscli)"
        );
        return Ok(());
    };
    let sandbox = Sandbox::start()?;
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    let files = make_tree(&src)?;
    let aws_cmd = |args: &[&str]| {
        let mut c = Command::new(&aws);
        c.args(["--endpoint-url", &sandbox.endpoint])
            .env("AWS_ACCESS_KEY_ID", &sandbox.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &sandbox.secret_key)
            .env("AWS_DEFAULT_REGION", &sandbox.region)
            .env("AWS_CONFIG_FILE", work.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                work.path().join("no-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args);
        c
    };
    run(aws_cmd(&["s3", "mb", "s3://awscli"]), "aws s3 mb")?;
    let src_arg = src.display().to_string();
    run(
        aws_cmd(&["s3", "cp", "--recursive", &src_arg, "s3://awscli/"]),
        "aws s3 cp --recursive (upload)",
    )?;
    // `s3 ls --recursive`: `<date> <time> <size> <key>`, keys may hold spaces.
    let ls = run(
        aws_cmd(&["s3", "ls", "--recursive", "s3://awscli/"]),
        "aws s3 ls --recursive",
    )?;
    let mut listed = BTreeMap::new();
    for line in String::from_utf8_lossy(&ls.stdout).lines() {
        let rest = line
            .get(19..)
            .with_context(|| format!("unexpected aws s3 ls line {line:?}"))?;
        let (size, key) = rest
            .trim_start()
            .split_once(' ')
            .with_context(|| format!("unexpected aws s3 ls line {line:?}"))?;
        listed.insert(key.to_owned(), size.parse::<u64>()?);
    }
    assert_eq!(
        listed,
        sizes(&files),
        "aws s3 ls --recursive lists what aws s3 cp put"
    );
    // Without --recursive: the top level, directories as PRE.
    let top = run(aws_cmd(&["s3", "ls", "s3://awscli/"]), "aws s3 ls")?;
    let top = String::from_utf8_lossy(&top.stdout);
    for dir in ["PRE big/", "PRE dir0/", "PRE unicode/"] {
        ensure!(top.contains(dir), "aws s3 ls shows no {dir:?}:\n{top}");
    }
    ensure!(
        top.contains("top level.txt"),
        "aws s3 ls shows no top-level file:\n{top}"
    );
    // Single objects both ways, the large one through multipart.
    let back = work.path().join("back");
    std::fs::create_dir_all(&back)?;
    for key in [
        "big/twelve-mib.bin",
        "plus+and%percent.txt",
        "unicode/ü-ñ-日本.txt",
    ] {
        let local = back.join(key.replace('/', "_"));
        run(
            aws_cmd(&[
                "s3",
                "cp",
                &format!("s3://awscli/{key}"),
                &local.display().to_string(),
            ]),
            &format!("aws s3 cp s3://awscli/{key} (download)"),
        )?;
        ensure!(
            std::fs::read(&local)? == files[key],
            "{key} came back different through the AWS CLI"
        );
    }
    Ok(())
}
