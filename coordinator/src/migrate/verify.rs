//! Verification: the source's inventory (taken when it was quiesced and
//! backed up) against the target's after the restore.
use std::collections::BTreeSet;

use ferry_common::pb::{self, volume_inventory::Measure};

fn line(what: String, expected: String, actual: String, ok: bool) -> pb::VerifyLine {
    pb::VerifyLine {
        what,
        expected,
        actual,
        ok,
    }
}

fn volume_figures(v: Option<&pb::VolumeInventory>) -> String {
    match v.and_then(|v| v.measure.as_ref()) {
        Some(Measure::Contents(c)) => format!(
            "{} files, {} bytes, sha256 {}",
            c.files,
            c.bytes,
            c.digest.get(..16).unwrap_or(&c.digest)
        ),
        Some(Measure::Velero(v)) => format!(
            "Velero {}: {} of {} bytes",
            if v.phase.is_empty() { "?" } else { &v.phase },
            v.bytes_done,
            v.total_bytes
        ),
        Some(Measure::Database(c)) => format!("data of PostgresCluster {c}: see its tables"),
        None if v.is_some() => "not measured".into(),
        None => "absent".into(),
    }
}

/// Equal contents; or Velero's backup and restore both complete with the
/// same total; or the same database's volume on both sides.
fn volume_ok(e: Option<&pb::VolumeInventory>, a: Option<&pb::VolumeInventory>) -> bool {
    match (
        e.and_then(|v| v.measure.as_ref()),
        a.and_then(|v| v.measure.as_ref()),
    ) {
        (Some(Measure::Contents(e)), Some(Measure::Contents(a))) => e == a,
        (Some(Measure::Velero(e)), Some(Measure::Velero(a))) => {
            e.phase == "Completed"
                && a.phase == "Completed"
                && e.total_bytes == a.total_bytes
                && a.bytes_done == a.total_bytes
        }
        (Some(Measure::Database(e)), Some(Measure::Database(a))) => e == a,
        _ => false,
    }
}

fn table_figures(t: Option<&pb::TableInventory>) -> String {
    match t {
        Some(t) => format!(
            "{} rows, md5 {}",
            t.rows,
            t.checksum.get(..16).unwrap_or(&t.checksum)
        ),
        None => "absent".into(),
    }
}

fn volume_lines(source: &pb::Inventory, target: &pb::Inventory, lines: &mut Vec<pb::VerifyLine>) {
    let pvcs: BTreeSet<&String> = source
        .volumes
        .iter()
        .chain(target.volumes.iter())
        .map(|v| &v.pvc)
        .collect();
    for pvc in pvcs {
        let find = |inv: &'_ pb::Inventory| inv.volumes.iter().find(|v| &v.pvc == pvc).cloned();
        let (e, a) = (find(source), find(target));
        lines.push(line(
            format!("volume {pvc}"),
            volume_figures(e.as_ref()),
            volume_figures(a.as_ref()),
            volume_ok(e.as_ref(), a.as_ref()),
        ));
    }
}

fn database_lines(source: &pb::Inventory, target: &pb::Inventory, lines: &mut Vec<pb::VerifyLine>) {
    let clusters: BTreeSet<&String> = source
        .databases
        .iter()
        .chain(target.databases.iter())
        .map(|d| &d.cluster)
        .collect();
    for cluster in clusters {
        let find = |inv: &'_ pb::Inventory| {
            inv.databases
                .iter()
                .find(|d| &d.cluster == cluster)
                .cloned()
        };
        let (e, a) = match (find(source), find(target)) {
            (Some(e), Some(a)) => (e, a),
            (e, a) => {
                let figures = |d: Option<pb::DatabaseInventory>| {
                    d.map_or("absent".into(), |d| {
                        format!("{} tables in {}", d.tables.len(), d.schema)
                    })
                };
                lines.push(line(
                    format!("database {cluster}"),
                    figures(e),
                    figures(a),
                    false,
                ));
                continue;
            }
        };
        if e.schema != a.schema {
            lines.push(line(
                format!("database {cluster} schema"),
                e.schema.clone(),
                a.schema.clone(),
                false,
            ));
        }
        let tables: BTreeSet<&String> = e
            .tables
            .iter()
            .chain(a.tables.iter())
            .map(|t| &t.table)
            .collect();
        for table in tables {
            let (te, ta) = (
                e.tables.iter().find(|t| &t.table == table),
                a.tables.iter().find(|t| &t.table == table),
            );
            lines.push(line(
                format!("table {cluster}/{}.{}.{table}", e.database, e.schema),
                table_figures(te),
                table_figures(ta),
                matches!((te, ta), (Some(x), Some(y)) if x == y),
            ));
        }
    }
}

