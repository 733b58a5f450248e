//! Maintenance decisions: defragmentation by need, and recovery from NOSPACE. Both change no membership and
//! touch one member at a time, the leader last; both run only while every member answers and is caught up.

use super::super::model::{Alarm, DefragmentationReason, DefragmentationRule, Maintenance, Member, MemberHealth};
use super::{Activity, Blocker, Cluster, Decision, LEARNER_CATCH_UP_ENTRIES, Step};

/// During a NOSPACE recovery, a member with this much free space in its file is defragmented.
pub const NO_SPACE_FREE_BYTES: u64 = 1024 * 1024;

/// A NOSPACE alarm is disarmed once every member's database file is at most this share of its quota, so that
/// writes do not raise it again at once.
pub const NO_SPACE_DISARM_PERCENT: u64 = 90;

/// Why `m` is due for a defragmentation: asked for by hand and not done since, or needed under the rule.
pub fn due(maintenance: &Maintenance, m: &Member) -> Option<DefragmentationReason> {
    let asked = maintenance.requested.as_ref().is_some_and(|request| {
        request.member.as_ref().is_none_or(|name| *name == m.name)
            && m.defragmented_secs_ago.is_none_or(|ago| ago > request.secs_ago)
    });
    if asked {
        return Some(DefragmentationReason::Requested);
    }
    needed(maintenance.defragmentation.as_ref()?, m)
}

/// Why `m` is due for a defragmentation by need under `rule`, if it is.
fn needed(rule: &DefragmentationRule, m: &Member) -> Option<DefragmentationReason> {
    let health = m.etcd.as_ref()?.health.as_ref()?;
    if m.defragmented_secs_ago.is_some_and(|secs| secs < rule.min_interval_secs) {
        return None;
    }
    let free = health.reclaimable_bytes();
    if free > 0 && free >= rule.reclaimable_bytes {
        return Some(DefragmentationReason::Reclaimable);
    }
    let size = health.db_size();
    let quota = quota_of(m);
    let fragmented = size > 0 && percent_at_least(free, size, rule.fragmentation_percent);
    let near_quota = quota > 0 && percent_at_least(size, quota, rule.quota_use_percent);
    (fragmented && near_quota).then_some(DefragmentationReason::Fragmented)
}

/// `part` is at least `percent`% of `whole`.
fn percent_at_least(part: u64, whole: u64, percent: u64) -> bool {
    u128::from(part) * 100 >= u128::from(whole) * u128::from(percent)
}

/// `part` is at most `percent`% of `whole`, which is known (not zero).
fn at_most_percent(part: u64, whole: u64, percent: u64) -> bool {
    whole > 0 && u128::from(part) * 100 <= u128::from(whole) * u128::from(percent)
}

fn quota_of(m: &Member) -> u64 {
    m.pod.as_ref().map_or(0, |p| p.quota_bytes)
}

fn health(m: &Member) -> Option<&MemberHealth> {
    m.etcd.as_ref()?.health.as_ref()
}

