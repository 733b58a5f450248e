//! The planner's safety rules, checked on generated observations (proptest) and on whole lifecycles run
//! through a small simulator that applies each planned step to the observation.

use etcd_op::controller::model::{
    Alarm, CopyState, DefragmentationReason, DefragmentationRequest, DefragmentationRule, DesiredVolume, EtcdMember,
    EtcdView, Maintenance, Member, MemberAlarm, MemberHealth, Observation, PodTrouble, PodView, PvcView, QuorumLoss,
    QuorumLossAction, Recovery, RescueCopy, Restore, RestoreFrom, RestoreState, Target, Transport, TroubleKind,
    Version, quorum, upgrade_backup_name,
};
use etcd_op::controller::plan::{
    Activity, Blocker, LEARNER_CATCH_UP_ENTRIES, NO_SPACE_DISARM_PERCENT, Plan, RESTART_SETTLES_WITHIN_SECS,
    ROLLOUT_STUCK_AFTER_SECS, STALE_PEER_VIEW_AFTER_SECS, Step, disruption_budget_members, due_for_defragmentation,
    ordinal_of, plan,
};
use proptest::prelude::*;

mod common;
use common::{CLUSTER_ID, THRESHOLD, V35, V36, healthy_cluster, healthy_member, observation, target};

// ---------------------------------------------------------------------------------------------------------
// Generated observations

const MIB: u64 = 1024 * 1024;

/// spec.maintenance with thresholds low enough for generated members to pass them, and a compaction recorded
/// or not.
fn arb_maintenance() -> impl Strategy<Value = Maintenance> {
    (
        prop::option::weighted(0.8, (1u64..200, 1u64..=100, 1u64..=100, prop_oneof![Just(0u64), 1u64..1_000])),
        prop::bool::weighted(0.5),
        prop::option::of(0i64..5_000),
        prop::option::weighted(0.2, (prop::option::of(0u32..8), 0u64..2_000)),
    )
        .prop_map(|(rule, recover_no_space, compacted_revision, requested)| Maintenance {
            requested: requested.map(|(member, secs_ago)| DefragmentationRequest {
                member: member.map(|i| format!("demo-{i}")),
                secs_ago,
            }),
            defragmentation: rule.map(|(mib, fragmentation_percent, quota_use_percent, min_interval_secs)| {
                DefragmentationRule {
                    reclaimable_bytes: mib * MIB,
                    fragmentation_percent,
                    quota_use_percent,
                    min_interval_secs,
                }
            }),
            recover_no_space,
            compacted_revision,
        })
}

fn arb_version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(V35), Just(V36), Just(Version::new(3, 6, 20)), Just(Version::new(3, 7, 0))]
}

prop_compose! {
    fn arb_member(ordinal: u32)(
        has_pod in prop::bool::weighted(0.85),
        ready in prop::bool::weighted(0.8),
        terminating in prop::bool::weighted(0.05),
        has_pvc in prop::bool::weighted(0.85),
        in_etcd in prop::bool::weighted(0.85),
        learner in prop::bool::weighted(0.2),
        started in prop::bool::weighted(0.9),
        answers in prop::bool::weighted(0.8),
        foreign in prop::bool::weighted(0.05),
        errors in prop::bool::weighted(0.05),
        applied in 0u64..5_000,
        version in arb_version(),
        stale_template in prop::bool::weighted(0.1),
        lost_data in prop::bool::weighted(0.05),
        stranded in prop::bool::weighted(0.05),
        not_ready_for in prop_oneof![Just(0u64), 1u64..THRESHOLD, THRESHOLD..THRESHOLD * 4],
        terminating_for in prop_oneof![0u64..RESTART_SETTLES_WITHIN_SECS, RESTART_SETTLES_WITHIN_SECS..3_600],
        first_start in prop::bool::weighted(0.1),
        restarts in prop_oneof![Just(0u32), 1u32..5],
        peer_url_tls in prop::bool::weighted(0.3),
        listener_differs in prop::bool::weighted(0.05),
        db in (0u64..300, 0u64..=100, 1u64..400, prop::option::of(0u64..2_000)),
        trouble in prop::option::weighted(0.1, prop_oneof![
            Just(TroubleKind::ImagePull),
            Just(TroubleKind::Unschedulable),
            Just(TroubleKind::CrashLoop),
        ]),
    ) -> Member {
        Member {
            name: format!("demo-{ordinal}"),
            ordinal,
            pod: has_pod.then(|| PodView {
                ready,
                terminating,
                version: Some(version),
                template_hash: if stale_template { "t0".into() } else { "t1".into() },
                not_ready_for_secs: if ready { 0 } else { not_ready_for },
                lost_data: !ready && lost_data,
                trouble: trouble.filter(|_| !ready).map(|kind| PodTrouble { kind, message: "generated".into() }),
                terminating_for_secs: if terminating { terminating_for } else { 0 },
                first_start: !ready && first_start && restarts == 0,
                restarts,
                peer_tls: peer_url_tls != listener_differs,
                quota_bytes: db.2 * MIB,
                ..PodView::default()
            }),
            // Only a member not running is looked at for a volume lost with its node.
            pvc: has_pvc.then(|| PvcView {
                stranded_on: (stranded && !(has_pod && ready)).then(|| "gone-node".to_string()),
                ..PvcView::default()
            }),
            etcd: in_etcd.then(|| EtcdMember {
                id: u64::from(ordinal) + 1,
                learner,
                client_urls: if started { vec![format!("http://demo-{ordinal}.demo:2379")] } else { Vec::new() },
                peer_urls: vec![format!("{}://demo-{ordinal}.demo:2380", if peer_url_tls { "https" } else { "http" })],
                health: (answers && started).then_some(MemberHealth {
                    cluster_id: if foreign { 0xbad } else { CLUSTER_ID },
                    raft_applied_index: applied,
                    version: Some(version),
                    has_errors: errors,
                    db_size_bytes: (db.0 * MIB) as i64,
                    db_size_in_use_bytes: (db.0 * MIB * db.1 / 100) as i64,
                    revision: applied as i64,
                }),
            }),
            bootstrap: None,
            defragmented_secs_ago: db.3,
        }
    }
}

/// A pod that is up and ready on 3.6, the current template.
fn ready_pod() -> PodView {
    PodView {
        ready: true,
        terminating: false,
        version: Some(V36),
        template_hash: "t1".into(),
        not_ready_for_secs: 0,
        lost_data: false,
        trouble: None,
        terminating_for_secs: 0,
        first_start: false,
        ..PodView::default()
    }
}

/// A generated cluster, under a generated spec.quorumLoss: the copies already taken of some members, a
/// recovery recorded or not.
fn arb_observation() -> impl Strategy<Value = Observation> {
    let action = prop_oneof![
        4 => Just(QuorumLossAction::Wait),
        3 => Just(QuorumLossAction::RecoverFromMember),
        3 => Just(QuorumLossAction::RecoverFromBackup),
    ];
    // Per member: no copy, or one running, succeeded (with a term and index) or failed.
    let copy = prop_oneof![
        Just(None),
        Just(Some(None)),
        (1u64..3, 0u64..5).prop_map(|c| Some(Some(Some(c)))),
        Just(Some(Some(None)))
    ];
    (
        arb_cluster(),
        action,
        prop_oneof![Just(0u64), 1u64..600],
        prop_oneof![Just(0u64), 1u64..600],
        proptest::collection::vec(copy, 8),
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.1),
        prop::option::of(proptest::collection::btree_map(
            prop_oneof![Just((3u32, 6u32)), Just((3, 7))],
            prop_oneof![
                Just(CopyState::Running),
                Just(CopyState::Succeeded { raft_term: 1, raft_index: 1 }),
                Just(CopyState::Failed("generated".into()))
            ],
            0..3,
        )),
        arb_maintenance(),
    )
        .prop_map(
            |(
                mut obs,
                action,
                after_secs,
                unavailable_for_secs,
                copies,
                backup_exists,
                recovering,
                upgrade_backups,
                maintenance,
            )| {
                obs.upgrade_backups = upgrade_backups;
                obs.maintenance = maintenance;
                obs.quorum_loss = QuorumLoss {
                    action,
                    after_secs,
                    unavailable_for_secs,
                    cluster_id: Some(CLUSTER_ID),
                    rescue_copies: obs
                        .members
                        .iter()
                        .zip(copies)
                        .filter_map(|(m, copy)| {
                            let state = match copy? {
                                None => CopyState::Running,
                                Some(Some((raft_term, raft_index))) => CopyState::Succeeded { raft_term, raft_index },
                                Some(None) => CopyState::Failed("generated".into()),
                            };
                            Some((m.name.clone(), RescueCopy { backup: format!("{}-rescue", m.name), state }))
                        })
                        .collect(),
                    latest_backup: backup_exists.then(|| "nightly".to_string()),
                };
                if recovering {
                    obs.recovery = Some(Recovery {
                        source: "nightly".into(),
                        token: "new-token".into(),
                        old_cluster_id: Some(CLUSTER_ID),
                    });
                    obs.formed = false;
                }
                obs
            },
        )
}

fn arb_cluster() -> impl Strategy<Value = Observation> {
    (0usize..8)
        .prop_flat_map(|n| {
            let members: Vec<_> = (0..n as u32).map(arb_member).collect();
            (
                members,
                1usize..=9,
                arb_version(),
                prop::option::of((1usize..=9, arb_version())),
                prop::bool::weighted(0.1),
                prop::bool::weighted(0.15),
                prop::bool::weighted(0.1),
                any::<prop::sample::Index>(),
                prop::bool::weighted(0.1),
                prop::bool::weighted(0.7),
                prop::option::of(1u32..=6),
                (
                    prop::bool::weighted(0.05),
                    prop::bool::weighted(0.85),
                    prop_oneof![Just(0u64), 1u64..60],
                    prop::bool::weighted(0.3),
                    prop::option::weighted(0.05, prop_oneof![Just(Alarm::NoSpace), Just(Alarm::Corrupt)]),
                    prop::option::weighted(
                        0.2,
                        prop_oneof![
                            Just(Transport::MUTUAL_TLS),
                            Just(Transport { peer_tls: true, client_tls: false }),
                            Just(Transport { peer_tls: false, client_tls: true }),
                        ],
                    ),
                ),
            )
        })
        .prop_map(
            |(
                members,
                size,
                version,
                committed,
                paused,
                ephemeral,
                unreachable,
                leader_pick,
                no_leader,
                formed,
                initial,
                (leftover, list_current, refused_for, start_empty, alarm, tls_change),
            )| {
                let voters: Vec<u64> = members.iter().filter(|m| m.is_voter()).filter_map(Member::id).collect();
                let leader =
                    if voters.is_empty() || no_leader { None } else { Some(voters[leader_pick.index(voters.len())]) };
                let any_in_etcd = members.iter().any(|m| m.etcd.is_some());
                // The operator reaches members through their pods: one that answered has a pod.
                let mut members = members;
                for m in &mut members {
                    let answered = m.etcd.as_ref().is_some_and(|e| e.health.is_some());
                    if answered && m.pod.is_none() {
                        m.pod = Some(ready_pod());
                    }
                }
                // Without an answer there is no member list: no member is known to etcd.
                if unreachable {
                    members.iter_mut().for_each(|m| m.etcd = None);
                }
                let etcd = if unreachable || !any_in_etcd {
                    EtcdView::Unreachable
                } else {
                    EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: leader }
                };
                // The leader answered: that is how the operator learned who leads.
                let members = members
                    .into_iter()
                    .map(|mut m| {
                        if m.id() == leader
                            && let Some(e) = m.etcd.as_mut()
                        {
                            e.client_urls = vec!["http://leader:2379".into()];
                            m.pod.get_or_insert_with(ready_pod);
                            e.health.get_or_insert(MemberHealth {
                                cluster_id: CLUSTER_ID,
                                raft_applied_index: 5_000,
                                version: Some(V36),
                                ..MemberHealth::default()
                            });
                        }
                        m
                    })
                    .collect();
                Observation {
                    cluster: "demo".into(),
                    desired: target(size, version),
                    committed: committed.map(|(s, v)| target(s, v)),
                    paused,
                    formed,
                    initial_members: initial.map_or_else(Vec::new, |n| (0..n).map(|i| format!("demo-{i}")).collect()),
                    leftovers: if leftover { vec!["pod demo-0".into()] } else { Vec::new() },
                    foreign_pods: Vec::new(),
                    ephemeral_storage: ephemeral,
                    start_empty_after_data_loss: start_empty,
                    members,
                    etcd,
                    // The leader's own list is current by definition; without its answer, it may not be.
                    membership_is_current: list_current,
                    membership_refused_for_secs: refused_for,
                    unhealthy_threshold_secs: THRESHOLD,
                    alarms: alarm.map_or_else(Vec::new, |alarm| vec![MemberAlarm { member: "demo-0".into(), alarm }]),
                    missing_storage_class: None,
                    transport: if tls_change.is_some() { Transport::PLAINTEXT } else { Transport::MUTUAL_TLS },
                    tls_change,
                    restore: None,
                    quorum_loss: Default::default(),
                    recovery: None,
                    upgrade_backups: None,
                    certificates: Vec::new(),
                    maintenance: Default::default(),
                    volume: None,
                    volume_expansion_allowed: None,
                }
            },
        )
}

