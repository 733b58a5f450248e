//! The lifecycle of an EtcdCluster on the local cluster, with the operator deployed from config/: each
//! scenario writes unique keys through the client Service the whole time and checks at the end that every
//! acknowledged write survived.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use etcd_op_api::v1::{BackupPhase, EtcdBackup, EtcdCluster};
use etcd_op_e2e::{
    CHANGE_TIMEOUT, CREATE_TIMEOUT, TestNamespace, V36, WriteChecker, client, client_endpoint, create_cluster,
    create_storage_class, create_store_credentials, get_cluster, leader, member_ids, member_names, patch_spec,
    settled_three_member_cluster, test_store, wait_settled,
};
use etcd_op_test_support::{delete_pod, kill_container, kubectl, start_s3proxy, wait_for};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

const V35: &str = "3.5.35";
const V37: &str = "3.7.3";

async fn member_id(client: &kube::Client, ns: &str, cluster: &str, member: &str) -> Result<Option<String>> {
    let ec = get_cluster(client, ns, cluster).await?;
    Ok(ec.status.and_then(|s| s.members.into_iter().find(|m| m.name == member)).and_then(|m| m.id))
}

/// The pod's UID and its etcd container's restart count, to tell when a fault has been acted on: status
/// alone may still show the cluster as it was before the fault.
async fn pod_identity(client: &kube::Client, ns: &str, pod: &str) -> Result<Option<(String, i32)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(pods.get_opt(pod).await?.and_then(|p| {
        let restarts = p.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == "etcd")?.restart_count;
        Some((p.metadata.uid?, restarts))
    }))
}

#[tokio::test]
async fn create_scale_up_scale_down_and_delete() -> Result<()> {
    let (client, ns, ec) = settled_three_member_cluster("e2e-scale").await?;
    let n = ns.name.as_str();
    let status = ec.status.clone().context("status")?;
    assert!(status.cluster_id.is_some() && status.leader.is_some(), "cluster ID and leader reported");
    assert!(status.members.iter().all(|m| m.id.is_some()), "every member's etcd ID is in status");

    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "scale");
    // `kubectl scale` goes through the scale subresource.
    kubectl(&["-n", n, "scale", "etcdcluster/demo", "--replicas=5"])?;
    wait_settled(&client, n, "demo", 5, V36, CHANGE_TIMEOUT).await?;
    kubectl(&["-n", n, "scale", "etcdcluster/demo", "--replicas=3"])?;
    let ec = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    let remaining = pvcs.list(&ListParams::default()).await?.items.len();
    assert_eq!(remaining, 3, "the removed members' volumes are deleted with them");
    let written = checker.stop_and_verify().await?;
    eprintln!("scale: {written} acknowledged writes verified; members {:?}", member_names(&ec));

    // Deleting the EtcdCluster removes everything it owns.
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), n);
    clusters.delete("demo", &DeleteParams::foreground()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let services: Api<Service> = Api::namespaced(client.clone(), n);
    wait_for("the cluster's pods, volumes and services to be deleted", CHANGE_TIMEOUT, || async {
        let left = pods.list(&ListParams::default()).await?.items.len()
            + pvcs.list(&ListParams::default()).await?.items.len()
            + services.list(&ListParams::default()).await?.items.len();
        Ok((left == 0).then_some(()))
    })
    .await?;
    ns.delete().await
}

