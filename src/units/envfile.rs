//! `env_file` contents, in the format of `docker run --env-file`: one
//! `NAME=value` per line, the value taken literally (no quotes removed, no
//! expansion), blank lines and lines starting with `#` ignored.
//!
//! Deliberate difference from Docker: a bare `NAME` line (which Docker fills
//! from the client's environment) is an error, so that what a unit runs never
//! depends on the environment the supervisor happened to start with.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, Source};
use super::values::names::check_env_name;

pub fn parse_env_file(src: &Source<'_>) -> Result<BTreeMap<String, String>, Vec<Diagnostic>> {
    let mut vars = BTreeMap::new();
    let mut errors = Vec::new();
    let mut offset = 0;
    for raw in src.text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = line_start + indent;
        match trimmed.split_once('=') {
            None => errors.push(src.diagnostic(
                at..at + trimmed.len(),
                format!("{trimmed:?} has no value: write {trimmed}=value (variables are not taken from the supervisor's environment)"),
            )),
            Some((name, value)) => {
                if let Err(e) = check_env_name(name) {
                    errors.push(src.diagnostic(at..at + name.len(), e));
                } else if value.contains('\0') {
                    errors.push(src.diagnostic(at..at + trimmed.len(), format!("the value of {name} contains a NUL byte")));
                } else {
                    vars.insert(name.to_string(), value.to_string());
                }
            }
        }
    }
    if errors.is_empty() { Ok(vars) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, Vec<Diagnostic>> {
        parse_env_file(&Source { path: Path::new("web.env"), text })
    }

    #[test]
    fn docker_format() {
        let vars = parse("# comment\n\nA=1\n  B=two \nC=\"q\"\nD=\nE=x=y\r\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two ");
        assert_eq!(vars["C"], "\"q\"");
        assert_eq!(vars["D"], "");
        assert_eq!(vars["E"], "x=y");
    }

    #[test]
    fn errors_have_lines() {
        let errs = parse("A=1\nBARE\n1X=2\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, Some(2));
        assert!(errs[0].message.contains("has no value"));
        assert_eq!(errs[1].line, Some(3));
        // "B = two" has a space in the name.
        let err = parse("B = two\n").unwrap_err();
        assert_eq!((err.len(), err[0].line, err[0].column), (1, Some(1), Some(1)), "{err:?}");
        assert!(err[0].message.contains("\"B \" is not an environment variable name"), "{err:?}");
    }
}
