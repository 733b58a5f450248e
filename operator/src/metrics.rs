//! Prometheus metrics under the controller-runtime names, so existing dashboards work, plus per-cluster
//! gauges and the process metrics.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub const CONTROLLER: &str = "etcdcluster";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub namespace: String,
    pub cluster: String,
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlarmLabels {
    pub namespace: String,
    pub cluster: String,
    pub member: String,
    pub alarm: String,
}

/// What one member reports about its database, for the per-member gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFigures {
    pub member: String,
    pub db_size_bytes: i64,
    pub db_size_in_use_bytes: i64,
    pub quota_bytes: i64,
    /// Alarms raised for this member, by etcd's name (NOSPACE, CORRUPT).
    pub alarms: Vec<String>,
}

/// The alarms etcd raises, each with a series per member so an alert can fire on 1.
pub const ALARMS: [&str; 2] = ["NOSPACE", "CORRUPT"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub namespace: String,
    pub cluster: String,
    pub secret: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackupLabels {
    /// `succeeded` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    pub namespace: String,
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub name: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub reconcile_errors_by_reason: Family<ErrorLabels, Counter>,
    pub reconcile_time: Family<ControllerLabels, Histogram>,
    pub steps_total: Family<StepLabels, Counter>,
    pub backups_total: Family<BackupLabels, Counter>,
    drill_success: Family<ScheduleLabels, Gauge>,
    drill_restore_seconds: Family<ScheduleLabels, Gauge>,
    drill_data_age_seconds: Family<ScheduleLabels, Gauge>,
    schedule_last_success: Family<ScheduleLabels, Gauge>,
    schedule_interval: Family<ScheduleLabels, Gauge>,
    pub desired_members: Family<ClusterLabels, Gauge>,
    pub ready_members: Family<ClusterLabels, Gauge>,
    pub leader_present: Family<ClusterLabels, Gauge>,
    pub leader_election_status: Family<LeaseLabels, Gauge>,
    member_db_size: Family<MemberLabels, Gauge>,
    member_db_size_in_use: Family<MemberLabels, Gauge>,
    member_quota: Family<MemberLabels, Gauge>,
    member_alarm: Family<AlarmLabels, Gauge>,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    /// The certificate Secrets each cluster's expiry gauges were last set for.
    certificates_seen: Seen,
    /// The members each cluster's gauges were last set for, so series of members that left are removed.
    members_seen: Seen,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    open_fds: Gauge,
    start_time: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors_by_reason = Family::<ErrorLabels, Counter>::default();
        let reconcile_time = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "etcd_op_reconcile_errors_by_reason",
            "Reconciliation errors by error reason",
            reconcile_errors_by_reason.clone(),
        );
        registry.register_with_unit(
            "controller_runtime_reconcile_time",
            "Length of time per reconciliation per controller",
            prometheus_client::registry::Unit::Seconds,
            reconcile_time.clone(),
        );
        let steps_total = Family::<StepLabels, Counter>::default();
        registry.register("etcd_op_steps", "Steps taken on etcd clusters, by step", steps_total.clone());
        let backups_total = Family::<BackupLabels, Counter>::default();
        registry.register("etcd_op_backups", "EtcdBackups that ended, by outcome", backups_total.clone());
        let drill_success = Family::<ScheduleLabels, Gauge>::default();
        let drill_restore_seconds = Family::<ScheduleLabels, Gauge>::default();
        let drill_data_age_seconds = Family::<ScheduleLabels, Gauge>::default();
        registry.register(
            "etcd_op_drill_success",
            "1 when the schedule's last restore drill read its canary back",
            drill_success.clone(),
        );
        registry.register(
            "etcd_op_drill_restore_seconds",
            "Seconds the last restore drill took, pod creation to canary read (RTO)",
            drill_restore_seconds.clone(),
        );
        registry.register(
            "etcd_op_drill_data_age_seconds",
            "Age of the data the last restore drill restored, in seconds (RPO)",
            drill_data_age_seconds.clone(),
        );
        let schedule_last_success = Family::<ScheduleLabels, Gauge>::default();
        let schedule_interval = Family::<ScheduleLabels, Gauge>::default();
        registry.register_with_unit(
            "etcd_op_schedule_last_success_timestamp",
            "When the schedule's newest backup that succeeded completed (Unix time); the schedule's creation \
             while none has",
            prometheus_client::registry::Unit::Seconds,
            schedule_last_success.clone(),
        );
        registry.register_with_unit(
            "etcd_op_schedule_interval",
            "Time between the schedule's next two runs; 0 while it is suspended",
            prometheus_client::registry::Unit::Seconds,
            schedule_interval.clone(),
        );
        let desired_members = Family::<ClusterLabels, Gauge>::default();
        let ready_members = Family::<ClusterLabels, Gauge>::default();
        let leader_present = Family::<ClusterLabels, Gauge>::default();
        registry.register("etcd_op_cluster_desired_members", "Members the spec asks for", desired_members.clone());
        registry.register("etcd_op_cluster_ready_members", "Healthy voting members", ready_members.clone());
        registry.register(
            "etcd_op_cluster_leader_present",
            "1 when the cluster has a raft leader",
            leader_present.clone(),
        );
        let leader_election_status = Family::<LeaseLabels, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "1 when this manager holds the leader-election lease",
            leader_election_status.clone(),
        );
        let member_db_size = Family::<MemberLabels, Gauge>::default();
        let member_db_size_in_use = Family::<MemberLabels, Gauge>::default();
        let member_quota = Family::<MemberLabels, Gauge>::default();
        let member_alarm = Family::<AlarmLabels, Gauge>::default();
        registry.register_with_unit(
            "etcd_op_member_db_size",
            "Size of the member's database file",
            prometheus_client::registry::Unit::Bytes,
            member_db_size.clone(),
        );
        registry.register_with_unit(
            "etcd_op_member_db_size_in_use",
            "Part of the member's database file in use; the rest is reclaimed by a defragmentation",
            prometheus_client::registry::Unit::Bytes,
            member_db_size_in_use.clone(),
        );
        registry.register_with_unit(
            "etcd_op_member_quota",
            "The member's backend quota: past it etcd raises NOSPACE and refuses writes",
            prometheus_client::registry::Unit::Bytes,
            member_quota.clone(),
        );
        registry.register(
            "etcd_op_member_alarm",
            "1 while etcd has raised this alarm for the member",
            member_alarm.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register_with_unit(
            "etcd_op_certificate_expiry",
            "Time until a cluster's certificate expires, by the Secret that holds it",
            prometheus_client::registry::Unit::Seconds,
            certificate_expiry.clone(),
        );
        let resident_memory = Gauge::default();
        let virtual_memory = Gauge::default();
        let cpu_seconds = Counter::<f64, AtomicU64>::default();
        let open_fds = Gauge::default();
        let start_time = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            prometheus_client::registry::Unit::Bytes,
            resident_memory.clone(),
        );
        registry.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            prometheus_client::registry::Unit::Bytes,
            virtual_memory.clone(),
        );
        registry.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent",
            prometheus_client::registry::Unit::Seconds,
            cpu_seconds.clone(),
        );
        registry.register("process_open_fds", "Number of open file descriptors", open_fds.clone());
        registry.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            prometheus_client::registry::Unit::Seconds,
            start_time.clone(),
        );
        // Series exist from the start, at zero, as controller-runtime's do: dashboards and alerts see a
        // standby or a quiet manager too.
        for result in ["success", "error", "requeue"] {
            drop(reconcile_total.get_or_create(&ResultLabels { controller: CONTROLLER.into(), result: result.into() }));
        }
        drop(reconcile_errors.get_or_create(&controller()));
        drop(reconcile_time.get_or_create(&controller()));
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_errors_by_reason,
            reconcile_time,
            steps_total,
            backups_total,
            drill_success,
            drill_restore_seconds,
            drill_data_age_seconds,
            schedule_last_success,
            schedule_interval,
            desired_members,
            ready_members,
            leader_present,
            leader_election_status,
            member_db_size,
            member_db_size_in_use,
            member_quota,
            member_alarm,
            certificate_expiry,
            certificates_seen: std::sync::Mutex::default(),
            members_seen: std::sync::Mutex::default(),
            resident_memory,
            virtual_memory,
            cpu_seconds,
            open_fds,
            start_time,
        }
    }
}

