//! The cgroup v2 device filter: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` compiled from a device rule list, and the
//! `bpf(2)` calls that load it and attach it to a cgroup directory.
//!
//! The encoder writes `struct bpf_insn` values itself (no libbpf). The
//! program reads `struct bpf_cgroup_dev_ctx { access_type, major, minor }`
//! (the device type in the low 16 bits of `access_type`, the access bits in
//! the high 16) and evaluates the rules of [`super::devices`] from the last
//! to the first, keeping in a register the access bits not decided yet: a
//! matching deny rule that names one of them returns 0 (deny); a matching
//! allow rule clears the bits it names and returns 1 (allow) once none are
//! left. Falling off the first rule returns 0. This is exactly "last match
//! wins, per access bit, default deny".
//!
//! Programs are attached with `BPF_F_ALLOW_MULTI`. To replace the filter on
//! `update`, the programs attached to the cgroup are listed with
//! `BPF_PROG_QUERY` first, the new one is attached, and only then are the
//! old ones detached: in between, both filters apply (the kernel requires
//! every program to allow), so the container never runs unfiltered.
//! Everything that needs `unsafe` in the cgroups module is in this file.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use super::devices::{Access, DeviceKind, DeviceRule};
use super::CgroupError;

// Opcode classes and fields, from include/uapi/linux/bpf_common.h and bpf.h.
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

// struct bpf_cgroup_dev_ctx and its constants.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const BPF_DEVCG_DEV_BLOCK: u32 = 1;
const BPF_DEVCG_DEV_CHAR: u32 = 2;

/// Registers used by the generated program.
const R0: u8 = 0;
const R1: u8 = 1; // ctx
const R2: u8 = 2; // device type
const R3: u8 = 3; // requested access bits
const R4: u8 = 4; // major
const R5: u8 = 5; // minor
const R6: u8 = 6; // access bits not decided yet
const R7: u8 = 7; // scratch

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4` as the C bit-field lays them out.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0x0f);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
    /// `dst = *(u32 *)(src + off)`
    const fn load_u32(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }
    /// `dst = src` (64-bit)
    const fn mov_reg(dst: u8, src: u8) -> Self {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }
    /// `dst = imm` (64-bit)
    const fn mov_imm(dst: u8, imm: i32) -> Self {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    /// `dst &= imm` (32-bit, zero-extends)
    const fn and32_imm(dst: u8, imm: i32) -> Self {
        Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm)
    }
    /// `dst >>= imm` (32-bit, zero-extends)
    const fn rsh32_imm(dst: u8, imm: i32) -> Self {
        Insn::new(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm)
    }
    /// `if dst != imm goto +off`. The registers compared hold zero-extended
    /// 32-bit values, so a 64-bit jump (eBPF since 3.18) is exact for
    /// `imm <= i32::MAX`; larger numbers need a 32-bit jump (Linux 5.1).
    const fn jne_u32(dst: u8, imm: u32, off: i16) -> Self {
        if imm <= i32::MAX as u32 {
            Insn::new(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm as i32)
        } else {
            Insn::new(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, off, imm as i32)
        }
    }
    /// `if dst == imm goto +off` (64-bit).
    const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Self {
        Insn::new(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, off, imm)
    }
    /// `return r0`
    const fn exit() -> Self {
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

/// Compiles a rule list into a device filter program.
pub(crate) fn device_filter(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        Insn::load_u32(R2, R1, CTX_ACCESS_TYPE),
        Insn::mov_reg(R3, R2),
        Insn::and32_imm(R2, 0xffff),
        Insn::rsh32_imm(R3, 16),
        Insn::load_u32(R4, R1, CTX_MAJOR),
        Insn::load_u32(R5, R1, CTX_MINOR),
        Insn::mov_reg(R6, R3),
    ];
    for rule in rules.iter().rev() {
        prog.extend(rule_block(rule));
    }
    prog.push(Insn::mov_imm(R0, 0));
    prog.push(Insn::exit());
    prog
}

/// The instructions of one rule. Every jump that skips the rule lands on
/// the first instruction after the block.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Jumps are first emitted with an offset of 0 and patched once the
    // block's length is known.
    let mut block: Vec<Insn> = Vec::new();
    let mut skips: Vec<usize> = Vec::new();
    match rule.kind {
        DeviceKind::All => {}
        DeviceKind::Char => {
            skips.push(block.len());
            block.push(Insn::jne_u32(R2, BPF_DEVCG_DEV_CHAR, 0));
        }
        DeviceKind::Block => {
            skips.push(block.len());
            block.push(Insn::jne_u32(R2, BPF_DEVCG_DEV_BLOCK, 0));
        }
    }
    if let Some(major) = rule.major {
        skips.push(block.len());
        block.push(Insn::jne_u32(R4, major, 0));
    }
    if let Some(minor) = rule.minor {
        skips.push(block.len());
        block.push(Insn::jne_u32(R5, minor, 0));
    }
    let access = i32::from(rule.access.0 & Access::ALL.0);
    block.push(Insn::mov_reg(R7, R6));
    block.push(Insn::and32_imm(R7, access));
    skips.push(block.len());
    block.push(Insn::jeq_imm(R7, 0, 0));
    if rule.allow {
        block.push(Insn::and32_imm(R6, !access));
        skips.push(block.len());
        block.push(Insn::jne_u32(R6, 0, 0));
        block.push(Insn::mov_imm(R0, 1));
        block.push(Insn::exit());
    } else {
        block.push(Insn::mov_imm(R0, 0));
        block.push(Insn::exit());
    }
    let end = block.len();
    for at in skips {
        block[at].off = (end - at - 1) as i16;
    }
    block
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` union member of
    // `union bpf_attr` for `cmd`, and the size passed is its exact size; the
    // kernel reads (and for queries writes) at most that many bytes, and any
    // pointers inside it point to buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to
