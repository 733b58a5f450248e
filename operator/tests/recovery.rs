//! spec.quorumLoss, decision by decision: a cluster that lost quorum, walked from the wait through the copies
//! of its survivors to the recovery and the restored cluster.

use etcd_op::controller::model::{
    Bootstrap, CopyState, EtcdView, InitialState, Observation, QuorumLoss, QuorumLossAction, Recovery, RescueCopy,
    Restore, RestoreFrom, RestoreState, Transport,
};
use etcd_op::controller::plan::recovery_token;
use etcd_op::controller::plan::{Activity, Blocker, Step, plan};

mod common;
use common::{CLUSTER_ID, V36, healthy_cluster};

/// Three members, two of them gone with their volumes (still in etcd's member list): `demo-0` answers,
/// without a leader. Quorum has been lost for ten minutes; the policy recovers after five.
fn two_of_three_lost(action: QuorumLossAction) -> Observation {
    survivors_of(3, 1, action)
}

/// `size` members of which the first `survivors` keep their pod and volume and answer, without a leader.
fn survivors_of(size: u32, survivors: usize, action: QuorumLossAction) -> Observation {
    let mut obs = healthy_cluster(size, V36);
    for m in obs.members.iter_mut().skip(survivors) {
        m.pod = None;
        m.pvc = None;
        if let Some(e) = m.etcd.as_mut() {
            e.health = None;
        }
    }
    obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: None };
    obs.quorum_loss = QuorumLoss {
        action,
        after_secs: 300,
        unavailable_for_secs: 600,
        cluster_id: Some(CLUSTER_ID),
        rescue_copies: Default::default(),
        latest_backup: Some("nightly".into()),
    };
    obs
}

fn copied(obs: &mut Observation, member: &str, state: CopyState) {
    obs.quorum_loss.rescue_copies.insert(member.into(), RescueCopy { backup: format!("{member}-rescue-c1"), state });
}

#[test]
fn the_default_policy_reports_the_loss_and_waits() {
    let p = plan(&two_of_three_lost(QuorumLossAction::Wait));
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::QuorumLost));
    assert!(p.reason.contains("members holding data: [demo-0]"), "{}", p.reason);
}

#[test]
fn recovery_waits_out_after_seconds_and_says_when_it_starts() {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromMember);
    obs.quorum_loss.unavailable_for_secs = 120;
    let p = plan(&obs);
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Blocked(Blocker::QuorumLost)));
    assert!(p.reason.contains("RecoverFromMember once the cluster has been unavailable for 300s"), "{}", p.reason);
    // The same decision all along the wait.
    obs.quorum_loss.unavailable_for_secs = 121;
    assert_eq!(plan(&obs).reason, p.reason);
}

#[test]
fn survivors_are_copied_first_then_the_most_advanced_copy_is_the_source() {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromMember);
    assert_eq!(plan(&obs).step, Step::CopySurvivors { members: vec!["demo-0".into()] });

    copied(&mut obs, "demo-0", CopyState::Running);
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("waiting for the copies of demo-0"), "{}", p.reason);

    // Two survivors of five: demo-1's copy is further on in the same term.
    let mut obs = survivors_of(5, 2, QuorumLossAction::RecoverFromMember);
    assert_eq!(plan(&obs).step, Step::CopySurvivors { members: vec!["demo-0".into(), "demo-1".into()] });
    copied(&mut obs, "demo-0", CopyState::Succeeded { raft_term: 4, raft_index: 900 });
    copied(&mut obs, "demo-1", CopyState::Succeeded { raft_term: 4, raft_index: 950 });
    let p = plan(&obs);
    assert_eq!(
        p.step,
        Step::BeginRecovery {
            action: QuorumLossAction::RecoverFromMember,
            source: "demo-1-rescue-c1".into(),
            member: Some("demo-1".into()),
            rescue_copies: vec!["demo-0-rescue-c1".into(), "demo-1-rescue-c1".into()],
            token: recovery_token("demo", Some(CLUSTER_ID)),
        }
    );
    assert!(p.reason.contains("the most advanced survivor (raft term 4, index 950)"), "{}", p.reason);

    // A higher term wins over a higher index.
    copied(&mut obs, "demo-0", CopyState::Succeeded { raft_term: 5, raft_index: 10 });
    assert!(matches!(plan(&obs).step, Step::BeginRecovery { member: Some(m), .. } if m == "demo-0"));
}

#[test]
fn a_failed_copy_halts_the_recovery_and_changes_nothing() {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromMember);
    copied(&mut obs, "demo-0", CopyState::Failed("uploading: access denied".into()));
    let p = plan(&obs);
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Blocked(Blocker::RecoveryFailed)));
    assert!(p.reason.contains("demo-0-rescue-c1) failed: uploading: access denied"), "{}", p.reason);
}