fn controller() -> ControllerLabels {
    ControllerLabels { controller: CONTROLLER.to_string() }
}

impl Metrics {
    pub fn observe_reconcile(&self, elapsed: Duration, error_reason: Option<&str>) {
        self.reconcile_time.get_or_create(&controller()).observe(elapsed.as_secs_f64());
        let result = if error_reason.is_some() { "error" } else { "success" };
        self.reconcile_total
            .get_or_create(&ResultLabels { controller: CONTROLLER.to_string(), result: result.to_string() })
            .inc();
        if let Some(reason) = error_reason {
            self.reconcile_errors.get_or_create(&controller()).inc();
            self.reconcile_errors_by_reason
                .get_or_create(&ErrorLabels { controller: CONTROLLER.to_string(), reason: reason.to_string() })
                .inc();
        }
    }

    pub fn set_cluster(&self, namespace: &str, name: &str, desired: i64, ready: i64, leader: bool) {
        let labels = ClusterLabels { namespace: namespace.to_string(), name: name.to_string() };
        self.desired_members.get_or_create(&labels).set(desired);
        self.ready_members.get_or_create(&labels).set(ready);
        self.leader_present.get_or_create(&labels).set(i64::from(leader));
    }

    /// The figures of a schedule's last restore drill.
    pub fn set_drill(&self, namespace: &str, schedule: &str, drill: &etcd_op_api::v1::DrillStatus) {
        let labels = ScheduleLabels { namespace: namespace.to_string(), schedule: schedule.to_string() };
        self.drill_success.get_or_create(&labels).set(i64::from(drill.result == "Succeeded"));
        if let Some(seconds) = drill.restore_seconds {
            self.drill_restore_seconds.get_or_create(&labels).set(seconds);
        }
        if let Some(seconds) = drill.data_age_seconds {
            self.drill_data_age_seconds.get_or_create(&labels).set(seconds);
        }
    }