fn store_figures(s: Option<&pb::StoreInventory>) -> String {
    match s {
        Some(s) => format!(
            "{} objects, {} bytes, sha256 {}",
            s.objects,
            s.bytes,
            s.digest.get(..16).unwrap_or(&s.digest)
        ),
        None => "absent".into(),
    }
}

pub fn compare(
    source: &pb::Inventory,
    target: &pb::Inventory,
    target_domain: &str,
) -> pb::VerificationReport {
    let mut lines = vec![];
    let kinds: BTreeSet<&String> = source.items.keys().chain(target.items.keys()).collect();
    for kind in kinds {
        let (e, a) = (
            source.items.get(kind).copied().unwrap_or(0),
            target.items.get(kind).copied().unwrap_or(0),
        );
        lines.push(line(
            format!("items {kind}"),
            e.to_string(),
            a.to_string(),
            e == a,
        ));
    }
    let stores: BTreeSet<&String> = source
        .stores
        .iter()
        .chain(target.stores.iter())
        .map(|s| &s.store)
        .collect();
    for store in stores {
        let find = |inv: &'_ pb::Inventory| inv.stores.iter().find(|s| &s.store == store).cloned();
        let (e, a) = (find(source), find(target));
        let ok = matches!((&e, &a), (Some(e), Some(a)) if e.objects == a.objects && e.bytes == a.bytes && e.digest == a.digest);
        lines.push(line(
            format!("bucket {store}"),
            store_figures(e.as_ref()),
            store_figures(a.as_ref()),
            ok,
        ));
    }
    for realm in &source.realms {
        let found = target.realms.iter().find(|r| r.realm == realm.realm);
        lines.push(line(
            format!("realm {} users", realm.realm),
            realm.users.to_string(),
            found.map_or("absent".into(), |r| r.users.to_string()),
            found.is_some_and(|r| r.users == realm.users),
        ));
    }
    volume_lines(source, target, &mut lines);
    database_lines(source, target, &mut lines);
    lines.push(line(
        "workloads ready".into(),
        format!("{0}/{0}", source.workloads),
        format!("{}/{}", target.workloads_ready, target.workloads),
        target.workloads == source.workloads && target.workloads_ready == target.workloads,
    ));
    if !target.not_ready.is_empty() {
        lines.push(line(
            "workloads not ready".into(),
            "none".into(),
            target.not_ready.join(", "),
            false,
        ));
    }
    lines.push(line(
        "registry domain".into(),
        target_domain.to_string(),
        target.apps_domain_seen.clone(),
        !target_domain.is_empty() && target.apps_domain_seen == target_domain,
    ));
    pb::VerificationReport {
        verified: lines.iter().all(|l| l.ok),
        lines,
    }
}

