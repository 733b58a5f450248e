//! The status the report writes (conditions, phase, members, target, next step) for an observation and the
//! plan made from it: checked as tables of cases, with no cluster.

use etcd_op::controller::model::{Alarm, CertificateLife, EtcdView, MemberAlarm, Observation, Transport, Version};
use etcd_op::controller::plan::{Plan, plan};
use etcd_op::controller::report::{AVAILABLE, CERTIFICATES_EXPIRING, DEGRADED, PROGRESSING, desired_status};
use etcd_op::pki::Validity;
use etcd_op_api::v1::{ClusterTarget, EtcdCluster, EtcdClusterStatus, NextStep, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

mod common;
use common::{V35, V36, cluster_of, healthy_cluster, healthy_member, observation, spec, target};

const GENERATION: i64 = 4;

/// `names` have a pod that is not ready (for a short while) and, when `answers` is false, do not answer.
fn with_down(mut obs: Observation, names: &[&str], answers: bool) -> Observation {
    for m in obs.members.iter_mut().filter(|m| names.contains(&m.name.as_str())) {
        if let Some(pod) = m.pod.as_mut() {
            pod.ready = false;
            pod.not_ready_for_secs = 10;
        }
        if !answers && let Some(e) = m.etcd.as_mut() {
            e.health = None;
        }
    }
    obs
}

// ---------------------------------------------------------------------------------------------------------
// The cluster object

fn cluster(status: Option<EtcdClusterStatus>) -> EtcdCluster {
    let mut ec = cluster_of(spec());
    ec.metadata.generation = Some(GENERATION);
    ec.status = status;
    ec
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("a valid time")
}

fn now() -> Timestamp {
    at(1_750_000_000)
}

fn status_of(obs: &Observation) -> (Plan, EtcdClusterStatus) {
    let plan = plan(obs);
    let status = desired_status(&cluster(None), obs, &plan, now());
    (plan, status)
}

fn condition<'a>(status: &'a EtcdClusterStatus, type_: &str) -> &'a Condition {
    let found: Vec<&Condition> = status.conditions.iter().filter(|c| c.type_ == type_).collect();
    assert_eq!(found.len(), 1, "one {type_} condition in {:?}", status.conditions);
    found[0]
}

// ---------------------------------------------------------------------------------------------------------
// Conditions and phase

