//! Compose's variable interpolation, applied to every value of the file
//! (never to keys), and the `.env` file that supplies variables.
//!
//! `$$` is a literal `$`; `$VAR` and `${VAR}` the variable's value (empty,
//! with a warning, when unset); `${VAR:-default}` the default when VAR is
//! unset or empty, `${VAR-default}` only when unset; `${VAR:?message}` and
//! `${VAR?message}` an error with the message in the same cases;
//! `${VAR:+other}` and `${VAR+other}` `other` when VAR is set (and not
//! empty). Defaults may themselves hold `${...}`, as in Compose v2.

use std::collections::BTreeMap;

/// The result of interpolating one value.
#[derive(Debug, PartialEq)]
pub struct Interpolated {
    pub text: String,
    /// Variables used but not set (each becomes an empty string).
    pub unset: Vec<String>,
}

/// Interpolates `input` with the variables of `env`.
pub fn interpolate(input: &str, env: &BTreeMap<String, String>) -> Result<Interpolated, String> {
    let mut unset = Vec::new();
    let text = expand(input, env, &mut unset, 0)?;
    Ok(Interpolated { text, unset })
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn expand(
    input: &str,
    env: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > 16 {
        return Err(format!("{input:?}: interpolation nested too deeply"));
    }
    let invalid = || format!("invalid interpolation format in {input:?}: use $$ for a literal $");
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let next = after.chars().next();
        match next {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let close = matching_brace(after).ok_or_else(invalid)?;
                let inner = &after[1..close];
                out.push_str(&braced(inner, env, unset, depth).map_err(|e| e.unwrap_or_else(invalid))?);
                rest = &after[close + 1..];
            }
            Some(c) if is_name_start(c) => {
                let end = after.find(|c: char| !is_name_char(c)).unwrap_or(after.len());
                out.push_str(&lookup(&after[..end], env, unset));
                rest = &after[end..];
            }
            _ => return Err(invalid()),
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing the `{` at the start of `s`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(|(_, n)| *n == '$') => {
                chars.next();
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn lookup(name: &str, env: &BTreeMap<String, String>, unset: &mut Vec<String>) -> String {
    match env.get(name) {
        Some(v) => v.clone(),
        None => {
            if !unset.iter().any(|u| u == name) {
                unset.push(name.to_string());
            }
            String::new()
        }
    }
}

/// The value of `${inner}`. `Err(None)` is a malformed expression.
fn braced(
    inner: &str,
    env: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, Option<String>> {
    let name_end = inner.find(|c: char| !is_name_char(c)).unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(None);
    }
    let op = &inner[name_end..];
    if op.is_empty() {
        return Ok(lookup(name, env, unset));
    }
    let (colon, op) = match op.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, op),
    };
    let kind = op.chars().next().ok_or(None)?;
    let arg = &op[kind.len_utf8()..];
    let value = env.get(name);
    // With a colon, an empty value counts as unset.
    let set = value.is_some_and(|v| !colon || !v.is_empty());
    let sub = |unset: &mut Vec<String>| expand(arg, env, unset, depth + 1).map_err(Some);
    match kind {
        '-' if set => Ok(value.cloned().unwrap_or_default()),
        '-' => sub(unset),
        '?' if set => Ok(value.cloned().unwrap_or_default()),
        '?' => {
            let message = sub(unset)?;
            let why = if message.is_empty() { format!("required variable {name} is missing a value") } else { message };
            Err(Some(format!("{name}: {why}")))
        }
        '+' if set => sub(unset),
        '+' => Ok(String::new()),
        _ => Err(None),
    }
}

/// The variables of a `.env` file as Compose reads it: `NAME=value` lines
/// (an optional `export ` before), `#` comments and blank lines skipped;
/// a value in single quotes is literal, one in double quotes has `\n`,
/// `\"` and `\\` escapes; an unquoted value is trimmed and ends at ` #`.
/// An error names the 1-based line.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut vars = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, format!("{line:?} is not NAME=value")));
        };
        let name = name.trim();
        if name.is_empty() || !name.starts_with(is_name_start) || !name.chars().all(is_name_char) {
            return Err((i + 1, format!("{name:?} is not a variable name")));
        }
        let value = value.trim();
        let value = if let Some(q) = value.strip_prefix('\'') {
            q.split_once('\'').map(|(v, _)| v.to_string()).ok_or((i + 1, "unterminated single quote".to_string()))?
        } else if let Some(q) = value.strip_prefix('"') {
            unescape_double(q).ok_or((i + 1, "unterminated double quote".to_string()))?
        } else {
            let end = value.find(" #").or_else(|| value.find("\t#")).unwrap_or(value.len());
            value[..end].trim_end().to_string()
        };
        vars.insert(name.to_string(), value);
    }
    Ok(vars)
}

