//! Plain data the planner reads: what the operator observed of one cluster, in Kubernetes and in etcd.
//! Built by `observe`, read by `plan`; nothing here performs I/O.

use std::fmt;

/// An etcd release number, MAJOR.MINOR.PATCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Parses `3.6.16` or `v3.6.16`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().trim_start_matches('v').split('.');
        let version = Self {
            major: parts.next()?.parse().ok()?,
            minor: parts.next()?.parse().ok()?,
            patch: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(version)
    }

    /// Whether etcd supports moving a running cluster from `self` to `to`: the same version, a patch change
    /// within one minor release (upwards), or one minor release up from a patch release etcd supports that
    /// upgrade from.
    pub fn can_upgrade_to(self, to: Version) -> bool {
        let minor_up = to.minor == self.minor + 1
            && MINOR_UPGRADE_FROM
                .iter()
                .find(|(target_minor, _)| (to.major, to.minor) == *target_minor)
                .is_none_or(|(_, from)| self >= *from);
        self.major == to.major && (to.minor == self.minor && to.patch >= self.patch || minor_up)
    }
}

/// The oldest patch release etcd supports a minor upgrade from, by target minor release (etcd's upgrade
/// guides). The API refuses the same, so this catches only what slipped past it (an older running version).
pub const MINOR_UPGRADE_FROM: [((u32, u32), Version); 2] =
    [((3, 6), Version::new(3, 5, 26)), ((3, 7), Version::new(3, 6, 11))];

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The shape the operator works towards: from the spec, committed to status when a change begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub size: usize,
    pub version: Version,
    /// Hash of everything else in the members' pod template (resources, labels, scheduling).
    pub template_hash: String,
}

impl Target {
    /// Whether `pod` runs this target's version and template.
    pub fn is_run_by(&self, pod: &PodView) -> bool {
        pod.version == Some(self.version) && pod.template_hash == self.template_hash
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The EtcdCluster's name: the prefix of its members' names.
    pub cluster: String,
    /// What the spec asks for now.
    pub desired: Target,
    /// What the operator committed to earlier, if anything (status.target).
    pub committed: Option<Target>,
    pub paused: bool,
    /// Whether the operator has seen this cluster formed (status.clusterID is recorded). Until then no member
    /// holds data anyone wrote, and a half-created initial cluster may be finished.
    pub formed: bool,
    /// The members of the static initial cluster, as recorded on the members created with it (state `new`).
    pub initial_members: Vec<String>,
    /// Pods and PVCs that belong to an earlier EtcdCluster of the same name, still being garbage-collected.
    pub leftovers: Vec<String>,
    /// Pods that carry this cluster's labels but not its owner reference: not members, whatever they claim.
    pub foreign_pods: Vec<String>,
    /// emptyDir storage: a member whose pod is gone has lost its data.
    pub ephemeral_storage: bool,
    /// spec.onDataLoss is StartEmpty: a formed cluster whose every member is gone with its data may start
    /// again empty. Otherwise the loss is reported and nothing is created.
    pub start_empty_after_data_loss: bool,
    /// Every member that exists anywhere (pod, PVC or etcd membership), ordered by ordinal.
    pub members: Vec<Member>,
    pub etcd: EtcdView,
    /// Whether the member list is current: it came from the leader, or from a linearizable read through a
    /// follower. A list read from a follower alone may be stale, and nothing is deleted on its word.
    pub membership_is_current: bool,
    /// How long etcd has kept refusing membership changes as an "unhealthy cluster" in the current episode
    /// of refusals (0 when the last change went through or nothing was refused).
    pub membership_refused_for_secs: u64,
    /// How long a member may stay unhealthy before it is replaced.
    pub unhealthy_threshold_secs: u64,
    /// Alarms etcd has raised, with the member each was raised for.
    pub alarms: Vec<MemberAlarm>,
    /// The StorageClass the members' volumes name, when it does not exist: no volume can be provisioned.
    pub missing_storage_class: Option<String>,
    /// Which ports the members speak TLS on: as recorded with the members (the ports every member records,
    /// while a change is recorded on some only), or for a cluster not created yet, as its spec asks.
    pub transport: Transport,
    /// The transport a running cluster is turning TLS on for: the spec's, while the members still record
    /// less. `None` when nothing changes.
    pub tls_change: Option<Transport>,
    /// The cluster's certificates, when it uses TLS.
    pub certificates: Vec<CertificateLife>,
    /// A new cluster restored from a backup (spec.bootstrap.restore, or a recovery), until it forms.
    pub restore: Option<Restore>,
    /// What spec.quorumLoss asks for, and what recovery needs to know.
    pub quorum_loss: QuorumLoss,
    /// A recovery under way (status.recovery, until the restored cluster has a leader).
    pub recovery: Option<Recovery>,
    /// With spec.backupStore, the backups taken before minor upgrades, by the (major, minor) upgraded to;
    /// `None` without a store: upgrades then go without one.
    pub upgrade_backups: Option<std::collections::BTreeMap<(u32, u32), CopyState>>,
    /// spec.maintenance, and what the operator last did for it.
    pub maintenance: Maintenance,
    /// The volume every member should have (spec.storage.volumeClaimTemplate.size); `None` on emptyDir.
    pub volume: Option<DesiredVolume>,
    /// Whether the members' StorageClass lets claims grow; `None` when no claim is smaller than the spec asks
    /// (it is then not looked up).
    pub volume_expansion_allowed: Option<bool>,
}

/// The size of volume the spec asks for, and the quota that goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredVolume {
    pub bytes: u64,
    /// The size as the spec writes it, for the claim.
    pub quantity: String,
    pub quota_bytes: u64,
}

