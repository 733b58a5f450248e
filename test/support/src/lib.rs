//! Test support for the local Kubernetes test bed of `hack/cluster-up.sh`.
//!
//! [`client`] attaches to the cluster named by `KUBECONFIG`, or to the local one in `$ETCD_OP_STATE` (default
//! `/var/lib/etcd-op-local`), starting it once per test run if it is not up. `hack/cluster-up.sh` is re-entrant
//! and holds a file lock, so parallel test binaries share one cluster.
//!
//! Everything waits with a bound: [`wait_for`] polls until a deadline and, on timeout, prints what the cluster
//! looks like (events, pods, operator logs, component logs) before failing.
//!
//! Fault hooks act on the local cluster's processes and network: [`kill_container`], [`delete_pod`],
//! [`cut_pod_network`] / [`heal_pod_network`], [`stop_kubelet`] / [`start_kubelet`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};

/// Label put on every test namespace, so leftovers of aborted runs can be found.
pub const TEST_LABEL: &str = "etcd-op.cloud.io/test";
/// Namespace of the operator's Deployment (`hack/deploy-operator.sh`).
pub const OPERATOR_NAMESPACE: &str = "etcd-op-system";

/// The repository root, found from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The local cluster's state folder.
pub fn state_dir() -> PathBuf {
    std::env::var_os("ETCD_OP_STATE").map_or_else(|| PathBuf::from("/var/lib/etcd-op-local"), PathBuf::from)
}