/// A condition as (status, reason, a part of its message).
type Expect = (&'static str, &'static str, &'static str);

struct Case {
    what: &'static str,
    obs: Observation,
    available: Expect,
    progressing: Expect,
    degraded: Expect,
    phase: Phase,
    ready: i32,
    leader: Option<&'static str>,
    step: &'static str,
}

fn cases() -> Vec<Case> {
    let mut nospace = healthy_cluster(3, V36);
    nospace.alarms = vec![MemberAlarm { member: "demo-1".into(), alarm: Alarm::NoSpace }];
    let mut corrupt = healthy_cluster(3, V36);
    corrupt.alarms = vec![
        MemberAlarm { member: "demo-1".into(), alarm: Alarm::NoSpace },
        MemberAlarm { member: "demo-2".into(), alarm: Alarm::Corrupt },
    ];
    let mut foreign = healthy_cluster(3, V36);
    foreign.foreign_pods = vec!["demo-9".into()];
    let mut paused = healthy_cluster(3, V36);
    paused.paused = true;
    let mut paused_and_sick = with_down(healthy_cluster(3, V36), &["demo-2"], true);
    paused_and_sick.paused = true;
    let mut unsupported = healthy_cluster(3, V35);
    unsupported.desired = target(3, Version::new(3, 7, 0));
    let mut upgrade = healthy_cluster(3, V35);
    upgrade.desired = target(3, V36);
    let mut grow = healthy_cluster(3, V36);
    grow.desired = target(5, V36);
    let mut leftovers = observation(Vec::new(), None, target(3, V36));
    leftovers.leftovers = vec!["demo-0".into()];

    vec![
        Case {
            what: "healthy 3-member cluster",
            obs: healthy_cluster(3, V36),
            available: ("True", "QuorumHealthy", "3 of 3 voting members are healthy"),
            progressing: ("False", "Idle", "no change is under way"),
            degraded: ("False", "AsExpected", "all members are healthy"),
            phase: Phase::Running,
            ready: 3,
            leader: Some("demo-0"),
            step: "None",
        },
        Case {
            what: "one member's pod not ready",
            obs: with_down(healthy_cluster(3, V36), &["demo-2"], true),
            available: ("True", "QuorumHealthy", "2 of 3 voting members are healthy"),
            progressing: ("True", "Healing", "member demo-2 is not healthy yet"),
            degraded: ("True", "MemberUnhealthy", "unhealthy members: demo-2"),
            phase: Phase::Healing,
            ready: 2,
            leader: Some("demo-0"),
            step: "Wait",
        },
        Case {
            what: "two of three down, the leader up",
            obs: with_down(healthy_cluster(3, V36), &["demo-1", "demo-2"], false),
            available: ("False", "NoQuorum", "1 of 3 voting members are healthy; 2 are needed"),
            progressing: ("True", "Healing", "not healthy yet"),
            degraded: ("True", "MemberUnhealthy", "unhealthy members: demo-1, demo-2"),
            phase: Phase::Healing,
            ready: 1,
            leader: Some("demo-0"),
            step: "Wait",
        },
        Case {
            what: "two of three down, no leader",
            obs: with_down(healthy_cluster(3, V36), &["demo-1", "demo-2"], false).with_leader(None),
            available: ("False", "NoQuorum", "1 of 3 voting members are healthy; 2 are needed"),
            progressing: ("False", "Idle", "no change is under way"),
            degraded: ("True", "QuorumLost", "1 of 3 voting members answer: quorum is lost"),
            phase: Phase::Degraded,
            ready: 1,
            leader: None,
            step: "Wait",
        },
        Case {
            what: "nothing exists yet",
            obs: observation(Vec::new(), None, target(3, V36)),
            available: ("False", "Bootstrapping", "the cluster is being created"),
            progressing: ("True", "Creating", "creating the 3 initial members"),
            degraded: ("False", "AsExpected", "all members are healthy"),
            phase: Phase::Creating,
            ready: 0,
            leader: None,
            step: "BootstrapMembers",
        },
        Case {
            what: "leftovers of an earlier cluster of the name",
            obs: leftovers,
            available: ("False", "Bootstrapping", "the cluster is being created"),
            progressing: ("True", "Creating", "demo-0 belong to an earlier EtcdCluster named demo"),
            degraded: ("False", "AsExpected", "all members are healthy"),
            phase: Phase::Creating,
            ready: 0,
            leader: None,
            step: "Wait",
        },
        Case {
            what: "NOSPACE raised",
            obs: nospace,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("False", "Idle", "no change is under way"),
            degraded: ("True", "AlarmNoSpace", "etcd raised NOSPACE for demo-1"),
            phase: Phase::Degraded,
            ready: 3,
            leader: Some("demo-0"),
            step: "Wait",
        },
        Case {
            what: "CORRUPT and NOSPACE raised: CORRUPT first",
            obs: corrupt,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("False", "Idle", "no change is under way"),
            degraded: ("True", "AlarmCorrupt", "etcd raised CORRUPT for demo-2"),
            phase: Phase::Degraded,
            ready: 3,
            leader: Some("demo-0"),
            step: "Wait",
        },
        Case {
            what: "foreign pods",
            obs: foreign,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("False", "Idle", "no change is under way"),
            degraded: ("True", "ForeignPods", "pods demo-9 carry this cluster's labels but are not owned by it"),
            phase: Phase::Running,
            ready: 3,
            leader: Some("demo-0"),
            step: "None",
        },
        Case {
            what: "paused",
            obs: paused,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("False", "Paused", "spec.paused is true"),
            degraded: ("False", "AsExpected", "all members are healthy"),
            phase: Phase::Paused,
            ready: 3,
            leader: Some("demo-0"),
            step: "None",
        },
        Case {
            what: "paused with a member down: still reported",
            obs: paused_and_sick,
            available: ("True", "QuorumHealthy", "2 of 3"),
            progressing: ("False", "Paused", "spec.paused is true"),
            degraded: ("True", "MemberUnhealthy", "demo-2"),
            phase: Phase::Paused,
            ready: 2,
            leader: Some("demo-0"),
            step: "None",
        },
        Case {
            what: "a version etcd cannot reach from what runs",
            obs: unsupported,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("False", "Idle", "no change is under way"),
            degraded: (
                "True",
                "UnsupportedVersionChange",
                "spec.version 3.7.0 cannot be reached from the running 3.5.35",
            ),
            phase: Phase::Degraded,
            ready: 3,
            leader: Some("demo-0"),
            step: "None",
        },
        Case {
            what: "an upgrade",
            obs: upgrade,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("True", "Upgrading", "member demo-1 runs an older version or template"),
            degraded: ("False", "AsExpected", "all members are healthy"),
            phase: Phase::Upgrading,
            ready: 3,
            leader: Some("demo-0"),
            step: "RestartMember",
        },
        Case {
            what: "a scale up",
            obs: grow,
            available: ("True", "QuorumHealthy", "3 of 3"),
            progressing: ("True", "Scaling", "3 of 5 members: adding one as a learner"),
            degraded: ("False", "AsExpected", "all members are healthy"),
            phase: Phase::Scaling,
            ready: 3,
            leader: Some("demo-0"),
            step: "AddLearner",
        },
    ]
}

trait WithLeader {
    fn with_leader(self, leader: Option<u64>) -> Self;
}

impl WithLeader for Observation {
    fn with_leader(mut self, leader_id: Option<u64>) -> Self {
        if let EtcdView::Reachable { cluster_id, .. } = self.etcd {
            self.etcd = EtcdView::Reachable { cluster_id, leader_id };
        }
        self
    }
}

#[test]
fn conditions_and_phase_say_what_the_cluster_goes_through() {
    for case in cases() {
        let (plan, status) = status_of(&case.obs);
        let what = case.what;
        let rows = [(AVAILABLE, case.available), (PROGRESSING, case.progressing), (DEGRADED, case.degraded)];
        assert_eq!(status.conditions.len(), rows.len(), "{what}: {:?}", status.conditions);
        for (type_, (want_status, reason, message)) in rows {
            let c = condition(&status, type_);
            assert_eq!((c.status.as_str(), c.reason.as_str()), (want_status, reason), "{what}: {type_}: {}", c.message);
            assert!(c.message.contains(message), "{what}: {type_} message {:?} lacks {message:?}", c.message);
            assert_eq!(c.observed_generation, Some(GENERATION), "{what}: {type_}");
            assert_eq!(c.last_transition_time, Time(now()), "{what}: {type_}: a first condition starts now");
        }
        assert_eq!(status.phase, Some(case.phase), "{what}");
        assert_eq!(status.ready_members, case.ready, "{what}");
        assert_eq!(status.leader.as_deref(), case.leader, "{what}");
        assert_eq!(status.observed_generation, Some(GENERATION), "{what}");
        assert_eq!(
            status.next_step,
            Some(NextStep { action: case.step.into(), reason: plan.reason.clone() }),
            "{what}: the plan's step and reason"
        );
        assert_eq!(plan.step.action(), case.step, "{what}");
        assert_eq!(
            status.target,
            Some(ClusterTarget {
                size: i32::try_from(plan.target.size).expect("a small size"),
                version: plan.target.version.to_string()
            }),
            "{what}: the plan's target"
        );
        assert_eq!(
            status.selector.as_deref(),
            Some("app.kubernetes.io/instance=demo,app.kubernetes.io/name=etcd,etcd.cloud.io/cluster=demo"),
            "{what}"
        );
        assert_eq!(status.members.len(), case.obs.members.len(), "{what}");
    }
}

#[test]
fn a_healthy_cluster_reports_its_version_id_and_members() {
    let (_, status) = status_of(&healthy_cluster(3, V36));
    assert_eq!(status.current_version.as_deref(), Some("3.6.16"));
    assert_eq!(status.cluster_id.as_deref(), Some("c1"));
    // name, id, version, healthy, learner
    type Row = (String, Option<String>, Option<String>, bool, bool);
    let rows: Vec<Row> = status
        .members
        .iter()
        .map(|m| (m.name.clone(), m.id.clone(), m.version.clone(), m.healthy, m.learner))
        .collect();
    let want: Vec<_> = ["demo-0", "demo-1", "demo-2"]
        .iter()
        .zip(["1", "2", "3"])
        .map(|(name, id)| (name.to_string(), Some(id.to_string()), Some("3.6.16".to_string()), true, false))
        .collect();
    assert_eq!(rows, want);
    assert!(status.members.iter().all(|m| m.alarms.is_empty()));
}

#[test]
fn the_status_records_the_target_the_plan_works_towards() {
    // desired by the spec, committed earlier, running, a member restarting (its pod on its way out) →
    // status.target
    let v3620 = Version::new(3, 6, 20);
    let rows = [
        ("nothing to change", target(3, V36), None, V36, false, (3, "3.6.16")),
        ("an upgrade begins", target(3, V36), None, V35, false, (3, "3.6.16")),
        ("a scale up begins", target(5, V36), None, V36, false, (5, "3.6.16")),
        (
            "an unsupported version: the running one is kept",
            target(3, Version::new(3, 7, 0)),
            None,
            V35,
            false,
            (3, "3.5.35"),
        ),
        (
            "a committed target is replaced at a safe point",
            target(5, V36),
            Some(target(3, v3620)),
            V36,
            false,
            (5, "3.6.16"),
        ),
        (
            "a committed target outlasts a spec edit mid-way",
            target(5, V36),
            Some(target(3, v3620)),
            V36,
            true,
            (3, "3.6.20"),
        ),
    ];
    for (what, desired, committed, running, restarting, (size, version)) in rows {
        let mut obs = healthy_cluster(3, running);
        obs.desired = desired;
        obs.committed = committed;
        if restarting && let Some(pod) = obs.members[2].pod.as_mut() {
            pod.ready = false;
            pod.terminating = true;
            pod.terminating_for_secs = 5;
        }
        let (plan, status) = status_of(&obs);
        assert_eq!(status.target, Some(ClusterTarget { size, version: version.into() }), "{what}");
        assert_eq!(plan.target.size, usize::try_from(size).expect("size"), "{what}");
        assert_eq!(plan.target.version.to_string(), version, "{what}");
        assert_eq!(status.next_step.as_ref().map(|s| s.reason.as_str()), Some(plan.reason.as_str()), "{what}");
    }
}

#[test]
fn the_current_version_is_set_only_when_every_pod_runs_one() {
    let mut mixed = healthy_cluster(3, V36);
    if let Some(pod) = mixed.members[2].pod.as_mut() {
        pod.version = Some(V35);
    }
    let mut one_without_pod = healthy_cluster(3, V36);
    one_without_pod.members[2].pod = None;
    let rows = [
        ("all on 3.6.16", healthy_cluster(3, V36), Some("3.6.16")),
        ("all on 3.5.35", healthy_cluster(3, V35), Some("3.5.35")),
        ("mixed", mixed, None),
        ("a member without its pod", one_without_pod, Some("3.6.16")),
        ("no member", observation(Vec::new(), None, target(3, V36)), None),
    ];
    for (what, obs, want) in rows {
        assert_eq!(status_of(&obs).1.current_version.as_deref(), want, "{what}");
    }
}

#[test]
fn alarms_are_listed_on_the_member_they_were_raised_for() {
    let mut obs = healthy_cluster(3, V36);
    obs.alarms = vec![
        MemberAlarm { member: "demo-1".into(), alarm: Alarm::NoSpace },
        MemberAlarm { member: "demo-1".into(), alarm: Alarm::Corrupt },
        MemberAlarm { member: "deadbeef".into(), alarm: Alarm::NoSpace },
    ];
    let (_, status) = status_of(&obs);
    let alarms: Vec<(&str, Vec<&str>)> =
        status.members.iter().map(|m| (m.name.as_str(), m.alarms.iter().map(String::as_str).collect())).collect();
    assert_eq!(alarms, [("demo-0", vec![]), ("demo-1", vec!["NOSPACE", "CORRUPT"]), ("demo-2", vec![])]);
}

// ---------------------------------------------------------------------------------------------------------
// Transition times

fn earlier_condition(type_: &str, status: &str, reason: &str, second: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: "earlier".into(),
        observed_generation: Some(GENERATION - 1),
        last_transition_time: Time(at(second)),
    }
}