/// spec.maintenance as the planner applies it, with the last compaction the operator ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Defragmentation by need; `None` when it is turned off.
    pub defragmentation: Option<DefragmentationRule>,
    /// spec.maintenance.noSpace is `Recover`: compact, defragment and disarm when etcd raises NOSPACE.
    pub recover_no_space: bool,
    /// The revision the operator last compacted up to (status.lastCompaction).
    pub compacted_revision: Option<i64>,
    /// A defragmentation a person asked for (the `etcd.cloud.io/defragment` annotation).
    pub requested: Option<DefragmentationRequest>,
}

/// A defragmentation asked for by hand: of one member or of all, done for each member once its last
/// defragmentation is later than the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefragmentationRequest {
    /// `None`: every member.
    pub member: Option<String>,
    /// Seconds since the request was made.
    pub secs_ago: u64,
}

/// When a member is due for a defragmentation by need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragmentationRule {
    /// Free space in the database file that makes a member due.
    pub reclaimable_bytes: u64,
    /// A member is also due when this share of its file is free while the file fills `quota_use_percent` of
    /// its quota.
    pub fragmentation_percent: u64,
    pub quota_use_percent: u64,
    /// The least time between two defragmentations of a member by need.
    pub min_interval_secs: u64,
}

/// Why a member is defragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefragmentationReason {
    /// Its free space passed the threshold.
    Reclaimable,
    /// Its file is fragmented and near its quota.
    Fragmented,
    /// Recovering from NOSPACE.
    NoSpace,
    /// A person asked for it.
    Requested,
}

impl DefragmentationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DefragmentationReason::Reclaimable => "Reclaimable",
            DefragmentationReason::Fragmented => "Fragmented",
            DefragmentationReason::NoSpace => "NoSpace",
            DefragmentationReason::Requested => "Requested",
        }
    }
}

/// The EtcdBackup taken before the upgrade of `cluster` to `major.minor`.
pub fn upgrade_backup_name(cluster: &str, major: u32, minor: u32) -> String {
    format!("{cluster}-before-{major}-{minor}")
}

