//! Agents and the CLI talk only to the coordinator: a server whose
//! certificate is from the same CA and carries the right DNS/IP names but
//! another party's identity (here a client's, `spiffe://ferry/client/evil`)
//! is refused — an agent runs what its coordinator sends.
use std::time::Duration;

use anyhow::Context;
use ferry_tests::{World, eventually};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A server certificate for 127.0.0.1/localhost from the world's CA, naming
/// `spiffe://ferry/client/evil`; returns its cert and key paths.
fn evil_server_cert(w: &World) -> anyhow::Result<(String, String)> {
    let ca_pem = std::fs::read_to_string(w.pki.join("ca.pem"))?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(w.pki.join("ca-key.pem"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "spiffe://ferry/client/evil");
    params.subject_alt_names = vec![
        SanType::URI("spiffe://ferry/client/evil".try_into()?),
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress("127.0.0.1".parse()?),
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer)?;
    let cert_path = w.path("evil.pem");
    let key_path = w.path("evil-key.pem");
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    Ok((
        cert_path.display().to_string(),
        key_path.display().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_another_identity_from_the_ca_is_not_the_coordinator() -> anyhow::Result<()> {
    let w = World::new(&["a"], &["admin"])?;
    let (cert, key) = evil_server_cert(&w)?;
    let _evil = w.coordinator(&["admin=admin"], &["--tls-cert", &cert, "--tls-key", &key])?;
    let agent = w.agent("a", &[])?;

    // The CLI refuses it, exit 3, saying which identity it met instead.
    let out = eventually(Duration::from_secs(20), "the CLI to reach it", || async {
        let out = w.ferry("admin", &["agents"]).ok()?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (!err.contains("cannot connect")).then_some((out.status.code(), err))
    })
    .await?;
    assert_eq!(out.0, Some(3), "{}", out.1);
    assert!(
        out.1.contains("spiffe://ferry/client/evil") && out.1.contains("not the coordinator"),
        "{}",
        out.1
    );

    // The agent refuses it too, says so, and never registers.
    eventually(
        Duration::from_secs(20),
        "the agent to refuse it",
        || async { (agent.log_count(&["not the coordinator"]) > 0).then_some(()) },
    )
    .await
    .with_context(|| agent.log_text())?;
    assert_eq!(
        agent.log_count(&["\"registered\""]),
        0,
        "{}",
        agent.log_text()
    );

    // Where the coordinator is meant to carry another identity, say so.
    let out = w.ferry(
        "admin",
        &[
            "--coordinator-identity",
            "spiffe://ferry/client/evil",
            "agents",
        ],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// An agent the coordinator refuses for who it is (a certificate of
/// cluster a used as cluster b) says that redialling will not help.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_refused_for_good_says_so() -> anyhow::Result<()> {
    let w = World::new(&["a"], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    let cert = w.pki.join("agent-a.pem").display().to_string();
    let key = w.pki.join("agent-a-key.pem").display().to_string();
    let agent = w.agent("b", &["--tls-cert", &cert, "--tls-key", &key])?;
    eventually(Duration::from_secs(20), "the agent to say so", || async {
        (agent.log_count(&["ERROR", "will not succeed", "belongs to cluster a"]) > 0).then_some(())
    })
    .await
    .with_context(|| agent.log_text())?;
    Ok(())
}
