//! The shape every `.res` file shares: statements made of words, ended by `;` or by a
//! `{ ... }` block of further statements. drbd.conf(5) fits this shape throughout
//! (`resource r0 { ... }`, `on alice bob { ... }`, `protocol C;`, `address ipv4 10.0.0.1:7789;`),
//! so the parser first builds this tree — catching every brace and semicolon mistake with its
//! position — and [`super::build`] then gives each statement its meaning.
//!
//! Top-level `include PATTERN;` statements are expanded here, in place, through a
//! [`Source`]: the daemon's reads the filesystem, tests use [`MemSource`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::{ConfigError, Pos};
use super::lexer::{Token, TokenKind, tokenize};

/// Deepest nesting of `{ }` accepted; DRBD's grammar needs 4 (resource, connection, volume,
/// disk). Deeper input is refused with an error instead of recursing without bound.
pub const MAX_DEPTH: usize = 8;
/// Deepest chain of includes accepted (a file including itself is caught earlier: a file is
/// read once).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files one configuration may read through includes.
pub const MAX_FILES: usize = 1024;
/// Largest configuration file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// Where configuration files come from. Paths are strings as the operator wrote them; the
/// source resolves relative ones.
pub trait Source {
    /// Expands an `include` pattern (glob(7): `*`, `?`, `[...]`) written in file `from`:
    /// a relative pattern is relative to the directory of `from`, as drbdadm does. Returns the
    /// matching files sorted, each named so that the same file always gets the same name
    /// (e.g. canonicalised); empty when nothing matches.
    fn expand(&self, pattern: &str, from: &str) -> Result<Vec<String>, String>;
    /// Reads a whole file as UTF-8 text.
    fn read(&self, path: &str) -> Result<String, String>;
}

/// An in-memory [`Source`]: file name → contents. Relative patterns are joined to the
/// directory part of the including file's name.
#[derive(Debug, Clone, Default)]
pub struct MemSource {
    files: BTreeMap<String, String>,
}

impl MemSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_owned(), text.to_owned());
        self
    }
}

/// `pattern` made absolute against the directory of `from` (a no-op for absolute patterns).
pub fn join_relative(pattern: &str, from: &str) -> String {
    if pattern.starts_with('/') {
        return pattern.to_owned();
    }
    match from.rfind('/') {
        Some(0) => format!("/{pattern}"),
        Some(i) => format!("{}/{pattern}", &from[..i]),
        None => pattern.to_owned(),
    }
}

impl Source for MemSource {
    fn expand(&self, pattern: &str, from: &str) -> Result<Vec<String>, String> {
        let full = join_relative(pattern, from);
        let pat = glob::Pattern::new(&full).map_err(|e| format!("bad pattern: {e}"))?;
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        Ok(self
            .files
            .keys()
            .filter(|k| pat.matches_with(k, opts))
            .cloned()
            .collect())
    }

    fn read(&self, path: &str) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    }
}

/// One statement: its words (the first is the keyword) and, for a section, its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// The words before `;` or `{`; never empty.
    pub words: Vec<Token>,
    /// The `{ ... }` block, for sections.
    pub block: Option<Block>,
}

impl Stmt {
    /// The keyword (first word) text.
    pub fn keyword(&self) -> &str {
        self.words[0].text().expect("statement words are words")
    }

    /// Where the statement starts.
    pub fn pos(&self) -> &Pos {
        &self.words[0].pos
    }

    /// The words after the keyword.
    pub fn args(&self) -> &[Token] {
        &self.words[1..]
    }
}

/// A `{ ... }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The statements inside.
    pub stmts: Vec<Stmt>,
    /// Where `{` is.
    pub open: Pos,
}

/// Parses `path` (read through `source`) and every file it includes into one list of
/// top-level statements, includes expanded in place. Also returns the files read, in order.
pub fn parse_files_listed(
    path: &str,
    source: &dyn Source,
) -> Result<(Vec<Stmt>, Vec<String>), ConfigError> {
    let mut seen = Vec::new();
    let top = Pos {
        file: Arc::from(path),
        line: 0,
        col: 0,
    };
    let text = source
        .read(path)
        .map_err(|e| ConfigError::new(&top, format!("cannot read configuration file: {e}")))?;
    let mut out = Vec::new();
    seen.push(path.to_owned());
    parse_file_into(path, &text, source, &mut seen, 0, &mut out)?;
    Ok((out, seen))
}

/// [`parse_files_listed`] without the file list.
pub fn parse_files(path: &str, source: &dyn Source) -> Result<Vec<Stmt>, ConfigError> {
    parse_files_listed(path, source).map(|(s, _)| s)
}

/// Parses one text with no includes allowed to reach other files (they fail as "not found"
/// unless `text` itself is all there is). Handy for tests and the fuzzer.
pub fn parse_text(name: &str, text: &str) -> Result<Vec<Stmt>, ConfigError> {
    parse_files(name, &MemSource::new().with(name, text))
}