fn find<'a>(obs: &'a Observation, name: &str) -> &'a Member {
    obs.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("step names unknown member {name}"))
}

fn leader_of(obs: &Observation) -> Option<u64> {
    match obs.etcd {
        EtcdView::Reachable { leader_id, .. } => leader_id,
        EtcdView::Unreachable => None,
    }
}

fn voters(obs: &Observation) -> usize {
    obs.members.iter().filter(|m| m.is_voter()).count()
}

fn healthy_voters(obs: &Observation) -> usize {
    obs.members.iter().filter(|m| m.is_voter() && m.is_healthy(CLUSTER_ID)).count()
}

/// `m` is an unhealthy voter while some healthy voter runs another version or template than `m`'s pod.
fn runs_what_no_healthy_voter_runs(obs: &Observation, m: &Member) -> bool {
    let Some(pod) = m.pod.as_ref().filter(|p| !p.terminating) else { return false };
    let shapes: std::collections::BTreeSet<_> = obs
        .members
        .iter()
        .filter(|o| o.is_voter() && o.is_healthy(CLUSTER_ID))
        .filter_map(|o| o.pod.as_ref())
        .map(|p| (p.version, p.template_hash.clone()))
        .collect();
    m.is_voter() && !m.is_healthy(CLUSTER_ID) && shapes.iter().any(|s| *s != (pod.version, pod.template_hash.clone()))
}

/// spec.quorumLoss: nothing is recovered before the policy says so and the loss has lasted; every survivor's
/// data is copied before a recovery is recorded; the lost cluster's volumes are deleted only once it is.
fn check_recovery(obs: &Observation, p: &Plan) -> Result<(), TestCaseError> {
    let policy = &obs.quorum_loss;
    let holders: Vec<&Member> = obs.members.iter().filter(|m| m.holds_data(obs.ephemeral_storage)).collect();
    let copied = |m: &Member| match policy.rescue_copies.get(&m.name).map(|c| &c.state) {
        Some(CopyState::Succeeded { raft_term, raft_index }) => Some((*raft_term, *raft_index)),
        _ => None,
    };
    let recovering = matches!(p.step, Step::CopySurvivors { .. } | Step::BeginRecovery { .. });
    if recovering {
        prop_assert!(obs.recovery.is_none(), "a recovery under way is not begun again");
        prop_assert!(policy.action != QuorumLossAction::Wait, "a cluster whose policy is to wait is not recovered");
        prop_assert!(policy.unavailable_for_secs >= policy.after_secs, "recovery waits spec.quorumLoss.afterSeconds");
        prop_assert!(!p.counts.available(), "a cluster with quorum is not recovered");
    }
    match &p.step {
        Step::CopySurvivors { members } => {
            for name in members {
                let m = find(obs, name);
                prop_assert!(m.holds_data(obs.ephemeral_storage), "only members holding data are copied");
                prop_assert!(m.answers(CLUSTER_ID), "a copy is taken from a member that answers");
                prop_assert!(!policy.rescue_copies.contains_key(name), "a member is copied once per outage");
            }
        }
        Step::BeginRecovery { action, source, member, rescue_copies, .. } => {
            prop_assert_eq!(*action, policy.action);
            prop_assert!(holders.iter().all(|m| copied(m).is_some()), "every survivor's data is copied first");
            prop_assert_eq!(rescue_copies.len(), holders.len());
            match action {
                QuorumLossAction::RecoverFromMember => {
                    let chosen = find(obs, member.as_deref().unwrap_or_default());
                    let best = holders.iter().filter_map(|m| copied(m)).max();
                    prop_assert_eq!(copied(chosen), best, "the most advanced survivor is the source");
                    prop_assert_eq!(Some(source), policy.rescue_copies.get(&chosen.name).map(|c| &c.backup));
                }
                _ => prop_assert_eq!(Some(source), policy.latest_backup.as_ref()),
            }
        }
        Step::ClearForRecovery { members } => {
            prop_assert!(obs.recovery.is_some(), "a lost cluster's volumes go only once its recovery is recorded");
            prop_assert!(!members.is_empty());
        }
        Step::RestoreMembers { .. } | Step::BootstrapMembers { .. } if obs.recovery.is_some() => {
            prop_assert!(
                obs.members.iter().all(|m| m.pod.is_none() && m.pvc.is_none()),
                "the restored cluster is made only once the lost one's pods and volumes are gone"
            );
        }
        _ if obs.recovery.is_some() => {
            prop_assert!(
                matches!(p.step, Step::Wait | Step::Nothing),
                "a recovery only clears, then restores, got {:?}",
                p.step
            );
        }
        _ => {}
    }
    Ok(())
}

/// With spec.backupStore, no member moves onto a new minor release while another runs an older one before a
/// backup of the cluster succeeded, and that backup is asked for only then.
/// Maintenance (defragmentation, compaction, disarm) touches one member at a time, never the leader of
/// several, only while every member answers from a ready pod and none lags behind; by need only while nothing
/// is wrong and the member is due, and for NOSPACE only under `noSpace: Recover`.
/// NOSPACE is the only alarm and the spec says to recover from it.
fn recovering_space(obs: &Observation) -> bool {
    obs.maintenance.recover_no_space && !obs.alarms.is_empty() && obs.alarms.iter().all(|a| a.alarm == Alarm::NoSpace)
}

/// A voter that answers from a ready pod (under NOSPACE every member reports an error, so not "healthy").
fn serving(m: &Member) -> bool {
    m.is_voter() && m.answers(CLUSTER_ID) && m.pod.as_ref().is_some_and(|p| p.ready && !p.terminating)
}

fn check_maintenance(obs: &Observation, p: &Plan) -> Result<(), TestCaseError> {
    let recovering_space = recovering_space(obs);
    match &p.step {
        Step::Defragment { name, reason } => {
            let m = find(obs, name);
            let voters = obs.members.iter().filter(|m| m.is_voter()).count();
            prop_assert!(!m.is_leader(leader_of(obs)) || voters == 1, "the leader of several is never defragmented");
            prop_assert!(obs.members.iter().all(serving), "a defragmentation waits until every member serves");
            let leader_applied =
                obs.members.iter().find(|m| m.is_leader(leader_of(obs))).and_then(Member::applied_index);
            prop_assert!(
                obs.members.iter().all(|o| o
                    .applied_index()
                    .zip(leader_applied)
                    .is_some_and(|(a, l)| l.saturating_sub(a) <= LEARNER_CATCH_UP_ENTRIES)),
                "a defragmentation waits until every member has caught up"
            );
            if *reason == DefragmentationReason::NoSpace {
                prop_assert!(recovering_space, "NOSPACE is recovered only when the spec says so");
            } else {
                prop_assert!(obs.alarms.is_empty(), "no defragmentation by need while an alarm is raised");
                prop_assert!(obs.members.iter().all(|m| m.is_healthy(CLUSTER_ID)), "by need only while all is well");
                prop_assert!(
                    obs.maintenance.defragmentation.is_some() || *reason == DefragmentationReason::Requested,
                    "defragmentation by need is off"
                );
                prop_assert_eq!(due_for_defragmentation(&obs.maintenance, m), Some(*reason));
            }
        }
        Step::Compact { revision } => {
            prop_assert!(recovering_space, "the operator compacts only to recover from NOSPACE");
            prop_assert!(obs.maintenance.compacted_revision.is_none_or(|done| done < *revision));
            prop_assert!(obs.members.iter().all(serving));
        }
        Step::DisarmNoSpace => {
            prop_assert!(recovering_space);
            prop_assert!(
                obs.members.iter().all(|m| {
                    let size = m.etcd.as_ref().and_then(|e| e.health.as_ref()).map_or(u64::MAX, |h| h.db_size());
                    let quota = m.pod.as_ref().map_or(0, |p| p.quota_bytes);
                    quota > 0 && u128::from(size) * 100 <= u128::from(quota) * u128::from(NO_SPACE_DISARM_PERCENT)
                }),
                "NOSPACE is disarmed only once every member's database is back under its quota"
            );
        }
        _ => {}
    }
    Ok(())
}

fn check_upgrade_backup(obs: &Observation, p: &Plan) -> Result<(), TestCaseError> {
    let to = (p.target.version.major, p.target.version.minor);
    let older_runs = obs.members.iter().filter_map(|m| m.pod.as_ref()?.version).any(|v| (v.major, v.minor) < to);
    match &p.step {
        Step::RestartMember { .. } | Step::SecurePeerUrl { .. } | Step::AddLearner { .. } if older_runs => {
            if let Some(backups) = &obs.upgrade_backups {
                prop_assert!(
                    matches!(backups.get(&to), Some(CopyState::Succeeded { .. })),
                    "a member moves to {to:?} only after the backup before it succeeded, not with {:?}",
                    p.step
                );
            }
        }
        Step::BackUpBeforeUpgrade { backup } => {
            prop_assert!(obs.upgrade_backups.as_ref().is_some_and(|b| !b.contains_key(&to)), "one backup per upgrade");
            prop_assert_eq!(backup, &upgrade_backup_name("demo", to.0, to.1));
            prop_assert!(older_runs, "the backup is taken while a member runs the older release");
        }
        _ => {}
    }
    Ok(())
}

