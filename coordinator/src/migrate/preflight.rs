//! Preflight: each agent checks its own cluster; the coordinator adds the
//! checks that compare the two. Nothing here changes anything anywhere.
use std::time::Duration;

use ferry_common::pb::{self, step_command::Kind as StepKind, step_output::Kind as StepOut};

use super::SUBMITTER;
use super::plan;
use super::request::MigrationRequest;
use crate::call;
use crate::fleet::{Fleet, new_id};

/// How long an agent may take to answer its preflight.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

pub struct Verdict {
    pub checks: Vec<pb::Check>,
    pub source_apps_domain: String,
    pub target_apps_domain: String,
}

impl Verdict {
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} ({}): {}", c.name, c.cluster_id, c.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn check(name: &str, cluster: &str, passed: bool, reason: impl Into<String>) -> pb::Check {
    pb::Check {
        name: name.to_string(),
        cluster_id: cluster.to_string(),
        passed,
        reason: reason.into(),
    }
}

/// Asks one agent for its side's report; a missing or silent agent is a
/// failed check, not an error.
async fn ask(
    fleet: &Fleet,
    cluster: &str,
    request: &MigrationRequest,
    role: pb::ClusterRole,
) -> Result<pb::PreflightReport, pb::Check> {
    let fail = |reason: String| check("agent-answers", cluster, false, reason);
    match fleet.agent(cluster) {
        Ok(a) if a.state() == pb::AgentState::Connected => {}
        Ok(_) => {
            return Err(fail(format!(
                "the agent of {cluster} is not connected; check it runs and reaches the coordinator (`ferry agents`)"
            )));
        }
        Err(_) => {
            return Err(fail(format!(
                "no agent of cluster {cluster} has ever registered; deploy one (`ferry agents` lists those known)"
            )));
        }
    }
    let spec = call::step_spec(
        &request.migration_id,
        &request.registry,
        StepKind::Preflight(pb::PreflightStep {
            role: role.into(),
            backup_store: request.backup_store.clone(),
            leftover_prefixes: plan::leftover_prefixes(&request.registry),
            backup_location: request.backup_location.clone(),
        }),
    );
    let request_id = format!("preflight-{}", new_id());
    let what = "the preflight";
    let sent = call::send(fleet, cluster, spec, &request_id, SUBMITTER, what)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match sent.step_output(fleet, Some(ANSWER_WITHIN), |_| {}).await {
        Ok(StepOut::Preflight(report)) => Ok(report),
        Ok(_) => Err(fail(format!(
            "the agent of {cluster} gave no preflight report; is it older than the coordinator?"
        ))),
        Err(crate::Error::Command { message, .. }) => Err(fail(format!(
            "the agent of {cluster} could not run its checks: {message}"
        ))),
        Err(crate::Error::Protocol(_)) => Err(fail(format!(
            "the agent of {cluster} gave no preflight report; is it older than the coordinator?"
        ))),
        Err(crate::Error::NoAnswer { .. }) => Err(fail(format!(
            "the agent of {cluster} did not answer the preflight within {ANSWER_WITHIN:?}"
        ))),
        Err(e) => Err(fail(e.to_string())),
    }
}

pub async fn run(fleet: &Fleet, request: &MigrationRequest) -> Verdict {
    let (src, tgt) = (&request.source_cluster, &request.target_cluster);
    let mut checks = vec![check(
        "distinct-clusters",
        "",
        src != tgt,
        if src != tgt {
            format!("from {src} to {tgt}")
        } else {
            format!("source and target are both {src}")
        },
    )];
    let (source, target) = tokio::join!(
        ask(fleet, src, request, pb::ClusterRole::Source),
        ask(fleet, tgt, request, pb::ClusterRole::Target)
    );
    let mut verdict = Verdict {
        checks: vec![],
        source_apps_domain: String::new(),
        target_apps_domain: String::new(),
    };
    for side in [&source, &target] {
        match side {
            Ok(report) => checks.extend(report.checks.iter().cloned()),
            Err(c) => checks.push(c.clone()),
        }
    }
    if let (Ok(a), Ok(b)) = (&source, &target) {
        let same = !a.platform_version.is_empty() && a.platform_version == b.platform_version;
        checks.push(check(
            "platform-version-identical",
            "",
            same,
            format!(
                "Platform {} on {src}, {} on {tgt}{}",
                shown(&a.platform_version),
                shown(&b.platform_version),
                if same {
                    ""
                } else {
                    "; upgrade one side so both run the same version"
                }
            ),
        ));
        let supported = !a.registry_version.is_empty() && a.registry_version == b.platform_version;
        checks.push(check(
            "registry-version-supported",
            "",
            supported,
            format!(
                "registry {} is version {} on {src}; {tgt} runs Platform {}{}",
                request.registry,
                shown(&a.registry_version),
                shown(&b.platform_version),
                if supported {
                    ""
                } else {
                    "; the target supports only its own version"
                }
            ),
        ));
        checks.extend(storage_checks(a, b, tgt));
        let domains = !a.apps_domain.is_empty() && !b.apps_domain.is_empty();
        checks.push(check(
            "apps-domains-known",
            "",
            domains,
            format!(
                "{src}: {}, {tgt}: {}",
                shown(&a.apps_domain),
                shown(&b.apps_domain)
            ),
        ));
        verdict.source_apps_domain = a.apps_domain.clone();
        verdict.target_apps_domain = b.apps_domain.clone();
    }
    verdict.checks = checks;
    verdict
}

