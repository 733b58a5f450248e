//! Builders of the objects an EtcdCluster owns: one PVC and one Pod per member, a headless Service for peer
//! DNS, a client Service and a PodDisruptionBudget. Pure functions of the cluster and the member.

use std::collections::BTreeMap;

use etcd_op_api::v1::{
    DEFAULT_IMAGE_REPOSITORY, DEFAULT_STORAGE_SIZE, EtcdCluster, EtcdPodTemplate, PvcRetentionPolicy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, Probe, SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use etcd_op_api::member_pod::etcd_flag;
pub use etcd_op_api::member_pod::{ETCD_DEFAULT_QUOTA, quota_of_pod};

pub use super::model::{Bootstrap, InitialState, MemberPorts, Transport};
use super::model::{DesiredVolume, Version, quorum};

pub const CLIENT_PORT: i32 = 2379;
pub const PEER_PORT: i32 = 2380;
pub const METRICS_PORT: i32 = 2381;
pub const DATA_MOUNT: &str = "/var/lib/etcd";
/// The user and group etcd runs as: distroless' "nonroot", which the etcd images also know.
pub const MEMBER_UID: i64 = 65532;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_CLUSTER: &str = "etcd.cloud.io/cluster";
pub const LABEL_MEMBER: &str = "etcd.cloud.io/member";
/// The members' initial cluster and state, recorded on the PVC and the pod when the member is created, so its
/// pod can be recreated identically, and a cut-short bootstrap finished, even while etcd does not answer.
pub const ANNOTATION_INITIAL_CLUSTER: &str = "etcd.cloud.io/initial-cluster";
pub const ANNOTATION_INITIAL_STATE: &str = "etcd.cloud.io/initial-cluster-state";
pub const ANNOTATION_INITIAL_TOKEN: &str = "etcd.cloud.io/initial-cluster-token";
/// The backend quota a member's volume was created for, so its pod always runs with the quota of its own
/// volume, whatever the spec says later.
pub const ANNOTATION_QUOTA: &str = "etcd.cloud.io/quota-backend-bytes";
pub const ANNOTATION_TEMPLATE_HASH: &str = "etcd.cloud.io/template-hash";
/// Which of the member's ports speak TLS (`Transport::as_str`), recorded with its bootstrap.
pub const ANNOTATION_TLS: &str = "etcd.cloud.io/tls";
/// Where a member finds its peer certificate, and its serving certificate for clients: whole Secret
/// volumes, never `subPath` mounts, so a renewed certificate reaches the running member.
pub const PEER_TLS_MOUNT: &str = "/etc/etcd/tls/peer";
pub const SERVER_TLS_MOUNT: &str = "/etc/etcd/tls/server";
pub const MANAGER: &str = "etcd-op";

impl Bootstrap {
    pub fn annotations(&self) -> Vec<(String, String)> {
        let mut annotations = vec![
            (ANNOTATION_INITIAL_CLUSTER.to_string(), self.initial_cluster.clone()),
            (ANNOTATION_INITIAL_STATE.to_string(), self.state.as_str().to_string()),
        ];
        annotations.extend(self.token.iter().map(|t| (ANNOTATION_INITIAL_TOKEN.to_string(), t.clone())));
        annotations.push((ANNOTATION_TLS.to_string(), self.transport.as_str().to_string()));
        annotations
    }

    /// What was recorded on a member's object, if anything.
    /// Members created before TLS was recorded ran in plaintext.
    pub fn recorded(annotations: &BTreeMap<String, String>) -> Option<Self> {
        Some(Bootstrap {
            initial_cluster: annotations.get(ANNOTATION_INITIAL_CLUSTER)?.clone(),
            state: InitialState::parse(annotations.get(ANNOTATION_INITIAL_STATE)?)?,
            token: annotations.get(ANNOTATION_INITIAL_TOKEN).cloned(),
            transport: annotations
                .get(ANNOTATION_TLS)
                .and_then(|t| Transport::parse(t))
                .unwrap_or(Transport::PLAINTEXT),
        })
    }
}

/// Labels every object of a cluster carries; also the member pods' selector.
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "etcd".to_string()),
        (LABEL_INSTANCE.to_string(), cluster.to_string()),
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
    ])
}

