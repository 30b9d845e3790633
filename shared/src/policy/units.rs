//! Small value types of the policy language: keywords with helpful errors, durations written
//! as "72h" or "30d", and timestamps that may be written as TOML datetimes or strings.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A word that is not one of the keywords a field accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{found}\", expected one of {}", expected.join(", "))]
pub struct KeywordError {
    pub what: &'static str,
    pub found: String,
    pub expected: &'static [&'static str],
}

/// Declares a closed set of keywords: the enum, its text form, `FromStr` with an error that
/// lists the accepted words, `Display`, and serde as plain strings.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every keyword, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The keywords as written in policy files and JSON.
            pub const KEYWORDS: &'static [&'static str] = &[$($text),+];

            /// The keyword as written in policy files and JSON.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::policy::units::KeywordError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::policy::units::KeywordError {
                        what: $what,
                        found: s.to_owned(),
                        expected: Self::KEYWORDS,
                    }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::policy::units::from_str_value(d, $what)
            }
        }
    };
}
pub(crate) use keyword_enum;

/// Deserializes a `FromStr` value from a string. Parsing happens inside the visitor, so that
/// toml attaches the position of the value itself (also inside arrays) to the error.
pub(crate) fn from_str_value<'de, D, T>(d: D, what: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr> Visitor<'_> for V<T>
    where
        T::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a string ({})", self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(V(what, std::marker::PhantomData))
}

/// The longest duration the policy language accepts (about a hundred years).
const MAX_SECONDS: i64 = 100 * 366 * 86_400;

/// A positive length of time, written "30d", "72h", "1w 2d", "90m" or "45 days".
/// Days are 24 hours and weeks 7 days; months and years are refused because their length varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyDuration {
    seconds: i64,
}

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration \"{input}\": {problem}, expected a number and a unit (w, d, h, m, s) such as \"72h\" or \"30d\""
)]
pub struct DurationError {
    pub input: String,
    pub problem: &'static str,
}

impl PolicyDuration {
    /// Stands in for a missing value while the rest of a file is validated.
    pub(crate) const PLACEHOLDER: PolicyDuration = PolicyDuration { seconds: 3_600 };

    /// A duration of whole seconds; `None` unless it is positive and at most about a century.
    pub fn from_seconds(seconds: i64) -> Option<Self> {
        (seconds > 0 && seconds <= MAX_SECONDS).then_some(Self { seconds })
    }

    /// Whole days of 24 hours.
    pub fn days(days: i64) -> Option<Self> {
        days.checked_mul(86_400).and_then(Self::from_seconds)
    }

    /// Whole hours.
    pub fn hours(hours: i64) -> Option<Self> {
        hours.checked_mul(3_600).and_then(Self::from_seconds)
    }

    pub fn as_seconds(self) -> i64 {
        self.seconds
    }

    pub fn to_signed(self) -> SignedDuration {
        SignedDuration::from_secs(self.seconds)
    }

    /// `start + self`, saturating at the largest timestamp.
    pub fn after(self, start: Timestamp) -> Timestamp {
        start.checked_add(self.to_signed()).unwrap_or(Timestamp::MAX)
    }

    /// The time from `start` to `end` rounded up to whole seconds, if positive.
    pub fn between(start: Timestamp, end: Timestamp) -> Option<Self> {
        let d = end.duration_since(start);
        let mut secs = d.as_secs();
        if d.subsec_nanos() > 0 {
            secs = secs.saturating_add(1);
        }
        Self::from_seconds(secs.min(MAX_SECONDS))
    }
}

impl FromStr for PolicyDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |problem| DurationError { input: input.to_owned(), problem };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total: i64 = 0;
        while i < bytes.len() {
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b',') {
                i += 1;
            }
            if i == bytes.len() {
                break;
            }
            let num_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if num_start == i {
                return Err(err("a number must come before each unit"));
            }
            let number: i64 = s[num_start..i].parse().map_err(|_| err("the number is too large"))?;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = s[unit_start..i].to_ascii_lowercase();
            let per: i64 = match unit.as_str() {
                "w" | "wk" | "wks" | "week" | "weeks" => 7 * 86_400,
                "d" | "day" | "days" => 86_400,
                "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
                "m" | "min" | "mins" | "minute" | "minutes" => 60,
                "s" | "sec" | "secs" | "second" | "seconds" => 1,
                "" => return Err(err("a unit must follow each number")),
                "mo" | "mon" | "month" | "months" | "y" | "yr" | "yrs" | "year" | "years" => {
                    return Err(err("months and years have no fixed length, use days"));
                }
                _ => return Err(err("the unit is not one of w, d, h, m, s")),
            };
            total = number.checked_mul(per).and_then(|v| total.checked_add(v)).ok_or_else(|| err("it is too long"))?;
        }
        if total == 0 {
            return Err(err("it must be longer than zero"));
        }
        Self::from_seconds(total).ok_or_else(|| err("it is longer than a hundred years"))
    }
}

impl fmt::Display for PolicyDuration {
    /// The shortest exact form: days for whole days from four days up ("5d", "30d"), otherwise
    /// hours, minutes or seconds ("72h", "90m").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        if s % 86_400 == 0 && s >= 4 * 86_400 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3_600 == 0 {
            write!(f, "{}h", s / 3_600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for PolicyDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_value(d, "a duration such as \"72h\"")
    }
}

/// A timestamp in a policy file: an RFC 3339 string or a TOML offset datetime, always with an
/// offset (`2026-03-02T09:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TomlTimestamp(pub Timestamp);

impl<'de> Deserialize<'de> for TomlTimestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TomlTimestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp with an offset such as 2026-03-02T09:00:00Z")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse::<Timestamp>().map(TomlTimestamp).map_err(|_| {
                    E::custom(format!(
                        "invalid timestamp \"{v}\", expected a date and time with an offset such as 2026-03-02T09:00:00Z"
                    ))
                })
            }
            // toml hands datetimes over as a one-entry map with a private key.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let Some((_, text)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::custom("expected a timestamp"));
                };
                self.visit_str(&text)
            }
        }
        d.deserialize_any(V)
    }
}

/// Lower-cased and with runs of whitespace collapsed: how names, aliases, ids and addresses
/// from tickets are compared with the policy.
pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        let cases = [
            ("72h", 72 * 3600, "72h"),
            ("30d", 30 * 86_400, "30d"),
            ("1w 2d", 9 * 86_400, "9d"),
            ("45 days", 45 * 86_400, "45d"),
            ("1d12h", 36 * 3600, "36h"),
            ("90m", 90 * 60, "90m"),
            ("2 weeks", 14 * 86_400, "14d"),
            ("3d", 3 * 86_400, "72h"),
            ("120h", 5 * 86_400, "5d"),
        ];
        for (text, secs, shown) in cases {
            let d: PolicyDuration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.as_seconds(), secs, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, needle) in [
            ("", "empty"),
            ("h", "number must come"),
            ("72", "unit must follow"),
            ("3 months", "no fixed length"),
            ("72 horas", "not one of"),
            ("0d", "longer than zero"),
            ("99999999999999999999d", "too large"),
            ("40000d", "hundred years"),
        ] {
            let e = text.parse::<PolicyDuration>().expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("such as \"72h\""), "{e}");
        }
    }
}
