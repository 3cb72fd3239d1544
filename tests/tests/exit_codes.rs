//! The CLI's exit codes, one per kind of outcome (README, `ferry_cli::exit`):
//! 2 usage, 3 refused (by role, identity, certificate, state, or an unknown
//! object), with a refusal of the client's own certificate said in words.
use std::time::Duration;

use ferry_common::pki::{self, PkiPlan};
use ferry_tests::World;

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_outcome_has_its_exit_code() -> anyhow::Result<()> {
    let w = World::new(&["a"], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    let _agent = w.agent("a", &[])?;
    w.all_connected(&["a"], Duration::from_secs(30)).await?;

    // Usage: a load naming no file.
    let out = w.ferry(
        "admin",
        &["load", "start", "--cluster", "a", "--database", "registry"],
    )?;
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Refused: a cluster the coordinator does not know.
    let out = w.ferry("admin", &["ping", "nosuch"])?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Refused, in words: the client's own certificate, from another CA.
    let other = w.path("other-pki");
    pki::init(
        &other,
        &PkiPlan {
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        },
    )?;
    let cert = other.join("client-admin.pem").display().to_string();
    let key = other.join("client-admin-key.pem").display().to_string();
    let out = w.ferry("admin", &["--tls-cert", &cert, "--tls-key", &key, "agents"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the coordinator refused this side's certificate"),
        "{err}"
    );
    Ok(())
}
