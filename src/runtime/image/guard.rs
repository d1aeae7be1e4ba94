//! A reader between a layer's decompressor and `tar::Archive` that bounds
//! what the tar crate would otherwise buffer whole.
//!
//! The tar crate reads a GNU long name or link (`L`, `K`) and PAX extension
//! data (`x`, and `g` when asked for its records) into memory in one piece,
//! as large as the header says: a small gzip layer with a 1 GiB PAX record
//! makes the daemon (PID 1 of an appliance) allocate a gigabyte. Forking the
//! crate to add limits would leave us maintaining a tar reader; instead this
//! adapter walks the 512-byte headers as the bytes stream past, exactly as
//! the crate does (the same header parser, base-256 sizes included; a PAX
//! `size` record overriding the next entry's size; GNU sparse extension
//! blocks), and fails the read that would hand over a header whose
//! extension data is over the limit, or one entry too many, before the
//! crate has seen that header. The error carries a [`LimitExceeded`], so
//! the caller can tell a refused layer (not retried) from a broken stream.

use std::fmt;
use std::io::{self, Read};

/// What a layer's tar stream may hold.
#[derive(Debug, Clone, Copy)]
pub struct TarLimits {
    /// Most bytes of one GNU long name or link, or one PAX header's records.
    pub max_extension: u64,
    /// Most entries (files, directories, links, ...) in one layer.
    pub max_entries: u64,
}

/// 1 MiB: Linux paths end at 4 KiB, and the largest xattrs (64 KiB each)
/// fit many times over.
pub const MAX_EXTENSION: u64 = 1 << 20;
/// The largest layers of real images hold a few hundred thousand files.
pub const MAX_ENTRIES: u64 = 1_000_000;

impl Default for TarLimits {
    fn default() -> Self {
        TarLimits { max_extension: MAX_EXTENSION, max_entries: MAX_ENTRIES }
    }
}

/// The error payload of a read refused for a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded(pub String);

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

impl LimitExceeded {
    /// The refusal inside an I/O error, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&LimitExceeded> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<LimitExceeded>())
    }
}

const BLOCK: u64 = 512;

enum State {
    /// Collecting a header (or a GNU sparse extension block when `sparse_data`
    /// is the size of the data that follows the extension blocks).
    Block { buf: Box<[u8; 512]>, filled: usize, sparse_data: Option<u64> },
    /// Inside an entry's data and padding; `capture` collects a PAX header's
    /// records (at most the limit) to read the `size` they may set.
    Data { remaining: u64, capture: Option<(Vec<u8>, usize)> },
    /// After the end-of-archive block: the tar reader stops there.
    End,
}

pub struct TarGuard<R> {
    inner: R,
    limits: TarLimits,
    state: State,
    entries: u64,
    /// A PAX `size` for the next entry, as the tar crate applies it.
    pending_size: Option<u64>,
}

fn new_block(sparse_data: Option<u64>) -> State {
    State::Block { buf: Box::new([0; 512]), filled: 0, sparse_data }
}

fn refuse(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LimitExceeded(message))
}

fn round_up(size: u64) -> io::Result<u64> {
    size.checked_add(BLOCK - 1)
        .map(|s| s & !(BLOCK - 1))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "tar entry size overflows"))
}

