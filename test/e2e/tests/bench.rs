//! Benchmarks on the local cluster, run by `make bench` (ignored by plain `cargo test`). Each prints its
//! figures as medians of several runs; none asserts a time, since speed is measured here and never gated.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_op_e2e::{CHANGE_TIMEOUT, CREATE_TIMEOUT, TestNamespace, client, create_cluster, get_cluster, wait_settled};
use etcd_op_test_support::{
    OPERATOR_NAMESPACE, delete_cluster_role_binding, delete_pod, https_get, kubectl, service_account_token, wait_for,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use serde_json::json;

const RUNS: usize = 3;
const VERSION: &str = "3.6.16";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(what: &str, samples: &[Duration]) {
    let shown: Vec<String> = samples.iter().map(|d| format!("{:.1}s", d.as_secs_f64())).collect();
    println!(
        "BENCH {what}: median {:.1}s over {} runs ({})",
        median(samples.to_vec()).as_secs_f64(),
        samples.len(),
        shown.join(", ")
    );
}

async fn operator_pod(client: &kube::Client) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    pods.list(&ListParams::default().labels("control-plane=controller-manager"))
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .context("no operator pod")
}

/// Reads the operator's own process metrics from its /metrics endpoint, with `token`.
async fn operator_process(client: &kube::Client, token: &str) -> Result<(f64, f64)> {
    let pod = operator_pod(client).await?;
    let ip = pod.status.and_then(|s| s.pod_ip).context("operator pod IP")?;
    let (code, body) = https_get(&format!("{ip}:8443"), "/metrics", Some(token), Duration::from_secs(10)).await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}: {body}");
    let value = |name: &str| -> Option<f64> {
        body.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().last()?.parse().ok())
    };
    Ok((
        value("process_resident_memory_bytes").context("resident memory")?,
        value("process_cpu_seconds_total").context("cpu seconds")?,
    ))
}

/// Write requests the API server has served, by resource, from its own metrics.
fn api_writes() -> Result<f64> {
    api_requests(&["POST", "PUT", "PATCH", "APPLY", "DELETE"])
}

/// GETs and LISTs of what the operator reads (watches aside): at rest, the control plane's own components read
/// through their informers' watches, so what counts here is mostly the operator's polling.
fn api_reads() -> Result<f64> {
    api_requests(&["GET", "LIST"])
}

/// The API server's request count for `verbs` on the kinds the operator touches.
fn api_requests(verbs: &[&str]) -> Result<f64> {
    let metrics = kubectl(&["get", "--raw", "/metrics"])?;
    let touched = [
        "etcdclusters",
        "etcdbackups",
        "etcdbackupschedules",
        "pods",
        "persistentvolumeclaims",
        "services",
        "poddisruptionbudgets",
        "networkpolicies",
        "secrets",
        "events",
    ];
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| verbs.iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
        .filter(|l| touched.iter().any(|r| l.contains(&format!("resource=\"{r}\""))))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum())
}

/// Waits until no namespace is being deleted: the garbage collector's deletions of an earlier run's objects
/// would count as the operator's idle writes.
async fn wait_until_quiet(client: &kube::Client) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_for("no namespace to be terminating", Duration::from_secs(300), || async {
        let list = namespaces.list(&ListParams::default()).await?;
        let terminating = list.items.iter().any(|n| n.metadata.deletion_timestamp.is_some());
        Ok((!terminating).then_some(()))
    })
    .await?;
    // The operator's last reconciles of what was deleted.
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

/// After a fault: the operator sees the 3-member cluster `b` disturbed, then it settles again.
async fn wait_unsettled_then_settled(client: &kube::Client, n: &str) -> Result<()> {
    wait_for("the fault to be seen", Duration::from_secs(30), || async {
        let ec = get_cluster(client, n, "b").await?;
        Ok((!etcd_op_e2e::settled(&ec, 3, VERSION)).then_some(()))
    })
    .await?;
    wait_settled(client, n, "b", 3, VERSION, CHANGE_TIMEOUT).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "benchmark: run with make bench"]
