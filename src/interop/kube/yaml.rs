//! YAML text of the objects. serde_yaml_ng turns the typed objects into
//! its `Value` (mappings keep the structs' field order); the text is
//! written here, because its own writer follows YAML 1.2 and leaves
//! `no`, `yes`, `on` and `off` unquoted, which Kubernetes' YAML 1.1
//! reader takes for booleans (a redis `--appendonly yes` argument would
//! be refused as "cannot unmarshal bool into string"). So every string
//! that is not plainly a word is written double-quoted (a JSON string,
//! which is a YAML double-quoted scalar).

use serde_yaml_ng::Value;

/// The block-style YAML of `object` (a mapping), ending in a newline.
pub fn to_yaml<T: serde::Serialize>(object: &T) -> Result<String, String> {
    let value = serde_yaml_ng::to_value(object).map_err(|e| format!("writing YAML: {e}"))?;
    let mut out = String::new();
    match &value {
        Value::Mapping(_) => node(&mut out, &value, 0),
        other => out.push_str(&format!("{}\n", scalar(other))),
    }
    Ok(out)
}

/// Whether `s` may be written plain: one word of letters, digits and
/// `._/-`, not starting with a digit, `.` or `-` (numbers), and none of
/// the words YAML 1.1 reads as a boolean or null.
fn plain(s: &str) -> bool {
    const SPECIAL: [&str; 12] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf", "~"];
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if plain(s) => s.clone(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        // Not made by our objects; written as a quoted string.
        Value::Tagged(t) => scalar(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => "null".into(),
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes a mapping or sequence whose first line is already indented
/// (after `- ` or at the start), the rest at `indent`.
fn node(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Mapping(m) => {
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    pad(out, indent);
                }
                out.push_str(&scalar(k));
                out.push(':');
                match val {
                    Value::Mapping(inner) if !inner.is_empty() => {
                        out.push('\n');
                        pad(out, indent + 2);
                        node(out, val, indent + 2);
                    }
                    Value::Sequence(items) if !items.is_empty() => {
                        out.push('\n');
                        pad(out, indent);
                        node(out, val, indent);
                    }
                    Value::Mapping(_) => out.push_str(" {}\n"),
                    Value::Sequence(_) => out.push_str(" []\n"),
                    other => out.push_str(&format!(" {}\n", scalar(other))),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    pad(out, indent);
                }
                out.push_str("- ");
                match item {
                    Value::Mapping(m) if !m.is_empty() => node(out, item, indent + 2),
                    Value::Sequence(s) if !s.is_empty() => node(out, item, indent + 2),
                    Value::Mapping(_) => out.push_str("{}\n"),
                    Value::Sequence(_) => out.push_str("[]\n"),
                    other => out.push_str(&format!("{}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_booleans_numbers_and_punctuation_are_quoted() {
        #[derive(serde::Serialize)]
        struct T {
            args: Vec<&'static str>,
            n: u32,
            empty: Vec<u32>,
            inner: Vec<std::collections::BTreeMap<&'static str, &'static str>>,
        }
        let t = T {
            args: vec!["yes", "No", "on", "~", "1024", "500m", "a b", "-x", "docker.io/x:1", "plain/path-1.2", ""],
            n: 3,
            empty: vec![],
            inner: vec![[("a", "1"), ("b", "x")].into_iter().collect()],
        };
        assert_eq!(
            to_yaml(&t).unwrap(),
            r#"args:
- "yes"
- "No"
- "on"
- "~"
- "1024"
- "500m"
- "a b"
- "-x"
- "docker.io/x:1"
- plain/path-1.2
- ""
"n": 3
empty: []
inner:
- a: "1"
  b: x
"#
        );
    }
}
