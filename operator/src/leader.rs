//! Leader election on a coordination.k8s.io/v1 Lease. Only the holder reconciles; a holder that loses the
//! lease stops at once; on shutdown the lease is released so a standby takes over without waiting.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Election {
    /// True while this manager holds the lease.
    pub leading: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    leases: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    lease_name: String,
    identity: String,
}

pub async fn start(
    client: Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
    duration_secs: u64,
) -> Result<Election, LeaseManagerError> {
    let leases = kube::Api::namespaced(client.clone(), namespace);
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_secs)
        .with_grace((duration_secs / 3).max(1))
        .with_field_manager("etcd-op-leader-election")
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    Ok(Election { leading, task, leases, lease_name: lease_name.to_string(), identity: identity.to_string() })
}

impl Election {
    /// Closes the channel, which makes the lease manager release the lease, and waits for it, at most a
    /// few seconds: shutdown must not hang on an API server that does not answer.
    pub async fn release(self) {
        drop(self.leading);
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader-election lease released"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the leader-election lease failed"),
            Ok(Err(error)) => tracing::warn!(%error, "the leader-election task failed"),
            Err(_) => tracing::warn!("releasing the leader-election lease timed out; it expires by itself"),
        }
        // A standby told to stop while its attempt to take the lease was in flight may have taken it after
        // all, unknown to the lease manager, which then releases nothing: the lease is read back, and cleared
        // if it names this manager.
        let read = tokio::time::timeout(RELEASE_TIMEOUT, self.leases.get_opt(&self.lease_name)).await;
        let held = read.ok().and_then(Result::ok).flatten().and_then(|l| l.spec?.holder_identity);
        if held.as_deref() == Some(self.identity.as_str()) {
            let patch = serde_json::json!({"spec": {
                "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null,
            }});
            let cleared = tokio::time::timeout(
                RELEASE_TIMEOUT,
                self.leases.patch(
                    &self.lease_name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                ),
            )
            .await;
            match cleared {
                Ok(Ok(_)) => tracing::info!("leader-election lease held after all: cleared"),
                Ok(Err(error)) => tracing::warn!(%error, "clearing the leader-election lease failed"),
                Err(_) => tracing::warn!("clearing the leader-election lease timed out; it expires by itself"),
            }
        }
    }
}

/// The namespace the manager runs in, from the service account mount; `None` out of cluster.
pub fn own_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