fn parse_file_into(
    path: &str,
    text: &str,
    source: &dyn Source,
    seen: &mut Vec<String>,
    depth: usize,
    out: &mut Vec<Stmt>,
) -> Result<(), ConfigError> {
    let file: Arc<str> = Arc::from(path);
    if text.len() > MAX_FILE_BYTES {
        let p = Pos {
            file,
            line: 1,
            col: 1,
        };
        return Err(ConfigError::new(
            &p,
            format!("file larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let tokens = tokenize(&file, text)?;
    let mut it = tokens.into_iter().peekable();
    let stmts = parse_stmts(&mut it, None, 0)?;
    for stmt in stmts {
        if stmt.keyword() != "include" {
            out.push(stmt);
            continue;
        }
        if stmt.block.is_some() || stmt.args().len() != 1 {
            return Err(ConfigError::new(
                stmt.pos(),
                "'include' takes one file pattern: include \"PATTERN\";",
            ));
        }
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(ConfigError::new(
                stmt.pos(),
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            ));
        }
        let pattern = stmt.args()[0].text().expect("word");
        let files = source.expand(pattern, path).map_err(|e| {
            ConfigError::new(&stmt.args()[0].pos, format!("include '{pattern}': {e}"))
        })?;
        if files.is_empty() && !pattern.contains(['*', '?', '[']) {
            // drbdadm: a pattern without wildcards must name an existing file.
            return Err(ConfigError::new(
                &stmt.args()[0].pos,
                format!(
                    "include '{pattern}': no such file ({})",
                    join_relative(pattern, path)
                ),
            ));
        }
        for f in files {
            if seen.contains(&f) {
                continue;
            }
            seen.push(f.clone());
            if seen.len() > MAX_FILES {
                return Err(ConfigError::new(
                    stmt.pos(),
                    format!("more than {MAX_FILES} configuration files included"),
                ));
            }
            let text = source.read(&f).map_err(|e| {
                ConfigError::new(
                    &stmt.args()[0].pos,
                    format!("include '{f}': cannot read: {e}"),
                )
            })?;
            parse_file_into(&f, &text, source, seen, depth + 1, out)?;
        }
    }
    Ok(())
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

/// Parses statements until the matching `}` (when `open` is the enclosing block's opening
/// section) or the end of input (at top level).
fn parse_stmts(
    it: &mut Tokens,
    open: Option<(&Pos, &str)>,
    depth: usize,
) -> Result<Vec<Stmt>, ConfigError> {
    let mut stmts = Vec::new();
    loop {
        let mut words: Vec<Token> = Vec::new();
        loop {
            let Some(tok) = it.next() else {
                if let Some(w) = words.first() {
                    let last = words.last().expect("non-empty");
                    return Err(ConfigError::new(
                        &last.pos,
                        format!(
                            "missing ';' after {} (statement '{}' runs into the end of the file)",
                            last.describe(),
                            w.text().unwrap_or("")
                        ),
                    ));
                }
                if let Some((pos, what)) = open {
                    return Err(ConfigError::new(
                        pos,
                        format!(
                            "'{{' of '{what}' is never closed: missing '}}' before the end of the file"
                        ),
                    ));
                }
                return Ok(stmts);
            };
            match tok.kind {
                TokenKind::Word(_) | TokenKind::Quoted(_) => words.push(tok),
                TokenKind::Semi => {
                    if words.is_empty() {
                        return Err(ConfigError::new(
                            &tok.pos,
                            "unexpected ';' (no statement before it)",
                        ));
                    }
                    stmts.push(Stmt { words, block: None });
                    break;
                }
                TokenKind::Open => {
                    if words.is_empty() {
                        return Err(ConfigError::new(
                            &tok.pos,
                            "unexpected '{' (a section needs a keyword before its opening brace)",
                        ));
                    }
                    if depth + 1 > MAX_DEPTH {
                        return Err(ConfigError::new(
                            &tok.pos,
                            format!("sections nested deeper than {MAX_DEPTH}"),
                        ));
                    }
                    if words[0].text() == Some("skip") {
                        // drbdadm's `skip` ignores everything up to the matching brace,
                        // whatever it contains.
                        skip_balanced(it, &tok.pos)?;
                        stmts.push(Stmt {
                            words,
                            block: Some(Block {
                                stmts: Vec::new(),
                                open: tok.pos,
                            }),
                        });
                        break;
                    }
                    let what = words
                        .iter()
                        .filter_map(|w| w.text())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let inner = parse_stmts(it, Some((&tok.pos, &what)), depth + 1)?;
                    stmts.push(Stmt {
                        words,
                        block: Some(Block {
                            stmts: inner,
                            open: tok.pos,
                        }),
                    });
                    break;
                }
                TokenKind::Close => {
                    if let Some(w) = words.last() {
                        return Err(ConfigError::new(
                            &tok.pos,
                            format!("unexpected '}}': missing ';' after {}", w.describe()),
                        ));
                    }
                    return match open {
                        Some(_) => Ok(stmts),
                        None => Err(ConfigError::new(
                            &tok.pos,
                            "unexpected '}' at top level: no section is open here (a stray closing brace?)",
                        )),
                    };
                }
            }
        }
    }
}

/// Consumes tokens up to the `}` matching an already consumed `{` at `open`.
fn skip_balanced(it: &mut Tokens, open: &Pos) -> Result<(), ConfigError> {
    let mut level = 1usize;
    for tok in it.by_ref() {
        match tok.kind {
            TokenKind::Open => level += 1,
            TokenKind::Close => {
                level -= 1;
                if level == 0 {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Err(ConfigError::new(
        open,
        "'{' of 'skip' is never closed: missing '}' before the end of the file",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_text("t.res", text).unwrap_err().to_string()
    }

    #[test]
    fn builds_the_tree() {
        let s = parse_text(
            "t.res",
            "global { usage-count no; }\nresource r { on a b { disk /x; } }",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].keyword(), "resource");
        let inner = &s[1].block.as_ref().unwrap().stmts[0];
        assert_eq!(
            inner
                .args()
                .iter()
                .map(|t| t.text().unwrap())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(inner.block.as_ref().unwrap().stmts[0].keyword(), "disk");
    }

    #[test]
    fn brace_and_semicolon_mistakes_are_located() {
        assert_eq!(
            err("resource r { }\n}"),
            "t.res:2:1: unexpected '}' at top level: no section is open here (a stray closing brace?)"
        );
        assert_eq!(
            err("resource r {\n  protocol C\n}"),
            "t.res:3:1: unexpected '}': missing ';' after 'C'"
        );
        assert_eq!(
            err("resource r {\n net {"),
            "t.res:2:6: '{' of 'net' is never closed: missing '}' before the end of the file"
        );
        assert_eq!(
            err("protocol C"),
            "t.res:1:10: missing ';' after 'C' (statement 'protocol' runs into the end of the file)"
        );
        assert_eq!(
            err("resource r { ; }"),
            "t.res:1:14: unexpected ';' (no statement before it)"
        );
        assert_eq!(
            err("{ }"),
            "t.res:1:1: unexpected '{' (a section needs a keyword before its opening brace)"
        );
        let deep = "a { ".repeat(MAX_DEPTH + 1) + &"} ".repeat(MAX_DEPTH + 1);
        assert!(err(&deep).contains("nested deeper"));
    }

    #[test]
    fn includes_expand_in_place_relative_to_the_including_file() {
        let src = MemSource::new()
            .with("/etc/drbd.conf", "include \"drbd.d/global_common.conf\";\ninclude \"drbd.d/*.res\";\nresource last {}")
            .with("/etc/drbd.d/global_common.conf", "global {}")
            .with("/etc/drbd.d/b.res", "resource b {}")
            .with("/etc/drbd.d/a.res", "resource a {} include \"b.res\";")
            .with("/etc/drbd.d/a.txt", "garbage {");
        let s = parse_files("/etc/drbd.conf", &src).unwrap();
        let names: Vec<String> = s
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.keyword(),
                    s.args().first().and_then(|t| t.text()).unwrap_or("")
                )
            })
            .collect();
        // b.res is read once (through a.res), then skipped by the glob.
        assert_eq!(
            names,
            ["global ", "resource a", "resource b", "resource last"]
        );
        assert_eq!(&*s[2].pos().file, "/etc/drbd.d/b.res");
    }

    #[test]
    fn include_errors() {
        let src = MemSource::new().with("/c", "include \"missing.res\";\n");
        assert_eq!(
            parse_files("/c", &src).unwrap_err().to_string(),
            "/c:1:9: include 'missing.res': no such file (/missing.res)"
        );
        // A pattern with wildcards may match nothing.
        let src = MemSource::new().with("/c", "include \"/d/*.res\";");
        assert!(parse_files("/c", &src).unwrap().is_empty());
        // A file including itself is read once.
        let src = MemSource::new().with("/c", "include \"/c\"; global {}");
        assert_eq!(parse_files("/c", &src).unwrap().len(), 1);
        // A chain deeper than the bound.
        let mut src = MemSource::new();
        for i in 0..=MAX_INCLUDE_DEPTH + 1 {
            src = src.with(&format!("/f{i}"), &format!("include \"/f{}\";", i + 1));
        }
        assert!(
            parse_files("/f0", &src)
                .unwrap_err()
                .to_string()
                .contains("nested deeper")
        );
    }
}
