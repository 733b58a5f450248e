//! The Helm chart in dist/chart, generated from what config/ renders so that config/ stays the one source of
//! truth. Every object's body comes from `kustomize config/default`; config/namespaced supplies what the
//! value `watchNamespace` switches on (the manager's rights in one namespace, the webhooks' namespace
//! selector, `--namespace`); the CRDs are config/crd/bases' files. What this adds is only what makes the
//! objects a chart: names after the release, the release's namespace, Helm's labels, and values for the
//! image, the scope, leader election, metrics, the webhook and resources.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// config/default's name prefix and namespace, which the chart replaces by the release's.
const PREFIX: &str = "etcd-op-";
const NAMESPACE: &str = "etcd-op-system";
/// The namespace config/namespaced watches, which the chart replaces by `watchNamespace`.
const WATCHED: &str = "etcd";

/// Placeholders the objects carry through the YAML serializer as plain strings, each then replaced by its
/// template action. Where a placeholder stands for several lines it is a whole `key: placeholder` line.
const INLINE: &[(&str, &str)] = &[
    ("__FULLNAME__", r#"{{ include "etcd-op.fullname" . }}"#),
    ("__RELEASE_NAMESPACE__", "{{ .Release.Namespace }}"),
    ("__WATCH_NAMESPACE__", "{{ .Values.watchNamespace }}"),
    ("__MANAGED_BY__", "{{ .Release.Service }}"),
    ("__RELEASE_NAME__", "{{ .Release.Name }}"),
    ("__CHART__", r#"{{ include "etcd-op.chart" . }}"#),
    ("__IMAGE__", "{{ .Values.image.repository }}:{{ .Values.image.tag }}"),
    ("__PULL_POLICY__", "{{ .Values.image.pullPolicy }}"),
    ("__REPLICAS__", "{{ .Values.replicaCount }}"),
];
const ARGS: &str = "__ARGS__";
const RESOURCES: &str = "__RESOURCES__";
const POD_PLACEMENT: &str = "__POD_PLACEMENT__";
const NAMESPACE_SELECTOR: &str = "__NAMESPACE_SELECTOR_";

/// What the chart is made from.
pub struct Sources {
    /// `kustomize config/default`.
    pub default: String,
    /// `kustomize config/namespaced`.
    pub namespaced: String,
    /// config/crd/bases: file name and text.
    pub crds: Vec<(String, String)>,
}

impl Sources {
    /// Renders config/default and config/namespaced with `kubectl kustomize` and reads config/crd/bases.
    pub fn read(repo: &Path, kubectl: &str) -> Result<Self> {
        let kustomize = |dir: &str| -> Result<String> {
            let output = Command::new(kubectl)
                .arg("kustomize")
                .arg(repo.join(dir))
                .output()
                .with_context(|| format!("running {kubectl} kustomize {dir}"))?;
            if !output.status.success() {
                bail!("{kubectl} kustomize {dir}: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            String::from_utf8(output.stdout).with_context(|| format!("{dir} renders text that is not UTF-8"))
        };
        let bases = repo.join("config/crd/bases");
        let mut crds = Vec::new();
        for entry in std::fs::read_dir(&bases).with_context(|| format!("reading {}", bases.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path.file_name().and_then(|n| n.to_str()).context("a CRD file's name")?.to_string();
                crds.push((name, std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?));
            }
        }
        crds.sort();
        Ok(Self { default: kustomize("config/default")?, namespaced: kustomize("config/namespaced")?, crds })
    }
}

/// The chart's files, by path inside the chart's folder.
pub fn generate(sources: &Sources, version: &str) -> Result<BTreeMap<String, String>> {
    let default = documents(&sources.default).context("config/default")?;
    let namespaced = documents(&sources.namespaced).context("config/namespaced")?;
    let mut files = BTreeMap::new();
    files.insert("Chart.yaml".to_string(), chart_yaml(version));
    files.insert("templates/_helpers.tpl".to_string(), HELPERS.to_string());
    files.insert("templates/NOTES.txt".to_string(), NOTES.to_string());
    for (name, text) in &sources.crds {
        files.insert(format!("crds/{name}"), text.clone());
    }
    let deployment = find(&default, "Deployment")?;
    files.insert("values.yaml".to_string(), values_yaml(manager_container(deployment)?, deployment)?);
    let names = WebhookNames::of(&default)?;

    for object in &default {
        let (kind, name) = kind_and_name(object)?;
        if kind == "CustomResourceDefinition" || kind == "Namespace" {
            // The CRDs are copied from config/crd/bases; Helm users create the namespace (--create-namespace).
            continue;
        }
        let counterpart = namespaced.iter().find(|other| same_object(object, other));
        let condition = match counterpart {
            None => Some("not .Values.watchNamespace"),
            Some(_) if name.contains("webhook") => Some(".Values.webhook.enabled"),
            Some(_) if kind == "Service" && name.contains("metrics") => Some(".Values.metrics.enabled"),
            Some(_) => None,
        };
        let mut object = object.clone();
        let mut blocks = Blocks::default();
        match kind {
            "Deployment" => manager(&mut object, counterpart, &names, &mut blocks)?,
            "ValidatingWebhookConfiguration" => webhook_selectors(&mut object, counterpart, &mut blocks)?,
            _ => {}
        }
        insert_placeholders(&mut object, false);
        files.insert(file_name(kind, name), template(&object, condition, &blocks)?);
    }
    for object in namespaced.iter().filter(|object| !default.iter().any(|other| same_object(object, other))) {
        let (kind, name) = kind_and_name(object)?;
        let mut object = object.clone();
        insert_placeholders(&mut object, true);
        files.insert(file_name(kind, name), template(&object, Some(".Values.watchNamespace"), &Blocks::default())?);
    }
    Ok(files)
}

/// The files of `chart` that differ from, are missing from, or are not in the folder `dir`.
pub fn differences(chart: &BTreeMap<String, String>, dir: &Path) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for (path, text) in chart {
        if std::fs::read_to_string(dir.join(path)).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.clone());
        }
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                let relative = relative.to_string_lossy().to_string();
                if !chart.contains_key(&relative) {
                    stale.push(format!("{relative} (not generated)"));
                }
            }
        }
    }
    Ok(stale)
}