/// spec.quorumLoss, and what the operator knows to carry it out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumLoss {
    pub action: QuorumLossAction,
    /// How long quorum (or the data) must stay lost before recovery starts.
    pub after_secs: u64,
    /// How long the cluster has been unavailable (its Available condition False); 0 while available.
    pub unavailable_for_secs: u64,
    /// The cluster ID the operator recorded for the cluster (status.clusterID).
    pub cluster_id: Option<u64>,
    /// Copies of surviving members' data taken for this cluster ID, by member name.
    pub rescue_copies: std::collections::BTreeMap<String, RescueCopy>,
    /// The newest EtcdBackup of the cluster that succeeded, rescue copies aside.
    pub latest_backup: Option<String>,
}

pub use etcd_op_api::v1::QuorumLossAction;

/// A copy of one survivor's data, an EtcdBackup taken from that member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RescueCopy {
    /// The EtcdBackup's name.
    pub backup: String,
    pub state: CopyState,
}

/// Where a copy the operator takes for itself (an EtcdBackup) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyState {
    Running,
    /// Stored and checked; the member's raft term and index when the snapshot began.
    Succeeded {
        raft_term: u64,
        raft_index: u64,
    },
    Failed(String),
}

/// A recovery under way: every member is restored from `source` with `token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The EtcdBackup every member is restored from.
    pub source: String,
    /// The new cluster's token: a member recorded with another one belongs to the cluster that was lost.
    pub token: String,
    /// The cluster ID before the recovery.
    pub old_cluster_id: Option<u64>,
}

/// A new cluster whose initial members' volumes are restored from a backup before any of them starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    /// Where the data comes from, for people: `EtcdBackup <name>` or the stored snapshot's location.
    pub backup: String,
    /// Where the snapshot is and what it must hash to; why it cannot be restored otherwise.
    pub source: Result<RestoreFrom, String>,
    /// How far each initial member's volume is, by member name; a member without a volume is not listed.
    pub members: std::collections::BTreeMap<String, RestoreState>,
}

/// A stored snapshot, as its EtcdBackup's status describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreFrom {
    pub store: etcd_op_api::v1::BackupStore,
    pub key: String,
    /// What the stored object must hash to, when known.
    pub sha256: Option<String>,
}

/// Where a member's volume is in its restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreState {
    /// The volume waits for its restore, and no restore pod runs for it.
    Pending,
    /// Its restore pod fetches and restores the snapshot.
    Running,
    /// Its restore pod finished: the volume holds the backup's data.
    Succeeded,
    /// Its restore pod failed, saying why.
    Failed(String),
    /// The restore is done and recorded on the volume: the member may start.
    Restored,
}

impl Observation {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Whether the member's objects exist: its pod and, unless storage is emptyDir, its volume.
    pub fn is_created(&self, name: &str) -> bool {
        self.member(name).is_some_and(|m| m.pod.is_some() && (self.ephemeral_storage || m.pvc.is_some()))
    }

    /// The member etcd names as its leader.
    pub fn leader(&self) -> Option<&Member> {
        let EtcdView::Reachable { leader_id, .. } = self.etcd else { return None };
        self.members.iter().find(|m| m.is_leader(leader_id))
    }

    /// How `name`'s etcd is to be set up on its ports: as the cluster's transport says, and while TLS is
    /// being turned on, with the certificates for it and the peer scheme its peer URL has reached.
    pub fn ports_of(&self, name: &str) -> MemberPorts {
        let Some(to) = self.tls_change else { return MemberPorts::settled(self.transport) };
        let peer_url_tls =
            self.member(name).and_then(|m| m.etcd.as_ref()).map_or(self.transport.peer_tls, EtcdMember::peer_tls);
        MemberPorts::changing(self.transport, to, peer_url_tls)
    }

    /// The leader, when it answered itself: a member that others name as leader may be cut off from them.
    pub fn answering_leader(&self) -> Option<&Member> {
        let EtcdView::Reachable { cluster_id, .. } = self.etcd else { return None };
        self.leader().filter(|m| m.answers(cluster_id))
    }

