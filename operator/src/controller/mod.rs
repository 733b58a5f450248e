//! The EtcdCluster controller: a thin driver over observe → plan → act → report.

pub mod act;
pub mod backup;
pub mod certificates;
pub mod children;
pub mod error;
pub mod issued_certificates;
pub mod last_words;
pub mod maintenance;
pub mod model;
pub mod observe;
pub mod own_backups;
pub mod plan;
pub mod recovery;
pub mod report;
pub mod resources;
pub mod restore;
pub mod schedule;
pub mod user_certificates;
pub mod volume_store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_op_api::v1::EtcdCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::etcd::EtcdApi;
use crate::http::Readiness;
use crate::metrics::{MemberFigures, Metrics};
pub use error::Error;
use plan::Step;

pub const FIELD_MANAGER: &str = "etcd-op";

/// Requeue after a step, so its effect is observed soon even if no watch event arrives.
const AFTER_STEP: Duration = Duration::from_secs(2);
/// Requeue while waiting for something to settle.
const WHILE_WAITING: Duration = Duration::from_secs(3);
/// Requeue while a member is being created or a learner catches up: etcd reports progress that no watch
/// event carries, and the next membership step should follow soon.
const WHILE_GROWING: Duration = Duration::from_secs(1);
/// Requeue of a quiet cluster: its health is looked at this often.
const WHEN_QUIET: Duration = Duration::from_secs(60);
const AFTER_ERROR: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Settings {
    pub unhealthy_threshold: Duration,
    pub concurrency: u16,
    pub namespace: Option<String>,
    /// The Kubernetes cluster's DNS domain, named in the members' certificates.
    pub cluster_domain: String,
    /// The operator's pods, as a NetworkPolicy peer: admitted to every cluster's client port. `None` when
    /// the operator runs outside the cluster (its traffic then comes from a host, which `allowedClients`
    /// must admit where policies are enforced).
    pub operator_peer: Option<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
    /// The operator's own image: restore pods fetch snapshots with it. `None` outside a cluster, unless given.
    pub operator_image: Option<String>,
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub etcd: Arc<dyn EtcdApi>,
    pub config: Settings,
    /// Since when etcd has kept refusing membership changes as an "unhealthy cluster", per cluster: in
    /// memory only, a restarted operator starts counting again.
    pub refusals: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// What the logs of members that went down said, read once per termination.
    pub last_words: last_words::LastWords,
    /// How each cluster's members were last seen and are reached, for the backup controller.
    pub access: AccessBook,
}

/// What the last reconcile of a cluster saw of its members, and the operator's client certificate for them:
/// what a backup takes its snapshot with, without observing the cluster a second time.
#[derive(Clone, Debug)]
pub struct ClusterAccess {
    pub candidates: Vec<backup::plan::Candidate>,
    pub tls: Option<crate::etcd::ClientTls>,
}

/// [`ClusterAccess`] by namespace and cluster name. In memory: an operator that starts fills it with the
/// first reconcile of each cluster.
#[derive(Default)]
pub struct AccessBook(std::sync::Mutex<std::collections::HashMap<(String, String), ClusterAccess>>);

impl AccessBook {
    pub fn record(&self, namespace: &str, cluster: &str, access: ClusterAccess) {
        if let Ok(mut book) = self.0.lock() {
            book.insert((namespace.to_string(), cluster.to_string()), access);
        }
    }

    pub fn get(&self, namespace: &str, cluster: &str) -> Option<ClusterAccess> {
        self.0.lock().ok()?.get(&(namespace.to_string(), cluster.to_string())).cloned()
    }

    pub fn forget(&self, namespace: &str, cluster: &str) {
        if let Ok(mut book) = self.0.lock() {
            book.remove(&(namespace.to_string(), cluster.to_string()));
        }
    }
}

impl Context {
    /// Starts the clock of an episode of refusals, unless one is running.
    pub fn note_refusal(&self, cluster: &str) {
        if let Ok(mut refusals) = self.refusals.lock() {
            refusals.entry(cluster.to_string()).or_insert_with(Instant::now);
        }
    }

