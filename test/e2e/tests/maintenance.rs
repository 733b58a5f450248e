//! Keeping databases small and their volumes large enough on a live cluster, under the write checker: a
//! defragmentation by need after most keys are deleted, a NOSPACE alarm raised by a small quota and recovered
//! by `noSpace: Recover`, and volumes grown in place with the quota following.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use etcd_op_e2e::{
    CHANGE_TIMEOUT, CREATE_TIMEOUT, EtcdEndpoint, TestNamespace, V36, WriteChecker, client, client_endpoint, connect,
    create_cluster, defragmentations, get_cluster, leader, patch_spec, wait_settled,
};
use etcd_op_test_support::wait_for;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use serde_json::json;

const MIB: usize = 1024 * 1024;
/// How long the operator may take to defragment every member (or recover from NOSPACE) once it is due.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(240);

/// Writes `count` values of 1 MiB under `prefix`; stops at the first refusal. Returns how many were taken.
async fn fill(endpoint: &EtcdEndpoint, prefix: &str, count: usize) -> Result<usize> {
    let mut etcd = connect(endpoint).await?;
    let value = vec![b'x'; MIB];
    for i in 0..count {
        let put =
            tokio::time::timeout(Duration::from_secs(20), etcd.put(format!("{prefix}{i:04}"), value.clone(), None));
        match put.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                eprintln!("write {i} under {prefix} refused: {error}");
                return Ok(i);
            }
            Err(_) => anyhow::bail!("write {i} under {prefix} did not finish in 20 s"),
        }
    }
    Ok(count)
}

/// Deletes every key under `prefix`, then compacts the history up to the current revision, as an application
/// (or etcd's periodic compaction) would: the deleted values' pages become free in every member's file.
async fn delete_and_compact(endpoint: &EtcdEndpoint, prefix: &str) -> Result<i64> {
    let mut etcd = connect(endpoint).await?;
    let deleted = etcd.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
    let revision = deleted.header().context("a response header")?.revision();
    etcd.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await?;
    Ok(revision)
}

