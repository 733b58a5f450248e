//! The server of a volume store: a Deployment of one pod that mounts the claim and runs `etcd-op
//! serve-volume`, its Service, and the Secret with the token that admits the operator and the restore pods.
//! All three are owned by the claim, so they go with it. A claim is mounted by this one pod only: restores on
//! other nodes fetch through it, as from an object store.

use std::collections::BTreeMap;

use etcd_op_api::v1::{BackupStore, STORE_TOKEN_KEY, StoreKind, VOLUME_STORE_PORT, VolumeStore};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::act::create_if_absent;
use super::resources::{LABEL_MANAGED_BY, MANAGER, locked_down, pod_security};
use super::{Context, Error};
use crate::store::volume::server_url;
use crate::store::volume_server::HEALTH_PATH;
use crate::store::{Credentials, Store};

/// Labels the server's pod with the claim it serves.
pub const LABEL_STORE_CLAIM: &str = "etcd.cloud.io/store-claim";
const APP_NAME: &str = "etcd-op-volume-store";
const MOUNT: &str = "/store";

/// The store `spec` names, ready for use, or why it is not: an S3 store's key pair is read from its Secret; a
/// volume store's server is made where missing and must be ready.
pub async fn open(ctx: &Context, namespace: &str, spec: &BackupStore) -> Result<Result<Store, String>, Error> {
    Ok(match spec.kind() {
        Some(StoreKind::S3(s3)) => match Credentials::read(&ctx.client, namespace, &s3.credentials_secret.name).await {
            Ok(credentials) => Store::s3(s3, &credentials).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Some(StoreKind::Volume(volume)) => match ensure(ctx, namespace, volume).await? {
            Ok(token) => {
                let url = server_url(&volume.server_name(), Some(namespace));
                Store::volume(&url, &volume.claim_name, token).map_err(|e| e.to_string())
            }
            Err(why) => Err(why),
        },
        None => Err("the store names neither an S3 store nor a volume".into()),
    })
}

/// Makes what is missing of the server of `store` in `namespace`; returns its token once its pod is ready,
/// or why it cannot serve yet.
pub async fn ensure(ctx: &Context, namespace: &str, store: &VolumeStore) -> Result<Result<String, String>, Error> {
    let Some(image) = ctx.config.operator_image.as_deref() else {
        return Ok(Err(
            "a volume store's pod runs the operator's image, which an operator outside the cluster does not know"
                .into(),
        ));
    };
    let claim_name = &store.claim_name;
    let Some(claim) = read::<PersistentVolumeClaim>(ctx, namespace, claim_name).await? else {
        return Ok(Err(format!("the PersistentVolumeClaim {claim_name} does not exist")));
    };
    let Some(owner) = owner_of(&claim) else {
        return Ok(Err(format!("the PersistentVolumeClaim {claim_name} has no uid yet")));
    };
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels(store)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let decided = |kind: &str, name: &str| {
        tracing::info!(namespace, claim = %claim_name, kind, name, step = "CreateVolumeStore", "decided");
    };
    let token = match read::<Secret>(ctx, namespace, &store.token_secret_name()).await? {
        Some(secret) => token_of(&secret)
            .ok_or_else(|| format!("the Secret {} holds no {STORE_TOKEN_KEY}", store.token_secret_name())),
        None => {
            let token = new_token().map_err(|why| Error::StepNotPossible { step: "make a store token", why })?;
            decided("Secret", &store.token_secret_name());
            create_if_absent(ctx, namespace, token_secret(meta(store.token_secret_name()), &token)).await?;
            Ok(token)
        }
    };
    if read::<Service>(ctx, namespace, &store.server_name()).await?.is_none() {
        decided("Service", &store.server_name());
        create_if_absent(ctx, namespace, service(meta(store.server_name()), store)).await?;
    }
    Ok(match read::<Deployment>(ctx, namespace, &store.server_name()).await? {
        None => {
            decided("Deployment", &store.server_name());
            create_if_absent(ctx, namespace, deployment(meta(store.server_name()), store, image)).await?;
            Err(format!("the store's pod {} is starting", store.server_name()))
        }
        Some(server) if server.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) < 1 => {
            Err(format!("the store's pod {} is not ready yet", store.server_name()))
        }
        Some(_) => token,
    })
}

