//! Command-line flags of the manager, each also settable through an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "etcd-op",
    version,
    about = "etcd-op: the Kubernetes operator for etcd clusters (EtcdCluster, etcd.cloud.io/v1)",
    long_about = "Runs the manager that reconciles EtcdCluster objects: it bootstraps, scales, heals and upgrades \
                  etcd clusters one safe step at a time. With no subcommand the manager runs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub manager: ManagerArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print etcd-op's CustomResourceDefinitions as YAML and exit: with --dir, each into its own file there
    /// (`etcd.cloud.io_<plural>.yaml`, as config/crd/bases holds them), else all to standard output.
    Crd {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Fetch a backup's snapshot from an S3-compatible store or a volume store into a file, checking it on the
    /// way: its sha256 must be the one given (if given), and the database must end with the sha256 etcd
    /// appended. An S3 store's key pair comes from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a volume
    /// store's token from STORE_TOKEN. The restore pods of a cluster run this.
    FetchSnapshot(FetchSnapshotArgs),
    /// Serve the backups on a volume (a volume store's pod): files under --dir, to holders of the token in
    /// STORE_TOKEN.
    ServeVolume(ServeVolumeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeVolumeArgs {
    /// Where the claim is mounted.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: String,
}

#[derive(Debug, clap::Args)]
pub struct FetchSnapshotArgs {
    /// The S3 store's URL; AWS S3 when unset.
    #[arg(long, conflicts_with = "volume")]
    pub endpoint: Option<String>,
    /// The S3 store's bucket.
    #[arg(long, required_unless_present = "volume")]
    pub bucket: Option<String>,
    /// A volume store's server, `http://<claim>-store.<namespace>.svc:8080`, instead of an S3 store.
    #[arg(long, value_name = "URL", conflicts_with = "bucket")]
    pub volume: Option<String>,
    /// The object's address as status shows it (`s3://…`, `pvc://…`), for messages.
    #[arg(long)]
    pub location: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The object's key.
    #[arg(long)]
    pub key: String,
    /// The sha256 (hex) the object must hash to; without it only etcd's appended hash is checked.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Where to write the snapshot.
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
    /// A directory to remove first (a partial restore's leftovers), if it exists.
    #[arg(long, value_name = "DIR")]
    pub clear: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ManagerArgs {
    /// Path to a kubeconfig. Without it: the in-cluster service account, else the default kubeconfig.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Elect a leader through a coordination.k8s.io Lease so only one replica reconciles.
    #[arg(long = "enable-leader-election", visible_alias = "leader-elect", env = "ENABLE_LEADER_ELECTION")]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease. Defaults to the namespace the manager runs in.
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE", value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEADER_ELECTION_ID", default_value = "etcd-op.etcd.cloud.io", value_name = "NAME")]
    pub leader_election_id: String,

    /// Seconds a leader's lease is valid without renewal; a standby takes over after this.
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION", default_value_t = 15, value_name = "SECONDS")]
    pub leader_election_lease_duration: u64,

    /// Address of the Prometheus /metrics endpoint, as [HOST]:PORT; "0" turns it off. HTTPS unless
    /// --metrics-secure=false.
    #[arg(
        long = "metrics-addr",
        visible_alias = "metrics-bind-address",
        env = "METRICS_BIND_ADDRESS",
        default_value = ":8443"
    )]
    pub metrics_addr: String,

    /// Address of the /healthz and /readyz endpoints, as [HOST]:PORT; "0" turns them off.
    #[arg(long, env = "HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    pub health_probe_bind_address: String,

    /// Watch EtcdClusters in this namespace only. Defaults to all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, as a level (info, debug) or tracing directives (etcd_op=debug,kube=info).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Seconds a member may stay unhealthy before it is removed and replaced by a fresh member.
    #[arg(long, env = "MEMBER_UNHEALTHY_THRESHOLD", default_value_t = 300, value_name = "SECONDS")]
    pub member_unhealthy_threshold: u64,

    /// The image restore pods fetch snapshots with: this manager's own image, read from its pod when unset.
    #[arg(long, env = "RESTORE_IMAGE", value_name = "IMAGE")]
    pub restore_image: Option<String>,

    /// Clusters reconciled at once.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 4)]
    pub max_concurrent_reconciles: u16,

    /// Serve /metrics over HTTPS to authorized readers only (a bearer token that TokenReview accepts, for a
    /// user allowed `get` on /metrics). `--metrics-secure=false` serves plain HTTP to anyone.
    #[arg(long, env = "METRICS_SECURE", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub metrics_secure: bool,

    /// Folder with tls.crt and tls.key for /metrics (cert-manager's Secret, mounted); without it the
    /// manager makes a self-signed certificate at start.
    #[arg(long, env = "METRICS_CERT_DIR", value_name = "DIR")]
    pub metrics_cert_dir: Option<PathBuf>,

    /// Address of the validating admission webhook (HTTPS), as [HOST]:PORT; "0" turns it off.
    #[arg(long, env = "WEBHOOK_BIND_ADDRESS", default_value = ":9443")]
    pub webhook_bind_address: String,

    /// Folder with tls.crt and tls.key for the webhook (cert-manager's Secret, mounted), read again when they
    /// change. Without it the manager keeps its own certificate in the Secret --webhook-secret-name and writes
    /// its authority into the webhook configuration.
    #[arg(long, env = "WEBHOOK_CERT_DIR", value_name = "DIR")]
    pub webhook_cert_dir: Option<PathBuf>,

    /// The Service the API server reaches the webhook through, in the manager's namespace: the serving
    /// certificate names it.
    #[arg(long, env = "WEBHOOK_SERVICE_NAME", default_value = "etcd-op-webhook-service", value_name = "NAME")]
    pub webhook_service_name: String,

    /// The ValidatingWebhookConfiguration whose trust bundle the manager writes (without --webhook-cert-dir).
    #[arg(
        long,
        env = "WEBHOOK_CONFIGURATION_NAME",
        default_value = "etcd-op-validating-webhook-configuration",
        value_name = "NAME"
    )]
    pub webhook_configuration_name: String,

    /// The Secret, in the manager's namespace, holding the webhook's own authority and certificate (without
    /// --webhook-cert-dir).
    #[arg(long, env = "WEBHOOK_SECRET_NAME", default_value = "etcd-op-webhook-server-cert", value_name = "NAME")]
    pub webhook_secret_name: String,

    /// DNS domain of the Kubernetes cluster, named in the members' certificates: etcd checks a peer's
    /// certificate against the name its address resolves to, which ends in this domain.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
}

