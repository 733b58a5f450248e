//! Tests of the local test bed itself: workloads run, Services route, DNS resolves, volumes keep data,
//! readiness gates endpoints, and the fault hooks do what they say. Run against the local cluster:
//!   cargo test -p etcd-op-test-support
//! (it starts the cluster if it is not up).

use std::time::Duration;

use anyhow::{Result, bail};
use etcd_op_test_support::{
    TestNamespace, client, create, cut_pod_network, delete_pod, exec, heal_pod_network, http_get, kill_container,
    start_kubelet, stop_kubelet, wait_for,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);
const ETCD_IMAGE: &str = "quay.io/coreos/etcd:v3.6.16";

fn echo_deployment(name: &str, replicas: i32, env: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "echo", "image": "localhost/echo:dev", "imagePullPolicy": "Never", "env": env,
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
                    }]
                }
            }
        }
    })
}

fn service(name: &str, port: i32, target: i32) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target}]}})
}

async fn pods_of(client: &Client, ns: &str, app: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(pods.list(&ListParams::default().labels(&format!("app={app}"))).await?.items)
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

async fn wait_deployment_available(client: &Client, ns: &str, name: &str, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("deployment {ns}/{name} to have {replicas} available replicas"), WAIT, || async {
        let d = api.get(name).await?;
        Ok((d.status.and_then(|s| s.available_replicas) == Some(replicas)).then_some(()))
    })
    .await
}

/// Ready addresses of a Service, from its EndpointSlices.
async fn ready_endpoints(client: &Client, ns: &str, service: &str) -> Result<Vec<String>> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let slices = api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await?;
    Ok(slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses.clone())
        .collect())
}

#[tokio::test]
async fn deployment_is_reachable_through_its_service_from_host_and_pods() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "svc").await?;
    create::<Deployment>(&client, &ns.name, echo_deployment("echo", 2, json!([]))).await?;
    let svc: Service = create(&client, &ns.name, service("echo", 80, 8080)).await?;
    wait_deployment_available(&client, &ns.name, "echo", 2).await?;

    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    let pods = pods_of(&client, &ns.name, "echo").await?;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    // The Service routes to both replicas: each answers with its own name.
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    wait_for("the ClusterIP to route to both replicas from the host", WAIT, || {
        let address = format!("{cluster_ip}:80");
        let seen = &seen;
        let names = &names;
        async move {
            let body = http_get(&address, "/", Duration::from_secs(2)).await?;
            let name = body.trim().to_string();
            if !names.contains(&name) {
                bail!("unexpected answer {name:?}");
            }
            seen.borrow_mut().insert(name);
            Ok((seen.borrow().len() == 2).then_some(()))
        }
    })
    .await?;

    // From inside a pod, by DNS name.
    let url = format!("http://echo.{}.svc.cluster.local/", ns.name);
    let from_pod = wait_for("the Service to answer a pod by its DNS name", WAIT, || async {
        Ok(Some(exec(&ns.name, &names[0], None, &["/echo", "get", &url])?))
    })
    .await?;
    assert!(names.contains(&from_pod.trim().to_string()), "answer {from_pod:?}");
    ns.delete().await
}

#[tokio::test]
async fn failing_readiness_removes_the_endpoint() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "ready").await?;
    let env = json!([{"name": "FAIL_READY_FILE", "value": "/tmp/unready"}]);
    create::<Deployment>(&client, &ns.name, echo_deployment("flaky", 1, env)).await?;
    create::<Service>(&client, &ns.name, service("flaky", 80, 8080)).await?;
    wait_deployment_available(&client, &ns.name, "flaky", 1).await?;
    let pod = pods_of(&client, &ns.name, "flaky").await?.remove(0);
    let ip = pod_ip(&pod).unwrap_or_default();
    wait_for("the ready pod to be an endpoint", WAIT, || async {
        Ok(ready_endpoints(&client, &ns.name, "flaky").await?.contains(&ip).then_some(()))
    })
    .await?;

    exec(&ns.name, &pod.name_any(), None, &["/echo", "touch", "/tmp/unready"])?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    wait_for("the pod to be not Ready and out of the endpoints", WAIT, || async {
        let ready = is_ready(&pods.get(&pod.name_any()).await?);
        let endpoints = ready_endpoints(&client, &ns.name, "flaky").await?;
        Ok((!ready && !endpoints.contains(&ip)).then_some(()))
    })
    .await?;

    exec(&ns.name, &pod.name_any(), None, &["/echo", "rm", "/tmp/unready"])?;
    wait_for("the pod to be an endpoint again", WAIT, || async {
        Ok(ready_endpoints(&client, &ns.name, "flaky").await?.contains(&ip).then_some(()))
    })
    .await?;
    ns.delete().await
}

