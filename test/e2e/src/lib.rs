//! Shared steps of the end-to-end scenarios: create an EtcdCluster, wait for it to be Available, and check
//! that no acknowledged write is lost while the scenario runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_op_api::v1::EtcdCluster;
use etcd_op_test_support::wait_for;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub use etcd_op_test_support::{TestNamespace, client, dump_cluster_state};

/// A Secret `name` with the test bed store's key pair, the secret key as given (a wrong one, to be refused).
pub async fn create_store_credentials(
    client: &Client,
    namespace: &str,
    name: &str,
    s3: &etcd_op_test_support::S3Settings,
    secret_access_key: &str,
) -> Result<()> {
    etcd_op_test_support::create::<Secret>(
        client,
        namespace,
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": secret_access_key},
        }),
    )
    .await?;
    Ok(())
}

/// The test bed's store, under a prefix of the namespace, with the key pair in the Secret `secret`.
pub fn test_store(s3: &etcd_op_test_support::S3Settings, namespace: &str, secret: &str) -> Value {
    json!({"s3": {
        "endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": format!("e2e/{namespace}"),
        "credentialsSecret": {"name": secret},
    }})
}

/// Time a 3-member cluster gets to become Available on this 2-core test bed.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(240);
/// Time for one change (scale step, heal, upgrade) to settle.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(300);

/// Creates the cluster, waiting out (bounded) an operator whose webhook is not reachable yet.
pub async fn create_cluster(client: &Client, namespace: &str, name: &str, spec: Value) -> Result<EtcdCluster> {
    while_webhook_away(&format!("create {namespace}/{name}"), || try_create_cluster(client, namespace, name, &spec))
        .await
}

/// Creates the cluster once: for scenarios about the webhook's own failures.
pub async fn try_create_cluster(client: &Client, namespace: &str, name: &str, spec: &Value) -> Result<EtcdCluster> {
    let api: Api<EtcdCluster> = Api::namespaced(client.clone(), namespace);
    let object: EtcdCluster = serde_json::from_value(json!({
        "apiVersion": "etcd.cloud.io/v1",
        "kind": "EtcdCluster",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    Ok(api.create(&PostParams::default(), &object).await?)
}

/// A StorageClass of the local cluster's provisioner named after the test's namespace, for a test that
/// deletes it while a cluster names it. Returns its name.
pub async fn create_storage_class(client: &Client, namespace: &str) -> Result<String> {
    let name = format!("{namespace}-class");
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    let object = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "labels": {etcd_op_test_support::TEST_LABEL: "true"}},
        "provisioner": "etcd-op.local/hostpath",
    }))?;
    classes.create(&PostParams::default(), &object).await?;
    Ok(name)
}

/// Repeats `write` (bounded) while the API server cannot reach the operator's admission webhook: after a
/// scenario crashed, stopped or replaced the operator, its webhook is away until its pod is back and its
/// Service routes to it again, and a user would retry. Any other error, and a refusal by the webhook, is
/// returned at once.
pub async fn while_webhook_away<T, F, Fut>(what: &str, mut write: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        match write().await {
            Err(error) if format!("{error:#}").contains("failed calling webhook") => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(error.context(format!("{what}: the operator's webhook stayed away for 180 s")));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Merges `spec` into the cluster's spec, waiting out (bounded) an operator whose webhook is not reachable.
pub async fn patch_spec(client: &Client, namespace: &str, name: &str, spec: Value) -> Result<EtcdCluster> {
    while_webhook_away(&format!("patch {namespace}/{name}"), || try_patch_spec(client, namespace, name, &spec)).await
}

/// Merges `spec` into the cluster's spec once: for scenarios about the webhook's own failures.
pub async fn try_patch_spec(client: &Client, namespace: &str, name: &str, spec: &Value) -> Result<EtcdCluster> {
    let api: Api<EtcdCluster> = Api::namespaced(client.clone(), namespace);
    Ok(api.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec}))).await?)
}

pub async fn get_cluster(client: &Client, namespace: &str, name: &str) -> Result<EtcdCluster> {
    let api: Api<EtcdCluster> = Api::namespaced(client.clone(), namespace);
    Ok(api.get(name).await?)
}

