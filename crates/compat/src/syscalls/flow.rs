//! Data flow inside one x86-64 function: the values registers and stack
//! slots can hold at each instruction, as small sets of constants, of the
//! function's own arguments, or of stack addresses.
//!
//! It answers two questions: which numbers `rax` can hold at a `syscall`
//! instruction, and which argument values a call passes (for functions
//! such as `syscall()` whose number is an argument). The basic blocks of
//! the function are solved to a fixed point; a block that only an indirect
//! jump reaches starts from "unknown", so every answer is either a set of
//! values that covers every path or "unknown".

use std::collections::VecDeque;

use iced_x86::{
    FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};

use super::summary::{ArgVal, Loc};

/// How many values a set holds before it becomes "unknown".
const WIDTH: usize = 3;
/// Visits of one block before its state is widened to "unknown".
const MAX_VISITS: u32 = 12;
/// Stack slots tracked per state.
const MAX_SLOTS: usize = 48;
/// Outgoing stack arguments recorded at a call: this many bytes above rsp.
const ARG_BYTES: i64 = 64;

const RAX: usize = 0;
const RSP: usize = 4;
const RBP: usize = 5;
/// Registers that pass arguments: the SysV ones (rdi, rsi, rdx, rcx, r8,
/// r9) and Go's (rax, rbx, rcx, rdi, rsi, r8 to r11).
const ARG_REGS: [usize; 10] = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11];
/// Registers a SysV call may change.
const CALL_CLOBBERS: [usize; 9] = [0, 1, 2, 6, 7, 8, 9, 10, 11];

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
enum Val {
    Const(u64),
    Arg(Loc),
    /// The address `entry rsp + offset`.
    Sp(i64),
}

/// A set of values; `n == TOP` is "unknown", `n == 0` "no value yet".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Vs {
    n: u8,
    v: [Val; WIDTH],
}

const TOP: u8 = u8::MAX;

impl Vs {
    const TOP: Vs = Vs {
        n: TOP,
        v: [Val::Const(0); WIDTH],
    };
    const BOTTOM: Vs = Vs {
        n: 0,
        v: [Val::Const(0); WIDTH],
    };

    fn one(v: Val) -> Vs {
        let mut s = Vs::BOTTOM;
        s.n = 1;
        s.v[0] = v;
        s
    }

    fn is_top(&self) -> bool {
        self.n == TOP
    }

    fn vals(&self) -> &[Val] {
        if self.is_top() {
            &[]
        } else {
            &self.v[..self.n as usize]
        }
    }

    fn single(&self) -> Option<Val> {
        (self.n == 1).then_some(self.v[0])
    }

    fn join(&self, other: &Vs) -> Vs {
        if self.is_top() || other.is_top() {
            return Vs::TOP;
        }
        let mut out = *self;
        for &v in other.vals() {
            if out.vals().contains(&v) {
                continue;
            }
            if out.n as usize == WIDTH {
                return Vs::TOP;
            }
            out.v[out.n as usize] = v;
            out.n += 1;
        }
        out
    }

