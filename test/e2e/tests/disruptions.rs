//! Scenarios that take the operator or the node away: the operator killed in the middle of a scale step,
//! stopped dead at its crash points, and a node restart. Each affects every cluster on the test bed, so
//! they run one at a time, after the scenarios that run side by side (`make test-e2e`).

use anyhow::Result;
use etcd_op_e2e::{
    CHANGE_TIMEOUT, CREATE_TIMEOUT, V36, WriteChecker, client_endpoint, create_cluster, get_cluster, member_ids,
    member_names, patch_spec, settled_three_member_cluster, wait_settled,
};
use etcd_op_test_support::{OPERATOR_NAMESPACE, delete_pod, kill_container, kubectl, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

#[tokio::test]
async fn operator_killed_in_the_middle_of_a_scale_step() -> Result<()> {
    let (client, ns, _) = settled_three_member_cluster("e2e-crash").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "crash");
    patch_spec(&client, n, "demo", json!({"size": 5})).await?;
    // As soon as a learner exists, the operator dies.
    wait_for("a learner to be added", CHANGE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        Ok(ec.status.as_ref().is_some_and(|s| s.members.len() > 3).then_some(()))
    })
    .await?;
    let operators: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for pod in operators.list(&ListParams::default()).await?.items {
        if let Some(name) = pod.metadata.name {
            delete_pod(&client, OPERATOR_NAMESPACE, &name).await?;
        }
    }
    let ec = wait_settled(&client, n, "demo", 5, V36, CHANGE_TIMEOUT).await?;
    let names = member_names(&ec);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), 5, "no member was added twice: {names:?}");
    let written = checker.stop_and_verify().await?;
    eprintln!("operator crash: {written} acknowledged writes verified");
    ns.delete().await
}

const OPERATOR_DEPLOYMENT: &str = "deployment/etcd-op-controller-manager";

/// Crash points set on the operator for the length of a scenario; dropping it clears them (also when the
/// scenario fails), and the operator rolls back to a build that never stops itself.
struct CrashPoints;

impl CrashPoints {
    fn set(points: &str) -> Result<Self> {
        kubectl(&[
            "-n",
            OPERATOR_NAMESPACE,
            "set",
            "env",
            OPERATOR_DEPLOYMENT,
            "-c",
            "manager",
            &format!("FAILPOINTS={points}"),
        ])?;
        kubectl(&["-n", OPERATOR_NAMESPACE, "rollout", "status", OPERATOR_DEPLOYMENT, "--timeout=180s"])?;
        Ok(Self)
    }
}

impl Drop for CrashPoints {
    fn drop(&mut self) {
        let cleared =
            kubectl(&["-n", OPERATOR_NAMESPACE, "set", "env", OPERATOR_DEPLOYMENT, "-c", "manager", "FAILPOINTS-"])
                .and_then(|_| {
                    kubectl(&["-n", OPERATOR_NAMESPACE, "rollout", "status", OPERATOR_DEPLOYMENT, "--timeout=180s"])
                });
        if let Err(error) = cleared {
            eprintln!("clearing the operator's crash points failed: {error:#}");
        }
    }
}

async fn operator_restarts(client: &kube::Client) -> Result<i32> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let list = pods.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
        .map(|c| c.restart_count)
        .sum())
}

/// The operator dies (abort, as a crash) right after etcd accepted a new member, before its pod exists, and
/// between the members of a new cluster's bootstrap. Each time it comes back, it finishes the step it was in:
/// the added member gets its pod (no second member is added), the bootstrap completes with the initial
/// cluster it began (no second cluster is started), and no acknowledged write is lost.
#[tokio::test]
async fn the_operator_stopped_dead_after_member_add_and_mid_bootstrap_finishes_each_step() -> Result<()> {
    let (client, ns, _) = settled_three_member_cluster("e2e-failpoint").await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "failpoint");
    let crash_points = CrashPoints::set(&format!("after-member-add=return({n}/demo);mid-bootstrap=return({n}/boot)"))?;
    let restarts_before = operator_restarts(&client).await?;

    // The operator, and its webhook with it, is away while it restarts after each crash: these writes wait.
    patch_spec(&client, n, "demo", json!({"size": 4})).await?;
    create_cluster(&client, n, "boot", json!({"size": 3, "version": V36})).await?;
    let grown = wait_settled(&client, n, "demo", 4, V36, CHANGE_TIMEOUT).await?;
    let booted = wait_settled(&client, n, "boot", 3, V36, CREATE_TIMEOUT + CHANGE_TIMEOUT).await?;
    let crashes = operator_restarts(&client).await? - restarts_before;
    drop(crash_points);

    // One crash after the MemberAdd, and one or two between bootstrap members (one fewer when the first crash
    // cut the bootstrap's first pass short before its crash point).
    assert!(
        (2..=3).contains(&crashes),
        "the operator stopped {crashes} times at its crash points (is it built with the failpoints feature? \
         `make test-e2e` builds it so)"
    );
    let ids = member_ids(&grown);
    assert_eq!(ids.len(), 4, "one member was added, once: {ids:?}");
    assert!(ids.iter().all(|(_, id)| id.is_some()), "every member is in etcd: {ids:?}");
    assert_eq!(member_names(&booted), vec!["boot-0", "boot-1", "boot-2"], "the bootstrap kept its initial cluster");
    let written = checker.stop_and_verify().await?;
    eprintln!("crash points: {crashes} operator crashes, {written} acknowledged writes verified");
    ns.delete().await
}

