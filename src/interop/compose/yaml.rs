//! A Compose file read into a tree whose every key and value knows its
//! line, so that a key we cannot carry is reported where it is written.
//!
//! Built from saphyr-parser's event stream rather than a ready-made tree
//! because a ready-made tree expands aliases without bound (a "billion
//! laughs" file of a few hundred bytes becomes gigabytes) and recurses on
//! deep nesting. Here the nesting depth and the number of nodes, aliases
//! expanded, are bounded, and the tree is built with an explicit stack.
//! Merge keys (`<<: *defaults`), which Compose files use with `x-`
//! extension fields, are applied as YAML 1.1 defines them.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Deeper nesting than this is refused (a Compose file needs about 8).
pub const MAX_DEPTH: usize = 64;
/// More nodes than this, aliases counted as many times as they are used,
/// is refused.
pub const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line where the value starts.
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Written without quotes: only then can it be null, a bool or a number.
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl Node {
    /// The scalar's text, unless it is a null.
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) if !s.is_null() => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.is_null())
    }

    pub fn map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.map()?.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
    }

    /// "a string", "a list", ... for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar(s) if s.is_null() => "nothing (null)",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    /// A YAML 1.2 core-schema boolean.
    pub fn as_bool(&self) -> Option<bool> {
        if !self.plain {
            return None;
        }
        match self.text.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut b = Builder::default();
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError { line: e.marker().line(), message: e.info().to_string() })?;
        let line = span.start.line().max(1);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        line,
                        message: "more than one YAML document (---): a Compose file is one".into(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, _) => {
                let node = Node {
                    line,
                    value: Value::Scalar(Scalar { text: text.into_owned(), plain: style == ScalarStyle::Plain }),
                };
                b.count(1, line)?;
                b.push(node, anchor, 1)?;
            }
            Event::Alias(id) => {
                let Some((node, size)) = b.anchors.get(&id).cloned() else {
                    return Err(YamlError { line, message: "an alias to an unknown anchor".into() });
                };
                b.count(size, line)?;
                b.push(node, 0, size)?;
            }
            Event::SequenceStart(anchor, _) => b.open(Frame::Seq(Vec::new()), anchor, line)?,
            Event::MappingStart(anchor, _) => b.open(Frame::Map(Vec::new(), None), anchor, line)?,
            Event::SequenceEnd | Event::MappingEnd => b.close()?,
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    b.root.ok_or(YamlError { line: 1, message: "the file is empty".into() })
}

enum Frame {
    Seq(Vec<Node>),
    /// Entries, and a key waiting for its value.
    Map(Vec<(Key, Node)>, Option<Key>),
}

struct Open {
    frame: Frame,
    line: usize,
    anchor: usize,
    /// Nodes below this one, aliases expanded.
    size: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
}

impl Builder {
    fn count(&mut self, n: usize, line: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                line,
                message: format!("more than {MAX_NODES} values once aliases are expanded: refused (an alias bomb?)"),
            });
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, anchor: usize, line: usize) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError { line, message: format!("nested deeper than {MAX_DEPTH} levels: refused") });
        }
        self.count(1, line)?;
        self.stack.push(Open { frame, line, anchor, size: 1 });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let Some(open) = self.stack.pop() else { return Ok(()) };
        let value = match open.frame {
            Frame::Seq(items) => Value::Seq(items),
            Frame::Map(entries, _) => Value::Map(merge_keys(entries)?),
        };
        self.push(Node { line: open.line, value }, open.anchor, open.size)
    }

    /// Adds a finished node to its parent (or makes it the root).
    fn push(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            // The anchor's copy is memory too.
            self.count(size, node.line)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        parent.size = parent.size.saturating_add(size);
        match &mut parent.frame {
            Frame::Seq(items) => items.push(node),
            Frame::Map(entries, pending) => match pending.take() {
                None => match node.value {
                    Value::Scalar(s) => *pending = Some(Key { text: s.text, line: node.line }),
                    _ => {
                        return Err(YamlError {
                            line: node.line,
                            message: "a mapping key must be a plain value".into(),
                        });
                    }
                },
                Some(key) => {
                    if key.text != "<<" && entries.iter().any(|(k, _)| k.text == key.text) {
                        return Err(YamlError {
                            line: key.line,
                            message: format!("key {:?} is defined twice", key.text),
                        });
                    }
                    entries.push((key, node));
                }
            },
        }
        Ok(())
    }
}

/// Applies `<<` entries: the keys of the merged mapping(s) that the
/// mapping does not set itself; of a list of mappings, the first that
/// sets a key wins.
fn merge_keys(entries: Vec<(Key, Node)>) -> Result<Vec<(Key, Node)>, YamlError> {
    if !entries.iter().any(|(k, _)| k.text == "<<") {
        return Ok(entries);
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k.text == "<<");
    for (key, value) in merges {
        let sources: Vec<Node> = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            Value::Scalar(_) => {
                return Err(YamlError {
                    line: key.line,
                    message: "<< must merge a mapping or a list of mappings".into(),
                });
            }
        };
        for source in sources {
            let Value::Map(m) = source.value else {
                return Err(YamlError {
                    line: source.line,
                    message: "<< must merge a mapping or a list of mappings".into(),
                });
            };
            for (k, v) in m {
                if !own.iter().any(|(o, _)| o.text == k.text) {
                    own.push((k, v));
                }
            }
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_and_values() {
        let doc = parse("services:\n  web:\n    image: busybox\n    ports:\n      - \"80\"\n").unwrap();
        let web = doc.get("services").unwrap().get("web").unwrap();
        let (k, v) = &web.map().unwrap()[1];
        assert_eq!((k.text.as_str(), k.line), ("ports", 4));
        assert_eq!(v.seq().unwrap()[0].line, 5);
        assert!(!v.seq().unwrap()[0].scalar().unwrap().plain);
    }

    #[test]
    fn nulls_and_bools() {
        let doc = parse("a:\nb: ~\nc: 'null'\nd: true\ne: 'true'\n").unwrap();
        assert!(doc.get("a").unwrap().is_null());
        assert!(doc.get("b").unwrap().is_null());
        assert!(!doc.get("c").unwrap().is_null());
        assert_eq!(doc.get("d").unwrap().scalar().unwrap().as_bool(), Some(true));
        assert_eq!(doc.get("e").unwrap().scalar().unwrap().as_bool(), None);
    }

    #[test]
    fn merge_keys_keep_own_values() {
        let doc = parse("x: &d\n  a: 1\n  b: 2\ny:\n  <<: *d\n  b: 3\n").unwrap();
        let y = doc.get("y").unwrap();
        assert_eq!(y.get("a").unwrap().scalar().unwrap().text, "1");
        assert_eq!(y.get("b").unwrap().scalar().unwrap().text, "3");
        // The merged key keeps the line where it was written.
        assert_eq!(y.map().unwrap().iter().find(|(k, _)| k.text == "a").unwrap().0.line, 2);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("twice"), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("deeper") || e.message.contains("recursion"), "{e:?}");
        let mut block = String::new();
        for i in 0..200 {
            block += &format!("{}k{i}:\n", " ".repeat(i));
        }
        assert!(parse(&block).unwrap_err().message.contains("deeper"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb += &format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
        }
        let e = parse(&bomb).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{e:?}");
    }

    #[test]
    fn syntax_errors_name_a_line() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        assert!(parse("").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert!(parse("*unknown\n").is_err());
    }
}