/// The selector as a string, for status.selector and list calls.
pub fn selector_string(cluster: &str) -> String {
    selector_labels(cluster).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn object_labels(cluster: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGER.to_string());
    labels
}

fn member_labels(cluster: &str, member: &str) -> BTreeMap<String, String> {
    let mut labels = object_labels(cluster);
    labels.insert(LABEL_MEMBER.to_string(), member.to_string());
    labels
}

/// The headless Service gives each member the DNS name `<member>.<cluster>.<namespace>.svc`.
pub fn peer_url(cluster: &str, namespace: &str, member: &str, transport: Transport) -> String {
    format!("{}://{member}.{cluster}.{namespace}.svc:{PEER_PORT}", transport.peer_scheme())
}

pub fn client_url(cluster: &str, namespace: &str, member: &str, transport: Transport) -> String {
    format!("{}://{member}.{cluster}.{namespace}.svc:{CLIENT_PORT}", transport.client_scheme())
}

/// The Secrets that hold a cluster's certificates, each in the `kubernetes.io/tls` shape plus `ca.crt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateSecret {
    /// The authority of peer certificates (it holds its private key).
    PeerAuthority,
    /// The authority of the client port: it signs the members' serving certificate and client certificates.
    ClientAuthority,
    /// The members' peer certificate.
    Peer,
    /// The members' serving certificate on the client port.
    Server,
    /// The operator's own client certificate.
    OperatorClient,
    /// The client certificate for users and their applications.
    Client,
}

impl CertificateSecret {
    pub const ALL: [CertificateSecret; 6] = [
        CertificateSecret::PeerAuthority,
        CertificateSecret::ClientAuthority,
        CertificateSecret::Peer,
        CertificateSecret::Server,
        CertificateSecret::OperatorClient,
        CertificateSecret::Client,
    ];

    /// The Secrets a cluster with `transport` keeps: an authority and its certificates per TLS channel.
    pub fn wanted(transport: Transport) -> Vec<CertificateSecret> {
        let mut wanted = Vec::new();
        if transport.peer_tls {
            wanted.extend([CertificateSecret::PeerAuthority, CertificateSecret::Peer]);
        }
        if transport.client_tls {
            wanted.extend([
                CertificateSecret::ClientAuthority,
                CertificateSecret::Server,
                CertificateSecret::OperatorClient,
                CertificateSecret::Client,
            ]);
        }
        wanted
    }

    /// `<cluster>-<suffix>`. No suffix ends in another one after a dash, so two clusters never derive the
    /// same Secret name (cluster `a-peer`'s Secrets all start with `a-peer-`, and none of cluster `a`'s is
    /// `a-peer-` followed by a suffix).
    pub fn name(self, cluster: &str) -> String {
        let suffix = match self {
            CertificateSecret::PeerAuthority => "peer-ca",
            CertificateSecret::ClientAuthority => "client-ca",
            CertificateSecret::Peer => "peer-tls",
            CertificateSecret::Server => "server-tls",
            CertificateSecret::OperatorClient => "etcd-op-tls",
            CertificateSecret::Client => "client-tls",
        };
        format!("{cluster}-{suffix}")
    }
}

/// A Secret's data as text; values that are not UTF-8 (no PEM is) are left out.
pub fn secret_text(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(key, value)| String::from_utf8(value.0.clone()).ok().map(|text| (key.clone(), text)))
        .collect()
}

