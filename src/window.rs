//! Recurring maintenance windows such as `Sat,Sun 02:00-06:00 Europe/London`: parsing, "is it open
//! now", when the current window closes and when the next one opens.
//!
//! Pure: every question takes `now` as an argument, so callers (and tests) control the clock. Time
//! zones come from the IANA database bundled into the binary by `jiff` (the image has no zoneinfo).
//!
//! Semantics:
//! - A window belongs to the day it starts on: `Mon-Fri 22:00-02:00 UTC` is open Friday 22:00 until
//!   Saturday 02:00, but not on Monday 00:00–02:00 (Sunday is not selected).
//! - An end of `24:00` means midnight at the end of the start day.
//! - Each occurrence is one contiguous interval of real time, from the first instant the local clock
//!   shows the start time to the last instant it shows the end time. So across DST changes:
//!   on a spring-forward night a `01:00-03:00` window whose hour is skipped is one hour shorter
//!   (a start or end inside the skipped hour moves to the moment of the jump, and a window lying
//!   wholly inside the skipped hour does not open that night); on a fall-back night a window
//!   spanning the repeated hour is one hour longer, and never closes and reopens in the middle.

use crate::suggest::suggestion;
use anyhow::{Result, anyhow, bail};
use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const MINUTES_PER_DAY: u16 = 24 * 60;
const EXAMPLE: &str = "expected DAYS HH:MM-HH:MM ZONE such as `Sat,Sun 02:00-06:00 Europe/London`, \
                       `Mon-Fri 22:00-02:00 UTC` or `daily 01:00-03:00 America/New_York`";
/// How many days ahead to look for the next opening: a week, twice, in case one occurrence vanished
/// into a DST gap.
const SEARCH_DAYS: i32 = 16;

/// A parsed recurring window. Construct it with [`Window::parse`] (or deserialize it from the same
/// string form).
#[derive(Clone, Debug)]
pub struct Window {
    /// Selected start days, Monday first.
    days: [bool; 7],
    /// Minutes after local midnight.
    start: u16,
    /// Minutes after local midnight, 1..=1440; at or before `start` means the next day.
    end: u16,
    tz: TimeZone,
    zone_name: String,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        (self.days, self.start, self.end, &self.zone_name) == (other.days, other.start, other.end, &other.zone_name)
    }
}

impl Eq for Window {}

impl Window {
    /// Parses `DAYS HH:MM-HH:MM ZONE`. DAYS is `daily` or a comma list of days (`Mon`…`Sun` or full
    /// names, any case) and ranges (`Mon-Fri`, wrapping `Fri-Mon`); ZONE is an IANA name or `UTC`.
    /// Spaces around commas and the dash are allowed.
    pub fn parse(text: &str) -> Result<Window> {
        parse_window(text).map_err(|e| anyhow!("maintenance window `{}`: {e}", text.trim()))
    }

    /// True when `now` falls inside an occurrence of the window.
    pub(crate) fn is_open(&self, now: Timestamp) -> bool {
        self.occurrences_around(now).any(|(start, end)| start <= now && now < end)
    }

    /// When the window that is open at `now` closes (back-to-back occurrences, such as
    /// `Mon-Fri 00:00-24:00`, count as one); `None` when the window is closed at `now`.
    pub(crate) fn closes_at(&self, now: Timestamp) -> Option<Timestamp> {
        let mut occurrences = self.occurrences_around(now).skip_while(|(_, end)| *end <= now);
        let (start, mut end) = occurrences.next()?;
        if start > now {
            return None;
        }
        for (next_start, next_end) in occurrences {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
        }
        Some(end)
    }

    /// The first instant at or after `now` when the window is open: `now` itself when it is open.
    pub(crate) fn next_open(&self, now: Timestamp) -> Timestamp {
        self.occurrences_around(now)
            .find(|(_, end)| *end > now)
            .map(|(start, _)| start.max(now))
            // parse() guarantees at least one day and a non-empty span, and DST gaps are months
            // apart, so two weeks always hold an opening.
            .expect("a parsed window opens at least once in any two weeks")
    }