    /// How long the current episode of refusals has lasted; zero when none is running.
    pub fn refused_for(&self, cluster: &str) -> Duration {
        match self.refusals.lock() {
            Ok(refusals) => refusals.get(cluster).map_or(Duration::ZERO, Instant::elapsed),
            Err(_) => Duration::ZERO,
        }
    }

    pub fn forget_refusal(&self, cluster: &str) {
        if let Ok(mut refusals) = self.refusals.lock() {
            refusals.remove(cluster);
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers (EtcdCluster, EtcdBackup, EtcdBackupSchedule) until `shutdown` completes; in-flight reconciles finish first.
pub async fn run(ctx: Arc<Context>, ready: Readiness, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    futures::join!(
        run_clusters(ctx.clone(), ready, shutdown.clone()),
        backup::run(ctx.clone(), shutdown.clone()),
        schedule::run(ctx, shutdown)
    );
}

async fn run_clusters(ctx: Arc<Context>, ready: Readiness, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let namespace = ctx.config.namespace.clone();
    let client = ctx.client.clone();
    let clusters: Api<EtcdCluster> = api(&client, namespace.as_deref());
    let owned = watcher::Config::default().labels(&format!("{}={}", resources::LABEL_MANAGED_BY, resources::MANAGER));
    let controller = Controller::new(clusters, watcher::Config::default().any_semantic())
        .with_config(ControllerConfig::default().concurrency(ctx.config.concurrency))
        .owns(api::<Pod>(&client, namespace.as_deref()), owned.clone())
        .owns(api::<Service>(&client, namespace.as_deref()), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace.as_deref()), owned.clone())
        .watches(api::<PersistentVolumeClaim>(&client, namespace.as_deref()), owned, |pvc| {
            let cluster = pvc.labels().get(resources::LABEL_CLUSTER)?;
            Some(ObjectRef::new(cluster).within(&pvc.namespace()?))
        });
    let store = controller.store();
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            info!("EtcdCluster cache synced");
            ready.set(true);
        }
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "reconcile failed");
            }
        })
        .await;
}

async fn reconcile(ec: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_once(&ec, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::reason));
    result
}

