//! Durations as systemd and Go (Docker) write them: `100ms`, `10s`, `1h30m`.
//! A number without a unit is refused: `timeout = "10"` is ambiguous to a
//! reader (seconds to systemd, nanoseconds to a Go program).

use std::time::Duration;

/// Parses a duration such as `"1h30m"` or `"250ms"`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(r#"empty duration: use a number with a unit, like "10s" or "1m30s""#.into());
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(r#"{input:?} has no unit: write "{s}s" for seconds or "{s}ms" for milliseconds"#));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!(r#"{input:?} is not a duration ({e}): use e.g. "100ms", "10s", "1h30m""#))
}

/// Canonical text of a duration (`60s` and `1m` both print as `1m`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(parse_duration("10").unwrap_err().contains("\"10s\""));
        assert_eq!(
            parse_duration("").unwrap_err().to_string(),
            "empty duration: use a number with a unit, like \"10s\" or \"1m30s\""
        );
        assert_eq!(
            parse_duration("ten seconds").unwrap_err().to_string(),
            "\"ten seconds\" is not a duration (expected number at 0): use e.g. \"100ms\", \"10s\", \"1h30m\""
        );
        assert_eq!(
            parse_duration("-1s").unwrap_err().to_string(),
            "\"-1s\" is not a duration (expected number at 0): use e.g. \"100ms\", \"10s\", \"1h30m\""
        );
        assert_eq!(
            parse_duration("10 parsecs").unwrap_err().to_string(),
            "\"10 parsecs\" is not a duration (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)): use e.g. \"100ms\", \"10s\", \"1h30m\""
        );
    }

    #[test]
    fn canonical_text() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
