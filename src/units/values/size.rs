//! Sizes as Docker (`--memory 256m`) and systemd (`MemoryMax=256M`) read them:
//! suffixes are powers of 1024, case-insensitive, with an optional `i`/`b`
//! (`256M`, `256MiB`, `256mb` are all 256 MiB). A plain number is bytes.

const SUFFIXES: [(char, u32); 6] = [('k', 1), ('m', 2), ('g', 3), ('t', 4), ('p', 5), ('e', 6)];

const HINT: &str = r#"use a number of bytes or a number with a k, M, G or T suffix, like "512k" or "256M""#;

/// Parses a size string into bytes.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let suffix = suffix.trim_start().to_ascii_lowercase();
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(format!("{input:?} is not a size: {HINT}"));
    }
    let mut chars = suffix.chars();
    let power = match chars.next() {
        None => 0,
        Some('b') if suffix.len() == 1 => 0,
        Some(c) => match SUFFIXES.iter().find(|(s, _)| *s == c) {
            Some((_, p)) => {
                let rest = chars.as_str();
                if !matches!(rest, "" | "b" | "i" | "ib") {
                    return Err(format!("{input:?} is not a size: {HINT}"));
                }
                *p
            }
            None => return Err(format!("{input:?} is not a size: {HINT}")),
        },
    };
    let multiplier = 1024u128.pow(power);
    let too_big = || format!("{input:?} is too large (at most 16 EiB)");
    let bytes = match number.split_once('.') {
        None => number.parse::<u128>().map_err(|_| too_big())?.checked_mul(multiplier).ok_or_else(too_big)?,
        Some((whole, frac)) => {
            if frac.contains('.') {
                return Err(format!("{input:?} is not a size: {HINT}"));
            }
            // Exact fixed-point arithmetic: "1.5G" is 1.5 * 2^30 bytes, rounded down.
            let frac = &frac[..frac.len().min(18)];
            let scale = 10u128.pow(frac.len() as u32);
            let whole = whole.parse::<u128>().map_err(|_| too_big())?;
            let frac = frac.parse::<u128>().map_err(|_| too_big())?;
            whole.checked_mul(multiplier).and_then(|w| w.checked_add(frac * multiplier / scale)).ok_or_else(too_big)?
        }
    };
    u64::try_from(bytes).map_err(|_| too_big())
}

/// Formats bytes in the largest unit that divides them exactly (`1G`, `1536M`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let mut value = bytes;
    let mut unit = 0;
    while value != 0 && value % 1024 == 0 && unit < UNITS.len() - 1 {
        value /= 1024;
        unit += 1;
    }
    format!("{value}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_and_systemd_spellings() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256mb"), Ok(256 << 20));
        assert_eq!(parse_size("256 M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1024M"), parse_size("1G"));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("10b"), Ok(10));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "M", "-1", "1.2.3G", "12Q", "1Mx", "1 G B", ".5G", "5.G", "1e3", "0x10", "256MB!"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        let msg = parse_size("256Q").unwrap_err();
        assert!(msg.contains("\"256Q\" is not a size"), "{msg}");
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_size("16E").unwrap_err().contains("too large"));
        assert_eq!(
            parse_size("99999999999999999999999999999999999999999").unwrap_err().to_string(),
            "\"99999999999999999999999999999999999999999\" is too large (at most 16 EiB)"
        );
        assert_eq!(parse_size("15E"), Ok(15 << 60));
    }

    #[test]
    fn formats_exact_units() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536 << 20), "1536M");
    }
}