async fn reconcile_once(ec: &EtcdCluster, ctx: &Context) -> Result<Action, Error> {
    let name = ec.name_any();
    let namespace = ec.namespace().unwrap_or_default();
    if ec.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove members; there is nothing external to clean.
        ctx.metrics.forget_cluster(&namespace, &name);
        ctx.access.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let new_generation = ec.status.as_ref().and_then(|s| s.observed_generation) != ec.metadata.generation;
    if new_generation && ec.spec.size % 2 == 0 {
        let note = format!(
            "spec.size {} is even: it tolerates no more failed members than {}, and needs one more member for quorum",
            ec.spec.size,
            ec.spec.size - 1
        );
        report::publish_warning(ctx, ec, "EvenSize", &note).await;
    }
    let objects = observe::list_objects(ctx, ec).await?;
    let transport = objects.transport;
    let wanted = observe::wanted_transport(ec);
    if new_generation && ec.spec.tls.is_some() && transport != wanted && objects.tls_change.is_none() {
        let note = format!(
            "spec.tls asks for TLS on {}, but the members run with TLS on {}: TLS can be turned on for a running \
             cluster on persistent storage, never off",
            wanted.as_str(),
            transport.as_str()
        );
        report::publish_warning(ctx, ec, "TLSChangeNotSupported", &note).await;
    }
    // While TLS is turned on, the certificates it needs are made first: members mount them before any
    // port speaks TLS.
    let certified = objects.tls_change.map_or(transport, |to| to.union(transport));
    // The Services come first: the serving certificate names the client Service's address.
    let client_ips = children::ensure_services(ctx, ec, !ec.spec.paused).await?;
    let certificates =
        certificates::ensure(ctx, ec, &objects, certified, &client_ips, Timestamp::now().as_second()).await?;
    for change in &certificates.changes {
        info!(cluster = %name, namespace = %namespace, %change, "rotating the certificate authorities");
        report::publish_normal(ctx, ec, "RotateAuthority", change).await;
    }
    let etcd = match &certificates.operator_tls {
        Some(tls) => ctx.etcd.with_tls(tls),
        None => ctx.etcd.clone(),
    };
    let observed = observe::observe(ctx, etcd.as_ref(), ec, objects, certificates.lives, &certificates.trust).await?;
    ctx.access.record(
        &namespace,
        &name,
        ClusterAccess {
            candidates: backup::plan::candidates(&observed.observation),
            tls: certificates.operator_tls.clone(),
        },
    );
    let plan = plan::plan(&observed.observation);
    let previous_step = ec.status.as_ref().and_then(|s| s.next_step.as_ref());
    let decision_changed = previous_step.is_none_or(|p| p.action != plan.step.action() || p.reason != plan.reason);
    if decision_changed || !matches!(plan.step, Step::Nothing | Step::Wait) {
        info!(cluster = %name, namespace = %namespace, step = plan.step.action(), reason = %plan.reason, "decided");
    }

    if !observed.observation.paused {
        children::ensure_budget(ctx, ec, plan::disruption_budget_members(&observed.observation, &plan.target)).await?;
        children::ensure_network_policy(ctx, ec).await?;
        children::ensure_volume_ownership(ctx, ec, &observed.pvcs).await?;
    }
    if !plan.step.changes_membership() {
        // No membership change is being tried: an episode of refusals is over, and time spent waiting for
        // something else does not count towards the next one.
        ctx.forget_refusal(&act::refusal_key(ec));
    }
    // The target is committed before the first step towards it: an operator that stops right after the step
    // must find, on restart, the target the step was taken for, or it would undo the step as a surplus.
    // The status depends only on the observation and the plan, so the one written here is the one written
    // after the step.
    let mut status = report::desired_status(ec, &observed.observation, &plan, Timestamp::now());
    // The rotation's phase is read from the authorities' Secrets, which the planner does not see.
    if let Some(tls) = status.tls.as_mut() {
        tls.authority_rotation = certificates.rotation;
    }
    let committed = ec.status.as_ref().and_then(|s| s.target.as_ref());
    let commit_first = !matches!(plan.step, Step::Nothing | Step::Wait) && committed != status.target.as_ref();
    if commit_first {
        report::write_status(ctx, ec, &status).await?;
    }
    let outcome = match act::act(ctx, etcd.as_ref(), ec, &observed.observation, &plan).await {
        Ok(record) => {
            record.record(&mut status.members, &mut status.last_compaction);
            Ok(())
        }
        Err(error) => Err(error),
    };
    match &outcome {
        Err(error) if error.is_namespace_terminating() => {
            debug!(cluster = %name, namespace = %namespace, step = plan.step.action(), "the namespace is being deleted");
        }
        Err(error) if error.is_transient() => {
            info!(cluster = %name, namespace = %namespace, step = plan.step.action(), %error, "retrying soon");
        }
        Err(error) => {
            warn!(cluster = %name, namespace = %namespace, step = plan.step.action(), %error, "step failed");
            let note = format!("{} failed: {error}", plan.step.action());
            report::publish_warning(ctx, ec, error.reason(), &note).await;
        }
        Ok(()) => {
            ctx.metrics
                .steps_total
                .get_or_create(&crate::metrics::StepLabels { step: plan.step.action().into() })
                .inc();
            report::publish_step(ctx, ec, &plan).await;
        }
    }

    if let Some(note) = recovery_ended(ec, &status) {
        info!(cluster = %name, namespace = %namespace, step = "Recovered", reason = %note, "decided");
        report::publish_normal(ctx, ec, "Recovered", &note).await;
    }
    // A Warning event when a condition that needs attention turns true, or changes its reason.
    let newly_true = status.conditions.iter().filter(|c| {
        [report::DEGRADED, report::CERTIFICATES_EXPIRING].contains(&c.type_.as_str())
            && c.status == "True"
            && !ec.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|p| p.type_ == c.type_ && p.status == "True" && p.reason == c.reason)
            })
    });
    for condition in newly_true {
        report::publish_warning(ctx, ec, &condition.reason, &condition.message).await;
    }
    ctx.metrics.set_cluster(
        &namespace,
        &name,
        i64::from(ec.spec.size),
        i64::from(status.ready_members),
        observed.observation.answering_leader().is_some(),
    );
    ctx.metrics.set_members(&namespace, &name, &member_figures(&observed.observation));
    ctx.metrics.set_certificates(&namespace, &name, &observed.observation.certificates, Timestamp::now().as_second());
    if !commit_first {
        report::write_status(ctx, ec, &status).await?;
    }
    if outcome.as_ref().is_err_and(Error::is_transient) {
        return Ok(Action::requeue(AFTER_STEP));
    }
    // Its own deletion, which comes with the namespace's, is a watch event.
    if outcome.as_ref().is_err_and(Error::is_namespace_terminating) {
        return Ok(Action::requeue(WHEN_QUIET));
    }
    outcome?;

    Ok(match plan.step {
        // A paused cluster is looked at again only when a watch says something changed (its spec, its pods or
        // volumes): the operator stands back, and a thousand paused clusters cost it nothing at rest.
        Step::Nothing if matches!(plan.activity, plan::Activity::Paused) => Action::await_change(),
        Step::Nothing => Action::requeue(WHEN_QUIET),
        Step::Wait if matches!(plan.activity, plan::Activity::Creating | plan::Activity::Scaling) => {
            Action::requeue(WHILE_GROWING)
        }
        Step::Wait => Action::requeue(WHILE_WAITING),
        _ => Action::requeue(AFTER_STEP),
    })
}

