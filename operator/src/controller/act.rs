//! Act: carry out one step of the plan. Every step is idempotent, so a step repeated after an operator
//! restart finds its work done and changes nothing.

use etcd_op_api::v1::EtcdCluster;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::error::Error;
use super::maintenance::MaintenanceRecord;
use super::model::{Observation, Transport};
use super::plan::{Plan, Step};
use super::resources::{
    ANNOTATION_QUOTA, ANNOTATION_TLS, Bootstrap, InitialState, legacy_token, member_pod, member_pvc, peer_url,
    quota_backend_bytes,
};
use crate::etcd::EtcdApi;

/// `etcd` reaches this cluster's members (over TLS when their client port speaks it). Returns what the step
/// leaves on record in status.
pub async fn act(
    ctx: &Context,
    etcd: &dyn EtcdApi,
    ec: &EtcdCluster,
    obs: &Observation,
    plan: &Plan,
) -> Result<MaintenanceRecord, Error> {
    match &plan.step {
        Step::Defragment { name, reason } => {
            let size_after = super::maintenance::defragment(etcd, obs, name).await?;
            Ok(MaintenanceRecord::defragmentation(obs, name, *reason, size_after))
        }
        Step::Compact { revision } => {
            etcd.compact(leader_endpoint(obs, "compact")?, *revision).await?;
            Ok(MaintenanceRecord::compaction(*revision))
        }
        Step::DisarmNoSpace => {
            etcd.disarm_no_space(leader_endpoint(obs, "disarm NOSPACE")?).await?;
            Ok(MaintenanceRecord::default())
        }
        _ => change(ctx, etcd, ec, obs, plan).await.map(|()| MaintenanceRecord::default()),
    }
}