async fn bench_create_heal_scale() -> Result<()> {
    let client = client().await?;
    let (mut create, mut heal, mut quorum, mut scale) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut scale_breakdown: Vec<Vec<(String, Duration)>> = Vec::new();
    let mut create_plaintext = Vec::new();
    for run in 0..RUNS {
        let ns = TestNamespace::create(&client, "bench").await?;
        let n = ns.name.as_str();
        // The plaintext figure is the one a TLS cluster is held to.
        let started = Instant::now();
        let plaintext =
            json!({"size": 3, "version": VERSION, "tls": {"peer": {"enabled": false}, "client": {"enabled": false}}});
        create_cluster(&client, n, "plain", plaintext).await?;
        wait_settled(&client, n, "plain", 3, VERSION, CREATE_TIMEOUT).await?;
        create_plaintext.push(started.elapsed());
        kubectl(&["-n", n, "delete", "etcdcluster/plain", "--wait=false"])?;

        let started = Instant::now();
        create_cluster(&client, n, "b", json!({"size": 3, "version": VERSION})).await?;
        wait_settled(&client, n, "b", 3, VERSION, CREATE_TIMEOUT).await?;
        create.push(started.elapsed());

        let ec = get_cluster(&client, n, "b").await?;
        let victim = ec
            .status
            .as_ref()
            .and_then(|s| s.members.iter().find(|m| Some(&m.name) != s.leader.as_ref()))
            .map(|m| m.name.clone())
            .context("a follower")?;
        let started = Instant::now();
        delete_pod(&client, n, &victim).await?;
        wait_unsettled_then_settled(&client, n).await?;
        heal.push(started.elapsed());

        // A quorum of member pods at once, the leader among them: the cluster cannot serve until they return.
        let ec = get_cluster(&client, n, "b").await?;
        let status = ec.status.as_ref().context("status")?;
        let mut victims: Vec<String> = status.leader.iter().cloned().collect();
        victims.extend(status.members.iter().map(|m| m.name.clone()).filter(|m| Some(m) != status.leader.as_ref()));
        victims.truncate(2);
        let started = Instant::now();
        for victim in &victims {
            delete_pod(&client, n, victim).await?;
        }
        wait_unsettled_then_settled(&client, n).await?;
        quorum.push(started.elapsed());

        // A scale from rest: etcd refuses membership changes until every voter has been connected for 5 s,
        // and two members were just restarted (that wait is etcd's rule; the breakdown shows it when it comes).
        tokio::time::sleep(Duration::from_secs(6)).await;
        let started = Instant::now();
        let scale_began = Timestamp::now();
        kubectl(&["-n", n, "scale", "etcdcluster/b", "--replicas=5"])?;
        wait_settled(&client, n, "b", 5, VERSION, CHANGE_TIMEOUT).await?;
        scale.push(started.elapsed());
        let (phases, decisions) = scale_phases(&client, n, scale_began).await?;
        for line in &decisions {
            eprintln!("run {run}: scale decision {line}");
        }
        scale_breakdown.push(phases);
        eprintln!(
            "run {run}: create plaintext {:?}, create TLS {:?}, heal {:?}, quorum back {:?}, scale {:?}",
            create_plaintext[run], create[run], heal[run], quorum[run], scale[run]
        );
        ns.delete().await?;
    }
    report("3-member plaintext cluster from kubectl apply to Available", &create_plaintext);
    report("3-member TLS cluster (the default) from kubectl apply to Available", &create);
    report("member pod deleted to cluster fully healthy", &heal);
    report("2 of 3 member pods (the leader among them) deleted to Available and fully healthy", &quorum);
    report("scale 3 -> 5", &scale);
    // Each phase's median over the runs, in the order the phases happen.
    if let Some(first) = scale_breakdown.first() {
        for (i, (phase, _)) in first.iter().enumerate() {
            let samples: Vec<Duration> = scale_breakdown.iter().filter_map(|run| Some(run.get(i)?.1)).collect();
            report(&format!("scale 3 -> 5, phase: {phase}"), &samples);
        }
    }
    Ok(())
}

