//! The one place that decides: a pure function from an observation to the single next safe step and why.
//!
//! Order of concerns, first match wins: pause; leftovers of an earlier cluster of the same name; a cluster
//! that does not answer or has no leader; repair of drift between etcd membership and pods/PVCs; raised
//! alarms; a member that listens for peers otherwise than its peer URL says; learners; a rollout that cannot
//! progress; members that stay unhealthy; size; rolling restarts (upgrades, template changes, and the
//! certificates for TLS being turned on); TLS turned on (peer URLs, then the recorded transport). A guard then keeps deletions off a member list that may be stale and
//! moves leadership when etcd keeps refusing membership changes, and a step that needs a missing
//! StorageClass is reported as that. Each step changes at most one member, and membership changes only
//! when the previous one has settled.

mod maintenance;
mod recovery;

pub use recovery::recovery_token;
use recovery::{carry_out_recovery, recovered};

pub use maintenance::{NO_SPACE_DISARM_PERCENT, NO_SPACE_FREE_BYTES, due as due_for_defragmentation};

use super::model::{
    Alarm, CopyState, DefragmentationReason, EtcdMember, EtcdView, Member, Observation, PodView, QuorumLossAction,
    Restore, RestoreState, Target, Transport, Version, quorum, upgrade_backup_name,
};

/// How far behind the leader a learner's applied index may be for it to be promoted. etcd refuses the
/// promotion of a learner that is not in sync; this keeps the operator from asking too early.
pub const LEARNER_CATCH_UP_ENTRIES: u64 = 1_000;

/// etcd refuses membership changes as an "unhealthy cluster" while its leader counts too few peers as
/// connected. For a few seconds after a start or a promotion that is expected. When it lasts this long, the
/// leader's view of a peer is stale (a member's pod came back on a new address while the leader still dialled
/// the old one); a new leader has fresh peer connections.
pub const STALE_PEER_VIEW_AFTER_SECS: u64 = 20;

/// How long a member restarted onto a new version or template may take to become ready before the rollout
/// halts, when Kubernetes names no trouble (image pull, scheduling, crash loop) that halts it at once.
pub const ROLLOUT_STUCK_AFTER_SECS: u64 = 120;

/// How long a member's pod may take to go away once deleted: its grace period (30 s) with room to spare.
pub const RESTART_SETTLES_WITHIN_SECS: u64 = 120;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The cluster matches its target, or the operator is paused.
    Nothing,
    /// Something in flight must settle first; the next watch event or requeue brings a new observation.
    Wait,
    /// Create the PVC and pod of every member of a static initial cluster that does not have them yet.
    BootstrapMembers {
        members: Vec<String>,
    },
    /// Restoring a new cluster from a backup: create the marked volume and the restore pod of every member of
    /// the static initial cluster whose volume is not restored and has no restore pod running.
    RestoreMembers {
        members: Vec<String>,
    },
    /// Add a learner to etcd, then create its PVC and pod.
    AddLearner {
        name: String,
    },
    /// (Re)create the PVC and pod of a member that etcd knows (or the bootstrap member), keeping its identity.
    CreateMemberPod {
        name: String,
    },
    PromoteLearner {
        name: String,
        id: u64,
    },
    /// Hand leadership to another voter before the leader is removed or restarted.
    MoveLeader {
        to: String,
        to_id: u64,
    },
    /// Remove a member from etcd membership; its pod and PVC go in a later step.
    RemoveMember {
        name: String,
        id: u64,
    },
    /// Delete the pod and PVC of a member that is no longer in etcd.
    DeleteMemberResources {
        name: String,
    },
    /// Delete a member's pod (keeping its PVC) so it comes back on the target version and template.
    RestartMember {
        name: String,
    },
    /// Turning TLS on: change a member's peer URL to https in etcd, then delete its pod (keeping its PVC) so
    /// it comes back listening for peers over TLS.
    SecurePeerUrl {
        name: String,
        id: u64,
    },
    /// Turning TLS on: every member's peer URL is https; record the new transport on the members' volumes, so
    /// the next rolling restart makes their client port require TLS.
    RecordTransport {
        transport: Transport,
    },
    /// Quorum lost past spec.quorumLoss.afterSeconds: copy these surviving members' data to the store (an
    /// EtcdBackup from each), before anything changes.
    CopySurvivors {
        members: Vec<String>,
    },
    /// Every survivor's data is copied: record the recovery (status.recovery) with its source and new token.
    /// Nothing is deleted before it is recorded.
    BeginRecovery {
        action: QuorumLossAction,
        /// The EtcdBackup every member is restored from.
        source: String,
        /// With RecoverFromMember, the survivor whose copy that is.
        member: Option<String>,
        rescue_copies: Vec<String>,
        token: String,
    },
    /// A recovery is recorded: delete the lost cluster's member pods and volumes, whose data is in the store,
    /// so the members are made again restored.
    ClearForRecovery {
        members: Vec<String>,
    },
    /// Before the first member restarts onto a new minor release: back the cluster up to spec.backupStore.
    BackUpBeforeUpgrade {
        backup: String,
    },
    /// Rewrite one member's database file without its free pages; never the leader's (leadership moves first,
    /// unless the member is alone).
    Defragment {
        name: String,
        reason: DefragmentationReason,
    },
    /// Recovering from NOSPACE: compact the history up to `revision`.
    Compact {
        revision: i64,
    },
    /// Recovering from NOSPACE: every member's database is under its quota again; disarm the alarm.
    DisarmNoSpace,
    /// Grow a member's volume claim to the size the spec asks for, recording the quota that goes with it;
    /// the member restarts onto that quota once the volume has grown.
    ExpandVolume {
        name: String,
        quantity: String,
        quota_bytes: u64,
    },
}

