//! Observe: read one cluster's pods and PVCs from Kubernetes and ask etcd itself, through each member's pod
//! address, for its status and the member list. The result is complete or an error: the operator never plans
//! on a partial view.

use std::collections::{BTreeMap, BTreeSet};

use etcd_op_api::v1::{DataLossPolicy, EtcdCluster, MAX_SIZE, MIN_SIZE};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::error::Error;
use super::last_words::{current_termination, etcd_status, says_data_lost};
use super::model::{
    CertificateLife, EtcdMember, EtcdView, Member, MemberAlarm, MemberHealth, Observation, PodTrouble, PodView,
    PvcView, Target, Transport, TroubleKind, Version,
};
use super::plan::{ordinal_of, version_of_image};
use super::resources::{
    ANNOTATION_TEMPLATE_HASH, Bootstrap, CLIENT_PORT, InitialState, LABEL_MEMBER, claim_sizes, desired_volume,
    filesystem_resize_pending, folded_hash, member_of_peer_url, quota_of_pod, recorded_quota, schemes_of_pod,
    selector_string, template_hash,
};
use crate::etcd::{EndpointStatus, EtcdApi, MemberInfo};

/// Everything observed of one cluster: the planner's plain view, which the act and report stages read too,
/// and the volume claims, whose owner references follow the retention policy.
pub struct Observed {
    pub observation: Observation,
    pub pvcs: BTreeMap<String, PersistentVolumeClaim>,
}

/// `trust` is the fingerprint of what members trust (see [`folded_hash`]). While TLS is turned on for a running
/// cluster (`tls_change`), the members' template carries that too: the roll it starts gives every member the
/// certificates while it still speaks plaintext, the first of the change's stages.
pub fn desired_target(ec: &EtcdCluster, trust: &str, tls_change: Option<Transport>) -> Result<Target, Error> {
    let version = Version::parse(&ec.spec.version)
        .ok_or_else(|| Error::InvalidSpec(format!("spec.version {:?} is not MAJOR.MINOR.PATCH", ec.spec.version)))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&ec.spec.size) {
        return Err(Error::InvalidSpec(format!("spec.size {} is outside {MIN_SIZE}..={MAX_SIZE}", ec.spec.size)));
    }
    let size = usize::try_from(ec.spec.size).map_err(|_| Error::InvalidSpec("spec.size is negative".into()))?;
    let mut template_hash = folded_hash(&template_hash(ec), trust);
    if let Some(to) = tls_change {
        template_hash = folded_hash(&template_hash, &format!("turning TLS on: {}", to.as_str()));
    }
    Ok(Target { size, version, template_hash })
}

fn committed_target(ec: &EtcdCluster, desired: &Target) -> Option<Target> {
    let recorded = ec.status.as_ref()?.target.as_ref()?;
    Some(Target {
        size: usize::try_from(recorded.size).ok()?,
        version: Version::parse(&recorded.version)?,
        template_hash: desired.template_hash.clone(),
    })
}

/// The cluster's pods and volume claims, as Kubernetes lists them, and the transport they record.
pub struct Objects {
    pods: Vec<Pod>,
    pvcs: Vec<PersistentVolumeClaim>,
    /// Which ports the members speak TLS on (see [`Objects::recorded_transport`]).
    pub transport: Transport,
    /// The transport the cluster is turning TLS on for (see [`tls_change`]).
    pub tls_change: Option<Transport>,
}

pub async fn list_objects(ctx: &Context, ec: &EtcdCluster) -> Result<Objects, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let selector = ListParams::default().labels(&selector_string(&cluster));
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let (pods, pvcs) = futures::try_join!(pod_api.list(&selector), pvc_api.list(&selector))
        .map_err(|source| Error::KubeRead { what: format!("pods and PVCs of {namespace}/{cluster}"), source })?;
    let transport = Objects::recorded_transport(ec, &pods.items, &pvcs.items);
    let tls_change = tls_change(ec, transport);
    Ok(Objects { pods: pods.items, pvcs: pvcs.items, transport, tls_change })
}

/// Owned by an earlier EtcdCluster of this name (deleted, then created again): not this cluster's.
fn of_earlier_cluster(ec: &EtcdCluster, owners: &[OwnerReference]) -> bool {
    let uid = ec.uid();
    owners.iter().any(|o| o.kind == EtcdCluster::kind(&()) && Some(&o.uid) != uid.as_ref())
}

