//! Decisions of spec.quorumLoss: when a cluster that lost quorum (or every member's data) is recovered, from
//! what, and the order that keeps the last copies safe: every surviving member's data is copied to the store
//! first, the recovery is recorded next, and only then are the lost cluster's pods and volumes deleted and
//! every member restored at once, with a new cluster token.
//!
//! Why not `--force-new-cluster` on the best survivor: it keeps the cluster ID and the member IDs, so nothing
//! tells the recovered cluster from the lost one. A restore of the survivor's copy with a new token holds the
//! same data (the survivor's applied state), under a new cluster ID that no old volume can join.

use super::{Activity, Blocker, Decision, Step, Target, bootstrap};
use crate::controller::model::{CopyState, EtcdView, Member, Observation, QuorumLossAction, Recovery};

/// Whether the recovery reached its end: the restored cluster, under a new cluster ID, has a leader.
pub fn recovered(obs: &Observation, recovery: &Recovery) -> bool {
    matches!(obs.etcd, EtcdView::Reachable { cluster_id, leader_id: Some(_) } if Some(cluster_id) != recovery.old_cluster_id)
}

/// The token of the cluster a recovery makes: new for each lost cluster (its ID is in it), the same however
/// often the decision is made.
pub fn recovery_token(cluster: &str, old_cluster_id: Option<u64>) -> String {
    format!("{cluster}-recovered-{:x}", old_cluster_id.unwrap_or(0))
}

/// `lost` is the decision of a cluster without quorum, or without any member's data. spec.quorumLoss turns
/// it into the next step of a recovery, once the loss has lasted `afterSeconds`.
pub fn recover(obs: &Observation, lost: Decision) -> Decision {
    let policy = &obs.quorum_loss;
    let (step, activity, reason) = lost;
    if policy.action == QuorumLossAction::Wait {
        return (step, activity, reason);
    }
    let action = action_name(policy.action);
    // The reason names the moment rather than counting down, so that it stays one decision while it waits.
    if policy.unavailable_for_secs < policy.after_secs {
        let after = policy.after_secs;
        return (
            step,
            activity,
            format!("{reason}; spec.quorumLoss: {action} once the cluster has been unavailable for {after}s"),
        );
    }
    let answering = |m: &Member| match obs.etcd {
        EtcdView::Reachable { cluster_id, .. } => m.answers(cluster_id),
        EtcdView::Unreachable => false,
    };
    let holders: Vec<&Member> = obs.members.iter().filter(|m| m.holds_data(obs.ephemeral_storage)).collect();
    let copy_of = |m: &Member| policy.rescue_copies.get(&m.name);
    if let Some((m, copy, why)) = holders.iter().find_map(|m| match copy_of(m) {
        Some(copy @ crate::controller::model::RescueCopy { state: CopyState::Failed(why), .. }) => Some((m, copy, why)),
        _ => None,
    }) {
        return (
            Step::Wait,
            Activity::Blocked(Blocker::RecoveryFailed),
            format!(
                "{reason}; spec.quorumLoss: copying member {}'s data (EtcdBackup {}) failed: {why}; the recovery \
                 halts and no member was changed: fix the store, then delete that EtcdBackup to copy again",
                m.name, copy.backup
            ),
        );
    }
    let to_copy: Vec<String> =
        holders.iter().filter(|m| copy_of(m).is_none() && answering(m)).map(|m| m.name.clone()).collect();
    if !to_copy.is_empty() {
        return (
            Step::CopySurvivors { members: to_copy.clone() },
            Activity::Healing,
            format!("{reason}; spec.quorumLoss: {action}: copying {} to the store first", to_copy.join(", ")),
        );
    }
    let silent: Vec<&str> = holders.iter().filter(|m| copy_of(m).is_none()).map(|m| m.name.as_str()).collect();
    if !silent.is_empty() {
        return (
            Step::Wait,
            Activity::Blocked(Blocker::QuorumLost),
            format!(
                "{reason}; spec.quorumLoss: {action} waits: {} hold data but do not answer, so it cannot be \
                 copied, and nothing is recovered before every survivor's data is",
                silent.join(", ")
            ),
        );
    }
    let copying: Vec<&str> = holders
        .iter()
        .filter(|m| copy_of(m).is_some_and(|c| c.state == CopyState::Running))
        .map(|m| m.name.as_str())
        .collect();
    if !copying.is_empty() {
        return (
            Step::Wait,
            Activity::Healing,
            format!("{reason}; spec.quorumLoss: {action}: waiting for the copies of {}", copying.join(", ")),
        );
    }
    let rescue_copies: Vec<String> = holders.iter().filter_map(|m| Some(copy_of(m)?.backup.clone())).collect();
    let token = recovery_token(&obs.cluster, policy.cluster_id);
    let begin = |source: String, member: Option<String>, why: String| {
        (
            Step::BeginRecovery {
                action: policy.action,
                source,
                member,
                rescue_copies: rescue_copies.clone(),
                token: token.clone(),
            },
            Activity::Healing,
            why,
        )
    };
    match policy.action {
        QuorumLossAction::RecoverFromMember => {
            let best = holders
                .iter()
                .filter_map(|m| match &copy_of(m)?.state {
                    CopyState::Succeeded { raft_term, raft_index } => Some((*raft_term, *raft_index, *m)),
                    _ => None,
                })
                // The highest term, then index; among equals the first by name, so the choice is stable.
                .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.name.cmp(&a.2.name)));
            match best {
                Some((term, index, m)) => {
                    let source = copy_of(m).map(|c| c.backup.clone()).unwrap_or_default();
                    let why = format!(
                        "{reason}; spec.quorumLoss: RecoverFromMember: every member is restored from member {}'s \
                         copy (EtcdBackup {source}), the most advanced survivor (raft term {term}, index {index})",
                        m.name
                    );
                    begin(source, Some(m.name.clone()), why)
                }
                None => (step, activity, format!("{reason}; spec.quorumLoss: RecoverFromMember: no member survives")),
            }
        }
        QuorumLossAction::RecoverFromBackup => match &policy.latest_backup {
            Some(backup) => {
                let why = format!(
                    "{reason}; spec.quorumLoss: RecoverFromBackup: every member is restored from EtcdBackup {backup}, \
                     the newest that succeeded"
                );
                begin(backup.clone(), None, why)
            }
            None => (
                Step::Wait,
                Activity::Blocked(Blocker::RecoveryFailed),
                format!("{reason}; spec.quorumLoss: RecoverFromBackup: no EtcdBackup of this cluster succeeded"),
            ),
        },
        QuorumLossAction::Wait => (step, activity, reason),
    }
}

