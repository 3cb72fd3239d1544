//! What a migration does, as data: its steps in order, the restore phases of
//! the Platform, the object sets the relay moves, and the names of what the
//! migration creates. Nothing here talks to anyone.
use ferry_common::step::{Phase, StepName};
use ferry_common::{labels, pb};

use super::request::{MigrationRequest, Mode};

/// The backup storage location's prefix inside its bucket (the Platform's
/// layout: `openshift-backups/backups/<backup>/…`, `openshift-backups/kopia/<ns>/…`).
pub const BSL_PREFIX: &str = "openshift-backups";
/// The nine object buckets of a registry; the agents' stores are named `obc-<bucket>`.
pub const OBC_BUCKETS: [&str; 9] = [
    "datafactory-ceph-bucket",
    "excerpt-signature-bucket",
    "file-ceph-bucket",
    "file-excerpt-bucket",
    "excerpt-templates",
    "lowcode-file-storage",
    "response-ceph-bucket",
    "user-import",
    "user-import-archive",
];
/// The four realms of a registry: `<registry>-<suffix>`.
pub const REALM_SUFFIXES: [&str; 4] = [
    "admin",
    "citizen-portal",
    "external-system",
    "officer-portal",
];
/// Who runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
    Coordinator,
}

/// A step of the plan, before it runs.
#[derive(Debug, Clone)]
pub struct Planned {
    pub name: StepName,
    pub side: Side,
    pub description: String,
}

/// One restore phase: a Velero Restore with these filters.
#[derive(Debug, Clone, Copy)]
pub struct RestorePhase {
    pub name: &'static str,
    pub excluded: &'static [&'static str],
    /// Values of `app.kubernetes.io/name`; empty: no selector.
    pub labels: &'static [&'static str],
}

pub const PHASE_LABEL: &str = labels::APP_NAME;

/// The restore phases in the order they run, with their filters.
pub const PHASES: [RestorePhase; 12] = {
    let mut out = [filters(Phase::Init); 12];
    let mut i = 0;
    while i < Phase::ALL.len() {
        out[i] = filters(Phase::ALL[i]);
        i += 1;
    }
    out
};

/// The Platform's restore order (DESIGN §1): everything but workloads first,
/// then the volumes' data (through the holder pods the backup step ran, so
/// Velero's file-system restore has pods to restore into), then the
/// workloads component by component, then everything else.
pub const fn filters(phase: Phase) -> RestorePhase {
    const fn only(phase: Phase, labels: &'static [&'static str]) -> RestorePhase {
        RestorePhase {
            name: phase.name(),
            excluded: &["pods"],
            labels,
        }
    }
    match phase {
        Phase::Init => RestorePhase {
            name: phase.name(),
            excluded: &[
                "pods",
                "deployments.apps",
                "statefulsets.apps",
                "objectbucketclaims.objectbucket.io",
                "kafkas.kafka.strimzi.io",
                "postgresclusters.postgres-operator.crunchydata.com",
            ],
            labels: &[],
        },
        Phase::Volumes => RestorePhase {
            name: phase.name(),
            excluded: &[],
            labels: &[labels::VOLUME_HOLDER_APP],
        },
        Phase::Vault => only(phase, &["vault"]),
        Phase::Nexus => only(phase, &["nexus"]),
        Phase::Gerrit => only(phase, &["gerrit"]),
        Phase::Jenkins => only(phase, &["jenkins"]),
        Phase::Postgres => only(phase, &["postgres"]),
        Phase::Kafka => only(phase, &["kafka", "zookeeper"]),
        Phase::Redis => only(phase, &["redis"]),
        Phase::Redash => only(phase, &["redash"]),
        Phase::GeoServer => only(phase, &["geo-server"]),
        Phase::Rest => RestorePhase {
            name: phase.name(),
            excluded: &["pods", "routes.route.openshift.io"],
            labels: &[],
        },
    }
}

fn step(name: StepName, side: Side, description: impl Into<String>) -> Planned {
    Planned {
        name,
        side,
        description: description.into(),
    }
}

