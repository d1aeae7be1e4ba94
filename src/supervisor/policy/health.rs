//! Which health check applies to a unit, with what timings, and what to do
//! when it fails: policy, so it lives here; `health` only runs probes.

use std::time::Duration;

use serde::Serialize;

use crate::health::Probe;
use crate::runtime::image::config::{HealthTest, Healthcheck};
use crate::units::model::{Health as UnitHealth, OnUnhealthy, Probe as UnitProbe};

/// Docker's defaults.
pub const INTERVAL: Duration = Duration::from_secs(30);
pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const RETRIES: u32 = 3;
/// The shortest time between probes, whatever a unit or an image's
/// HEALTHCHECK (untrusted: `StartInterval` of 1 ns) asks: an exec probe
/// is a process.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A unit's effective health check: the probe `health` runs, its timings,
/// and what the engine does when it reports unhealthy. `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub probe: Probe,
    #[serde(with = "humantime_serde_shim")]
    pub interval: Duration,
    #[serde(with = "humantime_serde_shim")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(with = "humantime_serde_shim")]
    pub start_period: Duration,
    /// Between probes in the start period, until the first success.
    #[serde(with = "humantime_serde_shim")]
    pub start_interval: Duration,
    pub on_unhealthy: OnUnhealthy,
    /// From the image's HEALTHCHECK, not the unit.
    pub from_image: bool,
}

