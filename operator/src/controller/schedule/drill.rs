//! Restore drills: the newest backup of a schedule that succeeded is restored into a throwaway single-member
//! etcd (a pod on emptyDir, no Service), started, and checked by reading back the canary its backup wrote just
//! before the snapshot. The drill's result, the time the restore took (RTO) and the age of the data it
//! restored (RPO) go to the schedule's status, an event and the metrics.

use std::time::Duration;

use etcd_op_api::v1::{DrillStatus, EtcdBackup, EtcdBackupSchedule, canary_key};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};

use crate::controller::act::create_if_absent;
use crate::controller::model::RestoreFrom;
use crate::controller::resources::locked_down;
use crate::controller::restore::{
    SCRATCH_MOUNT, SNAPSHOT_FILE, etcd_image_of, failure_of, fetch_container, one_shot_pod_meta, one_shot_pod_spec,
    scratch_volume,
};
use crate::controller::{Context, Error};

/// The schedule a drill pod drills for.
pub const LABEL_DRILL_OF: &str = "etcd.cloud.io/drill-of";
/// A drill that has not read its canary back within this long failed.
const DRILL_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(1);
const CLIENT: &str = "http://0.0.0.0:2379";
const PEER: &str = "http://127.0.0.1:2380";

pub fn drill_pod_name(backup: &str) -> String {
    format!("{backup}-drill")
}

/// The throwaway etcd: the snapshot fetched and checked, restored by `etcdutl`, then served by one etcd.
pub fn drill_pod(
    schedule: &EtcdBackupSchedule,
    backup: &str,
    from: &RestoreFrom,
    operator_image: &str,
    etcd_image: &str,
) -> Pod {
    let data = format!("{SCRATCH_MOUNT}/data");
    let mounts =
        vec![VolumeMount { name: "scratch".into(), mount_path: SCRATCH_MOUNT.into(), ..VolumeMount::default() }];
    let etcd = |name: &str, command: &str, args: Vec<String>| Container {
        name: name.into(),
        image: Some(etcd_image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![command.to_string()]),
        args: Some(args),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts.clone()),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    let cluster = format!("drill={PEER}");
    let restore = etcd(
        "restore",
        "/usr/local/bin/etcdutl",
        vec![
            "snapshot".into(),
            "restore".into(),
            SNAPSHOT_FILE.into(),
            format!("--data-dir={data}"),
            "--name=drill".into(),
            format!("--initial-cluster={cluster}"),
            format!("--initial-advertise-peer-urls={PEER}"),
            format!("--initial-cluster-token=drill-{backup}"),
        ],
    );
    let serve = etcd(
        "etcd",
        "/usr/local/bin/etcd",
        vec![
            "--name=drill".into(),
            format!("--data-dir={data}"),
            format!("--listen-client-urls={CLIENT}"),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            format!("--listen-peer-urls={PEER}"),
            format!("--initial-advertise-peer-urls={PEER}"),
            format!("--initial-cluster={cluster}"),
        ],
    );
    Pod {
        metadata: one_shot_pod_meta(schedule, drill_pod_name(backup), LABEL_DRILL_OF),
        spec: Some(one_shot_pod_spec(
            vec![fetch_container(from, operator_image, None, mounts.clone()), restore],
            vec![serve],
            vec![scratch_volume()],
        )),
        ..Pod::default()
    }
}

/// What a drill that read `read` for the canary says, when `expected` was written.
pub fn judge(expected: &str, read: Option<&str>) -> Result<(), String> {
    match read {
        Some(value) if value == expected => Ok(()),
        Some(value) => Err(format!("the canary reads {value:?}, not the backup's UID {expected:?}")),
        None => Err("the canary written just before the snapshot is missing from the restored data".into()),
    }
}