    /// One line for logs: `Sat,Sun 02:00-06:00 Europe/London is closed; next opens Sat 2026-11-28
    /// 02:00 GMT` or `… is open until Sun 2026-11-29 06:00 GMT`.
    pub(crate) fn describe(&self, now: Timestamp) -> String {
        match self.closes_at(now) {
            Some(end) => format!("window {self} is open until {}", self.local(end)),
            None => format!("window {self} is closed; next opens {}", self.local(self.next_open(now))),
        }
    }

    /// The IANA name of the window's time zone.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// An instant as the window's local time: `Sat 2026-11-28 02:00 GMT`.
    pub(crate) fn local(&self, at: Timestamp) -> String {
        at.to_zoned_datetime(self.tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string()
    }

    /// Occurrences starting from two days before `now`'s local date (a window open at `now` may have
    /// started yesterday), in start order.
    fn occurrences_around(&self, now: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = self.tz.to_datetime(now).date();
        (-2..SEARCH_DAYS)
            .filter_map(move |offset| today.checked_add(jiff::Span::new().days(offset)).ok())
            .filter_map(|date| self.occurrence(date))
    }

    /// The interval of the occurrence starting on `date`, if `date` is selected and the interval is
    /// not swallowed by a DST gap.
    fn occurrence(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[weekday_index(date.weekday())] {
            return None;
        }
        let start = first_instant(&self.tz, at_minutes(date, self.start)?)?;
        let end_date = if self.end > self.start { date } else { date.tomorrow().ok()? };
        let end = last_instant(&self.tz, at_minutes(end_date, self.end)?)?;
        (end > start).then_some((start, end))
    }
}

/// `date` at `minutes` past midnight; 1440 is the next midnight.
fn at_minutes(date: Date, minutes: u16) -> Option<DateTime> {
    if minutes == MINUTES_PER_DAY {
        return Some(date.tomorrow().ok()?.at(0, 0, 0, 0));
    }
    Some(date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0))
}

/// The first instant the local clock shows `dt`: the earlier one in a fold, the moment of the jump
/// when `dt` was skipped.
fn first_instant(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { after, .. } => gap_transition(tz, dt, after),
    }
}

/// The last instant the local clock shows `dt`: the later one in a fold, the moment of the jump when
/// `dt` was skipped.
fn last_instant(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { after, .. } => after.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { after, .. } => gap_transition(tz, dt, after),
    }
}

/// For a skipped local time, the instant of the jump. Read with the later offset, the skipped time
/// lies just before the transition, so the transition is the first one after it.
fn gap_transition(tz: &TimeZone, dt: DateTime, after: jiff::tz::Offset) -> Option<Timestamp> {
    let before_jump = after.to_timestamp(dt).ok()?;
    tz.following(before_jump).next().map(|t| t.timestamp())
}

fn weekday_index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

fn parse_window(text: &str) -> Result<Window> {
    let text = text.replace(['–', '—'], "-");
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        bail!("the window is empty: {EXAMPLE}");
    }
    let Some(time_at) = tokens.iter().position(|t| t.starts_with(|c: char| c.is_ascii_digit())) else {
        bail!("no time range found: {EXAMPLE}");
    };
    if time_at == 0 {
        bail!("no days before the time range: start with `daily`, a day such as `Sat`, or a range such as `Mon-Fri`");
    }
    if time_at == tokens.len() - 1 {
        bail!("no time zone after the time range: add an IANA name such as `UTC` or `Europe/London`");
    }
    let days = parse_days(&tokens[..time_at].concat())?;
    let range = tokens[time_at..tokens.len() - 1].concat();
    let (start, end) = parse_range(&range)?;
    let (tz, zone_name) = parse_zone(tokens[tokens.len() - 1])?;
    if days.iter().all(|d| *d) && start == 0 && end == MINUTES_PER_DAY {
        bail!("the window covers the whole week, which is the same as no window: remove `window` instead");
    }
    Ok(Window { days, start, end, tz, zone_name })
}

