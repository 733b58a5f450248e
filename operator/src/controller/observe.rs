//! Observe: read one cluster's pods and PVCs from Kubernetes and ask etcd itself, through each member's pod
//! address, for its status and the member list. The result is complete or an error: the operator never plans
//! on a partial view.

use std::collections::{BTreeMap, BTreeSet};

use etcd_op_api::v1::{EtcdCluster, MAX_SIZE, MIN_SIZE};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::error::Error;
use super::model::{EtcdMember, EtcdView, Member, MemberHealth, Observation, PodView, PvcView, Target, Version};
use super::plan::{ordinal_of, version_of_image};
use super::resources::{
    ANNOTATION_TEMPLATE_HASH, Bootstrap, CLIENT_PORT, InitialState, LABEL_MEMBER, member_of_peer_url, selector_string,
    template_hash,
};
use crate::etcd::{EndpointStatus, MemberInfo};

/// Everything observed of one cluster: the planner's plain view plus the raw objects the act and report
/// stages need.
pub struct Observed {
    pub observation: Observation,
    pub pods: BTreeMap<String, Pod>,
    pub pvcs: BTreeMap<String, PersistentVolumeClaim>,
    pub etcd_members: Vec<MemberInfo>,
    pub statuses: BTreeMap<String, EndpointStatus>,
    /// Client endpoint (pod IP) of each member whose pod has an address.
    pub endpoints: BTreeMap<String, String>,
    pub leader: Option<String>,
}

impl Observed {
    /// How a member was first started, as recorded on its PVC or, with emptyDir storage, its pod.
    pub fn recorded_bootstrap(&self, member: &str) -> Option<Bootstrap> {
        recorded_bootstrap(&self.pvcs, &self.pods, member)
    }

    /// Endpoint of the leader, where membership changes are sent.
    pub fn leader_endpoint(&self) -> Option<&str> {
        self.endpoints.get(self.leader.as_ref()?).map(String::as_str)
    }
}

pub fn desired_target(ec: &EtcdCluster) -> Result<Target, Error> {
    let version = Version::parse(&ec.spec.version)
        .ok_or_else(|| Error::InvalidSpec(format!("spec.version {:?} is not MAJOR.MINOR.PATCH", ec.spec.version)))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&ec.spec.size) {
        return Err(Error::InvalidSpec(format!("spec.size {} is outside {MIN_SIZE}..={MAX_SIZE}", ec.spec.size)));
    }
    let size = usize::try_from(ec.spec.size).map_err(|_| Error::InvalidSpec("spec.size is negative".into()))?;
    Ok(Target { size, version, template_hash: template_hash(ec) })
}

fn committed_target(ec: &EtcdCluster, desired: &Target) -> Option<Target> {
    let recorded = ec.status.as_ref()?.target.as_ref()?;
    Some(Target {
        size: usize::try_from(recorded.size).ok()?,
        version: Version::parse(&recorded.version)?,
        template_hash: desired.template_hash.clone(),
    })
}

pub async fn observe(ctx: &Context, ec: &EtcdCluster) -> Result<Observed, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let selector = ListParams::default().labels(&selector_string(&cluster));
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let (pods, pvcs) = futures::try_join!(pod_api.list(&selector), pvc_api.list(&selector))
        .map_err(|source| Error::KubeRead { what: format!("pods and PVCs of {namespace}/{cluster}"), source })?;
    // Objects owned by an earlier EtcdCluster of this name (deleted, then created again) are not this
    // cluster's: they are on their way out, and using them would mix two clusters.
    let uid = ec.uid();
    let earlier = |owners: &[OwnerReference]| {
        owners.iter().any(|o| o.kind == EtcdCluster::kind(&()) && Some(&o.uid) != uid.as_ref())
    };
    let leftovers: Vec<String> = pods
        .items
        .iter()
        .filter(|p| earlier(p.owner_references()))
        .map(|p| format!("pod {}", p.name_any()))
        .chain(pvcs.items.iter().filter(|p| earlier(p.owner_references())).map(|p| format!("PVC {}", p.name_any())))
        .collect();
    let by_member = |labels: &BTreeMap<String, String>| labels.get(LABEL_MEMBER).cloned();
    let pods: BTreeMap<String, Pod> =
        pods.items.into_iter().filter_map(|p| Some((by_member(p.labels())?, p))).collect();
    let pvcs: BTreeMap<String, PersistentVolumeClaim> =
        pvcs.items.into_iter().filter_map(|p| Some((by_member(p.labels())?, p))).collect();

    let endpoints: BTreeMap<String, String> = pods
        .iter()
        .filter(|(_, p)| p.metadata.deletion_timestamp.is_none())
        .filter_map(|(name, p)| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?;
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
            Some((name.clone(), format!("http://{host}:{CLIENT_PORT}")))
        })
        .collect();
    let answers =
        join_all(endpoints.iter().map(|(name, url)| async move { (name.clone(), ctx.etcd.status(url).await) })).await;
    let statuses: BTreeMap<String, EndpointStatus> =
        answers.into_iter().filter_map(|(name, answer)| Some((name, answer.ok()?))).collect();

    let (etcd_view, etcd_members, leader) = read_membership(ctx, &endpoints, &statuses).await?;

    let desired = desired_target(ec)?;
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

    let members = names
        .into_iter()
        .filter_map(|name| {
            let ordinal = ordinal_of(&cluster, &name)?;
            let etcd = member_names.iter().find(|(n, _)| *n == name).map(|(_, m)| EtcdMember {
                id: m.id,
                learner: m.is_learner,
                started: !m.client_urls.is_empty(),
                health: statuses.get(&name).filter(|s| s.member_id == m.id).map(|s| MemberHealth {
                    cluster_id: s.cluster_id,
                    raft_applied_index: s.raft_applied_index,
                    version: Version::parse(&s.version),
                    has_errors: !s.errors.is_empty(),
                }),
            });
            Some(Member {
                ordinal,
                pod: pods.get(&name).map(|p| pod_view(p, now)),
                pvc: pvcs.get(&name).map(|p| PvcView { terminating: p.metadata.deletion_timestamp.is_some() }),
                etcd,
                name,
            })
        })
        .collect();

    // A static initial cluster is recorded, with state `new`, on each member created with it.
    let initial_members = pvcs
        .keys()
        .chain(pods.keys())
        .filter_map(|name| recorded_bootstrap(&pvcs, &pods, name))
        .find(|b| b.state == InitialState::New)
        .map(|b| b.member_names())
        .unwrap_or_default();
    let observation = Observation {
        cluster,
        committed: committed_target(ec, &desired),
        desired,
        paused: ec.spec.paused,
        formed: ec.status.as_ref().is_some_and(|s| s.cluster_id.is_some()),
        initial_members,
        leftovers,
        ephemeral_storage: ec.spec.storage.empty_dir.is_some(),
        members,
        etcd: etcd_view,
        unhealthy_threshold_secs: ctx.config.unhealthy_threshold.as_secs(),
    };
    Ok(Observed { observation, pods, pvcs, etcd_members, statuses, endpoints, leader })
}

