//! Transport security on the local cluster: a cluster created with the defaults speaks mutual TLS on both
//! ports; only clients with a certificate of its client authority get in; the user's certificate works; and
//! a leaf certificate renewed two thirds into its life reaches the running members without restarting them,
//! while no acknowledged write is lost; and the cluster's authorities are rotated on request, with clients
//! moving to their new certificate while both authorities are trusted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_op_e2e::{
    CREATE_TIMEOUT, EtcdEndpoint, TestNamespace, WriteChecker, client, client_endpoint, connect, get_cluster,
    wait_settled,
};
use etcd_op_test_support::wait_for;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;

const V36: &str = "3.6.16";
/// Renewal comes at two thirds of this (4 minutes), which leaves the kubelet two minutes to bring the
/// renewed Secret into the pods before the first certificate expires.
const LIFETIME: &str = "6m";

async fn secret_field(client: &kube::Client, ns: &str, secret: &str, key: &str) -> Result<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let data = secrets.get(secret).await?.data.unwrap_or_default();
    Ok(data.get(key).with_context(|| format!("{secret} has no {key}"))?.0.clone())
}

/// The certificate the member serves on `address`, read from a handshake made with the user's client
/// certificate.
async fn served_certificate(client: &kube::Client, ns: &str, cluster: &str, address: &str) -> Result<Vec<u8>> {
    let user = format!("{cluster}-client-tls");
    let mut roots = rustls::RootCertStore::empty();
    for authority in CertificateDer::pem_slice_iter(&secret_field(client, ns, &user, "ca.crt").await?) {
        roots.add(authority?)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&secret_field(client, ns, &user, "tls.crt").await?).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&secret_field(client, ns, &user, "tls.key").await?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(format!("{cluster}-client.{ns}.svc"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let stream = connector.connect(name, tcp).await?;
        let (_, connection) = stream.get_ref();
        let served = connection.peer_certificates().and_then(|c| c.first()).context("no certificate served")?;
        Ok::<_, anyhow::Error>(served.as_ref().to_vec())
    };
    tokio::time::timeout(Duration::from_secs(5), handshake).await.context("TLS handshake timed out")?
}

fn der_of(pem: &[u8]) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_slice(pem)?.as_ref().to_vec())
}

/// The member pods' UIDs and etcd restart counts.
async fn members_as_running(client: &kube::Client, ns: &str) -> Result<Vec<(String, String, i32)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels("etcd.cloud.io/cluster=demo")).await?;
    let mut members: Vec<(String, String, i32)> = list
        .items
        .into_iter()
        .map(|p| {
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == "etcd"))
                .map_or(0, |c| c.restart_count);
            (p.metadata.name.unwrap_or_default(), p.metadata.uid.unwrap_or_default(), restarts)
        })
        .collect();
    members.sort();
    Ok(members)
}

/// One read with `endpoint`'s credentials; an error when the cluster refuses it.
async fn read_with(endpoint: &EtcdEndpoint) -> Result<()> {
    let mut etcd = connect(endpoint).await?;
    tokio::time::timeout(Duration::from_secs(5), etcd.get("probe", None)).await.context("read timed out")??;
    Ok(())
}

