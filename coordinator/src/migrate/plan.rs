//! What a migration does, as data: its steps in order, the restore phases of
//! the Platform, the object sets the relay moves, and the names of what the
//! migration creates. Nothing here talks to anyone.
use ferry_common::{labels, pb};

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
pub const DEFAULT_BACKUP_STORE: &str = "backups";
pub const DEFAULT_BACKUP_LOCATION: &str = "default";

/// Who runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
    Coordinator,
}

/// One restore phase: a Velero Restore with these filters.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub name: &'static str,
    pub excluded: &'static [&'static str],
    /// Values of `app.kubernetes.io/name`; empty: no selector.
    pub labels: &'static [&'static str],
}

pub const PHASE_LABEL: &str = labels::APP_NAME;

/// The Platform's restore order (DESIGN §1): everything but workloads first,
/// then the volumes' data (through the holder pods the backup step ran, so
/// Velero's file-system restore has pods to restore into), then the
/// workloads component by component, then everything else.
pub const PHASES: [Phase; 12] = [
    Phase {
        name: "init",
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
    Phase {
        name: "volumes",
        excluded: &[],
        labels: &[labels::VOLUME_HOLDER_APP],
    },
    label_phase("vault", &["vault"]),
    label_phase("nexus", &["nexus"]),
    label_phase("gerrit", &["gerrit"]),
    label_phase("jenkins", &["jenkins"]),
    label_phase("postgres", &["postgres"]),
    label_phase("kafka", &["kafka", "zookeeper"]),
    label_phase("redis", &["redis"]),
    label_phase("redash", &["redash"]),
    label_phase("geo-server", &["geo-server"]),
    Phase {
        name: "rest",
        excluded: &["pods", "routes.route.openshift.io"],
        labels: &[],
    },
];

const fn label_phase(name: &'static str, labels: &'static [&'static str]) -> Phase {
    Phase {
        name,
        excluded: &["pods"],
        labels,
    }
}

/// The step a held migration waits at, in state STAGED, for the operator.
pub const AWAIT_CUTOVER: &str = "await-cutover";

/// The steps of a migration, in order.
pub fn steps(request: &pb::MigrationRequest) -> Vec<(String, Side, String)> {
    let reg = &request.registry;
    let mut out: Vec<(String, Side, String)> = vec![(
        "preflight".into(),
        Side::Coordinator,
        "check both clusters; refuse and change nothing if any check fails".into(),
    )];
    // Holding after a stage copy needs the stage copy.
    if request.stage || request.hold {
        out.push((
            "stage-backup".into(),
            Side::Source,
            format!("Velero backup of {reg} while it serves"),
        ));
        out.push((
            "stage-transfer".into(),
            Side::Coordinator,
            "relay the stage backup, volume data and buckets to the target".into(),
        ));
        if request.hold {
            out.push((
                AWAIT_CUTOVER.into(),
                Side::Coordinator,
                "hold while the source serves: `ferry migrate stage` copies what changed again, `ferry migrate cutover` goes on".into(),
            ));
        }
    }
    out.extend([
        (
            "quiesce".into(),
            Side::Source,
            format!("scale {reg}'s workloads to zero, recording their replicas"),
        ),
        (
            "backup".into(),
            Side::Source,
            format!("Velero backup {reg}-<time> of namespace {reg}, volumes by file-system backup"),
        ),
        (
            "inventory".into(),
            Side::Source,
            "count the registry's items, hash its buckets, count realm users".into(),
        ),
        (
            "export-identity".into(),
            Side::Source,
            "export the four realms and their users from Keycloak".into(),
        ),
        (
            "transfer".into(),
            Side::Coordinator,
            "relay the backup, its volume data, the nine buckets and the identity export".into(),
        ),
    ]);
    for phase in PHASES {
        let what = if phase.labels.is_empty() {
            format!("everything except {}", phase.excluded.join(", "))
        } else {
            format!("{PHASE_LABEL} in ({})", phase.labels.join(", "))
        };
        out.push((
            format!("restore-{}", phase.name),
            Side::Target,
            format!("Velero restore, phase {}: {what}", phase.name),
        ));
    }
    out.extend([
        (
            "import-identity".into(),
            Side::Target,
            "import the realms, then their users (SKIP existing)".into(),
        ),
        (
            "reconfigure".into(),
            Side::Target,
            "rewrite the domain, re-point the Nexus allow-list, reset database passwords, restart keycloak-operator, scale workloads back".into(),
        ),
        (
            "verify".into(),
            Side::Target,
            "compare items, buckets and users with the source; every workload ready".into(),
        ),
    ]);
    out
}

/// The steps that undo a migration on both sides.
pub fn rollback_steps(request: &pb::MigrationRequest) -> Vec<(String, Side, String)> {
    vec![
        (
            "cleanup-target".into(),
            Side::Target,
            format!(
                "remove namespace {}, its realms, and the objects the migration put on the target",
                request.registry
            ),
        ),
        (
            "unquiesce-source".into(),
            Side::Source,
            "scale the source's workloads back to their recorded replicas".into(),
        ),
    ]
}

pub fn restore_phase(step: &str) -> Option<Phase> {
    let name = step.strip_prefix("restore-")?;
    PHASES.iter().copied().find(|p| p.name == name)
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
    request: &pb::MigrationRequest,
    backup: &str,
    migration: &str,
    with_identity: bool,
) -> Vec<(String, String, String)> {
    let store = backup_store(request);
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

pub fn backup_store(request: &pb::MigrationRequest) -> String {
    if request.backup_store.is_empty() {
        DEFAULT_BACKUP_STORE.into()
    } else {
        request.backup_store.clone()
    }
}

pub fn backup_location(request: &pb::MigrationRequest) -> String {
    if request.backup_location.is_empty() {
        DEFAULT_BACKUP_LOCATION.into()
    } else {
        request.backup_location.clone()
    }
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

    #[test]
    fn restore_phases_keep_the_platform_order() {
        let request = pb::MigrationRequest {
            registry: "r".into(),
            ..Default::default()
        };
        let names: Vec<String> = steps(&request).into_iter().map(|s| s.0).collect();
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
        let staged = pb::MigrationRequest {
            stage: true,
            ..request.clone()
        };
        let names: Vec<String> = steps(&staged).into_iter().map(|s| s.0).collect();
        assert_eq!(&names[1..3], ["stage-backup", "stage-transfer"]);
        assert!(!names.iter().any(|n| n == AWAIT_CUTOVER));
        // Holding implies the stage copy, and waits right after it.
        let held = pb::MigrationRequest {
            hold: true,
            ..request
        };
        let names: Vec<String> = steps(&held).into_iter().map(|s| s.0).collect();
        assert_eq!(
            &names[1..5],
            ["stage-backup", "stage-transfer", AWAIT_CUTOVER, "quiesce"]
        );
    }
}
