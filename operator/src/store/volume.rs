//! The client of a volume store: its server (`volume_server`) on the claim's Service, reached with the store's
//! token. An upload streams as it arrives, a few chunks in flight at most, hashed on the way.

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{StatusCode, Url};

use super::digest::{SnapshotDigest, SnapshotHasher};
use super::volume_server::{HEALTH_PATH, OBJECTS_PATH};

/// Chunks between the snapshot and the request body: what an upload holds in memory.
const CHUNKS_IN_FLIGHT: usize = 2;

/// One volume store's server.
#[derive(Clone)]
pub struct VolumeClient {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl std::fmt::Debug for VolumeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// The address of the server `server` (a Deployment and Service): in `namespace`, or, without one, in the
/// namespace of the pod that asks (its DNS search path finds it).
pub fn server_url(server: &str, namespace: Option<&str>) -> String {
    let port = etcd_op_api::v1::VOLUME_STORE_PORT;
    match namespace {
        Some(namespace) => format!("http://{server}.{namespace}.svc:{port}"),
        None => format!("http://{server}:{port}"),
    }
}

impl VolumeClient {
    pub fn new(base: &str, token: impl Into<String>) -> Result<Self, String> {
        let base = Url::parse(base).map_err(|e| format!("the store's address {base}: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        Ok(Self { http, base, token: token.into() })
    }

    /// Whether the server is up (its health path answers).
    pub async fn answers(&self) -> bool {
        let Ok(url) = self.base.join(HEALTH_PATH) else {
            return false;
        };
        self.http.get(url).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    }

    /// The URL of object `key`, each part of it escaped.
    fn url(&self, key: &str) -> Result<Url, String> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| format!("{} cannot hold a path", self.base))?
            .pop_if_empty()
            .push(OBJECTS_PATH.trim_start_matches('/'))
            .extend(key.split('/'));
        Ok(url)
    }

    /// Uploads the chunks as `key`, hashing them as they pass. A stream that fails breaks the upload off, and
    /// the server keeps nothing of it.
    pub async fn upload<S, E>(&self, key: &str, mut chunks: S) -> Result<SnapshotDigest, String>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let url = self.url(key)?;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
        let body = reqwest::Body::wrap_stream(tokio_stream_of(receiver));
        let request = self.http.put(url).bearer_auth(&self.token).body(body).send();
        let pump = async move {
            let mut hasher = SnapshotHasher::default();
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => {
                        hasher.update(&chunk);
                        if sender.send(Ok(chunk)).await.is_err() {
                            return Err("the store stopped receiving".to_string());
                        }
                    }
                    Err(error) => {
                        let why = format!("the snapshot stream: {error}");
                        let _ = sender.send(Err(std::io::Error::other(why.clone()))).await;
                        return Err(why);
                    }
                }
            }
            Ok(hasher.finish())
        };
        let (sent, response) = futures::join!(pump, request);
        let response = response.map_err(|e| format!("uploading {key}: {e}"));
        let digest = sent?;
        let response = response?;
        if response.status() != StatusCode::CREATED {
            return Err(refusal("uploading", key, response).await);
        }
        Ok(digest)
    }

    /// Reads `key` back as a stream of chunks.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, String>> + Unpin + use<>, String> {
        let response = self
            .http
            .get(self.url(key)?)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("fetching {key}: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(refusal("fetching", key, response).await);
        }
        let key = key.to_string();
        Ok(response.bytes_stream().map(move |chunk| chunk.map_err(|e| format!("fetching {key}: {e}"))))
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let response = self
            .http
            .delete(self.url(key)?)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("deleting {key}: {e}"))?;
        if response.status() != StatusCode::NO_CONTENT {
            return Err(refusal("deleting", key, response).await);
        }
        Ok(())
    }
}

/// The chunks a channel receives, as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// What the server said when it refused a call.
async fn refusal(what: &str, key: &str, response: reqwest::Response) -> String {
    let status = response.status();
    let said = response.text().await.unwrap_or_default();
    format!("{what} {key}: the store answered {status}: {}", said.trim())
}
