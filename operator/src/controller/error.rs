//! The controller's errors. Each maps to a condition reason and an event reason, and to the `error` label of
//! the reconcile metrics.

use crate::etcd::EtcdError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    KubeRead { what: String, source: kube::Error },
    #[error("writing {what}: {source}")]
    KubeWrite { what: String, source: kube::Error },
    #[error("etcd: {0}")]
    Etcd(#[from] EtcdError),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("incomplete observation: {0}")]
    IncompleteObservation(String),
    #[error("the EtcdCluster has no namespace")]
    MissingNamespace,
    #[error("cannot {step}: {why}")]
    StepNotPossible { step: &'static str, why: String },
    /// etcd declined a membership change it will accept shortly: a cluster healthy for only a few seconds,
    /// or a learner not yet in sync. Not a failure; the step is retried soon.
    #[error("etcd is not ready for {step} yet: {why}")]
    EtcdNotReady { step: &'static str, why: String },
    #[error("certificates: {0}")]
    Certificates(String),
}

impl Error {
    /// CamelCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::KubeRead { .. } => "KubernetesReadFailed",
            Error::KubeWrite { .. } => "KubernetesWriteFailed",
            Error::Etcd(_) => "EtcdRequestFailed",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::IncompleteObservation(_) => "IncompleteObservation",
            Error::MissingNamespace => "MissingNamespace",
            Error::StepNotPossible { .. } => "StepNotPossible",
            Error::EtcdNotReady { .. } => "EtcdNotReady",
            Error::Certificates(_) => "CertificatesFailed",
        }
    }

    /// Errors that are part of normal operation: retried soon, with no Warning event.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::EtcdNotReady { .. })
    }

    /// Classifies an etcd refusal of a membership change: etcd's own words for "not yet".
    pub fn from_membership_change(step: &'static str, error: EtcdError) -> Self {
        let text = error.to_string();
        let not_yet = ["unhealthy cluster", "not in sync", "too many learner", "not started"];
        if not_yet.iter().any(|phrase| text.contains(phrase)) {
            Error::EtcdNotReady { step, why: text }
        } else {
            Error::Etcd(error)
        }
    }
}
