//! A cluster on certificates that cert-manager issues, as users run it: the test bed's cert-manager (its
//! controllers built from cert-manager's main module) bootstraps an authority through a SelfSigned Issuer,
//! a CA Issuer signs the members', the operator's and the user's certificates from it, and the cluster
//! takes them through `spec.tls.secrets`. The cluster forms over mutual TLS, the user's cert-manager
//! certificate writes and reads back every acknowledged key, and a plaintext client is refused. And a
//! cluster that names the CA Issuer in `spec.tls.issuerRef`: the operator creates the Certificates itself,
//! cert-manager issues them, and the cluster forms on them.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_op_e2e::{
    CREATE_TIMEOUT, EtcdEndpoint, TestNamespace, V36, WriteChecker, client, create_cluster, wait_settled,
};
use etcd_op_test_support::{kubectl, wait_for};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::Api;
use serde_json::json;

const ISSUED_WITHIN: Duration = Duration::from_secs(120);

/// Applies cert-manager objects (Issuers, Certificates) in `ns` through kubectl, as a user would.
fn apply(ns: &str, objects: &[serde_json::Value]) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let file = std::env::temp_dir().join(format!("{ns}-cert-manager.json"));
    std::fs::write(&file, serde_json::to_vec(&list)?)?;
    let path = file.to_string_lossy().to_string();
    let applied = kubectl(&["-n", ns, "apply", "-f", &path]);
    let _ = std::fs::remove_file(&file);
    applied.map(drop)
}

fn certificate(name: &str, issuer: &str, dns_names: &[String], usages: &[&str]) -> serde_json::Value {
    json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name},
        "spec": {
            "secretName": name, "commonName": name, "dnsNames": dns_names, "usages": usages,
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": issuer, "kind": "Issuer", "group": "cert-manager.io"}
        }
    })
}

/// Waits until cert-manager has written the Secret of each Certificate, with its authority in `ca.crt`.
async fn wait_issued(client: &kube::Client, ns: &str, names: &[&str]) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in names {
        wait_for(&format!("cert-manager to issue {ns}/{name}"), ISSUED_WITHIN, || async {
            let data = secrets.get_opt(name).await?.and_then(|s| s.data).unwrap_or_default();
            Ok(["tls.crt", "tls.key", "ca.crt"]
                .iter()
                .all(|k| data.get(*k).is_some_and(|v| !v.0.is_empty()))
                .then_some(()))
        })
        .await?;
    }
    Ok(())
}

async fn secret_text(client: &kube::Client, ns: &str, name: &str, key: &str) -> Result<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let data = secrets.get(name).await?.data.unwrap_or_default();
    Ok(data.get(key).with_context(|| format!("Secret {name} has no {key}"))?.0.clone())
}

/// An authority of the namespace's own, as the Issuer `etcd-ca`: self-signed, then a CA Issuer that signs
/// with it.
async fn ca_issuer(client: &kube::Client, n: &str) -> Result<()> {
    apply(
        n,
        &[
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "bootstrap"},
                   "spec": {"selfSigned": {}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "etcd-ca"},
                   "spec": {"isCA": true, "commonName": "etcd-ca", "secretName": "etcd-ca",
                            "privateKey": {"algorithm": "ECDSA", "size": 256},
                            "issuerRef": {"name": "bootstrap", "kind": "Issuer", "group": "cert-manager.io"}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "etcd-ca"},
                   "spec": {"ca": {"secretName": "etcd-ca"}}}),
        ],
    )?;
    wait_issued(client, n, &["etcd-ca"]).await
}

