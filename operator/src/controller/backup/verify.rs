//! The last check of a stored backup: a run-once pod fetches the object from the store (checking its sha256
//! and etcd's appended hash, as a restore does) and runs `etcdutl snapshot status` on it with the cluster's
//! etcd image. The snapshot must hold at least the revision the backup recorded before it began; the keys it
//! counts are recorded.

use std::time::Duration;

use etcd_op_api::v1::{EtcdBackup, EtcdBackupStatus};
use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, LogParams};
use serde::Deserialize;

use crate::controller::act::create_if_absent;
use crate::controller::model::RestoreFrom;
use crate::controller::resources::locked_down;
use crate::controller::restore::{
    SCRATCH_MOUNT, SNAPSHOT_FILE, etcd_image_of, failure_of, fetch_container, one_shot_pod_meta, one_shot_pod_spec,
    scratch_volume,
};
use crate::controller::{Context, Error};

/// The backup a verification pod checks.
pub const LABEL_VERIFY_OF: &str = "etcd.cloud.io/verify-of";
/// A verification that has not ended within this long failed.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(1);
const CONTAINER: &str = "status";

pub fn verify_pod_name(backup: &str) -> String {
    format!("{backup}-verify")
}

/// What `etcdutl snapshot status -w json` says of a snapshot.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: i64,
    pub total_key: i64,
    pub total_size: i64,
}

/// The pod: fetch (operator image), then `etcdutl snapshot status` (the cluster's etcd image).
pub fn verify_pod(backup: &EtcdBackup, from: &RestoreFrom, operator_image: &str, etcd_image: &str) -> Pod {
    let mounts =
        vec![VolumeMount { name: "scratch".into(), mount_path: SCRATCH_MOUNT.into(), ..VolumeMount::default() }];
    let status = Container {
        name: CONTAINER.into(),
        image: Some(etcd_image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/usr/local/bin/etcdutl".into()]),
        args: Some(vec!["snapshot".into(), "status".into(), SNAPSHOT_FILE.into(), "-w".into(), "json".into()]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts.clone()),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    Pod {
        metadata: one_shot_pod_meta(backup, verify_pod_name(&backup.name_any()), LABEL_VERIFY_OF),
        spec: Some(one_shot_pod_spec(
            vec![fetch_container(from, operator_image, None, mounts)],
            vec![status],
            vec![scratch_volume()],
        )),
        ..Pod::default()
    }
}

/// Reads `etcdutl`'s JSON line out of its output (it may log other lines around it) and judges it against
/// the revision the backup recorded before its snapshot began.
pub fn judge(output: &str, recorded_revision: Option<i64>) -> Result<SnapshotStatus, String> {
    let status: SnapshotStatus = output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('{'))
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("etcdutl snapshot status printed no status: {}", output.trim()))?;
    // A store nothing was written to yet answers with revision 1, while its database holds no revision and no
    // key at all, which etcdutl reads as revision 0.
    let never_written = status.revision == 0 && recorded_revision.is_some_and(|r| r <= 1);
    if let Some(recorded) = recorded_revision
        && status.revision < recorded
        && !never_written
    {
        return Err(format!(
            "etcdutl snapshot status reads revision {} in the stored snapshot, below the {recorded} the member \
             had reached before it began",
            status.revision
        ));
    }
    Ok(status)
}

/// Runs the verification of the stored backup `stored` to its end; its pod goes at the end, whatever the
/// result. `Ok(None)` when the operator does not know its own image (it runs outside a cluster without
/// --restore-image): the backup is then checked by its hashes only.
pub async fn verify(
    ctx: &Context,
    backup: &EtcdBackup,
    stored: &EtcdBackupStatus,
) -> Result<Option<SnapshotStatus>, String> {
    let Some(operator_image) = ctx.config.operator_image.as_deref() else { return Ok(None) };
    let namespace = backup.namespace().unwrap_or_default();
    let (Some(key), Some(version)) = (stored.key.clone(), stored.etcd_version.clone()) else {
        return Err("the stored backup records no key or etcd version".into());
    };
    let etcd_image = etcd_image_of(ctx, &namespace, &backup.spec.cluster_name, &version)
        .await
        .map_err(|e| format!("choosing the etcd image to check the snapshot with: {e}"))?;
    let from = RestoreFrom { store: backup.spec.store.clone(), key, sha256: stored.sha256.clone() };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = verify_pod_name(&backup.name_any());
    // A pod of an earlier attempt (an operator that stopped mid-check) checked another object.
    let _ = pods.delete(&name, &DeleteParams::default().grace_period(0)).await;
    wait_gone(&pods, &name).await;
    create_if_absent(ctx, &namespace, verify_pod(backup, &from, operator_image, &etcd_image))
        .await
        .map_err(|e: Error| format!("creating the verification pod: {e}"))?;
    let outcome = wait_for_output(&pods, &name).await.and_then(|output| judge(&output, stored.revision));
    let _ = pods.delete(&name, &DeleteParams::default().grace_period(0)).await;
    outcome.map(Some)
}

/// Waits (bounded) until no pod of that name exists.
async fn wait_gone(pods: &Api<Pod>, name: &str) {
    for _ in 0..30 {
        if pods.get_opt(name).await.is_ok_and(|pod| pod.is_none()) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What the pod's `etcdutl` printed, once it succeeded; why it failed otherwise.
async fn wait_for_output(pods: &Api<Pod>, name: &str) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + VERIFY_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let pod = match pods.get_opt(name).await {
            Ok(Some(pod)) => pod,
            Ok(None) => return Err("the verification pod was deleted before it ended".into()),
            Err(_) => continue,
        };
        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Failed") => return Err(format!("the verification failed: {}", failure_of(&pod))),
            Some("Succeeded") => {
                let params = LogParams { container: Some(CONTAINER.into()), ..LogParams::default() };
                return pods.logs(name, &params).await.map_err(|e| format!("reading etcdutl's output: {e}"));
            }
            _ => {}
        }
    }
    Err(format!("the verification did not end within {VERIFY_TIMEOUT:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = r#"{"hash":3787833542,"revision":412,"totalKey":57,"totalSize":106496,"version":"3.6.0"}"#;

    #[test]
    fn the_status_line_is_read_among_log_lines_and_judged_against_the_recorded_revision() {
        let output = format!("{{\"level\":\"warn\",\"msg\":\"deprecated\"}}\n{PRINTED}\n");
        let status = judge(&output, Some(400)).expect("a good snapshot");
        assert_eq!((status.revision, status.total_key, status.total_size), (412, 57, 106_496));
        assert_eq!(judge(PRINTED, Some(412)).map(|s| s.hash), Ok(3_787_833_542));
    }

    #[test]
    fn a_snapshot_behind_the_recorded_revision_or_unreadable_is_refused() {
        assert!(judge(PRINTED, Some(413)).is_err_and(|why| why.contains("revision 412") && why.contains("413")));
        assert!(judge("Error: snapshot file has wrong hash", None).is_err_and(|why| why.contains("wrong hash")));
    }

    #[test]
    fn a_store_nothing_was_written_to_is_read_as_revision_0() {
        let untouched = PRINTED.replace("\"revision\":412,\"totalKey\":57", "\"revision\":0,\"totalKey\":0");
        assert_eq!(judge(&untouched, Some(1)).map(|s| s.revision), Ok(0));
        assert!(judge(&untouched, Some(2)).is_err());
    }
}
