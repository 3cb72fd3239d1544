//! The relay end to end: two sandbox S3 endpoints, their agents, and the
//! coordinator between them over mTLS.
use std::time::Duration;

use ferry_common::pb;
use ferry_tests::proxy::CutProxy;
use ferry_tests::relay_world::{
    Clusters, SOURCE_BUCKET, TARGET_BUCKET, content, coordinator, digests, request, transfers,
    wait_transfer,
};
use ferry_tests::{World, eventually};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

async fn seed(c: &Clusters, sizes: &[usize]) -> anyhow::Result<u64> {
    let mut total = 0;
    for (i, &size) in sizes.iter().enumerate() {
        c.a.put_object(SOURCE_BUCKET, &format!("data/obj-{i:04}"), content(i, size))
            .await?;
        total += size as u64;
    }
    Ok(total)
}

fn counts(s: &pb::TransferStatus) -> pb::TransferCounts {
    s.counts.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moves_everything_verified_and_a_rerun_moves_nothing() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let coord = coordinator(&w.pki, w.path("coordinator")).await?;
    let c = Clusters::start(w.dir.path(), &w.pki, &coord.url()).await?;
    // Zero bytes, tiny, exactly one chunk, several chunks with a short tail, and many small ones.
    let mut sizes = vec![0, 10, 5 * MIB, 11 * MIB + 17];
    sizes.extend(std::iter::repeat_n(4 * KIB, 200));
    let total = seed(&c, &sizes).await?;
    // Outside the prefix: must not move.
    c.a.put_object(SOURCE_BUCKET, "elsewhere/x", content(9, 100))
        .await?;

    let mut client = transfers(&coord.url(), &w.pki).await?;
    client
        .start_transfer(request("first", 5 * MIB as u64, 4))
        .await?;
    let done = wait_transfer(&coord.url(), &w.pki, "first", Duration::from_secs(60)).await?;
    assert_eq!(
        done.state,
        pb::TransferState::Succeeded as i32,
        "{}",
        done.error
    );
    assert_eq!(counts(&done).objects_moved, sizes.len() as u64);
    assert_eq!(counts(&done).bytes_moved, total);
    assert_eq!(
        digests(&c.a, SOURCE_BUCKET, "data/").await?,
        digests(&c.b, TARGET_BUCKET, "data/").await?
    );
    assert!(
        c.b.list_objects(TARGET_BUCKET, "elsewhere/")
            .await?
            .is_empty()
    );

    // Same data again: nothing moves.
    client
        .start_transfer(request("again", 5 * MIB as u64, 4))
        .await?;
    let again = wait_transfer(&coord.url(), &w.pki, "again", Duration::from_secs(60)).await?;
    assert_eq!(
        again.state,
        pb::TransferState::Succeeded as i32,
        "{}",
        again.error
    );
    assert_eq!(counts(&again).objects_moved, 0);
    assert_eq!(counts(&again).objects_skipped, sizes.len() as u64);
    assert!(
        again.bytes_relayed * 100 <= total,
        "re-run relayed {} of {total} bytes",
        again.bytes_relayed
    );

    // One object changes at the source: only it moves.
    c.a.put_object(SOURCE_BUCKET, "data/obj-0003", content(77, 11 * MIB + 17))
        .await?;
    client
        .start_transfer(request("delta", 5 * MIB as u64, 4))
        .await?;
    let delta = wait_transfer(&coord.url(), &w.pki, "delta", Duration::from_secs(60)).await?;
    assert_eq!(counts(&delta).objects_moved, 1, "{delta:?}");
    assert_eq!(
        digests(&c.a, SOURCE_BUCKET, "data/").await?,
        digests(&c.b, TARGET_BUCKET, "data/").await?
    );

    // Starting a transfer with an id already used returns it, starts nothing.
    let same = client
        .start_transfer(request("first", 0, 0))
        .await?
        .into_inner();
    assert_eq!(same.state, pb::TransferState::Succeeded as i32);
    c.stop().await;
    coord.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_link_resumes_from_the_last_verified_chunk() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let coord = coordinator(&w.pki, w.path("coordinator")).await?;
    let proxy = CutProxy::start(coord.addr).await?;
    let c = Clusters::start(w.dir.path(), &w.pki, &proxy.url()).await?;
    let sizes = vec![20 * MIB, 20 * MIB, 20 * MIB, 20 * MIB + 5];
    let total = seed(&c, &sizes).await?;
    let (chunk, parallelism) = (5 * MIB as u64, 4u32);

    let mut client = transfers(&coord.url(), &w.pki).await?;
    client
        .start_transfer(request("cut", chunk, parallelism))
        .await?;
    let cuts = 3u64;
    for n in 1..=cuts {
        // Cut when the transfer is about n/(cuts+1) of the way.
        let threshold = total * n / (cuts + 1);
        eventually(Duration::from_secs(60), "transfer progress", || async {
            let s = transfers(&coord.url(), &w.pki)
                .await
                .ok()?
                .get_transfer(pb::GetTransferRequest {
                    transfer_id: "cut".into(),
                })
                .await
                .ok()?
                .into_inner();
            (s.bytes_relayed >= threshold || s.state != pb::TransferState::Running as i32)
                .then_some(())
        })
        .await?;
        proxy.cut();
    }
    let done = wait_transfer(&coord.url(), &w.pki, "cut", Duration::from_secs(120)).await?;
    assert_eq!(
        done.state,
        pb::TransferState::Succeeded as i32,
        "{}",
        done.error
    );
    assert_eq!(
        digests(&c.a, SOURCE_BUCKET, "data/").await?,
        digests(&c.b, TARGET_BUCKET, "data/").await?
    );
    let resent = done.bytes_relayed.saturating_sub(total);
    eprintln!(
        "relayed {} bytes for {total}: {resent} sent again over {cuts} cuts",
        done.bytes_relayed
    );
    assert!(
        resent <= cuts * u64::from(parallelism) * chunk,
        "{resent} bytes sent again; at most {} allowed (one chunk per object in flight per cut)",
        cuts * u64::from(parallelism) * chunk
    );
    c.stop().await;
    coord.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_chunk_is_detected_and_sent_again() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let coord = coordinator(&w.pki, w.path("coordinator")).await?;
    let c = Clusters::start(w.dir.path(), &w.pki, &coord.url()).await?;
    seed(&c, &[11 * MIB + 1, 300 * KIB, 5 * KIB]).await?;
    coord
        .relay
        .faults
        .corrupt_chunks
        .store(3, std::sync::atomic::Ordering::Relaxed);
    let mut client = transfers(&coord.url(), &w.pki).await?;
    client
        .start_transfer(request("corrupt", 5 * MIB as u64, 2))
        .await?;
    let done = wait_transfer(&coord.url(), &w.pki, "corrupt", Duration::from_secs(60)).await?;
    assert_eq!(
        done.state,
        pb::TransferState::Succeeded as i32,
        "{}",
        done.error
    );
    assert_eq!(counts(&done).chunks_rejected, 3);
    assert_eq!(
        digests(&c.a, SOURCE_BUCKET, "data/").await?,
        digests(&c.b, TARGET_BUCKET, "data/").await?
    );
    c.stop().await;
    coord.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefix_outside_what_the_agent_allows_is_refused_and_nothing_written()
-> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let coord = coordinator(&w.pki, w.path("coordinator")).await?;
    let c = Clusters::start(w.dir.path(), &w.pki, &coord.url()).await?;
    seed(&c, &[100]).await?;
    let mut client = transfers(&coord.url(), &w.pki).await?;
    for (id, prefix, expect) in [
        ("escape", "data/../../etc", "refused"),
        ("other", "secrets", "not allowed"),
    ] {
        let mut r = request(id, 0, 0);
        if let Some(t) = r.target.as_mut() {
            t.prefix = prefix.into();
        }
        client.start_transfer(r).await?;
        let done = wait_transfer(&coord.url(), &w.pki, id, Duration::from_secs(30)).await?;
        assert_eq!(done.state, pb::TransferState::Failed as i32);
        assert!(done.error.contains(expect), "{id}: {}", done.error);
    }
    assert!(
        c.b.list_objects(TARGET_BUCKET, "").await?.is_empty(),
        "something was written"
    );
    c.stop().await;
    coord.shutdown().await;
    Ok(())
}

