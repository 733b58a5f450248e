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

const WEBHOOK_CONFIGURATION: &str = "etcd-op-validating-webhook-configuration";
const WEBHOOK_SECRET: &str = "etcd-op-webhook-server-cert";

/// The authorities the API server trusts for each of the webhooks in config/webhook's registration.
async fn webhook_ca_bundles(client: &kube::Client) -> Result<Vec<Vec<u8>>> {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let configuration = configurations.get(WEBHOOK_CONFIGURATION).await?;
    Ok(configuration
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.client_config.ca_bundle.map(|b| b.0).unwrap_or_default())
        .collect())
}

/// `ca.crt` of the webhook's serving certificate Secret.
async fn webhook_secret_authority(client: &kube::Client) -> Result<Option<Vec<u8>>> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    Ok(secrets.get_opt(WEBHOOK_SECRET).await?.and_then(|s| s.data?.get("ca.crt").map(|b| b.0.clone())))
}

/// Whether the webhook answers: it refuses a cluster that names a StorageClass that does not exist (a dry
/// run, so nothing is created either way).
async fn webhook_refuses_a_missing_class(namespace: &str) -> Result<bool> {
    let cluster = serde_json::json!({
        "apiVersion": "etcd.cloud.io/v1", "kind": "EtcdCluster",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"size": 1, "storage": {"volumeClaimTemplate": {"storageClassName": "no-such-class"}}}
    });
    let file = std::env::temp_dir().join(format!("etcd-op-webhook-probe-{namespace}.json"));
    std::fs::write(&file, cluster.to_string())?;
    let path = file.to_string_lossy().into_owned();
    let outcome = kubectl(&["create", "--dry-run=server", "-f", &path]);
    std::fs::remove_file(&file)?;
    Ok(
        matches!(outcome, Err(e) if e.to_string().contains("denied the request") && e.to_string().contains("no-such-class")),
    )
}

/// A TLS handshake with the webhook Service that trusts `authority` (PEM) alone, for the name the API server
/// calls it by.
async fn webhook_handshake_trusting(client: &kube::Client, authority: &[u8]) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let service = services.get("etcd-op-webhook-service").await?;
    let ip = service.spec.and_then(|s| s.cluster_ip).context("the webhook Service has no cluster IP")?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(authority) {
        roots.add(certificate?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(format!("etcd-op-webhook-service.{OPERATOR_NAMESPACE}.svc"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((ip.as_str(), 443)).await?;
        connector.connect(name, tcp).await?;
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), handshake).await.context("TLS handshake timed out")?
}

/// Applies a kustomization and waits for the manager's rollout.
fn apply_and_roll_out(kustomization: &std::path::Path) -> Result<()> {
    let path = kustomization.to_string_lossy().into_owned();
    kubectl(&["apply", "--server-side", "--force-conflicts", "-k", &path])?;
    let deployment = format!("deployment/{DEPLOYMENT}");
    kubectl(&["-n", OPERATOR_NAMESPACE, "rollout", "status", &deployment, "--timeout=180s"])?;
    Ok(())
}

/// The manager as the local deployment has it, with config/certmanager's component over it: cert-manager
/// issues the webhook's serving certificate, its CA injector writes the authority into the registration,
/// and the API server calls the webhook on that certificate. Afterwards the deployment goes back to
/// config/default, where the manager serves its own certificate again.
#[tokio::test]
async fn the_certmanager_component_serves_the_webhook_on_cert_managers_certificate() -> Result<()> {
    etcd_op_test_support::start_cert_manager()?;
    let client = etcd_op_test_support::client().await?;
    let deployed = etcd_op_test_support::state_dir().join("operator-overlay");
    if !deployed.join("kustomization.yaml").exists() {
        bail!("{} is missing: deploy the operator first (make deploy-local)", deployed.display());
    }
    let ns = TestNamespace::create(&client, "e2e-certmanager").await?;
    let own_bundles = webhook_ca_bundles(&client).await?;
    let overlay = etcd_op_test_support::state_dir().join("operator-overlay-certmanager");
    std::fs::create_dir_all(&overlay)?;
    let component = std::fs::canonicalize(etcd_op_test_support::repo_root().join("config/certmanager"))?;
    let component = pathdiff(&component, &std::fs::canonicalize(&overlay)?);
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../operator-overlay\n\
             components:\n- {component}\n"
        ),
    )?;

    let checked = async {
        apply_and_roll_out(&overlay)?;
        // The injector appends to what the registration held (the manager's authority), as it does to carry a
        // rotation.
        let injected =
            wait_for("cert-manager's authority injected into the registration", Duration::from_secs(120), || async {
                let Some(authority) = webhook_secret_authority(&client).await? else { return Ok(None) };
                let bundles = webhook_ca_bundles(&client).await?;
                let holds = |bundle: &Vec<u8>| bundle.windows(authority.len()).any(|w| w == authority.as_slice());
                Ok((!bundles.is_empty() && bundles.iter().all(holds)).then_some(authority))
            })
            .await?;
        if own_bundles.contains(&injected) {
            bail!("the injected authority is the manager's own: cert-manager issued nothing");
        }
        // The manager serves the certificate cert-manager issued: a handshake trusting only its authority
        // succeeds for the Service's name.
        wait_for("the manager to serve cert-manager's certificate", Duration::from_secs(60), || async {
            Ok(webhook_handshake_trusting(&client, &injected).await.ok())
        })
        .await?;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
        let issuer = secrets
            .get(WEBHOOK_SECRET)
            .await?
            .metadata
            .annotations
            .unwrap_or_default()
            .get("cert-manager.io/issuer-name")
            .cloned();
        assert_eq!(issuer.as_deref(), Some("etcd-op-selfsigned-issuer"), "the Secret is cert-manager's");
        wait_for("the webhook to answer on cert-manager's certificate", Duration::from_secs(120), || async {
            Ok(webhook_refuses_a_missing_class(&ns.name).await?.then_some(()))
        })
        .await
    }
    .await;

    // Back to config/default: cert-manager's objects go, and the manager makes its own certificate again.
    let restored = async {
        kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "certificate", "etcd-op-serving-cert", "--ignore-not-found"])?;
        kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "issuer", "etcd-op-selfsigned-issuer", "--ignore-not-found"])?;
        kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "secret", WEBHOOK_SECRET, "--ignore-not-found"])?;
        apply_and_roll_out(&deployed)?;
        wait_for("the manager's own certificate in the registration", Duration::from_secs(120), || async {
            let Some(authority) = webhook_secret_authority(&client).await? else { return Ok(None) };
            let bundles = webhook_ca_bundles(&client).await?;
            let own = bundles.iter().all(|b| *b == authority);
            Ok((own && webhook_refuses_a_missing_class(&ns.name).await?).then_some(()))
        })
        .await
    }
    .await;
    checked?;
    restored?;
    ns.delete().await
}

/// `to` relative to the directory `from` (both absolute, canonical): kustomize takes relative paths only.
fn pathdiff(to: &std::path::Path, from: &std::path::Path) -> String {
    let to: Vec<_> = to.components().collect();
    let from: Vec<_> = from.components().collect();
    let shared = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let ups = std::iter::repeat_n("..".to_string(), from.len() - shared);
    let downs = to[shared..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned());
    ups.chain(downs).collect::<Vec<_>>().join("/")
}
