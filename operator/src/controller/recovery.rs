//! The I/O of spec.quorumLoss (the decisions are in `plan::recovery`): what is known of the survivors' copies
//! and the cluster's backups, the copies themselves (EtcdBackups taken from a named member into spec.backupStore), and the deletion
//! of the lost cluster's members.

use std::collections::BTreeMap;

use etcd_op_api::v1::{
    BackupPhase, EtcdBackup, EtcdBackupSpec, EtcdCluster, QuorumLossAction, RecoveryPhase, RecoveryStatus,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta};

use super::Context;
use super::act::{create_if_absent, delete_if_present};
use super::error::Error;
use super::model::{QuorumLoss, Recovery, RescueCopy, RescueState};
use super::report::AVAILABLE;

/// On a rescue copy: the cluster whose survivor it copies.
pub const LABEL_RESCUE_OF: &str = "etcd.cloud.io/rescue-of";
/// On a rescue copy: the etcd cluster ID (hex) of the cluster that lost quorum. Copies of an earlier
/// outage of the same EtcdCluster carry another.
pub const LABEL_RESCUE_CLUSTER_ID: &str = "etcd.cloud.io/rescue-cluster-id";

/// The copy of `member`'s data for the cluster of `cluster_id`.
pub fn rescue_copy_name(member: &str, cluster_id: Option<u64>) -> String {
    format!("{member}-rescue-{:x}", cluster_id.unwrap_or(0))
}

/// What spec.quorumLoss needs to decide, and the recovery under way if any. Nothing is listed for a cluster
/// whose policy is to wait.
pub async fn observe(ctx: &Context, ec: &EtcdCluster) -> Result<(QuorumLoss, Option<Recovery>), Error> {
    let status = ec.status.clone().unwrap_or_default();
    let cluster_id = status.cluster_id.as_deref().and_then(|id| u64::from_str_radix(id, 16).ok());
    let recovery = status.recovery.as_ref().filter(|r| r.phase == RecoveryPhase::Restoring).map(|r| Recovery {
        source: r.source.clone(),
        token: r.token.clone(),
        old_cluster_id: r.old_cluster_id.as_deref().and_then(|id| u64::from_str_radix(id, 16).ok()),
    });
    let Some(policy) = &ec.spec.quorum_loss else {
        return Ok((QuorumLoss { cluster_id, ..QuorumLoss::default() }, recovery));
    };
    let unavailable_since = status
        .conditions
        .iter()
        .find(|c| c.type_ == AVAILABLE && c.status == "False")
        .map(|c| c.last_transition_time.0.as_second());
    let mut quorum_loss = QuorumLoss {
        action: policy.action,
        after_secs: u64::try_from(policy.after_seconds).unwrap_or(0),
        unavailable_for_secs: unavailable_since
            .map_or(0, |since| u64::try_from(Timestamp::now().as_second() - since).unwrap_or(0)),
        cluster_id,
        ..QuorumLoss::default()
    };
    if policy.action == QuorumLossAction::Wait {
        return Ok((quorum_loss, recovery));
    }
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let backups = Api::<EtcdBackup>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::KubeRead { what: format!("EtcdBackups in {namespace}"), source })?;
    let name = ec.name_any();
    let of_cluster = backups.items.into_iter().filter(|b| b.spec.cluster_name == name);
    let (rescue, taken): (Vec<EtcdBackup>, Vec<EtcdBackup>) =
        of_cluster.partition(|b| b.labels().contains_key(LABEL_RESCUE_OF));
    let this_outage = cluster_id.map_or_else(|| "0".to_string(), |id| format!("{id:x}"));
    quorum_loss.rescue_copies = rescue
        .iter()
        .filter(|b| b.labels().get(LABEL_RESCUE_CLUSTER_ID) == Some(&this_outage))
        .filter_map(|b| Some((b.spec.member.clone()?, RescueCopy { backup: b.name_any(), state: rescue_state(b) })))
        .collect::<BTreeMap<_, _>>();
    quorum_loss.latest_backup = taken
        .iter()
        .filter(|b| b.status.as_ref().is_some_and(|s| s.phase == Some(BackupPhase::Succeeded)))
        .max_by_key(|b| b.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0))
        .map(ResourceExt::name_any);
    Ok((quorum_loss, recovery))
}

fn rescue_state(backup: &EtcdBackup) -> RescueState {
    let status = backup.status.clone().unwrap_or_default();
    let number = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    match status.phase {
        Some(BackupPhase::Succeeded) => {
            RescueState::Succeeded { raft_term: number(status.raft_term), raft_index: number(status.raft_index) }
        }
        Some(BackupPhase::Failed) => RescueState::Failed(status.message.unwrap_or_default()),
        _ => RescueState::Running,
    }
}

/// Creates the copy of each member's data: an EtcdBackup from that member into spec.backupStore. The
/// copies have no owner: they outlive the cluster, as the last copies of its data must.
pub async fn copy_survivors(ctx: &Context, ec: &EtcdCluster, members: &[String]) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let store = ec.spec.backup_store.clone().ok_or_else(|| Error::StepNotPossible {
        step: "CopySurvivors",
        why: "spec.backupStore names no store".into(),
    })?;
    let cluster_id = ec.status.as_ref().and_then(|s| s.cluster_id.clone()).unwrap_or_else(|| "0".into());
    let recorded = u64::from_str_radix(&cluster_id, 16).ok();
    for member in members {
        let backup = EtcdBackup {
            metadata: ObjectMeta {
                name: Some(rescue_copy_name(member, recorded)),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([
                    (LABEL_RESCUE_OF.to_string(), ec.name_any()),
                    (LABEL_RESCUE_CLUSTER_ID.to_string(), cluster_id.clone()),
                ])),
                ..ObjectMeta::default()
            },
            spec: EtcdBackupSpec {
                cluster_name: ec.name_any(),
                store: store.clone(),
                canary: false,
                member: Some(member.clone()),
            },
            status: None,
        };
        create_if_absent(ctx, &namespace, backup).await?;
    }
    Ok(())
}

/// Deletes the pods and volumes of the lost cluster's members.
pub async fn clear(ctx: &Context, ec: &EtcdCluster, members: &[String]) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    for member in members {
        delete_if_present::<Pod>(ctx, &namespace, member).await?;
        delete_if_present::<PersistentVolumeClaim>(ctx, &namespace, member).await?;
    }
    Ok(())
}

/// status.recovery after this reconcile: begun by `begin`, ended when the restored cluster (under a new ID)
/// has a leader, else as it was.
pub fn status_after(
    previous: Option<&RecoveryStatus>,
    begin: Option<RecoveryStatus>,
    leading_cluster_id: Option<u64>,
    now: Timestamp,
) -> Option<RecoveryStatus> {
    if begin.is_some() {
        return begin;
    }
    let mut recovery = previous?.clone();
    if recovery.phase == RecoveryPhase::Restoring
        && let Some(id) = leading_cluster_id.map(|id| format!("{id:x}"))
        && recovery.old_cluster_id.as_ref() != Some(&id)
    {
        recovery.phase = RecoveryPhase::Succeeded;
        recovery.new_cluster_id = Some(id);
        recovery.completion_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    }
    Some(recovery)
}
