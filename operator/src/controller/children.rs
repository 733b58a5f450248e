//! The objects a cluster shares among its members: peer and client Services and the PodDisruptionBudget.
//! Created when missing, the budget corrected when the target size changes; otherwise left alone, so a
//! steady cluster costs no writes. Also the members' PVCs' owner references, which follow
//! `pvcRetentionPolicy`.

use std::collections::BTreeMap;

use etcd_op_api::v1::{EtcdCluster, PvcRetentionPolicy};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::act::create_if_absent;
use super::error::Error;
use super::resources::{
    client_service, client_service_name, disruption_budget, headless_service, network_policy, owner_reference,
};

/// Creates the peer and client Services when missing (unless `create` is false: a paused cluster), and
/// returns the client Service's cluster IPs: an address clients reach the members by, which the serving
/// certificate carries.
pub async fn ensure_services(ctx: &Context, ec: &EtcdCluster, create: bool) -> Result<Vec<String>, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let name = ec.name_any();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut client_ips = Vec::new();
    for (service_name, build) in
        [(name.clone(), headless_service as fn(&EtcdCluster) -> Service), (client_service_name(&name), client_service)]
    {
        let existing = services
            .get_opt(&service_name)
            .await
            .map_err(|source| Error::KubeRead { what: format!("service {namespace}/{service_name}"), source })?;
        // Created by someone else meanwhile: its address comes on the next pass.
        let service = match existing {
            Some(service) => Some(service),
            None if create => create_if_absent(ctx, &namespace, build(ec)).await?,
            None => None,
        };
        if service_name == client_service_name(&name) {
            client_ips = service.and_then(|s| s.spec?.cluster_ips).unwrap_or_default();
        }
    }
    client_ips.retain(|ip| ip != "None");
    Ok(client_ips)
}

/// Creates the cluster's NetworkPolicy when missing, and brings its rules back in line with the spec.
pub async fn ensure_network_policy(ctx: &Context, ec: &EtcdCluster) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let name = ec.name_any();
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let wanted = network_policy(ec, ctx.config.operator_peer.as_ref());
    let existing = policies
        .get_opt(&name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("NetworkPolicy {namespace}/{name}"), source })?;
    match existing {
        None => create_if_absent(ctx, &namespace, wanted).await.map(drop),
        Some(current) if current.spec != wanted.spec => {
            let patch = serde_json::json!({ "spec": wanted.spec });
            policies
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::KubeWrite { what: format!("NetworkPolicy {namespace}/{name}"), source })?;
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// Creates the PodDisruptionBudget when missing, and corrects it when the target size changes.
pub async fn ensure_budget(ctx: &Context, ec: &EtcdCluster, size: usize) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let name = ec.name_any();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
    let wanted = disruption_budget(ec, size);
    let existing = budgets
        .get_opt(&name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("PodDisruptionBudget {namespace}/{name}"), source })?;
    let min_available = |b: &PodDisruptionBudget| b.spec.as_ref().and_then(|s| s.min_available.clone());
    match existing {
        None => create_if_absent(ctx, &namespace, wanted).await.map(drop),
        Some(current) if min_available(&current) != min_available(&wanted) => {
            let patch = serde_json::json!({"spec": {"minAvailable": min_available(&wanted)}});
            budgets.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|source| {
                Error::KubeWrite { what: format!("PodDisruptionBudget {namespace}/{name}"), source }
            })?;
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// Under `Delete` the cluster owns its members' PVCs, so the garbage collector removes them with it; under
/// `Retain` it does not. A change of policy, or volumes picked up from an earlier cluster, are brought in line
/// here. PVCs owned by another EtcdCluster (an earlier one of this name, being deleted) are left alone.
pub async fn ensure_volume_ownership(
    ctx: &Context,
    ec: &EtcdCluster,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let Some(owner) = owner_reference(ec) else { return Ok(()) };
    let owned_wanted = ec.spec.pvc_retention_policy == PvcRetentionPolicy::Delete;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    for pvc in pvcs.values().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let cluster_owners: Vec<_> =
            pvc.owner_references().iter().filter(|o| o.kind == EtcdCluster::kind(&())).collect();
        if cluster_owners.iter().any(|o| o.uid != owner.uid) {
            continue;
        }
        let owned = !cluster_owners.is_empty();
        if owned == owned_wanted {
            continue;
        }
        let mut references: Vec<OwnerReference> =
            pvc.owner_references().iter().filter(|o| o.kind != EtcdCluster::kind(&())).cloned().collect();
        if owned_wanted {
            references.push(owner.clone());
        }
        // A merge patch replaces the whole list.
        let patch = PersistentVolumeClaim {
            metadata: ObjectMeta { owner_references: Some(references), ..ObjectMeta::default() },
            ..PersistentVolumeClaim::default()
        };
        let name = pvc.name_any();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::KubeWrite { what: format!("owner of PVC {namespace}/{name}"), source })?;
    }
    Ok(())
}