fn etcd_statefulset(ns: &str) -> serde_json::Value {
    let peer = |i: usize| format!("etcd-{i}=http://etcd-{i}.etcd.{ns}.svc.cluster.local:2380");
    let initial_cluster = (0..3).map(peer).collect::<Vec<_>>().join(",");
    json!({
        "metadata": {"name": "etcd"},
        "spec": {
            "serviceName": "etcd", "replicas": 3, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "etcd"}},
            "template": {
                "metadata": {"labels": {"app": "etcd"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "etcd", "image": ETCD_IMAGE, "imagePullPolicy": "IfNotPresent",
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "command": [
                            "/usr/local/bin/etcd", "--name=$(POD_NAME)", "--data-dir=/var/lib/etcd/data",
                            "--listen-client-urls=http://0.0.0.0:2379", "--listen-peer-urls=http://0.0.0.0:2380",
                            format!("--advertise-client-urls=http://$(POD_NAME).etcd.{ns}.svc.cluster.local:2379"),
                            format!("--initial-advertise-peer-urls=http://$(POD_NAME).etcd.{ns}.svc.cluster.local:2380"),
                            format!("--initial-cluster={initial_cluster}"),
                            "--initial-cluster-state=new", format!("--initial-cluster-token={ns}")
                        ],
                        "ports": [{"name": "client", "containerPort": 2379}, {"name": "peer", "containerPort": 2380}],
                        "readinessProbe": {"httpGet": {"path": "/health", "port": 2379}, "periodSeconds": 2},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "128Mi"}}}
            }]
        }
    })
}

fn etcdctl(ns: &str, pod: &str, args: &[&str]) -> Result<String> {
    let mut command = vec!["/usr/local/bin/etcdctl", "--endpoints=http://127.0.0.1:2379", "--command-timeout=5s"];
    command.extend(args);
    exec(ns, pod, None, &command)
}

async fn wait_statefulset_ready(client: &Client, ns: &str, replicas: i32) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("statefulset {ns}/etcd to have {replicas} ready replicas"), Duration::from_secs(180), || async {
        let s = api.get("etcd").await?;
        Ok((s.status.and_then(|s| s.ready_replicas) == Some(replicas)).then_some(()))
    })
    .await
}

#[tokio::test]
async fn etcd_statefulset_forms_one_cluster_and_keeps_its_data() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "etcd").await?;
    let headless = json!({
        "metadata": {"name": "etcd"},
        "spec": {
            "clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "etcd"},
            "ports": [{"name": "client", "port": 2379}, {"name": "peer", "port": 2380}]
        }
    });
    create::<Service>(&client, &ns.name, headless).await?;
    create::<StatefulSet>(&client, &ns.name, etcd_statefulset(&ns.name)).await?;
    wait_statefulset_ready(&client, &ns.name, 3).await?;

    // Members found each other by their DNS names and formed one cluster.
    let members = wait_for("three started members", WAIT, || async {
        let out = etcdctl(&ns.name, "etcd-0", &["member", "list"])?;
        Ok((out.lines().filter(|l| l.contains(", started, ")).count() == 3).then_some(out))
    })
    .await?;
    for i in 0..3 {
        assert!(members.contains(&format!("etcd-{i}.etcd.{}.svc.cluster.local", ns.name)), "{members}");
    }
    etcdctl(&ns.name, "etcd-0", &["put", "marker", "kept"])?;

    let member_id = |pod: &'static str| {
        let ns = ns.name.clone();
        move || -> Result<String> {
            let status = etcdctl(&ns, pod, &["endpoint", "status", "-w", "json"])?;
            let json: serde_json::Value = serde_json::from_str(&status)?;
            Ok(json[0]["Status"]["header"]["member_id"].to_string())
        }
    };
    let before = member_id("etcd-1")()?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let claim_uid = claims.get("data-etcd-1").await?.uid();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let old_uid = pods.get("etcd-1").await?.uid();

    delete_pod(&client, &ns.name, "etcd-1").await?;
    wait_for("etcd-1 to be recreated and Ready", Duration::from_secs(180), || async {
        let pod = pods.get_opt("etcd-1").await?;
        Ok(pod.filter(|p| p.uid() != old_uid && is_ready(p)).map(|_| ()))
    })
    .await?;
    // Same claim, same member: it restarted from its data rather than joining anew.
    assert_eq!(claims.get("data-etcd-1").await?.uid(), claim_uid);
    assert_eq!(member_id("etcd-1")()?, before);
    let value = wait_for("the key to be readable on etcd-1", WAIT, || async {
        Ok(Some(etcdctl(&ns.name, "etcd-1", &["get", "marker", "--print-value-only", "--consistency=s"])?))
    })
    .await?;
    assert_eq!(value.trim(), "kept");
    ns.delete().await
}

