//! Tokens of the `.res` language (drbd.conf(5) "FILE FORMAT").
//!
//! DRBD's scanner splits on whitespace and the characters `{ } ; [ ] :`, so that
//! `address 10.0.0.1:7789;` is several tokens. Ours splits only on whitespace and `{ } ;`:
//! a word is any run of other characters, so that NBD URIs (`nbd+unix:///r0?socket=/run/x`)
//! need no quoting; the few statements with inner structure (`address`, `meta-disk ... [N]`)
//! re-join their words and parse them in one place. `#` starts a comment outside quotes.
//! Double-quoted strings unescape `\"` and `\\` (a backslash quotes the next character, as in
//! drbdadm) and may not span lines.

use std::sync::Arc;

use super::error::{ConfigError, Pos};

/// The longest word or quoted string accepted (DRBD's limit is 255 for strings; paths and
/// handler command lines can be longer, and this bound only keeps hostile input small).
pub const MAX_TOKEN_CHARS: usize = 4096;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted word.
    Word(String),
    /// A double-quoted string, unescaped.
    Quoted(String),
    /// `{`
    Open,
    /// `}`
    Close,
    /// `;`
    Semi,
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub kind: TokenKind,
    /// Where it starts.
    pub pos: Pos,
}

impl Token {
    /// The text of a word or quoted string; `None` for punctuation.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Word(s) | TokenKind::Quoted(s) => Some(s),
            _ => None,
        }
    }

    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Word(s) => format!("'{s}'"),
            TokenKind::Quoted(s) => format!("\"{s}\""),
            TokenKind::Open => "'{'".into(),
            TokenKind::Close => "'}'".into(),
            TokenKind::Semi => "';'".into(),
        }
    }
}

/// Splits `text` (the contents of `file`) into tokens.
pub fn tokenize(file: &Arc<str>, text: &str) -> Result<Vec<Token>, ConfigError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1u32, 1u32);
    let pos = |line, col| Pos {
        file: file.clone(),
        line,
        col,
    };
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                chars.next();
                line += 1;
                col = 1;
            }
            ' ' | '\t' | '\r' => {
                chars.next();
                col += 1;
            }
            '#' => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '{' | '}' | ';' => {
                chars.next();
                let kind = match c {
                    '{' => TokenKind::Open,
                    '}' => TokenKind::Close,
                    _ => TokenKind::Semi,
                };
                out.push(Token {
                    kind,
                    pos: pos(line, col),
                });
                col += 1;
            }
            '"' => {
                let start = pos(line, col);
                chars.next();
                col += 1;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None | Some('\n') => {
                            return Err(ConfigError::new(
                                &start,
                                "unterminated double-quoted string (a string must close on the line it starts)",
                            ));
                        }
                        Some('"') => {
                            col += 1;
                            break;
                        }
                        Some('\\') => {
                            col += 1;
                            match chars.next() {
                                None | Some('\n') => {
                                    return Err(ConfigError::new(
                                        &start,
                                        "unterminated double-quoted string (backslash at end of line)",
                                    ));
                                }
                                Some(e) => {
                                    col += 1;
                                    s.push(e);
                                }
                            }
                        }
                        Some(ch) => {
                            col += 1;
                            check_char(ch, &pos(line, col - 1))?;
                            s.push(ch);
                        }
                    }
                    if s.chars().count() > MAX_TOKEN_CHARS {
                        return Err(ConfigError::new(
                            &start,
                            format!(
                                "double-quoted string longer than {MAX_TOKEN_CHARS} characters"
                            ),
                        ));
                    }
                }
                out.push(Token {
                    kind: TokenKind::Quoted(s),
                    pos: start,
                });
            }
            _ => {
                let start = pos(line, col);
                let mut s = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    check_char(ch, &pos(line, col))?;
                    chars.next();
                    col += 1;
                    s.push(ch);
                    if s.len() > MAX_TOKEN_CHARS {
                        return Err(ConfigError::new(
                            &start,
                            format!("word longer than {MAX_TOKEN_CHARS} characters"),
                        ));
                    }
                }
                if s.is_empty() {
                    // A whitespace character other than the ones handled above (e.g. U+00A0).
                    return Err(ConfigError::new(
                        &start,
                        format!("unexpected character {:?}", c),
                    ));
                }
                out.push(Token {
                    kind: TokenKind::Word(s),
                    pos: start,
                });
            }
        }
    }
    Ok(out)
}

/// Control characters never belong in a configuration file; naming them beats a confusing
/// error three tokens later.
fn check_char(ch: char, pos: &Pos) -> Result<(), ConfigError> {
    if ch.is_control() && ch != '\t' {
        return Err(ConfigError::new(
            pos,
            format!("unexpected control character U+{:04X}", u32::from(ch)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(&Arc::from("t.res"), text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn w(s: &str) -> TokenKind {
        TokenKind::Word(s.into())
    }

    #[test]
    fn splits_words_punctuation_and_comments() {
        assert_eq!(
            kinds("resource r0 { # comment ; {\n address ipv4 10.0.0.1:7789; }"),
            vec![
                w("resource"),
                w("r0"),
                TokenKind::Open,
                w("address"),
                w("ipv4"),
                w("10.0.0.1:7789"),
                TokenKind::Semi,
                TokenKind::Close
            ]
        );
        assert_eq!(
            kinds("device nbd+unix:///r0?socket=/run/x.sock;")[1],
            w("nbd+unix:///r0?socket=/run/x.sock")
        );
        assert_eq!(kinds("a#b c\nd"), vec![w("a"), w("d")]);
    }

    #[test]
    fn quoted_strings_unescape_and_keep_spaces() {
        assert_eq!(
            kinds(r#"split-brain "/usr/lib/x.sh root \"q\" \\";"#),
            vec![
                w("split-brain"),
                TokenKind::Quoted(r#"/usr/lib/x.sh root "q" \"#.into()),
                TokenKind::Semi
            ]
        );
    }

    #[test]
    fn positions_are_line_and_column() {
        let toks = tokenize(&Arc::from("f.res"), "a {\n  \"b\" }\n}").unwrap();
        let p: Vec<(u32, u32)> = toks.iter().map(|t| (t.pos.line, t.pos.col)).collect();
        assert_eq!(p, vec![(1, 1), (1, 3), (2, 3), (2, 7), (3, 1)]);
    }

    #[test]
    fn errors_name_the_place() {
        let e = tokenize(&Arc::from("f.res"), "x \"abc\ndef\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.res:1:3: unterminated double-quoted string (a string must close on the line it starts)"
        );
        let e = tokenize(&Arc::from("f.res"), "ab\u{1}c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.res:1:3: unexpected control character U+0001"
        );
        let long = "x".repeat(MAX_TOKEN_CHARS + 1);
        assert!(tokenize(&Arc::from("f.res"), &long).is_err());
    }
}
