//! What the validating webhook decides: plain data in (the request and what was looked up for it), refusals
//! out. The lookups that CEL cannot make live in `lookup`; this module only judges.

use std::collections::BTreeMap;

use etcd_op_api::v1::{EtcdCluster, IssuerRef, TlsSecrets};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use crate::controller::issued_certificates;
use crate::controller::observe::wanted_transport;
use crate::controller::resources::{CertificateSecret, client_service_name};
use crate::controller::user_certificates::{self, Purpose};

/// The admission operations the webhook is registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// The kinds of object a cluster creates under names derived from its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChildKind {
    Service,
    Secret,
    PodDisruptionBudget,
    NetworkPolicy,
    /// cert-manager's, for clusters whose certificates it issues.
    Certificate,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Service => "Service",
            ChildKind::Secret => "Secret",
            ChildKind::PodDisruptionBudget => "PodDisruptionBudget",
            ChildKind::NetworkPolicy => "NetworkPolicy",
            ChildKind::Certificate => "Certificate",
        }
    }
}

/// An object the cluster would create, by kind and name, in its own namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DerivedName {
    pub kind: ChildKind,
    pub name: String,
}

/// The shared objects a cluster creates (its members' pods and volumes carry ordinals and are checked by
/// the controller as they come): the two Services, the budget, the policy and, with TLS from the operator's
/// own authorities, its Secrets.
pub fn derived_names(ec: &EtcdCluster) -> Vec<DerivedName> {
    let cluster = ec.name_any();
    let named = |kind, name: String| DerivedName { kind, name };
    let mut names = vec![
        named(ChildKind::Service, cluster.clone()),
        named(ChildKind::Service, client_service_name(&cluster)),
        named(ChildKind::PodDisruptionBudget, cluster.clone()),
        named(ChildKind::NetworkPolicy, cluster.clone()),
    ];
    if user_secrets(ec).is_some() {
        return names;
    }
    if issuer(ec).is_some() {
        for secret in issued_certificates::wanted(wanted_transport(ec)) {
            names.push(named(ChildKind::Certificate, secret.name(&cluster)));
            names.push(named(ChildKind::Secret, secret.name(&cluster)));
        }
        return names;
    }
    names.extend(
        CertificateSecret::wanted(wanted_transport(ec))
            .into_iter()
            .map(|secret| named(ChildKind::Secret, secret.name(&cluster))),
    );
    names
}

fn issuer(ec: &EtcdCluster) -> Option<&IssuerRef> {
    ec.spec.tls.as_ref().and_then(|tls| tls.issuer_ref.as_ref())
}

fn user_secrets(ec: &EtcdCluster) -> Option<&TlsSecrets> {
    ec.spec.tls.as_ref().and_then(|tls| tls.secrets.as_ref())
}

/// What the webhook has to look up for a request: nothing for most updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Questions {
    /// Does this StorageClass exist?
    pub storage_class: Option<String>,
    /// Are these names free?
    pub names: Vec<DerivedName>,
    /// What do the user's Secrets hold?
    pub user_secrets: Vec<(Purpose, String)>,
    /// Does this cert-manager issuer exist?
    pub issuer: Option<IssuerRef>,
}

/// A new cluster is checked whole. An update is checked only for what it changes, so an object whose
/// surroundings changed after its creation (a StorageClass deleted later) can still be scaled or deleted.
pub fn questions(operation: Operation, new: &EtcdCluster, old: Option<&EtcdCluster>) -> Questions {
    let new_class = storage_class(new);
    match operation {
        Operation::Create => Questions {
            storage_class: new_class,
            names: derived_names(new),
            user_secrets: user_secrets(new)
                .map(|secrets| user_certificates::wanted(secrets, wanted_transport(new)))
                .unwrap_or_default(),
            issuer: issuer(new).cloned(),
        },
        Operation::Update => {
            let changed = old.is_none_or(|old| storage_class(old) != new_class);
            Questions { storage_class: new_class.filter(|_| changed), ..Questions::default() }
        }
    }
}

/// The StorageClass the members' volume claims name; none for emptyDir storage or an unnamed class (a claim
/// without a class may still bind to a volume made for it by hand).
fn storage_class(ec: &EtcdCluster) -> Option<String> {
    if ec.spec.storage.empty_dir.is_some() {
        return None;
    }
    ec.spec.storage.volume_claim_template.as_ref().and_then(|t| t.storage_class_name.clone())
}

