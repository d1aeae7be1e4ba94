//! Typed access to one section's keys: each getter reports a wrong TOML
//! type or an invalid value at the value's span, in the words every section
//! shares ("invalid KEY in [SECTION]: ...", "KEY in [SECTION] must be ...").

use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{Cx, Span, Value};
use crate::units::schema;
use crate::units::suggest::{closest, did_you_mean};
use crate::units::values::duration::parse_duration;
use crate::units::values::size::parse_size;

/// One section of the file (possibly absent) and typed access to its keys.
pub(super) struct Section<'a, 'i> {
    pub(super) name: &'static str,
    pub(super) table: Option<&'a DeTable<'i>>,
}

impl<'a, 'i> Section<'a, 'i> {
    pub(super) fn of(root: &'a DeTable<'i>, name: &'static str) -> Self {
        let table = root.iter().find(|(k, _)| k.get_ref() == name).and_then(|(_, v)| v.get_ref().as_table());
        Section { name, table }
    }

    pub(super) fn present(&self) -> bool {
        self.table.is_some()
    }

    /// Reports keys the section does not have, with a suggestion.
    pub(super) fn check_keys(&self, cx: &mut Cx<'_>) {
        let Some(t) = self.table else { return };
        let known = schema::keys(self.name);
        for (key, _) in t.iter() {
            let k = key.get_ref().as_ref();
            if known.contains(&k) {
                continue;
            }
            let message = match (closest(k, known.iter().copied()), schema::section_of(k)) {
                (Some(near), _) => format!("unknown key {k:?} in [{}], did you mean {near:?}?", self.name),
                (None, Some(other)) => format!("{k:?} belongs in [{other}], not in [{}]", self.name),
                (None, None) => format!("unknown key {k:?} in [{}] (known keys: {})", self.name, known.join(", ")),
            };
            cx.error(key.span(), message);
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table?.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
    }

    pub(super) fn key_span(&self, key: &str) -> Option<Span> {
        self.table?.iter().find(|(k, _)| k.get_ref() == key).map(|(k, _)| k.span())
    }

    /// The value of `key` converted by `conv`, which returns `None` when the
    /// TOML type is wrong (reported as "must be EXPECTED") and `Some(Err)`
    /// when the value is invalid.
    pub(super) fn typed<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&DeValue<'i>) -> Option<Result<T, String>>,
    ) -> Option<T> {
        let v = self.get(key)?;
        match conv(v.get_ref()) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                cx.error(v.span(), format!("invalid {key:?} in [{}]: {e}", self.name));
                None
            }
            None => {
                cx.error(
                    v.span(),
                    format!("{key:?} in [{}] must be {expected}, found {}", self.name, a_type(v.get_ref())),
                );
                None
            }
        }
    }

    pub(super) fn string_with<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.typed(cx, key, "a string", |v| v.as_str().map(f))
    }

    pub(super) fn string(&self, cx: &mut Cx<'_>, key: &str) -> Option<String> {
        self.string_with(
            cx,
            key,
            |s| {
                if s.contains('\0') { Err("contains a NUL byte".into()) } else { Ok(s.to_string()) }
            },
        )
    }

    pub(super) fn bool(&self, cx: &mut Cx<'_>, key: &str) -> Option<bool> {
        self.typed(cx, key, "true or false", |v| v.as_bool().map(Ok))
    }

    pub(super) fn duration(&self, cx: &mut Cx<'_>, key: &str) -> Option<Duration> {
        self.string_with(cx, key, parse_duration)
    }

    /// A duration that must be above zero.
    pub(super) fn positive_duration(&self, cx: &mut Cx<'_>, key: &str) -> Option<Duration> {
        self.string_with(cx, key, |s| match parse_duration(s)? {
            Duration::ZERO => Err("must be longer than zero".into()),
            d => Ok(d),
        })
    }

    pub(super) fn integer(&self, cx: &mut Cx<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        self.typed(cx, key, "an integer", |v| v.as_integer().map(|i| int_in(i, min, max)))
    }

    pub(super) fn size(&self, cx: &mut Cx<'_>, key: &str) -> Option<u64> {
        self.typed(cx, key, r#"a size (a string like "256M", or a number of bytes)"#, |v| match v {
            DeValue::String(s) => Some(parse_size(s)),
            DeValue::Integer(i) => Some(int_in(i, 0, i64::MAX).map(|n| n as u64)),
            _ => None,
        })
    }

    /// One of `choices`, with a suggestion for a near miss.
    pub(super) fn choice<T: Copy>(&self, cx: &mut Cx<'_>, key: &str, choices: &[(&str, T)]) -> Option<T> {
        self.string_with(cx, key, |s| {
            choices.iter().find(|(name, _)| *name == s).map(|(_, t)| *t).ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                let hint = did_you_mean(s, names.iter().copied());
                let all = names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
                format!("{s:?} is not one of {all}{hint}")
            })
        })
    }

    /// An array whose elements are converted by `conv` (same contract as
    /// [`Section::typed`]); each bad element is reported at its own span.
    pub(super) fn list<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        expected: &str,
        mut conv: impl FnMut(&DeValue<'i>) -> Option<Result<T, String>>,
    ) -> Option<Vec<(T, Span)>> {
        let v = self.get(key)?;
        let Some(items) = v.get_ref().as_array() else {
            cx.error(
                v.span(),
                format!("{key:?} in [{}] must be an array of {expected}, found {}", self.name, a_type(v.get_ref())),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match conv(item.get_ref()) {
                Some(Ok(t)) => out.push((t, item.span())),
                Some(Err(e)) => {
                    ok = false;
                    cx.error(item.span(), format!("invalid entry in {key:?} of [{}]: {e}", self.name));
                }
                None => {
                    ok = false;
                    cx.error(
                        item.span(),
                        format!(
                            "entries of {key:?} in [{}] must be {expected}, found {}",
                            self.name,
                            a_type(item.get_ref())
                        ),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn string_list<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Vec<(T, Span)>> {
        self.list(cx, key, "strings", |v| v.as_str().map(&mut f))
    }

    /// A table of `name = value` (inline or as a `[section.key]` table).
    pub(super) fn map(&self, cx: &mut Cx<'_>, key: &str) -> Option<Vec<(String, Span, &'a Value<'i>)>> {
        let v = self.get(key)?;
        match v.get_ref().as_table() {
            Some(t) => Some(t.iter().map(|(k, v)| (k.get_ref().to_string(), k.span(), v)).collect()),
            None => {
                cx.error(
                    v.span(),
                    format!(
                        "{key:?} in [{}] must be a table like {{ NAME = \"value\" }}, found {}",
                        self.name,
                        a_type(v.get_ref())
                    ),
                );
                None
            }
        }
    }
}

pub(super) fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn int_in(i: &toml::de::DeInteger<'_>, min: i64, max: i64) -> Result<i64, String> {
    match i64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) if max == i64::MAX => Err(format!("{n} is below the minimum of {min}")),
        Ok(n) => Err(format!("{n} is out of range ({min} to {max})")),
        Err(_) => Err(format!("{} is out of range ({min} to {max})", i.as_str())),
    }
}

/// Integers, floats and booleans where a string is meant (env values,
/// sysctls) are taken as their TOML text, as compose does.
pub(super) fn scalar_text(v: &DeValue<'_>) -> Option<Result<String, String>> {
    let text = match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => {
            i64::from_str_radix(i.as_str(), i.radix()).map_or_else(|_| i.as_str().to_string(), |n| n.to_string())
        }
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        _ => return None,
    };
    Some(if text.contains('\0') { Err("contains a NUL byte".into()) } else { Ok(text) })
}

/// Sorts, removes duplicates, and keeps the first span of each name.
pub(super) fn names_sorted(mut list: Vec<(String, Span)>) -> Vec<(String, Span)> {
    list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.start.cmp(&b.1.start)));
    list.dedup_by(|a, b| a.0 == b.0);
    list
}