/// An object key the target refuses (here one with a backslash, which
/// S3 stores but an agent never writes) fails the transfer, with the
/// reason — it does not end `succeeded` having moved nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_key_fails_the_transfer_with_its_reason() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let coord = coordinator(&w.pki, w.path("coordinator")).await?;
    let c = Clusters::start(w.dir.path(), &w.pki, &coord.url()).await?;
    seed(&c, &[100]).await?;
    c.a.put_object(SOURCE_BUCKET, "data/back\\slash", content(9, 10))
        .await?;
    let mut client = transfers(&coord.url(), &w.pki).await?;
    client.start_transfer(request("refused", 0, 0)).await?;
    let done = wait_transfer(&coord.url(), &w.pki, "refused", Duration::from_secs(60)).await?;
    assert_eq!(done.state, pb::TransferState::Failed as i32, "{done:?}");
    // The target's own command failed with the reason, not only the source.
    assert!(
        done.error.contains("target: ") && done.error.contains("backslash"),
        "{}",
        done.error
    );
    c.stop().await;
    coord.shutdown().await;
    Ok(())
}

/// The coordinator process is SIGKILLed mid-transfer and restarted: the
/// transfer completes, and what was verified before the kill is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_coordinator_killed_mid_transfer_resumes_it() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let mut proc = w.coordinator(&["admin=admin"], &[])?;
    let c = Clusters::start(w.dir.path(), &w.pki, &w.url()).await?;
    let sizes = vec![20 * MIB; 6];
    let total = seed(&c, &sizes).await?;
    let (chunk, parallelism) = (5 * MIB as u64, 3u32);
    let mut client = eventually(Duration::from_secs(10), "the coordinator", || async {
        transfers(&w.url(), &w.pki).await.ok()
    })
    .await?;
    client
        .start_transfer(request("killed", chunk, parallelism))
        .await?;
    eventually(
        Duration::from_secs(60),
        "a third of the transfer",
        || async {
            let s = transfers(&w.url(), &w.pki)
                .await
                .ok()?
                .get_transfer(pb::GetTransferRequest {
                    transfer_id: "killed".into(),
                })
                .await
                .ok()?
                .into_inner();
            (s.bytes_relayed >= total / 3).then_some(())
        },
    )
    .await?;
    proc.kill9()?;
    let _proc = w.coordinator(&["admin=admin"], &[])?;
    let done = wait_transfer(&w.url(), &w.pki, "killed", Duration::from_secs(120)).await?;
    assert_eq!(
        done.state,
        pb::TransferState::Succeeded as i32,
        "{}",
        done.error
    );
    assert_eq!(
        digests(&c.a, SOURCE_BUCKET, "data/").await?,
        digests(&c.b, TARGET_BUCKET, "data/").await?
    );
    // After the restart the relay counted only what was still missing.
    let after = done.bytes_relayed;
    eprintln!("relayed {after} bytes after the restart, of {total}");
    assert!(
        after < total,
        "the whole set was sent again after the restart"
    );
    c.stop().await;
    Ok(())
}

