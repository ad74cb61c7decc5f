//! The system calls of one program: its own code, its interpreter, and
//! what it reaches in its libraries.
//!
//! The walk starts from every function of the file itself (what it runs
//! is its own business: callbacks, `main`, everything), every function of
//! the interpreter (it runs before and beside the program), and, in each
//! library, the init and fini functions and every function whose address
//! is stored in data (vtables, callbacks registered at startup: callable
//! through a pointer by code that the walk cannot follow). From there it
//! follows calls, jumps, taken addresses and imports; an import is bound
//! to the first object of the loader's scope that exports it.

use std::collections::HashMap;

use super::summary::{ArgVal, CodeSummary};
use super::SyscallSet;

/// One object of a program, in the loader's scope order.
pub(crate) struct Member<'a> {
    pub path: &'a str,
    pub code: &'a CodeSummary,
}

/// What a program can call.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgramCalls {
    pub set: SyscallSet,
    /// Sites whose number is unknown: (object path, address).
    pub unresolved: Vec<(String, u64)>,
    /// Objects whose code could not be analysed, with why.
    pub errors: Vec<(String, String)>,
}

/// Walks a program. `members[0]` is the file itself; `interp` is the
/// program interpreter (included whole); the rest are its libraries in
/// the loader's order.
pub(crate) fn program_calls(members: &[Member<'_>], interp: Option<usize>) -> ProgramCalls {
    let mut out = ProgramCalls::default();
    let mut seen: Vec<Vec<bool>> = members
        .iter()
        .map(|m| vec![false; m.code.funcs.len()])
        .collect();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let push = |seen: &mut Vec<Vec<bool>>, stack: &mut Vec<(usize, u32)>, o: usize, f: u32| {
        if let Some(s) = seen[o].get_mut(f as usize) {
            if !*s {
                *s = true;
                stack.push((o, f));
            }
        }
    };
    for (o, m) in members.iter().enumerate() {
        if let Some(e) = &m.code.error {
            out.errors.push((m.path.to_string(), e.clone()));
        }
        if o == 0 || Some(o) == interp {
            for f in 0..m.code.funcs.len() {
                push(&mut seen, &mut stack, o, f as u32);
            }
        } else {
            for &f in &m.code.roots {
                push(&mut seen, &mut stack, o, f);
            }
        }
    }
    let mut bound: HashMap<String, Option<(usize, u32)>> = HashMap::new();
    let bind = |bound: &mut HashMap<String, Option<(usize, u32)>>, name: &str| {
        if let Some(b) = bound.get(name) {
            return *b;
        }
        let found = members
            .iter()
            .enumerate()
            .find_map(|(o, m)| m.code.exports.get(name).map(|&f| (o, f)));
        bound.insert(name.to_string(), found);
        found
    };
    while let Some((o, f)) = stack.pop() {
        let code = members[o].code;
        let func = &code.funcs[f as usize];
        for &n in &func.syscalls {
            out.set.insert(n);
        }
        for &a in &func.unresolved {
            out.unresolved.push((members[o].path.to_string(), a));
        }
        for &g in &func.calls {
            push(&mut seen, &mut stack, o, g);
        }
        for &m in &func.imports {
            if let Some(name) = code.imports.get(m as usize) {
                if let Some((o2, g)) = bind(&mut bound, name) {
                    push(&mut seen, &mut stack, o2, g);
                }
            }
        }
    }
    // Calls of imported functions that make the system call their caller
    // names (`syscall(SYS_gettid)`).
    for (o, m) in members.iter().enumerate() {
        for call in &m.code.import_calls {
            if !seen[o][call.func as usize] {
                continue;
            }
            let Some(name) = m.code.imports.get(call.import as usize) else {
                continue;
            };
            let Some((o2, g)) = bind(&mut bound, name) else {
                continue;
            };
            for loc in &members[o2].code.funcs[g as usize].forwards {
                let mut any = false;
                for (l, v) in &call.args {
                    if l == loc {
                        if let ArgVal::Const(n) = v {
                            if *n < super::table::MAX_NR as u64 {
                                out.set.insert(*n as u32);
                                any = true;
                            }
                        }
                    }
                }
                if !any {
                    out.unresolved.push((m.path.to_string(), call.site));
                }
            }
        }
    }
    out.unresolved.sort();
    out.unresolved.dedup();
    out
}
