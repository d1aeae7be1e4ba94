//! The tests of `copy.rs`: lookups that stay in a root, copies out and
//! in, and what an archive from a container may bring onto the host.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

fn root_with_escapes() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (root, host) = (t.path().join("root"), t.path().join("host"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("data/sub")).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(root.join("etc/passwd"), "container").unwrap();
    std::fs::write(host.join("passwd"), "host").unwrap();
    std::fs::write(root.join("data/sub/file"), "hello").unwrap();
    std::fs::set_permissions(root.join("data/sub/file"), std::fs::Permissions::from_mode(0o640)).unwrap();
    // Links that name the host's directory by its absolute path, and
    // one that climbs out with `..`.
    symlink(&host, root.join("hostdir")).unwrap();
    symlink(host.join("passwd"), root.join("leak")).unwrap();
    symlink("../../../../../../../../host/passwd", root.join("data/climb")).unwrap();
    (t, root, host)
}

fn unpacked(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((String::from_utf8_lossy(&e.path_bytes()).into_owned(), data));
    }
    out
}

/// A cgroup made up for the test: a directory whose `cgroup.procs`
/// lists `pids`.
fn fake_cgroup(dir: &Path, pids: &[u32]) -> Cgroup {
    let list: String = pids.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("cgroup.procs"), list).unwrap();
    Cgroup::V2(dir.to_path_buf())
}

#[test]
fn a_pid_that_is_not_the_containers_process_is_refused() {
    let t = tempfile::tempdir().unwrap();
    // A process of the host (its root is the host's `/`), as a
    // container's pid reused after the container ended would be.
    let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id();
    let in_cgroup = fake_cgroup(t.path(), &[pid]);
    let e = Root::of_process(pid as i32, &in_cgroup, "web").err().expect("the host's root is refused");
    assert!(e.to_string().contains("its root is the host's"), "{e}");
    let elsewhere = fake_cgroup(t.path(), &[1]);
    let e = Root::of_process(pid as i32, &elsewhere, "web").err().expect("not in the cgroup");
    assert!(e.to_string().starts_with("web: process") && e.to_string().contains("cgroup"), "{e}");
    // The check that the process is still there relies on a held
    // /proc directory failing lookups once its process is gone.
    let held = nix::fcntl::open(
        Path::new(&format!("/proc/{pid}")),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    assert!(fstatat(held.as_fd(), "stat", AtFlags::AT_SYMLINK_NOFOLLOW).is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(fstatat(held.as_fd(), "stat", AtFlags::AT_SYMLINK_NOFOLLOW).is_err());
    let e = Root::of_process(pid as i32, &in_cgroup, "web").err().expect("an ended process is refused");
    assert!(e.to_string().contains("ended"), "{e}");
}

#[test]
fn paths_resolve_inside_the_root_and_never_reach_the_host() {
    let (_t, root, host) = root_with_escapes();
    let r = Root::at(&root, "web").unwrap();
    // The absolute link is the container's /…/host/passwd: not there.
    let e = r.stat("/leak", true).unwrap_err().to_string();
    assert!(e.contains("no such file or directory"), "{e}");
    assert_eq!(r.stat("/leak", false).unwrap().kind, "symlink");
    let e = r.stat("/hostdir/passwd", false).unwrap_err().to_string();
    assert!(e.contains("no such file or directory"), "{e}");
    let e = r.stat("/data/climb", true).unwrap_err().to_string();
    assert!(e.contains("no such file or directory"), "{e}");
    // Once the container has a /host/passwd, the link is that file.
    std::fs::create_dir_all(root.join("host")).unwrap();
    std::fs::write(root.join("host/passwd"), "inside").unwrap();
    let mut out = Vec::new();
    r.pack("/data/climb", true, b"climb", &mut out).unwrap();
    assert_eq!(unpacked(&out), [("climb".to_string(), b"inside".to_vec())]);
    assert_eq!(std::fs::read_to_string(host.join("passwd")).unwrap(), "host");
}

#[test]
fn a_directory_goes_out_with_its_modes_and_comes_back_in_beside_it() {
    let (_t, root, _host) = root_with_escapes();
    let r = Root::at(&root, "web").unwrap();
    let mut out = Vec::new();
    r.pack("/data", false, b"copy", &mut out).unwrap();
    let names: Vec<String> = unpacked(&out).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"copy/".to_string()) && names.contains(&"copy/sub/file".to_string()), "{names:?}");
    assert!(names.contains(&"copy/climb".to_string()), "{names:?}");
    // Into the container, beside the original.
    r.extract("/", &mut out.as_slice()).unwrap();
    let copied = root.join("copy/sub/file");
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), "hello");
    assert_eq!(std::fs::metadata(&copied).unwrap().mode() & 0o7777, 0o640);
    assert!(std::fs::symlink_metadata(root.join("copy/climb")).unwrap().file_type().is_symlink());
    // Into a directory below the root.
    r.extract("/data/sub/", &mut out.as_slice()).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("data/sub/copy/sub/file")).unwrap(), "hello");
}