#[test]
fn transition_times_move_only_when_a_condition_changes_status() {
    let earlier = EtcdClusterStatus {
        conditions: vec![
            // Still True: keeps its time, though its message changes.
            earlier_condition(AVAILABLE, "True", "QuorumHealthy", 1_000),
            // Was True, now False: moves.
            earlier_condition(PROGRESSING, "True", "Scaling", 2_000),
            // Still True, for another reason: keeps its time.
            earlier_condition(DEGRADED, "True", "ForeignPods", 3_000),
        ],
        ..EtcdClusterStatus::default()
    };
    let obs = with_down(healthy_cluster(3, V36), &["demo-2"], true);
    let mut obs = obs;
    obs.paused = true;
    let plan = plan(&obs);
    let status = desired_status(&cluster(Some(earlier)), &obs, &plan, now());
    // type → (status, reason, last transition)
    let rows = [
        (AVAILABLE, "True", "QuorumHealthy", at(1_000)),
        (PROGRESSING, "False", "Paused", now()),
        (DEGRADED, "True", "MemberUnhealthy", at(3_000)),
    ];
    for (type_, want_status, reason, since) in rows {
        let c = condition(&status, type_);
        assert_eq!((c.status.as_str(), c.reason.as_str()), (want_status, reason), "{type_}");
        assert_eq!(c.last_transition_time, Time(since), "{type_}");
        assert_eq!(c.observed_generation, Some(GENERATION), "{type_}: the generation is the current one");
        assert_ne!(c.message, "earlier", "{type_}: the message is the current one");
    }
}