fn recorded_bootstrap(
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
    pods: &BTreeMap<String, Pod>,
    member: &str,
) -> Option<Bootstrap> {
    let from_pvc = pvcs.get(member).and_then(|p| Bootstrap::recorded(p.annotations()));
    from_pvc.or_else(|| pods.get(member).and_then(|p| Bootstrap::recorded(p.annotations())))
}

/// The member list, from the leader when it answered, else from any voter that did. Members that answered
/// but disagree about the cluster ID are left to the planner (they count as unhealthy).
async fn read_membership(
    ctx: &Context,
    endpoints: &BTreeMap<String, String>,
    statuses: &BTreeMap<String, EndpointStatus>,
) -> Result<(EtcdView, Vec<MemberInfo>, Option<String>), Error> {
    let leader = statuses.iter().find(|(_, s)| s.leader_id != 0 && s.leader_id == s.member_id).map(|(n, _)| n.clone());
    let source = leader.clone().or_else(|| statuses.iter().find(|(_, s)| !s.is_learner).map(|(n, _)| n.clone()));
    let Some(source) = source else {
        return Ok((EtcdView::Unreachable, Vec::new(), None));
    };
    let (Some(endpoint), Some(status)) = (endpoints.get(&source), statuses.get(&source)) else {
        return Ok((EtcdView::Unreachable, Vec::new(), None));
    };
    let members = ctx.etcd.member_list(endpoint).await.map_err(|e| {
        Error::IncompleteObservation(format!("member {source} answered its status but not the member list: {e}"))
    })?;
    let leader_id = (status.leader_id != 0).then_some(status.leader_id);
    Ok((EtcdView::Reachable { cluster_id: status.cluster_id, leader_id }, members, leader))
}

/// What etcd says when it exits because its data is gone: it was emptied after the member had joined (a
/// member started with `--initial-cluster-state=new` finds itself already bootstrapped; one that joined later
/// finds its log behind the commit index the leader sends).
const DATA_LOST: [&str; 2] = ["has already been bootstrapped", "Was the raft log corrupted, truncated, or lost?"];

fn pod_view(pod: &Pod, now: Timestamp) -> PodView {
    let status = pod.status.as_ref();
    let ready_condition =
        status.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
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
    let etcd_status =
        status.and_then(|s| s.container_statuses.as_ref()).and_then(|cs| cs.iter().find(|c| c.name == "etcd"));
    let mut last_words = etcd_status
        .into_iter()
        .flat_map(|c| [c.state.as_ref(), c.last_state.as_ref()])
        .flatten()
        .filter_map(|s| s.terminated.as_ref()?.message.as_deref());
    let lost_data = last_words.any(|m| DATA_LOST.iter().any(|sign| m.contains(sign)));
    PodView {
        ready,
        lost_data,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        version: image.and_then(version_of_image),
        template_hash: pod.annotations().get(ANNOTATION_TEMPLATE_HASH).cloned().unwrap_or_default(),
        not_ready_for_secs,
    }
}
