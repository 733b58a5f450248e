//! What a member's pod says of its etcd, read from the flags the operator gave it: shared by the operator
//! and `kubectl etcd`, so both read a member's quota the same way.

use k8s_openapi::api::core::v1::Pod;

/// etcd's quota when `--quota-backend-bytes` is not given: 2 GiB.
pub const ETCD_DEFAULT_QUOTA: u64 = 2 << 30;

/// The value of one of etcd's flags (`--flag=value`) in the pod's `etcd` container.
pub fn etcd_flag<'a>(pod: &'a Pod, flag: &str) -> Option<&'a str> {
    let prefix = format!("--{flag}=");
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == "etcd"))
        .and_then(|c| c.args.as_ref())
        .and_then(|args| args.iter().find_map(|a| a.strip_prefix(prefix.as_str())))
}

/// The quota a member's pod runs with: its `--quota-backend-bytes`, or etcd's default.
pub fn quota_of_pod(pod: &Pod) -> u64 {
    etcd_flag(pod, "quota-backend-bytes").and_then(|bytes| bytes.parse().ok()).unwrap_or(ETCD_DEFAULT_QUOTA)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(container: &str, args: &[&str]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": container, "args": args}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn the_quota_is_the_etcd_containers_flag_or_etcds_default() {
        assert_eq!(quota_of_pod(&pod("etcd", &["--name=a", "--quota-backend-bytes=335544320"])), 335_544_320);
        assert_eq!(quota_of_pod(&pod("etcd", &["--name=a"])), ETCD_DEFAULT_QUOTA);
        assert_eq!(quota_of_pod(&pod("sidecar", &["--quota-backend-bytes=1"])), ETCD_DEFAULT_QUOTA);
        assert_eq!(quota_of_pod(&pod("etcd", &["--quota-backend-bytes=lots"])), ETCD_DEFAULT_QUOTA);
        assert_eq!(
            etcd_flag(&pod("etcd", &["--listen-client-urls=https://0.0.0.0:2379"]), "listen-client-urls"),
            Some("https://0.0.0.0:2379")
        );
    }
}
