//! The server of a volume store (`etcd-op serve-volume`): the one pod that mounts a backup claim keeps each
//! snapshot there as a file and serves it over HTTP to the operator (upload, read-back, delete) and to the
//! restore pods (fetch). Every object call carries the store's token. A file is written beside its final name
//! and renamed once whole and synced, so a reader never sees half a snapshot and an upload that breaks off
//! leaves nothing.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

/// Where objects are addressed: `/objects/<key>`.
pub const OBJECTS_PATH: &str = "/objects";
/// What the pod's readiness probe asks; needs no token.
pub const HEALTH_PATH: &str = "/healthz";

#[derive(Clone)]
struct Served {
    dir: Arc<PathBuf>,
    token: Arc<String>,
}

/// The routes, serving the files under `dir` to holders of `token`.
pub fn router(dir: PathBuf, token: String) -> Router {
    Router::new()
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(&format!("{OBJECTS_PATH}/{{*key}}"), get(read).put(write).delete(remove))
        .with_state(Served { dir: Arc::new(dir), token: Arc::new(token) })
}

/// Serves `dir` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dir: PathBuf,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(dir, token)).with_graceful_shutdown(shutdown).await
}

/// The file of object `key` under `dir`, or `None` for a key that could leave it or collide with a file being
/// written: every part a plain name, none starting with `.`.
pub fn file_of(dir: &Path, key: &str) -> Option<PathBuf> {
    if key.is_empty() || key.contains('\0') {
        return None;
    }
    let relative = Path::new(key);
    let plain =
        relative.components().all(|c| matches!(c, Component::Normal(part) if !part.to_string_lossy().starts_with('.')));
    let parts = key.split('/').count();
    (plain && relative.components().count() == parts).then(|| dir.join(relative))
}

/// The `Authorization` header carries the token, compared in constant time.
fn admitted(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else {
        return false;
    };
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// The file a call addresses, or the status and words that refuse it.
fn addressed(served: &Served, headers: &HeaderMap, key: &str) -> Result<PathBuf, (StatusCode, &'static str)> {
    if !admitted(headers, &served.token) {
        return Err((StatusCode::UNAUTHORIZED, "a valid store token is required\n"));
    }
    file_of(&served.dir, key).ok_or((StatusCode::BAD_REQUEST, "not a valid object key\n"))
}

fn failed(what: String) -> Response {
    tracing::warn!(error = %what, "volume store call failed");
    (StatusCode::INTERNAL_SERVER_ERROR, what).into_response()
}

async fn read(State(served): State<Served>, UrlPath(key): UrlPath<String>, headers: HeaderMap) -> Response {
    let file = match addressed(&served, &headers, &key) {
        Ok(file) => file,
        Err(refused) => return refused.into_response(),
    };
    let opened = match tokio::fs::File::open(&file).await {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, format!("no object {key}\n")).into_response();
        }
        Err(e) => return failed(format!("opening {key}: {e}")),
    };
    let size = match opened.metadata().await {
        Ok(metadata) => metadata.len(),
        Err(e) => return failed(format!("reading the size of {key}: {e}")),
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    ([(header::CONTENT_LENGTH, size.to_string())], body).into_response()
}

async fn write(
    State(served): State<Served>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let file = match addressed(&served, &headers, &key) {
        Ok(file) => file,
        Err(refused) => return refused.into_response(),
    };
    match store(&file, body).await {
        Ok(size) => {
            tracing::info!(key = %key, bytes = size, "stored");
            (StatusCode::CREATED, format!("{size}\n")).into_response()
        }
        Err(why) => failed(format!("storing {key}: {why}")),
    }
}

/// Writes the body beside `file`, then renames it into place once synced; returns its size.
async fn store(file: &Path, body: Body) -> Result<u64, String> {
    let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
        return Err("the key names no file".into());
    };
    tokio::fs::create_dir_all(parent).await.map_err(|e| format!("making its folder: {e}"))?;
    let partial = parent.join(format!(".{}.partial", name.to_string_lossy()));
    let written = async {
        let mut out = tokio::fs::File::create(&partial).await.map_err(|e| format!("creating it: {e}"))?;
        let mut chunks = body.into_data_stream();
        let mut size = 0u64;
        while let Some(chunk) = chunks.try_next().await.map_err(|e| format!("receiving it: {e}"))? {
            out.write_all(&chunk).await.map_err(|e| format!("writing it: {e}"))?;
            size += chunk.len() as u64;
        }
        out.sync_all().await.map_err(|e| format!("syncing it: {e}"))?;
        Ok::<_, String>(size)
    }
    .await;
    let size = match written {
        Ok(size) => size,
        Err(why) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(why);
        }
    };
    tokio::fs::rename(&partial, file).await.map_err(|e| format!("renaming it into place: {e}"))?;
    // The rename is durable once the folder is synced.
    if let Ok(folder) = tokio::fs::File::open(parent).await {
        let _ = folder.sync_all().await;
    }
    Ok(size)
}

async fn remove(State(served): State<Served>, UrlPath(key): UrlPath<String>, headers: HeaderMap) -> Response {
    let file = match addressed(&served, &headers, &key) {
        Ok(file) => file,
        Err(refused) => return refused.into_response(),
    };
    match tokio::fs::remove_file(&file).await {
        Ok(()) => {
            tracing::info!(key = %key, "deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        // Deleting what is gone is done.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(format!("deleting {key}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_the_folder_and_clear_of_files_being_written() {
        let dir = Path::new("/store");
        assert_eq!(
            file_of(dir, "ns/demo/20260101T000000Z-b.db"),
            Some(PathBuf::from("/store/ns/demo/20260101T000000Z-b.db"))
        );
        for refused in ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", ".a.partial", "a/.b", "a/", "a\0b"] {
            assert_eq!(file_of(dir, refused), None, "{refused:?}");
        }
    }

    #[test]
    fn only_the_stores_token_is_admitted() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().expect("a header value"));
            headers
        };
        assert!(admitted(&with("Bearer s3cret"), "s3cret"));
        assert!(!admitted(&with("Bearer s3cres"), "s3cret"));
        assert!(!admitted(&with("Bearer s3cret2"), "s3cret"));
        assert!(!admitted(&with("s3cret"), "s3cret"));
        assert!(!admitted(&HeaderMap::new(), "s3cret"));
    }
}
