//! The Helm chart generated from config/ (dist/chart), with helm built from its Go module: with its default
//! values it renders what config/default does; installed as a release of its own, scoped to one namespace,
//! its operator runs an EtcdCluster there and its webhook refuses what config/'s refuses; `helm upgrade`
//! changes what the values say; `helm uninstall` removes every object it made.
//!
//! The config/-deployed operator stands down while the chart's runs (two cluster-wide webhooks and a
//! cluster-wide operator would both act on the same clusters), and is put back however the test ends: this
//! scenario runs with the others that take the operator away.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_op_e2e::{TestNamespace, client, create_cluster, wait_settled};
use etcd_op_test_support::{OPERATOR_NAMESPACE, kubeconfig, kubectl, repo_root, wait_for};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const RELEASE: &str = "etcd-op-chart";
const OPERATOR_DEPLOYMENT: &str = "etcd-op-controller-manager";
const OPERATOR_WEBHOOK: &str = "etcd-op-validating-webhook-configuration";

/// helm: `$HELM`, else the test bed's build (`hack/build.sh helm`).
fn helm(args: &[&str]) -> Result<String> {
    let binary = match std::env::var("HELM") {
        Ok(path) => PathBuf::from(path),
        Err(_) => {
            let output = Command::new(repo_root().join("hack/build.sh")).arg("helm").output()?;
            if !output.status.success() {
                bail!("hack/build.sh helm: {}", String::from_utf8_lossy(&output.stderr));
            }
            PathBuf::from(String::from_utf8(output.stdout)?.trim()).join("helm")
        }
    };
    let output = Command::new(&binary)
        .args(args)
        .env("KUBECONFIG", kubeconfig()?)
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("helm {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn documents(rendered: &str) -> Result<Vec<Value>> {
    rendered
        .split("\n---")
        .map(|text| text.lines().filter(|l| !l.starts_with("# Source:")).collect::<Vec<_>>().join("\n"))
        .filter(|text| !text.trim().is_empty())
        .map(|text| serde_saphyr::from_str(&text).context("a rendered document is not YAML"))
        .collect()
}

/// Labels are the chart's own (Helm's instance, chart and manager); the manager's arguments add the names
/// that follow the release. Everything else must be the same.
fn without_labels_and_args(mut object: Value) -> (Value, Vec<String>) {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("labels");
    }
    let mut args = Vec::new();
    if let Some(containers) = object.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut) {
        for container in containers {
            if let Some(list) = container.as_object_mut().and_then(|c| c.remove("args")) {
                args = serde_json::from_value(list).unwrap_or_default();
            }
        }
    }
    (object, args)
}

#[tokio::test]
async fn the_chart_with_its_default_values_renders_what_config_default_does() -> Result<()> {
    helm(&["lint", "dist/chart"])?;
    let chart = documents(&helm(&["template", "etcd-op", "dist/chart", "--namespace", OPERATOR_NAMESPACE])?)?;
    let config = documents(&kubectl(&["kustomize", &repo_root().join("config/default").to_string_lossy()])?)?;
    let config: Vec<&Value> =
        config.iter().filter(|o| o["kind"] != "Namespace" && o["kind"] != "CustomResourceDefinition").collect();
    assert_eq!(chart.len(), config.len(), "the same number of objects (the CRDs are in the chart's crds/)");
    for expected in config {
        let found = chart
            .iter()
            .find(|o| o["kind"] == expected["kind"] && o["metadata"]["name"] == expected["metadata"]["name"])
            .with_context(|| format!("the chart renders no {} {}", expected["kind"], expected["metadata"]["name"]))?;
        assert_eq!(found["metadata"]["labels"]["app.kubernetes.io/instance"], "etcd-op");
        let (found, chart_args) = without_labels_and_args(found.clone());
        let (expected, config_args) = without_labels_and_args(expected.clone());
        assert_eq!(found, expected, "the chart's object differs from config/default's");
        for arg in &config_args {
            assert!(chart_args.contains(arg), "the chart's manager lacks {arg}: {chart_args:?}");
        }
    }
    Ok(())
}

/// The config/-deployed operator, stood down for the chart's and put back when this is dropped.
struct StoodDown {
    webhook: Value,
    restored: bool,
}

impl StoodDown {
    fn new() -> Result<Self> {
        let mut webhook: Value = serde_json::from_str(&kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            OPERATOR_WEBHOOK,
            "-o",
            "json",
        ])?)?;
        if let Some(metadata) = webhook["metadata"].as_object_mut() {
            for field in ["resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"] {
                metadata.remove(field);
            }
        }
        let stood_down = Self { webhook, restored: false };
        kubectl(&["-n", OPERATOR_NAMESPACE, "scale", "deployment", OPERATOR_DEPLOYMENT, "--replicas=0"])?;
        kubectl(&["delete", "validatingwebhookconfiguration", OPERATOR_WEBHOOK, "--wait=true"])?;
        Ok(stood_down)
    }

    fn restore(&mut self) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        let file = std::env::temp_dir().join(format!("etcd-op-webhook-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_vec(&self.webhook)?)?;
        let created = kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        created?;
        kubectl(&["-n", OPERATOR_NAMESPACE, "scale", "deployment", OPERATOR_DEPLOYMENT, "--replicas=1"])?;
        self.restored = true;
        Ok(())
    }
}

