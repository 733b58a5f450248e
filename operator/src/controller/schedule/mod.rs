//! The EtcdBackupSchedule controller: at each due time it creates an EtcdBackup from its template (the backup
//! controller takes it), and it lets go of the backups its retention policy no longer keeps, from the store
//! first, then as objects.

pub mod cron;
pub mod drill;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use etcd_op_api::v1::{
    BackupPhase, DEFAULT_KEEP_FAILED, DEFAULT_KEEP_LAST, EtcdBackup, EtcdBackupSchedule, EtcdBackupScheduleStatus,
};
use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::{Context, Error, report, volume_store};
use cron::Cron;
use plan::{OwnedBackup, RetentionPolicy};

/// The schedule an EtcdBackup was created by.
pub const LABEL_SCHEDULE: &str = "etcd.cloud.io/schedule";
/// A quiet schedule is looked at at least this often (retention by age, a missed watch event).
const AT_MOST: Duration = Duration::from_secs(3600);
const AFTER_ERROR: Duration = Duration::from_secs(15);
const READY: &str = "Ready";

pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (schedules, backups): (Api<EtcdBackupSchedule>, Api<EtcdBackup>) = match ctx.config.namespace.as_deref() {
        Some(ns) => (Api::namespaced(ctx.client.clone(), ns), Api::namespaced(ctx.client.clone(), ns)),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    Controller::new(schedules, watcher::Config::default().any_semantic())
        .owns(backups, watcher::Config::default().labels(LABEL_SCHEDULE))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "backup schedule reconcile failed");
            }
        })
        .await;
}

fn error_policy(schedule: Arc<EtcdBackupSchedule>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(schedule = %schedule.name_any(), namespace = %schedule.namespace().unwrap_or_default(), reason = error.reason(), %error, "backup schedule reconcile failed");
    Action::requeue(AFTER_ERROR)
}

