//! x86-64: finding `syscall` instructions, functions and calls with
//! `iced-x86`, then resolving numbers with [`super::flow`].
//!
//! The executable segments are decoded linearly (compilers pad between
//! functions with decodable bytes); function starts come from
//! `.eh_frame_hdr`, the symbol tables, the entry point and every direct
//! call target. A call or jump to a PLT stub (`jmp *GOT(%rip)`) is a call
//! of the symbol in that GOT slot; an address taken with a RIP-relative
//! operand is an edge to the function holding it.

use std::collections::{HashMap, HashSet};

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpKind,
};

use super::flow;
use super::image::Image;
use super::summary::{ArgVal, CodeSummary, Func, ImportCall, Loc};

/// Where a call or jump goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Local(u32),
    Import(u32),
}

struct Code0<'a> {
    img: &'a Image<'a>,
    ins: Vec<Instruction>,
    /// Sorted function starts; function `i` covers `[starts[i], starts[i+1])`.
    starts: Vec<u64>,
}

impl Code0<'_> {
    fn func_of(&self, addr: u64) -> Option<u32> {
        let i = self.starts.partition_point(|&s| s <= addr);
        (i > 0 && self.img.is_code(addr)).then(|| (i - 1) as u32)
    }

    fn at(&self, addr: u64) -> Option<&Instruction> {
        let i = self.ins.binary_search_by_key(&addr, |x| x.ip()).ok()?;
        Some(&self.ins[i])
    }

    /// The target of a RIP-relative slot: its symbol, or the code it holds.
    fn slot_target(&self, slot: u64) -> Option<Target> {
        let s = self.img.slots.get(&slot)?;
        if let Some(i) = s.import {
            return Some(Target::Import(i));
        }
        s.local.and_then(|a| self.func_of(a)).map(Target::Local)
    }

    /// A PLT stub at `addr` (`endbr64`? then `jmp *slot(%rip)`): its slot.
    fn stub_slot(&self, addr: u64) -> Option<u64> {
        let mut x = self.at(addr)?;
        if x.mnemonic() == Mnemonic::Endbr64 {
            x = self.at(x.next_ip())?;
        }
        (x.code() == Code::Jmp_rm64 && x.is_ip_rel_memory_operand())
            .then(|| x.ip_rel_memory_address())
    }

    fn branch_target(&self, addr: u64) -> Option<Target> {
        if let Some(slot) = self.stub_slot(addr) {
            return self.slot_target(slot);
        }
        self.func_of(addr).map(Target::Local)
    }
}

/// What one instruction of a function does that the closure needs.
enum Event {
    Syscall,
    /// Direct or through a GOT slot; `tail`: a jump out of the function.
    Call {
        target: Target,
        tail: bool,
    },
    /// An address taken (or a slot read) without a call.
    Ref(Target),
    /// `int 0x80` or `sysenter`: the 32-bit ABI, numbers not in the table.
    Legacy,
}