#[tokio::test]
async fn a_cluster_runs_on_certificates_cert_manager_issues() -> Result<()> {
    etcd_op_test_support::start_cert_manager()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-cert-manager").await?;
    let n = ns.name.as_str();

    ca_issuer(&client, n).await?;

    let members = vec![format!("*.cm.{n}.svc"), format!("*.cm.{n}.svc.cluster.local")];
    let mut serving = members.clone();
    serving.push(format!("cm-client.{n}.svc"));
    apply(
        n,
        &[
            certificate("cm-peer", "etcd-ca", &members, &["server auth", "client auth"]),
            certificate("cm-server", "etcd-ca", &serving, &["server auth", "client auth"]),
            certificate("cm-operator", "etcd-ca", &[], &["client auth"]),
            certificate("cm-user", "etcd-ca", &[], &["client auth"]),
        ],
    )?;
    wait_issued(&client, n, &["cm-peer", "cm-server", "cm-operator", "cm-user"]).await?;

    create_cluster(
        &client,
        n,
        "cm",
        json!({"size": 3, "version": V36,
               "tls": {"secrets": {"peer": "cm-peer", "server": "cm-server", "operator": "cm-operator"}}}),
    )
    .await?;
    let ec = wait_settled(&client, n, "cm", 3, V36, CREATE_TIMEOUT).await?;
    let status = ec.status.context("status")?;
    assert!(status.members.iter().all(|m| m.peer_urls.iter().all(|u| u.starts_with("https://"))), "peers speak TLS");

    let services: Api<Service> = Api::namespaced(client.clone(), n);
    let ip = services.get("cm-client").await?.spec.and_then(|s| s.cluster_ip).context("the client Service's IP")?;
    let options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(secret_text(&client, n, "cm-user", "ca.crt").await?))
        .identity(etcd_client::Identity::from_pem(
            secret_text(&client, n, "cm-user", "tls.crt").await?,
            secret_text(&client, n, "cm-user", "tls.key").await?,
        ))
        .domain_name(format!("cm-client.{n}.svc"));
    let endpoint = EtcdEndpoint { url: format!("https://{ip}:2379"), tls: Some(options) };
    let checker = WriteChecker::start(endpoint, "cert-manager");
    checker.wait_for_writes(20).await?;
    let verified = checker.stop_and_verify().await?;
    assert!(verified >= 20, "{verified} writes verified with the user's cert-manager certificate");

    assert!(etcd_op_e2e::refuses_plaintext(&format!("http://{ip}:2379")).await, "a plaintext client is refused");
    ns.delete().await
}

#[tokio::test]
async fn a_cluster_gets_its_certificates_from_the_issuer_it_names() -> Result<()> {
    etcd_op_test_support::start_cert_manager()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-issuer-ref").await?;
    let n = ns.name.as_str();
    let spec = |issuer: &str| json!({"size": 3, "version": V36, "tls": {"issuerRef": {"name": issuer}}});
    let refused = create_cluster(&client, n, "issued", spec("no-such-issuer")).await;
    let message = format!("{:#}", refused.err().unwrap_or_else(|| anyhow::anyhow!("accepted")));
    assert!(message.contains("spec.tls.issuerRef") && message.contains("does not exist"), "{message}");

    ca_issuer(&client, n).await?;
    create_cluster(&client, n, "issued", spec("etcd-ca")).await?;
    let ec = wait_settled(&client, n, "issued", 3, V36, CREATE_TIMEOUT).await?;
    let certificates = kubectl(&["-n", n, "get", "certificates", "-o", "jsonpath={.items[*].metadata.name}"])?;
    for wanted in ["issued-peer-tls", "issued-server-tls", "issued-etcd-op-tls", "issued-client-tls"] {
        assert!(certificates.split_whitespace().any(|c| c == wanted), "Certificate {wanted} in {certificates}");
    }
    let listed: Vec<String> = ec
        .status
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .map(|t| t.certificates.iter().map(|c| c.secret.clone()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ["issued-peer-tls", "issued-server-tls", "issued-etcd-op-tls"], "status lists the issued ones");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), n);
    for authority in ["issued-peer-ca", "issued-client-ca"] {
        assert!(secrets.get_opt(authority).await?.is_none(), "the issuer holds the authority, not {authority}");
    }
    let peer_ca = secret_text(&client, n, "issued-peer-tls", "ca.crt").await?;
    assert_eq!(peer_ca, secret_text(&client, n, "etcd-ca", "tls.crt").await?, "members trust the issuer's CA");

    // The user's certificate, issued by cert-manager into <name>-client-tls, as with the operator's own.
    let checker = WriteChecker::start(etcd_op_e2e::client_endpoint(&client, n, "issued").await?, "issuer-ref");
    checker.wait_for_writes(20).await?;
    let verified = checker.stop_and_verify().await?;
    assert!(verified >= 20, "{verified} writes verified");
    ns.delete().await
}
