use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The etcd version a cluster gets when its spec names none. The only place this default is set.
pub const DEFAULT_ETCD_VERSION: &str = "3.6.16";
/// Members of a cluster whose spec names no size.
pub const DEFAULT_SIZE: i32 = 3;
/// Where member images come from unless `spec.podTemplate.imageRepository` says otherwise. Laid out as the
/// upstream etcd images: `/usr/local/bin/etcd`, tagged `v<version>`.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "quay.io/coreos/etcd";
/// Size of each member's volume unless `spec.storage.volumeClaimTemplate.size` says otherwise.
pub const DEFAULT_STORAGE_SIZE: &str = "1Gi";
/// Asks the operator to defragment every member of a cluster (or the one [`ANNOTATION_DEFRAGMENT_MEMBER`]
/// names), each once after the time this annotation holds (RFC 3339), followers first and the leader last.
/// `kubectl etcd defrag` sets it.
pub const ANNOTATION_DEFRAGMENT: &str = "etcd.cloud.io/defragment";
pub const ANNOTATION_DEFRAGMENT_MEMBER: &str = "etcd.cloud.io/defragment-member";
pub const MIN_SIZE: i32 = 1;
pub const MAX_SIZE: i32 = 9;

/// The desired state of an etcd cluster managed by etcd-op.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "etcd.cloud.io",
    version = "v1",
    kind = "EtcdCluster",
    namespaced,
    shortname = "etcd",
    category = "all",
    status = "EtcdClusterStatus",
    derive = "PartialEq",
    doc = "EtcdCluster is an etcd cluster run and kept healthy by etcd-op: members are added, removed, replaced and upgraded one safe step at a time.",
    // Names are checked when a cluster is created (a name never changes): a cluster created before a rule
    // existed can still be updated and deleted.
    validation = Rule::new("oldSelf.hasValue() || self.metadata.name.size() <= 56").optional_old_self(true).message("metadata.name: at most 56 characters: the cluster's <name>-client Service and its members' pods and volumes (<name>-<ordinal>) derive their names from it, and such a name has at most 63"),
    validation = Rule::new("oldSelf.hasValue() || self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").optional_old_self(true).message("metadata.name: a DNS label that starts with a letter (lowercase letters, digits and '-', no '.'): it names the cluster's Services"),
    // Downgrades are refused, except back to a version that members still run: the way out of a rollout
    // that cannot progress (an image that does not exist, a release that crashes).
    validation = Rule::new("self.spec.version == oldSelf.spec.version || int(self.spec.version.split('.')[1]) >= int(oldSelf.spec.version.split('.')[1]) || (has(self.status) && has(self.status.members) && self.status.members.exists(m, has(m.version) && m.version == self.spec.version))").message("spec.version: downgrading etcd to an older minor release is not supported, except back to the version members still run").reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.spec.version == oldSelf.spec.version || int(self.spec.version.split('.')[1]) != int(oldSelf.spec.version.split('.')[1]) || int(self.spec.version.split('.')[2]) >= int(oldSelf.spec.version.split('.')[2]) || (has(self.status) && has(self.status.members) && self.status.members.exists(m, has(m.version) && m.version == self.spec.version))").message("spec.version: downgrading etcd to an older patch release is not supported, except back to the version members still run").reason(Reason::FieldValueForbidden),
    // TLS is chosen at creation: turning it on or off for a running cluster takes a member-by-member
    // migration the operator does not do yet, and a half-changed cluster would stop talking to itself.
    validation = Rule::new("(!(has(oldSelf.spec.tls) ? oldSelf.spec.tls.peer.enabled : true) || (has(self.spec.tls) ? self.spec.tls.peer.enabled : true)) && (!(has(oldSelf.spec.tls) ? oldSelf.spec.tls.client.enabled : true) || (has(self.spec.tls) ? self.spec.tls.client.enabled : true))").message("spec.tls: TLS cannot be turned off for a running cluster: clients and peers that rely on it would be exposed; create a new cluster without TLS and move the data").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.spec.storage.emptyDir) || ((has(self.spec.tls) ? self.spec.tls.peer.enabled : true) == (has(oldSelf.spec.tls) ? oldSelf.spec.tls.peer.enabled : true) && (has(self.spec.tls) ? self.spec.tls.client.enabled : true) == (has(oldSelf.spec.tls) ? oldSelf.spec.tls.client.enabled : true))").message("spec.tls: TLS can be turned on for a running cluster on persistent storage only: every member restarts to take it, and a member on emptyDir loses its data when it restarts").reason(Reason::FieldValueForbidden),
    // Where certificates come from is chosen at creation too: members trust the authority they started with.
    validation = Rule::new("(has(self.spec.tls) && has(self.spec.tls.secrets)) == (has(oldSelf.spec.tls) && has(oldSelf.spec.tls.secrets))").message("spec.tls.secrets: where a cluster's certificates come from (the operator's authorities or your Secrets) is chosen when it is created").reason(Reason::FieldValueForbidden),
    validation = Rule::new("has(self.spec.bootstrap) == has(oldSelf.spec.bootstrap) && (!has(self.spec.bootstrap) || self.spec.bootstrap == oldSelf.spec.bootstrap)").message("spec.bootstrap: where a cluster's data comes from is set when it is created and cannot change").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.spec.quorumLoss) || self.spec.quorumLoss.action == 'Wait' || has(self.spec.backupStore)").message("spec.backupStore: recovery copies every surviving member's data to a store before it changes anything; name the store"),
    validation = Rule::new("!has(self.spec.quorumLoss) || self.spec.quorumLoss.action == 'Wait' || !has(self.spec.storage.emptyDir)").message("spec.quorumLoss.action: recovery restores members onto volumes; on emptyDir storage only Wait is possible"),
    validation = Rule::new("!has(self.spec.bootstrap) || !has(self.spec.storage.emptyDir)").message("spec.bootstrap.restore needs persistent storage: a member on emptyDir would lose the restored data at its first restart"),
    validation = Rule::new("oldSelf.hasValue() || !self.metadata.name.endsWith('-client')").optional_old_self(true).message("metadata.name must not end in '-client': <name>-client is the client Service of the cluster named <name>, and two clusters would share it"),
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.readyMembers",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Size", "type":"integer", "jsonPath":".spec.size", "description":"Desired number of members"}"#,
    printcolumn = r#"{"name":"Ready", "type":"integer", "jsonPath":".status.readyMembers", "description":"Members that are healthy voters"}"#,
    printcolumn = r#"{"name":"Version", "type":"string", "jsonPath":".status.currentVersion", "description":"etcd version all members run"}"#,
    printcolumn = r#"{"name":"Available", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Available\")].status", "description":"Whether the cluster has quorum and serves clients"}"#,
    printcolumn = r#"{"name":"Step", "type":"string", "jsonPath":".status.nextStep.action", "description":"What the operator does next", "priority":1}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterSpec {
    /// Number of etcd members, 1 to 9. Odd sizes are recommended: an even size tolerates no more member
    /// failures than the odd size below it (4 members tolerate 1 failure, like 3), so the operator warns about
    /// it with an event. Members are added and removed one at a time through etcd membership changes. Defaults
    /// to 3. `kubectl scale etcdcluster/<name> --replicas=N` sets this field.
    #[serde(default = "default_size")]
    #[schemars(range(min = 1, max = 9))]
    pub size: i32,

    /// etcd version of the members, as MAJOR.MINOR.PATCH (for example 3.6.16). Changing it upgrades the members
    /// one at a time, the leader last. Only upgrade paths etcd supports are accepted: a patch change within the
    /// same minor release, or one minor release up (3.5.x to 3.6.y). Downgrades and skipped minor releases are
    /// refused, and so is a minor upgrade from a patch release older than etcd supports it from (3.5.26 for
    /// 3.6, 3.6.11 for 3.7). Defaults to the operator's default etcd version.
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("self.split('.')[0] == oldSelf.split('.')[0]").message("spec.version: a change of etcd major version is not supported").reason(Reason::FieldValueForbidden))]
    #[x_kube(validation = Rule::new("int(self.split('.')[1]) <= int(oldSelf.split('.')[1]) + 1").message("spec.version: etcd upgrades go one minor release at a time (for example 3.5.x to 3.6.y); upgrade to the next minor release first").reason(Reason::FieldValueForbidden))]
    #[x_kube(validation = Rule::new("!(int(self.split('.')[0]) == 3 && int(self.split('.')[1]) == 6 && int(oldSelf.split('.')[1]) == 5 && int(oldSelf.split('.')[2]) < 26)").message("spec.version: etcd upgrades to 3.6 from 3.5.26 or later only; upgrade to the latest 3.5 patch release first").reason(Reason::FieldValueForbidden))]
    #[x_kube(validation = Rule::new("!(int(self.split('.')[0]) == 3 && int(self.split('.')[1]) == 7 && int(oldSelf.split('.')[1]) == 6 && int(oldSelf.split('.')[2]) < 11)").message("spec.version: etcd upgrades to 3.7 from 3.6.11 or later only; upgrade to the latest 3.6 patch release first").reason(Reason::FieldValueForbidden))]
    pub version: String,

    /// Where each member keeps its data. A volume claim template (the default: one PersistentVolumeClaim of
    /// 1Gi per member, in the default storage class) or an emptyDir. The choice between the two and the storage
    /// class cannot change after creation.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Settings of the members' pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<EtcdPodTemplate>,

    /// What happens to the members' PersistentVolumeClaims when the EtcdCluster is deleted. `Delete` (the
    /// default) removes them with the cluster; `Retain` keeps them (they lose their owner reference) so the
    /// data can be recovered by hand. PVCs of members removed by a scale down are always deleted.
    #[serde(default)]
    pub pvc_retention_policy: PvcRetentionPolicy,

    /// When true the operator keeps observing the cluster and reporting its status but changes nothing: no
    /// member is added, removed, replaced, restarted or upgraded until it is set back to false.
    #[serde(default)]
    pub paused: bool,

    /// Seconds a member may stay unhealthy before the operator removes it and adds a fresh one in its place;
    /// the manager's --member-unhealthy-threshold (300 by default) when unset. A member whose etcd says its
    /// data is gone is replaced at once, and a member that a rollout restarted is never replaced for it: the
    /// rollout halts instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86400))]
    pub member_unhealthy_threshold_seconds: Option<i32>,

    /// What the operator does when every member of a cluster that once formed is gone with its data (no pod
    /// and no volume left). `Halt` (the default) reports `Degraded` with reason `DataLoss`, publishes a
    /// Warning event and creates nothing, so clients never find an empty store where they expected their
    /// data. `StartEmpty` starts a new, empty cluster under the same name.
    #[serde(default)]
    pub on_data_loss: DataLossPolicy,

    /// Transport security of the members. Unset, a new cluster gets mutual TLS on both ports, with
    /// certificates from a certificate authority the operator creates for the cluster: members accept only
    /// peers and clients that present a certificate it signed. The client certificate for your applications
    /// is in the Secret `<name>-client-tls` (`tls.crt`, `tls.key`, `ca.crt`). Clusters created before
    /// etcd-op managed TLS keep running in plaintext. TLS can be turned on for a running cluster on
    /// persistent storage (set `enabled: true`): member by member, while the cluster stays healthy, each
    /// restarts holding the certificates, then moves its peer URL to https, and last requires TLS from
    /// clients. It cannot be turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTls>,

    /// Who may reach the client port, besides the operator, as NetworkPolicy peers (pod and namespace
    /// selectors, IP blocks). Unset, any source may connect, and the client certificate is the gate. The
    /// cluster's NetworkPolicy always admits the peer port from its own members only, and the metrics port
    /// (health and figures, no data) from anywhere. A NetworkPolicy takes effect only where the network
    /// plugin enforces policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<Vec<NetworkPolicyPeer>>,

    /// Where a new cluster's data comes from. Unset, the cluster starts empty. With `restore`, every initial
    /// member's volume is restored from a backup (etcd's own `etcdutl snapshot restore`, which checks the
    /// snapshot's hash) before any member starts, with a new cluster token, so that all of them come up as one
    /// new cluster holding the backup's data. Settable only when the cluster is created; refused on emptyDir
    /// storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,

    /// What the operator does when the cluster loses quorum and stays without it, or when every member of a
    /// formed cluster lost its data. Unset, or `action: Wait`, it reports `Degraded` (`QuorumLost` with the
    /// members that hold data, or `DataLoss`) and waits for a person. Recovery first copies every surviving
    /// member's data to spec.backupStore, so the last copies are never destroyed, then restores every member at once,
    /// with a new cluster token, so the old volumes can never rejoin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_loss: Option<QuorumLossPolicy>,

    /// Where the operator keeps this cluster's own copies: the survivors' data before a recovery
    /// (spec.quorumLoss), as EtcdBackups labelled `etcd.cloud.io/rescue-of` that have no owner and outlive
    /// the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_store: Option<super::BackupStore>,

    /// Keeping the members' databases small. Unset, a member is defragmented when its database file holds
    /// 200Mi of free space, or a quarter of it is free while the file fills 80% of the quota; and a NOSPACE
    /// alarm is reported and left to a person (`noSpace: Alert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceSpec>,
}

