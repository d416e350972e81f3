//! Reading schedules from text: periods (`Mon-Fri 08:00-19:00`), inline schedules in a tag value
//! (`Mon-Fri 08:00-19:00 Europe/Berlin`), and Cloud Custodian's offhours/onhours tags as written
//! (`off=(M-F,19);on=(M-F,7);tz=pt`).

use jiff::civil::Weekday;

use crate::ScheduleError;
use crate::spec::{Desired, LocalTime, Period, Schedule, Transition, Weekdays};

fn bad(text: &str, why: impl std::fmt::Display) -> ScheduleError {
    ScheduleError::new(format!("{text:?}: {why}"))
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

/// `Mon-Fri`, `Sat`, `Mon,Wed,Fri`, `Fri-Mon` (wrapping), `daily`.
pub fn parse_weekdays(text: &str) -> Result<Weekdays, ScheduleError> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(Weekdays::ALL);
    }
    let mut days = Weekdays::default();
    for part in text.split(',') {
        let one = |name: &str| {
            weekday(name.trim())
                .ok_or_else(|| bad(text, format!("{name:?} is not a weekday (Mon … Sun)")))
        };
        days = days.union(match part.split_once('-') {
            Some((from, to)) => Weekdays::range(one(from)?, one(to)?),
            None => Weekdays::only(one(part)?),
        });
    }
    Ok(days)
}

/// `08:00`, `8:30`, `24:00`.
pub fn parse_time(text: &str) -> Result<LocalTime, ScheduleError> {
    let (hour, minute) = text
        .split_once(':')
        .ok_or_else(|| bad(text, "a time is HH:MM"))?;
    let number = |part: &str| -> Result<u8, ScheduleError> {
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(text, "a time is HH:MM"));
        }
        part.parse().map_err(|_| bad(text, "a time is HH:MM"))
    };
    if minute.len() != 2 {
        return Err(bad(text, "a time is HH:MM"));
    }
    LocalTime::new(number(hour)?, number(minute)?)
}

/// `Mon-Fri 08:00-19:00`: days, then a begin and an end (an end at or before the begin is the
/// next day's).
pub fn parse_period(text: &str) -> Result<Period, ScheduleError> {
    let mut words = text.split_whitespace();
    let (Some(days), Some(times), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad(
            text,
            "a period is DAYS HH:MM-HH:MM (Mon-Fri 08:00-19:00)",
        ));
    };
    period(days, times).map_err(|error| bad(text, error))
}

fn period(days: &str, times: &str) -> Result<Period, ScheduleError> {
    let (begin, end) = times
        .split_once('-')
        .ok_or_else(|| bad(times, "hours are HH:MM-HH:MM"))?;
    let period = Period {
        days: parse_weekdays(days)?,
        begin: parse_time(begin)?,
        end: parse_time(end)?,
    };
    if period.begin == period.end {
        return Err(bad(times, "a period cannot begin when it ends"));
    }
    Ok(period)
}

/// A schedule written in a tag's value: periods, then optionally a time zone
/// (`Mon-Fri 08:00-19:00 Sat 10:00-14:00 Europe/Berlin`); `default_zone` without one. Only
/// letters, digits, spaces and `-:/_`, which every cloud's tag values allow except GCE's
/// labels (use a named schedule there).
pub fn parse_inline(text: &str, default_zone: &str) -> Result<Schedule, ScheduleError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (pairs, zone) = if words.len() % 2 == 1 {
        (&words[..words.len() - 1], words[words.len() - 1])
    } else {
        (&words[..], default_zone)
    };
    if pairs.is_empty() {
        return Err(bad(text, "an inline schedule is DAYS HH:MM-HH:MM … [ZONE]"));
    }
    let periods = pairs
        .chunks(2)
        .map(|pair| period(pair[0], pair[1]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(text, error))?;
    Schedule::from_periods(text, zone, &periods, []).map_err(|error| bad(text, error))
}