/// The size a PAX header's records give, parsed as the tar crate does.
fn pax_size(records: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(records) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R, limits: TarLimits) -> TarGuard<R> {
        TarGuard { inner, limits, state: new_block(None), entries: 0, pending_size: None }
    }

    /// Entries seen so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Whether the end-of-archive block has gone past: an archive whose
    /// stream stops before it was cut short.
    pub fn ended(&self) -> bool {
        matches!(self.state, State::End)
    }

    /// Follows `bytes` through the archive's structure.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::End => return Ok(()),
                State::Data { remaining, capture } => {
                    let take = (*remaining).min(bytes.len() as u64) as usize;
                    if let Some((buf, want)) = capture {
                        let room = want.saturating_sub(buf.len()).min(take);
                        buf.extend_from_slice(&bytes[..room]);
                    }
                    *remaining -= take as u64;
                    bytes = &bytes[take..];
                    if *remaining == 0 {
                        if let Some((records, _)) = capture.take() {
                            self.pending_size = pax_size(&records);
                        }
                        self.state = new_block(None);
                    }
                }
                State::Block { buf, filled, sparse_data } => {
                    let take = (512 - *filled).min(bytes.len());
                    buf[*filled..*filled + take].copy_from_slice(&bytes[..take]);
                    *filled += take;
                    bytes = &bytes[take..];
                    if *filled == 512 {
                        let sparse_data = *sparse_data;
                        let block = std::mem::replace(buf, Box::new([0; 512]));
                        self.state = match sparse_data {
                            Some(data) => self.sparse_extension(&block, data)?,
                            None => self.header(&block)?,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// The state after the header `block`.
    fn header(&mut self, block: &[u8; 512]) -> io::Result<State> {
        if block.iter().all(|b| *b == 0) {
            return Ok(State::End);
        }
        let h = tar::Header::from_byte_slice(block);
        let kind = h.entry_type();
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let long = kind.is_gnu_longname() || kind.is_gnu_longlink();
        let pax = kind.is_pax_local_extensions() || kind.is_pax_global_extensions();
        let mut size = h.entry_size()?;
        if long || pax {
            // Refused whatever the magic: an old-style `x` or `g` header is
            // still read whole when its records are asked for.
            if size > self.limits.max_extension {
                let what = match kind.as_byte() {
                    b'L' => "a GNU long name",
                    b'K' => "a GNU long link name",
                    b'x' => "a PAX extended header",
                    _ => "a PAX global header",
                };
                return Err(refuse(format!(
                    "{what} of {size} bytes is over the limit of {} bytes",
                    self.limits.max_extension
                )));
            }
        }
        // The tar crate gathers recognized L, K and x headers for the entry
        // that follows them; anything else is an entry of its own, and the
        // gathered PAX size applies to it unless it is an extension type.
        let gathered = recognized && (long || kind.is_pax_local_extensions());
        let mut capture = None;
        if gathered {
            if kind.is_pax_local_extensions() {
                capture = Some((Vec::new(), size as usize));
            }
        } else {
            if let Some(p) = self.pending_size.take()
                && !long
                && !pax
            {
                size = p;
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(refuse(format!("more than the limit of {} entries", self.limits.max_entries)));
            }
            if kind.is_gnu_sparse()
                && let Some(gnu) = h.as_gnu()
                && gnu.is_extended()
            {
                return Ok(new_block(Some(size)));
            }
        }
        self.data(size, capture)
    }

    /// The state after a GNU sparse extension block; `data` follows the last.
    fn sparse_extension(&mut self, block: &[u8; 512], data: u64) -> io::Result<State> {
        // `isextended` follows the 21 sparse entries of 24 bytes.
        if block[504] == 1 { Ok(new_block(Some(data))) } else { self.data(data, None) }
    }

    fn data(&mut self, size: u64, capture: Option<(Vec<u8>, usize)>) -> io::Result<State> {
        let remaining = round_up(size)?;
        if remaining == 0 {
            if capture.is_some() {
                self.pending_size = None;
            }
            return Ok(new_block(None));
        }
        Ok(State::Data { remaining, capture })
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header of `kind` and `size` with GNU or ustar magic (`magic`) or
    /// none; `size` in base-256 when it does not fit 11 octal digits.
    fn header(kind: u8, size: u64, magic: Option<&[u8; 8]>) -> [u8; 512] {
        let mut h = tar::Header::new_old();
        if let Some(m) = magic {
            h.as_mut_bytes()[257..265].copy_from_slice(m);
        }
        h.set_path("f").unwrap();
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_cksum();
        *h.as_bytes()
    }

    const GNU: &[u8; 8] = b"ustar  \0";
    const USTAR: &[u8; 8] = b"ustar\x0000";

    fn limits() -> TarLimits {
        TarLimits { max_extension: 1024, max_entries: 5 }
    }

    /// Feeds `bytes` through a guard in reads of `chunk` bytes.
    fn feed(bytes: &[u8], chunk: usize) -> io::Result<u64> {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut g = TarGuard::new(Chunks(bytes, chunk), limits());
        io::copy(&mut g, &mut io::sink())?;
        Ok(g.entries())
    }

    fn refused(r: io::Result<u64>) -> String {
        let e = r.expect_err("refused");
        LimitExceeded::of(&e).unwrap_or_else(|| panic!("not a limit: {e}")).0.clone()
    }

    #[test]
    fn each_extension_kind_over_the_limit_is_refused_at_its_header() {
        for (kind, what) in [
            (b'L', "GNU long name"),
            (b'K', "GNU long link name"),
            (b'x', "PAX extended header"),
            (b'g', "PAX global header"),
        ] {
            for magic in [Some(GNU), Some(USTAR), None] {
                // Only the header: nothing of the data needs to exist.
                let h = header(kind, 1 << 30, magic);
                let m = refused(feed(&h, 100));
                assert!(m.contains(what) && m.contains("1073741824 bytes") && m.contains("limit of 1024"), "{m}");
            }
            // At the limit it passes.
            let mut tarball = header(kind, 1024, Some(GNU)).to_vec();
            tarball.extend_from_slice(&[b'a'; 1024]);
            tarball.extend_from_slice(&header(b'0', 0, Some(GNU)));
            tarball.extend_from_slice(&[0; 1024]);
            assert!(feed(&tarball, 7).is_ok());
        }
    }

    #[test]
    fn base256_sizes_are_read() {
        // Over 8 GiB, which octal cannot hold: the tar crate writes base-256.
        let h = header(b'x', 1 << 40, Some(GNU));
        assert_eq!(h[124] & 0x80, 0x80, "base-256 expected");
        assert!(refused(feed(&h, 512)).contains("1099511627776 bytes"));
        // A regular file that large is not an extension: data, not refused.
        let h = header(b'0', 1 << 40, Some(GNU));
        assert!(feed(&h, 512).is_ok());
    }

    #[test]
    fn a_pax_size_moves_the_next_header_as_the_tar_crate_does() {
        // The regular entry's header says 0 bytes, its PAX record 1024: the
        // x header hidden in those 1024 bytes is a header to the tar crate.
        let record = "13 size=1024\n";
        let mut tarball = header(b'x', record.len() as u64, Some(USTAR)).to_vec();
        tarball.extend_from_slice(record.as_bytes());
        tarball.resize(1024, 0);
        tarball.extend_from_slice(&header(b'0', 0, Some(USTAR)));
        tarball.extend_from_slice(&[b'd'; 1024]);
        tarball.extend_from_slice(&header(b'x', 1 << 20, Some(USTAR)));
        let m = refused(feed(&tarball, 300));
        assert!(m.contains("PAX extended header of 1048576"), "{m}");
        // And the crate agrees about where that header is.
        let mut a = tar::Archive::new(&tarball[..]);
        let mut entries = a.entries().unwrap();
        let first = entries.next().unwrap().unwrap();
        assert_eq!(first.size(), 1024);
    }

    #[test]
    fn sparse_extension_blocks_are_skipped() {
        let mut h = tar::Header::new_gnu();
        h.set_path("s").unwrap();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(512);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.isextended[0] = 1;
        h.set_cksum();
        let mut tarball = h.as_bytes().to_vec();
        let mut ext = [0u8; 512];
        ext[504] = 1;
        tarball.extend_from_slice(&ext);
        tarball.extend_from_slice(&[0u8; 512]); // the last extension block
        tarball.extend_from_slice(&[b'd'; 512]); // the data
        tarball.extend_from_slice(&header(b'K', 4096, Some(GNU)));
        assert!(refused(feed(&tarball, 64)).contains("GNU long link name of 4096"));
    }

    #[test]
    fn entries_are_counted() {
        let mut tarball = Vec::new();
        for _ in 0..6 {
            tarball.extend_from_slice(&header(b'0', 0, Some(GNU)));
        }
        assert!(refused(feed(&tarball, 512)).contains("more than the limit of 5 entries"));
        tarball.truncate(5 * 512);
        tarball.extend_from_slice(&[0; 1024]);
        assert_eq!(feed(&tarball, 512).unwrap(), 5);
    }

    #[test]
    fn what_follows_the_end_is_not_parsed() {
        let mut tarball = vec![0u8; 1024];
        tarball.extend_from_slice(&header(b'x', 1 << 30, Some(GNU)));
        assert!(feed(&tarball, 512).is_ok());
    }
}
