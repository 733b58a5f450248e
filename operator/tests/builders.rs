//! The objects an EtcdCluster owns, as the builders in `controller::resources` make them: checked as tables of
//! cases, with no cluster.

use std::collections::BTreeMap;

use etcd_op::controller::model::Version;
use etcd_op::controller::resources::{
    ANNOTATION_INITIAL_CLUSTER, ANNOTATION_INITIAL_STATE, ANNOTATION_INITIAL_TOKEN, ANNOTATION_QUOTA,
    ANNOTATION_TEMPLATE_HASH, ANNOTATION_TLS, Bootstrap, CLIENT_PORT, CertificateSecret, DATA_MOUNT,
    ETCD_DEFAULT_QUOTA, InitialState, LABEL_CLUSTER, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_MEMBER, LABEL_NAME,
    MEMBER_UID, METRICS_PORT, MemberPorts, PEER_PORT, PEER_TLS_MOUNT, SERVER_TLS_MOUNT, Transport, client_service,
    client_service_name, disruption_budget, headless_service, image, legacy_token, member_pod, member_pvc,
    network_policy, peer_url, quota_backend_bytes, quota_for_volume, quota_of_pod, recorded_quota, schemes_of_pod,
    selector_labels, selector_string, template_hash,
};
use etcd_op_api::v1::{
    EmptyDirStorage, EtcdCluster, EtcdClusterSpec, EtcdPodTemplate, PvcRetentionPolicy, StorageSpec,
    VolumeClaimTemplate,
};
use k8s_openapi::api::core::v1::{Container, Pod, Probe, ResourceRequirements, Service, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
mod common;
use common::{NAMESPACE, UID, V35, V36, cluster_of, spec};

/// The pod of a member of a cluster whose transport is settled (no TLS being turned on).
fn settled_pod(ec: &EtcdCluster, member: &str, version: Version, bootstrap: &Bootstrap, quota: Option<u64>) -> Pod {
    member_pod(ec, &template_hash(ec), member, version, bootstrap, MemberPorts::settled(bootstrap.transport), quota)
}

fn cluster() -> EtcdCluster {
    cluster_of(spec())
}

fn with_storage(storage: StorageSpec) -> EtcdCluster {
    cluster_of(EtcdClusterSpec { storage, ..spec() })
}

fn with_template(template: EtcdPodTemplate) -> EtcdCluster {
    cluster_of(EtcdClusterSpec { pod_template: Some(template), ..spec() })
}

fn claim(size: Option<&str>, class: Option<&str>, modes: Option<&[&str]>) -> StorageSpec {
    StorageSpec {
        volume_claim_template: Some(VolumeClaimTemplate {
            storage_class_name: class.map(Into::into),
            size: size.map(|s| Quantity(s.into())),
            access_modes: modes.map(|m| m.iter().map(|s| s.to_string()).collect()),
        }),
        empty_dir: None,
    }
}

fn empty_dir(size_limit: Option<&str>, medium: Option<&str>) -> StorageSpec {
    StorageSpec {
        volume_claim_template: None,
        empty_dir: Some(EmptyDirStorage {
            size_limit: size_limit.map(|s| Quantity(s.into())),
            medium: medium.map(Into::into),
        }),
    }
}

const INITIAL: &str = "demo-0=http://demo-0.demo.prod.svc:2380,demo-1=http://demo-1.demo.prod.svc:2380,demo-2=http://demo-2.demo.prod.svc:2380";

fn new_bootstrap(token: Option<&str>) -> Bootstrap {
    Bootstrap {
        initial_cluster: INITIAL.into(),
        state: InitialState::New,
        token: token.map(Into::into),
        transport: Transport::PLAINTEXT,
    }
}

fn existing_bootstrap(token: Option<&str>) -> Bootstrap {
    Bootstrap {
        initial_cluster: format!("{INITIAL},demo-3=http://demo-3.demo.prod.svc:2380"),
        state: InitialState::Existing,
        token: token.map(Into::into),
        transport: Transport::PLAINTEXT,
    }
}

fn pod_of(ec: &EtcdCluster) -> Pod {
    settled_pod(ec, "demo-1", V36, &new_bootstrap(Some("tok-1")), quota_backend_bytes(ec))
}

fn etcd_container(pod: &Pod) -> &Container {
    let spec = pod.spec.as_ref().expect("the pod has a spec");
    assert_eq!(spec.containers.len(), 1, "one container");
    assert_eq!(spec.containers[0].name, "etcd");
    &spec.containers[0]
}

fn args_of(pod: &Pod) -> Vec<String> {
    etcd_container(pod).args.clone().expect("etcd has args")
}

fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn annotations_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

fn storage_cases() -> Vec<(&'static str, EtcdCluster)> {
    vec![
        ("default PVC", cluster()),
        ("PVC of 10Gi in class fast", with_storage(claim(Some("10Gi"), Some("fast"), None))),
        ("emptyDir", with_storage(empty_dir(None, None))),
        ("emptyDir in memory", with_storage(empty_dir(Some("512Mi"), Some("Memory")))),
    ]
}

// ---------------------------------------------------------------------------------------------------------
// Pod Security: the restricted standard

#[test]
fn member_pods_meet_the_restricted_pod_security_standard() {
    // JSON pointer into the pod, and the value it must hold; `None`: the field must be absent.
    let rows: &[(&str, Option<Value>)] = &[
        ("/spec/automountServiceAccountToken", Some(json!(false))),
        ("/spec/enableServiceLinks", Some(json!(false))),
        ("/spec/securityContext/runAsNonRoot", Some(json!(true))),
        ("/spec/securityContext/runAsUser", Some(json!(MEMBER_UID))),
        ("/spec/securityContext/runAsGroup", Some(json!(MEMBER_UID))),
        ("/spec/securityContext/fsGroup", Some(json!(MEMBER_UID))),
        ("/spec/securityContext/fsGroupChangePolicy", Some(json!("OnRootMismatch"))),
        ("/spec/securityContext/seccompProfile/type", Some(json!("RuntimeDefault"))),
        ("/spec/hostNetwork", None),
        ("/spec/hostPID", None),
        ("/spec/hostIPC", None),
        ("/spec/initContainers", None),
        ("/spec/containers/0/securityContext/allowPrivilegeEscalation", Some(json!(false))),
        ("/spec/containers/0/securityContext/readOnlyRootFilesystem", Some(json!(true))),
        ("/spec/containers/0/securityContext/runAsNonRoot", Some(json!(true))),
        ("/spec/containers/0/securityContext/capabilities/drop", Some(json!(["ALL"]))),
        ("/spec/containers/0/securityContext/capabilities/add", None),
        ("/spec/containers/0/securityContext/privileged", None),
        ("/spec/containers/0/securityContext/runAsUser", None),
    ];
    assert_eq!(MEMBER_UID, 65532, "distroless' nonroot user");
    for (storage, ec) in storage_cases() {
        let pod = serde_json::to_value(pod_of(&ec)).expect("the pod serializes");
        for (pointer, want) in rows {
            assert_eq!(pod.pointer(pointer), want.as_ref(), "{storage}: {pointer}");
        }
    }
}

#[test]
fn etcd_writes_only_to_its_writable_data_volume() {
    for (storage, ec) in storage_cases() {
        let pod = pod_of(&ec);
        let container = etcd_container(&pod);
        let data_dir = args_of(&pod)
            .iter()
            .find_map(|a| a.strip_prefix("--data-dir=").map(str::to_string))
            .expect("a --data-dir flag");
        let mounts = container.volume_mounts.clone().unwrap_or_default();
        let mount = mounts
            .iter()
            .find(|m| data_dir.starts_with(&format!("{}/", m.mount_path)))
            .unwrap_or_else(|| panic!("{storage}: {data_dir} is on no mounted volume, and the root is read-only"));
        assert_eq!(mount.mount_path, DATA_MOUNT, "{storage}");
        assert_ne!(mount.read_only, Some(true), "{storage}: the data volume is writable");
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        assert!(volumes.iter().any(|v| v.name == mount.name), "{storage}: mount {} names a volume", mount.name);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Probes

#[test]
fn probes_ask_etcd_on_its_metrics_port() {
    type Pick = fn(&Container) -> Option<Probe>;
    // probe, path, period, failure threshold
    let rows: [(&str, Pick, &str, i32, i32); 3] = [
        ("startup", |c| c.startup_probe.clone(), "/livez", 1, 600),
        ("liveness", |c| c.liveness_probe.clone(), "/livez", 10, 6),
        ("readiness", |c| c.readiness_probe.clone(), "/readyz", 2, 3),
    ];
    let pod = pod_of(&cluster());
    let container = etcd_container(&pod);
    for (name, pick, path, period, failures) in rows {
        let probe = pick(container).unwrap_or_else(|| panic!("a {name} probe"));
        let get = probe.http_get.as_ref().unwrap_or_else(|| panic!("{name}: an HTTP probe"));
        assert_eq!(get.path.as_deref(), Some(path), "{name}");
        assert_eq!(get.port, IntOrString::Int(METRICS_PORT), "{name}");
        assert_eq!(probe.period_seconds, Some(period), "{name}");
        assert_eq!(probe.failure_threshold, Some(failures), "{name}");
        assert_eq!(probe.timeout_seconds, Some(3), "{name}");
        assert!(probe.exec.is_none() && probe.tcp_socket.is_none() && probe.grpc.is_none(), "{name}: one handler");
    }
    // Ten minutes for a large database to load before liveness counts.
    let startup = container.startup_probe.as_ref().expect("startup probe");
    assert_eq!(startup.period_seconds.unwrap_or(0) * startup.failure_threshold.unwrap_or(0), 600);
    // The port the probes ask is one etcd listens on and the container declares.
    assert!(args_of(&pod).contains(&format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}")));
    let ports: Vec<(Option<String>, i32)> =
        container.ports.iter().flatten().map(|p| (p.name.clone(), p.container_port)).collect();
    assert_eq!(
        ports,
        [
            (Some("client".to_string()), CLIENT_PORT),
            (Some("peer".to_string()), PEER_PORT),
            (Some("metrics".to_string()), METRICS_PORT)
        ]
    );
}

// ---------------------------------------------------------------------------------------------------------
// etcd's flags

struct ArgsCase {
    what: &'static str,
    bootstrap: Bootstrap,
    quota: Option<u64>,
    want: Vec<String>,
    /// Flags that must not be given at all.
    absent: Vec<&'static str>,
}

#[test]
fn etcd_flags_follow_the_member_its_bootstrap_and_its_quota() {
    let legacy = format!("{NAMESPACE}-demo-{UID}");
    let cases = [
        ArgsCase {
            what: "new member of a new cluster, recorded token, default volume's quota",
            bootstrap: new_bootstrap(Some("demo-7f3a")),
            quota: Some(320 * MIB),
            want: vec![
                format!("--initial-cluster={INITIAL}"),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=demo-7f3a".into(),
                "--quota-backend-bytes=335544320".into(),
            ],
            absent: vec![],
        },
        ArgsCase {
            what: "member bootstrapped before tokens were recorded, volume without a recorded quota",
            bootstrap: new_bootstrap(None),
            quota: None,
            want: vec!["--initial-cluster-state=new".into(), format!("--initial-cluster-token={legacy}")],
            absent: vec!["--quota-backend-bytes"],
        },
        ArgsCase {
            what: "learner joining an existing cluster, recorded token, largest quota",
            bootstrap: existing_bootstrap(Some("demo-7f3a")),
            quota: Some(8 * GIB),
            want: vec![
                format!("--initial-cluster={INITIAL},demo-3=http://demo-3.demo.prod.svc:2380"),
                "--initial-cluster-state=existing".into(),
                "--initial-cluster-token=demo-7f3a".into(),
                "--quota-backend-bytes=8589934592".into(),
            ],
            absent: vec![],
        },
        ArgsCase {
            what: "learner joining an existing legacy cluster",
            bootstrap: existing_bootstrap(None),
            quota: None,
            want: vec!["--initial-cluster-state=existing".into(), format!("--initial-cluster-token={legacy}")],
            absent: vec!["--quota-backend-bytes"],
        },
    ];
    let common = [
        "--name=demo-1".to_string(),
        format!("--data-dir={DATA_MOUNT}/data"),
        format!("--listen-peer-urls=http://0.0.0.0:{PEER_PORT}"),
        format!("--listen-client-urls=http://0.0.0.0:{CLIENT_PORT}"),
        format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}"),
        "--advertise-client-urls=http://demo-1.demo.prod.svc:2379".to_string(),
        "--initial-advertise-peer-urls=http://demo-1.demo.prod.svc:2380".to_string(),
        "--auto-compaction-mode=periodic".to_string(),
        "--auto-compaction-retention=1h".to_string(),
        // 3.6 and later stop serving clients while they defragment, so clients move to another member.
        "--feature-gates=StopGRPCServiceOnDefrag=true".to_string(),
    ];
    let ec = cluster();
    assert_eq!(legacy_token(&ec), legacy);
    for case in cases {
        let pod = settled_pod(&ec, "demo-1", V36, &case.bootstrap, case.quota);
        let args = args_of(&pod);
        for want in common.iter().chain(&case.want) {
            assert!(args.contains(want), "{}: {want} missing from {args:?}", case.what);
        }
        for flag in &case.absent {
            assert!(!args.iter().any(|a| a.starts_with(flag)), "{}: {flag} given: {args:?}", case.what);
        }
        // Each flag once: etcd would take the last of two, and a reader the first.
        let mut flags: Vec<&str> = args.iter().map(|a| a.split('=').next().unwrap_or(a)).collect();
        let given = flags.len();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), given, "{}: a flag is repeated: {args:?}", case.what);
        assert_eq!(args.len(), common.len() + 3 + usize::from(case.quota.is_some()), "{}: {args:?}", case.what);
        // The quota the pod runs with, as the operator reads it back.
        assert_eq!(quota_of_pod(&pod), case.quota.unwrap_or(ETCD_DEFAULT_QUOTA), "{}", case.what);
        // The bootstrap is recorded on the pod, so the pod can be made again identically.
        assert_eq!(Bootstrap::recorded(&annotations_of(&pod.metadata)), Some(case.bootstrap.clone()), "{}", case.what);
        assert_eq!(
            annotations_of(&pod.metadata).contains_key(ANNOTATION_INITIAL_TOKEN),
            case.bootstrap.token.is_some(),
            "{}: a token annotation only for a recorded token",
            case.what
        );
        let container = etcd_container(&pod);
        assert_eq!(container.command.as_deref(), Some(&["/usr/local/bin/etcd".to_string()][..]), "{}", case.what);
        let on_35 = args_of(&settled_pod(&ec, "demo-1", V35, &case.bootstrap, case.quota));
        assert!(!on_35.iter().any(|a| a.starts_with("--feature-gates")), "3.5 has no feature gates: {on_35:?}");
    }
}

#[test]
fn the_advertised_names_are_the_ones_the_headless_service_gives_the_pod() {
    let ec = cluster();
    let pod = pod_of(&ec);
    let spec = pod.spec.as_ref().expect("spec");
    let service = headless_service(&ec);
    assert_eq!(spec.hostname.as_deref(), Some("demo-1"));
    assert_eq!(spec.subdomain, service.metadata.name, "the pod's subdomain is the headless service");
    let dns = format!(
        "{}.{}.{}.svc",
        spec.hostname.as_deref().unwrap_or_default(),
        spec.subdomain.as_deref().unwrap_or_default(),
        NAMESPACE
    );
    let args = args_of(&pod);
    assert!(args.contains(&format!("--initial-advertise-peer-urls=http://{dns}:{PEER_PORT}")), "{args:?}");
    assert!(args.contains(&format!("--advertise-client-urls=http://{dns}:{CLIENT_PORT}")), "{args:?}");
    assert_eq!(peer_url("demo", NAMESPACE, "demo-1", Transport::PLAINTEXT), format!("http://{dns}:{PEER_PORT}"));
    assert_eq!(peer_url("demo", NAMESPACE, "demo-1", Transport::MUTUAL_TLS), format!("https://{dns}:{PEER_PORT}"));
}

#[test]
fn images_come_from_the_template_repository_or_the_default() {
    let rows = [
        (None, Version::new(3, 6, 16), "quay.io/coreos/etcd:v3.6.16"),
        (None, Version::new(3, 5, 26), "quay.io/coreos/etcd:v3.5.26"),
        (Some("registry.example/etcd"), Version::new(3, 6, 16), "registry.example/etcd:v3.6.16"),
    ];
    for (repository, version, want) in rows {
        let ec = with_template(EtcdPodTemplate { image_repository: repository.map(Into::into), ..Default::default() });
        assert_eq!(image(&ec, version), want);
        let pod = settled_pod(&ec, "demo-0", version, &new_bootstrap(None), None);
        assert_eq!(etcd_container(&pod).image.as_deref(), Some(want));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ownership, names and labels

fn owned_objects(ec: &EtcdCluster) -> Vec<(&'static str, ObjectMeta, &'static str)> {
    let bootstrap = new_bootstrap(Some("tok-1"));
    vec![
        ("pod", settled_pod(ec, "demo-1", V36, &bootstrap, None).metadata, "demo-1"),
        ("pvc", member_pvc(ec, "demo-1", &bootstrap).metadata, "demo-1"),
        ("headless service", headless_service(ec).metadata, "demo"),
        ("client service", client_service(ec).metadata, "demo-client"),
        ("disruption budget", disruption_budget(ec, 3).metadata, "demo"),
    ]
}

#[test]
fn every_object_is_controlled_by_its_cluster() {
    let want = OwnerReference {
        api_version: "etcd.cloud.io/v1".into(),
        kind: "EtcdCluster".into(),
        name: "demo".into(),
        uid: UID.into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    for (what, meta, name) in owned_objects(&cluster()) {
        assert_eq!(meta.name.as_deref(), Some(name), "{what}");
        assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{what}");
        assert_eq!(meta.owner_references.as_deref(), Some(&[want.clone()][..]), "{what}");
    }
}

#[test]
fn volumes_of_a_retained_cluster_have_no_owner() {
    // policy → whether the PVC is owned (and so garbage-collected with the cluster)
    let rows = [(PvcRetentionPolicy::Delete, true), (PvcRetentionPolicy::Retain, false)];
    for (policy, owned) in rows {
        let ec = cluster_of(EtcdClusterSpec { pvc_retention_policy: policy, ..spec() });
        let pvc = member_pvc(&ec, "demo-1", &new_bootstrap(None));
        let refs = pvc.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs.iter().any(|r| r.uid == UID && r.controller == Some(true)), owned, "{policy:?}");
        // A retained volume still carries its labels and records, for the next cluster of the name.
        assert_eq!(labels_of(&pvc.metadata).get(LABEL_MEMBER).map(String::as_str), Some("demo-1"), "{policy:?}");
        assert!(Bootstrap::recorded(&annotations_of(&pvc.metadata)).is_some(), "{policy:?}");
        // The pod is owned whatever the policy.
        let pod = settled_pod(&ec, "demo-1", V36, &new_bootstrap(None), None);
        assert_eq!(pod.metadata.owner_references.map(|r| r.len()), Some(1), "{policy:?}");
    }
}

#[test]
fn every_object_carries_the_cluster_labels_and_members_their_own() {
    let selector = selector_labels("demo");
    assert_eq!(
        selector,
        BTreeMap::from([
            (LABEL_NAME.to_string(), "etcd".to_string()),
            (LABEL_INSTANCE.to_string(), "demo".to_string()),
            (LABEL_CLUSTER.to_string(), "demo".to_string()),
        ])
    );
    assert_eq!(
        selector_string("demo"),
        "app.kubernetes.io/instance=demo,app.kubernetes.io/name=etcd,etcd.cloud.io/cluster=demo"
    );
    for (what, meta, name) in owned_objects(&cluster()) {
        let labels = labels_of(&meta);
        for (k, v) in &selector {
            assert_eq!(labels.get(k), Some(v), "{what}: label {k}");
        }
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some("etcd-op"), "{what}");
        let member = labels.get(LABEL_MEMBER).map(String::as_str);
        let is_member = matches!(what, "pod" | "pvc");
        assert_eq!(member, is_member.then_some(name), "{what}: member label");
    }
}

#[test]
fn selectors_select_the_member_pods_and_nothing_of_another_cluster() {
    let ec = cluster();
    let other = cluster_of(spec());
    let mut other = other;
    other.metadata.name = Some("demo2".into());
    let pod = pod_of(&ec);
    let other_pod = pod_of(&other);
    let selects = |selector: &BTreeMap<String, String>, pod: &Pod| {
        let labels = labels_of(&pod.metadata);
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let headless = headless_service(&ec).spec.and_then(|s| s.selector).expect("headless selector");
    let client = client_service(&ec).spec.and_then(|s| s.selector).expect("client selector");
    let budget =
        disruption_budget(&ec, 3).spec.and_then(|s| s.selector).and_then(|s| s.match_labels).expect("budget selector");
    for (what, selector) in [("headless service", headless), ("client service", client), ("disruption budget", budget)]
    {
        assert_eq!(selector, selector_labels("demo"), "{what}");
        assert!(selects(&selector, &pod), "{what} selects demo's pods");
        assert!(!selects(&selector, &other_pod), "{what} does not select demo2's pods");
    }
}

#[test]
fn template_labels_and_annotations_reach_the_pod_but_never_override_the_operators() {
    let ec = with_template(EtcdPodTemplate {
        labels: Some(BTreeMap::from([
            ("team".to_string(), "storage".to_string()),
            (LABEL_INSTANCE.to_string(), "hijack".to_string()),
            (LABEL_MEMBER.to_string(), "hijack".to_string()),
        ])),
        annotations: Some(BTreeMap::from([
            ("example.com/note".to_string(), "kept".to_string()),
            (ANNOTATION_TEMPLATE_HASH.to_string(), "forged".to_string()),
            (ANNOTATION_INITIAL_STATE.to_string(), "forged".to_string()),
        ])),
        ..Default::default()
    });
    let pod = pod_of(&ec);
    let labels = labels_of(&pod.metadata);
    let annotations = annotations_of(&pod.metadata);
    let rows: [(&str, &BTreeMap<String, String>, &str, String); 6] = [
        ("label", &labels, "team", "storage".into()),
        ("label", &labels, LABEL_INSTANCE, "demo".into()),
        ("label", &labels, LABEL_MEMBER, "demo-1".into()),
        ("annotation", &annotations, "example.com/note", "kept".into()),
        ("annotation", &annotations, ANNOTATION_TEMPLATE_HASH, template_hash(&ec)),
        ("annotation", &annotations, ANNOTATION_INITIAL_STATE, "new".into()),
    ];
    for (what, map, key, want) in rows {
        assert_eq!(map.get(key), Some(&want), "{what} {key}");
    }
}

#[test]
fn the_template_scheduling_and_resources_reach_the_pod() {
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("500m".into()))])),
        ..Default::default()
    };
    let toleration =
        Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), ..Default::default() };
    let ec = with_template(EtcdPodTemplate {
        resources: Some(resources.clone()),
        tolerations: Some(vec![toleration.clone()]),
        node_selector: Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])),
        priority_class_name: Some("system-cluster-critical".into()),
        ..Default::default()
    });
    let pod = pod_of(&ec);
    let spec = pod.spec.clone().expect("spec");
    assert_eq!(etcd_container(&pod).resources, Some(resources));
    assert_eq!(spec.tolerations, Some(vec![toleration]));
    assert_eq!(spec.node_selector, Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])));
    assert_eq!(spec.priority_class_name.as_deref(), Some("system-cluster-critical"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    // Without a template, nothing of the kind is set.
    let plain = pod_of(&cluster()).spec.expect("spec");
    assert!(plain.tolerations.is_none() && plain.node_selector.is_none() && plain.priority_class_name.is_none());
    assert!(plain.topology_spread_constraints.is_none());
}

/// The default spread, as the scheduler reads it: (topology key, weight) of each preferred anti-affinity
/// term, and the cluster its selector names.
fn spread_of(pod: &Pod) -> Vec<(String, i32, Value)> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.clone());
    let terms = affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    terms
        .into_iter()
        .map(|t| {
            let selector = serde_json::to_value(&t.pod_affinity_term.label_selector).expect("selector");
            (t.pod_affinity_term.topology_key, t.weight, selector)
        })
        .collect()
}