/// What a Cloud Custodian offhours tag falls back to: the policy's `onhour`, `offhour`,
/// `default_tz` and `weekends` (Custodian's defaults: 7, 19, `et`, true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodianDefaults {
    /// The hour instances start.
    pub on_hour: u8,
    /// The hour instances stop.
    pub off_hour: u8,
    /// The time zone: an alias (`pt`, `et`, `cet`, …) or an IANA name.
    pub zone: String,
    /// Whether instances stay off over the weekend (the default hours are then Monday to
    /// Friday, else every day).
    pub weekends: bool,
}

impl Default for CustodianDefaults {
    fn default() -> Self {
        CustodianDefaults {
            on_hour: 7,
            off_hour: 19,
            zone: "et".to_owned(),
            weekends: true,
        }
    }
}

/// What a Custodian tag says.
#[derive(Debug, Clone)]
pub enum CustodianTag {
    /// `off`: leave this instance alone.
    OptedOut,
    /// A schedule (the defaults where the tag does not say).
    Schedule(Schedule),
}

/// Cloud Custodian's time zone aliases, each tied to a locality so DST applies.
const CUSTODIAN_ZONES: &[(&str, &str)] = &[
    ("pdt", "America/Los_Angeles"),
    ("pt", "America/Los_Angeles"),
    ("pst", "America/Los_Angeles"),
    ("ast", "America/Phoenix"),
    ("at", "America/Phoenix"),
    ("est", "America/New_York"),
    ("edt", "America/New_York"),
    ("et", "America/New_York"),
    ("cst", "America/Chicago"),
    ("cdt", "America/Chicago"),
    ("ct", "America/Chicago"),
    ("mst", "America/Denver"),
    ("mdt", "America/Denver"),
    ("mt", "America/Denver"),
    ("gmt", "Etc/GMT"),
    ("gt", "Etc/GMT"),
    ("bst", "Europe/London"),
    ("ist", "Europe/Dublin"),
    ("cet", "Europe/Berlin"),
    ("it", "Asia/Kolkata"),
    ("jst", "Asia/Tokyo"),
    ("kst", "Asia/Seoul"),
    ("sgt", "Asia/Singapore"),
    ("aet", "Australia/Sydney"),
    ("brt", "America/Sao_Paulo"),
    ("utc", "Etc/UTC"),
];

fn custodian_zone(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    CUSTODIAN_ZONES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or_else(|| name.to_owned(), |(_, zone)| (*zone).to_owned())
}

/// Custodian's days: `M T W H F S U`, single or as a range (`M-F`).
fn custodian_days(text: &str, whole: &str) -> Result<Weekdays, ScheduleError> {
    let day = |letter: &str| -> Result<Weekday, ScheduleError> {
        Ok(match letter {
            "m" => Weekday::Monday,
            "t" => Weekday::Tuesday,
            "w" => Weekday::Wednesday,
            "h" => Weekday::Thursday,
            "f" => Weekday::Friday,
            "s" => Weekday::Saturday,
            "u" => Weekday::Sunday,
            other => {
                return Err(bad(
                    whole,
                    format!("{other:?} is not a Custodian day (M T W H F S U)"),
                ));
            }
        })
    };
    match text.split_once('-') {
        Some((from, to)) => Ok(Weekdays::range(day(from.trim())?, day(to.trim())?)),
        None => Ok(Weekdays::only(day(text.trim())?)),
    }
}

/// `(M-F,19)` or `[(M-F,21),(U,18)]` as transitions to `to`.
fn custodian_times(
    value: &str,
    to: Desired,
    whole: &str,
) -> Result<Vec<Transition>, ScheduleError> {
    let inner = value.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(inner);
    let mut transitions = Vec::new();
    for spec in inner.split("),") {
        let spec = spec.trim().trim_start_matches('(').trim_end_matches(')');
        let (days, hour) = spec
            .split_once(',')
            .ok_or_else(|| bad(whole, format!("{spec:?} is not (days,hour)")))?;
        let hour: u8 = hour
            .trim()
            .parse()
            .ok()
            .filter(|hour| *hour < 24)
            .ok_or_else(|| bad(whole, format!("{hour:?} is not an hour (0 to 23)")))?;
        transitions.push(Transition {
            days: custodian_days(days, whole)?,
            at: LocalTime::new(hour, 0)?,
            to,
        });
    }
    Ok(transitions)
}

