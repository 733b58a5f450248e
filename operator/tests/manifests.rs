//! Generated and hand-written manifests stay true: the committed CRD is what the Rust types generate, and
//! the kustomize tree renders into the objects the operator needs.

use std::path::PathBuf;
use std::process::Command;

use etcd_op_api::v1::{EtcdBackup, EtcdCluster};
use kube::CustomResourceExt;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let crds = etcd_op_api::crds();
    assert_eq!(crds.len(), 3, "EtcdCluster, EtcdBackup and EtcdBackupSchedule");
    for (file, crd) in crds {
        let generated = serde_saphyr::to_string(&crd).expect("the CRD serializes");
        let path = repo_root().join("config/crd/bases").join(&file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(generated == committed, "{} is stale: run `make manifests` and commit the result", path.display());
    }
    let listed = std::fs::read_dir(repo_root().join("config/crd/bases")).expect("config/crd/bases").count();
    assert_eq!(listed, 3, "config/crd/bases holds exactly the generated CRDs");
}

#[test]
fn backup_crd_carries_what_kubectl_users_expect() {
    let crd = EtcdBackup::crd();
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["etcdbackup".to_string()][..]));
    let version = &crd.spec.versions[0];
    let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    for wanted in ["Cluster", "Phase", "Size", "Revision", "Age"] {
        assert!(columns.contains(&wanted), "printer column {wanted} missing: {columns:?}");
    }
    let schema = serde_json::to_value(version.schema.as_ref().expect("schema")).expect("json");
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in ["clusterName", "store"] {
        let description = spec[field]["description"].as_str().unwrap_or_default();
        assert!(description.len() > 10, "spec.{field} lacks a description: {description:?}");
    }
    let rules = serde_json::to_string(&schema["openAPIV3Schema"]["x-kubernetes-validations"]).expect("json");
    assert!(rules.contains("self.spec == oldSelf.spec"), "the spec is immutable: {rules}");
}