/// Where the time of a scale 3 → 5 went, member by member: from the operator's decisions (its log, to the
/// microsecond) and the new pods' own times (to the second). Returns each phase's length, and the decisions
/// with their offsets from `began`.
async fn scale_phases(
    client: &kube::Client,
    n: &str,
    began: Timestamp,
) -> Result<(Vec<(String, Duration)>, Vec<String>)> {
    let logs = kubectl(&[
        "-n",
        OPERATOR_NAMESPACE,
        "logs",
        "deployment/etcd-op-controller-manager",
        &format!("--since-time={}", Timestamp::from_second(began.as_second() - 1)?),
    ])?;
    // (time, step, reason) of every decision for this namespace, in order.
    let decisions: Vec<(Timestamp, String, String)> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["message"] == "decided" && v["namespace"] == n && v["cluster"] == "b")
        .filter_map(|v| {
            let time: Timestamp = v["timestamp"].as_str()?.parse().ok()?;
            Some((time, v["step"].as_str()?.to_string(), v["reason"].as_str()?.to_string()))
        })
        .filter(|(time, _, _)| *time >= began)
        .collect();
    let offset = |t: Timestamp| -> Duration {
        Duration::from_micros(u64::try_from(t.duration_since(began).as_micros()).unwrap_or(0))
    };
    let shown = decisions
        .iter()
        .map(|(t, step, reason)| format!("+{:.2}s {step}: {reason}", offset(*t).as_secs_f64()))
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let mut phases = Vec::new();
    let mut last = began;
    for member in ["b-3", "b-4"] {
        let promoted = decisions
            .iter()
            .find(|(_, step, reason)| step == "PromoteLearner" && reason.contains(member))
            .map(|(t, _, _)| *t)
            .with_context(|| format!("{member} was promoted"))?;
        // AddLearner names no member: this member's are those between the last promotion and its own. The
        // first is when the operator decided to add it; any after it are etcd's refusals, tried again.
        let adds: Vec<Timestamp> = decisions
            .iter()
            .filter(|(t, step, _)| step == "AddLearner" && *t >= last && *t <= promoted)
            .map(|(t, _, _)| *t)
            .collect();
        let (Some(first_add), Some(last_add)) = (adds.first().copied(), adds.last().copied()) else {
            anyhow::bail!("no AddLearner decision for {member}");
        };
        let pod = pods.get(member).await?;
        let running = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .find(|c| c.name == "etcd")
            .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| t.0)
            .with_context(|| format!("{member}'s etcd started"))?
            .max(last_add);
        phases.push((format!("{member}: until the operator decided to add it"), span_between(last, first_add)));
        phases.push((format!("{member}: etcd refusing the addition, tried again"), span_between(first_add, last_add)));
        phases.push((
            format!("{member}: added until its etcd started (volume, pod, container)"),
            span_between(last_add, running),
        ));
        phases.push((
            format!("{member}: started until promoted (joining, catching up)"),
            span_between(running, promoted),
        ));
        last = promoted;
    }
    let settled = decisions.iter().rev().find(|(_, step, _)| step == "None").map_or(last, |(t, _, _)| *t);
    phases.push(("last promotion until the cluster is settled".to_string(), span_between(last, settled)));
    Ok((phases, shown))
}

fn span_between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(to.duration_since(from).as_millis()).unwrap_or(0))
}

/// The operator's memory, CPU, and the API writes and reads over one quiet minute.
async fn measure_idle(client: &kube::Client, token: &str, label: &str) -> Result<()> {
    wait_until_quiet(client).await?;
    let (_, cpu_before) = operator_process(client, token).await?;
    let (writes_before, reads_before) = (api_writes()?, api_reads()?);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (rss, cpu_after) = operator_process(client, token).await?;
    let (writes, reads) = (api_writes()? - writes_before, api_reads()? - reads_before);
    println!(
        "BENCH idle, {label}: resident memory {:.1} MiB, CPU {:.3} s per minute, API writes per minute {writes}, \
         API reads per minute {reads}",
        rss / 1_048_576.0,
        cpu_after - cpu_before
    );
    Ok(())
}

/// Paused clusters beside the one that runs, for the idle cost at scale.
const PAUSED_CLUSTERS: usize = 1000;