    /// Where membership changes are sent: the leader, when it answered itself.
    pub fn leader_endpoint(&self) -> Option<&str> {
        self.answering_leader()?.pod.as_ref()?.endpoint.as_deref()
    }
}

/// An alarm etcd raises for a member; while one is raised, etcd refuses writes (NOSPACE) or the member's data
/// is in doubt (CORRUPT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    NoSpace,
    Corrupt,
}

impl Alarm {
    /// etcd's own name of the alarm.
    pub fn name(self) -> &'static str {
        match self {
            Alarm::NoSpace => "NOSPACE",
            Alarm::Corrupt => "CORRUPT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAlarm {
    /// The member's name, or its ID in hexadecimal when no member of that ID is known.
    pub member: String,
    pub alarm: Alarm,
}

/// What etcd itself said, through the members that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdView {
    /// No member answered: the cluster is not formed yet, restarting, or has lost quorum.
    Unreachable,
    /// At least one member answered and gave the member list.
    Reachable {
        cluster_id: u64,
        /// The raft leader's member ID; `None` while there is no leader (election, or quorum lost).
        leader_id: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `<cluster>-<ordinal>`: the name of the member, its pod and its PVC.
    pub name: String,
    pub ordinal: u32,
    pub pod: Option<PodView>,
    pub pvc: Option<PvcView>,
    /// Its entry in etcd's member list, when it is a member.
    pub etcd: Option<EtcdMember>,
    /// How the member was first started, as recorded on its volume or, with emptyDir storage, its pod.
    pub bootstrap: Option<Bootstrap>,
    /// Seconds since the operator last defragmented the member (status.members[].lastDefragmentation).
    pub defragmented_secs_ago: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// The pod's Ready condition (etcd's /readyz).
    pub ready: bool,
    pub terminating: bool,
    /// The etcd version its image runs.
    pub version: Option<Version>,
    pub template_hash: String,
    /// etcd exited saying its data is gone or unusable (an emptied data directory, a truncated log): waiting
    /// cannot help, the member must be replaced.
    pub lost_data: bool,
    /// Seconds since the pod last became not ready (or was created, if it never was ready); 0 when ready.
    pub not_ready_for_secs: u64,
    /// Why the pod does not run etcd, when Kubernetes says so.
    pub trouble: Option<PodTrouble>,
    /// Seconds since the pod was deleted; 0 when it is not terminating.
    pub terminating_for_secs: u64,
    /// etcd runs for the first time in this pod and has not passed its startup probe yet: it is loading its
    /// data, which the probe allows up to ten minutes for.
    pub first_start: bool,
    /// etcd's client URL at the pod's address, where the operator asks it; `None` while the pod has no address
    /// or is on its way out.
    pub endpoint: Option<String>,
    /// The backend quota etcd runs with in this pod.
    pub quota_bytes: u64,
    /// How often etcd's container has been restarted in this pod.
    pub restarts: u32,
    /// Its etcd listens for peers over TLS.
    pub peer_tls: bool,
    /// Its etcd serves plaintext clients.
    pub client_plaintext: bool,
}

impl PodView {
    /// What keeps the pod from running etcd: what Kubernetes names, or else a crash history. Between the
    /// back-offs of a crash loop the container runs or has just exited, and Kubernetes names nothing.
    pub fn trouble_or_crashes(&self) -> Option<PodTrouble> {
        self.trouble.clone().or_else(|| {
            (!self.ready && self.restarts > 0).then(|| PodTrouble {
                kind: TroubleKind::CrashLoop,
                message: format!("etcd exited {} times", self.restarts),
            })
        })
    }

