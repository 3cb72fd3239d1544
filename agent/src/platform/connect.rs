//! A `kube::Client` from a kubeconfig file, or inferred (in-cluster service
//! account, then `$KUBECONFIG` / `~/.kube/config`).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::error::{ProbeError, Result};

pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client> {
    ensure_crypto_provider();
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig_err = |source| ProbeError::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_err)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_err)?
        }
        None => Config::infer()
            .await
            .map_err(|source| ProbeError::Infer { source })?,
    };
    let server = config.cluster_url.to_string();
    Client::try_from(config).map_err(|source| ProbeError::Client { server, source })
}

/// kube's rustls connector takes the process-wide crypto provider, which
/// rustls cannot pick by itself when several are compiled in (ring here,
/// aws-lc-rs through the object store's HTTP client). Ferry uses ring, like
/// its gRPC TLS; an already installed provider is left alone.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