/// TLS being turned on, the operator dies right after each `MemberUpdate` moved a member's peer URL to
/// https, before that member restarts to listen for peers over TLS: the member is cut off from its peers.
/// Each time the operator comes back, it restarts that member first (its listener follows its peer URL), and
/// the change completes with every peer URL https and no acknowledged write lost.
#[tokio::test]
async fn the_operator_stopped_dead_after_a_peer_url_moved_restarts_that_member() -> Result<()> {
    let client = etcd_op_e2e::client().await?;
    let ns = etcd_op_e2e::TestNamespace::create(&client, "e2e-peer-url-crash").await?;
    let n = ns.name.as_str();
    let plaintext = json!({"peer": {"enabled": false}, "client": {"enabled": false}});
    create_cluster(&client, n, "demo", json!({"size": 3, "version": V36, "tls": plaintext})).await?;
    wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "peer-url-crash");
    checker.wait_for_writes(20).await?;
    let crash_points = CrashPoints::set(&format!("after-peer-url-update=return({n}/demo)"))?;
    let restarts_before = operator_restarts(&client).await?;

    // Peer TLS only: the plaintext checker keeps writing throughout.
    patch_spec(&client, n, "demo", json!({"tls": {"peer": {"enabled": true}}})).await?;
    let done = wait_for("peer TLS recorded and the cluster settled", CHANGE_TIMEOUT * 2, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let tls = ec.status.as_ref().and_then(|s| s.tls.clone());
        let on = tls.is_some_and(|t| t.peer && !t.client && t.turning_on.is_none());
        Ok((on && etcd_op_e2e::settled(&ec, 3, V36)).then_some(ec))
    })
    .await?;
    let crashes = operator_restarts(&client).await? - restarts_before;
    drop(crash_points);

    assert_eq!(crashes, 3, "the operator stopped once after each member's peer URL moved");
    let status = done.status.clone().unwrap_or_default();
    assert!(
        status.members.iter().all(|m| m.peer_urls.iter().all(|u| u.starts_with("https://"))),
        "every peer URL is https: {:?}",
        status.members
    );
    let written = checker.stop_and_verify().await?;
    eprintln!("peer URL crash points: {crashes} operator crashes, {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn node_restart_brings_the_same_cluster_back_with_its_data() -> Result<()> {
    use etcd_op_test_support::{start_kubelet, stop_kubelet};
    let (client, ns, ec) = settled_three_member_cluster("e2e-node-restart").await?;
    let n = ns.name.as_str();
    let cluster_id = ec.status.as_ref().and_then(|s| s.cluster_id.clone());
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "node-restart");
    checker.wait_for_writes(20).await?;

    // The kubelet goes away and every member's etcd dies with it, as in a node reboot with volumes intact.
    let stopped = stop_kubelet().await?;
    let killed = async {
        for member in member_names(&ec) {
            kill_container(&client, n, &member, "etcd").await?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    start_kubelet(stopped)?;
    killed?;

    // The kubelet restarts every etcd container; then the cluster settles again.
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    wait_for("every member's etcd to be restarted", CHANGE_TIMEOUT, || async {
        let restarted = pods
            .list(&ListParams::default().labels("etcd.cloud.io/cluster=demo"))
            .await?
            .items
            .iter()
            .filter(|p| {
                let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_ref());
                statuses.is_some_and(|cs| cs.iter().any(|c| c.restart_count > 0))
            })
            .count();
        Ok((restarted == 3).then_some(()))
    })
    .await?;
    let ec = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    assert_eq!(ec.status.as_ref().and_then(|s| s.cluster_id.clone()), cluster_id, "the same etcd cluster came back");
    let written = checker.stop_and_verify().await?;
    eprintln!("node restart: {written} acknowledged writes verified");
    ns.delete().await
}
