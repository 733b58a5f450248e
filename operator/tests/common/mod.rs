//! Builders the test files share: observations as the planner sees them, and EtcdCluster objects.
#![allow(dead_code, reason = "each test file uses its own part of these")]

use etcd_op::controller::model::{
    EtcdMember, EtcdView, Member, MemberHealth, Observation, PodView, PvcView, Target, Transport, Version,
};
use etcd_op_api::v1::{DataLossPolicy, EtcdCluster, EtcdClusterSpec, PvcRetentionPolicy, StorageSpec};

pub const CLUSTER_ID: u64 = 0xc1;
pub const THRESHOLD: u64 = 300;
pub const V35: Version = Version::new(3, 5, 35);
pub const V36: Version = Version::new(3, 6, 16);
pub const NAMESPACE: &str = "prod";
pub const UID: &str = "6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b";

pub fn target(size: usize, version: Version) -> Target {
    Target { size, version, template_hash: "t1".into() }
}

/// `demo-<ordinal>`: a ready pod on the current template, a volume, and an etcd member that answers.
pub fn healthy_member(ordinal: u32, id: u64, learner: bool, version: Version, applied: u64) -> Member {
    Member {
        name: format!("demo-{ordinal}"),
        ordinal,
        pod: Some(PodView { ready: true, version: Some(version), template_hash: "t1".into(), ..PodView::default() }),
        pvc: Some(PvcView::default()),
        etcd: Some(EtcdMember {
            id,
            learner,
            client_urls: vec![format!("http://demo-{ordinal}.demo:2379")],
            health: Some(MemberHealth {
                cluster_id: CLUSTER_ID,
                raft_applied_index: applied,
                version: Some(version),
                ..MemberHealth::default()
            }),
            ..EtcdMember::default()
        }),
        bootstrap: None,
        defragmented_secs_ago: None,
    }
}

/// The observation of cluster `demo` with `members`; etcd answers (with `leader`) once any is in etcd.
pub fn observation(members: Vec<Member>, leader: Option<u64>, desired: Target) -> Observation {
    let formed = members.iter().any(|m| m.etcd.is_some());
    let etcd =
        if formed { EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: leader } } else { EtcdView::Unreachable };
    Observation {
        cluster: "demo".into(),
        desired,
        committed: None,
        paused: false,
        formed,
        initial_members: Vec::new(),
        leftovers: Vec::new(),
        foreign_pods: Vec::new(),
        ephemeral_storage: false,
        start_empty_after_data_loss: false,
        members,
        etcd,
        membership_is_current: true,
        membership_refused_for_secs: 0,
        unhealthy_threshold_secs: THRESHOLD,
        alarms: Vec::new(),
        missing_storage_class: None,
        transport: Transport::PLAINTEXT,
        tls_change: None,
        restore: None,
        quorum_loss: Default::default(),
        recovery: None,
        upgrade_backups: None,
        certificates: Vec::new(),
        maintenance: Default::default(),
        volume: None,
        volume_expansion_allowed: None,
    }
}

/// `size` healthy voters on `version`, `demo-0` leading.
pub fn healthy_cluster(size: u32, version: Version) -> Observation {
    let members = (0..size).map(|i| healthy_member(i, u64::from(i) + 1, false, version, 100)).collect();
    observation(members, Some(1), target(size as usize, version))
}

pub fn spec() -> EtcdClusterSpec {
    EtcdClusterSpec {
        size: 3,
        version: "3.6.16".into(),
        storage: StorageSpec::default(),
        pod_template: None,
        pvc_retention_policy: PvcRetentionPolicy::Delete,
        paused: false,
        member_unhealthy_threshold_seconds: None,
        on_data_loss: DataLossPolicy::Halt,
        tls: None,
        allowed_clients: None,
        bootstrap: None,
        quorum_loss: None,
        backup_store: None,
        maintenance: None,
    }
}

/// EtcdCluster `demo` in [`NAMESPACE`] with [`UID`].
pub fn cluster_of(spec: EtcdClusterSpec) -> EtcdCluster {
    let mut ec = EtcdCluster::new("demo", spec);
    ec.metadata.namespace = Some(NAMESPACE.into());
    ec.metadata.uid = Some(UID.into());
    ec
}
