//! Test support for seccomp (compiled for tests only): a classic-BPF
//! interpreter that runs a compiled [`Filter`] on a syscall without the
//! kernel, and the harness for tests that load filters into the real
//! kernel in a re-executed copy of the test binary.
#![allow(unsafe_code)]

use std::process::Command;

use nix::errno::Errno;

use super::Filter;

/// Compiles a `linux.seccomp` JSON value that the test knows to be valid.
pub(crate) fn compile(json: serde_json::Value) -> Filter {
    Filter::compile(&serde_json::from_value(json).expect("a valid linux.seccomp"))
        .expect("the profile compiles")
}

/// `AUDIT_ARCH_X86_64`.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_AARCH64`.
pub(crate) const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

/// The `SECCOMP_RET_*` values the interpreter returns.
pub(crate) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(crate) const RET_TRACE: u32 = 0x7ff0_0000;
pub(crate) const RET_LOG: u32 = 0x7ffc_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;

/// The native audit architecture of the test machine.
pub(crate) fn native_audit_arch() -> u32 {
    if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else {
        unimplemented!("tests know the audit architecture of x86_64 and aarch64 only")
    }
}

/// The native number of `name`, as libseccomp knows it.
pub(crate) fn nr(name: &str) -> i32 {
    libseccomp::ScmpSyscall::from_name(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .as_raw_syscall()
}

/// What `filter` answers to syscall `name` on the native architecture.
pub(crate) fn answer_native(filter: &Filter, name: &str, args: [u64; 6]) -> u32 {
    eval(filter, native_audit_arch(), nr(name), args)
}

/// What `filter` answers to syscall `nr` with `args` on `arch`: runs its
/// BPF program on a `struct seccomp_data` as the kernel would.
pub(crate) fn eval(filter: &Filter, arch: u32, nr: i32, args: [u64; 6]) -> u32 {
    // struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0_u64.to_ne_bytes());
    for arg in args {
        data.extend_from_slice(&arg.to_ne_bytes());
    }
    let word = |k: u32| {
        let k = k as usize;
        u32::from_ne_bytes(data[k..k + 4].try_into().expect("4 bytes"))
    };

    let (mut a, mut x, mut mem) = (0_u32, 0_u32, [0_u32; 16]);
    let mut pc = 0_usize;
    loop {
        let insn = filter.program[pc];
        let k = insn.k;
        pc += 1;
        let jump = |cond: bool| if cond { insn.jt } else { insn.jf } as usize;
        let src = if insn.code & 0x08 != 0 { x } else { k };
        match insn.code {
            0x20 => a = word(k),         // ld [k]
            0x00 => a = k,               // ld #k
            0x01 => x = k,               // ldx #k
            0x60 => a = mem[k as usize], // ld M[k]
            0x61 => x = mem[k as usize], // ldx M[k]
            0x02 => mem[k as usize] = a, // st M[k]
            0x03 => mem[k as usize] = x, // stx M[k]
            0x07 => x = a,               // tax
            0x87 => a = x,               // txa
            0x05 => pc += k as usize,    // ja
            0x15 | 0x1d => pc += jump(a == src),
            0x25 | 0x2d => pc += jump(a > src),
            0x35 | 0x3d => pc += jump(a >= src),
            0x45 | 0x4d => pc += jump(a & src != 0),
            0x54 | 0x5c => a &= src,
            0x44 | 0x4c => a |= src,
            0x04 | 0x0c => a = a.wrapping_add(src),
            0x14 | 0x1c => a = a.wrapping_sub(src),
            0x64 | 0x6c => a <<= src,
            0x74 | 0x7c => a >>= src,
            0x06 => return k, // ret #k
            0x16 => return a, // ret a
            code => panic!("BPF opcode {code:#04x} at {} is not interpreted", pc - 1),
        }
    }
}

/// Runs a test that changes the state of its process (loads a seccomp
/// filter) in a fresh copy of the test binary, which runs only `test`
/// (its full path, `seccomp::tests::name`) and in which `body` runs.
///
/// Returns in the parent once the child passed; panics with its output if
/// it failed.
pub(crate) fn in_child(test: &str, body: impl FnOnce()) {
    const CHILD: &str = "PLINTH_SECCOMP_TEST_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(test) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("re-executing the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} failed in its child process ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

/// Whether the kernel can run seccomp filter tests. Outside CI a kernel
/// without seccomp skips the test with a message; under `CI=true` the test
/// must run, so this panics instead.
pub(crate) fn kernel_has_seccomp() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        return true;
    }
    let reason = "the kernel has no seccomp support (no Seccomp: line in /proc/self/status)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: this test must run, but {reason}");
    }
    eprintln!("skipped: {reason}");
    false
}

/// Sets `no_new_privs` on the calling thread, so that it may load a filter
/// without `CAP_SYS_ADMIN`.
pub(crate) fn set_no_new_privs() {
    nix::sys::prctl::set_no_new_privs().expect("prctl(PR_SET_NO_NEW_PRIVS)");
}

/// `syscall(nr, args...)` with integer arguments only.
///
/// Only for syscalls that, given these integers, touch no memory of this
/// process and create nothing (the filter under test refuses them, or they
/// only read ids and priorities).
pub(crate) fn raw_syscall(
    nr: libc::c_long,
    args: [libc::c_long; 3],
) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller passes integers only, for syscalls that read or
    // write no memory through them (see above); no pointer of this process
    // is handed to the kernel.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}
