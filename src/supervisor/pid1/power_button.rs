//! The ACPI power button (qemu's `system_powerdown`, `virsh shutdown`, a
//! real button): its evdev device sends KEY_POWER; a press asks for a
//! clean power-off. No acpid: one thread reading `input_event`s.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit Linux: a timeval (16), type, code
/// (u16 each), value (i32).
const EVENT_SIZE: usize = 24;

/// The event devices under `sys_input` (`/sys/class/input`) whose name
/// says power button, as `/dev/input/eventN` paths.
pub fn find(sys_input: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(sys_input) else { return Vec::new() };
    let mut out: Vec<PathBuf> = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|n| n.to_ascii_lowercase().contains("power button"))
        })
        .map(|e| Path::new("/dev/input").join(e.file_name()))
        .collect();
    out.sort();
    out
}

/// Whether one `input_event` is a press of the power key.
pub fn is_power_press(event: &[u8]) -> bool {
    if event.len() < EVENT_SIZE {
        return false;
    }
    let u16_at = |i: usize| u16::from_ne_bytes([event[i], event[i + 1]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    u16_at(16) == EV_KEY && u16_at(18) == KEY_POWER && value == 1
}

/// Watches every power button (looking for a while: the device appears
/// once the `button` and `evdev` modules have probed) and calls `pressed`
/// on each press.
pub fn watch(pressed: impl Fn() + Send + Sync + 'static) {
    let pressed = std::sync::Arc::new(pressed);
    let spawned = std::thread::Builder::new().name("power-button".into()).spawn(move || {
        let mut devices = Vec::new();
        for _ in 0..50 {
            devices = find(Path::new("/sys/class/input"));
            if !devices.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if devices.is_empty() {
            tracing::info!("no power button found");
            return;
        }
        for dev in devices {
            let pressed = pressed.clone();
            let _ = std::thread::Builder::new().name("power-button".into()).spawn(move || {
                let mut f = match std::fs::File::open(&dev) {
                    Ok(f) => f,
                    Err(e) => return tracing::warn!("{}: {e}", dev.display()),
                };
                tracing::info!("watching the power button {}", dev.display());
                let mut ev = [0u8; EVENT_SIZE];
                while f.read_exact(&mut ev).is_ok() {
                    if is_power_press(&ev) {
                        tracing::info!("power button pressed");
                        pressed();
                    }
                }
            });
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("power button thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend(kind.to_ne_bytes());
        e.extend(code.to_ne_bytes());
        e.extend(value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_press_of_the_power_key_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, 30, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "a sync event");
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 1)[..20]));
    }

    #[test]
    fn the_device_is_found_by_its_name() {
        let t = tempfile::tempdir().unwrap();
        for (ev, name) in [("event0", "AT Translated Set 2 keyboard"), ("event1", "Power Button"), ("mouse0", "x")] {
            std::fs::create_dir_all(t.path().join(ev).join("device")).unwrap();
            std::fs::write(t.path().join(ev).join("device/name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(find(t.path()), [PathBuf::from("/dev/input/event1")]);
    }
}
