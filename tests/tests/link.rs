//! The secure agent link, end to end: a coordinator and agents as separate
//! processes over loopback mTLS, driven through the `ferry` CLI.
use std::time::Duration;

use ferry_common::pb::{self, fleet_client::FleetClient};
use ferry_common::tls::{TlsPaths, read_file};
use ferry_tests::{World, eventually, make_pki};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const ROLES: &[&str] = &["admin=admin", "viewer=viewer", "ops=operator"];
const CLIENTS: &[&str] = &["admin", "viewer", "ops"];

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_connect_and_answer_describe() -> anyhow::Result<()> {
    let w = World::new(&["a", "b"], CLIENTS)?;
    let _c = w.coordinator(ROLES, &[])?;
    let _a = w.agent("a", &["--registry", "reg-1=1.9.9"])?;
    let _b = w.agent("b", &[])?;
    w.all_connected(&["a", "b"], Duration::from_secs(20))
        .await?;

    let listed = w.ferry_json("viewer", &["agents"])?;
    let a = listed["agents"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["cluster_id"] == "a"))
        .ok_or_else(|| anyhow::anyhow!("agent a not listed: {listed}"))?;
    assert_eq!(a["state"], "connected");
    assert_eq!(a["facts"]["platform_version"], "1.9.9");
    assert_eq!(a["facts"]["registries"][0]["name"], "reg-1");

    for cluster in ["a", "b"] {
        let d = w.ferry_json("admin", &["describe", cluster])?;
        assert_eq!(d["state"], "succeeded", "{d}");
        assert_eq!(d["result"]["describe"]["cluster_id"], cluster);
        assert_eq!(
            d["result"]["describe"]["facts"]["platform_version"],
            "1.9.9"
        );
    }
    // The table form is for people but must name both clusters.
    let table = w.ferry("viewer", &["agents"])?;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("CLUSTER") && text.contains("connected"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn strangers_and_impostors_are_refused() -> anyhow::Result<()> {
    let w = World::new(&["a", "b"], CLIENTS)?;
    let coordinator = w.coordinator(ROLES, &[])?;
    let _a = w.agent("a", &[])?;
    w.all_connected(&["a"], Duration::from_secs(20)).await?;

    // No client certificate at all.
    let ca = Certificate::from_pem(read_file(&w.pki.join("ca.pem"))?);
    let anonymous = async {
        let channel = Endpoint::from_shared(w.url())?
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(ca)
                    .domain_name("localhost"),
            )?
            .connect()
            .await?;
        FleetClient::new(channel)
            .list_agents(pb::ListAgentsRequest {})
            .await
            .map_err(anyhow::Error::from)
    };
    assert!(
        anonymous.await.is_err(),
        "a client without a certificate got an answer"
    );

    // A certificate from another CA (the server's own certificate still verifies).
    let other = make_pki(&w.path("other-pki"), &["a"], &["admin"])?;
    let out = w.ferry(
        "admin",
        &[
            "--tls-cert",
            &other.join("client-admin.pem").display().to_string(),
            "--tls-key",
            &other.join("client-admin-key.pem").display().to_string(),
            "agents",
        ],
    )?;
    assert!(!out.status.success(), "a client of another CA was served");
    eventually(
        Duration::from_secs(5),
        "the refusal in the coordinator's log",
        || async { (coordinator.log_count(&["TLS connection refused"]) >= 2).then_some(()) },
    )
    .await?;

    // Agent a's certificate presented as cluster b.
    let paths = TlsPaths::in_dir(&w.pki, "agent-a");
    let impostor = w.agent(
        "b",
        &[
            "--tls-cert",
            &paths.cert.display().to_string(),
            "--tls-key",
            &paths.key.display().to_string(),
        ],
    )?;
    eventually(Duration::from_secs(10), "the impostor refused", || async {
        (impostor.log_count(&["cannot register as cluster"]) > 0).then_some(())
    })
    .await?;
    let states = w.agent_states()?;
    assert!(
        !states.iter().any(|(id, _)| id == "b"),
        "cluster b appeared though only a's certificate was used: {states:?}"
    );

    // Roles: a viewer may list, not send commands, not forget agents.
    assert!(w.ferry("viewer", &["agents"])?.status.success());
    let ping = w.ferry("viewer", &["ping", "a"])?;
    assert_eq!(
        ping.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let forget = w.ferry("viewer", &["agents", "forget", "a"])?;
    assert_eq!(forget.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&forget.stderr).contains("needs admin"),
        "{}",
        String::from_utf8_lossy(&forget.stderr)
    );
    // An operator may ping; a client with no role may do nothing.
    assert!(w.ferry("ops", &["ping", "a"])?.status.success());
    Ok(())
}