/// The ports the spec asks TLS for: both unless it says otherwise.
pub fn wanted_transport(ec: &EtcdCluster) -> Transport {
    ec.spec
        .tls
        .as_ref()
        .map_or(Transport::MUTUAL_TLS, |tls| Transport { peer_tls: tls.peer.enabled, client_tls: tls.client.enabled })
}

/// The transport a running cluster turns TLS on for: what its spec asks, when it adds TLS to what the members
/// record. Only a spec that names `tls` asks: clusters created before etcd-op managed TLS, which have none,
/// stay as they are. The API refuses turning TLS off and turning it on over emptyDir storage (a member's
/// restart would lose its data); a spec that slipped past it changes nothing.
pub fn tls_change(ec: &EtcdCluster, recorded: Transport) -> Option<Transport> {
    let wanted = wanted_transport(ec);
    let asked = ec.spec.tls.is_some() && ec.spec.storage.empty_dir.is_none();
    (asked && recorded.is_turned_on_by(wanted)).then_some(wanted)
}

impl Objects {
    /// Whether exactly `spec.size` member pods of this cluster run, ready and not on their way out, each
    /// carrying `template_hash`: a change of what members trust has reached every one of them.
    pub fn members_ready_on(&self, ec: &EtcdCluster, template_hash: &str) -> bool {
        let members: Vec<&Pod> = self
            .pods
            .iter()
            .filter(|p| owned_by(ec, p.owner_references()) && p.labels().contains_key(LABEL_MEMBER))
            .collect();
        let current = |p: &Pod| {
            p.metadata.deletion_timestamp.is_none()
                && p.annotations().get(ANNOTATION_TEMPLATE_HASH).map(String::as_str) == Some(template_hash)
                && ready_condition(p).is_some_and(|c| c.status == "True")
        };
        usize::try_from(ec.spec.size).is_ok_and(|size| members.len() == size) && members.iter().all(|p| current(p))
    }

    /// Which ports the members speak TLS on: as recorded with the members (their volumes, else their pods),
    /// or, for a cluster that has none, as its spec asks. A running cluster keeps what it was created with
    /// until TLS is turned on; a change recorded on some members only does not count until it is on all.
    fn recorded_transport(ec: &EtcdCluster, pods: &[Pod], pvcs: &[PersistentVolumeClaim]) -> Transport {
        let recorded = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            let owners = meta.owner_references.as_deref().unwrap_or_default();
            if of_earlier_cluster(ec, owners) {
                return None;
            }
            Bootstrap::recorded(meta.annotations.as_ref()?).map(|b| b.transport)
        };
        let on_all = |records: Vec<Transport>| records.into_iter().reduce(Transport::intersection);
        on_all(pvcs.iter().filter_map(|p| recorded(&p.metadata)).collect())
            .or_else(|| on_all(pods.iter().filter_map(|p| recorded(&p.metadata)).collect()))
            .unwrap_or_else(|| wanted_transport(ec))
    }
}

