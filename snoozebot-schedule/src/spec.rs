//! What a schedule is — weekdays and times in a time zone, with days off — and what it wants an
//! instance to be at a given moment, across daylight-saving changes.
//!
//! A schedule is a list of transitions: on these weekdays at this local time, instances should
//! become running (or stopped). What it wants now is what its latest transition said. A
//! transition at a local time a DST change skips (02:30 on the spring-forward night in Berlin)
//! takes effect when the clock has moved past the gap: at the same distance from the gap's
//! start, one hour later in wall time (03:30); one at a local time that happens twice (the
//! fall-back night) takes effect at its first occurrence. These are RFC 5545's rules, as jiff
//! implements them ("compatible").

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use crate::ScheduleError;

/// How far back the latest transition is looked for.
const LOOK_BACK_DAYS: i32 = 45;

/// A set of weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Weekdays(u8);

impl Weekdays {
    /// Every day.
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    /// Monday to Friday.
    pub const WORKDAYS: Weekdays = Weekdays(0b001_1111);

    fn bit(day: Weekday) -> u8 {
        1 << day.to_monday_zero_offset()
    }

    /// Just `day`.
    pub fn only(day: Weekday) -> Self {
        Weekdays(Self::bit(day))
    }

    /// `from` to `to`, wrapping past Sunday (`Fri-Mon` is Friday to Monday).
    pub fn range(from: Weekday, to: Weekday) -> Self {
        let mut days = Weekdays::default();
        let mut day = from;
        loop {
            days.0 |= Self::bit(day);
            if day == to {
                return days;
            }
            day = day.next();
        }
    }

    /// Both sets' days.
    pub fn union(self, other: Weekdays) -> Self {
        Weekdays(self.0 | other.0)
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & Self::bit(day) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The day after each day of the set.
    pub fn next_days(self) -> Self {
        Weekdays(((self.0 << 1) | (self.0 >> 6)) & 0b111_1111)
    }
}

impl fmt::Display for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let names: Vec<&str> = (0..7)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect();
        f.write_str(&names.join(","))
    }
}

/// A time of day, to the minute: `00:00` to `24:00` (the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    minutes: u16,
}

impl LocalTime {
    /// The end of the day, `24:00`.
    pub const END_OF_DAY: LocalTime = LocalTime { minutes: 24 * 60 };

    /// `hour:minute`; `24:00` is the end of the day.
    pub fn new(hour: u8, minute: u8) -> Result<Self, ScheduleError> {
        let minutes = u16::from(hour) * 60 + u16::from(minute);
        if minute >= 60 || minutes > 24 * 60 {
            return Err(ScheduleError::new(format!(
                "{hour:02}:{minute:02} is not a time of day (00:00 to 24:00)"
            )));
        }
        Ok(LocalTime { minutes })
    }

    /// The hour (0–24).
    pub fn hour(self) -> u8 {
        (self.minutes / 60) as u8
    }

    /// The minute (0–59).
    pub fn minute(self) -> u8 {
        (self.minutes % 60) as u8
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

/// What a schedule wants an instance to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Desired {
    /// Running.
    Running,
    /// Stopped (or whatever stop mode the schedule uses).
    Stopped,
}

impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
        })
    }
}

/// On `days` at `at` (local time, before `24:00`), instances should become `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The weekdays it happens on.
    pub days: Weekdays,
    /// When, in the schedule's time zone.
    pub at: LocalTime,
    /// What instances should become.
    pub to: Desired,
}

/// Running on `days` from `begin` to `end`; an `end` at or before `begin` is on the next day
/// (`Fri 22:00-06:00` runs into Saturday morning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The weekdays it begins on.
    pub days: Weekdays,
    /// When it begins.
    pub begin: LocalTime,
    /// When it ends.
    pub end: LocalTime,
}