#[tokio::test]
async fn deleting_most_keys_gets_every_member_defragmented_the_leader_last() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-defrag").await?;
    let n = ns.name.as_str();
    let spec = json!({
        "size": 3,
        "version": V36,
        "maintenance": {"defragmentation": {"reclaimable": "16Mi", "minIntervalSeconds": 0}},
    });
    create_cluster(&client, n, "demo", spec).await?;
    let ec = wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let leader_before = leader(&ec).context("a leader")?;
    let endpoint = client_endpoint(&client, n, "demo").await?;
    let checker = WriteChecker::start(endpoint.clone(), "defrag");
    checker.wait_for_writes(10).await?;

    ensure!(fill(&endpoint, "/bulk/", 40).await? == 40, "40 MiB fit in a 1Gi volume's quota");
    delete_and_compact(&endpoint, "/bulk/").await?;

    let ec = wait_for("every member to be defragmented", MAINTENANCE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        Ok((defragmentations(&ec).len() == 3).then_some(ec))
    })
    .await?;
    let records = defragmentations(&ec);
    for (member, record) in &records {
        let after = record.size_after.context("the size after")?;
        eprintln!("{member}: {} -> {after} bytes ({})", record.size_before, record.reason);
        ensure!(record.reason == "Reclaimable", "{member} was defragmented for its free space: {record:?}");
        ensure!(record.size_before >= (30 * MIB) as i64, "{member} held the written data: {record:?}");
        ensure!(after < record.size_before / 2, "{member}'s database shrank: {record:?}");
    }
    let leader_record = records.iter().find(|(m, _)| *m == leader_before).context("the leader's record")?;
    ensure!(
        records.iter().all(|(m, r)| *m == leader_before || r.time.0 < leader_record.1.time.0),
        "the leader at the start ({leader_before}) was defragmented last: {records:?}"
    );
    ensure!(leader(&ec).as_deref() != Some(leader_before.as_str()), "leadership moved off it before its turn");
    let ec = wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    ensure!(defragmentations(&ec).len() == 3, "the records stay in status");
    let written = checker.stop_and_verify().await?;
    eprintln!("defragmentation: {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn a_full_database_raises_nospace_and_the_recover_policy_frees_it() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-nospace").await?;
    let n = ns.name.as_str();
    // A 512Mi volume gets the smallest quota, 64 MiB.
    let spec = json!({
        "size": 3,
        "version": V36,
        "storage": {"volumeClaimTemplate": {"size": "512Mi"}},
        "maintenance": {"noSpace": "Recover"},
    });
    create_cluster(&client, n, "demo", spec).await?;
    wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let endpoint = client_endpoint(&client, n, "demo").await?;
    let checker = WriteChecker::start(endpoint.clone(), "nospace");
    checker.wait_for_writes(10).await?;

    let taken = fill(&endpoint, "/bulk/", 100).await?;
    ensure!(taken < 100, "a 64 MiB quota refuses 100 MiB: all {taken} writes were taken");
    let mut etcd = connect(&endpoint).await?;
    let raised = etcd.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await?;
    ensure!(!raised.alarms().is_empty(), "etcd raised NOSPACE after {taken} MiB");
    // What the data was for is done: the keys go (etcd takes deletes under NOSPACE); the operator compacts,
    // defragments and disarms.
    etcd.delete("/bulk/", Some(etcd_client::DeleteOptions::new().with_prefix())).await?;

    let ec = wait_for("NOSPACE to be recovered", MAINTENANCE_TIMEOUT, || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let status = ec.status.as_ref();
        let alarms_gone = status.is_some_and(|s| s.members.iter().all(|m| m.alarms.is_empty()));
        let defragmented = defragmentations(&ec).iter().filter(|(_, r)| r.reason == "NoSpace").count() == 3;
        Ok((alarms_gone && defragmented && status.is_some_and(|s| s.last_compaction.is_some())).then_some(ec))
    })
    .await?;
    let compaction = ec.status.as_ref().and_then(|s| s.last_compaction.clone()).context("a compaction")?;
    eprintln!("compacted up to revision {}", compaction.revision);
    for (member, record) in defragmentations(&ec) {
        eprintln!("{member}: {} -> {:?} bytes", record.size_before, record.size_after);
        let after = record.size_after.context("the size after")?;
        ensure!(after < (32 * MIB) as i64, "{member}'s database is far under its quota again: {record:?}");
    }
    let raised = etcd.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await?;
    ensure!(raised.alarms().is_empty(), "etcd still has {} alarms raised", raised.alarms().len());
    etcd.put("/after-nospace", "written", None).await.context("writes are taken again")?;
    wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    let written = checker.stop_and_verify().await?;
    eprintln!("nospace: {written} acknowledged writes verified");
    ns.delete().await
}

#[tokio::test]
async fn volumes_grown_while_writes_go_on_give_every_member_the_larger_quota() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-grow").await?;
    let n = ns.name.as_str();
    let small = json!({"size": 3, "version": V36, "storage": {"volumeClaimTemplate": {"size": "512Mi"}}});
    create_cluster(&client, n, "demo", small).await?;
    wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let endpoint = client_endpoint(&client, n, "demo").await?;
    let checker = WriteChecker::start(endpoint.clone(), "grow");
    checker.wait_for_writes(10).await?;

    patch_spec(&client, n, "demo", json!({"storage": {"volumeClaimTemplate": {"size": "1Gi"}}})).await?;
    // 1 GiB volumes run with a 320 MiB quota: half of what is left after 384 MiB for the log and snapshots.
    let quota_flag = format!("--quota-backend-bytes={}", 320 * MIB);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), n);
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    wait_for("every volume grown and every member on the new quota", MAINTENANCE_TIMEOUT, || async {
        for member in ["demo-0", "demo-1", "demo-2"] {
            let claim = claims.get(member).await?;
            let capacity = claim.status.and_then(|s| s.capacity).and_then(|c| c.get("storage").cloned());
            if capacity.map(|q| q.0) != Some("1Gi".to_string()) {
                return Ok(None);
            }
            let pod = pods.get(member).await?;
            let args: Vec<String> =
                pod.spec.iter().flat_map(|s| &s.containers).flat_map(|c| c.args.iter().flatten()).cloned().collect();
            if !args.contains(&quota_flag) || pod.metadata.deletion_timestamp.is_some() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    wait_settled(&client, n, "demo", 3, V36, CHANGE_TIMEOUT).await?;
    // More than the old quota held.
    ensure!(fill(&endpoint, "/bulk/", 80).await? == 80, "80 MiB fit in the grown quota");
    let written = checker.stop_and_verify().await?;
    eprintln!("volume growth: {written} acknowledged writes verified");
    ns.delete().await
}