#[tokio::test]
async fn members_heal_after_process_kill_pod_deletion_and_volume_loss() -> Result<()> {
    let (client, ns, ec) = settled_three_member_cluster("e2e-heal").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "heal");
    let members = member_names(&ec);
    let follower = members.iter().find(|m| Some(*m) != leader(&ec).as_ref()).context("a follower")?.clone();

    // The etcd process dies: the container restarts and the member rejoins as itself.
    let id_before = member_id(&client, n, "demo", &follower).await?;
    let (uid, restarts) = pod_identity(&client, n, &follower).await?.context("the follower's pod")?;
    kill_container(&client, n, &follower, "etcd").await?;
    wait_for("the killed etcd to be restarted", CHANGE_TIMEOUT, || async {
        Ok(pod_identity(&client, n, &follower).await?.filter(|(_, r)| *r > restarts))
    })
    .await?;
    wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert_eq!(member_id(&client, n, "demo", &follower).await?, id_before, "same member after a process kill");

    // The pod is deleted: the operator recreates it on the same volume; same member.
    delete_pod(&client, n, &follower).await?;
    wait_for("the deleted pod to be recreated by the operator", CHANGE_TIMEOUT, || async {
        Ok(pod_identity(&client, n, &follower).await?.filter(|(u, _)| *u != uid))
    })
    .await?;
    wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert_eq!(member_id(&client, n, "demo", &follower).await?, id_before, "same member after a pod deletion");

    // The pod and its volume are deleted: the member lost its data and is replaced by a fresh one.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    pvcs.delete(&follower, &DeleteParams::default()).await?;
    delete_pod(&client, n, &follower).await?;
    let ec = wait_for("the member without data to be replaced", CHANGE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let replaced = member_id(&client, n, "demo", &follower).await? != id_before;
        Ok((replaced && etcd_op_e2e::settled(&ec, 3, V36)).then_some(ec))
    })
    .await?;
    let written = checker.stop_and_verify().await?;
    eprintln!("heal: {written} acknowledged writes verified; members {:?}", member_names(&ec));
    ns.delete().await
}

#[tokio::test]
async fn upgrade_from_3_5_to_3_6_one_member_at_a_time() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-upgrade").await?;
    let n = ns.name.as_str();
    create_cluster(&client, n, "demo", json!({"size": 3, "version": V35})).await?;
    wait_settled(&client, n, "demo", 3, V35, CREATE_TIMEOUT).await?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "upgrade");
    patch_spec(&client, n, "demo", json!({"version": V36})).await?;
    let ec = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert!(
        ec.status.iter().flat_map(|s| &s.members).all(|m| m.version.as_deref().is_some_and(|v| v.starts_with("3.6."))),
        "every member reports 3.6"
    );
    let written = checker.stop_and_verify().await?;
    eprintln!("upgrade: {written} acknowledged writes verified");
    ns.delete().await
}

/// etcd 3.7 on a cluster created on 3.6. (A cluster that came from 3.5 needs a snapshot taken on 3.6 first:
/// etcd 3.7 cannot apply what 3.5 wrote to the write-ahead log, and such a rollout halts.)
#[tokio::test]
async fn upgrade_from_3_6_to_3_7_one_member_at_a_time() -> Result<()> {
    let (client, ns, before) = settled_three_member_cluster("e2e-upgrade-3-7").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "upgrade-3-7");
    // With a store, the operator backs the cluster up before the first member moves to the new minor release.
    let s3 = start_s3proxy()?;
    create_store_credentials(&client, n, "store", &s3, &s3.secret_access_key).await?;
    patch_spec(&client, n, "demo", json!({"version": V37, "backupStore": test_store(&s3, n, "store")})).await?;
    let ec = wait_settled(&client, n, "demo", 3, V37, CHANGE_TIMEOUT).await?;
    let backup = Api::<EtcdBackup>::namespaced(client.clone(), n).get("demo-before-3-7").await?;
    let taken = backup.status.context("the backup's status")?;
    ensure!(taken.phase == Some(BackupPhase::Succeeded), "the backup before the upgrade: {taken:?}");
    ensure!(taken.etcd_version.as_deref().is_some_and(|v| v.starts_with("3.6.")), "taken on 3.6: {taken:?}");
    let done = taken.completion_time.context("completionTime")?.0;
    let pods = Api::<Pod>::namespaced(client.clone(), n)
        .list(&ListParams::default().labels("etcd.cloud.io/cluster=demo"))
        .await?;
    for pod in &pods.items {
        let created = pod.metadata.creation_timestamp.as_ref().context("creationTimestamp")?.0;
        ensure!(created > done, "{} runs 3.7 since {created}, before the backup ended at {done}", pod.name_any());
    }
    assert!(
        ec.status.iter().flat_map(|s| &s.members).all(|m| m.version.as_deref().is_some_and(|v| v.starts_with("3.7."))),
        "every member reports 3.7"
    );
    assert_eq!(member_ids(&ec), member_ids(&before), "an upgrade keeps every member's identity");
    let written = checker.stop_and_verify().await?;
    eprintln!("upgrade to 3.7: {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn paused_cluster_changes_nothing_until_resumed() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-pause").await?;
    let n = ns.name.as_str();
    create_cluster(&client, n, "demo", json!({"size": 1, "version": V36})).await?;
    wait_settled(&client, n, "demo", 1, V36, CREATE_TIMEOUT).await?;
    patch_spec(&client, n, "demo", json!({"paused": true, "size": 3})).await?;
    let ec = wait_for("the paused cluster to report Paused", CHANGE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let paused = ec.status.as_ref().is_some_and(|s| {
            s.phase == Some(etcd_op_api::v1::Phase::Paused) && s.observed_generation == ec.metadata.generation
        });
        Ok(paused.then_some(ec))
    })
    .await?;
    assert_eq!(member_names(&ec).len(), 1, "no member added while paused");
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 1, "no pod created while paused");
    patch_spec(&client, n, "demo", json!({"paused": false})).await?;
    wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    ns.delete().await
}