async fn reconcile(cached: Arc<EtcdBackupSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cached.namespace().ok_or(Error::MissingNamespace)?;
    let name = cached.name_any();
    // The cache may not hold this controller's own last status write yet (a drill's result, written moments
    // before a backup's end brings the next reconcile): status starts from the object as the API server has
    // it, or the status written from a stale copy would put an older lastDrill back.
    let fresh = Api::<EtcdBackupSchedule>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&name)
        .await
        .map_err(|source| Error::KubeRead { what: format!("EtcdBackupSchedule {namespace}/{name}"), source })?;
    let Some(schedule) = fresh.map(Arc::new) else { return Ok(Action::await_change()) };
    let now = Timestamp::now();
    let mut status = schedule.status.clone().unwrap_or_default();

    let parsed = Cron::parse(&schedule.spec.schedule).and_then(|cron| {
        let zone = match schedule.spec.time_zone.as_deref() {
            Some(zone) => TimeZone::get(zone).map_err(|e| format!("spec.timeZone {zone:?}: {e}"))?,
            None => TimeZone::UTC,
        };
        Ok((cron, zone))
    });
    let (cron, zone) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => {
            let newly = !status.conditions.iter().any(|c| c.type_ == READY && c.status == "False" && c.message == why);
            status.conditions = vec![condition(&schedule, false, "InvalidSchedule", &why, now)];
            status.next_schedule_time = None;
            write_status(&ctx, &schedule, &status).await?;
            if newly {
                report::publish_warning(&ctx, schedule.as_ref(), "InvalidSchedule", &why).await;
            }
            return Ok(Action::await_change());
        }
    };

    let api: Api<EtcdBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = api
        .list(&ListParams::default().labels(&format!("{LABEL_SCHEDULE}={name}")))
        .await
        .map_err(|source| Error::KubeRead { what: format!("EtcdBackups of schedule {namespace}/{name}"), source })?;
    let backups: Vec<EtcdBackup> = listed
        .items
        .into_iter()
        .filter(|b| b.owner_references().iter().any(|o| Some(&o.uid) == schedule.uid().as_ref()))
        .collect();
    let owned: Vec<OwnedBackup> = backups.iter().map(owned_backup).collect();

    // A run that is due: a new backup, and a drill of the newest that succeeded before it.
    let mut drill_due = false;
    // The last run taken: what status says, or the newest backup of the schedule, whichever is later. The
    // backups are the facts: a reconcile that starts on an object older than this controller's own last
    // status write must not take the same run again.
    let newest_backup = owned.iter().map(|b| b.created).max();
    let since = [status.last_schedule_time.as_ref().map(|t| t.0), newest_backup]
        .into_iter()
        .flatten()
        .max()
        .or(schedule.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    if let Some(due) = plan::due_run(&cron, &zone, since, now)
        && !schedule.spec.suspend
    {
        status.last_schedule_time = Some(Time(due));
        drill_due = schedule.spec.drill;
        let running: Vec<&str> =
            owned.iter().filter(|b| !b.phase.is_some_and(BackupPhase::is_final)).map(|b| b.name.as_str()).collect();
        if running.is_empty() {
            let backup_name = format!("{name}-{}", due.strftime("%Y%m%d%H%M"));
            info!(schedule = %name, %namespace, cluster = %schedule.spec.backup_template.cluster_name, step = "CreateBackup", backup = %backup_name, "decided");
            create_backup(&ctx, &schedule, &namespace, &backup_name).await?;
            status.last_backup = Some(backup_name.clone());
            report::publish_normal(
                &ctx,
                schedule.as_ref(),
                "BackupCreated",
                &format!("EtcdBackup {backup_name} for the run due at {due}"),
            )
            .await;
        } else {
            let note = format!("the run due at {due} is skipped: {} has not ended", running.join(", "));
            info!(schedule = %name, %namespace, step = "SkipRun", reason = %note, "decided");
            report::publish_normal(&ctx, schedule.as_ref(), "BackupSkipped", &note).await;
        }
    }

    if drill_due {
        let drilled = status.last_drill.as_ref().map(|d| d.backup.as_str());
        let newest = backups
            .iter()
            .filter(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Some(BackupPhase::Succeeded) && s.canary_revision.is_some())
            })
            .max_by_key(|b| b.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if let Some(backup) = newest.filter(|b| Some(b.name_any().as_str()) != drilled) {
            info!(schedule = %name, %namespace, step = "Drill", backup = %backup.name_any(), "decided");
            let drill = drill::run(&ctx, &schedule, backup).await?;
            info!(schedule = %name, %namespace, backup = %drill.backup, result = %drill.result, message = %drill.message, restore_seconds = ?drill.restore_seconds, data_age_seconds = ?drill.data_age_seconds, "drill ended");
            ctx.metrics.set_drill(&namespace, &name, &drill);
            let note = format!(
                "drill of {}: {} (restore {:?} s, data age {:?} s)",
                drill.backup, drill.message, drill.restore_seconds, drill.data_age_seconds
            );
            if drill.result == "Succeeded" {
                report::publish_normal(&ctx, schedule.as_ref(), "DrillSucceeded", &note).await;
            } else {
                report::publish_warning(&ctx, schedule.as_ref(), "DrillFailed", &note).await;
            }
            status.last_drill = Some(drill);
        }
    }

    // Retention.
    let retention = &schedule.spec.retention;
    let policy = RetentionPolicy {
        keep_last: usize::try_from(retention.keep_last.unwrap_or(DEFAULT_KEEP_LAST)).unwrap_or(1),
        max_age_secs: retention.max_age.as_deref().and_then(plan::parse_age),
        keep_failed: usize::try_from(retention.keep_failed.unwrap_or(DEFAULT_KEEP_FAILED)).unwrap_or(0),
    };
    let expired = plan::expired(&owned, policy, now);
    if !expired.is_empty() {
        let spec = &schedule.spec.backup_template.store;
        let store = volume_store::open(&ctx, &namespace, spec)
            .await?
            .map_err(|why| Error::StepNotPossible { step: "ExpireBackup", why })?;
        for backup in expired {
            info!(schedule = %name, %namespace, step = "ExpireBackup", backup = %backup.name, "decided");
            if let Some(key) = &backup.key {
                // The stored snapshot first: an EtcdBackup is never deleted while its snapshot may remain.
                store
                    .delete(key)
                    .await
                    .map_err(|e| Error::StepNotPossible { step: "ExpireBackup", why: e.to_string() })?;
            }
            match api.delete(&backup.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::KubeWrite {
                        what: format!("delete EtcdBackup {namespace}/{}", backup.name),
                        source,
                    });
                }
            }
            let note = match &backup.key {
                Some(key) => format!(
                    "EtcdBackup {} and its snapshot {} deleted by the retention policy",
                    backup.name,
                    spec.location(key)
                ),
                None => format!("EtcdBackup {} deleted by the retention policy", backup.name),
            };
            report::publish_normal(&ctx, schedule.as_ref(), "BackupExpired", &note).await;
        }
    }

    // Report.
    status.last_successful_time = backups
        .iter()
        .filter_map(|b| b.status.as_ref().filter(|s| s.phase == Some(BackupPhase::Succeeded))?.completion_time.clone())
        .max_by_key(|t| t.0);
    let next = cron.next_after(status.last_schedule_time.as_ref().map_or(now, |t| t.0.max(now)), &zone);
    status.next_schedule_time = next.map(|t| t.to_string());
    let interval = match next.and_then(|n| Some((n, cron.next_after(n, &zone)?))) {
        Some((first, second)) if !schedule.spec.suspend => second.as_second() - first.as_second(),
        _ => 0,
    };
    let created = schedule.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last_success = status.last_successful_time.as_ref().map_or(created, |t| t.0);
    ctx.metrics.set_schedule_freshness(&namespace, &name, last_success.as_second(), interval);
    let ready = if schedule.spec.suspend {
        ("Suspended", "spec.suspend is true: no backup is taken")
    } else {
        ("Scheduled", "backups are taken on schedule")
    };
    let keep = status.conditions.iter().find(|c| c.type_ == READY && c.reason == ready.0).cloned();
    status.conditions = vec![keep.unwrap_or_else(|| condition(&schedule, true, ready.0, ready.1, now))];
    write_status(&ctx, &schedule, &status).await?;

    let wait = next.map_or(AT_MOST, |next| {
        Duration::from_secs(u64::try_from(next.as_second() - now.as_second()).unwrap_or(0).max(1))
    });
    Ok(Action::requeue(wait.min(AT_MOST)))
}

