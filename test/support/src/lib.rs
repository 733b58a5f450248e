//! Test support for the local Kubernetes test bed.