/// A command issued just before the coordinator is SIGKILLed is executed
/// once: the agent is mid-way through one command and has finished another
/// whose result was never acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn coordinator_killed_and_restarted_loses_nothing_and_repeats_nothing() -> anyhow::Result<()>
{
    let w = World::new(&["a", "b"], CLIENTS)?;
    let mut coordinator = w.coordinator(ROLES, &[])?;
    let a = w.agent("a", &[])?;
    let _b = w.agent("b", &[])?;
    w.all_connected(&["a", "b"], Duration::from_secs(20))
        .await?;

    let submit = |delay: &str, request: &str| -> anyhow::Result<String> {
        let v = w.ferry_json(
            "ops",
            &[
                "ping",
                "a",
                "--delay-ms",
                delay,
                "--payload",
                request,
                "--request-id",
                request,
                "--no-wait",
            ],
        )?;
        Ok(v["command_id"].as_str().unwrap_or_default().to_string())
    };
    let long = submit("2500", "long")?;
    let short = submit("100", "short")?;
    eventually(
        Duration::from_secs(10),
        "both commands executing",
        || async {
            (a.log_count(&["executing command", &long]) == 1
                && a.log_count(&["executing command", &short]) == 1)
                .then_some(())
        },
    )
    .await?;
    coordinator.kill9()?;
    // While the coordinator is down the short command finishes; its result waits.
    eventually(
        Duration::from_secs(10),
        "the short command finished",
        || async { (a.log_count(&["command finished", &short]) == 1).then_some(()) },
    )
    .await?;
    let restarted_at = std::time::Instant::now();
    let _coordinator = w.coordinator(ROLES, &[])?;
    w.all_connected(&["a", "b"], Duration::from_secs(15))
        .await?;
    let back_after = restarted_at.elapsed();

    for (id, payload) in [(&long, "long"), (&short, "short")] {
        let v = w.ferry_json("viewer", &["command", "get", id, "--wait", "30"])?;
        assert_eq!(v["state"], "succeeded", "{v}");
        assert_eq!(v["result"]["ping"]["payload"], payload);
    }
    // The same request id again is the same command, not a new one.
    assert_eq!(submit("2500", "long")?, long);
    // Give a would-be duplicate delivery time to show itself, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.log_count(&["executing command", &long]),
        1,
        "long ping executed more than once"
    );
    assert_eq!(
        a.log_count(&["executing command", &short]),
        1,
        "short ping executed more than once"
    );
    eprintln!("agents back {back_after:?} after the restart (backoff cap 2s)");
    for line in a.log_text().lines().filter(|l| l.contains("command")) {
        eprintln!("agent a: {line}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_certificates_serve_new_handshakes_without_a_restart() -> anyhow::Result<()> {
    let w = World::new(&["a"], CLIENTS)?;
    let coordinator = w.coordinator(ROLES, &[])?;
    let _a = w.agent("a", &[])?;
    w.all_connected(&["a"], Duration::from_secs(20)).await?;
    let session_before = w.ferry_json("admin", &["agents"])?["agents"][0]["session_id"].clone();

    let presented_before = ferry_tests::tls_probe::server_cert(&w.pki, w.port).await?;
    assert_eq!(
        presented_before,
        ferry_common::tls::read_certs(&w.pki.join("coordinator.pem"))?[0]
    );

    ferry_common::pki::issue(
        &w.pki,
        &ferry_common::Identity::Coordinator,
        &["localhost".into(), "127.0.0.1".into()],
    )?;
    let rotated = ferry_common::tls::read_certs(&w.pki.join("coordinator.pem"))?[0].clone();
    assert_ne!(rotated, presented_before);
    let presented_after = ferry_tests::tls_probe::server_cert(&w.pki, w.port).await?;
    assert_eq!(
        presented_after, rotated,
        "a new handshake still got the old certificate"
    );

    // The client's own certificate, rotated too, is used on its next call.
    ferry_common::pki::issue(&w.pki, &ferry_common::Identity::Client("admin".into()), &[])?;
    let listed = w.ferry_json("admin", &["agents"])?;
    // The established agent session was not dropped by the rotation.
    assert_eq!(listed["agents"][0]["session_id"], session_before);
    assert_eq!(listed["agents"][0]["state"], "connected");
    assert!(coordinator.log_count(&["TLS files changed on disk"]) >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_agents_notice() -> anyhow::Result<()> {
    let w = World::new(&["a"], CLIENTS)?;
    let mut coordinator = w.coordinator(ROLES, &["--grace", "3s"])?;
    let a = w.agent("a", &[])?;
    w.all_connected(&["a"], Duration::from_secs(20)).await?;
    let clean = coordinator.terminate(Duration::from_secs(8))?;
    assert!(
        clean,
        "coordinator did not exit cleanly within its grace period:\n{}",
        coordinator.log_text()
    );
    eventually(
        Duration::from_secs(5),
        "the agent to start reconnecting",
        || async { (a.log_count(&["reconnecting"]) > 0).then_some(()) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() -> anyhow::Result<()> {
    let w = World::new(&[], CLIENTS)?;
    let _c = w.coordinator(ROLES, &[])?;
    let channel = eventually(
        Duration::from_secs(10),
        "the coordinator to accept",
        || async {
            ferry_common::tls::connect(
                &w.url(),
                &TlsPaths::in_dir(&w.pki, "client-viewer"),
                None,
                Duration::from_secs(2),
            )
            .await
            .ok()
        },
    )
    .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ferry.v1.Fleet".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    Ok(())
}