/// An object found under a derived name.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    pub name: DerivedName,
    pub owners: Vec<OwnerReference>,
}

/// What the lookups found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answers {
    /// The StorageClass asked about, when it does not exist.
    pub missing_storage_class: Option<String>,
    /// Objects that already exist under the names asked about.
    pub existing: Vec<Existing>,
    /// The user's Secrets asked about, with their data when they exist.
    pub user_secrets: Vec<FoundSecret>,
    /// Why the issuer asked about cannot be used, when it cannot: it does not exist, or cert-manager is not
    /// installed.
    pub unusable_issuer: Option<String>,
}

/// A user's Secret looked up: its data, or `None` when it does not exist.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundSecret {
    pub purpose: Purpose,
    pub name: String,
    pub data: Option<BTreeMap<String, String>>,
}

/// Left by an earlier cluster of the same name, which the garbage collector is removing: the controller tells
/// an earlier cluster's objects from its own, so it does not stand in the new cluster's way.
fn left_by_same_name(owners: &[OwnerReference], cluster: &str) -> bool {
    owners.iter().any(|o| o.kind == "EtcdCluster" && o.api_version.starts_with("etcd.cloud.io/") && o.name == cluster)
}

/// Why the request is refused at `now`; empty when it is allowed.
pub fn refusals(new: &EtcdCluster, answers: &Answers, now: i64) -> Vec<String> {
    let cluster = new.name_any();
    let namespace = new.metadata.namespace.clone().unwrap_or_default();
    let mut refusals = Vec::new();
    for found in &answers.user_secrets {
        let checked =
            user_certificates::check(found.purpose, &found.name, found.data.as_ref(), &cluster, &namespace, now);
        if let Err(problem) = checked {
            refusals.push(problem);
        }
    }
    if let Some(problem) = &answers.unusable_issuer {
        refusals.push(format!("spec.tls.issuerRef: {problem}"));
    }
    if let Some(class) = &answers.missing_storage_class {
        refusals.push(format!(
            "spec.storage.volumeClaimTemplate.storageClassName: StorageClass {class:?} does not exist, so no member \
             volume could be provisioned; create it first or name an existing class"
        ));
    }
    let mut taken: Vec<&DerivedName> =
        answers.existing.iter().filter(|e| !left_by_same_name(&e.owners, &cluster)).map(|e| &e.name).collect();
    taken.sort();
    if !taken.is_empty() {
        let list: Vec<String> = taken.iter().map(|n| format!("{} {}", n.kind.as_str(), n.name)).collect();
        refusals.push(format!(
            "metadata.name: {} already exist{} in this namespace and {} not belong to an EtcdCluster named {cluster:?}; \
             the cluster would have to use or replace {}: choose another name, or remove {}",
            list.join(", "),
            if list.len() == 1 { "s" } else { "" },
            if list.len() == 1 { "does" } else { "do" },
            if list.len() == 1 { "it" } else { "them" },
            if list.len() == 1 { "it" } else { "them" },
        ));
    }
    refusals
}

