//! The one place that decides: a pure function from an observation to the single next safe step and why.
//!
//! Order of concerns, first match wins: pause; a cluster that does not answer; repair of drift between etcd
//! membership and pods/PVCs; learners; members that stay unhealthy; size; rolling restarts (upgrades and
//! template changes). Each step changes at most one member, and membership changes only when the previous one
//! has settled.

use super::model::{EtcdView, Member, Observation, Target, Version, quorum};

/// How far behind the leader a learner's applied index may be for it to be promoted. etcd refuses the
/// promotion of a learner that is not in sync; this keeps the operator from asking too early.
pub const LEARNER_CATCH_UP_ENTRIES: u64 = 1_000;

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
}

impl Step {
    /// The step as one CamelCase word, for status, events and metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Nothing => "None",
            Step::Wait => "Wait",
            Step::BootstrapMembers { .. } => "BootstrapMembers",
            Step::AddLearner { .. } => "AddLearner",
            Step::CreateMemberPod { .. } => "CreateMemberPod",
            Step::PromoteLearner { .. } => "PromoteLearner",
            Step::MoveLeader { .. } => "MoveLeader",
            Step::RemoveMember { .. } => "RemoveMember",
            Step::DeleteMemberResources { .. } => "DeleteMemberResources",
            Step::RestartMember { .. } => "RestartMember",
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
}