fn parse_days(text: &str) -> Result<[bool; 7]> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for item in text.split(',') {
        if item.is_empty() {
            bail!("empty entry in the day list `{text}`: separate days with single commas, e.g. `Sat,Sun`");
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_day(a)?, parse_day(b)?),
            None => (parse_day(item)?, parse_day(item)?),
        };
        // Ranges may wrap around the week end (`Fri-Mon`).
        let mut day = first;
        loop {
            days[day] = true;
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    Ok(days)
}

fn parse_day(text: &str) -> Result<usize> {
    let lower = text.to_ascii_lowercase();
    let index = DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(&lower))
        .or_else(|| FULL_DAY_NAMES.iter().position(|d| *d == lower));
    index.ok_or_else(|| {
        let candidates = DAY_NAMES.iter().copied().chain(std::iter::once("daily"));
        let hint = suggestion(text, candidates);
        anyhow!("`{text}` is not a day{hint}: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as `Mon-Fri`, or `daily`")
    })
}

/// `HH:MM-HH:MM` into minutes after midnight.
fn parse_range(text: &str) -> Result<(u16, u16)> {
    let Some((start, end)) = text.split_once('-') else {
        bail!("`{text}` is not a time range: expected START-END such as `02:00-06:00`");
    };
    let start = parse_time(start, false)?;
    let end = parse_time(end, true)?;
    if start == end {
        bail!("the window is empty: it starts and ends at {}", fmt_minutes(start));
    }
    Ok((start, end))
}

/// `HH:MM` (24-hour; `24:00` only as an end) into minutes after midnight.
fn parse_time(text: &str, is_end: bool) -> Result<u16> {
    let bad = || {
        let range = if is_end { "00:00 to 24:00" } else { "00:00 to 23:59" };
        anyhow!("`{text}` is not a time: expected HH:MM on a 24-hour clock, {range}")
    };
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    let digits =
        |s: &str, len: std::ops::RangeInclusive<usize>| len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours, 1..=2) || !digits(minutes, 2..=2) {
        return Err(bad());
    }
    let (hours, minutes): (u16, u16) = (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
    let total = hours * 60 + minutes;
    let valid = minutes < 60 && (total < MINUTES_PER_DAY || (is_end && total == MINUTES_PER_DAY));
    if !valid {
        return Err(bad());
    }
    // `00:00` as an end means midnight after the start, the same as `24:00`.
    Ok(if is_end && total == 0 { MINUTES_PER_DAY } else { total })
}

fn parse_zone(name: &str) -> Result<(TimeZone, String)> {
    let db = jiff::tz::db();
    match db.get(name) {
        Ok(tz) => {
            let canonical = tz.iana_name().unwrap_or(name).to_string();
            Ok((tz, canonical))
        }
        Err(_) => {
            let names: Vec<String> = db.available().map(|n| n.as_str().to_string()).collect();
            let hint = suggestion(name, names.iter().map(String::as_str));
            bail!(
                "unknown time zone `{name}`{hint}: expected an IANA name such as `UTC`, `Europe/London` or `America/New_York`"
            )
        }
    }
}

fn fmt_minutes(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The canonical form, which [`Window::parse`] reads back: `Mon-Fri 22:00-02:00 UTC`.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}-{} {}", days_text(&self.days), fmt_minutes(self.start), fmt_minutes(self.end), self.zone_name)
    }
}

/// `daily`, or runs of three or more days as ranges (`Mon-Fri`) and shorter runs listed (`Sat,Sun`).
fn days_text(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "daily".to_string();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !days[i] {
            i += 1;
            continue;
        }
        let run_start = i;
        while i + 1 < 7 && days[i + 1] {
            i += 1;
        }
        match i - run_start {
            0 => parts.push(DAY_NAMES[run_start].to_string()),
            1 => parts.extend([DAY_NAMES[run_start].to_string(), DAY_NAMES[i].to_string()]),
            _ => parts.push(format!("{}-{}", DAY_NAMES[run_start], DAY_NAMES[i])),
        }
        i += 1;
    }
    parts.join(",")
}

