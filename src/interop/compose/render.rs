//! A unit file being written: its sections' keys in the order they were
//! set, each with an optional comment, rendered as TOML text. Written by
//! hand (a few value kinds, strings escaped as TOML basic strings) so the
//! comments can sit beside the keys they explain.

/// A TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Tv {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Tv>),
    /// An inline table.
    Table(Vec<(String, Tv)>),
}

impl Tv {
    pub fn str(s: impl Into<String>) -> Tv {
        Tv::Str(s.into())
    }

    pub fn strs<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Tv {
        Tv::List(items.into_iter().map(|s| Tv::Str(s.into())).collect())
    }
}

/// The sections of a unit file, in the order they are written.
pub const SECTIONS: [&str; 7] = ["unit", "container", "resources", "restart", "stop", "health", "logs"];

#[derive(Debug, Default)]
pub struct Draft {
    /// Comment lines at the top of the file.
    pub header: Vec<String>,
    entries: Vec<(&'static str, String, Tv, Option<String>)>,
}

impl Draft {
    /// Sets `section.key` (replacing an earlier value of it).
    pub fn set(&mut self, section: &'static str, key: &str, value: Tv) {
        self.set_noted(section, key, value, None);
    }

    /// Sets `section.key` with a comment above it.
    pub fn set_noted(&mut self, section: &'static str, key: &str, value: Tv, comment: Option<String>) {
        debug_assert!(SECTIONS.contains(&section), "{section}");
        match self.entries.iter_mut().find(|(s, k, _, _)| *s == section && k == key) {
            Some(e) => {
                e.2 = value;
                if comment.is_some() {
                    e.3 = comment;
                }
            }
            None => self.entries.push((section, key.to_string(), value, comment)),
        }
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&Tv> {
        self.entries.iter().find(|(s, k, _, _)| *s == section && k == key).map(|e| &e.2)
    }

    pub fn remove(&mut self, section: &str, key: &str) {
        self.entries.retain(|(s, k, _, _)| !(*s == section && k == key));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            out += &comment_lines(line);
        }
        for section in SECTIONS {
            let entries: Vec<_> = self.entries.iter().filter(|(s, _, _, _)| *s == section).collect();
            if entries.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out += &format!("[{section}]\n");
            for (_, key, value, comment) in entries {
                if let Some(c) = comment {
                    out += &comment_lines(c);
                }
                out += &format!("{} = {}\n", key_text(key), value_text(value));
            }
        }
        out
    }
}

/// `# ` before each line of `text`; a line break in it cannot end the comment.
fn comment_lines(text: &str) -> String {
    text.lines().map(|l| format!("# {}\n", l.replace('\r', "\\r"))).collect()
}

fn key_text(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_string() } else { string_text(key) }
}

pub fn value_text(v: &Tv) -> String {
    match v {
        Tv::Str(s) => string_text(s),
        Tv::Int(n) => n.to_string(),
        Tv::Float(f) => {
            let s = f.to_string();
            if s.contains(['.', 'e', 'E']) || !f.is_finite() { s } else { format!("{s}.0") }
        }
        Tv::Bool(b) => b.to_string(),
        Tv::List(items) => format!("[{}]", items.iter().map(value_text).collect::<Vec<_>>().join(", ")),
        Tv::Table(entries) => {
            if entries.is_empty() {
                return "{}".into();
            }
            let inner: Vec<String> =
                entries.iter().map(|(k, v)| format!("{} = {}", key_text(k), value_text(v))).collect();
            format!("{{ {} }}", inner.join(", "))
        }
    }
}

/// A TOML basic string.
fn string_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sections_in_order_with_comments() {
        let mut d = Draft::default();
        d.header.push("from compose".into());
        d.set("container", "image", Tv::str("redis:7"));
        d.set_noted("unit", "requires", Tv::strs(["db"]), Some("two\nlines".into()));
        d.set("container", "env", Tv::Table(vec![("A.B".into(), Tv::str("q\"\\\n\u{1}"))]));
        d.set("resources", "cpus", Tv::Float(2.0));
        d.set("container", "image", Tv::str("redis:8"));
        let text = d.render();
        assert_eq!(
            text,
            "# from compose\n\n[unit]\n# two\n# lines\nrequires = [\"db\"]\n\n[container]\nimage = \"redis:8\"\n\
             env = { \"A.B\" = \"q\\\"\\\\\\n\\u0001\" }\n\n[resources]\ncpus = 2.0\n"
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["container"]["env"]["A.B"].as_str(), Some("q\"\\\n\u{1}"));
    }
}
