//! The default seccomp filter, with the intent of Docker's default profile:
//! the system calls that would let a container reach the kernel or other
//! processes fail with EPERM (module loading, kexec, keyrings, bpf, ptrace
//! of others, mounts and namespaces, clocks, swap, reboot, io_uring, ...), unless the
//! container holds the capability that guards them, as Docker relaxes its
//! profile for `--cap-add`. Everything else the filter knows is allowed.
//!
//! `clone` is allowed without namespace flags only (fork and threads),
//! as in Docker's profile: with one it is `unshare` by another name.
//!
//! `clone3`, and any system call newer than this filter's table, fail with
//! ENOSYS rather than EPERM: glibc (2.34 and later) then falls back to
//! `clone`, instead of failing `pthread_create` outright.
//!
//! The filter is classic BPF written here, a few dozen instructions: an
//! architecture check, the ENOSYS ranges, one test per denied call.

mod syscalls_x86_64;

pub use syscalls_x86_64::SYSCALLS;

/// `struct sock_filter`.
pub type Instruction = libc::sock_filter;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// Denied system calls, and the capability that lifts the denial (`None`:
/// always denied).
const DENIED: &[(&str, Option<&str>)] = &[
    ("kexec_load", None),
    ("kexec_file_load", None),
    ("reboot", Some("CAP_SYS_BOOT")),
    ("init_module", Some("CAP_SYS_MODULE")),
    ("finit_module", Some("CAP_SYS_MODULE")),
    ("delete_module", Some("CAP_SYS_MODULE")),
    ("create_module", None),
    ("get_kernel_syms", None),
    ("query_module", None),
    ("nfsservctl", None),
    ("uselib", None),
    ("_sysctl", None),
    ("lookup_dcookie", Some("CAP_SYS_ADMIN")),
    ("keyctl", None),
    ("add_key", None),
    ("request_key", None),
    ("bpf", Some("CAP_BPF")),
    ("perf_event_open", Some("CAP_PERFMON")),
    ("userfaultfd", None),
    ("ptrace", Some("CAP_SYS_PTRACE")),
    ("process_vm_readv", Some("CAP_SYS_PTRACE")),
    ("process_vm_writev", Some("CAP_SYS_PTRACE")),
    ("kcmp", Some("CAP_SYS_PTRACE")),
    ("mount", Some("CAP_SYS_ADMIN")),
    ("umount2", Some("CAP_SYS_ADMIN")),
    ("pivot_root", None),
    ("unshare", Some("CAP_SYS_ADMIN")),
    ("setns", Some("CAP_SYS_ADMIN")),
    ("open_tree", Some("CAP_SYS_ADMIN")),
    ("move_mount", Some("CAP_SYS_ADMIN")),
    ("fsopen", Some("CAP_SYS_ADMIN")),
    ("fsconfig", Some("CAP_SYS_ADMIN")),
    ("fsmount", Some("CAP_SYS_ADMIN")),
    ("fspick", Some("CAP_SYS_ADMIN")),
    ("mount_setattr", Some("CAP_SYS_ADMIN")),
    ("quotactl", Some("CAP_SYS_ADMIN")),
    ("quotactl_fd", Some("CAP_SYS_ADMIN")),
    ("fanotify_init", Some("CAP_SYS_ADMIN")),
    ("name_to_handle_at", Some("CAP_SYS_ADMIN")),
    ("open_by_handle_at", Some("CAP_DAC_READ_SEARCH")),
    ("swapon", None),
    ("swapoff", None),
    ("acct", Some("CAP_SYS_PACCT")),
    ("settimeofday", Some("CAP_SYS_TIME")),
    ("clock_settime", Some("CAP_SYS_TIME")),
    ("adjtimex", Some("CAP_SYS_TIME")),
    ("clock_adjtime", Some("CAP_SYS_TIME")),
    ("syslog", Some("CAP_SYSLOG")),
    ("iopl", Some("CAP_SYS_RAWIO")),
    ("ioperm", Some("CAP_SYS_RAWIO")),
    ("vhangup", Some("CAP_SYS_TTY_CONFIG")),
    ("set_mempolicy", Some("CAP_SYS_NICE")),
    ("mbind", Some("CAP_SYS_NICE")),
    ("move_pages", None),
    ("migrate_pages", None),
    ("get_mempolicy", Some("CAP_SYS_NICE")),
    ("set_mempolicy_home_node", Some("CAP_SYS_NICE")),
    ("pidfd_getfd", Some("CAP_SYS_PTRACE")),
    ("process_madvise", Some("CAP_SYS_PTRACE")),
    ("chroot", Some("CAP_SYS_CHROOT")),
    ("sethostname", Some("CAP_SYS_ADMIN")),
    ("setdomainname", Some("CAP_SYS_ADMIN")),
    ("ustat", None),
    ("sysfs", None),
    // An attack surface of its own, and a way around the filter (its
    // operations are not system calls); Docker 25 and later refuse it too.
    ("io_uring_setup", None),
    ("io_uring_enter", None),
    ("io_uring_register", None),
];

