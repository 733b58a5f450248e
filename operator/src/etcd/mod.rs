//! Every call the operator makes to etcd, behind one small interface. Each call opens a connection to one
//! member's client URL with a deadline, so a dead member costs a bounded wait and never a hang.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Certificate, Client, CompactionOptions, ConnectOptions, GetOptions, Identity,
    Member, MemberAddOptions, TlsOptions,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use crate::controller::model::Alarm;

/// The key etcd's own health check reads; a count-only read of it returns no data.
const LINEARIZABLE_PROBE_KEY: &str = "health";
/// How long a snapshot stream may send nothing before it counts as broken: etcd sends a chunk as soon as it
/// has read one from its database file.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(30);

/// How long a defragmentation or a compaction may take: each rewrites or walks the whole database file.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(300);
/// etcd's words when the history is already compacted up to (or past) the revision asked for.
const ALREADY_COMPACTED: &str = "required revision has been compacted";
/// A snapshot as etcd streams it: the database file, then its sha256.
pub type SnapshotStream = BoxStream<'static, Result<bytes::Bytes, EtcdError>>;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("etcd at {endpoint}: {source}")]
    Call { endpoint: String, source: etcd_client::Error },
    #[error("etcd at {endpoint} returned no response header")]
    NoHeader { endpoint: String },
}

/// What one member says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader_id: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub db_size: i64,
    /// The part of the database file in use; the rest is free pages a defragmentation gives back.
    pub db_size_in_use: i64,
    /// The store's revision as this member has applied it.
    pub revision: i64,
    pub version: String,
    pub is_learner: bool,
    pub errors: Vec<String>,
}

/// One entry of etcd's member list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty for a member that was added but has not started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// The etcd calls the controller makes, each to the member at `endpoint`. [`Etcd`] makes them over the
/// network; tests of the controller's I/O stages substitute a scripted fake.
pub trait EtcdApi: Send + Sync {
    fn status<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<EndpointStatus, EtcdError>>;
    fn member_list<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<MemberInfo>, EtcdError>>;
    fn member_list_linearizable<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<MemberInfo>, EtcdError>>;
    fn add_learner<'a>(&'a self, endpoint: &'a str, peer_url: &'a str) -> BoxFuture<'a, Result<u64, EtcdError>>;
    fn promote<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<(), EtcdError>>;
    fn remove<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<(), EtcdError>>;
    fn alarms<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<(u64, Alarm)>, EtcdError>>;
    fn move_leader<'a>(&'a self, leader_endpoint: &'a str, to: u64) -> BoxFuture<'a, Result<(), EtcdError>>;
    fn update_peer_url<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        peer_url: &'a str,
    ) -> BoxFuture<'a, Result<(), EtcdError>>;
    /// The member's current revision, read from the member alone (serializable): everything it has applied.
    fn revision<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<i64, EtcdError>>;
    /// Writes `key`; returns the revision of the write.
    fn put<'a>(&'a self, endpoint: &'a str, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<i64, EtcdError>>;
    /// The value of `key`, read from the member alone; `None` when there is none.
    fn get<'a>(&'a self, endpoint: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<String>, EtcdError>>;
    /// A snapshot of the member's database, streamed as etcd sends it.
    fn snapshot<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<SnapshotStream, EtcdError>>;
    /// Rewrites the member's database file without its free pages; the member serves no request meanwhile.
    fn defragment<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<(), EtcdError>>;
    /// Compacts the history up to `revision`, waiting until the member at `endpoint` has removed it from its
    /// database. A history already compacted that far counts as done.
    fn compact<'a>(&'a self, endpoint: &'a str, revision: i64) -> BoxFuture<'a, Result<(), EtcdError>>;
    /// Disarms every NOSPACE alarm; returns the IDs of the members whose alarm was disarmed.
    fn disarm_no_space<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<u64>, EtcdError>>;
    /// The same calls, to the members of a cluster whose client port speaks mutual TLS.
    fn with_tls(&self, tls: &ClientTls) -> Arc<dyn EtcdApi>;
}