fn condition<'a>(
    ec: &'a EtcdCluster,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    ec.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// The cluster has settled at `size` healthy voters on `version`, for its current generation.
pub fn settled(ec: &EtcdCluster, size: usize, version: &str) -> bool {
    let Some(status) = ec.status.as_ref() else {
        return false;
    };
    status.observed_generation == ec.metadata.generation
        && condition(ec, "Available").is_some_and(|c| c.status == "True")
        && condition(ec, "Progressing").is_some_and(|c| c.status == "False")
        && status.ready_members == i32::try_from(size).unwrap_or(-1)
        && status.members.len() == size
        && status.members.iter().all(|m| m.healthy && !m.learner)
        && status.current_version.as_deref() == Some(version)
        && status.next_step.as_ref().is_some_and(|s| s.action == "None")
}

pub async fn wait_settled(
    client: &Client,
    namespace: &str,
    name: &str,
    size: usize,
    version: &str,
    timeout: Duration,
) -> Result<EtcdCluster> {
    let description = format!("{namespace}/{name} to settle at {size} healthy members on {version}");
    let result = wait_for(&description, timeout, || async {
        let ec = get_cluster(client, namespace, name).await?;
        Ok(settled(&ec, size, version).then_some(ec))
    })
    .await;
    if result.is_err() {
        if let Ok(ec) = get_cluster(client, namespace, name).await {
            eprintln!(
                "=== status of {namespace}/{name}: {}",
                serde_json::to_string_pretty(&ec.status).unwrap_or_default()
            );
        }
        dump_cluster_state(Some(namespace)).await;
    }
    result
}

/// Where a client reaches a cluster: its client Service, and for a cluster whose client port speaks TLS,
/// the client certificate the operator issued for users.
#[derive(Clone)]
pub struct EtcdEndpoint {
    pub url: String,
    pub tls: Option<etcd_client::TlsOptions>,
}

/// The client Service's address, reachable from the host through kube-proxy, with the user's client
/// certificate (the Secret `<name>-client-tls`) when the cluster's status says its client port speaks TLS.
pub async fn client_endpoint(client: &Client, namespace: &str, name: &str) -> Result<EtcdEndpoint> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services.get(&format!("{name}-client")).await?;
    let ip = service.spec.and_then(|s| s.cluster_ip).context("the client Service has no cluster IP")?;
    let ec = get_cluster(client, namespace, name).await?;
    if !ec.status.as_ref().and_then(|s| s.tls.as_ref()).is_some_and(|t| t.client) {
        return Ok(EtcdEndpoint { url: format!("http://{ip}:2379"), tls: None });
    }
    let tls = user_client_tls(client, namespace, name).await?;
    Ok(EtcdEndpoint { url: format!("https://{ip}:2379"), tls: Some(tls) })
}

/// The user's client certificate from `<name>-client-tls`, checking the members against the client
/// Service's name, as an application in the cluster would.
pub async fn user_client_tls(client: &Client, namespace: &str, name: &str) -> Result<etcd_client::TlsOptions> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get(&format!("{name}-client-tls")).await?;
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| -> Result<Vec<u8>> {
        Ok(data.get(key).with_context(|| format!("{name}-client-tls has no {key}"))?.0.clone())
    };
    Ok(etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(field("ca.crt")?))
        .identity(etcd_client::Identity::from_pem(field("tls.crt")?, field("tls.key")?))
        .domain_name(format!("{name}-client.{namespace}.svc")))
}

