//! Report: status (members, conditions, phase, next step) computed from what was observed and planned, and
//! an event per step taken. Status is written only when it changed, so a quiet cluster costs no writes.

use etcd_op_api::v1::{
    CertificateStatus, ClusterTarget, EtcdCluster, EtcdClusterStatus, MemberStatus, NextStep, Phase, RecoveryPhase,
    RecoveryStatus, TlsStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Context;
use super::error::Error;
use super::model::{EtcdView, Observation, quorum};
use super::plan::{Activity, Counts, Plan, Step};
use super::resources::{client_url, peer_url, selector_string};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const CERTIFICATES_EXPIRING: &str = "CertificatesExpiring";

/// The status this observation and plan call for, keeping the transition times of unchanged conditions.
pub fn desired_status(ec: &EtcdCluster, obs: &Observation, plan: &Plan, now: Timestamp) -> EtcdClusterStatus {
    let cluster = ec.name_any();
    let namespace = ec.namespace().unwrap_or_default();
    let generation = ec.metadata.generation;
    let previous = ec.status.clone().unwrap_or_default();
    let cluster_id = match obs.etcd {
        EtcdView::Reachable { cluster_id, .. } => Some(cluster_id),
        EtcdView::Unreachable => None,
    };
    let healthy = |m: &super::model::Member| cluster_id.is_some_and(|id| m.is_healthy(id));
    let Counts { voters, healthy_voters: ready } = plan.counts;

    let members: Vec<MemberStatus> = obs
        .members
        .iter()
        .map(|m| MemberStatus {
            name: m.name.clone(),
            id: m.id().map(|id| format!("{id:x}")),
            // What etcd lists, else the stable DNS name the member is (or will be) reached by.
            peer_urls: listed_or(m.etcd.as_ref().map(|e| &e.peer_urls), || {
                peer_url(&cluster, &namespace, &m.name, obs.transport)
            }),
            client_urls: listed_or(m.etcd.as_ref().map(|e| &e.client_urls), || {
                client_url(&cluster, &namespace, &m.name, obs.transport)
            }),
            version: m.etcd.as_ref().and_then(|e| e.health.as_ref()?.version).map(|v| v.to_string()),
            learner: m.is_learner(),
            healthy: healthy(m),
            alarms: obs.alarms.iter().filter(|a| a.member == m.name).map(|a| a.alarm.name().to_string()).collect(),
            last_defragmentation: previous
                .members
                .iter()
                .find(|p| p.name == m.name)
                .and_then(|p| p.last_defragmentation.clone()),
        })
        .collect();
    let versions: std::collections::BTreeSet<_> = obs.members.iter().filter_map(|m| m.pod.as_ref()?.version).collect();
    let current_version = match (versions.len(), versions.first()) {
        (1, Some(v)) if !obs.members.is_empty() => Some(v.to_string()),
        _ => None,
    };
    let unhealthy: Vec<&str> =
        obs.members.iter().filter(|m| m.etcd.is_some() && !healthy(m)).map(|m| m.name.as_str()).collect();

    let available_condition = if plan.counts.available() {
        (true, "QuorumHealthy", format!("{ready} of {voters} voting members are healthy"))
    } else if matches!(plan.activity, Activity::Creating) || obs.members.is_empty() && !obs.formed {
        (false, "Bootstrapping", "the cluster is being created".to_string())
    } else if voters == 0 {
        (false, "NoQuorum", "no member exists".to_string())
    } else {
        (false, "NoQuorum", format!("{ready} of {voters} voting members are healthy; {} are needed", quorum(voters)))
    };
    let progressing_condition = match plan.activity {
        Activity::Creating | Activity::Scaling | Activity::Upgrading | Activity::Healing => {
            (true, activity_name(plan.activity), plan.reason.clone())
        }
        Activity::Paused => (false, "Paused", plan.reason.clone()),
        Activity::Idle | Activity::Blocked(_) => (false, "Idle", "no change is under way".to_string()),
    };
    let degraded_condition = match (&plan.refusal, plan.activity) {
        (_, Activity::Blocked(blocker)) if plan.refusal.is_none() => (true, blocker.reason(), plan.reason.clone()),
        (Some((blocker, message)), _) => (true, blocker.reason(), message.clone()),
        _ if !unhealthy.is_empty() => (true, "MemberUnhealthy", format!("unhealthy members: {}", unhealthy.join(", "))),
        _ if !obs.foreign_pods.is_empty() => (
            true,
            "ForeignPods",
            format!(
                "pods {} carry this cluster's labels but are not owned by it: they are not treated as members",
                obs.foreign_pods.join(", ")
            ),
        ),
        _ => (false, "AsExpected", "all members are healthy".to_string()),
    };
    let certificates_condition = obs.transport.any_tls().then(|| certificates_condition(obs, now));
    let conditions =
        [(AVAILABLE, available_condition), (PROGRESSING, progressing_condition), (DEGRADED, degraded_condition)]
            .into_iter()
            .chain(certificates_condition.map(|c| (CERTIFICATES_EXPIRING, c)))
            .map(|(type_, (status, reason, message))| {
                condition(&previous.conditions, type_, status, reason, message, generation, now)
            })
            .collect();

    EtcdClusterStatus {
        observed_generation: generation,
        phase: Some(phase(plan.activity, obs)),
        conditions,
        ready_members: i32::try_from(ready).unwrap_or(i32::MAX),
        current_version,
        // The ID outlives an outage: it is how the planner knows the cluster once formed. A new bootstrap
        // starts a new cluster, so it clears the old one's.
        cluster_id: match (cluster_id, &plan.step) {
            (Some(id), _) => Some(format!("{id:x}")),
            (None, Step::BootstrapMembers { .. }) => None,
            (None, _) => previous.cluster_id.clone(),
        },
        leader: obs.answering_leader().map(|m| m.name.clone()),
        members,
        selector: Some(selector_string(&cluster)),
        target: Some(ClusterTarget {
            size: i32::try_from(plan.target.size).unwrap_or(i32::MAX),
            version: plan.target.version.to_string(),
        }),
        next_step: Some(NextStep { action: plan.step.action().to_string(), reason: plan.reason.clone() }),
        tls: Some(TlsStatus {
            peer: obs.transport.peer_tls,
            client: obs.transport.client_tls,
            certificates: obs
                .certificates
                .iter()
                .map(|c| CertificateStatus {
                    secret: c.secret.clone(),
                    not_after: rfc3339(c.validity.not_after),
                    renew_after: c.renews.then(|| rfc3339(c.validity.renew_at())),
                })
                .collect(),
            authority_rotation: None,
            turning_on: obs.tls_change.map(|to| to.as_str().to_string()),
        }),
        recovery: super::recovery::status_after(
            previous.recovery.as_ref(),
            begun_recovery(plan, previous.cluster_id.clone(), now),
            match obs.etcd {
                EtcdView::Reachable { cluster_id, leader_id: Some(_) } => Some(cluster_id),
                _ => None,
            },
            now,
        ),
        last_compaction: previous.last_compaction.clone(),
    }
}

/// The recovery a BeginRecovery step records.
fn begun_recovery(plan: &Plan, old_cluster_id: Option<String>, now: Timestamp) -> Option<RecoveryStatus> {
    let Step::BeginRecovery { action, source, member, rescue_copies, token } = &plan.step else { return None };
    Some(RecoveryStatus {
        action: *action,
        phase: RecoveryPhase::Restoring,
        source: source.clone(),
        member: member.clone(),
        reason: plan.reason.clone(),
        rescue_copies: rescue_copies.clone(),
        token: token.clone(),
        old_cluster_id,
        new_cluster_id: None,
        start_time: Some(Time(now)),
        completion_time: None,
    })
}

/// True while a certificate has less than a sixth of its life left: a leaf whose renewal keeps failing, or
/// an authority due for rotation.
fn certificates_condition(obs: &Observation, now: Timestamp) -> (bool, &'static str, String) {
    let now = now.as_second();
    let expiring: Vec<String> = obs
        .certificates
        .iter()
        .filter(|c| c.validity.expiring(now))
        .map(|c| format!("{} (expires {})", c.secret, rfc3339(c.validity.not_after)))
        .collect();
    if expiring.is_empty() {
        (false, "CertificatesValid", "every certificate has more than a sixth of its life left".to_string())
    } else {
        (true, "CertificatesExpiring", format!("certificates near their expiry: {}", expiring.join(", ")))
    }
}

fn rfc3339(seconds: i64) -> String {
    Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

fn listed_or(listed: Option<&Vec<String>>, fallback: impl FnOnce() -> String) -> Vec<String> {
    listed.filter(|urls| !urls.is_empty()).cloned().unwrap_or_else(|| vec![fallback()])
}

fn activity_name(activity: Activity) -> &'static str {
    match activity {
        Activity::Idle => "Idle",
        Activity::Paused => "Paused",
        Activity::Creating => "Creating",
        Activity::Scaling => "Scaling",
        Activity::Upgrading => "Upgrading",
        Activity::Healing => "Healing",
        Activity::Blocked(b) => b.reason(),
    }
}

fn phase(activity: Activity, obs: &Observation) -> Phase {
    match activity {
        Activity::Idle if obs.members.is_empty() => Phase::Pending,
        Activity::Idle => Phase::Running,
        Activity::Paused => Phase::Paused,
        Activity::Creating => Phase::Creating,
        Activity::Scaling => Phase::Scaling,
        Activity::Upgrading => Phase::Upgrading,
        Activity::Healing => Phase::Healing,
        Activity::Blocked(_) => Phase::Degraded,
    }
}

/// A condition whose transition time moves only when its status does.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Writes the status if it differs from the one the object carries.
pub async fn write_status(ctx: &Context, ec: &EtcdCluster, status: &EtcdClusterStatus) -> Result<bool, Error> {
    if ec.status.as_ref() == Some(status) {
        return Ok(false);
    }
    apply_status(ctx, ec, status).await.map(|()| true)
}

/// Applies `status` to `object`'s status subresource, server-side with the operator's field manager: the one
/// way every controller of the operator writes status.
pub async fn apply_status<K>(ctx: &Context, object: &K, status: &impl serde::Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&name, &PatchParams::apply(super::FIELD_MANAGER).force(), &Patch::Apply(&patch)).await.map_err(
        |source| Error::KubeWrite { what: format!("status of {} {namespace}/{name}", K::kind(&())), source },
    )?;
    Ok(())
}