/// `expected_attach_type`.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` member, up to `replace_bpf_fd`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` member, up to `prog_cnt`.
#[repr(C, align(8))]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The `BPF_PROG_GET_FD_BY_ID` member.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf_error(op: &'static str, path: &Path, source: Errno, verifier_log: String) -> CgroupError {
    CgroupError::Bpf {
        op,
        path: path.to_owned(),
        source,
        verifier_log,
    }
}

/// Loads a device filter; on failure, loads it again with the verifier log
/// on so that the error can say why. `path` is only for messages.
pub(crate) fn load(insns: &[Insn], path: &Path) -> Result<OwnedFd, CgroupError> {
    const LICENSE: &[u8] = b"Apache\0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"plinth_dev");
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            prog_name: name,
            ..ProgLoadAttr::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match attempt(None) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor
        // that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(errno) => {
            let mut buf = vec![0u8; 64 * 1024];
            let log = match attempt(Some(&mut buf)) {
                Ok(fd) => {
                    // SAFETY: as above; closed right away.
                    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
                    String::new()
                }
                Err(_) => {
                    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).trim().to_owned()
                }
            };
            Err(bpf_error("BPF_PROG_LOAD", path, errno, log))
        }
    }
}

/// The ids of the device programs attached directly to a cgroup.
fn query(cgroup: BorrowedFd<'_>, path: &Path) -> Result<Vec<u32>, CgroupError> {
    let mut ids: Vec<u32> = Vec::new();
    loop {
        let mut attr = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: if ids.is_empty() {
                0
            } else {
                ids.as_mut_ptr() as u64
            },
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) if ids.is_empty() && attr.prog_cnt > 0 => {
                ids = vec![0; attr.prog_cnt as usize];
            }
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // More programs appeared between the two calls.
            Err(Errno::ENOSPC) => ids = vec![0; attr.prog_cnt as usize + 4],
            Err(e) => return Err(bpf_error("BPF_PROG_QUERY", path, e, String::new())),
        }
    }
}

fn prog_fd_by_id(id: u32, path: &Path) -> Result<OwnedFd, CgroupError> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
        .map_err(|e| bpf_error("BPF_PROG_GET_FD_BY_ID", path, e, String::new()))?;
    // SAFETY: a successful BPF_PROG_GET_FD_BY_ID returns a new file
    // descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn attach_cmd(
    cmd: libc::c_int,
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        ..AttachAttr::default()
    };
    bpf(cmd, &mut attr).map(|_| ())
}

