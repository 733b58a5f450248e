//! The etcd-op manager (the `cmd/main.go` of a kubebuilder project).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use etcd_op_api::v1::EtcdCluster;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Config};
use tokio::sync::watch;
use tracing::{error, info, warn};

use etcd_op::cli::{Cli, Command, ManagerArgs, parse_bind_address};
use etcd_op::controller::{Context, Settings};
use etcd_op::http::Readiness;
use etcd_op::metrics::{LeaseLabels, Metrics};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { dir }) => return print_crds(dir.as_deref()),
        Some(Command::FetchSnapshot(args)) => return fetch_snapshot(args).await,
        Some(Command::ServeVolume(args)) => return serve_volume(args).await,
        None => {}
    }
    if let Err(message) = etcd_op::telemetry::init(cli.manager.log_format, &cli.manager.log_level) {
        eprintln!("etcd-op: {message}");
        return ExitCode::from(2);
    }
    match run_manager(cli.manager).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!(error = %message, "manager stopped");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(dir: Option<&std::path::Path>) -> ExitCode {
    for (file, crd) in etcd_op_api::crds() {
        let yaml = match serde_saphyr::to_string(&crd) {
            Ok(yaml) => yaml,
            Err(e) => {
                eprintln!("etcd-op: rendering the CRD {file} failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        match dir {
            Some(dir) => {
                let path = dir.join(&file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("etcd-op: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            None => print!("---\n{yaml}"),
        }
    }
    ExitCode::SUCCESS
}

/// A volume store's pod: serves the claim's files until it is told to stop.
async fn serve_volume(args: etcd_op::cli::ServeVolumeArgs) -> ExitCode {
    if let Err(message) = etcd_op::telemetry::init(etcd_op::cli::LogFormat::Json, "info") {
        eprintln!("etcd-op: {message}");
        return ExitCode::from(2);
    }
    let token = match std::env::var("STORE_TOKEN") {
        Ok(token) if !token.trim().is_empty() => token.trim().to_string(),
        _ => {
            error!("STORE_TOKEN is not set: the store admits no one without its token");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            error!(address = %args.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    info!(address = %args.listen, dir = %args.dir.display(), "serving the volume store");
    match etcd_op::store::volume_server::serve(listener, args.dir, token, termination()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "the volume store stopped");
            ExitCode::FAILURE
        }
    }
}

/// The restore pods' first step: the snapshot from the store into a file, checked. Its error is the pod's
/// termination message, which the operator reports.
async fn fetch_snapshot(args: etcd_op::cli::FetchSnapshotArgs) -> ExitCode {
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        eprintln!("etcd-op: a TLS crypto provider was already installed");
    }
    match etcd_op::store::fetch_snapshot(&args).await {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            // Kubernetes reads a container's termination message from this file.
            let _ = std::fs::write("/dev/termination-log", &message);
            ExitCode::FAILURE
        }
    }
}

/// The image of this manager's own container, read from its pod: restore pods run it to fetch snapshots.
async fn own_image(client: &Client) -> Option<String> {
    let namespace = etcd_op::leader::own_namespace()?;
    let pod_name = std::env::var("POD_NAME").ok()?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &namespace);
    match pods.get(&pod_name).await {
        Ok(pod) => {
            let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
            let manager = containers.iter().find(|c| c.name == "manager").or(containers.first());
            manager.and_then(|c| c.image.clone())
        }
        Err(error) => {
            warn!(%error, "cannot read the manager's own pod for its image: restores need --restore-image");
            None
        }
    }
}

async fn client(args: &ManagerArgs) -> Result<Client, String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(_) => Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|e| format!("no in-cluster config and no usable kubeconfig: {e}"))?,
        },
    };
    Client::try_from(config).map_err(|e| format!("building the Kubernetes client: {e}"))
}

