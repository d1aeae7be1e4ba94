use super::*;

/// Runs `p` on (arch, nr) with a tiny interpreter of the instructions
/// the filter uses.
fn eval(p: &[Instruction], arch: u32, nr: u32) -> u32 {
    eval_args(p, arch, nr, [0; 6])
}

fn eval_args(p: &[Instruction], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let i = p[pc];
        match i.code as u32 {
            LD_W_ABS => {
                a = match i.k {
                    0 => nr,
                    4 => arch,
                    k => {
                        let arg = args[((k - 16) / 8) as usize];
                        if (k - 16) % 8 == 4 { (arg >> 32) as u32 } else { arg as u32 }
                    }
                }
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= i.k,
            JEQ_K => pc += if a == i.k { i.jt as usize } else { i.jf as usize },
            JGE_K => pc += if a >= i.k { i.jt as usize } else { i.jf as usize },
            JGT_K => pc += if a > i.k { i.jt as usize } else { i.jf as usize },
            RET_K => return i.k,
            other => panic!("unexpected instruction {other:#x}"),
        }
        pc += 1;
    }
}

#[test]
fn profiles_with_argument_conditions() {
    let x = AUDIT_ARCH_X86_64;
    let cmp = |index, op, value| ArgCmp { index, op, value, value_two: 0 };
    let deny = action("SCMP_ACT_ERRNO", Some(libc::EACCES as u32)).unwrap();
    let rules = vec![
        Rule { nr: nr("kill"), args: vec![cmp(1, ArgOp::Eq, 9)], action: deny },
        Rule { nr: nr("mkdir"), args: vec![], action: EPERM },
        Rule { nr: nr("write"), args: vec![cmp(2, ArgOp::Gt, 1 << 33)], action: deny },
        Rule { nr: nr("read"), args: vec![cmp(2, ArgOp::Lt, 10), cmp(0, ArgOp::Ne, 3)], action: deny },
        Rule {
            nr: nr("personality"),
            args: vec![ArgCmp { index: 0, op: ArgOp::MaskedEq, value: 0xff, value_two: 0x08 }],
            action: deny,
        },
    ];
    let p = profile_filter(&rules, SECCOMP_RET_ALLOW).unwrap();
    let run = |name: &str, args: [u64; 6]| eval_args(&p, x, nr(name), args);
    assert_eq!(run("kill", [1, 9, 0, 0, 0, 0]), deny);
    assert_eq!(run("kill", [1, 15, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(run("kill", [1, 9 | (1 << 32), 0, 0, 0, 0]), SECCOMP_RET_ALLOW, "64-bit comparison");
    assert_eq!(run("mkdir", [0; 6]), EPERM);
    assert_eq!(run("write", [1, 0, (1 << 33) + 1, 0, 0, 0]), deny);
    assert_eq!(run("write", [1, 0, 1 << 33, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(run("write", [1, 0, 1 << 34, 0, 0, 0]), deny, "high word decides");
    assert_eq!(run("read", [4, 0, 5, 0, 0, 0]), deny);
    assert_eq!(run("read", [3, 0, 5, 0, 0, 0]), SECCOMP_RET_ALLOW, "the second condition fails");
    assert_eq!(run("read", [4, 0, 10, 0, 0, 0]), SECCOMP_RET_ALLOW, "10 is not < 10");
    assert_eq!(run("read", [4, 0, 1 << 32, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(run("personality", [0x1208, 0, 0, 0, 0, 0]), deny);
    assert_eq!(run("personality", [0x1209, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(run("open", [0; 6]), SECCOMP_RET_ALLOW);
    let le =
        profile_filter(&[Rule { nr: nr("read"), args: vec![cmp(0, ArgOp::Le, 5)], action: deny }], SECCOMP_RET_ALLOW)
            .unwrap();
    assert_eq!(eval_args(&le, x, nr("read"), [5, 0, 0, 0, 0, 0]), deny);
    assert_eq!(eval_args(&le, x, nr("read"), [6, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    let ge =
        profile_filter(&[Rule { nr: nr("read"), args: vec![cmp(0, ArgOp::Ge, 5)], action: deny }], SECCOMP_RET_ALLOW)
            .unwrap();
    assert_eq!(eval_args(&ge, x, nr("read"), [5, 0, 0, 0, 0, 0]), deny);
    assert_eq!(eval_args(&ge, x, nr("read"), [4, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(eval_args(&p, 0x4000_0003, nr("read"), [0; 6]), SECCOMP_RET_KILL_PROCESS);
}

/// The kernel's own numbers, from its UAPI header (linux-libc-dev),
/// not from our table: a wrong entry there must fail these tests.
fn kernel_numbers() -> &'static std::collections::BTreeMap<String, u32> {
    static NUMBERS: std::sync::OnceLock<std::collections::BTreeMap<String, u32>> = std::sync::OnceLock::new();
    NUMBERS.get_or_init(|| {
        let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
        let text = std::fs::read_to_string(header)
            .unwrap_or_else(|e| panic!("{header}: {e} (scripts/install-deps.sh installs gcc, which brings it)"));
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (Some("#define"), Some(name), Some(n)) = (w.next(), w.next(), w.next()) else { return None };
                Some((name.strip_prefix("__NR_")?.to_string(), n.parse().ok()?))
            })
            .collect()
    })
}

fn nr(name: &str) -> u32 {
    *kernel_numbers().get(name).unwrap_or_else(|| panic!("{name} is not in the kernel's header"))
}

#[test]
fn our_table_is_the_kernels() {
    let kernel = kernel_numbers();
    assert!(kernel.len() >= 360, "{} calls read from the header", kernel.len());
    for (name, n) in SYSCALLS {
        assert_eq!(kernel.get(name), Some(&n), "{name}");
    }
    // Every call of the kernel's header up to our newest is in the table.
    let newest = SYSCALLS.iter().map(|(_, n)| *n).max().unwrap_or(0);
    for (name, n) in kernel.iter().filter(|(_, n)| **n <= newest) {
        assert_eq!(number(name), Some(*n), "{name} is missing from the table");
    }
}

const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

#[test]
fn the_default_filter() {
    let p = default_filter(&[]);
    assert!(p.len() < 300, "{} instructions", p.len());
    let x = AUDIT_ARCH_X86_64;
    for allowed in ["read", "write", "openat", "clone", "execve", "futex", "setuid", "capset", "prctl", "exit_group"] {
        assert_eq!(eval(&p, x, nr(allowed)), SECCOMP_RET_ALLOW, "{allowed}");
    }
    for denied in
        ["kexec_load", "init_module", "keyctl", "bpf", "ptrace", "mount", "unshare", "setns", "reboot", "swapon"]
    {
        assert_eq!(eval(&p, x, nr(denied)), EPERM, "{denied}");
    }
    assert_eq!(eval(&p, x, nr("clone3")), ENOSYS);
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert_eq!(eval(&p, x, nr(call)), EPERM, "{call}");
    }
    // fork and threads: clone without namespace flags.
    let fork = (libc::SIGCHLD | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    let thread = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD)
        as u64
        | (libc::CLONE_SYSVSEM | libc::CLONE_SETTLS | libc::CLONE_PARENT_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    for flags in [fork, thread, 0] {
        assert_eq!(eval_args(&p, x, nr("clone"), [flags, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW, "{flags:#x}");
    }
    for ns in [libc::CLONE_NEWUSER, libc::CLONE_NEWNET, libc::CLONE_NEWNS, libc::CLONE_NEWPID, libc::CLONE_NEWCGROUP] {
        let flags = ns as u64 | libc::SIGCHLD as u64;
        assert_eq!(eval_args(&p, x, nr("clone"), [flags, 0, 0, 0, 0, 0]), EPERM, "{flags:#x}");
    }
    let sock = |family: u64| eval_args(&p, x, nr("socket"), [family, 1, 0, 0, 0, 0]);
    assert_eq!(sock(libc::AF_VSOCK as u64), EPERM);
    assert_eq!(sock(libc::AF_INET as u64), SECCOMP_RET_ALLOW);
    assert_eq!(sock(libc::AF_UNIX as u64), SECCOMP_RET_ALLOW);
    let persona = |v: u64| eval_args(&p, x, nr("personality"), [v, 0, 0, 0, 0, 0]);
    for ok in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(persona(ok), SECCOMP_RET_ALLOW, "{ok:#x}");
    }
    // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE: weaker memory protections.
    assert_eq!(persona(0x0040_0000), EPERM);
    assert_eq!(persona(0x0004_0000), EPERM);
    for denied in ["pivot_root", "kexec_load", "userfaultfd", "pidfd_getfd", "chroot", "sethostname", "ustat"] {
        assert_eq!(eval(&p, x, nr(denied)), EPERM, "{denied}");
    }
    // The calls after the argument tests are still told apart.
    assert_eq!(eval(&p, x, nr("setns")), EPERM);
    assert_eq!(eval(&p, x, nr("read")), SECCOMP_RET_ALLOW);
    assert_eq!(eval(&p, x, 451), ENOSYS, "newer than the table");
    assert_eq!(eval(&p, x, 400), ENOSYS, "a gap in the table");
    assert_eq!(eval(&p, x, 334), SECCOMP_RET_ALLOW, "rseq, the last before the gap");
    assert_eq!(eval(&p, x, 424), SECCOMP_RET_ALLOW, "pidfd_send_signal, the first after it");
    assert_eq!(eval(&p, x, X32_SYSCALL_BIT | 1), ENOSYS, "x32");
    assert_eq!(eval(&p, 0x4000_0003, nr("read")), SECCOMP_RET_KILL_PROCESS, "i386");
}

#[test]
fn capabilities_lift_their_denials() {
    let p = default_filter(&["CAP_SYS_ADMIN".to_string(), "CAP_SYS_PTRACE".to_string()]);
    let x = AUDIT_ARCH_X86_64;
    assert_eq!(eval(&p, x, nr("mount")), SECCOMP_RET_ALLOW);
    let ns = (libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::SIGCHLD) as u64;
    assert_eq!(eval_args(&p, x, nr("clone"), [ns, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(eval(&p, x, nr("io_uring_setup")), EPERM, "never allowed");
    assert_eq!(eval(&p, x, nr("ptrace")), SECCOMP_RET_ALLOW);
    assert_eq!(eval(&p, x, nr("keyctl")), EPERM, "never allowed");
    assert_eq!(eval(&p, x, nr("kexec_load")), EPERM);
}