    /// The trouble will not pass by itself: an image that cannot be pulled, a container that cannot be
    /// created, or any trouble that has lasted as long as a rollout waits for a member.
    pub fn trouble_lasts(&self, trouble: &PodTrouble, bound_secs: u64) -> bool {
        matches!(trouble.kind, TroubleKind::ImagePull | TroubleKind::ContainerConfig)
            || self.not_ready_for_secs >= bound_secs
    }
}

/// What keeps a member's pod from running etcd, as Kubernetes reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTrouble {
    pub kind: TroubleKind,
    /// Kubernetes' or etcd's own words.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TroubleKind {
    /// The image cannot be pulled (no such image, no access).
    ImagePull,
    /// No node can take the pod.
    Unschedulable,
    /// etcd starts and exits, again and again.
    CrashLoop,
    /// The container cannot be created (a missing Secret or ConfigMap, a bad setting).
    ContainerConfig,
}

impl TroubleKind {
    pub fn describe(self) -> &'static str {
        match self {
            TroubleKind::ImagePull => "its image cannot be pulled",
            TroubleKind::Unschedulable => "it cannot be scheduled",
            TroubleKind::CrashLoop => "etcd keeps exiting",
            TroubleKind::ContainerConfig => "its container cannot be created",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PvcView {
    pub terminating: bool,
    /// The backend quota recorded when the volume was made (or grown); `None` on volumes made before quotas
    /// were recorded, whose members keep etcd's default.
    pub quota_bytes: Option<u64>,
    /// The size the claim asks for, and the capacity it has (they differ while it grows).
    pub requested_bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    /// The volume has grown and its filesystem grows only when a pod mounts it again (drivers that resize
    /// offline say so with the claim's FileSystemResizePending condition): the capacity stays the old one
    /// until the member restarts.
    pub filesystem_resize_pending: bool,
    /// The node its volume is bound to (a local volume), when that node no longer exists: the data cannot be
    /// reached again, and its member's pod can never be scheduled. Looked up only for members not running.
    pub stranded_on: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdMember {
    pub id: u64,
    pub learner: bool,
    pub peer_urls: Vec<String>,
    /// Empty until the member first runs: etcd lists no client URLs for a member that was added (or named in
    /// the initial cluster) but never started.
    pub client_urls: Vec<String>,
    /// What the member said about itself; `None` when it did not answer.
    pub health: Option<MemberHealth>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberHealth {
    pub cluster_id: u64,
    pub raft_applied_index: u64,
    pub version: Option<Version>,
    /// Errors the member reports about itself (alarms such as NOSPACE or CORRUPT).
    pub has_errors: bool,
    pub db_size_bytes: i64,
    /// The part of the database file in use; the rest is free pages a defragmentation gives back.
    pub db_size_in_use_bytes: i64,
    /// The store's revision as the member has applied it.
    pub revision: i64,
}

impl MemberHealth {
    /// Free pages in the database file: what a defragmentation gives back to the disk.
    pub fn reclaimable_bytes(&self) -> u64 {
        u64::try_from(self.db_size_bytes.saturating_sub(self.db_size_in_use_bytes)).unwrap_or(0)
    }

    pub fn db_size(&self) -> u64 {
        u64::try_from(self.db_size_bytes).unwrap_or(0)
    }
}

impl EtcdMember {
    /// Whether the member has ever run.
    pub fn started(&self) -> bool {
        !self.client_urls.is_empty()
    }

    /// Its peers reach it over TLS: every peer URL it has is https.
    pub fn peer_tls(&self) -> bool {
        !self.peer_urls.is_empty() && self.peer_urls.iter().all(|u| u.starts_with("https://"))
    }
}

impl Member {
    pub fn is_voter(&self) -> bool {
        self.etcd.as_ref().is_some_and(|e| !e.learner)
    }

    pub fn is_learner(&self) -> bool {
        self.etcd.as_ref().is_some_and(|e| e.learner)
    }

    pub fn id(&self) -> Option<u64> {
        self.etcd.as_ref().map(|e| e.id)
    }

    pub fn is_leader(&self, leader_id: Option<u64>) -> bool {
        leader_id.is_some() && self.id() == leader_id
    }

    /// A member that answers, belongs to `cluster_id`, reports no error and whose pod is ready. etcd's
    /// /readyz (the pod's readiness) fails on purpose for learners, so a learner's pod only needs to be up.
    pub fn is_healthy(&self, cluster_id: u64) -> bool {
        let Some(etcd) = self.etcd.as_ref() else { return false };
        let answered = etcd.health.as_ref().is_some_and(|h| h.cluster_id == cluster_id && !h.has_errors);
        let pod_ok = self.pod.as_ref().is_some_and(|p| !p.terminating && (p.ready || etcd.learner));
        answered && pod_ok
    }

    /// Whether the member itself answered, as a member of `cluster_id`.
    pub fn answers(&self, cluster_id: u64) -> bool {
        self.etcd.as_ref().and_then(|e| e.health.as_ref()).is_some_and(|h| h.cluster_id == cluster_id)
    }

    pub fn applied_index(&self) -> Option<u64> {
        self.etcd.as_ref()?.health.as_ref().map(|h| h.raft_applied_index)
    }

    /// Its volume has grown to what it asks for (or waits for a restart to grow its filesystem), and its pod
    /// still runs the quota of the smaller volume: a restart gives etcd the quota recorded with the new size.
    pub fn quota_behind_volume(&self) -> bool {
        let (Some(pod), Some(pvc)) = (&self.pod, &self.pvc) else { return false };
        let grown = matches!((pvc.requested_bytes, pvc.capacity_bytes), (Some(r), Some(c)) if c >= r)
            || pvc.filesystem_resize_pending;
        grown && pvc.quota_bytes.is_some_and(|quota| quota != pod.quota_bytes)
    }

    /// The member has a pod, and it runs something else than `target`: it is due for a restart.
    pub fn is_stale_for(&self, target: &Target) -> bool {
        self.pod.as_ref().is_some_and(|p| !target.is_run_by(p))
    }

    pub fn lost_data(&self) -> bool {
        self.pod.as_ref().is_some_and(|p| p.lost_data) || self.stranded_on().is_some()
    }

    /// The node that took this member's volume with it, if any.
    pub fn stranded_on(&self) -> Option<&str> {
        self.pvc.as_ref().and_then(|p| p.stranded_on.as_deref())
    }

    /// Seconds this member has been unhealthy, as far as its pod tells; a missing pod counts as unbounded.
    pub fn unhealthy_for_secs(&self) -> u64 {
        self.pod.as_ref().map_or(u64::MAX, |p| p.not_ready_for_secs)
    }

    /// Whether the member's data still exists somewhere it can be used from.
    pub fn holds_data(&self, ephemeral_storage: bool) -> bool {
        if ephemeral_storage {
            self.pod.as_ref().is_some_and(|p| !p.terminating)
        } else {
            self.pvc.as_ref().is_some_and(|p| !p.terminating && p.stranded_on.is_none())
        }
    }
}

/// Votes needed for a decision in a cluster of `voters` voting members.
pub const fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Whether a member starts a new cluster or joins an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    New,
    Existing,
}

impl InitialState {
    pub fn as_str(self) -> &'static str {
        match self {
            InitialState::New => "new",
            InitialState::Existing => "existing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "new" => Some(InitialState::New),
            "existing" => Some(InitialState::Existing),
            _ => None,
        }
    }
}

/// How a member starts the first time; ignored by etcd once the member has data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// `name=peerURL` pairs, comma-separated, as etcd's --initial-cluster.
    pub initial_cluster: String,
    pub state: InitialState,
    /// The initial cluster token of a new cluster. etcd derives member and cluster IDs from it, so each
    /// bootstrap gets its own: a cluster started again after its data was lost is a new cluster, and no
    /// member of the old one can be taken for one of it. `None` on members created before tokens were
    /// recorded, which used `resources::legacy_token`.
    pub token: Option<String>,
    /// Which ports speak TLS; plaintext on members created before etcd-op managed TLS.
    pub transport: Transport,
}

/// One of the cluster's certificates and its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateLife {
    /// The Secret that holds it.
    pub secret: String,
    pub validity: crate::pki::Validity,
    /// The operator renews it (a leaf); an authority is not renewed but rotated.
    pub renews: bool,
}