/// Where the webhook's serving certificate comes from: the mounted files when given, else the manager's own
/// Secret in its namespace. Outside a cluster, with neither, there is no webhook (nothing could call it).
fn webhook_source(args: &ManagerArgs, client: &Client) -> Option<etcd_op::webhook::serving::Source> {
    use etcd_op::webhook::serving::{Managed, Source};
    if let Some(dir) = &args.webhook_cert_dir {
        return Some(Source::Files(dir.clone()));
    }
    let Some(namespace) = etcd_op::leader::own_namespace() else {
        warn!("not running in a cluster and no --webhook-cert-dir: the admission webhook is off");
        return None;
    };
    Some(Source::Managed(Managed {
        client: client.clone(),
        namespace,
        secret: args.webhook_secret_name.clone(),
        service: args.webhook_service_name.clone(),
        configuration: args.webhook_configuration_name.clone(),
        cluster_domain: args.cluster_domain.clone(),
    }))
}

/// The manager's pods in `namespace`, as config/manager labels them.
fn operator_peer(namespace: &str) -> k8s_openapi::api::networking::v1::NetworkPolicyPeer {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let selector = |labels: &[(&str, &str)]| LabelSelector {
        match_labels: Some(labels.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()),
        ..LabelSelector::default()
    };
    k8s_openapi::api::networking::v1::NetworkPolicyPeer {
        namespace_selector: Some(selector(&[("kubernetes.io/metadata.name", namespace)])),
        pod_selector: Some(selector(&[("app.kubernetes.io/name", "etcd-op"), ("control-plane", "controller-manager")])),
        ip_block: None,
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => info!("SIGTERM received: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received: shutting down"),
    }
}

// Spelled out rather than `async fn` so the signature states the `Sync` bound the controller requires.
#[allow(clippy::manual_async_fn)]
fn shutdown_future(mut stop: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    }
}

