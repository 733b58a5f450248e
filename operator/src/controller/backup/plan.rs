//! Plan: from what is known of a backup and its cluster, the one thing to do next, with its reason. Pure.

use etcd_op_api::v1::BackupPhase;

use crate::controller::model::Observation;

/// A backup not taken within this long of its creation fails: the cluster it names never had a member to
/// take it from, or the store's Secret never appeared.
pub const GIVE_UP_AFTER_SECS: u64 = 600;

/// A member a snapshot may be taken from, as the cluster's last observation saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// Where the operator asks it.
    pub endpoint: String,
    pub leader: bool,
    /// A voter that answers, reports no error, and whose pod is ready.
    pub healthy_voter: bool,
    /// It answered the operator as a member of the cluster, with quorum or without.
    pub answers: bool,
    pub applied_index: u64,
}

/// What the cluster's last observation says of the members, for backups.
pub fn candidates(obs: &Observation) -> Vec<Candidate> {
    let (cluster_id, leader_id) = match obs.etcd {
        crate::controller::model::EtcdView::Reachable { cluster_id, leader_id } => (cluster_id, leader_id),
        crate::controller::model::EtcdView::Unreachable => return Vec::new(),
    };
    obs.members
        .iter()
        .filter_map(|m| {
            Some(Candidate {
                name: m.name.clone(),
                endpoint: m.pod.as_ref()?.endpoint.clone()?,
                leader: m.is_leader(leader_id),
                healthy_voter: m.is_healthy(cluster_id) && !m.is_learner(),
                answers: m.answers(cluster_id),
                applied_index: m.applied_index().unwrap_or(0),
            })
        })
        .collect()
}

/// The member to take a snapshot from: a healthy follower, the most caught-up one, so the leader keeps its
/// time for writes; the leader itself only when no follower is healthy. Never a learner or an unhealthy
/// member: its data may be behind or in doubt.
pub fn choose_source(candidates: &[Candidate]) -> Option<&Candidate> {
    let healthy = candidates.iter().filter(|c| c.healthy_voter);
    let followers = healthy.clone().filter(|c| !c.leader);
    // Among equals, the first by name, so that the choice is stable.
    let best = |a: &&Candidate, b: &&Candidate| a.applied_index.cmp(&b.applied_index).then(b.name.cmp(&a.name));
    followers.max_by(best).or_else(|| healthy.max_by(best))
}