/// Defragmentation by need, and what happens when etcd raises NOSPACE.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    #[serde(default)]
    pub defragmentation: DefragmentationSpec,

    /// What the operator does when etcd raises NOSPACE (a database reached its quota; etcd refuses writes).
    /// `Alert` (the default) reports `Degraded` with reason `AlarmNoSpace` and changes nothing. `Recover`
    /// compacts the history up to the current revision (older revisions can no longer be read or watched),
    /// defragments the members one at a time (the leader last), and disarms the alarm once every member's
    /// database is back under 90% of its quota; each step is reported as an event.
    #[serde(default)]
    pub no_space: NoSpacePolicy,
}

/// When a member's database is defragmented: etcd reuses the space of deleted and compacted data but does not
/// give it back to the disk until a defragmentation rewrites the file. One member at a time, followers first
/// and the leader last (after leadership has moved), only while every member is healthy and caught up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefragmentationSpec {
    /// Defragment members by need. False: never, except to recover from NOSPACE with `noSpace: Recover`.
    #[serde(default = "enabled")]
    pub enabled: bool,

    /// A member is defragmented once this much of its database file is free space, as a quantity.
    #[serde(default = "default_reclaimable")]
    #[x_kube(validation = Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))").message("spec.maintenance.defragmentation.reclaimable: a positive quantity, for example 200Mi"))]
    pub reclaimable: Quantity,

    /// A member is also defragmented once this percentage of its database file is free while the file
    /// fills at least `quotaUsePercent` of the member's quota.
    #[serde(default = "default_fragmentation_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub fragmentation_percent: i32,

    /// See `fragmentationPercent`.
    #[serde(default = "default_quota_use_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub quota_use_percent: i32,

    /// The least time between two defragmentations of one member by need, in seconds.
    #[serde(default = "default_min_interval_seconds")]
    #[schemars(range(min = 0, max = 604800))]
    pub min_interval_seconds: i32,
}

