//! Stores that keep backups: an S3-compatible bucket reached with the key pair of a Secret, or a claim served
//! by a volume store's pod. Snapshots go up as they arrive, so memory holds a few parts at most, never a whole
//! snapshot; what was stored is read back and hashed before a backup counts.

pub mod digest;
pub mod volume;
pub mod volume_server;

use std::sync::Arc;

use bytes::Bytes;
use etcd_op_api::v1::{ACCESS_KEY_ID_KEY, S3Store, SECRET_ACCESS_KEY_KEY};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

pub use digest::{SnapshotDigest, SnapshotHasher};

/// S3's smallest part; every part but the last must be at least this big.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts in flight at once: what the upload may hold in memory, with the part being filled.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store's credentials Secret {secret}: {why}")]
    Credentials { secret: String, why: String },
    #[error("the store s3://{bucket}: {source}")]
    Store { bucket: String, source: object_store::Error },
    #[error("the store pvc://{claim}: {why}")]
    Volume { claim: String, why: String },
    #[error("the snapshot stream: {0}")]
    Source(String),
}

/// A key pair for the store; never printed.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self { access_key_id: access_key_id.into(), secret_access_key: secret_access_key.into() }
    }

    /// Reads the key pair from the Secret `name` in `namespace`.
    pub async fn read(client: &kube::Client, namespace: &str, name: &str) -> Result<Self, StoreError> {
        let secret = SecretValues::read(client, namespace, name).await?;
        Ok(Self::new(secret.value(ACCESS_KEY_ID_KEY)?, secret.value(SECRET_ACCESS_KEY_KEY)?))
    }
}

/// A Secret's values, read as text.
struct SecretValues {
    name: String,
    secret: Secret,
}

impl SecretValues {
    async fn read(client: &kube::Client, namespace: &str, secret_name: &str) -> Result<Self, StoreError> {
        let name = format!("{namespace}/{secret_name}");
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(secret_name)
            .await
            .map_err(|e| StoreError::Credentials { secret: name.clone(), why: e.to_string() })?
            .ok_or_else(|| StoreError::Credentials { secret: name.clone(), why: "not found".into() })?;
        Ok(Self { name, secret })
    }

    fn value(&self, key: &str) -> Result<String, StoreError> {
        let fail = |why: String| StoreError::Credentials { secret: self.name.clone(), why };
        let bytes = self
            .secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| self.secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()))
            .ok_or_else(|| fail(format!("has no {key}")))?;
        let text = String::from_utf8(bytes).map_err(|_| fail(format!("{key} is not text")))?;
        Ok(text.trim().to_string())
    }
}

/// One bucket, or one volume store.
#[derive(Clone, Debug)]
pub enum Store {
    S3 { inner: Arc<dyn ObjectStore>, bucket: String },
    Volume { client: volume::VolumeClient, claim: String },
}

impl Store {
    pub fn s3(spec: &S3Store, credentials: &Credentials) -> Result<Self, StoreError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&spec.bucket)
            .with_region(spec.region())
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            // Path-style addressing: every S3-compatible server understands it, and no DNS name per bucket is
            // needed.
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &spec.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let inner = builder.build().map_err(|source| StoreError::Store { bucket: spec.bucket.clone(), source })?;
        Ok(Self::S3 { inner: Arc::new(inner), bucket: spec.bucket.clone() })
    }

    /// The volume store served at `url`.
    pub fn volume(url: &str, claim: &str, token: String) -> Result<Self, StoreError> {
        let client = volume::VolumeClient::new(url, token)
            .map_err(|why| StoreError::Volume { claim: claim.to_string(), why })?;
        Ok(Self::Volume { client, claim: claim.to_string() })
    }

    fn failed(&self, source: object_store::Error) -> StoreError {
        match self {
            Self::S3 { bucket, .. } => StoreError::Store { bucket: bucket.clone(), source },
            Self::Volume { claim, .. } => StoreError::Volume { claim: claim.clone(), why: source.to_string() },
        }
    }

    fn volume_failed(claim: &str, why: String) -> StoreError {
        StoreError::Volume { claim: claim.to_string(), why }
    }

    /// Uploads the chunks as object `key`, hashing them as they pass: to S3 in parts. A stream that fails
    /// leaves no object: the upload is aborted.
    pub async fn upload<S, E>(&self, key: &str, mut chunks: S) -> Result<SnapshotDigest, StoreError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let inner = match self {
            Self::S3 { inner, .. } => inner,
            Self::Volume { client, claim } => {
                return client.upload(key, chunks).await.map_err(|why| Self::volume_failed(claim, why));
            }
        };
        let upload = inner.put_multipart(&Path::from(key)).await.map_err(|e| self.failed(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut hasher = SnapshotHasher::default();
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::Source(error.to_string()));
                }
            };
            hasher.update(&chunk);
            if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(self.failed(error));
            }
            writer.put(chunk);
        }
        writer.finish().await.map_err(|e| self.failed(e))?;
        Ok(hasher.finish())
    }

    /// Object `key` as a stream of chunks.
    async fn chunks(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        match self {
            Self::S3 { inner, bucket } => {
                let object = inner.get(&Path::from(key)).await.map_err(|e| self.failed(e))?;
                let bucket = bucket.clone();
                Ok(object
                    .into_stream()
                    .map(move |chunk| chunk.map_err(|source| StoreError::Store { bucket: bucket.clone(), source }))
                    .boxed())
            }
            Self::Volume { client, claim } => {
                let stream = client.get(key).await.map_err(|why| Self::volume_failed(claim, why))?;
                let claim = claim.clone();
                Ok(stream.map(move |chunk| chunk.map_err(|why| Self::volume_failed(&claim, why))).boxed())
            }
        }
    }

    /// Reads object `key` back and hashes it as it streams.
    pub async fn digest(&self, key: &str) -> Result<SnapshotDigest, StoreError> {
        let mut stream = self.chunks(key).await?;
        let mut hasher = SnapshotHasher::default();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finish())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Self::S3 { inner, .. } => inner.delete(&Path::from(key)).await.map_err(|e| self.failed(e)),
            Self::Volume { client, claim } => client.delete(key).await.map_err(|why| Self::volume_failed(claim, why)),
        }
    }
}

