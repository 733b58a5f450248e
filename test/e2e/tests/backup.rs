//! Backups to the test bed's S3-compatible store (s3proxy), under the write checker: what an EtcdBackup
//! stores is a snapshot etcd's own tools restore, holding every write acknowledged before it was asked for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use etcd_op_api::v1::{BackupPhase, EtcdBackup, EtcdBackupSchedule, EtcdCluster};
use etcd_op_e2e::*;
use etcd_op_test_support::{S3Settings, TestNamespace, client, create, repo_root, start_s3proxy, wait_for};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const BACKUP_TIMEOUT: Duration = Duration::from_secs(180);

async fn create_backup(client: &Client, namespace: &str, name: &str, s3: &S3Settings, secret: &str) -> Result<()> {
    create::<EtcdBackup>(
        client,
        namespace,
        json!({
            "apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackup", "metadata": {"name": name},
            "spec": {"clusterName": "demo", "store": test_store(s3, namespace, secret)},
        }),
    )
    .await?;
    Ok(())
}

/// The stored key of a backup that succeeded.
fn succeeded_key(backup: &EtcdBackup) -> Option<String> {
    backup.status.as_ref().filter(|s| s.phase == Some(BackupPhase::Succeeded))?.key.clone()
}

/// Waits until the backup ended, and returns it.
async fn ended(client: &Client, namespace: &str, name: &str) -> Result<EtcdBackup> {
    let api: Api<EtcdBackup> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("EtcdBackup {name} to end"), BACKUP_TIMEOUT, || async {
        let backup = api.get(name).await?;
        Ok(backup.status.as_ref().and_then(|s| s.phase).filter(|p| p.is_final()).map(|_| backup.clone()))
    })
    .await
}

