//! Preflight: each agent checks its own cluster; the coordinator adds the
//! checks that compare the two. Nothing here changes anything anywhere.
use std::time::Duration;

use ferry_common::pb::{self, step_command::Kind as StepKind};

use super::engine::SUBMITTER;
use super::plan;
use crate::fleet::{Fleet, new_id};
use crate::store::is_finished;

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
    request: &pb::MigrationRequest,
    role: pb::ClusterRole,
) -> Result<pb::PreflightReport, pb::Check> {
    let fail = |reason: String| check("agent-answers", cluster, false, reason);
    match fleet.agent(cluster) {
        Ok(a) if a.state == pb::AgentState::Connected as i32 => {}
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
    let spec = pb::CommandSpec {
        kind: Some(pb::command_spec::Kind::Step(pb::StepCommand {
            migration_id: request.migration_id.clone(),
            registry: request.registry.clone(),
            kind: Some(StepKind::Preflight(pb::PreflightStep {
                role: role as i32,
                backup_store: plan::backup_store(request),
                leftover_prefixes: plan::leftover_prefixes(&request.registry),
                backup_location: plan::backup_location(request),
            })),
        })),
    };
    let submitted = fleet
        .submit(cluster, spec, &format!("preflight-{}", new_id()), SUBMITTER)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = fleet
        .wait(&submitted.command_id, ANSWER_WITHIN)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !is_finished(&status) {
        return Err(fail(format!(
            "the agent of {cluster} did not answer the preflight within {ANSWER_WITHIN:?}"
        )));
    }
    match status.result.and_then(|r| r.outcome) {
        Some(pb::command_result::Outcome::Output(pb::CommandOutput {
            kind:
                Some(pb::command_output::Kind::Step(pb::StepOutput {
                    kind: Some(pb::step_output::Kind::Preflight(report)),
                })),
        })) => Ok(report),
        Some(pb::command_result::Outcome::Error(e)) => Err(fail(format!(
            "the agent of {cluster} could not run its checks: {}",
            e.message
        ))),
        _ => Err(fail(format!(
            "the agent of {cluster} gave no preflight report; is it older than the coordinator?"
        ))),
    }
}

pub async fn run(fleet: &Fleet, request: &pb::MigrationRequest) -> Verdict {
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
        let room = b.capacity_bytes == 0 || a.required_bytes <= b.capacity_bytes;
        checks.push(check(
            "target-room",
            tgt,
            room,
            if b.capacity_bytes == 0 {
                format!(
                    "the registry needs {} bytes; {tgt}'s agent declares no capacity (--capacity-bytes), so it is not checked",
                    a.required_bytes
                )
            } else {
                format!(
                    "the registry needs {} bytes; {tgt} declares {} bytes",
                    a.required_bytes, b.capacity_bytes
                )
            },
        ));
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

fn shown(v: &str) -> &str {
    if v.is_empty() { "(none found)" } else { v }
}
