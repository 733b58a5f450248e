//! etcd's last words: whether a member's etcd exited because its data is gone, in which case waiting cannot
//! help and the member is replaced at once. The container's termination message (the end of its log, at
//! most 2 KiB) says so when etcd exits with a one-line fatal error. A panic's stack trace can push etcd's own
//! message out of those 2 KiB, so for a container that is down without that answer, the end of the
//! terminated container's log is read: once per termination (pod UID and restart count), never for a
//! running container.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, LogParams};
use kube::{Client, ResourceExt};

/// What etcd says when it exits because its data is gone: it was emptied after the member had joined (a
/// member started with `--initial-cluster-state=new` finds itself already bootstrapped; one that joined later
/// finds its log behind the commit index the leader sends).
const DATA_LOST: [&str; 2] = ["has already been bootstrapped", "Was the raft log corrupted, truncated, or lost?"];

/// Lines of the log read back: etcd's panic message comes before a trace of a few dozen lines.
const TAIL_LINES: i64 = 500;
/// Verdicts kept at most; the cache starts again when full (each entry is one termination of one pod).
const MAX_VERDICTS: usize = 4096;

pub fn says_data_lost(text: &str) -> bool {
    DATA_LOST.iter().any(|sign| text.contains(sign))
}

/// The last words of the etcd container that is not running now: its own termination, or, while it waits to
/// be started again (a crash loop), the termination before. A running container's earlier termination is
/// history: whatever it said was repaired, or the container would not run.
pub fn current_termination(status: &ContainerStatus) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    let state = status.state.as_ref();
    if state.is_some_and(|s| s.running.is_some()) {
        return None;
    }
    state.and_then(|s| s.terminated.as_ref()).or_else(|| status.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
}

pub fn etcd_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == "etcd")
}

/// The verdicts read from logs, by pod UID: the restart count they were read at, and whether etcd said its
/// data is gone.
#[derive(Default)]
pub struct LastWords {
    verdicts: Mutex<HashMap<String, (i32, bool)>>,
}

impl LastWords {
    /// Whether the log of `pod`'s etcd container, down now after a failure, says its data is gone. `None`
    /// when there is nothing to read (running, never terminated, a clean exit) or the log could not be read.
    pub async fn data_lost(&self, client: &Client, pod: &Pod) -> Option<bool> {
        let status = etcd_status(pod)?;
        let terminated = current_termination(status)?;
        if terminated.exit_code == 0 {
            return None;
        }
        let uid = pod.uid()?;
        if let Some((restarts, verdict)) = self.verdicts.lock().ok()?.get(&uid)
            && *restarts == status.restart_count
        {
            return Some(*verdict);
        }
        // While the container waits to be started again, its last words are in the previous container's log.
        let previous = status.state.as_ref().is_some_and(|s| s.terminated.is_none());
        let params = LogParams {
            container: Some("etcd".into()),
            previous,
            tail_lines: Some(TAIL_LINES),
            ..LogParams::default()
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace()?);
        let log = api.logs(&pod.name_any(), &params).await.ok()?;
        let verdict = says_data_lost(&log);
        if let Ok(mut verdicts) = self.verdicts.lock() {
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.clear();
            }
            verdicts.insert(uid, (status.restart_count, verdict));
        }
        Some(verdict)
    }
}
