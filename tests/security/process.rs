//! The container's processes against the operator and the host: exec and
//! the operator's terminal, the first process and our binary, mounts. See
//! docs/security.md.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::daemon::{Daemon, busybox};
use crate::common::text;

/// Tries every way a process can push input into a terminal it was given:
/// TIOCSTI on its stdio and on /dev/tty. Exits 3 when none worked.
const TIOCSTI: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
int push(int fd, const char *what) {
    const char *text = "echo INJECTED\n";
    int pushed = 0;
    for (const char *c = text; *c; c++)
        if (ioctl(fd, TIOCSTI, c) == 0) pushed++;
    fprintf(stderr, "%s: tty=%d pushed=%d\n", what, isatty(fd), pushed);
    return pushed > 0 || isatty(fd);
}
int main(void) {
    int reached = 0;
    reached |= push(0, "fd0");
    reached |= push(1, "fd1");
    reached |= push(2, "fd2");
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (tty >= 0) reached |= 1 | push(tty, "/dev/tty");
    else fprintf(stderr, "/dev/tty: %s\n", strerror(errno));
    printf("out-line\n");
    fflush(stdout);
    return reached ? 0 : 3;
}
"#;

/// A pseudo-terminal pair in raw mode (no echo, no line discipline): what
/// is queued on its input is what a shell on it would read next.
fn raw_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into integers we own.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: new descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios calls on a descriptor we own, with a struct we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    (master, slave)
}

/// Bytes waiting to be read on `fd` (FIONREAD).
fn queued(fd: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int we own.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) }, 0);
    n
}

/// Everything the master has to read once `child` is gone.
fn drain(master: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut p = libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one pollfd we own.
        if unsafe { libc::poll(&mut p, 1, 200) } <= 0 {
            break;
        }
        // SAFETY: read into a buffer we own.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    text(&out)
}

/// A unit that sleeps, with `dir` mounted at /t.
fn sleeper(image: &str, dir: &Path, extra: &str) -> String {
    format!(
        "[container]\nimage = \"{image}\"\ncommand = [\"sleep\", \"600\"]\nvolumes = [\"{}:/t\"]\n{extra}[stop]\ntimeout = \"1s\"\n",
        dir.display()
    )
}