fn documents(rendered: &str) -> Result<Vec<Value>> {
    rendered
        .split("\n---\n")
        .filter(|text| !text.trim().is_empty())
        .map(|text| serde_saphyr::from_str(text).context("a rendered document is not YAML"))
        .collect()
}

fn kind_and_name(object: &Value) -> Result<(&str, &str)> {
    let kind = object["kind"].as_str().context("an object without kind")?;
    let name = object["metadata"]["name"].as_str().with_context(|| format!("a {kind} without name"))?;
    Ok((kind, name))
}

fn same_object(a: &Value, b: &Value) -> bool {
    a["kind"] == b["kind"] && a["metadata"]["name"] == b["metadata"]["name"]
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Result<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind).with_context(|| format!("config/default renders no {kind}"))
}

fn file_name(kind: &str, name: &str) -> String {
    format!("templates/{}-{}.yaml", kind.to_lowercase(), name.strip_prefix(PREFIX).unwrap_or(name))
}

/// The names the manager is told with flags, since they follow the release's name: its webhook Service, its
/// webhook configuration and the Secret of its webhook certificate.
struct WebhookNames {
    service: String,
    configuration: String,
    secret: String,
}

impl WebhookNames {
    fn of(objects: &[Value]) -> Result<Self> {
        let named = |kind: &str| {
            objects
                .iter()
                .filter(|o| o["kind"] == kind)
                .filter_map(|o| o["metadata"]["name"].as_str())
                .find(|name| name.contains("webhook"))
                .map(str::to_string)
                .with_context(|| format!("config/default renders no webhook {kind}"))
        };
        let secret = objects
            .iter()
            .filter(|o| o["kind"] == "Role")
            .filter_map(|o| o["rules"].as_array())
            .flatten()
            .filter(|rule| rule["resources"].as_array().is_some_and(|r| r.iter().any(|r| r == "secrets")))
            .filter_map(|rule| rule["resourceNames"][0].as_str())
            .next()
            .context("config/default grants no right over the webhook certificate's Secret")?;
        Ok(Self {
            service: named("Service")?,
            configuration: named("ValidatingWebhookConfiguration")?,
            secret: secret.to_string(),
        })
    }
}