/// Which of a member's ports speak mutual TLS. Chosen when the cluster is created, recorded with each member,
/// and the same for every member of a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    pub peer_tls: bool,
    pub client_tls: bool,
}

impl Transport {
    pub const PLAINTEXT: Transport = Transport { peer_tls: false, client_tls: false };
    pub const MUTUAL_TLS: Transport = Transport { peer_tls: true, client_tls: true };

    pub fn any_tls(self) -> bool {
        self.peer_tls || self.client_tls
    }

    pub fn peer_scheme(self) -> &'static str {
        if self.peer_tls { "https" } else { "http" }
    }

    pub fn client_scheme(self) -> &'static str {
        if self.client_tls { "https" } else { "http" }
    }

    /// The recorded form: the TLS ports, comma-separated, or `none`.
    pub fn as_str(self) -> &'static str {
        match (self.peer_tls, self.client_tls) {
            (true, true) => "peer,client",
            (true, false) => "peer",
            (false, true) => "client",
            (false, false) => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "peer,client" => Some(Self::MUTUAL_TLS),
            "peer" => Some(Transport { peer_tls: true, client_tls: false }),
            "client" => Some(Transport { peer_tls: false, client_tls: true }),
            "none" => Some(Self::PLAINTEXT),
            _ => None,
        }
    }
}