/// Every safety rule a plan must keep, whatever it observed.
fn check_invariants(obs: &Observation, p: &Plan) -> Result<(), TestCaseError> {
    let leader = leader_of(obs);
    if obs.paused {
        prop_assert_eq!(&p.step, &Step::Nothing, "a paused cluster gets no step");
        return Ok(());
    }
    check_recovery(obs, p)?;
    if obs.recovery.is_some() {
        return Ok(());
    }
    if matches!(obs.etcd, EtcdView::Unreachable) {
        prop_assert!(
            matches!(
                p.step,
                Step::BootstrapMembers { .. }
                    | Step::CreateMemberPod { .. }
                    | Step::Wait
                    | Step::CopySurvivors { .. }
                    | Step::BeginRecovery { .. }
            ),
            "with etcd unreachable only bootstrap, pod recreation or waiting are allowed, got {:?}",
            p.step
        );
    }
    if !obs.leftovers.is_empty() {
        prop_assert_eq!(&p.step, &Step::Wait, "nothing is done while an earlier cluster's objects remain");
    }
    if matches!(obs.etcd, EtcdView::Reachable { leader_id: None, .. }) {
        prop_assert!(
            matches!(
                p.step,
                Step::Wait | Step::CreateMemberPod { .. } | Step::CopySurvivors { .. } | Step::BeginRecovery { .. }
            ),
            "without a leader nothing changes but pods coming back to their volumes, or a recovery, got {:?}",
            p.step
        );
    }
    check_maintenance(obs, p)?;
    if !obs.alarms.is_empty()
        && !recovering_space(obs)
        && matches!(obs.etcd, EtcdView::Reachable { leader_id: Some(_), .. })
    {
        prop_assert!(
            matches!(p.step, Step::Wait | Step::CreateMemberPod { .. } | Step::DeleteMemberResources { .. })
                || matches!(&p.step, Step::RemoveMember { name, .. } if find(obs, name).pod.is_none())
                || matches!(p.step, Step::MoveLeader { .. })
                    && obs.membership_refused_for_secs >= STALE_PEER_VIEW_AFTER_SECS
                || obs.paused,
            "while etcd has raised an alarm only drift is repaired, got {:?}",
            p.step
        );
    }
    if !obs.membership_is_current {
        prop_assert!(
            !matches!(
                p.step,
                Step::RemoveMember { .. }
                    | Step::DeleteMemberResources { .. }
                    | Step::RestartMember { .. }
                    | Step::SecurePeerUrl { .. }
            ),
            "nothing is deleted on the word of a member list that may be stale, got {:?}",
            p.step
        );
    }
    if p.step.changes_membership() {
        prop_assert!(
            obs.membership_refused_for_secs < STALE_PEER_VIEW_AFTER_SECS
                || !obs.members.iter().any(|m| m.is_voter() && !m.is_leader(leader) && m.is_healthy(CLUSTER_ID)),
            "after {}s of refusals leadership moves to a healthy follower before another membership change",
            obs.membership_refused_for_secs
        );
    }
    check_upgrade_backup(obs, p)?;
    match &p.step {
        Step::RestoreMembers { .. } => {
            prop_assert!(
                obs.restore.is_some() && !obs.formed,
                "volumes are restored only for a new cluster restored from a backup"
            );
        }
        Step::BootstrapMembers { members } => {
            prop_assert!(!members.is_empty());
            if obs.members.is_empty() {
                prop_assert_eq!(members.len(), p.target.size, "a new cluster starts at its target size");
                prop_assert!(
                    !obs.formed || obs.start_empty_after_data_loss,
                    "a formed cluster whose data is gone starts empty only when the spec says so"
                );
            } else {
                prop_assert!(!obs.formed, "once the cluster has formed, nothing starts a new one beside it");
                prop_assert_eq!(members, &obs.initial_members, "a cut-short bootstrap keeps its initial cluster");
                prop_assert!(
                    obs.members.iter().all(|m| members.contains(&m.name) && m.etcd.is_none()),
                    "a bootstrap never touches a member outside its initial cluster or known to etcd"
                );
            }
        }
        Step::RemoveMember { name, id } => {
            let m = find(obs, name);
            prop_assert_eq!(m.id(), Some(*id));
            prop_assert!(!m.is_leader(leader), "the leader is never removed");
            let shrinking = obs.members.iter().filter(|o| o.etcd.is_some()).count() > p.target.size;
            let restarting = m.pod.as_ref().is_some_and(|pod| {
                pod.first_start || pod.terminating && pod.terminating_for_secs < RESTART_SETTLES_WITHIN_SECS
            });
            prop_assert!(
                !m.is_voter() || !restarting || m.lost_data() || shrinking,
                "a voter whose pod is being restarted, or whose etcd is still loading, is not removed for being unhealthy"
            );
            prop_assert!(
                m.lost_data() || shrinking || !runs_what_no_healthy_voter_runs(obs, m),
                "a member that a change restarted onto what no healthy voter runs is removed only by a scale down"
            );
            prop_assert!(
                !m.is_learner()
                    || m.pod.as_ref().is_none_or(|p| p.trouble_or_crashes().is_none())
                    || m.lost_data()
                    || shrinking,
                "a learner Kubernetes cannot run is not replaced by another that would meet the same fate"
            );
            if m.is_voter() {
                prop_assert!(voters(obs) >= 2, "the last voter, the last copy of the data, is never removed");
                let after = healthy_voters(obs) - usize::from(m.is_healthy(CLUSTER_ID));
                prop_assert!(
                    after >= quorum(voters(obs) - 1),
                    "removal keeps quorum: {after} healthy of {}",
                    voters(obs) - 1
                );
            }
        }
        Step::AddLearner { name } => {
            prop_assert!(obs.members.iter().all(|m| m.name != *name), "new members get unused names");
            prop_assert!(!obs.members.iter().any(Member::is_learner), "one learner at a time");
            prop_assert!(
                obs.members.iter().filter(|m| m.etcd.is_some()).all(|m| m.is_healthy(CLUSTER_ID)),
                "members are added only to a fully healthy cluster"
            );
            prop_assert!(obs.members.iter().filter(|m| m.etcd.is_some()).count() < p.target.size);
        }
        Step::PromoteLearner { name, id } => {
            let m = find(obs, name);
            prop_assert!(m.is_learner());
            prop_assert_eq!(m.id(), Some(*id));
            prop_assert!(m.is_healthy(CLUSTER_ID));
            let leader_applied = obs.members.iter().find(|l| l.is_leader(leader)).and_then(Member::applied_index);
            let (Some(l), Some(a)) = (leader_applied, m.applied_index()) else {
                return Err(TestCaseError::fail("promotion without knowing how far behind the learner is"));
            };
            prop_assert!(l.saturating_sub(a) <= LEARNER_CATCH_UP_ENTRIES, "learners are promoted only when caught up");
        }
        Step::MoveLeader { to, to_id } => {
            let m = find(obs, to);
            // Under NOSPACE every member reports the alarm as an error: one that serves otherwise may lead.
            let serves_through_nospace = recovering_space(obs) && serving(m);
            prop_assert!(m.is_voter() && (m.is_healthy(CLUSTER_ID) || serves_through_nospace) && !m.is_leader(leader));
            prop_assert_eq!(m.id(), Some(*to_id));
        }
        Step::RestartMember { name } => {
            let m = find(obs, name);
            if voters(obs) > 1 {
                prop_assert!(!m.is_leader(leader), "the leader restarts only after leadership moved away");
            }
            // A member that is down already (stuck on what the spec no longer asks for) may restart beside others
            // that are down; a healthy one restarts only when every other member is healthy.
            prop_assert!(
                !m.is_healthy(CLUSTER_ID)
                    || obs
                        .members
                        .iter()
                        .filter(|o| o.name != *name && o.etcd.is_some())
                        .all(|o| o.is_healthy(CLUSTER_ID)),
                "a healthy member restarts only when every other member is healthy"
            );
            let leader_applied = obs.members.iter().find(|l| l.is_leader(leader)).and_then(Member::applied_index);
            prop_assert!(
                m.is_voter() || !m.is_healthy(CLUSTER_ID) && m.is_stale_for(&p.target),
                "a learner restarts only when it is down on what the target no longer asks for"
            );
            // The restarted member may be the one behind (cut off from its peers): its restart puts no second
            // member behind.
            if let (Some(l), true) = (leader_applied, m.is_voter()) {
                prop_assert!(
                    obs.members
                        .iter()
                        .filter(|o| o.name != *name)
                        .filter_map(Member::applied_index)
                        .all(|a| l.saturating_sub(a) <= LEARNER_CATCH_UP_ENTRIES),
                    "a restart waits until every other member has caught up with the leader"
                );
            }
            // A learner has no vote: its restart changes no quorum.
            if voters(obs) >= 2 && m.is_voter() {
                let after = healthy_voters(obs) - usize::from(m.is_healthy(CLUSTER_ID));
                prop_assert!(after >= quorum(voters(obs)), "a restart never takes the cluster below quorum");
            }
        }
        Step::SecurePeerUrl { name, id } => {
            let m = find(obs, name);
            prop_assert_eq!(m.id(), Some(*id));
            prop_assert!(
                obs.tls_change.is_some_and(|t| t.peer_tls),
                "peer URLs move to https only while peer TLS is being turned on"
            );
            prop_assert!(m.etcd.as_ref().is_some_and(|e| !e.peer_tls()), "only a plaintext peer URL moves");
            prop_assert!(m.is_voter());
            if voters(obs) > 1 {
                prop_assert!(!m.is_leader(leader), "the leader's peer URL moves only after leadership moved away");
            }
            prop_assert!(voters(obs) != 2, "a member cut off from its only peer would leave no quorum");
            prop_assert!(
                every_member_ready_for_tls(obs, &p.target),
                "a peer URL moves only while every member is a healthy voter holding its certificates"
            );
            prop_assert!(
                obs.members.iter().all(|o| o
                    .pod
                    .as_ref()
                    .is_some_and(|pod| { o.etcd.as_ref().is_some_and(|e| e.peer_tls() == pod.peer_tls) })),
                "one member at a time is cut off from its peers: none other listens otherwise than it is dialled"
            );
            prop_assert!(caught_up(obs), "a peer URL moves only when every member has caught up with the leader");
        }
        Step::RecordTransport { transport } => {
            prop_assert_eq!(Some(*transport), obs.tls_change, "only the transport the spec asks for is recorded");
            prop_assert!(
                every_member_ready_for_tls(obs, &p.target),
                "TLS is recorded only once every member is a healthy voter holding its certificates"
            );
            prop_assert!(
                !transport.peer_tls || obs.members.iter().all(|m| m.etcd.as_ref().is_some_and(|e| e.peer_tls())),
                "peer TLS is recorded only once every peer URL is https"
            );
        }
        Step::DeleteMemberResources { name } => {
            prop_assert!(find(obs, name).etcd.is_none(), "only resources of non-members are deleted");
            let has_leader = matches!(obs.etcd, EtcdView::Reachable { leader_id: Some(_), .. });
            prop_assert!(has_leader, "deletions need an authoritative member list");
        }
        Step::CreateMemberPod { name } => {
            let m = find(obs, name);
            prop_assert!(m.pod.is_none());
            if matches!(obs.etcd, EtcdView::Reachable { leader_id: None, .. }) {
                prop_assert!(
                    m.etcd.is_some() && m.holds_data(obs.ephemeral_storage) && !obs.ephemeral_storage,
                    "without a leader only a member whose volume holds data gets its pod back"
                );
            }
        }
        Step::Nothing
        | Step::Wait
        | Step::CopySurvivors { .. }
        | Step::BeginRecovery { .. }
        | Step::ClearForRecovery { .. }
        | Step::BackUpBeforeUpgrade { .. } => {}
        // Checked by check_maintenance.
        Step::Defragment { .. } | Step::Compact { .. } | Step::DisarmNoSpace => {}
        Step::ExpandVolume { name, .. } => {
            let volume = obs.volume.as_ref();
            let requested = find(obs, name).pvc.as_ref().and_then(|p| p.requested_bytes);
            prop_assert_eq!(obs.volume_expansion_allowed, Some(true), "a claim grows only where its class allows it");
            prop_assert!(
                volume.zip(requested).is_some_and(|(v, r)| r < v.bytes),
                "only a claim smaller than the spec asks grows; it never shrinks"
            );
        }
    }
    Ok(())
}

/// Every member is a healthy voter whose pod runs the target, certificates and all.
fn every_member_ready_for_tls(obs: &Observation, target: &Target) -> bool {
    obs.members.iter().all(|m| m.is_voter() && m.is_healthy(CLUSTER_ID) && !m.is_stale_for(target))
}

