//! Cron schedules: five fields (minute, hour, day of month, month, day of week) with `*`, lists, ranges and
//! steps, or a named schedule, read in a time zone. As in cron, when both day fields are restricted a day
//! matching either runs.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    days_of_month_restricted: bool,
    days_of_week_restricted: bool,
}

/// Days searched for the next run: a schedule on the 29th of February runs within eight years.
const SEARCH_DAYS: i64 = 8 * 366;

impl Cron {
    pub fn parse(expression: &str) -> Result<Self, String> {
        let expanded = match expression.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!("{expression:?}: a schedule has five fields (minute hour day month weekday)"));
        };
        let field = |text: &str, name: &str, min: u32, max: u32| {
            bits(text, min, max).map_err(|why| format!("{expression:?}: the {name} field {text:?} {why}"))
        };
        // Sunday is 0, and 7 as well.
        let weekdays = field(weekday, "day-of-week", 0, 7)?;
        Ok(Cron {
            minutes: field(minute, "minute", 0, 59)?,
            hours: u32::try_from(field(hour, "hour", 0, 23)?).map_err(|_| "hours".to_string())?,
            days_of_month: u32::try_from(field(day, "day-of-month", 1, 31)?).map_err(|_| "days".to_string())?,
            months: u16::try_from(field(month, "month", 1, 12)?).map_err(|_| "months".to_string())?,
            days_of_week: u8::try_from((weekdays | (weekdays >> 7)) & 0x7f).map_err(|_| "weekdays".to_string())?,
            days_of_month_restricted: day != "*",
            days_of_week_restricted: weekday != "*",
        })
    }

    fn runs_on(&self, date: Date) -> bool {
        let month_ok = self.months & (1 << date.month()) != 0;
        let day_ok = self.days_of_month & (1 << date.day()) != 0;
        let weekday_ok = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        let day_matches = match (self.days_of_month_restricted, self.days_of_week_restricted) {
            (true, true) => day_ok || weekday_ok,
            (true, false) => day_ok,
            (false, true) => weekday_ok,
            (false, false) => true,
        };
        month_ok && day_matches
    }

    /// The first run strictly after `after`, in `zone`. A wall-clock time that a daylight-saving change skips
    /// runs at the first instant after the gap; one that repeats runs once, at its first occurrence.
    pub fn next_after(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(zone.clone()).datetime();
        let mut date = start.date();
        for _ in 0..SEARCH_DAYS {
            if self.runs_on(date) {
                for hour in (0..24i8).filter(|h| self.hours & (1 << h) != 0) {
                    for minute in (0..60i8).filter(|m| self.minutes & (1 << m) != 0) {
                        let at = DateTime::from_parts(date, jiff::civil::time(hour, minute, 0, 0));
                        if at <= start {
                            continue;
                        }
                        let when = zone.to_ambiguous_timestamp(at).compatible().ok()?;
                        if when > after {
                            return Some(when);
                        }
                    }
                }
            }
            date = date.checked_add(1.day()).ok()?;
        }
        None
    }
}

/// The bit set of the values a field names, within `min..=max`.
fn bits(field: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut set = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("has a step that is not a number: {step:?}"))?;
                if step == 0 {
                    return Err("has a step of 0".into());
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((low, high)) => (number(low)?, number(high)?),
                // `5/15` runs from 5 to the end of the range.
                None if part.contains('/') => (number(range)?, max),
                None => (number(range)?, number(range)?),
            },
        };
        if low < min || high > max || low > high {
            return Err(format!("is outside {min}-{max}"));
        }
        for value in (low..=high).step_by(step as usize) {
            set |= 1 << value;
        }
    }
    Ok(set)
}

fn number(text: &str) -> Result<u32, String> {
    text.parse().map_err(|_| format!("has {text:?}, not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn next(expression: &str, after: &str, zone: &str) -> String {
        let zone = TimeZone::get(zone).expect("a zone");
        Cron::parse(expression).expect("parses").next_after(at(after), &zone).expect("a next run").to_string()
    }

    #[test]
    fn the_next_run_follows_the_fields() {
        assert_eq!(next("* * * * *", "2026-12-06T09:15:30Z", "UTC"), "2026-12-06T09:16:00Z");
        assert_eq!(next("*/15 * * * *", "2026-12-06T09:15:00Z", "UTC"), "2026-12-06T09:30:00Z");
        assert_eq!(next("0 */6 * * *", "2026-12-06T09:15:00Z", "UTC"), "2026-12-06T12:00:00Z");
        assert_eq!(next("@daily", "2026-12-06T09:15:00Z", "UTC"), "2026-12-07T00:00:00Z");
        assert_eq!(next("30 2 * * 1-5", "2026-12-05T09:00:00Z", "UTC"), "2026-12-07T02:30:00Z", "Saturday to Monday");
        assert_eq!(next("0 0 29 2 *", "2026-12-06T09:15:00Z", "UTC"), "2028-02-29T00:00:00Z");
        // Both day fields restricted: either matches (the 1st, or a Sunday).
        assert_eq!(next("0 0 1 * 0", "2026-12-02T00:00:00Z", "UTC"), "2026-12-06T00:00:00Z");
        assert_eq!(next("0 0 * * 7", "2026-12-02T00:00:00Z", "UTC"), "2026-12-06T00:00:00Z", "7 is Sunday too");
    }

    #[test]
    fn a_time_zone_moves_the_run_and_follows_daylight_saving() {
        assert_eq!(next("0 3 * * *", "2026-12-06T09:15:00Z", "Europe/Berlin"), "2026-12-07T02:00:00Z");
        // 02:30 does not exist in Berlin on 2027-03-28: the run comes right after the gap.
        assert_eq!(next("30 2 * * *", "2027-03-27T12:00:00Z", "Europe/Berlin"), "2027-03-28T01:30:00Z");
    }

    #[test]
    fn a_malformed_schedule_says_which_field() {
        for (bad, word) in [
            ("* * * *", "five fields"),
            ("61 * * * *", "minute"),
            ("* * * 13 *", "month"),
            ("*/0 * * * *", "step"),
            ("a * * * *", "minute"),
        ] {
            let error = Cron::parse(bad).expect_err(bad);
            assert!(error.contains(word), "{bad}: {error}");
        }
    }

    proptest! {
        #[test]
        fn the_next_run_is_later_matches_the_schedule_and_skips_no_run(
            minute in 0u32..60, hour in 0u32..24, step in 1u32..30, start in 1_700_000_000i64..1_900_000_000
        ) {
            let expression = format!("{minute}/{step} {hour} * * *");
            let cron = Cron::parse(&expression).expect("parses");
            let after = Timestamp::from_second(start).expect("a time");
            let next = cron.next_after(after, &TimeZone::UTC).expect("a next run");
            prop_assert!(next > after);
            let civil = next.to_zoned(TimeZone::UTC).datetime();
            prop_assert_eq!(civil.hour() as u32, hour);
            prop_assert!((civil.minute() as u32) >= minute && (civil.minute() as u32 - minute).is_multiple_of(step));
            // No whole minute between the two matches.
            let mut minute_start = (start / 60 + 1) * 60;
            while minute_start < next.as_second() {
                let c = Timestamp::from_second(minute_start).expect("a time").to_zoned(TimeZone::UTC).datetime();
                let (h, m) = (c.hour() as u32, c.minute() as u32);
                prop_assert!(!(h == hour && m >= minute && (m - minute).is_multiple_of(step)), "{} was skipped", c);
                minute_start += 60;
            }
        }
    }
}
