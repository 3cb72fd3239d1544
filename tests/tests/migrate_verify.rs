//! Verification catches what differs in the data itself: a file changed in
//! a volume on the target names the volume claim; a row deleted from a
//! registry table on the target (real PostgreSQL, run by the sandbox's PGO
//! stand-in) names the table. Put right, `retry` verifies.
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb;
use ferry_sandbox::cluster::SandboxCluster;
use ferry_sandbox::k8s::Gvr;
use ferry_tests::World;
use ferry_tests::migrate_world::{
    REGISTRY, Site, both_agents, cluster, ended, migrations, request, wait_until,
};

const TIMEOUT: Duration = Duration::from_secs(180);

/// `(host, port)` of a PostgresCluster's database as its PGO Secret on
/// `c` says — what the agent reads too.
async fn database_address(c: &SandboxCluster, pg: &str) -> anyhow::Result<(String, String)> {
    let secret = c
        .store()
        .get(
            &Gvr::core("secrets"),
            Some(REGISTRY),
            &format!("{pg}-pguser-postgres"),
        )
        .await?;
    let key = |k: &str| -> anyhow::Result<String> {
        let b64 = secret["data"][k]
            .as_str()
            .with_context(|| format!("no {k} in {secret}"))?;
        Ok(String::from_utf8(base64_decode(b64))?)
    };
    Ok((key("host")?, key("port")?))
}

/// Runs SQL on database `registry` of `pg` on `c` through `psql`.
async fn sql(c: &SandboxCluster, pg: &str, sql: &str) -> anyhow::Result<String> {
    let (host, port) = database_address(c, pg).await?;
    let psql = ferry_testkit::pg::find_bindir()?.join("psql");
    let out = Command::new(psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host={host} port={port} user=postgres dbname=registry"
        ))
        .arg("-c")
        .arg(sql)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn failed_lines(m: &pb::Migration) -> Vec<String> {
    m.report
        .iter()
        .flat_map(|r| r.lines.iter())
        .filter(|l| !l.ok)
        .map(|l| l.what.clone())
        .collect()
}

fn run(w: &World, args: &[&str], want: i32) -> anyhow::Result<String> {
    let out = w.ferry("admin", args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        out.status.code() == Some(want),
        "{args:?}: exit {:?} (wanted {want})\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_volume_file_and_a_deleted_row_fail_verify_by_name() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    anyhow::ensure!(
        ferry_sandbox::fixture::databases_available(),
        "PostgreSQL is not installed: the sandbox runs the registry's databases with it \
         (apt-get install postgresql)"
    );
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    // Restores take a moment, so the change lands before verify.
    b.velero_faults().set_item_delay(Duration::from_millis(20));
    let _c = w.coordinator(&["admin=operator"], &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("mv", "a", "b"))
        .await?;

    // Vault's volume is restored by now; a file of it changes on B.
    wait_until(&w, "mv", TIMEOUT, "restore-gerrit done", |m| {
        m.steps
            .iter()
            .any(|s| s.name == "restore-gerrit" && s.state == pb::StepState::Succeeded as i32)
    })
    .await?;
    let original = b
        .volumes()
        .read_file(REGISTRY, "vault-data", "README")
        .await?;
    b.volumes()
        .write_file(REGISTRY, "vault-data", "README", b"changed on B\n")
        .await?;
    let m = wait_until(&w, "mv", TIMEOUT, "the end", ended).await?;
    assert_eq!(m.state, pb::MigrationState::Failed as i32, "{m:#?}");
    assert_eq!(failed_lines(&m), ["volume vault-data"], "{m:#?}");
    assert!(m.error.contains("volume vault-data"), "{}", m.error);

    // B reads its own database server, loaded from the restored volume.
    let (a_addr, b_addr) = (
        database_address(&a, "operational").await?,
        database_address(&b, "operational").await?,
    );
    assert_ne!(a_addr, b_addr, "B's Secret must name B's server");
    let settings = "registry.subject_settings";
    assert_eq!(
        sql(
            &b,
            "operational",
            &format!("SELECT count(*) FROM {settings}")
        )
        .await?,
        "150"
    );

    // The file put back, a row deleted on B: verify names the table only.
    b.volumes()
        .write_file(REGISTRY, "vault-data", "README", &original)
        .await?;
    let row = sql(
        &b,
        "operational",
        &format!("SELECT row_to_json(s) FROM {settings} s WHERE settings_id = 7"),
    )
    .await?;
    sql(
        &b,
        "operational",
        &format!("DELETE FROM {settings} WHERE settings_id = 7"),
    )
    .await?;
    let shown = run(&w, &["migrate", "retry", "mv"], 1)?;
    let m = wait_until(&w, "mv", TIMEOUT, "the end", ended).await?;
    let table = format!("table operational/registry.{settings}");
    assert_eq!(failed_lines(&m), [table.as_str()], "{m:#?}");
    assert!(
        shown.contains(&table) && shown.contains("DIFFERS"),
        "{shown}"
    );
    let line = m
        .report
        .iter()
        .flat_map(|r| r.lines.iter())
        .find(|l| l.what == table)
        .context("the table's line")?;
    assert!(
        line.expected.starts_with("150 rows") && line.actual.starts_with("149 rows"),
        "{line:?}"
    );

    // The row back as it was: verified.
    sql(
        &b,
        "operational",
        &format!(
            "INSERT INTO {settings} SELECT * FROM json_populate_record(null::{settings}, '{}')",
            row.replace('\'', "''")
        ),
    )
    .await?;
    run(&w, &["migrate", "retry", "mv"], 0)?;
    let m = wait_until(&w, "mv", TIMEOUT, "the end", ended).await?;
    assert_eq!(m.state, pb::MigrationState::Succeeded as i32, "{m:#?}");
    assert!(m.report.as_ref().is_some_and(|r| r.verified), "{m:#?}");
    Ok(())
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (vec![], 0u32, 0);
    for v in s
        .bytes()
        .filter_map(|c| ALPHABET.iter().position(|&a| a == c))
    {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
