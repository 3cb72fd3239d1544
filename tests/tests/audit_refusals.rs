//! Every refused call is audited — who, what, why — and logged, not only
//! the Migrations API's: a viewer's ping, transfer, load and forget.
use std::time::Duration;

use ferry_tests::World;

#[tokio::test(flavor = "multi_thread")]
async fn refused_calls_are_audited_with_who_what_and_why() -> anyhow::Result<()> {
    let w = World::new(&["a"], &["admin", "viewer"])?;
    let coordinator = w.coordinator(&["admin=admin", "viewer=viewer"], &[])?;
    let _agent = w.agent("a", &[])?;
    w.all_connected(&["a"], Duration::from_secs(30)).await?;
    let file = w.path("x.csv");
    std::fs::write(&file, "code\nx\n")?;
    let file_arg = format!("{}=category", file.display());
    for args in [
        vec!["ping", "a"],
        vec!["agents", "forget", "a"],
        vec![
            "transfer",
            "start",
            "--from",
            "a:obc:data",
            "--to",
            "a:obc:copy",
        ],
        vec![
            "load",
            "start",
            "--cluster",
            "a",
            "--database",
            "registry",
            "--id",
            "l-1",
            "--file",
            &file_arg,
        ],
    ] {
        let out = w.ferry("viewer", &args)?;
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
    }
    // An admin forgetting a connected agent is refused by the state, audited too.
    let out = w.ferry("admin", &["agents", "forget", "a"])?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    let audit = w.ferry_json("admin", &["migrate", "audit"])?;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    let denied = |action: &str, actor: &str| {
        entries.iter().any(|e| {
            e["action"] == format!("{action}-denied")
                && e["actor"] == actor
                && e["detail"].as_str().is_some_and(|d| !d.is_empty())
        })
    };
    for action in [
        "command.ping",
        "agents.forget",
        "transfer.start",
        "load.start",
    ] {
        assert!(denied(action, "client/viewer"), "{action}: {audit:#}");
    }
    assert!(denied("agents.forget", "client/admin"), "{audit:#}");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "command.ping-denied" && e["object"] == "a"),
        "the object is named: {audit:#}"
    );
    assert!(
        coordinator.log_count(&["call refused", "client/viewer"]) >= 4,
        "{}",
        coordinator.log_text()
    );
    Ok(())
}

/// An agent's refused session (registering as another cluster) is audited
/// too, with the cluster it claimed.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_agent_session_is_audited() -> anyhow::Result<()> {
    use ferry_common::pb::{self, agent_link_client::AgentLinkClient, agent_message};
    use ferry_common::tls::{self, TlsPaths};
    let w = World::new(&["a"], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    let paths = TlsPaths::in_dir(&w.pki, "agent-a");
    let channel = ferry_tests::eventually(Duration::from_secs(20), "the coordinator", || async {
        tls::connect(&w.url(), &paths, None, Duration::from_secs(5))
            .await
            .ok()
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::AgentMessage {
        msg: Some(agent_message::Msg::Register(pb::Register {
            cluster_id: "b".into(),
            ..Default::default()
        })),
    })
    .await?;
    let refused = AgentLinkClient::new(channel)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let refused = match refused {
        Ok(r) => r.into_inner().message().await.err(),
        Err(s) => Some(s),
    };
    assert_eq!(
        refused.map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    let audit = w.ferry_json("admin", &["migrate", "audit"])?;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["action"] == "agent.session-denied"
            && e["actor"] == "cluster/a"
            && e["object"] == "b"),
        "{audit:#}"
    );
    Ok(())
}
