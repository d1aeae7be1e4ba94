//! Errors people can act on: every diagnostic names the file, line and
//! column, says which key was wrong and what was expected, and carries the
//! offending line so a terminal can show it with a caret.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a unit file (or in a file it refers to).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is the file as a whole (unreadable).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    pub message: String,
    #[serde(skip)]
    pub snippet: Option<Snippet>,
    /// The unit file the problem makes invalid; differs from `file` for an
    /// error inside a unit's `env_file`.
    #[serde(skip)]
    pub unit_file: Option<PathBuf>,
}

/// The source line of a diagnostic and the part of it to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub text: String,
    /// 0-based character offset of the underline.
    pub start: usize,
    /// Length of the underline in characters, at least 1.
    pub width: usize,
}

impl Diagnostic {
    /// A problem with a whole file: unreadable, not UTF-8, a bad name.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
            snippet: None,
            unit_file: None,
        }
    }

    /// `file:line:col: message` followed, when `source` is set, by the
    /// source line and a caret under the offending text.
    pub fn render(&self, color: bool) -> String {
        let (red, bold, blue, reset) =
            if color { ("\x1b[1;31m", "\x1b[1m", "\x1b[1;34m", "\x1b[0m") } else { ("", "", "", "") };
        let mut out = format!("{bold}{}:{reset} {red}error:{reset} {bold}{}{reset}\n", self.location(), self.message);
        if let (Some(s), Some(line)) = (&self.snippet, self.line) {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            out += &format!("{blue}{pad} |{reset}\n");
            out += &format!("{blue}{line} |{reset} {}\n", s.text);
            out += &format!("{blue}{pad} |{reset} {}{red}{}{reset}\n", " ".repeat(s.start), "^".repeat(s.width.max(1)));
        }
        out
    }

    fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file.display()),
            _ => self.file.display().to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

/// A file's text, to turn byte spans into lines, columns and snippets.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// A diagnostic at the byte span `span` of this file.
    pub fn diagnostic(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let len = self.text.len();
        let start = floor_char_boundary(self.text, span.start.min(len));
        let end = floor_char_boundary(self.text, span.end.clamp(start, len));
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..].find('\n').map_or(len, |i| start + i);
        let line_no = self.text[..start].matches('\n').count() + 1;
        let raw_line = self.text[line_start..line_end].trim_end_matches('\r');
        let column = self.text[line_start..start].chars().count();
        let width = self.text[start..end.min(line_end).max(start)].chars().count();
        // Tabs and control characters would shift the caret: show them as spaces.
        let text: String = raw_line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let width = width.min(text.chars().count().saturating_sub(column)).max(1);
        Diagnostic {
            file: self.path.to_path_buf(),
            line: Some(line_no),
            column: Some(column + 1),
            message: message.into(),
            snippet: Some(Snippet { text, start: column, width }),
            unit_file: None,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_spans() {
        let text = "[unit]\n\n[resources]\nmemroy = \"1G\"\n";
        let src = Source { path: Path::new("u/web.toml"), text };
        let start = text.find("memroy").unwrap();
        let d = src.diagnostic(start..start + 6, "unknown key");
        assert_eq!((d.line, d.column), (Some(4), Some(1)));
        assert_eq!(d.to_string(), "u/web.toml:4:1: unknown key");
        let plain = d.render(false);
        assert!(plain.contains("4 | memroy = \"1G\"\n  | ^^^^^^\n"), "{plain}");
    }

    #[test]
    fn columns_count_characters_and_clamp() {
        let text = "a = \"é\" x";
        let src = Source { path: Path::new("f"), text };
        let at = text.find('x').unwrap();
        let d = src.diagnostic(at..at + 50, "m");
        assert_eq!(d.column, Some(9));
        assert_eq!(d.snippet.unwrap().width, 1);
        // Spans past the end or inside a character never panic.
        let d = src.diagnostic(6..200, "m");
        assert_eq!(d.line, Some(1));
        let d = src.diagnostic(1000..2000, "m");
        assert_eq!(d.line, Some(1));
    }
}