    /// How fresh a schedule's backups are: its last success (or creation) and its interval, for the alert on
    /// backups too old.
    pub fn set_schedule_freshness(&self, namespace: &str, schedule: &str, last_success: i64, interval: i64) {
        let labels = ScheduleLabels { namespace: namespace.to_string(), schedule: schedule.to_string() };
        self.schedule_last_success.get_or_create(&labels).set(last_success);
        self.schedule_interval.get_or_create(&labels).set(interval);
    }

    pub fn forget_cluster(&self, namespace: &str, name: &str) {
        let labels = ClusterLabels { namespace: namespace.to_string(), name: name.to_string() };
        self.desired_members.remove(&labels);
        self.ready_members.remove(&labels);
        self.leader_present.remove(&labels);
        self.set_members(namespace, name, &[]);
        self.set_certificates(namespace, name, &[], 0);
    }

    /// Sets the seconds until each of a cluster's certificates expires (negative once it has), and removes the
    /// series of certificates it no longer has. Set on each reconcile, which comes at least once a minute.
    pub fn set_certificates(
        &self,
        namespace: &str,
        cluster: &str,
        certificates: &[crate::controller::model::CertificateLife],
        now: i64,
    ) {
        let labels = |secret: &str| CertificateLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            secret: secret.to_string(),
        };
        for c in certificates {
            self.certificate_expiry.get_or_create(&labels(&c.secret)).set(c.validity.not_after - now);
        }
        let current = certificates.iter().map(|c| c.secret.clone()).collect();
        for gone in no_longer_seen(&self.certificates_seen, namespace, cluster, current) {
            self.certificate_expiry.remove(&labels(&gone));
        }
    }

    /// Sets the per-member gauges of one cluster to `members` (the members that answered), and removes the
    /// series of members no longer among them.
    pub fn set_members(&self, namespace: &str, cluster: &str, members: &[MemberFigures]) {
        let labels = |member: &str| MemberLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            member: member.to_string(),
        };
        let alarm_labels = |member: &str, alarm: &str| AlarmLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            member: member.to_string(),
            alarm: alarm.to_string(),
        };
        for m in members {
            let l = labels(&m.member);
            self.member_db_size.get_or_create(&l).set(m.db_size_bytes);
            self.member_db_size_in_use.get_or_create(&l).set(m.db_size_in_use_bytes);
            self.member_quota.get_or_create(&l).set(m.quota_bytes);
            for alarm in ALARMS {
                let raised = m.alarms.iter().any(|a| a == alarm);
                self.member_alarm.get_or_create(&alarm_labels(&m.member, alarm)).set(i64::from(raised));
            }
        }
        let current = members.iter().map(|m| m.member.clone()).collect();
        for gone in no_longer_seen(&self.members_seen, namespace, cluster, current) {
            let l = labels(&gone);
            self.member_db_size.remove(&l);
            self.member_db_size_in_use.remove(&l);
            self.member_quota.remove(&l);
            for alarm in ALARMS {
                self.member_alarm.remove(&alarm_labels(&gone, alarm));
            }
        }
    }

    /// Renders the registry in the Prometheus text format, with the process metrics read just now.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        if let Some(process) = read_process_stats() {
            self.resident_memory.set(process.resident_bytes);
            self.virtual_memory.set(process.virtual_bytes);
            // The kernel's figure only grows; the counter follows it.
            let behind = process.cpu_seconds - self.cpu_seconds.get();
            if behind > 0.0 {
                self.cpu_seconds.inc_by(behind);
            }
            self.open_fds.set(process.open_fds);
            self.start_time.set(process.start_time_seconds);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Series names of one cluster, by (namespace, cluster).
