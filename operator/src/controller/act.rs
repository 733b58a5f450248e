//! Act: carry out one step of the plan. Every step is idempotent, so a step repeated after an operator
//! restart finds its work done and changes nothing.

use etcd_op_api::v1::EtcdCluster;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::error::Error;
use super::observe::Observed;
use super::plan::{Plan, Step};
use super::resources::{Bootstrap, InitialState, member_of_peer_url, member_pod, member_pvc, peer_url};

pub async fn act(ctx: &Context, ec: &EtcdCluster, observed: &Observed, plan: &Plan) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let version = plan.target.version;
    match &plan.step {
        Step::Nothing | Step::Wait => Ok(()),
        Step::BootstrapMembers { members } => {
            let peers: Vec<String> =
                members.iter().map(|name| format!("{name}={}", peer_url(&cluster, &namespace, name))).collect();
            let bootstrap = Bootstrap { initial_cluster: peers.join(","), state: InitialState::New };
            for name in members {
                create_member(ctx, ec, name, version, &bootstrap).await?;
            }
            Ok(())
        }
        Step::AddLearner { name } => {
            let leader = leader_endpoint(observed, "add a learner")?;
            let url = peer_url(&cluster, &namespace, name);
            let key = format!("{namespace}/{cluster}");
            if let Err(refusal) = ctx.etcd.add_learner(leader, &url).await {
                let error = Error::from_membership_change("AddLearner", refusal);
                if error.to_string().contains(UNHEALTHY_CLUSTER) && ctx.refused_for(&key) > STALE_PEER_VIEW_AFTER {
                    ctx.forget_refusal(&key);
                    hand_over_leadership(ctx, observed, leader).await?;
                }
                return Err(error);
            }
            ctx.forget_refusal(&key);
            let bootstrap = joining_bootstrap(observed, &cluster, &namespace, name);
            create_member(ctx, ec, name, version, &bootstrap).await
        }
        Step::CreateMemberPod { name } => {
            let bootstrap = observed
                .recorded_bootstrap(name)
                .unwrap_or_else(|| joining_bootstrap(observed, &cluster, &namespace, name));
            create_member(ctx, ec, name, version, &bootstrap).await
        }
        Step::PromoteLearner { id, .. } => ctx
            .etcd
            .promote(leader_endpoint(observed, "promote a learner")?, *id)
            .await
            .map_err(|e| Error::from_membership_change("PromoteLearner", e)),
        Step::MoveLeader { to_id, .. } => {
            Ok(ctx.etcd.move_leader(leader_endpoint(observed, "move leadership")?, *to_id).await?)
        }
        Step::RemoveMember { id, .. } => {
            Ok(ctx.etcd.remove(leader_endpoint(observed, "remove a member")?, *id).await?)
        }
        Step::DeleteMemberResources { name } => {
            delete_if_present::<Pod>(ctx, &namespace, name).await?;
            delete_if_present::<PersistentVolumeClaim>(ctx, &namespace, name).await
        }
        Step::RestartMember { name } => delete_if_present::<Pod>(ctx, &namespace, name).await,
    }
}

/// etcd refuses membership changes with this while its leader counts too few peers as connected. For a few
/// seconds after a start or a promotion that is expected. When it lasts, the leader's view of a peer is
/// stale: a member's pod came back on a new address while the leader still dialled the old one, and the
/// leader keeps that peer "inactive" although raft traffic flows. A new leader has fresh peer connections.
const UNHEALTHY_CLUSTER: &str = "unhealthy cluster";
const STALE_PEER_VIEW_AFTER: std::time::Duration = std::time::Duration::from_secs(20);

/// Moves leadership to the healthy voter that is furthest along: no membership change, a pause in writes of
/// an election at most.
async fn hand_over_leadership(ctx: &Context, observed: &Observed, leader: &str) -> Result<(), Error> {
    let cluster_id = match observed.observation.etcd {
        super::model::EtcdView::Reachable { cluster_id, .. } => cluster_id,
        super::model::EtcdView::Unreachable => return Ok(()),
    };
    let target = observed
        .observation
        .members
        .iter()
        .filter(|m| m.is_voter() && m.is_healthy(cluster_id) && Some(&m.name) != observed.leader.as_ref())
        .max_by_key(|m| m.applied_index())
        .and_then(|m| m.id());
    if let Some(to) = target {
        tracing::info!(leader, to = %format!("{to:x}"), "the leader's view of its peers is stale: moving leadership");
        ctx.etcd.move_leader(leader, to).await?;
    }
    Ok(())
}

fn leader_endpoint<'a>(observed: &'a Observed, step: &'static str) -> Result<&'a str, Error> {
    observed
        .leader_endpoint()
        .ok_or_else(|| Error::StepNotPossible { step, why: "the leader's pod has no address".into() })
}

/// A member joining a running cluster starts with every current member plus itself.
fn joining_bootstrap(observed: &Observed, cluster: &str, namespace: &str, name: &str) -> Bootstrap {
    let mut peers: Vec<String> = observed
        .etcd_members
        .iter()
        .filter_map(|m| {
            let url = m.peer_urls.first()?;
            let member = if m.name.is_empty() { member_of_peer_url(url)? } else { &m.name };
            (member != name).then(|| format!("{member}={url}"))
        })
        .collect();
    peers.push(format!("{name}={}", peer_url(cluster, namespace, name)));
    peers.sort();
    Bootstrap { initial_cluster: peers.join(","), state: InitialState::Existing }
}

/// Creates the member's PVC (unless it uses emptyDir) and pod; either may already exist.
async fn create_member(
    ctx: &Context,
    ec: &EtcdCluster,
    name: &str,
    version: super::model::Version,
    bootstrap: &Bootstrap,
) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    if ec.spec.storage.empty_dir.is_none() {
        create_if_absent(ctx, &namespace, member_pvc(ec, name, bootstrap)).await?;
    }
    create_if_absent(ctx, &namespace, member_pod(ec, name, version, bootstrap)).await
}

pub async fn create_if_absent<K>(ctx: &Context, namespace: &str, object: K) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .create(&PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..PostParams::default() }, &object)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(Error::KubeWrite { what: format!("create {} {}", K::kind(&()), object.name_any()), source }),
    }
}

async fn delete_if_present<K>(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::KubeWrite { what: format!("delete {} {name}", K::kind(&())), source }),
    }
}