#[tokio::test]
#[ignore = "benchmark: run with make bench"]
async fn bench_idle_cost() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "bench-idle").await?;
    let n = ns.name.as_str();
    let token = service_account_token(n, "scraper", Some("etcd-op-metrics-reader"))?;
    create_cluster(&client, n, "one", json!({"size": 1, "version": VERSION})).await?;
    wait_settled(&client, n, "one", 1, VERSION, CREATE_TIMEOUT).await?;
    measure_idle(&client, &token, "1 cluster").await?;

    let names: Vec<String> = (0..PAUSED_CLUSTERS).map(|i| format!("paused-{i:04}")).collect();
    let created: Vec<Result<()>> = futures::stream::iter(names.iter().map(|name| {
        let client = client.clone();
        async move {
            create_cluster(&client, n, name, json!({"size": 3, "version": VERSION, "paused": true})).await?;
            Ok(())
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    created.into_iter().collect::<Result<Vec<()>>>()?;
    wait_for("every paused cluster to report Paused", Duration::from_secs(900), || async {
        let clusters: Api<etcd_op_api::v1::EtcdCluster> = Api::namespaced(client.clone(), n);
        let list = clusters.list(&ListParams::default()).await?;
        let paused = list
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(etcd_op_api::v1::Phase::Paused))
            .count();
        Ok((paused == PAUSED_CLUSTERS).then_some(()))
    })
    .await?;
    measure_idle(&client, &token, &format!("{} clusters ({PAUSED_CLUSTERS} paused)", PAUSED_CLUSTERS + 1)).await?;
    delete_cluster_role_binding(n, "scraper")?;
    ns.delete().await
}

/// Samples the operator's resident memory every 200 ms until `done` resolves; returns `done`'s value and the
/// highest sample.
async fn peak_memory_while<T>(
    client: &kube::Client,
    token: &str,
    done: impl Future<Output = Result<T>>,
) -> Result<(T, f64)> {
    let mut peak: f64 = 0.0;
    tokio::pin!(done);
    loop {
        tokio::select! {
            value = &mut done => return Ok((value?, peak)),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Ok((rss, _)) = operator_process(client, token).await {
                    peak = peak.max(rss);
                }
            }
        }
    }
}

#[tokio::test]
#[ignore = "benchmark: run with make bench"]
async fn bench_backup_and_restore_of_a_256_mib_database() -> Result<()> {
    use etcd_op_api::v1::{BackupPhase, EtcdBackup};
    let s3 = etcd_op_test_support::start_s3proxy()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "bench-backup").await?;
    let n = ns.name.as_str();
    let token = service_account_token(n, "scraper", Some("etcd-op-metrics-reader"))?;
    let storage = json!({"volumeClaimTemplate": {"size": "4Gi"}});
    create_cluster(&client, n, "big", json!({"size": 3, "version": VERSION, "storage": storage})).await?;
    wait_settled(&client, n, "big", 3, VERSION, CREATE_TIMEOUT).await?;
    let endpoint = etcd_op_e2e::client_endpoint(&client, n, "big").await?;
    let mut etcd = etcd_op_e2e::connect(&endpoint).await?;
    let value = vec![b'x'; 1024 * 1024];
    for i in 0..256 {
        etcd.put(format!("/bench/{i:04}"), value.clone(), None).await?;
    }
    let size = etcd.status().await?.db_size();
    println!("BENCH backup: database of {:.0} MiB", size as f64 / 1_048_576.0);

    etcd_op_test_support::create::<k8s_openapi::api::core::v1::Secret>(
        &client,
        n,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "store"},
               "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}}),
    )
    .await?;
    let (idle_rss, _) = operator_process(&client, &token).await?;
    let started = Instant::now();
    etcd_op_test_support::create::<EtcdBackup>(
        &client,
        n,
        json!({"apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackup", "metadata": {"name": "big"},
               "spec": {"clusterName": "big", "store": {"s3": {"endpoint": s3.endpoint, "bucket": s3.bucket,
                        "prefix": format!("bench/{n}"), "credentialsSecret": {"name": "store"}}}}}),
    )
    .await?;
    let backups: Api<EtcdBackup> = Api::namespaced(client.clone(), n);
    let (backup, peak) = peak_memory_while(&client, &token, async {
        wait_for("the backup to end", Duration::from_secs(600), || async {
            let b = backups.get("big").await?;
            Ok(b.status.as_ref().and_then(|s| s.phase).filter(|p| p.is_final()).map(|_| b.clone()))
        })
        .await
    })
    .await?;
    let took = started.elapsed();
    let status = backup.status.context("status")?;
    anyhow::ensure!(status.phase == Some(BackupPhase::Succeeded), "the backup failed: {:?}", status.message);
    println!(
        "BENCH backup of a {} snapshot to s3proxy, checked: {:.1}s; operator resident memory {:.1} MiB before, peak {:.1} MiB during",
        status.size.unwrap_or_default(),
        took.as_secs_f64(),
        idle_rss / 1_048_576.0,
        peak / 1_048_576.0
    );

    let started = Instant::now();
    let restore =
        json!({"size": 3, "version": VERSION, "storage": storage, "bootstrap": {"restore": {"backupName": "big"}}});
    create_cluster(&client, n, "restored", restore).await?;
    wait_settled(&client, n, "restored", 3, VERSION, CREATE_TIMEOUT).await?;
    println!(
        "BENCH restore of a 3-member cluster from it, kubectl apply to Available: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    delete_cluster_role_binding(n, "scraper")?;
    ns.delete().await
}

