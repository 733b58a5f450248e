//! Certificates that cert-manager issues (`spec.tls.issuerRef`): the operator creates one cert-manager
//! `Certificate` per Secret a cluster needs, under the names its own authorities would use, and reads the
//! Secrets cert-manager writes as it reads a user's own (`user_certificates`). cert-manager renews them; the
//! members read a renewed certificate on their next connection. Until a Secret is issued the pass waits.

use std::net::IpAddr;
use std::time::Duration;

use etcd_op_api::v1::{EtcdCluster, IssuerRef, TlsSecrets};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::Context;
use super::certificates::Certificates;
use super::error::Error;
use super::model::Transport;
use super::resources::{CertificateSecret, owner_reference};
use super::user_certificates::{self, Pending};
use crate::pki;

/// cert-manager's API group.
pub const CERT_MANAGER_GROUP: &str = "cert-manager.io";

/// A cert-manager kind (`Certificate`, `Issuer`, `ClusterIssuer`), read and written as dynamic objects: the
/// operator does not link cert-manager's types.
pub fn cert_manager_resource(kind: &str) -> ApiResource {
    ApiResource {
        group: CERT_MANAGER_GROUP.into(),
        version: "v1".into(),
        api_version: format!("{CERT_MANAGER_GROUP}/v1"),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

/// The Secrets a cluster takes from cert-manager for `transport`: its authority is the issuer's.
pub fn wanted(transport: Transport) -> Vec<CertificateSecret> {
    CertificateSecret::wanted(transport)
        .into_iter()
        .filter(|s| !matches!(s, CertificateSecret::PeerAuthority | CertificateSecret::ClientAuthority))
        .collect()
}

/// The Certificate for one of the cluster's Secrets: pure, so its names and usages are tested as data.
/// `member_names` are the DNS names and addresses every member's certificate carries.
pub fn certificate(
    ec: &EtcdCluster,
    which: CertificateSecret,
    issuer: &IssuerRef,
    member_names: &[String],
    lifetime: Duration,
) -> Value {
    let cluster = ec.name_any();
    let name = which.name(&cluster);
    let (common_name, names, usages): (String, &[String], &[&str]) = match which {
        CertificateSecret::Peer | CertificateSecret::Server => {
            (cluster.clone(), member_names, &["digital signature", "key encipherment", "server auth", "client auth"])
        }
        CertificateSecret::OperatorClient => ("etcd-op".into(), &[], &["digital signature", "client auth"]),
        _ => (format!("{cluster}-client"), &[], &["digital signature", "client auth"]),
    };
    let (addresses, dns): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let mut spec = json!({
        "secretName": name,
        "commonName": common_name,
        "usages": usages,
        "duration": format!("{}s", lifetime.as_secs()),
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {
            "name": issuer.name,
            "kind": issuer.kind.as_str(),
            "group": issuer.group.as_deref().unwrap_or(CERT_MANAGER_GROUP),
        },
        // The Secret goes with the cluster, as the operator's own Secrets do.
        "secretTemplate": {"labels": {"etcd.cloud.io/cluster": cluster}},
    });
    if !dns.is_empty() {
        spec["dnsNames"] = json!(dns);
    }
    if !addresses.is_empty() {
        spec["ipAddresses"] = json!(addresses);
    }
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": ec.namespace(),
            "labels": {"etcd.cloud.io/cluster": cluster, "app.kubernetes.io/managed-by": super::resources::MANAGER},
            "ownerReferences": owner_reference(ec).into_iter().collect::<Vec<_>>(),
        },
        "spec": spec,
    })
}

