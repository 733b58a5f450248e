//! Plan: when a schedule's next backup is due, and which of its backups the retention policy lets go. Pure.

use etcd_op_api::v1::BackupPhase;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::cron::Cron;

/// Due times looked at when catching up after the operator was away: only the latest is taken.
const CATCH_UP_LIMIT: usize = 100_000;

/// The latest run due after `since` and no later than `now`: the one to take now. Runs missed while the
/// operator was away are not taken one by one.
pub fn due_run(cron: &Cron, zone: &TimeZone, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let mut due = None;
    let mut after = since;
    for _ in 0..CATCH_UP_LIMIT {
        match cron.next_after(after, zone) {
            Some(next) if next <= now => {
                due = Some(next);
                after = next;
            }
            _ => break,
        }
    }
    due
}

/// One EtcdBackup a schedule created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedBackup {
    pub name: String,
    pub created: Timestamp,
    pub phase: Option<BackupPhase>,
    /// Where its snapshot is stored, once it succeeded.
    pub key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: usize,
    pub max_age_secs: Option<i64>,
    pub keep_failed: usize,
}

/// `30d` or `12h` in seconds.
pub fn parse_age(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let number: i64 = number.parse().ok()?;
    match unit {
        "h" => number.checked_mul(3600),
        "d" => number.checked_mul(86_400),
        _ => None,
    }
}

/// The backups the policy lets go. Never one that has not ended, and never the newest that succeeded: the
/// last copy of the data stays whatever the policy says.
pub fn expired(backups: &[OwnedBackup], policy: RetentionPolicy, now: Timestamp) -> Vec<&OwnedBackup> {
    let mut newest_first: Vec<&OwnedBackup> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    let succeeded = newest_first.iter().filter(|b| b.phase == Some(BackupPhase::Succeeded));
    let failed = newest_first.iter().filter(|b| b.phase == Some(BackupPhase::Failed));
    let too_old =
        |b: &OwnedBackup| policy.max_age_secs.is_some_and(|max| now.as_second() - b.created.as_second() > max);
    let mut expired: Vec<&OwnedBackup> = succeeded
        .enumerate()
        .filter(|(rank, b)| *rank > 0 && (*rank >= policy.keep_last.max(1) || too_old(b)))
        .map(|(_, b)| *b)
        .collect();
    expired.extend(failed.enumerate().filter(|(rank, b)| *rank >= policy.keep_failed || too_old(b)).map(|(_, b)| *b));
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backup(name: &str, minutes_ago: i64, phase: Option<BackupPhase>) -> OwnedBackup {
        let now = Timestamp::from_second(1_800_000_000).expect("a time");
        OwnedBackup {
            name: name.into(),
            created: Timestamp::from_second(now.as_second() - minutes_ago * 60).expect("a time"),
            phase,
            key: phase.filter(|p| *p == BackupPhase::Succeeded).map(|_| format!("{name}.db")),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("a time")
    }

    fn names(expired: Vec<&OwnedBackup>) -> Vec<&str> {
        let mut names: Vec<&str> = expired.iter().map(|b| b.name.as_str()).collect();
        names.sort();
        names
    }

    const OK: Option<BackupPhase> = Some(BackupPhase::Succeeded);
    const FAILED: Option<BackupPhase> = Some(BackupPhase::Failed);
    const RUNNING: Option<BackupPhase> = Some(BackupPhase::Running);

    #[test]
    fn the_oldest_beyond_keep_last_go() {
        let backups = [backup("a", 40, OK), backup("b", 30, OK), backup("c", 20, RUNNING), backup("d", 10, OK)];
        let policy = RetentionPolicy { keep_last: 2, max_age_secs: None, keep_failed: 3 };
        assert_eq!(names(expired(&backups, policy, now())), ["a"]);
    }

    #[test]
    fn age_lets_go_of_all_but_the_newest_success() {
        let backups = [backup("a", 3000, OK), backup("b", 2000, OK), backup("c", 5, FAILED), backup("d", 4000, FAILED)];
        let policy = RetentionPolicy { keep_last: 10, max_age_secs: Some(3600), keep_failed: 3 };
        assert_eq!(names(expired(&backups, policy, now())), ["a", "d"], "b is the newest success, kept although old");
    }

    #[test]
    fn failed_backups_beyond_keep_failed_go() {
        let backups = [backup("a", 30, FAILED), backup("b", 20, FAILED), backup("c", 10, FAILED), backup("d", 5, OK)];
        let policy = RetentionPolicy { keep_last: 1, max_age_secs: None, keep_failed: 1 };
        assert_eq!(names(expired(&backups, policy, now())), ["a", "b"]);
    }

    #[test]
    fn a_missed_run_is_taken_once_at_its_latest_due_time() {
        let cron = Cron::parse("*/10 * * * *").expect("parses");
        let since: Timestamp = "2026-12-06T09:00:00Z".parse().expect("time");
        let now: Timestamp = "2026-12-06T09:47:00Z".parse().expect("time");
        assert_eq!(due_run(&cron, &TimeZone::UTC, since, now), Some("2026-12-06T09:40:00Z".parse().expect("time")));
        let early: Timestamp = "2026-12-06T09:05:00Z".parse().expect("time");
        assert_eq!(due_run(&cron, &TimeZone::UTC, since, early), None);
    }

    #[test]
    fn ages_read_as_written() {
        assert_eq!(parse_age("30d"), Some(30 * 86_400));
        assert_eq!(parse_age("12h"), Some(12 * 3600));
        assert_eq!(parse_age("12m"), None);
        assert_eq!(parse_age(""), None);
    }

    fn any_backups() -> impl Strategy<Value = Vec<OwnedBackup>> {
        let phase = prop_oneof![Just(None), Just(RUNNING), Just(OK), Just(FAILED), Just(Some(BackupPhase::Pending))];
        proptest::collection::vec((0i64..10_000, phase), 0..12).prop_map(|backups| {
            backups.into_iter().enumerate().map(|(i, (age, phase))| backup(&format!("b{i}"), age, phase)).collect()
        })
    }

    proptest! {
        #[test]
        fn retention_never_lets_go_of_the_newest_success_or_an_unfinished_backup(
            backups in any_backups(), keep_last in 1usize..5, keep_failed in 0usize..4, max_age in proptest::option::of(60i64..500_000)
        ) {
            let policy = RetentionPolicy { keep_last, max_age_secs: max_age, keep_failed };
            let gone = expired(&backups, policy, now());
            prop_assert!(gone.iter().all(|b| b.phase.is_some_and(BackupPhase::is_final)), "only ended backups go");
            let newest_success = backups.iter().filter(|b| b.phase == OK).max_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
            if let Some(newest) = newest_success {
                prop_assert!(!gone.iter().any(|b| b.name == newest.name), "the newest success stays");
            }
            let kept_successes = backups.iter().filter(|b| b.phase == OK).count() - gone.iter().filter(|b| b.phase == OK).count();
            if max_age.is_none() {
                prop_assert_eq!(kept_successes, backups.iter().filter(|b| b.phase == OK).count().min(keep_last));
            }
        }
    }
}