/// No member trails the leader by more than a learner may before promotion.
fn caught_up(obs: &Observation) -> bool {
    let leader = leader_of(obs);
    let Some(l) = obs.members.iter().find(|m| m.is_leader(leader)).and_then(Member::applied_index) else {
        return true;
    };
    obs.members.iter().filter_map(Member::applied_index).all(|a| l.saturating_sub(a) <= LEARNER_CATCH_UP_ENTRIES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_is_safe(obs in arb_observation()) {
        let p = plan(&obs);
        check_invariants(&obs, &p)?;
    }

    #[test]
    fn planning_is_deterministic(obs in arb_observation()) {
        prop_assert_eq!(plan(&obs), plan(&obs));
    }

    #[test]
    fn every_maintenance_plan_is_safe(obs in arb_maintained()) {
        let p = plan(&obs);
        check_invariants(&obs, &p)?;
    }

    #[test]
    fn every_plan_while_turning_tls_on_is_safe(obs in arb_turning_tls_on()) {
        let p = plan(&obs);
        check_invariants(&obs, &p)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Lifecycles through a simulator: each step is applied as if it succeeded and the members became healthy.

struct Simulator {
    obs: Observation,
    steps: Vec<Step>,
    next_id: u64,
}

impl Simulator {
    fn new(obs: Observation) -> Self {
        let next_id = obs.members.iter().filter_map(Member::id).max().unwrap_or(0) + 1;
        Self { obs, steps: Vec::new(), next_id }
    }

    /// Plans and applies steps until the planner has nothing left to do; fails on waiting or looping.
    fn converge(&mut self) -> Plan {
        for _ in 0..60 {
            let p = plan(&self.obs);
            if let Err(e) = check_invariants(&self.obs, &p) {
                panic!("unsafe step {:?}: {e}", p.step);
            }
            self.obs.committed = Some(p.target.clone());
            match p.step.clone() {
                Step::Nothing => return p,
                Step::Wait => panic!("stuck waiting: {}", p.reason),
                step => {
                    self.apply(&step, &p.target);
                    self.steps.push(step);
                }
            }
            // The report records the cluster ID as soon as etcd answers.
            self.obs.formed |= matches!(self.obs.etcd, EtcdView::Reachable { .. });
        }
        panic!("no convergence in 60 steps: {:?}", self.steps);
    }

    /// The steps taken, in short: `restart <member>`, `lead <member>`, `back up <backup>`, else the action.
    fn described_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::RestartMember { name } => format!("restart {name}"),
                Step::MoveLeader { to, .. } => format!("lead {to}"),
                Step::BackUpBeforeUpgrade { backup } => format!("back up {backup}"),
                other => other.action().to_string(),
            })
            .collect()
    }

    fn leader_applied(&self) -> u64 {
        let leader = leader_of(&self.obs);
        self.obs.members.iter().find(|m| m.is_leader(leader)).and_then(Member::applied_index).unwrap_or(100)
    }

    /// The member's pod comes back on the target, set up as the operator would create it.
    fn restart(&mut self, name: &str, target: &Target, applied: u64) {
        let ports = self.obs.ports_of(name);
        let m = self.obs.members.iter_mut().find(|m| m.name == *name).unwrap();
        let (id, learner) = (m.id().unwrap(), m.is_learner());
        let peer_urls = m.etcd.as_ref().unwrap().peer_urls.clone();
        let pvc = m.pvc.clone();
        *m = healthy_member(m.ordinal, id, learner, target.version, applied);
        m.etcd.as_mut().unwrap().peer_urls = peer_urls;
        // The pod comes back on its volume, with the quota recorded there.
        let quota = pvc.as_ref().and_then(|p| p.quota_bytes);
        m.pvc = pvc.or(m.pvc.take());
        let pod = m.pod.as_mut().unwrap();
        if let Some(quota) = quota {
            pod.quota_bytes = quota;
        }
        pod.template_hash = target.template_hash.clone();
        pod.peer_tls = ports.peer_tls;
        pod.client_plaintext = ports.client_plaintext;
    }

    fn apply(&mut self, step: &Step, target: &Target) {
        let applied = self.leader_applied();
        match step {
            Step::RestoreMembers { .. }
            | Step::CopySurvivors { .. }
            | Step::BeginRecovery { .. }
            | Step::ClearForRecovery { .. } => panic!("the simulated clusters restore and recover nothing"),
            // The backup is taken and succeeds before the next observation.
            Step::BackUpBeforeUpgrade { .. } => {
                let to = (target.version.major, target.version.minor);
                let done = CopyState::Succeeded { raft_term: 1, raft_index: applied };
                self.obs.upgrade_backups.get_or_insert_default().insert(to, done);
            }
            Step::BootstrapMembers { members } => {
                for name in members {
                    let ordinal = ordinal_of("demo", name).unwrap();
                    self.obs.members.push(healthy_member(ordinal, self.next_id, false, target.version, 0));
                    self.next_id += 1;
                }
                let leader = self.obs.members.iter().filter_map(Member::id).min();
                self.obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: leader };
            }
            Step::AddLearner { name } => {
                let ordinal = ordinal_of("demo", name).unwrap();
                self.obs.members.push(healthy_member(ordinal, self.next_id, true, target.version, applied));
                self.next_id += 1;
                self.obs.members.sort_by_key(|m| m.ordinal);
            }
            Step::PromoteLearner { name, .. } => {
                let m = self.obs.members.iter_mut().find(|m| m.name == *name).unwrap();
                m.etcd.as_mut().unwrap().learner = false;
            }
            Step::RemoveMember { name, .. } => {
                self.obs.members.iter_mut().find(|m| m.name == *name).unwrap().etcd = None;
            }
            Step::DeleteMemberResources { name } => self.obs.members.retain(|m| m.name != *name),
            Step::MoveLeader { to_id, .. } => {
                self.obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: Some(*to_id) };
            }
            Step::RestartMember { name } | Step::CreateMemberPod { name } => self.restart(name, target, applied),
            Step::SecurePeerUrl { name, .. } => {
                let m = self.obs.members.iter_mut().find(|m| m.name == *name).unwrap();
                m.etcd.as_mut().unwrap().peer_urls = vec![format!("https://{name}.demo:2380")];
                self.restart(name, target, applied);
            }
            Step::RecordTransport { transport } => {
                self.obs.transport = *transport;
                self.obs.tls_change = None;
                self.obs.desired.template_hash = "t1".into();
            }
            // A defragmentation leaves no free page; a compaction frees half of what each member holds; a
            // disarm clears the alarms.
            Step::Defragment { name, .. } => {
                let m = self.obs.members.iter_mut().find(|m| m.name == *name).unwrap();
                let health = m.etcd.as_mut().unwrap().health.as_mut().unwrap();
                health.db_size_bytes = health.db_size_in_use_bytes;
                m.defragmented_secs_ago = Some(0);
            }
            Step::Compact { revision } => {
                for m in &mut self.obs.members {
                    let health = m.etcd.as_mut().unwrap().health.as_mut().unwrap();
                    health.db_size_in_use_bytes /= 2;
                }
                self.obs.maintenance.compacted_revision = Some(*revision);
            }
            // The claim asks for more at once; its volume grows before the next observation.
            Step::ExpandVolume { name, quota_bytes, .. } => {
                let bytes = self.obs.volume.as_ref().unwrap().bytes;
                let pvc = self.obs.members.iter_mut().find(|m| m.name == *name).unwrap().pvc.as_mut().unwrap();
                pvc.requested_bytes = Some(bytes);
                pvc.capacity_bytes = Some(bytes);
                pvc.quota_bytes = Some(*quota_bytes);
            }
            Step::DisarmNoSpace => {
                self.obs.alarms.clear();
                for m in &mut self.obs.members {
                    m.etcd.as_mut().unwrap().health.as_mut().unwrap().has_errors = false;
                }
            }
            Step::Nothing | Step::Wait => {}
        }
    }
}

#[test]
fn a_new_cluster_starts_all_its_members_at_once() {
    let mut sim = Simulator::new(observation(vec![], None, target(3, V36)));
    let done = sim.converge();
    assert_eq!(done.activity, Activity::Idle);
    assert_eq!(
        sim.steps,
        [Step::BootstrapMembers { members: vec!["demo-0".into(), "demo-1".into(), "demo-2".into()] }]
    );
    assert_eq!(voters(&sim.obs), 3);
}

/// Members created for a static initial cluster that has not formed: pod and PVC, nothing known to etcd.
fn unformed(names: &[u32], initial: u32, size: usize) -> Observation {
    let members = names
        .iter()
        .map(|&i| {
            let mut m = healthy_member(i, u64::from(i) + 1, false, V36, 0);
            m.etcd = None;
            let pod = m.pod.as_mut().unwrap();
            pod.ready = false;
            pod.not_ready_for_secs = THRESHOLD * 2;
            m
        })
        .collect();
    let mut obs = observation(members, None, target(size, V36));
    obs.initial_members = (0..initial).map(|i| format!("demo-{i}")).collect();
    obs
}

#[test]
fn a_cut_short_bootstrap_is_finished_with_the_same_initial_cluster() {
    // The operator stopped after creating one of three members; meanwhile the spec asks for five.
    let obs = unformed(&[0], 3, 5);
    let p = plan(&obs);
    assert_eq!(p.step, Step::BootstrapMembers { members: vec!["demo-0".into(), "demo-1".into(), "demo-2".into()] });
    let mut sim = Simulator::new(obs);
    sim.obs.members.clear();
    sim.obs.initial_members.clear();
    sim.converge();
    assert_eq!(voters(&sim.obs), 5, "the new size is taken up by scaling once the cluster formed");
}

#[test]
fn initial_members_that_have_not_formed_a_cluster_are_waited_for_not_declared_lost() {
    let p = plan(&unformed(&[0, 1, 2], 3, 3));
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Creating);
}

#[test]
fn once_formed_a_missing_member_is_never_recreated_as_a_new_cluster() {
    let mut obs = unformed(&[0], 3, 3);
    obs.formed = true;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::QuorumLost));
}

#[test]
fn every_member_gone_after_forming_is_data_loss_and_starts_empty_only_when_the_spec_says_so() {
    let mut obs = observation(vec![], None, target(3, V36));
    obs.formed = true;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::DataLoss));
    assert!(p.reason.contains("StartEmpty"), "{}", p.reason);

    obs.start_empty_after_data_loss = true;
    let p = plan(&obs);
    assert!(matches!(p.step, Step::BootstrapMembers { ref members } if members.len() == 3));
    assert!(p.reason.contains("new, empty cluster"), "{}", p.reason);
}

#[test]
fn an_initial_member_that_never_started_gets_its_pod_in_a_formed_cluster() {
    // Two of three initial members formed the cluster before the operator stopped; the third has nothing yet.
    let mut obs = healthy_cluster(3, V36);
    obs.members[2].pod = None;
    obs.members[2].pvc = None;
    let e = obs.members[2].etcd.as_mut().unwrap();
    e.client_urls.clear();
    e.health = None;
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-2".into() });
}

#[test]
fn scale_three_to_five_and_back() {
    let mut sim = Simulator::new(healthy_cluster(3, V36));
    sim.obs.desired.size = 5;
    sim.converge();
    assert_eq!(voters(&sim.obs), 5);
    sim.steps.clear();
    sim.obs.desired.size = 3;
    sim.converge();
    assert_eq!(voters(&sim.obs), 3);
    let actions: Vec<&str> = sim.steps.iter().map(Step::action).collect();
    assert_eq!(actions, ["RemoveMember", "DeleteMemberResources", "RemoveMember", "DeleteMemberResources"]);
    assert!(sim.obs.members.iter().any(|m| m.is_leader(leader_of(&sim.obs))), "the leader survives a scale down");
}

#[test]
fn scale_down_moves_leadership_off_a_member_only_when_it_must() {
    // Two members, the leader has the highest ordinal: scaling to 1 removes the follower, not the leader.
    let mut obs = healthy_cluster(2, V36);
    obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: Some(2) };
    obs.desired.size = 1;
    let p = plan(&obs);
    assert_eq!(p.step, Step::RemoveMember { name: "demo-0".into(), id: 1 });
}

#[test]
fn upgrade_restarts_followers_first_and_the_leader_last() {
    let mut sim = Simulator::new(healthy_cluster(3, V35));
    sim.obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: Some(1) };
    sim.obs.desired.version = V36;
    sim.converge();
    assert_eq!(sim.described_steps(), ["restart demo-1", "restart demo-2", "lead demo-2", "restart demo-0"]);
    assert!(sim.obs.members.iter().all(|m| m.pod.as_ref().unwrap().version == Some(V36)));
}

#[test]
fn with_a_store_a_minor_upgrade_backs_the_cluster_up_before_the_first_restart_only() {
    let mut sim = Simulator::new(healthy_cluster(3, V35));
    sim.obs.upgrade_backups = Some(Default::default());
    sim.obs.desired.version = V36;
    sim.converge();
    assert_eq!(
        sim.described_steps(),
        ["back up demo-before-3-6", "restart demo-1", "restart demo-2", "lead demo-2", "restart demo-0"]
    );

    // A patch release needs none.
    let mut sim = Simulator::new(healthy_cluster(3, V36));
    sim.obs.upgrade_backups = Some(Default::default());
    sim.obs.desired.version = Version::new(3, 6, 20);
    sim.converge();
    assert!(sim.steps.iter().all(|s| !matches!(s, Step::BackUpBeforeUpgrade { .. })), "{:?}", sim.steps);
}

#[test]
fn a_failed_backup_before_an_upgrade_holds_every_member_back() {
    let mut obs = healthy_cluster(3, V35);
    obs.desired.version = V36;
    obs.committed = Some(target(3, V36));
    obs.upgrade_backups = Some([((3, 6), CopyState::Running)].into());
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("waiting for EtcdBackup demo-before-3-6"), "{}", p.reason);
    obs.upgrade_backups = Some([((3, 6), CopyState::Failed("no healthy voter".into()))].into());
    let p = plan(&obs);
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Blocked(Blocker::UpgradeBackupFailed)));
    assert!(p.reason.contains("failed: no healthy voter; no member was upgraded"), "{}", p.reason);
    // A member whose pod was lost comes back all the same.
    obs.members[2].pod = None;
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-2".into() });
}

#[test]
fn an_upgrade_waits_for_the_restarted_member_to_catch_up() {
    let mut obs = healthy_cluster(3, V35);
    obs.desired.version = V36;
    obs.committed = Some(target(3, V36));
    // demo-1 has been restarted on 3.6 and is ready, but still far behind the leader.
    let restarted = &mut obs.members[1];
    restarted.pod.as_mut().unwrap().version = Some(V36);
    restarted.etcd.as_mut().unwrap().health.as_mut().unwrap().raft_applied_index = 0;
    obs.members[0].etcd.as_mut().unwrap().health.as_mut().unwrap().raft_applied_index = 5_000;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait, "{}", p.reason);
    assert!(p.reason.contains("demo-1 is 5000 entries behind"), "{}", p.reason);
}

#[test]
fn skipped_minor_is_refused_and_nothing_changes() {
    let mut obs = healthy_cluster(3, V35);
    obs.desired.version = Version::new(3, 7, 0);
    let p = plan(&obs);
    assert_eq!(p.step, Step::Nothing);
    assert_eq!(p.activity, Activity::Blocked(Blocker::UnsupportedVersionChange));
    assert_eq!(p.target.version, V35, "the running version stays the target");
}