type Seen = std::sync::Mutex<std::collections::HashMap<(String, String), Vec<String>>>;

/// Records `current` as what a cluster's gauges are set for, and returns what was set before but is not
/// any more, whose series are to be removed.
fn no_longer_seen(seen: &Seen, namespace: &str, cluster: &str, current: Vec<String>) -> Vec<String> {
    let key = (namespace.to_string(), cluster.to_string());
    let before = match seen.lock() {
        Ok(mut seen) if current.is_empty() => seen.remove(&key).unwrap_or_default(),
        Ok(mut seen) => seen.insert(key, current.clone()).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    before.into_iter().filter(|name| !current.contains(name)).collect()
}

struct ProcessStats {
    resident_bytes: i64,
    virtual_bytes: i64,
    cpu_seconds: f64,
    open_fds: i64,
    start_time_seconds: i64,
}

/// Reads /proc/self; `None` where there is no procfs.
fn read_process_stats() -> Option<ProcessStats> {
    const CLOCK_TICKS: f64 = 100.0;
    const PAGE_SIZE: i64 = 4096;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
    let (utime, stime, start_ticks) = (number(11)?, number(12)?, number(19)?);
    let virtual_bytes = number(20)?;
    let resident_bytes = number(21)? * PAGE_SIZE;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(ProcessStats {
        resident_bytes,
        virtual_bytes,
        cpu_seconds: (utime + stime) as f64 / CLOCK_TICKS,
        open_fds: i64::try_from(open_fds).unwrap_or(i64::MAX),
        start_time_seconds: boot_time + (start_ticks as f64 / CLOCK_TICKS) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::model::CertificateLife;
    use crate::pki::Validity;

    fn life(secret: &str, not_after: i64) -> CertificateLife {
        CertificateLife { secret: secret.into(), validity: Validity { not_before: 0, not_after }, renews: true }
    }

    #[test]
    fn certificate_expiry_counts_down_and_series_of_gone_certificates_go() -> Result<(), std::fmt::Error> {
        let metrics = Metrics::default();
        metrics.set_certificates("prod", "demo", &[life("demo-peer-tls", 1_000), life("demo-client-tls", 500)], 400);
        let text = metrics.render()?;
        assert!(
            text.contains(
                r#"etcd_op_certificate_expiry_seconds{namespace="prod",cluster="demo",secret="demo-peer-tls"} 600"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"secret="demo-client-tls"} 100"#), "{text}");

        metrics.set_certificates("prod", "demo", &[life("demo-peer-tls", 1_000)], 900);
        let text = metrics.render()?;
        assert!(text.contains(r#"secret="demo-peer-tls"} 100"#), "{text}");
        assert!(!text.contains("demo-client-tls"), "{text}");

        metrics.forget_cluster("prod", "demo");
        assert!(!metrics.render()?.contains("demo-peer-tls"));
        Ok(())
    }
}