impl EtcdCluster {
    /// The members a defragmentation asked for at `asked` still waits for (`member`, or every member when
    /// `None`): those whose last defragmentation is not later than the request.
    pub fn members_not_defragmented_since(
        &self,
        member: Option<&str>,
        asked: k8s_openapi::jiff::Timestamp,
    ) -> Vec<String> {
        self.status
            .iter()
            .flat_map(|s| &s.members)
            .filter(|m| member.is_none_or(|wanted| wanted == m.name))
            .filter(|m| m.last_defragmentation.as_ref().is_none_or(|d| d.time.0 < asked))
            .map(|m| m.name.clone())
            .collect()
    }
}

impl Default for DefragmentationSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            reclaimable: default_reclaimable(),
            fragmentation_percent: default_fragmentation_percent(),
            quota_use_percent: default_quota_use_percent(),
            min_interval_seconds: default_min_interval_seconds(),
        }
    }
}

fn default_reclaimable() -> Quantity {
    Quantity("200Mi".to_string())
}

fn default_fragmentation_percent() -> i32 {
    25
}

fn default_quota_use_percent() -> i32 {
    80
}

fn default_min_interval_seconds() -> i32 {
    600
}

/// What happens when etcd raises NOSPACE.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoSpacePolicy {
    /// Report the alarm and wait for a person.
    #[default]
    Alert,
    /// Compact, defragment every member, and disarm the alarm once space is back.
    Recover,
}