fn run(command: &mut Command) -> Result<String> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The kubeconfig the tests use: `KUBECONFIG` if set, else the local cluster's, started on first use.
pub fn kubeconfig() -> Result<PathBuf> {
    static KUBECONFIG: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    KUBECONFIG
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(path));
            }
            // A no-op when the cluster is healthy; otherwise it cleans up and starts one. Its output goes to
            // the test's stderr, so a failed start explains itself.
            let status = Command::new(repo_root().join("hack/cluster-up.sh"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("running hack/cluster-up.sh: {e}"))?;
            if !status.success() {
                return Err(format!("hack/cluster-up.sh failed with {status}"));
            }
            Ok(state_dir().join("kubeconfig"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Runs an add-on's start script (`hack/<script>`) once per test process; a no-op while the add-on runs. The
/// local cluster is started first if need be.
fn start_addon(script: &'static str, started: &'static OnceLock<std::result::Result<(), String>>) -> Result<()> {
    kubeconfig()?;
    started
        .get_or_init(|| {
            let status = Command::new(repo_root().join("hack").join(script))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("running hack/{script}: {e}"))?;
            status.success().then_some(()).ok_or_else(|| format!("hack/{script} failed with {status}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Starts the test bed's cert-manager (`hack/cert-manager.sh`) for a scenario that uses it.
pub fn start_cert_manager() -> Result<()> {
    static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    start_addon("cert-manager.sh", &STARTED)
}

/// The test bed's S3-compatible store, as `hack/s3proxy.sh` describes it in `$STATE/s3proxy/env`.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// Where pods and the host reach it.
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Where its filesystem backend keeps the bucket's objects, one file per key.
    pub bucket_dir: PathBuf,
}

/// Starts the test bed's S3-compatible store (`hack/s3proxy.sh`) for a scenario that uses it.
pub fn start_s3proxy() -> Result<S3Settings> {
    static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    start_addon("s3proxy.sh", &STARTED)?;
    let path = state_dir().join("s3proxy/env");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let settings: std::collections::BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let value = |key: &str| -> Result<String> {
        settings.get(key).map(|v| (*v).to_string()).with_context(|| format!("{} has no {key}", path.display()))
    };
    let bucket = value("S3_BUCKET")?;
    Ok(S3Settings {
        endpoint: value("S3_ENDPOINT")?,
        bucket_dir: PathBuf::from(value("S3_DATA_DIR")?).join(&bucket),
        bucket,
        access_key_id: value("S3_ACCESS_KEY_ID")?,
        secret_access_key: value("S3_SECRET_ACCESS_KEY")?,
    })
}

/// A client for the test cluster. Make one per test: a client belongs to the runtime it was made in.
pub async fn client() -> Result<Client> {
    let path = kubeconfig()?;
    let kubeconfig = Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The directory of the test bed's Kubernetes binaries (kubectl), built or found by `hack/build.sh`.
pub fn kubernetes_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        run(Command::new(repo_root().join("hack/build.sh")).arg("kubernetes"))
            .map(|out| PathBuf::from(out.trim()))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Runs the test bed's kubectl against the test cluster and returns its standard output.
pub fn kubectl(args: &[&str]) -> Result<String> {
    let kubeconfig = kubeconfig()?;
    run(Command::new(kubernetes_bin()?.join("kubectl")).arg("--kubeconfig").arg(kubeconfig).args(args))
}

/// Runs a command in a pod's container (`kubectl exec`) and returns its standard output.
pub fn exec(namespace: &str, pod: &str, container: Option<&str>, command: &[&str]) -> Result<String> {
    let mut args = vec!["exec", "-n", namespace, pod];
    if let Some(container) = container {
        args.extend(["-c", container]);
    }
    args.push("--");
    args.extend(command);
    kubectl(&args)
}

/// Polls `predicate` until it yields `Some`, at most until `timeout` has passed. An `Err` from the predicate
/// counts as "not yet" and is reported if the wait times out. On timeout, prints the cluster's state.
pub async fn wait_for<T, F, Fut>(description: &str, timeout: Duration, mut predicate: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match predicate().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    eprintln!("=== timed out after {timeout:?} waiting for {description}");
    dump_cluster_state(None).await;
    match last_error {
        Some(e) => Err(e.context(format!("timed out after {timeout:?} waiting for {description}"))),
        None => Err(anyhow!("timed out after {timeout:?} waiting for {description}")),
    }
}

/// Prints recent events, pods that are not ready, the operator's log and the tail of every component's log.
/// Limited to one namespace's events and pods if given. Never fails: it is what runs when something else did.
pub async fn dump_cluster_state(namespace: Option<&str>) {
    let client = match client().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("(no client for the cluster state: {e:#})");
            dump_component_logs(20);
            return;
        }
    };
    let events: Api<Event> =
        namespace.map_or_else(|| Api::all(client.clone()), |ns| Api::namespaced(client.clone(), ns));
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            let mut items = list.items;
            items.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
            eprintln!("--- events (last 40)");
            for e in items.iter().rev().take(40).rev() {
                eprintln!(
                    "{} {} {}/{}: {} {}",
                    e.type_.as_deref().unwrap_or("-"),
                    e.involved_object.kind.as_deref().unwrap_or("-"),
                    e.involved_object.namespace.as_deref().unwrap_or("-"),
                    e.involved_object.name.as_deref().unwrap_or("-"),
                    e.reason.as_deref().unwrap_or("-"),
                    e.message.as_deref().unwrap_or("").trim()
                );
            }
        }
        Err(e) => eprintln!("(events: {e})"),
    }
    let pods: Api<Pod> = namespace.map_or_else(|| Api::all(client.clone()), |ns| Api::namespaced(client.clone(), ns));
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            eprintln!("--- pods");
            for pod in &list.items {
                let status = pod.status.as_ref();
                let containers: Vec<String> = status
                    .and_then(|s| s.container_statuses.as_ref())
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                let state = c.state.as_ref().map_or("?".to_string(), |s| {
                                    if let Some(w) = &s.waiting {
                                        format!("waiting({})", w.reason.as_deref().unwrap_or(""))
                                    } else if let Some(t) = &s.terminated {
                                        format!("terminated({}, {})", t.reason.as_deref().unwrap_or(""), t.exit_code)
                                    } else {
                                        "running".to_string()
                                    }
                                });
                                format!("{}={} ready={} restarts={}", c.name, state, c.ready, c.restart_count)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                eprintln!(
                    "{}/{} phase={} ip={} {}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    status.and_then(|s| s.phase.as_deref()).unwrap_or("-"),
                    status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
                    containers.join(" ")
                );
            }
        }
        Err(e) => eprintln!("(pods: {e})"),
    }
    let operator: Api<Pod> = Api::namespaced(client, OPERATOR_NAMESPACE);
    if let Ok(list) = operator.list(&ListParams::default()).await {
        for pod in list.items {
            let params = LogParams { tail_lines: Some(50), ..LogParams::default() };
            match operator.logs(&pod.name_any(), &params).await {
                Ok(log) => eprintln!("--- operator log {} (last 50 lines)\n{log}", pod.name_any()),
                Err(e) => eprintln!("(operator log {}: {e})", pod.name_any()),
            }
        }
    }
    dump_component_logs(20);
}

fn dump_component_logs(lines: usize) {
    let Ok(entries) = std::fs::read_dir(state_dir().join("logs")) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let all: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last {lines} lines)", path.display());
            for line in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// A namespace of its own for one test. Delete it at the end of the test with [`TestNamespace::delete`].
pub struct TestNamespace {
    pub name: String,
    client: Client,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<unique suffix>`, labelled [`TEST_LABEL`].
    pub async fn create(client: &Client, prefix: &str) -> Result<Self> {
        Self::create_labelled(client, prefix, &[]).await
    }

    /// Creates a namespace like [`TestNamespace::create`], with extra labels (a Pod Security level, say).
    pub async fn create_labelled(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Result<Self> {
        let api: Api<Namespace> = Api::all(client.clone());
        let mut all = serde_json::Map::from_iter([(TEST_LABEL.to_string(), serde_json::json!("true"))]);
        all.extend(labels.iter().map(|(k, v)| ((*k).to_string(), serde_json::json!(v))));
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"generateName": format!("{prefix}-"), "labels": all}
        }))?;
        let created = api.create(&PostParams::default(), &namespace).await?;
        Ok(Self { name: created.name_any(), client: client.clone(), deleted: false })
    }

    /// Deletes the namespace and waits (bounded) until it is gone.
    pub async fn delete(mut self) -> Result<()> {
        self.deleted = true;
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(&self.name, &DeleteParams::background()).await?;
        let name = self.name.clone();
        wait_for(&format!("namespace {name} to be deleted"), Duration::from_secs(120), || {
            let api = api.clone();
            let name = name.clone();
            async move { Ok(api.get_opt(&name).await?.is_none().then_some(())) }
        })
        .await
    }
}

/// A scenario that fails before its end still removes its namespace, and with it its cluster, so the next
/// scenarios run on a quiet test bed. Without waiting: the deletion is asked for, not watched.
impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let asked = kubectl(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
        if let Err(error) = asked {
            eprintln!("cleaning up namespace {} failed: {error:#}", self.name);
        }
    }
}

/// Deletes a pod now (no grace period), like a node losing it.
pub async fn delete_pod(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.delete(name, &DeleteParams::default().grace_period(0)).await?;
    Ok(())
}

/// The bridge of the local cluster's pods (hack/lib/cluster.sh).
pub const BRIDGE: &str = "etcdop0";

fn containerd_socket() -> PathBuf {
    state_dir().join("containerd/containerd.sock")
}

/// The host pid of a container's main process, from containerd's task list.
pub async fn container_pid(client: &Client, namespace: &str, pod: &str, container: &str) -> Result<u32> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod_object = api.get(pod).await?;
    let id = pod_object
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.container_id.as_deref())
        .and_then(|id| id.strip_prefix("containerd://"))
        .ok_or_else(|| anyhow!("{namespace}/{pod} has no running container {container}"))?
        .to_string();
    let tasks =
        run(Command::new("ctr").arg("--address").arg(containerd_socket()).args(["-n", "k8s.io", "task", "ls"]))?;
    tasks
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.next()?))
        })
        .find(|(task, _)| *task == id)
        .ok_or_else(|| anyhow!("containerd has no task {id} for {namespace}/{pod}/{container}"))?
        .1
        .parse()
        .with_context(|| format!("pid of task {id}"))
}

/// Kills a container's main process with SIGKILL, like an out-of-memory kill or a crash.
pub async fn kill_container(client: &Client, namespace: &str, pod: &str, container: &str) -> Result<()> {
    let pid = container_pid(client, namespace, pod, container).await?;
    run(Command::new("kill").args(["-KILL", &pid.to_string()]))?;
    Ok(())
}

/// Empties the data directory of a PVC's volume on the host, as a replaced or wiped disk would: the volume
/// stays, its contents go. Only volumes of the local cluster's provisioner are touched.
pub async fn wipe_volume(client: &Client, namespace: &str, pvc: &str) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let volume = claims
        .get(pvc)
        .await?
        .spec
        .and_then(|s| s.volume_name)
        .ok_or_else(|| anyhow!("{namespace}/{pvc} is not bound"))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let path = volumes
        .get(&volume)
        .await?
        .spec
        .and_then(|s| s.host_path.map(|h| h.path).or(s.local.map(|l| l.path)))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("volume {volume} is neither a hostPath nor a local volume"))?;
    if path.parent() != Some(state_dir().join("volumes").as_path()) {
        bail!("volume {volume} at {path:?} is not one of the local cluster's volumes");
    }
    for entry in std::fs::read_dir(&path).with_context(|| format!("reading {path:?}"))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The host side of a pod's network link: the veth peer of the pod's eth0.
pub async fn pod_veth(client: &Client, namespace: &str, pod: &str) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod_object = api.get(pod).await?;
    let container = pod_object
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.container_id.is_some()))
        .map(|c| c.name.clone())
        .ok_or_else(|| anyhow!("{namespace}/{pod} has no running container"))?;
    let pid = container_pid(client, namespace, pod, &container).await?;
    // Netlink in the pod's network namespace; /sys would still show the host's links.
    let link = run(Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "ip", "-o", "link", "show", "eth0"]))?;
    let peer_index = link
        .split_whitespace()
        .nth(1)
        .and_then(|name| name.trim_end_matches(':').split_once("@if"))
        .map(|(_, index)| index.to_string())
        .ok_or_else(|| anyhow!("no veth peer in {link:?} for {namespace}/{pod}"))?;
    for entry in std::fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        if std::fs::read_to_string(entry.path().join("ifindex")).is_ok_and(|i| i.trim() == peer_index) {
            // Only ever touch a port of the cluster's bridge, never a host link.
            let master = std::fs::read_link(entry.path().join("master")).ok();
            if master.as_deref().and_then(Path::file_name).is_none_or(|m| m != BRIDGE) {
                bail!("link {:?} of {namespace}/{pod} is not a port of {BRIDGE}", entry.file_name());
            }
            return Ok(entry.file_name().to_string_lossy().into_owned());
        }
    }
    bail!("no host link with index {peer_index} for {namespace}/{pod}")
}

/// Cuts a pod off the network (its host-side link goes down): no traffic to or from it, probes included.
/// Returns the link's name for [`heal_pod_network`].
pub async fn cut_pod_network(client: &Client, namespace: &str, pod: &str) -> Result<String> {
    let veth = pod_veth(client, namespace, pod).await?;
    run(Command::new("ip").args(["link", "set", &veth, "down"]))?;
    Ok(veth)
}

/// Undoes [`cut_pod_network`].
pub fn heal_pod_network(veth: &str) -> Result<()> {
    run(Command::new("ip").args(["link", "set", veth, "up"]))?;
    Ok(())
}

fn kubelet_pid_file() -> PathBuf {
    state_dir().join("pids/kubelet.pid")
}

/// The running kubelet's pid and command line, checked against its pid file.
fn kubelet_process() -> Result<(u32, Vec<String>)> {
    let pid: u32 = std::fs::read_to_string(kubelet_pid_file())
        .context("the kubelet's pid file")?
        .trim()
        .parse()
        .context("the kubelet's pid file")?;
    let cmdline =
        std::fs::read(format!("/proc/{pid}/cmdline")).with_context(|| format!("kubelet {pid} is not running"))?;
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if !args.first().is_some_and(|a| a.ends_with("kubelet")) {
        bail!("pid {pid} is not the kubelet");
    }
    Ok((pid, args))
}

/// A stopped kubelet, to be started again with [`start_kubelet`].
pub struct StoppedKubelet {
    args: Vec<String>,
}

/// Stops the kubelet (SIGTERM, bounded wait, then SIGKILL). Its containers keep running, as on a real node.
pub async fn stop_kubelet() -> Result<StoppedKubelet> {
    let (pid, args) = kubelet_process()?;
    run(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let stopped =
        wait_for("the kubelet to exit", Duration::from_secs(15), || async { Ok((!alive()).then_some(())) }).await;
    if stopped.is_err() {
        run(Command::new("kill").args(["-KILL", &pid.to_string()]))?;
    }
    Ok(StoppedKubelet { args })
}

/// Starts the kubelet again with the command line it had, logging and recording its pid as cluster-up does.
pub fn start_kubelet(stopped: StoppedKubelet) -> Result<u32> {
    let (program, args) = stopped.args.split_first().ok_or_else(|| anyhow!("empty kubelet command line"))?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(state_dir().join("logs/kubelet.log"))?;
    let child = Command::new("setsid")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the kubelet")?;
    // setsid execs the kubelet in place when it is not a process group leader, which a spawned child is not.
    let pid = child.id();
    std::fs::write(kubelet_pid_file(), format!("{pid}\n"))?;
    Ok(pid)
}

/// A plain HTTP/1.0 GET from the host to `address` (`ip:port`), bounded by `timeout`; returns the body of a
/// 2xx answer. Used to reach pods and Services from outside the cluster network.
pub async fn http_get(address: &str, path: &str, timeout: Duration) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("GET http://{address}{path}: no answer within {timeout:?}"))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2')) {
        bail!("GET http://{address}{path}: {status}");
    }
    Ok(body.to_string())
}

/// Accepts whatever certificate the server shows: the manager's metrics certificate is self-signed unless
/// cert-manager issues one, and Prometheus scrapes it with `insecureSkipVerify` the same way. The handshake
/// signatures are still checked.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTP/1.0 GET over TLS to `address` (`ip:port`) with an optional bearer token, bounded by `timeout`;
/// returns the status code and the body, whatever the code.
pub async fn https_get(address: &str, path: &str, token: Option<&str>, timeout: Duration) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let mut stream = connector.connect(name, tcp).await?;
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n{authorization}\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        // A TLS server may close without a close_notify; what arrived is the answer.
        let _ = stream.read_to_end(&mut response).await;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("GET https://{address}{path}: no answer within {timeout:?}"))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let code = head.split_whitespace().nth(1).context("no status line")?.parse()?;
    Ok((code, body.to_string()))
}

/// A token of a new service account `name` in `namespace`, bound by the ClusterRoleBinding `<namespace>-<name>`
/// to `cluster_role` when one is given (delete the binding with [`delete_cluster_role_binding`]).
pub fn service_account_token(namespace: &str, name: &str, cluster_role: Option<&str>) -> Result<String> {
    kubectl(&["-n", namespace, "create", "serviceaccount", name])?;
    if let Some(role) = cluster_role {
        let binding = format!("{namespace}-{name}");
        let subject = format!("--serviceaccount={namespace}:{name}");
        kubectl(&["create", "clusterrolebinding", &binding, &format!("--clusterrole={role}"), &subject])?;
    }
    Ok(kubectl(&["-n", namespace, "create", "token", name, "--duration=10m"])?.trim().to_string())
}

pub fn delete_cluster_role_binding(namespace: &str, name: &str) -> Result<()> {
    kubectl(&["delete", "clusterrolebinding", &format!("{namespace}-{name}"), "--ignore-not-found"]).map(drop)
}

/// Creates a namespaced object from JSON in `namespace`.
pub async fn create<K>(client: &Client, namespace: &str, object: serde_json::Value) -> Result<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object)?;
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.create(&PostParams::default(), &object).await?)
}

/// Deletes the namespaces that earlier, aborted test runs left (those labelled [`TEST_LABEL`]), without waiting.
/// Call it before tests start, never while other test binaries run against the same cluster.
pub async fn delete_leftover_test_namespaces(client: &Client) -> Result<usize> {
    let api: Api<Namespace> = Api::all(client.clone());
    let leftovers = api.list(&ListParams::default().labels(&format!("{TEST_LABEL}=true"))).await?;
    for namespace in &leftovers.items {
        if namespace.metadata.deletion_timestamp.is_none() {
            api.delete(&namespace.name_any(), &DeleteParams::background()).await?;
        }
    }
    Ok(leftovers.items.len())
}

/// A node of the local cluster as the scenarios see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub zone: Option<String>,
    pub ready: bool,
    pub unschedulable: bool,
}

/// The cluster's nodes, by name.
pub async fn nodes(client: &Client) -> Result<Vec<NodeInfo>> {
    use k8s_openapi::api::core::v1::Node;
    let api: Api<Node> = Api::all(client.clone());
    let mut nodes: Vec<NodeInfo> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| NodeInfo {
            zone: n.labels().get("topology.kubernetes.io/zone").cloned(),
            ready: n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            name: n.name_any(),
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// The node that runs the control plane (the host's): `hack/node.sh` never takes it away.
pub const CONTROL_PLANE_NODE: &str = "etcdop-node";

fn node_hook(action: &str, node: &str) -> Result<String> {
    run(Command::new(repo_root().join("hack/node.sh")).args([action, node]))
}

/// A node taken away with `hack/node.sh` (its kubelet, containers and containerd stopped, as in a power loss).
/// Brought back when dropped, so a failing scenario does not leave the next one a node short.
pub struct LostNode {
    pub name: String,
    back: bool,
}

/// Stops every process of the node; with `delete_object`, its Node object goes too.
pub fn lose_node(name: &str, delete_object: bool) -> Result<LostNode> {
    node_hook(if delete_object { "delete" } else { "stop" }, name)?;
    Ok(LostNode { name: name.to_string(), back: false })
}

impl LostNode {
    /// Starts the node's containerd, kubelet and kube-proxy again on what it left on disk.
    pub fn bring_back(mut self) -> Result<()> {
        self.back = true;
        node_hook("start", &self.name).map(|_| ())
    }
}

impl Drop for LostNode {
    fn drop(&mut self) {
        if !self.back
            && let Err(e) = node_hook("start", &self.name)
        {
            eprintln!("bringing node {} back: {e:#}", self.name);
        }
    }
}
