//! The validating webhook, served by the deployed manager with the certificate it made for itself: it
//! refuses what the CRD's rules cannot see, lets changes to existing clusters through when the world around
//! them changed, and (registered as config/webhook registers it) never stands in the way of a delete.

use anyhow::{Context, Result};
use etcd_op_api::v1::EtcdCluster;
use etcd_op_e2e::{
    TestNamespace, client, create_cluster, create_storage_class, patch_spec, try_create_cluster, try_patch_spec,
};
use etcd_op_test_support::{TEST_LABEL, create, kubectl};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

fn refusal(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(object) => panic!("the API server accepted what the webhook should refuse: {object:?}"),
        Err(error) => format!("{error:#}"),
    }
}

/// A cluster-scoped object made by a test, deleted when the test ends however it ends.
struct Cleanup {
    kind: &'static str,
    name: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", self.kind, &self.name, "--ignore-not-found", "--wait=false"]);
    }
}

#[tokio::test]
async fn the_webhook_refuses_a_missing_storage_class_and_names_taken_by_others() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-webhook").await?;
    let n = ns.name.as_str();
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), n);

    let message = refusal(
        create_cluster(
            &client,
            n,
            "no-class",
            json!({"size": 3, "storage": {"volumeClaimTemplate": {"storageClassName": "no-such-class"}}}),
        )
        .await,
    );
    assert!(message.contains("denied the request"), "refused by the webhook: {message}");
    assert!(message.contains("\"no-such-class\"") && message.contains("does not exist"), "{message}");
    assert!(clusters.get_opt("no-class").await?.is_none(), "nothing was created half-way");

    // Someone else's Service under the name the cluster's client Service would take.
    create::<Service>(
        &client,
        n,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken-client"},
               "spec": {"ports": [{"port": 80}], "selector": {"app": "someone-else"}}}),
    )
    .await?;
    let message = refusal(create_cluster(&client, n, "taken", json!({"size": 1, "paused": true})).await);
    assert!(message.contains("Service taken-client") && message.contains("another name"), "{message}");
    assert!(clusters.get_opt("taken").await?.is_none());

    // Allowed: the same spec under a free name, with the class that exists.
    create_cluster(
        &client,
        n,
        "free",
        json!({"size": 1, "paused": true, "storage": {"volumeClaimTemplate": {"storageClassName": "standard"}}}),
    )
    .await?;
    ns.delete().await
}

#[tokio::test]
async fn a_cluster_whose_class_went_away_can_still_be_changed_and_deleted() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-webhook-later").await?;
    let n = ns.name.as_str();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class_name = create_storage_class(&client, n).await?;
    let _class = Cleanup { kind: "storageclass", name: class_name.clone() };
    create_cluster(
        &client,
        n,
        "demo",
        json!({"size": 1, "paused": true, "storage": {"volumeClaimTemplate": {"storageClassName": class_name}}}),
    )
    .await?;
    classes.delete(&class_name, &DeleteParams::default()).await?;
    patch_spec(&client, n, "demo", json!({"size": 3})).await.context("a resize is not the webhook's business")?;
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), n);
    clusters.delete("demo", &DeleteParams::default()).await?;
    ns.delete().await
}

/// A second registration exactly like config/webhook's, limited to this test's namespace, pointing at a
/// Service with no pods behind it: a webhook that is down. Creating is refused (so the registration is
/// live), while deleting a cluster and changing its labels go through.
#[tokio::test]
async fn a_webhook_that_is_down_blocks_no_delete() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-webhook-down").await?;
    let n = ns.name.as_str();
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), n);
    create_cluster(&client, n, "demo", json!({"size": 1, "paused": true})).await?;

    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let deployed = configurations.get("etcd-op-validating-webhook-configuration").await?;
    let mut webhook = deployed.webhooks.clone().unwrap_or_default().into_iter().next().context("a webhook")?;
    webhook.client_config.service = Some(serde_json::from_value(json!({"namespace": n, "name": "nobody-home",
        "path": "/validate-etcd-cloud-io-v1-etcdcluster"}))?);
    webhook.namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"kubernetes.io/metadata.name": n}}))?);
    webhook.timeout_seconds = Some(3);
    let down: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("{n}-down"), "labels": {TEST_LABEL: "true"}},
        "webhooks": [webhook],
    }))?;
    configurations.create(&PostParams::default(), &down).await?;
    let _down = Cleanup { kind: "validatingwebhookconfiguration", name: format!("{n}-down") };

    // The registration takes effect within a moment; until the create is refused, it is not yet live.
    let live = etcd_op_test_support::wait_for(
        "the down webhook to refuse a create",
        std::time::Duration::from_secs(30),
        || async {
            let refused = try_create_cluster(&client, n, "probe", &json!({"size": 1, "paused": true})).await.is_err();
            if !refused {
                let _ = clusters.delete("probe", &DeleteParams::default()).await;
            }
            Ok(refused.then_some(()))
        },
    )
    .await;
    live?;
    let message = refusal(try_patch_spec(&client, n, "demo", &json!({"size": 3})).await);
    assert!(message.contains("nobody-home") || message.contains("failed calling webhook"), "{message}");

    let labelled = json!({"metadata": {"labels": {"team": "storage"}}});
    clusters
        .patch("demo", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&labelled))
        .await
        .context("a metadata change does not reach the webhook")?;
    clusters.delete("demo", &DeleteParams::default()).await.context("a delete does not reach the webhook")?;
    etcd_op_test_support::wait_for("the cluster to go", std::time::Duration::from_secs(60), || async {
        Ok(clusters.get_opt("demo").await?.is_none().then_some(()))
    })
    .await?;
    ns.delete().await
}