impl Step {
    /// The step as one CamelCase word, for status, events and metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Nothing => "None",
            Step::Wait => "Wait",
            Step::BootstrapMembers { .. } => "BootstrapMembers",
            Step::RestoreMembers { .. } => "RestoreMembers",
            Step::AddLearner { .. } => "AddLearner",
            Step::CreateMemberPod { .. } => "CreateMemberPod",
            Step::PromoteLearner { .. } => "PromoteLearner",
            Step::MoveLeader { .. } => "MoveLeader",
            Step::RemoveMember { .. } => "RemoveMember",
            Step::DeleteMemberResources { .. } => "DeleteMemberResources",
            Step::RestartMember { .. } => "RestartMember",
            Step::SecurePeerUrl { .. } => "SecurePeerUrl",
            Step::RecordTransport { .. } => "RecordTransport",
            Step::CopySurvivors { .. } => "CopySurvivors",
            Step::BeginRecovery { .. } => "BeginRecovery",
            Step::ClearForRecovery { .. } => "ClearForRecovery",
            Step::BackUpBeforeUpgrade { .. } => "BackUpBeforeUpgrade",
            Step::Defragment { .. } => "Defragment",
            Step::Compact { .. } => "Compact",
            Step::DisarmNoSpace => "DisarmNoSpace",
            Step::ExpandVolume { .. } => "ExpandVolume",
        }
    }

    /// Whether the step changes etcd membership.
    pub fn changes_membership(&self) -> bool {
        matches!(self, Step::AddLearner { .. } | Step::PromoteLearner { .. } | Step::RemoveMember { .. })
    }
}

/// What the cluster is going through, for phase and conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Paused,
    Creating,
    Scaling,
    Upgrading,
    Healing,
    /// The operator cannot go on safely by itself.
    Blocked(Blocker),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// No quorum: the operator does not guess which data to keep.
    QuorumLost,
    /// The spec asks for a version change etcd does not support from what runs.
    UnsupportedVersionChange,
    /// Every member of a formed cluster is gone with its data, and the spec does not say to start empty.
    DataLoss,
    /// A member restarted onto the new version or template does not come back: the rollout halts.
    RolloutStuck,
    /// A learner added to grow the cluster cannot start: adding members halts.
    ScaleStuck,
    /// etcd raised NOSPACE: the database reached its quota, and writes are refused.
    AlarmNoSpace,
    /// etcd raised CORRUPT: a member's data differs from the others'.
    AlarmCorrupt,
    /// The StorageClass the members' volumes need does not exist.
    StorageClassMissing,
    /// spec.storage asks for larger volumes, and the members' StorageClass does not let claims grow.
    VolumeExpansionNotAllowed,
    /// The backup spec.bootstrap.restore names cannot be restored (missing, not succeeded, too new).
    RestoreRefused,
    /// A member's restore failed (the snapshot did not match its recorded hash, etcdutl refused it).
    RestoreFailed,
    /// spec.quorumLoss asks for a recovery that cannot go on (a survivor's copy failed, no backup to use).
    RecoveryFailed,
    /// The backup before a minor upgrade failed: the upgrade waits.
    UpgradeBackupFailed,
}

impl Blocker {
    pub fn reason(self) -> &'static str {
        match self {
            Blocker::QuorumLost => "QuorumLost",
            Blocker::UnsupportedVersionChange => "UnsupportedVersionChange",
            Blocker::DataLoss => "DataLoss",
            Blocker::RolloutStuck => "RolloutStuck",
            Blocker::ScaleStuck => "ScaleStuck",
            Blocker::AlarmNoSpace => "AlarmNoSpace",
            Blocker::AlarmCorrupt => "AlarmCorrupt",
            Blocker::StorageClassMissing => "StorageClassMissing",
            Blocker::VolumeExpansionNotAllowed => "VolumeExpansionNotAllowed",
            Blocker::RestoreRefused => "RestoreRefused",
            Blocker::RestoreFailed => "RestoreFailed",
            Blocker::RecoveryFailed => "RecoveryFailed",
            Blocker::UpgradeBackupFailed => "UpgradeBackupFailed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    pub activity: Activity,
    /// Why this step, in a sentence for people.
    pub reason: String,
    /// The target the plan works towards; the report records it as status.target.
    pub target: Target,
    /// Set when the spec asks for something the operator refuses, while it keeps the cluster as it is.
    pub refusal: Option<(Blocker, String)>,
    pub counts: Counts,
}

/// The voters the plan was made on, as the report states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub voters: usize,
    /// Voters that answer, belong to the cluster, report no error and whose pods are ready.
    pub healthy_voters: usize,
}

impl Counts {
    fn of(obs: &Observation) -> Self {
        // While no member answers, etcd cannot say who votes: every member known by its pod or volume counts.
        let EtcdView::Reachable { cluster_id, .. } = obs.etcd else {
            return Counts { voters: obs.members.len(), healthy_voters: 0 };
        };
        let voters = obs.members.iter().filter(|m| m.is_voter());
        Counts { voters: voters.clone().count(), healthy_voters: voters.filter(|m| m.is_healthy(cluster_id)).count() }
    }

    /// A quorum of the voters is healthy: the cluster serves reads and writes.
    pub fn available(self) -> bool {
        self.voters > 0 && self.healthy_voters >= quorum(self.voters)
    }
}

pub fn plan(obs: &Observation) -> Plan {
    let (target, refusal) = choose_target(obs);
    let refusal = refusal.or_else(|| volume_refusal(obs));
    let counts = Counts::of(obs);
    let (step, activity, reason) = needs_storage_class(obs, back_up_first(obs, &target, decide(obs, &target, counts)));
    let activity = match (&refusal, activity) {
        (Some((blocker, _)), Activity::Idle) => Activity::Blocked(*blocker),
        (_, activity) => activity,
    };
    Plan { step, activity, reason, target, refusal, counts }
}

type Decision = (Step, Activity, String);

/// Larger volumes asked for where the StorageClass does not let claims grow: the members keep theirs.
fn volume_refusal(obs: &Observation) -> Option<(Blocker, String)> {
    let volume = obs.volume.as_ref()?;
    if obs.volume_expansion_allowed != Some(false) {
        return None;
    }
    let small: Vec<&str> = obs
        .members
        .iter()
        .filter(|m| m.pvc.as_ref().and_then(|p| p.requested_bytes).is_some_and(|r| r < volume.bytes))
        .map(|m| m.name.as_str())
        .collect();
    (!small.is_empty()).then(|| {
        (
            Blocker::VolumeExpansionNotAllowed,
            format!(
                "spec.storage asks for {} volumes, and the StorageClass of {} does not allow expansion \
                 (allowVolumeExpansion): their volumes keep their size",
                volume.quantity,
                small.join(", ")
            ),
        )
    })
}

