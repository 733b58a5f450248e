//! Restoring a new cluster from a backup (spec.bootstrap.restore). Each initial member's volume is made with a
//! `restore` mark, then a restore pod fills it: the operator's image fetches the snapshot from the store and
//! checks it against the sha256 its EtcdBackup recorded, then the cluster's etcd image runs `etcdutl snapshot
//! restore` (which checks the hash etcd appended) with the member's name, the initial cluster and a new token.
//! Only when every member's restore succeeded are the members' pods created, so a refused snapshot leaves no
//! member started; the mark then says `restored`, and the restore pods go.

use std::collections::BTreeMap;

use etcd_op_api::v1::{
    ACCESS_KEY_ID_KEY, BackupPhase, EtcdBackup, EtcdCluster, RestoreSource, SECRET_ACCESS_KEY_KEY, StoreKind,
};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::act::{create_if_absent, delete_if_present};
use super::error::Error;
use super::model::{Recovery, Restore, RestoreFrom, RestoreState, Version};
use super::resources::Transport;
use super::resources::{
    Bootstrap, DATA_MOUNT, LABEL_MANAGED_BY, MANAGER, image, locked_down, member_pvc, meta, peer_url, pod_security,
};
use super::{Context, volume_store};
use crate::store::volume::server_url;

/// On a restored member's volume: `pending` until its restore pod succeeded and the member is about to start,
/// then `restored`.
pub const ANNOTATION_RESTORE: &str = "etcd.cloud.io/restore";
pub const RESTORE_PENDING: &str = "pending";
pub const RESTORE_DONE: &str = "restored";
/// The cluster a restore pod restores for. Restore pods carry no member labels: they are never members.
pub const LABEL_RESTORE_OF: &str = "etcd.cloud.io/restore-of";
/// Where the restore pod keeps the fetched snapshot: a scratch volume that goes with the pod.
pub const SCRATCH_MOUNT: &str = "/restore";

pub fn restore_pod_name(member: &str) -> String {
    format!("{member}-restore")
}

/// What the restore of a cluster that has not formed yet stands at; `None` for a cluster that restores
/// nothing, or has formed.
pub async fn observe(
    ctx: &Context,
    ec: &EtcdCluster,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
    recovery: Option<&Recovery>,
) -> Result<Option<Restore>, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let restore = match (recovery, &ec.spec.bootstrap) {
        // A recovery restores the lost cluster from its source, whatever the cluster was first made from.
        (Some(recovery), _) => RestoreSource { backup_name: Some(recovery.source.clone()), ..RestoreSource::default() },
        (None, Some(_)) if ec.status.as_ref().is_some_and(|s| s.cluster_id.is_some()) => return Ok(None),
        (None, Some(bootstrap)) => bootstrap.restore.clone(),
        (None, None) => return Ok(None),
    };
    let (described, source) = match (&restore.backup_name, &restore.store, &restore.key) {
        (Some(name), _, _) => {
            let backup = Api::<EtcdBackup>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(name)
                .await
                .map_err(|source| Error::KubeRead { what: format!("EtcdBackup {namespace}/{name}"), source })?;
            let source = match backup {
                None => Err(format!("EtcdBackup {name} does not exist")),
                Some(backup) => source_of(&backup, &ec.spec.version),
            };
            (format!("EtcdBackup {name}"), source)
        }
        (None, Some(store), Some(key)) => (
            store.location(key),
            Ok(RestoreFrom { store: store.clone(), key: key.clone(), sha256: restore.sha256.clone() }),
        ),
        _ => return Err(Error::InvalidSpec("spec.bootstrap.restore names no backup and no stored snapshot".into())),
    };
    // The restore pods fetch from a volume store through its server: made now if it is not running, while
    // they wait for it.
    if let Ok(RestoreFrom { store, .. }) = &source
        && let Some(StoreKind::Volume(volume)) = store.kind()
    {
        let _not_ready_yet = volume_store::ensure(ctx, &namespace, volume).await?;
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!("{LABEL_RESTORE_OF}={}", ec.name_any())))
        .await
        .map_err(|source| Error::KubeRead { what: format!("restore pods of {namespace}/{}", ec.name_any()), source })?;
    let pods: BTreeMap<String, Pod> = pods.items.into_iter().map(|p| (p.name_any(), p)).collect();
    let members = pvcs
        .iter()
        .filter_map(|(member, pvc)| Some((member.clone(), state_of(pvc, pods.get(&restore_pod_name(member)))?)))
        .collect();
    Ok(Some(Restore { backup: described, source, members }))
}