fn etcd_bin_dir() -> Result<PathBuf> {
    let output = Command::new(repo_root().join("hack/build.sh")).arg("etcd").stderr(Stdio::inherit()).output()?;
    ensure!(output.status.success(), "hack/build.sh etcd failed");
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A single etcd on loopback, restored from a snapshot file with etcd's own `etcdutl snapshot restore` (which
/// checks the hash etcd appended); stopped when dropped.
struct Restored {
    child: Child,
    endpoint: EtcdEndpoint,
    status: serde_json::Value,
}

impl Restored {
    fn start(snapshot: &Path, scratch: &Path) -> Result<Self> {
        let bin = etcd_bin_dir()?;
        let status =
            Command::new(bin.join("etcdutl")).args(["snapshot", "status", "-w", "json"]).arg(snapshot).output()?;
        ensure!(status.status.success(), "etcdutl snapshot status: {}", String::from_utf8_lossy(&status.stderr));
        let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
        let (peer, client) =
            (format!("http://127.0.0.1:{}", free_port()?), format!("http://127.0.0.1:{}", free_port()?));
        let data = scratch.join("data");
        let restore = Command::new(bin.join("etcdutl"))
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg(format!("--data-dir={}", data.display()))
            .args(["--name=restored", &format!("--initial-cluster=restored={peer}")])
            .args([&format!("--initial-advertise-peer-urls={peer}"), "--initial-cluster-token=e2e-restore-check"])
            .output()?;
        ensure!(restore.status.success(), "etcdutl snapshot restore: {}", String::from_utf8_lossy(&restore.stderr));
        let log = std::fs::File::create(scratch.join("etcd.log"))?;
        let child = Command::new(bin.join("etcd"))
            .args(["--name=restored", &format!("--data-dir={}", data.display())])
            .args([&format!("--listen-client-urls={client}"), &format!("--advertise-client-urls={client}")])
            .args([&format!("--listen-peer-urls={peer}"), &format!("--initial-advertise-peer-urls={peer}")])
            .arg(format!("--initial-cluster=restored={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self { child, endpoint: EtcdEndpoint { url: client, tls: None }, status })
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_every_write_acknowledged_before_it_into_etcdutl_and_a_new_cluster()
-> Result<()> {
    let s3 = start_s3proxy()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "backup").await?;
    let namespace = ns.name.clone();
    {
        // The default spec: mutual TLS on both ports, so the operator reaches the members with its own
        // client certificate.
        create_cluster(&client, &namespace, "demo", json!({"size": 3, "version": V36})).await?;
        wait_settled(&client, &namespace, "demo", 3, V36, CREATE_TIMEOUT).await?;
        let checker = WriteChecker::start(client_endpoint(&client, &namespace, "demo").await?, "backup");
        checker.wait_for_writes(20).await?;

        create_store_credentials(&client, &namespace, "store", &s3, &s3.secret_access_key).await?;
        let before = checker.acknowledged_writes().await;
        create_backup(&client, &namespace, "first", &s3, "store").await?;
        let backup = ended(&client, &namespace, "first").await?;
        let status = backup.status.clone().context("status")?;
        ensure!(status.phase == Some(BackupPhase::Succeeded), "the backup failed: {:?}", status.message);
        let leader = leader(&get_cluster(&client, &namespace, "demo").await?);
        ensure!(
            status.member.is_some() && status.member != leader,
            "taken from a follower, not the leader {leader:?}: {:?}",
            status.member
        );
        let key = status.key.clone().context("status.key")?;
        ensure!(key.starts_with(&format!("e2e/{namespace}/{namespace}/demo/")), "the key is under the prefix: {key}");
        ensure!(
            status.location.as_deref() == Some(&format!("s3://{}/{key}", s3.bucket)[..]),
            "location: {:?}",
            status.location
        );
        // A second backup, to be corrupted in the store below.
        create_backup(&client, &namespace, "second", &s3, "store").await?;
        let second = ended(&client, &namespace, "second").await?.status.context("status")?;
        ensure!(second.phase == Some(BackupPhase::Succeeded), "the second backup failed: {:?}", second.message);
        let written = checker.stop().await?;
        let old_cluster_id = get_cluster(&client, &namespace, "demo").await?.status.and_then(|s| s.cluster_id);

        // The stored object is what status says, and etcd's own tools restore it.
        let file = s3.bucket_dir.join(&key);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        ensure!(
            Some(bytes.len() as i64) == status.size_bytes,
            "size {} against status {:?}",
            bytes.len(),
            status.size_bytes
        );
        let scratch = std::env::temp_dir().join(format!("etcd-op-e2e-{namespace}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let restored = Restored::start(&file, &scratch)?;
        let snapshot_revision = restored.status["revision"].as_i64().context("etcdutl's revision")?;
        let recorded = status.revision.context("status.revision")?;
        ensure!(
            snapshot_revision >= recorded,
            "the snapshot's revision {snapshot_revision} is below status.revision {recorded}"
        );
        // The operator's own check of the stored object counted what etcdutl counts here.
        let keys = restored.status["totalKey"].as_i64().context("etcdutl's totalKey")?;
        ensure!(status.total_keys == Some(keys), "status.totalKeys {:?}, etcdutl {keys}", status.total_keys);
        let verified = written.acknowledged_before(&before).verify(&restored.endpoint).await?;
        ensure!(verified == before.len() && verified >= 20, "verified {verified} of {} writes", before.len());
        let _ = std::fs::remove_dir_all(&scratch);

        // The spec of a backup never changes.
        let api: Api<EtcdBackup> = Api::namespaced(client.clone(), &namespace);
        let change = json!({"spec": {"clusterName": "other"}});
        match api.patch("first", &PatchParams::default(), &Patch::Merge(&change)).await {
            Err(kube::Error::Api(e)) if e.message.contains("cannot change") => {}
            other => bail!("a change of a backup's spec was not refused as expected: {other:?}"),
        }

        // A wrong key pair: the store refuses the upload, the backup fails saying so, and is never retried.
        create_store_credentials(&client, &namespace, "wrong", &s3, "not-the-secret").await?;
        create_backup(&client, &namespace, "refused", &s3, "wrong").await?;
        let refused = ended(&client, &namespace, "refused").await?;
        let status = refused.status.context("status")?;
        ensure!(status.phase == Some(BackupPhase::Failed), "a backup with a wrong key pair: {:?}", status.phase);
        let message = status.message.unwrap_or_default();
        ensure!(message.contains("uploading"), "the message says what failed: {message}");
        let complete = status.conditions.iter().find(|c| c.type_ == "Complete").context("Complete condition")?;
        ensure!(complete.status == "False" && complete.reason == "BackupFailed", "{complete:?}");

        // The cluster is deleted with its volumes, then created again from the first backup: every write
        // acknowledged before the backup was asked for is there, nothing unknown, under a new cluster ID.
        Api::<EtcdCluster>::namespaced(client.clone(), &namespace).delete("demo", &Default::default()).await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        wait_for("the deleted cluster's volumes to go", CHANGE_TIMEOUT, || async {
            Ok(pvcs.list(&ListParams::default()).await?.items.is_empty().then_some(()))
        })
        .await?;
        let from_backup = json!({"size": 3, "version": V36, "bootstrap": {"restore": {"backupName": "first"}}});
        create_cluster(&client, &namespace, "demo", from_backup).await?;
        let restored = wait_settled(&client, &namespace, "demo", 3, V36, CREATE_TIMEOUT).await?;
        let new_cluster_id = restored.status.as_ref().and_then(|s| s.cluster_id.clone());
        ensure!(
            new_cluster_id.is_some() && new_cluster_id != old_cluster_id,
            "a new cluster ID: {new_cluster_id:?} after {old_cluster_id:?}"
        );
        let endpoint = client_endpoint(&client, &namespace, "demo").await?;
        let verified = written.acknowledged_before(&before).verify(&endpoint).await?;
        ensure!(verified == before.len(), "verified {verified} of {} writes in the restored cluster", before.len());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let restore_pods = pods.list(&ListParams::default().labels("etcd.cloud.io/restore-of=demo")).await?.items;
        ensure!(
            restore_pods.is_empty(),
            "the restore pods go once the members start: {:?}",
            restore_pods.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>()
        );

        // The same snapshot by its key and sha256 alone, as after the EtcdBackup objects are gone.
        let first =
            Api::<EtcdBackup>::namespaced(client.clone(), &namespace).get("first").await?.status.context("status")?;
        let by_key = json!({"size": 1, "version": V36, "bootstrap": {"restore": {
            "key": first.key, "sha256": first.sha256,
            "store": {"s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "credentialsSecret": {"name": "store"}}},
        }}});
        create_cluster(&client, &namespace, "by-key", by_key).await?;
        wait_settled(&client, &namespace, "by-key", 1, V36, CREATE_TIMEOUT).await?;
        let endpoint = client_endpoint(&client, &namespace, "by-key").await?;
        let verified = written.acknowledged_before(&before).verify(&endpoint).await?;
        ensure!(verified == before.len(), "verified {verified} of {} writes restored by key", before.len());

        // The second backup's object is corrupted in the store: a cluster created from it is refused with the
        // reason, and no member starts.
        let second_file = s3.bucket_dir.join(second.key.as_deref().context("second key")?);
        let mut bytes = std::fs::read(&second_file)?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&second_file, &bytes)?;
        create_cluster(
            &client,
            &namespace,
            "broken",
            json!({"size": 3, "version": V36, "bootstrap": {"restore": {"backupName": "second"}}}),
        )
        .await?;
        let refused = wait_for("the restore of a corrupted snapshot to be refused", CREATE_TIMEOUT, || async {
            let ec = get_cluster(&client, &namespace, "broken").await?;
            let degraded = ec
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.type_ == "Degraded" && c.status == "True")
                .cloned();
            Ok(degraded.filter(|c| c.reason == "RestoreFailed"))
        })
        .await?;
        ensure!(refused.message.contains("sha256"), "the reason names the hash: {}", refused.message);
        let members = pods.list(&ListParams::default().labels("etcd.cloud.io/cluster=broken")).await?.items;
        ensure!(
            members.is_empty(),
            "no member of the refused cluster started: {:?}",
            members.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>()
        );
    }
    ns.delete().await
}

#[tokio::test]
async fn a_schedule_takes_backups_during_writes_drills_them_and_retention_deletes_the_oldest_from_the_store()
-> Result<()> {
    let s3 = start_s3proxy()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "schedule").await?;
    let namespace = ns.name.clone();
    {
        create_cluster(&client, &namespace, "demo", json!({"size": 1, "version": V36})).await?;
        wait_settled(&client, &namespace, "demo", 1, V36, CREATE_TIMEOUT).await?;
        let checker = WriteChecker::start(client_endpoint(&client, &namespace, "demo").await?, "schedule");
        checker.wait_for_writes(5).await?;
        create_store_credentials(&client, &namespace, "store", &s3, &s3.secret_access_key).await?;
        create::<EtcdBackupSchedule>(
            &client,
            &namespace,
            json!({
                "apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackupSchedule", "metadata": {"name": "every-minute"},
                "spec": {
                    "schedule": "* * * * *",
                    "backupTemplate": {"clusterName": "demo", "store": {"s3": {
                        "endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": format!("e2e/{namespace}"),
                        "credentialsSecret": {"name": "store"},
                    }}},
                    "retention": {"keepLast": 1},
                    "drill": true,
                },
            }),
        )
        .await?;

        // The first backup that succeeds is corrupted in the store at once: the next run's drill of it fails.
        let backups: Api<EtcdBackup> = Api::namespaced(client.clone(), &namespace);
        let (first, first_key) =
            wait_for("the schedule's first backup to succeed", Duration::from_secs(150), || async {
                let listed =
                    backups.list(&ListParams::default().labels("etcd.cloud.io/schedule=every-minute")).await?.items;
                Ok(listed.iter().find_map(|b| Some((b.metadata.name.clone()?, succeeded_key(b)?))))
            })
            .await?;
        let file = s3.bucket_dir.join(&first_key);
        let mut bytes = std::fs::read(&file)?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&file, &bytes)?;

        // Watched together, since each lasts only until the next run: with keepLast 1, the first backup that
        // succeeded goes once a later one succeeded; the corrupted first backup's drill fails naming the hash,
        // and a later one's reads its canary back. Only what was seen is gathered here; it is judged after.
        let schedules: Api<EtcdBackupSchedule> = Api::namespaced(client.clone(), &namespace);
        #[derive(Debug, Default)]
        struct Seen {
            succeeded: std::collections::BTreeMap<String, String>,
            gone: Option<(String, String)>,
            drills: Vec<etcd_op_api::v1::DrillStatus>,
        }
        let seen: std::sync::Mutex<Seen> = Default::default();
        let waited = wait_for(
            "a backup replaced, a failed drill of the first and a drill of a later one",
            Duration::from_secs(300),
            || async {
                let listed =
                    backups.list(&ListParams::default().labels("etcd.cloud.io/schedule=every-minute")).await?.items;
                let drill = schedules.get("every-minute").await?.status.and_then(|s| s.last_drill);
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
                for b in &listed {
                    if let (Some(name), Some(key)) = (b.metadata.name.clone(), succeeded_key(b)) {
                        seen.succeeded.insert(name, key);
                    }
                }
                if seen.gone.is_none() {
                    seen.gone = seen
                        .succeeded
                        .iter()
                        .find(|(name, _)| !listed.iter().any(|b| b.metadata.name.as_ref() == Some(*name)))
                        .map(|(n, k)| (n.clone(), k.clone()));
                }
                if let Some(drill) = drill.filter(|d| !seen.drills.iter().any(|s| s.backup == d.backup)) {
                    seen.drills.push(drill);
                }
                let drilled_first = seen.drills.iter().any(|d| d.backup == first);
                let drilled_later = seen.drills.iter().any(|d| d.backup != first);
                Ok((seen.gone.is_some() && drilled_first && drilled_later).then_some(()))
            },
        )
        .await;
        let seen = seen.into_inner().map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
        waited.with_context(|| format!("first backup {first}; seen {seen:?}"))?;
        // An expired backup's snapshot left the store before its EtcdBackup went; the newest success stays.
        let (gone, gone_key) = seen.gone.clone().context("an expired backup")?;
        ensure!(!s3.bucket_dir.join(&gone_key).exists(), "the expired backup {gone}'s snapshot {gone_key} is deleted");
        let listed = backups.list(&ListParams::default().labels("etcd.cloud.io/schedule=every-minute")).await?.items;
        let newest = listed.iter().filter_map(succeeded_key).max().context("a backup that succeeded is kept")?;
        ensure!(s3.bucket_dir.join(&newest).exists(), "the newest backup's snapshot {newest} stays in the store");
        let failed = seen.drills.iter().find(|d| d.backup == first).context("the first backup's drill")?;
        ensure!(
            failed.result == "Failed" && failed.message.contains("sha256"),
            "the corrupted backup's drill: {failed:?}"
        );
        let passed = seen.drills.iter().find(|d| d.backup != first).context("a later drill")?;
        ensure!(passed.result == "Succeeded", "a later drill: {passed:?}");
        ensure!(
            passed.restore_seconds.is_some_and(|s| s > 0) && passed.data_age_seconds.is_some_and(|s| s > 0),
            "RTO and RPO: {passed:?}"
        );
        let status = schedules.get("every-minute").await?.status.context("schedule status")?;
        ensure!(status.last_successful_time.is_some() && status.next_schedule_time.is_some(), "{status:?}");
        checker.stop_and_verify().await?;
    }
    ns.delete().await
}

#[tokio::test]
async fn a_backup_to_a_volume_claim_goes_through_the_stores_pod_and_restores_a_new_cluster() -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "volume-store").await?;
    let namespace = ns.name.clone();
    {
        create_cluster(&client, &namespace, "demo", json!({"size": 1, "version": V36})).await?;
        wait_settled(&client, &namespace, "demo", 1, V36, CREATE_TIMEOUT).await?;
        let checker = WriteChecker::start(client_endpoint(&client, &namespace, "demo").await?, "volume");
        checker.wait_for_writes(20).await?;
        create::<PersistentVolumeClaim>(
            &client,
            &namespace,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backups"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await?;

        let before = checker.acknowledged_writes().await;
        create::<EtcdBackup>(
            &client,
            &namespace,
            json!({"apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackup", "metadata": {"name": "to-volume"},
                   "spec": {"clusterName": "demo", "store": {"volume": {"claimName": "backups", "prefix": "e2e"}}}}),
        )
        .await?;
        let status = ended(&client, &namespace, "to-volume").await?.status.context("status")?;
        ensure!(status.phase == Some(BackupPhase::Succeeded), "the backup failed: {:?}", status.message);
        let location = status.location.clone().unwrap_or_default();
        ensure!(location.starts_with("pvc://backups/e2e/"), "stored on the claim: {location}");
        ensure!(status.total_keys.is_some_and(|keys| keys >= 20), "etcdutl counted the keys: {:?}", status.total_keys);
        let written = checker.stop().await?;

        // One pod serves the claim, and goes with it.
        let server = Api::<Deployment>::namespaced(client.clone(), &namespace).get("backups-store").await?;
        let owners = server.metadata.owner_references.unwrap_or_default();
        ensure!(
            owners.iter().any(|o| o.kind == "PersistentVolumeClaim" && o.name == "backups"),
            "the store's server is owned by its claim: {owners:?}"
        );

        // Three members restored at once, each fetching through the store's pod.
        let from_backup = json!({"size": 3, "version": V36, "bootstrap": {"restore": {"backupName": "to-volume"}}});
        create_cluster(&client, &namespace, "copy", from_backup).await?;
        wait_settled(&client, &namespace, "copy", 3, V36, CREATE_TIMEOUT).await?;
        let endpoint = client_endpoint(&client, &namespace, "copy").await?;
        let verified = written.acknowledged_before(&before).verify(&endpoint).await?;
        ensure!(verified == before.len(), "verified {verified} of {} writes in the restored cluster", before.len());
    }
    ns.delete().await
}