#[tokio::test]
async fn a_default_cluster_speaks_mutual_tls_and_renews_its_certificates_without_restarting() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-tls").await?;
    let n = ns.name.as_str();
    etcd_op_e2e::create_cluster(
        &client,
        n,
        "demo",
        json!({"size": 3, "version": V36, "tls": {"certificateLifetime": LIFETIME}}),
    )
    .await?;
    let ec = wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let status = ec.status.clone().context("status")?;
    let tls = status.tls.clone().context("status.tls")?;
    assert!(tls.peer && tls.client, "both ports speak TLS by default: {tls:?}");
    let secrets: Vec<&str> = tls.certificates.iter().map(|c| c.secret.as_str()).collect();
    for wanted in ["demo-peer-ca", "demo-client-ca", "demo-peer-tls", "demo-server-tls", "demo-client-tls"] {
        assert!(secrets.contains(&wanted), "{wanted} in status.tls.certificates: {secrets:?}");
    }
    assert!(status.members.iter().all(|m| m.peer_urls.iter().chain(&m.client_urls).all(|u| u.starts_with("https://"))));
    let expiring = status.conditions.iter().find(|c| c.type_ == "CertificatesExpiring").context("condition")?;
    assert_eq!(expiring.status, "False", "{expiring:?}");

    // The user's certificate works; plaintext, no certificate, and a certificate of the peer authority do not.
    let endpoint = client_endpoint(&client, n, "demo").await?;
    let user_tls = endpoint.tls.clone().context("the client endpoint uses TLS")?;
    // The client Service routes to the members once kube-proxy has their ready endpoints, which may come a
    // moment after the members report healthy.
    wait_for(
        "the user's client certificate to be admitted through the client Service",
        Duration::from_secs(60),
        || async { Ok(read_with(&endpoint).await.ok()) },
    )
    .await?;
    let plaintext = EtcdEndpoint { url: endpoint.url.replace("https://", "http://"), tls: None };
    assert!(read_with(&plaintext).await.is_err(), "a plaintext client is refused");
    let authority = secret_field(&client, n, "demo-client-tls", "ca.crt").await?;
    let anonymous = EtcdEndpoint {
        url: endpoint.url.clone(),
        tls: Some(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(authority))
                .domain_name(format!("demo-client.{n}.svc")),
        ),
    };
    assert!(read_with(&anonymous).await.is_err(), "a client without a certificate is refused");
    let peer_identity = etcd_client::Identity::from_pem(
        secret_field(&client, n, "demo-peer-tls", "tls.crt").await?,
        secret_field(&client, n, "demo-peer-tls", "tls.key").await?,
    );
    let as_peer = EtcdEndpoint { url: endpoint.url.clone(), tls: Some(user_tls.clone().identity(peer_identity)) };
    assert!(read_with(&as_peer).await.is_err(), "a peer certificate is no client certificate");

    // Renewal: the serving certificate is reissued two thirds into its life and served by the same etcd
    // processes, with writes going on throughout.
    let address = endpoint.url.trim_start_matches("https://").to_string();
    let checker = WriteChecker::start(endpoint.clone(), "tls-renewal");
    checker.wait_for_writes(20).await?;
    let before = members_as_running(&client, n).await?;
    let first = served_certificate(&client, n, "demo", &address).await?;
    assert_eq!(first, der_of(&secret_field(&client, n, "demo-server-tls", "tls.crt").await?)?);
    wait_for("the renewed serving certificate to be served", Duration::from_secs(330), || async {
        let stored = der_of(&secret_field(&client, n, "demo-server-tls", "tls.crt").await?)?;
        let served = served_certificate(&client, n, "demo", &address).await.ok();
        Ok((stored != first && served.as_ref() == Some(&stored)).then_some(()))
    })
    .await?;
    let after = members_as_running(&client, n).await?;
    if before != after {
        bail!("a member restarted or was replaced for the renewal: before {before:?}, after {after:?}");
    }
    let ec = get_cluster(&client, n, "demo").await?;
    let expiring = ec.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "CertificatesExpiring"));
    assert_eq!(expiring.map(|c| c.status.as_str()), Some("False"), "renewed in time: {expiring:?}");
    // Read back with the user's certificate as it is now: the one the checker started with was renewed too.
    let verified = checker.stop().await?.verify(&client_endpoint(&client, n, "demo").await?).await?;
    assert!(verified > 0);
    ns.delete().await
}

/// The phase of the authority rotation status reports, if any.
async fn rotation_phase(client: &kube::Client, ns: &str) -> Result<Option<String>> {
    let ec = get_cluster(client, ns, "demo").await?;
    Ok(ec.status.and_then(|s| s.tls).and_then(|t| t.authority_rotation).map(|r| r.phase))
}

async fn wait_rotation_phase(client: &kube::Client, ns: &str, phases: &[&str], timeout: Duration) -> Result<String> {
    wait_for(&format!("the authority rotation to reach {phases:?}"), timeout, || async {
        Ok(rotation_phase(client, ns).await?.filter(|p| phases.contains(&p.as_str())))
    })
    .await
}

