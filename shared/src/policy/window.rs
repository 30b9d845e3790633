//! Change windows: weekly opening hours in a named IANA time zone. Execution outside the window
//! waits for its next opening. Daylight-saving changes are handled by the zone rules: a wall
//! clock time that does not exist (spring forward) moves to the first instant after the gap,
//! and one that exists twice (fall back) takes the earlier instant.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::Match;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One weekly opening, written `"mon-fri 08:00-18:00"`. An end at or before the start runs
/// past midnight (`"fri 22:00-02:00"` closes on Saturday at 02:00); `24:00` is the end of day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSlot {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight, 0..1440.
    from: u16,
    /// Minutes after midnight, 1..=1440.
    to: u16,
}

/// A window slot that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid window \"{input}\": {problem}, expected days and hours such as \"mon-fri 08:00-18:00\" (days: mon tue wed thu fri sat sun, ranges and commas, or daily)"
)]
pub struct SlotError {
    pub input: String,
    pub problem: String,
}

fn parse_day(s: &str) -> Option<usize> {
    DAY_NAMES.iter().position(|d| *d == s)
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

impl FromStr for WindowSlot {
    type Err = SlotError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |problem: &str| SlotError { input: input.to_owned(), problem: problem.to_owned() };
        let lowered = input.trim().to_ascii_lowercase();
        let mut parts = lowered.split_whitespace();
        let (Some(days_part), Some(hours_part), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err("it must be two words, days then hours"));
        };
        let mut days = [false; 7];
        if days_part == "daily" {
            days = [true; 7];
        } else {
            for item in days_part.split(',') {
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (Some(a), Some(b)) = (parse_day(a), parse_day(b)) else {
                            return Err(err(&format!("\"{item}\" is not a range of days")));
                        };
                        let mut d = a;
                        loop {
                            days[d] = true;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => {
                        let Some(d) = parse_day(item) else {
                            return Err(err(&format!("\"{item}\" is not a day")));
                        };
                        days[d] = true;
                    }
                }
            }
        }
        let Some((from, to)) = hours_part.split_once('-') else {
            return Err(err("the hours must be a range HH:MM-HH:MM"));
        };
        let (Some(from), Some(to)) = (parse_clock(from), parse_clock(to)) else {
            return Err(err("the hours must be a range HH:MM-HH:MM"));
        };
        if from == 1440 {
            return Err(err("a window cannot open at 24:00"));
        }
        if from == to {
            return Err(err("it opens and closes at the same time"));
        }
        Ok(WindowSlot { days, from, to })
    }
}

impl fmt::Display for WindowSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..7).filter(|d| self.days[*d]).map(|d| DAY_NAMES[d]).collect();
        let days = if names.len() == 7 { "daily".to_owned() } else { names.join(",") };
        write!(f, "{days} {:02}:{:02}-{:02}:{:02}", self.from / 60, self.from % 60, self.to / 60, self.to % 60)
    }
}

impl Serialize for WindowSlot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::units::from_str_value(d, "a window such as \"mon-fri 08:00-18:00\"")
    }
}

/// Where a moment stands relative to a change window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    /// Inside the window, which closes at `closes_at`.
    Open { closes_at: Timestamp },
    /// Outside; the window next opens at `next_opening` (`None`: not within 15 days, which a
    /// validated weekly window cannot produce).
    Closed { next_opening: Option<Timestamp> },
}

/// A named change window with the targets it applies to.
#[derive(Debug, Clone)]
pub struct ChangeWindow {
    pub name: String,
    pub when: Match,
    /// The IANA name, e.g. `Europe/Amsterdam`.
    pub time_zone: String,
    pub(crate) tz: TimeZone,
    pub open: Vec<WindowSlot>,
}

impl PartialEq for ChangeWindow {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.when == other.when
            && self.time_zone == other.time_zone
            && self.open == other.open
    }
}

