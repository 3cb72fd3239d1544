//! `ferry bench fleet` works end to end on a small fleet: every simulated
//! agent registers over its own mTLS session, registers again after the
//! coordinator is SIGKILLed and restarted, and a ping makes the round trip.
//! Functional only: the figures themselves are for docs/benchmarks.md.
use std::time::Duration;

use ferry_cli::cmd::bench_fleet::{FleetBench, measure};
use ferry_tests::bin;

#[tokio::test(flavor = "multi_thread")]
async fn twenty_agents_register_re_register_and_answer_pings() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let report = measure(&FleetBench {
        agents: 20,
        heartbeat: Duration::from_millis(500),
        window: Duration::from_secs(1),
        pings: 10,
        timeout: Duration::from_secs(120),
        coordinator_bin: Some(bin("ferry-coordinator")?),
        workdir: Some(work.path().to_path_buf()),
    })
    .await?;
    assert_eq!(report.registered, 20, "{report:?}");
    assert_eq!(report.connected_per_coordinator, 20, "{report:?}");
    assert_eq!(report.re_registered, 20, "{report:?}");
    assert_eq!(report.re_connected_per_coordinator, 20, "{report:?}");
    assert_eq!(report.pings_ok, 10, "{report:?}");
    assert!(report.ping_p50 > Duration::ZERO, "{report:?}");
    assert!(report.ping_p99 >= report.ping_p50, "{report:?}");
    assert!(report.rss_bytes > 0, "{report:?}");
    Ok(())
}
