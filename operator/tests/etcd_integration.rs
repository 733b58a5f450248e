//! The etcd interface against real etcd processes on loopback: learner add, promote, remove, leader move,
//! status, and what a stopped member looks like. Needs ETCD_BIN (the Makefile's test-integration sets it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_op::etcd::{Alarm, ClientTls, Etcd, EtcdApi};
use etcd_op::pki::{self, KeyedCertificate, LeafRequest, Usage};

struct Member {
    name: String,
    client: String,
    peer: String,
    child: Option<Child>,
    data: PathBuf,
}

impl Member {
    fn new(name: &str, root: &std::path::Path) -> Self {
        Self {
            name: name.to_string(),
            client: format!("http://127.0.0.1:{}", free_port()),
            peer: format!("http://127.0.0.1:{}", free_port()),
            child: None,
            data: root.join(name),
        }
    }

    fn start(&mut self, initial_cluster: &str, state: &str) {
        self.start_with(initial_cluster, state, &[]);
    }

    fn start_with(&mut self, initial_cluster: &str, state: &str, extra: &[&str]) {
        let log = std::fs::File::create(self.data.with_extension("log")).expect("log file");
        let child = Command::new(etcd_bin())
            .args([
                format!("--name={}", self.name),
                format!("--data-dir={}", self.data.display()),
                format!("--listen-client-urls={}", self.client),
                format!("--advertise-client-urls={}", self.client),
                format!("--listen-peer-urls={}", self.peer),
                format!("--initial-advertise-peer-urls={}", self.peer),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-state={state}"),
                "--initial-cluster-token=etcd-op-integration".to_string(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts (set ETCD_BIN)");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn entry(&self) -> String {
        format!("{}={}", self.name, self.peer)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

fn etcd_bin() -> PathBuf {
    PathBuf::from(std::env::var("ETCD_BIN").expect("ETCD_BIN names the etcd binary"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A test's own directory under the temporary one, removed when the test ends, passed or failed: each run
/// writes hundreds of MiB of etcd data there, and the disk is shared with the local cluster's nodes.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Declared before the members that live in it, so that they are stopped before it is removed.
fn scratch_dir(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("etcd-op-it-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    Scratch(dir)
}

/// Polls `check` every 200 ms until it returns Some, for at most `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const WAIT: Duration = Duration::from_secs(30);

/// Waits until `member` leads, and returns its status.
async fn leading_status(etcd: &Etcd, member: &Member) -> etcd_op::etcd::EndpointStatus {
    eventually(&format!("member {} to lead", member.name), WAIT, || async {
        etcd.status(&member.client).await.ok().filter(|s| s.leader_id == s.member_id && s.leader_id != 0)
    })
    .await
}

#[tokio::test]
#[ignore = "needs real etcd processes: `make test-integration` builds etcd and sets ETCD_BIN"]
async fn integration_membership_lifecycle() {
    let root = scratch_dir("lifecycle");
    let etcd = Etcd::default();
    let mut a = Member::new("a", &root);
    let mut b = Member::new("b", &root);
    let mut c = Member::new("c", &root);

    a.start(&a.entry(), "new");
    let first = leading_status(&etcd, &a).await;
    assert!(!first.is_learner);
    assert!(!first.version.is_empty());

    // Grow by learners: add, start, promote once caught up.
    for joining in [&mut b, &mut c] {
        // etcd refuses membership changes until its cluster has been healthy for a few seconds.
        let id = eventually("the learner to be added", WAIT, || async {
            etcd.add_learner(&a.client, &joining.peer).await.ok()
        })
        .await;
        let listed = etcd.member_list(&a.client).await.expect("member list");
        let entry = listed.iter().find(|m| m.id == id).expect("the learner is listed");
        assert!(entry.is_learner, "added as a learner");
        assert!(entry.name.is_empty(), "a member that has not started has no name yet");
        let mut cluster: Vec<String> =
            listed.iter().filter(|m| !m.name.is_empty()).map(|m| format!("{}={}", m.name, m.peer_urls[0])).collect();
        cluster.push(joining.entry());
        joining.start(&cluster.join(","), "existing");
        eventually("the learner to be promotable", WAIT, || async { etcd.promote(&a.client, id).await.ok() }).await;
        // The promotion is committed through the leader; the member says so once it applied it.
        let status = eventually("the promoted member to report itself a voter", WAIT, || async {
            etcd.status(&joining.client).await.ok().filter(|s| !s.is_learner)
        })
        .await;
        assert_eq!(status.cluster_id, first.cluster_id, "same cluster");
    }
    let members = etcd.member_list(&a.client).await.expect("member list");
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| !m.is_learner && !m.name.is_empty()));

    // Move leadership to c and see every member agree.
    let c_id = etcd.status(&c.client).await.expect("c answers").member_id;
    let leader = etcd.status(&a.client).await.expect("a answers");
    let mut leader_endpoint = None;
    for m in [&a, &b, &c] {
        if etcd.status(&m.client).await.is_ok_and(|s| s.member_id == leader.leader_id) {
            leader_endpoint = Some(m.client.clone());
        }
    }
    let leader_endpoint = leader_endpoint.expect("the leader is one of ours");
    etcd.move_leader(&leader_endpoint, c_id).await.expect("leadership moved");
    for m in [&a, &b, &c] {
        eventually("every member to see c lead", WAIT, || async {
            etcd.status(&m.client).await.ok().filter(|s| s.leader_id == c_id)
        })
        .await;
    }

    // A stopped member: its status fails within the deadline, the leader still lists it.
    b.stop();
    let started = Instant::now();
    assert!(etcd.status(&b.client).await.is_err(), "a stopped member does not answer");
    assert!(started.elapsed() < Duration::from_secs(10), "a dead member costs a bounded wait");
    let listed = etcd.member_list(&c.client).await.expect("the leader lists members");
    let b_entry = listed.iter().find(|m| m.name == "b").expect("b is still a member").clone();
    let healthy = etcd.status(&a.client).await.expect("a answers");
    assert_eq!(healthy.leader_id, c_id, "two of three keep quorum and the leader");
    // A follower's linearizable list goes through the leader: current, the stopped member included.
    let through_a = etcd.member_list_linearizable(&a.client).await.expect("a's linearizable member list");
    assert_eq!(through_a.len(), 3);

    // Remove the stopped member; the cluster goes on with two.
    etcd.remove(&c.client, b_entry.id).await.expect("b removed");
    let listed = etcd.member_list(&c.client).await.expect("member list");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|m| m.name != "b"));
    let through_a = eventually("a's linearizable list to show the removal", WAIT, || async {
        etcd.member_list_linearizable(&a.client).await.ok().filter(|l| l.len() == 2)
    })
    .await;
    assert!(through_a.iter().all(|m| m.name != "b"));

    // Without quorum nobody leads: a linearizable list fails within its deadline, the member's own view
    // still answers.
    a.stop();
    eventually("c to lose its leader", WAIT, || async {
        etcd.status(&c.client).await.ok().filter(|s| s.leader_id == 0)
    })
    .await;
    let started = Instant::now();
    assert!(etcd.member_list_linearizable(&c.client).await.is_err(), "no linearizable read without a leader");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(etcd.member_list(&c.client).await.expect("c's own view").len(), 2);
}

#[tokio::test]
#[ignore = "needs real etcd processes: `make test-integration` builds etcd and sets ETCD_BIN"]
async fn integration_unreachable_endpoint_is_an_error_not_a_hang() {
    let etcd = Etcd::default();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    assert!(etcd.status(&endpoint).await.is_err());
    assert!(etcd.member_list(&endpoint).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
#[ignore = "needs real etcd processes: `make test-integration` builds etcd and sets ETCD_BIN"]
async fn integration_nospace_is_read_as_an_alarm_and_recovered_by_compaction_defragmentation_and_disarm() {
    let root = scratch_dir("nospace");
    let etcd = Etcd::default();
    let mut a = Member::new("a", &root);
    a.start_with(&a.entry(), "new", &["--quota-backend-bytes=4194304"]);
    let status = leading_status(&etcd, &a).await;
    assert!(etcd.alarms(&a.client).await.expect("the alarm list").is_empty(), "no alarm on a fresh member");
    assert!(status.db_size_in_use > 0 && status.db_size_in_use <= status.db_size);

    // Fill the database past its 4 MiB quota: etcd raises NOSPACE and refuses the write.
    let mut client = etcd_client::Client::connect([a.client.as_str()], None).await.expect("a client");
    let value = vec![b'x'; 256 * 1024];
    let mut refused = false;
    for i in 0..64 {
        if client.put(format!("/fill/{i}"), value.clone(), None).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "etcd refuses writes past its quota");
    let alarms = etcd.alarms(&a.client).await.expect("the alarm list");
    assert_eq!(alarms, vec![(status.member_id, Alarm::NoSpace)]);
    let status = etcd.status(&a.client).await.expect("a answers");
    assert!(!status.errors.is_empty(), "the member reports the alarm among its errors: {:?}", status.errors);

    // What `noSpace: Recover` does, once a client deleted what it no longer needs (etcd takes deletes under
    // NOSPACE): compact to the current revision, defragment, disarm.
    client.delete("/fill/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("deletes go through");
    let full = etcd.status(&a.client).await.expect("a answers");
    etcd.compact(&a.client, full.revision).await.expect("compaction");
    etcd.compact(&a.client, full.revision).await.expect("a compaction already done counts as done");
    let compacted = etcd.status(&a.client).await.expect("a answers");
    assert!(
        compacted.db_size_in_use < full.db_size_in_use,
        "compaction frees pages: {} then {}",
        full.db_size_in_use,
        compacted.db_size_in_use
    );
    assert!(compacted.db_size >= 4 * 1024 * 1024, "the file keeps its size until defragmented: {}", compacted.db_size);
    etcd.defragment(&a.client).await.expect("defragmentation");
    let defragmented = etcd.status(&a.client).await.expect("a answers");
    assert!(
        defragmented.db_size < compacted.db_size / 2,
        "the file shrinks: {} then {}",
        compacted.db_size,
        defragmented.db_size
    );
    assert_eq!(etcd.disarm_no_space(&a.client).await.expect("disarm"), vec![status.member_id]);
    assert!(etcd.alarms(&a.client).await.expect("the alarm list").is_empty());
    client.put("/after", "written", None).await.expect("writes are taken again");
    assert_eq!(etcd.disarm_no_space(&a.client).await.expect("disarm"), Vec::<u64>::new(), "nothing left to disarm");
}

/// Writes a certificate and key where a member reads them, replacing the files at once (as the kubelet's
/// atomic Secret update does), so etcd never reads half a file.
fn install(dir: &std::path::Path, name: &str, certificate: &KeyedCertificate, authority: &KeyedCertificate) {
    std::fs::create_dir_all(dir).expect("certificate dir");
    for (file, text) in
        [("tls.crt", &certificate.cert_pem), ("tls.key", &certificate.key_pem), ("ca.crt", &authority.cert_pem)]
    {
        let staged = dir.join(format!(".{name}-{file}"));
        std::fs::write(&staged, text).expect("write certificate");
        std::fs::rename(&staged, dir.join(file)).expect("install certificate");
    }
}

/// The name this etcd knows the flag by: 3.5 only the experimental one, 3.7 only the new one (as the operator
/// chooses by version).
fn peer_san_flag() -> &'static str {
    let help = Command::new(etcd_bin()).arg("--help").output().expect("etcd --help runs");
    let text = String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
    if text.lines().any(|l| l.trim_start().starts_with("--peer-skip-client-san-verification")) {
        "peer-skip-client-san-verification"
    } else {
        "experimental-peer-skip-client-san-verification"
    }
}

fn tls_flags(peer: &std::path::Path, server: &std::path::Path) -> Vec<String> {
    vec![
        format!("--peer-cert-file={}/tls.crt", peer.display()),
        format!("--peer-key-file={}/tls.key", peer.display()),
        format!("--peer-trusted-ca-file={}/ca.crt", peer.display()),
        "--peer-client-cert-auth=true".into(),
        format!("--{}=true", peer_san_flag()),
        format!("--cert-file={}/tls.crt", server.display()),
        format!("--key-file={}/tls.key", server.display()),
        format!("--trusted-ca-file={}/ca.crt", server.display()),
        "--client-cert-auth=true".into(),
    ]
}

#[tokio::test]
#[ignore = "needs real etcd processes: `make test-integration` builds etcd and sets ETCD_BIN"]
async fn integration_mutual_tls_admits_only_the_clusters_clients_and_reloads_a_renewed_certificate() {
    let root = scratch_dir("tls");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    let hour = Duration::from_secs(3600);
    let names = pki::member_names("demo", "it", "cluster.local");
    let member = |names: &[String]| LeafRequest {
        common_name: "demo".into(),
        subject_alt_names: names.to_vec(),
        usage: Usage::ServerAndClient,
    };
    let client = |cn: &str| LeafRequest { common_name: cn.into(), subject_alt_names: vec![], usage: Usage::Client };
    let peer_ca = pki::new_authority("demo-peer-ca", now, pki::AUTHORITY_LIFETIME).expect("peer authority");
    let client_ca = pki::new_authority("demo-client-ca", now, pki::AUTHORITY_LIFETIME).expect("client authority");
    let peer_leaf = pki::issue(&peer_ca, &member(&names), now, hour).expect("peer certificate");
    // The first serving certificate lacks the name the operator checks: a connection that verifies it fails
    // until the renewed one is in place.
    let without_service: Vec<String> = names.iter().filter(|n| !n.starts_with("demo-client")).cloned().collect();
    let first_server = pki::issue(&client_ca, &member(&without_service), now, hour).expect("server certificate");
    let operator = pki::issue(&client_ca, &client("etcd-op"), now, hour).expect("operator certificate");
    let impostor = pki::issue(&peer_ca, &client("impostor"), now, hour).expect("a peer-authority client");

    let (peer_dir, server_dir) = (root.join("peer"), root.join("server"));
    install(&peer_dir, "peer", &peer_leaf, &peer_ca);
    install(&server_dir, "server", &first_server, &client_ca);
    let mut a = Member::new("a", &root);
    let mut b = Member::new("b", &root);
    for m in [&mut a, &mut b] {
        m.client = m.client.replace("http://", "https://");
        m.peer = m.peer.replace("http://", "https://");
    }
    let initial = format!("{},{}", a.entry(), b.entry());
    let flags = tls_flags(&peer_dir, &server_dir);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    a.start_with(&initial, "new", &flags);
    b.start_with(&initial, "new", &flags);

    let tls = |authority: &KeyedCertificate, identity: &KeyedCertificate| ClientTls {
        ca_pem: authority.cert_pem.clone(),
        cert_pem: identity.cert_pem.clone(),
        key_pem: identity.key_pem.clone(),
        server_name: pki::server_name("demo", "it"),
    };
    let as_operator = Etcd::with_timeout(Duration::from_secs(2)).with_tls(&tls(&client_ca, &operator));
    // Checked against a name the first certificate carries, the members answer: they formed over peer TLS.
    let by_loopback = Etcd::with_timeout(Duration::from_secs(2))
        .with_tls(&ClientTls { server_name: "localhost".into(), ..tls(&client_ca, &operator) });
    let status = eventually("the TLS members to elect a leader", WAIT, || async {
        by_loopback.status(&a.client).await.ok().filter(|s| s.leader_id != 0)
    })
    .await;
    assert_ne!(status.cluster_id, 0);
    let listed = by_loopback.member_list(&b.client).await.expect("member list over TLS");
    assert!(listed.iter().all(|m| m.peer_urls.iter().all(|u| u.starts_with("https://"))), "{listed:?}");

    assert!(as_operator.status(&a.client).await.is_err(), "the first certificate does not name the client Service");
    let plaintext = Etcd::with_timeout(Duration::from_secs(2));
    assert!(plaintext.status(&a.client).await.is_err(), "a client without TLS is refused");
    assert!(plaintext.status(&a.client.replace("https://", "http://")).await.is_err(), "plaintext is not served");
    let with_impostor = Etcd::with_timeout(Duration::from_secs(2))
        .with_tls(&ClientTls { server_name: "localhost".into(), ..tls(&client_ca, &impostor) });
    assert!(with_impostor.status(&a.client).await.is_err(), "a certificate of the peer authority is no client");

    // Renewed in place: the next connection gets the new certificate, and nothing restarted.
    let renewed = pki::issue(&client_ca, &member(&names), now, hour).expect("renewed certificate");
    install(&server_dir, "server", &renewed, &client_ca);
    let renewed_status = eventually("a connection checked against the client Service name", WAIT, || async {
        as_operator.status(&a.client).await.ok()
    })
    .await;
    assert_eq!(renewed_status.member_id, status.member_id);
    for m in [&mut a, &mut b] {
        let exited = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(exited.is_none(), "member {} kept running through the renewal: {exited:?}", m.name);
    }
}

/// s3proxy on loopback with a filesystem backend, as the test bed runs it; stopped when dropped.
struct S3Proxy {
    child: Child,
    endpoint: String,
    data: PathBuf,
}

impl S3Proxy {
    const BUCKET: &'static str = "backups";
    const ACCESS_KEY: &'static str = "integration";
    const SECRET_KEY: &'static str = "integration-secret";

    async fn start(root: &std::path::Path) -> Self {
        let jar = std::env::var("S3PROXY_JAR").expect("S3PROXY_JAR names s3proxy's jar (hack/build.sh s3proxy)");
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let data = root.join("s3");
        std::fs::create_dir_all(data.join(Self::BUCKET)).expect("bucket folder");
        let config = root.join("s3proxy.conf");
        std::fs::write(
            &config,
            format!(
                "s3proxy.endpoint={endpoint}\ns3proxy.authorization=aws-v2-or-v4\ns3proxy.identity={}\n\
                 s3proxy.credential={}\njclouds.provider=filesystem\njclouds.filesystem.basedir={}\n",
                Self::ACCESS_KEY,
                Self::SECRET_KEY,
                data.display()
            ),
        )
        .expect("s3proxy config");
        let log = std::fs::File::create(root.join("s3proxy.log")).expect("log file");
        let child = Command::new("java")
            .args(["-Xmx256m", "-jar", &jar, "--properties"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("java starts s3proxy");
        let proxy = Self { child, endpoint, data };
        let address = proxy.endpoint.trim_start_matches("http://").to_string();
        eventually("s3proxy to listen", Duration::from_secs(60), || async {
            tokio::net::TcpStream::connect(&address).await.ok()
        })
        .await;
        proxy
    }

    fn spec(&self) -> etcd_op_api::v1::S3Store {
        etcd_op_api::v1::S3Store {
            endpoint: Some(self.endpoint.clone()),
            bucket: Self::BUCKET.into(),
            prefix: Some("it".into()),
            region: None,
            credentials_secret: etcd_op_api::v1::SecretName { name: "unused".into() },
        }
    }

    /// Where the filesystem backend keeps object `key`.
    fn file_of(&self, key: &str) -> PathBuf {
        self.data.join(Self::BUCKET).join(key)
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[ignore = "needs etcd and s3proxy: `make test-integration` builds etcd, fetches s3proxy and sets ETCD_BIN and S3PROXY_JAR"]
async fn integration_a_snapshot_streams_to_an_s3_store_in_parts_and_reads_back_as_sent() {
    use etcd_op::store::{Credentials, Store};
    // The manager installs its crypto provider once at start; so does this test.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = scratch_dir("backup");
    let etcd = Etcd::default();
    let mut a = Member::new("a", &root);
    a.start(&a.entry(), "new");
    leading_status(&etcd, &a).await;
    let s3 = S3Proxy::start(&root).await;

    // Over 5 MiB of values, so the snapshot goes up in more than one part.
    let mut client = etcd_client::Client::connect([a.client.as_str()], None).await.expect("etcd client");
    let value = "v".repeat(4096);
    for i in 0..1600 {
        client.put(format!("key-{i:05}"), value.clone(), None).await.expect("put");
    }
    let revision = etcd.revision(&a.client).await.expect("revision");
    assert!(revision >= 1601, "the member's revision counts the writes: {revision}");

    let spec = s3.spec();
    let store = Store::s3(&spec, &Credentials::new(S3Proxy::ACCESS_KEY, S3Proxy::SECRET_KEY)).expect("store");
    let key = etcd_op_api::v1::BackupStore::s3(spec.clone()).key("a.db");
    let snapshot = etcd.snapshot(&a.client).await.expect("snapshot stream");
    let sent = store.upload(&key, snapshot).await.expect("upload");
    assert!(sent.database_intact, "the stream ends with the sha256 of the database before it");
    assert!(sent.size > 6 * 1024 * 1024, "more than one part: {} bytes", sent.size);
    let stored = store.digest(&key).await.expect("read back");
    assert_eq!(stored, sent, "the stored object is what was sent");
    let on_disk = std::fs::read(s3.file_of(&key)).expect("the object is a file of the store's backend");
    assert_eq!(on_disk.len() as u64, sent.size);

    // A wrong key pair is refused by the store.
    let wrong = Store::s3(&spec, &Credentials::new(S3Proxy::ACCESS_KEY, "wrong")).expect("store");
    assert!(wrong.digest(&key).await.is_err(), "the store checks signatures");

    // One flipped byte in the stored object: the read-back differs, and the database no longer matches the
    // hash etcd appended.
    let mut corrupted = on_disk;
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(s3.file_of(&key), &corrupted).expect("corrupt the object");
    let read = store.digest(&key).await.expect("read back");
    assert_ne!(read.sha256, sent.sha256);
    assert!(!read.database_intact);
}

#[tokio::test]
#[ignore = "needs real etcd processes: `make test-integration` builds etcd and sets ETCD_BIN"]
async fn integration_a_snapshot_streams_to_a_volume_store_and_reads_back_as_sent() {
    use etcd_op::store::{Store, volume_server};
    let root = scratch_dir("volume");
    let etcd = Etcd::default();
    let mut a = Member::new("a", &root);
    a.start(&a.entry(), "new");
    leading_status(&etcd, &a).await;
    let mut client = etcd_client::Client::connect([a.client.as_str()], None).await.expect("etcd client");
    for i in 0..400 {
        client.put(format!("key-{i:05}"), "v".repeat(4096), None).await.expect("put");
    }

    // The server a volume store's pod runs, on loopback, over a folder of the test's.
    let files = root.join("volume");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(volume_server::serve(listener, files.clone(), "the-token".into(), async {
        let _ = stopped.await;
    }));
    let store = Store::volume(&url, "backups", "the-token".into()).expect("store");

    let key = "ns/demo/20260101T000000Z-first.db";
    let snapshot = etcd.snapshot(&a.client).await.expect("snapshot stream");
    let sent = store.upload(key, snapshot).await.expect("upload");
    assert!(sent.database_intact, "the stream ends with the sha256 of the database before it");
    assert!(sent.size > 1024 * 1024, "{} bytes", sent.size);
    let on_disk = std::fs::read(files.join(key)).expect("the object is a file on the volume");
    assert_eq!(on_disk.len() as u64, sent.size);
    assert_eq!(store.digest(key).await.expect("read back"), sent, "the stored file is what was sent");
    let leftovers: Vec<_> = std::fs::read_dir(files.join("ns/demo"))
        .expect("the folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no partial file stays beside the object: {leftovers:?}");

    // A wrong token is refused; so is a key that would leave the folder.
    let wrong = Store::volume(&url, "backups", "not-the-token".into()).expect("store");
    let refused = wrong.digest(key).await.expect_err("a wrong token is refused");
    assert!(refused.to_string().contains("401"), "{refused}");
    let outside = store.digest("../outside.db").await.expect_err("a key outside the folder is refused");
    assert!(outside.to_string().contains("400") || outside.to_string().contains("404"), "{outside}");

    // An upload whose source breaks off leaves nothing under its key.
    let broken = futures::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![7u8; 256 * 1024])),
        Err("the member went away".to_string()),
    ]);
    assert!(store.upload("ns/demo/broken.db", broken).await.is_err(), "a broken source fails the upload");
    assert!(!files.join("ns/demo/broken.db").exists(), "nothing is stored under the key of a broken upload");

    // Deleting is idempotent; the object is gone after it.
    store.delete(key).await.expect("delete");
    store.delete(key).await.expect("deleting what is gone");
    assert!(!files.join(key).exists());
    let missing = store.digest(key).await.expect_err("a deleted object is not found");
    assert!(missing.to_string().contains("404"), "{missing}");

    let _ = stop.send(());
    server.await.expect("the server task").expect("the server stops cleanly");
}
