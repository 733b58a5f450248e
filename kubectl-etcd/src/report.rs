//! What `status` and `members` show: an EtcdCluster's status joined with what each member says of its
//! database, as plain data (for `-o json|yaml`) and as tables.

use std::fmt::Write;

use etcd_op_api::v1::{DefragmentationRecord, EtcdCluster};
use kube::ResourceExt;
use serde::Serialize;

/// What a member said about its database through a port-forward, or why it could not be asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveFigures {
    pub db_size_bytes: Option<i64>,
    pub db_size_in_use_bytes: Option<i64>,
    pub quota_bytes: Option<u64>,
    pub unreachable: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub name: String,
    pub namespace: String,
    pub phase: Option<String>,
    pub size: i32,
    pub ready_members: i32,
    pub version: Option<String>,
    pub leader: Option<String>,
    pub next_step: Option<String>,
    pub next_step_reason: Option<String>,
    pub conditions: Vec<ConditionLine>,
    pub members: Vec<MemberReport>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberReport {
    pub name: String,
    pub id: Option<String>,
    /// leader, follower or learner.
    pub role: String,
    pub version: Option<String>,
    pub healthy: bool,
    pub alarms: Vec<String>,
    pub db_size_bytes: Option<i64>,
    pub db_size_in_use_bytes: Option<i64>,
    pub quota_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    pub last_defragmentation: Option<DefragmentationRecord>,
}

/// The report of `ec`, with `live` figures by member name.
pub fn report(ec: &EtcdCluster, live: &[(String, LiveFigures)]) -> ClusterReport {
    let status = ec.status.clone().unwrap_or_default();
    let figures = |name: &str| live.iter().find(|(n, _)| n == name).map(|(_, f)| f.clone()).unwrap_or_default();
    ClusterReport {
        name: ec.name_any(),
        namespace: ec.namespace().unwrap_or_default(),
        phase: status.phase.map(|p| format!("{p:?}")),
        size: ec.spec.size,
        ready_members: status.ready_members,
        version: status.current_version.clone(),
        leader: status.leader.clone(),
        next_step: status.next_step.as_ref().map(|s| s.action.clone()),
        next_step_reason: status.next_step.as_ref().map(|s| s.reason.clone()),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionLine {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        members: status
            .members
            .iter()
            .map(|m| {
                let live = figures(&m.name);
                let role = if m.learner {
                    "learner"
                } else if status.leader.as_deref() == Some(m.name.as_str()) {
                    "leader"
                } else {
                    "follower"
                };
                MemberReport {
                    name: m.name.clone(),
                    id: m.id.clone(),
                    role: role.to_string(),
                    version: m.version.clone(),
                    healthy: m.healthy,
                    alarms: m.alarms.clone(),
                    db_size_bytes: live.db_size_bytes,
                    db_size_in_use_bytes: live.db_size_in_use_bytes,
                    quota_bytes: live.quota_bytes,
                    unreachable: live.unreachable,
                    last_defragmentation: m.last_defragmentation.clone(),
                }
            })
            .collect(),
    }
}

/// Bytes as a person reads them: `512 B`, `3.2 MiB`, `1.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn or_dash(value: Option<String>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or_else(|| "-".to_string())
}

/// Rows laid out in columns two spaces apart, as kubectl prints them.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let lines = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>()).chain(rows.iter().cloned());
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