/// Where each storage class the registry's claims use on the source lands
/// on the target: the class Velero's change-storage-class mapping names, the
/// same name otherwise, and the target's default for claims that name none.
fn landing<'a>(need: &'a str, b: &'a pb::PreflightReport) -> Option<&'a pb::StorageClassRoom> {
    if need.is_empty() {
        return b.storage_classes.iter().find(|c| c.is_default);
    }
    let to = b
        .storage_class_mapping
        .get(need)
        .map_or(need, String::as_str);
    b.storage_classes.iter().find(|c| c.name == to)
}

fn class_shown(class: &str) -> &str {
    if class.is_empty() { "(default)" } else { class }
}

/// `storage-classes`: every claim of the registry has a class to land in on
/// the target. `target-room`: the target has the room, per class where its
/// CSI drivers publish capacity, and in all where its agent declares some.
fn storage_checks(a: &pb::PreflightReport, b: &pb::PreflightReport, tgt: &str) -> Vec<pb::Check> {
    let mut lands = vec![];
    let mut homeless = vec![];
    for need in &a.volume_bytes {
        let from = class_shown(&need.storage_class);
        match landing(&need.storage_class, b) {
            Some(room) if room.name != need.storage_class => {
                lands.push(format!("{from} → {} ({} claims)", room.name, need.claims))
            }
            Some(_) => lands.push(format!("{from} ({} claims)", need.claims)),
            None => homeless.push(format!("{from} ({} claims)", need.claims)),
        }
    }
    let offered: Vec<&str> = b.storage_classes.iter().map(|c| c.name.as_str()).collect();
    let classes = check(
        "storage-classes",
        tgt,
        homeless.is_empty(),
        if !homeless.is_empty() {
            format!(
                "the registry's volume claims use storage classes {tgt} does not have: {}; {tgt} has {}. \
                 Create them on {tgt}, or map each to one of {tgt}'s in a ConfigMap in namespace velero \
                 labelled velero.io/plugin-config=\"\" and velero.io/change-storage-class=RestoreItemAction \
                 (data: <old class>: <new class>); a claim that names no class needs a default class",
                homeless.join(", "),
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            )
        } else if lands.is_empty() {
            "the registry has no volume claims".to_string()
        } else {
            format!("on {tgt}: {}", lands.join(", "))
        },
    );

    // Room: per class where the target publishes capacity; in all where its
    // agent declares some.
    let mut per_class: Vec<(String, u64, u64)> = vec![];
    for need in &a.volume_bytes {
        if let Some(room) = landing(&need.storage_class, b).filter(|r| r.capacity_known) {
            match per_class.iter_mut().find(|(n, _, _)| *n == room.name) {
                Some(entry) => entry.1 = entry.1.saturating_add(need.bytes),
                None => per_class.push((room.name.clone(), need.bytes, room.capacity_bytes)),
            }
        }
    }
    let mut measured = vec![];
    let mut short = vec![];
    for (class, needed, free) in &per_class {
        let line = format!("{class}: needs {}, {free} free", needed);
        if needed > free {
            short.push(line);
        } else {
            measured.push(line);
        }
    }
    if b.capacity_bytes > 0 {
        let line = format!(
            "in all (volumes and {} bucket bytes): needs {}, the agent declares {}",
            a.bucket_bytes, a.required_bytes, b.capacity_bytes
        );
        if a.required_bytes > b.capacity_bytes {
            short.push(line);
        } else {
            measured.push(line);
        }
    }
    let room = check(
        "target-room",
        tgt,
        short.is_empty(),
        if !short.is_empty() {
            format!(
                "{tgt} has too little room (bytes): {}; free space there or pick another target",
                short.join("; ")
            )
        } else if measured.is_empty() {
            format!(
                "not measured: the registry needs {} bytes ({} in buckets), but {tgt} publishes no \
                 CSIStorageCapacity for the classes it lands in and its agent declares no --capacity-bytes",
                a.required_bytes, a.bucket_bytes
            )
        } else {
            format!("room on {tgt} (bytes): {}", measured.join("; "))
        },
    );
    vec![classes, room]
}

