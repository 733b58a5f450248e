//! The reads the webhook makes to answer `rules::Questions`: one GET per name, nothing listed or cached.
//! Only the Secrets a cluster names as its certificates are read whole; for the others metadata suffices.

use etcd_op_api::v1::{IssuerKind, IssuerRef};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::{Api, Client, Resource};

use super::rules::{Answers, ChildKind, Existing, FoundSecret, Questions};
use crate::controller::issued_certificates;

/// A read the webhook could not make; the request is then refused, never allowed unchecked.
#[derive(Debug, thiserror::Error)]
#[error("looking up {what}: {source}")]
pub struct LookupError {
    what: String,
    #[source]
    source: kube::Error,
}

pub async fn answer(client: &Client, namespace: &str, questions: &Questions) -> Result<Answers, LookupError> {
    let mut answers = Answers::default();
    if let Some(class) = &questions.storage_class {
        let classes: Api<StorageClass> = Api::all(client.clone());
        let found = classes
            .get_metadata_opt(class)
            .await
            .map_err(|source| LookupError { what: format!("StorageClass {class}"), source })?;
        if found.is_none() {
            answers.missing_storage_class = Some(class.clone());
        }
    }
    for name in &questions.names {
        let meta = match name.kind {
            ChildKind::Service => metadata::<Service>(client, namespace, &name.name).await,
            ChildKind::Secret => metadata::<Secret>(client, namespace, &name.name).await,
            ChildKind::PodDisruptionBudget => metadata::<PodDisruptionBudget>(client, namespace, &name.name).await,
            ChildKind::NetworkPolicy => metadata::<NetworkPolicy>(client, namespace, &name.name).await,
            ChildKind::Certificate => {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    namespace,
                    &issued_certificates::cert_manager_resource("Certificate"),
                );
                api.get_metadata_opt(&name.name).await.map(|found| found.map(|p| p.metadata)).or_else(absent_kind)
            }
        }
        .map_err(|source| LookupError { what: format!("{} {namespace}/{}", name.kind.as_str(), name.name), source })?;
        if let Some(meta) = meta {
            answers.existing.push(Existing { name: name.clone(), owners: meta.owner_references.unwrap_or_default() });
        }
    }
    for (purpose, name) in &questions.user_secrets {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|source| LookupError { what: format!("Secret {namespace}/{name}"), source })?;
        let data = secret.as_ref().map(crate::controller::resources::secret_text);
        answers.user_secrets.push(FoundSecret { purpose: *purpose, name: name.clone(), data });
    }
    if let Some(issuer) = &questions.issuer {
        answers.unusable_issuer = unusable_issuer(client, namespace, issuer).await?;
    }
    Ok(answers)
}

/// Why the issuer cannot be used, or `None` when it exists. Only cert-manager's own issuer kinds are looked
/// up; an external issuer's group is taken on trust.
async fn unusable_issuer(client: &Client, namespace: &str, issuer: &IssuerRef) -> Result<Option<String>, LookupError> {
    if issuer.group.as_deref().is_some_and(|group| group != issued_certificates::CERT_MANAGER_GROUP) {
        return Ok(None);
    }
    let kind = issuer.kind.as_str();
    let resource = issued_certificates::cert_manager_resource(kind);
    let (api, place): (Api<DynamicObject>, String) = match issuer.kind {
        IssuerKind::Issuer => (Api::namespaced_with(client.clone(), namespace, &resource), format!("{namespace}/")),
        IssuerKind::ClusterIssuer => (Api::all_with(client.clone(), &resource), String::new()),
    };
    match api.get_metadata_opt(&issuer.name).await {
        Ok(Some(_)) => Ok(None),
        Ok(None) => Ok(Some(format!("{kind} {place}{} does not exist; create it first", issuer.name))),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Ok(Some(format!("the API server does not serve {kind}s: install cert-manager first")))
        }
        Err(source) => Err(LookupError { what: format!("{kind} {place}{}", issuer.name), source }),
    }
}

/// A kind the API server does not serve (cert-manager not installed) has no object of any name.
fn absent_kind(error: kube::Error) -> Result<Option<ObjectMeta>, kube::Error> {
    match error {
        kube::Error::Api(status) if status.code == 404 => Ok(None),
        other => Err(other),
    }
}

/// The object's metadata only: a Secret's data is never read here.
async fn metadata<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<ObjectMeta>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_metadata_opt(name).await?.map(|partial| partial.metadata))
}
