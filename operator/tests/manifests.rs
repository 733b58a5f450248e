//! Generated and hand-written manifests stay true: the committed CRD is what the Rust types generate, and
//! the kustomize tree renders into the objects the operator needs.

use std::path::PathBuf;
use std::process::Command;

use etcd_op_api::v1::EtcdCluster;
use kube::CustomResourceExt;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = serde_saphyr::to_string(&EtcdCluster::crd()).expect("the CRD serializes");
    let path = repo_root().join("config/crd/bases/etcd.cloud.io_etcdclusters.yaml");
    let committed = std::fs::read_to_string(&path).expect("the committed CRD exists");
    assert!(generated == committed, "{} is stale: run `make manifests` and commit the result", path.display());
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
}