pub async fn observe(
    ctx: &Context,
    etcd: &dyn EtcdApi,
    ec: &EtcdCluster,
    objects: Objects,
    certificates: Vec<CertificateLife>,
    trust: &str,
) -> Result<Observed, Error> {
    let cluster = ec.name_any();
    let Objects { pods, pvcs, transport, tls_change } = objects;
    // Objects owned by an earlier EtcdCluster of this name (deleted, then created again) are not this
    // cluster's: they are on their way out, and using them would mix two clusters.
    let earlier = |owners: &[OwnerReference]| of_earlier_cluster(ec, owners);
    let leftovers: Vec<String> = pods
        .iter()
        .filter(|p| earlier(p.owner_references()))
        .map(|p| format!("pod {}", p.name_any()))
        .chain(pvcs.iter().filter(|p| earlier(p.owner_references())).map(|p| format!("PVC {}", p.name_any())))
        .collect();
    // A member's pod always carries this cluster's owner reference. A labelled pod without one was made by
    // someone else: it is never taken for a member, never asked for etcd's state, and it is reported.
    // Volumes may lack the reference on purpose (`Retain`), and are known by their recorded bootstrap.
    let ours = |owners: &[OwnerReference]| owned_by(ec, owners);
    let foreign_pods: Vec<String> = pods
        .iter()
        .filter(|p| !ours(p.owner_references()) && !earlier(p.owner_references()))
        .map(|p| p.name_any())
        .collect();
    let by_member = |labels: &BTreeMap<String, String>| labels.get(LABEL_MEMBER).cloned();
    let pods: BTreeMap<String, Pod> = pods
        .into_iter()
        .filter(|p| ours(p.owner_references()))
        .filter_map(|p| Some((by_member(p.labels())?, p)))
        .collect();
    let pvcs: BTreeMap<String, PersistentVolumeClaim> =
        pvcs.into_iter().filter_map(|p| Some((by_member(p.labels())?, p))).collect();

    let endpoints: BTreeMap<String, String> = pods
        .iter()
        .filter(|(_, p)| p.metadata.deletion_timestamp.is_none())
        .filter_map(|(name, p)| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?;
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
            // Asked in plaintext while it serves plaintext (TLS being turned on), else as it listens.
            let listens = schemes_of_pod(p);
            let scheme = if listens.client_plaintext {
                "http"
            } else if listens.client_tls {
                "https"
            } else {
                transport.client_scheme()
            };
            Some((name.clone(), format!("{scheme}://{host}:{CLIENT_PORT}")))
        })
        .collect();
    let answers =
        join_all(endpoints.iter().map(|(name, url)| async move { (name.clone(), etcd.status(url).await) })).await;
    let statuses: BTreeMap<String, EndpointStatus> =
        answers.into_iter().filter_map(|(name, answer)| Some((name, answer.ok()?))).collect();

    let Membership { view: etcd_view, members: etcd_members, leader, current: membership_is_current } =
        read_membership(etcd, &endpoints, &statuses).await?;

    // Every member reports the cluster's alarms among its errors; which member each is for, and what it is,
    // the alarm list says. It is asked only when something is reported, and only through a leader (etcd
    // serves it through raft).
    let alarms = match (&etcd_view, leader.as_ref().and_then(|l| endpoints.get(l))) {
        (EtcdView::Reachable { .. }, Some(endpoint)) if statuses.values().any(|s| !s.errors.is_empty()) => {
            etcd.alarms(endpoint).await.map_err(|e| {
                Error::IncompleteObservation(format!("members report errors, but the alarm list did not come: {e}"))
            })?
        }
        _ => Vec::new(),
    };
    // A member down without saying why in its termination message: its log may (a panic's trace is long).
    let unexplained = pods.iter().filter(|(_, p)| {
        let said = etcd_status(p).and_then(current_termination).and_then(|t| t.message.as_deref());
        !said.is_some_and(says_data_lost)
    });
    let lost_by_log: BTreeSet<String> = join_all(unexplained.map(|(name, p)| async move {
        ctx.last_words.data_lost(&ctx.client, p).await.filter(|lost| *lost).map(|_| name.clone())
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    // Members not running whose volume may have gone with its node.
    let stopped = pvcs.iter().filter(|(name, claim)| {
        claim.metadata.deletion_timestamp.is_none()
            && pods.get(*name).is_none_or(|p| ready_condition(p).is_none_or(|c| c.status != "True"))
    });
    let stranded: BTreeMap<String, String> = join_all(
        stopped.map(|(name, claim)| async move { Some((name.clone(), stranded_on(&ctx.client, claim).await?)) }),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let desired = desired_target(ec, trust, tls_change)?;
    // The StorageClass is looked up only while a volume is wanted or waits to be provisioned: a quiet cluster
    // costs no API call for it.
    let volumes_wanted = pvcs.len() < desired.size
        || pvcs.values().any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"));
    let now = Timestamp::now();
    let mut names: BTreeSet<String> = pods.keys().chain(pvcs.keys()).cloned().collect();
    let member_names: Vec<(String, &MemberInfo)> = etcd_members
        .iter()
        .filter_map(|m| {
            let name = if m.name.is_empty() { member_of_peer_url(m.peer_urls.first()?)? } else { &m.name };
            Some((name.to_string(), m))
        })
        .collect();
    names.extend(member_names.iter().map(|(n, _)| n.clone()));

    let members: Vec<Member> = names
        .into_iter()
        .filter_map(|name| {
            let ordinal = ordinal_of(&cluster, &name)?;
            let etcd = member_names.iter().find(|(n, _)| *n == name).map(|(_, m)| EtcdMember {
                id: m.id,
                learner: m.is_learner,
                peer_urls: m.peer_urls.clone(),
                client_urls: m.client_urls.clone(),
                health: statuses.get(&name).filter(|s| s.member_id == m.id).map(|s| MemberHealth {
                    cluster_id: s.cluster_id,
                    raft_applied_index: s.raft_applied_index,
                    version: Version::parse(&s.version),
                    has_errors: !s.errors.is_empty(),
                    db_size_bytes: s.db_size,
                    db_size_in_use_bytes: s.db_size_in_use,
                    revision: s.revision,
                }),
            });
            Some(Member {
                ordinal,
                pod: pods.get(&name).map(|p| pod_view(p, now, lost_by_log.contains(&name), endpoints.get(&name))),
                pvc: pvcs.get(&name).map(|p| {
                    let (requested_bytes, capacity_bytes) = claim_sizes(p);
                    PvcView {
                        terminating: p.metadata.deletion_timestamp.is_some(),
                        quota_bytes: recorded_quota(p),
                        requested_bytes,
                        capacity_bytes,
                        filesystem_resize_pending: filesystem_resize_pending(p),
                        stranded_on: stranded.get(&name).cloned(),
                    }
                }),
                etcd,
                bootstrap: recorded_bootstrap(&pvcs, &pods, &name),
                defragmented_secs_ago: super::maintenance::defragmented_secs_ago(ec, &name, now),
                name,
            })
        })
        .collect();

    let alarms = alarms
        .into_iter()
        .map(|(id, alarm)| MemberAlarm {
            member: member_names.iter().find(|(_, m)| m.id == id).map_or_else(|| format!("{id:x}"), |(n, _)| n.clone()),
            alarm,
        })
        .collect();

    // A static initial cluster is recorded, with state `new`, on each member created with it.
    let initial_members = members
        .iter()
        .filter_map(|m| m.bootstrap.as_ref())
        .find(|b| b.state == InitialState::New)
        .map(Bootstrap::member_names)
        .unwrap_or_default();
    let super::own_backups::OwnBackups { quorum_loss, recovery, upgrade_backups } =
        super::own_backups::observe(ctx, ec).await?;
    let restore = super::restore::observe(ctx, ec, &pvcs, recovery.as_ref()).await?;
    let volume = desired_volume(ec);
    let observation = Observation {
        cluster,
        committed: committed_target(ec, &desired),
        desired,
        paused: ec.spec.paused,
        // A recovery makes a new cluster: until it forms, nothing of the lost one counts as formed.
        formed: recovery.is_none() && ec.status.as_ref().is_some_and(|s| s.cluster_id.is_some()),
        initial_members,
        leftovers,
        foreign_pods,
        ephemeral_storage: ec.spec.storage.empty_dir.is_some(),
        start_empty_after_data_loss: ec.spec.on_data_loss == DataLossPolicy::StartEmpty,
        members,
        etcd: etcd_view,
        membership_is_current,
        membership_refused_for_secs: ctx.refused_for(&super::act::refusal_key(ec)).as_secs(),
        unhealthy_threshold_secs: ec
            .spec
            .member_unhealthy_threshold_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(ctx.config.unhealthy_threshold.as_secs()),
        alarms,
        missing_storage_class: if volumes_wanted { missing_storage_class(ctx, ec).await? } else { None },
        transport,
        tls_change,
        certificates,
        restore,
        quorum_loss,
        recovery,
        upgrade_backups,
        maintenance: super::maintenance::observe(ec, now),
        volume_expansion_allowed: match &volume {
            Some(volume) => volume_expansion_allowed(ctx, &pvcs, volume.bytes).await?,
            None => None,
        },
        volume,
    };
    Ok(Observed { observation, pvcs })
}

/// Whether the StorageClass of the claims smaller than `bytes` lets them grow; `None` when none is smaller, so
/// a cluster whose volumes have their size costs no lookup.
async fn volume_expansion_allowed(
    ctx: &Context,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
    bytes: u64,
) -> Result<Option<bool>, Error> {
    let Some(small) = pvcs.values().find(|p| claim_sizes(p).0.is_some_and(|r| r < bytes)) else {
        return Ok(None);
    };
    let Some(class) = small.spec.as_ref().and_then(|s| s.storage_class_name.clone()) else {
        return Ok(Some(false));
    };
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let found = classes
        .get_opt(&class)
        .await
        .map_err(|source| Error::KubeRead { what: format!("StorageClass {class}"), source })?;
    Ok(Some(found.is_some_and(|c| c.allow_volume_expansion == Some(true))))
}

/// The StorageClass the members' volume claims name, when it does not exist. emptyDir storage needs none.
async fn missing_storage_class(ctx: &Context, ec: &EtcdCluster) -> Result<Option<String>, Error> {
    if ec.spec.storage.empty_dir.is_some() {
        return Ok(None);
    }
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    // Without a named class, a claim may still bind to a volume made for it by hand: only a named class that
    // does not exist is certain to leave the members without volumes.
    let Some(name) = ec.spec.storage.volume_claim_template.as_ref().and_then(|t| t.storage_class_name.clone()) else {
        return Ok(None);
    };
    let missing = classes
        .get_opt(&name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("StorageClass {name}"), source })?
        .is_none();
    Ok(missing.then_some(name))
}

fn recorded_bootstrap(
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
    pods: &BTreeMap<String, Pod>,
    member: &str,
) -> Option<Bootstrap> {
    let from_pvc = pvcs.get(member).and_then(|p| Bootstrap::recorded(p.annotations()));
    from_pvc.or_else(|| pods.get(member).and_then(|p| Bootstrap::recorded(p.annotations())))
}

#[derive(Debug)]
pub struct Membership {
    pub view: EtcdView,
    pub members: Vec<MemberInfo>,
    /// The member that answered as the leader.
    pub leader: Option<String>,
    /// The list came from the leader, or from a linearizable read through a follower.
    pub current: bool,
}

/// The member list, from the leader when it answered, else from any voter that did: after a linearizable
/// read (which etcd serves only through a leader) and, failing that, as that member's own view. Members
/// that answered but disagree about the cluster ID are left to the planner (they count as unhealthy).
pub async fn read_membership(
    etcd: &dyn EtcdApi,
    endpoints: &BTreeMap<String, String>,
    statuses: &BTreeMap<String, EndpointStatus>,
) -> Result<Membership, Error> {
    let unreachable = Membership { view: EtcdView::Unreachable, members: Vec::new(), leader: None, current: false };
    let leader = statuses.iter().find(|(_, s)| s.leader_id != 0 && s.leader_id == s.member_id).map(|(n, _)| n.clone());
    let source = leader.clone().or_else(|| statuses.iter().find(|(_, s)| !s.is_learner).map(|(n, _)| n.clone()));
    let Some(source) = source else {
        return Ok(unreachable);
    };
    let (Some(endpoint), Some(status)) = (endpoints.get(&source), statuses.get(&source)) else {
        return Ok(unreachable);
    };
    let incomplete =
        |e| Error::IncompleteObservation(format!("member {source} answered its status but not the member list: {e}"));
    let (members, current) = if status.leader_id != 0 {
        // Someone leads: a linearizable read confirms it still does (a leader cut off from the others may not
        // know yet) and brings the source up to date.
        match etcd.member_list_linearizable(endpoint).await {
            Ok(members) => (members, true),
            Err(_) => (etcd.member_list(endpoint).await.map_err(incomplete)?, false),
        }
    } else {
        // Nobody leads: a linearizable read could only time out.
        (etcd.member_list(endpoint).await.map_err(incomplete)?, false)
    };
    let leader_id = (status.leader_id != 0).then_some(status.leader_id);
    Ok(Membership { view: EtcdView::Reachable { cluster_id: status.cluster_id, leader_id }, members, leader, current })
}

/// What Kubernetes says keeps the pod from running etcd: the scheduler's refusal, or the reason the etcd
/// container waits.
fn pod_trouble(pod: &Pod, etcd: Option<&ContainerStatus>) -> Option<PodTrouble> {
    let unschedulable = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
        .filter(|c| c.reason.as_deref() == Some("Unschedulable"));
    if let Some(condition) = unschedulable {
        return Some(PodTrouble {
            kind: TroubleKind::Unschedulable,
            message: condition.message.clone().unwrap_or_default(),
        });
    }
    let waiting = etcd?.state.as_ref()?.waiting.as_ref()?;
    let kind = match waiting.reason.as_deref()? {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => TroubleKind::ImagePull,
        "CrashLoopBackOff" => TroubleKind::CrashLoop,
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => TroubleKind::ContainerConfig,
        _ => return None,
    };
    let message = match kind {
        // etcd's own last words say more than "back-off restarting failed container".
        TroubleKind::CrashLoop => etcd.and_then(current_termination).and_then(|t| t.message.as_deref()).map(last_words),
        _ => None,
    };
    Some(PodTrouble { kind, message: message.or_else(|| waiting.message.clone()).unwrap_or_default() })
}

/// The end of a termination message, where etcd says why it stopped: a status line has no room for a
/// stack trace.
fn last_words(message: &str) -> String {
    let line = message.lines().rev().find(|l| l.contains("\"level\":\"fatal\"") || l.contains("\"level\":\"panic\""));
    let text = line.unwrap_or(message).trim();
    let start = text.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
    text[start..].to_string()
}

/// The node a claim's volume is bound to, when the volume can live on that node alone (its node affinity
/// names one host, as local volumes do) and that node no longer exists. Anything not known for sure (no
/// volume yet, no permission to read volumes or nodes, an API error) is `None`: the member is then left to
/// the unhealthy threshold.
async fn stranded_on(client: &kube::Client, claim: &PersistentVolumeClaim) -> Option<String> {
    use k8s_openapi::api::core::v1::{Node, PersistentVolume};
    let volume = claim.spec.as_ref()?.volume_name.as_deref()?;
    let pv = kube::Api::<PersistentVolume>::all(client.clone()).get_opt(volume).await.ok()??;
    let terms = pv.spec?.node_affinity?.required?.node_selector_terms;
    let [term] = terms.as_slice() else { return None };
    let hosts: Vec<&String> = term
        .match_expressions
        .iter()
        .flatten()
        .filter(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
        .flat_map(|e| e.values.iter().flatten())
        .collect();
    let [node] = hosts.as_slice() else { return None };
    match kube::Api::<Node>::all(client.clone()).get_opt(node).await {
        Ok(None) => Some(node.to_string()),
        _ => None,
    }
}

/// The pod's Ready condition, as the kubelet reports it (etcd's /readyz).
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Owned by this cluster (not by an earlier cluster of the same name, nor by someone else).
fn owned_by(ec: &EtcdCluster, owners: &[OwnerReference]) -> bool {
    let uid = ec.uid();
    owners.iter().any(|o| o.kind == EtcdCluster::kind(&()) && Some(&o.uid) == uid.as_ref())
}

fn pod_view(pod: &Pod, now: Timestamp, said_in_log: bool, endpoint: Option<&String>) -> PodView {
    let ready_condition = ready_condition(pod);
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    let since = ready_condition
        .and_then(|c| c.last_transition_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0);
    let not_ready_for_secs = match (ready, since) {
        (true, _) => 0,
        (false, Some(since)) => u64::try_from(now.as_second().saturating_sub(since.as_second())).unwrap_or(0),
        (false, None) => 0,
    };
    let image =
        pod.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == "etcd")).and_then(|c| c.image.as_deref());
    let etcd = etcd_status(pod);
    let said_at_exit =
        etcd.and_then(current_termination).and_then(|t| t.message.as_deref()).is_some_and(says_data_lost);
    let lost_data = said_at_exit || said_in_log;
    let schemes = schemes_of_pod(pod);
    PodView {
        ready,
        trouble: if ready { None } else { pod_trouble(pod, etcd) },
        lost_data,
        first_start: etcd.is_some_and(|c| {
            c.restart_count == 0 && c.started == Some(false) && c.state.as_ref().is_some_and(|s| s.running.is_some())
        }),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        terminating_for_secs: pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .and_then(|t| u64::try_from(now.as_second().saturating_sub(t.0.as_second())).ok())
            .unwrap_or(0),
        version: image.and_then(version_of_image),
        template_hash: pod.annotations().get(ANNOTATION_TEMPLATE_HASH).cloned().unwrap_or_default(),
        not_ready_for_secs,
        endpoint: endpoint.cloned(),
        quota_bytes: quota_of_pod(pod),
        restarts: etcd.map_or(0, |c| u32::try_from(c.restart_count).unwrap_or(0)),
        peer_tls: schemes.peer_tls,
        client_plaintext: schemes.client_plaintext,
    }
}
