//! The etcd-op API types (`etcd.cloud.io`), free of client code so that the CRD generator, tests and a later
//! conversion webhook depend on them cheaply.
pub mod v1;

/// The API group of every etcd-op kind.
pub const GROUP: &str = "etcd.cloud.io";