fn decide(obs: &Observation, target: &Target, counts: Counts) -> Decision {
    if obs.paused {
        return (Step::Nothing, Activity::Paused, "spec.paused is true: observing only".into());
    }
    if !obs.leftovers.is_empty() {
        return (
            Step::Wait,
            Activity::Creating,
            format!(
                "{} belong to an earlier EtcdCluster named {}; waiting for them to be deleted",
                obs.leftovers.join(", "),
                obs.cluster
            ),
        );
    }
    if let Some(recovery) = obs.recovery.as_ref()
        && !recovered(obs, recovery)
    {
        return carry_out_recovery(obs, target, recovery);
    }
    match obs.etcd {
        EtcdView::Unreachable => bootstrap(obs, target).unwrap_or_else(|| decide_unreachable(obs)),
        EtcdView::Reachable { cluster_id, leader_id } => {
            let Some(leader_id) = leader_id else {
                return without_leader(obs, cluster_id);
            };
            let cluster = Cluster { obs, cluster_id, leader_id, counts };
            let decision = cluster
                .repair_drift()
                .or_else(|| cluster.heed_alarms())
                .or_else(|| cluster.match_peer_listener())
                .or_else(|| cluster.settle_learners(target))
                .or_else(|| cluster.halt_stuck_rollout(target))
                .or_else(|| cluster.replace_unhealthy(target))
                .or_else(|| cluster.scale(target))
                .or_else(|| cluster.grow_volumes())
                .or_else(|| cluster.roll(target))
                .or_else(|| cluster.turn_tls_on())
                .or_else(|| cluster.defragment_by_need())
                .unwrap_or_else(|| (Step::Nothing, Activity::Idle, "the cluster matches its spec".into()));
            cluster.guard(decision)
        }
    }
}

/// Without its StorageClass no member volume can be provisioned: a step that would create one, or a wait for
/// members whose volumes are pending, is reported as that instead.
fn needs_storage_class(obs: &Observation, decision: Decision) -> Decision {
    let Some(class) = &obs.missing_storage_class else { return decision };
    let creates_volume = match &decision.0 {
        Step::BootstrapMembers { .. } | Step::RestoreMembers { .. } | Step::AddLearner { .. } => true,
        Step::CreateMemberPod { name } => obs.members.iter().any(|m| m.name == *name && m.pvc.is_none()),
        // While a new cluster waits for members whose volumes cannot be provisioned.
        Step::Wait => !obs.formed && obs.members.iter().any(|m| m.pod.as_ref().is_none_or(|p| !p.ready)),
        _ => false,
    };
    if !creates_volume || obs.paused || obs.ephemeral_storage {
        return decision;
    }
    (
        Step::Wait,
        Activity::Blocked(Blocker::StorageClassMissing),
        format!("StorageClass {class} does not exist: the members' volumes cannot be provisioned; create it"),
    )
}

/// With spec.backupStore, no member moves onto a new minor release while others run an older one before a
/// backup of the cluster succeeded: the way back, since etcd does not downgrade data a newer minor wrote. A
/// restart, a peer URL move and a new learner each put a member on the target; a member whose pod was lost
/// comes back at once all the same, since the backup may need it.
fn back_up_first(obs: &Observation, target: &Target, decision: Decision) -> Decision {
    let Some(backups) = obs.upgrade_backups.as_ref() else { return decision };
    if !matches!(decision.0, Step::RestartMember { .. } | Step::SecurePeerUrl { .. } | Step::AddLearner { .. }) {
        return decision;
    }
    let to = (target.version.major, target.version.minor);
    let older_runs = obs.members.iter().filter_map(|m| m.pod.as_ref()?.version).any(|v| (v.major, v.minor) < to);
    if !older_runs {
        return decision;
    }
    let backup = upgrade_backup_name(&obs.cluster, to.0, to.1);
    let activity = decision.1;
    match backups.get(&to) {
        Some(CopyState::Succeeded { .. }) => decision,
        None => (
            Step::BackUpBeforeUpgrade { backup: backup.clone() },
            activity,
            format!("backing the cluster up (EtcdBackup {backup}) before a member moves to {}", target.version),
        ),
        Some(CopyState::Running) => (
            Step::Wait,
            activity,
            format!("waiting for EtcdBackup {backup}, taken before the upgrade to {}", target.version),
        ),
        Some(CopyState::Failed(why)) => (
            Step::Wait,
            Activity::Blocked(Blocker::UpgradeBackupFailed),
            format!(
                "EtcdBackup {backup}, taken before the upgrade to {}, failed: {why}; no member was upgraded: \
                 delete it to try again",
                target.version
            ),
        ),
    }
}

/// Whether carrying out the step deletes something: a member from etcd, or a member's pod or volume.
fn deletes(step: &Step) -> bool {
    matches!(
        step,
        Step::RemoveMember { .. }
            | Step::ClearForRecovery { .. }
            | Step::DeleteMemberResources { .. }
            | Step::RestartMember { .. }
            | Step::SecurePeerUrl { .. }
    )
}

/// Some members answer but none leads: an election in progress, or too few voters answer to elect anyone.
fn without_leader(obs: &Observation, cluster_id: u64) -> Decision {
    // A member whose volume survives gets its pod back whether or not anyone leads: the election, or the
    // quorum itself, may be waiting for exactly that member.
    if let Some(decision) = recreate_pod_with_data(obs, |m| m.etcd.is_some()) {
        return decision;
    }
    let voters: Vec<&Member> = obs.members.iter().filter(|m| m.is_voter()).collect();
    let answering = voters.iter().filter(|m| m.answers(cluster_id)).count();
    if answering >= quorum(voters.len()) {
        return (Step::Wait, Activity::Healing, "etcd answers but has no leader; waiting for an election".into());
    }
    quorum_lost(obs, &format!("{answering} of {} voting members answer", voters.len()))
}

fn quorum_lost(obs: &Observation, what: &str) -> Decision {
    let holders: Vec<&str> =
        obs.members.iter().filter(|m| m.holds_data(obs.ephemeral_storage)).map(|m| m.name.as_str()).collect();
    let lost = (
        Step::Wait,
        Activity::Blocked(Blocker::QuorumLost),
        format!(
            "{what}: quorum is lost; members holding data: [{}]; recover from a survivor or a backup",
            holders.join(", ")
        ),
    );
    recovery::recover(obs, lost)
}