fn degraded_reason(ec: &EtcdCluster) -> Option<(String, String)> {
    let condition = ec.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "True")?;
    Some((condition.reason.clone(), condition.message.clone()))
}

/// Waits until the cluster reports `Degraded` with `reason`; returns the condition's message.
async fn wait_degraded(client: &kube::Client, ns: &str, cluster: &str, reason: &str) -> Result<String> {
    wait_for(&format!("the operator to report {reason}"), CHANGE_TIMEOUT, || async {
        let ec = get_cluster(client, ns, cluster).await?;
        Ok(degraded_reason(&ec).filter(|(r, _)| r == reason).map(|(_, message)| message))
    })
    .await
}

#[tokio::test]
async fn a_pod_template_change_rolls_the_members_one_at_a_time() -> Result<()> {
    let (client, ns, before) = settled_three_member_cluster("e2e-template").await?;
    let n = ns.name.as_str();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let mut uids = Vec::new();
    for member in member_names(&before) {
        uids.push(pods.get(&member).await?.metadata.uid.context("pod UID")?);
    }
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "template");
    patch_spec(&client, n, "demo", json!({"podTemplate": {"labels": {"tier": "storage"}}})).await?;
    let after = wait_for("every member to run the new template", CHANGE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let labelled = pods.list(&ListParams::default().labels("etcd.cloud.io/cluster=demo,tier=storage")).await?;
        Ok((labelled.items.len() == 3 && etcd_op_e2e::settled(&ec, 3, V36)).then_some(ec))
    })
    .await?;
    for (member, uid) in member_names(&before).iter().zip(&uids) {
        let pod = pods.get(member).await?;
        assert_ne!(pod.metadata.uid.as_ref(), Some(uid), "{member} was restarted on the new template");
    }
    assert_eq!(member_ids(&after), member_ids(&before), "a rolling restart keeps every member's identity");
    let written = checker.stop_and_verify().await?;
    eprintln!("template roll: {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn quorum_loss_is_reported_and_nothing_is_guessed_until_members_return() -> Result<()> {
    use etcd_op_test_support::{cut_pod_network, heal_pod_network};
    let (client, ns, before) = settled_three_member_cluster("e2e-quorum").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "quorum");
    checker.wait_for_writes(20).await?;

    // Two of three members drop off the network: the one left cannot elect a leader.
    let lost: Vec<String> = member_names(&before).into_iter().skip(1).collect();
    let mut cut = Vec::new();
    for member in &lost {
        match cut_pod_network(&client, n, member).await {
            Ok(veth) => cut.push(veth),
            Err(e) => {
                cut.iter().try_for_each(|v| heal_pod_network(v))?;
                return Err(e);
            }
        }
    }
    let reported = wait_for("the operator to report QuorumLost", CHANGE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let quorum_lost = degraded_reason(&ec).filter(|(reason, _)| reason == "QuorumLost");
        let waiting = ec.status.as_ref().and_then(|s| s.next_step.as_ref()).is_some_and(|s| s.action == "Wait");
        Ok(quorum_lost.filter(|_| waiting).map(|(_, message)| message))
    })
    .await;
    let healed = cut.iter().try_for_each(|v| heal_pod_network(v));
    let message = reported?;
    healed?;
    assert!(
        member_names(&before).iter().all(|m| message.contains(m.as_str())),
        "the message names the members holding data: {message}"
    );

    // Back on the network, the same members form the same cluster again: nothing was replaced.
    let after = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert_eq!(member_ids(&after), member_ids(&before), "no member was replaced while quorum was lost");
    let same_cluster = |ec: &EtcdCluster| ec.status.as_ref().and_then(|s| s.cluster_id.clone());
    assert_eq!(same_cluster(&after), same_cluster(&before));
    let written = checker.stop_and_verify().await?;
    eprintln!("quorum loss: {written} acknowledged writes verified; reported: {message}");
    ns.delete().await
}

