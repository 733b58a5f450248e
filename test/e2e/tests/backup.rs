//! Backups to the test bed's S3-compatible store (s3proxy), under the write checker: what an EtcdBackup
//! stores is a snapshot etcd's own tools restore, holding every write acknowledged before it was asked for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use etcd_op_api::v1::{BackupPhase, EtcdBackup};
use etcd_op_e2e::*;
use etcd_op_test_support::{S3Settings, TestNamespace, client, create, repo_root, start_s3proxy, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const BACKUP_TIMEOUT: Duration = Duration::from_secs(180);

async fn create_credentials(client: &Client, namespace: &str, name: &str, s3: &S3Settings, secret: &str) -> Result<()> {
    create::<Secret>(
        client,
        namespace,
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": secret},
        }),
    )
    .await?;
    Ok(())
}

async fn create_backup(client: &Client, namespace: &str, name: &str, s3: &S3Settings, secret: &str) -> Result<()> {
    create::<EtcdBackup>(
        client,
        namespace,
        json!({
            "apiVersion": "etcd.cloud.io/v1", "kind": "EtcdBackup", "metadata": {"name": name},
            "spec": {"clusterName": "demo", "store": {"s3": {
                "endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": format!("e2e/{namespace}"),
                "credentialsSecret": {"name": secret},
            }}},
        }),
    )
    .await?;
    Ok(())
}

/// Waits until the backup ended, and returns it.
async fn ended(client: &Client, namespace: &str, name: &str) -> Result<EtcdBackup> {
    let api: Api<EtcdBackup> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("EtcdBackup {name} to end"), BACKUP_TIMEOUT, || async {
        let backup = api.get(name).await?;
        Ok(backup.status.as_ref().and_then(|s| s.phase).filter(|p| p.is_final()).map(|_| backup.clone()))
    })
    .await
}