impl ChangeWindow {
    /// Builds a window; `None` if the time zone is unknown to the time zone database.
    pub fn new(name: impl Into<String>, time_zone: &str, open: Vec<WindowSlot>, when: Match) -> Option<Self> {
        let tz = TimeZone::get(time_zone).ok()?;
        Some(ChangeWindow { name: name.into(), when, time_zone: time_zone.to_owned(), tz, open })
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// `at` in the window's zone, for people: `Mon 2026-03-30 08:00 CEST`.
    pub fn local(&self, at: Timestamp) -> String {
        at.to_zoned(self.tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string()
    }

    fn instant(&self, date: Date, minutes: u16) -> Option<Timestamp> {
        let (date, minutes) = if minutes == 1440 { (date.tomorrow().ok()?, 0) } else { (date, minutes) };
        let hour = i8::try_from(minutes / 60).ok()?;
        let minute = i8::try_from(minutes % 60).ok()?;
        self.tz.to_ambiguous_timestamp(date.at(hour, minute, 0, 0)).compatible().ok()
    }

    /// Whether the window is open at `at`, and when it closes or next opens.
    pub fn status_at(&self, at: Timestamp) -> WindowStatus {
        let today = at.to_zoned(self.tz.clone()).date();
        let Ok(mut day) = today.yesterday() else {
            return WindowStatus::Closed { next_opening: None };
        };
        let mut next: Option<Timestamp> = None;
        for _ in 0..17 {
            let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0);
            for slot in &self.open {
                if !slot.days[weekday] {
                    continue;
                }
                let start = self.instant(day, slot.from);
                let end_day = if slot.to <= slot.from { day.tomorrow().ok() } else { Some(day) };
                let end = end_day.and_then(|d| self.instant(d, slot.to));
                let (Some(start), Some(end)) = (start, end) else { continue };
                if start >= end {
                    continue; // swallowed by a daylight-saving gap
                }
                if start <= at && at < end {
                    return WindowStatus::Open { closes_at: end };
                }
                if start > at && next.is_none_or(|n| start < n) {
                    next = Some(start);
                }
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        WindowStatus::Closed { next_opening: next }
    }
}

impl fmt::Display for ChangeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots: Vec<String> = self.open.iter().map(|s| s.to_string()).collect();
        write!(f, "{} ({} {})", self.name, slots.join(", "), self.time_zone)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn window(slots: &[&str]) -> ChangeWindow {
        let open = slots.iter().map(|s| s.parse().unwrap()).collect();
        ChangeWindow::new("w", "Europe/Amsterdam", open, Match::default()).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn slots_parse_and_print() {
        for (text, shown) in [
            ("mon-fri 08:00-18:00", "mon,tue,wed,thu,fri 08:00-18:00"),
            ("Sat,sun 10:00-12:30", "sat,sun 10:00-12:30"),
            ("fri-mon 22:00-02:00", "mon,fri,sat,sun 22:00-02:00"),
            ("daily 00:00-24:00", "daily 00:00-24:00"),
        ] {
            assert_eq!(text.parse::<WindowSlot>().unwrap().to_string(), shown);
        }
        for bad in
            ["mon-fri", "mon-fri 8-18", "mon-fry 08:00-18:00", "mon 08:00-08:00", "mon 24:00-01:00", "mon 08:60-09:00"]
        {
            let e = bad.parse::<WindowSlot>().expect_err(bad).to_string();
            assert!(e.contains("such as \"mon-fri 08:00-18:00\""), "{e}");
        }
    }

    #[test]
    fn window_status_table() {
        let business = window(&["mon-fri 08:00-18:00"]);
        let night = window(&["fri 22:00-02:00"]);
        let dst_gap = window(&["sun 02:30-04:00"]);
        let cases = [
            // Inside: Monday 2026-03-02 09:00 CET.
            (&business, "2026-03-02T08:00:00Z", WindowStatus::Open { closes_at: ts("2026-03-02T17:00:00Z") }),
            // Before opening on a weekday: opens at 08:00 CET the same day.
            (
                &business,
                "2026-03-02T05:00:00Z",
                WindowStatus::Closed { next_opening: Some(ts("2026-03-02T07:00:00Z")) },
            ),
            // Friday evening across the weekend and the spring-forward change of Sunday
            // 2026-03-29: Monday 08:00 is CEST (UTC+2), so 06:00Z, not 07:00Z.
            (
                &business,
                "2026-03-27T18:00:00Z",
                WindowStatus::Closed { next_opening: Some(ts("2026-03-30T06:00:00Z")) },
            ),
            // Fall back (Sunday 2026-10-25): Monday 08:00 CET is 07:00Z.
            (
                &business,
                "2026-10-23T17:00:00Z",
                WindowStatus::Closed { next_opening: Some(ts("2026-10-26T07:00:00Z")) },
            ),
            // A window across midnight is still open early on Saturday.
            (&night, "2026-03-07T00:00:00Z", WindowStatus::Open { closes_at: ts("2026-03-07T01:00:00Z") }),
            // 02:30 does not exist on 2026-03-29 in Amsterdam: the window opens right after the gap.
            (&dst_gap, "2026-03-28T12:00:00Z", WindowStatus::Closed { next_opening: Some(ts("2026-03-29T01:30:00Z")) }),
        ];
        for (w, now, want) in cases {
            assert_eq!(w.status_at(ts(now)), want, "{} at {now}", w);
        }
    }

    #[test]
    fn local_time_names_the_zone() {
        let w = window(&["mon-fri 08:00-18:00"]);
        assert_eq!(w.local(ts("2026-03-30T06:00:00Z")), "Mon 2026-03-30 08:00 CEST");
    }
}
