//! Signals by name (`SIGTERM`, `TERM`, `term`), number (`15`) or real-time
//! offset (`SIGRTMIN+3`), as `docker run --stop-signal` accepts them. Numbers
//! are those of Linux on x86-64 and aarch64 (the architectures we run on).

use std::fmt;

/// A signal number with its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(u8);

const NAMES: [(&str, u8); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];
const ALIASES: [(&str, u8); 3] = [("IOT", 6), ("CLD", 17), ("POLL", 29)];
const RTMIN: u8 = 34;
const RTMAX: u8 = 64;

impl Signal {
    pub const TERM: Signal = Signal(15);
    pub const KILL: Signal = Signal(9);

    /// The signal's number.
    pub fn number(self) -> i32 {
        i32::from(self.0)
    }

    /// Builds a signal from its number, if Linux has one of that number.
    pub fn from_number(n: i64) -> Option<Signal> {
        let n = u8::try_from(n).ok()?;
        let known = NAMES.iter().any(|(_, v)| *v == n) || (RTMIN..=RTMAX).contains(&n);
        known.then_some(Signal(n))
    }

    /// Parses a signal name or number.
    pub fn parse(input: &str) -> Result<Signal, String> {
        let s = input.trim();
        if let Ok(n) = s.parse::<i64>() {
            return Signal::from_number(n).ok_or_else(|| format!("{n} is not a signal number (1-31, 34-64)"));
        }
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMES.iter().chain(ALIASES.iter()).find(|(name, _)| *name == bare) {
            return Ok(Signal(*n));
        }
        let rt = |base: u8, rest: &str, add: bool| -> Option<Signal> {
            let off: u8 = rest.parse().ok()?;
            let n = if add { base.checked_add(off)? } else { base.checked_sub(off)? };
            (RTMIN..=RTMAX).contains(&n).then_some(Signal(n))
        };
        let realtime = if let Some(rest) = bare.strip_prefix("RTMIN") {
            rest.strip_prefix('+').map_or_else(|| rest.is_empty().then_some(Signal(RTMIN)), |r| rt(RTMIN, r, true))
        } else if let Some(rest) = bare.strip_prefix("RTMAX") {
            rest.strip_prefix('-').map_or_else(|| rest.is_empty().then_some(Signal(RTMAX)), |r| rt(RTMAX, r, false))
        } else {
            None
        };
        realtime.ok_or_else(|| {
            let names: Vec<String> = NAMES.iter().map(|(n, _)| format!("SIG{n}")).collect();
            let hint = crate::units::suggest::did_you_mean(&format!("SIG{bare}"), names.iter().map(String::as_str));
            format!("unknown signal {input:?}{hint}")
        })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            write!(f, "SIG{name}")
        } else if self.0 == RTMIN {
            f.write_str("SIGRTMIN")
        } else {
            write!(f, "SIGRTMIN+{}", self.0 - RTMIN)
        }
    }
}

impl serde::Serialize for Signal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        for spelling in ["SIGTERM", "TERM", "term", "sigterm", "15", " SIGTERM "] {
            assert_eq!(Signal::parse(spelling), Ok(Signal::TERM), "{spelling}");
        }
        assert_eq!(Signal::parse("SIGIOT").unwrap().to_string(), "SIGABRT");
        assert_eq!(Signal::parse("SIGRTMIN").unwrap().number(), 34);
        assert_eq!(Signal::parse("SIGRTMIN+3").unwrap().to_string(), "SIGRTMIN+3");
        assert_eq!(Signal::parse("RTMAX-1").unwrap().number(), 63);
        assert_eq!(Signal::parse("SIGRTMAX").unwrap().to_string(), "SIGRTMIN+30");
    }

    #[test]
    fn rejects_unknown() {
        assert_eq!(Signal::parse("0").unwrap_err().to_string(), "0 is not a signal number (1-31, 34-64)");
        assert_eq!(Signal::parse("32").unwrap_err().to_string(), "32 is not a signal number (1-31, 34-64)");
        assert_eq!(Signal::parse("65").unwrap_err().to_string(), "65 is not a signal number (1-31, 34-64)");
        assert_eq!(Signal::parse("-9").unwrap_err().to_string(), "-9 is not a signal number (1-31, 34-64)");
        assert_eq!(Signal::parse("SIGRTMIN+31").unwrap_err().to_string(), "unknown signal \"SIGRTMIN+31\"");
        assert_eq!(
            Signal::parse("SIGRTMIN+").unwrap_err().to_string(),
            "unknown signal \"SIGRTMIN+\", did you mean \"SIGTTIN\"?"
        );
        let msg = Signal::parse("SIGTREM").unwrap_err();
        assert!(msg.contains("did you mean \"SIGTERM\""), "{msg}");
    }
}