pub fn members_table(report: &ClusterReport) -> String {
    let rows: Vec<Vec<String>> = report
        .members
        .iter()
        .map(|m| {
            let size = |bytes: Option<i64>| bytes.and_then(|b| u64::try_from(b).ok()).map(human_bytes);
            vec![
                m.name.clone(),
                or_dash(m.id.clone()),
                m.role.clone(),
                or_dash(m.version.clone()),
                m.healthy.to_string(),
                or_dash(size(m.db_size_bytes)),
                or_dash(size(m.db_size_in_use_bytes)),
                or_dash(m.quota_bytes.map(human_bytes)),
                or_dash(Some(m.alarms.join(","))),
                or_dash(m.last_defragmentation.as_ref().map(|d| format!("{} ({})", d.time.0, d.reason))),
            ]
        })
        .collect();
    let mut out = table(
        &["MEMBER", "ID", "ROLE", "VERSION", "HEALTHY", "DB SIZE", "IN USE", "QUOTA", "ALARMS", "LAST DEFRAGMENTATION"],
        &rows,
    );
    for m in &report.members {
        if let Some(why) = &m.unreachable {
            let _ = writeln!(out, "{}: database figures unavailable: {why}", m.name);
        }
    }
    out
}

pub fn status_text(report: &ClusterReport) -> String {
    let mut out = table(
        &["CLUSTER", "NAMESPACE", "PHASE", "READY", "VERSION", "LEADER"],
        &[vec![
            report.name.clone(),
            report.namespace.clone(),
            or_dash(report.phase.clone()),
            format!("{}/{}", report.ready_members, report.size),
            or_dash(report.version.clone()),
            or_dash(report.leader.clone()),
        ]],
    );
    let _ = writeln!(
        out,
        "\nNEXT STEP: {}: {}\n",
        or_dash(report.next_step.clone()),
        or_dash(report.next_step_reason.clone())
    );
    out.push_str(&members_table(report));
    let conditions: Vec<Vec<String>> = report
        .conditions
        .iter()
        .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()])
        .collect();
    out.push('\n');
    out.push_str(&table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &conditions));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_op_api::v1::{EtcdClusterStatus, MemberStatus, NextStep};

    fn cluster() -> EtcdCluster {
        let spec = serde_json::from_value(serde_json::json!({"size": 3, "version": "3.6.16"})).expect("a spec");
        let mut ec = EtcdCluster::new("demo", spec);
        ec.metadata.namespace = Some("prod".into());
        let member = |name: &str, learner: bool| MemberStatus {
            name: name.into(),
            id: Some(format!("{name}-id")),
            version: Some("3.6.16".into()),
            learner,
            healthy: true,
            ..MemberStatus::default()
        };
        ec.status = Some(EtcdClusterStatus {
            ready_members: 2,
            leader: Some("demo-1".into()),
            current_version: Some("3.6.16".into()),
            members: vec![member("demo-0", false), member("demo-1", false), member("demo-2", true)],
            next_step: Some(NextStep { action: "PromoteLearner".into(), reason: "learner demo-2 caught up".into() }),
            ..EtcdClusterStatus::default()
        });
        ec
    }

    #[test]
    fn members_carry_their_role_and_the_figures_their_etcd_gave() {
        let live = vec![(
            "demo-0".to_string(),
            LiveFigures {
                db_size_bytes: Some(3 << 20),
                db_size_in_use_bytes: Some(1 << 20),
                quota_bytes: Some(64 << 20),
                unreachable: None,
            },
        )];
        let report = report(&cluster(), &live);
        let roles: Vec<&str> = report.members.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["follower", "leader", "learner"]);
        assert_eq!(report.members[0].db_size_bytes, Some(3 << 20));
        assert_eq!(report.members[1].db_size_bytes, None, "a member not asked has no figures");
        let text = status_text(&report);
        assert!(text.contains("demo-0  demo-0-id  follower  3.6.16   true     3.0 MiB  1.0 MiB  64.0 MiB"), "{text}");
        assert!(text.contains("NEXT STEP: PromoteLearner: learner demo-2 caught up"), "{text}");
        assert!(text.contains("2/3"), "{text}");
    }

    #[test]
    fn a_member_that_could_not_be_asked_says_why() {
        let live =
            vec![("demo-2".to_string(), LiveFigures { unreachable: Some("no pod".into()), ..LiveFigures::default() })];
        let text = members_table(&report(&cluster(), &live));
        assert!(text.contains("demo-2: database figures unavailable: no pod"), "{text}");
    }

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
