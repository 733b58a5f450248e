//! The NetworkPolicy the operator writes for each cluster, enforced by the test bed's kube-router: the client
//! port admits the operator and the pods `spec.allowedClients` selects, the peer port admits the cluster's own
//! members only, and the metrics port admits anyone. Probes run from pods of the test bed's `echo` image,
//! which doubles as an HTTP client; a cluster on plaintext ports lets that client speak to each port.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_op_e2e::{CREATE_TIMEOUT, TestNamespace, WriteChecker, client, client_endpoint, create_cluster, wait_settled};
use etcd_op_test_support::{create, exec, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

const VERSION: &str = "3.6.16";
const WAIT: Duration = Duration::from_secs(120);

/// A pod that only sleeps in the echo server, labelled so `allowedClients` can select it or not.
fn prober(name: &str, role: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"e2e-role": role}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "echo", "image": "localhost/echo:dev", "imagePullPolicy": "Never"}]
        }
    })
}

/// `GET url` from inside `pod`: true when it answered 2xx within the echo tool's 5 s timeout.
fn reaches(ns: &str, pod: &str, url: &str) -> bool {
    exec(ns, pod, None, &["/echo", "get", url]).is_ok()
}

async fn wait_running(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("pod {ns}/{name} to run"), WAIT, || async {
        let pod = pods.get(name).await?;
        Ok((pod.status.and_then(|s| s.phase).as_deref() == Some("Running")).then_some(()))
    })
    .await
}

#[tokio::test]
async fn the_peer_port_admits_members_only_and_the_client_port_the_selected_pods() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-netpol").await?;
    let n = ns.name.as_str();
    create::<Pod>(&client, n, prober("allowed", "client")).await?;
    create::<Pod>(&client, n, prober("other", "bystander")).await?;
    create_cluster(
        &client,
        n,
        "guarded",
        json!({
            "size": 3, "version": VERSION,
            "tls": {"peer": {"enabled": false}, "client": {"enabled": false}},
            "allowedClients": [{"podSelector": {"matchLabels": {"e2e-role": "client"}}}]
        }),
    )
    .await?;
    // Three members formed through the peer port, so the policy let the members reach each other.
    let ec = wait_settled(&client, n, "guarded", 3, VERSION, CREATE_TIMEOUT).await?;
    let selector = ec.status.as_ref().and_then(|s| s.selector.clone()).context("status.selector")?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "guarded").await?, "netpol");
    wait_running(&client, n, "allowed").await?;
    wait_running(&client, n, "other").await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let ips: Vec<String> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.status.and_then(|s| s.pod_ip))
        .collect();
    assert_eq!(ips.len(), 3, "one address per member: {ips:?}");

    // kube-router applies a policy to a new pod within a sync; wait for the first refusal, then expect
    // every probe to hold.
    let first = ips[0].clone();
    wait_for("the bystander to be kept off the client port", WAIT, || {
        let url = format!("http://{first}:2379/health");
        async move { Ok((!reaches(n, "other", &url)).then_some(())) }
    })
    .await?;
    for ip in &ips {
        let client_port = format!("http://{ip}:2379/health");
        let peer_port = format!("http://{ip}:2380/version");
        let metrics_port = format!("http://{ip}:2381/health");
        wait_for(&format!("the selected pod to reach {client_port}"), WAIT, || {
            let url = client_port.clone();
            async move { Ok(reaches(n, "allowed", &url).then_some(())) }
        })
        .await?;
        assert!(!reaches(n, "other", &client_port), "a pod allowedClients does not select reached {client_port}");
        // The same pod, the same address, another port: the refusal above is the policy's, not a dead route.
        assert!(reaches(n, "other", &metrics_port), "the metrics port is open to anyone: {metrics_port}");
        assert!(!reaches(n, "allowed", &peer_port), "a client reached the peer port {peer_port}");
        assert!(!reaches(n, "other", &peer_port), "a bystander reached the peer port {peer_port}");
    }

    let verified = checker.stop_and_verify().await?;
    assert!(verified > 0, "the operator's client and the checker kept writing through the policy");
    ns.delete().await
}