/// One Normal event per step taken; Wait and Nothing are reported through status only.
pub async fn publish_step(ctx: &Context, ec: &EtcdCluster, plan: &Plan) {
    if matches!(plan.step, Step::Nothing | Step::Wait) {
        return;
    }
    let event = Event {
        type_: EventType::Normal,
        reason: plan.step.action().to_string(),
        note: Some(truncate(&plan.reason)),
        action: plan.step.action().to_string(),
        secondary: None,
    };
    publish(ctx, ec, &event).await;
}

/// A Normal event for a change made outside the planner's steps (an authority rotated).
pub async fn publish_normal<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, reason: &str, note: &str) {
    publish(ctx, object, &reconcile_event(EventType::Normal, reason, note)).await;
}

/// A Warning event for a condition the user must see (a refused spec, lost quorum, a failed step).
pub async fn publish_warning<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, reason: &str, note: &str) {
    publish(ctx, object, &reconcile_event(EventType::Warning, reason, note)).await;
}

fn reconcile_event(type_: EventType, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note)),
        action: "Reconcile".to_string(),
        secondary: None,
    }
}

async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, event: &Event) {
    if let Err(error) = ctx.recorder.publish(event, &object.object_ref(&())).await {
        tracing::warn!(kind = %K::kind(&()), name = %object.name_any(), %error, "publishing an event failed");
    }
}

/// Event notes are limited to 1 KiB by the API server.
fn truncate(text: &str) -> String {
    text.chars().take(1000).collect()
}
