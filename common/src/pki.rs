//! A small PKI for demos and tests (`ferry pki init`): one CA, the
//! coordinator's server certificate, one certificate per agent and per client.
//! Production deployments bring their own CA or cert-manager (docs/operations.md).
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::{Error, Identity, Result};

/// What `ferry pki init` makes.
#[derive(Debug, Clone)]
pub struct PkiPlan {
    pub clusters: Vec<String>,
    pub clients: Vec<String>,
    /// DNS names and IP addresses of the coordinator's server certificate.
    pub server_names: Vec<String>,
}

impl Default for PkiPlan {
    fn default() -> Self {
        Self {
            clusters: vec![],
            clients: vec![],
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

/// File base name of each party's certificate in the output directory.
pub fn file_name(identity: &Identity) -> String {
    match identity {
        Identity::Agent(id) => format!("agent-{id}"),
        Identity::Client(name) => format!("client-{name}"),
        Identity::Coordinator => "coordinator".into(),
    }
}

/// Writes `ca.pem`, `ca-key.pem`, `coordinator.pem`/`-key.pem`, and
/// `agent-<id>.pem`/`-key.pem`, `client-<name>.pem`/`-key.pem` into `out`.
/// Returns the files written.
pub fn init(out: &Path, plan: &PkiPlan) -> Result<Vec<PathBuf>> {
    for name in plan.clusters.iter().chain(&plan.clients) {
        if !crate::identity::valid_name(name) {
            return Err(Error::Identity(format!(
                "{name:?} is not a valid cluster id or client name: use lowercase letters, digits and '-', at most 63"
            )));
        }
    }
    create_private_dir(out).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })?;
    let ca_key = KeyPair::generate().map_err(|source| issue_err("CA", source))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn("Ferry CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|source| issue_err("CA", source))?;
    let mut written = vec![
        write(&out.join("ca.pem"), &ca_cert.pem())?,
        write_key(&out.join("ca-key.pem"), &ca_key.serialize_pem())?,
    ];
    let issuer = Issuer::new(ca_params, ca_key);
    written.extend(issue_with(
        &issuer,
        out,
        &Identity::Coordinator,
        &plan.server_names,
    )?);
    for id in &plan.clusters {
        written.extend(issue_with(&issuer, out, &Identity::Agent(id.clone()), &[])?);
    }
    for name in &plan.clients {
        written.extend(issue_with(
            &issuer,
            out,
            &Identity::Client(name.clone()),
            &[],
        )?);
    }
    Ok(written)
}

/// Issues (or re-issues, for rotation) one party's certificate from the CA
/// already in `dir` (`ca.pem`, `ca-key.pem`), overwriting its files.
pub fn issue(dir: &Path, identity: &Identity, server_names: &[String]) -> Result<Vec<PathBuf>> {
    let ca_pem = String::from_utf8_lossy(&crate::tls::read_file(&dir.join("ca.pem"))?).into_owned();
    let key_path = dir.join("ca-key.pem");
    let key_pem = String::from_utf8_lossy(&crate::tls::read_file(&key_path)?).into_owned();
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|_| Error::Pem {
        path: key_path,
        what: "CA private key",
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|source| issue_err("CA", source))?;
    issue_with(&issuer, dir, identity, server_names)
}

fn issue_with(
    issuer: &Issuer<'_, KeyPair>,
    out: &Path,
    identity: &Identity,
    server_names: &[String],
) -> Result<Vec<PathBuf>> {
    let what = identity.to_string();
    let key = KeyPair::generate().map_err(|source| issue_err(&what, source))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&identity.uri());
    let uri = identity
        .uri()
        .try_into()
        .map_err(|source| issue_err(&what, source))?;
    params.subject_alt_names.push(SanType::URI(uri));
    for name in server_names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|source| issue_err(&what, source))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match identity {
        Identity::Coordinator => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| issue_err(&what, source))?;
    let base = file_name(identity);
    // Key first: a reader that sees the new certificate finds its key already there.
    let key_path = write_key(&out.join(format!("{base}-key.pem")), &key.serialize_pem())?;
    let cert_path = write(&out.join(format!("{base}.pem")), &cert.pem())?;
    Ok(vec![cert_path, key_path])
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Ferry");
    dn
}

fn issue_err(what: &str, source: rcgen::Error) -> Error {
    Error::Issue {
        what: what.to_string(),
        source,
    }
}

/// A private key: readable by its owner only (0600).
fn write_key(path: &Path, contents: &str) -> Result<PathBuf> {
    write_private(path, contents.as_bytes()).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(path.to_owned())
}

/// Creates `dir` (and its parents) and makes it its owner's only (0700):
/// it holds private keys.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes a secret (a private key, credentials) readable by its owner only
/// (0600), via a temporary file created with that mode and a rename, so it
/// is never readable by others, not even for a moment, and a reloading
/// reader never sees half a file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover of a crash may have other permissions: start afresh.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Writes via a temporary file and rename, so a reloading reader never sees half a file.
fn write(path: &Path, contents: &str) -> Result<PathBuf> {
    let tmp = path.with_extension("pem.tmp");
    std::fs::write(&tmp, contents)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_their_identity() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let plan = PkiPlan {
            clusters: vec!["a".into(), "b".into()],
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        };
        init(dir.path(), &plan)?;
        for (file, expected) in [
            ("agent-a.pem", Identity::Agent("a".into())),
            ("agent-b.pem", Identity::Agent("b".into())),
            ("client-admin.pem", Identity::Client("admin".into())),
            ("coordinator.pem", Identity::Coordinator),
        ] {
            let certs = crate::tls::read_certs(&dir.path().join(file))?;
            assert_eq!(Identity::from_cert_der(&certs[0])?, expected, "{file}");
        }
        // Re-issuing from the same CA works and changes the certificate.
        let before = std::fs::read(dir.path().join("agent-a.pem"))?;
        issue(dir.path(), &Identity::Agent("a".into()), &[])?;
        assert_ne!(before, std::fs::read(dir.path().join("agent-a.pem"))?);
        Ok(())
    }

    /// Private keys, the CA's too, are their owner's only, and so is the
    /// directory; certificates stay readable.
    #[cfg(unix)]
    #[test]
    fn private_keys_are_written_0600_in_a_0700_directory() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("pki");
        let plan = PkiPlan {
            clusters: vec!["a".into()],
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        };
        let mode = |p: &Path| -> anyhow::Result<u32> {
            Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
        };
        for path in init(&out, &plan)? {
            let name = path.display().to_string();
            if name.ends_with("-key.pem") {
                assert_eq!(mode(&path)?, 0o600, "{name}");
            } else {
                assert_eq!(mode(&path)? & 0o600, 0o600, "{name}");
            }
        }
        assert_eq!(mode(&out)?, 0o700);
        assert_eq!(mode(&out.join("ca-key.pem"))?, 0o600);
        // Re-issuing keeps it so, even over a key someone made readable.
        let key = out.join("agent-a-key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
        issue(&out, &Identity::Agent("a".into()), &[])?;
        assert_eq!(mode(&key)?, 0o600);
        Ok(())
    }

    #[test]
    fn refuses_names_that_are_not_dns_labels() {
        let plan = PkiPlan {
            clusters: vec!["Bad/Name".into()],
            ..PkiPlan::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let err = init(dir.path(), &plan).expect_err("must refuse");
        assert!(err.to_string().contains("Bad/Name"), "{err}");
    }
}
