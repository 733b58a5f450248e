//! The objects a cluster shares among its members: peer and client Services and the PodDisruptionBudget.
//! Created when missing, the budget corrected when the target size changes; otherwise left alone, so a
//! steady cluster costs no writes.

use etcd_op_api::v1::EtcdCluster;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::Context;
use super::act::create_if_absent;
use super::error::Error;
use super::resources::{client_service, client_service_name, disruption_budget, headless_service};

pub async fn ensure(ctx: &Context, ec: &EtcdCluster, size: usize) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let name = ec.name_any();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    for (service_name, build) in
        [(name.clone(), headless_service as fn(&EtcdCluster) -> Service), (client_service_name(&name), client_service)]
    {
        let existing = services
            .get_opt(&service_name)
            .await
            .map_err(|source| Error::KubeRead { what: format!("service {namespace}/{service_name}"), source })?;
        if existing.is_none() {
            create_if_absent(ctx, &namespace, build(ec)).await?;
        }
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
    let wanted = disruption_budget(ec, size);
    let existing = budgets
        .get_opt(&name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("PodDisruptionBudget {namespace}/{name}"), source })?;
    let min_available = |b: &PodDisruptionBudget| b.spec.as_ref().and_then(|s| s.min_available.clone());
    match existing {
        None => create_if_absent(ctx, &namespace, wanted).await,
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
