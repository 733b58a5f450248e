//! Bad input is refused by the real API server with a message a person understands, and never reaches a
//! running cluster.

use anyhow::Result;
use etcd_op_e2e::{TestNamespace, client, create_cluster, patch_spec};
use serde_json::json;

fn refusal(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(object) => panic!("the API server accepted an invalid object: {object:?}"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn invalid_specs_are_refused_with_readable_messages() -> Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "e2e-validation").await?;
    let n = ns.name.as_str();

    let message = refusal(create_cluster(&client, n, "size-zero", json!({"size": 0})).await);
    assert!(message.contains("spec.size") && message.contains("1"), "size 0: {message}");
    let message = refusal(create_cluster(&client, n, "size-hundred", json!({"size": 100})).await);
    assert!(message.contains("spec.size") && message.contains("9"), "size 100: {message}");
    let message = refusal(create_cluster(&client, n, "bad-version", json!({"version": "latest"})).await);
    assert!(message.contains("spec.version"), "bad version: {message}");
    let message = refusal(
        create_cluster(&client, n, "both-storages", json!({"storage": {"emptyDir": {}, "volumeClaimTemplate": {}}}))
            .await,
    );
    assert!(message.contains("either emptyDir or volumeClaimTemplate"), "two storages: {message}");

    // A restore: on persistent storage only, from one source, and only at creation.
    let restore = json!({"restore": {"backupName": "nightly"}});
    let message = refusal(
        create_cluster(&client, n, "restore-ephemeral", json!({"storage": {"emptyDir": {}}, "bootstrap": restore}))
            .await,
    );
    assert!(message.contains("persistent storage"), "restore on emptyDir: {message}");
    let two_sources = json!({"restore": {"backupName": "nightly", "key": "k",
        "store": {"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3"}}}}});
    let message = refusal(create_cluster(&client, n, "restore-twice", json!({"bootstrap": two_sources})).await);
    assert!(message.contains("one of the two"), "two restore sources: {message}");
    create_cluster(&client, n, "restore-later", json!({"size": 1, "paused": true})).await?;
    let message = refusal(patch_spec(&client, n, "restore-later", json!({"bootstrap": restore})).await);
    assert!(message.contains("set when it is created"), "a restore added later: {message}");

    // Recovery from a quorum loss copies the survivors to a store first, and restores onto volumes.
    let recover = json!({"action": "RecoverFromMember"});
    let message = refusal(create_cluster(&client, n, "recover-nowhere", json!({"quorumLoss": recover})).await);
    assert!(message.contains("spec.backupStore"), "recovery without a store: {message}");
    let store = json!({"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3"}}});
    let on_empty_dir = json!({"storage": {"emptyDir": {}},
        "quorumLoss": {"action": "RecoverFromBackup"}, "backupStore": store});
    let message = refusal(create_cluster(&client, n, "recover-ephemeral", on_empty_dir).await);
    assert!(message.contains("only Wait"), "recovery on emptyDir: {message}");

    // A store is an S3 bucket or a claim, exactly one of the two.
    let backup = |store: serde_json::Value| {
        json!({"apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackup", "metadata": {"name": "nowhere"},
               "spec": {"clusterName": "main", "store": store}})
    };
    let both = json!({"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3"}}, "volume": {"claimName": "b"}});
    for store in [both, json!({})] {
        let message = refusal(
            etcd_op_test_support::create::<etcd_op_api::v1::EtcdBackup>(&client, n, backup(store.clone())).await,
        );
        assert!(message.contains("one of the two"), "store {store}: {message}");
    }
    let message = refusal(
        etcd_op_test_support::create::<etcd_op_api::v1::EtcdBackup>(
            &client,
            n,
            backup(json!({"volume": {"claimName": "Not_A_Label"}})),
        )
        .await,
    );
    assert!(message.contains("claimName"), "a claim that cannot name a Service: {message}");

    // A backup schedule whose cron or time zone cannot be read is refused by the webhook, naming the field.
    let schedule = |cron: &str, zone: &str| {
        json!({"apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackupSchedule", "metadata": {"name": "nightly"},
               "spec": {"schedule": cron, "timeZone": zone, "backupTemplate": {"clusterName": "main",
                        "store": {"s3": {"bucket": "backups", "credentialsSecret": {"name": "s3"}}}}}})
    };
    let message = refusal(
        etcd_op_test_support::create::<etcd_op_api::v1::EtcdBackupSchedule>(&client, n, schedule("0 25 * * *", "UTC"))
            .await,
    );
    assert!(message.contains("spec.schedule") && message.contains("hour"), "a bad hour: {message}");
    let message = refusal(
        etcd_op_test_support::create::<etcd_op_api::v1::EtcdBackupSchedule>(
            &client,
            n,
            schedule("@daily", "Mars/Olympus"),
        )
        .await,
    );
    assert!(message.contains("spec.timeZone"), "an unknown zone: {message}");

    // Names whose derived names would be invalid, too long, or another cluster's.
    let long = "a".repeat(57);
    let message = refusal(create_cluster(&client, n, &long, json!({})).await);
    assert!(message.contains("at most 56 characters"), "long name: {message}");
    let message = refusal(create_cluster(&client, n, "main.v2", json!({})).await);
    assert!(message.contains("DNS label"), "dotted name: {message}");
    let message = refusal(create_cluster(&client, n, "main-client", json!({})).await);
    assert!(message.contains("-client"), "a name ending in -client: {message}");
    create_cluster(&client, n, &"a".repeat(56), json!({"paused": true})).await?;

    // Minor upgrades only from the patch releases etcd supports them from.
    create_cluster(&client, n, "old-patch", json!({"size": 1, "version": "3.5.25", "paused": true})).await?;
    let message = refusal(patch_spec(&client, n, "old-patch", json!({"version": "3.6.16"})).await);
    assert!(message.contains("3.5.26"), "3.5.25 → 3.6: {message}");
    patch_spec(&client, n, "old-patch", json!({"version": "3.5.26"})).await?;
    patch_spec(&client, n, "old-patch", json!({"version": "3.6.10"})).await?;
    let message = refusal(patch_spec(&client, n, "old-patch", json!({"version": "3.7.3"})).await);
    assert!(message.contains("3.6.11"), "3.6.10 → 3.7: {message}");

    // A valid cluster (paused, so nothing runs) and then changes to it that must be refused.
    create_cluster(
        &client,
        n,
        "valid",
        json!({"size": 1, "version": "3.6.16", "paused": true,
               "storage": {"volumeClaimTemplate": {"storageClassName": "standard"}}}),
    )
    .await?;
    let message = refusal(
        patch_spec(&client, n, "valid", json!({"storage": {"volumeClaimTemplate": {"storageClassName": "other"}}}))
            .await,
    );
    assert!(message.contains("storageClassName cannot change"), "storage class change: {message}");
    let message = refusal(
        patch_spec(&client, n, "valid", json!({"storage": {"emptyDir": {}, "volumeClaimTemplate": null}})).await,
    );
    assert!(message.contains("cannot change after creation"), "storage kind change: {message}");
    // Volumes grow, never shrink (the default is 1Gi), and their size is a quantity.
    let message =
        refusal(patch_spec(&client, n, "valid", json!({"storage": {"volumeClaimTemplate": {"size": "512Mi"}}})).await);
    assert!(message.contains("size cannot shrink"), "a smaller volume: {message}");
    let message =
        refusal(patch_spec(&client, n, "valid", json!({"storage": {"volumeClaimTemplate": {"size": "big"}}})).await);
    assert!(message.contains("a quantity"), "a size that is no quantity: {message}");
    let message = refusal(
        patch_spec(&client, n, "valid", json!({"maintenance": {"defragmentation": {"reclaimable": "0"}}})).await,
    );
    assert!(message.contains("a positive quantity"), "a zero defragmentation threshold: {message}");
    let message = refusal(patch_spec(&client, n, "valid", json!({"version": "3.5.35"})).await);
    assert!(message.contains("downgrading"), "downgrade: {message}");
    let message = refusal(patch_spec(&client, n, "valid", json!({"version": "3.8.0"})).await);
    assert!(message.contains("one minor release at a time"), "skipped minor: {message}");
    let message = refusal(patch_spec(&client, n, "valid", json!({"version": "4.0.0"})).await);
    assert!(message.contains("major"), "major change: {message}");
    // TLS is never turned off for a running cluster, and a lifetime too short is refused.
    let message = refusal(patch_spec(&client, n, "valid", json!({"tls": {"client": {"enabled": false}}})).await);
    assert!(message.contains("cannot be turned off"), "TLS off: {message}");
    let message = refusal(patch_spec(&client, n, "valid", json!({"tls": {"certificateLifetime": "2m"}})).await);
    assert!(message.contains("at least 3 minutes"), "a 2-minute lifetime: {message}");
    let message = refusal(patch_spec(&client, n, "valid", json!({"tls": {"certificateLifetime": "90 days"}})).await);
    assert!(message.contains("certificateLifetime"), "a lifetime in words: {message}");
    create_cluster(
        &client,
        n,
        "plain",
        json!({"size": 1, "paused": true, "tls": {"peer": {"enabled": false}, "client": {"enabled": false}}}),
    )
    .await?;
    // Turning TLS on is allowed on persistent storage (the cluster is paused, so nothing changes here)...
    patch_spec(&client, n, "plain", json!({"tls": {"peer": {"enabled": true}}})).await?;
    // ...and refused on emptyDir, where a member's restart loses its data.
    create_cluster(
        &client,
        n,
        "plain-ephemeral",
        json!({"size": 1, "paused": true, "storage": {"emptyDir": {}},
               "tls": {"peer": {"enabled": false}, "client": {"enabled": false}}}),
    )
    .await?;
    let message = refusal(patch_spec(&client, n, "plain-ephemeral", json!({"tls": null})).await);
    assert!(message.contains("persistent storage only"), "TLS on over emptyDir: {message}");
    // The user's Secrets as the certificates' source: complete for the ports that speak TLS, and chosen at
    // creation.
    let message = refusal(
        create_cluster(&client, n, "half-secrets", json!({"tls": {"secrets": {"peer": "p", "server": "s"}}})).await,
    );
    assert!(message.contains("server and operator go together"), "no operator certificate: {message}");
    let message = refusal(create_cluster(&client, n, "peer-only", json!({"tls": {"secrets": {"peer": "p"}}})).await);
    assert!(message.contains("exactly when client TLS is on"), "client TLS without Secrets: {message}");
    let message =
        refusal(patch_spec(&client, n, "valid", json!({"tls": {"secrets": {"server": "s", "operator": "o"}}})).await);
    assert!(message.contains("chosen when it is created"), "a source change: {message}");
    let message = refusal(
        create_cluster(
            &client,
            n,
            "own-rotated",
            json!({"tls": {"secrets": {"peer": "p", "server": "s", "operator": "o"}, "authorityRotation": "now"}}),
        )
        .await,
    );
    assert!(message.contains("authorities are yours to rotate"), "rotation of the user's authorities: {message}");
    let message = refusal(patch_spec(&client, n, "valid", json!({"tls": {"authorityRotation": ""}})).await);
    assert!(message.contains("authorityRotation"), "an empty rotation value: {message}");
    // Allowed: a patch upgrade, a resize, a new certificate lifetime, larger volumes.
    patch_spec(&client, n, "valid", json!({"storage": {"volumeClaimTemplate": {"size": "2Gi"}}})).await?;
    patch_spec(&client, n, "valid", json!({"version": "3.6.17", "size": 3, "tls": {"certificateLifetime": "30d"}}))
        .await?;

    ns.delete().await
}
