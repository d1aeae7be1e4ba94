//! A running container seen from outside: `supervisorctl stats` (the
//! daemon's `GET /v1/stats` as `docker stats` shows it, redrawn every
//! second on a terminal), `top` (its processes) and `diff` (what it
//! changed in its root filesystem), `commit` (those changes as an
//! image); `pause` and `unpause` freeze and thaw it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::client::{Client, encode};
use super::control::{fail, print_json};
use super::progress::human_size;

/// `pause` (or `unpause`) each unit in turn: `UNIT: paused` per unit (or
/// its error), exit 1 if any failed.
pub fn pause(client: &Client, verb: &str, units: &[String], json: bool) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let mut out = Vec::new();
    for u in units {
        let r = match client.request("POST", &format!("/v1/units/{}/{verb}", encode(u))) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if r.status != 200 {
            errln!("supervisorctl: {}", r.error());
            code = ExitCode::from(1);
            continue;
        }
        let v = r.json().unwrap_or(Value::Null);
        if !json {
            outln!("{u}: {}", v["state"].as_str().unwrap_or("?"));
        }
        out.push(v);
    }
    if json {
        print_json(&Value::Array(out));
    }
    code
}

/// The JSON answer to a GET of `target`.
fn get_json(client: &Client, target: &str) -> Result<Value, String> {
    match client.request("GET", target) {
        Ok(r) if r.status == 200 => r.json(),
        Ok(r) => Err(r.error()),
        Err(e) => Err(e),
    }
}

fn snapshot(client: &Client, units: &[String]) -> Result<Value, String> {
    let target = if units.is_empty() {
        "/v1/stats".to_string()
    } else {
        format!("/v1/stats?units={}", encode(&units.join(",")))
    };
    get_json(client, &target)
}

/// The table, its header first.
pub fn table(stats: &Value) -> String {
    let size = |v: &Value| v.as_u64().map_or_else(|| "-".to_string(), human_size);
    let width = stats
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>21}  {:>6}  {:>5}  {:>19}  {:>19}\n",
        "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "NET I/O", "BLOCK I/O"
    );
    for s in stats.as_array().into_iter().flatten() {
        let limit = s["memory_limit_bytes"].as_u64();
        let mem_pct = match (s["memory_bytes"].as_u64(), limit) {
            (Some(m), Some(l)) if l > 0 => format!("{:.1}%", m as f64 * 100.0 / l as f64),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<width$}  {:>5.1}%  {:>21}  {:>6}  {:>5}  {:>19}  {:>19}\n",
            s["name"].as_str().unwrap_or("?"),
            s["cpu_percent"].as_f64().unwrap_or(0.0),
            format!("{} / {}", size(&s["memory_bytes"]), limit.map_or_else(|| "unlimited".into(), human_size)),
            mem_pct,
            s["pids"].as_u64().map_or_else(|| "-".into(), |n| n.to_string()),
            format!("{} / {}", size(&s["net_rx_bytes"]), size(&s["net_tx_bytes"])),
            format!("{} / {}", size(&s["block_read_bytes"]), size(&s["block_write_bytes"])),
        ));
    }
    out
}

pub fn stats(client: &Client, units: &[String], no_stream: bool, json: bool) -> ExitCode {
    let stream = !no_stream && !json && std::io::stdout().is_terminal();
    loop {
        let v = match snapshot(client, units) {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        if json {
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else if stream {
            // Home and clear, then the table: redrawn in place.
            out!("\x1b[H\x1b[2J{}", table(&v));
        } else {
            out!("{}", table(&v));
        }
        if !stream {
            return ExitCode::SUCCESS;
        }
        // The daemon's own window (half a second) plus this: about one
        // refresh a second.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A unit's JSON answer at `/v1/units/UNIT/{what}`.
fn unit_json(client: &Client, unit: &str, what: &str) -> Result<Value, String> {
    get_json(client, &format!("/v1/units/{}/{what}", encode(unit)))
}

pub fn top(client: &Client, unit: &str, json: bool) -> ExitCode {
    let processes = match unit_json(client, unit, "top") {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if json {
        print_json(&processes);
        return ExitCode::SUCCESS;
    }
    outln!("{:>8} {:>6} {:>6} {:>5} {:>9}  {:<20} COMMAND", "PID", "CPID", "UID", "%CPU", "RSS", "STARTED");
    for p in processes.as_array().into_iter().flatten() {
        let opt = |v: &Value| v.as_u64().map_or_else(|| "-".to_string(), |n| n.to_string());
        outln!(
            "{:>8} {:>6} {:>6} {:>5.1} {:>9}  {:<20} {}",
            p["pid"],
            opt(&p["container_pid"]),
            opt(&p["uid"]),
            p["cpu_percent"].as_f64().unwrap_or(0.0),
            human_size(p["rss_bytes"].as_u64().unwrap_or(0)),
            p["started"].as_str().unwrap_or("?"),
            p["command"].as_str().unwrap_or("?")
        );
    }
    ExitCode::SUCCESS
}

pub fn diff(client: &Client, unit: &str, json: bool) -> ExitCode {
    let changes = match unit_json(client, unit, "diff") {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if json {
        print_json(&changes);
    } else {
        for c in changes.as_array().into_iter().flatten() {
            outln!("{} {}", c["kind"].as_str().unwrap_or("?"), c["path"].as_str().unwrap_or("?"));
        }
    }
    ExitCode::SUCCESS
}

pub fn commit(client: &Client, unit: &str, reference: &str, changes: &[String], pause: bool, json: bool) -> ExitCode {
    let body = serde_json::json!({"reference": reference, "changes": changes, "pause": pause});
    let target = format!("/v1/units/{}/commit", encode(unit));
    let made = match client.request_with("POST", &target, body.to_string().as_bytes()) {
        Ok(r) if r.status == 200 => r.json(),
        Ok(r) => Err(r.error()),
        Err(e) => Err(e),
    };
    match made {
        Ok(v) if json => print_json(&v),
        Ok(v) => outln!("{}", v["id"].as_str().unwrap_or("?")),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_as_docker_stats_shows_it() {
        let v = serde_json::json!([{"name": "db", "cpu_percent": 12.5, "memory_bytes": 50_000_000u64,
            "memory_limit_bytes": 200_000_000u64, "pids": 4, "pids_limit": 256, "net_rx_bytes": 1500, "net_tx_bytes": 0,
            "block_read_bytes": 0, "block_write_bytes": 4096},
            {"name": "web", "cpu_percent": 0.0, "memory_bytes": 1000, "memory_limit_bytes": null, "pids": 1,
            "pids_limit": null, "net_rx_bytes": null, "net_tx_bytes": null, "block_read_bytes": 0, "block_write_bytes": 0}]);
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME   CPU %      MEM USAGE / LIMIT   MEM %   PIDS              NET I/O            BLOCK I/O"
        );
        assert_eq!(
            lines[1],
            "db     12.5%       50.0MB / 200.0MB   25.0%      4         1.5kB / 0.0B         0.0B / 4.1kB"
        );
        assert_eq!(
            lines[2],
            "web     0.0%      1.0kB / unlimited       -      1                - / -          0.0B / 0.0B"
        );
    }
}
