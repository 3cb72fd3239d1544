//! Verification: the source's inventory (taken when it was quiesced and
//! backed up) against the target's after the restore.
use std::collections::BTreeSet;

use ferry_common::pb;

fn line(what: String, expected: String, actual: String, ok: bool) -> pb::VerifyLine {
    pb::VerifyLine {
        what,
        expected,
        actual,
        ok,
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
    format!(
        "{items} items of {} kinds, {} workloads, {objects} objects in {} buckets, {users} users in {} realms",
        inv.items.len(),
        inv.workloads,
        inv.stores.len(),
        inv.realms.len()
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
                "workloads ready",
                "workloads not ready",
                "registry domain"
            ]
        );
    }
}
