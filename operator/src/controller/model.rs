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
    /// within one minor release (upwards), or one minor release up.
    pub fn can_upgrade_to(self, to: Version) -> bool {
        self.major == to.major && (to.minor == self.minor && to.patch >= self.patch || to.minor == self.minor + 1)
    }
}

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
    /// emptyDir storage: a member whose pod is gone has lost its data.
    pub ephemeral_storage: bool,
    /// Every member that exists anywhere (pod, PVC or etcd membership), ordered by ordinal.
    pub members: Vec<Member>,
    pub etcd: EtcdView,
    /// How long a member may stay unhealthy before it is replaced.
    pub unhealthy_threshold_secs: u64,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvcView {
    pub terminating: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMember {
    pub id: u64,
    pub learner: bool,
    /// Whether the member has ever run: etcd lists no client URLs for a member that was added (or named in
    /// the initial cluster) but never started.
    pub started: bool,
    /// What the member said about itself; `None` when it did not answer.
    pub health: Option<MemberHealth>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHealth {
    pub cluster_id: u64,
    pub raft_applied_index: u64,
    pub version: Option<Version>,
    /// Errors the member reports about itself (alarms such as NOSPACE or CORRUPT).
    pub has_errors: bool,
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

    pub fn lost_data(&self) -> bool {
        self.pod.as_ref().is_some_and(|p| p.lost_data)
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
            self.pvc.as_ref().is_some_and(|p| !p.terminating)
        }
    }
}

/// Votes needed for a decision in a cluster of `voters` voting members.
pub const fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}