#[test]
fn exec_from_a_terminal_cannot_push_keystrokes_into_it() {
    if !common::require_root("exec_from_a_terminal_cannot_push_keystrokes_into_it") {
        return;
    }
    let d = Daemon::start();
    let tools = tempfile::tempdir().unwrap();
    common::compile_static(tools.path(), "tiocsti", TIOCSTI);
    let name = common::unique_name("tty");
    d.write_unit(&name, &sleeper(&busybox(), tools.path(), ""));
    d.wait_state(&name, "running");
    for flags in [&[][..], &["-i"][..]] {
        let (master, slave) = raw_pty();
        let fd = slave.as_raw_fd();
        let mut command = Command::new(env!("CARGO_BIN_EXE_supervisorctl"));
        command.arg("--socket").arg(d.socket()).arg("exec").args(flags).args([&name, "--", "/t/bin/tiocsti"]);
        for stdio in 0..3 {
            // SAFETY: dup of a descriptor we own; the copy goes to the child.
            let copy = unsafe { OwnedFd::from_raw_fd(libc::dup(fd)) };
            match stdio {
                0 => command.stdin(copy),
                1 => command.stdout(copy),
                _ => command.stderr(copy),
            };
        }
        // The operator's shell: supervisorctl runs in a session whose
        // controlling terminal is the pty, as from an interactive shell.
        // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the slave.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        // Its output is a few lines: the pty's buffer holds it until read.
        let status = child.wait().unwrap();
        let output = drain(&master);
        assert_eq!(
            queued(&slave),
            0,
            "exec {flags:?}: the container pushed input into the operator's terminal; its output: {output}"
        );
        assert!(output.contains("out-line\n"), "exec {flags:?}: the command's stdout is relayed: {output:?}");
        assert!(output.contains("fd1: tty=0 pushed=0"), "exec {flags:?}: its stderr too: {output:?}");
        assert!(output.contains("/dev/tty: No such device"), "exec {flags:?}: no controlling terminal: {output:?}");
        assert_eq!(status.code(), Some(3), "exec {flags:?}: the command reached a terminal: {output}");
    }
    // -i still feeds our input, and the exit code is the command's.
    let mut cat = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["exec", "-i", &name, "--", "sh", "-c", "cat; echo err >&2; exit 9"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(cat.stdin.as_mut().unwrap(), b"typed\n").unwrap();
    drop(cat.stdin.take());
    let out = cat.wait_with_output().unwrap();
    assert_eq!((out.status.code(), text(&out.stdout), text(&out.stderr)), (Some(9), "typed\n".into(), "err\n".into()));
}

/// Stands in for the dynamic loader of a container's image: a program
/// whose interpreter it is runs it first, with `/proc/self/exe` already
/// naming the program (runc's CVE-2019-5736 used this way in). It reports
/// what that program is: its link, device and inode, and whether it opens
/// for writing. No libc: it must not need one from the image.
const LOADER: &str = r#"
#define SYS_write 1
#define SYS_open 2
#define SYS_stat 4
#define SYS_readlink 89
#define SYS_exit_group 231
static long sys(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static char out[512];
static int len;
static void put(const char *s) { while (*s && len < 500) out[len++] = *s++; }
static void num(long v) {
    char b[24]; int i = 0;
    if (v < 0) { put("-"); v = -v; }
    do { b[i++] = '0' + v % 10; v /= 10; } while (v);
    while (i) { char c[2] = { b[--i], 0 }; put(c); }
}
__attribute__((force_align_arg_pointer)) void _start(void) {
    unsigned long st[18];
    char link[256];
    long n = sys(SYS_readlink, (long)"/proc/self/exe", (long)link, 255);
    link[n > 0 ? n : 0] = 0;
    put("exe="); put(link);
    if (sys(SYS_stat, (long)"/proc/self/exe", (long)st, 0) == 0) {
        put(" dev="); num(st[0]); put(" ino="); num(st[1]);
    }
    put(" open-for-write="); num(sys(SYS_open, (long)"/proc/self/exe", 1 /* O_WRONLY */, 0));
    put("\n");
    sys(SYS_write, 1, (long)out, len);
    sys(SYS_exit_group, 0, 0, 0);
}
"#;

/// The interpreter a dynamically linked program names (PT_INTERP).
fn interpreter(program: &Path) -> String {
    let out = Command::new("readelf").arg("-l").arg(program).output().expect("readelf (binutils)");
    let text = text(&out.stdout);
    let at = text.find("interpreter: ").expect("our binary is dynamically linked") + "interpreter: ".len();
    text[at..].split(']').next().unwrap().to_string()
}

#[test]
fn the_first_process_finds_a_sealed_copy_not_the_host_binary() {
    if !common::require_root("the_first_process_finds_a_sealed_copy_not_the_host_binary") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let installed = Path::new(env!("CARGO_BIN_EXE_supervisord"));
    let dir = tempfile::tempdir().unwrap();
    // An image whose dynamic loader is ours: `/proc/self/exe` as the
    // entrypoint then runs whatever our binary is in the container.
    let rootfs = loader_rootfs(dir.path(), installed);
    let d = Daemon::start();
    let name = common::unique_name("exe");
    d.write_unit(
        &name,
        &format!(
            "[container]\nimage = \"dir:{}\"\nentrypoint = [\"/proc/self/exe\"]\n[restart]\npolicy = \"no\"\n",
            rootfs.display()
        ),
    );
    d.wait_for(&name, "exited", 30, |u| u.is_some_and(|u| u["state"] == "exited" || u["state"] == "failed"));
    let logs = d.wait_log(&name, None, "exe=");
    let line = logs.lines().find(|l| l.contains("exe=")).unwrap_or_else(|| panic!("no report: {logs}\n{}", d.log()));
    let field = |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k)).unwrap_or_default().to_string();
    let md = std::fs::metadata(installed).unwrap();
    assert!(
        (field("dev="), field("ino=")) != (md.dev().to_string(), md.ino().to_string()),
        "the container's first process ran the host's binary {}: {line}",
        installed.display()
    );
    assert!(field("exe=").starts_with("/memfd:supervisord"), "not a sealed copy: {line}");
    assert!(field("open-for-write=").starts_with('-'), "the copy opened for writing: {line}");
}

