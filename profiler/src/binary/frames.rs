//! Code addresses of a watched executable, named and sized while gprof watches it: the
//! function, source line and frame size at a pc, from `.gopclntab` read through the open
//! executable (a few positioned reads per new pc, then cached), so that nothing of the binary
//! stays in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::pclntab::{FileTable, Pclntab};
use super::{Arch, SourceLine};

/// Entries cached per table before the cache is emptied (a bound on memory whatever the
/// program does).
const MAX_CACHED: usize = 1 << 16;

/// The function around a pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    pub name: Arc<str>,
    /// Entry address (file address).
    pub entry: u64,
    pub end: u64,
}

#[derive(Debug, Default)]
struct Cache {
    /// pc -> (function index, frame size at pc).
    frames: HashMap<u64, Option<(usize, i32)>>,
    funcs: HashMap<usize, FuncInfo>,
    lines: HashMap<u64, Option<SourceLine>>,
}

/// The function table of one executable, read on demand.
#[derive(Debug)]
pub struct FrameTable {
    table: Pclntab<FileTable>,
    /// The text base that `.gopclntab` offsets are relative to (file address).
    text: u64,
    pub arch: Arch,
    cache: Mutex<Cache>,
}

impl FrameTable {
    pub fn new(table: Pclntab<FileTable>, text: u64, arch: Arch) -> Self {
        Self {
            table,
            text,
            arch,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.frames.len() + c.lines.len() + c.funcs.len() > MAX_CACHED {
            *c = Cache::default();
        }
        c
    }

    fn offset(&self, pc: u64) -> Option<u32> {
        u32::try_from(pc.checked_sub(self.text)?).ok()
    }

    /// The function containing `pc` (a file address) and the frame size there.
    pub fn frame(&self, pc: u64) -> Option<(FuncInfo, i32)> {
        let mut cache = self.cache();
        let found = match cache.frames.get(&pc) {
            Some(f) => *f,
            None => {
                let f = self.offset(pc).and_then(|off| {
                    let i = self.table.func_index(off).ok()??;
                    Some((i, self.table.sp_delta(i, off).ok()?))
                });
                cache.frames.insert(pc, f);
                f
            }
        };
        let (i, delta) = found?;
        let info = match cache.funcs.get(&i) {
            Some(info) => info.clone(),
            None => {
                let f = self.table.func(i).ok()?;
                let info = FuncInfo {
                    name: f.name.into(),
                    entry: self.text + f.entry_off as u64,
                    end: self.text + f.end_off as u64,
                };
                cache.funcs.insert(i, info.clone());
                info
            }
        };
        Some((info, delta))
    }

    /// The function containing `pc` (a file address).
    pub fn function(&self, pc: u64) -> Option<FuncInfo> {
        let off = self.offset(pc)?;
        let i = self.table.func_index(off).ok()??;
        let mut cache = self.cache();
        if let Some(info) = cache.funcs.get(&i) {
            return Some(info.clone());
        }
        let f = self.table.func(i).ok()?;
        let info = FuncInfo {
            name: f.name.into(),
            entry: self.text + f.entry_off as u64,
            end: self.text + f.end_off as u64,
        };
        cache.funcs.insert(i, info.clone());
        Some(info)
    }

    /// The source position of `pc` (a file address). For a return address (a `go`
    /// statement's PC, a caller's frame), pass the address of the call: `pc - 1`.
    pub fn source_line(&self, pc: u64) -> Option<SourceLine> {
        if let Some(l) = self.cache().lines.get(&pc) {
            return l.clone();
        }
        let line = self.offset(pc).and_then(|off| {
            let i = self.table.func_index(off).ok()??;
            let function = self.table.func(i).ok()?.name;
            let (file, line) = self.table.file_line(i, off).ok()?;
            Some(SourceLine {
                function,
                file,
                line,
            })
        });
        self.cache().lines.insert(pc, line.clone());
        line
    }
}
