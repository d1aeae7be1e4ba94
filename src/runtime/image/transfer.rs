//! Fetching a blob through a source that may fail: each try's failure
//! is told apart as the transfer's (the connection broke, stalled, or the
//! body ended early: tried again, after a pause, a bounded number of
//! times) or anything else's (the content, the store, a limit: final), and
//! a final error says what happened, how far it got and how many tries
//! were made.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

use super::digest::{Digest, HashingReader};
use super::error::{ImageError, Result};
use super::manifest::Descriptor;
use super::pull::Progress;
use super::source::Fetcher;

/// Tries of one blob whose body broke, stalled or ended early (each try's
/// request has the registry client's own retries of refused connections,
/// 429 and 5xx).
pub(super) const LAYER_TRIES: u32 = 3;

/// The pause before try `attempt + 1` of a blob: `first`, doubling.
fn pause(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.saturating_sub(1).min(4))
}

/// How one try at a blob failed.
pub(super) enum Failure {
    /// The transfer: worth another try. What happened, for the error.
    Transfer(String),
    /// Anything else: the content, the store, a limit.
    Other(ImageError),
}

impl From<ImageError> for Failure {
    fn from(e: ImageError) -> Failure {
        Failure::Other(e)
    }
}

/// Runs `once` until it succeeds, fails for another reason than the
/// transfer, or has failed [`LAYER_TRIES`] times, pausing between tries;
/// `verb` (`pull`, `push`) and `source_name` name the transfer in the error.
pub(super) fn tried<T>(
    verb: &'static str,
    source_name: &str,
    what: &str,
    first_pause: Duration,
    mut once: impl FnMut() -> Result<T, Failure>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match once() {
            Ok(t) => return Ok(t),
            Err(Failure::Other(e)) => return Err(e),
            Err(Failure::Transfer(fault)) if attempt >= LAYER_TRIES => {
                return Err(ImageError::Transfer {
                    verb,
                    source_name: source_name.to_string(),
                    what: what.to_string(),
                    fault,
                    attempts: attempt,
                });
            }
            Err(Failure::Transfer(_)) => {
                std::thread::sleep(pause(first_pause, attempt));
                attempt += 1;
            }
        }
    }
}

/// A small blob (the config), read whole and verified; a broken transfer
/// is tried again.
pub(super) fn read_verified(
    fetcher: &dyn Fetcher,
    desc: &Descriptor,
    what: &str,
    first_pause: Duration,
) -> Result<Vec<u8>> {
    tried("pull", &fetcher.name(), &format!("{what} {}", desc.digest), first_pause, || {
        let transport = RefCell::new(Transport::default());
        let mut r = HashingReader::new(Watched { inner: fetcher.blob(desc)?, seen: &transport }, desc.size);
        let mut bytes = Vec::new();
        let read = r.read_to_end(&mut bytes);
        let seen = transport.take();
        let received = r.count();
        if let Err(e) = read {
            return Err(match seen.error {
                Some(error) if received <= desc.size => {
                    Failure::Transfer(format!("{error} after {} of {}", size_text(received), size_text(desc.size)))
                }
                _ => Failure::Other(ImageError::Blob {
                    what: what.into(),
                    digest: desc.digest.to_string(),
                    message: e.to_string(),
                }),
            });
        }
        let (digest, size) = r.finish();
        if size < desc.size {
            return Err(Failure::Transfer(format!(
                "the body ended after {} of {}",
                size_text(size),
                size_text(desc.size)
            )));
        }
        if digest != desc.digest {
            return Err(Failure::Other(ImageError::DigestMismatch {
                what: what.into(),
                expected: desc.digest.to_string(),
                actual: digest.to_string(),
            }));
        }
        Ok(bytes)
    })
}

/// What a failed try at a blob (of `received` bytes, `seen` from its
/// source) comes to: a blob longer than it should be (never retried:
/// the source sends something else), the transfer (retried), or `e`.
pub(super) fn classify(source_name: &str, desc: &Descriptor, e: ImageError, seen: Transport, received: u64) -> Failure {
    if received > desc.size {
        return Failure::Other(ImageError::Blob {
            what: format!("pull {}: blob", source_name),
            digest: desc.digest.to_string(),
            message: format!("the source sent more than its {} (stopped reading there)", size_text(desc.size)),
        });
    }
    match seen {
        Transport { error: Some(error), .. } => {
            Failure::Transfer(format!("{error} after {} of {}", size_text(received), size_text(desc.size)))
        }
        Transport { ended: true, .. } if received < desc.size => {
            Failure::Transfer(format!("the body ended after {} of {}", size_text(received), size_text(desc.size)))
        }
        _ => Failure::Other(e),
    }
}

/// `n` bytes for people: `812 bytes`, `50.0 kB`, `1.2 MB`.
pub(super) fn size_text(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} bytes"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// What a blob's source did: its first error, and whether it ended.
#[derive(Default)]
pub(super) struct Transport {
    pub(super) error: Option<String>,
    pub(super) ended: bool,
}