#[test]
fn members_prefer_nodes_then_zones_without_a_member_unless_the_template_says_how_to_spread() {
    let apart = json!({"matchLabels": {"etcd.cloud.io/cluster": "demo"}});
    let default_spread = vec![
        ("kubernetes.io/hostname".to_string(), 100, apart.clone()),
        ("topology.kubernetes.io/zone".to_string(), 50, apart.clone()),
    ];
    assert_eq!(spread_of(&pod_of(&cluster())), default_spread);

    // A node affinity alone is kept beside the default spread.
    let node_affinity: k8s_openapi::api::core::v1::Affinity = serde_json::from_value(json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}))
    .expect("affinity");
    let pod = pod_of(&with_template(EtcdPodTemplate { affinity: Some(node_affinity.clone()), ..Default::default() }));
    assert_eq!(spread_of(&pod), default_spread);
    let kept = pod.spec.and_then(|s| s.affinity).and_then(|a| a.node_affinity);
    assert_eq!(kept, node_affinity.node_affinity);

    // The template's own anti-affinity replaces the default, as do topology spread constraints.
    let required: k8s_openapi::api::core::v1::Affinity = serde_json::from_value(json!({"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": apart, "topologyKey": "kubernetes.io/hostname"}]}}))
    .expect("affinity");
    let pod = pod_of(&with_template(EtcdPodTemplate { affinity: Some(required.clone()), ..Default::default() }));
    assert_eq!(pod.spec.and_then(|s| s.affinity), Some(required));
    let spread: k8s_openapi::api::core::v1::TopologySpreadConstraint = serde_json::from_value(json!({
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": apart}))
    .expect("constraint");
    let pod = pod_of(&with_template(EtcdPodTemplate {
        topology_spread_constraints: Some(vec![spread.clone()]),
        ..Default::default()
    }));
    let spec = pod.spec.expect("spec");
    assert!(spec.affinity.is_none(), "the default spread was added beside the template's constraints");
    assert_eq!(spec.topology_spread_constraints, Some(vec![spread]));
}

// ---------------------------------------------------------------------------------------------------------
// Storage

#[test]
fn the_data_volume_is_an_empty_dir_or_the_members_claim() {
    // storage → (claim name, emptyDir medium, emptyDir size limit); a claim and an emptyDir are exclusive.
    type EmptyDir = Option<(Option<&'static str>, Option<&'static str>)>;
    let rows: [(&str, StorageSpec, Option<&str>, EmptyDir); 5] = [
        ("default", StorageSpec::default(), Some("demo-1"), None),
        ("claim template", claim(Some("5Gi"), Some("fast"), None), Some("demo-1"), None),
        ("emptyDir", empty_dir(None, None), None, Some((None, None))),
        ("emptyDir with a limit", empty_dir(Some("2Gi"), None), None, Some((None, Some("2Gi")))),
        ("emptyDir in memory", empty_dir(Some("512Mi"), Some("Memory")), None, Some((Some("Memory"), Some("512Mi")))),
    ];
    for (what, storage, claim_name, dir) in rows {
        let pod = pod_of(&with_storage(storage));
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).expect("volumes");
        assert_eq!(volumes.len(), 1, "{what}");
        let volume = &volumes[0];
        assert_eq!(volume.name, "data", "{what}");
        let claim = volume.persistent_volume_claim.as_ref();
        assert_eq!(claim.map(|c| c.claim_name.as_str()), claim_name, "{what}");
        assert_eq!(claim.and_then(|c| c.read_only), None, "{what}");
        let got = volume.empty_dir.as_ref().map(|e| (e.medium.as_deref(), e.size_limit.as_ref().map(|q| q.0.as_str())));
        assert_eq!(got, dir, "{what}");
    }
}

struct PvcCase {
    what: &'static str,
    storage: StorageSpec,
    size: &'static str,
    class: Option<&'static str>,
    modes: Vec<&'static str>,
    quota: Option<u64>,
}

#[test]
fn member_volumes_follow_the_claim_template_and_record_bootstrap_and_quota() {
    let cases = [
        PvcCase {
            what: "default",
            storage: StorageSpec::default(),
            size: "1Gi",
            class: None,
            modes: vec!["ReadWriteOnce"],
            quota: Some(320 * MIB),
        },
        PvcCase {
            what: "empty template",
            storage: claim(None, None, None),
            size: "1Gi",
            class: None,
            modes: vec!["ReadWriteOnce"],
            quota: Some(320 * MIB),
        },
        PvcCase {
            what: "10Gi in class fast",
            storage: claim(Some("10Gi"), Some("fast"), None),
            size: "10Gi",
            class: Some("fast"),
            modes: vec!["ReadWriteOnce"],
            quota: Some((10 * 1024 - 384) / 2 * MIB),
        },
        PvcCase {
            what: "small volume: the quota's floor",
            storage: claim(Some("512Mi"), None, None),
            size: "512Mi",
            class: None,
            modes: vec!["ReadWriteOnce"],
            quota: Some(64 * MIB),
        },
        PvcCase {
            what: "large volume, other access mode: the quota's ceiling",
            storage: claim(Some("100Gi"), Some("standard"), Some(&["ReadWriteOncePod"])),
            size: "100Gi",
            class: Some("standard"),
            modes: vec!["ReadWriteOncePod"],
            quota: Some(8 * GIB),
        },
        PvcCase {
            what: "a size that cannot be read",
            storage: claim(Some("lots"), None, None),
            size: "lots",
            class: None,
            modes: vec!["ReadWriteOnce"],
            quota: None,
        },
    ];
    for case in cases {
        let with_tls = Bootstrap { transport: Transport::MUTUAL_TLS, ..new_bootstrap(Some("demo-7f3b")) };
        for bootstrap in [new_bootstrap(Some("demo-7f3a")), existing_bootstrap(None), with_tls] {
            let ec = with_storage(case.storage.clone());
            let pvc = member_pvc(&ec, "demo-1", &bootstrap);
            let spec = pvc.spec.clone().expect("spec");
            let requests = spec.resources.and_then(|r| r.requests).unwrap_or_default();
            assert_eq!(
                requests,
                BTreeMap::from([("storage".to_string(), Quantity(case.size.into()))]),
                "{}",
                case.what
            );
            assert_eq!(spec.storage_class_name.as_deref(), case.class, "{}", case.what);
            let modes: Vec<String> = case.modes.iter().map(|m| m.to_string()).collect();
            assert_eq!(spec.access_modes, Some(modes), "{}", case.what);

            let annotations = annotations_of(&pvc.metadata);
            let mut want = BTreeMap::from([
                (ANNOTATION_INITIAL_CLUSTER.to_string(), bootstrap.initial_cluster.clone()),
                (ANNOTATION_INITIAL_STATE.to_string(), bootstrap.state.as_str().to_string()),
                (ANNOTATION_TLS.to_string(), bootstrap.transport.as_str().to_string()),
            ]);
            want.extend(bootstrap.token.clone().map(|t| (ANNOTATION_INITIAL_TOKEN.to_string(), t)));
            want.extend(case.quota.map(|q| (ANNOTATION_QUOTA.to_string(), q.to_string())));
            assert_eq!(annotations, want, "{}", case.what);
            assert_eq!(Bootstrap::recorded(&annotations), Some(bootstrap.clone()), "{}", case.what);
            assert_eq!(recorded_quota(&pvc), case.quota, "{}", case.what);
            assert_eq!(quota_backend_bytes(&ec), case.quota, "{}", case.what);
        }
    }
}

#[test]
fn the_quota_of_new_members_follows_their_volume() {
    let rows = [
        ("default volume", StorageSpec::default(), Some(320 * MIB)),
        ("2Gi claim", claim(Some("2Gi"), None, None), Some((2048 - 384) / 2 * MIB)),
        ("decimal 4G claim", claim(Some("4G"), None, None), Some((4_000_000_000 - 384 * MIB) / 2)),
        ("1Ti claim", claim(Some("1Ti"), None, None), Some(8 * GIB)),
        ("emptyDir without a limit: etcd's default", empty_dir(None, None), None),
        ("emptyDir in memory without a limit", empty_dir(None, Some("Memory")), None),
        ("emptyDir of 1Gi", empty_dir(Some("1Gi"), None), Some(320 * MIB)),
        ("emptyDir of 256Mi", empty_dir(Some("256Mi"), Some("Memory")), Some(64 * MIB)),
    ];
    for (what, storage, want) in rows {
        assert_eq!(quota_backend_bytes(&with_storage(storage)), want, "{what}");
    }
}

#[test]
fn quota_for_volume_halves_what_the_wal_leaves_within_bounds() {
    let rows = [
        (0, 64 * MIB),
        (1, 64 * MIB),
        (384 * MIB, 64 * MIB),
        (512 * MIB, 64 * MIB),
        (514 * MIB, 65 * MIB),
        (GIB, 320 * MIB),
        (2 * GIB, 832 * MIB),
        (10 * GIB, 4928 * MIB),
        (16 * GIB + 384 * MIB, 8 * GIB),
        (16 * GIB + 386 * MIB, 8 * GIB),
        (100 * GIB, 8 * GIB),
        (u64::MAX, 8 * GIB),
    ];
    for (volume, want) in rows {
        assert_eq!(quota_for_volume(volume), want, "volume of {volume} bytes");
    }
    // A larger volume never gets a smaller quota.
    let mut previous = 0;
    for mib in (0..40_000).step_by(37) {
        let quota = quota_for_volume(mib * MIB);
        assert!(quota >= previous, "{mib}Mi: {quota} < {previous}");
        previous = quota;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Services and the disruption budget

struct ServiceCase {
    what: &'static str,
    service: Service,
    name: String,
    cluster_ip: Option<&'static str>,
    publish_not_ready: Option<bool>,
    ports: Vec<(&'static str, i32)>,
}

#[test]
fn services_expose_peers_to_each_other_and_clients_to_ready_members() {
    let ec = cluster();
    assert_eq!(client_service_name("demo"), "demo-client");
    let cases = [
        ServiceCase {
            what: "headless",
            service: headless_service(&ec),
            name: "demo".into(),
            cluster_ip: Some("None"),
            publish_not_ready: Some(true),
            ports: vec![("client", CLIENT_PORT), ("peer", PEER_PORT)],
        },
        ServiceCase {
            what: "client",
            service: client_service(&ec),
            name: client_service_name("demo"),
            cluster_ip: None,
            publish_not_ready: None,
            ports: vec![("client", CLIENT_PORT)],
        },
    ];
    for case in cases {
        assert_eq!(case.service.metadata.name.as_deref(), Some(case.name.as_str()), "{}", case.what);
        let spec = case.service.spec.clone().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), case.cluster_ip, "{}", case.what);
        assert_eq!(spec.publish_not_ready_addresses, case.publish_not_ready, "{}", case.what);
        assert_eq!(spec.type_, None, "{}: not exposed outside the cluster", case.what);
        let ports: Vec<(String, i32, Option<IntOrString>, Option<String>)> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port, p.target_port, p.protocol))
            .collect();
        let want: Vec<_> = case
            .ports
            .iter()
            .map(|(name, port)| (name.to_string(), *port, Some(IntOrString::Int(*port)), Some("TCP".to_string())))
            .collect();
        assert_eq!(ports, want, "{}", case.what);
    }
}