fn action_name(action: QuorumLossAction) -> &'static str {
    match action {
        QuorumLossAction::Wait => "Wait",
        QuorumLossAction::RecoverFromMember => "RecoverFromMember",
        QuorumLossAction::RecoverFromBackup => "RecoverFromBackup",
    }
}

/// The recovery is recorded: the lost cluster's members go, then every member is restored as a new cluster.
pub fn carry_out_recovery(obs: &Observation, target: &Target, recovery: &Recovery) -> Decision {
    // A member recorded with another token, or none, is one of the lost cluster: its data is in the store.
    let of_lost_cluster = |m: &&Member| {
        (m.pod.is_some() || m.pvc.is_some())
            && m.bootstrap.as_ref().and_then(|b| b.token.as_deref()) != Some(recovery.token.as_str())
    };
    let lost: Vec<&Member> = obs.members.iter().filter(of_lost_cluster).collect();
    let still_there: Vec<String> = lost
        .iter()
        .filter(|m| m.pod.as_ref().is_some_and(|p| !p.terminating) || m.pvc.as_ref().is_some_and(|p| !p.terminating))
        .map(|m| m.name.clone())
        .collect();
    if !still_there.is_empty() {
        return (
            Step::ClearForRecovery { members: still_there.clone() },
            Activity::Healing,
            format!(
                "recovering from EtcdBackup {}: deleting the lost cluster's pods and volumes ({}), whose data is \
                 in the store",
                recovery.source,
                still_there.join(", ")
            ),
        );
    }
    if !lost.is_empty() {
        let names: Vec<&str> = lost.iter().map(|m| m.name.as_str()).collect();
        return (
            Step::Wait,
            Activity::Healing,
            format!("recovering: waiting for the lost cluster's pods and volumes ({}) to go", names.join(", ")),
        );
    }
    bootstrap(obs, target).unwrap_or_else(|| {
        (
            Step::Wait,
            Activity::Healing,
            format!(
                "recovering from EtcdBackup {}: waiting for the restored members to elect a leader",
                recovery.source
            ),
        )
    })
}
