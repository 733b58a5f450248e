//! Asking each member about its database from wherever kubectl runs: a port-forward to the member's client
//! port through the API server, with the cluster's client certificate when the port speaks TLS.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_op_api::member_pod::quota_of_pod;
use etcd_op_api::v1::EtcdCluster;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use tokio::net::TcpListener;

use crate::report::LiveFigures;

const CLIENT_PORT: u16 = 2379;
/// How long one member may take to answer through its port-forward.
const ASK_TIMEOUT: Duration = Duration::from_secs(15);

/// What every member of `ec` says about its database, by member name.
pub async fn figures(client: &Client, ec: &EtcdCluster) -> Vec<(String, LiveFigures)> {
    let namespace = ec.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let tls = match client_tls(client, ec).await {
        Ok(tls) => tls,
        Err(error) => {
            let why = format!("{error:#}");
            return member_names(ec)
                .into_iter()
                .map(|name| (name, LiveFigures { unreachable: Some(why.clone()), ..LiveFigures::default() }))
                .collect();
        }
    };
    // Members are few (at most nine): asked one after the other, each bounded by ASK_TIMEOUT.
    let mut figures = Vec::new();
    for name in member_names(ec) {
        let asked = match ask(&pods, &name, tls.clone()).await {
            Ok(asked) => asked,
            Err(error) => LiveFigures { unreachable: Some(format!("{error:#}")), ..LiveFigures::default() },
        };
        figures.push((name, asked));
    }
    figures
}

fn member_names(ec: &EtcdCluster) -> Vec<String> {
    ec.status.iter().flat_map(|s| &s.members).map(|m| m.name.clone()).collect()
}

/// The client certificate a person may use towards `ec`'s members: the operator's own when the spec names
/// user Secrets, else the `<cluster>-client-tls` Secret the operator issues for users; `None` while the
/// client port speaks plaintext.
async fn client_tls(client: &Client, ec: &EtcdCluster) -> Result<Option<etcd_client::TlsOptions>> {
    let tls_on = ec.status.as_ref().and_then(|s| s.tls.as_ref()).is_some_and(|t| t.client);
    if !tls_on {
        return Ok(None);
    }
    let (name, namespace) = (ec.name_any(), ec.namespace().unwrap_or_default());
    let secret_name = ec
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.secrets.as_ref())
        .and_then(|s| s.operator.clone())
        .unwrap_or_else(|| format!("{name}-client-tls"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = secrets.get(&secret_name).await.with_context(|| format!("reading Secret {secret_name}"))?;
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| -> Result<Vec<u8>> {
        Ok(data.get(key).with_context(|| format!("Secret {secret_name} has no {key}"))?.0.clone())
    };
    Ok(Some(
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(field("ca.crt")?))
            .identity(etcd_client::Identity::from_pem(field("tls.crt")?, field("tls.key")?))
            // Every member's serving certificate carries the client Service's name.
            .domain_name(format!("{name}-client.{namespace}.svc")),
    ))
}

/// Opens a local port whose connections are forwarded to `pod`'s client port, asks etcd there for its status,
/// and closes it again.
async fn ask(pods: &Api<Pod>, pod: &str, tls: Option<etcd_client::TlsOptions>) -> Result<LiveFigures> {
    let quota_bytes = quota_of_pod(&pods.get(pod).await.with_context(|| format!("reading pod {pod}"))?);
    let listener = TcpListener::bind("127.0.0.1:0").await.context("a local port")?;
    let local = listener.local_addr().context("the local port's address")?;
    let bridge = {
        let (pods, pod) = (pods.clone(), pod.to_string());
        tokio::spawn(async move {
            // A bounded number of connections: the etcd client opens one, and may reconnect once or twice.
            for _ in 0..8 {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let Ok(mut forwarder) = pods.portforward(&pod, &[CLIENT_PORT]).await else { return };
                let Some(mut upstream) = forwarder.take_stream(CLIENT_PORT) else { return };
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                    drop(upstream);
                    let _ = forwarder.join().await;
                });
            }
        })
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{local}");
    let mut options = etcd_client::ConnectOptions::new().with_connect_timeout(ASK_TIMEOUT).with_timeout(ASK_TIMEOUT);
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    let status = tokio::time::timeout(ASK_TIMEOUT, async {
        let mut etcd = etcd_client::Client::connect([url.as_str()], Some(options)).await?;
        etcd.status().await
    })
    .await;
    bridge.abort();
    let status = status
        .with_context(|| format!("member {pod} did not answer within {ASK_TIMEOUT:?}"))?
        .with_context(|| format!("asking member {pod} for its status"))?;
    Ok(LiveFigures {
        db_size_bytes: Some(status.db_size()),
        db_size_in_use_bytes: Some(status.raft_used_db_size()),
        quota_bytes: Some(quota_bytes),
        unreachable: None,
    })
}
