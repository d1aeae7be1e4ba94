//! `[health]`: one probe (exec, http or tcp) or `disable`, Docker's timings
//! for a probe of the unit's own, and what to do when it fails.

use std::time::Duration;

use toml::de::DeValue;

use super::Cx;
use super::keys::Section;
use crate::units::model::{Health, OnUnhealthy, Probe};
use crate::units::values::names::check_hostname;

pub(super) fn parse_health(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Health {
    s.check_keys(cx);
    let probe = probe(cx, s);
    let disable = s.bool(cx, "disable").unwrap_or(false);
    let interval = s.positive_duration(cx, "interval");
    let timeout = s.positive_duration(cx, "timeout");
    let retries = s.integer(cx, "retries", 1, 1000).map(|n| n as u32);
    let start_period = s.duration(cx, "start_period");
    let start_interval = s.positive_duration(cx, "start_interval");
    let on_unhealthy = s.choice(
        cx,
        "on_unhealthy",
        &[("restart", OnUnhealthy::Restart), ("stop", OnUnhealthy::Stop), ("none", OnUnhealthy::None)],
    );
    if disable
        && let Some(span) =
            s.table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() != "disable")).map(|(k, _)| k.span())
    {
        cx.error(span, "[health] disable = true turns health checks off: remove the other keys, or the disable key");
    }
    let own = probe.is_some();
    let default = |d: Option<Duration>, secs: u64| if own { Some(d.unwrap_or(Duration::from_secs(secs))) } else { d };
    Health {
        disable,
        interval: default(interval, 30),
        timeout: default(timeout, 30),
        retries: if own { Some(retries.unwrap_or(3)) } else { retries },
        start_period: default(start_period, 0),
        start_interval,
        on_unhealthy: on_unhealthy.unwrap_or(if own { OnUnhealthy::Restart } else { OnUnhealthy::None }),
        probe,
    }
}

/// The one probe of `exec`, `http` and `tcp` (a second one is an error).
fn probe(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Option<Probe> {
    let exec = s.typed(cx, "exec", r#"an array of strings, or a string run by /bin/sh -c"#, |v| match v {
        DeValue::String(cmd) if cmd.trim().is_empty() => Some(Err("the command is empty".into())),
        DeValue::String(cmd) => Some(Ok(vec!["/bin/sh".to_string(), "-c".to_string(), cmd.to_string()])),
        DeValue::Array(items) => {
            let argv: Option<Vec<String>> = items.iter().map(|i| i.get_ref().as_str().map(str::to_string)).collect();
            Some(match argv {
                None => Err("arguments must be strings".into()),
                Some(a) if a.is_empty() => Err("the command is empty".into()),
                Some(a) => Ok(a),
            })
        }
        _ => None,
    });
    let http = s.string_with(cx, "http", check_http_url);
    let tcp = s.integer(cx, "tcp", 1, 65535).map(|p| p as u16);
    let probes: Vec<(Probe, &str)> = [
        exec.map(|e| (Probe::Exec(e), "exec")),
        http.map(|h| (Probe::Http(h), "http")),
        tcp.map(|t| (Probe::Tcp(t), "tcp")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if probes.len() > 1
        && let Some(span) = s.key_span(probes[1].1)
    {
        cx.error(span, "[health] takes exactly one probe: exec, http or tcp");
    }
    probes.into_iter().next().map(|(p, _)| p)
}

/// `http://host[:port][/path]`, normalized (lowercase host, `/` path).
fn check_http_url(url: &str) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        return Err("https is not supported by the http probe; use plain http (the probe never leaves the container's network) or tcp".into());
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(format!("{url:?} is not an http URL, like \"http://localhost:8080/healthz\""));
    };
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = if let Some(b) = authority.strip_prefix('[') {
        let (ip, tail) = b.split_once(']').ok_or_else(|| format!("{url:?}: unclosed '['"))?;
        (format!("[{ip}]"), tail.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('@') || (!host.starts_with('[') && check_hostname(&host).is_err()) {
        return Err(format!("{url:?}: {host:?} is not a host name"));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!("{url:?}: {p:?} is not a port number"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?}: the path contains whitespace"));
    }
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("http://{}{port}{path}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        assert_eq!(check_http_url("http://localhost:8080/healthz").unwrap(), "http://localhost:8080/healthz");
        assert_eq!(check_http_url("HTTP://LocalHost").unwrap(), "http://localhost/");
        assert_eq!(check_http_url("http://127.0.0.1?x=1").unwrap(), "http://127.0.0.1/?x=1");
        assert_eq!(check_http_url("http://[::1]:80/").unwrap(), "http://[::1]:80/");
        for bad in ["https://x/", "ftp://x", "http://", "http://a:0/", "http://a b/", "http://u@h/", "localhost:80"] {
            assert!(check_http_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
