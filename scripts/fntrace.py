#!/usr/bin/env python3
"""Which functions of an executable a command tree enters, in first-entry order.

    fntrace.py [--append] ELF OUT -- CMD...

Runs CMD under ptrace, following every fork, clone and exec. Whenever a process execs ELF
(an executable with its symbol table, x86_64 Linux), an int3 replaces the first byte of
each of its functions; the first entry of a function in an address space traps, is noted
and the byte put back, so each function costs one trap per address space and the command
runs at nearly full speed. Writes the names of the functions entered to OUT, one a line,
in the order they were first entered (with --append: after the names already in OUT,
without repeating them). scripts/text-order uses it to lay out plinth's hot functions."""
import ctypes
import os
import re
import signal
import subprocess
import sys

PTRACE_TRACEME, PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS = 0, 7, 12, 13
PTRACE_SETOPTIONS = 0x4200
O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_TRACEEXEC, O_EXITKILL = 2, 4, 8, 16, 1 << 20
EVENT_EXEC = 4
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class Regs(ctypes.Structure):
    """struct user_regs_struct of x86_64."""
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs "
        "eflags rsp ss fs_base gs_base ds es fs gs").split()]


def ptrace(req, pid, addr=0, data=0):
    if libc.ptrace(req, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data)) == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req}, {pid}): {os.strerror(e)}")


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True,
                          text=True).stdout


def main():
    args = sys.argv[1:]
    append = args[:1] == ["--append"]
    args = args[1:] if append else args
    if len(args) < 4 or args[2] != "--":
        sys.exit(__doc__)
    elf, out_path, cmd = os.path.realpath(args[0]), args[1], args[3:]

    funcs = {}
    for line in readelf("-s", elf).splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] == "FUNC" and f[6] != "UND" and int(f[2], 0) > 0:
            funcs.setdefault(int(f[1], 16), f[7])
    if not funcs:
        sys.exit(f"fntrace: {elf} has no symbol table")
    if "DYN" in readelf("-h", elf).split("Type:")[1].split("\n")[0]:
        # Position-independent: addresses are relative to where it is loaded.
        pie = True
    else:
        pie = False
    (off, vaddr, size), = [tuple(int(x, 16) for x in m) for m in re.findall(
        r"LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+R E",
        readelf("-l", elf))]
    with open(elf, "rb") as fh:
        fh.seek(off)
        orig = fh.read(size)
    patched = bytearray(orig)
    for a in funcs:
        if vaddr <= a < vaddr + size:
            patched[a - vaddr] = 0xCC
    patched = bytes(patched)
    name = os.path.basename(elf)

    def text_base(pid):
        """The load bias of ELF's text in pid, or None when pid does not run ELF."""
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    f = line.split()
                    if len(f) >= 6 and "x" in f[1] and os.path.basename(f[5]) == name:
                        start, file_off = int(f[0].split("-")[0], 16), int(f[2], 16)
                        bias = start - file_off - (vaddr - off) if pie else 0
                        if start == (vaddr + bias) & ~0xfff:
                            return bias
        except OSError:
            pass
        return None

    def poke(pid, addr, data):
        fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
        try:
            os.pwrite(fd, data, addr)
        finally:
            os.close(fd)

    order = []
    if append and os.path.exists(out_path):
        with open(out_path) as fh:
            order = [line.strip() for line in fh if line.strip()]
    seen = set(order)
    bias = {}  # pid -> load bias of ELF in that process (inherited over fork)

    child = os.fork()
    if child == 0:
        ptrace(PTRACE_TRACEME, 0)
        os.kill(os.getpid(), signal.SIGSTOP)
        os.execvp(cmd[0], cmd)
    os.waitpid(child, 0)
    ptrace(PTRACE_SETOPTIONS, child, 0,
           O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC | O_EXITKILL)
    ptrace(PTRACE_CONT, child)
    live, code = {child}, 0
    while live:
        try:
            pid, status = os.waitpid(-1, WALL)
        except ChildProcessError:
            break
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            live.discard(pid)
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                code = code if code >= 0 else 128 - code
            continue
        live.add(pid)
        sig, event, deliver = os.WSTOPSIG(status), status >> 16, 0
        if sig == signal.SIGTRAP and event == EVENT_EXEC:
            b = text_base(pid)
            bias.pop(pid, None)
            if b is not None:
                bias[pid] = b
                poke(pid, vaddr + b, patched)
        elif sig == signal.SIGTRAP and event:
            pass  # fork, vfork, clone: the new task reports its own stop
        elif sig == signal.SIGTRAP:
            regs = Regs()
            ptrace(PTRACE_GETREGS, pid, 0, ctypes.addressof(regs))
            b = bias.get(pid)
            if b is None:
                # A task forked from a traced one: same address space layout.
                b = text_base(pid)
                if b is not None:
                    bias[pid] = b
            a = regs.rip - 1 - (b or 0)
            if b is not None and a in funcs:
                if funcs[a] not in seen:
                    seen.add(funcs[a])
                    order.append(funcs[a])
                poke(pid, a + b, orig[a - vaddr:a - vaddr + 1])
                regs.rip = a + b
                ptrace(PTRACE_SETREGS, pid, 0, ctypes.addressof(regs))
            else:
                deliver = sig
        elif sig != signal.SIGSTOP:
            deliver = sig
        try:
            ptrace(PTRACE_CONT, pid, 0, deliver)
        except OSError:
            live.discard(pid)
    with open(out_path, "w") as fh:
        fh.write("".join(n + "\n" for n in order))
    print(f"fntrace: {len(order)} functions in {out_path}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
