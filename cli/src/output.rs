//! Output for people (tables) and for scripts (JSON, one object per call).
use ferry_common::pb;
use ferry_proto::names::Named;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Left-aligned columns, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

pub fn facts_json(f: Option<&pb::ClusterFacts>) -> Value {
    let f = f.cloned().unwrap_or_default();
    json!({
        "platform_version": f.platform_version,
        "registries": f.registries.iter().map(|r| json!({"name": r.name, "version": r.version})).collect::<Vec<_>>(),
    })
}

pub fn agent_json(a: &pb::AgentInfo) -> Value {
    json!({
        "cluster_id": a.cluster_id,
        "state": pb::AgentState::name_of(a.state),
        "agent_version": a.agent_version,
        "facts": facts_json(a.facts.as_ref()),
        "capabilities": a.capabilities,
        "last_seen_unix_ms": a.last_seen_unix_ms,
        "connected_since_unix_ms": a.connected_since_unix_ms,
        "session_id": a.session_id,
        "peer_address": a.peer_address,
    })
}

pub fn describe_json(d: &pb::DescribeOutput) -> Value {
    let probe: Value = serde_json::from_str(&d.probe_json).unwrap_or(Value::Null);
    json!({
        "probe": probe,
        "probe_error": d.probe_error,
        "cluster_id": d.cluster_id,
        "agent_version": d.agent_version,
        "hostname": d.hostname,
        "facts": facts_json(d.facts.as_ref()),
        "capabilities": d.capabilities,
    })
}

pub fn command_json(c: &pb::CommandStatus) -> Value {
    let result = match c.result.as_ref().and_then(|r| r.outcome.as_ref()) {
        Some(pb::command_result::Outcome::Output(o)) => match &o.kind {
            Some(pb::command_output::Kind::Describe(d)) => json!({"describe": describe_json(d)}),
            Some(pb::command_output::Kind::Ping(p)) => json!({"ping": {"payload": p.payload}}),
            Some(pb::command_output::Kind::Relay(r)) => {
                json!({"relay": counts_json(&r.counts.unwrap_or_default())})
            }
            Some(pb::command_output::Kind::Load(l)) => {
                json!({"load": {"rows": l.rows, "bytes": l.bytes, "errors": l.errors.len()}})
            }
            Some(pb::command_output::Kind::Step(s)) => json!({"step": format!("{s:?}")}),
            None => Value::Null,
        },
        Some(pb::command_result::Outcome::Error(e)) => json!({"error": e.message}),
        None => Value::Null,
    };
    json!({
        "command_id": c.command_id,
        "cluster_id": c.cluster_id,
        "state": pb::CommandState::name_of(c.state),
        "submitted_by": c.submitted_by,
        "submitted_at_unix_ms": c.submitted_at_unix_ms,
        "finished_at_unix_ms": c.finished_at_unix_ms,
        "deliveries": c.deliveries,
        "result": result,
    })
}

pub fn counts_json(c: &pb::TransferCounts) -> Value {
    json!({
        "objects_total": c.objects_total,
        "bytes_total": c.bytes_total,
        "objects_moved": c.objects_moved,
        "bytes_moved": c.bytes_moved,
        "objects_skipped": c.objects_skipped,
        "bytes_skipped": c.bytes_skipped,
        "bytes_received": c.bytes_received,
        "chunks_rejected": c.chunks_rejected,
    })
}

fn set_json(s: &Option<pb::ObjectSet>) -> Value {
    let s = s.clone().unwrap_or_default();
    json!({"cluster_id": s.cluster_id, "store": s.store, "prefix": s.prefix})
}

pub fn transfer_json(t: &pb::TransferStatus) -> Value {
    json!({
        "transfer_id": t.transfer_id,
        "state": pb::TransferState::name_of(t.state),
        "source": set_json(&t.source),
        "target": set_json(&t.target),
        "counts": counts_json(&t.counts.unwrap_or_default()),
        "bytes_relayed": t.bytes_relayed,
        "rate_bytes_per_sec": t.rate_bytes_per_sec,
        "eta_ms": t.eta_ms,
        "error": t.error,
        "started_at_unix_ms": t.started_at_unix_ms,
        "finished_at_unix_ms": t.finished_at_unix_ms,
    })
}

/// `12.3 MiB` style sizes for people.
/// Text that came from a file or a peer, safe for a terminal: control
/// characters (escape sequences, carriage returns, bells) are shown escaped
/// (`\u{1b}`) instead of acting on the terminal.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns_columns() {
        let t = super::table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1");
    }
}
