//! `ferry sandbox`: one sandbox cluster, standalone, for people and tools
//! (kubectl, rclone, curl, a `ferry-agent`) to point at.
use std::path::PathBuf;

use anyhow::Context;
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, Seed};
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
    /// Print the connection details and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn run(args: SandboxArgs, out: OutputFormat) -> anyhow::Result<u8> {
    let cluster = SandboxCluster::start(&args.dir, ClusterOptions::default())
        .await
        .with_context(|| format!("starting a sandbox cluster in {}", args.dir.display()))?;
    let mut seed = match &args.platform {
        Some(v) => Seed::platform(v.clone()),
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
