//! Scenarios only several nodes can show: members spread over nodes and zones, a node lost with a member's
//! local volume on it, every node drained in turn, a zone lost. They need the local cluster with more than one
//! node (`make test-e2e-multinode` grows it to four: the host's in zone-a, then zone-b, zone-c, zone-b) and
//! take nodes away, so they run one at a time, after every other scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use etcd_op_e2e::{
    CHANGE_TIMEOUT, CREATE_TIMEOUT, V36, WriteChecker, client_endpoint, create_cluster, get_cluster, member_ids,
    settled, wait_settled,
};
use etcd_op_test_support::{
    CONTROL_PLANE_NODE, LostNode, NodeInfo, TestNamespace, client, kubeconfig, kubectl, kubernetes_bin, lose_node,
    nodes, wait_for,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// How long a member may be unhealthy before it is replaced, in these scenarios. It counts from when
/// Kubernetes marks the lost node's pods not ready (its node-monitor grace period after the kubelet's last
/// word), so the node is already tainted when the replacement is scheduled.
const THRESHOLD_SECS: u64 = 30;
/// A lost node is noticed (its lease runs out), its members pass the threshold, and each is replaced.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(360);
/// How long the scenarios watch a returned node for a member that would come back.
const REJOIN_WATCH: Duration = Duration::from_secs(20);

/// Runs a blocking command (a node hook, kubectl) off the test's own thread, where the write checker and the
/// watchers run: a scenario's runtime has one thread, and a blocked one would stop them.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await?
}

async fn lose(node: &str, delete_object: bool) -> Result<LostNode> {
    let node = node.to_string();
    off_thread(move || lose_node(&node, delete_object)).await
}

async fn kubectl_off_thread(args: &[&str]) -> Result<String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    off_thread(move || kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>())).await
}

/// The cluster's nodes, when there are at least `count` of them, all Ready and schedulable.
async fn require_nodes(client: &Client, count: usize) -> Result<Vec<NodeInfo>> {
    let all = nodes(client).await?;
    ensure!(
        all.len() >= count,
        "{} node(s); these scenarios need {count} (make test-e2e-multinode, or hack/cluster-up.sh --nodes 4)",
        all.len()
    );
    let unfit: Vec<&NodeInfo> = all.iter().filter(|n| !n.ready || n.unschedulable).collect();
    ensure!(unfit.is_empty(), "nodes not Ready or cordoned before the scenario: {unfit:?}");
    Ok(all)
}

/// A namespace of its own holding `demo`, `size` members on 3.6, settled; with `threshold`, members are
/// replaced after that many seconds unhealthy.
async fn settled_cluster(client: &Client, prefix: &str, size: usize, threshold: Option<u64>) -> Result<TestNamespace> {
    let ns = TestNamespace::create(client, prefix).await?;
    let mut spec = json!({"size": size, "version": V36});
    if let Some(secs) = threshold {
        spec["memberUnhealthyThresholdSeconds"] = json!(secs);
    }
    create_cluster(client, &ns.name, "demo", spec).await?;
    wait_settled(client, &ns.name, "demo", size, V36, CREATE_TIMEOUT).await?;
    Ok(ns)
}

/// Each member's node, by member name, from the member pods' placement.
async fn member_nodes(client: &Client, namespace: &str, cluster: &str) -> Result<BTreeMap<String, String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods.list(&ListParams::default().labels(&format!("etcd.cloud.io/cluster={cluster}"))).await?;
    Ok(listed.items.iter().filter_map(|p| Some((p.name_any(), p.spec.as_ref()?.node_name.clone()?))).collect())
}

fn zone_of<'a>(all: &'a [NodeInfo], node: &str) -> &'a str {
    all.iter().find(|n| n.name == node).and_then(|n| n.zone.as_deref()).unwrap_or("none")
}

/// What a member lost with its node was: its etcd ID and its pod's UID. Its name may come back on a new
/// member (a fresh ID, a fresh pod); these never may.
#[derive(Debug, Default)]
struct Gone {
    ids: BTreeSet<String>,
    pod_uids: BTreeSet<String>,
}

impl Gone {
    async fn of(client: &Client, namespace: &str, members: &BTreeSet<String>) -> Result<Self> {
        let ec = get_cluster(client, namespace, "demo").await?;
        let ids = member_ids(&ec).into_iter().filter(|(m, _)| members.contains(m)).filter_map(|(_, id)| id).collect();
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let mut pod_uids = BTreeSet::new();
        for member in members {
            pod_uids.extend(pods.get(member).await?.uid());
        }
        ensure!(pod_uids.len() == members.len(), "pods of {members:?} without a UID");
        Ok(Self { ids, pod_uids })
    }

