use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where backups are kept: an S3-compatible object store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStore {
    /// An S3-compatible object store (AWS S3, or any server that speaks its API and AWS signatures).
    pub s3: S3Store,
}

/// A bucket of an S3-compatible object store. Snapshots are uploaded in parts as etcd streams them, so the
/// operator never holds a whole snapshot in memory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Store {
    /// The store's URL, for example `https://s3.eu-west-1.amazonaws.com` or `http://minio.storage:9000`.
    /// Unset, AWS S3 in the region. Objects are addressed path-style (`<endpoint>/<bucket>/<key>`), which
    /// every S3-compatible server understands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^/?#]+(/.*)?$"), length(max = 512))]
    pub endpoint: Option<String>,

    /// The bucket; it must exist.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,

    /// A folder in the bucket for this cluster's backups, without a leading or trailing `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^/]([^\s]*[^/])?$"), length(max = 512))]
    pub prefix: Option<String>,

    /// The store's region; `us-east-1` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,

    /// A Secret in the same namespace holding the key pair, as `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    pub credentials_secret: SecretName,
}

/// A Secret in the object's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The keys of a store's credentials Secret.
pub const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// The region of a store whose spec names none.
pub const DEFAULT_REGION: &str = "us-east-1";

impl S3Store {
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }

    /// The object key of a file in this store's folder.
    pub fn key(&self, file: &str) -> String {
        match self.prefix.as_deref() {
            Some(prefix) => format!("{prefix}/{file}"),
            None => file.to_string(),
        }
    }

    /// The address of an object of this store, as status shows it.
    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}
