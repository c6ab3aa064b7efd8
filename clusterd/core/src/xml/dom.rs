//! A minimal element tree over quick-xml: enough for CIB documents (elements and attributes;
//! text content is not used by the CIB schema).

use super::XmlError;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

#[derive(Clone, Debug)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub line: usize,
}

/// Bound on nesting: a CIB is at most ~10 levels deep; deeper input is refused.
const MAX_DEPTH: usize = 64;

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// A required attribute, with an error naming the element and line.
    pub fn req(&self, name: &str) -> Result<&str, XmlError> {
        self.attr(name).ok_or_else(|| XmlError::At {
            line: self.line,
            message: format!("<{}> needs a '{name}' attribute", self.name),
        })
    }
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    pub fn err(&self, message: impl Into<String>) -> XmlError {
        XmlError::At {
            line: self.line,
            message: message.into(),
        }
    }
}

fn line_of(text: &str, pos: u64) -> usize {
    let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn start(e: &BytesStart<'_>, line: usize) -> Result<Element, XmlError> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::At {
            line,
            message: format!("bad attribute in <{name}>: {err}"),
        })?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|err| XmlError::At {
                line,
                message: format!("bad value of {key}: {err}"),
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        line,
    })
}

/// Parses a document into its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| XmlError::At {
            line: line_of(text, reader.error_position()),
            message: e.to_string(),
        })?;
        let line = line_of(text, pos);
        match ev {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::At {
                        line,
                        message: format!("elements nested deeper than {MAX_DEPTH}"),
                    });
                }
                stack.push(start(&e, line)?);
            }
            Event::Empty(e) => {
                let el = start(&e, line)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => {
                        return Err(XmlError::At {
                            line,
                            message: "more than one root element".into(),
                        });
                    }
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| XmlError::At {
                    line,
                    message: "unbalanced closing tag".into(),
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => {
                        return Err(XmlError::At {
                            line,
                            message: "more than one root element".into(),
                        });
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::At {
            line: line_of(text, text.len() as u64),
            message: format!("<{}> is not closed", stack.last().expect("non-empty").name),
        });
    }
    root.ok_or(XmlError::At {
        line: 1,
        message: "empty document".into(),
    })
}

/// XML attribute escaping.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}