/// A database holding 256 MiB, with as much again deleted and compacted away, defragmented on demand: from
/// the `etcd.cloud.io/defragment` annotation to the last member's record, with each member's file before and
/// after. Each member copies its 256 MiB into a new file. The operator goes one member at a time, followers
/// first, and moves leadership before the leader's turn, so this is the sum of three defragmentations and
/// the steps between them.
#[tokio::test]
#[ignore = "benchmark: run with make bench"]
async fn bench_defragment_a_256_mib_database_across_3_members() -> Result<()> {
    use etcd_op_api::v1::ANNOTATION_DEFRAGMENT;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "bench-defrag").await?;
    let n = ns.name.as_str();
    // Room for 256 MiB of data and its write-ahead log, and no defragmentation by need meanwhile.
    let spec = json!({"size": 3, "version": VERSION, "storage": {"volumeClaimTemplate": {"size": "4Gi"}},
                      "maintenance": {"defragmentation": {"enabled": false}}});
    create_cluster(&client, n, "big", spec).await?;
    wait_settled(&client, n, "big", 3, VERSION, CREATE_TIMEOUT).await?;
    let endpoint = etcd_op_e2e::client_endpoint(&client, n, "big").await?;
    let mut etcd = etcd_op_e2e::connect(&endpoint).await?;
    let value = vec![b'x'; 1024 * 1024];
    for i in 0..256 {
        etcd.put(format!("/kept/{i:04}"), value.clone(), None).await?;
    }
    let mut took = Vec::new();
    for run in 0..RUNS {
        for i in 0..256 {
            etcd.put(format!("/bench/{i:04}"), value.clone(), None).await?;
        }
        let deleted = etcd.delete("/bench/", Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
        let revision = deleted.header().context("a response header")?.revision();
        etcd.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await?;

        let asked = Timestamp::now();
        let started = Instant::now();
        kubectl(&["-n", n, "annotate", "etcdcluster/big", &format!("{ANNOTATION_DEFRAGMENT}={asked}"), "--overwrite"])?;
        let ec = wait_for("every member to be defragmented", Duration::from_secs(600), || async {
            let ec = get_cluster(&client, n, "big").await?;
            let members = ec.status.as_ref().map_or(0, |s| s.members.len());
            let done = members == 3 && ec.members_not_defragmented_since(None, asked).is_empty();
            Ok(done.then_some(ec))
        })
        .await?;
        took.push(started.elapsed());
        let mut records = etcd_op_e2e::defragmentations(&ec);
        records.sort_by_key(|(_, d)| d.time.0);
        let shown: Vec<String> = records
            .iter()
            .map(|(name, d)| {
                format!(
                    "{name} +{:.1}s {:.0} -> {:.0} MiB",
                    d.time.0.duration_since(asked).as_secs_f64(),
                    d.size_before as f64 / 1_048_576.0,
                    d.size_after.unwrap_or_default() as f64 / 1_048_576.0
                )
            })
            .collect();
        println!("run {run}: defragmented in {:.1}s: {}", took[run].as_secs_f64(), shown.join(", "));
    }
    report("defragmentation of a 256 MiB database across 3 members, annotation to the last record", &took);
    ns.delete().await
}