/// Lines that stand for several: found by their placeholder value, expanded at the line's indentation.
#[derive(Default)]
struct Blocks {
    args: Vec<String>,
    selectors: Vec<Value>,
}

fn manager_container(deployment: &Value) -> Result<&Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|containers| containers.iter().find(|c| c["name"] == "manager"))
        .context("the Deployment has no container named manager")
}

fn manager(
    deployment: &mut Value,
    namespaced: Option<&Value>,
    names: &WebhookNames,
    blocks: &mut Blocks,
) -> Result<()> {
    let arguments = |container: &Value| -> Vec<String> {
        container["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect()
    };
    let defaults = arguments(manager_container(deployment)?);
    let scoped = match namespaced {
        Some(namespaced) => arguments(manager_container(namespaced)?),
        None => Vec::new(),
    };
    blocks.args = manager_args(&defaults, &scoped, names);

    deployment["spec"]["replicas"] = "__REPLICAS__".into();
    let pod = &mut deployment["spec"]["template"]["spec"];
    pod[POD_PLACEMENT] = POD_PLACEMENT.into();
    let container = pod["containers"]
        .as_array_mut()
        .and_then(|containers| containers.iter_mut().find(|c| c["name"] == "manager"))
        .context("the Deployment has no container named manager")?;
    container["image"] = "__IMAGE__".into();
    container["imagePullPolicy"] = "__PULL_POLICY__".into();
    container["args"] = ARGS.into();
    container["resources"] = RESOURCES.into();
    Ok(())
}

/// The manager's arguments as template lines: config/default's, with those the values switch made
/// conditional; the names that follow the release; config/namespaced's additions under `watchNamespace`.
fn manager_args(defaults: &[String], scoped: &[String], names: &WebhookNames) -> Vec<String> {
    let switched = |flag: &str, value: &str, switch: &str| {
        format!("- {flag}={{{{ if {switch} }}}}{value}{{{{ else }}}}0{{{{ end }}}}")
    };
    let mut lines = Vec::new();
    for arg in defaults {
        let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
        match flag {
            "--leader-elect" | "--enable-leader-election" => {
                lines.push("{{- if .Values.leaderElection.enabled }}".to_string());
                lines.push(format!("- {arg}"));
                lines.push("{{- end }}".to_string());
            }
            "--metrics-bind-address" | "--metrics-addr" => lines.push(switched(flag, value, ".Values.metrics.enabled")),
            "--webhook-bind-address" => lines.push(switched(flag, value, ".Values.webhook.enabled")),
            _ => lines.push(format!("- {}", with_placeholders(arg))),
        }
    }
    lines.push("- --leader-election-id=__FULLNAME__.etcd.cloud.io".to_string());
    lines.push("- --metrics-secure={{ .Values.metrics.secure }}".to_string());
    lines.push("- --log-level={{ .Values.logLevel }}".to_string());
    lines.push(format!("- --webhook-service-name={}", with_placeholders(&names.service)));
    lines.push(format!("- --webhook-configuration-name={}", with_placeholders(&names.configuration)));
    lines.push(format!("- --webhook-secret-name={}", with_placeholders(&names.secret)));
    let added: Vec<&String> = scoped.iter().filter(|arg| !defaults.contains(arg)).collect();
    if !added.is_empty() {
        lines.push("{{- if .Values.watchNamespace }}".to_string());
        for arg in added {
            let arg = match arg.split_once('=') {
                Some((flag, WATCHED)) => format!("{flag}=__WATCH_NAMESPACE__"),
                _ => arg.to_string(),
            };
            lines.push(format!("- {arg}"));
        }
        lines.push("{{- end }}".to_string());
    }
    lines.push("{{- range .Values.extraArgs }}".to_string());
    lines.push("- {{ . | quote }}".to_string());
    lines.push("{{- end }}".to_string());
    lines
}

/// Each webhook gets config/namespaced's namespace selector when `watchNamespace` is set.
fn webhook_selectors(configuration: &mut Value, namespaced: Option<&Value>, blocks: &mut Blocks) -> Result<()> {
    let Some(namespaced) = namespaced else { return Ok(()) };
    let webhooks = configuration["webhooks"].as_array_mut().context("a webhook configuration without webhooks")?;
    for (index, webhook) in webhooks.iter_mut().enumerate() {
        let name = &webhook["name"];
        let Some(selector) = namespaced["webhooks"]
            .as_array()
            .and_then(|all| all.iter().find(|w| &w["name"] == name))
            .map(|w| w["namespaceSelector"].clone())
            .filter(|selector| !selector.is_null())
        else {
            continue;
        };
        let mut selector = selector;
        insert_placeholders(&mut selector, true);
        webhook["namespaceSelector"] = format!("{NAMESPACE_SELECTOR}{index}__").into();
        blocks.selectors.push(selector);
    }
    Ok(())
}

/// Names and namespaces become the release's (and, in what config/namespaced adds, the watched namespace
/// becomes `watchNamespace`); top-level labels become Helm's.
fn insert_placeholders(object: &mut Value, watched: bool) {
    if let Some(labels) = object.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        if labels.contains_key("app.kubernetes.io/managed-by") {
            labels.insert("app.kubernetes.io/managed-by".into(), "__MANAGED_BY__".into());
        }
        labels.insert("app.kubernetes.io/instance".into(), "__RELEASE_NAME__".into());
        labels.insert("helm.sh/chart".into(), "__CHART__".into());
    }
    replace_strings(object, None, watched);
}