/// How a cluster that lost quorum comes back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuorumLossPolicy {
    /// `Wait` (the default): report and wait. `RecoverFromMember`: restore every member from the copy of the
    /// surviving member with the highest raft term and index; a cluster whose every member lost its data
    /// waits. `RecoverFromBackup`: restore every member from the newest EtcdBackup of the cluster that
    /// succeeded; the same when every member lost its data.
    #[serde(default)]
    pub action: QuorumLossAction,

    /// How long quorum must stay lost (or the data gone) before recovery starts, in seconds: a member that
    /// comes back within it ends the outage without a recovery.
    #[serde(default = "default_recover_after_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub after_seconds: i32,
}

pub const DEFAULT_RECOVER_AFTER_SECONDS: i32 = 300;

fn default_recover_after_seconds() -> i32 {
    DEFAULT_RECOVER_AFTER_SECONDS
}

/// What recovers a cluster that lost quorum.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuorumLossAction {
    /// Report the loss and wait for a person.
    #[default]
    Wait,
    /// Restore every member from the most advanced survivor's data.
    RecoverFromMember,
    /// Restore every member from the newest backup that succeeded.
    RecoverFromBackup,
}

/// How a new cluster gets its first data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Restore the cluster from a backup.
    pub restore: RestoreSource,
}

