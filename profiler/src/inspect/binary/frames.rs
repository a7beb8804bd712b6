//! Code addresses of a watched executable, named and sized while gprof watches it: the
//! function, source line and frame size at a pc, from `.gopclntab` read through the open
//! executable (a few positioned reads per new pc, then cached), so that nothing of the binary
//! stays in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::os::unix::fs::FileExt;

use super::pclntab::{FLAG_TOPFRAME, FileTable, InlinedCall, Pclntab, TreeAt};
use super::{Arch, SourceLine};
use crate::inspect::disasm;
use crate::inspect::goruntime;

/// Code of a `go` statement's wrapper read at most (a wrapper is a few instructions).
const MAX_WRAPPER: u64 = 4096;

/// Entries cached per table before the cache is emptied (a bound on memory whatever the
/// program does).
const MAX_CACHED: usize = 1 << 16;

/// The function around a pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    pub name: Arc<str>,
    /// `abi.FuncID` (per release: see `goruntime::traceback`).
    pub func_id: u8,
    /// Entry address (file address).
    pub entry: u64,
    pub end: u64,
}

/// A function's frame at a pc, for unwinding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes the stack pointer is below its value at the function's entry.
    pub sp_delta: i32,
    /// The function starts a stack (`goexit`, `mstart`...): unwinding stops.
    pub top: bool,
}

/// One function in progress at a pc: the function that holds the code or one inlined
/// into it, as a traceback prints each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalFrame {
    pub function: Arc<str>,
    pub func_id: u8,
    pub file: Arc<str>,
    pub line: u32,
    /// Inlined into the frame's function (printed without arguments or offset).
    pub inlined: bool,
}

#[derive(Debug, Default)]
struct Cache {
    /// pc -> (function index, frame).
    frames: HashMap<u64, Option<(usize, Frame)>>,
    funcs: HashMap<usize, FuncInfo>,
    calls: HashMap<u64, Option<Arc<[SourceLine]>>>,
    logical: HashMap<u64, Option<Arc<[LogicalFrame]>>>,
    /// pc -> function index (a lookup is a binary search of reads from the file).
    func_at: HashMap<u64, Option<usize>>,
}

/// Where the file holds a range of virtual addresses: (address, length in the file, offset).
pub type FileRange = (u64, u64, u64);

/// The function table of one executable, read on demand.
#[derive(Debug)]
pub struct FrameTable {
    table: Pclntab<FileTable>,
    /// The text base that `.gopclntab` offsets are relative to (file address).
    text: u64,
    pub arch: Arch,
    /// `moduledata.gofunc`: the base of the function data (inlining trees).
    gofunc: Option<u64>,
    /// The loadable segments, to read function data from the file.
    segments: Vec<FileRange>,
    cache: Mutex<Cache>,
}

impl FrameTable {
    pub fn new(
        table: Pclntab<FileTable>,
        text: u64,
        arch: Arch,
        gofunc: Option<u64>,
        segments: Vec<FileRange>,
    ) -> Self {
        Self {
            table,
            text,
            arch,
            gofunc,
            segments,
            cache: Mutex::default(),
        }
    }

    /// `len` bytes at the file address `vaddr`, read from the file.
    fn read(&self, vaddr: u64, len: usize) -> Option<Vec<u8>> {
        let end = vaddr.checked_add(len as u64)?;
        let &(start, _, offset) = self
            .segments
            .iter()
            .find(|&&(s, size, _)| vaddr >= s && end <= s + size)?;
        let mut buf = vec![0u8; len];
        self.table
            .file()
            .read_exact_at(&mut buf, offset + (vaddr - start))
            .ok()?;
        Some(buf)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.frames.len() + c.calls.len() + c.funcs.len() + c.logical.len() + c.func_at.len()
            > MAX_CACHED
        {
            *c = Cache::default();
        }
        c
    }

    fn offset(&self, pc: u64) -> Option<u32> {
        u32::try_from(pc.checked_sub(self.text)?).ok()
    }

    /// The function containing `pc` (a file address) and its frame there.
    pub fn frame(&self, pc: u64) -> Option<(FuncInfo, Frame)> {
        let mut cache = self.cache();
        let found = match cache.frames.get(&pc) {
            Some(f) => *f,
            None => {
                let f = self.offset(pc).and_then(|off| {
                    let i = self.table.func_index(off).ok()??;
                    let frame = Frame {
                        sp_delta: self.table.sp_delta(i, off).ok()?,
                        top: self.table.func_record(i).ok()?.flag & FLAG_TOPFRAME != 0,
                    };
                    Some((i, frame))
                });
                cache.frames.insert(pc, f);
                f
            }
        };
        let (i, frame) = found?;
        Some((self.func_info(&mut cache, i)?, frame))
    }

    /// The function containing `pc` (a file address).
    pub fn function(&self, pc: u64) -> Option<FuncInfo> {
        let mut cache = self.cache();
        let i = match cache.func_at.get(&pc) {
            Some(i) => *i,
            None => {
                let i = self
                    .offset(pc)
                    .and_then(|off| self.table.func_index(off).ok().flatten());
                cache.func_at.insert(pc, i);
                i
            }
        };
        self.func_info(&mut cache, i?)
    }

