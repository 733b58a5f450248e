use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::EtcdBackupSpec;

/// Backups of a cluster on a schedule, with the oldest deleted by a retention policy.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "etcd.cloud.io",
    version = "v1",
    kind = "EtcdBackupSchedule",
    namespaced,
    shortname = "etcdbackupschedule",
    category = "all",
    status = "EtcdBackupScheduleStatus",
    derive = "PartialEq",
    doc = "EtcdBackupSchedule takes an EtcdBackup of a cluster on a cron schedule and deletes the oldest by its retention policy.",
    printcolumn = r#"{"name":"Cluster", "type":"string", "jsonPath":".spec.backupTemplate.clusterName"}"#,
    printcolumn = r#"{"name":"Schedule", "type":"string", "jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Suspend", "type":"boolean", "jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Last Backup", "type":"date", "jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Last Success", "type":"date", "jsonPath":".status.lastSuccessfulTime"}"#,
    printcolumn = r#"{"name":"Next", "type":"string", "jsonPath":".status.nextScheduleTime", "priority":1}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupScheduleSpec {
    /// When to take a backup, in cron's five fields (minute hour day-of-month month day-of-week: `*`, lists,
    /// ranges and steps, such as `0 */6 * * *`), or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    /// A run missed while the operator was away is taken once, as soon as it is back.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// The IANA time zone the schedule is read in, such as `Europe/Berlin`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// No new backup is taken while true; retention still applies.
    #[serde(default)]
    pub suspend: bool,

    /// The EtcdBackup each run creates, named `<schedule>-<time>` and owned by this schedule.
    pub backup_template: EtcdBackupSpec,

    /// Which backups of this schedule are kept; the others are deleted, from the store and as EtcdBackups.
    /// The newest backup that succeeded is always kept.
    #[serde(default)]
    pub retention: Retention,

    /// Restore drills: at each run, before its new backup, the newest backup that succeeded is restored into
    /// a throwaway single-member etcd (a pod on emptyDir, no Service), started, and checked by reading the
    /// canary key written just before its snapshot. `status.lastDrill` and the metrics record the result,
    /// the time the restore took (RTO) and the age of the data it restored (RPO).
    #[serde(default)]
    pub drill: bool,
}

/// The last restore drill of a schedule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// The EtcdBackup restored.
    pub backup: String,
    /// `Succeeded` or `Failed`.
    pub result: String,
    pub message: String,
    /// From the drill pod's creation to the canary read back, in seconds (the recovery time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<i64>,
    /// The age of the restored data when it was read back, in seconds (the recovery point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_age_seconds: Option<i64>,
    pub time: Time,
}

/// How many backups, and how old, a schedule keeps.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep at most this many backups that succeeded; 7 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_last: Option<i32>,

    /// Delete backups older than this, as a number followed by `h` or `d` (for example 30d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,5}(h|d)$"))]
    pub max_age: Option<String>,

    /// Keep at most this many failed backups, for their messages; 3 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub keep_failed: Option<i32>,
}

/// Backups kept when `keepLast` is unset.
pub const DEFAULT_KEEP_LAST: i32 = 7;
/// Failed backups kept when `keepFailed` is unset.
pub const DEFAULT_KEEP_FAILED: i32 = 3;

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupScheduleStatus {
    /// When the last run was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the newest backup that succeeded was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The newest EtcdBackup of this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// The last restore drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillStatus>,
    /// When the next run is due, in RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// `Ready` is False with the reason when the schedule or its time zone cannot be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