impl Transport {
    /// TLS on every port where `self` or `other` has it.
    pub fn union(self, other: Transport) -> Transport {
        Transport { peer_tls: self.peer_tls || other.peer_tls, client_tls: self.client_tls || other.client_tls }
    }

    /// TLS on the ports where both have it.
    pub fn intersection(self, other: Transport) -> Transport {
        Transport { peer_tls: self.peer_tls && other.peer_tls, client_tls: self.client_tls && other.client_tls }
    }

    /// `to` keeps TLS wherever `self` has it, and adds it somewhere.
    pub fn is_turned_on_by(self, to: Transport) -> bool {
        self != to && to.union(self) == to
    }
}

/// How one member's etcd is set up on its peer and client ports. Settled, it is the cluster's transport; while
/// TLS is turned on for a running cluster, a member first holds the certificates while it still speaks
/// plaintext, then its peer URL moves to https, and last its client port stops serving plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPorts {
    /// Its peer URL is https, and it listens for peers over TLS.
    pub peer_tls: bool,
    /// It holds the peer certificate and authority: it reaches peers that listen over TLS, and, once
    /// `peer_tls`, it serves them.
    pub peer_certificate: bool,
    /// Its client port serves TLS, to clients with a certificate of the client authority.
    pub client_tls: bool,
    /// Its client port serves plaintext too (always, without client TLS).
    pub client_plaintext: bool,
}

impl MemberPorts {
    pub fn settled(transport: Transport) -> Self {
        MemberPorts {
            peer_tls: transport.peer_tls,
            peer_certificate: transport.peer_tls,
            client_tls: transport.client_tls,
            client_plaintext: !transport.client_tls,
        }
    }

    /// A member of a cluster turning TLS on, from `recorded` to `to`, whose peer URL is https or not yet.
    pub fn changing(recorded: Transport, to: Transport, peer_url_tls: bool) -> Self {
        let to = to.union(recorded);
        MemberPorts {
            peer_tls: peer_url_tls,
            peer_certificate: to.peer_tls,
            client_tls: to.client_tls,
            client_plaintext: !recorded.client_tls,
        }
    }

    /// The ports whose certificates the member mounts.
    pub fn certificates(self) -> Transport {
        Transport { peer_tls: self.peer_certificate, client_tls: self.client_tls }
    }
}

impl Bootstrap {
    /// The member names of the initial cluster.
    pub fn member_names(&self) -> Vec<String> {
        self.initial_cluster.split(',').filter_map(|pair| Some(pair.split_once('=')?.0.to_string())).collect()
    }
}
