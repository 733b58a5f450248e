//! config/prometheus: the alerts and the Grafana dashboard name only metrics the manager exports, and promtool
//! (built from its Go module; `make test-integration` sets PROMTOOL) checks the rules and runs their unit
//! tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use etcd_op::metrics::Metrics;

fn config(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/prometheus").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(config(file)).unwrap_or_else(|e| panic!("reading config/prometheus/{file}: {e}"))
}

/// The PrometheusRule's `spec`: the groups of a plain Prometheus rule file.
fn rule_groups() -> serde_json::Value {
    let rule: serde_json::Value = serde_saphyr::from_str(&read("rules.yaml")).expect("rules.yaml is YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

/// Every `etcd_op_…` name in `text`.
fn operator_metrics_named_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("etcd_op_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The manager's metrics with a series in every family (a family without one is not rendered at all).
fn every_family_set() -> Metrics {
    use etcd_op::controller::model::CertificateLife;
    use etcd_op::metrics::{BackupLabels, ErrorLabels, LeaseLabels, MemberFigures, StepLabels};
    let metrics = Metrics::default();
    metrics.set_cluster("prod", "main", 3, 3, true);
    let member = MemberFigures {
        member: "main-0".into(),
        db_size_bytes: 1,
        db_size_in_use_bytes: 1,
        quota_bytes: 2,
        alarms: vec!["NOSPACE".into()],
    };
    metrics.set_members("prod", "main", &[member]);
    let certificate = CertificateLife {
        secret: "main-peer-tls".into(),
        validity: etcd_op::pki::Validity { not_before: 0, not_after: 100 },
        renews: true,
    };
    metrics.set_certificates("prod", "main", &[certificate], 10);
    let drill = etcd_op_api::v1::DrillStatus {
        backup: "b".into(),
        result: "Succeeded".into(),
        message: String::new(),
        restore_seconds: Some(1),
        data_age_seconds: Some(1),
        time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    };
    metrics.set_drill("prod", "hourly", &drill);
    metrics.set_schedule_freshness("prod", "hourly", 0, 3600);
    metrics.steps_total.get_or_create(&StepLabels { step: "AddLearner".into() }).inc();
    metrics.backups_total.get_or_create(&BackupLabels { outcome: "succeeded".into() }).inc();
    let error = ErrorLabels { controller: "etcdcluster".into(), reason: "EtcdRequestFailed".into() };
    metrics.reconcile_errors_by_reason.get_or_create(&error).inc();
    metrics.leader_election_status.get_or_create(&LeaseLabels { name: "etcd-op".into() }).set(1);
    metrics
}

/// The metric families the manager exports, by the names a query uses for their series.
fn exported() -> BTreeSet<String> {
    let text = every_family_set().render().expect("the metrics render");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_string());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

#[test]
fn every_alert_queries_metrics_the_manager_exports() {
    let groups = rule_groups();
    let rules: Vec<&serde_json::Value> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(rules.len() >= 9, "the alerts are there: {}", rules.len());
    let exported = exported();
    for rule in rules {
        let expr = rule["expr"].as_str().expect("an expression");
        let named = operator_metrics_named_in(expr);
        assert!(!named.is_empty(), "{} queries one of the manager's metrics", rule["alert"]);
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(unknown.is_empty(), "{} queries {unknown:?}, which the manager does not export", rule["alert"]);
        assert!(rule["labels"]["severity"].is_string(), "{} has a severity", rule["alert"]);
        assert!(rule["annotations"]["summary"].is_string(), "{} has a summary", rule["alert"]);
    }
}

#[test]
fn the_dashboard_queries_metrics_the_manager_exports_and_etcds_own() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("dashboard.json")).expect("dashboard.json is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "the panels query something: {exprs:?}");
    let all = exprs.join("\n");
    let unknown: Vec<_> = operator_metrics_named_in(&all).difference(&exported()).cloned().collect();
    assert!(unknown.is_empty(), "the dashboard queries {unknown:?}, which the manager does not export");
    for etcd_metric in [
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_failed_total",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_server_quota_backend_bytes",
        "etcd_network_peer_round_trip_time_seconds_bucket",
    ] {
        assert!(all.contains(etcd_metric), "a panel shows etcd's {etcd_metric}");
    }
}

#[test]
#[ignore = "needs promtool: `make test-integration` builds it and sets PROMTOOL"]
fn promtool_checks_the_rules_and_every_alert_fires_on_its_unit_test() {
    let promtool = std::env::var("PROMTOOL").expect("PROMTOOL names promtool");
    let dir = std::env::temp_dir().join(format!("etcd-op-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let groups = serde_json::to_string_pretty(&rule_groups()).expect("the groups as JSON");
    std::fs::write(dir.join("rules.json"), groups).expect("rules.json");
    std::fs::write(dir.join("rules_test.yaml"), read("rules_test.yaml")).expect("rules_test.yaml");
    let run = |args: &[&str]| {
        let output =
            std::process::Command::new(&promtool).args(args).current_dir(&dir).output().expect("promtool runs");
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), said)
    };
    let checked = run(&["check", "rules", "rules.json"]);
    let tested = run(&["test", "rules", "rules_test.yaml"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(checked.0, "promtool check rules:\n{}", checked.1);
    assert!(checked.1.contains("SUCCESS: 9 rules found"), "promtool found every rule:\n{}", checked.1);
    assert!(tested.0, "promtool test rules:\n{}", tested.1);
    println!("{}\n{}", checked.1, tested.1);
}