/// One line about an inventory, for the step's detail.
pub fn summary(inv: &pb::Inventory) -> String {
    let items: u64 = inv.items.values().sum();
    let objects: u64 = inv.stores.iter().map(|s| s.objects).sum();
    let users: u64 = inv.realms.iter().map(|r| r.users).sum();
    let tables: usize = inv.databases.iter().map(|d| d.tables.len()).sum();
    format!(
        "{items} items of {} kinds, {} workloads, {objects} objects in {} buckets, {users} users in {} realms, \
         {} volumes, {tables} tables in {} databases",
        inv.items.len(),
        inv.workloads,
        inv.stores.len(),
        inv.realms.len(),
        inv.volumes.len(),
        inv.databases.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> pb::Inventory {
        pb::Inventory {
            items: [
                ("configmaps".to_string(), 5),
                ("deployments.apps".to_string(), 3),
            ]
            .into_iter()
            .collect(),
            stores: vec![pb::StoreInventory {
                store: "obc-user-import".into(),
                objects: 3,
                bytes: 3072,
                digest: "ab".repeat(32),
            }],
            realms: vec![pb::RealmCount {
                realm: "r-admin".into(),
                users: 4,
                ..Default::default()
            }],
            workloads: 3,
            workloads_ready: 0,
            not_ready: vec![],
            apps_domain_seen: "apps.a.example.com".into(),
            volumes: vec![
                pb::VolumeInventory {
                    pvc: "gerrit-data".into(),
                    measure: Some(Measure::Contents(pb::VolumeContents {
                        files: 2,
                        bytes: 4096,
                        digest: "ef".repeat(32),
                    })),
                },
                pb::VolumeInventory {
                    pvc: "nexus-data".into(),
                    measure: Some(Measure::Velero(pb::VeleroVolume {
                        phase: "Completed".into(),
                        total_bytes: 10,
                        bytes_done: 10,
                    })),
                },
                pb::VolumeInventory {
                    pvc: "operational-instance1-pgdata".into(),
                    measure: Some(Measure::Database("operational".into())),
                },
            ],
            databases: vec![pb::DatabaseInventory {
                cluster: "operational".into(),
                database: "registry".into(),
                schema: "registry".into(),
                tables: vec![pb::TableInventory {
                    table: "subject".into(),
                    rows: 3,
                    checksum: "01".repeat(16),
                }],
            }],
        }
    }

    #[test]
    fn equal_inventories_verify() {
        let source = inventory();
        let mut target = inventory();
        target.workloads_ready = 3;
        target.apps_domain_seen = "apps.b.example.com".into();
        let report = compare(&source, &target, "apps.b.example.com");
        assert!(report.verified, "{report:?}");
        assert!(
            report
                .lines
                .iter()
                .any(|l| l.what == "volume operational-instance1-pgdata"
                    && l.ok
                    && l.actual.contains("see its tables")),
            "{report:?}"
        );
    }

    #[test]
    fn a_database_or_volume_missing_on_the_target_fails() {
        let source = inventory();
        let mut target = inventory();
        target.workloads_ready = 3;
        target.apps_domain_seen = "apps.b.example.com".into();
        target.databases.clear();
        target.volumes.remove(0);
        let report = compare(&source, &target, "apps.b.example.com");
        let failed: Vec<(&str, &str)> = report
            .lines
            .iter()
            .filter(|l| !l.ok)
            .map(|l| (l.what.as_str(), l.actual.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                ("volume gerrit-data", "absent"),
                ("database operational", "absent")
            ]
        );
    }

    #[test]
    fn every_difference_is_a_failed_line() {
        let source = inventory();
        let mut target = inventory();
        target.items.insert("configmaps".into(), 4);
        target.stores[0].digest = "cd".repeat(32);
        target.realms[0].users = 3;
        target.workloads_ready = 2;
        target.not_ready = vec!["bpms".into()];
        if let Some(Measure::Contents(c)) = target.volumes[0].measure.as_mut() {
            c.digest = "00".repeat(32);
        }
        if let Some(Measure::Velero(v)) = target.volumes[1].measure.as_mut() {
            v.bytes_done = 9;
        }
        target.databases[0].tables[0].rows = 2;
        let report = compare(&source, &target, "apps.b.example.com");
        assert!(!report.verified);
        let failed: Vec<&str> = report
            .lines
            .iter()
            .filter(|l| !l.ok)
            .map(|l| l.what.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "items configmaps",
                "bucket obc-user-import",
                "realm r-admin users",
                "volume gerrit-data",
                "volume nexus-data",
                "table operational/registry.registry.subject",
                "workloads ready",
                "workloads not ready",
                "registry domain"
            ]
        );
    }
}
