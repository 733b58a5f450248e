//! The I/O stages without a cluster: `read_membership` against a scripted etcd, and `act` against a scripted
//! etcd and an API server fixture that checks each request and answers it (in the way of kube-rs'
//! controller-rs). What they do against the real thing is the e2e suite's job; these pin down which calls a
//! step makes, in which order, and with what.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_op::controller::model::{
    Bootstrap, EtcdMember, EtcdView, InitialState, Member, MemberHealth, Observation, PodView, PvcView, Target,
    Transport, Version,
};
use etcd_op::controller::observe::read_membership;
use etcd_op::controller::plan::{Plan, Step, plan};
use etcd_op::controller::{Context, Error, Settings, act};
use etcd_op::etcd::{Alarm, ClientTls, EndpointStatus, EtcdApi, EtcdError, MemberInfo, SnapshotStream};
use etcd_op::metrics::Metrics;
use etcd_op_api::v1::EtcdCluster;
use futures::future::BoxFuture;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

const CLUSTER_ID: u64 = 0xc1;
const V36: Version = Version::new(3, 6, 16);

// ---------------------------------------------------------------------------------------------------------
// A scripted etcd

/// Answers status and member list from a script, records every call, and refuses membership changes when told.
#[derive(Default)]
struct FakeEtcd {
    /// Status answers by endpoint; an endpoint without one does not answer.
    statuses: BTreeMap<String, EndpointStatus>,
    members: Vec<MemberInfo>,
    /// The linearizable read fails (no leader can confirm it).
    linearizable_fails: bool,
    /// Membership changes are refused with this message.
    refusal: Option<String>,
    calls: Mutex<Vec<String>>,
}

impl FakeEtcd {
    fn record(&self, call: String) {
        self.calls.lock().expect("calls").push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }

    fn silent(endpoint: &str) -> EtcdError {
        EtcdError::Timeout { endpoint: endpoint.to_string(), timeout: Duration::from_secs(3) }
    }

    fn change<T: Send + 'static>(
        &self,
        endpoint: &str,
        call: String,
        value: T,
    ) -> BoxFuture<'static, Result<T, EtcdError>> {
        self.record(call);
        let result = match &self.refusal {
            Some(message) => Err(EtcdError::Call {
                endpoint: endpoint.to_string(),
                source: etcd_client::Error::InvalidArgs(message.clone()),
            }),
            None => Ok(value),
        };
        Box::pin(async move { result })
    }
}

