//! What an outside probe of the release binaries found (issue 12), played
//! against a real coordinator with raw gRPC clients: each service accepts
//! messages only as large as it needs (relay: one frame and its header;
//! control calls far less), errors repeat only the start of a peer's input,
//! one agent holds a bounded number of relay streams, undecodable requests
//! are INVALID_ARGUMENT, a source reconnecting after its sink finished is
//! told so, and a transfer whose agents are gone ends failed.
use std::time::Duration;

use ferry_common::limits;
use ferry_common::pb::{self, fleet_client::FleetClient, relay_client::RelayClient, source_up};
use ferry_common::tls::{self, TlsPaths};
use ferry_tests::World;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

async fn channel(w: &World, party: &str) -> anyhow::Result<Channel> {
    let paths = TlsPaths::in_dir(&w.pki, party);
    let mut last = None;
    for _ in 0..100 {
        match tls::connect(&w.url(), &paths, None, Duration::from_secs(5)).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("coordinator not reachable: {last:?}"))
}

fn hello(job_id: String) -> pb::SourceUp {
    pb::SourceUp {
        msg: Some(source_up::Msg::Hello(pb::RelayHello { job_id })),
    }
}

/// A relay call whose stream says `first` (if anything) and stays open.
async fn open_source(
    relay: &mut RelayClient<Channel>,
    first: Option<pb::SourceUp>,
) -> (Result<(), tonic::Status>, mpsc::Sender<pb::SourceUp>) {
    let (tx, rx) = mpsc::channel(1);
    if let Some(m) = first {
        let _ = tx.send(m).await;
    }
    let res = relay.source(ReceiverStream::new(rx)).await.map(|_| ());
    (res, tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_capped_echoes_cut_and_relay_streams_bounded() -> anyhow::Result<()> {
    let w = World::new(&["a"], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    let agent = channel(&w, "agent-a").await?;
    let mut relay = RelayClient::new(agent.clone()).max_encoding_message_size(64 << 20);

    // A relay hello of 2 MiB is more than a frame and its header: refused unread.
    let (res, _tx) = open_source(&mut relay, Some(hello("j".repeat(2 << 20)))).await;
    let status = res.expect_err("a 2 MiB hello must be refused");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert!(status.message().len() < 1024, "{}", status.message().len());

    // An id that fits is echoed cut, not in full.
    let (res, _tx) = open_source(&mut relay, Some(hello("k".repeat(100_000)))).await;
    let status = res.expect_err("no such transfer");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        status.message().len() < 512 && status.message().contains("100000 bytes"),
        "{} bytes: {}",
        status.message().len(),
        &status.message()[..status.message().len().min(300)]
    );

    // Control calls take far less than a relay frame.
    let client = channel(&w, "client-admin").await?;
    let mut fleet = FleetClient::new(client).max_encoding_message_size(64 << 20);
    let status = fleet
        .get_agent(pb::GetAgentRequest {
            cluster_id: "c".repeat(limits::CONTROL_MESSAGE + 1),
        })
        .await
        .expect_err("an oversized control request must be refused");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );

    // One agent holds at most so many relay streams: the next is refused at
    // once, not left to pile up (these never even say hello).
    let mut open = Vec::new();
    for _ in 0..ferry_coordinator::relay::MAX_STREAMS_PER_AGENT {
        let mut r = RelayClient::new(agent.clone());
        let (tx, rx) = mpsc::channel::<pb::SourceUp>(1);
        open.push(tx);
        tokio::spawn(async move { r.source(ReceiverStream::new(rx)).await.map(|_| ()) });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (res, _tx) = tokio::time::timeout(Duration::from_secs(5), open_source(&mut relay, None))
        .await
        .map_err(|_| anyhow::anyhow!("the stream above the bound was not refused"))?;
    let status = res.expect_err("above the bound");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("cluster a"), "{status:?}");
    drop(open);
    Ok(())
}

/// Bytes that do not decode as the request are the caller's mistake:
/// INVALID_ARGUMENT (docs/errors.md), not INTERNAL.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_request_bytes_are_invalid_argument() -> anyhow::Result<()> {
    let w = World::new(&[], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    let mut grpc = tonic::client::Grpc::new(channel(&w, "client-admin").await?);
    grpc.ready().await?;
    // Field 1 as a varint where GetAgentRequest has a string: not decodable.
    let garbage = pb::LoadChunk {
        file: 7,
        ..Default::default()
    };
    let codec = tonic_prost::ProstCodec::<pb::LoadChunk, pb::AgentInfo>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/ferry.v1.Fleet/GetAgent");
    let status = grpc
        .unary(tonic::Request::new(garbage), path, codec)
        .await
        .expect_err("garbage must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("GetAgentRequest"), "{status:?}");
    Ok(())
}

/// A `finished` the hub sent into a source connection that had died is not
/// lost with it: a source that connects after the sink has everything is
/// told at once (before, the transfer stayed `running` forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_source_reconnecting_after_the_sink_finished_is_told_so() -> anyhow::Result<()> {
    use ferry_common::pb::{
        agent_link_client::AgentLinkClient, agent_message, sink_up, source_down,
        transfers_client::TransfersClient,
    };
    let w = World::new(&["a", "b"], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    // Both agents known to the coordinator (registered once, then gone), so
    // a transfer between them can be started; no agent runs its commands.
    for cluster in ["a", "b"] {
        let mut link = AgentLinkClient::new(channel(&w, &format!("agent-{cluster}")).await?);
        let (tx, rx) = mpsc::channel(1);
        tx.send(pb::AgentMessage {
            msg: Some(agent_message::Msg::Register(pb::Register {
                cluster_id: cluster.into(),
                ..Default::default()
            })),
        })
        .await?;
        let mut down = link.session(ReceiverStream::new(rx)).await?.into_inner();
        down.message().await?;
    }
    let mut transfers = TransfersClient::new(channel(&w, "client-admin").await?);
    let set = |c: &str| pb::ObjectSet {
        cluster_id: c.into(),
        store: "obc".into(),
        prefix: String::new(),
    };
    transfers
        .start_transfer(pb::StartTransferRequest {
            transfer_id: "t-1".into(),
            source: Some(set("a")),
            target: Some(set("b")),
            ..Default::default()
        })
        .await?;
    // The source is connected when the sink reports it has everything...
    let mut relay_a = RelayClient::new(channel(&w, "agent-a").await?);
    let (first_tx, first_rx) = mpsc::channel(4);
    first_tx.send(hello("t-1".into())).await?;
    let first = relay_a.source(ReceiverStream::new(first_rx)).await?;
    let mut relay_b = RelayClient::new(channel(&w, "agent-b").await?);
    let (sink_tx, sink_rx) = mpsc::channel(4);
    for msg in [
        sink_up::Msg::Hello(pb::RelayHello {
            job_id: "t-1".into(),
        }),
        sink_up::Msg::Done(pb::SinkDone::default()),
    ] {
        sink_tx.send(pb::SinkUp { msg: Some(msg) }).await?;
    }
    let _sink = relay_b.sink(ReceiverStream::new(sink_rx)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...but that connection dies before the source reads it, and the
    // source reconnects.
    drop(first);
    drop(first_tx);
    let (again_tx, again_rx) = mpsc::channel(4);
    again_tx.send(hello("t-1".into())).await?;
    let mut again = relay_a
        .source(ReceiverStream::new(again_rx))
        .await?
        .into_inner();
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = again.message().await? {
            if matches!(m.msg, Some(source_down::Msg::Finished(_))) {
                return Ok(true);
            }
        }
        Ok::<_, tonic::Status>(false)
    })
    .await;
    assert!(
        matches!(told, Ok(Ok(true))),
        "the reconnected source was never told the sink has everything: {told:?}"
    );
    Ok(())
}

/// A transfer whose agents are gone does not stay `running` forever: once
/// one has been away longer than `--lost-after` (3 s here), the transfer
/// reads `failed`, saying which agent and why.
#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_whose_agent_is_lost_fails_visibly() -> anyhow::Result<()> {
    use ferry_common::pb::{agent_link_client::AgentLinkClient, agent_message};
    let w = World::new(&["a", "b"], &["admin"])?;
    let _coordinator = w.coordinator(&["admin=admin"], &[])?;
    // Known to the coordinator, then gone.
    for cluster in ["a", "b"] {
        let mut link = AgentLinkClient::new(channel(&w, &format!("agent-{cluster}")).await?);
        let (tx, rx) = mpsc::channel(1);
        tx.send(pb::AgentMessage {
            msg: Some(agent_message::Msg::Register(pb::Register {
                cluster_id: cluster.into(),
                ..Default::default()
            })),
        })
        .await?;
        let mut down = link.session(ReceiverStream::new(rx)).await?.into_inner();
        down.message().await?;
    }
    // Bounded: before, this waited forever.
    let mut cli = std::process::Command::new(ferry_tests::bin("ferry")?)
        .arg("--coordinator")
        .arg(w.url())
        .arg("--pki-dir")
        .arg(&w.pki)
        .args([
            "--as", "admin", "transfer", "start", "--from", "a:obc", "--to", "b:obc",
        ])
        .args(["-o", "json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cli.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = cli.kill();
            anyhow::bail!("`ferry transfer start` still waits on agents that are gone");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = cli.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        got.to_string().contains("unreachable") || err.contains("unreachable"),
        "{got} {err}"
    );
    Ok(())
}
