//! Durations as operators write them in `mail.toml`: `"30d"`, `"1h"`, `"90m"`, `"45s"`, or a
//! bare number of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A whole number of seconds, written with a unit suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// The length in seconds.
    pub secs: u64,
}

impl Span {
    /// `n` seconds.
    pub const fn secs(secs: u64) -> Span {
        Span { secs }
    }
    /// `n` hours.
    pub const fn hours(n: u64) -> Span {
        Span { secs: n * 3600 }
    }
    /// `n` days.
    pub const fn days(n: u64) -> Span {
        Span { secs: n * 86_400 }
    }

    /// As a `std::time::Duration`.
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.secs)
    }

    /// Parses `"30d"`, `"1h"`, `"90m"`, `"45s"` or `"45"` (seconds).
    pub fn parse(s: &str) -> Result<Span, String> {
        let t = s.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'd')) => (&t[..i], 86_400),
            Some((i, 'h')) => (&t[..i], 3600),
            Some((i, 'm')) => (&t[..i], 60),
            Some((i, 's')) => (&t[..i], 1),
            Some(_) => (t, 1),
            None => return Err("empty duration".into()),
        };
        let n: u64 = num.trim().parse().map_err(|_| {
            format!("{s:?} is not a duration (use e.g. \"30d\", \"1h\", \"90m\", \"45s\")")
        })?;
        n.checked_mul(mult)
            .map(Span::secs)
            .ok_or_else(|| format!("{s:?} is too long"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30d\", \"1h\", \"90m\", \"45s\" or seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                Span::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
                u64::try_from(v)
                    .map(Span::secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
                Ok(Span::secs(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_prints_them_back() {
        assert_eq!(Span::parse("30d"), Ok(Span::days(30)));
        assert_eq!(Span::parse("1h"), Ok(Span::hours(1)));
        assert_eq!(Span::parse(" 90m "), Ok(Span::secs(5400)));
        assert_eq!(Span::parse("45s"), Ok(Span::secs(45)));
        assert_eq!(Span::parse("7"), Ok(Span::secs(7)));
        assert!(Span::parse("").is_err());
        assert!(Span::parse("h").is_err());
        assert!(Span::parse("-1h").is_err());
        assert!(Span::parse("1w").is_err());
        assert!(Span::parse("99999999999999999999d").is_err());
        for s in ["30d", "1h", "90m", "45s", "0s"] {
            assert_eq!(Span::parse(s).unwrap().to_string(), s);
        }
    }
}