impl ManagerArgs {
    pub fn unhealthy_threshold(&self) -> Duration {
        Duration::from_secs(self.member_unhealthy_threshold)
    }
}

/// Parses `[HOST]:PORT` as controller-runtime does: an empty host means every address; "0" means off.
pub fn parse_bind_address(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "0" {
        return Ok(None);
    }
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_string() };
    full.parse().map(Some).map_err(|e| format!("{text:?} is not [HOST]:PORT: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn bind_addresses_follow_controller_runtime() -> TestResult {
        assert_eq!(parse_bind_address(":8080"), Ok(Some("0.0.0.0:8080".parse()?)));
        assert_eq!(parse_bind_address("127.0.0.1:9"), Ok(Some("127.0.0.1:9".parse()?)));
        assert_eq!(parse_bind_address("0"), Ok(None));
        assert!(parse_bind_address("nonsense").is_err());
        Ok(())
    }

    #[test]
    fn aliases_match_kubebuilder_flags() -> TestResult {
        let cli = Cli::try_parse_from(["etcd-op", "--leader-elect", "--metrics-bind-address", ":9090"])?;
        assert!(cli.manager.leader_elect);
        assert_eq!(cli.manager.metrics_addr, ":9090");
        let cli = Cli::try_parse_from(["etcd-op", "--enable-leader-election", "--metrics-addr", "0"])?;
        assert!(cli.manager.leader_elect);
        assert_eq!(cli.manager.metrics_addr, "0");
        Ok(())
    }
}
