//! Device access on cgroup v2: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup, which
//! the kernel asks on every open or mknod of a device node. It says what
//! v1's `devices.allow`/`devices.deny` say: the rules are tried from the
//! last to the first, the first that matches decides, and anything no rule
//! matches is denied.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{CgroupError, DeviceRule};

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, dst, src, off, imm }
}

fn access_mask(access: &str) -> i32 {
    access.chars().fold(0, |m, c| {
        m | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The program for `rules`.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    // r1: the context (struct bpf_cgroup_dev_ctx {access_type, major, minor}).
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
        insn(ALU64_AND_K, 2, 0, 0, 0xffff), // r2: the device type
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16), // r3: the access asked for
        insn(LDX_MEM_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for rule in rules.iter().rev() {
        // Tests that jump past this rule when they fail, then the verdict.
        let mut tests: Vec<Vec<Insn>> = Vec::new();
        match rule.kind {
            'c' => tests.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR)]),
            'b' => tests.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)]),
            _ => {}
        }
        let mask = access_mask(&rule.access);
        if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Everything asked for must be in the rule: (asked & !mask) == 0.
            tests.push(vec![
                insn(ALU64_MOV_X, 1, 3, 0, 0),
                insn(ALU64_AND_K, 1, 0, 0, !mask & 7),
                insn(JMP_JNE_K, 1, 0, 0, 0),
            ]);
        }
        if let Some(major) = rule.major {
            tests.push(vec![insn(JMP_JNE_K, 4, 0, 0, major as i32)]);
        }
        if let Some(minor) = rule.minor {
            tests.push(vec![insn(JMP_JNE_K, 5, 0, 0, minor as i32)]);
        }
        let verdict = [insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)), insn(JMP_EXIT, 0, 0, 0, 0)];
        let mut block: Vec<Insn> = tests.into_iter().flatten().collect();
        let len = block.len() + verdict.len();
        // Each failed test skips the rest of the block.
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        let always = block.is_empty();
        block.extend(verdict);
        p.extend(block);
        if always {
            // This rule matches everything: what follows could never run,
            // and the verifier refuses unreachable instructions.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: u32, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: attr is a zeroed bpf_attr-sized buffer that lives for the call;
    // the kernel reads at most its size.
    let rc =
        unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr.as_mut_ptr(), attr.len() as libc::c_long) };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(rc) }
}

/// Loads the program for `rules` and attaches it to the cgroup `dir`,
/// replacing one attached before.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    const BPF_PROG_LOAD: u32 = 5;
    const BPF_PROG_ATTACH: u32 = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    let io = |op: &'static str| move |source| CgroupError::Io { op, path: dir.to_path_buf(), source };

    let mut code: Vec<u8> = Vec::new();
    for i in program(rules) {
        code.push(i.code);
        code.push((i.src << 4) | (i.dst & 0xf));
        code.extend_from_slice(&i.off.to_le_bytes());
        code.extend_from_slice(&i.imm.to_le_bytes());
    }
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&((code.len() / 8) as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let mut log = vec![0u8; 16 * 1024];
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    let prog = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let text = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
        let source =
            if text.is_empty() { e } else { std::io::Error::other(format!("{e}; the verifier said: {}", text.trim())) };
        CgroupError::Io { op: "load the device program for", path: dir.to_path_buf(), source }
    })?;
    // SAFETY: the kernel returned a new descriptor that we now own.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let cgroup = std::fs::File::open(dir).map_err(io("open"))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cgroup.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    // No flags: one program per cgroup, a new one replaces the old.
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(io("attach the device program to"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on a device access, with an interpreter of the
    /// instructions `program` emits.
    fn eval(p: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> i64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            match i.code {
                LDX_MEM_W => r[d] = i64::from(ctx[i.off as usize / 4]),
                ALU64_AND_K => r[d] &= i64::from(i.imm),
                ALU64_RSH_K => r[d] = ((r[d] as u64) >> i.imm) as i64,
                ALU64_MOV_X => r[d] = r[s],
                ALU64_MOV_K => r[d] = i64::from(i.imm),
                JMP_JNE_K => {
                    if r[d] != i64::from(i.imm) {
                        pc += i.off as usize;
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    fn rule(allow: bool, kind: char, major: Option<u64>, minor: Option<u64>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind, major, minor, access: access.into() }
    }

    #[test]
    fn rules_like_v1() {
        let rules = vec![
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"), // /dev/null
            rule(true, 'c', Some(136), None, "rw"),   // ptys, no mknod
            rule(true, 'b', Some(8), Some(0), "r"),   // a disk, read-only
            rule(false, 'c', Some(1), Some(3), "w"),  // then no writing to null
        ];
        let p = program(&rules);
        let (c, b) = (DEV_CHAR, DEV_BLOCK);
        assert_eq!(eval(&p, c, ACC_READ, 1, 3), 1);
        assert_eq!(eval(&p, c, ACC_WRITE, 1, 3), 0, "the last rule denies writes");
        assert_eq!(eval(&p, c, ACC_READ | ACC_WRITE, 136, 7), 1);
        assert_eq!(eval(&p, c, ACC_MKNOD, 136, 7), 0);
        assert_eq!(eval(&p, b, ACC_READ, 8, 0), 1);
        assert_eq!(eval(&p, b, ACC_WRITE, 8, 0), 0);
        assert_eq!(eval(&p, c, ACC_READ, 1, 5), 0, "/dev/zero is not allowed");
        assert_eq!(eval(&p, b, ACC_READ, 1, 3), 0, "a block device 1:3 is not /dev/null");
        assert_eq!(eval(&program(&[]), c, ACC_READ, 1, 3), 0, "no rule: denied");
        let all = program(&[rule(true, 'a', None, None, "rwm")]);
        assert_eq!(eval(&all, b, ACC_MKNOD, 8, 1), 1);
        assert_eq!(all.len(), 8, "nothing after a rule that always matches");
    }
}
