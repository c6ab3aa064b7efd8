//! Pacemaker scores: integers saturated at ±INFINITY (1,000,000).
//!
//! The arithmetic follows Pacemaker Explained ("Infinity Math"): `-INFINITY` absorbs everything
//! (`INFINITY + -INFINITY = -INFINITY`), `INFINITY` absorbs every finite value, and finite sums
//! saturate at ±INFINITY. A negative score on a node means the resource may not run there.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Pacemaker's INFINITY.
pub const INFINITY: i32 = 1_000_000;

/// A score in `[-INFINITY, INFINITY]`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "ScoreRepr", into = "ScoreRepr")]
pub struct Score(i32);

impl Score {
    pub const ZERO: Score = Score(0);
    pub const INFINITY: Score = Score(INFINITY);
    pub const MINUS_INFINITY: Score = Score(-INFINITY);

    /// A score, saturated to ±INFINITY.
    pub fn new(value: i64) -> Score {
        Score(
            i32::try_from(value.clamp(-i64::from(INFINITY), i64::from(INFINITY)))
                .expect("clamped to ±INFINITY"),
        )
    }

    pub fn value(self) -> i32 {
        self.0
    }

    pub fn is_infinite(self) -> bool {
        self.0.abs() == INFINITY
    }

    pub fn is_minus_infinity(self) -> bool {
        self.0 == -INFINITY
    }

    pub fn is_plus_infinity(self) -> bool {
        self.0 == INFINITY
    }

    /// Named after Pacemaker's `pcmk__add_scores`; deliberately not `std::ops::Add`, because it
    /// is not ordinary addition (it absorbs and saturates).
    /// Pacemaker's score addition: `-INFINITY` wins over everything, then `INFINITY`, then a
    /// saturating sum.
    #[must_use]
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: Score) -> Score {
        if self.0 == -INFINITY || other.0 == -INFINITY {
            Score::MINUS_INFINITY
        } else if self.0 == INFINITY || other.0 == INFINITY {
            Score::INFINITY
        } else {
            Score::new(i64::from(self.0) + i64::from(other.0))
        }
    }

    /// Parses `INFINITY`, `+INFINITY`, `-INFINITY`, `inf` spellings and integers (saturated);
    /// Pacemaker also accepts the colour words `red`/`yellow`/`green` from node-health, which
    /// we do not use.
    pub fn parse(text: &str) -> Option<Score> {
        let t = text.trim();
        match t.to_ascii_uppercase().as_str() {
            "INFINITY" | "+INFINITY" | "INF" | "+INF" => return Some(Score::INFINITY),
            "-INFINITY" | "-INF" => return Some(Score::MINUS_INFINITY),
            _ => {}
        }
        let digits = t.strip_prefix('+').unwrap_or(t);
        if digits.is_empty()
            || !digits
                .trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        // Overlong integers saturate, as Pacemaker's char2score does.
        match digits.parse::<i64>() {
            Ok(v) => Some(Score::new(v)),
            Err(_) if digits.starts_with('-') => Some(Score::MINUS_INFINITY),
            Err(_) => Some(Score::INFINITY),
        }
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            INFINITY => f.write_str("INFINITY"),
            v if v == -INFINITY => f.write_str("-INFINITY"),
            v => write!(f, "{v}"),
        }
    }
}

impl std::str::FromStr for Score {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Score::parse(s).ok_or_else(|| format!("'{s}' is not a score (an integer or INFINITY)"))
    }
}

/// On disk a score is its Pacemaker spelling (`"INFINITY"`, `"-INFINITY"`, `"50"`) or a number.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ScoreRepr {
    Int(i64),
    Text(String),
}

impl TryFrom<ScoreRepr> for Score {
    type Error = String;
    fn try_from(r: ScoreRepr) -> Result<Self, Self::Error> {
        match r {
            ScoreRepr::Int(v) => Ok(Score::new(v)),
            ScoreRepr::Text(t) => t.parse(),
        }
    }
}

impl From<Score> for ScoreRepr {
    fn from(s: Score) -> Self {
        if s.is_infinite() {
            ScoreRepr::Text(s.to_string())
        } else {
            ScoreRepr::Int(i64::from(s.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinity_math() {
        let inf = Score::INFINITY;
        let minf = Score::MINUS_INFINITY;
        assert_eq!(inf.add(minf), minf);
        assert_eq!(minf.add(inf), minf);
        assert_eq!(inf.add(Score::new(-5)), inf);
        assert_eq!(Score::new(999_999).add(Score::new(5)), inf);
        assert_eq!(Score::new(-999_999).add(Score::new(-5)), minf);
        assert_eq!(Score::new(3).add(Score::new(4)), Score::new(7));
    }

    #[test]
    fn parse_spellings() {
        assert_eq!(Score::parse("INFINITY"), Some(Score::INFINITY));
        assert_eq!(Score::parse("+INFINITY"), Some(Score::INFINITY));
        assert_eq!(Score::parse("-infinity"), Some(Score::MINUS_INFINITY));
        assert_eq!(Score::parse("50"), Some(Score::new(50)));
        assert_eq!(Score::parse("+50"), Some(Score::new(50)));
        assert_eq!(Score::parse("-7"), Some(Score::new(-7)));
        assert_eq!(Score::parse("5000000"), Some(Score::INFINITY));
        assert_eq!(Score::parse("99999999999999999999"), Some(Score::INFINITY));
        assert_eq!(Score::parse("abc"), None);
        assert_eq!(Score::parse(""), None);
        assert_eq!(Score::parse("1-2"), None);
    }

    #[test]
    fn serde_round_trip() {
        let v: Vec<Score> = vec![Score::INFINITY, Score::new(-3), Score::MINUS_INFINITY];
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, r#"["INFINITY",-3,"-INFINITY"]"#);
        let back: Vec<Score> = serde_json::from_str(&j).unwrap();
        assert_eq!(back, v);
    }
}
