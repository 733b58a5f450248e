//! `kubectl etcd`: an EtcdCluster's state at a glance (members, leader, versions, database sizes, alarms,
//! conditions, the operator's next step), and defragmentations and snapshots on demand. Installed on the
//! PATH as `kubectl-etcd`, kubectl runs it as `kubectl etcd`.

mod live;
mod report;
mod requests;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use etcd_op_api::v1::{EtcdBackup, EtcdCluster};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Parser, Debug)]
#[command(name = "kubectl etcd", version, about = "Look at and maintain EtcdClusters run by etcd-op")]
struct Cli {
    /// The namespace; the kubeconfig context's when unset.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig file; $KUBECONFIG or ~/.kube/config when unset.
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Output: a table, or the same figures as JSON or YAML.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster: phase, members with their database sizes and alarms, conditions, the next step.
    Status { cluster: String },
    /// The members only.
    Members { cluster: String },
    /// Asks the operator to defragment every member (followers first, the leader last) or one.
    Defrag {
        cluster: String,
        member: Option<String>,
        /// Wait until it is done, at most this many seconds (0: do not wait).
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
    /// Takes a snapshot now: an EtcdBackup to the cluster's spec.backupStore.
    Snapshot {
        cluster: String,
        /// The EtcdBackup's name; `<cluster>-snapshot-<unix time>` when unset.
        #[arg(long)]
        name: Option<String>,
        /// Wait until it is stored, at most this many seconds (0: do not wait).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    // One crypto provider for every TLS connection (the API server, etcd); installed once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions { context: cli.context.clone(), ..KubeConfigOptions::default() };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None => Config::infer().await?,
    };
    let namespace = cli.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("a client for the API server")?;
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &namespace);
    match cli.command {
        Command::Status { cluster } => show(&client, &clusters, &cluster, cli.output, report::status_text).await,
        Command::Members { cluster } => show(&client, &clusters, &cluster, cli.output, report::members_table).await,
        Command::Defrag { cluster, member, wait } => {
            let asked = requests::request_defragmentation(&clusters, &cluster, member.as_deref()).await?;
            let which = member.as_deref().map_or_else(|| "every member".to_string(), |m| format!("member {m}"));
            println!("asked the operator to defragment {which} of {cluster} (etcd.cloud.io/defragment={asked})");
            if wait > 0 {
                let ec = requests::wait_for_defragmentation(
                    &clusters,
                    &cluster,
                    member.as_deref(),
                    asked,
                    Duration::from_secs(wait),
                )
                .await?;
                print(&report::report(&ec, &[]), cli.output, report::members_table)?;
            }
            Ok(())
        }
        Command::Snapshot { cluster, name, wait } => {
            let backups: Api<EtcdBackup> = Api::namespaced(client.clone(), &namespace);
            let name = name.unwrap_or_else(|| format!("{cluster}-snapshot-{}", Timestamp::now().as_second()));
            requests::request_snapshot(&clusters, &backups, &cluster, &name).await?;
            println!("created EtcdBackup {name} of {cluster}");
            if wait > 0 {
                let backup = requests::wait_for_snapshot(&backups, &name, Duration::from_secs(wait)).await?;
                let status = backup.status.unwrap_or_default();
                match cli.output {
                    Output::Table => println!(
                        "stored at {} ({}, revision {})",
                        status.location.unwrap_or_default(),
                        status.size.unwrap_or_default(),
                        status.revision.unwrap_or_default()
                    ),
                    Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                    Output::Yaml => print!("{}", serde_saphyr::to_string(&status)?),
                }
            }
            Ok(())
        }
    }
}

async fn show(
    client: &Client,
    clusters: &Api<EtcdCluster>,
    cluster: &str,
    output: Output,
    table: fn(&report::ClusterReport) -> String,
) -> Result<()> {
    let ec = clusters.get(cluster).await.with_context(|| format!("reading EtcdCluster {cluster}"))?;
    let live = live::figures(client, &ec).await;
    print(&report::report(&ec, &live), output, table)
}

fn print(report: &report::ClusterReport, output: Output, table: fn(&report::ClusterReport) -> String) -> Result<()> {
    match output {
        Output::Table => print!("{}", table(report)),
        Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(report)?),
    }
    Ok(())
}