impl EtcdApi for FakeEtcd {
    fn with_tls(&self, _tls: &ClientTls) -> Arc<dyn EtcdApi> {
        Arc::new(FakeEtcd {
            statuses: self.statuses.clone(),
            members: self.members.clone(),
            linearizable_fails: self.linearizable_fails,
            refusal: self.refusal.clone(),
            calls: Mutex::default(),
        })
    }
    fn status<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<EndpointStatus, EtcdError>> {
        self.record(format!("status {endpoint}"));
        Box::pin(async move { self.statuses.get(endpoint).cloned().ok_or_else(|| Self::silent(endpoint)) })
    }
    fn member_list<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<MemberInfo>, EtcdError>> {
        self.record(format!("member_list {endpoint}"));
        Box::pin(async move { Ok(self.members.clone()) })
    }
    fn member_list_linearizable<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<MemberInfo>, EtcdError>> {
        self.record(format!("member_list_linearizable {endpoint}"));
        let fails = self.linearizable_fails;
        Box::pin(async move { if fails { Err(Self::silent(endpoint)) } else { Ok(self.members.clone()) } })
    }
    fn add_learner<'a>(&'a self, endpoint: &'a str, peer_url: &'a str) -> BoxFuture<'a, Result<u64, EtcdError>> {
        self.change(endpoint, format!("add_learner {endpoint} {peer_url}"), 0x44)
    }
    fn promote<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<(), EtcdError>> {
        self.change(endpoint, format!("promote {endpoint} {id:x}"), ())
    }
    fn remove<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<(), EtcdError>> {
        self.change(endpoint, format!("remove {endpoint} {id:x}"), ())
    }
    fn alarms<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<(u64, Alarm)>, EtcdError>> {
        self.record(format!("alarms {endpoint}"));
        Box::pin(async { Ok(Vec::new()) })
    }
    fn move_leader<'a>(&'a self, leader_endpoint: &'a str, to: u64) -> BoxFuture<'a, Result<(), EtcdError>> {
        self.change(leader_endpoint, format!("move_leader {leader_endpoint} {to:x}"), ())
    }
    fn update_peer_url<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        peer_url: &'a str,
    ) -> BoxFuture<'a, Result<(), EtcdError>> {
        self.change(endpoint, format!("update_peer_url {endpoint} {id:x} {peer_url}"), ())
    }
    fn revision<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<i64, EtcdError>> {
        self.record(format!("revision {endpoint}"));
        Box::pin(async move {
            self.statuses.get(endpoint).map(|s| s.raft_index as i64).ok_or_else(|| Self::silent(endpoint))
        })
    }
    fn put<'a>(&'a self, endpoint: &'a str, key: &'a str, _value: &'a str) -> BoxFuture<'a, Result<i64, EtcdError>> {
        self.change(endpoint, format!("put {endpoint} {key}"), 1)
    }
    fn get<'a>(&'a self, endpoint: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<String>, EtcdError>> {
        self.record(format!("get {endpoint} {key}"));
        Box::pin(async { Ok(None) })
    }
    fn defragment<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<(), EtcdError>> {
        self.change(endpoint, format!("defragment {endpoint}"), ())
    }
    fn compact<'a>(&'a self, endpoint: &'a str, revision: i64) -> BoxFuture<'a, Result<(), EtcdError>> {
        self.change(endpoint, format!("compact {endpoint} {revision}"), ())
    }
    fn disarm_no_space<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<Vec<u64>, EtcdError>> {
        self.change(endpoint, format!("disarm_no_space {endpoint}"), Vec::new())
    }
    // The cluster's stages never take snapshots; the backup path is tested against real etcd.
    fn snapshot<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<SnapshotStream, EtcdError>> {
        self.record(format!("snapshot {endpoint}"));
        Box::pin(async move { Err(Self::silent(endpoint)) })
    }
}

fn status(member_id: u64, leader_id: u64, learner: bool) -> EndpointStatus {
    EndpointStatus {
        member_id,
        cluster_id: CLUSTER_ID,
        leader_id,
        raft_term: 2,
        raft_index: 100,
        raft_applied_index: 100,
        db_size: 1 << 20,
        db_size_in_use: 1 << 19,
        revision: 100,
        version: "3.6.16".into(),
        is_learner: learner,
        errors: Vec::new(),
    }
}

fn member_info(ordinal: u64) -> MemberInfo {
    MemberInfo {
        id: ordinal + 1,
        name: format!("demo-{ordinal}"),
        peer_urls: vec![format!("http://demo-{ordinal}.demo.ns.svc:2380")],
        client_urls: vec![format!("http://demo-{ordinal}.demo.ns.svc:2379")],
        is_learner: false,
    }
}

fn endpoint(ordinal: u64) -> String {
    format!("http://10.0.0.{ordinal}:2379")
}

/// Three members at their pod addresses; those `answering` give their status, naming `demo-0` (ID 1) as the
/// leader when `leader_known`.
fn three_members(answering: &[u64], leader_known: bool, learner: Option<u64>) -> (FakeEtcd, BTreeMap<String, String>) {
    let endpoints: BTreeMap<String, String> = (0..3).map(|i| (format!("demo-{i}"), endpoint(i))).collect();
    let statuses = answering
        .iter()
        .map(|&i| (endpoint(i), status(i + 1, if leader_known { 1 } else { 0 }, learner == Some(i))))
        .collect();
    let etcd = FakeEtcd { statuses, members: (0..3).map(member_info).collect(), ..FakeEtcd::default() };
    (etcd, endpoints)
}

async fn membership_seen(
    etcd: &FakeEtcd,
    endpoints: &BTreeMap<String, String>,
) -> etcd_op::controller::observe::Membership {
    let mut statuses = BTreeMap::new();
    for (name, url) in endpoints {
        if let Ok(answer) = etcd.status(url).await {
            statuses.insert(name.clone(), answer);
        }
    }
    match read_membership(etcd, endpoints, &statuses).await {
        Ok(membership) => membership,
        Err(error) => panic!("reading the membership failed: {error}"),
    }
}