#[test]
fn crd_carries_what_kubectl_users_expect() {
    let crd = EtcdCluster::crd();
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["etcd".to_string()][..]));
    assert_eq!(crd.spec.names.categories.as_deref(), Some(&["all".to_string()][..]));
    let version = &crd.spec.versions[0];
    let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    for wanted in ["Size", "Ready", "Version", "Available", "Age"] {
        assert!(columns.contains(&wanted), "printer column {wanted} missing: {columns:?}");
    }
    let scale = version.subresources.as_ref().and_then(|s| s.scale.as_ref()).expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.size");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
    // `kubectl explain` prints these: every spec field has a description.
    let schema = serde_json::to_value(version.schema.as_ref().expect("schema")).expect("json");
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in ["size", "version", "storage", "podTemplate", "paused", "pvcRetentionPolicy"] {
        let description = spec[field]["description"].as_str().unwrap_or_default();
        assert!(description.len() > 20, "spec.{field} lacks a description: {description:?}");
    }
    assert_eq!(spec["size"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(spec["size"]["maximum"].as_f64(), Some(9.0));
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// `kubectl kustomize <dir>`, run from the repository root; fails the test when it fails.
fn kustomize(dir: &str) -> String {
    let output = Command::new(kubectl())
        .args(["kustomize", dir])
        .current_dir(repo_root())
        .output()
        .expect("kubectl runs (set KUBECTL to its path)");
    assert!(output.status.success(), "kubectl kustomize {dir} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn kustomize_default_renders_the_operator() {
    let rendered = kustomize("config/default");
    for expected in [
        "kind: CustomResourceDefinition",
        "name: etcdclusters.etcd.cloud.io",
        "name: etcd-op-controller-manager",
        "namespace: etcd-op-system",
        "name: etcd-op-manager-role",
        "name: etcd-op-leader-election-role",
        "rbac.authorization.k8s.io/aggregate-to-edit: \"true\"",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "--leader-elect",
    ] {
        assert!(rendered.contains(expected), "rendered config/default lacks {expected:?}");
    }
}

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn kustomize_prometheus_renders_the_monitors_the_alerts_and_the_dashboard_for_grafanas_sidecar() {
    let rendered = kustomize("config/prometheus");
    for expected in [
        "kind: ServiceMonitor",
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "grafana_dashboard: \"1\"",
        "etcd-op.json:",
    ] {
        assert!(rendered.contains(expected), "rendered config/prometheus lacks {expected:?}");
    }
    assert!(rendered.contains("etcd_server_leader_changes_seen_total"), "the ConfigMap carries the dashboard");
}

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn kustomize_samples_render() {
    let rendered = kustomize("config/samples");
    assert!(rendered.contains("kind: EtcdCluster"));
}

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn kustomize_namespaced_grants_the_manager_rights_in_one_namespace() {
    let rendered = kustomize("config/namespaced");
    let documents: Vec<serde_json::Value> =
        rendered.split("\n---\n").map(|d| serde_saphyr::from_str(d).expect("each rendered document is YAML")).collect();
    let find = |kind: &str, name: &str| documents.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name);
    assert!(find("ClusterRoleBinding", "etcd-op-manager-rolebinding").is_none(), "no cluster-wide manager rights");
    let binding = find("RoleBinding", "etcd-op-manager-rolebinding").expect("the manager's RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "etcd");
    assert_eq!(binding["roleRef"]["name"], "etcd-op-manager-role");
    assert_eq!(binding["subjects"][0]["name"], "etcd-op-controller-manager");
    assert_eq!(binding["subjects"][0]["namespace"], "etcd-op-system");
    assert!(find("ClusterRoleBinding", "etcd-op-storageclass-reader").is_some());
    let deployment = find("Deployment", "etcd-op-controller-manager").expect("the manager");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().is_some_and(|a| a.iter().any(|v| v == "--namespace=etcd")), "{args}");
    let webhook = find("ValidatingWebhookConfiguration", "etcd-op-validating-webhook-configuration")
        .expect("the webhook configuration");
    for index in 0..2 {
        assert_eq!(
            webhook["webhooks"][index]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "etcd"
        );
    }
}

fn documents(rendered: &str) -> Vec<serde_json::Value> {
    rendered.split("\n---\n").map(|d| serde_saphyr::from_str(d).expect("each rendered document is YAML")).collect()
}

fn find<'a>(documents: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is rendered"))
}

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn kustomize_default_registers_the_webhook_where_the_manager_serves_it() {
    use clap::Parser;
    let defaults = etcd_op::cli::Cli::try_parse_from(["etcd-op"]).expect("defaults parse").manager;
    let documents = documents(&kustomize("config/default"));
    let configuration = find(&documents, "ValidatingWebhookConfiguration", &defaults.webhook_configuration_name);
    let webhook = &configuration["webhooks"][0];
    let service = &webhook["clientConfig"]["service"];
    assert_eq!(service["name"], defaults.webhook_service_name.as_str());
    assert_eq!(service["namespace"], "etcd-op-system");
    assert_eq!(service["path"], etcd_op::webhook::VALIDATE_PATH);
    // Deletes never go through the webhook, so a manager that is down cannot block them.
    assert_eq!(webhook["rules"][0]["operations"], serde_json::json!(["CREATE", "UPDATE"]));
    let condition = webhook["matchConditions"][0]["expression"].as_str().unwrap_or_default();
    assert!(condition.contains("object.spec != oldObject.spec"), "{condition}");
    assert_eq!(webhook["failurePolicy"], "Fail");

    let service = find(&documents, "Service", &defaults.webhook_service_name);
    assert_eq!(service["metadata"]["namespace"], "etcd-op-system");
    let deployment = find(&documents, "Deployment", "etcd-op-controller-manager");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port = container["ports"].as_array().and_then(|ports| ports.iter().find(|p| p["name"] == "webhook-server"));
    assert_eq!(port.map(|p| &p["containerPort"]), Some(&service["spec"]["ports"][0]["targetPort"]));

    // The manager's rights over its certificate and the trust bundle name exactly what it writes.
    let role = find(&documents, "Role", "etcd-op-webhook-cert-role");
    assert_eq!(role["metadata"]["namespace"], "etcd-op-system");
    assert_eq!(role["rules"][1]["resourceNames"], serde_json::json!([defaults.webhook_secret_name]));
    let config_role = find(&documents, "ClusterRole", "etcd-op-webhook-config-role");
    assert_eq!(config_role["rules"][0]["resourceNames"], serde_json::json!([defaults.webhook_configuration_name]));
    for binding in ["etcd-op-webhook-cert-rolebinding", "etcd-op-webhook-config-rolebinding"] {
        let kind = if binding.contains("cert") { "RoleBinding" } else { "ClusterRoleBinding" };
        let subject = &find(&documents, kind, binding)["subjects"][0];
        assert_eq!(subject["name"], "etcd-op-controller-manager");
        assert_eq!(subject["namespace"], "etcd-op-system");
    }
}

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn kustomize_certmanager_component_hands_the_certificate_to_cert_manager() {
    let overlay = repo_root().join("target/kustomize-certmanager");
    std::fs::create_dir_all(&overlay).expect("a folder under target/");
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources:\n- ../../config/default\ncomponents:\n- ../../config/certmanager\n",
    )
    .expect("the overlay is written");
    let documents = documents(&kustomize("target/kustomize-certmanager"));
    let certificate = find(&documents, "Certificate", "etcd-op-serving-cert");
    let service = find(&documents, "Service", "etcd-op-webhook-service");
    let dns = format!("{}.{}.svc", "etcd-op-webhook-service", service["metadata"]["namespace"].as_str().unwrap_or(""));
    assert!(certificate["spec"]["dnsNames"].as_array().is_some_and(|names| names.iter().any(|n| n == &dns)));
    let configuration = find(&documents, "ValidatingWebhookConfiguration", "etcd-op-validating-webhook-configuration");
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "etcd-op-system/etcd-op-serving-cert"
    );
    let deployment = find(&documents, "Deployment", "etcd-op-controller-manager");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], certificate["spec"]["secretName"]);
    let args = pod["containers"][0]["args"].as_array().cloned().unwrap_or_default();
    let dir = pod["containers"][0]["volumeMounts"][0]["mountPath"].as_str().unwrap_or("?");
    assert!(args.iter().any(|a| *a == format!("--webhook-cert-dir={dir}")), "{args:?}");
}

#[test]
fn backup_samples_are_objects_of_their_kinds() {
    use etcd_op_api::v1::EtcdBackupSchedule;
    let read = |file: &str| std::fs::read_to_string(repo_root().join("config/samples").join(file)).expect("sample");
    let backup: EtcdBackup = serde_saphyr::from_str(&read("etcd_v1_etcdbackup.yaml")).expect("an EtcdBackup");
    assert_eq!(backup.spec.cluster_name, "etcdcluster-sample");
    let schedule: EtcdBackupSchedule =
        serde_saphyr::from_str(&read("etcd_v1_etcdbackupschedule.yaml")).expect("an EtcdBackupSchedule");
    assert_eq!(schedule.spec.backup_template.cluster_name, "etcdcluster-sample");
    assert_eq!(schedule.spec.retention.keep_last, Some(7));
}