/// Runs one drill of `backup` to its end and returns its status. Drill pods of the schedule left by an
/// earlier operator go first; the drill's own pod goes at the end, whatever the result.
pub async fn run(ctx: &Context, schedule: &EtcdBackupSchedule, backup: &EtcdBackup) -> Result<DrillStatus, Error> {
    let namespace = schedule.namespace().ok_or(Error::MissingNamespace)?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let leftovers =
        pods.list(&ListParams::default().labels(&format!("{LABEL_DRILL_OF}={}", schedule.name_any()))).await.map_err(
            |source| Error::KubeRead { what: format!("drill pods of {namespace}/{}", schedule.name_any()), source },
        )?;
    for pod in leftovers.items {
        let _ = pods.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await;
    }
    let name = backup.name_any();
    let status = backup.status.clone().unwrap_or_default();
    let started = Timestamp::now();
    let finish = |result: Result<(Option<i64>, Option<i64>), String>| {
        let (restore_seconds, data_age_seconds) = result.clone().unwrap_or((None, None));
        DrillStatus {
            backup: name.clone(),
            result: if result.is_ok() { "Succeeded" } else { "Failed" }.into(),
            message: match &result {
                Ok(_) => format!("restored {name} into a throwaway etcd and read its canary back"),
                Err(why) => why.clone(),
            },
            restore_seconds,
            data_age_seconds,
            time: Time(Timestamp::now()),
        }
    };
    let (Some(key), Some(version)) = (status.key.clone(), status.etcd_version.clone()) else {
        return Ok(finish(Err(format!("EtcdBackup {name} records no key or etcd version"))));
    };
    let Some(operator_image) = ctx.config.operator_image.as_deref() else {
        return Ok(finish(Err(
            "the operator does not know its own image, which fetches the snapshot: set --restore-image".into(),
        )));
    };
    let etcd_image = etcd_image_of(ctx, &namespace, &backup.spec.cluster_name, &version).await?;
    let from = RestoreFrom { store: backup.spec.store.clone(), key, sha256: status.sha256.clone() };
    let pod = drill_pod(schedule, &name, &from, operator_image, &etcd_image);
    create_if_absent(ctx, &namespace, pod).await?;
    let outcome = read_canary(ctx, &pods, &name, &backup.uid().unwrap_or_default()).await;
    let _ = pods.delete(&drill_pod_name(&name), &DeleteParams::default().grace_period(0)).await;
    let read_at = Timestamp::now();
    Ok(finish(outcome.map(|()| {
        let age = status.start_time.as_ref().map(|t| read_at.as_second() - t.0.as_second());
        (Some(read_at.as_second() - started.as_second()), age)
    })))
}

/// Waits for the drill pod's etcd and reads the canary from it; why the drill failed otherwise.
async fn read_canary(ctx: &Context, pods: &Api<Pod>, backup: &str, expected: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + DRILL_TIMEOUT;
    let key = canary_key(backup);
    let mut last = String::from("the drill pod did not start");
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let pod = match pods.get_opt(&drill_pod_name(backup)).await {
            Ok(Some(pod)) => pod,
            Ok(None) => return Err("the drill pod was deleted before it ended".into()),
            Err(error) => {
                last = format!("reading the drill pod: {error}");
                continue;
            }
        };
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
            return Err(format!("the restore failed: {}", failure_of(&pod)));
        }
        let Some(ip) = status
            .and_then(|s| s.pod_ip.clone())
            .filter(|_| status.and_then(|s| s.phase.as_deref()) == Some("Running"))
        else {
            continue;
        };
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
        match ctx.etcd.get(&format!("http://{host}:2379"), &key).await {
            Ok(read) => return judge(expected, read.as_deref()),
            Err(error) => last = format!("the restored etcd does not answer yet: {error}"),
        }
    }
    Err(format!("no answer within {DRILL_TIMEOUT:?}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_passes_only_on_the_canary_it_wrote() {
        assert_eq!(judge("uid-1", Some("uid-1")), Ok(()));
        assert!(judge("uid-1", Some("uid-0")).is_err_and(|why| why.contains("uid-0")));
        assert!(judge("uid-1", None).is_err_and(|why| why.contains("missing")));
    }
}