/// What is known when a backup is reconciled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupView {
    pub phase: Option<BackupPhase>,
    pub age_secs: u64,
    pub cluster: ClusterView,
    /// Why the store cannot be used (its Secret is missing or incomplete), if so.
    pub store_problem: Option<String>,
    /// The member spec.member names, if any.
    pub member: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterView {
    /// No EtcdCluster of that name in the namespace.
    Missing,
    /// The cluster exists, but the operator has not observed it since it started.
    NotObserved,
    Observed(Vec<Candidate>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupStep {
    /// The backup ended: nothing more is done for it.
    Nothing,
    /// Not possible yet; the reason says what it waits for.
    Wait(String),
    /// Never possible now; the reason says why.
    Fail(String),
    /// Take the snapshot from this member.
    Take(Candidate),
}

pub fn plan(view: &BackupView) -> BackupStep {
    if view.phase.is_some_and(BackupPhase::is_final) {
        return BackupStep::Nothing;
    }
    let waiting = |why: String| {
        if view.age_secs >= GIVE_UP_AFTER_SECS {
            BackupStep::Fail(format!("{why}, still after {} minutes", GIVE_UP_AFTER_SECS / 60))
        } else {
            BackupStep::Wait(why)
        }
    };
    if let Some(problem) = &view.store_problem {
        return waiting(problem.clone());
    }
    match &view.cluster {
        ClusterView::Missing => waiting("the EtcdCluster does not exist".into()),
        ClusterView::NotObserved => BackupStep::Wait("the operator has not observed the cluster yet".into()),
        // A named member is copied whether or not the cluster has quorum: the copy a recovery takes first.
        ClusterView::Observed(candidates) if view.member.is_some() => {
            match candidates.iter().find(|c| Some(&c.name) == view.member.as_ref() && c.answers) {
                Some(source) => BackupStep::Take(source.clone()),
                None => waiting(format!("member {} does not answer", view.member.clone().unwrap_or_default())),
            }
        }
        ClusterView::Observed(candidates) => match choose_source(candidates) {
            Some(source) => BackupStep::Take(source.clone()),
            None => waiting("no member is a healthy voter to take the snapshot from".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(name: &str, leader: bool, healthy_voter: bool, applied_index: u64) -> Candidate {
        Candidate {
            name: name.into(),
            endpoint: format!("http://{name}:2379"),
            leader,
            healthy_voter,
            answers: healthy_voter,
            applied_index,
        }
    }

    fn observed(candidates: Vec<Candidate>) -> BackupView {
        BackupView {
            phase: None,
            age_secs: 5,
            cluster: ClusterView::Observed(candidates),
            store_problem: None,
            member: None,
        }
    }

    #[test]
    fn the_most_caught_up_healthy_follower_is_chosen() {
        let members = vec![
            candidate("c-0", true, true, 100),
            candidate("c-1", false, true, 98),
            candidate("c-2", false, true, 99),
        ];
        assert_eq!(choose_source(&members).map(|c| c.name.as_str()), Some("c-2"));
    }

    #[test]
    fn the_leader_serves_only_when_no_follower_is_healthy() {
        let members = vec![candidate("c-0", true, true, 100), candidate("c-1", false, false, 100)];
        assert_eq!(choose_source(&members).map(|c| c.name.as_str()), Some("c-0"));
        assert_eq!(choose_source(&[candidate("solo-0", true, true, 7)]).map(|c| c.name.as_str()), Some("solo-0"));
    }

    #[test]
    fn an_unhealthy_cluster_waits_then_fails() {
        let members = vec![candidate("c-0", false, false, 1), candidate("c-1", false, false, 1)];
        let mut view = observed(members);
        assert!(matches!(plan(&view), BackupStep::Wait(why) if why.contains("healthy voter")));
        view.age_secs = GIVE_UP_AFTER_SECS;
        assert!(matches!(plan(&view), BackupStep::Fail(why) if why.contains("healthy voter")));
    }

    #[test]
    fn a_missing_cluster_or_secret_waits_then_fails() {
        let mut view =
            BackupView { phase: None, age_secs: 1, cluster: ClusterView::Missing, store_problem: None, member: None };
        assert!(matches!(plan(&view), BackupStep::Wait(why) if why.contains("does not exist")));
        view.age_secs = GIVE_UP_AFTER_SECS + 1;
        assert!(matches!(plan(&view), BackupStep::Fail(_)));
        let view = BackupView {
            store_problem: Some("the Secret s3 has no AWS_ACCESS_KEY_ID".into()),
            ..observed(vec![candidate("c-0", true, true, 1)])
        };
        assert!(matches!(plan(&view), BackupStep::Wait(why) if why.contains("AWS_ACCESS_KEY_ID")));
    }

    #[test]
    fn a_cluster_not_yet_observed_waits_without_a_deadline() {
        let view = BackupView {
            phase: Some(BackupPhase::Pending),
            age_secs: 99_999,
            cluster: ClusterView::NotObserved,
            store_problem: None,
            member: None,
        };
        assert!(matches!(plan(&view), BackupStep::Wait(_)));
    }

    #[test]
    fn a_named_member_is_copied_without_quorum_when_it_answers() {
        let mut lone = candidate("c-0", false, false, 9);
        lone.answers = true;
        let view = BackupView { member: Some("c-0".into()), ..observed(vec![lone, candidate("c-1", false, false, 3)]) };
        assert!(matches!(plan(&view), BackupStep::Take(c) if c.name == "c-0"));
        let view = BackupView { member: Some("c-1".into()), ..view };
        assert!(matches!(plan(&view), BackupStep::Wait(why) if why.contains("c-1 does not answer")));
    }

    #[test]
    fn an_interrupted_backup_is_taken_again() {
        let view = BackupView { phase: Some(BackupPhase::Running), ..observed(vec![candidate("c-0", true, true, 1)]) };
        assert!(matches!(plan(&view), BackupStep::Take(c) if c.name == "c-0"));
    }

    fn any_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::vec((any::<bool>(), any::<bool>(), 0u64..5), 0..6).prop_map(|members| {
            members
                .into_iter()
                .enumerate()
                .map(|(i, (leader, healthy, index))| candidate(&format!("c-{i}"), leader, healthy, index))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn a_source_is_always_a_healthy_voter_and_a_follower_when_one_is(candidates in any_candidates()) {
            match choose_source(&candidates) {
                Some(source) => {
                    prop_assert!(source.healthy_voter);
                    let healthy_followers: Vec<_> = candidates.iter().filter(|c| c.healthy_voter && !c.leader).collect();
                    if !healthy_followers.is_empty() {
                        prop_assert!(!source.leader);
                        prop_assert!(healthy_followers.iter().all(|c| c.applied_index <= source.applied_index));
                    }
                }
                None => prop_assert!(candidates.iter().all(|c| !c.healthy_voter)),
            }
        }

        #[test]
        fn an_ended_backup_is_never_taken_again(candidates in any_candidates(), succeeded in any::<bool>(), age in 0u64..10_000) {
            let phase = if succeeded { BackupPhase::Succeeded } else { BackupPhase::Failed };
            let view = BackupView { phase: Some(phase), age_secs: age, cluster: ClusterView::Observed(candidates), store_problem: None, member: None };
            prop_assert_eq!(plan(&view), BackupStep::Nothing);
        }
    }
}