impl std::str::FromStr for Window {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Window::parse(s)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Window::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn w(text: &str) -> Window {
        Window::parse(text).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn parses_and_prints_canonically() {
        let cases = [
            ("Sat,Sun 02:00-06:00 Europe/London", "Sat,Sun 02:00-06:00 Europe/London"),
            ("sat, SUN 2:00 - 06:00 europe/london", "Sat,Sun 02:00-06:00 Europe/London"),
            ("Mon-Fri 22:00-02:00 UTC", "Mon-Fri 22:00-02:00 UTC"),
            ("Monday-Friday 22:00–02:00 UTC", "Mon-Fri 22:00-02:00 UTC"),
            ("daily 01:00-03:00 America/New_York", "daily 01:00-03:00 America/New_York"),
            ("Mon-Sun 01:00-03:00 UTC", "daily 01:00-03:00 UTC"),
            ("Fri-Mon 23:00-01:00 UTC", "Mon,Fri-Sun 23:00-01:00 UTC"),
            ("Tue,Mon,Wed 10:00-24:00 UTC", "Mon-Wed 10:00-24:00 UTC"),
            ("Sat 22:00-00:00 UTC", "Sat 22:00-24:00 UTC"),
            ("Sat,Sat,Sun 02:00-06:00 UTC", "Sat,Sun 02:00-06:00 UTC"),
        ];
        for (input, canonical) in cases {
            let window = w(input);
            assert_eq!(window.to_string(), canonical, "{input}");
            assert_eq!(w(canonical), window, "{canonical} reads back");
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let cases = [
            ("", "the window is empty"),
            ("   ", "the window is empty"),
            ("Sta,Sun 02:00-06:00 UTC", "`Sta` is not a day, did you mean `Sat`?"),
            ("Sat,,Sun 02:00-06:00 UTC", "empty entry in the day list"),
            ("weekends 02:00-06:00 UTC", "`weekends` is not a day"),
            ("Sat 25:00-06:00 UTC", "`25:00` is not a time"),
            ("Sat 02:60-06:00 UTC", "`02:60` is not a time"),
            ("Sat 24:00-06:00 UTC", "00:00 to 23:59"),
            ("Sat 2-6 UTC", "`2` is not a time"),
            ("Sat 0200-0600 UTC", "`0200` is not a time"),
            ("Sat 02:00 UTC", "`02:00` is not a time range"),
            ("Sat 02:00-02:00 UTC", "the window is empty: it starts and ends at 02:00"),
            ("Sat 02:00-06:00", "no time zone"),
            ("02:00-06:00 UTC", "no days"),
            ("Sat,Sun Europe/London", "no time range"),
            ("Sat 02:00-06:00 Europe/Londn", "unknown time zone `Europe/Londn`, did you mean `Europe/London`?"),
            ("Sat 02:00-06:00 Mars/Olympus", "unknown time zone `Mars/Olympus`"),
            ("daily 00:00-24:00 UTC", "covers the whole week"),
        ];
        for (input, needle) in cases {
            let err = format!("{:#}", Window::parse(input).unwrap_err());
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.starts_with("maintenance window `"), "{input:?}: {err}");
        }
    }

