use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where backups are kept: an S3-compatible object store, or a PersistentVolumeClaim; one of the two.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.volume)").message("store: name an S3-compatible store (s3) or a PersistentVolumeClaim (volume), one of the two"))]
pub struct BackupStore {
    /// An S3-compatible object store (AWS S3, or any server that speaks its API and AWS signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Store>,

    /// A PersistentVolumeClaim in the same namespace, for clusters without an object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStore>,
}

/// A PersistentVolumeClaim that keeps backups as files. One pod mounts it: the operator runs
/// `<claimName>-store` (a Deployment and a Service, owned by the claim, so they go with it), which keeps the
/// files and serves them to the operator and to the restore pods; a token the operator makes, in the Secret
/// `<claimName>-store-token`, admits them. Snapshots stream through it as through an object store: the
/// operator never holds a whole one in memory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStore {
    /// The claim; it must exist. Its name also names the store's Service, hence a DNS label of at most 57
    /// characters.
    #[schemars(regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"), length(min = 1, max = 57))]
    pub claim_name: String,

    /// A folder on the volume for this cluster's backups, without a leading or trailing `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^/]([^\s]*[^/])?$"), length(max = 512))]
    pub prefix: Option<String>,
}

/// One of the two kinds of store, as code that acts on a store needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind<'a> {
    S3(&'a S3Store),
    Volume(&'a VolumeStore),
}

impl BackupStore {
    pub fn s3(spec: S3Store) -> Self {
        Self { s3: Some(spec), volume: None }
    }

    pub fn volume(spec: VolumeStore) -> Self {
        Self { s3: None, volume: Some(spec) }
    }

    /// The store this spec names: S3 when both are set, which the API server refuses.
    pub fn kind(&self) -> Option<StoreKind<'_>> {
        match (&self.s3, &self.volume) {
            (Some(s3), _) => Some(StoreKind::S3(s3)),
            (None, Some(volume)) => Some(StoreKind::Volume(volume)),
            (None, None) => None,
        }
    }

    /// The object key of a file in this store's folder.
    pub fn key(&self, file: &str) -> String {
        let prefix = match self.kind() {
            Some(StoreKind::S3(s3)) => s3.prefix.as_deref(),
            Some(StoreKind::Volume(volume)) => volume.prefix.as_deref(),
            None => None,
        };
        match prefix {
            Some(prefix) => format!("{prefix}/{file}"),
            None => file.to_string(),
        }
    }

    /// The address of an object of this store, as status shows it: `s3://<bucket>/<key>` or
    /// `pvc://<claim>/<key>`.
    pub fn location(&self, key: &str) -> String {
        match self.kind() {
            Some(StoreKind::S3(s3)) => s3.location(key),
            Some(StoreKind::Volume(volume)) => format!("pvc://{}/{key}", volume.claim_name),
            None => key.to_string(),
        }
    }
}

impl VolumeStore {
    /// The Deployment and Service that serve the claim.
    pub fn server_name(&self) -> String {
        format!("{}-store", self.claim_name)
    }

    /// The Secret whose token admits the operator and the restore pods.
    pub fn token_secret_name(&self) -> String {
        format!("{}-store-token", self.claim_name)
    }
}

/// The key of the store token in its Secret.
pub const STORE_TOKEN_KEY: &str = "token";
/// The port the volume store serves on.
pub const VOLUME_STORE_PORT: u16 = 8080;

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

    /// The address of an object of this store, as status shows it.
    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}