/// Writes unique keys through the client Service for the whole scenario and reads them back at the end:
/// every acknowledged write must be there with its value, and no key the checker never wrote may appear.
pub struct WriteChecker {
    endpoint: EtcdEndpoint,
    prefix: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    attempted: Arc<Mutex<BTreeMap<String, String>>>,
    task: JoinHandle<()>,
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// The checker writes at most this often and at most this many keys, so a scenario's load is bounded.
const WRITE_INTERVAL: Duration = Duration::from_millis(100);
const MAX_WRITES: u64 = 20_000;

pub async fn connect(endpoint: &EtcdEndpoint) -> Result<etcd_client::Client> {
    let mut options =
        etcd_client::ConnectOptions::new().with_connect_timeout(WRITE_TIMEOUT).with_timeout(WRITE_TIMEOUT);
    if let Some(tls) = &endpoint.tls {
        options = options.with_tls(tls.clone());
    }
    Ok(etcd_client::Client::connect([endpoint.url.as_str()], Some(options)).await?)
}

impl WriteChecker {
    pub fn start(endpoint: EtcdEndpoint, scenario: &str) -> Self {
        let prefix = format!("/checker/{scenario}/");
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let attempted = Arc::new(Mutex::new(BTreeMap::new()));
        let task = {
            let (endpoint, prefix, stop) = (endpoint.clone(), prefix.clone(), stop.clone());
            let (acknowledged, attempted) = (acknowledged.clone(), attempted.clone());
            tokio::spawn(async move {
                let mut client = None;
                // E2E_VERBOSE=1: every failed write, with why.
                let verbose = std::env::var_os("E2E_VERBOSE").is_some();
                for n in 0..MAX_WRITES {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    tokio::time::sleep(WRITE_INTERVAL).await;
                    if client.is_none() {
                        client = connect(&endpoint).await.ok();
                    }
                    let Some(c) = client.as_mut() else { continue };
                    let (key, value) = (format!("{prefix}{n:08}"), format!("value-{n}"));
                    attempted.lock().await.insert(key.clone(), value.clone());
                    match tokio::time::timeout(WRITE_TIMEOUT, c.put(key.clone(), value.clone(), None)).await {
                        Ok(Ok(_)) => {
                            acknowledged.lock().await.insert(key, value);
                        }
                        failed => {
                            if verbose {
                                let why = failed.map_or_else(|e| e.to_string(), |r| format!("{:?}", r.err()));
                                eprintln!("[write checker {prefix}] {key}: {why}");
                            }
                            client = None;
                        }
                    }
                }
            })
        };
        Self { endpoint, prefix, stop, acknowledged, attempted, task }
    }

    pub async fn acknowledged(&self) -> usize {
        self.acknowledged.lock().await.len()
    }

    /// The writes acknowledged so far: what any copy of the data taken after this moment must hold.
    pub async fn acknowledged_writes(&self) -> BTreeMap<String, String> {
        self.acknowledged.lock().await.clone()
    }

    /// Waits (at most a minute) until `count` writes have been acknowledged, so a fault hits a cluster that
    /// holds data the checker knows of.
    pub async fn wait_for_writes(&self, count: usize) -> Result<()> {
        wait_for(&format!("{count} acknowledged writes"), Duration::from_secs(60), || async {
            Ok((self.acknowledged().await >= count).then_some(()))
        })
        .await
    }

    /// Stops writing and checks the data; returns the number of acknowledged writes verified.
    pub async fn stop_and_verify(self) -> Result<usize> {
        let endpoint = self.endpoint.clone();
        self.stop().await?.verify(&endpoint).await
    }

    /// Stops writing; the writes can then be verified, later or at another endpoint.
    pub async fn stop(self) -> Result<Written> {
        self.stop.store(true, Ordering::Release);
        self.task.await.context("the writer task")?;
        let acknowledged = self.acknowledged.lock().await.clone();
        let attempted = self.attempted.lock().await.clone();
        if acknowledged.is_empty() {
            bail!("no write was acknowledged during the scenario");
        }
        Ok(Written { prefix: self.prefix, acknowledged, attempted })
    }
}

/// What a stopped [`WriteChecker`] wrote.
pub struct Written {
    prefix: String,
    acknowledged: BTreeMap<String, String>,
    attempted: BTreeMap<String, String>,
}

impl Written {
    /// The same writes, counting as acknowledged only those in `earlier`: what a copy taken after `earlier`
    /// was read must hold. Every later write may be there or not; no key the checker never wrote may.
    pub fn acknowledged_before(&self, earlier: &BTreeMap<String, String>) -> Self {
        let mut acknowledged = self.acknowledged.clone();
        acknowledged.retain(|key, _| earlier.contains_key(key));
        Written { prefix: self.prefix.clone(), acknowledged, attempted: self.attempted.clone() }
    }

