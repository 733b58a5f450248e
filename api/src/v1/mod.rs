//! `etcd.cloud.io/v1`: the EtcdCluster and EtcdBackup kinds, and the object store they share.
mod backup_store;
mod etcdbackup;
mod etcdcluster;

pub use backup_store::*;
pub use etcdbackup::*;
pub use etcdcluster::*;