#[tokio::test]
async fn retained_volumes_outlive_the_cluster_and_bring_its_data_back() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-retain").await?;
    let n = ns.name.as_str();
    let spec = json!({"size": 3, "version": V36, "pvcRetentionPolicy": "Retain"});
    create_cluster(&client, n, "demo", spec.clone()).await?;
    let first = wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "retain");
    checker.wait_for_writes(20).await?;
    let written = checker.stop().await?;

    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), n);
    clusters.delete("demo", &DeleteParams::foreground()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    wait_for("the cluster and its pods to be deleted", CHANGE_TIMEOUT, || async {
        let gone =
            clusters.get_opt("demo").await?.is_none() && pods.list(&ListParams::default()).await?.items.is_empty();
        Ok(gone.then_some(()))
    })
    .await?;
    let kept = pvcs.list(&ListParams::default()).await?.items;
    assert_eq!(kept.len(), 3, "Retain keeps every member's volume");
    assert!(kept.iter().all(|p| p.metadata.deletion_timestamp.is_none()), "no retained volume is being deleted");

    // An EtcdCluster of the same name picks the volumes up: the same etcd cluster, with its data.
    create_cluster(&client, n, "demo", spec).await?;
    let second = wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let cluster_id = |ec: &EtcdCluster| ec.status.as_ref().and_then(|s| s.cluster_id.clone());
    assert_eq!(cluster_id(&second), cluster_id(&first), "the retained data is the same etcd cluster");
    assert_eq!(member_ids(&second), member_ids(&first), "every member came back as itself");
    let verified = written.verify(&client_endpoint(&client, n, "demo").await?).await?;
    eprintln!("retain: {verified} acknowledged writes verified after the cluster was recreated");

    // Under Delete the cluster owns its volumes again, the ones it picked up included, and they go with it.
    let uid = get_cluster(&client, n, "demo").await?.metadata.uid.context("the cluster's UID")?;
    patch_spec(&client, n, "demo", json!({"pvcRetentionPolicy": "Delete"})).await?;
    wait_for("every volume to be owned by the cluster", CHANGE_TIMEOUT, || async {
        let items = pvcs.list(&ListParams::default()).await?.items;
        let owned_by_cluster =
            |p: &PersistentVolumeClaim| p.owner_references().iter().any(|o| o.kind == "EtcdCluster" && o.uid == uid);
        let owned = items.len() == 3 && items.iter().all(owned_by_cluster);
        Ok(owned.then_some(()))
    })
    .await?;
    clusters.delete("demo", &DeleteParams::foreground()).await?;
    wait_for("the volumes to be deleted with the cluster", CHANGE_TIMEOUT, || async {
        Ok(pvcs.list(&ListParams::default()).await?.items.is_empty().then_some(()))
    })
    .await?;
    ns.delete().await
}

