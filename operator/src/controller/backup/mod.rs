//! The EtcdBackup controller: observe (the backup, its cluster as the cluster's last reconcile saw it, the
//! store's Secret) → plan (pure: wait, fail, or take the snapshot from one member) → act (stream the snapshot
//! to the store and check what was stored) → report (status, one event at the end).

pub mod plan;
mod take;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use etcd_op_api::v1::{BackupPhase, EtcdBackup, EtcdBackupStatus, EtcdCluster};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use tracing::{debug, info, warn};

use super::{Context, Error, report, volume_store};
use plan::{BackupStep, BackupView, ClusterView};

/// Backups taken at once: each holds a snapshot stream and a few parts in memory.
const CONCURRENT_BACKUPS: u16 = 2;
const WHILE_WAITING: Duration = Duration::from_secs(5);
const AFTER_ERROR: Duration = Duration::from_secs(10);
/// The condition a backup carries once it ended: True when it succeeded.
pub const COMPLETE: &str = "Complete";

pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let backups: Api<EtcdBackup> = match ctx.config.namespace.as_deref() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(backups, watcher::Config::default().any_semantic())
        .with_config(ControllerConfig::default().concurrency(CONCURRENT_BACKUPS))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "backup reconcile failed");
            }
        })
        .await;
}

fn error_policy(backup: Arc<EtcdBackup>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(backup = %backup.name_any(), namespace = %backup.namespace().unwrap_or_default(), reason = error.reason(), %error, "backup reconcile failed");
    Action::requeue(AFTER_ERROR)
}

async fn reconcile(backup: Arc<EtcdBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let phase = backup.status.as_ref().and_then(|s| s.phase);
    if phase.is_some_and(BackupPhase::is_final) {
        return Ok(Action::await_change());
    }
    let namespace = backup.namespace().ok_or(Error::MissingNamespace)?;
    let name = backup.name_any();
    let cluster_name = &backup.spec.cluster_name;

    // Observe.
    let cluster = Api::<EtcdCluster>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(cluster_name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("EtcdCluster {namespace}/{cluster_name}"), source })?;
    let access = ctx.access.get(&namespace, cluster_name);
    let store = volume_store::open(&ctx, &namespace, &backup.spec.store).await?;
    let now = Timestamp::now();
    let created = backup.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let view = BackupView {
        phase,
        age_secs: u64::try_from(now.as_second() - created.as_second()).unwrap_or(0),
        cluster: match (&cluster, &access) {
            (None, _) => ClusterView::Missing,
            (Some(_), None) => ClusterView::NotObserved,
            (Some(_), Some(access)) => ClusterView::Observed(access.candidates.clone()),
        },
        store_problem: store.as_ref().err().cloned(),
        member: backup.spec.member.clone(),
    };

    // Plan, act, report.
    let step = plan::plan(&view);
    match step {
        BackupStep::Nothing => Ok(Action::await_change()),
        BackupStep::Wait(why) => {
            if backup.status.as_ref().and_then(|s| s.message.as_deref()) != Some(why.as_str()) {
                info!(backup = %name, %namespace, cluster = %cluster_name, step = "Wait", reason = %why, "decided");
            }
            let status = EtcdBackupStatus {
                phase: Some(BackupPhase::Pending),
                message: Some(why),
                ..backup.status.clone().unwrap_or_default()
            };
            write_status(&ctx, &backup, &status).await?;
            Ok(Action::requeue(WHILE_WAITING))
        }
        BackupStep::Fail(why) => {
            info!(backup = %name, %namespace, cluster = %cluster_name, step = "Fail", reason = %why, "decided");
            finish(&ctx, &backup, Err((why, backup.status.clone().unwrap_or_default())), now).await?;
            Ok(Action::await_change())
        }
        BackupStep::Take(source) => {
            let (Ok(store), Some(access)) = (store, access) else {
                return Err(Error::IncompleteObservation("the plan took a backup without a store or a cluster".into()));
            };
            info!(backup = %name, %namespace, cluster = %cluster_name, step = "Take", member = %source.name, "decided");
            let started = EtcdBackupStatus {
                phase: Some(BackupPhase::Running),
                message: Some(format!("streaming a snapshot of member {} to the store", source.name)),
                member: Some(source.name.clone()),
                start_time: Some(Time(now)),
                ..EtcdBackupStatus::default()
            };
            write_status(&ctx, &backup, &started).await?;
            let outcome = match take::take(&ctx, &backup, &source, &access, &store, &started).await {
                Ok(stored) => {
                    let checking = EtcdBackupStatus {
                        message: Some("stored; checking it with etcdutl snapshot status".into()),
                        ..stored.clone()
                    };
                    write_status(&ctx, &backup, &checking).await?;
                    // A stored object that fails its check is recorded with the backup, so retention can
                    // delete it.
                    match verify::verify(&ctx, &backup, &stored).await {
                        Ok(checked) => Ok(EtcdBackupStatus { total_keys: checked.map(|c| c.total_key), ..stored }),
                        Err(why) => Err((why, stored)),
                    }
                }
                Err(why) => Err((why, started)),
            };
            finish(&ctx, &backup, outcome, Timestamp::now()).await?;
            Ok(Action::await_change())
        }
    }
}

/// Ends the backup: Succeeded with what was stored, or Failed with why and what was known then; a condition
/// and one event.
async fn finish(
    ctx: &Context,
    backup: &EtcdBackup,
    outcome: Result<EtcdBackupStatus, (String, EtcdBackupStatus)>,
    now: Timestamp,
) -> Result<(), Error> {
    let (status, reason, message) = match outcome {
        Ok(stored) => {
            let checked = match stored.total_keys {
                Some(keys) => format!(", and etcdutl snapshot status read {keys} keys in it"),
                None => String::new(),
            };
            let message = format!(
                "{} of member {} at revision {} stored at {}, its sha256 checked there{checked}",
                stored.size.as_deref().unwrap_or("?"),
                stored.member.as_deref().unwrap_or("?"),
                stored.revision.unwrap_or_default(),
                stored.location.as_deref().unwrap_or("?"),
            );
            (EtcdBackupStatus { phase: Some(BackupPhase::Succeeded), ..stored }, "BackupSucceeded", message)
        }
        Err((why, known)) => (EtcdBackupStatus { phase: Some(BackupPhase::Failed), ..known }, "BackupFailed", why),
    };
    let succeeded = status.phase == Some(BackupPhase::Succeeded);
    let status = EtcdBackupStatus {
        message: Some(message.clone()),
        completion_time: Some(Time(now)),
        conditions: vec![Condition {
            type_: COMPLETE.into(),
            status: if succeeded { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.chars().take(1000).collect(),
            last_transition_time: Time(now),
            observed_generation: backup.metadata.generation,
        }],
        ..status
    };
    write_status(ctx, backup, &status).await?;
    let outcome = if succeeded { "succeeded" } else { "failed" };
    ctx.metrics.backups_total.get_or_create(&crate::metrics::BackupLabels { outcome: outcome.into() }).inc();
    info!(backup = %backup.name_any(), namespace = %backup.namespace().unwrap_or_default(), cluster = %backup.spec.cluster_name, %outcome, %message, "backup ended");
    if succeeded {
        report::publish_normal(ctx, backup, reason, &message).await;
    } else {
        report::publish_warning(ctx, backup, reason, &message).await;
    }
    Ok(())
}

async fn write_status(ctx: &Context, backup: &EtcdBackup, status: &EtcdBackupStatus) -> Result<(), Error> {
    if backup.status.as_ref() == Some(status) {
        return Ok(());
    }
    report::apply_status(ctx, backup, status).await
}