    /// A member or pod of the lost ones still there.
    async fn still_there(&self, client: &Client, namespace: &str) -> Result<Vec<String>> {
        let ec = get_cluster(client, namespace, "demo").await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let listed = pods.list(&ListParams::default().labels("etcd.cloud.io/cluster=demo")).await?;
        let members = member_ids(&ec).into_iter().filter(|(_, id)| id.as_ref().is_some_and(|id| self.ids.contains(id)));
        let pods = listed.items.iter().filter(|p| p.uid().is_some_and(|uid| self.pod_uids.contains(&uid)));
        Ok(members.map(|(m, _)| format!("member {m}")).chain(pods.map(|p| format!("pod {}", p.name_any()))).collect())
    }
}

/// Waits for the cluster to settle at `size` members, none of them `gone`, none on `lost_nodes`.
async fn wait_replaced(
    client: &Client,
    namespace: &str,
    size: usize,
    gone: &Gone,
    lost_nodes: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>> {
    let description = format!("{namespace}/demo to settle at {size} members, without {gone:?}, off {lost_nodes:?}");
    let placed = wait_for(&description, REPLACE_TIMEOUT, || async {
        let ec = get_cluster(client, namespace, "demo").await?;
        if !settled(&ec, size, V36) || !gone.still_there(client, namespace).await?.is_empty() {
            return Ok(None);
        }
        let placed = member_nodes(client, namespace, "demo").await?;
        Ok((placed.len() == size && placed.values().all(|node| !lost_nodes.contains(node))).then_some(placed))
    })
    .await;
    if placed.is_err() {
        etcd_op_test_support::dump_cluster_state(Some(namespace)).await;
    }
    placed
}

/// Brings the nodes back, waits until they are Ready, then watches that none of the `gone` members comes
/// back (as a pod or in etcd's membership) while the cluster stays settled.
async fn bring_back_and_watch(
    client: &Client,
    namespace: &str,
    size: usize,
    lost: Vec<LostNode>,
    gone: &Gone,
) -> Result<()> {
    let names: BTreeSet<String> = lost.iter().map(|n| n.name.clone()).collect();
    for node in lost {
        off_thread(move || node.bring_back()).await?;
    }
    wait_for(&format!("nodes {names:?} to be Ready again"), CHANGE_TIMEOUT, || async {
        let all = nodes(client).await?;
        Ok(names.iter().all(|name| all.iter().any(|n| &n.name == name && n.ready)).then_some(()))
    })
    .await?;
    let deadline = tokio::time::Instant::now() + REJOIN_WATCH;
    while tokio::time::Instant::now() < deadline {
        let back = gone.still_there(client, namespace).await?;
        ensure!(back.is_empty(), "a replaced member came back with its node: {back:?}");
        let ec = get_cluster(client, namespace, "demo").await?;
        ensure!(settled(&ec, size, V36), "the cluster left its settled state after the nodes came back");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// The test bed itself: a pod on each node reaches every other node's pod and a Service by its DNS name
/// (CoreDNS runs on one node), and a volume of the default class is bound to the node of its first pod.
#[tokio::test]
async fn pods_reach_each_other_across_nodes_and_volumes_stay_on_their_node() -> Result<()> {
    use etcd_op_test_support::{create, exec};
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Service};
    let client = client().await?;
    let all = require_nodes(&client, 2).await?;
    let ns = TestNamespace::create(&client, "e2e-nodes").await?;
    let n = ns.name.as_str();
    let echo = |name: &str, node: &str, volume: Option<&str>| {
        let mut pod = json!({
            "metadata": {"name": name, "labels": {"app": "echo", "node": node}},
            "spec": {"nodeName": node, "containers": [{"name": "echo", "image": "localhost/echo:dev",
                     "imagePullPolicy": "Never"}]}
        });
        if let Some(claim) = volume {
            pod["spec"]["nodeName"] = json!(null);
            pod["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node});
            pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
            pod["spec"]["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]);
        }
        pod
    };
    for (i, node) in all.iter().enumerate() {
        create::<Pod>(&client, n, echo(&format!("echo-{i}"), &node.name, None)).await?;
    }
    let last = &all[all.len() - 1].name;
    create::<Service>(
        &client,
        n,
        json!({"metadata": {"name": "last"}, "spec": {
        "selector": {"node": last}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await?;
    let claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                       "resources": {"requests": {"storage": "16Mi"}}}});
    create::<PersistentVolumeClaim>(&client, n, claim).await?;
    create::<Pod>(&client, n, echo("with-volume", last, Some("data"))).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let addresses = wait_for("every pod to run with an address", CREATE_TIMEOUT, || async {
        let listed = pods.list(&ListParams::default().labels("app=echo")).await?.items;
        let ready: Vec<(String, String)> = listed
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| Some((p.name_any(), p.status.as_ref()?.pod_ip.clone()?)))
            .collect();
        Ok((ready.len() == all.len() + 1).then_some(ready))
    })
    .await?;
    let service_url = format!("http://last.{n}.svc.cluster.local/");
    for (from, _) in addresses.iter().filter(|(name, _)| name.starts_with("echo-")) {
        for (to, ip) in &addresses {
            let answer = exec(n, from, None, &["/echo", "get", &format!("http://{ip}:8080/")])?;
            ensure!(answer.trim() == to, "{from} asked {to} at {ip} and {} answered", answer.trim());
        }
        let answer = wait_for(&format!("{from} to reach {service_url}"), Duration::from_secs(30), || async {
            Ok(Some(exec(n, from, None, &["/echo", "get", &service_url])?))
        })
        .await?;
        let behind = [format!("echo-{}", all.len() - 1), "with-volume".to_string()];
        ensure!(
            behind.iter().any(|pod| pod == answer.trim()),
            "the Service answered {answer:?}, not one of {behind:?}"
        );
    }

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    let volume = claims.get("data").await?.spec.and_then(|s| s.volume_name).context("the claim is not bound")?;
    let pv = Api::<PersistentVolume>::all(client.clone()).get(&volume).await?;
    let pinned: Vec<String> = pv
        .spec
        .and_then(|s| s.node_affinity)
        .and_then(|a| a.required)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|t| t.match_expressions.unwrap_or_default())
        .filter(|e| e.key == "kubernetes.io/hostname")
        .flat_map(|e| e.values.unwrap_or_default())
        .collect();
    ensure!(pinned == vec![last.clone()], "volume {volume} is bound to {pinned:?}, not to {last}");
    ns.delete().await
}

#[tokio::test]
async fn a_lost_node_s_member_is_replaced_on_another_node_and_never_rejoins() -> Result<()> {
    let client = client().await?;
    let all = require_nodes(&client, 3).await?;
    let ns = settled_cluster(&client, "e2e-node-loss", 3, Some(THRESHOLD_SECS)).await?;
    let n = ns.name.as_str();

    // By default, each member on a node, and in a zone, of its own.
    let placed = member_nodes(&client, n, "demo").await?;
    let used_nodes: BTreeSet<&String> = placed.values().collect();
    let used_zones: BTreeSet<&str> = placed.values().map(|node| zone_of(&all, node)).collect();
    let zones: BTreeSet<&str> = all.iter().map(|node| zone_of(&all, &node.name)).collect();
    ensure!(used_nodes.len() == 3, "members share nodes: {placed:?}");
    ensure!(used_zones.len() == zones.len().min(3), "members share zones: {placed:?} over {all:?}");

    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "node-loss");
    checker.wait_for_writes(20).await?;
    let (member, node) = placed
        .iter()
        .find(|(_, node)| node.as_str() != CONTROL_PLANE_NODE)
        .map(|(m, node)| (m.clone(), node.clone()))
        .context("every member runs on the control plane's node")?;
    let gone = Gone::of(&client, n, &BTreeSet::from([member.clone()])).await?;
    let lost = lose(&node, false).await?;

    let now = wait_replaced(&client, n, 3, &gone, &BTreeSet::from([node.clone()])).await?;
    eprintln!("member {member} on lost node {node} replaced: {now:?}");
    bring_back_and_watch(&client, n, 3, vec![lost], &gone).await?;
    let verified = checker.stop_and_verify().await?;
    eprintln!("{verified} acknowledged writes read back");
    ns.delete().await
}

#[tokio::test]
async fn losing_a_zone_keeps_quorum_when_members_span_three_zones() -> Result<()> {
    let client = client().await?;
    let all = require_nodes(&client, 3).await?;
    let ns = settled_cluster(&client, "e2e-zone-loss", 5, Some(THRESHOLD_SECS)).await?;
    let n = ns.name.as_str();

    // Five members over three zones: no zone holds a quorum (at most two each).
    let placed = member_nodes(&client, n, "demo").await?;
    let mut per_zone: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for (member, node) in &placed {
        per_zone.entry(zone_of(&all, node)).or_default().push(member);
    }
    ensure!(per_zone.len() == 3 && per_zone.values().all(|m| m.len() <= 2), "members per zone: {per_zone:?}");

    // The zone with the most members, other than the control plane's, goes: every node in it, Node objects
    // included (as when a cloud removes the machines of a failed zone).
    let control_zone = zone_of(&all, CONTROL_PLANE_NODE);
    let (zone, members) = per_zone
        .iter()
        .filter(|(zone, _)| **zone != control_zone)
        // Of the zones holding the most members, the one with the most nodes: several nodes lost at once.
        .max_by_key(|(zone, members)| (members.len(), all.iter().filter(|n| zone_of(&all, &n.name) == **zone).count()))
        .map(|(zone, members)| (zone.to_string(), members.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>()))
        .context("no zone besides the control plane's holds a member")?;
    let zone_nodes: BTreeSet<String> =
        all.iter().filter(|node| zone_of(&all, &node.name) == zone).map(|node| node.name.clone()).collect();

    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "zone-loss");
    checker.wait_for_writes(20).await?;
    let gone = Gone::of(&client, n, &members).await?;
    let mut lost = Vec::new();
    for node in &zone_nodes {
        lost.push(lose(node, true).await?);
    }
    let now = wait_replaced(&client, n, 5, &gone, &zone_nodes).await?;
    eprintln!("zone {zone} ({zone_nodes:?}) lost with members {members:?}; now {now:?}");
    // With the Node objects gone, the operator knew the volumes went with them, and said so.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), n);
    let said: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .filter(|m| m.contains("which no longer exists"))
        .collect();
    ensure!(!said.is_empty(), "no event says a member's volume went with its node");
    eprintln!("{}", said.join("\n"));
    bring_back_and_watch(&client, n, 5, lost, &gone).await?;
    let verified = checker.stop_and_verify().await?;
    eprintln!("{verified} acknowledged writes read back");
    ns.delete().await
}

/// `kubectl drain NODE`, bounded: whether it was held by a disruption budget on its way, and its output.
async fn drain(node: &str) -> Result<(bool, String)> {
    let mut command = tokio::process::Command::new(kubernetes_bin()?.join("kubectl"));
    command
        .arg("--kubeconfig")
        .arg(kubeconfig()?)
        .args(["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=240s"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(270), command.output())
        .await
        .context("kubectl drain outlived its own timeout")?
        .context("running kubectl drain")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("kubectl drain {node} failed ({}): {text}", output.status);
    }
    Ok((text.contains("disruption budget"), text))
}

/// Uncordons every node, whatever the scenario's outcome.
struct Uncordon(Vec<String>);

impl Drop for Uncordon {
    fn drop(&mut self) {
        for node in &self.0 {
            if let Err(e) = kubectl(&["uncordon", node]) {
                eprintln!("uncordoning {node}: {e:#}");
            }
        }
    }
}

#[tokio::test]
async fn draining_every_node_in_turn_waits_for_the_budget_and_keeps_quorum() -> Result<()> {
    let client = client().await?;
    let all = require_nodes(&client, 3).await?;
    let _uncordon = Uncordon(all.iter().map(|node| node.name.clone()).collect());
    let ns = settled_cluster(&client, "e2e-drain", 3, None).await?;
    let n = ns.name.as_str();
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "drain");
    checker.wait_for_writes(20).await?;

    // The fewest member pods Kubernetes counted ready at any moment of the drains: the budget's own view.
    let fewest_ready = Arc::new(AtomicUsize::new(usize::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (pods, fewest_ready, done) =
            (Api::<Pod>::namespaced(client.clone(), n), fewest_ready.clone(), done.clone());
        tokio::spawn(async move {
            // Bounded by the drains' own bound (each at most 240 s).
            for _ in 0..(all_drains_bound_secs() * 4) {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(list) = pods.list(&ListParams::default().labels("etcd.cloud.io/cluster=demo")).await {
                    let ready = list.items.iter().filter(|p| pod_ready(p)).count();
                    fewest_ready.fetch_min(ready, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Each drain starts as soon as the previous node is uncordoned: the member it evicted is still coming
    // back on that node (its volume is there), and the budget holds the next eviction until it is ready.
    let mut held = Vec::new();
    for node in all.iter().map(|node| node.name.as_str()) {
        let (was_held, output) = drain(node).await?;
        if was_held {
            held.push(node.to_string());
        }
        eprintln!("drained {node}{}", if was_held { " (held by the disruption budget first)" } else { "" });
        if std::env::var_os("E2E_VERBOSE").is_some() {
            eprintln!("{output}");
        }
        kubectl_off_thread(&["uncordon", node]).await?;
    }
    wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    done.store(true, Ordering::SeqCst);
    watcher.await?;

    let fewest = fewest_ready.load(Ordering::SeqCst);
    ensure!(fewest != usize::MAX, "the watcher never listed the member pods");
    ensure!(fewest >= 2, "only {fewest} of 3 members were ready at one point: the drains took out the quorum");
    ensure!(!held.is_empty(), "no drain was held by the disruption budget: the scenario did not test it");
    let verified = checker.stop_and_verify().await?;
    eprintln!("drains held by the budget: {held:?}; {verified} acknowledged writes read back");
    ns.delete().await
}

fn all_drains_bound_secs() -> u64 {
    // Six nodes at most, 240 s each, and the settle after.
    6 * 240 + CHANGE_TIMEOUT.as_secs()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