/// The backup a new cluster is restored from: an EtcdBackup, or a snapshot in a store by its key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.backupName) != has(self.key)").message("spec.bootstrap.restore: name an EtcdBackup (backupName) or a stored snapshot (store and key), one of the two"))]
#[x_kube(validation = Rule::new("has(self.key) == has(self.store) && (has(self.key) || !has(self.sha256))").message("spec.bootstrap.restore: store and key go together, and sha256 with them"))]
pub struct RestoreSource {
    /// An EtcdBackup in the cluster's namespace that succeeded. Its snapshot is fetched from its store with
    /// the store's credentials Secret and checked against the sha256 in its status before it is restored.
    /// A snapshot taken from a newer etcd minor release than the cluster's is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub backup_name: Option<String>,

    /// The store a snapshot is in, for a restore without its EtcdBackup (gone with a deleted namespace, or
    /// taken elsewhere). Its credentials Secret is read in the cluster's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<super::BackupStore>,

    /// The snapshot's object key in the store, as an EtcdBackup's `status.key` records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,

    /// The sha256 (hex) the stored object must hash to, as an EtcdBackup's `status.sha256` records it.
    /// Without it only the hash etcd appended to the snapshot is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// Mutual TLS for the peer port (member to member) and the client port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.secrets) || (has(self.secrets.peer) == (!has(self.peer) || self.peer.enabled))").message("spec.tls.secrets.peer: set it exactly when peer TLS is on"))]
#[x_kube(validation = Rule::new("!has(self.secrets) || (has(self.secrets.server) == (!has(self.client) || self.client.enabled))").message("spec.tls.secrets.server and operator: set them exactly when client TLS is on"))]
#[x_kube(validation = Rule::new("!has(self.authorityRotation) || (!has(self.secrets) && !has(self.issuerRef))").message("spec.tls.authorityRotation rotates the operator's own authorities; with spec.tls.secrets or issuerRef the authorities are yours to rotate"))]
#[x_kube(validation = Rule::new("!has(self.secrets) || !has(self.issuerRef)").message("spec.tls: choose secrets or issuerRef as the certificates' source, not both"))]
pub struct ClusterTls {
    /// TLS between members, on the peer port. Enabled unless set to false. The peer certificates come from
    /// their own authority, so a client certificate can never act as a peer.
    #[serde(default)]
    pub peer: TlsChannel,

    /// TLS for clients, on the client port: clients must present a certificate signed by the cluster's
    /// client authority. Enabled unless set to false.
    #[serde(default)]
    pub client: TlsChannel,

    /// Lifetime of the certificates the operator issues to members and clients, as a number followed by
    /// `m`, `h` or `d` (for example 2160h or 90d). Defaults to 90d. Each is renewed when two thirds of its
    /// life have passed, without restarting etcd: it reads its certificate again on each new connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,5}(m|h|d)$"))]
    #[x_kube(validation = Rule::new("int(self.substring(0, self.size() - 1)) * (self.endsWith('d') ? 1440 : self.endsWith('h') ? 60 : 1) >= 3").message("spec.tls.certificateLifetime: at least 3 minutes"))]
    pub certificate_lifetime: Option<String>,