#[tokio::test]
async fn the_member_list_comes_from_the_leader_through_a_linearizable_read() {
    let (etcd, endpoints) = three_members(&[0, 1, 2], true, None);
    let membership = membership_seen(&etcd, &endpoints).await;
    assert!(membership.current, "a list the leader confirmed is current");
    assert_eq!(membership.leader.as_deref(), Some("demo-0"));
    assert_eq!(membership.view, EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: Some(1) });
    assert_eq!(membership.members.len(), 3);
    assert!(etcd.calls().contains(&format!("member_list_linearizable {}", endpoint(0))), "{:?}", etcd.calls());
}

#[tokio::test]
async fn without_the_leader_a_follower_list_is_current_only_after_a_linearizable_read() {
    // The leader does not answer; a follower knows who leads and the linearizable read through it succeeds.
    let (etcd, endpoints) = three_members(&[1, 2], true, None);
    let membership = membership_seen(&etcd, &endpoints).await;
    assert!(membership.current);
    assert_eq!(membership.leader, None, "nobody answered as the leader");
    assert!(etcd.calls().contains(&format!("member_list_linearizable {}", endpoint(1))), "{:?}", etcd.calls());

    // The linearizable read fails: the follower's own view is used, marked as possibly stale.
    let (mut etcd, endpoints) = three_members(&[1, 2], true, None);
    etcd.linearizable_fails = true;
    let membership = membership_seen(&etcd, &endpoints).await;
    assert!(!membership.current, "a follower's own view may be stale");
    assert_eq!(membership.members.len(), 3);
    assert!(etcd.calls().contains(&format!("member_list {}", endpoint(1))), "{:?}", etcd.calls());
}

#[tokio::test]
async fn with_nobody_leading_no_linearizable_read_is_tried_and_the_list_is_not_current() {
    let (etcd, endpoints) = three_members(&[1, 2], false, None);
    let membership = membership_seen(&etcd, &endpoints).await;
    assert!(!membership.current);
    assert_eq!(membership.view, EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: None });
    assert!(!etcd.calls().iter().any(|c| c.starts_with("member_list_linearizable")), "{:?}", etcd.calls());
}

#[tokio::test]
async fn a_learner_alone_or_silence_is_unreachable() {
    let (etcd, endpoints) = three_members(&[2], true, Some(2));
    let membership = membership_seen(&etcd, &endpoints).await;
    assert_eq!(membership.view, EtcdView::Unreachable, "a learner's list is never the source");
    let (etcd, endpoints) = three_members(&[], true, None);
    assert_eq!(membership_seen(&etcd, &endpoints).await.view, EtcdView::Unreachable);
}

// ---------------------------------------------------------------------------------------------------------
// act, against the scripted etcd and an API server fixture

type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context(etcd: Arc<FakeEtcd>) -> (Context, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "ns");
    let recorder = Recorder::new(client.clone(), Reporter { controller: "etcd-op".into(), instance: None });
    let ctx = Context {
        client,
        recorder,
        metrics: Arc::new(Metrics::default()),
        etcd,
        config: Settings {
            unhealthy_threshold: Duration::from_secs(300),
            concurrency: 1,
            namespace: None,
            cluster_domain: "cluster.local".into(),
            operator_peer: None,
            operator_image: None,
        },
        refusals: Default::default(),
        last_words: Default::default(),
        access: Default::default(),
    };
    (ctx, handle)
}

fn cluster(size: i32) -> EtcdCluster {
    let spec = serde_json::from_value(json!({"size": size, "version": "3.6.16"}));
    let mut ec = EtcdCluster::new("demo", spec.unwrap_or_else(|e| panic!("spec: {e}")));
    ec.metadata.namespace = Some("ns".into());
    ec.metadata.uid = Some("uid-1".into());
    ec
}

fn observed_member(ordinal: u64) -> Member {
    let info = member_info(ordinal);
    Member {
        name: info.name.clone(),
        ordinal: u32::try_from(ordinal).unwrap_or(0),
        pod: Some(PodView {
            ready: true,
            version: Some(V36),
            endpoint: Some(endpoint(ordinal)),
            quota_bytes: 318 << 20,
            ..PodView::default()
        }),
        pvc: Some(PvcView { quota_bytes: Some(318 << 20), ..PvcView::default() }),
        etcd: Some(EtcdMember {
            id: info.id,
            learner: false,
            peer_urls: info.peer_urls,
            client_urls: info.client_urls,
            health: Some(MemberHealth {
                cluster_id: CLUSTER_ID,
                raft_applied_index: 100,
                version: Some(V36),
                ..MemberHealth::default()
            }),
        }),
        bootstrap: None,
        defragmented_secs_ago: None,
    }
}