/// A node holding a member is lost (kubelet, containers and containerd stopped) until the cluster is healthy
/// again on the remaining nodes, with the member's replacement elsewhere. Needs three nodes (`make bench`
/// grows the local cluster to three for it). Printed whole and without the member threshold, which is the
/// user's choice; the rest is Kubernetes noticing the node (its lease running out) and the operator's
/// replacement.
#[tokio::test]
#[ignore = "benchmark: run with make bench"]
async fn bench_node_lost_to_healthy_on_the_remaining_nodes() -> Result<()> {
    use etcd_op_test_support::{CONTROL_PLANE_NODE, lose_node, nodes};
    const THRESHOLD_SECS: u64 = 30;
    let client = client().await?;
    let all = nodes(&client).await?;
    anyhow::ensure!(all.len() >= 3, "{} node(s): this bench needs 3 (hack/cluster-up.sh --nodes 3)", all.len());
    let (mut total, mut detected, mut replaced) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let ns = TestNamespace::create(&client, "bench-node").await?;
        let n = ns.name.as_str();
        let spec = json!({"size": 3, "version": VERSION, "memberUnhealthyThresholdSeconds": THRESHOLD_SECS});
        create_cluster(&client, n, "b", spec).await?;
        let ec = wait_settled(&client, n, "b", 3, VERSION, CREATE_TIMEOUT).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), n);
        let members = pods.list(&ListParams::default().labels("etcd.cloud.io/cluster=b")).await?.items;
        let (member, node) = members
            .iter()
            .filter_map(|p| Some((p.metadata.name.clone()?, p.spec.as_ref()?.node_name.clone()?)))
            .find(|(_, node)| node != CONTROL_PLANE_NODE)
            .context("every member runs on the control plane's node")?;
        let id = etcd_op_e2e::member_ids(&ec).into_iter().find(|(m, _)| *m == member).and_then(|(_, id)| id);
        let started = Instant::now();
        let lost = lose_node(&node, false)?;
        wait_for("the lost node to be marked not ready", CHANGE_TIMEOUT, || async {
            let ready = nodes(&client).await?.iter().any(|n| n.name == node && n.ready);
            Ok((!ready).then_some(()))
        })
        .await?;
        detected.push(started.elapsed());
        let removed_at = wait_for("the lost member to be removed", CHANGE_TIMEOUT, || async {
            let ec = get_cluster(&client, n, "b").await?;
            let present = etcd_op_e2e::member_ids(&ec).into_iter().any(|(_, i)| i.is_some() && i == id);
            Ok((!present).then(Instant::now))
        })
        .await?;
        wait_for("the cluster to be healthy on the remaining nodes", CHANGE_TIMEOUT, || async {
            let ec = get_cluster(&client, n, "b").await?;
            let on_lost = pods
                .list(&ListParams::default().labels("etcd.cloud.io/cluster=b"))
                .await?
                .items
                .iter()
                .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()));
            Ok((etcd_op_e2e::settled(&ec, 3, VERSION) && !on_lost).then_some(()))
        })
        .await?;
        total.push(started.elapsed());
        replaced.push(removed_at.elapsed());
        lost.bring_back()?;
        wait_for("the node to be Ready again", CHANGE_TIMEOUT, || async {
            Ok(nodes(&client).await?.iter().any(|n| n.name == node && n.ready).then_some(()))
        })
        .await?;
        ns.delete().await?;
    }
    report("node lost -> healthy on the remaining nodes", &total);
    let without: Vec<Duration> = total.iter().map(|t| t.saturating_sub(Duration::from_secs(THRESHOLD_SECS))).collect();
    report(&format!("node lost -> healthy, without the {THRESHOLD_SECS}s member threshold"), &without);
    report("  of which: node lost -> marked not ready (Kubernetes)", &detected);
    report("  of which: lost member removed -> replacement healthy", &replaced);
    Ok(())
}
