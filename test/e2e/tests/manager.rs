//! The manager as deployed from config/: its endpoints, its status writes, and leader election handing over
//! when the leader dies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_op_test_support::{
    OPERATOR_NAMESPACE, TestNamespace, delete_cluster_role_binding, delete_pod, https_get, kubectl,
    service_account_token, wait_for,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

const LEASE: &str = "etcd-op.etcd.cloud.io";
const DEPLOYMENT: &str = "etcd-op-controller-manager";
const METRICS_PORT: u16 = 8443;
/// config/rbac's metrics-reader role, with config/default's name prefix.
const METRICS_READER_ROLE: &str = "etcd-op-metrics-reader";

/// A plain HTTP/1.0 GET with a deadline; returns status code and body.
fn http_get(address: &str, path: &str) -> Result<(u16, String)> {
    let addr = address.parse()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response.split_whitespace().nth(1).context("no status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

async fn running_operator_pods(client: &kube::Client) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let list = pods.list(&ListParams::default().labels("control-plane=controller-manager")).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect())
}

async fn lease_holder(client: &kube::Client) -> Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    Ok(leases.get_opt(LEASE).await?.and_then(|l| l.spec?.holder_identity))
}

#[tokio::test]
async fn endpoints_serve_metrics_and_probes() -> Result<()> {
    let client = etcd_op_test_support::client().await?;
    let pods = wait_for("a ready operator pod", Duration::from_secs(120), || async {
        let pods = running_operator_pods(&client).await?;
        Ok((!pods.is_empty()).then_some(pods))
    })
    .await?;
    let ip = pods[0].status.as_ref().and_then(|s| s.pod_ip.clone()).context("operator pod IP")?;
    let (code, body) = http_get(&format!("{ip}:8081"), "/healthz")?;
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, _) = http_get(&format!("{ip}:8081"), "/readyz")?;
    assert_eq!(code, 200);
    // /metrics is HTTPS for authorized readers only: no token, a token the API server does not accept, and a
    // service account without the metrics-reader role are each refused; one bound to it is served.
    let metrics_address = format!("{ip}:{METRICS_PORT}");
    let get = |token: Option<String>| {
        let address = metrics_address.clone();
        async move { https_get(&address, "/metrics", token.as_deref(), Duration::from_secs(10)).await }
    };
    assert!(http_get(&metrics_address, "/metrics").is_err(), "plain HTTP is not served on the metrics port");
    let (code, _) = get(None).await?;
    assert_eq!(code, 401, "no token");
    let (code, _) = get(Some("not-a-token".into())).await?;
    assert_eq!(code, 401, "a token the API server does not accept");
    let ns = TestNamespace::create(&client, "e2e-metrics").await?;
    let outsider = service_account_token(&ns.name, "outsider", None)?;
    let (code, _) = get(Some(outsider)).await?;
    assert_eq!(code, 403, "a service account without the metrics-reader role");
    let reader = service_account_token(&ns.name, "scraper", Some(METRICS_READER_ROLE))?;
    let served = get(Some(reader)).await;
    delete_cluster_role_binding(&ns.name, "scraper")?;
    let (code, metrics) = served?;
    assert_eq!(code, 200, "a service account bound to the metrics-reader role: {metrics}");
    for name in [
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_time_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "leader_election_master_status",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    ns.delete().await
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies() -> Result<()> {
    let client = etcd_op_test_support::client().await?;
    kubectl(&["-n", OPERATOR_NAMESPACE, "scale", &format!("deployment/{DEPLOYMENT}"), "--replicas=2"])?;
    let outcome = async {
        let pods = wait_for("two ready operator replicas", Duration::from_secs(180), || async {
            let pods = running_operator_pods(&client).await?;
            Ok((pods.len() == 2).then_some(pods))
        })
        .await?;
        let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
        let holder = wait_for("a lease holder among the replicas", Duration::from_secs(60), || async {
            let holder = lease_holder(&client).await?;
            Ok(holder.filter(|h| names.iter().any(|n| h.starts_with(n.as_str()))))
        })
        .await?;
        let leader = names.iter().find(|n| holder.starts_with(n.as_str())).context("leader pod")?.clone();
        let standby = names.iter().find(|n| **n != leader).context("standby pod")?.clone();
        // The leader dies without a chance to release the lease.
        delete_pod(&client, OPERATOR_NAMESPACE, &leader).await?;
        // The standby was waiting; the Deployment's replacement pod may race it, and either may win.
        let new_holder = wait_for("another replica to take the lease", Duration::from_secs(90), || async {
            Ok(lease_holder(&client).await?.filter(|h| !h.starts_with(leader.as_str())))
        })
        .await?;
        if new_holder.starts_with(leader.as_str()) {
            bail!("the dead leader {leader} still holds the lease");
        }
        eprintln!("lease passed from {leader} to {new_holder} (standby was {standby})");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    kubectl(&["-n", OPERATOR_NAMESPACE, "scale", &format!("deployment/{DEPLOYMENT}"), "--replicas=1"])?;
    kubectl(&["-n", OPERATOR_NAMESPACE, "rollout", "status", &format!("deployment/{DEPLOYMENT}"), "--timeout=180s"])?;
    outcome
}

#[tokio::test]
async fn graceful_shutdown_releases_the_lease() -> Result<()> {
    let client = etcd_op_test_support::client().await?;
    wait_for("a lease holder", Duration::from_secs(120), || async { lease_holder(&client).await }).await?;
    kubectl(&["-n", OPERATOR_NAMESPACE, "scale", &format!("deployment/{DEPLOYMENT}"), "--replicas=0"])?;
    // With no replica left to take it, a released lease stays without a holder.
    let released = wait_for("the lease to be released on SIGTERM", Duration::from_secs(60), || async {
        let pods = running_operator_pods(&client).await?;
        let holder = lease_holder(&client).await?;
        Ok((pods.is_empty() && holder.as_deref().is_none_or(str::is_empty)).then_some(()))
    })
    .await;
    kubectl(&["-n", OPERATOR_NAMESPACE, "scale", &format!("deployment/{DEPLOYMENT}"), "--replicas=1"])?;
    // Ready, not just running: the scenarios after this one need its admission webhook.
    kubectl(&["-n", OPERATOR_NAMESPACE, "rollout", "status", &format!("deployment/{DEPLOYMENT}"), "--timeout=180s"])?;
    released
}