impl Blocker {
    pub fn reason(self) -> &'static str {
        match self {
            Blocker::QuorumLost => "QuorumLost",
            Blocker::UnsupportedVersionChange => "UnsupportedVersionChange",
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
}

pub fn plan(obs: &Observation) -> Plan {
    let (target, refusal) = choose_target(obs);
    let (step, activity, reason) = decide(obs, &target);
    let activity = match (&refusal, activity) {
        (Some((blocker, _)), Activity::Idle) => Activity::Blocked(*blocker),
        (_, activity) => activity,
    };
    Plan { step, activity, reason, target, refusal }
}

type Decision = (Step, Activity, String);

fn decide(obs: &Observation, target: &Target) -> Decision {
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
    match obs.etcd {
        EtcdView::Unreachable => bootstrap(obs, target).unwrap_or_else(|| decide_unreachable(obs)),
        EtcdView::Reachable { cluster_id, leader_id } => {
            let Some(leader_id) = leader_id else {
                return without_leader(obs, cluster_id);
            };
            let cluster = Cluster { obs, cluster_id, leader_id };
            cluster
                .repair_drift()
                .or_else(|| cluster.settle_learners())
                .or_else(|| cluster.replace_unhealthy())
                .or_else(|| cluster.scale(target))
                .or_else(|| cluster.roll(target))
                .unwrap_or_else(|| (Step::Nothing, Activity::Idle, "the cluster matches its spec".into()))
        }
    }
}

/// Some members answer but none leads: an election in progress, or too few voters answer to elect anyone.
fn without_leader(obs: &Observation, cluster_id: u64) -> Decision {
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
    (
        Step::Wait,
        Activity::Blocked(Blocker::QuorumLost),
        format!(
            "{what}: quorum is lost; members holding data: [{}]; recover from a survivor or a backup",
            holders.join(", ")
        ),
    )
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
    let created = |name: &String| {
        obs.members.iter().any(|m| &m.name == name && m.pod.is_some() && (obs.ephemeral_storage || m.pvc.is_some()))
    };
    let missing = initial.iter().filter(|n| !created(n)).count();
    if missing == 0 {
        return Some((
            Step::Wait,
            Activity::Creating,
            format!("waiting for the {} initial members to start and elect a leader", initial.len()),
        ));
    }
    let reason = if obs.members.is_empty() && obs.formed {
        format!("every member and its data are gone: starting a new cluster of {}", initial.len())
    } else if obs.members.is_empty() {
        format!("no member exists yet: creating the {} initial members", initial.len())
    } else {
        format!("{missing} of the {} initial members are missing: creating them", initial.len())
    };
    Some((Step::BootstrapMembers { members: initial }, Activity::Creating, reason))
}

fn decide_unreachable(obs: &Observation) -> Decision {
    // Members whose pods are gone but whose volumes remain come back as themselves: this is how a cluster
    // survives every pod going away at once (node restart, eviction).
    if !obs.ephemeral_storage
        && let Some(m) = obs.members.iter().find(|m| m.pod.is_none() && m.holds_data(false))
    {
        return (
            Step::CreateMemberPod { name: m.name.clone() },
            Activity::Healing,
            format!("member {} has its volume but no pod: recreating the pod so it rejoins with its data", m.name),
        );
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
    if committed == obs.desired || !at_safe_point(obs) {
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

fn member_name_for(obs: &Observation, ordinal: u32) -> String {
    format!("{}-{ordinal}", obs.cluster)
}

struct Cluster<'a> {
    obs: &'a Observation,
    cluster_id: u64,
    leader_id: u64,
}

impl Cluster<'_> {
    fn members(&self) -> impl Iterator<Item = &Member> {
        self.obs.members.iter()
    }

    fn voters(&self) -> usize {
        self.members().filter(|m| m.is_voter()).count()
    }

    fn healthy_voters(&self) -> usize {
        self.members().filter(|m| m.is_voter() && m.is_healthy(self.cluster_id)).count()
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

    /// Taking `m` down for a restart keeps quorum among the current voters. One- and two-voter clusters cannot
    /// restart a member without a pause in service; there is no safer order, so it is allowed.
    fn can_restart(&self, m: &Member) -> bool {
        let voters = self.voters();
        voters <= 2 || self.healthy_voters() - usize::from(m.is_healthy(self.cluster_id)) >= quorum(voters)
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
            if !e.started || (!eph && m.holds_data(false)) {
                return Some((
                    Step::CreateMemberPod { name: m.name.clone() },
                    Activity::Healing,
                    format!("member {} is in etcd but has no pod: creating it", m.name),
                ));
            }
            // Its data is gone: it must leave so a fresh member can take its place.
            if self.can_remove(m) && !self.is_leader(m) {
                return Some((
                    Step::RemoveMember { name: m.name.clone(), id: e.id },
                    Activity::Healing,
                    format!("member {} lost its pod and its data: removing it from etcd to replace it", m.name),
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

    fn settle_learners(&self) -> Option<Decision> {
        let m = self.members().find(|m| m.is_learner())?;
        let e = m.etcd.as_ref()?;
        let behind = match (self.leader_applied_index(), m.applied_index()) {
            (Some(leader), Some(learner)) => Some(leader.saturating_sub(learner)),
            _ => None,
        };
        if e.started && m.is_healthy(self.cluster_id) && behind.is_some_and(|b| b <= LEARNER_CATCH_UP_ENTRIES) {
            return Some((
                Step::PromoteLearner { name: m.name.clone(), id: e.id },
                Activity::Scaling,
                format!("learner {} has caught up with the leader: promoting it to a voter", m.name),
            ));
        }
        let hopeless = m.lost_data() || m.unhealthy_for_secs() >= self.obs.unhealthy_threshold_secs;
        if hopeless && !m.is_healthy(self.cluster_id) {
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

    fn replace_unhealthy(&self) -> Option<Decision> {
        let threshold = self.obs.unhealthy_threshold_secs;
        let sick: Vec<&Member> = self.members().filter(|m| !m.is_healthy(self.cluster_id)).collect();
        let hopeless = |m: &&&Member| (m.lost_data() || m.unhealthy_for_secs() >= threshold) && !self.is_leader(m);
        if let Some(m) = sick.iter().find(hopeless) {
            let id = m.id()?;
            if self.can_remove(m) {
                let why = if m.lost_data() {
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

    fn roll(&self, target: &Target) -> Option<Decision> {
        let stale = |m: &&Member| {
            m.pod.as_ref().is_some_and(|p| p.version != Some(target.version) || p.template_hash != target.template_hash)
        };
        let activity = if self.members().any(|m| m.pod.as_ref().is_some_and(|p| p.version != Some(target.version))) {
            Activity::Upgrading
        } else {
            Activity::Scaling
        };
        let m = self.members().filter(stale).min_by_key(|m| (self.is_leader(m), m.ordinal))?;
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
        Some((
            Step::RestartMember { name: m.name.clone() },
            activity,
            format!("member {} runs an older version or template: restarting it on {}", m.name, target.version),
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

/// Parses a member's ordinal from its name, `<cluster>-<ordinal>`.
pub fn ordinal_of(cluster: &str, member: &str) -> Option<u32> {
    member.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok()
}

pub fn version_of_image(image: &str) -> Option<Version> {
    let (_, tag) = image.rsplit_once(':')?;
    Version::parse(tag)
}
