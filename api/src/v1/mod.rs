//! `etcd.cloud.io/v1`: the EtcdCluster, EtcdBackup and EtcdBackupSchedule kinds, and the object store they share.
mod backup_store;
mod etcdbackup;
mod etcdbackupschedule;
mod etcdcluster;

pub use backup_store::*;
pub use etcdbackup::*;
pub use etcdbackupschedule::*;
pub use etcdcluster::*;