#[test]
fn transition_times_of_a_recovery() {
    // A cluster that was down (Available False, Degraded True) and is whole again.
    let earlier = EtcdClusterStatus {
        conditions: vec![
            earlier_condition(AVAILABLE, "False", "NoQuorum", 1_000),
            earlier_condition(PROGRESSING, "False", "Idle", 2_000),
            earlier_condition(DEGRADED, "True", "MemberUnhealthy", 3_000),
            // A type the report no longer writes is dropped.
            earlier_condition("Ready", "True", "Old", 500),
        ],
        ..EtcdClusterStatus::default()
    };
    let obs = healthy_cluster(3, V36);
    let status = desired_status(&cluster(Some(earlier)), &obs, &plan(&obs), now());
    let rows = [(AVAILABLE, "True", now()), (PROGRESSING, "False", at(2_000)), (DEGRADED, "False", now())];
    for (type_, want_status, since) in rows {
        let c = condition(&status, type_);
        assert_eq!(c.status, want_status, "{type_}");
        assert_eq!(c.last_transition_time, Time(since), "{type_}");
    }
    assert_eq!(status.conditions.len(), 3, "{:?}", status.conditions);
}

// ---------------------------------------------------------------------------------------------------------
// Member URLs

#[test]
fn member_urls_come_from_etcd_and_fall_back_to_the_dns_names() {
    let dns_peer = |n: &str| format!("http://{n}.demo.prod.svc:2380");
    let dns_client = |n: &str| format!("http://{n}.demo.prod.svc:2379");
    let mut obs = healthy_cluster(3, V36);
    // demo-0: etcd lists both kinds of URL (an address etcd was given, not the DNS name).
    if let Some(e) = obs.members[0].etcd.as_mut() {
        e.peer_urls = vec!["http://10.0.0.10:2380".into()];
        e.client_urls = vec!["http://10.0.0.10:2379".into(), "http://127.0.0.1:2379".into()];
    }
    // demo-1: added but never started: peer URLs only.
    if let Some(e) = obs.members[1].etcd.as_mut() {
        e.peer_urls = vec![dns_peer("demo-1")];
        e.client_urls = Vec::new();
        e.health = None;
    }
    // demo-2: its pod and volume exist, etcd does not list it.
    obs.members[2].etcd = None;
    let (_, status) = status_of(&obs);
    let rows = [
        (
            "demo-0",
            vec!["http://10.0.0.10:2380".to_string()],
            vec!["http://10.0.0.10:2379".to_string(), "http://127.0.0.1:2379".to_string()],
        ),
        ("demo-1", vec![dns_peer("demo-1")], vec![dns_client("demo-1")]),
        ("demo-2", vec![dns_peer("demo-2")], vec![dns_client("demo-2")]),
    ];
    assert_eq!(status.members.len(), rows.len());
    for (m, (name, peer_urls, client_urls)) in status.members.iter().zip(rows) {
        assert_eq!(m.name, name);
        assert_eq!(m.peer_urls, peer_urls, "{name}: peer URLs");
        assert_eq!(m.client_urls, client_urls, "{name}: client URLs");
    }
    // Only a member etcd lists has an ID.
    let ids: Vec<Option<&str>> = status.members.iter().map(|m| m.id.as_deref()).collect();
    assert_eq!(ids, [Some("1"), Some("2"), None]);
}