/// The target's agent is SIGKILLed mid-transfer and started again: the
/// re-delivered command resumes from what that agent had verified on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_killed_mid_transfer_resumes_from_its_disk_state() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let coord = coordinator(&w.pki, w.path("coordinator")).await?;
    let url = coord.url();
    let a = ferry_sandbox::s3::S3Server::start(w.path("s3-a"), "ka", "sa").await?;
    let b = ferry_sandbox::s3::S3Server::start(w.path("s3-b"), "kb", "sb").await?;
    a.create_bucket(SOURCE_BUCKET).await?;
    b.create_bucket(TARGET_BUCKET).await?;
    let mut total = 0u64;
    for i in 0..4 {
        a.put_object(
            SOURCE_BUCKET,
            &format!("data/obj-{i}"),
            content(i, 20 * MIB),
        )
        .await?;
        total += 20 * MIB as u64;
    }
    let agent = |cluster: &str,
                 s3: &ferry_sandbox::s3::S3Server,
                 bucket: &str|
     -> anyhow::Result<ferry_tests::Proc> {
        let stores = w.path(&format!("stores-{cluster}.json"));
        std::fs::write(
            &stores,
            ferry_tests::relay_world::stores_json(s3, bucket, &["data"]).to_string(),
        )?;
        let args = vec![
            "--cluster-id".to_string(),
            cluster.into(),
            "--coordinator".into(),
            url.clone(),
            "--pki-dir".into(),
            w.pki.display().to_string(),
            "--stores".into(),
            stores.display().to_string(),
            "--state-dir".into(),
            w.path(&format!("state-{cluster}")).display().to_string(),
            "--backoff-cap".into(),
            "500ms".into(),
            "--log-format".into(),
            "json".into(),
        ];
        ferry_tests::Proc::spawn(
            &format!("agent-{cluster}"),
            &ferry_tests::bin("ferry-agent")?,
            &args,
            w.path(&format!("agent-{cluster}.log")),
        )
    };
    let _a = agent("a", &a, SOURCE_BUCKET)?;
    let mut sink = agent("b", &b, TARGET_BUCKET)?;
    let mut client = eventually(Duration::from_secs(10), "the coordinator", || async {
        transfers(&url, &w.pki).await.ok()
    })
    .await?;
    eventually(Duration::from_secs(20), "both agents", || async {
        (coord
            .fleet
            .agents()
            .ok()?
            .iter()
            .filter(|x| x.state == pb::AgentState::Connected as i32)
            .count()
            == 2)
            .then_some(())
    })
    .await?;
    client
        .start_transfer(request("agent-killed", 5 * MIB as u64, 2))
        .await?;
    let chunk = 5 * MIB as u64;
    // Kill the sink once it has made at least two chunks durable.
    let durable = eventually(
        Duration::from_secs(60),
        "the sink to persist two chunks",
        || async {
            let d = durable_bytes(&w.path("state-b"), chunk);
            (d >= 2 * chunk).then_some(d)
        },
    )
    .await?;
    sink.kill9()?;
    let _sink = agent("b", &b, TARGET_BUCKET)?;
    let done = wait_transfer(&url, &w.pki, "agent-killed", Duration::from_secs(120)).await?;
    assert_eq!(
        done.state,
        pb::TransferState::Succeeded as i32,
        "{}",
        done.error
    );
    assert_eq!(
        digests(&a, SOURCE_BUCKET, "data/").await?,
        digests(&b, TARGET_BUCKET, "data/").await?
    );
    // The restarted sink asked only for what it had not made durable.
    let log = std::fs::read_to_string(w.path("agent-b.log"))?;
    let needs: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("manifest compared"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["need_bytes"].as_u64())
        .collect();
    eprintln!("durable at the kill: {durable} of {total}; bytes needed per comparison: {needs:?}");
    assert!(
        needs.len() >= 2,
        "the restarted sink never compared: {needs:?}"
    );
    let last = needs.last().copied().unwrap_or(u64::MAX);
    assert!(
        last <= total - durable,
        "after the restart the sink asked for {last} bytes though {durable} of {total} were durable"
    );
    coord.shutdown().await;
    Ok(())
}

/// Bytes the sink has made durable: committed objects and recorded parts.
fn durable_bytes(state: &std::path::Path, chunk: u64) -> u64 {
    let mut total = 0;
    let Ok(targets) = std::fs::read_dir(state.join("relay")) else {
        return 0;
    };
    for t in targets.flatten() {
        let dir = t.path();
        if let Ok(log) = std::fs::read_to_string(dir.join("committed.jsonl")) {
            total += log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["size"].as_u64())
                .sum::<u64>();
        }
        if let Ok(partials) = std::fs::read_dir(dir.join("partial")) {
            for p in partials.flatten() {
                if let Some(v) = std::fs::read_to_string(p.path())
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                {
                    total += v["parts"].as_array().map_or(0, |a| a.len() as u64) * chunk;
                }
            }
        }
    }
    total
}
