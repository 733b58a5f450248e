//! The reads the webhook makes to answer `rules::Questions`: one GET per name, nothing listed or cached.
//! Only the Secrets a cluster names as its certificates are read whole; for the others metadata suffices.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client, Resource};

use super::rules::{Answers, ChildKind, Existing, FoundSecret, Questions};

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
    Ok(answers)
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