#[test]
fn the_disruption_budget_keeps_a_quorum() {
    let rows = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4), (9, 5)];
    let ec = cluster();
    for (size, min_available) in rows {
        let budget = disruption_budget(&ec, size);
        let spec = budget.spec.expect("spec");
        assert_eq!(spec.min_available, Some(IntOrString::Int(min_available)), "{size} members");
        assert_eq!(spec.max_unavailable, None, "{size} members: one bound only");
        assert_eq!(budget.metadata.name.as_deref(), Some("demo"), "{size} members");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Template hash

#[test]
fn the_template_hash_changes_with_the_pod_template_only() {
    let base = EtcdPodTemplate {
        priority_class_name: Some("high".into()),
        labels: Some(BTreeMap::from([("team".to_string(), "storage".to_string())])),
        ..Default::default()
    };
    let hash = template_hash(&with_template(base.clone()));
    assert_eq!(hash.len(), 16, "{hash}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{hash}");

    let rows: [(&str, EtcdCluster, bool); 9] = [
        ("same template", with_template(base.clone()), true),
        ("other size", cluster_of(EtcdClusterSpec { size: 5, pod_template: Some(base.clone()), ..spec() }), true),
        (
            "other version",
            cluster_of(EtcdClusterSpec { version: "3.6.20".into(), pod_template: Some(base.clone()), ..spec() }),
            true,
        ),
        (
            "other storage",
            cluster_of(EtcdClusterSpec {
                storage: claim(Some("8Gi"), None, None),
                pod_template: Some(base.clone()),
                ..spec()
            }),
            true,
        ),
        ("paused", cluster_of(EtcdClusterSpec { paused: true, pod_template: Some(base.clone()), ..spec() }), true),
        (
            "other priority class",
            with_template(EtcdPodTemplate { priority_class_name: Some("low".into()), ..base.clone() }),
            false,
        ),
        (
            "another label",
            with_template(EtcdPodTemplate {
                labels: Some(BTreeMap::from([("team".to_string(), "db".to_string())])),
                ..base.clone()
            }),
            false,
        ),
        (
            "resources",
            with_template(EtcdPodTemplate {
                resources: Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([("memory".to_string(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..base.clone()
            }),
            false,
        ),
        ("no template", cluster(), false),
    ];
    for (what, ec, same) in rows {
        assert_eq!(template_hash(&ec) == hash, same, "{what}");
        let pod = pod_of(&ec);
        assert_eq!(annotations_of(&pod.metadata).get(ANNOTATION_TEMPLATE_HASH), Some(&template_hash(&ec)), "{what}");
    }
}

#[test]
fn the_template_hash_is_stable_across_builds() {
    // FNV-1a of `null`, the JSON of no template. Every operator build must compute this: a different value
    // would restart every member of every cluster without a template on an operator upgrade.
    assert_eq!(template_hash(&cluster()), "5b9bc4ba528108e4");
}

#[test]
fn members_recorded_before_tls_was_recorded_ran_in_plaintext() {
    let annotations = BTreeMap::from([
        (ANNOTATION_INITIAL_CLUSTER.to_string(), INITIAL.to_string()),
        (ANNOTATION_INITIAL_STATE.to_string(), "new".to_string()),
    ]);
    let recorded = Bootstrap::recorded(&annotations).map(|b| b.transport);
    assert_eq!(recorded, Some(Transport::PLAINTEXT));
    for transport in [
        Transport::PLAINTEXT,
        Transport::MUTUAL_TLS,
        Transport { peer_tls: true, client_tls: false },
        Transport { peer_tls: false, client_tls: true },
    ] {
        assert_eq!(Transport::parse(transport.as_str()), Some(transport));
    }
    assert_eq!(Transport::parse("tls"), None);
}

#[test]
fn a_tls_member_serves_and_dials_https_with_its_certificates_mounted_whole() {
    let rows = [
        ("both", Transport::MUTUAL_TLS),
        ("peer only", Transport { peer_tls: true, client_tls: false }),
        ("client only", Transport { peer_tls: false, client_tls: true }),
        ("neither", Transport::PLAINTEXT),
    ];
    let ec = cluster_of(spec());
    for (what, transport) in rows {
        let bootstrap = Bootstrap { transport, ..new_bootstrap(Some("tok-1")) };
        let pod = settled_pod(&ec, "demo-1", V36, &bootstrap, None);
        let args = args_of(&pod);
        let has = |arg: &str| args.iter().any(|a| a == arg);
        let peer = if transport.peer_tls { "https" } else { "http" };
        let client = if transport.client_tls { "https" } else { "http" };
        assert!(has(&format!("--listen-peer-urls={peer}://0.0.0.0:{PEER_PORT}")), "{what}: {args:?}");
        assert!(has(&format!("--listen-client-urls={client}://0.0.0.0:{CLIENT_PORT}")), "{what}: {args:?}");
        assert!(
            has(&format!("--advertise-client-urls={client}://demo-1.demo.{NAMESPACE}.svc:{CLIENT_PORT}")),
            "{what}: {args:?}"
        );
        assert!(has(&format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}")), "{what}: probes stay plaintext");
        assert_eq!(has("--peer-client-cert-auth=true"), transport.peer_tls, "{what}");
        assert_eq!(has("--peer-skip-client-san-verification=true"), transport.peer_tls, "{what}");
        let on_3_5 = args_of(&settled_pod(&ec, "demo-1", Version::new(3, 5, 26), &bootstrap, None));
        let experimental = "--experimental-peer-skip-client-san-verification=true".to_string();
        assert_eq!(on_3_5.contains(&experimental), transport.peer_tls, "{what}: 3.5 knows the experimental name only");
        assert_eq!(has(&format!("--peer-trusted-ca-file={PEER_TLS_MOUNT}/ca.crt")), transport.peer_tls, "{what}");
        assert_eq!(has("--client-cert-auth=true"), transport.client_tls, "{what}");
        assert_eq!(has(&format!("--cert-file={SERVER_TLS_MOUNT}/tls.crt")), transport.client_tls, "{what}");

        let spec = pod.spec.clone().expect("spec");
        let secrets: Vec<(String, Option<i32>)> = spec
            .volumes
            .unwrap_or_default()
            .iter()
            .filter_map(|v| Some((v.secret.as_ref()?.secret_name.clone()?, v.secret.as_ref()?.default_mode)))
            .collect();
        let mut want = Vec::new();
        if transport.peer_tls {
            want.push((CertificateSecret::Peer.name("demo"), Some(0o440)));
        }
        if transport.client_tls {
            want.push((CertificateSecret::Server.name("demo"), Some(0o440)));
        }
        assert_eq!(secrets, want, "{what}");
        let mounts = spec.containers[0].volume_mounts.clone().unwrap_or_default();
        assert!(mounts.iter().all(|m| m.sub_path.is_none()), "{what}: a subPath mount never sees a renewal");
        let tls_mounts: Vec<&str> = mounts.iter().filter(|m| m.name != "data").map(|m| m.mount_path.as_str()).collect();
        assert_eq!(tls_mounts.len(), want.len(), "{what}");
        assert!(mounts.iter().filter(|m| m.name != "data").all(|m| m.read_only == Some(true)), "{what}");
    }
}

#[test]
fn the_network_policy_admits_peers_from_members_and_clients_from_the_operator_and_those_allowed() {
    use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let selector = |key: &str, value: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..LabelSelector::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(selector("kubernetes.io/metadata.name", "etcd-op-system")),
        pod_selector: Some(selector("control-plane", "controller-manager")),
        ip_block: None,
    };
    let app = NetworkPolicyPeer { pod_selector: Some(selector("app", "api")), ..NetworkPolicyPeer::default() };
    let rows = [
        ("unset: any source, the certificate is the gate", None, None),
        ("set: the operator and the app", Some(vec![app.clone()]), Some(vec![operator.clone(), app.clone()])),
        ("set to none: the operator alone", Some(vec![]), Some(vec![operator.clone()])),
    ];
    for (what, allowed, clients) in rows {
        let ec = cluster_of(EtcdClusterSpec { allowed_clients: allowed, ..spec() });
        let policy = network_policy(&ec, Some(&operator));
        assert_eq!(policy.metadata.owner_references.map(|o| o.len()), Some(1), "{what}");
        let spec = policy.spec.expect("spec");
        assert_eq!(spec.pod_selector.and_then(|s| s.match_labels), Some(selector_labels("demo")), "{what}");
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]), "{what}");
        let rules = spec.ingress.unwrap_or_default();
        let on_port = |port: i32| {
            rules
                .iter()
                .find(|r| r.ports.iter().flatten().any(|p| p.port == Some(IntOrString::Int(port))))
                .unwrap_or_else(|| panic!("{what}: no rule for port {port}"))
        };
        let members = on_port(PEER_PORT).from.clone().unwrap_or_default();
        assert_eq!(members.len(), 1, "{what}");
        assert_eq!(
            members[0].pod_selector.as_ref().and_then(|s| s.match_labels.clone()),
            Some(selector_labels("demo"))
        );
        assert!(members[0].namespace_selector.is_none(), "{what}: peers from this namespace only");
        assert_eq!(on_port(CLIENT_PORT).from, clients, "{what}");
        assert_eq!(on_port(METRICS_PORT).from, None, "{what}: probes and scrapes from anywhere");
        assert_eq!(rules.len(), 3, "{what}");
    }
}

#[test]
fn no_two_clusters_derive_the_same_secret_name() {
    let suffixes: Vec<String> =
        CertificateSecret::ALL.iter().map(|s| s.name("x").trim_start_matches("x-").to_string()).collect();
    for a in &suffixes {
        for b in &suffixes {
            // Cluster `x` and cluster `x-<p>` clash when `a` is `<p>-<b>`.
            assert!(
                !a.ends_with(&format!("-{b}")),
                "{a} ends in -{b}: clusters x and x-{} would share a Secret",
                a.trim_end_matches(&format!("-{b}"))
            );
        }
    }
    assert_eq!(suffixes.len(), 6);
}

#[test]
fn a_member_turning_tls_on_holds_its_certificates_before_it_speaks_tls() {
    // stage → (listen peer, listen client, advertised client, advertised peer, peer files, server files)
    let plain = Transport::PLAINTEXT;
    let both = Transport::MUTUAL_TLS;
    let rows = [
        (
            "certificates, peer URL still http",
            MemberPorts::changing(plain, both, false),
            "http",
            "http://0.0.0.0:2379,https://0.0.0.0:2379",
            "http",
            "http",
            true,
            true,
        ),
        (
            "peer URL moved",
            MemberPorts::changing(plain, both, true),
            "https",
            "http://0.0.0.0:2379,https://0.0.0.0:2379",
            "http",
            "https",
            true,
            true,
        ),
        ("recorded", MemberPorts::settled(both), "https", "https://0.0.0.0:2379", "https", "https", true, true),
        (
            "client TLS only, on its way",
            MemberPorts::changing(plain, Transport { peer_tls: false, client_tls: true }, false),
            "http",
            "http://0.0.0.0:2379,https://0.0.0.0:2379",
            "http",
            "http",
            false,
            true,
        ),
        (
            "peer TLS only, on its way",
            MemberPorts::changing(plain, Transport { peer_tls: true, client_tls: false }, false),
            "http",
            "http://0.0.0.0:2379",
            "http",
            "http",
            true,
            false,
        ),
    ];
    let ec = cluster_of(spec());
    let bootstrap = new_bootstrap(Some("tok-1"));
    for (what, ports, peer, client, advertised_client, advertised_peer, peer_files, server_files) in rows {
        let pod = member_pod(&ec, &template_hash(&ec), "demo-1", V36, &bootstrap, ports, None);
        let args = args_of(&pod);
        let has = |arg: &str| args.iter().any(|a| a == arg);
        assert!(has(&format!("--listen-peer-urls={peer}://0.0.0.0:{PEER_PORT}")), "{what}: {args:?}");
        assert!(has(&format!("--listen-client-urls={client}")), "{what}: {args:?}");
        let host = format!("demo-1.demo.{NAMESPACE}.svc");
        assert!(
            has(&format!("--advertise-client-urls={advertised_client}://{host}:{CLIENT_PORT}")),
            "{what}: {args:?}"
        );
        assert!(
            has(&format!("--initial-advertise-peer-urls={advertised_peer}://{host}:{PEER_PORT}")),
            "{what}: {args:?}"
        );
        assert_eq!(has(&format!("--peer-cert-file={PEER_TLS_MOUNT}/tls.crt")), peer_files, "{what}: {args:?}");
        assert_eq!(has(&format!("--cert-file={SERVER_TLS_MOUNT}/tls.crt")), server_files, "{what}: {args:?}");
        let mounts: Vec<String> =
            etcd_container(&pod).volume_mounts.clone().unwrap_or_default().into_iter().map(|m| m.mount_path).collect();
        assert_eq!(mounts.contains(&PEER_TLS_MOUNT.to_string()), peer_files, "{what}: {mounts:?}");
        assert_eq!(mounts.contains(&SERVER_TLS_MOUNT.to_string()), server_files, "{what}: {mounts:?}");
        // What the operator reads back from the pod is what it set up.
        let read = schemes_of_pod(&pod);
        assert_eq!(
            (read.peer_tls, read.client_tls, read.client_plaintext),
            (ports.peer_tls, ports.client_tls, ports.client_plaintext),
            "{what}"
        );
    }
}

#[test]
fn tls_is_turned_on_never_off() {
    let plain = Transport::PLAINTEXT;
    let both = Transport::MUTUAL_TLS;
    let peer = Transport { peer_tls: true, client_tls: false };
    assert!(plain.is_turned_on_by(both));
    assert!(plain.is_turned_on_by(peer));
    assert!(peer.is_turned_on_by(both));
    assert!(!both.is_turned_on_by(plain), "turning TLS off is not turning it on");
    assert!(!both.is_turned_on_by(peer));
    assert!(!both.is_turned_on_by(both), "no change");
    assert!(!peer.is_turned_on_by(Transport { peer_tls: false, client_tls: true }), "client on while peer goes off");
}