    /// Reads the keys back through `endpoint`: every acknowledged write must be there with its value, and
    /// no key that was never written. Returns the number of acknowledged writes verified.
    pub async fn verify(&self, endpoint: &EtcdEndpoint) -> Result<usize> {
        let (acknowledged, attempted) = (&self.acknowledged, &self.attempted);
        // The cluster may still be settling (a leader election after a restart): retry the read, bounded.
        let mut response = None;
        let mut last_error = None;
        for _ in 0..30 {
            let read = async {
                let mut client = connect(endpoint).await?;
                Ok::<_, anyhow::Error>(
                    client.get(self.prefix.clone(), Some(etcd_client::GetOptions::new().with_prefix())).await?,
                )
            };
            match read.await {
                Ok(r) => {
                    response = Some(r);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let Some(response) = response else {
            bail!("reading the checker's keys back failed: {last_error:?}");
        };
        let stored: BTreeMap<String, String> = response
            .kvs()
            .iter()
            .map(|kv| Ok((kv.key_str()?.to_string(), kv.value_str()?.to_string())))
            .collect::<Result<_>>()?;
        for (key, value) in acknowledged {
            match stored.get(key) {
                Some(v) if v == value => {}
                Some(v) => bail!("acknowledged {key}={value} reads back as {v}"),
                None => bail!("acknowledged write {key} is lost ({} acknowledged in all)", acknowledged.len()),
            }
        }
        if let Some(unknown) = stored.keys().find(|k| !attempted.contains_key(*k)) {
            bail!("key {unknown} appeared that the checker never wrote");
        }
        Ok(acknowledged.len())
    }
}

/// Each member's last defragmentation, by name; members without one are missing.
pub fn defragmentations(ec: &EtcdCluster) -> Vec<(String, etcd_op_api::v1::DefragmentationRecord)> {
    ec.status
        .iter()
        .flat_map(|s| &s.members)
        .filter_map(|m| Some((m.name.clone(), m.last_defragmentation.clone()?)))
        .collect()
}

/// Names of the member pods, from status.
pub fn member_names(ec: &EtcdCluster) -> Vec<String> {
    ec.status.as_ref().map(|s| s.members.iter().map(|m| m.name.clone()).collect()).unwrap_or_default()
}

pub fn leader(ec: &EtcdCluster) -> Option<String> {
    ec.status.as_ref()?.leader.clone()
}

pub fn name_of(ec: &EtcdCluster) -> String {
    ec.name_any()
}

/// The etcd version most scenarios run.
pub const V36: &str = "3.6.16";

/// A namespace of its own holding `demo`, a 3-member cluster on 3.6 that has settled.
pub async fn settled_three_member_cluster(prefix: &str) -> Result<(Client, TestNamespace, EtcdCluster)> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    create_cluster(&client, &ns.name, "demo", json!({"size": 3, "version": V36})).await?;
    let ec = wait_settled(&client, &ns.name, "demo", 3, V36, CREATE_TIMEOUT).await?;
    Ok((client, ns, ec))
}

/// Each member's etcd ID, by name, from status.
pub fn member_ids(ec: &EtcdCluster) -> Vec<(String, Option<String>)> {
    ec.status.iter().flat_map(|s| &s.members).map(|m| (m.name.clone(), m.id.clone())).collect()
}

/// Whether a plaintext client is kept from writing at `url` (an `http://` URL of a TLS port), within 10 s.
pub async fn refuses_plaintext(url: &str) -> bool {
    let plaintext = EtcdEndpoint { url: url.to_string(), tls: None };
    let written = tokio::time::timeout(Duration::from_secs(10), async {
        let mut etcd = connect(&plaintext).await?;
        etcd.put("/plaintext", "x", None).await?;
        Ok::<_, anyhow::Error>(())
    })
    .await;
    !matches!(written, Ok(Ok(())))
}