    /// Applies `f` to every value; one `None` makes the set unknown.
    fn map(&self, f: impl Fn(Val) -> Option<Val>) -> Vs {
        if self.is_top() {
            return Vs::TOP;
        }
        let mut out = Vs::BOTTOM;
        for &v in self.vals() {
            match f(v) {
                Some(r) => out = out.join(&Vs::one(r)),
                None => return Vs::TOP,
            }
        }
        out
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Slot {
    off: i64,
    size: u8,
    val: Vs,
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct State {
    regs: [Vs; 16],
    /// Sorted by offset, non-overlapping.
    stack: Vec<Slot>,
}

impl State {
    fn entry() -> State {
        let mut regs = [Vs::TOP; 16];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = Vs::one(Val::Arg(Loc::Reg(i as u8)));
        }
        regs[RSP] = Vs::one(Val::Sp(0));
        State {
            regs,
            stack: Vec::new(),
        }
    }

    fn top() -> State {
        State {
            regs: [Vs::TOP; 16],
            stack: Vec::new(),
        }
    }

    /// What an untouched slot holds: the caller's arguments above the
    /// return address, nothing known below.
    fn default_slot(off: i64) -> Vs {
        if off >= 8 && off % 8 == 0 && off <= i32::MAX as i64 {
            Vs::one(Val::Arg(Loc::Stack(off as i32)))
        } else {
            Vs::TOP
        }
    }

    fn load(&self, off: i64, size: u8) -> Vs {
        match self.stack.binary_search_by_key(&off, |s| s.off) {
            Ok(i) => {
                let s = &self.stack[i];
                if size <= s.size {
                    let mask = mask_of(size);
                    s.val.map(|v| match v {
                        Val::Const(c) => Some(Val::Const(c & mask)),
                        other if size == s.size => Some(other),
                        other if size >= 4 => Some(other),
                        _ => None,
                    })
                } else {
                    Vs::TOP
                }
            }
            Err(_) => {
                let end = off + size as i64;
                if self
                    .stack
                    .iter()
                    .any(|s| s.off < end && off < s.off + s.size as i64)
                {
                    Vs::TOP
                } else if size == 8 || size == 4 {
                    State::default_slot(off)
                } else {
                    Vs::TOP
                }
            }
        }
    }

    fn store(&mut self, off: i64, size: u8, val: Vs) {
        let end = off + size as i64;
        self.stack
            .retain(|s| !(s.off < end && off < s.off + s.size as i64));
        let i = self.stack.partition_point(|s| s.off < off);
        self.stack.insert(i, Slot { off, size, val });
        if self.stack.len() > MAX_SLOTS {
            // Forget the deepest slots; later loads of them are unknown.
            self.stack.remove(0);
        }
    }

    fn forget(&mut self, off: i64, size: u64) {
        let end = off.saturating_add(size as i64);
        // Forgotten slots read as unknown, not as their default.
        self.store(off, size.min(255) as u8, Vs::TOP);
        if size > 255 {
            self.stack
                .retain(|s| !(s.off < end && off < s.off + s.size as i64));
        }
    }

    fn join(&self, other: &State) -> State {
        let mut regs = [Vs::TOP; 16];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = self.regs[i].join(&other.regs[i]);
        }
        let mut stack = Vec::new();
        let find = |st: &State, s: &Slot| -> Vs {
            match st.stack.iter().find(|o| o.off == s.off) {
                Some(o) if o.size == s.size => o.val,
                Some(_) => Vs::TOP,
                None => st.load(s.off, s.size),
            }
        };
        for s in &self.stack {
            let v = s.val.join(&find(other, s));
            stack.push(Slot {
                off: s.off,
                size: s.size,
                val: v,
            });
        }
        for s in &other.stack {
            if stack.iter().any(|o| o.off == s.off) {
                continue;
            }
            let v = s.val.join(&find(self, s));
            stack.push(Slot {
                off: s.off,
                size: s.size,
                val: v,
            });
        }
        stack.sort_by_key(|s| s.off);
        // Overlapping slots of different sizes: keep none of them.
        let mut clean: Vec<Slot> = Vec::with_capacity(stack.len());
        for s in stack {
            if let Some(last) = clean.last_mut() {
                if s.off < last.off + last.size as i64 {
                    last.val = Vs::TOP;
                    continue;
                }
            }
            clean.push(s);
        }
        State { regs, stack: clean }
    }

    fn rsp(&self) -> Option<i64> {
        match self.regs[RSP].single() {
            Some(Val::Sp(k)) => Some(k),
            _ => None,
        }
    }
}

fn mask_of(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The index (0..16) of a general purpose register, and its width in bytes.
fn gpr(reg: Register) -> Option<(usize, u8)> {
    let full = reg.full_register();
    let base = Register::RAX as u32;
    let idx = (full as u32).checked_sub(base)?;
    (idx < 16).then(|| (idx as usize, reg.size() as u8))
}

/// The value and outgoing arguments seen at the instructions asked for.
pub(super) struct FlowResult {
    /// `rax` at each asked-for `syscall` (instruction index, values;
    /// `None`: unknown).
    pub syscall_rax: Vec<(usize, Option<Vec<ArgVal>>)>,
    /// At each asked-for call or tail jump: the known argument values, in
    /// the callee's view.
    pub call_args: Vec<(usize, Vec<(Loc, ArgVal)>)>,
}

struct Machine<'a> {
    info: &'a mut InstructionInfoFactory,
}

impl Machine<'_> {
    fn read(&self, st: &State, ins: &Instruction, op: u32) -> Vs {
        match ins.op_kind(op) {
            OpKind::Register => {
                let Some((i, size)) = gpr(ins.op_register(op)) else {
                    return Vs::TOP;
                };
                let v = st.regs[i];
                if size == 8 {
                    v
                } else {
                    let mask = mask_of(size);
                    v.map(|x| match x {
                        Val::Const(c) => Some(Val::Const(c & mask)),
                        Val::Arg(l) if size == 4 => Some(Val::Arg(l)),
                        _ => None,
                    })
                }
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Vs::one(Val::Const(ins.immediate(op))),
            OpKind::Memory => match mem_slot(st, ins) {
                Some(off) => st.load(off, ins.memory_size().size() as u8),
                None => Vs::TOP,
            },
            _ => Vs::TOP,
        }
    }

    fn write_reg(&self, st: &mut State, reg: Register, v: Vs) {
        let Some((i, size)) = gpr(reg) else { return };
        st.regs[i] = match size {
            8 => v,
            4 => v.map(|x| match x {
                Val::Const(c) => Some(Val::Const(c & 0xffff_ffff)),
                Val::Arg(l) => Some(Val::Arg(l)),
                Val::Sp(_) => None,
            }),
            _ => Vs::TOP,
        };
    }

    fn write(&self, st: &mut State, ins: &Instruction, op: u32, v: Vs) {
        match ins.op_kind(op) {
            OpKind::Register => self.write_reg(st, ins.op_register(op), v),
            OpKind::Memory => {
                if let Some(off) = mem_slot(st, ins) {
                    st.store(off, ins.memory_size().size() as u8, v);
                }
            }
            _ => {}
        }
    }

    fn push(&self, st: &mut State, v: Vs) {
        match st.rsp() {
            Some(k) => {
                st.regs[RSP] = Vs::one(Val::Sp(k - 8));
                st.store(k - 8, 8, v);
            }
            None => st.regs[RSP] = Vs::TOP,
        }
    }

    fn pop(&self, st: &mut State) -> Vs {
        match st.rsp() {
            Some(k) => {
                st.regs[RSP] = Vs::one(Val::Sp(k + 8));
                st.load(k, 8)
            }
            None => Vs::TOP,
        }
    }

    /// Executes one instruction on `st`.
    fn step(&mut self, st: &mut State, ins: &Instruction) {
        use Mnemonic as M;
        match ins.mnemonic() {
            M::Mov => {
                let v = self.read(st, ins, 1);
                self.write(st, ins, 0, v);
            }
            M::Movzx | M::Movsx | M::Movsxd => {
                let src_size = match ins.op_kind(1) {
                    OpKind::Register => ins.op_register(1).size() as u8,
                    _ => ins.memory_size().size() as u8,
                };
                let signed = ins.mnemonic() != M::Movzx;
                let v = self.read(st, ins, 1).map(|x| match x {
                    Val::Const(c) if signed => {
                        let shift = 64 - 8 * src_size as u32;
                        Some(Val::Const((((c << shift) as i64) >> shift) as u64))
                    }
                    Val::Const(c) => Some(Val::Const(c)),
                    Val::Arg(l) if src_size >= 4 => Some(Val::Arg(l)),
                    _ => None,
                });
                self.write(st, ins, 0, v);
            }
            M::Xor | M::Sub
                if ins.op_kind(0) == OpKind::Register
                    && ins.op_kind(1) == OpKind::Register
                    && ins.op_register(0) == ins.op_register(1) =>
            {
                self.write_reg(st, ins.op_register(0), Vs::one(Val::Const(0)));
            }
            M::Add | M::Sub | M::And | M::Or | M::Xor => {
                let a = self.read(st, ins, 0);
                let b = self.read(st, ins, 1);
                let m = ins.mnemonic();
                let v = match (a.single(), b.single()) {
                    (Some(Val::Const(x)), Some(Val::Const(y))) => Vs::one(Val::Const(match m {
                        M::Add => x.wrapping_add(y),
                        M::Sub => x.wrapping_sub(y),
                        M::And => x & y,
                        M::Or => x | y,
                        _ => x ^ y,
                    })),
                    (Some(Val::Sp(k)), Some(Val::Const(y))) if m == M::Add => {
                        Vs::one(Val::Sp(k.wrapping_add(y as i64)))
                    }
                    (Some(Val::Sp(k)), Some(Val::Const(y))) if m == M::Sub => {
                        Vs::one(Val::Sp(k.wrapping_sub(y as i64)))
                    }
                    (Some(Val::Sp(k)), Some(Val::Const(y))) if m == M::And => {
                        // Stack realignment: the offset is no longer known.
                        let _ = (k, y);
                        Vs::TOP
                    }
                    _ => Vs::TOP,
                };
                self.write(st, ins, 0, v);
            }
            M::Lea => {
                let v = if ins.memory_index() != Register::None || ins.is_ip_rel_memory_operand() {
                    Vs::TOP
                } else {
                    let disp = ins.memory_displacement64() as i64;
                    match gpr(ins.memory_base()) {
                        Some((b, 8)) => st.regs[b].map(|x| match x {
                            Val::Sp(k) => Some(Val::Sp(k.wrapping_add(disp))),
                            Val::Const(c) => Some(Val::Const(c.wrapping_add(disp as u64))),
                            _ => None,
                        }),
                        _ => Vs::TOP,
                    }
                };
                self.write_reg(st, ins.op_register(0), v);
            }
            M::Push => {
                let v = self.read(st, ins, 0);
                self.push(st, v);
            }
            M::Pop => {
                let v = self.pop(st);
                self.write(st, ins, 0, v);
            }
            M::Leave => {
                st.regs[RSP] = st.regs[RBP].map(|x| match x {
                    Val::Sp(k) => Some(Val::Sp(k)),
                    _ => None,
                });
                let v = self.pop(st);
                st.regs[RBP] = v;
            }
            M::Xchg => {
                let a = self.read(st, ins, 0);
                let b = self.read(st, ins, 1);
                self.write(st, ins, 0, b);
                self.write(st, ins, 1, a);
            }
            M::Cmovo
            | M::Cmovno
            | M::Cmovb
            | M::Cmovae
            | M::Cmove
            | M::Cmovne
            | M::Cmovbe
            | M::Cmova
            | M::Cmovs
            | M::Cmovns
            | M::Cmovp
            | M::Cmovnp
            | M::Cmovl
            | M::Cmovge
            | M::Cmovle
            | M::Cmovg => {
                let v = self.read(st, ins, 0).join(&self.read(st, ins, 1));
                self.write(st, ins, 0, v);
            }
            M::Call => {
                for r in CALL_CLOBBERS {
                    st.regs[r] = Vs::TOP;
                }
                if let Some(k) = st.rsp() {
                    // The callee may write below the caller's rsp.
                    st.stack.retain(|s| s.off >= k);
                }
            }
            M::Syscall => {
                for r in [RAX, 1, 11] {
                    st.regs[r] = Vs::TOP;
                }
            }
            M::Cmp
            | M::Test
            | M::Nop
            | M::Endbr64
            | M::Ret
            | M::Jmp
            | M::Ud2
            | M::Int3
            | M::Hlt
            | M::Pause
            | M::Lfence
            | M::Mfence
            | M::Sfence
            | M::Bt
            | M::Ucomisd
            | M::Ucomiss
            | M::Comisd
            | M::Comiss
            | M::Prefetcht0
            | M::Prefetcht1
            | M::Prefetcht2
            | M::Prefetchnta
            | M::Prefetchw => {}
            _ if ins.flow_control() == FlowControl::ConditionalBranch => {}
            _ => {
                let info = self.info.info(ins);
                for u in info.used_registers() {
                    if matches!(
                        u.access(),
                        OpAccess::Write
                            | OpAccess::CondWrite
                            | OpAccess::ReadWrite
                            | OpAccess::ReadCondWrite
                    ) {
                        if let Some((i, _)) = gpr(u.register()) {
                            st.regs[i] = Vs::TOP;
                        }
                    }
                }
                for m in info.used_memory() {
                    if matches!(
                        m.access(),
                        OpAccess::Write
                            | OpAccess::CondWrite
                            | OpAccess::ReadWrite
                            | OpAccess::ReadCondWrite
                    ) && m.index() == Register::None
                    {
                        if let Some((b, 8)) = gpr(m.base()) {
                            if let Some(Val::Sp(k)) = st.regs[b].single() {
                                let size = m.memory_size().size().max(1) as u64;
                                st.forget(k.wrapping_add(m.displacement() as i64), size);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Instructions compilers and assemblers pad with: `nop` in its forms,
/// `int3`, and `xchg ax, ax` or `mov edi, edi` style no-ops.
fn is_padding(x: &Instruction) -> bool {
    match x.mnemonic() {
        Mnemonic::Nop | Mnemonic::Int3 => true,
        Mnemonic::Xchg | Mnemonic::Mov => {
            x.op_count() == 2
                && x.op0_kind() == OpKind::Register
                && x.op1_kind() == OpKind::Register
                && x.op0_register() == x.op1_register()
                && x.op0_register().size() != 4
        }
        Mnemonic::Lea => {
            x.memory_index() == Register::None
                && x.memory_displacement64() == 0
                && x.memory_base() == x.op0_register()
        }
        _ => false,
    }
}

/// The stack offset (from the entry rsp) a memory operand addresses.
fn mem_slot(st: &State, ins: &Instruction) -> Option<i64> {
    if ins.memory_index() != Register::None || ins.is_ip_rel_memory_operand() {
        return None;
    }
    let (b, size) = gpr(ins.memory_base())?;
    if size != 8 {
        return None;
    }
    match st.regs[b].single()? {
        Val::Sp(k) => Some(k.wrapping_add(ins.memory_displacement64() as i64)),
        _ => None,
    }
}

fn arg_vals(v: &Vs) -> Option<Vec<ArgVal>> {
    if v.is_top() || v.n == 0 {
        return None;
    }
    v.vals()
        .iter()
        .map(|x| match *x {
            Val::Const(c) => Some(ArgVal::Const(c)),
            Val::Arg(l) => Some(ArgVal::Arg(l)),
            Val::Sp(_) => None,
        })
        .collect()
}

/// The known arguments at a call (`tail`: a jump, no return address).
fn snapshot(st: &State, tail: bool) -> Vec<(Loc, ArgVal)> {
    let mut out = Vec::new();
    for (r, v) in st.regs.iter().enumerate() {
        if !ARG_REGS.contains(&r) {
            continue;
        }
        for x in arg_vals(v).into_iter().flatten() {
            out.push((Loc::Reg(r as u8), x));
        }
    }
    if let Some(k) = st.rsp() {
        let shift = if tail { 0 } else { 8 };
        for off in (0..ARG_BYTES).step_by(8) {
            let callee = off + shift;
            if callee < 8 {
                continue;
            }
            for x in arg_vals(&st.load(k + off, 8)).into_iter().flatten() {
                out.push((Loc::Stack(callee as i32), x));
            }
        }
    }
    out
}

/// Solves the function made of `ins` (sorted, contiguous) and reports the
/// state at the instructions for which `want` says `Some(tail)` (calls and
/// jumps: the arguments; `syscall`: rax).
pub(super) fn solve(
    ins: &[Instruction],
    info: &mut InstructionInfoFactory,
    want: &dyn Fn(usize) -> Option<bool>,
) -> FlowResult {
    let n = ins.len();
    let mut result = FlowResult {
        syscall_rax: Vec::new(),
        call_args: Vec::new(),
    };
    if n == 0 {
        return result;
    }
    let (lo, hi) = (ins[0].ip(), ins[n - 1].next_ip());
    let index_of = |ip: u64| ins.binary_search_by_key(&ip, |i| i.ip()).ok();
    // A call followed by padding does not return (`__libc_fatal`, `abort`):
    // compilers pad only where nothing falls through.
    let no_return = |i: usize| {
        matches!(
            ins[i].flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        ) && ins.get(i + 1).is_some_and(|x| {
            x.mnemonic() != Mnemonic::Syscall && (is_padding(x) || x.mnemonic() == Mnemonic::Ud2)
        })
    };
    // Leaders.
    let mut leader = vec![false; n];
    leader[0] = true;
    for (i, x) in ins.iter().enumerate() {
        let fc = x.flow_control();
        if matches!(
            fc,
            FlowControl::ConditionalBranch
                | FlowControl::UnconditionalBranch
                | FlowControl::XbeginXabortXend
        ) {
            let t = x.near_branch_target();
            if (lo..hi).contains(&t) {
                if let Some(j) = index_of(t) {
                    leader[j] = true;
                }
            }
        }
        if (!matches!(
            fc,
            FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall
        ) || no_return(i))
            && i + 1 < n
        {
            leader[i + 1] = true;
        }
    }
    let starts: Vec<usize> = (0..n).filter(|&i| leader[i]).collect();
    let block_of = |i: usize| starts.partition_point(|&s| s <= i) - 1;
    let nb = starts.len();
    let end_of = |b: usize| if b + 1 < nb { starts[b + 1] } else { n };
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); nb];
    let mut has_pred = vec![false; nb];
    for b in 0..nb {
        let last = &ins[end_of(b) - 1];
        let fall = (end_of(b) < n).then(|| b + 1);
        let target = || {
            let t = last.near_branch_target();
            if (lo..hi).contains(&t) {
                index_of(t).map(block_of)
            } else {
                None
            }
        };
        let s = &mut succs[b];
        match last.flow_control() {
            FlowControl::Call | FlowControl::IndirectCall if no_return(end_of(b) - 1) => {}
            FlowControl::Next
            | FlowControl::Call
            | FlowControl::IndirectCall
            | FlowControl::Interrupt => s.extend(fall),
            FlowControl::ConditionalBranch | FlowControl::XbeginXabortXend => {
                s.extend(target());
                s.extend(fall);
            }
            FlowControl::UnconditionalBranch => s.extend(target()),
            _ => {}
        }
        for &t in s.iter() {
            has_pred[t] = true;
        }
    }
    let mut input: Vec<Option<State>> = vec![None; nb];
    input[0] = Some(State::entry());
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut queued = vec![false; nb];
    queue.push_back(0);
    queued[0] = true;
    for b in 1..nb {
        // Padding between code that jumps over it is never run; any other
        // block nothing branches to is reached some way the data flow
        // cannot see (a jump table), with nothing known.
        let padding = ins[starts[b]..end_of(b)].iter().all(is_padding);
        if !has_pred[b] && !padding {
            input[b] = Some(State::top());
            queue.push_back(b);
            queued[b] = true;
        }
    }
    let mut visits = vec![0u32; nb];
    let mut m = Machine { info };
    while let Some(b) = queue.pop_front() {
        queued[b] = false;
        visits[b] += 1;
        let Some(mut st) = input[b].clone() else {
            continue;
        };
        if visits[b] > MAX_VISITS {
            st = State::top();
            input[b] = Some(st.clone());
        }
        for x in &ins[starts[b]..end_of(b)] {
            m.step(&mut st, x);
        }
        for &t in &succs[b] {
            let joined = match &input[t] {
                None => st.clone(),
                Some(old) => old.join(&st),
            };
            if input[t].as_ref() != Some(&joined) {
                input[t] = Some(joined);
                if !queued[t] {
                    queued[t] = true;
                    queue.push_back(t);
                }
            }
        }
    }
    // Read the answers off the solved states.
    for b in 0..nb {
        let Some(mut st) = input[b].clone() else {
            continue;
        };
        for (i, x) in ins.iter().enumerate().take(end_of(b)).skip(starts[b]) {
            if let Some(tail) = want(i) {
                if x.mnemonic() == Mnemonic::Syscall {
                    result.syscall_rax.push((i, arg_vals(&st.regs[RAX])));
                } else {
                    result.call_args.push((i, snapshot(&st, tail)));
                }
            }
            m.step(&mut st, x);
        }
    }
    result
}

/// The cheap form of [`solve`]: one pass in address order, forgetting
/// everything at each branch target (so only what a basic block sets
/// itself is known). For call arguments where a miss costs nothing unless
/// the callee turns out to forward a number.
pub(super) fn scan(
    ins: &[Instruction],
    info: &mut InstructionInfoFactory,
    want: &dyn Fn(usize) -> Option<bool>,
) -> FlowResult {
    let mut result = FlowResult {
        syscall_rax: Vec::new(),
        call_args: Vec::new(),
    };
    let Some(first) = ins.first() else {
        return result;
    };
    let (lo, hi) = (first.ip(), ins[ins.len() - 1].next_ip());
    let mut targets: Vec<u64> = ins
        .iter()
        .filter(|x| {
            matches!(
                x.flow_control(),
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
            )
        })
        .map(|x| x.near_branch_target())
        .filter(|t| (lo..hi).contains(t))
        .collect();
    targets.sort_unstable();
    let mut m = Machine { info };
    let mut st = State::entry();
    for (i, x) in ins.iter().enumerate() {
        if i > 0 && targets.binary_search(&x.ip()).is_ok() {
            st = State::top();
        }
        if let Some(tail) = want(i) {
            if x.mnemonic() == Mnemonic::Syscall {
                result.syscall_rax.push((i, arg_vals(&st.regs[RAX])));
            } else {
                result.call_args.push((i, snapshot(&st, tail)));
            }
        }
        m.step(&mut st, x);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn decode(code: &[u8]) -> Vec<Instruction> {
        let mut d = Decoder::with_ip(64, code, 0x1000, DecoderOptions::NONE);
        let mut out = Vec::new();
        while d.can_decode() {
            out.push(d.decode());
        }
        out
    }

    fn rax_at_syscalls(code: &[u8]) -> Vec<Option<Vec<ArgVal>>> {
        let ins = decode(code);
        let mut f = InstructionInfoFactory::new();
        let want = |i: usize| (ins[i].mnemonic() == Mnemonic::Syscall).then_some(false);
        let mut r = solve(&ins, &mut f, &want).syscall_rax;
        r.sort_by_key(|(i, _)| *i);
        r.into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn constants_reach_the_site() {
        // mov eax, 0xe7; syscall
        assert_eq!(
            rax_at_syscalls(&[0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05]),
            [Some(vec![ArgVal::Const(231)])]
        );
        // xor eax, eax; syscall
        assert_eq!(
            rax_at_syscalls(&[0x31, 0xc0, 0x0f, 0x05]),
            [Some(vec![ArgVal::Const(0)])]
        );
        // mov edx, 1; mov eax, edx; syscall
        assert_eq!(
            rax_at_syscalls(&[0xba, 1, 0, 0, 0, 0x89, 0xd0, 0x0f, 0x05]),
            [Some(vec![ArgVal::Const(1)])]
        );
    }

    #[test]
    fn branches_join_and_arguments_forward() {
        // test edi, edi; mov eax, 1; je +5; mov eax, 2; syscall
        let code = [
            0x85, 0xff, 0xb8, 1, 0, 0, 0, 0x74, 0x05, 0xb8, 2, 0, 0, 0, 0x0f, 0x05,
        ];
        let got = rax_at_syscalls(&code);
        let mut vals = got[0].clone().unwrap();
        vals.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(vals, [ArgVal::Const(1), ArgVal::Const(2)]);
        // mov rax, rdi; syscall: the number is the first argument.
        assert_eq!(
            rax_at_syscalls(&[0x48, 0x89, 0xf8, 0x0f, 0x05]),
            [Some(vec![ArgVal::Arg(Loc::Reg(7))])]
        );
        // mov rax, [rsp+8]; syscall: the first stack argument (Go ABI0).
        assert_eq!(
            rax_at_syscalls(&[0x48, 0x8b, 0x44, 0x24, 0x08, 0x0f, 0x05]),
            [Some(vec![ArgVal::Arg(Loc::Stack(8))])]
        );
        // push 0x27; pop rax; syscall
        assert_eq!(
            rax_at_syscalls(&[0x6a, 0x27, 0x58, 0x0f, 0x05]),
            [Some(vec![ArgVal::Const(39)])]
        );
        // mov eax, [rbx]; syscall: unknown.
        assert_eq!(rax_at_syscalls(&[0x8b, 0x03, 0x0f, 0x05]), [None]);
    }

    #[test]
    fn glibc_exit() {
        // glibc 2.36 _exit: exit_group, then exit, in a loop.
        let code = hex("4c8b05f9e90f00bee7000000ba3c000000eb120f1f44000089d00f05483d00f0ffff771cf489f00f05483d00f0ffff76e7f7d864418900ebdf0f1f8000000000f7d864418900ebdc");
        assert_eq!(
            rax_at_syscalls(&code),
            [
                Some(vec![ArgVal::Const(60)]),
                Some(vec![ArgVal::Const(231)])
            ]
        );
    }

    fn hex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn glibc_241_futex_wait_passes_the_number_on_the_stack() {
        // glibc 2.41: `push $0xca; call __syscall_cancel` (the number is
        // the seventh argument).
        let ins = decode(&hex("89f04885c90f85a500000083fa017770c1e2084883ec0889d681f6000100004080ce894431c64584c9753589c241b9ffffffff4531c04989cab8ca0000000f0585c07f5683f8ea7c478d5016b901084400480fa3d17343f7d84883c408c366904883ec0889c24863f641b9ffffffff68ca0000004531c0e894f9ffff5a59ebc0"));
        let mut f = InstructionInfoFactory::new();
        let want = |i: usize| (ins[i].mnemonic() == Mnemonic::Call).then_some(false);
        let r = solve(&ins, &mut f, &want);
        assert_eq!(r.call_args.len(), 1);
        assert!(
            r.call_args[0]
                .1
                .contains(&(Loc::Stack(8), ArgVal::Const(0xca))),
            "{:?}",
            r.call_args
        );
    }

    #[test]
    fn a_loop_terminates_and_a_call_clobbers() {
        // L: mov eax, 0; syscall; cmp rax, -4; je L
        let code = [
            0xb8, 0, 0, 0, 0, 0x0f, 0x05, 0x48, 0x83, 0xf8, 0xfc, 0x74, 0xf3,
        ];
        assert_eq!(rax_at_syscalls(&code), [Some(vec![ArgVal::Const(0)])]);
        // mov eax, 1; call +0; syscall: rax is the callee's result.
        let code = [0xb8, 1, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0x0f, 0x05];
        assert_eq!(rax_at_syscalls(&code), [None]);
    }
}
