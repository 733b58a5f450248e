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
        }
    }
}