/// An image at `dir`/rootfs whose dynamic loader is [`LOADER`], so that
/// `/proc/self/exe` as the entrypoint reports what our binary is there.
fn loader_rootfs(dir: &Path, installed: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let loader = rootfs.join(interpreter(installed).trim_start_matches('/'));
    std::fs::create_dir_all(loader.parent().unwrap()).unwrap();
    let src = dir.join("loader.c");
    std::fs::write(&src, LOADER).unwrap();
    let cc = Command::new("cc")
        .args(["-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-O1", "-o"])
        .arg(&loader)
        .arg(&src)
        .status();
    assert!(cc.is_ok_and(|s| s.success()), "cc (gcc) is needed for this test");
    rootfs
}

#[test]
fn a_foreground_run_protects_our_binary_without_copying_it() {
    if !common::require_root("a_foreground_run_protects_our_binary_without_copying_it") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let installed = Path::new(env!("CARGO_BIN_EXE_supervisord"));
    let dir = tempfile::tempdir().unwrap();
    let rootfs = loader_rootfs(dir.path(), installed);
    let name = common::unique_name("fg");
    let file = dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!("[container]\nimage = \"dir:{}\"\nentrypoint = [\"/proc/self/exe\"]\n", rootfs.display()),
    )
    .unwrap();
    let out = Command::new(installed)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["runtime", "run-unit"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let line = stdout.lines().find(|l| l.contains("exe=")).unwrap_or_else(|| panic!("no report: {stdout}{stderr}"));
    let field = |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k)).unwrap_or_default().to_string();
    let md = std::fs::metadata(installed).unwrap();
    assert!(
        (field("dev="), field("ino=")) != (md.dev().to_string(), md.ino().to_string()),
        "the container's first process ran the host's binary {}: {line}",
        installed.display()
    );
    // -30 is EROFS: the read-only overlay view, not a copy in memory.
    assert_eq!(field("open-for-write="), "-30", "our binary opened for writing, or not the overlay view: {line}");
    assert!(!field("exe=").starts_with("/memfd:"), "a copy was made: {line}");
}

/// A root filesystem of busybox alone, as a `dir:` image.
fn busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for applet in ["sh", "cat", "touch", "echo", "sleep", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
}

/// Waits for `name` to end and for its log to hold `last` (what its
/// command prints last: the log is written by another task than the one
/// that sees the exit), and returns the log.
fn exited_log(d: &Daemon, name: &str, last: &str) -> String {
    d.wait_for(name, "exited", 30, |u| u.is_some_and(|u| u["state"] == "exited" || u["state"] == "failed"));
    d.wait_log(name, None, last)
}