/// The snapshot of a backup that succeeded, unless it comes from a newer etcd minor release than `version`:
/// etcd does not start on data a newer release wrote.
pub fn source_of(backup: &EtcdBackup, version: &str) -> Result<RestoreFrom, String> {
    let name = backup.name_any();
    let status = backup.status.clone().unwrap_or_default();
    if status.phase != Some(BackupPhase::Succeeded) {
        let phase = status.phase.map_or("no phase yet".to_string(), |p| format!("{p:?}"));
        return Err(format!("EtcdBackup {name} has not succeeded ({phase}): only a checked snapshot is restored"));
    }
    let (Some(key), Some(sha256)) = (status.key, status.sha256) else {
        return Err(format!("EtcdBackup {name} records no key or sha256"));
    };
    let minor = |v: &str| Version::parse(v.trim_start_matches('v')).map(|v| (v.major, v.minor));
    if let (Some(taken), Some(wanted)) = (status.etcd_version.as_deref().and_then(minor), minor(version))
        && taken > wanted
    {
        return Err(format!(
            "EtcdBackup {name} was taken from etcd {}, a newer minor release than the cluster's {version}: \
             etcd cannot start on it; create the cluster with spec.version {}.{} or later",
            status.etcd_version.unwrap_or_default(),
            taken.0,
            taken.1
        ));
    }
    Ok(RestoreFrom { store: backup.spec.store.clone(), key, sha256: Some(sha256) })
}

/// A volume's restore, from its mark and its restore pod; `None` for a volume that restores nothing.
pub fn state_of(pvc: &PersistentVolumeClaim, pod: Option<&Pod>) -> Option<RestoreState> {
    match pvc.annotations().get(ANNOTATION_RESTORE).map(String::as_str) {
        None => None,
        Some(RESTORE_DONE) => Some(RestoreState::Restored),
        Some(_) => Some(match pod {
            None => RestoreState::Pending,
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => RestoreState::Running,
            Some(pod) => match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") => RestoreState::Succeeded,
                Some("Failed") => RestoreState::Failed(failure_of(pod)),
                _ => RestoreState::Running,
            },
        }),
    }
}

/// What the failed container of a restore pod said last.
pub fn failure_of(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let statuses = status
        .iter()
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()));
    statuses
        .filter_map(|c| {
            let terminated = c.state.as_ref()?.terminated.as_ref()?;
            (terminated.exit_code != 0).then(|| {
                let said = terminated.message.as_deref().unwrap_or("").trim();
                format!("{} exited with {}: {}", c.name, terminated.exit_code, said)
            })
        })
        .next()
        .unwrap_or_else(|| "the restore pod failed".to_string())
}

/// A restored member's volume: the member's, marked `pending`.
pub fn restore_pvc(ec: &EtcdCluster, member: &str, bootstrap: &Bootstrap) -> PersistentVolumeClaim {
    let mut pvc = member_pvc(ec, member, bootstrap);
    pvc.metadata.annotations.get_or_insert_default().insert(ANNOTATION_RESTORE.into(), RESTORE_PENDING.into());
    pvc
}

