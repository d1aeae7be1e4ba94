//! `[update]`: how a change that replaces the unit's container is rolled
//! out, the two windows that prove the new container good, and whether the
//! image follows its registry tag. What an update is: docs/updates.md.

use std::time::Duration;

use super::Cx;
use super::keys::Section;
use crate::units::model::{AutoUpdate, Container, PullPolicy, Strategy, UpdatePolicy};
use crate::units::suggest::did_you_mean;
use crate::units::values::duration::format_duration;
use crate::units::values::reference::ImageSource;

/// The longest either window may be: an update holds the unit's previous
/// image and config until it is decided, and a window of hours is a typo
/// (`"60m"` for `"60s"`) more often than a wish.
const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// `container` is `None` when `[container]` had an error (already reported):
/// the checks that need the image are then skipped.
pub(super) fn parse_update(cx: &mut Cx<'_>, s: &Section<'_, '_>, container: Option<&Container>) -> UpdatePolicy {
    s.check_keys(cx);
    let default = UpdatePolicy::default();
    let strategy = s.string_with(cx, "strategy", strategy).unwrap_or(default.strategy);
    let healthy_within = window(cx, s, "healthy_within", true).unwrap_or(default.healthy_within);
    let min_healthy = window(cx, s, "min_healthy", false).unwrap_or(default.min_healthy);
    let rollback = s.bool(cx, "rollback").unwrap_or(default.rollback);
    let auto = s
        .choice(cx, "auto", &[("never", AutoUpdate::Never), ("registry", AutoUpdate::Registry)])
        .unwrap_or(default.auto);
    if auto == AutoUpdate::Registry
        && let Some(c) = container
        && let Some(problem) = not_followable(c)
        && let Some(v) = s.get("auto")
    {
        cx.error(
            v.span(),
            format!(
                "invalid \"auto\" in [update]: \"registry\" follows the image's tag in its registry, but {problem}"
            ),
        );
    }
    UpdatePolicy { strategy, healthy_within, min_healthy, rollback, auto }
}

fn strategy(value: &str) -> Result<Strategy, String> {
    match value {
        "stop-first" => Ok(Strategy::StopFirst),
        "start-first" => Ok(Strategy::StartFirst),
        other => Err(format!(
            r#"{other:?} is not one of "stop-first", "start-first"{}"#,
            did_you_mean(other, ["stop-first", "start-first"])
        )),
    }
}

/// A duration of at most [`MAX_WINDOW`]; above zero when `positive`.
fn window(cx: &mut Cx<'_>, s: &Section<'_, '_>, key: &str, positive: bool) -> Option<Duration> {
    let d = if positive { s.positive_duration(cx, key) } else { s.duration(cx, key) }?;
    if d > MAX_WINDOW {
        let span = s.get(key).map_or(0..0, |v| v.span());
        let max = format_duration(MAX_WINDOW);
        cx.error(
            span,
            format!("invalid {key:?} in [update]: {} is longer than the maximum of {max}", format_duration(d)),
        );
        return None;
    }
    Some(d)
}

/// Why the unit's image has no registry tag that could move, if it has none.
fn not_followable(c: &Container) -> Option<String> {
    match &c.image {
        ImageSource::Registry(r) if r.digest.is_some() => {
            Some(format!("[container] image {:?} is pinned by its digest: name a tag instead", c.image.to_string()))
        }
        ImageSource::Registry(_) if c.pull == PullPolicy::Never => {
            Some("[container] pull = \"never\" forbids pulling the new image".to_string())
        }
        ImageSource::Registry(_) => None,
        local => Some(format!("[container] image {:?} is a local source, not a registry reference", local.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::units::diag::Source;
    use crate::units::parse::{ParseInput, parse_unit};

    fn update(section: &str) -> Result<UpdatePolicy, Vec<String>> {
        let text = format!("[container]\nimage = \"registry.lan:5000/app:v1\"\n[update]\n{section}");
        let input = ParseInput {
            name: "app",
            source: Source { path: Path::new("app.toml"), text: &text },
            base_dir: Path::new("/etc/units.d"),
            read_file: &|_| Err("no files here".into()),
        };
        parse_unit(&input).map(|p| p.unit.update).map_err(|e| e.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn windows_at_their_bounds() {
        let u = update("healthy_within = \"1h\"\nmin_healthy = \"1h\"\n").unwrap();
        assert_eq!((u.healthy_within, u.min_healthy), (MAX_WINDOW, MAX_WINDOW));
        let u = update("healthy_within = \"1ms\"\nmin_healthy = \"0s\"\n").unwrap();
        assert_eq!((u.healthy_within, u.min_healthy), (Duration::from_millis(1), Duration::ZERO));
        // Separate windows: min_healthy may be longer than healthy_within.
        assert!(update("healthy_within = \"10s\"\nmin_healthy = \"1m\"\n").is_ok());
        assert_eq!(
            update("min_healthy = \"3601s\"\n").unwrap_err(),
            ["invalid \"min_healthy\" in [update]: 1h1s is longer than the maximum of 1h"]
        );
    }

    #[test]
    fn a_tagged_registry_image_can_follow_its_tag() {
        assert_eq!(update("auto = \"registry\"\n").unwrap().auto, AutoUpdate::Registry);
        assert_eq!(update("").unwrap(), UpdatePolicy::default());
    }
}