/// Analyses the code of `img`.
pub(crate) fn analyse(img: &Image<'_>) -> CodeSummary {
    let mut ins = Vec::new();
    let mut ranges: Vec<_> = img.code.iter().collect();
    ranges.sort_by_key(|c| c.addr);
    let mut starts: Vec<u64> = img.starts.clone();
    for c in &ranges {
        starts.push(c.addr);
        ins.reserve(c.bytes.len() / 4);
        let mut d = Decoder::with_ip(64, c.bytes, c.addr, DecoderOptions::NONE);
        let mut x = Instruction::default();
        while d.can_decode() {
            d.decode_out(&mut x);
            if x.flow_control() == FlowControl::Call && x.op0_kind() == OpKind::NearBranch64 {
                starts.push(x.near_branch_target());
            }
            ins.push(x);
        }
    }
    starts.retain(|&a| img.is_code(a));
    starts.sort_unstable();
    starts.dedup();
    let code = Code0 { img, ins, starts };
    let nf = code.starts.len();

    // Instruction ranges of functions.
    let mut bounds = Vec::with_capacity(nf);
    for (i, &s) in code.starts.iter().enumerate() {
        let end = code.starts.get(i + 1).copied().unwrap_or(u64::MAX);
        let a = code.ins.partition_point(|x| x.ip() < s);
        let b = code.ins.partition_point(|x| x.ip() < end);
        bounds.push((a, b));
    }

    let mut funcs: Vec<Func> = vec![Func::default(); nf];
    let mut events: Vec<Vec<(usize, Event)>> = Vec::with_capacity(nf);
    for (f, &(a, b)) in bounds.iter().enumerate() {
        let (lo, hi) = (
            code.starts[f],
            code.starts.get(f + 1).copied().unwrap_or(u64::MAX),
        );
        let mut ev = Vec::new();
        for (i, x) in code.ins[a..b].iter().enumerate() {
            let i = a + i;
            match x.code() {
                Code::Syscall => {
                    ev.push((i, Event::Syscall));
                    continue;
                }
                Code::Int_imm8 if x.immediate8() == 0x80 => {
                    ev.push((i, Event::Legacy));
                    continue;
                }
                Code::Sysenter => {
                    ev.push((i, Event::Legacy));
                    continue;
                }
                _ => {}
            }
            let fc = x.flow_control();
            let direct = matches!(x.op0_kind(), OpKind::NearBranch64);
            match fc {
                FlowControl::Call
                | FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                    if direct =>
                {
                    let t = x.near_branch_target();
                    let tail = fc != FlowControl::Call;
                    if tail && (lo..hi).contains(&t) {
                        continue;
                    }
                    if let Some(target) = code.branch_target(t) {
                        ev.push((i, Event::Call { target, tail }));
                    }
                    continue;
                }
                _ => {}
            }
            if x.is_ip_rel_memory_operand() {
                let addr = x.ip_rel_memory_address();
                let target = code
                    .slot_target(addr)
                    .or_else(|| code.func_of(addr).map(Target::Local));
                if let Some(target) = target {
                    let e = match fc {
                        FlowControl::IndirectCall => Event::Call {
                            target,
                            tail: false,
                        },
                        FlowControl::IndirectBranch => Event::Call { target, tail: true },
                        _ => Event::Ref(target),
                    };
                    ev.push((i, e));
                }
            }
        }
        for (_, e) in &ev {
            match *e {
                Event::Call { target, .. } | Event::Ref(target) => match target {
                    Target::Local(g) => funcs[f].calls.push(g),
                    Target::Import(m) => funcs[f].imports.push(m),
                },
                _ => {}
            }
        }
        funcs[f].calls.sort_unstable();
        funcs[f].calls.dedup();
        funcs[f].imports.sort_unstable();
        funcs[f].imports.dedup();
        events.push(ev);
    }

    // Data flow where it can matter: functions with system call sites or
    // calls to imports first; then, as forwarding functions appear, their
    // callers.
    let mut factory = InstructionInfoFactory::new();
    let mut solved: Vec<Option<flow::FlowResult>> = (0..nf).map(|_| None).collect();
    let solve = |f: usize, factory: &mut InstructionInfoFactory, full: bool| {
        let (a, b) = bounds[f];
        let ev = &events[f];
        let want = |i: usize| -> Option<bool> {
            let j = ev.binary_search_by_key(&(a + i), |(k, _)| *k).ok()?;
            match ev[j].1 {
                Event::Syscall => Some(false),
                Event::Call { tail, .. } => Some(tail),
                _ => None,
            }
        };
        let mut r = if full {
            flow::solve(&code.ins[a..b], factory, &want)
        } else {
            flow::scan(&code.ins[a..b], factory, &want)
        };
        for (i, _) in &mut r.syscall_rax {
            *i += a;
        }
        for (i, _) in &mut r.call_args {
            *i += a;
        }
        r
    };
    for f in 0..nf {
        // Sites are solved over the whole function; calls to imports (in
        // case one forwards a number, as `syscall()` does) block by block.
        let sites = events[f].iter().any(|(_, e)| matches!(e, Event::Syscall));
        let imports = events[f].iter().any(|(_, e)| {
            matches!(
                e,
                Event::Call {
                    target: Target::Import(_),
                    ..
                }
            )
        });
        if sites || imports {
            solved[f] = Some(solve(f, &mut factory, sites));
        }
    }
    for f in 0..nf {
        for (i, e) in &events[f] {
            if matches!(e, Event::Legacy) {
                funcs[f].unresolved.push(code.ins[*i].ip());
            }
        }
        let Some(r) = &solved[f] else { continue };
        for (i, vals) in &r.syscall_rax {
            match vals {
                None => funcs[f].unresolved.push(code.ins[*i].ip()),
                Some(vs) => {
                    for v in vs {
                        match *v {
                            ArgVal::Const(n) => push_nr(&mut funcs[f], n, code.ins[*i].ip()),
                            ArgVal::Arg(l) => {
                                if !funcs[f].forwards.contains(&l) {
                                    funcs[f].forwards.push(l)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // Forwarders: resolve the number at every local call of a function
    // that forwards an argument as the number; a caller that passes its
    // own argument becomes a forwarder in turn (a worklist to the fixed
    // point).
    let mut callers: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
    for (f, ev) in events.iter().enumerate() {
        for (i, e) in ev {
            if let Event::Call {
                target: Target::Local(g),
                ..
            } = e
            {
                if *g as usize != f {
                    callers.entry(*g).or_default().push((f, *i));
                }
            }
        }
    }
    let mut done: HashSet<(usize, Loc)> = HashSet::new();
    let mut work: Vec<usize> = (0..nf).filter(|&g| !funcs[g].forwards.is_empty()).collect();
    while let Some(g) = work.pop() {
        let Some(sites) = callers.get(&(g as u32)) else {
            continue;
        };
        for &(f, i) in sites {
            if solved[f].is_none() {
                solved[f] = Some(solve(f, &mut factory, true));
            }
            let r = solved[f].as_ref().expect("solved above");
            let Ok(k) = r.call_args.binary_search_by_key(&i, |(j, _)| *j) else {
                continue;
            };
            let ip = code.ins[i].ip();
            for loc in funcs[g].forwards.clone() {
                if !done.insert((i, loc)) {
                    continue;
                }
                let vals: Vec<ArgVal> = r.call_args[k]
                    .1
                    .iter()
                    .filter(|(l, _)| *l == loc)
                    .map(|(_, v)| *v)
                    .collect();
                if vals.is_empty() {
                    funcs[f].unresolved.push(ip);
                }
                for v in vals {
                    match v {
                        ArgVal::Const(n) => push_nr(&mut funcs[f], n, ip),
                        ArgVal::Arg(l) => {
                            if !funcs[f].forwards.contains(&l) {
                                funcs[f].forwards.push(l);
                                work.push(f);
                            }
                        }
                    }
                }
            }
        }
    }

    let mut import_calls = Vec::new();
    for f in 0..nf {
        let Some(r) = &solved[f] else { continue };
        for (i, e) in &events[f] {
            if let Event::Call {
                target: Target::Import(m),
                ..
            } = e
            {
                if let Ok(k) = r.call_args.binary_search_by_key(i, |(j, _)| *j) {
                    import_calls.push(ImportCall {
                        func: f as u32,
                        import: *m,
                        site: code.ins[*i].ip(),
                        args: r.call_args[k].1.clone(),
                    });
                }
            }
        }
    }
    for f in &mut funcs {
        f.syscalls.sort_unstable();
        f.syscalls.dedup();
    }

    let exports: HashMap<String, u32> = img
        .exports
        .iter()
        .filter_map(|(name, &addr)| code.func_of(addr).map(|f| (name.clone(), f)))
        .collect();
    let mut roots: Vec<u32> = img
        .init_fini
        .iter()
        .chain(&img.data_code_refs)
        .filter_map(|&a| code.func_of(a))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    CodeSummary {
        funcs,
        exports,
        imports: img.imports.clone(),
        roots,
        import_calls,
        error: None,
    }
}

/// Records system call `n` made at `ip` (a number outside the table is
/// an unresolved site: it cannot be allowed by name).
fn push_nr(f: &mut Func, n: u64, ip: u64) {
    if n < super::table::MAX_NR as u64 {
        f.syscalls.push(n as u32);
    } else {
        f.unresolved.push(ip);
    }
}
