//! `etcd.cloud.io/v1`: the EtcdCluster kind.
mod etcdcluster;

pub use etcdcluster::*;