fn etcd_bin_dir() -> Result<PathBuf> {
    let output = Command::new(repo_root().join("hack/build.sh")).arg("etcd").stderr(Stdio::inherit()).output()?;
    ensure!(output.status.success(), "hack/build.sh etcd failed");
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A single etcd on loopback, restored from a snapshot file with etcd's own `etcdutl snapshot restore` (which
/// checks the hash etcd appended); stopped when dropped.
struct Restored {
    child: Child,
    endpoint: EtcdEndpoint,
    status: serde_json::Value,
}

impl Restored {
    fn start(snapshot: &Path, scratch: &Path) -> Result<Self> {
        let bin = etcd_bin_dir()?;
        let status =
            Command::new(bin.join("etcdutl")).args(["snapshot", "status", "-w", "json"]).arg(snapshot).output()?;
        ensure!(status.status.success(), "etcdutl snapshot status: {}", String::from_utf8_lossy(&status.stderr));
        let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
        let (peer, client) =
            (format!("http://127.0.0.1:{}", free_port()?), format!("http://127.0.0.1:{}", free_port()?));
        let data = scratch.join("data");
        let restore = Command::new(bin.join("etcdutl"))
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg(format!("--data-dir={}", data.display()))
            .args(["--name=restored", &format!("--initial-cluster=restored={peer}")])
            .args([&format!("--initial-advertise-peer-urls={peer}"), "--initial-cluster-token=e2e-restore-check"])
            .output()?;
        ensure!(restore.status.success(), "etcdutl snapshot restore: {}", String::from_utf8_lossy(&restore.stderr));
        let log = std::fs::File::create(scratch.join("etcd.log"))?;
        let child = Command::new(bin.join("etcd"))
            .args(["--name=restored", &format!("--data-dir={}", data.display())])
            .args([&format!("--listen-client-urls={client}"), &format!("--advertise-client-urls={client}")])
            .args([&format!("--listen-peer-urls={peer}"), &format!("--initial-advertise-peer-urls={peer}")])
            .arg(format!("--initial-cluster=restored={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self { child, endpoint: EtcdEndpoint { url: client, tls: None }, status })
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_every_write_acknowledged_before_it() -> Result<()> {
    let s3 = start_s3proxy()?;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "backup").await?;
    let namespace = ns.name.clone();
    {
        // The default spec: mutual TLS on both ports, so the operator reaches the members with its own
        // client certificate.
        create_cluster(&client, &namespace, "demo", json!({"size": 3, "version": V36})).await?;
        wait_settled(&client, &namespace, "demo", 3, V36, CREATE_TIMEOUT).await?;
        let checker = WriteChecker::start(client_endpoint(&client, &namespace, "demo").await?, "backup");
        checker.wait_for_writes(20).await?;

        create_credentials(&client, &namespace, "store", &s3, &s3.secret_access_key).await?;
        let before = checker.acknowledged_writes().await;
        create_backup(&client, &namespace, "first", &s3, "store").await?;
        let backup = ended(&client, &namespace, "first").await?;
        let status = backup.status.clone().context("status")?;
        ensure!(status.phase == Some(BackupPhase::Succeeded), "the backup failed: {:?}", status.message);
        let leader = leader(&get_cluster(&client, &namespace, "demo").await?);
        ensure!(
            status.member.is_some() && status.member != leader,
            "taken from a follower, not the leader {leader:?}: {:?}",
            status.member
        );
        let key = status.key.clone().context("status.key")?;
        ensure!(key.starts_with(&format!("e2e/{namespace}/{namespace}/demo/")), "the key is under the prefix: {key}");
        ensure!(
            status.location.as_deref() == Some(&format!("s3://{}/{key}", s3.bucket)[..]),
            "location: {:?}",
            status.location
        );
        let written = checker.stop().await?;

        // The stored object is what status says, and etcd's own tools restore it.
        let file = s3.bucket_dir.join(&key);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        ensure!(
            Some(bytes.len() as i64) == status.size_bytes,
            "size {} against status {:?}",
            bytes.len(),
            status.size_bytes
        );
        let scratch = std::env::temp_dir().join(format!("etcd-op-e2e-{namespace}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let restored = Restored::start(&file, &scratch)?;
        let snapshot_revision = restored.status["revision"].as_i64().context("etcdutl's revision")?;
        let recorded = status.revision.context("status.revision")?;
        ensure!(
            snapshot_revision >= recorded,
            "the snapshot's revision {snapshot_revision} is below status.revision {recorded}"
        );
        let verified = written.acknowledged_before(&before).verify(&restored.endpoint).await?;
        ensure!(verified == before.len() && verified >= 20, "verified {verified} of {} writes", before.len());
        let _ = std::fs::remove_dir_all(&scratch);

        // The spec of a backup never changes.
        let api: Api<EtcdBackup> = Api::namespaced(client.clone(), &namespace);
        let change = json!({"spec": {"clusterName": "other"}});
        match api.patch("first", &PatchParams::default(), &Patch::Merge(&change)).await {
            Err(kube::Error::Api(e)) if e.message.contains("cannot change") => {}
            other => bail!("a change of a backup's spec was not refused as expected: {other:?}"),
        }

        // A wrong key pair: the store refuses the upload, the backup fails saying so, and is never retried.
        create_credentials(&client, &namespace, "wrong", &s3, "not-the-secret").await?;
        create_backup(&client, &namespace, "refused", &s3, "wrong").await?;
        let refused = ended(&client, &namespace, "refused").await?;
        let status = refused.status.context("status")?;
        ensure!(status.phase == Some(BackupPhase::Failed), "a backup with a wrong key pair: {:?}", status.phase);
        let message = status.message.unwrap_or_default();
        ensure!(message.contains("uploading"), "the message says what failed: {message}");
        let complete = status.conditions.iter().find(|c| c.type_ == "Complete").context("Complete condition")?;
        ensure!(complete.status == "False" && complete.reason == "BackupFailed", "{complete:?}");
    }
    ns.delete().await
}
