//! The etcd-op API types (`etcd.cloud.io`), free of client code so that the CRD generator, tests and a later
//! conversion webhook depend on them cheaply.
pub mod member_pod;
pub mod v1;

/// The API group of every etcd-op kind.
pub const GROUP: &str = "etcd.cloud.io";

/// Every CustomResourceDefinition of etcd-op, each with the file name kubebuilder gives it under
/// `config/crd/bases` (`<group>_<plural>.yaml`).
pub fn crds()
-> Vec<(String, k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition)> {
    use kube::CustomResourceExt;
    [v1::EtcdCluster::crd(), v1::EtcdBackup::crd(), v1::EtcdBackupSchedule::crd()]
        .into_iter()
        .map(|crd| (format!("{GROUP}_{}.yaml", crd.spec.names.plural), crd))
        .collect()
}