fn observation(size: usize) -> Observation {
    Observation {
        cluster: "demo".into(),
        desired: Target { size, version: V36, template_hash: "t1".into() },
        committed: None,
        paused: false,
        formed: true,
        initial_members: Vec::new(),
        leftovers: Vec::new(),
        foreign_pods: Vec::new(),
        ephemeral_storage: false,
        start_empty_after_data_loss: false,
        members: (0..3).map(observed_member).collect(),
        etcd: EtcdView::Reachable { cluster_id: CLUSTER_ID, leader_id: Some(1) },
        membership_is_current: true,
        membership_refused_for_secs: 0,
        unhealthy_threshold_secs: 300,
        alarms: Vec::new(),
        missing_storage_class: None,
        transport: Transport::PLAINTEXT,
        tls_change: None,
        restore: None,
        quorum_loss: Default::default(),
        recovery: None,
        upgrade_backups: None,
        certificates: Vec::new(),
        maintenance: Default::default(),
        volume: None,
        volume_expansion_allowed: None,
    }
}

fn plan_of(obs: &Observation, step: Step) -> Plan {
    Plan { step, ..plan(obs) }
}

/// `act` bounded in time: a request the test does not answer fails the test instead of hanging it.
async fn bounded<T>(work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), work).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("act did not finish within 10 s: it waits for a request the test does not expect"),
    }
}

/// Takes the next request, checks its method and path, and answers it with `status` and `reply(body)`.
async fn answer(
    handle: &mut ApiHandle,
    method: &str,
    path: &str,
    status: u16,
    reply: impl FnOnce(&Value) -> Value,
) -> Value {
    let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
    let Ok(Some((request, respond))) = next else { panic!("expected {method} {path}, but no request came") };
    assert_eq!(request.method().as_str(), method, "method of the request to {}", request.uri());
    assert_eq!(request.uri().path(), path);
    let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
    let body: Value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    let response = reply(&body);
    let bytes = serde_json::to_vec(&response).unwrap_or_default();
    respond.send_response(
        Response::builder().status(status).body(Body::from(bytes)).unwrap_or_else(|e| panic!("response: {e}")),
    );
    body
}

/// Takes the DELETE of pod `name` and answers that it is being deleted.
async fn answer_pod_deleted(handle: &mut ApiHandle, name: &str) -> Value {
    let path = format!("/api/v1/namespaces/ns/pods/{name}");
    answer(
        handle,
        "DELETE",
        &path,
        200,
        |_| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}}),
    )
    .await
}

fn api_status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code})
}

