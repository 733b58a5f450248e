//! Keeping members' databases small: what spec.maintenance asks, the defragmentations, compactions and
//! disarms the planner decides, and their records in status.

use etcd_op_api::v1::{
    ANNOTATION_DEFRAGMENT, ANNOTATION_DEFRAGMENT_MEMBER, CompactionRecord, DefragmentationRecord, EtcdCluster,
    MemberStatus, NoSpacePolicy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

use super::error::Error;
use kube::ResourceExt;

use super::model::{DefragmentationReason, DefragmentationRequest, DefragmentationRule, Maintenance, Observation};
use super::resources::quantity_bytes;
use crate::etcd::EtcdApi;

/// spec.maintenance (its defaults when unset), with the last compaction recorded in status.
pub fn observe(ec: &EtcdCluster, now: Timestamp) -> Maintenance {
    let spec = ec.spec.maintenance.clone().unwrap_or_default();
    let defrag = &spec.defragmentation;
    let percent = |p: i32| u64::try_from(p.clamp(1, 100)).unwrap_or(100);
    Maintenance {
        defragmentation: defrag.enabled.then(|| DefragmentationRule {
            // The API accepts only positive quantities; one it could not read makes nobody due by free space.
            reclaimable_bytes: quantity_bytes(&defrag.reclaimable.0).filter(|b| *b > 0).unwrap_or(u64::MAX),
            fragmentation_percent: percent(defrag.fragmentation_percent),
            quota_use_percent: percent(defrag.quota_use_percent),
            min_interval_secs: u64::try_from(defrag.min_interval_seconds).unwrap_or(0),
        }),
        recover_no_space: spec.no_space == NoSpacePolicy::Recover,
        compacted_revision: ec.status.as_ref().and_then(|s| s.last_compaction.as_ref()).map(|c| c.revision),
        requested: requested(ec, now),
    }
}

/// The defragmentation asked for by annotation; a time that cannot be read asks for nothing.
fn requested(ec: &EtcdCluster, now: Timestamp) -> Option<DefragmentationRequest> {
    let annotations = ec.annotations();
    let asked: Timestamp = annotations.get(ANNOTATION_DEFRAGMENT)?.parse().ok()?;
    Some(DefragmentationRequest {
        member: annotations.get(ANNOTATION_DEFRAGMENT_MEMBER).cloned(),
        secs_ago: u64::try_from(now.as_second().saturating_sub(asked.as_second())).unwrap_or(0),
    })
}

/// Seconds since the operator last defragmented `member`, as its status records.
pub fn defragmented_secs_ago(ec: &EtcdCluster, member: &str, now: Timestamp) -> Option<u64> {
    let record = ec.status.as_ref()?.members.iter().find(|m| m.name == member)?.last_defragmentation.as_ref()?;
    u64::try_from(now.as_second().saturating_sub(record.time.0.as_second())).ok()
}

/// Defragments `name` and returns its database size once done (`None` when it did not say).
pub async fn defragment(etcd: &dyn EtcdApi, obs: &Observation, name: &str) -> Result<Option<i64>, Error> {
    let endpoint = obs.member(name).and_then(|m| m.pod.as_ref()?.endpoint.as_deref()).ok_or_else(|| {
        Error::StepNotPossible { step: "Defragment", why: format!("member {name} has no address to be reached at") }
    })?;
    etcd.defragment(endpoint).await?;
    Ok(etcd.status(endpoint).await.ok().map(|s| s.db_size))
}

/// What a maintenance step that succeeded leaves in status: a member's defragmentation, or a compaction.
/// Other steps leave nothing.
#[derive(Debug, Default)]
pub struct MaintenanceRecord {
    pub defragmented: Option<(String, DefragmentationRecord)>,
    pub compacted: Option<CompactionRecord>,
}

impl MaintenanceRecord {
    pub fn defragmentation(
        obs: &Observation,
        name: &str,
        reason: DefragmentationReason,
        size_after: Option<i64>,
    ) -> Self {
        let size_before =
            obs.member(name).and_then(|m| m.etcd.as_ref()?.health.as_ref()).map_or(0, |h| h.db_size_bytes);
        let record = DefragmentationRecord {
            time: MicroTime(Timestamp::now()),
            size_before,
            size_after,
            reason: reason.as_str().to_string(),
        };
        MaintenanceRecord { defragmented: Some((name.to_string(), record)), compacted: None }
    }

    pub fn compaction(revision: i64) -> Self {
        MaintenanceRecord {
            defragmented: None,
            compacted: Some(CompactionRecord { time: Time(Timestamp::now()), revision }),
        }
    }

    /// Writes the records into a status computed before the step.
    pub fn record(self, members: &mut [MemberStatus], last_compaction: &mut Option<CompactionRecord>) {
        if let Some((name, record)) = self.defragmented
            && let Some(member) = members.iter_mut().find(|m| m.name == name)
        {
            member.last_defragmentation = Some(record);
        }
        if let Some(compaction) = self.compacted {
            *last_compaction = Some(compaction);
        }
    }
}