    /// Set it, or change it, to any new value (a date, say) to rotate the operator's certificate
    /// authorities without downtime: the members first trust the old and the new authority (a rolling
    /// restart, the leader last), then every certificate is issued anew by the new one (no restart), then the
    /// old authority is dropped (a second rolling restart). Client certificates of the old authority stop
    /// working at that last step: take the new one from the `<cluster>-client-tls` Secret before.
    /// `status.tls.authorityRotation` follows the rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub authority_rotation: Option<String>,

    /// cert-manager issues the certificates from this Issuer or ClusterIssuer instead of the operator's own
    /// authorities: the operator creates a cert-manager Certificate for each of `<cluster>-peer-tls`,
    /// `<cluster>-server-tls`, `<cluster>-etcd-op-tls` and `<cluster>-client-tls` (certificateLifetime is
    /// their duration) and cert-manager writes and renews their Secrets. The issuer's `ca.crt` is what members
    /// trust, so use a CA issuer; peers and clients then share that authority. Chosen at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.tls.issuerRef cannot change after creation: the members trust its authority").reason(Reason::FieldValueForbidden))]
    pub issuer_ref: Option<IssuerRef>,

    /// Certificates from Secrets you manage (issued by cert-manager or your own authority) instead of the
    /// operator's own authorities. Chosen at creation; the operator reads these Secrets and never writes
    /// them, so renewing the certificates in them is yours (members pick a renewed certificate up without a
    /// restart). certificateLifetime does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.tls.secrets cannot change after creation: the members run with these Secrets").reason(Reason::FieldValueForbidden))]
    pub secrets: Option<TlsSecrets>,
}

/// Secrets in the cluster's namespace, each in the `kubernetes.io/tls` shape with `ca.crt`: `tls.crt` and
/// `tls.key` are the certificate and its key, `ca.crt` the authority the members trust on that port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.peer) || has(self.server)").message("spec.tls.secrets: name the Secrets of the ports that speak TLS (peer; server and operator)"))]
#[x_kube(validation = Rule::new("has(self.server) == has(self.operator)").message("spec.tls.secrets: server and operator go together: the operator's client certificate must be one the members' client port accepts"))]
pub struct TlsSecrets {
    /// The members' peer certificate (server and client use), for `*.<cluster>.<namespace>.svc`; its
    /// `ca.crt` is the authority members accept peers from. Needed when peer TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The members' serving certificate on the client port, for `*.<cluster>.<namespace>.svc` and
    /// `<cluster>-client.<namespace>.svc`; its `ca.crt` is the authority client certificates must come from.
    /// Needed when client TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The operator's client certificate, from the authority in the server Secret's `ca.crt`. Needed when
    /// client TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

/// A cert-manager issuer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The issuer's name; an Issuer is looked up in the cluster's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
    /// The issuer's API group; cert-manager's own (`cert-manager.io`) unless an external issuer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The kinds of cert-manager issuer.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        }
    }
}

/// One side of the cluster's transport security.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsChannel {
    /// Whether this port speaks mutual TLS. Chosen at creation.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Default for TlsChannel {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn enabled() -> bool {
    true
}

/// What happens when every member of a formed cluster has lost its data.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataLossPolicy {
    /// Report the loss and wait for a person.
    #[default]
    Halt,
    /// Start a new, empty cluster.
    StartEmpty,
}

fn default_size() -> i32 {
    DEFAULT_SIZE
}

fn default_version() -> String {
    DEFAULT_ETCD_VERSION.to_string()
}

/// Where members keep their data. At most one of `volumeClaimTemplate` and `emptyDir` may be set; with neither,
/// each member gets a PersistentVolumeClaim with the defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.emptyDir) && has(self.volumeClaimTemplate))").message("spec.storage: set either emptyDir or volumeClaimTemplate, not both"))]
#[x_kube(validation = Rule::new("has(self.emptyDir) == has(oldSelf.emptyDir)").message("spec.storage: the choice between emptyDir and a volume claim template cannot change after creation; it would strand or lose member data").reason(Reason::FieldValueForbidden))]
pub struct StorageSpec {
    /// One PersistentVolumeClaim per member, created from this template. Data survives pod restarts and
    /// rescheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<VolumeClaimTemplate>,