/// The namespace flags of `clone(2)`'s first argument: NEWNS, NEWCGROUP,
/// NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (Docker's mask). CLONE_NEWTIME
/// has no bit of its own in `clone`'s flags (0x80 is part of the exit
/// signal there); only `clone3` and `unshare` take it, and both are refused.
const CLONE_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// The `personality(2)` values Docker's profile allows: PER_LINUX,
/// PER_LINUX32, UNAME26, both, and the query (0xffffffff).
const PERSONALITIES: &[u32] = &[0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// `AF_VSOCK`: a socket to the hypervisor, which Docker's profile refuses.
const AF_VSOCK: u32 = 40;

/// Calls that must fail with ENOSYS so that libc falls back.
const ENOSYS_CALLS: &[&str] = &["clone3"];

fn stmt(code: u32, k: u32) -> Instruction {
    Instruction { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code: code as u16, jt, jf, k }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE_K: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JGT_K: u32 = libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;

fn number(name: &str) -> Option<u32> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// The default filter for a container with the capabilities `caps` (names
/// like `CAP_SYS_ADMIN`).
pub fn default_filter(caps: &[String]) -> Vec<Instruction> {
    let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let max = SYSCALLS.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let mut p = vec![
        // seccomp_data.arch: anything but x86-64 is killed (no i386 or x32
        // entry points around the filter).
        stmt(LD_W_ABS, 4),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, SECCOMP_RET_KILL_PROCESS),
        // seccomp_data.nr
        stmt(LD_W_ABS, 0),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, enosys),
        jump(JGE_K, max + 1, 0, 1),
        stmt(RET_K, enosys),
    ];
    // Numbers below the highest known one that the table does not have.
    let known: std::collections::BTreeSet<u32> = SYSCALLS.iter().map(|(_, n)| *n).collect();
    let mut nr = 0;
    while nr <= max {
        if known.contains(&nr) {
            nr += 1;
            continue;
        }
        let start = nr;
        while nr <= max && !known.contains(&nr) {
            nr += 1;
        }
        // start <= x < nr: ENOSYS.
        p.push(jump(JGE_K, start, 0, 2));
        p.push(jump(JGE_K, nr, 1, 0));
        p.push(stmt(RET_K, enosys));
    }
    for name in ENOSYS_CALLS {
        if let Some(n) = number(name) {
            p.push(jump(JEQ_K, n, 0, 1));
            p.push(stmt(RET_K, enosys));
        }
    }
    // `clone` with a namespace flag is `unshare` by another name: refused
    // the same way, unless the container holds CAP_SYS_ADMIN.
    if let (Some(clone), false) = (number("clone"), caps.iter().any(|c| c == "CAP_SYS_ADMIN")) {
        p.extend(first_argument(
            clone,
            &[stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, CLONE_NAMESPACES), jump(JEQ_K, 0, 1, 0)],
            eperm,
        ));
    }
    if let Some(socket) = number("socket") {
        p.extend(first_argument(socket, &[jump(JEQ_K, AF_VSOCK, 0, 1)], eperm));
    }
    if let Some(personality) = number("personality") {
        let n = PERSONALITIES.len();
        // Each value that matches jumps over the rest and the EPERM.
        let tests: Vec<Instruction> =
            PERSONALITIES.iter().enumerate().map(|(i, v)| jump(JEQ_K, *v, (n - i) as u8, 0)).collect();
        p.extend(first_argument(personality, &tests, eperm));
    }
    for (name, cap) in DENIED {
        if cap.is_some_and(|c| caps.iter().any(|have| have == c)) {
            continue;
        }
        if let Some(n) = number(name) {
            p.push(jump(JEQ_K, n, 0, 1));
            p.push(stmt(RET_K, eperm));
        }
    }
    p.push(stmt(RET_K, SECCOMP_RET_ALLOW));
    p
}