/// Mutual TLS towards one cluster's members: the authority that signed their serving certificates, the name
/// every one of those certificates carries, and the operator's own client certificate. No secret in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub server_name: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl ClientTls {
    fn options(&self) -> TlsOptions {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(self.server_name.clone())
    }
}

impl EtcdApi for Etcd {
    fn status<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<EndpointStatus, EtcdError>> {
        Box::pin(Etcd::status(self, endpoint))
    }
    fn member_list<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<MemberInfo>, EtcdError>> {
        Box::pin(Etcd::member_list(self, endpoint))
    }
    fn member_list_linearizable<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<MemberInfo>, EtcdError>> {
        Box::pin(Etcd::member_list_linearizable(self, endpoint))
    }
    fn add_learner<'a>(&'a self, endpoint: &'a str, peer_url: &'a str) -> BoxFuture<'a, Result<u64, EtcdError>> {
        Box::pin(Etcd::add_learner(self, endpoint, peer_url))
    }
    fn promote<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<(), EtcdError>> {
        Box::pin(Etcd::promote(self, endpoint, id))
    }
    fn remove<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<(), EtcdError>> {
        Box::pin(Etcd::remove(self, endpoint, id))
    }
    fn alarms<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<(u64, Alarm)>, EtcdError>> {
        Box::pin(Etcd::alarms(self, endpoint))
    }
    fn move_leader<'a>(&'a self, leader_endpoint: &'a str, to: u64) -> BoxFuture<'a, Result<(), EtcdError>> {
        Box::pin(Etcd::move_leader(self, leader_endpoint, to))
    }
    fn update_peer_url<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        peer_url: &'a str,
    ) -> BoxFuture<'a, Result<(), EtcdError>> {
        Box::pin(Etcd::update_peer_url(self, endpoint, id, peer_url))
    }
    fn revision<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<i64, EtcdError>> {
        Box::pin(Etcd::revision(self, endpoint))
    }
    fn snapshot<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<SnapshotStream, EtcdError>> {
        Box::pin(Etcd::snapshot(self, endpoint))
    }
    fn defragment<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<(), EtcdError>> {
        Box::pin(Etcd::defragment(self, endpoint))
    }
    fn compact<'a>(&'a self, endpoint: &'a str, revision: i64) -> BoxFuture<'a, Result<(), EtcdError>> {
        Box::pin(Etcd::compact(self, endpoint, revision))
    }
    fn disarm_no_space<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<u64>, EtcdError>> {
        Box::pin(Etcd::disarm_no_space(self, endpoint))
    }
    fn put<'a>(&'a self, endpoint: &'a str, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<i64, EtcdError>> {
        Box::pin(async move {
            let response = self.call(endpoint, |mut c| async move { c.put(key, value, None).await }).await?;
            let header = response.header().ok_or_else(|| EtcdError::NoHeader { endpoint: endpoint.to_string() })?;
            Ok(header.revision())
        })
    }
    fn get<'a>(&'a self, endpoint: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<String>, EtcdError>> {
        Box::pin(async move {
            let options = GetOptions::new().with_serializable();
            let response = self.call(endpoint, |mut c| async move { c.get(key, Some(options)).await }).await?;
            Ok(response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
        })
    }
    fn with_tls(&self, tls: &ClientTls) -> Arc<dyn EtcdApi> {
        Arc::new(Etcd { timeout: self.timeout, tls: Some(tls.options()) })
    }
}

#[derive(Clone, Debug)]
pub struct Etcd {
    timeout: Duration,
    tls: Option<TlsOptions>,
}

impl Default for Etcd {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(3), tls: None }
    }
}

