//! Act: stream one member's snapshot to the store, then read the stored object back and check it.

use etcd_op_api::v1::{EtcdBackup, EtcdBackupStatus};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::plan::Candidate;
use crate::controller::{ClusterAccess, Context};
use crate::store::{Store, digest::human_size};

/// The object key of a backup: under the store's prefix, a folder per namespace and cluster, and a name that
/// sorts by time, so that the newest is the last listed.
pub fn object_key(backup: &EtcdBackup, started: Timestamp) -> String {
    let file = format!(
        "{}/{}/{}-{}.db",
        backup.namespace().unwrap_or_default(),
        backup.spec.cluster_name,
        started.strftime("%Y%m%dT%H%M%SZ"),
        backup.name_any()
    );
    backup.spec.store.key(&file)
}

/// Takes the snapshot and returns the status of a backup that succeeded, or why it failed.
pub async fn take(
    ctx: &Context,
    backup: &EtcdBackup,
    source: &Candidate,
    access: &ClusterAccess,
    store: &Store,
    started: &EtcdBackupStatus,
) -> Result<EtcdBackupStatus, String> {
    let spec = &backup.spec.store;
    let start = started.start_time.as_ref().map_or_else(Timestamp::now, |t| t.0);
    let key = object_key(backup, start);
    let etcd = match &access.tls {
        Some(tls) => ctx.etcd.with_tls(tls),
        None => ctx.etcd.clone(),
    };
    let endpoint = source.endpoint.as_str();
    let canary_revision =
        if backup.spec.canary { Some(write_canary(etcd.as_ref(), backup, source).await?) } else { None };
    // Read before the snapshot begins: the member applies in order, so the snapshot holds at least this.
    let member = etcd.status(endpoint).await.map_err(|e| format!("asking member {} its status: {e}", source.name))?;
    let revision =
        etcd.revision(endpoint).await.map_err(|e| format!("asking member {} its revision: {e}", source.name))?;
    let stream =
        etcd.snapshot(endpoint).await.map_err(|e| format!("opening member {}'s snapshot: {e}", source.name))?;
    let sent =
        store.upload(&key, stream).await.map_err(|e| format!("uploading member {}'s snapshot: {e}", source.name))?;
    if !sent.database_intact {
        // What etcd sent does not match the hash it appended: nothing restorable was stored.
        let _ = store.delete(&key).await;
        return Err(format!(
            "the snapshot member {} sent does not end with the sha256 of its database; the object was deleted",
            source.name
        ));
    }
    let stored = store.digest(&key).await.map_err(|e| format!("reading back {}: {e}", spec.location(&key)))?;
    if stored != sent {
        return Err(format!(
            "{} reads back as {} bytes with sha256 {}, but {} bytes with sha256 {} were sent",
            spec.location(&key),
            stored.size,
            stored.sha256,
            sent.size,
            sent.sha256
        ));
    }
    let size = i64::try_from(stored.size).unwrap_or(i64::MAX);
    Ok(EtcdBackupStatus {
        location: Some(spec.location(&key)),
        key: Some(key),
        size_bytes: Some(size),
        size: Some(human_size(stored.size)),
        sha256: Some(stored.sha256),
        revision: Some(revision),
        raft_index: Some(i64::try_from(member.raft_index).unwrap_or(i64::MAX)),
        raft_term: Some(i64::try_from(member.raft_term).unwrap_or(i64::MAX)),
        etcd_cluster_id: Some(format!("{:x}", member.cluster_id)),
        etcd_version: Some(member.version),
        canary_revision,
        ..started.clone()
    })
}

/// How long the source member may take to apply the canary before the snapshot.
const CANARY_APPLIED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes the canary, then waits until the source member applied it, so that its snapshot holds it.
async fn write_canary(etcd: &dyn crate::etcd::EtcdApi, backup: &EtcdBackup, source: &Candidate) -> Result<i64, String> {
    let key = etcd_op_api::v1::canary_key(&backup.name_any());
    let value = backup.uid().unwrap_or_default();
    let written = etcd
        .put(&source.endpoint, &key, &value)
        .await
        .map_err(|e| format!("writing the canary {key} through member {}: {e}", source.name))?;
    let deadline = tokio::time::Instant::now() + CANARY_APPLIED_WITHIN;
    loop {
        if etcd.revision(&source.endpoint).await.is_ok_and(|applied| applied >= written) {
            return Ok(written);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "member {} did not apply the canary (revision {written}) within {CANARY_APPLIED_WITHIN:?}",
                source.name
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