impl Period {
    /// Its two transitions: running at the beginning, stopped at the end.
    pub fn transitions(&self) -> [Transition; 2] {
        let normalise = |days: Weekdays, at: LocalTime| {
            if at == LocalTime::END_OF_DAY {
                (days.next_days(), LocalTime { minutes: 0 })
            } else {
                (days, at)
            }
        };
        let (begin_days, begin) = normalise(self.days, self.begin);
        let end_days = if self.end <= self.begin {
            self.days.next_days()
        } else {
            self.days
        };
        let (end_days, end) = normalise(end_days, self.end);
        [
            Transition {
                days: begin_days,
                at: begin,
                to: Desired::Running,
            },
            Transition {
                days: end_days,
                at: end,
                to: Desired::Stopped,
            },
        ]
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}-{}", self.days, self.begin, self.end)
    }
}

/// What a schedule wants at a moment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The state wanted.
    pub desired: Desired,
    /// The transition that decided it (`None` on a day off, or when no transition happened
    /// in the last 45 days).
    pub since: Option<Timestamp>,
    /// Why, in a few words.
    pub reason: String,
}

/// A named schedule: transitions in a time zone, and dates that are off all day.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    zone_name: String,
    zone: TimeZone,
    transitions: Vec<Transition>,
    days_off: BTreeSet<Date>,
}

impl Schedule {
    /// A schedule running during `periods` in the time zone `zone` (an IANA name such as
    /// `Europe/Berlin`, or `UTC`), stopped all day on `days_off`.
    pub fn from_periods(
        name: &str,
        zone: &str,
        periods: &[Period],
        days_off: impl IntoIterator<Item = Date>,
    ) -> Result<Self, ScheduleError> {
        let transitions = periods.iter().flat_map(Period::transitions).collect();
        Schedule::from_transitions(name, zone, transitions, days_off)
    }