fn open_dir(dir: &Path) -> Result<File, CgroupError> {
    File::open(dir).map_err(|source| CgroupError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Makes `insns` the only device filter attached to the cgroup `dir`.
pub(crate) fn replace_filter(dir: &Path, insns: &[Insn]) -> Result<(), CgroupError> {
    let cgroup = open_dir(dir)?;
    let prog = load(insns, dir)?;
    let old = query(cgroup.as_fd(), dir)?;
    attach_cmd(
        BPF_PROG_ATTACH,
        cgroup.as_fd(),
        prog.as_fd(),
        BPF_F_ALLOW_MULTI,
    )
    .map_err(|e| bpf_error("BPF_PROG_ATTACH", dir, e, String::new()))?;
    for id in old {
        let fd = match prog_fd_by_id(id, dir) {
            Ok(fd) => fd,
            // Detached (and freed) by someone else meanwhile.
            Err(CgroupError::Bpf {
                source: Errno::ENOENT,
                ..
            }) => continue,
            Err(e) => return Err(e),
        };
        match attach_cmd(BPF_PROG_DETACH, cgroup.as_fd(), fd.as_fd(), 0) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(bpf_error("BPF_PROG_DETACH", dir, e, String::new())),
        }
    }
    Ok(())
}

/// The number of device programs attached directly to the cgroup `dir`.
#[cfg(test)]
pub(crate) fn attached_count(dir: &Path) -> Result<usize, CgroupError> {
    let cgroup = open_dir(dir)?;
    Ok(query(cgroup.as_fd(), dir)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::devices::default_rules;

    #[test]
    fn encoding_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 20);
        // r2 = *(u32 *)(r1 + 0): code 0x61, dst 2, src 1.
        let i = Insn::load_u32(R2, R1, 0);
        assert_eq!((i.code, i.regs, i.off, i.imm), (0x61, 0x12, 0, 0));
        assert_eq!(Insn::exit().code, 0x95);
        assert_eq!(Insn::mov_imm(R0, 1).code, 0xb7);
        assert_eq!(Insn::jne_u32(R4, 1, 3).code, 0x55);
        assert_eq!(Insn::jne_u32(R4, u32::MAX, 3).code, 0x56);
        assert_eq!(Insn::jne_u32(R4, u32::MAX, 3).imm, -1);
    }

    #[test]
    fn empty_list_denies() {
        let prog = device_filter(&[]);
        assert_eq!(prog.len(), 9);
        assert_eq!(prog[7], Insn::mov_imm(R0, 0));
        assert_eq!(prog[8], Insn::exit());
    }

    #[test]
    fn deny_rule_block() {
        let block = rule_block(&DeviceRule::char_dev(false, 1, Some(3)));
        assert_eq!(
            block,
            vec![
                Insn::jne_u32(R2, BPF_DEVCG_DEV_CHAR, 7),
                Insn::jne_u32(R4, 1, 6),
                Insn::jne_u32(R5, 3, 5),
                Insn::mov_reg(R7, R6),
                Insn::and32_imm(R7, 7),
                Insn::jeq_imm(R7, 0, 2),
                Insn::mov_imm(R0, 0),
                Insn::exit(),
            ]
        );
    }

    #[test]
    fn allow_rule_block_with_wildcards() {
        let block = rule_block(&DeviceRule::everything(true));
        assert_eq!(
            block,
            vec![
                Insn::mov_reg(R7, R6),
                Insn::and32_imm(R7, 7),
                Insn::jeq_imm(R7, 0, 4),
                Insn::and32_imm(R6, !7),
                Insn::jne_u32(R6, 0, 2),
                Insn::mov_imm(R0, 1),
                Insn::exit(),
            ]
        );
    }

    /// Runs a generated program on one request, following its jumps, to
    /// check the rule semantics without the kernel.
    fn run(prog: &[Insn], dev_type: u32, access: u32, major: u32, minor: u32) -> u64 {
        let mut r = [0u64; 11];
        let ctx = [dev_type | (access << 16), major, minor];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                0x61 => r[dst] = u64::from(ctx[i.off as usize / 4]),
                0xbf => r[dst] = r[src],
                0xb7 => r[dst] = i.imm as i64 as u64,
                0x54 => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                0x74 => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                0x55 if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                0x15 if r[dst] == i.imm as i64 as u64 => pc += i.off as usize,
                0x56 if r[dst] as u32 != i.imm as u32 => pc += i.off as usize,
                0x55 | 0x15 | 0x56 => {}
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;
    const R: u32 = 2;
    const W: u32 = 4;
    const M: u32 = 1;

    #[test]
    fn last_match_wins_per_access_bit() {
        let mut rules = vec![DeviceRule::everything(false)];
        rules.push(DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major: Some(10),
            minor: None,
            access: Access(R as u8 | W as u8),
        });
        rules.push(DeviceRule {
            allow: false,
            kind: DeviceKind::Char,
            major: Some(10),
            minor: Some(200),
            access: Access(W as u8),
        });
        rules.extend(default_rules());
        let prog = device_filter(&rules);
        // Defaults.
        assert_eq!(run(&prog, CHAR, R | W, 1, 3), 1);
        assert_eq!(run(&prog, CHAR, M, 136, 7), 1);
        assert_eq!(run(&prog, BLOCK, R, 1, 3), 0);
        assert_eq!(run(&prog, CHAR, R, 1, 4), 0);
        // c 10:* rw, but not m, and c 10:200 not w.
        assert_eq!(run(&prog, CHAR, R | W, 10, 1), 1);
        assert_eq!(run(&prog, CHAR, M, 10, 1), 0);
        assert_eq!(run(&prog, CHAR, R, 10, 200), 1);
        assert_eq!(run(&prog, CHAR, R | W, 10, 200), 0);
        // Allow everything, then deny one device.
        let prog = device_filter(&[
            DeviceRule::everything(true),
            DeviceRule::char_dev(false, 1, Some(3)),
        ]);
        assert_eq!(run(&prog, CHAR, R, 1, 3), 0);
        assert_eq!(run(&prog, CHAR, R, 1, 5), 1);
        assert_eq!(run(&prog, BLOCK, R | W | M, 8, 0), 1);
        // Numbers above i32::MAX use 32-bit jumps.
        let big = DeviceRule {
            major: Some(u32::MAX),
            ..DeviceRule::char_dev(true, 0, None)
        };
        let prog = device_filter(&[big]);
        assert_eq!(run(&prog, CHAR, R, u32::MAX, 9), 1);
        assert_eq!(run(&prog, CHAR, R, i32::MAX as u32, 9), 0);
    }
}