fn etcd_args(pod: &Value) -> Vec<String> {
    let args = &pod["spec"]["containers"][0]["args"];
    args.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[tokio::test]
async fn add_learner_asks_the_leader_then_creates_the_volume_and_pod_joining_the_existing_members() {
    let etcd = Arc::new(FakeEtcd::default());
    let (ctx, mut api) = context(etcd.clone());
    let obs = observation(4);
    let step = Step::AddLearner { name: "demo-3".into() };
    let acting = tokio::spawn(async move {
        bounded(act::act(&ctx, ctx.etcd.as_ref(), &cluster(4), &obs, &plan_of(&obs, step))).await
    });

    let pvc = answer(&mut api, "POST", "/api/v1/namespaces/ns/persistentvolumeclaims", 201, Value::clone).await;
    let pod = answer(&mut api, "POST", "/api/v1/namespaces/ns/pods", 201, Value::clone).await;
    let outcome = acting.await.unwrap_or_else(|e| panic!("act panicked: {e}"));
    assert!(outcome.is_ok(), "{outcome:?}");

    assert_eq!(etcd.calls(), vec![format!("add_learner {} http://demo-3.demo.ns.svc:2380", endpoint(0))]);
    let initial = "demo-0=http://demo-0.demo.ns.svc:2380,demo-1=http://demo-1.demo.ns.svc:2380,\
                   demo-2=http://demo-2.demo.ns.svc:2380,demo-3=http://demo-3.demo.ns.svc:2380";
    let annotations = &pvc["metadata"]["annotations"];
    assert_eq!(annotations["etcd.cloud.io/initial-cluster"], initial);
    assert_eq!(annotations["etcd.cloud.io/initial-cluster-state"], "existing");
    assert_eq!(pvc["metadata"]["name"], "demo-3");
    let args = etcd_args(&pod);
    assert!(args.contains(&format!("--initial-cluster={initial}")), "{args:?}");
    assert!(args.contains(&"--initial-cluster-state=existing".to_string()), "{args:?}");
}

#[tokio::test]
async fn a_refused_membership_change_creates_nothing_and_starts_the_refusal_clock() {
    let etcd = Arc::new(FakeEtcd { refusal: Some("etcdserver: unhealthy cluster".into()), ..FakeEtcd::default() });
    let (ctx, mut api) = context(etcd.clone());
    let obs = observation(4);
    let step = plan_of(&obs, Step::AddLearner { name: "demo-3".into() });
    let outcome = bounded(act::act(&ctx, ctx.etcd.as_ref(), &cluster(4), &obs, &step)).await;
    let Err(error) = outcome else { panic!("a refused change is an error") };
    assert!(error.is_transient(), "etcd refuses while its leader settles: retried soon, {error}");
    assert!(ctx.refusals.lock().is_ok_and(|r| r.contains_key("ns/demo")), "the refusal clock runs");
    let next = tokio::time::timeout(Duration::from_millis(200), api.next_request()).await;
    assert!(next.is_err(), "nothing is created for a member etcd did not add");
}

#[tokio::test]
async fn a_membership_change_needs_a_leader_that_answered() {
    let etcd = Arc::new(FakeEtcd::default());
    let (ctx, _api) = context(etcd.clone());
    let mut obs = observation(3);
    if let Some(leader) = obs.members[0].etcd.as_mut() {
        leader.health = None;
    }
    let outcome = bounded(act::act(
        &ctx,
        ctx.etcd.as_ref(),
        &cluster(3),
        &obs,
        &plan_of(&obs, Step::RemoveMember { name: "demo-2".into(), id: 3 }),
    ))
    .await;
    assert!(matches!(outcome, Err(Error::StepNotPossible { .. })), "{outcome:?}");
    assert!(etcd.calls().is_empty(), "{:?}", etcd.calls());
}

#[tokio::test]
async fn restart_deletes_only_the_pod_and_resource_deletion_takes_gone_for_done() {
    let etcd = Arc::new(FakeEtcd::default());
    let (ctx, mut api) = context(etcd.clone());
    let obs = observation(3);
    let ec = cluster(3);
    let restart = plan_of(&obs, Step::RestartMember { name: "demo-1".into() });
    let (outcome, _) = tokio::join!(bounded(act::act(&ctx, ctx.etcd.as_ref(), &ec, &obs, &restart)), async {
        answer_pod_deleted(&mut api, "demo-1").await
    });
    assert!(outcome.is_ok(), "{outcome:?}");

    let delete = plan_of(&obs, Step::DeleteMemberResources { name: "demo-4".into() });
    let (outcome, _) = tokio::join!(bounded(act::act(&ctx, ctx.etcd.as_ref(), &ec, &obs, &delete)), async {
        answer(&mut api, "DELETE", "/api/v1/namespaces/ns/pods/demo-4", 404, |_| api_status(404, "NotFound")).await;
        answer(&mut api, "DELETE", "/api/v1/namespaces/ns/persistentvolumeclaims/demo-4", 404, |_| {
            api_status(404, "NotFound")
        })
        .await
    });
    assert!(outcome.is_ok(), "objects already gone are what deletion wants: {outcome:?}");
    assert!(etcd.calls().is_empty(), "no etcd call for Kubernetes-only steps: {:?}", etcd.calls());
}

#[tokio::test]
async fn a_pod_recreated_for_its_volume_starts_as_recorded_with_the_volumes_quota() {
    let etcd = Arc::new(FakeEtcd::default());
    let (ctx, mut api) = context(etcd);
    let mut obs = observation(3);
    let recorded = Bootstrap {
        initial_cluster: "demo-0=http://demo-0.demo.ns.svc:2380,demo-1=http://demo-1.demo.ns.svc:2380".into(),
        state: InitialState::New,
        token: Some("demo-ns-1700000000".into()),
        transport: Transport::PLAINTEXT,
    };
    obs.members[1].pod = None;
    obs.members[1].bootstrap = Some(recorded.clone());
    obs.members[1].pvc = Some(PvcView { quota_bytes: Some(100 << 20), ..PvcView::default() });
    let ec = cluster(3);
    let step = plan_of(&obs, Step::CreateMemberPod { name: "demo-1".into() });
    let (outcome, (_, pod)) = tokio::join!(bounded(act::act(&ctx, ctx.etcd.as_ref(), &ec, &obs, &step)), async {
        let pvc = answer(&mut api, "POST", "/api/v1/namespaces/ns/persistentvolumeclaims", 409, |_| {
            api_status(409, "AlreadyExists")
        })
        .await;
        (pvc, answer(&mut api, "POST", "/api/v1/namespaces/ns/pods", 201, Value::clone).await)
    });
    assert!(outcome.is_ok(), "an existing volume is kept: {outcome:?}");
    let args = etcd_args(&pod);
    for wanted in [
        format!("--initial-cluster={}", recorded.initial_cluster),
        "--initial-cluster-state=new".to_string(),
        "--initial-cluster-token=demo-ns-1700000000".to_string(),
        format!("--quota-backend-bytes={}", 100 << 20),
    ] {
        assert!(args.contains(&wanted), "{wanted} in {args:?}");
    }
}

#[tokio::test]
async fn a_peer_url_moves_to_https_at_the_leader_then_the_member_restarts() {
    let etcd = Arc::new(FakeEtcd::default());
    let (ctx, mut api) = context(etcd.clone());
    let obs = observation(3);
    let ec = cluster(3);
    let secure = plan_of(&obs, Step::SecurePeerUrl { name: "demo-1".into(), id: 2 });
    let (outcome, _) = tokio::join!(bounded(act::act(&ctx, ctx.etcd.as_ref(), &ec, &obs, &secure)), async {
        answer_pod_deleted(&mut api, "demo-1").await
    });
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(etcd.calls(), [format!("update_peer_url {} 2 https://demo-1.demo.ns.svc:2380", endpoint(0))]);
}

#[tokio::test]
async fn a_refused_peer_url_move_leaves_the_pod_alone() {
    let etcd = Arc::new(FakeEtcd { refusal: Some("etcdserver: unhealthy cluster".into()), ..FakeEtcd::default() });
    let (ctx, _api) = context(etcd.clone());
    let obs = observation(3);
    let secure = plan_of(&obs, Step::SecurePeerUrl { name: "demo-1".into(), id: 2 });
    let outcome = bounded(act::act(&ctx, ctx.etcd.as_ref(), &cluster(3), &obs, &secure)).await;
    assert!(outcome.is_err(), "the refusal is reported");
    assert_eq!(etcd.calls().len(), 1, "{:?}", etcd.calls());
}

#[tokio::test]
async fn the_transport_is_recorded_on_every_members_volume() {
    let etcd = Arc::new(FakeEtcd::default());
    let (ctx, mut api) = context(etcd.clone());
    let obs = observation(3);
    let ec = cluster(3);
    let record = plan_of(&obs, Step::RecordTransport { transport: Transport::MUTUAL_TLS });
    let (outcome, patches) = tokio::join!(bounded(act::act(&ctx, ctx.etcd.as_ref(), &ec, &obs, &record)), async {
        let mut patches = Vec::new();
        for name in ["demo-0", "demo-1", "demo-2"] {
            patches.push(
                answer(&mut api, "PATCH", &format!("/api/v1/namespaces/ns/persistentvolumeclaims/{name}"), 200, |_| {
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "ns"}})
                })
                .await,
            );
        }
        patches
    });
    assert!(outcome.is_ok(), "{outcome:?}");
    for patch in patches {
        assert_eq!(patch["metadata"]["annotations"]["etcd.cloud.io/tls"], "peer,client", "{patch}");
    }
    assert!(etcd.calls().is_empty(), "{:?}", etcd.calls());
}