/// The steps of a migration, in order.
pub fn steps(request: &MigrationRequest) -> Vec<Planned> {
    use StepName as S;
    let reg = &request.registry;
    let mut out = vec![step(
        S::Preflight,
        Side::Coordinator,
        "check both clusters; refuse and change nothing if any check fails",
    )];
    if request.mode.stages() {
        out.push(step(
            S::StageBackup,
            Side::Source,
            format!("Velero backup of {reg} while it serves"),
        ));
        out.push(step(
            S::StageTransfer,
            Side::Coordinator,
            "relay the stage backup, volume data and buckets to the target",
        ));
        if request.mode == Mode::Held {
            out.push(step(
                S::AwaitCutover,
                Side::Coordinator,
                "hold while the source serves: `ferry migrate stage` copies what changed again, `ferry migrate cutover` goes on",
            ));
        }
    }
    out.extend([
        step(
            S::Quiesce,
            Side::Source,
            format!("scale {reg}'s workloads to zero, recording their replicas"),
        ),
        step(
            S::Backup,
            Side::Source,
            format!("Velero backup {reg}-<time> of namespace {reg}, volumes by file-system backup"),
        ),
        step(
            S::Inventory,
            Side::Source,
            "count the registry's items, hash its buckets, count realm users",
        ),
        step(
            S::ExportIdentity,
            Side::Source,
            "export the four realms and their users from Keycloak",
        ),
        step(
            S::Transfer,
            Side::Coordinator,
            "relay the backup, its volume data, the nine buckets and the identity export",
        ),
    ]);
    for phase in Phase::ALL {
        let f = filters(phase);
        let what = if f.labels.is_empty() {
            format!("everything except {}", f.excluded.join(", "))
        } else {
            format!("{PHASE_LABEL} in ({})", f.labels.join(", "))
        };
        out.push(step(
            S::Restore(phase),
            Side::Target,
            format!("Velero restore, phase {phase}: {what}"),
        ));
    }
    out.extend([
        step(
            S::ImportIdentity,
            Side::Target,
            "import the realms, then their users (SKIP existing)",
        ),
        step(
            S::Reconfigure,
            Side::Target,
            "rewrite the domain, re-point the Nexus allow-list, reset database passwords, restart keycloak-operator, scale workloads back",
        ),
        step(
            S::Verify,
            Side::Target,
            "compare items, buckets and users with the source; every workload ready",
        ),
    ]);
    out
}

/// The steps that undo a migration on both sides.
pub fn rollback_steps(request: &MigrationRequest) -> Vec<Planned> {
    vec![
        step(
            StepName::CleanupTarget,
            Side::Target,
            format!(
                "remove namespace {}, its realms, and the objects the migration put on the target",
                request.registry
            ),
        ),
        step(
            StepName::UnquiesceSource,
            Side::Source,
            "scale the source's workloads back to their recorded replicas",
        ),
    ]
}

/// The cluster a side names in this request (none for the coordinator).
pub fn cluster_of(request: &MigrationRequest, side: Side) -> String {
    match side {
        Side::Source => request.source_cluster.clone(),
        Side::Target => request.target_cluster.clone(),
        Side::Coordinator => String::new(),
    }
}