    #[test]
    fn is_open_table() {
        let weekend_london = w("Sat,Sun 02:00-06:00 Europe/London");
        let weeknights_utc = w("Mon-Fri 22:00-02:00 UTC");
        let cases: &[(&Window, &str, bool)] = &[
            // Winter: London is on GMT (UTC+0). 2026-11-28 is a Saturday.
            (&weekend_london, "2026-11-28T01:59:59Z", false),
            (&weekend_london, "2026-11-28T02:00:00Z", true),
            (&weekend_london, "2026-11-28T05:59:59Z", true),
            (&weekend_london, "2026-11-28T06:00:00Z", false),
            (&weekend_london, "2026-11-29T03:00:00Z", true),
            (&weekend_london, "2026-11-30T03:00:00Z", false),
            (&weekend_london, "2026-11-27T03:00:00Z", false),
            // Summer: BST (UTC+1), so 02:00 local is 01:00Z.
            (&weekend_london, "2026-07-04T00:59:00Z", false),
            (&weekend_london, "2026-07-04T01:00:00Z", true),
            (&weekend_london, "2026-07-04T04:59:00Z", true),
            (&weekend_london, "2026-07-04T05:00:00Z", false),
            // Crossing midnight belongs to the start day. 2026-11-27 is a Friday.
            (&weeknights_utc, "2026-11-27T21:59:00Z", false),
            (&weeknights_utc, "2026-11-27T22:00:00Z", true),
            (&weeknights_utc, "2026-11-28T01:59:00Z", true),
            (&weeknights_utc, "2026-11-28T02:00:00Z", false),
            (&weeknights_utc, "2026-11-28T22:30:00Z", false),
            (&weeknights_utc, "2026-11-30T01:00:00Z", false),
            (&weeknights_utc, "2026-11-30T22:00:00Z", true),
            (&weeknights_utc, "2026-12-01T01:00:00Z", true),
        ];
        for (window, now, open) in cases {
            assert_eq!(window.is_open(ts(now)), *open, "{window} at {now}");
            assert_eq!(window.closes_at(ts(now)).is_some(), *open, "{window} closes_at at {now}");
        }
    }

    #[test]
    fn closes_at_and_next_open_table() {
        // (window, now, closes_at, next_open)
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            ("Sat,Sun 02:00-06:00 Europe/London", "2026-11-24T12:00:00Z", None, "2026-11-28T02:00:00Z"),
            (
                "Sat,Sun 02:00-06:00 Europe/London",
                "2026-11-28T03:00:00Z",
                Some("2026-11-28T06:00:00Z"),
                "2026-11-28T03:00:00Z",
            ),
            ("Sat,Sun 02:00-06:00 Europe/London", "2026-11-28T06:00:00Z", None, "2026-11-29T02:00:00Z"),
            ("Mon-Fri 22:00-02:00 UTC", "2026-11-28T01:00:00Z", Some("2026-11-28T02:00:00Z"), "2026-11-28T01:00:00Z"),
            ("Mon-Fri 22:00-02:00 UTC", "2026-11-28T03:00:00Z", None, "2026-11-30T22:00:00Z"),
            // Back-to-back occurrences are one window.
            ("Mon-Fri 00:00-24:00 UTC", "2026-11-24T12:00:00Z", Some("2026-11-28T00:00:00Z"), "2026-11-24T12:00:00Z"),
            ("Sat,Sun 00:00-24:00 UTC", "2026-11-28T12:00:00Z", Some("2026-11-30T00:00:00Z"), "2026-11-28T12:00:00Z"),
            ("Sun 12:00-24:00 UTC", "2026-11-24T00:00:00Z", None, "2026-11-29T12:00:00Z"),
            // New York is UTC-5 in winter.
            (
                "daily 01:00-03:00 America/New_York",
                "2026-11-24T07:00:00Z",
                Some("2026-11-24T08:00:00Z"),
                "2026-11-24T07:00:00Z",
            ),
            ("daily 01:00-03:00 America/New_York", "2026-11-24T08:00:00Z", None, "2026-11-25T06:00:00Z"),
        ];
        for (text, now, closes, opens) in cases {
            let window = w(text);
            assert_eq!(window.closes_at(ts(now)), closes.map(ts), "{text} closes_at {now}");
            assert_eq!(window.next_open(ts(now)), ts(opens), "{text} next_open {now}");
        }
    }