#[tokio::test]
async fn the_authorities_are_rotated_without_losing_a_write() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-rotate").await?;
    let n = ns.name.as_str();
    etcd_op_e2e::create_cluster(&client, n, "demo", json!({"size": 3, "version": V36})).await?;
    wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let old_authority = secret_field(&client, n, "demo-client-ca", "tls.crt").await?;
    let old_identity = (
        secret_field(&client, n, "demo-client-tls", "tls.crt").await?,
        secret_field(&client, n, "demo-client-tls", "tls.key").await?,
    );
    let old_user = client_endpoint(&client, n, "demo").await?;
    let address = old_user.url.trim_start_matches("https://").to_string();
    let before = members_as_running(&client, n).await?;
    let first_checker = WriteChecker::start(old_user.clone(), "rotate-old-certificate");
    first_checker.wait_for_writes(20).await?;

    etcd_op_e2e::patch_spec(&client, n, "demo", json!({"tls": {"authorityRotation": "first"}})).await?;
    // Members restart to trust both authorities, then every certificate is issued anew by the new one.
    wait_rotation_phase(&client, n, &["IssueFromNew"], Duration::from_secs(420)).await?;
    let new_authority = secret_field(&client, n, "demo-client-ca", "tls.crt").await?;
    assert_ne!(new_authority, old_authority, "the client authority was replaced");
    let bundle = String::from_utf8(secret_field(&client, n, "demo-client-tls", "ca.crt").await?)?;
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "users trust both authorities meanwhile");
    let restarted = members_as_running(&client, n).await?;
    assert!(
        restarted.iter().all(|m| !before.iter().any(|b| b.1 == m.1)),
        "every member restarted to trust the new authority: before {before:?}, after {restarted:?}"
    );
    // Clients take their new certificate now, while the old one still works.
    let new_user = client_endpoint(&client, n, "demo").await?;
    let old_certificate = |trusted: &EtcdEndpoint| EtcdEndpoint {
        url: trusted.url.clone(),
        tls: trusted.tls.clone().map(|t| t.identity(etcd_client::Identity::from_pem(&old_identity.0, &old_identity.1))),
    };
    read_with(&old_certificate(&new_user)).await.context("the old certificate works until its authority is dropped")?;
    read_with(&new_user).await.context("the new certificate works at once")?;
    let second_checker = WriteChecker::start(new_user.clone(), "rotate-new-certificate");
    second_checker.wait_for_writes(20).await?;
    let old_written = first_checker.stop().await?;

    wait_rotation_phase(&client, n, &["Done"], Duration::from_secs(600)).await?;
    wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let bundle = String::from_utf8(secret_field(&client, n, "demo-client-tls", "ca.crt").await?)?;
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 1, "the old authority was dropped");
    let now_trusted = client_endpoint(&client, n, "demo").await?;
    assert!(read_with(&old_certificate(&now_trusted)).await.is_err(), "a certificate of the old authority is refused");
    let served = served_certificate(&client, n, "demo", &address).await?;
    assert_eq!(served, der_of(&secret_field(&client, n, "demo-server-tls", "tls.crt").await?)?, "the new leaf serves");

    let endpoint = client_endpoint(&client, n, "demo").await?;
    let verified_new = second_checker.stop().await?.verify(&endpoint).await?;
    let verified_old = old_written.verify(&endpoint).await?;
    assert!(verified_new > 0 && verified_old > 0);
    ns.delete().await
}

/// How often the operator published a Normal event of each reason in `ns` (repeats of one reason form a
/// series of one event).
async fn step_events(client: &kube::Client, ns: &str) -> Result<BTreeMap<String, i32>> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut counts = BTreeMap::new();
    for event in events.list(&ListParams::default()).await?.items {
        if event.type_.as_deref() == Some("Normal")
            && let Some(reason) = event.reason
        {
            *counts.entry(reason).or_insert(0) += event.series.map_or(1, |s| s.count);
        }
    }
    Ok(counts)
}