    /// Keep member data in an emptyDir volume. WARNING: the data of a member is lost whenever its pod is
    /// deleted or evicted or its node restarts; the operator then replaces the member with an empty one. If all
    /// members lose their pods at once, the cluster and all its data are lost. Use only for tests and caches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirStorage>,
}

/// The PersistentVolumeClaim each member gets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.storageClassName) ? self.storageClassName : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')").message("spec.storage.volumeClaimTemplate.storageClassName cannot change after creation; existing members' volumes cannot move to another storage class").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!isQuantity(has(self.size) ? string(self.size) : '1Gi') || !isQuantity(has(oldSelf.size) ? string(oldSelf.size) : '1Gi') || quantity(has(self.size) ? string(self.size) : '1Gi').compareTo(quantity(has(oldSelf.size) ? string(oldSelf.size) : '1Gi')) >= 0").message("spec.storage.volumeClaimTemplate.size cannot shrink: a volume does not give space back; grow it, or move the data to a new cluster").reason(Reason::FieldValueForbidden))]
pub struct VolumeClaimTemplate {
    /// Storage class of the members' volumes; the cluster's default storage class when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// Requested size of each member's volume, as a Kubernetes quantity (for example 1Gi). Defaults to 1Gi.
    /// Growing it grows every member's volume in place where the StorageClass allows expansion
    /// (allowVolumeExpansion), one claim at a time; each member then restarts, one at a time and the leader
    /// last, so etcd's quota follows the new size. It cannot shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("spec.storage.volumeClaimTemplate.size: a quantity, for example 1Gi"))]
    pub size: Option<Quantity>,

    /// Access modes of the volumes. Defaults to [ReadWriteOnce].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
}

/// An emptyDir volume for member data. Its data does not outlive the pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirStorage {
    /// Upper bound of the volume's size, as a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,

    /// Storage medium: "" (the node's disk) or "Memory" (tmpfs, counted against the pod's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(|Memory)$"))]
    pub medium: Option<String>,
}

/// What happens to member PVCs when the EtcdCluster is deleted.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PvcRetentionPolicy {
    /// PVCs are deleted with the cluster.
    #[default]
    Delete,
    /// PVCs are kept (orphaned) when the cluster is deleted.
    Retain,
}

/// Settings of the members' pods that users of a real cluster need.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdPodTemplate {
    /// Image repository of etcd; the member image is `<imageRepository>:v<version>`. Defaults to
    /// quay.io/coreos/etcd. The image must hold /usr/local/bin/etcd as the upstream images do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image_repository: Option<String>,

    /// Compute resources of the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Scheduling affinity of the member pods. Without a podAntiAffinity here and without
    /// topologySpreadConstraints, members prefer nodes, then zones (topology.kubernetes.io/zone), that hold no
    /// other member of the cluster; a podAntiAffinity or topologySpreadConstraints given here replaces that
    /// default, and a nodeAffinity alone is kept beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Tolerations of the member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node labels a member pod's node must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// How member pods spread across topology domains (zones, nodes). Given, it replaces the default spread
    /// (see affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// Priority class of the member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Extra labels on the member pods. The operator's own labels (app.kubernetes.io/*, etcd.cloud.io/*) win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,

    /// Extra annotations on the member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The observed state of an etcd cluster, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterStatus {
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// A one-word summary of the cluster's life: Pending, Creating, Running, Scaling, Upgrading, Healing,
    /// Degraded or Paused. Conditions hold the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Available (quorum and serving), Progressing (a change is under way) and Degraded (something needs
    /// attention), in the Kubernetes convention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Members that are healthy voting members.
    #[serde(default)]
    pub ready_members: i32,

    /// The etcd version every member runs; unset while members run different versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,

    /// The etcd cluster ID, in hexadecimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,

    /// Name of the member that is the raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,

    /// Every member, as etcd and Kubernetes see it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 64))]
    pub members: Vec<MemberStatus>,

    /// Label selector of the member pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The change the operator has committed to (size and version), recorded when it begins, so an edit in
    /// the middle of an operation cannot mix two plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ClusterTarget>,

    /// What the operator does next, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<NextStep>,

    /// Transport security as the members run it, and when their certificates expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,

    /// The last recovery from a quorum loss (spec.quorumLoss): where the data came from, and the cluster
    /// IDs before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,

    /// The last compaction the operator ran (to recover from NOSPACE): the revision compacted up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction: Option<CompactionRecord>,
}