/// `<registry>-<YYYY-MM-DD-HH-MM-SS>` in UTC, as the Platform names backups.
pub fn backup_name(registry: &str, unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{registry}-{y:04}-{m:02}-{d:02}-{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub fn realms(registry: &str) -> Vec<String> {
    REALM_SUFFIXES
        .iter()
        .map(|s| format!("{registry}-{s}"))
        .collect()
}

/// The registry's Crunchy PGO clusters, whose database `registry` verify
/// compares table by table.
pub const REGISTRY_DATABASES: [&str; 2] = ["operational", "analytical"];

/// What an inventory measures, the same on source and target: the
/// buckets, realms, every volume claim and the registry's databases.
pub fn inventory_step(registry: &str, backup_name: &str) -> pb::InventoryStep {
    pb::InventoryStep {
        stores: obc_stores(),
        realms: realms(registry),
        volumes: true,
        databases: REGISTRY_DATABASES.iter().map(|d| d.to_string()).collect(),
        backup_name: backup_name.to_owned(),
    }
}

pub fn obc_stores() -> Vec<String> {
    OBC_BUCKETS.iter().map(|b| format!("obc-{b}")).collect()
}

pub fn backup_prefix(backup: &str) -> String {
    format!("{BSL_PREFIX}/backups/{backup}/")
}

pub fn repository_prefix(registry: &str) -> String {
    format!("{BSL_PREFIX}/kopia/{registry}/")
}

pub fn identity_prefix(migration: &str) -> String {
    format!("ferry/{migration}/identity/")
}

/// Prefixes on the target that must be empty before a migration starts.
pub fn leftover_prefixes(registry: &str) -> Vec<String> {
    vec![
        format!("{BSL_PREFIX}/backups/{registry}-"),
        repository_prefix(registry),
    ]
}

/// A set of objects the relay syncs: (short name, store, prefix) — the same
/// store name and prefix on both sides.
pub fn transfer_sets(
    request: &MigrationRequest,
    backup: &str,
    migration: &str,
    with_identity: bool,
) -> Vec<(String, String, String)> {
    let store = request.backup_store.clone();
    let mut sets = vec![
        ("backup".to_string(), store.clone(), backup_prefix(backup)),
        (
            "volumes".to_string(),
            store.clone(),
            repository_prefix(&request.registry),
        ),
    ];
    for b in OBC_BUCKETS {
        sets.push((b.to_string(), format!("obc-{b}"), String::new()));
    }
    if with_identity {
        sets.push(("identity".to_string(), store, identity_prefix(migration)));
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_follow_the_platform() {
        // 2026-11-24T06:30:05Z
        assert_eq!(
            backup_name("abc-01", 1_795_501_805_000),
            "abc-01-2026-11-24-06-30-05"
        );
        assert_eq!(backup_name("r", 0), "r-1970-01-01-00-00-00");
        // A leap day.
        assert_eq!(backup_name("r", 951_782_400_000), "r-2000-02-29-00-00-00");
    }

    fn request(stage: bool, hold: bool) -> MigrationRequest {
        MigrationRequest::try_from(pb::MigrationRequest {
            registry: "r".into(),
            source_cluster: "a".into(),
            target_cluster: "b".into(),
            stage,
            hold,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(request: &MigrationRequest) -> Vec<String> {
        steps(request)
            .into_iter()
            .map(|s| s.name.to_string())
            .collect()
    }

    #[test]
    fn restore_phases_keep_the_platform_order() {
        let names = names(&request(false, false));
        let restores: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix("restore-"))
            .collect();
        assert_eq!(
            restores,
            [
                "init",
                "volumes",
                "vault",
                "nexus",
                "gerrit",
                "jenkins",
                "postgres",
                "kafka",
                "redis",
                "redash",
                "geo-server",
                "rest"
            ]
        );
        let position = |n: &str| names.iter().position(|x| x == n);
        assert!(position("quiesce") < position("backup"));
        assert!(position("transfer") < position("restore-init"));
        assert!(position("restore-rest") < position("import-identity"));
        assert!(position("reconfigure") < position("verify"));
        assert_eq!(names.last().map(String::as_str), Some("verify"));
        assert!(!names.iter().any(|n| n.starts_with("stage")));
        let staged = super::tests::names(&request(true, false));
        assert_eq!(&staged[1..3], ["stage-backup", "stage-transfer"]);
        assert!(!staged.iter().any(|n| n == "await-cutover"));
        // Holding implies the stage copy, and waits right after it.
        let held = super::tests::names(&request(false, true));
        assert_eq!(
            &held[1..5],
            ["stage-backup", "stage-transfer", "await-cutover", "quiesce"]
        );
    }
}