/// A new cluster starts with all its members at once, from a static initial cluster: faster than growing one
/// learner at a time, and safe because no member holds data yet. A bootstrap cut short (the operator stopped
/// after creating some members) is finished with the same initial cluster, never started again; once the
/// cluster has been seen formed, a missing member is replaced through membership changes instead.
fn bootstrap(obs: &Observation, target: &Target) -> Option<Decision> {
    let initial: Vec<String> = if obs.members.is_empty() {
        (0..target.size).filter_map(|i| u32::try_from(i).ok()).map(|i| member_name_for(obs, i)).collect()
    } else if !obs.formed && !obs.initial_members.is_empty() {
        obs.initial_members.clone()
    } else {
        return None;
    };
    let strangers: Vec<&str> =
        obs.members.iter().map(|m| m.name.as_str()).filter(|name| !initial.iter().any(|i| i == name)).collect();
    if !strangers.is_empty() {
        return None;
    }
    if let Some(restore) = &obs.restore
        && let Some(decision) = restore_volumes(obs, restore, &initial)
    {
        return Some(decision);
    }
    let missing = initial.iter().filter(|n| !obs.is_created(n)).count();
    if missing == 0 {
        return Some((
            Step::Wait,
            Activity::Creating,
            format!("waiting for the {} initial members to start and elect a leader", initial.len()),
        ));
    }
    if obs.members.is_empty() && obs.formed && obs.quorum_loss.action == QuorumLossAction::RecoverFromBackup {
        let lost = (
            Step::Wait,
            Activity::Blocked(Blocker::DataLoss),
            "every member and its data are gone (no pod, no volume)".to_string(),
        );
        return Some(recovery::recover(obs, lost));
    }
    if obs.members.is_empty() && obs.formed && !obs.start_empty_after_data_loss {
        return Some((
            Step::Wait,
            Activity::Blocked(Blocker::DataLoss),
            "every member and its data are gone (no pod, no volume): the cluster's data is lost; restore it, or \
             set spec.onDataLoss to StartEmpty to start a new, empty cluster"
                .into(),
        ));
    }
    let reason = if obs.members.is_empty() && obs.formed {
        format!(
            "every member and its data are gone; spec.onDataLoss is StartEmpty: starting a new, empty cluster of {}",
            initial.len()
        )
    } else if obs.members.is_empty() {
        format!("no member exists yet: creating the {} initial members", initial.len())
    } else {
        format!("{missing} of the {} initial members are missing: creating them", initial.len())
    };
    Some((Step::BootstrapMembers { members: initial }, Activity::Creating, reason))
}

/// Before the members of a restored cluster start, every one of their volumes is restored: a refused or failed
/// restore starts no member. `None` once every volume still without its member's pod is restored.
fn restore_volumes(obs: &Observation, restore: &Restore, initial: &[String]) -> Option<Decision> {
    let without_pod: Vec<&String> = initial.iter().filter(|n| obs.member(n).is_none_or(|m| m.pod.is_none())).collect();
    let state = |name: &String| restore.members.get(name.as_str());
    if let Some((name, why)) = without_pod.iter().find_map(|n| match state(n) {
        Some(RestoreState::Failed(why)) => Some((n, why)),
        _ => None,
    }) {
        return Some((
            Step::Wait,
            Activity::Blocked(Blocker::RestoreFailed),
            format!(
                "restoring member {name} from {} failed: {why}; no member was started: delete this EtcdCluster \
                 and create it again from another backup",
                restore.backup
            ),
        ));
    }
    let to_restore = without_pod.iter().filter(|n| matches!(state(n), None | Some(RestoreState::Pending))).count();
    if to_restore > 0 {
        return Some(match &restore.source {
            Err(why) => (
                Step::Wait,
                Activity::Blocked(Blocker::RestoreRefused),
                format!("cannot restore the cluster: {why}; no member was created"),
            ),
            Ok(_) => (
                Step::RestoreMembers { members: initial.to_vec() },
                Activity::Creating,
                format!(
                    "restoring {to_restore} of the {} initial members' volumes from {}",
                    initial.len(),
                    restore.backup
                ),
            ),
        });
    }
    let running: Vec<&str> =
        without_pod.iter().filter(|n| state(n) == Some(&RestoreState::Running)).map(|n| n.as_str()).collect();
    (!running.is_empty()).then(|| {
        (
            Step::Wait,
            Activity::Creating,
            format!("waiting for the restore of {} from {}", running.join(", "), restore.backup),
        )
    })
}

/// The first member, among those `eligible`, whose pod is gone but whose volume remains: it comes back as
/// itself, with its data.
fn recreate_pod_with_data(obs: &Observation, eligible: impl Fn(&Member) -> bool) -> Option<Decision> {
    if obs.ephemeral_storage {
        return None;
    }
    let m = obs.members.iter().find(|m| m.pod.is_none() && m.holds_data(false) && eligible(m))?;
    Some((
        Step::CreateMemberPod { name: m.name.clone() },
        Activity::Healing,
        format!("member {} has its volume but no pod: recreating the pod so it rejoins with its data", m.name),
    ))
}

fn decide_unreachable(obs: &Observation) -> Decision {
    // Members whose pods are gone but whose volumes remain come back as themselves: this is how a cluster
    // survives every pod going away at once (node restart, eviction).
    if let Some(decision) = recreate_pod_with_data(obs, |_| true) {
        return decision;
    }
    let starting = obs
        .members
        .iter()
        .any(|m| m.pod.as_ref().is_some_and(|p| !p.terminating && p.not_ready_for_secs < obs.unhealthy_threshold_secs));
    if starting {
        return (Step::Wait, Activity::Healing, "no member answers yet; waiting for members to start".into());
    }
    quorum_lost(obs, "no member answers")
}

/// The target to work towards: the committed one until the cluster is at a point where a new one may begin.
fn choose_target(obs: &Observation) -> (Target, Option<(Blocker, String)>) {
    let running = obs.members.iter().filter_map(|m| m.pod.as_ref()?.version).min();
    // Without a recorded target (a new cluster, or status lost), the running version is what was committed.
    let committed = obs
        .committed
        .clone()
        .unwrap_or_else(|| Target { version: running.unwrap_or(obs.desired.version), ..obs.desired.clone() });
    if committed == obs.desired || !(at_safe_point(obs) || rollout_is_what_fails(obs)) {
        return (committed, None);
    }
    match running {
        Some(from) if !from.can_upgrade_to(obs.desired.version) => {
            let message = format!(
                "spec.version {} cannot be reached from the running {}: etcd supports patch upgrades and one minor \
                 release up only; the running cluster is left as it is",
                obs.desired.version, from
            );
            let kept = Target { version: committed.version, ..obs.desired.clone() };
            (kept, Some((Blocker::UnsupportedVersionChange, message)))
        }
        _ => (obs.desired.clone(), None),
    }
}