/// The pod that fills `member`'s volume from the snapshot; it runs once and is never restarted.
pub fn restore_pod(
    ec: &EtcdCluster,
    member: &str,
    version: Version,
    bootstrap: &Bootstrap,
    from: &RestoreFrom,
    operator_image: &str,
    transport: Transport,
) -> Pod {
    let cluster = ec.name_any();
    let namespace = ec.namespace().unwrap_or_default();
    let labels = BTreeMap::from([
        (LABEL_RESTORE_OF.to_string(), cluster.clone()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ]);
    let data = format!("{DATA_MOUNT}/data");
    let snapshot = format!("{SCRATCH_MOUNT}/snapshot.db");
    let mounts = vec![
        VolumeMount { name: "data".into(), mount_path: DATA_MOUNT.into(), ..VolumeMount::default() },
        VolumeMount { name: "scratch".into(), mount_path: SCRATCH_MOUNT.into(), ..VolumeMount::default() },
    ];
    // A restore cut short leaves a partial data directory; the volume was never served, so it goes.
    let fetch = fetch_container(from, operator_image, Some(&data), mounts.clone());
    let restore = Container {
        name: "restore".into(),
        image: Some(image(ec, version)),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/usr/local/bin/etcdutl".into()]),
        args: Some(vec![
            "snapshot".into(),
            "restore".into(),
            snapshot,
            format!("--data-dir={data}"),
            format!("--name={member}"),
            format!("--initial-cluster={}", bootstrap.initial_cluster),
            format!("--initial-cluster-token={}", bootstrap.token.clone().unwrap_or_default()),
            format!("--initial-advertise-peer-urls={}", peer_url(&cluster, &namespace, member, transport)),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    Pod {
        metadata: meta(ec, restore_pod_name(member), labels),
        spec: Some(one_shot_pod_spec(
            vec![fetch],
            vec![restore],
            vec![
                Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: member.to_string(),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                scratch_volume(),
            ],
        )),
        ..Pod::default()
    }
}

/// The etcd image of `version` in the cluster's image repository, the default one when the cluster is gone:
/// what a drill or a verification runs `etcdutl` with.
pub async fn etcd_image_of(ctx: &Context, namespace: &str, cluster: &str, version: &str) -> Result<String, Error> {
    let found = Api::<EtcdCluster>::namespaced(ctx.client.clone(), namespace)
        .get_opt(cluster)
        .await
        .map_err(|source| Error::KubeRead { what: format!("EtcdCluster {namespace}/{cluster}"), source })?;
    let repository = found
        .as_ref()
        .and_then(|c| c.spec.pod_template.as_ref()?.image_repository.clone())
        .unwrap_or_else(|| etcd_op_api::v1::DEFAULT_IMAGE_REPOSITORY.to_string());
    Ok(format!("{repository}:v{}", version.trim_start_matches('v')))
}

/// Where a restore or drill pod keeps the fetched snapshot.
pub const SNAPSHOT_FILE: &str = "/restore/snapshot.db";

/// The container that fetches `from` into [`SNAPSHOT_FILE`] with the operator's image, checking its hashes,
/// after removing `clear` if it exists. The store's key pair comes from its Secret.
pub fn fetch_container(
    from: &RestoreFrom,
    operator_image: &str,
    clear: Option<&str>,
    mounts: Vec<VolumeMount>,
) -> Container {
    let mut args = vec![
        "fetch-snapshot".to_string(),
        format!("--key={}", from.key),
        format!("--location={}", from.store.location(&from.key)),
        format!("--to={SNAPSHOT_FILE}"),
    ];
    if let Some(clear) = clear {
        args.push(format!("--clear={clear}"));
    }
    if let Some(sha256) = &from.sha256 {
        args.push(format!("--sha256={sha256}"));
    }
    let env = match from.store.kind() {
        Some(StoreKind::S3(store)) => {
            args.push(format!("--bucket={}", store.bucket));
            args.push(format!("--region={}", store.region()));
            if let Some(endpoint) = &store.endpoint {
                args.push(format!("--endpoint={endpoint}"));
            }
            let credential = |name: &str| EnvVar {
                name: name.to_string(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: store.credentials_secret.name.clone(),
                        key: name.to_string(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            };
            vec![credential(ACCESS_KEY_ID_KEY), credential(SECRET_ACCESS_KEY_KEY)]
        }
        Some(StoreKind::Volume(store)) => {
            args.push(format!("--volume={}", server_url(&store.server_name(), None)));
            vec![volume_store::token_env(store)]
        }
        None => Vec::new(),
    };
    Container {
        name: "fetch".into(),
        image: Some(operator_image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        env: Some(env),
        volume_mounts: Some(mounts),
        security_context: Some(locked_down()),
        ..Container::default()
    }
}

/// The spec of a pod that runs once (restore, drill): `init` then `containers`, never restarted, nothing from
/// the Kubernetes API, as the member's user.
pub fn one_shot_pod_spec(init: Vec<Container>, containers: Vec<Container>, volumes: Vec<Volume>) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".into()),
        init_containers: Some(init),
        containers,
        volumes: Some(volumes),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        security_context: Some(pod_security()),
        ..PodSpec::default()
    }
}

/// The metadata of a run-once pod that works for `owner` (a drill for its schedule, a verification for its
/// backup): owned by it, so it goes with it, and labelled `label` = the owner's name.
pub fn one_shot_pod_meta<K: kube::Resource<DynamicType = ()>>(owner: &K, name: String, label: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.meta().namespace.clone(),
        labels: Some(BTreeMap::from([
            (label.to_string(), owner.meta().name.clone().unwrap_or_default()),
            (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        ])),
        owner_references: owner.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The scratch volume a restore or drill pod fetches the snapshot into; it goes with the pod.
pub fn scratch_volume() -> Volume {
    Volume { name: "scratch".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

/// Creates the marked volume and the restore pod of each member whose volume waits for its restore.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    ctx: &Context,
    ec: &EtcdCluster,
    members: &[String],
    version: Version,
    bootstrap: &Bootstrap,
    restore: &Restore,
    operator_image: &str,
    transport: Transport,
) -> Result<(), Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let from =
        restore.source.as_ref().map_err(|why| Error::StepNotPossible { step: "RestoreMembers", why: why.clone() })?;
    for member in members {
        if !matches!(restore.members.get(member), None | Some(RestoreState::Pending)) {
            continue;
        }
        create_if_absent(ctx, &namespace, restore_pvc(ec, member, bootstrap)).await?;
        let pod = restore_pod(ec, member, version, bootstrap, from, operator_image, transport);
        create_if_absent(ctx, &namespace, pod).await?;
    }
    Ok(())
}

/// Before a restored member's pod is created: its volume is marked `restored` (a member pod never runs on a
/// volume still marked `pending`), and its restore pod goes.
pub async fn finish_member(ctx: &Context, namespace: &str, member: &str, restore: &Restore) -> Result<(), Error> {
    if restore.members.get(member) != Some(&RestoreState::Succeeded) {
        return Ok(());
    }
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_RESTORE: RESTORE_DONE}}});
    Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace)
        .patch(member, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .map_err(|source| Error::KubeWrite { what: format!("restore mark of PVC {namespace}/{member}"), source })?;
    delete_if_present::<Pod>(ctx, namespace, &restore_pod_name(member)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_op_api::v1::{BackupStore, EtcdBackupSpec, EtcdBackupStatus, S3Store, SecretName};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};

    fn backup(phase: BackupPhase, version: &str) -> EtcdBackup {
        let mut backup = EtcdBackup::new(
            "nightly",
            EtcdBackupSpec {
                cluster_name: "demo".into(),
                store: BackupStore::s3(S3Store {
                    endpoint: Some("http://store:9000".into()),
                    bucket: "backups".into(),
                    prefix: None,
                    region: None,
                    credentials_secret: SecretName { name: "s3".into() },
                }),
                canary: false,
                member: None,
            },
        );
        backup.status = Some(EtcdBackupStatus {
            phase: Some(phase),
            key: Some("ns/demo/1.db".into()),
            sha256: Some("ab".repeat(32)),
            etcd_version: Some(version.into()),
            ..EtcdBackupStatus::default()
        });
        backup
    }

    #[test]
    fn only_a_succeeded_backup_from_no_newer_minor_release_is_restored() {
        let from = source_of(&backup(BackupPhase::Succeeded, "3.6.16"), "3.6.16").expect("restorable");
        assert_eq!(from.key, "ns/demo/1.db");
        assert!(source_of(&backup(BackupPhase::Succeeded, "3.5.35"), "3.6.16").is_ok(), "older data upgrades");
        let newer = source_of(&backup(BackupPhase::Succeeded, "3.7.3"), "3.6.16").expect_err("newer minor");
        assert!(newer.contains("newer minor release") && newer.contains("3.7"), "{newer}");
        let failed = source_of(&backup(BackupPhase::Failed, "3.6.16"), "3.6.16").expect_err("failed backup");
        assert!(failed.contains("has not succeeded"), "{failed}");
    }

    fn marked(mark: Option<&str>) -> PersistentVolumeClaim {
        let mut pvc = PersistentVolumeClaim::default();
        if let Some(mark) = mark {
            pvc.metadata.annotations = Some(BTreeMap::from([(ANNOTATION_RESTORE.to_string(), mark.to_string())]));
        }
        pvc
    }

    fn pod_in(phase: &str, fetch_said: Option<&str>) -> Pod {
        let fetch = fetch_said.map(|said| ContainerStatus {
            name: "fetch".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    message: Some(said.into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        });
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                init_container_statuses: fetch.map(|f| vec![f]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn a_volumes_restore_is_read_from_its_mark_and_its_pod() {
        assert_eq!(state_of(&marked(None), None), None, "a volume that restores nothing");
        assert_eq!(state_of(&marked(Some(RESTORE_DONE)), None), Some(RestoreState::Restored));
        assert_eq!(state_of(&marked(Some(RESTORE_PENDING)), None), Some(RestoreState::Pending));
        assert_eq!(
            state_of(&marked(Some(RESTORE_PENDING)), Some(&pod_in("Pending", None))),
            Some(RestoreState::Running)
        );
        assert_eq!(
            state_of(&marked(Some(RESTORE_PENDING)), Some(&pod_in("Succeeded", None))),
            Some(RestoreState::Succeeded)
        );
        let failed = state_of(&marked(Some(RESTORE_PENDING)), Some(&pod_in("Failed", Some("refused: sha256 differs"))));
        assert_eq!(failed, Some(RestoreState::Failed("fetch exited with 1: refused: sha256 differs".into())));
    }

    #[test]
    fn a_restore_pod_fetches_checked_then_restores_with_the_members_identity_and_the_new_token() {
        let ec = EtcdCluster::new("demo", serde_json::from_value(serde_json::json!({})).expect("a default spec"));
        let bootstrap = Bootstrap {
            initial_cluster: "demo-0=https://a:2380,demo-1=https://b:2380".into(),
            state: super::super::model::InitialState::New,
            token: Some("fresh-token".into()),
            transport: Transport::MUTUAL_TLS,
        };
        let from = source_of(&backup(BackupPhase::Succeeded, "3.6.16"), "3.6.16").expect("restorable");
        let pod = restore_pod(
            &ec,
            "demo-1",
            Version::new(3, 6, 16),
            &bootstrap,
            &from,
            "etcd-op:test",
            Transport::MUTUAL_TLS,
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("demo-1-restore"));
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let fetch = &spec.init_containers.expect("init")[0];
        assert_eq!(fetch.image.as_deref(), Some("etcd-op:test"));
        let args = fetch.args.clone().unwrap_or_default();
        assert!(args.contains(&format!("--sha256={}", "ab".repeat(32))), "{args:?}");
        assert!(args.contains(&"--clear=/var/lib/etcd/data".to_string()), "{args:?}");
        let env: Vec<_> = fetch.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert_eq!(env, [ACCESS_KEY_ID_KEY, SECRET_ACCESS_KEY_KEY]);
        let restore = &spec.containers[0];
        let args = restore.args.clone().unwrap_or_default();
        for wanted in ["--name=demo-1", "--initial-cluster-token=fresh-token", "--data-dir=/var/lib/etcd/data"] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("skip-hash-check")), "etcd's hash is always checked");
        assert!(
            !pod.metadata.labels.expect("labels").contains_key(super::super::resources::LABEL_MEMBER),
            "never a member"
        );
    }

    #[test]
    fn a_fetch_from_a_volume_store_goes_through_its_server_with_its_token() {
        let from = RestoreFrom {
            store: etcd_op_api::v1::BackupStore::volume(etcd_op_api::v1::VolumeStore {
                claim_name: "backups".into(),
                prefix: Some("prod".into()),
            }),
            key: "prod/ns/demo/a.db".into(),
            sha256: None,
        };
        let fetch = fetch_container(&from, "etcd-op:test", None, Vec::new());
        let args = fetch.args.unwrap_or_default();
        for wanted in [
            "--volume=http://backups-store:8080",
            "--key=prod/ns/demo/a.db",
            "--location=pvc://backups/prod/ns/demo/a.db",
        ] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--bucket")), "{args:?}");
        let env = fetch.env.unwrap_or_default();
        assert_eq!(env.len(), 1);
        let from_secret = env[0].value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("from a Secret");
        assert_eq!((env[0].name.as_str(), from_secret.name.as_str()), ("STORE_TOKEN", "backups-store-token"));
    }
}