/// A test of call `nr`'s first argument (its low word, which holds flags,
/// families and personalities alike): `tests` see the word in the
/// accumulator and either jump over the EPERM that follows them or fall
/// into it. The accumulator holds the call's number again afterwards.
fn first_argument(nr: u32, tests: &[Instruction], eperm: u32) -> Vec<Instruction> {
    let mut block = vec![jump(JEQ_K, nr, 0, tests.len() as u8 + 2), stmt(LD_W_ABS, 16)];
    block.extend_from_slice(tests);
    block.push(stmt(RET_K, eperm));
    block.push(stmt(LD_W_ABS, 0));
    block
}

/// What failed in building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("install the seccomp filter: {0}")]
    Install(#[source] std::io::Error),
    #[error("the seccomp action {0} is not supported")]
    Action(String),
    #[error("seccomp: argument index {0} (at most 5)")]
    ArgIndex(u8),
    #[error("seccomp: a rule is too long")]
    RuleTooLong,
    #[error("seccomp: the profile needs {0} instructions, more than the kernel's 4096")]
    TooLong(usize),
}

/// Installs `program` on the calling thread. Needs `no_new_privs` or
/// CAP_SYS_ADMIN.
pub fn install(program: &[Instruction]) -> Result<(), SeccompError> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut Instruction };
    // SAFETY: prog points to `len` valid instructions for the call's
    // duration; the kernel copies them.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) };
    if rc == 0 { Ok(()) } else { Err(SeccompError::Install(std::io::Error::last_os_error())) }
}

/// A comparison of one argument of a call, as OCI profiles write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & value) == value_two`.
    MaskedEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCmp {
    pub index: u8,
    pub op: ArgOp,
    pub value: u64,
    pub value_two: u64,
}

/// One rule of a profile: the call, its argument conditions (all must
/// hold), and the filter's return value (action and data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub nr: u32,
    pub args: Vec<ArgCmp>,
    pub action: u32,
}

/// The return values of the OCI actions (`SCMP_ACT_*`), with `errno` for
/// ERRNO and TRACE.
pub fn action(name: &str, errno: Option<u32>) -> Result<u32, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SECCOMP_RET_ALLOW,
        "SCMP_ACT_ERRNO" => SECCOMP_RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | (errno.unwrap_or(0) & 0xffff),
        other => return Err(SeccompError::Action(other.to_string())),
    })
}

/// Where a jump goes: a number of instructions ahead, the end of the
/// current argument condition, or past the current rule.
#[derive(Clone, Copy)]
enum To {
    Next,
    CondEnd,
    RuleEnd,
}

struct Jump {
    code: u32,
    k: u32,
    jt: To,
    jf: To,
}

enum Op {
    Plain(Instruction),
    Jump(Jump),
}

fn arg_word(index: u8, high: bool) -> u32 {
    // seccomp_data: nr (4), arch (4), instruction_pointer (8), args[6] (8 each).
    16 + 8 * u32::from(index) + if high { 4 } else { 0 }
}