#[test]
fn a_survivor_that_does_not_answer_holds_the_recovery_back() {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromMember);
    // demo-1's volume is there but its etcd does not answer: it cannot be copied, so nothing goes ahead.
    obs.members[1].pvc = Some(Default::default());
    obs.members[1].pod = Some(Default::default());
    copied(&mut obs, "demo-0", CopyState::Succeeded { raft_term: 4, raft_index: 900 });
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("demo-1 hold data but do not answer"), "{}", p.reason);
}

#[test]
fn from_a_backup_the_newest_success_is_restored_after_the_survivors_are_copied() {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromBackup);
    assert_eq!(plan(&obs).step, Step::CopySurvivors { members: vec!["demo-0".into()] });
    copied(&mut obs, "demo-0", CopyState::Succeeded { raft_term: 4, raft_index: 900 });
    assert!(matches!(plan(&obs).step, Step::BeginRecovery { source, member: None, .. } if source == "nightly"));
    obs.quorum_loss.latest_backup = None;
    let p = plan(&obs);
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Blocked(Blocker::RecoveryFailed)));
    assert!(p.reason.contains("no EtcdBackup of this cluster succeeded"), "{}", p.reason);
}

#[test]
fn a_cluster_whose_every_member_lost_its_data_is_restored_from_the_newest_backup() {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromBackup);
    obs.members.clear();
    obs.etcd = EtcdView::Unreachable;
    let p = plan(&obs);
    assert!(
        matches!(&p.step, Step::BeginRecovery { source, rescue_copies, .. } if source == "nightly" && rescue_copies.is_empty()),
        "{p:?}"
    );
    // From a member, there is none left to restore from: the loss is reported.
    obs.quorum_loss.action = QuorumLossAction::RecoverFromMember;
    assert_eq!(plan(&obs).activity, Activity::Blocked(Blocker::DataLoss));
}

/// The recovery is recorded; `demo-0` (the lost cluster's survivor) still has its pod and volume.
fn recovering() -> Observation {
    let mut obs = two_of_three_lost(QuorumLossAction::RecoverFromMember);
    obs.recovery = Some(Recovery {
        source: "demo-0-rescue-c1".into(),
        token: recovery_token("demo", Some(CLUSTER_ID)),
        old_cluster_id: Some(CLUSTER_ID),
    });
    obs.formed = false;
    obs.restore = Some(Restore {
        backup: "EtcdBackup demo-0-rescue-c1".into(),
        source: Ok(RestoreFrom {
            store: serde_json::from_value(serde_json::json!({"bucket": "b", "credentialsSecret": {"name": "s3"}}))
                .unwrap(),
            key: "demo/demo-0-rescue-c1".into(),
            sha256: None,
        }),
        members: Default::default(),
    });
    obs
}

#[test]
fn a_recorded_recovery_clears_the_lost_cluster_then_restores_every_member() {
    let mut obs = recovering();
    assert_eq!(plan(&obs).step, Step::ClearForRecovery { members: vec!["demo-0".into()] });

    // Going: waited for.
    obs.members[0].pod.as_mut().unwrap().terminating = true;
    obs.members[0].pvc.as_mut().unwrap().terminating = true;
    assert_eq!(plan(&obs).step, Step::Wait);

    // Gone: no member answers any more; every volume is restored from the source.
    obs.members.clear();
    obs.etcd = EtcdView::Unreachable;
    let members = vec!["demo-0".to_string(), "demo-1".into(), "demo-2".into()];
    assert_eq!(plan(&obs).step, Step::RestoreMembers { members: members.clone() });

    // The restored volumes carry the new token: they are the new cluster's, and are not cleared.
    let bootstrap = Bootstrap {
        initial_cluster: members.iter().map(|m| format!("{m}=http://{m}.demo:2380")).collect::<Vec<_>>().join(","),
        state: InitialState::New,
        token: Some(recovery_token("demo", Some(CLUSTER_ID))),
        transport: Transport::PLAINTEXT,
    };
    obs.members = (0..3)
        .map(|i| etcd_op::controller::model::Member {
            name: format!("demo-{i}"),
            ordinal: i,
            pod: None,
            pvc: Some(Default::default()),
            etcd: None,
            bootstrap: Some(bootstrap.clone()),
            defragmented_secs_ago: None,
        })
        .collect();
    obs.initial_members = members.clone();
    if let Some(restore) = obs.restore.as_mut() {
        restore.members = members.iter().map(|m| (m.clone(), RestoreState::Restored)).collect();
    }
    assert_eq!(plan(&obs).step, Step::BootstrapMembers { members });
}

#[test]
fn the_restored_cluster_under_a_new_id_ends_the_recovery() {
    let mut obs = healthy_cluster(3, V36);
    obs.etcd = EtcdView::Reachable { cluster_id: 0x5eed, leader_id: Some(1) };
    for m in &mut obs.members {
        if let Some(h) = m.etcd.as_mut().and_then(|e| e.health.as_mut()) {
            h.cluster_id = 0x5eed;
        }
    }
    obs.recovery = Some(Recovery { source: "nightly".into(), token: "t".into(), old_cluster_id: Some(CLUSTER_ID) });
    let p = plan(&obs);
    assert_eq!(p.step, Step::Nothing, "{p:?}");
}
