//! A cluster that takes its certificates from the user's Secrets (`spec.tls.secrets`), issued here by an
//! authority of the test's own, as cert-manager or a company CA would: the webhook refuses Secrets that
//! are missing or name the wrong hosts; with good ones the cluster forms over TLS, the operator reaches it
//! with the user's operator certificate, the user's client certificate works, and the operator writes no
//! Secret of its own.

use anyhow::Result;
use etcd_op_e2e::{CREATE_TIMEOUT, EtcdEndpoint, TestNamespace, WriteChecker, client, create_cluster, wait_settled};
use etcd_op_test_support::create;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::Api;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;

const V36: &str = "3.6.16";

struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn authority() -> Result<Authority> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Authority { pem: cert.pem(), issuer: Issuer::new(params, key) })
}

/// `(tls.crt, tls.key)` for `names`.
fn leaf(authority: &Authority, names: &[String], usages: Vec<ExtendedKeyUsagePurpose>) -> Result<(String, String)> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.extended_key_usages = usages;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &authority.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

async fn tls_secret(client: &kube::Client, ns: &str, name: &str, pair: &(String, String), ca: &str) -> Result<()> {
    create::<Secret>(
        client,
        ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/tls",
               "stringData": {"tls.crt": pair.0, "tls.key": pair.1, "ca.crt": ca}}),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_cluster_runs_on_the_users_own_certificates() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-own-certs").await?;
    let n = ns.name.as_str();
    let both = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let client_only = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ca = authority()?;
    let members = format!("*.own.{n}.svc");
    let service = format!("own-client.{n}.svc");

    tls_secret(&client, n, "my-peer", &leaf(&ca, std::slice::from_ref(&members), both.clone())?, &ca.pem).await?;
    tls_secret(&client, n, "my-operator", &leaf(&ca, &[], client_only.clone())?, &ca.pem).await?;
    // A serving certificate that forgets the client Service's name: the operator could not check it.
    tls_secret(&client, n, "my-server-short", &leaf(&ca, std::slice::from_ref(&members), both.clone())?, &ca.pem)
        .await?;
    let spec = |server: &str| {
        json!({"size": 3, "version": V36,
               "tls": {"secrets": {"peer": "my-peer", "server": server, "operator": "my-operator"}}})
    };
    let refused = create_cluster(&client, n, "own", spec("my-server-short")).await;
    let message = format!("{:#}", refused.err().unwrap_or_else(|| anyhow::anyhow!("accepted")));
    assert!(message.contains("spec.tls.secrets.server") && message.contains(&service), "{message}");
    let refused = create_cluster(&client, n, "own", spec("no-such-secret")).await;
    let message = format!("{:#}", refused.err().unwrap_or_else(|| anyhow::anyhow!("accepted")));
    assert!(message.contains("no-such-secret does not exist"), "{message}");

    let names = [members.clone(), service.clone()];
    tls_secret(&client, n, "my-server", &leaf(&ca, &names, both)?, &ca.pem).await?;
    create_cluster(&client, n, "own", spec("my-server")).await?;
    let ec = wait_settled(&client, n, "own", 3, V36, CREATE_TIMEOUT).await?;
    let tls = ec.status.as_ref().and_then(|s| s.tls.as_ref());
    let listed: Vec<String> =
        tls.map(|t| t.certificates.iter().map(|c| c.secret.clone()).collect()).unwrap_or_default();
    assert_eq!(listed, ["my-peer", "my-server", "my-operator"], "status lists the user's certificates");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), n);
    for derived in
        ["own-peer-ca", "own-client-ca", "own-peer-tls", "own-server-tls", "own-etcd-op-tls", "own-client-tls"]
    {
        assert!(secrets.get_opt(derived).await?.is_none(), "the operator made no Secret {derived}");
    }

    // The user's own client certificate, from the same authority, through the client Service.
    let user = leaf(&ca, &[], client_only)?;
    let services: Api<Service> = Api::namespaced(client.clone(), n);
    let ip = services.get("own-client").await?.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    let options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(ca.pem.as_bytes()))
        .identity(etcd_client::Identity::from_pem(user.0.as_bytes(), user.1.as_bytes()))
        .domain_name(service.clone());
    let endpoint = EtcdEndpoint { url: format!("https://{ip}:2379"), tls: Some(options) };
    let checker = WriteChecker::start(endpoint.clone(), "own-certificates");
    checker.wait_for_writes(20).await?;
    let verified = checker.stop_and_verify().await?;
    assert!(verified >= 20, "{verified} writes verified");
    assert!(etcd_op_e2e::refuses_plaintext(&format!("http://{ip}:2379")).await, "a plaintext client is refused");
    ns.delete().await
}
