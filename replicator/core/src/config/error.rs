//! Positions, errors and warnings of the `.res` parser.
//!
//! Every error names the file, line and column of the token it is about, and the token itself,
//! so that `replicatorctl dump` points an operator at the exact character to fix.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// A place in a configuration file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Pos {
    /// The file, as named by the caller or by the `include` that brought it in.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // The file as a whole (e.g. it cannot be read).
            return write!(f, "{}", self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A configuration error: where, and what is wrong (the message names the offending token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct ConfigError {
    /// Where the offending token starts.
    pub pos: Pos,
    /// What is wrong, naming the token.
    pub message: String,
}

impl ConfigError {
    /// An error at `pos`.
    pub fn new(pos: &Pos, message: impl Into<String>) -> Self {
        ConfigError {
            pos: pos.clone(),
            message: message.into(),
        }
    }
}

/// Something accepted but worth telling the operator: an option DRBD knows that replicatord
/// does not implement, a kernel device name mapped to an NBD socket, a clamped value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Where the statement that caused it starts.
    pub pos: Pos,
    /// What the operator should know.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.pos, self.message)
    }
}

/// The closest of `candidates` to `word` when it is close enough to be a likely typo
/// (edit distance at most 2, or 3 for long words).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = if word.chars().count() > 10 { 3 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keywords_only() {
        let words = ["protocol", "on", "net", "disk", "syncer"];
        assert_eq!(did_you_mean("protcol", words), Some("protocol"));
        assert_eq!(did_you_mean("sycner", words), Some("syncer"));
        assert_eq!(did_you_mean("zimbra", words), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
