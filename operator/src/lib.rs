//! etcd-op: the Kubernetes operator for etcd. The manager binary (`main.rs`) wires these modules together.

pub mod cli;
pub mod controller;
pub mod etcd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod pki;
pub mod store;
pub mod telemetry;
pub mod webhook;