    #[test]
    fn dst_spring_forward_shortens_and_fall_back_lengthens() {
        let ny = w("daily 01:00-03:00 America/New_York");
        // 2026-03-07, an ordinary night: 01:00 EST = 06:00Z to 03:00 EST = 08:00Z.
        assert_eq!(ny.next_open(ts("2026-03-07T00:00:00Z")), ts("2026-03-07T06:00:00Z"));
        assert_eq!(ny.closes_at(ts("2026-03-07T06:00:00Z")), Some(ts("2026-03-07T08:00:00Z")));
        // 2026-03-08 02:00 EST jumps to 03:00 EDT: 01:00 EST = 06:00Z to 03:00 EDT = 07:00Z, one hour.
        assert_eq!(ny.next_open(ts("2026-03-08T00:00:00Z")), ts("2026-03-08T06:00:00Z"));
        assert_eq!(ny.closes_at(ts("2026-03-08T06:30:00Z")), Some(ts("2026-03-08T07:00:00Z")));
        assert!(!ny.is_open(ts("2026-03-08T07:00:00Z")));
        // 2026-11-01 02:00 EDT falls back to 01:00 EST: first 01:00 EDT = 05:00Z to 03:00 EST =
        // 08:00Z, three hours without closing in between.
        assert_eq!(ny.next_open(ts("2026-11-01T00:00:00Z")), ts("2026-11-01T05:00:00Z"));
        assert_eq!(ny.closes_at(ts("2026-11-01T05:00:00Z")), Some(ts("2026-11-01T08:00:00Z")));
        assert!(ny.is_open(ts("2026-11-01T06:30:00Z")));
        // An end inside the repeated hour is its second showing: 01:30 EST = 06:30Z, not 05:30Z.
        let ends_in_fold = w("Sun 00:00-01:30 America/New_York");
        assert_eq!(ends_in_fold.closes_at(ts("2026-11-01T04:00:00Z")), Some(ts("2026-11-01T06:30:00Z")));
        assert!(ends_in_fold.is_open(ts("2026-11-01T06:00:00Z")));

        // London jumps 01:00 GMT → 02:00 BST on 2026-03-29: a start inside the gap moves to the jump.
        let london = w("Sun 01:30-03:00 Europe/London");
        assert_eq!(london.next_open(ts("2026-03-28T12:00:00Z")), ts("2026-03-29T01:00:00Z"));
        assert_eq!(london.closes_at(ts("2026-03-29T01:00:00Z")), Some(ts("2026-03-29T02:00:00Z")));
        // A window wholly inside the skipped hour does not open that night, but the next Sunday.
        let skipped = w("Sun 01:15-01:45 Europe/London");
        assert!(!skipped.is_open(ts("2026-03-29T01:00:00Z")));
        assert_eq!(skipped.next_open(ts("2026-03-29T00:00:00Z")), ts("2026-04-05T00:15:00Z"));
        // An end inside the gap also moves to the jump.
        let end_in_gap = w("Sun 00:00-01:30 Europe/London");
        assert_eq!(end_in_gap.closes_at(ts("2026-03-29T00:10:00Z")), Some(ts("2026-03-29T01:00:00Z")));
    }

    #[test]
    fn describe_lines() {
        let window = w("Sat,Sun 02:00-06:00 Europe/London");
        assert_eq!(
            window.describe(ts("2026-11-24T12:00:00Z")),
            "window Sat,Sun 02:00-06:00 Europe/London is closed; next opens Sat 2026-11-28 02:00 GMT"
        );
        assert_eq!(
            window.describe(ts("2026-07-04T02:00:00Z")),
            "window Sat,Sun 02:00-06:00 Europe/London is open until Sat 2026-07-04 06:00 BST"
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        #[derive(Deserialize)]
        struct Params {
            window: Window,
        }
        let params: Params = serde_json::from_str(r#"{"window":"Sat,Sun 02:00-06:00 Europe/London"}"#).unwrap();
        assert_eq!(params.window, w("Sat,Sun 02:00-06:00 Europe/London"));
        assert_eq!(serde_json::to_string(&params.window).unwrap(), r#""Sat,Sun 02:00-06:00 Europe/London""#);
        let err = serde_json::from_str::<Params>(r#"{"window":"Sat 02:00-06:00 Nowhere"}"#).err().unwrap();
        assert!(err.to_string().contains("unknown time zone `Nowhere`"), "{err}");
    }
}
