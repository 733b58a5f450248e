//! What the plugin asks the operator to do: a defragmentation (an annotation the planner reads) and a
//! snapshot (an EtcdBackup to the cluster's own store). The operator does the work, in its safe order.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use etcd_op_api::v1::{
    ANNOTATION_DEFRAGMENT, ANNOTATION_DEFRAGMENT_MEMBER, BackupPhase, EtcdBackup, EtcdBackupSpec, EtcdCluster,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};

const POLL: Duration = Duration::from_secs(2);

/// Asks for a defragmentation of `member` (every member when `None`); returns the time asked, whole seconds.
pub async fn request_defragmentation(
    clusters: &Api<EtcdCluster>,
    cluster: &str,
    member: Option<&str>,
) -> Result<Timestamp> {
    let ec = clusters.get(cluster).await.with_context(|| format!("reading EtcdCluster {cluster}"))?;
    if let Some(member) = member
        && !ec.status.iter().flat_map(|s| &s.members).any(|m| m.name == member)
    {
        bail!("EtcdCluster {cluster} has no member {member}");
    }
    let asked = Timestamp::from_second(Timestamp::now().as_second()).context("the time now")?;
    let patch = serde_json::json!({"metadata": {"annotations": {
        ANNOTATION_DEFRAGMENT: asked.to_string(),
        ANNOTATION_DEFRAGMENT_MEMBER: member,
    }}});
    clusters
        .patch(cluster, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating EtcdCluster {cluster}"))?;
    Ok(asked)
}

/// Waits, at most `timeout`, until every member asked for has been defragmented since `asked`.
pub async fn wait_for_defragmentation(
    clusters: &Api<EtcdCluster>,
    cluster: &str,
    member: Option<&str>,
    asked: Timestamp,
    timeout: Duration,
) -> Result<EtcdCluster> {
    let deadline = Instant::now() + timeout;
    loop {
        let ec = clusters.get(cluster).await.with_context(|| format!("reading EtcdCluster {cluster}"))?;
        let pending = ec.members_not_defragmented_since(member, asked);
        if pending.is_empty() {
            return Ok(ec);
        }
        if Instant::now() >= deadline {
            let step = ec.status.as_ref().and_then(|s| s.next_step.as_ref());
            bail!(
                "not defragmented after {timeout:?}: {}; the operator's next step: {}",
                pending.join(", "),
                step.map_or_else(|| "unknown".to_string(), |s| format!("{}: {}", s.action, s.reason))
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Creates an EtcdBackup of `cluster` to its spec.backupStore, named `name`.
pub async fn request_snapshot(
    clusters: &Api<EtcdCluster>,
    backups: &Api<EtcdBackup>,
    cluster: &str,
    name: &str,
) -> Result<EtcdBackup> {
    let ec = clusters.get(cluster).await.with_context(|| format!("reading EtcdCluster {cluster}"))?;
    let Some(store) = ec.spec.backup_store.clone() else {
        bail!("EtcdCluster {cluster} names no spec.backupStore: set one, or create an EtcdBackup naming its store");
    };
    let backup =
        EtcdBackup::new(name, EtcdBackupSpec { cluster_name: cluster.to_string(), store, canary: false, member: None });
    backups.create(&PostParams::default(), &backup).await.with_context(|| format!("creating EtcdBackup {name}"))
}

/// Waits, at most `timeout`, until the backup ends; a failed backup is an error carrying its message.
pub async fn wait_for_snapshot(backups: &Api<EtcdBackup>, name: &str, timeout: Duration) -> Result<EtcdBackup> {
    let deadline = Instant::now() + timeout;
    loop {
        let backup = backups.get(name).await.with_context(|| format!("reading EtcdBackup {name}"))?;
        let status = backup.status.as_ref();
        match status.and_then(|s| s.phase) {
            Some(BackupPhase::Succeeded) => return Ok(backup),
            Some(BackupPhase::Failed) => {
                bail!("EtcdBackup {name} failed: {}", status.and_then(|s| s.message.clone()).unwrap_or_default())
            }
            _ if Instant::now() >= deadline => bail!("EtcdBackup {name} has not ended after {timeout:?}"),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_op_api::v1::{DefragmentationRecord, EtcdClusterStatus, MemberStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("a time")
    }

    fn cluster(defragmented: &[(&str, Option<i64>)]) -> EtcdCluster {
        let spec = serde_json::from_value(serde_json::json!({"size": 3})).expect("a spec");
        let mut ec = EtcdCluster::new("demo", spec);
        ec.status = Some(EtcdClusterStatus {
            members: defragmented
                .iter()
                .map(|(name, second)| MemberStatus {
                    name: name.to_string(),
                    last_defragmentation: second.map(|s| DefragmentationRecord {
                        time: MicroTime(at(s)),
                        size_before: 10,
                        size_after: Some(5),
                        reason: "Requested".into(),
                    }),
                    ..MemberStatus::default()
                })
                .collect(),
            ..EtcdClusterStatus::default()
        });
        ec
    }

    #[test]
    fn a_request_is_pending_for_each_member_not_defragmented_since() {
        let ec = cluster(&[("demo-0", Some(100)), ("demo-1", Some(50)), ("demo-2", None)]);
        assert_eq!(ec.members_not_defragmented_since(None, at(100)), ["demo-1", "demo-2"]);
        assert_eq!(ec.members_not_defragmented_since(Some("demo-0"), at(100)), Vec::<String>::new());
        assert_eq!(ec.members_not_defragmented_since(Some("demo-2"), at(100)), ["demo-2"]);
    }
}