fn shown(v: &str) -> &str {
    if v.is_empty() { "(none found)" } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn source(needs: &[(&str, u64)], buckets: u64) -> pb::PreflightReport {
        let volume_bytes: Vec<pb::ClassBytes> = needs
            .iter()
            .map(|(class, bytes)| pb::ClassBytes {
                storage_class: class.to_string(),
                bytes: *bytes,
                claims: 1,
            })
            .collect();
        pb::PreflightReport {
            required_bytes: volume_bytes.iter().map(|c| c.bytes).sum::<u64>() + buckets,
            volume_bytes,
            bucket_bytes: buckets,
            ..Default::default()
        }
    }

    fn target(
        classes: &[(&str, bool, Option<u64>)],
        mapping: &[(&str, &str)],
    ) -> pb::PreflightReport {
        pb::PreflightReport {
            storage_classes: classes
                .iter()
                .map(|(name, is_default, free)| pb::StorageClassRoom {
                    name: name.to_string(),
                    is_default: *is_default,
                    capacity_bytes: free.unwrap_or(0),
                    capacity_known: free.is_some(),
                })
                .collect(),
            storage_class_mapping: mapping
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn verdicts(a: &pb::PreflightReport, b: &pb::PreflightReport) -> Vec<(String, bool, String)> {
        storage_checks(a, b, "b")
            .into_iter()
            .map(|c| (c.name, c.passed, c.reason))
            .collect()
    }

    #[test]
    fn a_class_the_target_lacks_is_refused_unless_velero_maps_it() {
        let a = source(&[("gp3-csi", 10 * GIB), ("", GIB)], 0);
        let vsphere = target(&[("thin-csi", true, None)], &[]);
        let v = verdicts(&a, &vsphere);
        assert_eq!(v[0].0, "storage-classes");
        assert!(!v[0].1, "{v:?}");
        assert!(
            v[0].2.contains("gp3-csi (1 claims)") && v[0].2.contains("thin-csi"),
            "{v:?}"
        );
        assert!(!v[0].2.contains("(default)"), "the default lands: {v:?}");

        let mapped = target(&[("thin-csi", true, None)], &[("gp3-csi", "thin-csi")]);
        let v = verdicts(&a, &mapped);
        assert!(v[0].1, "{v:?}");
        assert!(v[0].2.contains("gp3-csi → thin-csi"), "{v:?}");

        // A claim naming no class needs a default class on the target.
        let no_default = target(&[("gp3-csi", false, None)], &[]);
        let v = verdicts(&a, &no_default);
        assert!(!v[0].1 && v[0].2.contains("(default) (1 claims)"), "{v:?}");
    }

    #[test]
    fn room_is_measured_per_class_where_published_and_in_all_where_declared() {
        let a = source(&[("gp3-csi", 10 * GIB), ("fast", GIB)], 5 * GIB);
        // Published per class: gp3-csi lands in thin-csi, which has 8 GiB.
        let b = target(
            &[("thin-csi", true, Some(8 * GIB)), ("fast", false, None)],
            &[("gp3-csi", "thin-csi")],
        );
        let v = verdicts(&a, &b);
        assert_eq!(v[1].0, "target-room");
        assert!(!v[1].1, "{v:?}");
        assert!(
            v[1].2.contains(&format!("thin-csi: needs {}", 10 * GIB)),
            "{v:?}"
        );

        let roomy = target(
            &[("thin-csi", true, Some(20 * GIB)), ("fast", false, None)],
            &[("gp3-csi", "thin-csi")],
        );
        assert!(verdicts(&a, &roomy)[1].1);

        // Declared by the agent: volumes and buckets together.
        let mut declared = target(&[("gp3-csi", true, None), ("fast", false, None)], &[]);
        declared.capacity_bytes = 15 * GIB;
        let v = verdicts(&a, &declared);
        assert!(!v[1].1 && v[1].2.contains("the agent declares"), "{v:?}");
        declared.capacity_bytes = 16 * GIB;
        assert!(verdicts(&a, &declared)[1].1);

        // Neither: passes, and says it was not measured.
        let unknown = target(&[("gp3-csi", true, None), ("fast", false, None)], &[]);
        let v = verdicts(&a, &unknown);
        assert!(v[1].1 && v[1].2.starts_with("not measured"), "{v:?}");
    }
}
