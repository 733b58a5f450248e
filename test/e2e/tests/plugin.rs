//! `kubectl etcd` as a person runs it: kubectl finds `kubectl-etcd` on the PATH and hands it the command.
//! Status and members with the database sizes each member reports through a port-forward, defragmentations
//! of one member and of all (the leader last), a snapshot to the cluster's store, and the refusals.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use etcd_op_api::v1::{BackupPhase, EtcdBackup};
use etcd_op_e2e::{
    CREATE_TIMEOUT, TestNamespace, V36, WriteChecker, client, client_endpoint, create_cluster, get_cluster, leader,
    wait_settled,
};
use etcd_op_test_support::{create, kubeconfig, kubernetes_bin, repo_root};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Api;
use serde_json::{Value, json};

/// Where `cargo build -p kubectl-etcd` (run by test/e2e/run.sh) puts the plugin.
fn plugin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from).join("debug")
}

/// Runs `kubectl etcd <args>` in `namespace`; returns standard output, or an error carrying standard error.
fn kubectl_etcd(namespace: &str, args: &[&str]) -> Result<String> {
    let path = std::env::join_paths(
        std::iter::once(plugin_dir()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let output = Command::new(kubernetes_bin()?.join("kubectl"))
        .arg("etcd")
        .args(args)
        .args(["-n", namespace])
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig()?)
        .output()
        .context("running kubectl etcd")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("kubectl etcd {} failed: {stderr}{stdout}", args.join(" "));
    }
    Ok(stdout)
}

fn requested_defragmentations(report: &Value) -> Vec<String> {
    report["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["lastDefragmentation"]["reason"] == "Requested")
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn kubectl_etcd_shows_the_cluster_defragments_on_demand_and_takes_a_snapshot() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-plugin").await?;
    let n = ns.name.as_str();
    create::<PersistentVolumeClaim>(
        &client,
        n,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "snapshots"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await?;
    let spec = json!({"size": 3, "version": V36, "backupStore": {"volume": {"claimName": "snapshots"}}});
    create_cluster(&client, n, "demo", spec).await?;
    wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let checker = WriteChecker::start(client_endpoint(&client, n, "demo").await?, "plugin");
    checker.wait_for_writes(10).await?;

    // Status, as data: every member answered through its port-forward with its database's size and quota.
    let status: Value = serde_json::from_str(&kubectl_etcd(n, &["status", "demo", "-o", "json"])?)?;
    let members = status["members"].as_array().context("members")?;
    ensure!(members.len() == 3, "three members: {status}");
    for m in members {
        ensure!(m["unreachable"].is_null(), "{} answered: {}", m["name"], m["unreachable"]);
        ensure!(m["dbSizeBytes"].as_i64().is_some_and(|b| b > 0), "{} has a database size: {m}", m["name"]);
        ensure!(m["quotaBytes"].as_u64().is_some_and(|b| b > 0), "{} has a quota: {m}", m["name"]);
    }
    ensure!(members.iter().filter(|m| m["role"] == "leader").count() == 1, "one leader: {status}");
    ensure!(
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True"),
        "Available: {status}"
    );
    // As a table.
    let table = kubectl_etcd(n, &["status", "demo"])?;
    for expected in ["NEXT STEP:", "DB SIZE", "demo-0", "demo-1", "demo-2", "QuorumHealthy"] {
        ensure!(table.contains(expected), "the table shows {expected}:\n{table}");
    }
    let members: Value = serde_saphyr::from_str(&kubectl_etcd(n, &["members", "demo", "-o", "yaml"])?)?;
    ensure!(members["members"].as_array().is_some_and(|m| m.len() == 3), "members as YAML: {members}");

    // One member, then all: each done once, the leader last.
    kubectl_etcd(n, &["defrag", "demo", "demo-1", "--wait", "180"])?;
    let after_one: Value = serde_json::from_str(&kubectl_etcd(n, &["status", "demo", "-o", "json"])?)?;
    ensure!(requested_defragmentations(&after_one) == ["demo-1"], "only demo-1: {after_one}");
    let leader_before = leader(&get_cluster(&client, n, "demo").await?).context("a leader")?;
    // The request is made in a later second than the one before, so every member is due again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    kubectl_etcd(n, &["defrag", "demo", "--wait", "240"])?;
    let ec = get_cluster(&client, n, "demo").await?;
    let records: Vec<(String, k8s_openapi::jiff::Timestamp)> = ec
        .status
        .iter()
        .flat_map(|s| &s.members)
        .filter_map(|m| Some((m.name.clone(), m.last_defragmentation.as_ref()?.time.0)))
        .collect();
    ensure!(records.len() == 3, "every member was defragmented: {records:?}");
    let last = records.iter().max_by_key(|(_, t)| *t).context("a time")?;
    ensure!(last.0 == leader_before, "the leader ({leader_before}) went last: {records:?}");

    // A snapshot to the cluster's store.
    let stored: Value = serde_json::from_str(
        &kubectl_etcd(n, &["snapshot", "demo", "--name", "by-hand", "-o", "json"])?
            .lines()
            .skip_while(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    ensure!(stored["location"].as_str().is_some_and(|l| l.starts_with("pvc://snapshots/")), "stored: {stored}");
    let backup = Api::<EtcdBackup>::namespaced(client.clone(), n).get("by-hand").await?;
    ensure!(backup.status.and_then(|s| s.phase) == Some(BackupPhase::Succeeded), "the EtcdBackup succeeded");

    // Refusals say what is wrong.
    let refused = kubectl_etcd(n, &["defrag", "demo", "demo-9", "--wait", "0"]).err().context("demo-9 refused")?;
    ensure!(format!("{refused:#}").contains("has no member demo-9"), "{refused:#}");
    let refused = kubectl_etcd(n, &["status", "nosuch"]).err().context("nosuch refused")?;
    ensure!(format!("{refused:#}").contains("reading EtcdCluster nosuch"), "{refused:#}");

    let written = checker.stop_and_verify().await?;
    eprintln!("plugin: {written} acknowledged writes verified");
    ns.delete().await
}