async fn run_manager(args: ManagerArgs) -> Result<(), String> {
    // A test build reads its crash points from FAILPOINTS; they stay set as long as the manager runs.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        warn!("a TLS crypto provider was already installed");
    }
    let metrics_addr = parse_bind_address(&args.metrics_addr).map_err(|e| format!("--metrics-addr: {e}"))?;
    let probe_addr =
        parse_bind_address(&args.health_probe_bind_address).map_err(|e| format!("--health-probe-bind-address: {e}"))?;
    let webhook_addr =
        parse_bind_address(&args.webhook_bind_address).map_err(|e| format!("--webhook-bind-address: {e}"))?;
    let client = client(&args).await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Readiness::default();
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut servers = Vec::new();
    if let Some(addr) = metrics_addr {
        let (reviewer, tls) = if args.metrics_secure {
            let names = ["localhost".to_string(), "127.0.0.1".to_string()];
            let tls = etcd_op::http::tls::server_config(args.metrics_cert_dir.as_deref(), &names)
                .map_err(|e| format!("--metrics-cert-dir: {e}"))?;
            (Some(etcd_op::http::auth::Reviewer::new(client.clone(), "/metrics")), Some(tls))
        } else {
            (None, None)
        };
        let router = etcd_op::http::metrics_router(metrics.clone(), reviewer);
        servers.push(tokio::spawn(etcd_op::http::serve(addr, router, tls, shutdown_future(stop_rx.clone()))));
    }
    let mut readiness_checks = vec![ready.clone()];
    if let Some(addr) = webhook_addr
        && let Some(source) = webhook_source(&args, &client)
    {
        let webhook_ready = Readiness::default();
        readiness_checks.push(webhook_ready.clone());
        let router = etcd_op::webhook::router(client.clone());
        let stop = stop_rx.clone();
        servers.push(tokio::spawn(async move {
            match etcd_op::webhook::serving_config(source, webhook_ready, stop.clone()).await {
                Some(tls) => etcd_op::http::serve(addr, router, Some(tls), shutdown_future(stop)).await,
                None => Ok(()),
            }
        }));
    }
    if let Some(addr) = probe_addr {
        let router = etcd_op::http::probe_router(readiness_checks);
        servers.push(tokio::spawn(etcd_op::http::serve(addr, router, None, shutdown_future(stop_rx.clone()))));
    }

    let identity = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "etcd-op".to_string());
    let identity = format!("{identity}_{}", std::process::id());
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "etcd-op".into(), instance: Some(identity.clone()) });
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder,
        metrics: metrics.clone(),
        etcd: Arc::new(etcd_op::etcd::Etcd::default()),
        config: Settings {
            unhealthy_threshold: args.unhealthy_threshold(),
            concurrency: args.max_concurrent_reconciles,
            namespace: args.namespace.clone(),
            cluster_domain: args.cluster_domain.clone(),
            operator_peer: etcd_op::leader::own_namespace().map(|namespace| operator_peer(&namespace)),
            operator_image: match args.restore_image.clone() {
                Some(image) => Some(image),
                None => own_image(&client).await,
            },
        },
        refusals: Default::default(),
        last_words: Default::default(),
        access: Default::default(),
    });

    let signal_stop = stop_tx.clone();
    tokio::spawn(async move {
        termination().await;
        let _ = signal_stop.send(true);
    });

    wait_for_crd(&client, args.namespace.as_deref(), stop_rx.clone()).await;
    let outcome = if args.leader_elect {
        run_as_candidate(&args, client, ctx, ready, &metrics, &identity, stop_rx.clone()).await
    } else {
        etcd_op::controller::run(ctx, ready, shutdown_future(stop_rx.clone())).await;
        Ok(())
    };
    let _ = stop_tx.send(true);
    for server in servers {
        match server.await {
            Ok(Err(error)) => warn!(%error, "HTTP server failed"),
            Err(error) => warn!(%error, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    outcome
}

/// Waits until the EtcdCluster API answers, so a manager started before its CRD is installed waits quietly.
async fn wait_for_crd(client: &Client, namespace: Option<&str>, mut stop: watch::Receiver<bool>) {
    let api: Api<EtcdCluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(error) => {
                warn!(%error, retry_in = ?delay, "the EtcdCluster API is not available yet (is the CRD installed?)")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Runs the controller only while holding the lease. Losing the lease ends the process at once: a fresh
/// process starts as a standby, with no state left from its time as leader.
async fn run_as_candidate(
    args: &ManagerArgs,
    client: Client,
    ctx: Arc<Context>,
    ready: Readiness,
    metrics: &Metrics,
    identity: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(etcd_op::leader::own_namespace)
        .unwrap_or_else(|| "default".to_string());
    let lease = &args.leader_election_id;
    let mut election = etcd_op::leader::start(client, &namespace, lease, identity, args.leader_election_lease_duration)
        .await
        .map_err(|e| format!("leader election on Lease {namespace}/{lease}: {e}"))?;
    let lease_labels = LeaseLabels { name: lease.clone() };
    metrics.leader_election_status.get_or_create(&lease_labels).set(0);
    // A standby is a healthy manager.
    ready.set(true);
    info!(lease = %lease, %namespace, %identity, "waiting to become leader");
    // Only the election's own receiver watches the lease: releasing it must leave no other receiver open.
    let acquired = tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        acquired = election.leading.wait_for(|l| *l) => Some(acquired.is_ok()),
    };
    match acquired {
        None => {
            election.release().await;
            return Ok(());
        }
        Some(false) => return Err("the leader-election task ended".to_string()),
        Some(true) => {}
    }
    info!(lease = %lease, %identity, "became leader");
    metrics.leader_election_status.get_or_create(&lease_labels).set(1);
    let controller = etcd_op::controller::run(ctx, Readiness::default(), shutdown_future(stop.clone()));
    let lost = tokio::select! {
        _ = controller => false,
        _ = election.leading.wait_for(|l| !*l) => true,
    };
    if lost {
        metrics.leader_election_status.get_or_create(&lease_labels).set(0);
        return Err(format!("lost the leader-election lease {namespace}/{lease}; stopping at once"));
    }
    election.release().await;
    Ok(())
}