/// A blob's source, whose errors and end are noted: the decompressor and
/// the tar reader wrap them in their own.
pub(super) struct Watched<'a, R> {
    pub(super) inner: R,
    pub(super) seen: &'a RefCell<Transport>,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.seen.borrow_mut().ended = true;
                Ok(0)
            }
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                self.seen.borrow_mut().error.get_or_insert_with(|| e.to_string());
                Err(e)
            }
            other => other,
        }
    }
}

/// Copies what is read to the blob file (noting a failed write: the
/// store's, not the source's), and reports progress.
pub(super) struct Tee<'a, R> {
    pub(super) inner: &'a mut R,
    pub(super) copy: Option<&'a mut File>,
    pub(super) write_error: &'a RefCell<Option<io::Error>>,
    pub(super) progress: &'a dyn Progress,
    pub(super) digest: &'a Digest,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(f) = self.copy.as_mut()
            && let Err(e) = f.write_all(&buf[..n])
        {
            let kept = io::Error::new(e.kind(), e.to_string());
            *self.write_error.borrow_mut() = Some(e);
            return Err(kept);
        }
        self.progress.layer_bytes(self.digest, n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn desc(size: u64) -> Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::of(b"x").to_string(),
            "size": size,
        }))
        .unwrap()
    }

    #[test]
    fn a_transfer_is_tried_three_times_and_the_error_says_so() {
        let calls = Cell::new(0);
        let e = tried::<()>("pull", "r:5000/x:1", "blob sha256:1", Duration::ZERO, || {
            calls.set(calls.get() + 1);
            Err(Failure::Transfer(format!("reset after {} of 2.0 MB", size_text(1_234_567))))
        })
        .unwrap_err();
        assert_eq!(calls.get(), LAYER_TRIES);
        assert_eq!(e.to_string(), "pull r:5000/x:1: blob sha256:1: reset after 1.2 MB of 2.0 MB, 3 attempts");
        // Anything else is final at once; a later success is a success.
        calls.set(0);
        let e = tried::<()>("pull", "r", "b", Duration::ZERO, || {
            calls.set(calls.get() + 1);
            Err(Failure::Other(ImageError::Invalid("bad".into())))
        });
        assert_eq!((calls.get(), e.unwrap_err().to_string()), (1, "bad".to_string()));
        calls.set(0);
        let ok = tried("pull", "r", "b", Duration::ZERO, || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 { Err(Failure::Transfer("stall".into())) } else { Ok(7) }
        });
        assert_eq!((ok.unwrap(), calls.get()), (7, 3));
    }

    #[test]
    fn pauses_double() {
        let s = Duration::from_secs(1);
        assert_eq!([1, 2, 3].map(|a| pause(s, a)), [s, 2 * s, 4 * s]);
        assert_eq!(pause(s, 100), 16 * s);
    }

    #[test]
    fn a_failure_is_the_transfers_only_when_the_source_failed_or_ended_early() {
        let other = || ImageError::Invalid("unpack said".into());
        let d = desc(2_000_000);
        let seen = |error: Option<&str>, ended| Transport { error: error.map(String::from), ended };
        let text = |f: Failure| match f {
            Failure::Transfer(t) => format!("transfer: {t}"),
            Failure::Other(e) => format!("other: {e}"),
        };
        assert_eq!(
            text(classify("s", &d, other(), seen(Some("connection reset"), false), 50_000)),
            "transfer: connection reset after 50.0 kB of 2.0 MB"
        );
        assert_eq!(
            text(classify("s", &d, other(), seen(None, true), 812)),
            "transfer: the body ended after 812 bytes of 2.0 MB"
        );
        // More than the blob's size: the source's content, not retried.
        let t = text(classify("s", &d, other(), seen(None, false), 2_000_001));
        assert!(t.starts_with("other: pull s: blob sha256:") && t.contains("sent more than its 2.0 MB"), "{t}");
        // The source did nothing wrong: the unpacking's own error.
        assert_eq!(text(classify("s", &d, other(), seen(None, false), 1000)), "other: unpack said");
    }

    #[test]
    fn a_source_error_is_noted_once_and_passed_on() {
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let seen = RefCell::new(Transport::default());
        let mut w = Watched { inner: io::Cursor::new(b"ab".to_vec()).chain(Fails), seen: &seen };
        let mut buf = Vec::new();
        assert!(w.read_to_end(&mut buf).is_err());
        assert_eq!((buf.as_slice(), seen.borrow().error.as_deref()), (&b"ab"[..], Some("reset")));
        let seen = RefCell::new(Transport::default());
        let mut w = Watched { inner: io::Cursor::new(b"ab".to_vec()), seen: &seen };
        w.read_to_end(&mut Vec::new()).unwrap();
        assert!(seen.borrow().ended && seen.borrow().error.is_none());
    }
}
