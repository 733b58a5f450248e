use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::BackupStore;

/// A one-shot backup of an EtcdCluster: a snapshot of its database taken from one member, uploaded to an
/// object store and checked there. It is taken once: the spec cannot change, and a backup that ended
/// (Succeeded or Failed) is never taken again; create a new EtcdBackup for a new snapshot.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "etcd.cloud.io",
    version = "v1",
    kind = "EtcdBackup",
    namespaced,
    shortname = "etcdbackup",
    category = "all",
    status = "EtcdBackupStatus",
    derive = "PartialEq",
    doc = "EtcdBackup is one snapshot of an EtcdCluster's data, uploaded to an object store and verified there.",
    validation = Rule::new("self.spec == oldSelf.spec").message("spec: a backup is taken once and its spec cannot change; create a new EtcdBackup").reason(Reason::FieldValueForbidden),
    printcolumn = r#"{"name":"Cluster", "type":"string", "jsonPath":".spec.clusterName", "description":"The EtcdCluster backed up"}"#,
    printcolumn = r#"{"name":"Phase", "type":"string", "jsonPath":".status.phase", "description":"Pending, Running, Succeeded or Failed"}"#,
    printcolumn = r#"{"name":"Size", "type":"string", "jsonPath":".status.size", "description":"Size of the stored snapshot"}"#,
    printcolumn = r#"{"name":"Revision", "type":"integer", "jsonPath":".status.revision", "description":"Every write up to this revision is in the snapshot"}"#,
    printcolumn = r#"{"name":"Member", "type":"string", "jsonPath":".status.member", "description":"The member the snapshot was taken from", "priority":1}"#,
    printcolumn = r#"{"name":"Location", "type":"string", "jsonPath":".status.location", "priority":1}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupSpec {
    /// The EtcdCluster to back up, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub cluster_name: String,

    /// Where the snapshot goes.
    pub store: BackupStore,

    /// Write the key `/etcd-op/canary/<backup name>` (its value: the backup's UID) just before the snapshot,
    /// so that a restore drill can prove the restored data holds what was written last. Schedules with a
    /// drill set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,

    /// Take the snapshot from this member (`<cluster>-<ordinal>`), whether or not the cluster has quorum:
    /// how the operator copies a survivor's data before a recovery. Unset, the most caught-up healthy follower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub member: Option<String>,
}

/// The key a backup with `canary` writes just before its snapshot.
pub fn canary_key(backup_name: &str) -> String {
    format!("/etcd-op/canary/{backup_name}")
}

/// Where a backup is in its life. Succeeded and Failed are final.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// Waiting for the cluster to have a member to take the snapshot from.
    Pending,
    /// The snapshot is streaming to the store, or being checked there.
    Running,
    /// The snapshot is in the store and its hash was checked there.
    Succeeded,
    /// The backup failed; `message` says why. It is not tried again.
    Failed,
}

impl BackupPhase {
    pub fn is_final(self) -> bool {
        matches!(self, BackupPhase::Succeeded | BackupPhase::Failed)
    }
}

/// What the backup did, and what a restore needs to use and trust the snapshot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Why the backup is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The stored snapshot, as `s3://<bucket>/<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The object's key in the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Bytes stored: etcd's database followed by its sha256, as etcd streams a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// `size_bytes` for people (KiB, MiB, GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// sha256 of the stored object, hex: a download that hashes otherwise is not this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The member's revision before the snapshot began: every write up to it is in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The member's raft index before the snapshot began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<i64>,
    /// The member's raft term before the snapshot began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_term: Option<i64>,
    /// The etcd cluster ID (hex) of the cluster the snapshot came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_cluster_id: Option<String>,
    /// The etcd version of the member the snapshot came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_version: Option<String>,
    /// The member the snapshot came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Keys in the stored snapshot, every bucket counted, as `etcdutl snapshot status` read them in the
    /// verification of the stored object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_keys: Option<i64>,
    /// The canary written just before the snapshot, when `canary` is set: its revision is in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<i64>,
    /// `Complete` once the backup ended, True when it succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