#[test]
fn an_extraction_through_a_link_stays_in_the_root() {
    let (_t, root, host) = root_with_escapes();
    let r = Root::at(&root, "web").unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "hostdir/new", &b"hi"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    // /hostdir names the host's directory; in the root it names
    // /…/host, which does not exist there: refused, nothing written.
    assert!(r.extract("/", &mut bytes.as_slice()).is_err());
    assert!(!host.join("new").exists());
    // Into a directory named through the link: the same.
    assert!(r.extract("/hostdir", &mut bytes.as_slice()).is_err());
    assert!(!host.join("hostdir").exists());
}

#[test]
fn an_archive_cut_short_is_an_error_not_a_partial_success() {
    let (t, root, _host) = root_with_escapes();
    let mut out = Vec::new();
    Root::at(&root, "web").unwrap().pack("/data", false, b"data", &mut out).unwrap();
    // Without its end blocks: as a stream the sender stopped.
    let cut = &out[..out.len() - 1024];
    let dest = t.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let e = extract(&dest, &mut &cut[..]).unwrap_err();
    assert!(matches!(e, CopyError::CutShort { .. }), "{e}");
    assert_eq!(extract(&dest, &mut out.as_slice()).unwrap().entries, 4, "data/, data/sub/, data/sub/file, data/climb");
}

#[test]
fn an_archive_from_a_container_cannot_leave_the_hosts_destination() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_link(&mut h, "out", t.path()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "out/planted", &b"x"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    let e = extract(&dest, &mut bytes.as_slice()).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    assert!(!t.path().join("planted").exists());
}

#[test]
fn a_containers_devices_setuid_bits_and_privileged_xattrs_stay_off_the_host() {
    let t = tempfile::tempdir().unwrap();
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Block);
    h.set_device_major(8).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_size(0);
    h.set_mode(0o666);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "sda", std::io::empty()).unwrap();
    // File capabilities (any value: it must not be tried) and a trusted
    // attribute, as a container root sets them.
    tar.append_pax_extensions([
        ("SCHILY.xattr.security.capability", &b"\x01\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00"[..]),
        ("SCHILY.xattr.trusted.planted", &b"y"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o6755);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "shell", &b"#!"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();

    let made = extract(t.path(), &mut bytes.as_slice()).unwrap();
    assert_eq!(made, Extracted { entries: 1, devices_left_out: 1 });
    assert!(std::fs::symlink_metadata(t.path().join("sda")).is_err(), "no device node on the host");
    let shell = t.path().join("shell");
    assert_eq!(std::fs::metadata(&shell).unwrap().mode() & 0o7777, 0o755, "setuid and setgid dropped");
    let c = std::ffi::CString::new(shell.as_os_str().as_bytes()).unwrap();
    let mut names = [0u8; 256];
    // SAFETY: c is NUL-terminated; the buffer is writable for its length.
    let n = unsafe { libc::listxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let listed = String::from_utf8_lossy(&names[..n.max(0) as usize]).into_owned();
    assert!(!listed.contains("security.capability") && !listed.contains("trusted."), "{listed:?}");
}

#[test]
fn a_path_on_the_kernels_filesystems_is_refused() {
    // The host's root stands in for a container's: its /proc and /sys are
    // what a container's show.
    let r = Root::at(Path::new("/"), "web").unwrap();
    for path in ["/proc/cpuinfo", "/proc", "/sys/kernel"] {
        let e = r.pack(path, false, b"x", &mut Vec::new()).unwrap_err();
        assert!(matches!(e, CopyError::KernelFs { .. }), "{path}: {e}");
        assert!(e.to_string().starts_with(&format!("web:{path}: on the kernel's own filesystem")), "{e}");
    }
    assert!(matches!(r.stat("/proc/self/status", true).unwrap_err(), CopyError::KernelFs { .. }));
}

#[test]
fn a_sparse_file_from_a_container_stays_sparse_on_the_host() {
    let t = tempfile::tempdir().unwrap();
    let (root, dest) = (t.path().join("root"), t.path().join("dest"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    // 256 MiB of nothing, as `truncate -s` makes it in a container.
    let size = 256 << 20;
    std::fs::File::create(root.join("big")).unwrap().set_len(size).unwrap();
    let mut out = Vec::new();
    Root::at(&root, "web").unwrap().pack("/big", false, b"big", &mut out).unwrap();
    extract(&dest, &mut out.as_slice()).unwrap();
    let copied = std::fs::metadata(dest.join("big")).unwrap();
    assert_eq!(copied.len(), size);
    assert!(copied.blocks() * 512 < 1 << 20, "{} bytes written", copied.blocks() * 512);
}

#[test]
fn a_file_from_a_container_does_not_replace_a_directory_of_the_host() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("config/conf.d")).unwrap();
    std::fs::write(t.path().join("config/conf.d/site"), "host").unwrap();
    // What the client stat as a directory, swapped for a file before
    // the daemon packed it.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "config", &b"x"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    let e = extract(t.path(), &mut bytes.as_slice()).unwrap_err().to_string();
    assert!(e.starts_with("config: a directory on the host"), "{e}");
    assert_eq!(std::fs::read_to_string(t.path().join("config/conf.d/site")).unwrap(), "host");
}
