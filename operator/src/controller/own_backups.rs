//! The backups the operator takes of a cluster for itself, into spec.backupStore: the survivors' copies
//! before a recovery (spec.quorumLoss) and the backup before a minor upgrade. What is known of them, for the
//! planner, and how one is asked for. They are EtcdBackups without an owner: the last copies of a cluster's
//! data outlive it.

use std::collections::BTreeMap;

use etcd_op_api::v1::{BackupPhase, EtcdBackup, EtcdBackupSpec, EtcdCluster, QuorumLossAction, RecoveryPhase};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta};

use super::Context;
use super::act::create_if_absent;
use super::error::Error;
use super::model::{CopyState, QuorumLoss, Recovery, RescueCopy};
use super::recovery::{LABEL_RESCUE_CLUSTER_ID, LABEL_RESCUE_OF};
use super::report::AVAILABLE;

/// On a backup taken before a minor upgrade: the cluster upgraded.
pub const LABEL_BEFORE_UPGRADE_OF: &str = "etcd.cloud.io/before-upgrade-of";
/// On a backup taken before a minor upgrade: the release upgraded to, `MAJOR.MINOR`.
pub const LABEL_UPGRADE_TO: &str = "etcd.cloud.io/upgrade-to";

/// What the planner needs to know of the cluster's own backups and of a recovery under way.
pub struct OwnBackups {
    pub quorum_loss: QuorumLoss,
    pub recovery: Option<Recovery>,
    pub upgrade_backups: Option<BTreeMap<(u32, u32), CopyState>>,
}

/// Lists the namespace's EtcdBackups only when spec.quorumLoss recovers or spec.backupStore is set.
pub async fn observe(ctx: &Context, ec: &EtcdCluster) -> Result<OwnBackups, Error> {
    let status = ec.status.clone().unwrap_or_default();
    let cluster_id = status.cluster_id.as_deref().and_then(|id| u64::from_str_radix(id, 16).ok());
    let recovery = status.recovery.as_ref().filter(|r| r.phase == RecoveryPhase::Restoring).map(|r| Recovery {
        source: r.source.clone(),
        token: r.token.clone(),
        old_cluster_id: r.old_cluster_id.as_deref().and_then(|id| u64::from_str_radix(id, 16).ok()),
    });
    let unavailable_since = status
        .conditions
        .iter()
        .find(|c| c.type_ == AVAILABLE && c.status == "False")
        .map(|c| c.last_transition_time.0.as_second());
    let mut quorum_loss = QuorumLoss { cluster_id, ..QuorumLoss::default() };
    if let Some(policy) = &ec.spec.quorum_loss {
        quorum_loss.action = policy.action;
        quorum_loss.after_secs = u64::try_from(policy.after_seconds).unwrap_or(0);
        quorum_loss.unavailable_for_secs =
            unavailable_since.map_or(0, |since| u64::try_from(Timestamp::now().as_second() - since).unwrap_or(0));
    }
    if quorum_loss.action == QuorumLossAction::Wait && ec.spec.backup_store.is_none() {
        return Ok(OwnBackups { quorum_loss, recovery, upgrade_backups: None });
    }
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let backups = Api::<EtcdBackup>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::KubeRead { what: format!("EtcdBackups in {namespace}"), source })?;
    let name = ec.name_any();
    let of_cluster: Vec<&EtcdBackup> = backups.items.iter().filter(|b| b.spec.cluster_name == name).collect();
    let this_outage = cluster_id.map_or_else(|| "0".to_string(), |id| format!("{id:x}"));
    quorum_loss.rescue_copies = of_cluster
        .iter()
        .filter(|b| b.labels().get(LABEL_RESCUE_CLUSTER_ID) == Some(&this_outage))
        .filter_map(|b| Some((b.spec.member.clone()?, RescueCopy { backup: b.name_any(), state: state_of(b) })))
        .collect();
    quorum_loss.latest_backup = of_cluster
        .iter()
        .filter(|b| !b.labels().contains_key(LABEL_RESCUE_OF))
        .filter(|b| b.status.as_ref().is_some_and(|s| s.phase == Some(BackupPhase::Succeeded)))
        .max_by_key(|b| b.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0))
        .map(|b| b.name_any());
    let upgrade_backups = ec.spec.backup_store.as_ref().map(|_| {
        of_cluster
            .iter()
            .filter(|b| b.labels().get(LABEL_BEFORE_UPGRADE_OF) == Some(&name))
            .filter_map(|b| Some((release_of(b.labels().get(LABEL_UPGRADE_TO)?)?, state_of(b))))
            .collect()
    });
    Ok(OwnBackups { quorum_loss, recovery, upgrade_backups })
}

/// `3.7` as (3, 7).
fn release_of(label: &str) -> Option<(u32, u32)> {
    let (major, minor) = label.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn state_of(backup: &EtcdBackup) -> CopyState {
    let status = backup.status.clone().unwrap_or_default();
    let number = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    match status.phase {
        Some(BackupPhase::Succeeded) => {
            CopyState::Succeeded { raft_term: number(status.raft_term), raft_index: number(status.raft_index) }
        }
        Some(BackupPhase::Failed) => CopyState::Failed(status.message.unwrap_or_default()),
        _ => CopyState::Running,
    }
}

/// Asks for a backup of the cluster into spec.backupStore, from `member` when named.
pub async fn create(
    ctx: &Context,
    ec: &EtcdCluster,
    name: &str,
    labels: &[(&str, String)],
    member: Option<&String>,
) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let store = ec
        .spec
        .backup_store
        .clone()
        .ok_or_else(|| Error::StepNotPossible { step: "backup", why: "spec.backupStore names no store".into() })?;
    let backup = EtcdBackup {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.clone()),
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect()),
            ..ObjectMeta::default()
        },
        spec: EtcdBackupSpec { cluster_name: ec.name_any(), store, canary: false, member: member.cloned() },
        status: None,
    };
    create_if_absent(ctx, &namespace, backup).await.map(|_| ())
}

/// Asks for the backup taken before the upgrade to `major.minor`.
pub async fn back_up_before_upgrade(ctx: &Context, ec: &EtcdCluster, name: &str, to: (u32, u32)) -> Result<(), Error> {
    let labels = [(LABEL_BEFORE_UPGRADE_OF, ec.name_any()), (LABEL_UPGRADE_TO, format!("{}.{}", to.0, to.1))];
    create(ctx, ec, name, &labels, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_label_reads_as_major_and_minor() {
        assert_eq!(release_of("3.7"), Some((3, 7)));
        assert_eq!(release_of("3"), None);
        assert_eq!(release_of("3.x"), None);
    }
}