    /// A schedule of bare transitions (Cloud Custodian's `on=`/`off=` hours).
    pub fn from_transitions(
        name: &str,
        zone: &str,
        transitions: Vec<Transition>,
        days_off: impl IntoIterator<Item = Date>,
    ) -> Result<Self, ScheduleError> {
        let time_zone = TimeZone::get(zone)
            .map_err(|error| ScheduleError::new(format!("{zone:?} is not a time zone: {error}")))?;
        if transitions.is_empty() {
            return Err(ScheduleError::new(format!(
                "schedule {name:?} has no period"
            )));
        }
        Ok(Schedule {
            name: name.to_owned(),
            zone_name: zone.to_owned(),
            zone: time_zone,
            transitions,
            days_off: days_off.into_iter().collect(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its time zone's name.
    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// Its transitions.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// Its days off, in order.
    pub fn days_off(&self) -> impl Iterator<Item = Date> + '_ {
        self.days_off.iter().copied()
    }

    /// What it wants at `now`: what its latest transition at or before `now` said (a
    /// beginning wins over an end at the same moment); stopped all day on a day off.
    pub fn desired_at(&self, now: Timestamp) -> Verdict {
        let today = now.to_zoned(self.zone.clone()).date();
        if self.days_off.contains(&today) {
            return Verdict {
                desired: Desired::Stopped,
                since: None,
                reason: format!("{today} is a day off"),
            };
        }
        let mut latest: Option<(Timestamp, Desired, Transition)> = None;
        let mut date = today;
        for _ in 0..=LOOK_BACK_DAYS {
            if !self.days_off.contains(&date) {
                for transition in &self.transitions {
                    if !transition.days.contains(date.weekday()) {
                        continue;
                    }
                    let Some(at) = self.instant(date, transition.at) else {
                        continue;
                    };
                    if at > now {
                        continue;
                    }
                    let later = match &latest {
                        None => true,
                        Some((best, desired, _)) => {
                            at > *best
                                || (at == *best
                                    && *desired == Desired::Stopped
                                    && transition.to == Desired::Running)
                        }
                    };
                    if later {
                        latest = Some((at, transition.to, *transition));
                    }
                }
            }
            if latest.is_some() {
                break;
            }
            match date.yesterday() {
                Ok(previous) => date = previous,
                Err(_) => break,
            }
        }
        match latest {
            Some((at, desired, transition)) => Verdict {
                desired,
                since: Some(at),
                reason: format!(
                    "{} since {} {} ({})",
                    desired,
                    at.to_zoned(self.zone.clone()).date(),
                    transition.at,
                    self.zone_name
                ),
            },
            None => Verdict {
                desired: Desired::Stopped,
                since: None,
                reason: format!("no period began in the last {LOOK_BACK_DAYS} days"),
            },
        }
    }

    /// The instant `date` at `time` in the schedule's zone (a skipped time is moved past the
    /// gap, a repeated one is its first occurrence).
    fn instant(&self, date: Date, time: LocalTime) -> Option<Timestamp> {
        let civil = date.at(time.hour() as i8, time.minute() as i8, 0, 0);
        self.zone.to_ambiguous_timestamp(civil).compatible().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: &str, local: &str) -> Timestamp {
        let civil: jiff::civil::DateTime = local.parse().unwrap();
        TimeZone::get(zone)
            .unwrap()
            .to_ambiguous_timestamp(civil)
            .compatible()
            .unwrap()
    }

    fn office(zone: &str) -> Schedule {
        Schedule::from_periods(
            "office",
            zone,
            &[Period {
                days: Weekdays::WORKDAYS,
                begin: LocalTime::new(8, 0).unwrap(),
                end: LocalTime::new(19, 0).unwrap(),
            }],
            ["2026-12-25".parse().unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn office_hours_run_on_workdays_and_stop_at_night_weekends_and_days_off() {
        let office = office("Europe/Berlin");
        let cases = [
            ("2026-12-01T07:59", Desired::Stopped), // Tuesday
            ("2026-12-01T08:00", Desired::Running),
            ("2026-12-01T18:59", Desired::Running),
            ("2026-12-01T19:00", Desired::Stopped),
            ("2026-12-05T12:00", Desired::Stopped), // Saturday
            ("2026-12-07T08:30", Desired::Running), // Monday
            ("2026-12-25T12:00", Desired::Stopped), // a Friday off
        ];
        for (local, desired) in cases {
            let verdict = office.desired_at(at("Europe/Berlin", local));
            assert_eq!(verdict.desired, desired, "{local}: {}", verdict.reason);
        }
        let monday = office.desired_at(at("Europe/Berlin", "2026-12-07T07:00"));
        assert_eq!(monday.since, Some(at("Europe/Berlin", "2026-12-04T19:00")));
    }

    #[test]
    fn a_period_past_midnight_ends_the_next_morning() {
        let night = Schedule::from_periods(
            "night",
            "UTC",
            &[Period {
                days: Weekdays::only(Weekday::Friday),
                begin: LocalTime::new(22, 0).unwrap(),
                end: LocalTime::new(6, 0).unwrap(),
            }],
            [],
        )
        .unwrap();
        assert_eq!(
            night.desired_at(at("UTC", "2026-12-04T23:00")).desired,
            Desired::Running
        );
        assert_eq!(
            night.desired_at(at("UTC", "2026-12-05T05:59")).desired,
            Desired::Running
        );
        assert_eq!(
            night.desired_at(at("UTC", "2026-12-05T06:00")).desired,
            Desired::Stopped
        );
    }

    #[test]
    fn back_to_back_whole_days_stay_running_across_midnight() {
        let always = Schedule::from_periods(
            "weekdays",
            "UTC",
            &[Period {
                days: Weekdays::WORKDAYS,
                begin: LocalTime::new(0, 0).unwrap(),
                end: LocalTime::END_OF_DAY,
            }],
            [],
        )
        .unwrap();
        for local in ["2026-12-01T00:00", "2026-12-01T23:59", "2026-12-02T00:00"] {
            assert_eq!(
                always.desired_at(at("UTC", local)).desired,
                Desired::Running,
                "{local}"
            );
        }
        assert_eq!(
            always.desired_at(at("UTC", "2026-12-05T00:00")).desired,
            Desired::Stopped
        );
    }

    fn daily(zone: &str, begin: (u8, u8), end: (u8, u8)) -> Schedule {
        Schedule::from_periods(
            "daily",
            zone,
            &[Period {
                days: Weekdays::ALL,
                begin: LocalTime::new(begin.0, begin.1).unwrap(),
                end: LocalTime::new(end.0, end.1).unwrap(),
            }],
            [],
        )
        .unwrap()
    }

    fn utc(text: &str) -> Timestamp {
        format!("{text}:00Z").parse().unwrap()
    }

    /// A boundary in the hour a spring-forward skips takes effect when the clock has passed
    /// the gap (02:30 → 03:30 local); one in the hour a fall-back repeats takes effect at its
    /// first occurrence. In Berlin and in New York.
    #[test]
    fn boundaries_in_skipped_and_repeated_hours_have_one_meaning() {
        // Berlin springs forward on 2027-03-28 at 02:00 CET (01:00 UTC) to 03:00 CEST.
        let berlin = daily("Europe/Berlin", (2, 30), (20, 0));
        let at = |text| berlin.desired_at(utc(text));
        assert_eq!(at("2027-03-28T01:29").desired, Desired::Stopped); // 03:29 CEST
        assert_eq!(at("2027-03-28T01:30").desired, Desired::Running); // 03:30 CEST
        assert_eq!(at("2027-03-28T01:30").since, Some(utc("2027-03-28T01:30")));
        // It falls back on 2027-10-31 at 03:00 CEST (01:00 UTC) to 02:00 CET: 02:30 happens at
        // 00:30 UTC and again at 01:30 UTC; the first counts.
        assert_eq!(at("2027-10-31T00:29").desired, Desired::Stopped);
        assert_eq!(at("2027-10-31T00:30").desired, Desired::Running);
        assert_eq!(at("2027-10-31T01:45").since, Some(utc("2027-10-31T00:30")));

        // New York springs forward on 2027-03-14 at 02:00 EST (07:00 UTC) to 03:00 EDT.
        let new_york = daily("America/New_York", (6, 0), (2, 15));
        let at = |text| new_york.desired_at(utc(text));
        // The 02:15 stop of the night of the 13th falls in the gap: it happens at 03:15 EDT.
        assert_eq!(at("2027-03-14T07:10").desired, Desired::Running); // 03:10 EDT
        assert_eq!(at("2027-03-14T07:15").desired, Desired::Stopped); // 03:15 EDT
        // It falls back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00 EST; a 01:30 boundary
        // is at 05:30 UTC (EDT), not 06:30 UTC (EST).
        let repeated = daily("America/New_York", (1, 30), (12, 0));
        assert_eq!(
            repeated.desired_at(utc("2026-11-01T05:29")).desired,
            Desired::Stopped
        );
        assert_eq!(
            repeated.desired_at(utc("2026-11-01T05:30")).desired,
            Desired::Running
        );
    }

    #[test]
    fn office_hours_follow_the_local_clock_across_a_change() {
        let office = daily("Europe/Berlin", (8, 0), (19, 0));
        // 08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer.
        assert_eq!(
            office.desired_at(utc("2027-03-26T06:30")).desired,
            Desired::Stopped
        );
        assert_eq!(
            office.desired_at(utc("2027-03-26T07:00")).desired,
            Desired::Running
        );
        assert_eq!(
            office.desired_at(utc("2027-03-29T06:00")).desired,
            Desired::Running
        );
        assert_eq!(
            office.desired_at(utc("2027-03-29T05:59")).desired,
            Desired::Stopped
        );
    }

    #[test]
    fn weekday_sets_wrap_and_shift() {
        let weekend = Weekdays::range(Weekday::Saturday, Weekday::Monday);
        assert_eq!(weekend.to_string(), "Mon,Sat,Sun");
        assert_eq!(
            Weekdays::only(Weekday::Sunday).next_days(),
            Weekdays::only(Weekday::Monday)
        );
        assert!(LocalTime::new(24, 1).is_err());
        assert!(LocalTime::new(7, 60).is_err());
    }
}