fn replace_strings(value: &mut Value, key: Option<&str>, watched: bool) {
    match value {
        Value::String(text) => {
            let names_namespace = matches!(key, Some("namespace" | "kubernetes.io/metadata.name"));
            *text = if watched && names_namespace && text == WATCHED {
                "__WATCH_NAMESPACE__".to_string()
            } else {
                with_placeholders(text)
            };
        }
        Value::Array(items) => items.iter_mut().for_each(|item| replace_strings(item, key, watched)),
        Value::Object(fields) => fields.iter_mut().for_each(|(key, item)| replace_strings(item, Some(key), watched)),
        _ => {}
    }
}

fn with_placeholders(text: &str) -> String {
    let text = text.replace(NAMESPACE, "__RELEASE_NAMESPACE__");
    match text.strip_prefix(PREFIX) {
        Some(rest) => format!("__FULLNAME__-{rest}"),
        None => text,
    }
}

fn template(object: &Value, condition: Option<&str>, blocks: &Blocks) -> Result<String> {
    let yaml = serde_saphyr::to_string(object).context("an object does not serialize")?;
    let mut out = String::new();
    if let Some(condition) = condition {
        out.push_str(&format!("{{{{- if {condition} }}}}\n"));
    }
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        let content = &line[indent..];
        let block = |name: &str| content.strip_prefix(name).map(|rest| rest.starts_with(':'));
        // A line may open a sequence item ("- args: ..."): the expansion keeps its dash.
        if content.ends_with(&format!(": {ARGS}")) {
            out.push_str(&format!("{}args:\n", &line[..indent]));
            for arg in &blocks.args {
                let pad = if arg.starts_with("{{") { String::new() } else { " ".repeat(indent) };
                out.push_str(&format!("{pad}{}\n", with_actions(arg)));
            }
        } else if content.ends_with(&format!(": {RESOURCES}")) {
            out.push_str(&format!("{}resources:\n", &line[..indent]));
            out.push_str(&format!("{{{{- toYaml .Values.resources | nindent {} }}}}\n", indent + 2));
        } else if block(POD_PLACEMENT) == Some(true) {
            out.push_str(&pod_placement(indent));
        } else if let Some(index) = content.split_once(&format!(": {NAMESPACE_SELECTOR}")).map(|(_, rest)| rest) {
            let index: usize = index.trim_end_matches('_').parse().context("a namespace selector's index")?;
            let selector = blocks.selectors.get(index).context("a namespace selector without its value")?;
            let body = serde_saphyr::to_string(selector).context("a namespace selector does not serialize")?;
            out.push_str("{{- if .Values.watchNamespace }}\n");
            out.push_str(&format!("{}namespaceSelector:\n", &line[..indent]));
            for selector_line in body.lines() {
                out.push_str(&format!("{}{}\n", " ".repeat(indent + 2), with_actions(selector_line)));
            }
            out.push_str("{{- end }}\n");
        } else {
            let line = with_actions(line);
            if [ARGS, RESOURCES, POD_PLACEMENT, NAMESPACE_SELECTOR].iter().any(|block| line.contains(block)) {
                bail!("a placeholder is left in {line:?}");
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    if condition.is_some() {
        out.push_str("{{- end }}\n");
    }
    Ok(out)
}

fn with_actions(line: &str) -> String {
    INLINE.iter().fold(line.to_string(), |line, (placeholder, action)| line.replace(placeholder, action))
}

fn pod_placement(indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (value, list) in
        [("imagePullSecrets", true), ("nodeSelector", false), ("tolerations", true), ("affinity", false)]
    {
        out.push_str(&format!("{{{{- with .Values.{value} }}}}\n{pad}{value}:\n"));
        out.push_str(&format!("{{{{- toYaml . | nindent {} }}}}\n{{{{- end }}}}\n", indent + if list { 0 } else { 2 }));
    }
    out
}

fn chart_yaml(version: &str) -> String {
    format!(
        "# Generated from config/ by `make chart`; edit config/ and run it again.\n\
         apiVersion: v2\n\
         name: etcd-op\n\
         description: The etcd-op operator, which runs etcd clusters (EtcdCluster, EtcdBackup, EtcdBackupSchedule).\n\
         type: application\n\
         version: {version}\n\
         appVersion: \"{version}\"\n"
    )
}

fn values_yaml(container: &Value, deployment: &Value) -> Result<String> {
    let image = container["image"].as_str().context("the manager container has no image")?;
    // A registry's port is not a tag: the tag follows the last colon after the last slash.
    let (repository, tag) = match image.rfind(':') {
        Some(colon) if colon > image.rfind('/').unwrap_or(0) => (&image[..colon], &image[colon + 1..]),
        _ => (image, "latest"),
    };
    let pull_policy = container["imagePullPolicy"].as_str().unwrap_or("IfNotPresent");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let resources = serde_saphyr::to_string(&container["resources"]).context("the manager's resources")?;
    let resources: String = resources.lines().map(|line| format!("  {line}\n")).collect();
    Ok(format!(
        "# Generated from config/ by `make chart`: the defaults are config/default's.\n\
         image:\n  repository: {repository}\n  tag: {tag}\n  pullPolicy: {pull_policy}\n\
         imagePullSecrets: []\n\
         replicaCount: {replicas}\n\
         # Prefix of every object's name; empty: the release's name (etcd-op gives config/default's names).\n\
         # At most 28 characters are kept, so that every Service name stays within 63.\n\
         fullnameOverride: \"\"\n\
         # Watch EtcdClusters in this namespace only, with the manager's rights granted there alone and the\n\
         # webhooks asked about that namespace only (as config/namespaced does); empty: every namespace.\n\
         watchNamespace: \"\"\n\
         leaderElection:\n  # Replicas elect a leader through a Lease; only the leader reconciles.\n  enabled: true\n\
         metrics:\n  # /metrics and its Service; false turns the endpoint off.\n  enabled: true\n\
         \x20 # HTTPS to authorized readers only; false serves plain HTTP to anyone.\n  secure: true\n\
         webhook:\n  # The validating webhook (what CEL cannot check), with its Service and the rights over its\n\
         \x20 # certificate; false leaves only the CRDs' own validation.\n  enabled: true\n\
         # A level (info, debug) or tracing directives (etcd_op=debug,kube=info).\n\
         logLevel: info\n\
         # More manager flags (etcd-op --help), e.g. --member-unhealthy-threshold=120.\n\
         extraArgs: []\n\
         resources:\n{resources}\
         nodeSelector: {{}}\n\
         tolerations: []\n\
         affinity: {{}}\n"
    ))
}

const HELPERS: &str = r#"{{/* Generated from config/ by `make chart`. */}}

{{/* Every object's name prefix: the release's name, or fullnameOverride. 28 characters leave room for the
longest suffix within a Service name's 63. */}}
{{- define "etcd-op.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 28 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcd-op.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
"#;

const NOTES: &str = r#"etcd-op {{ .Chart.AppVersion }} runs as {{ include "etcd-op.fullname" . }}-controller-manager in {{ .Release.Namespace }}, watching EtcdClusters in {{ .Values.watchNamespace | default "every namespace" }}.

  kubectl -n {{ .Release.Namespace }} rollout status deployment/{{ include "etcd-op.fullname" . }}-controller-manager
  kubectl explain etcdcluster.spec

The CRDs come from the chart's crds/ folder: Helm installs them once and never upgrades or deletes them.
After an upgrade of the chart, apply its crds/ with `kubectl apply --server-side -f`.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_namespaces_become_the_releases() {
        assert_eq!(with_placeholders("etcd-op-manager-role"), "__FULLNAME__-manager-role");
        assert_eq!(with_placeholders("etcd-op-system"), "__RELEASE_NAMESPACE__");
        assert_eq!(
            with_placeholders("etcd-op-webhook-service.etcd-op-system.svc"),
            "__FULLNAME__-webhook-service.__RELEASE_NAMESPACE__.svc"
        );
        // Label values and other names are left alone.
        assert_eq!(with_placeholders("etcd-op"), "etcd-op");
        assert_eq!(with_placeholders("vetcdcluster-v1.etcd.cloud.io"), "vetcdcluster-v1.etcd.cloud.io");
    }

    #[test]
    fn only_namespace_fields_name_the_watched_namespace() {
        let mut binding: Value = serde_json::json!({
            "metadata": {"name": "etcd-op-manager-rolebinding", "namespace": "etcd", "labels": {"app.kubernetes.io/managed-by": "kustomize"}},
            "subjects": [{"name": "etcd-op-controller-manager", "namespace": "etcd-op-system"}],
            "roleRef": {"name": "etcd"},
        });
        insert_placeholders(&mut binding, true);
        assert_eq!(binding["metadata"]["namespace"], "__WATCH_NAMESPACE__");
        assert_eq!(binding["subjects"][0]["namespace"], "__RELEASE_NAMESPACE__");
        assert_eq!(binding["subjects"][0]["name"], "__FULLNAME__-controller-manager");
        assert_eq!(binding["roleRef"]["name"], "etcd", "a name that happens to be the namespace's stays");
        assert_eq!(binding["metadata"]["labels"]["app.kubernetes.io/managed-by"], "__MANAGED_BY__");
        assert_eq!(binding["metadata"]["labels"]["app.kubernetes.io/instance"], "__RELEASE_NAME__");
    }

    #[test]
    fn switches_and_scope_follow_the_values() {
        let names = WebhookNames {
            service: "etcd-op-webhook-service".into(),
            configuration: "etcd-op-validating-webhook-configuration".into(),
            secret: "etcd-op-webhook-server-cert".into(),
        };
        let defaults: Vec<String> =
            ["--leader-elect", "--metrics-bind-address=:8443", "--webhook-bind-address=:9443", "--log-format=json"]
                .map(String::from)
                .to_vec();
        let mut scoped = defaults.clone();
        scoped.push("--namespace=etcd".into());
        let lines = manager_args(&defaults, &scoped, &names);
        let at = |text: &str| lines.iter().position(|l| l == text).unwrap_or_else(|| panic!("{text} in {lines:?}"));
        assert_eq!(at("- --leader-elect"), at("{{- if .Values.leaderElection.enabled }}") + 1);
        at("- --metrics-bind-address={{ if .Values.metrics.enabled }}:8443{{ else }}0{{ end }}");
        at("- --webhook-bind-address={{ if .Values.webhook.enabled }}:9443{{ else }}0{{ end }}");
        at("- --log-format=json");
        at("- --webhook-secret-name=__FULLNAME__-webhook-server-cert");
        assert_eq!(at("- --namespace=__WATCH_NAMESPACE__"), at("{{- if .Values.watchNamespace }}") + 1);
    }

    #[test]
    fn a_registry_port_is_not_a_tag() -> Result<()> {
        let deployment = serde_json::json!({"spec": {"replicas": 1}});
        let values =
            values_yaml(&serde_json::json!({"image": "localhost:5000/etcd-op", "resources": {}}), &deployment)?;
        assert!(values.contains("repository: localhost:5000/etcd-op\n  tag: latest\n"), "{values}");
        let values = values_yaml(&serde_json::json!({"image": "controller:v1", "resources": {}}), &deployment)?;
        assert!(values.contains("repository: controller\n  tag: v1\n"), "{values}");
        Ok(())
    }
}