/// A Secret of a cluster's certificate, owned by the cluster so it goes with it.
pub fn certificate_secret(ec: &EtcdCluster, which: CertificateSecret, data: BTreeMap<String, String>) -> Secret {
    let cluster = ec.name_any();
    Secret {
        metadata: meta(ec, which.name(&cluster), object_labels(&cluster)),
        type_: Some("kubernetes.io/tls".to_string()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// The member name a peer URL belongs to: its first DNS label. etcd lists members that never started with an
/// empty name, so this is how such a member is matched to its pod.
pub fn member_of_peer_url(url: &str) -> Option<&str> {
    let host = url.split("://").nth(1)?;
    host.split(['.', ':']).next().filter(|s| !s.is_empty())
}

pub fn client_service_name(cluster: &str) -> String {
    format!("{cluster}-client")
}

pub fn image(ec: &EtcdCluster, version: Version) -> String {
    let repository = template(ec).and_then(|t| t.image_repository.as_deref()).unwrap_or(DEFAULT_IMAGE_REPOSITORY);
    format!("{repository}:v{version}")
}

fn template(ec: &EtcdCluster) -> Option<&EtcdPodTemplate> {
    ec.spec.pod_template.as_ref()
}

/// A stable hash (FNV-1a over the JSON form) of the pod template, so a change of resources, labels or
/// scheduling rolls the members. Stable across builds, unlike the standard library's hasher.
pub fn template_hash(ec: &EtcdCluster) -> String {
    fnv1a(&serde_json::to_string(&ec.spec.pod_template).unwrap_or_default())
}

/// `base` with `extra` folded in, or `base` itself when there is nothing to fold. The hash members run on is
/// the pod template's with what else their pods take only when they start: a fingerprint of the trust
/// bundles once the cluster's authorities have been rotated, and a TLS change under way. With neither it is
/// the template's own, so members created before rotations and TLS changes existed are not restarted.
pub fn folded_hash(base: &str, extra: &str) -> String {
    if extra.is_empty() { base.to_string() } else { fnv1a(&format!("{base}\n{extra}")) }
}

fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub fn owner_reference(ec: &EtcdCluster) -> Option<OwnerReference> {
    ec.controller_owner_ref(&())
}

pub fn meta(ec: &EtcdCluster, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ec.namespace(),
        labels: Some(labels),
        owner_references: owner_reference(ec).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// Peers find each other through this Service before they are ready, hence `publishNotReadyAddresses`.
pub fn headless_service(ec: &EtcdCluster) -> Service {
    let name = ec.name_any();
    Service {
        metadata: meta(ec, name.clone(), object_labels(&name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&name)),
            ports: Some(vec![service_port("client", CLIENT_PORT), service_port("peer", PEER_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Clients reach ready members through this Service.
pub fn client_service(ec: &EtcdCluster) -> Service {
    let name = ec.name_any();
    Service {
        metadata: meta(ec, client_service_name(&name), object_labels(&name)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&name)),
            ports: Some(vec![service_port("client", CLIENT_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Who reaches the members: the peer port only from the cluster's own members; the client port from the
/// operator and `spec.allowedClients` (from anywhere while that is unset); the metrics port, which serves
/// no data, from anywhere (the kubelet's probes, Prometheus).
pub fn network_policy(ec: &EtcdCluster, operator: Option<&NetworkPolicyPeer>) -> NetworkPolicy {
    let name = ec.name_any();
    let port = |number: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".to_string()),
        end_port: None,
    };
    let members = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(&name)), ..LabelSelector::default() }),
        ..NetworkPolicyPeer::default()
    };
    let clients =
        ec.spec.allowed_clients.as_ref().map(|allowed| operator.into_iter().chain(allowed).cloned().collect());
    NetworkPolicy {
        metadata: meta(ec, name.clone(), object_labels(&name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule { from: Some(vec![members]), ports: Some(vec![port(PEER_PORT)]) },
                NetworkPolicyIngressRule { from: clients, ports: Some(vec![port(CLIENT_PORT)]) },
                NetworkPolicyIngressRule { from: None, ports: Some(vec![port(METRICS_PORT)]) },
            ]),
            egress: None,
        }),
    }
}

/// Voluntary disruptions (drains, evictions) may never take the cluster below quorum.
pub fn disruption_budget(ec: &EtcdCluster, size: usize) -> PodDisruptionBudget {
    let name = ec.name_any();
    let min_available = i32::try_from(quorum(size)).unwrap_or(i32::MAX);
    PodDisruptionBudget {
        metadata: meta(ec, name.clone(), object_labels(&name)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(&name)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

pub fn member_pvc(ec: &EtcdCluster, member: &str, bootstrap: &Bootstrap) -> PersistentVolumeClaim {
    let cluster = ec.name_any();
    let claim = ec.spec.storage.volume_claim_template.clone().unwrap_or_default();
    let mut metadata = meta(ec, member.to_string(), member_labels(&cluster, member));
    if ec.spec.pvc_retention_policy == PvcRetentionPolicy::Retain {
        metadata.owner_references = None;
    }
    let mut annotations: BTreeMap<String, String> = bootstrap.annotations().into_iter().collect();
    annotations.extend(quota_backend_bytes(ec).map(|q| (ANNOTATION_QUOTA.to_string(), q.to_string())));
    metadata.annotations = Some(annotations);
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(claim.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".to_string()])),
            storage_class_name: claim.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    claim.size.unwrap_or_else(|| Quantity(DEFAULT_STORAGE_SIZE.to_string())),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The token of clusters bootstrapped before tokens were recorded: the same for every bootstrap of one
/// EtcdCluster object.
pub fn legacy_token(ec: &EtcdCluster) -> String {
    format!("{}-{}-{}", ec.namespace().unwrap_or_default(), ec.name_any(), ec.uid().unwrap_or_default())
}

/// The volume every member should have, with its quota; `None` on emptyDir storage.
pub fn desired_volume(ec: &EtcdCluster) -> Option<DesiredVolume> {
    if ec.spec.storage.empty_dir.is_some() {
        return None;
    }
    let quantity = ec
        .spec
        .storage
        .volume_claim_template
        .as_ref()
        .and_then(|t| t.size.clone())
        .unwrap_or_else(|| Quantity(DEFAULT_STORAGE_SIZE.to_string()));
    let bytes = quantity_bytes(&quantity.0)?;
    Some(DesiredVolume { bytes, quantity: quantity.0, quota_bytes: quota_for_volume(bytes) })
}

/// What a claim asks for, and the capacity it has, in bytes.
pub fn claim_sizes(pvc: &PersistentVolumeClaim) -> (Option<u64>, Option<u64>) {
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
        .and_then(|q| quantity_bytes(&q.0));
    let capacity =
        pvc.status.as_ref().and_then(|s| s.capacity.as_ref()?.get("storage")).and_then(|q| quantity_bytes(&q.0));
    (requested, capacity)
}

/// The claim's volume has grown and waits for a pod to mount it again to grow its filesystem.
pub fn filesystem_resize_pending(pvc: &PersistentVolumeClaim) -> bool {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "FileSystemResizePending" && c.status == "True"))
}

/// The quota recorded on a member's volume; `None` on volumes created before quotas were recorded, whose
/// members keep etcd's default rather than a quota their database may already exceed.
pub fn recorded_quota(pvc: &PersistentVolumeClaim) -> Option<u64> {
    pvc.annotations().get(ANNOTATION_QUOTA)?.parse().ok()
}

fn etcd_args(
    ec: &EtcdCluster,
    member: &str,
    version: Version,
    bootstrap: &Bootstrap,
    ports: MemberPorts,
    quota: Option<u64>,
) -> Vec<String> {
    let cluster = ec.name_any();
    let namespace = ec.namespace().unwrap_or_default();
    let token = bootstrap.token.clone().unwrap_or_else(|| legacy_token(ec));
    // What the member is reached by: its advertised URLs follow the schemes its peers and clients use today.
    let transport = Transport { peer_tls: ports.peer_tls, client_tls: ports.client_tls && !ports.client_plaintext };
    // Both ports check the other side's certificate against their own authority. The metrics port stays
    // plaintext: it serves health and figures, never data, and the kubelet's probes need it.
    // A peer's certificate is not also matched against the reverse-DNS name of its address: every member
    // holds the same peer certificate, so that check would only say the address is one of the cluster's
    // pods (which the NetworkPolicy already requires), and a new pod's name resolves only some seconds
    // after it starts, during which its peers refuse it: a heal took 8 s instead of 3, a scale-up 50 s
    // instead of 19.
    // A member that holds the peer certificate while it still listens in plaintext (TLS being turned on)
    // reaches peers that already listen over TLS; etcd ignores the files for its own plaintext listener.
    let peer_tls = ports.peer_certificate.then(|| {
        [
            format!("--peer-cert-file={PEER_TLS_MOUNT}/tls.crt"),
            format!("--peer-key-file={PEER_TLS_MOUNT}/tls.key"),
            format!("--peer-trusted-ca-file={PEER_TLS_MOUNT}/ca.crt"),
            "--peer-client-cert-auth=true".to_string(),
            // 3.5 knows the flag only under its experimental name, 3.7 only under its new one.
            if (version.major, version.minor) < (3, 6) {
                "--experimental-peer-skip-client-san-verification=true".to_string()
            } else {
                "--peer-skip-client-san-verification=true".to_string()
            },
        ]
    });
    let client_tls = ports.client_tls.then(|| {
        [
            format!("--cert-file={SERVER_TLS_MOUNT}/tls.crt"),
            format!("--key-file={SERVER_TLS_MOUNT}/tls.key"),
            format!("--trusted-ca-file={SERVER_TLS_MOUNT}/ca.crt"),
            "--client-cert-auth=true".to_string(),
        ]
    });
    [
        format!("--name={member}"),
        format!("--data-dir={DATA_MOUNT}/data"),
        format!("--listen-peer-urls={}://0.0.0.0:{PEER_PORT}", transport.peer_scheme()),
        format!("--listen-client-urls={}", listen_client_urls(ports)),
        format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}"),
        format!("--advertise-client-urls={}", client_url(&cluster, &namespace, member, transport)),
        format!("--initial-advertise-peer-urls={}", peer_url(&cluster, &namespace, member, transport)),
        format!("--initial-cluster={}", bootstrap.initial_cluster),
        format!("--initial-cluster-state={}", bootstrap.state.as_str()),
        format!("--initial-cluster-token={token}"),
        "--auto-compaction-mode=periodic".to_string(),
        "--auto-compaction-retention=1h".to_string(),
    ]
    .into_iter()
    .chain(quota.map(|bytes| format!("--quota-backend-bytes={bytes}")))
    // While a member defragments, it tells clients it is not serving (gRPC health), so they move to another
    // member instead of waiting; 3.5 does not have the gate.
    .chain(
        ((version.major, version.minor) >= (3, 6)).then(|| "--feature-gates=StopGRPCServiceOnDefrag=true".to_string()),
    )
    .chain(peer_tls.into_iter().flatten())
    .chain(client_tls.into_iter().flatten())
    .collect()
}

/// One listener for both schemes where a member serves plaintext and TLS clients at once (etcd tells them
/// apart on the same port), so clients can move to TLS before it is required.
fn listen_client_urls(ports: MemberPorts) -> String {
    let schemes: Vec<&str> = [(ports.client_plaintext, "http"), (ports.client_tls, "https")]
        .into_iter()
        .filter_map(|(on, scheme)| on.then_some(scheme))
        .collect();
    schemes.iter().map(|scheme| format!("{scheme}://0.0.0.0:{CLIENT_PORT}")).collect::<Vec<_>>().join(",")
}

/// The Secrets the members mount for the peer and the client port: the user's (`spec.tls.secrets`), else the
/// cluster's own.
pub fn member_tls_secrets(ec: &EtcdCluster) -> (String, String) {
    let cluster = ec.name_any();
    let user = ec.spec.tls.as_ref().and_then(|tls| tls.secrets.as_ref());
    (
        user.and_then(|s| s.peer.clone()).unwrap_or_else(|| CertificateSecret::Peer.name(&cluster)),
        user.and_then(|s| s.server.clone()).unwrap_or_else(|| CertificateSecret::Server.name(&cluster)),
    )
}

/// The member's certificate volumes and where they are mounted.
fn certificate_volumes(ec: &EtcdCluster, transport: Transport) -> Vec<(Volume, VolumeMount)> {
    let (peer_secret, server_secret) = member_tls_secrets(ec);
    let volume = |name: &str, secret: &str, path: &str| {
        (
            Volume {
                name: name.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_string()),
                    // Readable by the member's group only (the pod's fsGroup), never by others.
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            VolumeMount {
                name: name.to_string(),
                mount_path: path.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        )
    };
    let mut volumes = Vec::new();
    if transport.peer_tls {
        volumes.push(volume("peer-tls", &peer_secret, PEER_TLS_MOUNT));
    }
    if transport.client_tls {
        volumes.push(volume("server-tls", &server_secret, SERVER_TLS_MOUNT));
    }
    volumes
}

/// The URL schemes a member's pod listens on for peers and for clients, as its etcd flags say.
pub fn schemes_of_pod(pod: &Pod) -> PodSchemes {
    let schemes = |flag| {
        etcd_flag(pod, flag)
            .unwrap_or_default()
            .split(',')
            .map(|url| url.split_once("://").map(|(s, _)| s == "https"))
            .collect::<Vec<_>>()
    };
    let peer = schemes("listen-peer-urls");
    let client = schemes("listen-client-urls");
    PodSchemes {
        peer_tls: peer.contains(&Some(true)),
        client_tls: client.contains(&Some(true)),
        client_plaintext: client.contains(&Some(false)),
    }
}

/// What a member's pod listens on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodSchemes {
    pub peer_tls: bool,
    pub client_tls: bool,
    pub client_plaintext: bool,
}

const MIB: u64 = 1 << 20;
/// Room on a member's volume beside the database: etcd keeps up to 5 write-ahead log files of 64 MiB each, and
/// a few snapshot files.
const WAL_AND_SNAPSHOTS: u64 = 384 * MIB;
const MIN_QUOTA: u64 = 64 * MIB;
/// etcd's own advice: larger databases make recovery and defragmentation slow.
const MAX_QUOTA: u64 = 8 * 1024 * MIB;

/// etcd's backend quota for a member volume of `volume` bytes. etcd's default (2 GiB) exceeds the default
/// volume (1 GiB): the disk would fill before the NOSPACE alarm could fire. The database gets half of what the
/// WAL and snapshots leave, so that a defragmentation (which writes a full copy) still fits.
pub fn quota_for_volume(volume: u64) -> u64 {
    (volume.saturating_sub(WAL_AND_SNAPSHOTS) / 2).clamp(MIN_QUOTA, MAX_QUOTA)
}

/// The quota for this cluster's new members: from the volume claim's size, or an emptyDir's size limit. An
/// emptyDir without a limit has no size to follow, and keeps etcd's default.
pub fn quota_backend_bytes(ec: &EtcdCluster) -> Option<u64> {
    let size = match &ec.spec.storage.empty_dir {
        Some(dir) => dir.size_limit.clone()?,
        None => ec
            .spec
            .storage
            .volume_claim_template
            .as_ref()
            .and_then(|t| t.size.clone())
            .unwrap_or_else(|| Quantity(DEFAULT_STORAGE_SIZE.to_string())),
    };
    quantity_bytes(&size.0).map(quota_for_volume)
}

/// Kubernetes' quantity suffixes, the two-letter ones first so that `Ei` is not read as `E`.
const QUANTITY_SUFFIXES: [(&str, f64); 12] = [
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// Bytes of a Kubernetes quantity (`1Gi`, `500M`, `1.5Gi`, `2e9`); `None` for what it cannot read.
pub fn quantity_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, multiplier) = QUANTITY_SUFFIXES
        .iter()
        .find_map(|(suffix, multiplier)| Some((text.strip_suffix(suffix)?, *multiplier)))
        .unwrap_or((text, 1.0));
    let bytes = number.parse::<f64>().ok()? * multiplier;
    // Truncation is intended: storage sizes are whole bytes, and a negative size is no size.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let whole = (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64);
    whole
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(METRICS_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

/// `template_hash` is the one the planner targets: the pod template's, with what members trust.
pub fn member_pod(
    ec: &EtcdCluster,
    template_hash: &str,
    member: &str,
    version: Version,
    bootstrap: &Bootstrap,
    ports: MemberPorts,
    quota: Option<u64>,
) -> Pod {
    let cluster = ec.name_any();
    let tpl = template(ec).cloned().unwrap_or_default();
    let mut labels = tpl.labels.clone().unwrap_or_default();
    labels.extend(member_labels(&cluster, member));
    let mut annotations = tpl.annotations.clone().unwrap_or_default();
    annotations.insert(ANNOTATION_TEMPLATE_HASH.to_string(), template_hash.to_string());
    annotations.extend(bootstrap.annotations());
    let mut metadata = meta(ec, member.to_string(), labels);
    metadata.annotations = Some(annotations);

    let data_volume = match &ec.spec.storage.empty_dir {
        Some(dir) => Volume {
            name: "data".to_string(),
            empty_dir: Some(EmptyDirVolumeSource { medium: dir.medium.clone(), size_limit: dir.size_limit.clone() }),
            ..Volume::default()
        },
        None => Volume {
            name: "data".to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: member.to_string(),
                read_only: None,
            }),
            ..Volume::default()
        },
    };
    let (tls_volumes, tls_mounts): (Vec<Volume>, Vec<VolumeMount>) =
        certificate_volumes(ec, ports.certificates()).into_iter().unzip();
    let mut mounts =
        vec![VolumeMount { name: "data".to_string(), mount_path: DATA_MOUNT.to_string(), ..VolumeMount::default() }];
    mounts.extend(tls_mounts);
    let mut volumes = vec![data_volume];
    volumes.extend(tls_volumes);
    let container = Container {
        name: "etcd".to_string(),
        image: Some(image(ec, version)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(vec!["/usr/local/bin/etcd".to_string()]),
        args: Some(etcd_args(ec, member, version, bootstrap, ports, quota)),
        ports: Some(vec![
            ContainerPort { name: Some("client".into()), container_port: CLIENT_PORT, ..ContainerPort::default() },
            ContainerPort { name: Some("peer".into()), container_port: PEER_PORT, ..ContainerPort::default() },
            ContainerPort { name: Some("metrics".into()), container_port: METRICS_PORT, ..ContainerPort::default() },
        ]),
        // A short period: each membership step waits for the previous member to be ready, and the probe
        // (etcd's own /readyz, a local check) is cheap.
        readiness_probe: Some(http_probe("/readyz", 2, 3)),
        // A large database takes a while to load: liveness starts counting only once etcd has answered, and
        // startup gets up to ten minutes. Asked every second, so that readiness (which waits for it) follows
        // a quick start at once.
        startup_probe: Some(http_probe("/livez", 1, 600)),
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        // etcd's last words when it exits, for the operator to tell a member that lost its data.
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        resources: tpl.resources.clone(),
        volume_mounts: Some(mounts),
        // Fit for a namespace that enforces the `restricted` Pod Security Standard: etcd writes only its data
        // directory.
        security_context: Some(locked_down()),
        ..Container::default()
    };
    Pod {
        metadata,
        spec: Some(PodSpec {
            hostname: Some(member.to_string()),
            subdomain: Some(cluster.clone()),
            containers: vec![container],
            volumes: Some(volumes),
            affinity: member_affinity(&cluster, tpl.affinity, tpl.topology_spread_constraints.as_deref()),
            tolerations: tpl.tolerations,
            node_selector: tpl.node_selector,
            topology_spread_constraints: tpl.topology_spread_constraints,
            priority_class_name: tpl.priority_class_name,
            enable_service_links: Some(false),
            // etcd needs nothing from the Kubernetes API.
            automount_service_account_token: Some(false),
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Node labels members spread over by default: each node, then each zone.
pub const SPREAD_TOPOLOGIES: [(&str, i32); 2] = [("kubernetes.io/hostname", 100), ("topology.kubernetes.io/zone", 50)];

/// The template's affinity, with members preferring nodes and zones that hold no other member of the cluster
/// unless the template says how members spread (a podAntiAffinity, or topology spread constraints). Preferred,
/// not required: a cluster larger than its nodes still schedules, and a member whose node is lost still finds
/// a place. The score counts members, so a fifth member over three zones goes to a zone holding one.
fn member_affinity(
    cluster: &str,
    affinity: Option<Affinity>,
    spread: Option<&[k8s_openapi::api::core::v1::TopologySpreadConstraint]>,
) -> Option<Affinity> {
    let spread_given = spread.is_some_and(|s| !s.is_empty());
    if spread_given || affinity.as_ref().is_some_and(|a| a.pod_anti_affinity.is_some()) {
        return affinity;
    }
    let prefer_apart = |(topology_key, weight): (&str, i32)| k8s_openapi::api::core::v1::WeightedPodAffinityTerm {
        weight,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(LABEL_CLUSTER.to_string(), cluster.to_string())])),
                ..LabelSelector::default()
            }),
            topology_key: topology_key.to_string(),
            ..PodAffinityTerm::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(
                SPREAD_TOPOLOGIES.into_iter().map(prefer_apart).collect(),
            ),
            ..PodAntiAffinity::default()
        }),
        ..affinity.unwrap_or_default()
    })
}

/// A container that writes only to its volumes: members' etcd, and the restore and drill pods' containers.
pub fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), add: None }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}

/// The member's user and group, which own the data volume (`fsGroup`, so a volume written by an earlier root
/// member stays readable): members' pods, and the restore and drill pods.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(MEMBER_UID),
        run_as_group: Some(MEMBER_UID),
        fs_group: Some(MEMBER_UID),
        fs_group_change_policy: Some("OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("512Mi"), Some(512 << 20));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("2G"), Some(2_000_000_000));
        assert_eq!(quantity_bytes("2e9"), Some(2_000_000_000));
        assert_eq!(quantity_bytes("1000"), Some(1000));
        assert_eq!(quantity_bytes("1Xi"), None);
        assert_eq!(quantity_bytes("-1Gi"), None);
        assert_eq!(quantity_bytes("Gi"), None);
    }

    #[test]
    fn the_quota_leaves_room_for_the_wal_and_a_defragmentation_copy() {
        for volume in [256 * MIB, 1024 * MIB, 4096 * MIB, 10 * 1024 * MIB, 100 * 1024 * MIB] {
            let quota = quota_for_volume(volume);
            assert!((MIN_QUOTA..=MAX_QUOTA).contains(&quota), "{volume}: {quota}");
            if volume >= WAL_AND_SNAPSHOTS + 2 * MIN_QUOTA {
                assert!(2 * quota + WAL_AND_SNAPSHOTS <= volume, "{volume} bytes hold the database twice and the WAL");
            }
        }
        assert_eq!(quota_for_volume(1024 * MIB), 320 * MIB, "the default 1Gi volume");
    }
}