#[test]
fn downgrade_is_refused() {
    let mut obs = healthy_cluster(3, V36);
    obs.desired.version = V35;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Nothing);
    assert!(p.refusal.is_some());
}

#[test]
fn a_spec_change_waits_for_the_current_step_to_settle() {
    // Scaling 3 -> 5 is under way: a learner has been added. Asking for 3 now does not mix plans: the
    // learner is promoted first, and the new size is taken up once the cluster is at rest.
    let mut obs = healthy_cluster(3, V36);
    obs.members.push(healthy_member(3, 4, true, V36, 90));
    obs.committed = Some(target(5, V36));
    obs.desired = target(3, V36);
    let p = plan(&obs);
    assert_eq!(p.target.size, 5, "the committed target holds while a learner is in flight");
    assert_eq!(p.step, Step::PromoteLearner { name: "demo-3".into(), id: 4 });
    let mut sim = Simulator::new(obs);
    sim.converge();
    assert_eq!(voters(&sim.obs), 3, "the later edit takes effect once the step in flight settled");
}

#[test]
fn a_restarted_member_with_its_volume_rejoins_as_itself() {
    let mut obs = healthy_cluster(3, V36);
    obs.members[2].pod = None;
    obs.members[2].etcd.as_mut().unwrap().health = None;
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-2".into() });
}

#[test]
fn a_member_that_lost_pod_and_volume_is_replaced() {
    let mut sim = Simulator::new(healthy_cluster(3, V36));
    sim.obs.members[2].pod = None;
    sim.obs.members[2].pvc = None;
    sim.obs.members[2].etcd.as_mut().unwrap().health = None;
    sim.converge();
    let actions: Vec<&str> = sim.steps.iter().map(Step::action).collect();
    assert_eq!(actions, ["RemoveMember", "DeleteMemberResources", "AddLearner", "PromoteLearner"]);
    let replacement = sim.obs.members.iter().find(|m| m.name == "demo-2").expect("a replacement member");
    assert_ne!(replacement.id(), Some(3), "the replacement is a new etcd member, not the lost one");
}

#[test]
fn an_unhealthy_member_is_replaced_only_after_the_threshold() {
    let mut obs = healthy_cluster(3, V36);
    let pod = obs.members[1].pod.as_mut().unwrap();
    pod.ready = false;
    pod.not_ready_for_secs = THRESHOLD - 1;
    obs.members[1].etcd.as_mut().unwrap().health = None;
    assert_eq!(plan(&obs).step, Step::Wait, "unknown is not dead");
    obs.members[1].pod.as_mut().unwrap().not_ready_for_secs = THRESHOLD;
    assert_eq!(plan(&obs).step, Step::RemoveMember { name: "demo-1".into(), id: 2 });
}

#[test]
fn a_member_that_lost_its_data_is_replaced_without_waiting_for_the_threshold() {
    let mut sim = Simulator::new(healthy_cluster(3, V36));
    let pod = sim.obs.members[1].pod.as_mut().unwrap();
    pod.ready = false;
    pod.not_ready_for_secs = 5;
    pod.lost_data = true;
    sim.obs.members[1].etcd.as_mut().unwrap().health = None;
    assert_eq!(plan(&sim.obs).step, Step::RemoveMember { name: "demo-1".into(), id: 2 });
    sim.converge();
    let actions: Vec<&str> = sim.steps.iter().map(Step::action).collect();
    assert_eq!(actions, ["RemoveMember", "DeleteMemberResources", "AddLearner", "PromoteLearner"]);
}

#[test]
fn a_member_whose_volume_went_with_its_node_is_replaced_without_waiting_for_the_threshold() {
    // Its pod waits to be scheduled (its volume is bound to a node that no longer exists) ...
    let mut sim = Simulator::new(healthy_cluster(3, V36));
    let pod = sim.obs.members[1].pod.as_mut().unwrap();
    pod.ready = false;
    pod.not_ready_for_secs = 5;
    sim.obs.members[1].etcd.as_mut().unwrap().health = None;
    sim.obs.members[1].pvc.as_mut().unwrap().stranded_on = Some("node-b".into());
    let p = plan(&sim.obs);
    assert_eq!(p.step, Step::RemoveMember { name: "demo-1".into(), id: 2 });
    assert!(p.reason.contains("node-b, which no longer exists"), "{}", p.reason);
    sim.converge();
    let actions: Vec<&str> = sim.steps.iter().map(Step::action).collect();
    assert_eq!(actions, ["RemoveMember", "DeleteMemberResources", "AddLearner", "PromoteLearner"]);

    // ... or its pod went with the Node object: it is not created again on a volume nobody can reach.
    let mut obs = healthy_cluster(3, V36);
    obs.members[1].pod = None;
    obs.members[1].etcd.as_mut().unwrap().health = None;
    obs.members[1].pvc.as_mut().unwrap().stranded_on = Some("node-b".into());
    let p = plan(&obs);
    assert_eq!(p.step, Step::RemoveMember { name: "demo-1".into(), id: 2 });
    assert!(p.reason.contains("volume with node node-b"), "{}", p.reason);
    // Its volume on a node that still exists brings the pod back, as ever.
    obs.members[1].pvc.as_mut().unwrap().stranded_on = None;
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-1".into() });

    // Quorum first: with another voter down, nothing is removed for it.
    let mut obs = healthy_cluster(3, V36);
    for m in &mut obs.members[1..] {
        m.pod.as_mut().unwrap().ready = false;
        m.etcd.as_mut().unwrap().health = None;
    }
    obs.members[1].pvc.as_mut().unwrap().stranded_on = Some("node-b".into());
    assert!(!matches!(plan(&obs).step, Step::RemoveMember { .. }), "{:?}", plan(&obs));
}

#[test]
fn scale_down_removes_the_unhealthy_member_first() {
    let mut obs = healthy_cluster(5, V36);
    obs.members[1].pod.as_mut().unwrap().ready = false;
    obs.members[1].pod.as_mut().unwrap().not_ready_for_secs = 10;
    obs.desired.size = 3;
    obs.committed = Some(target(3, V36));
    assert_eq!(plan(&obs).step, Step::RemoveMember { name: "demo-1".into(), id: 2 });
}

#[test]
fn quorum_loss_is_reported_not_guessed() {
    let mut obs = healthy_cluster(3, V36);
    for m in &mut obs.members {
        let pod = m.pod.as_mut().unwrap();
        pod.ready = false;
        pod.not_ready_for_secs = THRESHOLD * 2;
        m.etcd = None;
    }
    obs.etcd = EtcdView::Unreachable;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::QuorumLost));
    assert!(p.reason.contains("demo-0, demo-1, demo-2"), "the reason names the members holding data: {}", p.reason);
}

#[test]
fn members_answering_without_a_leader_are_quorum_lost_only_when_too_few_answer() {
    let mut obs = healthy_cluster(3, V36);
    obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: None };
    let p = plan(&obs);
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Healing), "an election is waited for");
    for m in &mut obs.members[1..] {
        m.etcd.as_mut().unwrap().health = None;
        m.pod.as_mut().unwrap().ready = false;
    }
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::QuorumLost));
    assert!(p.reason.starts_with("1 of 3 voting members answer"), "{}", p.reason);
}

#[test]
fn every_pod_gone_with_volumes_intact_brings_the_members_back() {
    let mut obs = healthy_cluster(3, V36);
    for m in &mut obs.members {
        m.pod = None;
        m.etcd = None;
    }
    obs.etcd = EtcdView::Unreachable;
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-0".into() });
}

#[test]
fn a_crash_between_member_add_and_pod_creation_is_finished_not_repeated() {
    let mut obs = healthy_cluster(3, V36);
    obs.desired.size = 4;
    obs.members.push(Member {
        name: "demo-3".into(),
        ordinal: 3,
        pod: None,
        pvc: None,
        etcd: Some(EtcdMember { id: 9, learner: true, ..EtcdMember::default() }),
        bootstrap: None,
        defragmented_secs_ago: None,
    });
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-3".into() });
}

#[test]
fn paused_clusters_get_no_step() {
    let mut obs = healthy_cluster(3, V36);
    obs.desired.size = 5;
    obs.paused = true;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Nothing);
    assert_eq!(p.activity, Activity::Paused);
}

#[test]
fn versions_parse_and_upgrade_paths_follow_etcd() {
    assert_eq!(Version::parse("v3.6.16"), Some(V36));
    assert_eq!(Version::parse("3.6"), None);
    assert_eq!(Version::parse("3.6.1.2"), None);
    assert!(V35.can_upgrade_to(V36));
    assert!(V36.can_upgrade_to(Version::new(3, 6, 20)));
    assert!(!V36.can_upgrade_to(V35));
    assert!(!V35.can_upgrade_to(Version::new(3, 7, 0)));
    assert!(!Version::new(3, 6, 20).can_upgrade_to(V36));
    // Minor upgrades only from the patch releases etcd supports them from.
    assert!(!Version::new(3, 5, 25).can_upgrade_to(V36));
    assert!(Version::new(3, 5, 26).can_upgrade_to(V36));
    assert!(!Version::new(3, 6, 10).can_upgrade_to(Version::new(3, 7, 3)));
    assert!(V36.can_upgrade_to(Version::new(3, 7, 3)));
}

#[test]
fn a_cluster_created_again_waits_for_the_earlier_ones_objects_to_go() {
    let mut obs = unformed(&[0, 1, 2], 3, 3);
    obs.leftovers = vec!["pod demo-0".into(), "PVC demo-0".into()];
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("pod demo-0, PVC demo-0"), "{}", p.reason);
}

#[test]
fn pods_gone_while_no_member_leads_come_back_to_their_volumes() {
    // Two of three pods deleted at once: the survivor answers but cannot lead alone.
    let mut obs = healthy_cluster(3, V36);
    obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: None };
    for name in ["demo-1", "demo-2"] {
        let m = obs.members.iter_mut().find(|m| m.name == name).unwrap();
        m.pod = None;
        m.etcd.as_mut().unwrap().health = None;
    }
    let p = plan(&obs);
    assert_eq!(p.step, Step::CreateMemberPod { name: "demo-1".into() });
    assert_eq!(p.activity, Activity::Healing);

    // Without volumes there is nothing to come back to: quorum is lost and reported.
    for m in obs.members.iter_mut().filter(|m| m.pod.is_none()) {
        m.pvc = None;
    }
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::QuorumLost));
}

#[test]
fn a_two_member_cluster_does_not_roll_and_says_why() {
    let mut obs = healthy_cluster(2, V36);
    obs.desired = target(2, Version::new(3, 6, 20));
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("2-member cluster cannot roll"), "{}", p.reason);

    // Three members roll, one at a time, followers first.
    let mut obs = healthy_cluster(3, V36);
    obs.desired = target(3, Version::new(3, 6, 20));
    assert_eq!(plan(&obs).step, Step::RestartMember { name: "demo-1".into() });

    // A single member restarts: there is no quorum to keep but its own, and its data stays on its volume.
    let mut obs = healthy_cluster(1, V36);
    obs.desired = target(1, Version::new(3, 6, 20));
    assert_eq!(plan(&obs).step, Step::RestartMember { name: "demo-0".into() });
}

#[test]
fn nothing_is_deleted_on_a_member_list_that_may_be_stale() {
    // A pod and PVC whose member is not in the list: deleted when the list is current, not otherwise.
    let mut obs = healthy_cluster(3, V36);
    let mut stray = healthy_member(3, 4, false, V36, 100);
    stray.etcd = None;
    obs.members.push(stray);
    assert_eq!(plan(&obs).step, Step::DeleteMemberResources { name: "demo-3".into() });
    obs.membership_is_current = false;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("may be stale"), "{}", p.reason);
}

#[test]
fn lasting_refusals_of_membership_changes_move_leadership_once_per_episode() {
    // 3 → 4: the learner add is refused as an unhealthy cluster.
    let mut obs = healthy_cluster(3, V36);
    obs.desired = target(4, V36);
    obs.committed = Some(target(4, V36));
    obs.membership_refused_for_secs = STALE_PEER_VIEW_AFTER_SECS - 1;
    assert_eq!(plan(&obs).step, Step::AddLearner { name: "demo-3".into() }, "short refusals are retried");
    obs.membership_refused_for_secs = STALE_PEER_VIEW_AFTER_SECS;
    let p = plan(&obs);
    assert!(matches!(p.step, Step::MoveLeader { ref to, .. } if to != "demo-0"), "{:?}", p.step);
    assert!(p.reason.contains("stale"), "{}", p.reason);
    // The move ends the episode (the operator forgets the clock); the next plan tries the change again.
    obs.membership_refused_for_secs = 0;
    assert_eq!(plan(&obs).step, Step::AddLearner { name: "demo-3".into() });

    // Refused removals and promotions are treated alike.
    let mut shrink = healthy_cluster(3, V36);
    shrink.desired = target(1, V36);
    shrink.committed = Some(target(1, V36));
    shrink.membership_refused_for_secs = STALE_PEER_VIEW_AFTER_SECS * 2;
    assert!(matches!(plan(&shrink).step, Step::MoveLeader { .. }));
}