impl Cluster<'_> {
    /// Every member is a voter whose pod is ready and who answers as a member of this cluster: a member may
    /// go away for its defragmentation without putting quorum at risk. Errors are not asked about here:
    /// under NOSPACE every member reports one.
    fn all_serving(&self) -> bool {
        self.voters() > 0 && self.members().all(|m| self.serves(m))
    }

    fn serves(&self, m: &Member) -> bool {
        m.is_voter() && m.answers(self.cluster_id) && m.pod.as_ref().is_some_and(|p| p.ready && !p.terminating)
    }

    /// The member to work on among `candidates`: followers first, in ordinal order; the leader only when no
    /// follower is left, and then leadership moves away first. `None` when there is no candidate.
    fn next_in_turn<'m>(&self, candidates: impl Iterator<Item = &'m Member>, purpose: &str) -> Option<MemberTurn<'m>> {
        let m = candidates.min_by_key(|m| (self.is_leader(m), m.ordinal))?;
        if self.is_leader(m) && self.voters() > 1 {
            // A follower that serves takes over: under NOSPACE every member reports the alarm as an error.
            let to = self.members().filter(|o| !self.is_leader(o) && self.serves(o)).max_by_key(|o| o.applied_index());
            return Some(match to.and_then(|to| Some((to, to.id()?))) {
                Some((to, to_id)) => MemberTurn::MoveLeaderFirst((
                    Step::MoveLeader { to: to.name.clone(), to_id },
                    Activity::Idle,
                    format!("moving leadership to {} before {purpose}", to.name),
                )),
                None => MemberTurn::Wait(format!("no follower can take over leadership before {purpose}")),
            });
        }
        if let Some((behind, entries)) = self.furthest_behind().filter(|(_, e)| *e > LEARNER_CATCH_UP_ENTRIES) {
            return Some(MemberTurn::Wait(format!(
                "member {} is {entries} entries behind the leader; waiting for it to catch up before {purpose} of {}",
                behind.name, m.name
            )));
        }
        Some(MemberTurn::Go(m))
    }

    /// A member whose database file holds more free space than spec.maintenance allows, or whose
    /// defragmentation was asked for, is defragmented while the cluster is whole and healthy.
    pub(super) fn defragment_by_need(&self) -> Option<Decision> {
        let due: Vec<(&Member, DefragmentationReason)> =
            self.members().filter_map(|m| Some((m, due(&self.obs.maintenance, m)?))).collect();
        if due.is_empty() {
            return None;
        }
        let whole = self.members().all(|m| m.is_voter() && m.is_healthy(self.cluster_id));
        if !whole || !self.obs.alarms.is_empty() {
            return None;
        }
        let turn = self.next_in_turn(due.iter().map(|(m, _)| *m), "the leader's defragmentation")?;
        Some(match turn {
            MemberTurn::MoveLeaderFirst((step, _, why)) => (step, Activity::Idle, why),
            MemberTurn::Wait(why) => (Step::Wait, Activity::Idle, why),
            MemberTurn::Go(m) => {
                let reason = due.iter().find(|(d, _)| d.name == m.name).map(|(_, r)| *r)?;
                let health = health(m)?;
                let why = match reason {
                    DefragmentationReason::Requested => format!(
                        "asked for by the etcd.cloud.io/defragment annotation ({} MiB of its {} MiB file is free)",
                        health.reclaimable_bytes() / MIB,
                        health.db_size() / MIB
                    ),
                    DefragmentationReason::Fragmented => format!(
                        "{}% of its {} MiB database file is free while the file fills {}% of its quota",
                        health.reclaimable_bytes() * 100 / health.db_size().max(1),
                        health.db_size() / MIB,
                        health.db_size() * 100 / quota_of(m).max(1)
                    ),
                    _ => format!(
                        "{} MiB of its {} MiB database file is free",
                        health.reclaimable_bytes() / MIB,
                        health.db_size() / MIB
                    ),
                };
                (
                    Step::Defragment { name: m.name.clone(), reason },
                    Activity::Idle,
                    format!("defragmenting member {}: {why}", m.name),
                )
            }
        })
    }

    /// spec.maintenance.noSpace is `Recover` and etcd raised NOSPACE: compact the history, defragment the
    /// members one at a time, the leader last, then disarm the alarm once space is back.
    pub(super) fn recover_space(&self) -> Decision {
        let healing = |step: Step, why: String| (step, Activity::Healing, why);
        if !self.all_serving() {
            return healing(
                Step::Wait,
                "etcd raised NOSPACE: waiting for every member to answer before compacting and defragmenting".into(),
            );
        }
        let Some(revision) = self.members().find(|m| self.is_leader(m)).and_then(health).map(|h| h.revision) else {
            return healing(Step::Wait, "etcd raised NOSPACE: waiting for the leader to report its revision".into());
        };
        if self.obs.maintenance.compacted_revision.is_none_or(|done| done < revision) {
            return healing(
                Step::Compact { revision },
                format!("etcd raised NOSPACE: compacting the history up to revision {revision} to free space"),
            );
        }
        let fragmented =
            self.members().filter(|m| health(m).is_some_and(|h| h.reclaimable_bytes() >= NO_SPACE_FREE_BYTES));
        if let Some(turn) = self.next_in_turn(fragmented, "the leader's defragmentation") {
            return match turn {
                MemberTurn::MoveLeaderFirst((step, _, why)) => (step, Activity::Healing, why),
                MemberTurn::Wait(why) => healing(Step::Wait, why),
                MemberTurn::Go(m) => healing(
                    Step::Defragment { name: m.name.clone(), reason: DefragmentationReason::NoSpace },
                    format!(
                        "etcd raised NOSPACE: defragmenting member {} ({} MiB of its file is free)",
                        m.name,
                        health(m).map_or(0, MemberHealth::reclaimable_bytes) / MIB
                    ),
                ),
            };
        }
        let full: Vec<String> = self
            .members()
            .filter(|m| {
                let size = health(m).map_or(u64::MAX, MemberHealth::db_size);
                !at_most_percent(size, quota_of(m), NO_SPACE_DISARM_PERCENT)
            })
            .map(|m| {
                let size = health(m).map_or(0, MemberHealth::db_size);
                format!("{} ({} of {} MiB)", m.name, size / MIB, quota_of(m) / MIB)
            })
            .collect();
        if full.is_empty() {
            let members: Vec<&str> =
                self.obs.alarms.iter().filter(|a| a.alarm == Alarm::NoSpace).map(|a| a.member.as_str()).collect();
            return healing(
                Step::DisarmNoSpace,
                format!(
                    "every member's database is under {NO_SPACE_DISARM_PERCENT}% of its quota again: disarming \
                     NOSPACE for {}",
                    members.join(", ")
                ),
            );
        }
        (
            Step::Wait,
            Activity::Blocked(Blocker::AlarmNoSpace),
            format!(
                "etcd raised NOSPACE; the history is compacted up to revision {revision} and every member \
                 defragmented, yet the data in use still fills {}: delete keys (the operator compacts again) \
                 or give the members larger volumes",
                full.join(", ")
            ),
        )
    }
}

const MIB: u64 = 1024 * 1024;

enum MemberTurn<'m> {
    Go(&'m Member),
    MoveLeaderFirst(Decision),
    Wait(String),
}