impl Etcd {
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { timeout, tls: None }
    }

    fn connect_options(&self, endpoint: &str) -> ConnectOptions {
        let options = ConnectOptions::new().with_connect_timeout(self.timeout).with_timeout(self.timeout);
        // A member that still serves plaintext (TLS being turned on) is asked in plaintext: the client refuses
        // TLS options for an http URL.
        match self.tls.as_ref().filter(|_| endpoint.starts_with("https://")) {
            Some(tls) => options.with_tls(tls.clone()),
            None => options,
        }
    }

    async fn call<T, F, Fut>(&self, endpoint: &str, op: F) -> Result<T, EtcdError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let options = self.connect_options(endpoint);
        let work = async {
            let client = Client::connect([endpoint], Some(options)).await?;
            op(client).await
        };
        match tokio::time::timeout(self.timeout * 2, work).await {
            Err(_) => Err(EtcdError::Timeout { endpoint: endpoint.to_string(), timeout: self.timeout }),
            Ok(result) => result.map_err(|source| EtcdError::Call { endpoint: endpoint.to_string(), source }),
        }
    }

    pub async fn status(&self, endpoint: &str) -> Result<EndpointStatus, EtcdError> {
        let response = self.call(endpoint, |mut c| async move { c.status().await }).await?;
        let header = response.header().ok_or_else(|| EtcdError::NoHeader { endpoint: endpoint.to_string() })?;
        Ok(EndpointStatus {
            member_id: header.member_id(),
            cluster_id: header.cluster_id(),
            leader_id: response.leader(),
            raft_term: response.raft_term(),
            raft_index: response.raft_index(),
            raft_applied_index: response.raft_applied_index(),
            db_size: response.db_size(),
            db_size_in_use: response.raft_used_db_size(),
            revision: header.revision(),
            version: response.version().to_string(),
            is_learner: response.is_learner(),
            errors: response.errors().to_vec(),
        })
    }

    /// The member list as this member sees it: a follower's view may lag behind a change.
    pub async fn member_list(&self, endpoint: &str) -> Result<Vec<MemberInfo>, EtcdError> {
        let response = self.call(endpoint, |mut c| async move { c.member_list().await }).await?;
        Ok(member_infos(response.members()))
    }

    /// The member list of a member that has caught up with the leader: a linearizable read first (etcd serves
    /// it only through a leader, after the member has applied everything committed before it), then the list,
    /// on the same connection. Membership changes are raft entries, so the list includes every change
    /// committed before the read. This is what etcd's own linearizable member list does; the client library
    /// does not expose that flag.
    pub async fn member_list_linearizable(&self, endpoint: &str) -> Result<Vec<MemberInfo>, EtcdError> {
        let response = self
            .call(endpoint, |mut c| async move {
                c.get(LINEARIZABLE_PROBE_KEY, Some(GetOptions::new().with_count_only())).await?;
                c.member_list().await
            })
            .await?;
        Ok(member_infos(response.members()))
    }

    /// Adds a learner with the given peer URL and returns its member ID.
    pub async fn add_learner(&self, endpoint: &str, peer_url: &str) -> Result<u64, EtcdError> {
        let urls = [peer_url.to_string()];
        let response =
            self.call(endpoint, |mut c| async move {
                c.member_add(urls, Some(MemberAddOptions::new().with_is_learner())).await
            })
            .await?;
        response.member().map(|m| m.id()).ok_or_else(|| EtcdError::NoHeader { endpoint: endpoint.to_string() })
    }

    pub async fn promote(&self, endpoint: &str, id: u64) -> Result<(), EtcdError> {
        self.call(endpoint, |mut c| async move { c.member_promote(id).await }).await.map(drop)
    }

    pub async fn remove(&self, endpoint: &str, id: u64) -> Result<(), EtcdError> {
        self.call(endpoint, |mut c| async move { c.member_remove(id).await }).await.map(drop)
    }

    /// The alarms raised in the cluster, by member ID.
    pub async fn alarms(&self, endpoint: &str) -> Result<Vec<(u64, Alarm)>, EtcdError> {
        let response =
            self.call(endpoint, |mut c| async move { c.alarm(AlarmAction::Get, AlarmType::None, None).await }).await?;
        Ok(response
            .alarms()
            .iter()
            .filter_map(|a| {
                let alarm = match a.alarm() {
                    AlarmType::Nospace => Alarm::NoSpace,
                    AlarmType::Corrupt => Alarm::Corrupt,
                    AlarmType::None => return None,
                };
                Some((a.member_id(), alarm))
            })
            .collect())
    }

    /// Sets member `id`'s peer URL: its peers dial it there from now on.
    pub async fn update_peer_url(&self, endpoint: &str, id: u64, peer_url: &str) -> Result<(), EtcdError> {
        let urls = vec![peer_url.to_string()];
        self.call(endpoint, |mut c| async move { c.member_update(id, urls).await }).await.map(drop)
    }

    pub async fn revision(&self, endpoint: &str) -> Result<i64, EtcdError> {
        let options = GetOptions::new().with_count_only().with_serializable();
        let response =
            self.call(endpoint, |mut c| async move { c.get(LINEARIZABLE_PROBE_KEY, Some(options)).await }).await?;
        let header = response.header().ok_or_else(|| EtcdError::NoHeader { endpoint: endpoint.to_string() })?;
        Ok(header.revision())
    }

    /// Opens the member's snapshot stream. The connection and the start are bounded by the usual deadline,
    /// each chunk after that by [`SNAPSHOT_IDLE`]: a large database takes as long as it takes, a stalled
    /// stream ends in an error.
    pub async fn snapshot(&self, endpoint: &str) -> Result<SnapshotStream, EtcdError> {
        let options = self.connect_options(endpoint);
        let open = async {
            let mut client = Client::connect([endpoint], Some(options)).await?;
            let stream = client.snapshot().await?;
            Ok::<_, etcd_client::Error>((client, stream))
        };
        let endpoint = endpoint.to_string();
        let (client, stream) = match tokio::time::timeout(self.timeout * 2, open).await {
            Err(_) => return Err(EtcdError::Timeout { endpoint, timeout: self.timeout }),
            Ok(result) => result.map_err(|source| EtcdError::Call { endpoint: endpoint.clone(), source })?,
        };
        // The client travels with the stream: its connection carries it.
        let chunks =
            futures::stream::try_unfold((client, stream, endpoint), |(client, mut stream, endpoint)| async move {
                let message = match tokio::time::timeout(SNAPSHOT_IDLE, stream.message()).await {
                    Err(_) => return Err(EtcdError::Timeout { endpoint, timeout: SNAPSHOT_IDLE }),
                    Ok(message) => message.map_err(|source| EtcdError::Call { endpoint: endpoint.clone(), source })?,
                };
                Ok(message.map(|m| (bytes::Bytes::copy_from_slice(m.blob()), (client, stream, endpoint))))
            });
        Ok(Box::pin(chunks))
    }

    /// Defragments the member at `endpoint`. It rewrites the whole file, so it is bounded by
    /// [`MAINTENANCE_TIMEOUT`] rather than the usual deadline.
    pub async fn defragment(&self, endpoint: &str) -> Result<(), EtcdError> {
        self.with_maintenance_deadline().call(endpoint, |mut c| async move { c.defragment().await }).await.map(drop)
    }

    pub async fn compact(&self, endpoint: &str, revision: i64) -> Result<(), EtcdError> {
        let done =
            self.with_maintenance_deadline()
                .call(endpoint, |mut c| async move {
                    c.compact(revision, Some(CompactionOptions::new().with_physical())).await
                })
                .await;
        match done {
            Err(EtcdError::Call { source, .. }) if source.to_string().contains(ALREADY_COMPACTED) => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn disarm_no_space(&self, endpoint: &str) -> Result<Vec<u64>, EtcdError> {
        let raised = self.alarms(endpoint).await?;
        let mut disarmed = Vec::new();
        for (id, _) in raised.into_iter().filter(|(_, alarm)| *alarm == Alarm::NoSpace) {
            let mut options = AlarmOptions::new();
            options.with_member(id);
            self.call(endpoint, |mut c| async move {
                c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options)).await
            })
            .await?;
            disarmed.push(id);
        }
        Ok(disarmed)
    }

    fn with_maintenance_deadline(&self) -> Self {
        Self { timeout: MAINTENANCE_TIMEOUT, tls: self.tls.clone() }
    }

    /// Asks the leader at `leader_endpoint` to hand leadership to member `to`.
    pub async fn move_leader(&self, leader_endpoint: &str, to: u64) -> Result<(), EtcdError> {
        self.call(leader_endpoint, |mut c| async move { c.move_leader(to).await }).await.map(drop)
    }
}

fn member_infos(members: &[Member]) -> Vec<MemberInfo> {
    members
        .iter()
        .map(|m| MemberInfo {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        })
        .collect()
}
