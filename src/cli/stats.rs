//! `supervisorctl stats`: the daemon's `GET /v1/stats` as `docker stats`
//! shows it, redrawn every second on a terminal.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::client::{Client, encode};
use super::progress::human_size;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    errln!("supervisorctl: {message}");
    ExitCode::from(1)
}

fn snapshot(client: &Client, units: &[String]) -> Result<Value, String> {
    let target = if units.is_empty() {
        "/v1/stats".to_string()
    } else {
        format!("/v1/stats?units={}", encode(&units.join(",")))
    };
    let r = client.request("GET", &target)?;
    if r.status != 200 {
        return Err(r.error());
    }
    r.json()
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