/// Time a member that lost its data gets to be replaced: well under the unhealthy threshold (300 s), so a
/// pass shows the operator recognised the loss rather than waiting it out.
const DATA_LOSS_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test]
async fn members_whose_data_directory_is_emptied_are_replaced() -> Result<()> {
    use etcd_op_test_support::wipe_volume;
    let (client, ns, ec) = settled_three_member_cluster("e2e-wipe").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "wipe");

    // First a member of the initial cluster, then the member that replaced it (which joined as a learner):
    // etcd refuses to start on an emptied directory for different reasons, and both must be recognised.
    let mut victim = member_names(&ec).into_iter().find(|m| Some(m) != leader(&ec).as_ref()).context("a follower")?;
    for round in ["initial member", "joined member"] {
        let ec = get_cluster(&client, n, "demo").await?;
        let id_before = member_id(&client, n, "demo", &victim).await?.context("the victim's etcd ID")?;
        let before = member_ids(&ec);
        wipe_volume(&client, n, &victim).await?;
        kill_container(&client, n, &victim, "etcd").await?;
        let ec = wait_for(&format!("the {round} {victim} to be replaced"), DATA_LOSS_TIMEOUT, || async {
            let ec = get_cluster(&client, n, "demo").await?;
            let gone = ec.status.iter().flat_map(|s| &s.members).all(|m| m.id.as_deref() != Some(id_before.as_str()));
            Ok((gone && etcd_op_e2e::settled(&ec, 3, V36)).then_some(ec))
        })
        .await?;
        // The replacement is the member with a new etcd ID; it may reuse the name.
        victim = member_ids(&ec)
            .into_iter()
            .find(|m| !before.contains(m))
            .map(|(name, _)| name)
            .context("the replacement member")?;
        eprintln!("wipe: {round} replaced by {victim}");
    }
    let written = checker.stop_and_verify().await?;
    eprintln!("wipe: {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn two_of_three_member_pods_deleted_at_once_come_back_with_their_data() -> Result<()> {
    let (client, ns, before) = settled_three_member_cluster("e2e-two-pods").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "two-pods");
    checker.wait_for_writes(20).await?;

    // The leader and one follower go at once: the member left cannot lead alone.
    let names = member_names(&before);
    let leader_name = leader(&before).context("a leader")?;
    let follower = names.iter().find(|m| **m != leader_name).context("a follower")?.clone();
    let mut uids = Vec::new();
    for victim in [&leader_name, &follower] {
        uids.push(pod_identity(&client, n, victim).await?.context("the victim's pod")?.0);
    }
    for victim in [&leader_name, &follower] {
        delete_pod(&client, n, victim).await?;
    }
    wait_for("both deleted pods to be recreated", CHANGE_TIMEOUT, || async {
        let mut recreated = 0;
        for (victim, uid) in [&leader_name, &follower].into_iter().zip(&uids) {
            if pod_identity(&client, n, victim).await?.is_some_and(|(u, _)| u != *uid) {
                recreated += 1;
            }
        }
        Ok((recreated == 2).then_some(()))
    })
    .await?;
    let after = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert_eq!(member_ids(&after), member_ids(&before), "the same members came back on their volumes");
    let written = checker.stop_and_verify().await?;
    eprintln!("two pods: {written} acknowledged writes verified");
    ns.delete().await
}

/// The unhealthy threshold of the rollout scenario's cluster: short, so that twice of it passes quickly.
const SHORT_THRESHOLD_SECS: u64 = 30;

#[tokio::test]
async fn a_rollout_to_a_version_without_an_image_halts_removes_nothing_and_can_be_reverted() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-bad-rollout").await?;
    let n = ns.name.as_str();
    let spec = json!({"size": 3, "version": V36, "memberUnhealthyThresholdSeconds": SHORT_THRESHOLD_SECS});
    create_cluster(&client, n, "demo", spec).await?;
    let before = wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "bad-rollout");
    checker.wait_for_writes(20).await?;

    // A typo: there is no image for 3.6.99.
    patch_spec(&client, n, "demo", json!({"version": "3.6.99"})).await?;
    let message = wait_degraded(&client, n, "demo", "RolloutStuck").await?;
    assert!(message.contains("image cannot be pulled"), "the cause is named: {message}");

    // Twice the unhealthy threshold later, every member and every volume is still there.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    let until = tokio::time::Instant::now() + Duration::from_secs(2 * SHORT_THRESHOLD_SECS + 10);
    while tokio::time::Instant::now() < until {
        let ec = get_cluster(&client, n, "demo").await?;
        let ids: Vec<_> = member_ids(&ec).into_iter().filter(|(_, id)| id.is_some()).collect();
        assert_eq!(ids, member_ids(&before), "no member is removed while the rollout is halted");
        assert_eq!(pvcs.list(&ListParams::default()).await?.items.len(), 3, "no volume is deleted");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // Going back to the version that still runs is accepted, and the stuck member comes back on it.
    patch_spec(&client, n, "demo", json!({"version": V36})).await?;
    let after = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert_eq!(member_ids(&after), member_ids(&before), "the same members, with their data");
    let written = checker.stop_and_verify().await?;
    eprintln!("bad rollout: {written} acknowledged writes verified; halted with: {message}");
    ns.delete().await
}