#[test]
fn the_disruption_budget_counts_the_voters_that_exist_during_a_scale_down() {
    let mut obs = healthy_cluster(5, V36);
    obs.desired = target(3, V36);
    assert_eq!(disruption_budget_members(&obs, &target(3, V36)), 5, "5 voters still vote while shrinking to 3");
    assert_eq!(quorum(disruption_budget_members(&obs, &target(3, V36))), 3);
    let obs = healthy_cluster(3, V36);
    assert_eq!(disruption_budget_members(&obs, &target(5, V36)), 5, "growing: the target is the larger");
}

/// A 3-member cluster on 3.6.16 whose rollout to `to` restarted demo-1, which does not come back.
fn stuck_rollout(to: Version, trouble: Option<TroubleKind>, not_ready_for_secs: u64) -> Observation {
    let mut obs = healthy_cluster(3, V36);
    obs.desired = target(3, to);
    obs.committed = Some(target(3, to));
    let m = obs.members.iter_mut().find(|m| m.name == "demo-1").unwrap();
    m.etcd.as_mut().unwrap().health = None;
    let pod = m.pod.as_mut().unwrap();
    pod.ready = false;
    pod.version = Some(to);
    pod.not_ready_for_secs = not_ready_for_secs;
    pod.trouble = trouble.map(|kind| PodTrouble { kind, message: "quay.io/coreos/etcd:v3.6.99: not found".into() });
    obs
}

#[test]
fn a_rollout_that_cannot_progress_halts_and_removes_no_data() {
    let missing = Version::new(3, 6, 99);
    // Long past the unhealthy threshold: the member is still not removed, the rollout says why it halted.
    let p = plan(&stuck_rollout(missing, Some(TroubleKind::ImagePull), THRESHOLD * 2));
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::RolloutStuck));
    assert!(p.reason.contains("image cannot be pulled"), "{}", p.reason);
    assert!(p.reason.contains("back to 3.6.16"), "{}", p.reason);

    // With no trouble named, a starting member is waited for, then the rollout halts after a bound.
    let p = plan(&stuck_rollout(missing, None, 10));
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Upgrading));
    let p = plan(&stuck_rollout(missing, None, ROLLOUT_STUCK_AFTER_SECS));
    assert_eq!(p.activity, Activity::Blocked(Blocker::RolloutStuck));
    let p = plan(&stuck_rollout(missing, Some(TroubleKind::CrashLoop), THRESHOLD * 4));
    assert_eq!(p.activity, Activity::Blocked(Blocker::RolloutStuck));
    assert!(p.reason.contains("keeps exiting"), "{}", p.reason);
}

#[test]
fn going_back_to_the_version_that_runs_restarts_the_stuck_member_on_it() {
    let mut obs = stuck_rollout(Version::new(3, 6, 99), Some(TroubleKind::ImagePull), THRESHOLD * 2);
    obs.desired = target(3, V36);
    let p = plan(&obs);
    assert_eq!(p.target.version, V36, "the spec may supersede a stuck rollout");
    assert_eq!(p.step, Step::RestartMember { name: "demo-1".into() });

    // The restart under way: the stuck pod terminating, long past the threshold, is not a reason to remove it.
    let mut restarting = obs.clone();
    let m = restarting.members.iter_mut().find(|m| m.name == "demo-1").unwrap();
    m.pod.as_mut().unwrap().terminating = true;
    let p = plan(&restarting);
    assert!(!matches!(p.step, Step::RemoveMember { .. }), "{:?}: {}", p.step, p.reason);
    // Once the pod is gone, it is created again on the version that runs.
    restarting.members.iter_mut().find(|m| m.name == "demo-1").unwrap().pod = None;
    assert_eq!(plan(&restarting).step, Step::CreateMemberPod { name: "demo-1".into() });

    // A corrected pod template takes over the same way.
    let mut obs = healthy_cluster(3, V36);
    let m = obs.members.iter_mut().find(|m| m.name == "demo-2").unwrap();
    m.etcd.as_mut().unwrap().health = None;
    let pod = m.pod.as_mut().unwrap();
    (pod.ready, pod.template_hash, pod.not_ready_for_secs) = (false, "broken".into(), THRESHOLD * 3);
    pod.trouble = Some(PodTrouble { kind: TroubleKind::Unschedulable, message: "0/1 nodes are available".into() });
    assert_eq!(plan(&obs).step, Step::RestartMember { name: "demo-2".into() });

    // A sick member that runs what the others run is the member's own trouble: replaced after the threshold.
    let mut obs = stuck_rollout(V36, Some(TroubleKind::CrashLoop), THRESHOLD + 1);
    obs.desired = target(3, V36);
    obs.committed = Some(target(3, V36));
    assert!(matches!(plan(&obs).step, Step::RemoveMember { ref name, .. } if name == "demo-1"));
}

#[test]
fn alarms_are_reported_and_no_member_is_replaced_for_them() {
    // NOSPACE: every member reports the alarm as an error, and looks unhealthy, long past the threshold.
    let mut obs = healthy_cluster(3, V36);
    for m in &mut obs.members {
        m.etcd.as_mut().unwrap().health.as_mut().unwrap().has_errors = true;
        let pod = m.pod.as_mut().unwrap();
        (pod.ready, pod.not_ready_for_secs) = (false, THRESHOLD * 3);
    }
    obs.alarms = vec![MemberAlarm { member: "demo-2".into(), alarm: Alarm::NoSpace }];
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::AlarmNoSpace));
    assert!(p.reason.contains("NOSPACE for demo-2") && p.reason.contains("defragment"), "{}", p.reason);

    // CORRUPT outranks NOSPACE: it is about whose data to trust.
    obs.alarms.push(MemberAlarm { member: "demo-1".into(), alarm: Alarm::Corrupt });
    let p = plan(&obs);
    assert_eq!(p.activity, Activity::Blocked(Blocker::AlarmCorrupt));
    assert!(p.reason.contains("CORRUPT for demo-1"), "{}", p.reason);

    // Disarmed, the cluster is itself again.
    let mut obs = healthy_cluster(3, V36);
    obs.alarms.clear();
    assert_eq!(plan(&obs).step, Step::Nothing);
}

#[test]
fn a_missing_storage_class_is_reported_by_name() {
    let mut obs = observation(vec![], None, target(3, V36));
    obs.missing_storage_class = Some("fast-ssd".into());
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::StorageClassMissing));
    assert!(p.reason.contains("StorageClass fast-ssd does not exist"), "{}", p.reason);

    // A running cluster is not stopped by it: only steps that need a new volume are.
    let mut obs = healthy_cluster(3, V36);
    obs.missing_storage_class = Some("fast-ssd".into());
    assert_eq!(plan(&obs).step, Step::Nothing);
    obs.desired = target(4, V36);
    assert_eq!(plan(&obs).activity, Activity::Blocked(Blocker::StorageClassMissing));
}

#[test]
fn a_rollout_halts_at_whichever_member_gets_stuck_and_a_pod_that_never_goes_away_is_replaced() {
    // 3.6.16 → 3.6.20: demo-1 came back on 3.6.20, demo-2 restarted and cannot be scheduled; demo-0 (the
    // leader) still runs 3.6.16. The healthy voters run two versions: the rollout is under way.
    let next = Version::new(3, 6, 20);
    let mut obs = stuck_rollout(next, Some(TroubleKind::Unschedulable), THRESHOLD * 2);
    let m = obs.members.iter_mut().find(|m| m.name == "demo-1").unwrap();
    *m = healthy_member(1, 2, false, next, 100);
    let m = obs.members.iter_mut().find(|m| m.name == "demo-2").unwrap();
    m.etcd.as_mut().unwrap().health = None;
    let pod = m.pod.as_mut().unwrap();
    (pod.ready, pod.version, pod.not_ready_for_secs) = (false, Some(next), THRESHOLD * 2);
    pod.trouble = Some(PodTrouble { kind: TroubleKind::Unschedulable, message: "0/1 nodes are available".into() });
    let p = plan(&obs);
    assert_eq!(p.activity, Activity::Blocked(Blocker::RolloutStuck), "{:?}: {}", p.step, p.reason);
    assert!(p.reason.contains("demo-2"), "{}", p.reason);

    // A member whose pod stays terminating (its node is gone) is replaced once that outlasts a restart.
    let mut obs = healthy_cluster(3, V36);
    let m = obs.members.iter_mut().find(|m| m.name == "demo-2").unwrap();
    m.etcd.as_mut().unwrap().health = None;
    let pod = m.pod.as_mut().unwrap();
    (pod.ready, pod.terminating, pod.not_ready_for_secs) = (false, true, THRESHOLD * 2);
    pod.terminating_for_secs = 10;
    assert_eq!(plan(&obs).step, Step::Wait, "a restart under way gets its chance");
    obs.members.iter_mut().find(|m| m.name == "demo-2").unwrap().pod.as_mut().unwrap().terminating_for_secs =
        RESTART_SETTLES_WITHIN_SECS;
    assert!(matches!(plan(&obs).step, Step::RemoveMember { ref name, .. } if name == "demo-2"));
}

#[test]
fn a_member_still_loading_its_data_gets_the_startup_probes_time() {
    let mut obs = healthy_cluster(3, V36);
    let m = obs.members.iter_mut().find(|m| m.name == "demo-2").unwrap();
    m.etcd.as_mut().unwrap().health = None;
    let pod = m.pod.as_mut().unwrap();
    (pod.ready, pod.not_ready_for_secs, pod.first_start) = (false, THRESHOLD + 60, true);
    assert_eq!(plan(&obs).step, Step::Wait, "loading past the threshold, within the startup probe");
    obs.members.iter_mut().find(|m| m.name == "demo-2").unwrap().pod.as_mut().unwrap().first_start = false;
    assert!(matches!(plan(&obs).step, Step::RemoveMember { ref name, .. } if name == "demo-2"));
}

/// A 3-member cluster growing to 5 whose learner demo-3 cannot start.
fn stuck_scale_up(trouble: TroubleKind, not_ready_for_secs: u64) -> Observation {
    let mut obs = healthy_cluster(3, V36);
    let missing = Version::new(3, 6, 99);
    obs.desired = target(5, missing);
    obs.committed = Some(target(5, missing));
    let mut learner = healthy_member(3, 4, true, missing, 0);
    learner.etcd.as_mut().unwrap().health = None;
    learner.etcd.as_mut().unwrap().client_urls.clear();
    let pod = learner.pod.as_mut().unwrap();
    (pod.ready, pod.not_ready_for_secs) = (false, not_ready_for_secs);
    pod.trouble = Some(PodTrouble { kind: trouble, message: "quay.io/coreos/etcd:v3.6.99: not found".into() });
    obs.members.push(learner);
    obs
}

