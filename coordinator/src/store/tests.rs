//! The store's tests, each run on both backends: redb in a temporary
//! directory and PostgreSQL in a throwaway cluster (testkit's `TempPostgres`,
//! one database per test).
use std::sync::Arc;

use ferry_common::pb;
use ferry_testkit::pg::TempPostgres;

use super::*;

/// Where a test's store lives; `open` may be called again to reopen it.
enum Place {
    Redb(tempfile::TempDir),
    Postgres(Arc<TempPostgres>, String),
}

impl Place {
    fn both() -> anyhow::Result<Vec<Place>> {
        Ok(vec![Place::redb()?, Place::postgres()?])
    }

    fn redb() -> anyhow::Result<Place> {
        Ok(Place::Redb(tempfile::tempdir()?))
    }

    fn postgres() -> anyhow::Result<Place> {
        let pg = TempPostgres::shared()?;
        let db = pg.fresh_database("ferry_store")?;
        Ok(Place::Postgres(pg, db))
    }

    fn open(&self) -> anyhow::Result<Store> {
        Ok(match self {
            Place::Redb(dir) => Store::open(dir.path())?,
            Place::Postgres(pg, db) => Store::postgres(pg.url(db).parse()?)?,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Place::Redb(_) => "redb",
            Place::Postgres(..) => "postgres",
        }
    }

    fn psql(&self, sql: &str) -> anyhow::Result<String> {
        match self {
            Place::Postgres(pg, db) => pg.psql(db, sql),
            Place::Redb(_) => anyhow::bail!("no SQL on redb"),
        }
    }
}

fn command(id: &str, cluster: &str, at: u64) -> pb::CommandStatus {
    pb::CommandStatus {
        command_id: id.into(),
        cluster_id: cluster.into(),
        state: pb::CommandState::Pending as i32,
        submitted_at_unix_ms: at,
        ..Default::default()
    }
}

fn open_ids(store: &Store, cluster: &str) -> anyhow::Result<Vec<String>> {
    Ok(store
        .open_commands(cluster)?
        .into_iter()
        .map(|c| c.command_id)
        .collect())
}

#[test]
fn commands_survive_reopen_and_leave_the_open_set_when_finished() -> anyhow::Result<()> {
    for place in Place::both()? {
        let on = place.name();
        {
            let store = place.open()?;
            store.insert_command(&command("c2", "a", 2), Some("admin/r1"))?;
            store.insert_command(&command("c1", "a", 1), None)?;
            store.insert_command(&command("c3", "b", 3), None)?;
        }
        let store = place.open()?;
        assert_eq!(open_ids(&store, "a")?, ["c1", "c2"], "{on}");
        assert_eq!(
            store.command_for_request("admin/r1")?.map(|c| c.command_id),
            Some("c2".into()),
            "{on}"
        );
        assert_eq!(store.command_for_request("admin/r2")?, None, "{on}");
        let mut done = command("c1", "a", 1);
        done.state = pb::CommandState::Succeeded as i32;
        store.update_command(&done)?;
        assert_eq!(open_ids(&store, "a")?, ["c2"], "{on}");
        assert_eq!(
            store.command("c1")?.map(|c| c.state),
            Some(pb::CommandState::Succeeded as i32),
            "{on}"
        );
        assert_eq!(store.command("c9")?, None, "{on}");
    }
    Ok(())
}

/// A noted delivery, acceptance or agent session is read back at once, lands with the
/// next durable write, and a finished command noted is written durably and
/// leaves the open set.
#[test]
fn a_noted_command_is_read_back_and_made_durable_by_the_next_write() -> anyhow::Result<()> {
    for place in Place::both()? {
        let on = place.name();
        {
            let store = place.open()?;
            store.insert_command(&command("c1", "a", 1), None)?;
            let mut running = command("c1", "a", 1);
            running.deliveries = 2;
            running.state = pb::CommandState::Running as i32;
            store.note_command(&running)?;
            assert_eq!(store.command("c1")?.map(|c| c.deliveries), Some(2), "{on}");
            store.note_agent(&pb::AgentInfo {
                cluster_id: "a".into(),
                session_id: "s7".into(),
                ..Default::default()
            })?;
            store.insert_command(&command("c2", "a", 2), None)?;
        }
        let store = place.open()?;
        assert_eq!(
            store.command("c1")?.map(|c| (c.deliveries, c.state)),
            Some((2, pb::CommandState::Running as i32)),
            "{on}: the later durable write carried it"
        );
        assert_eq!(
            store
                .agents()?
                .into_iter()
                .map(|a| a.session_id)
                .collect::<Vec<_>>(),
            ["s7"],
            "{on}"
        );
        let mut done = command("c2", "a", 2);
        done.state = pb::CommandState::Failed as i32;
        store.note_command(&done)?;
        drop(store);
        let store = place.open()?;
        assert_eq!(open_ids(&store, "a")?, ["c1"], "{on}");
    }
    Ok(())
}

#[test]
fn migration_events_and_audit_append_in_order_and_survive_reopen() -> anyhow::Result<()> {
    for place in Place::both()? {
        let on = place.name();
        {
            let store = place.open()?;
            let mut m = pb::Migration {
                migration_id: "m1".into(),
                ..Default::default()
            };
            for message in ["created", "quiesce started", "quiesce finished"] {
                let e = pb::MigrationEvent {
                    message: message.into(),
                    ..Default::default()
                };
                store.put_migration(&mut m, Some(e))?;
            }
            // A record written without an event takes no sequence number.
            store.put_migration(&mut m, None)?;
            // Another migration's log is its own.
            let mut other = pb::Migration {
                migration_id: "m10".into(),
                ..Default::default()
            };
            store.put_migration(&mut other, Some(pb::MigrationEvent::default()))?;
            for action in ["start", "step-started"] {
                store.audit(pb::AuditEntry {
                    action: action.into(),
                    migration_id: "m1".into(),
                    ..Default::default()
                })?;
            }
            let listed = store.audit(pb::AuditEntry {
                action: "list".into(),
                ..Default::default()
            })?;
            assert_eq!(listed.seq, 3, "{on}");
        }
        let store = place.open()?;
        assert_eq!(store.migration("m1")?.map(|m| m.last_seq), Some(3), "{on}");
        let after_one: Vec<(u64, String)> = store
            .migration_events("m1", 1)?
            .into_iter()
            .map(|e| (e.seq, e.message))
            .collect();
        assert_eq!(
            after_one,
            [
                (2, "quiesce started".to_string()),
                (3, "quiesce finished".to_string())
            ],
            "{on}"
        );
        assert_eq!(store.migration_events("m10", 0)?.len(), 1, "{on}");
        let ids: Vec<String> = store
            .migrations()?
            .into_iter()
            .map(|m| m.migration_id)
            .collect();
        assert_eq!(ids, ["m1", "m10"], "{on}");
        let audit = store.audit_log(Some("m1"))?;
        assert_eq!(
            audit
                .iter()
                .map(|e| (e.seq, e.action.as_str()))
                .collect::<Vec<_>>(),
            [(1, "start"), (2, "step-started")],
            "{on}"
        );
        assert!(audit.iter().all(|e| e.at_unix_ms > 0), "{on}");
        assert_eq!(store.audit_log(None)?.len(), 3, "{on}");
    }
    Ok(())
}

#[test]
fn agents_transfers_loads_and_inventories_round_trip() -> anyhow::Result<()> {
    for place in Place::both()? {
        let on = place.name();
        let store = place.open()?;
        for id in ["b", "a"] {
            store.put_agent(&pb::AgentInfo {
                cluster_id: id.into(),
                ..Default::default()
            })?;
        }
        // A put replaces.
        store.put_agent(&pb::AgentInfo {
            cluster_id: "a".into(),
            agent_version: "2".into(),
            ..Default::default()
        })?;
        let agents: Vec<(String, String)> = store
            .agents()?
            .into_iter()
            .map(|a| (a.cluster_id, a.agent_version))
            .collect();
        assert_eq!(
            agents,
            [("a".into(), "2".into()), ("b".into(), String::new())],
            "{on}"
        );
        assert!(store.delete_agent("b")?, "{on}");
        assert!(!store.delete_agent("b")?, "{on}");
        assert_eq!(store.agents()?.len(), 1, "{on}");

        store.put_transfer(&pb::TransferStatus {
            transfer_id: "t1".into(),
            ..Default::default()
        })?;
        assert!(store.transfer("t1")?.is_some(), "{on}");
        assert!(store.transfer("t2")?.is_none(), "{on}");
        assert_eq!(store.transfers()?.len(), 1, "{on}");

        store.put_load(&pb::LoadStatus {
            load_id: "l1".into(),
            ..Default::default()
        })?;
        assert!(store.load("l1")?.is_some(), "{on}");
        assert_eq!(store.loads()?.len(), 1, "{on}");

        let inventory = pb::Inventory {
            workloads: 3,
            apps_domain_seen: "b.example.com".into(),
            ..Default::default()
        };
        store.put_inventory("m1", &inventory)?;
        assert_eq!(store.inventory("m1")?, Some(inventory), "{on}");
        assert_eq!(store.inventory("m2")?, None, "{on}");
    }
    Ok(())
}

/// The embedded store has no leadership; asking to fence it is a mistake.
#[test]
fn only_postgres_has_a_lease_to_fence() -> anyhow::Result<()> {
    let redb = Place::redb()?.open()?;
    assert!(redb.fence(1).is_err());
    assert!(redb.deposed().is_none());
    Ok(())
}

/// A fenced store writes while the lease is at its generation; once another
/// replica takes the lease over, every write is refused, rolled back, and
/// the store says it was deposed. Reads still answer.
#[test]
fn a_fenced_store_cannot_write_after_a_takeover() -> anyhow::Result<()> {
    let place = Place::postgres()?;
    let store = place.open()?;
    place.psql(
        "INSERT INTO ferry_leader (id, generation, holder, acquired_at, expires_at) \
         VALUES (1, 7, 'me', now(), now() + interval '1 hour')",
    )?;
    store.fence(7)?;
    let agent = |id: &str| pb::AgentInfo {
        cluster_id: id.into(),
        ..Default::default()
    };
    store.put_agent(&agent("before"))?;
    assert_eq!(
        place
            .psql("SELECT written_by FROM ferry_agents WHERE id = 'before'")?
            .trim(),
        "7"
    );
    let deposed = store.deposed().ok_or_else(|| anyhow::anyhow!("no token"))?;
    assert!(!deposed.is_cancelled());

    place.psql("UPDATE ferry_leader SET generation = 8, holder = 'other'")?;
    let refused = store.put_agent(&agent("after"));
    assert!(
        matches!(
            refused,
            Err(Error::Deposed {
                generation: 7,
                current: Some(8)
            })
        ),
        "{refused:?}"
    );
    assert!(deposed.is_cancelled());
    let mut m = pb::Migration {
        migration_id: "m1".into(),
        ..Default::default()
    };
    assert!(
        store
            .put_migration(&mut m, Some(pb::MigrationEvent::default()))
            .is_err()
    );
    assert!(store.audit(pb::AuditEntry::default()).is_err());
    let ids: Vec<String> = store.agents()?.into_iter().map(|a| a.cluster_id).collect();
    assert_eq!(ids, ["before"]);
    assert_eq!(
        place.psql(
            "SELECT (SELECT count(*) FROM ferry_migrations) + (SELECT count(*) FROM ferry_audit) \
             + (SELECT count(*) FROM ferry_migration_events)"
        )?
        .trim(),
        "0"
    );
    Ok(())
}

/// The schema is versioned: a reopen applies nothing again, and a database
/// a newer coordinator migrated is refused by name.
#[test]
fn a_newer_schema_is_refused_and_an_equal_one_is_reused() -> anyhow::Result<()> {
    let place = Place::postgres()?;
    drop(place.open()?);
    drop(place.open()?);
    let known = schema::MIGRATIONS.len().to_string();
    assert_eq!(
        place
            .psql("SELECT string_agg(version::text, ',') FROM ferry_schema_version")?
            .trim(),
        known
    );
    place.psql("UPDATE ferry_schema_version SET version = 99")?;
    let err = match place.open() {
        Ok(_) => anyhow::bail!("a newer schema was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("schema version 99"), "{err}");
    assert!(err.contains(&format!("knows ({known})")), "{err}");
    Ok(())
}

/// A password given in the URL never shows in an error.
#[test]
fn a_failed_connection_names_the_database_but_not_the_password() -> anyhow::Result<()> {
    let port = ferry_testkit::free_port()?;
    let url = format!("postgres://ferry:s3cret-pw@127.0.0.1:{port}/ferry");
    let err = match Store::postgres(url.parse()?) {
        Ok(_) => anyhow::bail!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert!(
        err.contains(&format!("postgres://ferry@127.0.0.1:{port}/ferry")),
        "{err}"
    );
    Ok(())
}