#[tokio::test]
async fn every_member_lost_with_its_data_is_reported_and_started_empty_only_when_asked() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-data-loss").await?;
    let n = ns.name.as_str();
    create_cluster(&client, n, "demo", json!({"size": 1, "version": V36})).await?;
    let before = wait_settled(&client, n, "demo", 1, V36, CREATE_TIMEOUT).await?;
    let cluster_id = |ec: &EtcdCluster| ec.status.as_ref().and_then(|s| s.cluster_id.clone());

    // The only member goes, volume and all.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    let member = member_names(&before).into_iter().next().context("a member")?;
    pvcs.delete(&member, &DeleteParams::default()).await?;
    delete_pod(&client, n, &member).await?;
    let message = wait_degraded(&client, n, "demo", "DataLoss").await?;
    assert!(message.contains("StartEmpty"), "the message says what to do: {message}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    assert!(pods.list(&ListParams::default()).await?.items.is_empty(), "no empty cluster was started silently");

    // Asked to, the operator starts a new, empty cluster.
    patch_spec(&client, n, "demo", json!({"onDataLoss": "StartEmpty"})).await?;
    let after = wait_settled(&client, n, "demo", 1, V36, CREATE_TIMEOUT).await?;
    assert_ne!(cluster_id(&after), cluster_id(&before), "a new etcd cluster");
    ns.delete().await
}

#[tokio::test]
async fn the_sample_cluster_runs_in_a_namespace_that_enforces_the_restricted_pod_security_standard() -> Result<()> {
    let client = client().await?;
    let restricted = [
        ("pod-security.kubernetes.io/enforce", "restricted"),
        ("pod-security.kubernetes.io/enforce-version", "latest"),
    ];
    let ns = TestNamespace::create_labelled(&client, "e2e-restricted", &restricted).await?;
    let n = ns.name.as_str();
    let sample = etcd_op_test_support::repo_root().join("config/samples/etcd_v1_etcdcluster.yaml");
    let sample = sample.to_str().context("the sample's path")?;
    kubectl(&["-n", n, "apply", "-f", sample])?;
    let ec = wait_settled(&client, n, "etcdcluster-sample", 3, V36, CREATE_TIMEOUT).await?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "etcdcluster-sample").await?, "restricted");
    checker.wait_for_writes(20).await?;
    // A member's pod is recreated under the same admission rules.
    let follower = member_names(&ec).into_iter().find(|m| Some(m) != leader(&ec).as_ref()).context("a follower")?;
    let (uid, _) = pod_identity(&client, n, &follower).await?.context("the follower's pod")?;
    delete_pod(&client, n, &follower).await?;
    wait_for("the deleted member to come back", CHANGE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "etcdcluster-sample").await?;
        let recreated = pod_identity(&client, n, &follower).await?.is_some_and(|(u, _)| u != uid);
        Ok((recreated && etcd_op_e2e::settled(&ec, 3, V36)).then_some(()))
    })
    .await?;
    let written = checker.stop_and_verify().await?;
    eprintln!("restricted namespace: {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn a_storage_class_deleted_after_creation_is_reported_by_name() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-no-class").await?;
    let n = ns.name.as_str();
    // The webhook refuses a class that does not exist at creation (tests/webhook.rs); one deleted later is
    // the controller's to report.
    let class = create_storage_class(&client, n).await?;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let spec = json!({"size": 3, "version": V36, "paused": true,
                      "storage": {"volumeClaimTemplate": {"storageClassName": class}}});
    let created = create_cluster(&client, n, "demo", spec).await;
    let deleted = classes.delete(&class, &DeleteParams::default()).await;
    created?;
    deleted?;
    patch_spec(&client, n, "demo", json!({"paused": false})).await?;
    let message = wait_degraded(&client, n, "demo", "StorageClassMissing").await?;
    assert!(message.contains(&class), "the class is named: {message}");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    assert!(
        pvcs.list(&ListParams::default()).await?.items.is_empty(),
        "no volume claim waits for a class that is not there"
    );
    ns.delete().await
}
