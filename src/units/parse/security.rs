//! The security and limit keys of `[container]`: capabilities, devices,
//! sysctls and ulimits.

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::Cx;
use super::keys::{Section, a_type, int_in, scalar_text};
use crate::units::values::capability::parse_capability;
use crate::units::values::limits::{Ulimit, check_sysctl, check_ulimit_name, parse_limit_value};
use crate::units::values::mounts::Device;

/// `cap_add` and `cap_drop`, sorted and deduplicated; a capability may not
/// be in both (except `ALL`).
pub(super) fn capabilities(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> (Vec<String>, Vec<String>) {
    let caps = |cx: &mut Cx<'_>, key: &str| {
        let mut list = s.string_list(cx, key, parse_capability).unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list.dedup_by(|a, b| a.0 == b.0);
        list
    };
    let cap_add = caps(cx, "cap_add");
    let cap_drop = caps(cx, "cap_drop");
    for (cap, span) in &cap_add {
        if cap != "ALL" && cap_drop.iter().any(|(d, _)| d == cap) {
            cx.error(span.clone(), format!("{cap} is both in cap_add and cap_drop"));
        }
    }
    (cap_add.into_iter().map(|(c, _)| c).collect(), cap_drop.into_iter().map(|(c, _)| c).collect())
}

/// Sorted by their path in the container.
pub(super) fn devices(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Vec<Device> {
    let mut devices: Vec<Device> =
        s.string_list(cx, "devices", Device::parse).unwrap_or_default().into_iter().map(|(d, _)| d).collect();
    devices.sort_by(|a, b| a.container.cmp(&b.container));
    devices
}

/// Namespaced sysctls only (none of the `net.` ones with the host's network).
pub(super) fn sysctls(cx: &mut Cx<'_>, s: &Section<'_, '_>, host_network: bool) -> BTreeMap<String, String> {
    let mut sysctls = BTreeMap::new();
    for (name, kspan, value) in s.map(cx, "sysctls").unwrap_or_default() {
        if let Err(e) = check_sysctl(&name, host_network) {
            cx.error(kspan, format!("invalid entry in \"sysctls\" of [container]: {e}"));
            continue;
        }
        match scalar_text(value.get_ref()) {
            Some(Ok(text)) => {
                sysctls.insert(name, text);
            }
            _ => cx.error(value.span(), format!("the value of sysctl {name} must be a string or a number")),
        }
    }
    sysctls
}

pub(super) fn ulimits(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> BTreeMap<String, Ulimit> {
    let mut ulimits = BTreeMap::new();
    for (name, kspan, value) in s.map(cx, "ulimits").unwrap_or_default() {
        if let Err(e) = check_ulimit_name(&name) {
            cx.error(kspan, format!("invalid entry in \"ulimits\" of [container]: {e}"));
            continue;
        }
        match ulimit_value(value.get_ref()) {
            Ok(u) => {
                ulimits.insert(name, u);
            }
            Err(e) => cx.error(value.span(), format!("invalid ulimit {name}: {e}")),
        }
    }
    ulimits
}

/// A ulimit: `4096` (soft and hard), `"1024:4096"`, or `{ soft = 1024, hard = 4096 }`.
fn ulimit_value(v: &DeValue<'_>) -> Result<Ulimit, String> {
    let one = |v: &DeValue<'_>| -> Result<Option<u64>, String> {
        match v {
            DeValue::Integer(i) => match int_in(i, -1, i64::MAX)? {
                -1 => Ok(None),
                n => Ok(Some(n as u64)),
            },
            DeValue::String(s) => parse_limit_value(s),
            other => Err(format!("expected a number or \"unlimited\", found {}", a_type(other))),
        }
    };
    match v {
        DeValue::String(s) => Ulimit::parse(s),
        DeValue::Table(t) => {
            let mut soft = None;
            let mut hard = None;
            for (k, val) in t.iter() {
                match k.get_ref().as_ref() {
                    "soft" => soft = Some(one(val.get_ref())?),
                    "hard" => hard = Some(one(val.get_ref())?),
                    other => return Err(format!("unknown key {other:?} (use soft and hard)")),
                }
            }
            match (soft, hard) {
                (Some(s), Some(h)) => Ulimit::new(s, h),
                _ => Err("a table needs both soft and hard".into()),
            }
        }
        other => one(other).and_then(|n| Ulimit::new(n, n)),
    }
}
