//! spec.quorumLoss on the local cluster, under the write checker: volumes destroyed until quorum is lost, and
//! the cluster recovered by policy from the survivor or from a backup, under a new cluster ID, with the data
//! it held.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use etcd_op_api::v1::{BackupPhase, EtcdBackup, EtcdCluster, QuorumLossAction, RecoveryPhase, RecoveryStatus};
use etcd_op_e2e::*;
use etcd_op_test_support::{TestNamespace, client, create, start_s3proxy, wait_for};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

/// From quorum lost to a restored cluster with a leader: the wait (10 s), the copies, the volumes going, and
/// three restores.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(420);

/// Destroys members' data as lost disks would: the volumes, then the pods (a volume goes once its pod has).
/// Volumes first, so that no pod comes back to one.
async fn destroy_members(client: &Client, namespace: &str, members: &[&str]) -> Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for member in members {
        pvcs.delete(member, &DeleteParams::default()).await?;
    }
    for member in members {
        pods.delete(member, &DeleteParams::default().grace_period(0)).await?;
    }
    Ok(())
}

/// Waits until status.recovery says Succeeded and the restored cluster has settled at `size`.
async fn recovered(client: &Client, namespace: &str, size: usize) -> Result<(EtcdCluster, RecoveryStatus)> {
    let recovery = wait_for("the recovery to succeed", RECOVERY_TIMEOUT, || async {
        let ec = get_cluster(client, namespace, "demo").await?;
        Ok(ec.status.and_then(|s| s.recovery).filter(|r| r.phase == RecoveryPhase::Succeeded))
    })
    .await?;
    let ec = wait_settled(client, namespace, "demo", size, V36, CREATE_TIMEOUT).await?;
    ensure!(
        recovery.new_cluster_id.is_some() && recovery.new_cluster_id != recovery.old_cluster_id,
        "a new cluster ID: {:?} after {:?}",
        recovery.new_cluster_id,
        recovery.old_cluster_id
    );
    ensure!(
        ec.status.as_ref().and_then(|s| s.cluster_id.as_ref()) == recovery.new_cluster_id.as_ref(),
        "status.clusterID is the new one"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let said = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|e| e.involved_object.name.as_deref() == Some("demo") && e.reason.as_deref() == Some("Recovered"));
    let note = said.and_then(|e| e.message).context("a Recovered event")?;
    let (old, new) =
        (recovery.old_cluster_id.clone().unwrap_or_default(), recovery.new_cluster_id.clone().unwrap_or_default());
    ensure!(note.contains(&old) && note.contains(&new) && note.contains(&recovery.source), "the event: {note}");
    Ok((ec, recovery))
}