/// No step in flight: every member is a healthy voter with a pod and a volume, and nothing is left over.
fn at_safe_point(obs: &Observation) -> bool {
    let EtcdView::Reachable { cluster_id, leader_id: Some(_) } = obs.etcd else {
        return obs.members.is_empty();
    };
    obs.members.iter().all(|m| m.is_voter() && m.is_healthy(cluster_id) && (obs.ephemeral_storage || m.pvc.is_some()))
}

/// A change is what fails: every member that is not healthy is a voter the change restarted onto a version or
/// template the healthy voters do not run, or a learner Kubernetes cannot run. A new spec (the version that still runs, a corrected template) may
/// then take over from the stuck one.
fn rollout_is_what_fails(obs: &Observation) -> bool {
    let EtcdView::Reachable { cluster_id, leader_id: Some(_) } = obs.etcd else {
        return false;
    };
    let mut sick = obs.members.iter().filter(|m| !m.is_healthy(cluster_id)).peekable();
    let learner_in_trouble = |m: &Member| {
        m.is_learner()
            && m.pod
                .as_ref()
                .is_some_and(|p| p.trouble_or_crashes().is_some_and(|t| p.trouble_lasts(&t, ROLLOUT_STUCK_AFTER_SECS)))
    };
    sick.peek().is_some() && sick.all(|m| changed_by_rollout(obs, cluster_id, m) || learner_in_trouble(m))
}

/// `m` is an unhealthy voter while a rollout is under way: some healthy voter runs another version or
/// template than `m`'s pod. What keeps it down is then the change (the one it was restarted onto, or the one
/// it still waits for), not its data. A member whose etcd says its data is gone is not one: that is about its
/// data. Once every healthy voter runs what `m` runs, its trouble is its own.
fn changed_by_rollout(obs: &Observation, cluster_id: u64, m: &Member) -> bool {
    let Some(pod) = m.pod.as_ref() else { return false };
    if !m.is_voter() || m.is_healthy(cluster_id) || m.lost_data() || pod.terminating {
        return false;
    }
    let shape = |p: &PodView| (p.version, p.template_hash.clone());
    obs.members
        .iter()
        .filter(|o| o.is_voter() && o.is_healthy(cluster_id))
        .filter_map(|o| o.pod.as_ref())
        .any(|p| shape(p) != shape(pod))
}

fn member_name_for(obs: &Observation, ordinal: u32) -> String {
    format!("{}-{ordinal}", obs.cluster)
}

struct Cluster<'a> {
    obs: &'a Observation,
    cluster_id: u64,
    leader_id: u64,
    counts: Counts,
}