impl Drop for StoodDown {
    fn drop(&mut self) {
        if let Err(error) = self.restore() {
            eprintln!("putting the config/-deployed operator back failed: {error:#}");
        }
    }
}

#[tokio::test]
async fn helm_installs_an_operator_for_one_namespace_upgrades_and_uninstalls_it() -> Result<()> {
    let client = client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let image = deployments
        .get(OPERATOR_DEPLOYMENT)
        .await?
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .context("the deployed operator's image")?;
    let (repository, tag) = image.rsplit_once(':').context("the operator's image has a tag")?;
    let operator_ns = TestNamespace::create(&client, "e2e-helm-operator").await?;
    let watched = TestNamespace::create(&client, "e2e-helm").await?;
    let (o, n) = (operator_ns.name.as_str(), watched.name.as_str());

    let mut stood_down = StoodDown::new()?;
    helm(&[
        "install",
        RELEASE,
        "dist/chart",
        "--namespace",
        o,
        "--wait",
        "--timeout",
        "180s",
        "--set",
        &format!("image.repository={repository}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        &format!("watchNamespace={n}"),
    ])?;
    let chart_deployments: Api<Deployment> = Api::namespaced(client.clone(), o);
    let manager = chart_deployments.get(&format!("{RELEASE}-controller-manager")).await?;
    let args = manager.spec.and_then(|s| s.template.spec).and_then(|s| s.containers.into_iter().next()?.args);
    assert!(args.as_ref().is_some_and(|a| a.contains(&format!("--namespace={n}"))), "{args:?}");

    // The chart's webhook is asked about the watched namespace only, and its manager wrote its trust bundle.
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let chart_webhook = format!("{RELEASE}-validating-webhook-configuration");
    wait_for("the chart's manager to write its webhook's trust bundle", Duration::from_secs(60), || async {
        let configuration = webhooks.get(&chart_webhook).await?;
        let all = configuration.webhooks.unwrap_or_default();
        Ok((!all.is_empty() && all.iter().all(|w| w.client_config.ca_bundle.is_some())).then_some(()))
    })
    .await?;
    let configuration = webhooks.get(&chart_webhook).await?;
    for webhook in configuration.webhooks.unwrap_or_default() {
        let labels = webhook.namespace_selector.and_then(|s| s.match_labels).unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/metadata.name"), Some(&n.to_string()), "{}", webhook.name);
    }
    let refused = create_cluster(
        &client,
        n,
        "no-class",
        json!({"size": 1, "storage": {"volumeClaimTemplate": {"storageClassName": "no-such-class"}}}),
    )
    .await;
    let message = format!("{:#}", refused.err().context("the chart's webhook accepted a missing StorageClass")?);
    assert!(message.contains("denied the request") && message.contains("no-such-class"), "{message}");

    create_cluster(&client, n, "charted", json!({"size": 1})).await?;
    let version = etcd_op_api::v1::DEFAULT_ETCD_VERSION;
    wait_settled(&client, n, "charted", 1, version, Duration::from_secs(180)).await?;

    helm(&[
        "upgrade",
        RELEASE,
        "dist/chart",
        "--namespace",
        o,
        "--reuse-values",
        "--set",
        "resources.limits.memory=160Mi",
        "--wait",
        "--timeout",
        "180s",
    ])?;
    let manager = chart_deployments.get(&format!("{RELEASE}-controller-manager")).await?;
    let limits = manager
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next()?.resources?.limits)
        .unwrap_or_default();
    assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("160Mi"));

    // Its clusters go first: the manager removes their finalizers.
    kubectl(&["-n", n, "delete", "etcdcluster", "charted", "--wait=true", "--timeout=120s"])?;
    helm(&["uninstall", RELEASE, "--namespace", o, "--wait", "--timeout", "120s"])?;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let left: Vec<String> = roles
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .filter(|name| name.starts_with(&format!("{RELEASE}-")))
        .collect();
    assert!(left.is_empty(), "helm uninstall left cluster roles: {left:?}");
    assert!(webhooks.get_opt(&chart_webhook).await?.is_none(), "helm uninstall left the webhook configuration");

    stood_down.restore()?;
    wait_for("the config/-deployed operator to be back", Duration::from_secs(120), || async {
        let deployment = deployments.get(OPERATOR_DEPLOYMENT).await?;
        Ok((deployment.status.and_then(|s| s.available_replicas) == Some(1)).then_some(()))
    })
    .await?;
    watched.delete().await?;
    operator_ns.delete().await?;
    Ok(())
}