/// The text of a double-quoted value up to its closing quote.
fn unescape_double(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other @ ('"' | '\\' | '$') => out.push(other),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("SET", "value"), ("EMPTY", ""), ("PORT", "8080"), ("NESTED", "n")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ok(input: &str) -> String {
        interpolate(input, &env()).unwrap_or_else(|e| panic!("{input}: {e}")).text
    }

    #[test]
    fn the_forms_compose_knows() {
        let table = [
            ("plain text", "plain text"),
            ("$SET", "value"),
            ("${SET}", "value"),
            ("a${SET}b", "avalueb"),
            ("$SET.x", "value.x"),
            ("${UNSET:-default}", "default"),
            ("${EMPTY:-default}", "default"),
            ("${EMPTY-default}", ""),
            ("${UNSET-default}", "default"),
            ("${SET:-default}", "value"),
            ("${SET:+other}", "other"),
            ("${EMPTY:+other}", ""),
            ("${EMPTY+other}", "other"),
            ("${UNSET+other}", ""),
            ("$$", "$"),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("cost: $$5", "cost: $5"),
            ("${UNSET:-${PORT}}", "8080"),
            ("${UNSET:-a-${NESTED:-x}-b}", "a-n-b"),
            ("${UNSET:-}", ""),
            ("${UNSET:-with $$ inside}", "with $ inside"),
            ("127.0.0.1:${PORT}:80", "127.0.0.1:8080:80"),
            ("${SET?must be set}", "value"),
            ("${EMPTY?must be set}", ""),
        ];
        for (input, want) in table {
            assert_eq!(ok(input), want, "{input}");
        }
    }

    #[test]
    fn unset_variables_are_empty_and_named() {
        let got = interpolate("${A}-$B-${A}", &env()).unwrap();
        assert_eq!(got.text, "--");
        assert_eq!(got.unset, ["A", "B"]);
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        let e = interpolate("${UNSET:?set UNSET first}", &env()).unwrap_err();
        assert_eq!(e, "UNSET: set UNSET first");
        let e = interpolate("${EMPTY:?}", &env()).unwrap_err();
        assert!(e.contains("EMPTY") && e.contains("missing"), "{e}");
        assert!(interpolate("${UNSET?x}", &env()).is_err());
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in ["$", "a $ b", "${", "${SET", "${}", "${1X}", "${SET:}", "${SET*x}", "$-", "${SET:%x}"] {
            assert!(interpolate(bad, &env()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "${A:-".repeat(40), "}".repeat(40));
        assert!(interpolate(&deep, &env()).is_err());
    }

    #[test]
    fn dotenv_files() {
        let text = "# comment\n\nA=1\nexport B = two words  # note\nC='lit $X # kept'\nD=\"line\\nnext \\\"q\\\"\"\nE=\nF=a#b\n";
        let vars = parse_dotenv(text).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "lit $X # kept");
        assert_eq!(vars["D"], "line\nnext \"q\"");
        assert_eq!(vars["E"], "");
        assert_eq!(vars["F"], "a#b");
        assert_eq!(parse_dotenv("A=1\nnot a line\n").unwrap_err().0, 2);
        assert_eq!(parse_dotenv("1A=1\n").unwrap_err().0, 1);
        assert!(parse_dotenv("A='open\n").is_err());
    }
}