#[test]
fn a_learner_that_cannot_start_halts_the_scale_up_instead_of_being_replaced_again_and_again() {
    // Long past the unhealthy threshold, the learner is kept and the scale-up says why it halted.
    let p = plan(&stuck_scale_up(TroubleKind::ImagePull, THRESHOLD * 3));
    assert_eq!((p.step.clone(), p.activity), (Step::Wait, Activity::Blocked(Blocker::ScaleStuck)), "{}", p.reason);
    assert!(p.reason.contains("image cannot be pulled") && p.reason.contains("spec.size back to 3"), "{}", p.reason);

    // A crash loop gets the rollout's bound before it halts the scale-up; it is never retried by replacement.
    let p = plan(&stuck_scale_up(TroubleKind::CrashLoop, 10));
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Scaling));
    let p = plan(&stuck_scale_up(TroubleKind::CrashLoop, THRESHOLD * 2));
    assert_eq!(p.activity, Activity::Blocked(Blocker::ScaleStuck));

    // A corrected version takes over: the learner is made again on it.
    let mut obs = stuck_scale_up(TroubleKind::ImagePull, THRESHOLD * 3);
    obs.desired = target(5, V36);
    let p = plan(&obs);
    assert_eq!(p.target.version, V36, "the spec may supersede a stuck scale-up");
    assert_eq!(p.step, Step::RestartMember { name: "demo-3".into() });

    // Scaled back instead: the learner leaves.
    let mut obs = stuck_scale_up(TroubleKind::ImagePull, THRESHOLD * 3);
    obs.desired = target(3, V36);
    assert_eq!(plan(&obs).step, Step::RemoveMember { name: "demo-3".into(), id: 4 });

    // Between the back-offs of a crash loop Kubernetes names no trouble; the crash history still halts it.
    let mut obs = stuck_scale_up(TroubleKind::CrashLoop, THRESHOLD * 2);
    let pod = obs.members[3].pod.as_mut().unwrap();
    (pod.trouble, pod.restarts) = (None, 6);
    let p = plan(&obs);
    assert_eq!((p.step, p.activity), (Step::Wait, Activity::Blocked(Blocker::ScaleStuck)), "{}", p.reason);

    // Without any trouble named, a learner that never becomes healthy is still retried after the threshold.
    let mut obs = stuck_scale_up(TroubleKind::ImagePull, THRESHOLD + 1);
    obs.members[3].pod.as_mut().unwrap().trouble = None;
    assert!(matches!(plan(&obs).step, Step::RemoveMember { ref name, .. } if name == "demo-3"));
}

#[test]
fn a_learner_added_just_before_a_crash_is_finished_though_the_recorded_target_is_older() {
    // The operator stopped right after MemberAdd: status.target was never written and still says 3.
    let mut obs = healthy_cluster(3, V36);
    obs.desired = target(4, V36);
    obs.committed = Some(target(3, V36));
    let mut learner = healthy_member(3, 4, true, V36, 0);
    learner.etcd.as_mut().unwrap().health = None;
    learner.etcd.as_mut().unwrap().client_urls.clear();
    learner.pod = None;
    learner.pvc = None;
    obs.members.push(learner);
    assert_eq!(plan(&obs).step, Step::CreateMemberPod { name: "demo-3".into() });

    // Its pod starting: waited for, not removed as a surplus of the older target.
    let pod = PodView { ready: false, not_ready_for_secs: 5, ..ready_pod() };
    obs.members[3].pod = Some(pod);
    obs.members[3].pvc = Some(PvcView::default());
    let p = plan(&obs);
    assert_eq!((p.step.clone(), p.activity), (Step::Wait, Activity::Scaling), "{}", p.reason);
}

/// A healthy plaintext cluster of three whose spec has just turned TLS on for `to`: the members' template
/// carries the change ("t2").
fn turning_tls_on(to: Transport) -> Observation {
    turning_tls_on_with(3, to)
}

fn turning_tls_on_with(size: u32, to: Transport) -> Observation {
    let mut obs = healthy_cluster(size, V36);
    for m in &mut obs.members {
        m.etcd.as_mut().unwrap().peer_urls = vec![format!("http://{}.demo:2380", m.name)];
        m.pod.as_mut().unwrap().client_plaintext = true;
    }
    obs.transport = Transport::PLAINTEXT;
    obs.tls_change = Some(to);
    obs.desired.template_hash = "t2".into();
    obs
}

fn position(steps: &[Step], wanted: impl Fn(&Step) -> bool) -> Vec<usize> {
    steps.iter().enumerate().filter(|(_, s)| wanted(s)).map(|(i, _)| i).collect()
}

#[test]
fn tls_is_turned_on_member_by_member_certificates_then_peer_urls_then_clients() {
    let mut sim = Simulator::new(turning_tls_on(Transport::MUTUAL_TLS));
    let done = sim.converge();
    assert_eq!(done.activity, Activity::Idle);
    let steps = &sim.steps;
    let secured = position(steps, |s| matches!(s, Step::SecurePeerUrl { .. }));
    let recorded = position(steps, |s| matches!(s, Step::RecordTransport { .. }));
    let restarts = position(steps, |s| matches!(s, Step::RestartMember { .. }));
    assert_eq!(secured.len(), 3, "every member's peer URL moves once: {steps:?}");
    assert_eq!(recorded.len(), 1, "{steps:?}");
    // Three restarts to take the certificates before any peer URL moves, three to require TLS after the
    // transport is recorded, and none in between but the peer URL moves' own.
    assert!(restarts.iter().filter(|&&i| i < secured[0]).count() == 3, "{steps:?}");
    assert!(secured.iter().all(|&i| i < recorded[0]), "{steps:?}");
    assert!(restarts.iter().filter(|&&i| i > recorded[0]).count() == 3, "{steps:?}");
    let names: std::collections::BTreeSet<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::SecurePeerUrl { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 3, "each member once: {steps:?}");
    assert_eq!(sim.obs.transport, Transport::MUTUAL_TLS);
    assert_eq!(sim.obs.tls_change, None);
    for m in &sim.obs.members {
        let pod = m.pod.as_ref().unwrap();
        assert!(pod.peer_tls && !pod.client_plaintext, "{} ends on TLS only: {pod:?}", m.name);
        assert!(m.etcd.as_ref().unwrap().peer_tls(), "{}", m.name);
    }
}

#[test]
fn client_tls_alone_moves_no_peer_url() {
    let mut sim = Simulator::new(turning_tls_on(Transport { peer_tls: false, client_tls: true }));
    sim.converge();
    assert!(position(&sim.steps, |s| matches!(s, Step::SecurePeerUrl { .. })).is_empty(), "{:?}", sim.steps);
    assert_eq!(position(&sim.steps, |s| matches!(s, Step::RecordTransport { .. })).len(), 1);
    assert!(
        sim.obs.members.iter().all(|m| !m.pod.as_ref().unwrap().client_plaintext && !m.pod.as_ref().unwrap().peer_tls)
    );
}

#[test]
fn a_peer_url_move_waits_for_a_member_that_is_down() {
    let mut obs = turning_tls_on(Transport::MUTUAL_TLS);
    for m in &mut obs.members {
        m.pod.as_mut().unwrap().template_hash = "t2".into();
    }
    obs.members[2].pod.as_mut().unwrap().ready = false;
    obs.members[2].pod.as_mut().unwrap().not_ready_for_secs = 10;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait, "{}", p.reason);
}

#[test]
fn a_member_whose_peer_url_moved_but_that_still_listens_in_plaintext_is_restarted() {
    // The operator stopped between the peer URL change and the restart: demo-1 is cut off from its peers.
    let mut obs = turning_tls_on(Transport::MUTUAL_TLS);
    for m in &mut obs.members {
        m.pod.as_mut().unwrap().template_hash = "t2".into();
    }
    let cut_off = &mut obs.members[1];
    cut_off.etcd.as_mut().unwrap().peer_urls = vec!["https://demo-1.demo:2380".into()];
    let pod = cut_off.pod.as_mut().unwrap();
    (pod.ready, pod.not_ready_for_secs) = (false, 30);
    let p = plan(&obs);
    assert_eq!(p.step, Step::RestartMember { name: "demo-1".into() }, "{}", p.reason);
}

#[test]
fn a_two_member_cluster_does_not_move_peer_urls() {
    let mut obs = turning_tls_on(Transport::MUTUAL_TLS);
    obs.members.truncate(2);
    obs.desired.size = 2;
    for m in &mut obs.members {
        m.pod.as_mut().unwrap().template_hash = "t2".into();
    }
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait, "{}", p.reason);
    assert!(p.reason.contains("scale"), "{}", p.reason);
}

/// A cluster of one to five members part way through turning TLS on: some hold their certificates (template
/// "t2"), some peer URLs are https, a member may be down, behind, or listen otherwise than it is dialled.
fn arb_turning_tls_on() -> impl Strategy<Value = Observation> {
    let member = (
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.7),
        prop_oneof![Just(0u64), 0u64..3_000],
    );
    (
        1u32..=5,
        prop::collection::vec(member, 5),
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(Transport::MUTUAL_TLS),
            Just(Transport { peer_tls: true, client_tls: false }),
            Just(Transport { peer_tls: false, client_tls: true }),
        ],
    )
        .prop_map(|(size, flags, leader_pick, to)| {
            let mut obs = turning_tls_on_with(size, to);
            for (m, (url_tls, differs, ready, prepared, behind)) in obs.members.iter_mut().zip(flags) {
                let url = format!("{}://{}.demo:2380", if url_tls { "https" } else { "http" }, m.name);
                let etcd = m.etcd.as_mut().unwrap();
                etcd.peer_urls = vec![url];
                etcd.health.as_mut().unwrap().raft_applied_index = 5_000 - behind;
                let pod = m.pod.as_mut().unwrap();
                pod.peer_tls = url_tls != differs;
                (pod.ready, pod.not_ready_for_secs) = if ready { (true, 0) } else { (false, 20) };
                pod.template_hash = if prepared { "t2".into() } else { "t1".into() };
            }
            let leader = obs.members[leader_pick.index(obs.members.len())].id();
            obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: leader };
            obs
        })
}

// ---------------------------------------------------------------------------------------------------------
// A new cluster restored from a backup

fn restoring(states: &[(u32, Option<RestoreState>)], source: Result<(), &str>) -> Observation {
    let members: Vec<Member> = states
        .iter()
        .filter(|(_, state)| state.is_some())
        .map(|&(i, _)| {
            let mut m = healthy_member(i, u64::from(i) + 1, false, V36, 0);
            m.etcd = None;
            m.pod = None;
            m
        })
        .collect();
    let mut obs = observation(members, None, target(3, V36));
    obs.initial_members =
        if obs.members.is_empty() { Vec::new() } else { (0..3).map(|i| format!("demo-{i}")).collect() };
    obs.restore = Some(Restore {
        backup: "EtcdBackup nightly".into(),
        source: source
            .map(|()| RestoreFrom {
                store: etcd_op_api::v1::BackupStore::volume(etcd_op_api::v1::VolumeStore {
                    claim_name: "backups".into(),
                    prefix: None,
                }),
                key: "k".into(),
                sha256: Some("00".into()),
            })
            .map_err(str::to_string),
        members: states.iter().filter_map(|(i, s)| Some((format!("demo-{i}"), s.clone()?))).collect(),
    });
    obs
}

fn all_three() -> Vec<String> {
    vec!["demo-0".into(), "demo-1".into(), "demo-2".into()]
}

#[test]
fn a_restored_cluster_restores_every_volume_before_any_member_starts() {
    let p = plan(&restoring(&[], Ok(())));
    assert_eq!(p.step, Step::RestoreMembers { members: all_three() });
    assert!(p.reason.contains("nightly"), "{}", p.reason);
    // One restore still runs: nobody starts.
    let running =
        [(0, Some(RestoreState::Succeeded)), (1, Some(RestoreState::Running)), (2, Some(RestoreState::Succeeded))];
    let p = plan(&restoring(&running, Ok(())));
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("demo-1"), "{}", p.reason);
    // Every volume restored: the members start together, from the same initial cluster.
    let done =
        [(0, Some(RestoreState::Succeeded)), (1, Some(RestoreState::Restored)), (2, Some(RestoreState::Succeeded))];
    assert_eq!(plan(&restoring(&done, Ok(()))).step, Step::BootstrapMembers { members: all_three() });
}

#[test]
fn a_volume_whose_restore_pod_went_is_restored_again() {
    let states = [(0, Some(RestoreState::Succeeded)), (1, Some(RestoreState::Pending)), (2, None)];
    assert_eq!(plan(&restoring(&states, Ok(()))).step, Step::RestoreMembers { members: all_three() });
}

#[test]
fn a_failed_restore_starts_no_member_and_says_why() {
    let states = [
        (0, Some(RestoreState::Succeeded)),
        (1, Some(RestoreState::Failed("fetch exited with 1: refused: sha256 differs".into()))),
        (2, Some(RestoreState::Succeeded)),
    ];
    let p = plan(&restoring(&states, Ok(())));
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::RestoreFailed));
    assert!(p.reason.contains("demo-1") && p.reason.contains("sha256 differs"), "{}", p.reason);
}

#[test]
fn a_backup_that_cannot_be_restored_creates_nothing() {
    let p = plan(&restoring(&[], Err("EtcdBackup nightly has not succeeded (Failed)")));
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::RestoreRefused));
    assert!(p.reason.contains("has not succeeded"), "{}", p.reason);
    // Volumes already restored start even if the backup went meanwhile: nothing is fetched again.
    let done =
        [(0, Some(RestoreState::Succeeded)), (1, Some(RestoreState::Succeeded)), (2, Some(RestoreState::Restored))];
    assert_eq!(
        plan(&restoring(&done, Err("EtcdBackup nightly does not exist"))).step,
        Step::BootstrapMembers { members: all_three() }
    );
}