#[tokio::test]
async fn fault_hooks_kill_cut_and_heal() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "faults").await?;
    create::<Deployment>(&client, &ns.name, echo_deployment("victim", 1, json!([]))).await?;
    wait_deployment_available(&client, &ns.name, "victim", 1).await?;
    let pod = pods_of(&client, &ns.name, "victim").await?.remove(0);
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // A killed main process is restarted by the kubelet.
    kill_container(&client, &ns.name, &name, "echo").await?;
    wait_for("the killed container to be restarted and Ready", WAIT, || async {
        let p = pods.get(&name).await?;
        let restarts =
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |cs| cs[0].restart_count);
        Ok((restarts >= 1 && is_ready(&p)).then_some(()))
    })
    .await?;

    // A cut pod cannot be reached; a healed one can.
    let address = format!("{}:8080", pod_ip(&pods.get(&name).await?).unwrap_or_default());
    http_get(&address, "/", Duration::from_secs(2)).await?;
    let veth = cut_pod_network(&client, &ns.name, &name).await?;
    let unreachable = http_get(&address, "/", Duration::from_secs(2)).await;
    heal_pod_network(&veth)?;
    assert!(unreachable.is_err(), "the pod answered while cut off");
    wait_for("the healed pod to answer", WAIT, || async {
        Ok(http_get(&address, "/", Duration::from_secs(2)).await.ok().map(|_| ()))
    })
    .await?;

    // The kubelet stops and comes back; the node is Ready again.
    let stopped = stop_kubelet().await?;
    let healthz = http_get("127.0.0.1:10248", "/healthz", Duration::from_secs(2)).await;
    start_kubelet(stopped)?;
    assert!(healthz.is_err(), "the kubelet still answered after stopping");
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("the kubelet to be healthy and its node Ready", WAIT, || async {
        http_get("127.0.0.1:10248", "/healthz", Duration::from_secs(2)).await?;
        let ready = nodes.list(&ListParams::default()).await?.items.iter().all(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        Ok(ready.then_some(()))
    })
    .await?;
    ns.delete().await
}

#[tokio::test]
async fn a_claim_gets_a_volume_whose_data_goes_with_it() -> Result<()> {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "volume").await?;
    let claim = json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}},
                 "storageClassName": "standard"}
    });
    create::<PersistentVolumeClaim>(&client, &ns.name, claim).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    // `standard` binds at once (with several nodes the default is `local`, which waits for a pod).
    let volume = wait_for("the claim to be bound", WAIT, || async {
        let c = claims.get("data").await?;
        let bound = c.status.and_then(|s| s.phase).as_deref() == Some("Bound");
        Ok(c.spec.and_then(|s| s.volume_name).filter(|_| bound))
    })
    .await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let path = volumes.get(&volume).await?.spec.and_then(|s| s.host_path).map(|h| h.path).unwrap_or_default();
    std::fs::write(std::path::Path::new(&path).join("marker"), "data")?;

    claims.delete("data", &Default::default()).await?;
    wait_for("the volume and its data to be deleted", WAIT, || async {
        let gone = volumes.get_opt(&volume).await?.is_none();
        Ok((gone && !std::path::Path::new(&path).exists()).then_some(()))
    })
    .await?;
    ns.delete().await
}