#[test]
fn a_volume_under_an_absolute_symlink_lands_inside_the_container() {
    if !common::require_root("a_volume_under_an_absolute_symlink_lands_inside_the_container") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    // As in Debian's images: /var/run is a link to /run.
    std::fs::create_dir_all(rootfs.join("var")).unwrap();
    std::fs::create_dir_all(rootfs.join("run")).unwrap();
    std::os::unix::fs::symlink("/run", rootfs.join("var/run")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello"), "from-the-host\n").unwrap();
    let d = Daemon::start();
    let name = common::unique_name("vr");
    d.write_unit(
        &name,
        &format!(
            "[container]\nimage = \"dir:{}\"\ncommand = [\"sh\", \"-c\", \"cat /run/app/hello && cat /var/run/app/hello; echo done\"]\nvolumes = [\"{}:/var/run/app:ro\"]\n[restart]\npolicy = \"no\"\n",
            rootfs.display(),
            data.display()
        ),
    );
    let logs = exited_log(&d, &name, "done");
    let u = d.unit(&name).unwrap();
    assert_eq!(u["state"], "exited", "{u}\n{logs}\n{}", d.log());
    assert_eq!(logs.matches("from-the-host").count(), 2, "the volume is at /run/app: {logs}");
    assert!(!rootfs.join("run/app").exists(), "nothing was made in the image's directory");
}

/// A tmpfs mounted at `path` while it lives.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_volume_is_read_only_below_its_top_mount_too() {
    if !common::require_root("a_read_only_volume_is_read_only_below_its_top_mount_too") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    let sub = volume.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    assert!(
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&sub).status().unwrap().success()
    );
    let _mounted = Mounted(sub.clone());
    let d = Daemon::start();
    let name = common::unique_name("ro");
    let script = "touch /data/top && echo wrote-top; touch /data/sub/below && echo wrote-below; echo done";
    d.write_unit(
        &name,
        &format!(
            "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"{script}\"]\nvolumes = [\"{}:/data:ro\"]\n[restart]\npolicy = \"no\"\n",
            busybox(),
            volume.display()
        ),
    );
    let logs = exited_log(&d, &name, "done");
    assert!(!logs.contains("wrote-top") && !volume.join("top").exists(), "{logs}");
    assert!(
        !logs.contains("wrote-below") && !sub.join("below").exists(),
        "a container wrote below its read-only volume: {logs}"
    );
}

/// Sends one datagram (argv[2]) to the unix socket argv[1].
const NOTIFY: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (sendto(s, argv[2], strlen(argv[2]), 0, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("sendto");
        return 1;
    }
    return 0;
}
"#;

#[test]
fn only_its_container_reaches_a_units_notify_socket() {
    if !common::require_root("only_its_container_reaches_a_units_notify_socket") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = common::compile_static(tools.path(), "notify", NOTIFY);
    let d = Daemon::start();
    // The directories above the run directory as on a host (/run is 0755):
    // what keeps other users out must be ours.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = common::unique_name("nt");
    let script = "echo x > /run/notify/fill; while [ ! -e /t/go ]; do sleep 0.05; done; \
                  /t/bin/notify $NOTIFY_SOCKET READY=1 && exec sleep 600";
    d.write_unit(
        &name,
        &format!(
            "[container]\nimage = \"{}\"\nnotify = true\ncommand = [\"sh\", \"-c\", \"{script}\"]\nvolumes = [\"{}:/t\"]\n[stop]\ntimeout = \"1s\"\n",
            busybox(),
            tools.path().display()
        ),
    );
    let socket = d.dir.path().join("run/notify").join(&name).join("notify.sock");
    d.wait_for(&name, "started", 30, |u| u.is_some_and(|u| u["state"] == "starting" && !u["pid"].is_null()));
    assert!(socket.exists(), "{}", socket.display());
    let nobody = Command::new(bin.join("notify")).arg(&socket).arg("READY=1").uid(65534).gid(65534).output().unwrap();
    assert_eq!(nobody.status.code(), Some(1), "another user sent READY=1: {}", text(&nobody.stderr));
    assert!(text(&nobody.stderr).contains("Permission denied"), "{}", text(&nobody.stderr));
    assert_eq!(d.unit(&name).unwrap()["state"], "starting");
    // The container itself still can; and it wrote nothing in our run
    // directory.
    std::fs::write(tools.path().join("go"), "").unwrap();
    d.wait_state(&name, "running");
    assert!(!socket.with_file_name("fill").exists(), "the container wrote into the host's run directory");
}