/// Reads a Cloud Custodian offhours/onhours tag value as Custodian does: empty or `on` is the
/// policy's defaults, `off` opts out, otherwise `off=…;on=…;tz=…` in any order, any case, each
/// part optional (a missing part is the default's).
pub fn parse_custodian(
    text: &str,
    defaults: &CustodianDefaults,
) -> Result<CustodianTag, ScheduleError> {
    let value = text.trim().to_ascii_lowercase();
    if value == "off" {
        return Ok(CustodianTag::OptedOut);
    }
    let default_days = if defaults.weekends {
        Weekdays::WORKDAYS
    } else {
        Weekdays::ALL
    };
    let mut off = vec![Transition {
        days: default_days,
        at: LocalTime::new(defaults.off_hour, 0)?,
        to: Desired::Stopped,
    }];
    let mut on = vec![Transition {
        days: default_days,
        at: LocalTime::new(defaults.on_hour, 0)?,
        to: Desired::Running,
    }];
    let mut zone = defaults.zone.clone();
    if !value.is_empty() && value != "on" {
        for part in value
            .split(';')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (key, spec) = part
                .split_once('=')
                .ok_or_else(|| bad(text, format!("{part:?} is not key=value")))?;
            match key.trim() {
                "off" => off = custodian_times(spec, Desired::Stopped, text)?,
                "on" => on = custodian_times(spec, Desired::Running, text)?,
                // The original case: IANA names are matched without it, but keep it for show.
                "tz" => {
                    let original = text
                        .split(';')
                        .find_map(|part| {
                            let (key, value) = part.split_once('=')?;
                            key.trim()
                                .eq_ignore_ascii_case("tz")
                                .then(|| value.trim().to_owned())
                        })
                        .unwrap_or_else(|| spec.trim().to_owned());
                    zone = original;
                }
                other => return Err(bad(text, format!("{other:?} is not off, on or tz"))),
            }
        }
    }
    let zone = custodian_zone(&zone);
    let transitions = on.into_iter().chain(off).collect();
    Schedule::from_transitions(text, &zone, transitions, [])
        .map(CustodianTag::Schedule)
        .map_err(|error| bad(text, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    fn at(zone: &str, local: &str) -> Timestamp {
        let civil: jiff::civil::DateTime = local.parse().unwrap();
        TimeZone::get(zone)
            .unwrap()
            .to_ambiguous_timestamp(civil)
            .compatible()
            .unwrap()
    }

    #[test]
    fn periods_parse_and_mistakes_say_what_is_wrong() {
        let period = parse_period("Mon-Fri 08:00-19:00").unwrap();
        assert_eq!(period.to_string(), "Mon,Tue,Wed,Thu,Fri 08:00-19:00");
        assert_eq!(
            parse_period("sat 9:30-24:00").unwrap().to_string(),
            "Sat 09:30-24:00"
        );
        assert_eq!(
            parse_period("Fri-Mon 22:00-06:00")
                .unwrap()
                .days
                .to_string(),
            "Mon,Fri,Sat,Sun"
        );
        assert_eq!(
            parse_period("Mon,Wed,Fri 09:00-17:00")
                .unwrap()
                .days
                .to_string(),
            "Mon,Wed,Fri"
        );
        for (text, words) in [
            ("Mon-Fri", "DAYS HH:MM-HH:MM"),
            ("Mon-Fry 08:00-19:00", "\"Fry\" is not a weekday"),
            ("Mon 8-19", "a time is HH:MM"),
            ("Mon 0800-1900", "a time is HH:MM"),
            ("Mon 08:00-25:00", "not a time of day"),
            ("Mon 08:00-08:00", "cannot begin when it ends"),
            ("Mon 08:0-09:00", "HH:MM"),
            ("Mon 08:00-19:00 extra", "DAYS HH:MM-HH:MM"),
        ] {
            let error = parse_period(text).unwrap_err().to_string();
            assert!(error.contains(words), "{text}: {error}");
        }
    }

    #[test]
    fn inline_schedules_carry_their_zone_or_take_the_default() {
        let berlin = parse_inline("Mon-Fri 08:00-19:00 Europe/Berlin", "UTC").unwrap();
        assert_eq!(berlin.zone(), "Europe/Berlin");
        // 07:30 UTC is 08:30 in Berlin in winter.
        assert_eq!(
            berlin.desired_at(at("UTC", "2026-12-01T07:30")).desired,
            Desired::Running
        );
        let two = parse_inline("Mon-Fri 08:00-19:00 Sat 10:00-14:00", "UTC").unwrap();
        assert_eq!(two.zone(), "UTC");
        assert_eq!(
            two.desired_at(at("UTC", "2026-12-05T11:00")).desired,
            Desired::Running
        );
        for text in [
            "",
            "Europe/Berlin",
            "Mon-Fri 08:00-19:00 Mars/Olympus",
            "Mon-Fri",
        ] {
            assert!(parse_inline(text, "UTC").is_err(), "{text:?} parsed");
        }
    }

    /// Every tag value in Custodian's offhours documentation, and the edge cases its code
    /// handles (trailing semicolons, case, `on`/empty/`off`).
    #[test]
    fn custodian_tags_read_as_custodian_reads_them() {
        let defaults = CustodianDefaults::default();
        let schedule = |text: &str| match parse_custodian(text, &defaults).unwrap() {
            CustodianTag::Schedule(schedule) => schedule,
            CustodianTag::OptedOut => panic!("{text:?} opted out"),
        };
        // "up mon-fri from 7am-7pm; eastern time"
        let et = schedule("off=(M-F,19);on=(M-F,7)");
        assert_eq!(et.zone(), "America/New_York");
        assert_eq!(
            et.desired_at(at("America/New_York", "2026-12-01T07:00"))
                .desired,
            Desired::Running
        );
        assert_eq!(
            et.desired_at(at("America/New_York", "2026-12-01T19:00"))
                .desired,
            Desired::Stopped
        );
        // "up mon-fri from 6am-9pm; up sun from 10am-6pm; pacific time"
        let pt = schedule("off=[(M-F,21),(U,18)];on=[(M-F,6),(U,10)];tz=pt");
        assert_eq!(pt.zone(), "America/Los_Angeles");
        let la = |local| pt.desired_at(at("America/Los_Angeles", local)).desired;
        assert_eq!(la("2026-12-06T10:30"), Desired::Running); // Sunday
        assert_eq!(la("2026-12-06T18:00"), Desired::Stopped);
        assert_eq!(la("2026-12-05T12:00"), Desired::Stopped); // Saturday
        assert_eq!(la("2026-12-07T20:59"), Desired::Running);
        // The policy's defaults: empty, "on", a zone only, one side only, trailing `;`.
        for text in ["", "on", "ON", " on "] {
            assert_eq!(schedule(text).zone(), "America/New_York", "{text:?}");
        }
        assert_eq!(schedule("tz=cet").zone(), "Europe/Berlin");
        assert_eq!(schedule("tz=Europe/Paris").zone(), "Europe/Paris");
        let off_only = schedule("off=(M-F,1);");
        assert_eq!(
            off_only
                .desired_at(at("America/New_York", "2026-12-01T07:30"))
                .desired,
            Desired::Running,
            "the default on hour applies"
        );
        assert_eq!(
            off_only
                .desired_at(at("America/New_York", "2026-12-01T01:30"))
                .desired,
            Desired::Stopped
        );
        assert!(matches!(
            parse_custodian("off", &defaults).unwrap(),
            CustodianTag::OptedOut
        ));
        assert!(matches!(
            parse_custodian("OFF", &defaults).unwrap(),
            CustodianTag::OptedOut
        ));
        for text in [
            "off=(M-F,24)",
            "off=(X,19)",
            "of=(M-F,19)",
            "off=M-F",
            "tz=nowhere",
            "off=(M-F)",
        ] {
            assert!(parse_custodian(text, &defaults).is_err(), "{text:?} parsed");
        }
    }
}
