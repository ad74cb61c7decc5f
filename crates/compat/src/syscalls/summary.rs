//! The result of analysing one file's code, independent of the
//! architecture that produced it: functions with the system calls they
//! make themselves and the functions and imports they reach.

use std::collections::HashMap;

/// Where a function finds a value at entry: a register (its number in the
/// architecture's order, `rax` = 0 ... `r15` = 15 on x86-64) or the stack
/// (`Stack(8)` is the first word above the return address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Loc {
    Reg(u8),
    Stack(i32),
}

/// A value known at a call site or a `syscall` instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ArgVal {
    Const(u64),
    /// What the enclosing function received at this location.
    Arg(Loc),
}

/// One function (or the code between two known function starts).
#[derive(Clone, Debug, Default)]
pub(crate) struct Func {
    /// Numbers of the system calls its own `syscall` sites make, including
    /// those it makes through a forwarding function with a constant.
    pub syscalls: Vec<u32>,
    /// Functions of the same file it calls, jumps to, or takes the address of.
    pub calls: Vec<u32>,
    /// Imports it calls or takes the address of.
    pub imports: Vec<u32>,
    /// It makes a system call whose number it received here (`syscall()`).
    pub forwards: Vec<Loc>,
    /// Addresses of sites whose number could not be resolved.
    pub unresolved: Vec<u64>,
}

/// A call to an import with some arguments known, kept in case the
/// import turns out to forward one of them as a system call number.
#[derive(Clone, Debug)]
pub(crate) struct ImportCall {
    pub func: u32,
    pub import: u32,
    pub site: u64,
    pub args: Vec<(Loc, ArgVal)>,
}

/// Everything the program-level closure needs from one file.
#[derive(Clone, Debug, Default)]
pub(crate) struct CodeSummary {
    pub funcs: Vec<Func>,
    /// Exported function name → function.
    pub exports: HashMap<String, u32>,
    /// Undefined symbols, by import index.
    pub imports: Vec<String>,
    /// Functions reached without a named call: init and fini functions,
    /// and every function whose address is stored in data (callable
    /// through a pointer).
    pub roots: Vec<u32>,
    pub import_calls: Vec<ImportCall>,
    /// Why the code could not be analysed (the file's own calls are then
    /// unknown).
    pub error: Option<String>,
}
