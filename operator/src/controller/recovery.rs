//! The I/O of spec.quorumLoss (the decisions are in `plan::recovery`; what is known of the copies is observed
//! by `own_backups`): the survivors' copies, the deletion of the lost cluster's members, and status.recovery.

use etcd_op_api::v1::{EtcdCluster, RecoveryPhase, RecoveryStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::Context;
use super::act::delete_if_present;
use super::error::Error;
use super::own_backups;

/// On a rescue copy: the cluster whose survivor it copies.
pub const LABEL_RESCUE_OF: &str = "etcd.cloud.io/rescue-of";
/// On a rescue copy: the etcd cluster ID (hex) of the cluster that lost quorum. Copies of an earlier
/// outage of the same EtcdCluster carry another.
pub const LABEL_RESCUE_CLUSTER_ID: &str = "etcd.cloud.io/rescue-cluster-id";

/// The copy of `member`'s data for the cluster of `cluster_id`.
pub fn rescue_copy_name(member: &str, cluster_id: Option<u64>) -> String {
    format!("{member}-rescue-{:x}", cluster_id.unwrap_or(0))
}

/// Creates the copy of each member's data: an EtcdBackup from that member into spec.backupStore.
pub async fn copy_survivors(ctx: &Context, ec: &EtcdCluster, members: &[String]) -> Result<(), Error> {
    let cluster_id = ec.status.as_ref().and_then(|s| s.cluster_id.clone()).unwrap_or_else(|| "0".into());
    let recorded = u64::from_str_radix(&cluster_id, 16).ok();
    for member in members {
        let labels = [(LABEL_RESCUE_OF, ec.name_any()), (LABEL_RESCUE_CLUSTER_ID, cluster_id.clone())];
        own_backups::create(ctx, ec, &rescue_copy_name(member, recorded), &labels, Some(member)).await?;
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
