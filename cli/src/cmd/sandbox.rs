//! `ferry sandbox`: one sandbox cluster, standalone, for people and tools
//! (kubectl, rclone, curl, a `ferry-agent`) to point at.
use std::path::PathBuf;

use anyhow::Context;
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, OBC_BUCKETS, Platform, Seed, bucket_name};
use serde_json::json;

use crate::output::{self, OutputFormat};

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Where the cluster keeps its files (kubeconfig, buckets, volumes).
    #[arg(long, default_value = "ferry-sandbox")]
    pub dir: PathBuf,
    /// Install the Platform at this version (omit for a bare cluster).
    #[arg(long)]
    pub platform: Option<String>,
    /// Add a registry, `name=version` (needs --platform); repeatable.
    #[arg(long = "registry")]
    pub registries: Vec<String>,
    /// The cluster's domain: routes are `*.apps.<domain>`.
    #[arg(long, default_value = "sandbox.example.com")]
    pub domain: String,
    /// Write an agent's `--stores` file here: the backup bucket as store
    /// `backups` and the first registry's nine buckets as `obc-<bucket>`.
    #[arg(long)]
    pub stores_out: Option<PathBuf>,
    /// Name the buckets and stores of `--stores-out` after this registry
    /// (default: the first `--registry`); on a target, the one it will receive.
    #[arg(long)]
    pub bucket_registry: Option<String>,
    /// Print the connection details and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

/// The stores an agent of this sandbox cluster uses to migrate `registry`:
/// `backups` (the backup storage location's bucket: Velero's prefix and
/// Ferry's own) and `obc-<bucket>` for each of the registry's nine buckets.
pub fn agent_stores(cluster: &SandboxCluster, registry: &str) -> serde_json::Value {
    let s3 = |bucket: &str| {
        json!({
            "endpoint": cluster.s3_endpoint(),
            "bucket": bucket,
            "region": cluster.s3_region(),
            "access_key_id": cluster.s3_access_key(),
            "secret_access_key": cluster.s3_secret_key(),
            "allow_http": true
        })
    };
    let mut stores = serde_json::Map::new();
    stores.insert(
        "backups".into(),
        json!({"s3": s3(cluster.bsl_bucket()), "prefixes": [format!("{}/", fixture::BSL_PREFIX), "ferry/"]}),
    );
    for obc in OBC_BUCKETS {
        stores.insert(
            format!("obc-{obc}"),
            json!({"s3": s3(&bucket_name(registry, obc)), "prefixes": [""]}),
        );
    }
    json!({ "stores": stores })
}

/// Creates the registry's nine (empty) buckets, as the bucket provisioner
/// does for its claims; already there is fine.
pub async fn ensure_buckets(cluster: &SandboxCluster, registry: &str) -> anyhow::Result<()> {
    let existing = cluster.s3().list_buckets().await?;
    for obc in OBC_BUCKETS {
        let name = bucket_name(registry, obc);
        if !existing.contains(&name) {
            cluster.s3().create_bucket(&name).await?;
        }
    }
    Ok(())
}

pub async fn run(args: SandboxArgs, out: OutputFormat) -> anyhow::Result<u8> {
    let cluster = SandboxCluster::start(&args.dir, ClusterOptions::default())
        .await
        .with_context(|| format!("starting a sandbox cluster in {}", args.dir.display()))?;
    let mut seed = match &args.platform {
        Some(v) => Seed {
            platform: Some(Platform::new(v.clone()).with_domain(args.domain.clone())),
            registries: vec![],
        },
        None => Seed::bare(),
    };
    for r in &args.registries {
        let (name, version) = r
            .split_once('=')
            .with_context(|| format!("bad --registry {r:?}: use name=version"))?;
        anyhow::ensure!(
            args.platform.is_some(),
            "--registry needs --platform: a registry lives on the Platform"
        );
        seed = seed.with_registry(name, version);
    }
    let report = fixture::seed(&cluster, &seed).await?;
    if let Some(path) = &args.stores_out {
        let registry = args
            .bucket_registry
            .clone()
            .or_else(|| {
                args.registries
                    .first()
                    .and_then(|r| r.split_once('='))
                    .map(|(name, _)| name.to_string())
            })
            .context(
                "--stores-out needs a --registry or a --bucket-registry to name the buckets after",
            )?;
        ensure_buckets(&cluster, &registry).await?;
        // It holds the stores' S3 secrets: its owner's only (0600).
        ferry_common::pki::write_private(
            path,
            agent_stores(&cluster, &registry).to_string().as_bytes(),
        )
        .with_context(|| format!("writing the agent's stores file {}", path.display()))?;
    }
    let info = json!({
        "kubeconfig": cluster.kubeconfig().display().to_string(),
        "kubernetes_api": cluster.api_url(),
        "s3": {
            "endpoint": cluster.s3_endpoint(),
            "access_key_id": cluster.s3_access_key(),
            "secret_access_key": cluster.s3_secret_key(),
            "region": cluster.s3_region(),
            "bsl_bucket": cluster.bsl_bucket(),
        },
        "keycloak": {
            "url": cluster.keycloak_url(),
            "admin_user": cluster.keycloak_admin_user(),
            "admin_password": cluster.keycloak_admin_password(),
        },
        "seeded_in_ms": report.elapsed.as_millis() as u64,
    });
    match out {
        OutputFormat::Json => output::print_json(&info),
        OutputFormat::Table => {
            println!("sandbox cluster in {}", args.dir.display());
            println!(
                "  kubectl --kubeconfig {} get namespaces",
                cluster.kubeconfig().display()
            );
            println!(
                "  S3 {}  key {}  secret {}  region {}",
                cluster.s3_endpoint(),
                cluster.s3_access_key(),
                cluster.s3_secret_key(),
                cluster.s3_region()
            );
            println!(
                "  Keycloak {}  admin {} / {}",
                cluster.keycloak_url(),
                cluster.keycloak_admin_user(),
                cluster.keycloak_admin_password()
            );
            println!(
                "  ferry-agent --cluster-id <id> --kubeconfig {} --pki-dir <dir>",
                cluster.kubeconfig().display()
            );
            println!(
                "seeded in {} ms; Ctrl-C to stop",
                report.elapsed.as_millis()
            );
        }
    }
    if !args.no_wait {
        ferry_common::signal::terminated().await;
    }
    cluster.shutdown().await;
    Ok(crate::exit::OK)
}