/// The token a store's Secret holds, as text.
fn token_of(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(STORE_TOKEN_KEY)?;
    let token = String::from_utf8(bytes.0.clone()).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

fn labels(store: &VolumeStore) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        (LABEL_STORE_CLAIM.to_string(), store.claim_name.clone()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

fn selector(store: &VolumeStore) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        (LABEL_STORE_CLAIM.to_string(), store.claim_name.clone()),
    ])
}

/// Owned by the claim without blocking its deletion (which would need the claim's finalizers).
fn owner_of(claim: &PersistentVolumeClaim) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: PersistentVolumeClaim::api_version(&()).to_string(),
        kind: PersistentVolumeClaim::kind(&()).to_string(),
        name: claim.name_any(),
        uid: claim.uid()?,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// 32 random bytes, hex.
fn new_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "the system's random source failed".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn token_secret(metadata: ObjectMeta, token: &str) -> Secret {
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(STORE_TOKEN_KEY.to_string(), ByteString(token.as_bytes().to_vec()))])),
        ..Secret::default()
    }
}

pub fn service(metadata: ObjectMeta, store: &VolumeStore) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(selector(store)),
            ports: Some(vec![ServicePort {
                name: Some("store".into()),
                port: i32::from(VOLUME_STORE_PORT),
                target_port: Some(IntOrString::Int(i32::from(VOLUME_STORE_PORT))),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The environment variable that carries the store's token into a pod, from its Secret.
pub fn token_env(store: &VolumeStore) -> EnvVar {
    EnvVar {
        name: "STORE_TOKEN".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: store.token_secret_name(),
                key: STORE_TOKEN_KEY.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn deployment(metadata: ObjectMeta, store: &VolumeStore, image: &str) -> Deployment {
    let port = i32::from(VOLUME_STORE_PORT);
    let server = Container {
        name: "store".into(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec!["serve-volume".into(), format!("--dir={MOUNT}"), format!("--listen=0.0.0.0:{port}")]),
        env: Some(vec![token_env(store)]),
        ports: Some(vec![ContainerPort {
            name: Some("store".into()),
            container_port: port,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(HEALTH_PATH.into()),
                port: IntOrString::Int(port),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("16Mi".into())),
            ])),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "store".into(),
            mount_path: MOUNT.into(),
            ..VolumeMount::default()
        }]),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // The claim may be ReadWriteOnce: the old pod lets go of it before the new one mounts it.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), ..DeploymentStrategy::default() }),
            selector: LabelSelector { match_labels: Some(selector(store)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(store)), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![server],
                    volumes: Some(vec![Volume {
                        name: "store".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: store.claim_name.clone(),
                            read_only: Some(false),
                        }),
                        ..Volume::default()
                    }]),
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

async fn read<K>(ctx: &Context, namespace: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("{} {namespace}/{name}", K::kind(&())), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> VolumeStore {
        VolumeStore { claim_name: "backups".into(), prefix: None }
    }

    #[test]
    fn the_server_mounts_the_claim_and_takes_its_token_from_the_secret() {
        let server = deployment(ObjectMeta::default(), &store(), "etcd-op:dev");
        let spec = server.spec.expect("a spec");
        assert_eq!(spec.strategy.and_then(|s| s.type_).as_deref(), Some("Recreate"));
        let pod = spec.template.spec.expect("a pod spec");
        let volume = pod.volumes.as_ref().and_then(|v| v.first()).and_then(|v| v.persistent_volume_claim.as_ref());
        assert_eq!(volume.map(|v| v.claim_name.as_str()), Some("backups"));
        let container = &pod.containers[0];
        assert_eq!(container.args.as_ref().map(|a| a[0].as_str()), Some("serve-volume"));
        let env = container.env.as_ref().and_then(|e| e.first()).expect("the token");
        let from = env.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("from a Secret");
        assert_eq!((from.name.as_str(), from.key.as_str()), ("backups-store-token", STORE_TOKEN_KEY));
        assert_eq!(spec.selector.match_labels, Some(selector(&store())));
    }

    #[test]
    fn the_token_is_read_back_from_the_secret_it_was_written_to() {
        let secret = token_secret(ObjectMeta::default(), "abc123");
        assert_eq!(token_of(&secret).as_deref(), Some("abc123"));
        assert_eq!(token_of(&token_secret(ObjectMeta::default(), " ")), None, "a blank token is no token");
        assert_eq!(token_of(&Secret::default()), None);
    }

    #[test]
    fn tokens_are_new_each_time() {
        let (a, b) = (new_token().expect("a token"), new_token().expect("a token"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