mod humantime_serde_shim {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

/// The check of a unit: its own probe, else (unless `disable`) the
/// image's HEALTHCHECK, whose timings the unit's keys override.
pub fn effective(unit: &UnitHealth, image: Option<&Healthcheck>) -> Option<Check> {
    if unit.disable {
        return None;
    }
    let (probe, from_image, img) = match &unit.probe {
        Some(p) => (probe_of(p), false, None),
        None => {
            let hc = image?;
            (image_probe(hc)?, true, Some(hc))
        }
    };
    let interval = unit.interval.or_else(|| img.and_then(Healthcheck::interval)).unwrap_or(INTERVAL).max(MIN_INTERVAL);
    Some(Check {
        probe,
        interval,
        timeout: unit.timeout.or_else(|| img.and_then(Healthcheck::timeout)).unwrap_or(TIMEOUT),
        retries: unit.retries.or_else(|| img.map(|h| h.retries).filter(|r| *r > 0)).unwrap_or(RETRIES),
        start_period: unit.start_period.or_else(|| img.and_then(Healthcheck::start_period)).unwrap_or_default(),
        start_interval: unit
            .start_interval
            .or_else(|| img.and_then(Healthcheck::start_interval))
            .unwrap_or(interval)
            .max(MIN_INTERVAL),
        on_unhealthy: unit.on_unhealthy,
        from_image,
    })
}

impl Check {
    /// How long to wait before the next probe, `since_start` after the
    /// container started: the start interval while in the start period and
    /// no probe has passed yet (`started_up`), else the interval (Docker's
    /// rule).
    pub fn next_probe_in(&self, since_start: Duration, started_up: bool) -> Duration {
        if !started_up && since_start < self.start_period { self.start_interval } else { self.interval }
    }
}

/// The unit file's probe, as the mechanism runs it.
fn probe_of(p: &UnitProbe) -> Probe {
    match p {
        UnitProbe::Exec(argv) => Probe::Exec(argv.clone()),
        UnitProbe::Http(url) => Probe::Http(url.clone()),
        UnitProbe::Tcp(port) => Probe::Tcp(*port),
    }
}

/// An image's HEALTHCHECK becomes an `exec` probe; `NONE` or a test we
/// cannot read is no check.
fn image_probe(hc: &Healthcheck) -> Option<Probe> {
    match hc.test()? {
        HealthTest::None => None,
        HealthTest::Exec(argv) => Some(Probe::Exec(argv)),
        HealthTest::Shell(cmd) => Some(Probe::Exec(vec!["/bin/sh".into(), "-c".into(), cmd])),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn unit(probe: Option<UnitProbe>, on: OnUnhealthy) -> UnitHealth {
        UnitHealth {
            probe,
            disable: false,
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
            start_interval: None,
            on_unhealthy: on,
        }
    }

    fn image(test: &[&str]) -> Healthcheck {
        Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval: 5_000_000_000,
            timeout: 0,
            start_period: 1_000_000_000,
            start_interval: 0,
            retries: 7,
        }
    }

    #[test]
    fn the_units_probe_wins_with_dockers_defaults() {
        let u = unit(Some(UnitProbe::Tcp(5432)), OnUnhealthy::Restart);
        let c = effective(&u, Some(&image(&["CMD", "x"]))).unwrap();
        assert_eq!(c.probe, Probe::Tcp(5432));
        assert_eq!((c.interval, c.timeout, c.retries, c.start_period), (INTERVAL, TIMEOUT, 3, Duration::ZERO));
        assert!(!c.from_image);
    }

    #[test]
    fn the_images_healthcheck_applies_with_its_timings_and_the_units_overrides() {
        let mut u = unit(None, OnUnhealthy::None);
        u.timeout = Some(Duration::from_secs(2));
        let c = effective(&u, Some(&image(&["CMD-SHELL", "wget -q localhost"]))).unwrap();
        assert_eq!(c.probe, Probe::Exec(vec!["/bin/sh".into(), "-c".into(), "wget -q localhost".into()]));
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!((c.retries, c.start_period), (7, Duration::from_secs(1)));
        assert!(c.from_image && c.on_unhealthy == OnUnhealthy::None);
        assert!(effective(&u, Some(&image(&["NONE"]))).is_none());
        assert!(effective(&u, None).is_none());
        u.disable = true;
        assert!(effective(&u, Some(&image(&["CMD", "true"]))).is_none());
    }

    #[test]
    fn the_start_interval_paces_the_start_period_until_a_probe_passes() {
        let mut u = unit(Some(UnitProbe::Tcp(6379)), OnUnhealthy::Restart);
        u.interval = Some(Duration::from_secs(30));
        u.start_period = Some(Duration::from_secs(60));
        // Not given: the interval throughout.
        let c = effective(&u, None).unwrap();
        assert_eq!(c.next_probe_in(Duration::ZERO, false), Duration::from_secs(30));
        u.start_interval = Some(Duration::from_millis(200));
        let c = effective(&u, None).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(c.next_probe_in(ms(0), false), ms(200));
        assert_eq!(c.next_probe_in(ms(59_999), false), ms(200));
        // Once a probe passed, or the period is over: the interval.
        assert_eq!(c.next_probe_in(ms(1_000), true), Duration::from_secs(30));
        assert_eq!(c.next_probe_in(ms(60_000), false), Duration::from_secs(30));
        // The image's StartInterval, which the unit's key overrides.
        let mut hc = image(&["CMD", "x"]);
        hc.start_interval = 300_000_000;
        let mut own = unit(None, OnUnhealthy::None);
        assert_eq!(effective(&own, Some(&hc)).unwrap().start_interval, ms(300));
        own.start_interval = Some(ms(50));
        assert_eq!(effective(&own, Some(&hc)).unwrap().start_interval, ms(50));
        // An image's (untrusted) nanosecond is not a busy loop.
        hc.start_interval = 1;
        hc.interval = 1;
        let tiny = effective(&unit(None, OnUnhealthy::None), Some(&hc)).unwrap();
        assert_eq!((tiny.interval, tiny.start_interval), (MIN_INTERVAL, MIN_INTERVAL));
    }

    #[test]
    fn inspect_shows_the_probe_as_the_unit_file_wrote_it() {
        for p in [UnitProbe::Exec(vec!["true".into()]), UnitProbe::Http("http://localhost/".into()), UnitProbe::Tcp(80)]
        {
            assert_eq!(serde_json::to_value(probe_of(&p)).unwrap(), serde_json::to_value(&p).unwrap());
        }
    }
}