/// The steps that change members or their objects, and leave nothing on record.
async fn change(
    ctx: &Context,
    etcd: &dyn EtcdApi,
    ec: &EtcdCluster,
    obs: &Observation,
    plan: &Plan,
) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let version = plan.target.version;
    let transport = obs.transport;
    match &plan.step {
        Step::Nothing | Step::Wait | Step::Defragment { .. } | Step::Compact { .. } | Step::DisarmNoSpace => Ok(()),
        Step::BootstrapMembers { members } => {
            let bootstrap = initial_bootstrap(ec, obs, members);
            for (made, name) in members.iter().filter(|name| !obs.is_created(name)).enumerate() {
                if made > 0 {
                    crash_point("mid-bootstrap", ec);
                }
                if let Some(restore) = &obs.restore {
                    super::restore::finish_member(ctx, &namespace, name, restore).await?;
                }
                create_member(ctx, ec, obs, name, version, &bootstrap).await?;
            }
            Ok(())
        }
        Step::RestoreMembers { members } => {
            let Some(restore) = &obs.restore else {
                return Err(Error::StepNotPossible {
                    step: "RestoreMembers",
                    why: "the cluster restores nothing".into(),
                });
            };
            let bootstrap = initial_bootstrap(ec, obs, members);
            let image = ctx.config.operator_image.as_deref().ok_or_else(|| Error::StepNotPossible {
                step: "RestoreMembers",
                why: "the operator does not know its own image, which fetches the snapshot: set --restore-image".into(),
            })?;
            super::restore::start(ctx, ec, members, version, &bootstrap, restore, image, transport).await
        }
        Step::AddLearner { name } => {
            let leader = leader_endpoint(obs, "add a learner")?;
            let url = peer_url(&cluster, &namespace, name, transport);
            membership_change(ctx, ec, "AddLearner", etcd.add_learner(leader, &url)).await?;
            crash_point("after-member-add", ec);
            let bootstrap = joining_bootstrap(obs, &cluster, &namespace, name);
            create_member(ctx, ec, obs, name, version, &bootstrap).await
        }
        Step::CreateMemberPod { name } => {
            let bootstrap = obs
                .member(name)
                .and_then(|m| m.bootstrap.clone())
                .unwrap_or_else(|| joining_bootstrap(obs, &cluster, &namespace, name));
            create_member(ctx, ec, obs, name, version, &bootstrap).await
        }
        Step::PromoteLearner { id, .. } => {
            let leader = leader_endpoint(obs, "promote a learner")?;
            membership_change(ctx, ec, "PromoteLearner", etcd.promote(leader, *id)).await
        }
        Step::MoveLeader { to_id, .. } => {
            etcd.move_leader(leader_endpoint(obs, "move leadership")?, *to_id).await?;
            // A new leader dials its peers afresh: refusals before it say nothing about it.
            ctx.forget_refusal(&refusal_key(ec));
            Ok(())
        }
        Step::RemoveMember { id, .. } => {
            let leader = leader_endpoint(obs, "remove a member")?;
            membership_change(ctx, ec, "RemoveMember", etcd.remove(leader, *id)).await
        }
        Step::DeleteMemberResources { name } => {
            // No longer a member: nothing of its etcd is worth a graceful stop. At once, too, because a pod on a
            // lost node is otherwise never confirmed gone, and its volume is held until it is.
            delete_with::<Pod>(ctx, &namespace, name, &DeleteParams::default().grace_period(0)).await?;
            delete_if_present::<PersistentVolumeClaim>(ctx, &namespace, name).await
        }
        Step::RestartMember { name } => delete_if_present::<Pod>(ctx, &namespace, name).await,
        Step::SecurePeerUrl { name, id } => {
            let leader = leader_endpoint(obs, "move a peer URL to https")?;
            let url = peer_url(&cluster, &namespace, name, Transport { peer_tls: true, client_tls: false });
            membership_change(ctx, ec, "SecurePeerUrl", etcd.update_peer_url(leader, *id, &url)).await?;
            // Its peers now dial it over TLS, which it does not serve until it restarts (the planner restarts
            // it on its own if the operator stops here).
            crash_point("after-peer-url-update", ec);
            delete_if_present::<Pod>(ctx, &namespace, name).await
        }
        // The recovery is recorded by the status this step's report writes.
        Step::BeginRecovery { .. } => Ok(()),
        Step::CopySurvivors { members } => super::recovery::copy_survivors(ctx, ec, members).await,
        Step::ClearForRecovery { members } => super::recovery::clear(ctx, ec, members).await,
        Step::BackUpBeforeUpgrade { backup } => {
            super::own_backups::back_up_before_upgrade(ctx, ec, backup, (version.major, version.minor)).await
        }
        Step::ExpandVolume { name, quantity, quota_bytes } => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = Patch::Merge(serde_json::json!({
                "metadata": { "annotations": { ANNOTATION_QUOTA: quota_bytes.to_string() } },
                "spec": { "resources": { "requests": { "storage": quantity } } }
            }));
            api.patch(name, &PatchParams::default(), &patch).await.map_err(|source| Error::KubeWrite {
                what: format!("grow PersistentVolumeClaim {name} to {quantity}"),
                source,
            })?;
            Ok(())
        }
        Step::RecordTransport { transport } => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = Patch::Merge(serde_json::json!({
                "metadata": { "annotations": { ANNOTATION_TLS: transport.as_str() } }
            }));
            for m in obs.members.iter().filter(|m| m.pvc.is_some()) {
                api.patch(&m.name, &PatchParams::default(), &patch).await.map_err(|source| Error::KubeWrite {
                    what: format!("record TLS on PersistentVolumeClaim {}", m.name),
                    source,
                })?;
            }
            Ok(())
        }
    }
}