#[tokio::test]
async fn tls_is_turned_on_for_a_running_plaintext_cluster_without_losing_a_write() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-tls-on").await?;
    let n = ns.name.as_str();
    let plaintext_spec = json!({"peer": {"enabled": false}, "client": {"enabled": false}});
    etcd_op_e2e::create_cluster(&client, n, "demo", json!({"size": 3, "version": V36, "tls": plaintext_spec})).await?;
    let ec = wait_settled(&client, n, "demo", 3, V36, CREATE_TIMEOUT).await?;
    let tls = ec.status.as_ref().and_then(|s| s.tls.clone()).context("status.tls")?;
    assert!(!tls.peer && !tls.client, "created in plaintext: {tls:?}");
    let plaintext = client_endpoint(&client, n, "demo").await?;
    assert!(plaintext.tls.is_none() && plaintext.url.starts_with("http://"), "{}", plaintext.url);
    let plaintext_checker = WriteChecker::start(plaintext.clone(), "tls-on-plaintext");
    plaintext_checker.wait_for_writes(20).await?;
    let before = members_as_running(&client, n).await?;

    etcd_op_e2e::patch_spec(
        &client,
        n,
        "demo",
        json!({"tls": {"peer": {"enabled": true}, "client": {"enabled": true}}}),
    )
    .await?;
    // The user's certificate is issued first, before any port speaks TLS: a client can take it and move to
    // TLS while the members still serve plaintext.
    let user_tls = wait_for("the user's client certificate", Duration::from_secs(60), || async {
        Ok(etcd_op_e2e::user_client_tls(&client, n, "demo").await.ok())
    })
    .await?;
    let secure = EtcdEndpoint { url: plaintext.url.replace("http://", "https://"), tls: Some(user_tls) };
    let tls_checker = WriteChecker::start(secure.clone(), "tls-on-tls");

    let ec = wait_for("TLS on both ports, recorded and required", Duration::from_secs(420), || async {
        let ec = get_cluster(&client, n, "demo").await?;
        let tls = ec.status.as_ref().and_then(|s| s.tls.clone());
        let on = tls.is_some_and(|t| t.peer && t.client && t.turning_on.is_none());
        Ok((on && etcd_op_e2e::settled(&ec, 3, V36)).then_some(ec))
    })
    .await?;
    let status = ec.status.clone().context("status")?;
    assert!(
        status.members.iter().all(|m| m.peer_urls.iter().chain(&m.client_urls).all(|u| u.starts_with("https://"))),
        "every member is reached over TLS: {:?}",
        status.members
    );
    // etcd itself lists every peer URL as https.
    let mut etcd = connect(&secure).await?;
    let listed = tokio::time::timeout(Duration::from_secs(10), etcd.member_list()).await??;
    for member in listed.members() {
        assert!(member.peer_urls().iter().all(|u| u.starts_with("https://")), "{member:?}");
    }
    let after = members_as_running(&client, n).await?;
    for ((name, uid, _), (_, uid_after, _)) in before.iter().zip(&after) {
        assert_ne!(uid, uid_after, "{name} restarted to take TLS");
    }
    let steps = step_events(&client, n).await?;
    let count = |reason: &str| steps.get(reason).copied().unwrap_or(0);
    assert_eq!(count("SecurePeerUrl"), 3, "one peer URL move per member: {steps:?}");
    assert_eq!(count("RecordTransport"), 1, "{steps:?}");

    assert!(etcd_op_e2e::refuses_plaintext(&plaintext.url).await, "plaintext clients are refused at the end");
    let written_before = tls_checker.acknowledged().await;
    tls_checker.wait_for_writes(written_before + 20).await?;
    let plaintext_written = plaintext_checker.stop().await?;
    let verified_plaintext = plaintext_written.verify(&secure).await?;
    let verified_tls = tls_checker.stop_and_verify().await?;
    eprintln!("verified {verified_plaintext} plaintext and {verified_tls} TLS writes");
    ns.delete().await
}