#[test]
fn learners_are_reported_as_learners_and_healthy_when_their_pod_is_up() {
    let mut obs = healthy_cluster(3, V36);
    let mut learner = healthy_member(3, 0xab, true, V36, 100);
    if let Some(pod) = learner.pod.as_mut() {
        // etcd's /readyz fails for a learner on purpose.
        pod.ready = false;
    }
    obs.members.push(learner);
    obs.desired = target(4, V36);
    let (_, status) = status_of(&obs);
    let m = status.members.iter().find(|m| m.name == "demo-3").expect("the learner is listed");
    assert_eq!((m.id.as_deref(), m.learner, m.healthy), (Some("ab"), true, true));
    // A learner is not a voter: the counts stay 3 of 3.
    assert_eq!(status.ready_members, 3);
    assert!(condition(&status, AVAILABLE).message.contains("3 of 3"), "{:?}", condition(&status, AVAILABLE));
}

// ---------------------------------------------------------------------------------------------------------
// The cluster ID

#[test]
fn the_cluster_id_outlives_an_outage_but_not_a_new_bootstrap() {
    let previous = EtcdClusterStatus { cluster_id: Some("c1".into()), ..EtcdClusterStatus::default() };
    // Every pod restarting at once: nothing answers, the members come back.
    let mut outage = healthy_cluster(3, V36);
    outage.etcd = EtcdView::Unreachable;
    for m in &mut outage.members {
        m.etcd = None;
        if let Some(pod) = m.pod.as_mut() {
            pod.ready = false;
            pod.not_ready_for_secs = 5;
        }
    }
    let mut reformed = healthy_cluster(3, V36);
    reformed.etcd = EtcdView::Reachable { cluster_id: 0xd2, leader_id: Some(1) };
    for m in &mut reformed.members {
        if let Some(h) = m.etcd.as_mut().and_then(|e| e.health.as_mut()) {
            h.cluster_id = 0xd2;
        }
    }
    let rows = [
        ("etcd answers", healthy_cluster(3, V36), "None", Some("c1")),
        ("etcd answers with another ID", reformed, "None", Some("d2")),
        ("an outage", outage, "Wait", Some("c1")),
        ("a new bootstrap", observation(Vec::new(), None, target(3, V36)), "BootstrapMembers", None),
    ];
    for (what, obs, step, want) in rows {
        let plan = plan(&obs);
        assert_eq!(plan.step.action(), step, "{what}: {}", plan.reason);
        let status = desired_status(&cluster(Some(previous.clone())), &obs, &plan, now());
        assert_eq!(status.cluster_id.as_deref(), want, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Found by these tables: a data loss read as a cluster being created, and an outage counted as no voters.

/// Every member of a formed cluster is gone with its data and spec.onDataLoss is Halt: the operator creates
/// nothing (phase Degraded, Degraded/DataLoss): Available must not say the cluster is being created.
#[test]
fn a_data_loss_is_not_reported_as_bootstrapping() {
    let mut obs = observation(Vec::new(), None, target(3, V36));
    obs.formed = true;
    let (plan, status) = status_of(&obs);
    assert_eq!(plan.step.action(), "Wait", "{}", plan.reason);
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(condition(&status, DEGRADED).reason, "DataLoss");
    let available = condition(&status, AVAILABLE);
    assert_eq!(available.status, "False");
    assert_ne!(available.reason, "Bootstrapping", "{available:?}");
    assert!(!available.message.contains("being created"), "{available:?}");
}

/// While no member answers, etcd's member list is unknown: Available must still count the members that
/// exist, not "0 of 0 voting members".
#[test]
fn an_outage_does_not_report_zero_voters() {
    let mut obs = healthy_cluster(3, V36);
    obs.etcd = EtcdView::Unreachable;
    for m in &mut obs.members {
        m.etcd = None;
        if let Some(pod) = m.pod.as_mut() {
            pod.ready = false;
            pod.not_ready_for_secs = 5;
        }
    }
    let (_, status) = status_of(&obs);
    let available = condition(&status, AVAILABLE);
    assert_eq!((available.status.as_str(), available.reason.as_str()), ("False", "NoQuorum"));
    assert!(!available.message.contains("of 0 voting members"), "{available:?}");
}

#[test]
fn a_tls_cluster_reports_its_transport_its_certificates_and_their_expiry() {
    let now_s = now().as_second();
    let life = |secret: &str, not_before: i64, not_after: i64, renews: bool| CertificateLife {
        secret: secret.into(),
        validity: Validity { not_before, not_after },
        renews,
    };
    let year = 365 * 86_400;
    let rows = [
        ("fresh", now_s - 100, now_s + 800, false),
        ("past renewal, a third left", now_s - 600, now_s + 300, false),
        ("a sixth left", now_s - 751, now_s + 149, true),
        ("expired", now_s - 1000, now_s - 100, true),
    ];
    for (what, not_before, not_after, expiring) in rows {
        let mut obs = healthy_cluster(3, V36);
        obs.transport = Transport::MUTUAL_TLS;
        for m in &mut obs.members {
            if let Some(e) = m.etcd.as_mut() {
                e.client_urls.clear();
            }
        }
        obs.certificates = vec![
            life("demo-client-ca", now_s - year, now_s + 9 * year, false),
            life("demo-server-tls", not_before, not_after, true),
        ];
        let (_, status) = status_of(&obs);
        let tls = status.tls.clone().expect("status.tls");
        assert!(tls.peer && tls.client, "{what}");
        let server = &tls.certificates[1];
        assert_eq!(server.secret, "demo-server-tls");
        assert_eq!(server.not_after, Timestamp::from_second(not_after).expect("time").to_string(), "{what}");
        let renew_at = not_before + (not_after - not_before) * 2 / 3;
        assert_eq!(server.renew_after, Some(Timestamp::from_second(renew_at).expect("time").to_string()), "{what}");
        assert_eq!(tls.certificates[0].renew_after, None, "an authority is rotated, not renewed");
        let condition = condition(&status, CERTIFICATES_EXPIRING);
        assert_eq!(condition.status, if expiring { "True" } else { "False" }, "{what}: {condition:?}");
        assert_eq!(condition.message.contains("demo-server-tls"), expiring, "{what}: {}", condition.message);
        let url = &status.members[0].client_urls[0];
        assert!(url.starts_with("https://"), "{what}: the DNS fallback has the TLS scheme: {url}");
    }
}

#[test]
fn a_plaintext_cluster_has_no_certificate_condition() {
    let (_, status) = status_of(&healthy_cluster(3, V36));
    assert!(status.conditions.iter().all(|c| c.type_ != CERTIFICATES_EXPIRING), "{:?}", status.conditions);
    let tls = status.tls.expect("status.tls");
    assert!(!tls.peer && !tls.client && tls.certificates.is_empty());
}