    /// Function `i`, from the cache or the table.
    fn func_info(&self, cache: &mut Cache, i: usize) -> Option<FuncInfo> {
        if let Some(info) = cache.funcs.get(&i) {
            return Some(info.clone());
        }
        let f = self.table.func(i).ok()?;
        let info = FuncInfo {
            name: f.name.into(),
            func_id: self.table.func_record(i).ok()?.func_id,
            entry: self.text + f.entry_off as u64,
            end: self.text + f.end_off as u64,
        };
        cache.funcs.insert(i, info.clone());
        Some(info)
    }

    /// The function a goroutine started at `startpc` (a file address) runs, as a reader names
    /// it: the function there or, when that is the compiler's wrapper for a `go` statement
    /// ([`goruntime::is_go_wrapper`]), the first function outside the runtime that the wrapper
    /// runs, inlined into it or called. None when `startpc` is in no function.
    pub fn started_function(&self, startpc: u64, wrapper_func_id: u8) -> Option<Arc<str>> {
        let f = self.function(startpc)?;
        if !goruntime::is_go_wrapper(&f.name, f.func_id, wrapper_func_id) {
            return Some(f.name);
        }
        Some(self.wrapped(&f).unwrap_or(f.name))
    }

    /// What the wrapper `f` runs (see [`Self::started_function`]).
    fn wrapped(&self, f: &FuncInfo) -> Option<Arc<str>> {
        let len = f.end.checked_sub(f.entry)?.min(MAX_WRAPPER) as usize;
        let code = self.read(f.entry, len)?;
        let calls = disasm::call_targets(self.arch, &f.name, &code, f.entry).ok()?;
        calls.iter().find_map(|&(at, target)| {
            // A call made by a function inlined into the wrapper: that function (the
            // outermost inlined one).
            let frames = self.logical(at)?;
            let function = match frames.len() {
                0 => return None,
                1 => self.function(target).filter(|t| t.entry == target)?.name,
                n => frames[n - 2].function.clone(),
            };
            (!function.starts_with("runtime.")).then_some(function)
        })
    }

    /// The calls in progress at the return address `pc` (a file address): the functions
    /// inlined at the call before it, innermost first, then the function that holds the code,
    /// each with the source position of its call, as the runtime's tracebacks show them.
    pub fn calls(&self, pc: u64) -> Option<Arc<[SourceLine]>> {
        if let Some(c) = self.cache().calls.get(&pc) {
            return c.clone();
        }
        let calls: Option<Arc<[SourceLine]>> = self.logical(pc.checked_sub(1)?).map(|frames| {
            frames
                .iter()
                .map(|f| SourceLine {
                    function: f.function.to_string(),
                    file: f.file.to_string(),
                    line: f.line,
                })
                .collect()
        });
        self.cache().calls.insert(pc, calls.clone());
        calls
    }

    /// The functions in progress at `pc` (a file address: a call's own pc, the return
    /// address less one, or a faulting instruction), innermost first, as the runtime's
    /// traceback expands them.
    pub fn logical(&self, pc: u64) -> Option<Arc<[LogicalFrame]>> {
        if let Some(c) = self.cache().logical.get(&pc) {
            return c.clone();
        }
        let frames: Option<Arc<[LogicalFrame]>> = self.expand(pc).map(Into::into);
        self.cache().logical.insert(pc, frames.clone());
        frames
    }

    fn expand(&self, pc: u64) -> Option<Vec<LogicalFrame>> {
        let off = self.offset(pc)?;
        let i = self.table.func_index(off).ok()??;
        let f = self.table.func_record(i).ok()?;
        let tree = match (self.table.inline_tree(&f).ok()?, self.gofunc) {
            (Some(TreeAt::FromGofunc(o)), Some(base)) => Some(base + o as u64),
            (Some(TreeAt::Address(a)), _) => Some(a),
            _ => None,
        };
        let format = self.table.format;
        let size = format.inl_record;
        let mut out = Vec::new();
        let mut at = off;
        while let (Some(tree), Some(ix)) = (tree, self.table.inline_index(&f, at).ok()?) {
            if out.len() >= 64 {
                return None;
            }
            let record = self.read(tree.checked_add(ix as u64 * size as u64)?, size)?;
            let call = InlinedCall::parse(&format, &record)?;
            let (file, line) = self.table.file_line(i, at).ok()?;
            out.push(LogicalFrame {
                function: self.table.name(call.name_off).ok()?.into(),
                func_id: call.func_id,
                file: file.into(),
                line,
                inlined: true,
            });
            at = f.entry_off.checked_add(call.parent_pc)?;
        }
        let (file, line) = self.table.file_line(i, at).ok()?;
        out.push(LogicalFrame {
            function: self.table.name(f.name_off).ok()?.into(),
            func_id: f.func_id,
            file: file.into(),
            line,
            inlined: false,
        });
        Some(out)
    }
}
