//! The validating admission webhooks. For EtcdBackupSchedules: the schedule and its time zone can be read
//! (neither a schema nor CEL can parse cron). For EtcdClusters: what the CRD's schema and CEL rules cannot
//! check because it needs other objects (the StorageClass a cluster names exists; the names a new cluster would
//! give its Services, Secrets, budget and policy are free). Registered for CREATE and UPDATE only, and for
//! updates only when the spec changes, so a webhook that is down never blocks deleting a cluster or
//! removing its metadata. Every replica serves it, leader or not.

pub mod lookup;
pub mod rules;
pub mod serving;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use etcd_op_api::v1::EtcdCluster;
use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as AdmissionOperation};

use crate::http::Readiness;
use rules::Operation;
use serving::{Managed, Source, SwappableCertificate};

/// The paths config/webhook registers, named as kubebuilder names them.
pub const VALIDATE_PATH: &str = "/validate-etcd-cloud-io-v1-etcdcluster";
pub const VALIDATE_SCHEDULE_PATH: &str = "/validate-etcd-cloud-io-v1-etcdbackupschedule";

pub fn router(client: Client) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate))
        .route(VALIDATE_SCHEDULE_PATH, post(validate_schedule))
        .with_state(client)
}

async fn validate(
    State(client): State<Client>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "unreadable admission review");
            return Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    let refusals = match decide(&client, &request).await {
        Ok(refusals) => refusals,
        Err(message) => vec![message],
    };
    Json(respond(&request, "EtcdCluster", refusals))
}

async fn validate_schedule(Json(review): Json<AdmissionReview<DynamicObject>>) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "unreadable admission review");
            return Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    let schedule = request
        .object
        .as_ref()
        .map(|o| serde_json::to_value(o).and_then(serde_json::from_value::<etcd_op_api::v1::EtcdBackupSchedule>))
        .transpose();
    let refusals = match schedule {
        Ok(Some(schedule)) => rules::schedule_refusals(&schedule.spec),
        Ok(None) => Vec::new(),
        Err(error) => vec![format!("the EtcdBackupSchedule in the request cannot be read: {error}")],
    };
    Json(respond(&request, "EtcdBackupSchedule", refusals))
}

/// Allows the request, or refuses it with every refusal, and logs which.
fn respond(
    request: &AdmissionRequest<DynamicObject>,
    kind: &str,
    refusals: Vec<String>,
) -> AdmissionReview<DynamicObject> {
    let response = AdmissionResponse::from(request);
    let namespace = request.namespace.clone().unwrap_or_default();
    let name = &request.name;
    if refusals.is_empty() {
        tracing::info!(%kind, %name, %namespace, operation = ?request.operation, "admission allowed");
        response.into_review()
    } else {
        let reason = refusals.join("; ");
        tracing::info!(%kind, %name, %namespace, operation = ?request.operation, %reason, "admission refused");
        response.deny(reason).into_review()
    }
}

/// The refusals for `request`; an error when the request or a lookup could not be read, which refuses it too.
async fn decide(client: &Client, request: &AdmissionRequest<DynamicObject>) -> Result<Vec<String>, String> {
    let operation = match request.operation {
        AdmissionOperation::Create => Operation::Create,
        AdmissionOperation::Update => Operation::Update,
        // Registered for neither: allowed, whatever it is.
        _ => return Ok(Vec::new()),
    };
    let cluster = |object: &Option<DynamicObject>| -> Result<Option<EtcdCluster>, String> {
        object
            .as_ref()
            .map(|o| serde_json::to_value(o).and_then(serde_json::from_value))
            .transpose()
            .map_err(|e| format!("the EtcdCluster in the request cannot be read: {e}"))
    };
    let Some(new) = cluster(&request.object)? else { return Ok(Vec::new()) };
    let old = cluster(&request.old_object)?;
    let namespace = request.namespace.clone().unwrap_or_default();
    let questions = rules::questions(operation, &new, old.as_ref());
    let answers = lookup::answer(client, &namespace, &questions).await.map_err(|e| e.to_string())?;
    Ok(rules::refusals(&new, &answers, now()))
}

/// The serving certificate from `source`, kept current while the manager runs, with `ready` set once it is
/// served and trusted. Returns the TLS configuration for the webhook server.
pub async fn serving_config(
    source: Source,
    ready: Readiness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Arc<rustls::ServerConfig>> {
    let mut delay = std::time::Duration::from_secs(1);
    // The first certificate: retried (the API server may not answer yet) until it comes or the manager stops.
    let (certificate, authority) = loop {
        let first = match &source {
            Source::Files(dir) => crate::pki::read_files(dir).map(|pem| (pem, None)),
            Source::Managed(managed) => managed.ensure(now()).await.map(|(authority, pem)| (pem, Some(authority))),
        };
        match first {
            Ok(first) => break first,
            Err(error) => tracing::warn!(%error, retry_in = ?delay, "no webhook serving certificate yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(30));
    };
    let swappable = match SwappableCertificate::new(&certificate) {
        Ok(swappable) => Arc::new(swappable),
        Err(error) => {
            tracing::error!(%error, "the webhook serving certificate cannot be used; the webhook is off");
            return None;
        }
    };
    let config = match swappable.server_config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "the webhook's TLS configuration failed; the webhook is off");
            return None;
        }
    };
    if let (Source::Managed(managed), Some(authority)) = (&source, authority) {
        inject_logged(managed, &authority).await;
    }
    ready.set(true);
    tokio::spawn(keep_current(source, swappable, certificate, stop));
    Some(config)
}

async fn inject_logged(managed: &Managed, authority: &str) {
    match managed.inject(authority).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            configuration = %managed.configuration,
            "the webhook configuration is not installed; nothing calls the webhook"
        ),
        Err(error) => tracing::warn!(%error, "the webhook's trust bundle could not be written"),
    }
}

/// Swaps in a renewed certificate, and writes the trust bundle again where it was lost.
async fn keep_current(
    source: Source,
    swappable: Arc<SwappableCertificate>,
    mut served: crate::pki::KeyedCertificate,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let period = match source {
        Source::Files(_) => serving::REFRESH_FILES,
        Source::Managed(_) => serving::REFRESH,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let next = match &source {
            Source::Files(dir) => crate::pki::read_files(dir),
            Source::Managed(managed) => match managed.ensure(now()).await {
                Ok((authority, pem)) => {
                    inject_logged(managed, &authority).await;
                    Ok(pem)
                }
                Err(error) => Err(error),
            },
        };
        match next {
            Ok(next) if next != served => match swappable.replace(&next) {
                Ok(()) => {
                    tracing::info!("webhook serving certificate replaced");
                    served = next;
                }
                Err(error) => tracing::warn!(%error, "the new webhook serving certificate cannot be used"),
            },
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "the webhook serving certificate could not be checked"),
        }
    }
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}