/// A place where a test build can stop the operator dead, as a crash would, for one cluster: the failpoint
/// `name` set to `return(<namespace>/<cluster>)` (for example through the FAILPOINTS variable) aborts the
/// process when it is reached for that cluster. Without the `failpoints` feature it is nothing.
#[cfg(feature = "failpoints")]
fn crash_point(name: &str, ec: &EtcdCluster) {
    if fail::eval(name, |cluster| cluster).flatten().is_some_and(|cluster| cluster == refusal_key(ec)) {
        tracing::error!(failpoint = name, cluster = %refusal_key(ec), "failpoint reached: stopping the process");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
fn crash_point(_name: &str, _ec: &EtcdCluster) {}

/// etcd's word for refusing a membership change while its leader counts too few peers as connected.
const UNHEALTHY_CLUSTER: &str = "unhealthy cluster";

pub fn refusal_key(ec: &EtcdCluster) -> String {
    format!("{}/{}", ec.namespace().unwrap_or_default(), ec.name_any())
}

/// Runs a membership change and keeps the clock of an episode of "unhealthy cluster" refusals, which the
/// planner reads to decide when the leader's view of its peers is stale.
async fn membership_change<T>(
    ctx: &Context,
    ec: &EtcdCluster,
    step: &'static str,
    change: impl Future<Output = Result<T, crate::etcd::EtcdError>>,
) -> Result<(), Error> {
    match change.await {
        Ok(_) => {
            ctx.forget_refusal(&refusal_key(ec));
            Ok(())
        }
        Err(refusal) => {
            let error = Error::from_membership_change(step, refusal);
            if error.to_string().contains(UNHEALTHY_CLUSTER) {
                ctx.note_refusal(&refusal_key(ec));
            }
            Err(error)
        }
    }
}

fn leader_endpoint<'a>(obs: &'a Observation, step: &'static str) -> Result<&'a str, Error> {
    obs.leader_endpoint()
        .ok_or_else(|| Error::StepNotPossible { step, why: "the leader did not answer at its pod's address".into() })
}

/// The static initial cluster of a new cluster. A bootstrap cut short is finished with the token its first
/// members were created with; a new one gets a token of its own, so no volume of another cluster can join.
fn initial_bootstrap(ec: &EtcdCluster, obs: &Observation, members: &[String]) -> Bootstrap {
    let (cluster, namespace) = (ec.name_any(), ec.namespace().unwrap_or_default());
    let peers: Vec<String> =
        members.iter().map(|name| format!("{name}={}", peer_url(&cluster, &namespace, name, obs.transport))).collect();
    let started = members.iter().find_map(|name| obs.member(name)?.bootstrap.clone());
    let token = match (&obs.recovery, started) {
        (Some(recovery), _) => Some(recovery.token.clone()),
        (None, Some(recorded)) => recorded.token,
        (None, None) => Some(format!("{}-{}", legacy_token(ec), k8s_openapi::jiff::Timestamp::now().as_second())),
    };
    Bootstrap { initial_cluster: peers.join(","), state: InitialState::New, token, transport: obs.transport }
}

/// A member joining a running cluster starts with every current member plus itself.
fn joining_bootstrap(obs: &Observation, cluster: &str, namespace: &str, name: &str) -> Bootstrap {
    let mut peers: Vec<String> = obs
        .members
        .iter()
        .filter(|m| m.name != name)
        .filter_map(|m| Some(format!("{}={}", m.name, m.etcd.as_ref()?.peer_urls.first()?)))
        .collect();
    peers.push(format!("{name}={}", peer_url(cluster, namespace, name, obs.transport)));
    peers.sort();
    Bootstrap { initial_cluster: peers.join(","), state: InitialState::Existing, token: None, transport: obs.transport }
}

/// Creates the member's PVC (unless it uses emptyDir) and pod; either may already exist.
async fn create_member(
    ctx: &Context,
    ec: &EtcdCluster,
    obs: &Observation,
    name: &str,
    version: super::model::Version,
    bootstrap: &Bootstrap,
) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    // A member's quota is its volume's: recorded when the volume was made, and computed now for a new one.
    let quota = match obs.member(name).and_then(|m| m.pvc.as_ref()) {
        Some(pvc) => pvc.quota_bytes,
        None => quota_backend_bytes(ec),
    };
    if ec.spec.storage.empty_dir.is_none() {
        create_if_absent(ctx, &namespace, member_pvc(ec, name, bootstrap)).await?;
    }
    let pod = member_pod(ec, &obs.desired.template_hash, name, version, bootstrap, obs.ports_of(name), quota);
    create_if_absent(ctx, &namespace, pod).await.map(drop)
}

/// Creates `object` and returns it as created; `None` when it already existed.
pub async fn create_if_absent<K>(ctx: &Context, namespace: &str, object: K) -> Result<Option<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = object.name_any();
    match api
        .create(&PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..PostParams::default() }, &object)
        .await
    {
        Ok(created) => Ok(Some(created)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(source) => Err(Error::KubeWrite { what: format!("create {} {name}", K::kind(&())), source }),
    }
}

pub async fn delete_if_present<K>(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    delete_with::<K>(ctx, namespace, name, &DeleteParams::default()).await
}

async fn delete_with<K>(ctx: &Context, namespace: &str, name: &str, params: &DeleteParams) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::KubeWrite { what: format!("delete {} {name}", K::kind(&())), source }),
    }
}