/// A compaction of the history the operator ran.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompactionRecord {
    pub time: Time,
    /// Revisions before this one were compacted away.
    pub revision: i64,
}

/// A recovery from a quorum loss, or from the loss of every member's data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStatus {
    /// The action that ran: RecoverFromMember or RecoverFromBackup.
    pub action: QuorumLossAction,
    /// Restoring until the restored cluster has a leader, then Succeeded.
    pub phase: RecoveryPhase,
    /// The EtcdBackup every member was restored from.
    pub source: String,
    /// With RecoverFromMember, the survivor whose data was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Why this source, in a sentence.
    pub reason: String,
    /// The copies of every surviving member's data taken before anything changed (EtcdBackup names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rescue_copies: Vec<String>,
    /// The cluster token of the restored cluster: members of any other token are not its members.
    pub token: String,
    /// The etcd cluster ID (hex) before the recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_cluster_id: Option<String>,
    /// The etcd cluster ID (hex) of the restored cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryPhase {
    Restoring,
    Succeeded,
}

/// Transport security as the members run it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// Members speak mutual TLS with each other.
    pub peer: bool,
    /// Clients must present a certificate.
    pub client: bool,
    /// The certificates the cluster uses, by Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["secret".into()]))]
    #[schemars(length(max = 16))]
    pub certificates: Vec<CertificateStatus>,
    /// The rotation of the operator's authorities that spec.tls.authorityRotation asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_rotation: Option<AuthorityRotationStatus>,
    /// While TLS is being turned on for this running cluster: the ports it is turned on for (`peer,client`,
    /// `peer` or `client`). It goes once every member records TLS; the rolling restart that makes the client
    /// port require it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turning_on: Option<String>,
}

/// Where the last requested rotation of the authorities is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityRotationStatus {
    /// The spec.tls.authorityRotation value this rotation was started for.
    pub requested: String,
    /// `TrustBoth` (members restart trusting the old and the new authority), `IssueFromNew` (every
    /// certificate is issued anew by the new authority), `DropOld` (members restart trusting the new one
    /// only) or `Done`.
    pub phase: String,
}

/// One certificate and its life.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The Secret that holds it.
    pub secret: String,
    /// When it expires, in RFC 3339.
    pub not_after: String,
    /// When the operator renews it, in RFC 3339; unset for certificate authorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_after: Option<String>,
}

/// One-word summary of a cluster's state.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Creating,
    Running,
    Scaling,
    Upgrading,
    Healing,
    Degraded,
    Paused,
}

/// A member as etcd and Kubernetes see it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member name; also the name of its pod and PVC.
    pub name: String,
    /// etcd member ID, in hexadecimal; unset until the member is added to etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    /// etcd server version the member reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub version: Option<String>,
    /// True while the member is a non-voting learner catching up.
    #[serde(default)]
    pub learner: bool,
    /// True when the member answers and reports no error.
    #[serde(default)]
    pub healthy: bool,
    /// Alarms etcd has raised for this member: NOSPACE (its database reached the quota; etcd refuses writes)
    /// or CORRUPT (its data differs from the other members').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub alarms: Vec<String>,

    /// The member's last defragmentation by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_defragmentation: Option<DefragmentationRecord>,
}

/// A defragmentation the operator ran on a member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefragmentationRecord {
    /// When it ended, to the microsecond: members are defragmented one after the other, often within a second.
    pub time: MicroTime,
    /// The database file's size before, in bytes.
    pub size_before: i64,
    /// The database file's size after, in bytes, as the member reported it once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_after: Option<i64>,
    /// Why: `Reclaimable` (free space past the threshold), `Fragmented` (a fragmented file near the quota)
    /// or `NoSpace` (recovering from the NOSPACE alarm).
    pub reason: String,
}

/// The size and version the operator is working towards.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTarget {
    pub size: i32,
    pub version: String,
}

/// The operator's next step and its reason.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NextStep {
    /// The step, in one CamelCase word (for example AddLearner, PromoteLearner, RemoveMember, Wait, None).
    pub action: String,
    /// Why this step, in a sentence a person understands.
    pub reason: String,
}