/// Why a backup schedule cannot run: a schedule or time zone that cannot be read.
pub fn schedule_refusals(spec: &etcd_op_api::v1::EtcdBackupScheduleSpec) -> Vec<String> {
    let mut refusals = Vec::new();
    if let Err(why) = crate::controller::schedule::cron::Cron::parse(&spec.schedule) {
        refusals.push(format!("spec.schedule: {why}"));
    }
    if let Some(zone) = &spec.time_zone
        && jiff::tz::TimeZone::get(zone).is_err()
    {
        refusals.push(format!("spec.timeZone: {zone:?} is not an IANA time zone (such as Europe/Berlin or UTC)"));
    }
    refusals
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_op_api::v1::{ClusterTls, EtcdClusterSpec, TlsChannel};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn schedule(schedule: &str, zone: Option<&str>) -> etcd_op_api::v1::EtcdBackupScheduleSpec {
        let spec = json!({"schedule": schedule, "timeZone": zone, "backupTemplate": {"clusterName": "demo",
            "store": {"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3"}}}}});
        match serde_json::from_value(spec) {
            Ok(spec) => spec,
            Err(e) => panic!("test spec: {e}"),
        }
    }

    #[test]
    fn a_schedule_is_refused_when_its_cron_or_zone_cannot_be_read() {
        assert!(schedule_refusals(&schedule("0 3 * * *", Some("Europe/Berlin"))).is_empty());
        assert!(schedule_refusals(&schedule("@daily", None)).is_empty());
        let refused = schedule_refusals(&schedule("0 25 * * *", Some("Mars/Olympus")));
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("spec.schedule") && refused[0].contains("hour"), "{refused:?}");
        assert!(refused[1].contains("spec.timeZone") && refused[1].contains("Mars/Olympus"), "{refused:?}");
    }

    fn cluster(spec: serde_json::Value) -> EtcdCluster {
        let spec: EtcdClusterSpec = match serde_json::from_value(spec) {
            Ok(spec) => spec,
            Err(e) => panic!("test spec: {e}"),
        };
        let mut ec = EtcdCluster::new("demo", spec);
        ec.metadata.namespace = Some("ns".into());
        ec
    }

    fn with_class(class: &str) -> EtcdCluster {
        cluster(
            json!({"size": 3, "version": "3.6.16", "storage": {"volumeClaimTemplate": {"storageClassName": class}}}),
        )
    }

    fn owner(kind: &str, api_version: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }
    }

    fn existing(kind: ChildKind, name: &str, owners: Vec<OwnerReference>) -> Existing {
        Existing { name: DerivedName { kind, name: name.into() }, owners }
    }

    #[test]
    fn a_new_cluster_is_asked_about_its_class_and_every_name_it_would_take() {
        let q = questions(Operation::Create, &with_class("fast"), None);
        assert_eq!(q.storage_class.as_deref(), Some("fast"));
        let names: Vec<String> = q.names.iter().map(|n| format!("{}/{}", n.kind.as_str(), n.name)).collect();
        for wanted in [
            "Service/demo",
            "Service/demo-client",
            "PodDisruptionBudget/demo",
            "NetworkPolicy/demo",
            "Secret/demo-peer-ca",
            "Secret/demo-client-tls",
        ] {
            assert!(names.contains(&wanted.to_string()), "{wanted} in {names:?}");
        }
    }

    #[test]
    fn a_cluster_on_cert_manager_takes_its_certificates_and_their_secrets_and_needs_its_issuer() {
        let ec = cluster(json!({"size": 3, "version": "3.6.16", "tls": {"issuerRef": {"name": "etcd-ca"}}}));
        let taken: Vec<String> = derived_names(&ec)
            .into_iter()
            .filter(|n| matches!(n.kind, ChildKind::Secret | ChildKind::Certificate))
            .map(|n| format!("{} {}", n.kind.as_str(), n.name))
            .collect();
        assert!(taken.contains(&"Certificate demo-server-tls".to_string()), "{taken:?}");
        assert!(taken.contains(&"Secret demo-client-tls".to_string()), "{taken:?}");
        assert!(!taken.iter().any(|n| n.ends_with("-ca")), "the issuer holds the authority: {taken:?}");
        let asked = questions(Operation::Create, &ec, None);
        assert_eq!(asked.issuer.map(|i| i.name), Some("etcd-ca".to_string()));
        let answers =
            Answers { unusable_issuer: Some("Issuer ns/etcd-ca does not exist".into()), ..Answers::default() };
        let refused = refusals(&ec, &answers, 0);
        assert_eq!(refused, ["spec.tls.issuerRef: Issuer ns/etcd-ca does not exist"]);
        assert!(questions(Operation::Update, &ec, Some(&ec)).issuer.is_none(), "checked at creation only");
    }

    #[test]
    fn a_plaintext_cluster_takes_no_secret_names() {
        let mut ec = with_class("fast");
        ec.spec.tls = Some(ClusterTls {
            peer: TlsChannel { enabled: false },
            client: TlsChannel { enabled: false },
            certificate_lifetime: None,
            authority_rotation: None,
            issuer_ref: None,
            secrets: None,
        });
        assert!(derived_names(&ec).iter().all(|n| n.kind != ChildKind::Secret));
        ec.spec.tls = Some(ClusterTls {
            peer: TlsChannel { enabled: true },
            client: TlsChannel { enabled: false },
            certificate_lifetime: None,
            authority_rotation: None,
            issuer_ref: None,
            secrets: None,
        });
        let secrets: Vec<String> =
            derived_names(&ec).into_iter().filter(|n| n.kind == ChildKind::Secret).map(|n| n.name).collect();
        assert_eq!(secrets, ["demo-peer-ca", "demo-peer-tls"]);
    }

    #[test]
    fn emptydir_and_unnamed_classes_need_no_lookup() {
        let empty = cluster(json!({"size": 1, "version": "3.6.16", "storage": {"emptyDir": {}}}));
        assert_eq!(questions(Operation::Create, &empty, None).storage_class, None);
        let unnamed = cluster(json!({"size": 1, "version": "3.6.16"}));
        assert_eq!(questions(Operation::Create, &unnamed, None).storage_class, None);
    }

    #[test]
    fn an_update_is_asked_only_about_what_it_changes() {
        let old = with_class("fast");
        let mut scaled = old.clone();
        scaled.spec.size = 5;
        assert_eq!(questions(Operation::Update, &scaled, Some(&old)), Questions::default());
        let moved = with_class("slow");
        let q = questions(Operation::Update, &moved, Some(&old));
        assert_eq!(q.storage_class.as_deref(), Some("slow"));
        assert!(q.names.is_empty(), "names are taken at creation only");
    }

    #[test]
    fn nothing_found_means_allowed() {
        assert!(refusals(&with_class("fast"), &Answers::default(), NOW).is_empty());
    }

    #[test]
    fn a_missing_class_is_refused_by_name() {
        let answers = Answers { missing_storage_class: Some("no-such-class".into()), ..Answers::default() };
        let refused = refusals(&with_class("no-such-class"), &answers, NOW);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].contains("\"no-such-class\"") && refused[0].contains("storageClassName"), "{refused:?}");
    }

    #[test]
    fn names_held_by_others_are_refused_and_listed() {
        let answers = Answers {
            missing_storage_class: None,
            existing: vec![
                existing(ChildKind::Service, "demo-client", Vec::new()),
                existing(ChildKind::Secret, "demo-peer-ca", vec![owner("EtcdCluster", "etcd.cloud.io/v1", "other")]),
                existing(ChildKind::NetworkPolicy, "demo", vec![owner("Deployment", "apps/v1", "demo")]),
            ],
            ..Answers::default()
        };
        let refused = refusals(&with_class("fast"), &answers, NOW);
        assert_eq!(refused.len(), 1, "{refused:?}");
        for name in ["Service demo-client", "Secret demo-peer-ca", "NetworkPolicy demo"] {
            assert!(refused[0].contains(name), "{name} in {refused:?}");
        }
    }

    #[test]
    fn leftovers_of_a_cluster_of_the_same_name_do_not_block_it() {
        let answers = Answers {
            missing_storage_class: None,
            existing: vec![
                existing(ChildKind::Service, "demo", vec![owner("EtcdCluster", "etcd.cloud.io/v1", "demo")]),
                existing(ChildKind::Secret, "demo-peer-ca", vec![owner("EtcdCluster", "etcd.cloud.io/v1", "demo")]),
            ],
            ..Answers::default()
        };
        assert!(refusals(&with_class("fast"), &answers, NOW).is_empty());
        let impostor = Answers {
            missing_storage_class: None,
            existing: vec![existing(ChildKind::Service, "demo", vec![owner("EtcdCluster", "example.com/v1", "demo")])],
            ..Answers::default()
        };
        assert_eq!(refusals(&with_class("fast"), &impostor, NOW).len(), 1, "another group's EtcdCluster is not ours");
    }

    #[test]
    fn both_problems_are_reported_together() {
        let answers = Answers {
            missing_storage_class: Some("gone".into()),
            existing: vec![existing(ChildKind::PodDisruptionBudget, "demo", Vec::new())],
            ..Answers::default()
        };
        assert_eq!(refusals(&with_class("gone"), &answers, NOW).len(), 2);
    }

    #[test]
    fn a_cluster_with_its_own_secrets_takes_no_secret_names_and_has_its_secrets_checked() {
        let ec = cluster(json!({"size": 3, "version": "3.6.16",
            "tls": {"secrets": {"peer": "my-peer", "server": "my-server", "operator": "my-operator"}}}));
        let q = questions(Operation::Create, &ec, None);
        assert!(q.names.iter().all(|n| n.kind != ChildKind::Secret), "{:?}", q.names);
        let asked: Vec<&str> = q.user_secrets.iter().map(|(_, name)| name.as_str()).collect();
        assert_eq!(asked, ["my-peer", "my-server", "my-operator"]);
        let answers = Answers {
            user_secrets: q
                .user_secrets
                .iter()
                .map(|(purpose, name)| FoundSecret { purpose: *purpose, name: name.clone(), data: None })
                .collect(),
            ..Answers::default()
        };
        let refused = refusals(&ec, &answers, NOW);
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[0].contains("spec.tls.secrets.peer: Secret ns/my-peer does not exist"), "{refused:?}");
    }
}