// ---------------------------------------------------------------------------------------------------------
// Maintenance

/// Three healthy members of `size_mib` each, `free_mib` of it free, with a 64 MiB quota; `demo-0` leads.
fn with_databases(size_mib: u64, free_mib: u64) -> Observation {
    let mut obs = healthy_cluster(3, V36);
    for m in &mut obs.members {
        m.pod.as_mut().unwrap().quota_bytes = 64 * MIB;
        let health = m.etcd.as_mut().unwrap().health.as_mut().unwrap();
        health.db_size_bytes = (size_mib * MIB) as i64;
        health.db_size_in_use_bytes = ((size_mib - free_mib) * MIB) as i64;
        health.revision = 500;
    }
    obs
}

fn defragment_over(mib: u64) -> Maintenance {
    Maintenance {
        defragmentation: Some(DefragmentationRule {
            reclaimable_bytes: mib * MIB,
            fragmentation_percent: 25,
            quota_use_percent: 80,
            min_interval_secs: 600,
        }),
        ..Maintenance::default()
    }
}

#[test]
fn members_with_free_space_past_the_threshold_are_defragmented_followers_first_and_the_leader_last() {
    let mut obs = with_databases(40, 30);
    obs.maintenance = defragment_over(16);
    let mut sim = Simulator::new(obs);
    let done = sim.converge();
    assert_eq!(done.step, Step::Nothing);
    assert_eq!(sim.described_steps(), ["Defragment", "Defragment", "lead demo-2", "Defragment"]);
    let defragmented: Vec<&str> = sim
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Defragment { name, reason } => {
                assert_eq!(*reason, DefragmentationReason::Reclaimable);
                Some(name.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(defragmented, ["demo-1", "demo-2", "demo-0"], "the leader's turn comes once leadership moved");
}

#[test]
fn a_fragmented_database_near_its_quota_is_defragmented_below_the_free_space_threshold() {
    // 60 MiB of a 64 MiB quota, a third of it free: under the 200 MiB threshold, but near the quota.
    let mut obs = with_databases(60, 20);
    obs.maintenance = defragment_over(200);
    let p = plan(&obs);
    assert_eq!(p.step, Step::Defragment { name: "demo-1".into(), reason: DefragmentationReason::Fragmented });
    assert!(p.reason.contains("33% of its 60 MiB database file is free"), "{}", p.reason);
    // Far from the quota, the same share of free space is left alone.
    let mut obs = with_databases(20, 7);
    obs.maintenance = defragment_over(200);
    assert_eq!(plan(&obs).step, Step::Nothing);
}

#[test]
fn no_defragmentation_while_a_member_is_unhealthy_behind_off_or_recently_done() {
    let base = {
        let mut obs = with_databases(40, 30);
        obs.maintenance = defragment_over(16);
        obs
    };
    let mut sick = base.clone();
    sick.members[2].pod.as_mut().unwrap().ready = false;
    sick.members[2].pod.as_mut().unwrap().not_ready_for_secs = 5;
    assert_eq!(plan(&sick).step, Step::Wait);

    let mut behind = base.clone();
    behind.members[0].etcd.as_mut().unwrap().health.as_mut().unwrap().raft_applied_index = 10_000;
    let p = plan(&behind);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("behind the leader"), "{}", p.reason);

    let mut off = base.clone();
    off.maintenance.defragmentation = None;
    assert_eq!(plan(&off).step, Step::Nothing);

    let mut recent = base.clone();
    for m in &mut recent.members {
        m.defragmented_secs_ago = Some(60);
    }
    assert_eq!(plan(&recent).step, Step::Nothing, "each member waits minIntervalSeconds between two");

    let mut paused = base;
    paused.paused = true;
    assert_eq!(plan(&paused).step, Step::Nothing);
}

fn no_space(obs: &mut Observation) {
    obs.alarms = (0..3).map(|i| MemberAlarm { member: format!("demo-{i}"), alarm: Alarm::NoSpace }).collect();
    for m in &mut obs.members {
        m.etcd.as_mut().unwrap().health.as_mut().unwrap().has_errors = true;
    }
}

#[test]
fn nospace_is_reported_and_left_alone_under_the_alert_policy() {
    let mut obs = with_databases(64, 0);
    no_space(&mut obs);
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::AlarmNoSpace));
}

#[test]
fn nospace_is_recovered_by_compacting_defragmenting_the_leader_last_and_disarming() {
    let mut obs = with_databases(64, 0);
    no_space(&mut obs);
    obs.maintenance.recover_no_space = true;
    let mut sim = Simulator::new(obs);
    let done = sim.converge();
    assert_eq!(done.step, Step::Nothing);
    assert_eq!(
        sim.described_steps(),
        ["Compact", "Defragment", "Defragment", "lead demo-2", "Defragment", "DisarmNoSpace"]
    );
    assert_eq!(sim.steps[0], Step::Compact { revision: 500 });
}

#[test]
fn nospace_that_compaction_and_defragmentation_cannot_relieve_is_reported_not_disarmed() {
    let mut obs = with_databases(63, 0);
    no_space(&mut obs);
    obs.maintenance.recover_no_space = true;
    obs.maintenance.compacted_revision = Some(500);
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert_eq!(p.activity, Activity::Blocked(Blocker::AlarmNoSpace));
    assert!(p.reason.contains("demo-0 (63 of 64 MiB)"), "{}", p.reason);
    // A client deleted keys: the revision moved on, and the history is compacted again.
    for m in &mut obs.members {
        m.etcd.as_mut().unwrap().health.as_mut().unwrap().revision = 520;
    }
    assert_eq!(plan(&obs).step, Step::Compact { revision: 520 });
}

#[test]
fn nospace_recovery_waits_for_every_member_to_answer() {
    let mut obs = with_databases(64, 0);
    no_space(&mut obs);
    obs.maintenance.recover_no_space = true;
    obs.members[1].etcd.as_mut().unwrap().health = None;
    let p = plan(&obs);
    assert_eq!(p.step, Step::Wait);
    assert!(p.reason.contains("waiting for every member to answer"), "{}", p.reason);
}

/// A formed cluster of voters on the target, mostly healthy, whose databases hold generated amounts of free
/// space, sometimes under NOSPACE: where maintenance decides.
fn arb_maintained() -> impl Strategy<Value = Observation> {
    let member = (0u64..80, 0u64..=100, 0u64..1_500, prop::option::of(0u64..2_000), prop::bool::weighted(0.9));
    (1usize..=7)
        .prop_flat_map(move |n| {
            (
                proptest::collection::vec(member.clone(), n),
                0..n,
                arb_maintenance(),
                prop::bool::weighted(0.4),
                prop::option::weighted(0.2, 0..n),
            )
        })
        .prop_map(|(members, leader, maintenance, no_space, silent)| {
            let size = members.len();
            let mut obs = healthy_cluster(size as u32, V36);
            for (i, (m, (mib, free_percent, applied, defragmented, ready))) in
                obs.members.iter_mut().zip(members).enumerate()
            {
                m.defragmented_secs_ago = defragmented;
                let pod = m.pod.as_mut().unwrap();
                pod.quota_bytes = 64 * MIB;
                pod.ready = ready;
                pod.not_ready_for_secs = if ready { 0 } else { 5 };
                let etcd = m.etcd.as_mut().unwrap();
                if silent == Some(i) {
                    etcd.health = None;
                    continue;
                }
                let health = etcd.health.as_mut().unwrap();
                health.db_size_bytes = (mib * MIB) as i64;
                health.db_size_in_use_bytes = (mib * MIB * (100 - free_percent) / 100) as i64;
                health.raft_applied_index = applied;
                health.revision = applied as i64;
                health.has_errors = no_space;
            }
            obs.etcd = EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: Some(leader as u64 + 1) };
            if no_space {
                obs.alarms =
                    obs.members.iter().map(|m| MemberAlarm { member: m.name.clone(), alarm: Alarm::NoSpace }).collect();
            }
            obs.maintenance = maintenance;
            obs
        })
}

#[test]
fn a_defragmentation_asked_for_by_hand_is_done_once_per_member_whatever_the_thresholds() {
    let mut obs = with_databases(2, 1);
    obs.maintenance.requested = Some(DefragmentationRequest { member: None, secs_ago: 30 });
    let mut sim = Simulator::new(obs.clone());
    sim.converge();
    assert_eq!(sim.described_steps(), ["Defragment", "Defragment", "lead demo-2", "Defragment"]);
    assert!(
        sim.steps
            .iter()
            .all(|s| !matches!(s, Step::Defragment { reason, .. } if *reason != DefragmentationReason::Requested))
    );

    // One member named: only it. Members defragmented after the request are done.
    obs.maintenance.requested = Some(DefragmentationRequest { member: Some("demo-2".into()), secs_ago: 30 });
    let p = plan(&obs);
    assert_eq!(p.step, Step::Defragment { name: "demo-2".into(), reason: DefragmentationReason::Requested });
    assert!(p.reason.contains("etcd.cloud.io/defragment"), "{}", p.reason);
    obs.members[2].defragmented_secs_ago = Some(10);
    assert_eq!(plan(&obs).step, Step::Nothing);
}

// ---------------------------------------------------------------------------------------------------------
// Volume growth

/// Three members on 512 MiB volumes with their 64 MiB quota, the spec asking for 1 GiB.
fn asking_for_larger_volumes(allowed: Option<bool>) -> Observation {
    let mut obs = healthy_cluster(3, V36);
    for m in &mut obs.members {
        m.pvc = Some(PvcView {
            quota_bytes: Some(64 * MIB),
            requested_bytes: Some(512 * MIB),
            capacity_bytes: Some(512 * MIB),
            ..PvcView::default()
        });
        m.pod.as_mut().unwrap().quota_bytes = 64 * MIB;
    }
    obs.volume = Some(DesiredVolume { bytes: 1024 * MIB, quantity: "1Gi".into(), quota_bytes: 320 * MIB });
    obs.volume_expansion_allowed = allowed;
    obs
}

#[test]
fn larger_volumes_grow_each_claim_then_restart_each_member_onto_the_new_quota_the_leader_last() {
    let mut sim = Simulator::new(asking_for_larger_volumes(Some(true)));
    let done = sim.converge();
    assert_eq!(done.step, Step::Nothing);
    assert_eq!(
        sim.described_steps(),
        [
            "ExpandVolume",
            "ExpandVolume",
            "ExpandVolume",
            "restart demo-1",
            "restart demo-2",
            "lead demo-2",
            "restart demo-0"
        ]
    );
    assert!(sim.obs.members.iter().all(|m| m.pod.as_ref().unwrap().quota_bytes == 320 * MIB));
}

/// Every claim asks for 1 GiB, with the quota for it recorded; none has the capacity yet.
fn claims_grown_on_paper() -> Observation {
    let mut obs = asking_for_larger_volumes(Some(true));
    for m in &mut obs.members {
        let pvc = m.pvc.as_mut().unwrap();
        pvc.requested_bytes = Some(1024 * MIB);
        pvc.quota_bytes = Some(320 * MIB);
    }
    obs
}

#[test]
fn a_member_restarts_onto_the_new_quota_only_once_its_volume_has_grown() {
    let mut obs = claims_grown_on_paper();
    let p = plan(&obs);
    assert_eq!(p.step, Step::Nothing, "the claims wait for their volumes: {}", p.reason);
    obs.members[2].pvc.as_mut().unwrap().capacity_bytes = Some(1024 * MIB);
    let p = plan(&obs);
    assert_eq!(p.step, Step::RestartMember { name: "demo-2".into() });
    assert!(p.reason.contains("volume has grown"), "{}", p.reason);
}

#[test]
fn a_member_whose_filesystem_grows_only_when_mounted_again_is_restarted_before_its_capacity_shows() {
    let mut obs = claims_grown_on_paper();
    // The driver grew the volume offline; the claim keeps its old capacity until a pod mounts it again.
    obs.members[1].pvc.as_mut().unwrap().filesystem_resize_pending = true;
    let p = plan(&obs);
    assert_eq!(p.step, Step::RestartMember { name: "demo-1".into() }, "{}", p.reason);
}

#[test]
fn larger_volumes_where_the_class_cannot_grow_them_are_refused_and_nothing_changes() {
    let p = plan(&asking_for_larger_volumes(Some(false)));
    assert_eq!(p.step, Step::Nothing);
    assert_eq!(p.activity, Activity::Blocked(Blocker::VolumeExpansionNotAllowed));
    let (_, message) = p.refusal.expect("a refusal");
    assert!(message.contains("demo-0, demo-1, demo-2"), "{message}");
}