/// How long a restore pod keeps asking a volume store that does not answer yet (its pod may be starting).
const VOLUME_STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// The store a fetch names: a volume store's server, or an S3 bucket.
async fn fetch_from(args: &crate::cli::FetchSnapshotArgs, location: &str) -> Result<Store, String> {
    let env = |key: &str| std::env::var(key).map_err(|_| format!("{key} is not set"));
    match (&args.volume, &args.bucket) {
        (Some(url), _) => {
            let store = Store::volume(url, url, env("STORE_TOKEN")?).map_err(|e| e.to_string())?;
            // Bounded: answered, refused, or given up after VOLUME_STORE_PATIENCE.
            let deadline = tokio::time::Instant::now() + VOLUME_STORE_PATIENCE;
            loop {
                match &store {
                    Store::Volume { client, .. } if client.answers().await => return Ok(store),
                    _ if tokio::time::Instant::now() >= deadline => {
                        return Err(format!(
                            "fetching {location}: the store {url} did not answer within {VOLUME_STORE_PATIENCE:?}"
                        ));
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
                }
            }
        }
        (None, Some(bucket)) => {
            let credentials = Credentials::new(env(ACCESS_KEY_ID_KEY)?, env(SECRET_ACCESS_KEY_KEY)?);
            let spec = S3Store {
                endpoint: args.endpoint.clone(),
                bucket: bucket.clone(),
                prefix: None,
                region: Some(args.region.clone()),
                credentials_secret: etcd_op_api::v1::SecretName { name: String::new() },
            };
            Store::s3(&spec, &credentials).map_err(|e| e.to_string())
        }
        (None, None) => Err("name a store: --bucket or --volume".into()),
    }
}

/// Fetches a snapshot into `args.to`, checking it as it streams; returns what was fetched, or why it is
/// refused. A refused snapshot leaves no file.
pub async fn fetch_snapshot(args: &crate::cli::FetchSnapshotArgs) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let location = args.location.clone().unwrap_or_else(|| args.key.clone());
    if let Some(dir) = &args.clear
        && let Err(error) = tokio::fs::remove_dir_all(dir).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        return Err(format!("removing {}: {error}", dir.display()));
    }
    let store = fetch_from(args, &location).await?;
    let mut stream = store.chunks(&args.key).await.map_err(|e| format!("fetching {location}: {e}"))?;
    let mut file =
        tokio::fs::File::create(&args.to).await.map_err(|e| format!("creating {}: {e}", args.to.display()))?;
    let mut hasher = SnapshotHasher::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("fetching {location}: {e}"))?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| format!("writing {}: {e}", args.to.display()))?;
    }
    file.flush().await.map_err(|e| format!("writing {}: {e}", args.to.display()))?;
    let digest = hasher.finish();
    let expected = args.sha256.as_deref().map(str::to_ascii_lowercase);
    let refused = if let Some(expected) = expected.filter(|e| *e != digest.sha256) {
        Some(format!(
            "{location} hashes to sha256 {}, not {expected} as its backup recorded: it changed after the backup was taken",
            digest.sha256
        ))
    } else if !digest.database_intact {
        Some(format!(
            "{location} does not end with the sha256 of the database before it: it is not a whole etcd snapshot"
        ))
    } else {
        None
    };
    if let Some(why) = refused {
        let _ = tokio::fs::remove_file(&args.to).await;
        return Err(format!("refused: {why}; nothing was restored"));
    }
    Ok(format!("fetched {location}: {} bytes, sha256 {}", digest.size, digest.sha256))
}
