//! A bare TLS handshake with the coordinator, to see which certificate it presents.
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ferry_common::tls::{read_certs, read_key};
use rustls::pki_types::{CertificateDer, ServerName};

pub async fn server_cert(pki: &Path, port: u16) -> anyhow::Result<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(&pki.join("ca.pem"))? {
        roots.add(c)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(
        read_certs(&pki.join("client-admin.pem"))?,
        read_key(&pki.join("client-admin-key.pem"))?,
    )?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake with the coordinator")?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .context("the coordinator presented no certificate")?
        .clone()
        .into_owned();
    Ok(cert)
}