/// The sentence of a recovery that ends with this status: its source and both cluster IDs.
fn recovery_ended(ec: &EtcdCluster, status: &etcd_op_api::v1::EtcdClusterStatus) -> Option<String> {
    use etcd_op_api::v1::RecoveryPhase;
    let before = ec.status.as_ref()?.recovery.as_ref()?;
    let after = status.recovery.as_ref()?;
    (before.phase == RecoveryPhase::Restoring && after.phase == RecoveryPhase::Succeeded).then(|| {
        format!(
            "recovered from EtcdBackup {}: etcd cluster ID {} before, {} now",
            after.source,
            after.old_cluster_id.as_deref().unwrap_or("unknown"),
            after.new_cluster_id.as_deref().unwrap_or("unknown")
        )
    })
}

/// What each member that answered says about its database, for the per-member gauges.
fn member_figures(obs: &model::Observation) -> Vec<MemberFigures> {
    obs.members
        .iter()
        .filter_map(|m| {
            let health = m.etcd.as_ref()?.health.as_ref()?;
            Some(MemberFigures {
                member: m.name.clone(),
                db_size_bytes: health.db_size_bytes,
                db_size_in_use_bytes: health.db_size_in_use_bytes,
                quota_bytes: m
                    .pod
                    .as_ref()
                    .map_or(resources::ETCD_DEFAULT_QUOTA, |p| p.quota_bytes)
                    .try_into()
                    .unwrap_or(i64::MAX),
                alarms: obs.alarms.iter().filter(|a| a.member == m.name).map(|a| a.alarm.name().to_string()).collect(),
            })
        })
        .collect()
}

fn error_policy(ec: Arc<EtcdCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_namespace_terminating() {
        debug!(cluster = %ec.name_any(), namespace = %ec.namespace().unwrap_or_default(), "the namespace is being deleted");
        return Action::requeue(WHEN_QUIET);
    }
    warn!(cluster = %ec.name_any(), namespace = %ec.namespace().unwrap_or_default(), reason = error.reason(), %error, "reconcile failed");
    Action::requeue(AFTER_ERROR)
}