/// Creates or corrects the cluster's Certificates, then reads the Secrets cert-manager issued for them.
pub async fn ensure(
    ctx: &Context,
    ec: &EtcdCluster,
    issuer: &IssuerRef,
    transport: Transport,
    client_ips: &[String],
    now: i64,
) -> Result<Certificates, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let lifetime = super::certificates::leaf_lifetime(ec)?;
    let mut member_names = pki::member_names(&cluster, &namespace, &ctx.config.cluster_domain);
    member_names.extend(client_ips.iter().cloned());
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &cert_manager_resource("Certificate"));
    for which in wanted(transport) {
        let wanted = certificate(ec, which, issuer, &member_names, lifetime);
        let name = which.name(&cluster);
        let current = api
            .get_opt(&name)
            .await
            .map_err(|source| Error::KubeRead { what: format!("Certificate {namespace}/{name}"), source })?;
        if let Some(current) = &current {
            if !current.owner_references().iter().any(|o| Some(&o.uid) == ec.uid().as_ref()) {
                return Err(Error::Certificates(format!(
                    "Certificate {namespace}/{name} exists and does not belong to this EtcdCluster; it is left alone"
                )));
            }
            if current.data.get("spec") == wanted.get("spec") {
                continue;
            }
        }
        // Applied only when missing or different, so a quiet cluster writes nothing.
        api.patch(&name, &PatchParams::apply(super::FIELD_MANAGER).force(), &Patch::Apply(&wanted))
            .await
            .map_err(|source| Error::KubeWrite { what: format!("Certificate {namespace}/{name}"), source })?;
    }
    let names = |which: CertificateSecret| Some(which.name(&cluster));
    let secrets = TlsSecrets {
        peer: transport.peer_tls.then(|| names(CertificateSecret::Peer)).flatten(),
        server: transport.client_tls.then(|| names(CertificateSecret::Server)).flatten(),
        operator: transport.client_tls.then(|| names(CertificateSecret::OperatorClient)).flatten(),
    };
    user_certificates::load(ctx, ec, &secrets, transport, now, Pending::Wait).await
}

#[cfg(test)]
mod tests {
    use etcd_op_api::v1::{EtcdClusterSpec, IssuerKind};

    use super::*;

    fn cluster() -> Result<EtcdCluster, serde_json::Error> {
        let spec: EtcdClusterSpec = serde_json::from_value(json!({"size": 3, "version": "3.6.16"}))?;
        let mut ec = EtcdCluster::new("demo", spec);
        ec.metadata.namespace = Some("prod".into());
        ec.metadata.uid = Some("uid-1".into());
        Ok(ec)
    }

    #[test]
    fn members_certificates_name_every_way_a_member_is_reached_and_clients_none() -> Result<(), serde_json::Error> {
        let ec = cluster()?;
        let issuer = IssuerRef { name: "etcd-ca".into(), kind: IssuerKind::ClusterIssuer, group: None };
        let names = vec!["*.demo.prod.svc".to_string(), "demo-client.prod.svc".into(), "10.96.0.7".into()];
        let day = Duration::from_secs(86_400);
        let server = certificate(&ec, CertificateSecret::Server, &issuer, &names, day);
        assert_eq!(server["metadata"]["name"], "demo-server-tls");
        assert_eq!(server["spec"]["secretName"], "demo-server-tls");
        assert_eq!(server["spec"]["dnsNames"], json!(["*.demo.prod.svc", "demo-client.prod.svc"]));
        assert_eq!(server["spec"]["ipAddresses"], json!(["10.96.0.7"]));
        assert_eq!(server["spec"]["duration"], "86400s");
        assert_eq!(
            server["spec"]["issuerRef"],
            json!({"name": "etcd-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        );
        assert_eq!(server["metadata"]["ownerReferences"][0]["uid"], "uid-1", "the Certificate goes with the cluster");
        let usages = server["spec"]["usages"].as_array().cloned().unwrap_or_default();
        assert!(usages.contains(&json!("server auth")) && usages.contains(&json!("client auth")));

        let operator = certificate(&ec, CertificateSecret::OperatorClient, &issuer, &names, day);
        assert_eq!(operator["spec"]["commonName"], "etcd-op");
        assert!(operator["spec"].get("dnsNames").is_none() && operator["spec"].get("ipAddresses").is_none());
        assert!(!operator["spec"]["usages"].as_array().is_some_and(|u| u.contains(&json!("server auth"))));
        let user = certificate(&ec, CertificateSecret::Client, &issuer, &names, day);
        assert_eq!(user["metadata"]["name"], "demo-client-tls");
        Ok(())
    }

    #[test]
    fn the_issuer_holds_the_authority_so_no_authority_secret_is_wanted() {
        let secrets = wanted(Transport::MUTUAL_TLS);
        assert_eq!(
            secrets,
            [
                CertificateSecret::Peer,
                CertificateSecret::Server,
                CertificateSecret::OperatorClient,
                CertificateSecret::Client
            ]
        );
        assert_eq!(wanted(Transport { peer_tls: true, client_tls: false }), [CertificateSecret::Peer]);
        assert!(wanted(Transport::PLAINTEXT).is_empty());
    }
}