/// The instructions of one condition; fall through when it holds.
fn condition(c: &ArgCmp) -> Vec<Op> {
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let ld = |high| Op::Plain(stmt(LD_W_ABS, arg_word(c.index, high)));
    let j = |code, k, jt, jf| Op::Jump(Jump { code, k, jt, jf });
    match c.op {
        ArgOp::Eq => {
            vec![ld(true), j(JEQ_K, hi, To::Next, To::RuleEnd), ld(false), j(JEQ_K, lo, To::Next, To::RuleEnd)]
        }
        ArgOp::Ne => {
            vec![ld(true), j(JEQ_K, hi, To::Next, To::CondEnd), ld(false), j(JEQ_K, lo, To::RuleEnd, To::Next)]
        }
        ArgOp::MaskedEq => {
            let (mhi, mlo) = ((c.value >> 32) as u32, c.value as u32);
            let (dhi, dlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
            let and = |k| Op::Plain(stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, k));
            vec![
                ld(true),
                and(mhi),
                j(JEQ_K, dhi, To::Next, To::RuleEnd),
                ld(false),
                and(mlo),
                j(JEQ_K, dlo, To::Next, To::RuleEnd),
            ]
        }
        // Unsigned 64-bit order: the high words decide unless equal.
        ArgOp::Gt | ArgOp::Ge => {
            let last = if c.op == ArgOp::Gt { JGT_K } else { JGE_K };
            vec![
                ld(true),
                j(JGT_K, hi, To::CondEnd, To::Next),
                j(JEQ_K, hi, To::Next, To::RuleEnd),
                ld(false),
                j(last, lo, To::Next, To::RuleEnd),
            ]
        }
        ArgOp::Lt | ArgOp::Le => {
            // a < v: not (a >= v); a <= v: not (a > v).
            let last = if c.op == ArgOp::Lt { JGE_K } else { JGT_K };
            vec![
                ld(true),
                j(JGT_K, hi, To::RuleEnd, To::Next),
                j(JEQ_K, hi, To::Next, To::CondEnd),
                ld(false),
                j(last, lo, To::RuleEnd, To::Next),
            ]
        }
    }
}

/// A filter from an OCI profile's rules, tried in order: the first rule
/// whose call and conditions match decides; otherwise `default`.
pub fn profile_filter(rules: &[Rule], default: u32) -> Result<Vec<Instruction>, SeccompError> {
    let mut p = vec![stmt(LD_W_ABS, 4), jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0), stmt(RET_K, SECCOMP_RET_KILL_PROCESS)];
    for rule in rules {
        // The rule's block: its call, its conditions, its verdict.
        let mut ops = vec![
            Op::Plain(stmt(LD_W_ABS, 0)),
            Op::Jump(Jump { code: JEQ_K, k: rule.nr, jt: To::Next, jf: To::RuleEnd }),
        ];
        let mut conds: Vec<(usize, usize)> = Vec::new();
        for c in &rule.args {
            if c.index > 5 {
                return Err(SeccompError::ArgIndex(c.index));
            }
            let start = ops.len();
            ops.extend(condition(c));
            conds.push((start, ops.len()));
        }
        ops.push(Op::Plain(stmt(RET_K, rule.action)));
        let end = ops.len();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Plain(ins) => p.push(*ins),
                Op::Jump(j) => {
                    let cond_end = conds.iter().find(|(s, e)| (*s..*e).contains(&i)).map_or(end, |(_, e)| *e);
                    let off = |to: To| -> Result<u8, SeccompError> {
                        let target = match to {
                            To::Next => i + 1,
                            To::CondEnd => cond_end,
                            To::RuleEnd => end,
                        };
                        u8::try_from(target - i - 1).map_err(|_| SeccompError::RuleTooLong)
                    };
                    p.push(jump(j.code, j.k, off(j.jt)?, off(j.jf)?));
                }
            }
        }
    }
    p.push(stmt(RET_K, default));
    if p.len() > 4096 {
        return Err(SeccompError::TooLong(p.len()));
    }
    Ok(p)
}

/// The number of a system call on this architecture.
pub fn syscall_number(name: &str) -> Option<u32> {
    number(name)
}

#[cfg(test)]
mod tests;
