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

    /// The API server refuses new objects in a namespace being deleted. The cluster goes with its namespace,
    /// so this is no failure to warn of (nor could an event be written there).
    pub fn is_namespace_terminating(&self) -> bool {
        matches!(
            self,
            Error::KubeWrite { source: kube::Error::Api(status), .. }
                if status.code == 403 && status.message.contains("because it is being terminated")
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_refused(code: u16, message: &str) -> Error {
        let status = kube::core::Status { code, message: message.to_string(), ..Default::default() };
        Error::KubeWrite { what: "pod demo-3".into(), source: kube::Error::Api(Box::new(status)) }
    }

    #[test]
    fn a_create_refused_in_a_namespace_being_deleted_is_told_apart() {
        let terminating = "pods \"demo-3\" is forbidden: unable to create new content in namespace e2e because it is being terminated";
        assert!(write_refused(403, terminating).is_namespace_terminating());
        assert!(!write_refused(403, "pods is forbidden: User cannot create resource").is_namespace_terminating());
        assert!(!write_refused(409, "already exists").is_namespace_terminating());
    }
}