fn owned_backup(backup: &EtcdBackup) -> OwnedBackup {
    let status = backup.status.as_ref();
    OwnedBackup {
        name: backup.name_any(),
        created: backup.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        phase: status.and_then(|s| s.phase),
        key: status.filter(|s| s.phase == Some(BackupPhase::Succeeded)).and_then(|s| s.key.clone()),
    }
}

fn condition(schedule: &EtcdBackupSchedule, ready: bool, reason: &str, message: &str, now: Timestamp) -> Condition {
    Condition {
        type_: READY.into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.chars().take(1000).collect(),
        last_transition_time: Time(now),
        observed_generation: schedule.metadata.generation,
    }
}

async fn create_backup(ctx: &Context, schedule: &EtcdBackupSchedule, namespace: &str, name: &str) -> Result<(), Error> {
    let owner = schedule.controller_owner_ref(&());
    let backup = json!({
        "apiVersion": EtcdBackup::api_version(&()),
        "kind": EtcdBackup::kind(&()),
        "metadata": {
            "name": name,
            "labels": {LABEL_SCHEDULE: schedule.name_any()},
            "ownerReferences": owner.map(|o| vec![o]),
        },
        "spec": etcd_op_api::v1::EtcdBackupSpec {
            canary: schedule.spec.backup_template.canary || schedule.spec.drill,
            ..schedule.spec.backup_template.clone()
        },
    });
    let backup: EtcdBackup =
        serde_json::from_value(backup).map_err(|e| Error::InvalidSpec(format!("backup template: {e}")))?;
    let api: Api<EtcdBackup> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .create(&PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..PostParams::default() }, &backup)
        .await
    {
        Ok(_) => Ok(()),
        // Created before a restart that lost the status update: the run is taken.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(Error::KubeWrite { what: format!("create EtcdBackup {namespace}/{name}"), source }),
    }
}

async fn write_status(
    ctx: &Context,
    schedule: &EtcdBackupSchedule,
    status: &EtcdBackupScheduleStatus,
) -> Result<(), Error> {
    if schedule.status.as_ref() == Some(status) {
        return Ok(());
    }
    report::apply_status(ctx, schedule, status).await
}