#[tokio::test]
async fn two_of_three_volumes_destroyed_recover_from_the_survivor_under_a_new_cluster_id() -> Result<()> {
    let s3 = start_s3proxy()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "recover-member").await?;
    let namespace = ns.name.clone();
    {
        create_store_credentials(&client, &namespace, "store", &s3, &s3.secret_access_key).await?;
        // Plaintext, so the test can read through one member's own address.
        let spec = json!({
            "size": 3, "version": V36,
            "tls": {"peer": {"enabled": false}, "client": {"enabled": false}},
            "quorumLoss": {"action": "RecoverFromMember", "afterSeconds": 10},
            "backupStore": test_store(&s3, &namespace, "store"),
        });
        create_cluster(&client, &namespace, "demo", spec).await?;
        wait_settled(&client, &namespace, "demo", 3, V36, CREATE_TIMEOUT).await?;
        let checker = WriteChecker::start(client_endpoint(&client, &namespace, "demo").await?, "recover-member");
        checker.wait_for_writes(30).await?;
        let written = checker.stop().await?;

        // demo-0 survives. A linearizable read through it returns once it applied every acknowledged write.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let ip = pods.get("demo-0").await?.status.and_then(|s| s.pod_ip).context("demo-0 has no address")?;
        let survivor = EtcdEndpoint { url: format!("http://{ip}:2379"), tls: None };
        let verified = written.verify(&survivor).await?;
        let old_cluster_id = get_cluster(&client, &namespace, "demo").await?.status.and_then(|s| s.cluster_id);

        destroy_members(&client, &namespace, &["demo-1", "demo-2"]).await?;
        let (_, recovery) = recovered(&client, &namespace, 3).await?;
        ensure!(recovery.action == QuorumLossAction::RecoverFromMember, "{recovery:?}");
        ensure!(recovery.member.as_deref() == Some("demo-0"), "the survivor is the source: {recovery:?}");
        ensure!(recovery.old_cluster_id == old_cluster_id, "old cluster ID {:?}: {recovery:?}", old_cluster_id);
        ensure!(recovery.rescue_copies == [recovery.source.clone()], "the survivor alone was copied: {recovery:?}");
        let copy = Api::<EtcdBackup>::namespaced(client.clone(), &namespace).get(&recovery.source).await?;
        let copied = copy.status.context("the copy's status")?;
        ensure!(
            copied.phase == Some(BackupPhase::Succeeded) && copied.member.as_deref() == Some("demo-0"),
            "the copy: {copied:?}"
        );
        ensure!(copied.raft_term.is_some() && copied.raft_index.is_some(), "the copy records term and index");

        // What the survivor held is what the recovered cluster serves: every acknowledged write, nothing else.
        let endpoint = client_endpoint(&client, &namespace, "demo").await?;
        let served = written.verify(&endpoint).await?;
        ensure!(served == verified, "the recovered cluster serves {served} of the {verified} writes");
    }
    ns.delete().await
}

#[tokio::test]
async fn every_volume_destroyed_recovers_from_the_newest_backup() -> Result<()> {
    let s3 = start_s3proxy()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "recover-backup").await?;
    let namespace = ns.name.clone();
    {
        create_store_credentials(&client, &namespace, "store", &s3, &s3.secret_access_key).await?;
        let spec = json!({
            "size": 3, "version": V36,
            "quorumLoss": {"action": "RecoverFromBackup", "afterSeconds": 10},
            "backupStore": test_store(&s3, &namespace, "store"),
        });
        create_cluster(&client, &namespace, "demo", spec).await?;
        wait_settled(&client, &namespace, "demo", 3, V36, CREATE_TIMEOUT).await?;
        let checker = WriteChecker::start(client_endpoint(&client, &namespace, "demo").await?, "recover-backup");
        checker.wait_for_writes(20).await?;
        let before = checker.acknowledged_writes().await;
        create::<EtcdBackup>(
            &client,
            &namespace,
            json!({
                "apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackup", "metadata": {"name": "nightly"},
                "spec": {"clusterName": "demo", "store": test_store(&s3, &namespace, "store")},
            }),
        )
        .await?;
        let backups: Api<EtcdBackup> = Api::namespaced(client.clone(), &namespace);
        let phase = wait_for("EtcdBackup nightly to end", Duration::from_secs(180), || async {
            Ok(backups.get("nightly").await?.status.and_then(|s| s.phase).filter(|p| p.is_final()))
        })
        .await?;
        ensure!(phase == BackupPhase::Succeeded, "the backup: {phase:?}");
        checker.wait_for_writes(before.len() + 10).await?;
        let written = checker.stop().await?;

        destroy_members(&client, &namespace, &["demo-0", "demo-1", "demo-2"]).await?;
        let (_, recovery) = recovered(&client, &namespace, 3).await?;
        ensure!(recovery.action == QuorumLossAction::RecoverFromBackup, "{recovery:?}");
        ensure!(recovery.source == "nightly" && recovery.member.is_none(), "restored from the backup: {recovery:?}");

        // As a restore: every write acknowledged before the backup was asked for, nothing unknown.
        let endpoint = client_endpoint(&client, &namespace, "demo").await?;
        let verified = written.acknowledged_before(&before).verify(&endpoint).await?;
        ensure!(verified == before.len(), "verified {verified} of {} writes", before.len());
    }
    ns.delete().await
}