impl Cluster<'_> {
    fn members(&self) -> impl Iterator<Item = &Member> {
        self.obs.members.iter()
    }

    fn voters(&self) -> usize {
        self.counts.voters
    }

    fn healthy_voters(&self) -> usize {
        self.counts.healthy_voters
    }

    fn is_leader(&self, m: &Member) -> bool {
        m.is_leader(Some(self.leader_id))
    }

    fn leader_applied_index(&self) -> Option<u64> {
        self.members().find(|m| self.is_leader(m)).and_then(Member::applied_index)
    }

    /// Removing `m` leaves enough healthy voters for quorum among the voters that remain.
    fn can_remove(&self, m: &Member) -> bool {
        if m.is_learner() {
            return true;
        }
        let voters = self.voters();
        let healthy_after = self.healthy_voters() - usize::from(m.is_healthy(self.cluster_id));
        voters >= 2 && healthy_after >= quorum(voters - 1)
    }

    /// Taking `m` down for a restart leaves a quorum of healthy voters. A single member has no quorum to keep
    /// apart from itself: its restart is a pause in service, and its data stays on its volume.
    fn can_restart(&self, m: &Member) -> bool {
        let voters = self.voters();
        voters == 1 || self.healthy_voters() - usize::from(m.is_healthy(self.cluster_id)) >= quorum(voters)
    }

    /// Last checks on the decision, whichever concern made it.
    fn guard(&self, decision: Decision) -> Decision {
        let (step, activity, _) = &decision;
        // Deletions are decided only from a current member list: a follower's may lag behind a membership
        // change, and a pod or volume deleted on its word is a member's data gone.
        if deletes(step) && !self.obs.membership_is_current {
            return (
                Step::Wait,
                *activity,
                "the leader did not answer and the member list from a follower may be stale: deleting nothing \
                 until the leader answers"
                    .into(),
            );
        }
        let refused = self.obs.membership_refused_for_secs;
        if step.changes_membership()
            && refused >= STALE_PEER_VIEW_AFTER_SECS
            && let Some((Step::MoveLeader { to, to_id }, _, _)) = self.move_leadership("membership change")
        {
            let reason = format!(
                "etcd has refused membership changes as an unhealthy cluster for {refused}s: its leader's view of \
                 its peers is stale; moving leadership to {to}, which has fresh peer connections"
            );
            return (Step::MoveLeader { to, to_id }, *activity, reason);
        }
        decision
    }

    /// etcd membership and Kubernetes objects disagree: a crash between two halves of a step, or a pod or
    /// volume deleted by someone else. Repair before anything new.
    fn repair_drift(&self) -> Option<Decision> {
        let eph = self.obs.ephemeral_storage;
        for m in self.members() {
            let Some(e) = &m.etcd else { continue };
            let pod_gone = m.pod.is_none();
            if !pod_gone {
                continue;
            }
            // Added but never started (the operator stopped between MemberAdd and creating the pod), or a
            // member whose volume survives: create the pod, keeping the member's identity.
            if !e.started() || (!eph && m.holds_data(false)) {
                return Some((
                    Step::CreateMemberPod { name: m.name.clone() },
                    Activity::Healing,
                    format!("member {} is in etcd but has no pod: creating it", m.name),
                ));
            }
            // Its data is gone: it must leave so a fresh member can take its place.
            if self.can_remove(m) && !self.is_leader(m) {
                let lost = match m.stranded_on() {
                    Some(node) => format!("its pod, and its volume with node {node}, which no longer exists"),
                    None => "its pod and its data".to_string(),
                };
                return Some((
                    Step::RemoveMember { name: m.name.clone(), id: e.id },
                    Activity::Healing,
                    format!("member {} lost {lost}: removing it from etcd to replace it", m.name),
                ));
            }
            return Some((
                Step::Wait,
                Activity::Healing,
                format!("member {} lost its data but removing it now would break quorum", m.name),
            ));
        }
        self.members().find(|m| m.etcd.is_none()).map(|m| {
            (
                Step::DeleteMemberResources { name: m.name.clone() },
                Activity::Healing,
                format!("{} has a pod or volume but is not an etcd member: deleting them", m.name),
            )
        })
    }

    fn settle_learners(&self, target: &Target) -> Option<Decision> {
        let m = self.members().find(|m| m.is_learner())?;
        let e = m.etcd.as_ref()?;
        let behind = match (self.leader_applied_index(), m.applied_index()) {
            (Some(leader), Some(learner)) => Some(leader.saturating_sub(learner)),
            _ => None,
        };
        let healthy = m.is_healthy(self.cluster_id);
        if e.started() && healthy && behind.is_some_and(|b| b <= LEARNER_CATCH_UP_ENTRIES) {
            return Some((
                Step::PromoteLearner { name: m.name.clone(), id: e.id },
                Activity::Scaling,
                format!("learner {} has caught up with the leader: promoting it to a voter", m.name),
            ));
        }
        // A learner holds no vote and no data anyone depends on: when neither the target nor the spec needs it,
        // it leaves, and when it waits on a version or template the spec no longer asks for, its pod is made
        // again. The spec counts too: after a crash between MemberAdd and the status write, the recorded target
        // still has the old size, and the learner is the step under way, not a surplus.
        let members = self.members().filter(|o| o.etcd.is_some()).count();
        if !healthy && members > target.size && members > self.obs.desired.size {
            return Some((
                Step::RemoveMember { name: m.name.clone(), id: e.id },
                Activity::Scaling,
                format!("{members} of {} members: removing learner {}, which has not joined yet", target.size, m.name),
            ));
        }
        let pod = m.pod.as_ref();
        if !healthy && pod.is_some_and(|p| !p.terminating) && m.is_stale_for(target) {
            return Some((
                Step::RestartMember { name: m.name.clone() },
                Activity::Scaling,
                format!("learner {} waits on a version or template the spec no longer asks for: restarting it", m.name),
            ));
        }
        // A learner whose pod Kubernetes cannot run would be followed by a replacement with the same image and
        // settings, and the same fate: adding members halts and says why, until the spec changes.
        if let Some((pod, trouble)) = pod.and_then(|p| Some((p, p.trouble_or_crashes()?)))
            && !healthy
            && !m.lost_data()
        {
            if pod.trouble_lasts(&trouble, ROLLOUT_STUCK_AFTER_SECS) {
                let reason = format!(
                    "learner {} cannot start: {} ({}): adding members is halted and it is not replaced; correct \
                     spec.version or the pod template, or set spec.size back to {}",
                    m.name,
                    trouble.kind.describe(),
                    trouble.message,
                    self.voters()
                );
                return Some((Step::Wait, Activity::Blocked(Blocker::ScaleStuck), reason));
            }
            return Some((Step::Wait, Activity::Scaling, format!("learner {} is starting; waiting for it", m.name)));
        }
        let hopeless = m.lost_data() || m.unhealthy_for_secs() >= self.obs.unhealthy_threshold_secs;
        if hopeless && !healthy {
            return Some((
                Step::RemoveMember { name: m.name.clone(), id: e.id },
                Activity::Healing,
                format!("learner {} did not become healthy in time: removing it to try again", m.name),
            ));
        }
        let why = match behind {
            Some(b) => format!("learner {} is {b} entries behind the leader; waiting for it to catch up", m.name),
            None => format!("learner {} is starting; waiting for it to answer", m.name),
        };
        Some((Step::Wait, Activity::Scaling, why))
    }

    /// While etcd has raised an alarm, every member reports it as an error and looks unhealthy; no member is
    /// replaced or restarted for that, and no membership changes. The alarm is reported with what it means.
    fn heed_alarms(&self) -> Option<Decision> {
        let first = self.obs.alarms.first()?;
        if self.obs.maintenance.recover_no_space && self.obs.alarms.iter().all(|a| a.alarm == Alarm::NoSpace) {
            return Some(self.recover_space());
        }
        let members = |alarm| {
            let names: Vec<&str> =
                self.obs.alarms.iter().filter(|a| a.alarm == alarm).map(|a| a.member.as_str()).collect();
            names.join(", ")
        };
        let (blocker, reason) = match self.obs.alarms.iter().find(|a| a.alarm == Alarm::Corrupt).unwrap_or(first).alarm
        {
            Alarm::Corrupt => (
                Blocker::AlarmCorrupt,
                format!(
                    "etcd raised CORRUPT for {}: that member's data differs from the others'; the operator changes \
                     nothing until a person has compared the members' data and disarmed the alarm",
                    members(Alarm::Corrupt)
                ),
            ),
            Alarm::NoSpace => (
                Blocker::AlarmNoSpace,
                format!(
                    "etcd raised NOSPACE for {}: the database reached its quota and etcd refuses writes until space \
                     is freed (compact, defragment every member, then disarm the alarm); no member is changed \
                     meanwhile",
                    members(Alarm::NoSpace)
                ),
            ),
        };
        Some((Step::Wait, Activity::Blocked(blocker), reason))
    }

    /// A member the rollout restarted onto the target does not come back. Replacing it cannot help (its
    /// replacement would get the same image and settings) and would cost a copy of the data: the rollout halts
    /// and says why, until the member recovers or the spec changes.
    fn halt_stuck_rollout(&self, target: &Target) -> Option<Decision> {
        let on_target = |m: &Member| m.pod.as_ref().is_some_and(|p| target.is_run_by(p));
        let m = self.members().find(|m| on_target(m) && changed_by_rollout(self.obs, self.cluster_id, m))?;
        let pod = m.pod.as_ref()?;
        let running = self
            .members()
            .filter(|o| o.is_healthy(self.cluster_id))
            .find_map(|o| o.pod.as_ref()?.version)
            .map_or_else(|| "the version that runs".to_string(), |v| v.to_string());
        let halted = |why: String| {
            let reason = format!(
                "member {} was restarted on {} and {why}: the rollout is halted and no member's data is removed; set \
                 spec.version back to {running} or correct the pod template",
                m.name, target.version
            );
            (Step::Wait, Activity::Blocked(Blocker::RolloutStuck), reason)
        };
        Some(match &pod.trouble {
            Some(trouble) => halted(format!("{} ({})", trouble.kind.describe(), trouble.message)),
            None if pod.not_ready_for_secs >= ROLLOUT_STUCK_AFTER_SECS => {
                halted(format!("is not ready after {}s", pod.not_ready_for_secs))
            }
            None => (
                Step::Wait,
                Activity::Upgrading,
                format!("member {} is starting on {}; waiting for it to be ready", m.name, target.version),
            ),
        })
    }

    fn replace_unhealthy(&self, target: &Target) -> Option<Decision> {
        let threshold = self.obs.unhealthy_threshold_secs;
        // A member a rollout restarted onto a version or template that has since been replaced in the spec is
        // restarted again by the roll, not waited for or replaced.
        let superseded = |m: &Member| changed_by_rollout(self.obs, self.cluster_id, m) && m.is_stale_for(target);
        let sick: Vec<&Member> = self.members().filter(|m| !m.is_healthy(self.cluster_id) && !superseded(m)).collect();
        // A pod on its way out is a restart under way: its replacement gets its own chance. One that stays on
        // its way out (its node is gone and never confirms) is not: past the bound, the member is replaced.
        let restarting = |m: &Member| {
            m.pod.as_ref().is_some_and(|p| p.terminating && p.terminating_for_secs < RESTART_SETTLES_WITHIN_SECS)
        };
        // etcd still loading its data in a new pod is given the time its startup probe allows.
        let loading = |m: &Member| m.pod.as_ref().is_some_and(|p| p.first_start);
        let hopeless = |m: &&&Member| {
            (m.lost_data() || m.unhealthy_for_secs() >= threshold && !restarting(m) && !loading(m))
                && !self.is_leader(m)
                && !changed_by_rollout(self.obs, self.cluster_id, m)
        };
        if let Some(m) = sick.iter().find(hopeless) {
            let id = m.id()?;
            if self.can_remove(m) {
                let why = if let Some(node) = m.stranded_on() {
                    format!("has its volume on node {node}, which no longer exists")
                } else if m.lost_data() {
                    "lost its data (etcd refuses to start on what is left)".to_string()
                } else {
                    format!("has been unhealthy for over {threshold}s")
                };
                return Some((
                    Step::RemoveMember { name: m.name.clone(), id },
                    Activity::Healing,
                    format!("member {} {why}: removing it to replace it", m.name),
                ));
            }
        }
        // A scale down may proceed by removing the sick member itself; anything else waits for health.
        let shrinking = self.members().filter(|m| m.etcd.is_some()).count() > self.obs_target_size();
        if shrinking {
            return None;
        }
        sick.first().map(|m| {
            (Step::Wait, Activity::Healing, format!("member {} is not healthy yet; waiting before any change", m.name))
        })
    }

    fn obs_target_size(&self) -> usize {
        self.obs.committed.as_ref().map_or(self.obs.desired.size, |t| t.size)
    }

    fn scale(&self, target: &Target) -> Option<Decision> {
        let members: Vec<&Member> = self.members().filter(|m| m.etcd.is_some()).collect();
        if members.len() < target.size {
            if let Some(sick) = members.iter().find(|m| !m.is_healthy(self.cluster_id)) {
                // Down on a version or template the spec no longer asks for: the roll restarts it first.
                if sick.is_stale_for(target) {
                    return None;
                }
                return Some((
                    Step::Wait,
                    Activity::Scaling,
                    format!("member {} is not healthy: adding a member waits until every member is", sick.name),
                ));
            }
            let next = self.members().map(|m| m.ordinal + 1).max().unwrap_or(0);
            return Some((
                Step::AddLearner { name: member_name_for(self.obs, next) },
                Activity::Scaling,
                format!("{} of {} members: adding one as a learner", members.len(), target.size),
            ));
        }
        if members.len() > target.size {
            // The unhealthy go first; then the newest follower. Never the leader while another voter exists.
            let victim = members
                .iter()
                .filter(|m| !self.is_leader(m))
                .max_by_key(|m| (!m.is_healthy(self.cluster_id), m.ordinal))
                .copied();
            let Some(victim) = victim else {
                return self.move_leadership("scale down");
            };
            let id = victim.id()?;
            if !self.can_remove(victim) {
                return Some((
                    Step::Wait,
                    Activity::Scaling,
                    format!("removing {} now would break quorum; waiting for members to be healthy", victim.name),
                ));
            }
            return Some((
                Step::RemoveMember { name: victim.name.clone(), id },
                Activity::Scaling,
                format!("{} of {} members: removing {}", members.len(), target.size, victim.name),
            ));
        }
        None
    }

    /// spec.storage asks for larger volumes than members have: their claims grow one per step (growing a
    /// claim stops nothing), with the quota for the new size recorded; the roll then restarts each member
    /// onto that quota once its volume has grown.
    fn grow_volumes(&self) -> Option<Decision> {
        let volume = self.obs.volume.as_ref()?;
        if self.obs.volume_expansion_allowed != Some(true) {
            return None;
        }
        let m = self.members().find(|m| {
            m.pvc.as_ref().is_some_and(|p| !p.terminating && p.requested_bytes.is_some_and(|r| r < volume.bytes))
        })?;
        Some((
            Step::ExpandVolume {
                name: m.name.clone(),
                quantity: volume.quantity.clone(),
                quota_bytes: volume.quota_bytes,
            },
            Activity::Scaling,
            format!("growing member {}'s volume to {}", m.name, volume.quantity),
        ))
    }

    fn roll(&self, target: &Target) -> Option<Decision> {
        let stale = |m: &&Member| m.is_stale_for(target) || m.quota_behind_volume();
        let activity = if self.members().any(|m| m.pod.as_ref().is_some_and(|p| p.version != Some(target.version))) {
            Activity::Upgrading
        } else {
            Activity::Scaling
        };
        // A member that is down anyway (stuck on a version or template the spec no longer asks for) goes first.
        let m = self
            .members()
            .filter(stale)
            .min_by_key(|m| (m.is_healthy(self.cluster_id), self.is_leader(m), m.ordinal))?;
        if self.voters() == 2 {
            return Some((
                Step::Wait,
                activity,
                format!(
                    "restarting {} would leave 1 of 2 voters, below quorum: a 2-member cluster cannot roll without \
                     an outage; scale it to 3 (or 1) first",
                    m.name
                ),
            ));
        }
        // Each restarted member catches up before the next goes down, so no two are behind at once.
        if let Some((behind, entries)) = self.furthest_behind().filter(|(_, e)| *e > LEARNER_CATCH_UP_ENTRIES) {
            return Some((
                Step::Wait,
                activity,
                format!("member {} is {entries} entries behind the leader; waiting for it to catch up", behind.name),
            ));
        }
        if self.is_leader(m) && self.voters() > 1 {
            return self.move_leadership("restart");
        }
        if !self.can_restart(m) {
            return Some((Step::Wait, activity, format!("restarting {} now would break quorum", m.name)));
        }
        let still_plaintext = self.obs.transport.client_tls && m.pod.as_ref().is_some_and(|p| p.client_plaintext);
        let reason = if !m.is_stale_for(target) {
            format!("member {}'s volume has grown: restarting it so etcd runs with the quota of the new size", m.name)
        } else if still_plaintext {
            format!("member {} still serves plaintext clients: restarting it to require TLS", m.name)
        } else {
            format!("member {} runs an older version or template: restarting it on {}", m.name, target.version)
        };
        Some((Step::RestartMember { name: m.name.clone() }, activity, reason))
    }

    /// A member whose peer URL in etcd and peer listener disagree on TLS cannot be reached by its peers: the
    /// operator stopped between changing the peer URL and restarting the member. Restarting it lets it listen
    /// as its peers dial it.
    fn match_peer_listener(&self) -> Option<Decision> {
        let m = self.members().find(|m| {
            let (Some(pod), Some(etcd)) = (&m.pod, &m.etcd) else { return false };
            m.is_voter() && !pod.terminating && etcd.started() && etcd.peer_tls() != pod.peer_tls
        })?;
        let others = || self.members().filter(|o| o.name != m.name);
        // Such a member is normally down; should it still count as healthy, it waits like any restart.
        if m.is_healthy(self.cluster_id) && others().any(|o| !o.is_healthy(self.cluster_id)) {
            return None;
        }
        if self.is_leader(m) && self.voters() > 1 {
            return self.move_leadership("restart");
        }
        let leader = self.leader_applied_index()?;
        if let Some(behind) =
            others().find(|o| o.applied_index().is_some_and(|a| leader.saturating_sub(a) > LEARNER_CATCH_UP_ENTRIES))
        {
            return Some((
                Step::Wait,
                Activity::Upgrading,
                format!(
                    "member {} is behind the leader; waiting for it to catch up before restarting {}",
                    behind.name, m.name
                ),
            ));
        }
        if !self.can_restart(m) {
            return Some((Step::Wait, Activity::Upgrading, format!("restarting {} now would break quorum", m.name)));
        }
        let scheme = if m.etcd.as_ref().is_some_and(EtcdMember::peer_tls) { "https" } else { "http" };
        Some((
            Step::RestartMember { name: m.name.clone() },
            Activity::Upgrading,
            format!("member {}'s peer URL is {scheme} but it listens otherwise: restarting it to match", m.name),
        ))
    }

    /// TLS turned on for a running cluster, once every member holds the certificates (the roll before this
    /// saw to that) and nothing else is under way: peer URLs move to https one member at a time, the leader
    /// last, each only while the others keep a quorum; then the transport is recorded, and the next roll
    /// makes each member's client port require TLS.
    fn turn_tls_on(&self) -> Option<Decision> {
        let to = self.obs.tls_change?;
        let pending = self
            .members()
            .filter(|m| to.peer_tls && m.etcd.as_ref().is_some_and(|e| !e.peer_tls()))
            .min_by_key(|m| (self.is_leader(m), m.ordinal));
        let Some(m) = pending else {
            return Some((
                Step::RecordTransport { transport: to },
                Activity::Upgrading,
                format!(
                    "every member holds its certificates{}: recording TLS on {} so members restart requiring it",
                    if to.peer_tls { " and its peer URL is https" } else { "" },
                    to.as_str()
                ),
            ));
        };
        if self.voters() == 2 {
            return Some((
                Step::Wait,
                Activity::Upgrading,
                format!(
                    "moving {}'s peer URL to https cuts it off from its peer until it restarts, leaving 1 of 2 \
                     voters: scale the cluster to 3 (or 1) first",
                    m.name
                ),
            ));
        }
        if let Some((behind, entries)) = self.furthest_behind().filter(|(_, e)| *e > LEARNER_CATCH_UP_ENTRIES) {
            return Some((
                Step::Wait,
                Activity::Upgrading,
                format!("member {} is {entries} entries behind the leader; waiting for it to catch up", behind.name),
            ));
        }
        if self.is_leader(m) && self.voters() > 1 {
            return self.move_leadership("peer URL change");
        }
        if !self.can_restart(m) {
            return Some((Step::Wait, Activity::Upgrading, format!("restarting {} now would break quorum", m.name)));
        }
        Some((
            Step::SecurePeerUrl { name: m.name.clone(), id: m.id()? },
            Activity::Upgrading,
            format!("turning TLS on: moving member {}'s peer URL to https and restarting it", m.name),
        ))
    }

    /// The member whose applied index trails the leader's the most, and by how many entries.
    fn furthest_behind(&self) -> Option<(&Member, u64)> {
        let leader = self.leader_applied_index()?;
        self.members()
            .filter_map(|m| Some((m, leader.saturating_sub(m.applied_index()?))))
            .max_by_key(|(_, entries)| *entries)
    }

    /// Hand leadership to the healthy voter that is furthest along.
    fn move_leadership(&self, purpose: &str) -> Option<Decision> {
        let to = self
            .members()
            .filter(|m| m.is_voter() && !self.is_leader(m) && m.is_healthy(self.cluster_id))
            .max_by_key(|m| m.applied_index())?;
        Some((
            Step::MoveLeader { to: to.name.clone(), to_id: to.id()? },
            Activity::Scaling,
            format!("moving leadership to {} before the leader's {purpose}", to.name),
        ))
    }
}

/// How many members the PodDisruptionBudget protects a quorum of: during a membership change the voters
/// that exist may outnumber the target (5 → 3), and a budget sized from the target alone would let a drain
/// take out a quorum of the voters that still vote.
pub fn disruption_budget_members(obs: &Observation, target: &Target) -> usize {
    obs.members.iter().filter(|m| m.is_voter()).count().max(target.size)
}

/// Parses a member's ordinal from its name, `<cluster>-<ordinal>`.
pub fn ordinal_of(cluster: &str, member: &str) -> Option<u32> {
    member.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok()
}

pub fn version_of_image(image: &str) -> Option<Version> {
    let (_, tag) = image.rsplit_once(':')?;
    Version::parse(tag)
}
