//! The certificates and keys a throwaway control plane needs: a CA, the
//! apiserver's serving certificate, an admin client certificate in
//! `system:masters`, and the service-account signing key pair.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Paths of what [`write_all`] made, and the admin's credentials as PEM
/// text for the kubeconfig.
pub(crate) struct ControlPlanePki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn write(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Issues everything into `dir` (a test's private temporary directory).
pub(crate) fn write_all(dir: &Path) -> anyhow::Result<ControlPlanePki> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn("ferry-test-kubernetes-ca", None);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);

    // The apiserver answers on loopback, and as the `kubernetes` Service
    // inside the cluster (its first service IP).
    let serving_key = KeyPair::generate().context("generating the serving key")?;
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "10.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])
    .context("serving certificate names")?;
    serving.distinguished_name = dn("kube-apiserver", None);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .context("signing the serving certificate")?;

    let admin_key = KeyPair::generate().context("generating the admin key")?;
    let mut admin = CertificateParams::default();
    admin.distinguished_name = dn("ferry-test-admin", Some("system:masters"));
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .context("signing the admin certificate")?;

    let sa_key = KeyPair::generate().context("generating the service-account key")?;
    Ok(ControlPlanePki {
        ca_cert: write(&dir.join("ca.crt"), &ca_pem)?,
        serving_cert: write(&dir.join("apiserver.crt"), &serving_cert.pem())?,
        serving_key: write(&dir.join("apiserver.key"), &serving_key.serialize_pem())?,
        sa_key: write(&dir.join("sa.key"), &sa_key.serialize_pem())?,
        sa_pub: write(&dir.join("sa.pub"), &sa_key.public_key_pem())?,
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    })
}
