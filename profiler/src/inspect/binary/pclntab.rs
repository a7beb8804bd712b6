//! Go's function table, `.gopclntab` (the formats of Go 1.16-1.17, 1.18-1.19 and 1.20+). It
//! survives `-ldflags='-s -w'`, so
//! it names functions in stripped binaries, and its pc-value tables give source lines and
//! frame sizes (to unwind parked goroutines' stacks). Every read is bounds-checked: a truncated
//! or corrupted table gives an error, never a panic.
//!
//! The table is read through [`TableBytes`]: the section's bytes in memory while a binary is
//! planned, or the executable's file (positioned reads, a few per lookup) while gprof watches
//! its processes, so that nothing of the binary is kept in memory.

use std::borrow::Cow;
use std::os::unix::fs::FileExt;

use super::BinaryError;

/// `pcHeader.magic` of Go 1.16-1.17, 1.18–1.19 and 1.20+.
pub const MAGIC_GO116: u32 = 0xffff_fffa;
pub const MAGIC_GO118: u32 = 0xffff_fff0;
pub const MAGIC_GO120: u32 = 0xffff_fff1;
/// The longest header (Go 1.18+).
const HEADER_LEN: usize = 72;
/// Bytes of a `_func` record read at once: its fixed part in every format.
const FUNC_LEN: usize = 44;

/// Where one format keeps what gprof reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub magic: u32,
    header_len: usize,
    /// Header word index (after the first 8 bytes) of `textStart` (None: absolute entries).
    text_start_word: Option<usize>,
    /// Header word index of `funcnameOffset`; the four other offsets follow.
    offsets_word: usize,
    /// Bytes per `ftab` entry, and whether its words are 8 bytes (absolute pc, offset).
    ftab_entry: usize,
    /// Offsets in a `_func` record.
    name: usize,
    pcsp: usize,
    pcfile: usize,
    pcln: usize,
    npcdata: usize,
    cu: usize,
    func_id: usize,
    /// The pc-data offsets start here; func-data follows them (8-byte absolute pointers
    /// aligned to 8 in Go 1.16-1.17, else 4-byte offsets from `moduledata.gofunc`).
    pcdata: usize,
    /// Bytes of one inlining-tree record (see [`InlinedCall`]).
    pub inl_record: usize,
}

const GO116: Format = Format {
    magic: MAGIC_GO116,
    header_len: 64,
    text_start_word: None,
    offsets_word: 2,
    ftab_entry: 16,
    name: 8,
    pcsp: 20,
    pcfile: 24,
    pcln: 28,
    npcdata: 32,
    cu: 36,
    func_id: 40,
    pcdata: 44,
    inl_record: 20,
};

const GO118: Format = Format {
    magic: MAGIC_GO118,
    header_len: 72,
    text_start_word: Some(2),
    offsets_word: 3,
    ftab_entry: 8,
    name: 4,
    pcsp: 16,
    pcfile: 20,
    pcln: 24,
    npcdata: 28,
    cu: 32,
    func_id: 36,
    pcdata: 40,
    inl_record: 20,
};

/// Go 1.20 inserted `startLine` before `funcID`.
const GO120: Format = Format {
    magic: MAGIC_GO120,
    func_id: 40,
    pcdata: 44,
    inl_record: 16,
    ..GO118
};

impl Format {
    fn of(magic: u32) -> Option<Self> {
        [GO116, GO118, GO120].into_iter().find(|f| f.magic == magic)
    }

    /// Function entries are absolute pcs (Go 1.16-1.17), not offsets from `textStart`.
    pub fn absolute_entries(&self) -> bool {
        self.text_start_word.is_none()
    }
}
/// Longest function or file name accepted.
const MAX_NAME: usize = 1 << 16;
/// `_func.flag`: the function is at the top of a call stack (`goexit`, `mstart`...): unwinding
/// stops there.
pub const FLAG_TOPFRAME: u8 = 1;
/// The pc-data table of the inlining tree index, and the func-data of the inlining tree.
const PCDATA_INL_TREE_INDEX: u32 = 2;
const FUNCDATA_INL_TREE: u32 = 3;

fn err(why: impl Into<String>) -> BinaryError {
    BinaryError::Pclntab(why.into())
}

/// The bytes of a `.gopclntab` section, wherever they are.
#[allow(clippy::len_without_is_empty)] // a table is never empty: its header comes first
pub trait TableBytes {
    fn len(&self) -> usize;
    /// Up to `max` bytes from `off` (fewer at the end of the table; an error past it).
    fn chunk(&self, off: usize, max: usize) -> Result<Cow<'_, [u8]>, BinaryError>;
}

impl<T: AsRef<[u8]>> TableBytes for T {
    fn len(&self) -> usize {
        self.as_ref().len()
    }

    fn chunk(&self, off: usize, max: usize) -> Result<Cow<'_, [u8]>, BinaryError> {
        let data = self.as_ref();
        if off >= data.len() {
            return Err(err(format!("read at {off:#x} past the end")));
        }
        Ok(Cow::Borrowed(
            &data[off..data.len().min(off.saturating_add(max))],
        ))
    }
}

/// A `.gopclntab` read from an open executable with positioned reads. A file that shrank
/// under gprof gives errors, not a crash (it is never mapped).
#[derive(Debug)]
pub struct FileTable {
    pub file: std::sync::Arc<std::fs::File>,
    /// File offset of the section, and its length.
    pub start: u64,
    pub len: usize,
}

impl Pclntab<FileTable> {
    /// The file the table is read from.
    pub fn file(&self) -> &std::fs::File {
        &self.data.file
    }
}

impl TableBytes for FileTable {
    fn len(&self) -> usize {
        self.len
    }

    fn chunk(&self, off: usize, max: usize) -> Result<Cow<'_, [u8]>, BinaryError> {
        if off >= self.len {
            return Err(err(format!("read at {off:#x} past the end")));
        }
        let mut buf = vec![0u8; max.min(self.len - off)];
        let mut got = 0;
        while got < buf.len() {
            match self
                .file
                .read_at(&mut buf[got..], self.start + (off + got) as u64)
            {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(format!("reading the executable: {e}"))),
            }
        }
        if got == 0 {
            return Err(err("the executable is shorter than its table"));
        }
        buf.truncate(got);
        Ok(Cow::Owned(buf))
    }
}

/// Offsets in `data` (8-byte aligned) where a table header could start: a known magic, two
/// zero bytes, an instruction quantum of 1 or 4, pointers of 8 bytes.
pub fn header_candidates(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    data.chunks_exact(8).enumerate().filter_map(|(i, w)| {
        let magic = u32::from_le_bytes(w[0..4].try_into().expect("4"));
        (Format::of(magic).is_some()
            && w[4] == 0
            && w[5] == 0
            && matches!(w[6], 1 | 4)
            && w[7] == 8)
            .then_some(8 * i)
    })
}

/// A parsed `pcHeader` over the section's bytes. Function entries are given as offsets from
/// [`Pclntab::origin`]: `textStart` (from 1.26, `moduledata.text`), or for Go 1.16-1.17,
/// whose table holds absolute pcs, the first function's entry.
#[derive(Debug)]
pub struct Pclntab<B> {
    data: B,
    /// Virtual address of the header (the section start).
    pub addr: u64,
    pub magic: u32,
    pub format: Format,
    /// Minimum instruction size (1 on amd64, 4 on arm64).
    pub min_lc: u8,
    pub nfunc: usize,
    /// `pcHeader.textStart`; Go 1.26+ leaves it zero (use `moduledata.text`). For Go
    /// 1.16-1.17, the first function's entry (their entries are absolute).
    pub text_start: u64,
    pub funcname_offset: u64,
    pub cu_offset: u64,
    pub filetab_offset: u64,
    pub pctab_offset: u64,
    pub pcln_offset: u64,
}

/// The fixed fields of a `_func` record that unwinding and inlining need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncRecord {
    /// Table offset of the record.
    rec: usize,
    pub entry_off: u32,
    pub end_off: u32,
    pub name_off: i32,
    /// `abi.FuncID`: what the runtime's unwinder treats specially (per release).
    pub func_id: u8,
    pub flag: u8,
    npcdata: u32,
    nfuncdata: u8,
}

/// One call inlined into a function, as the inlining tree records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlinedCall {
    /// The inlined function's name (an offset into the function name table).
    pub name_off: i32,
    pub func_id: u8,
    /// The call's pc, relative to the outer function's entry.
    pub parent_pc: u32,
}

impl InlinedCall {
    /// Parses one record of the tree (Go 1.16-1.19: parent, funcID, file, line, func,
    /// parentPc, 20 bytes; 1.20+: funcID, nameOff, parentPc, startLine, 16 bytes).
    pub fn parse(format: &Format, b: &[u8]) -> Option<Self> {
        let i32_at = |o: usize| Some(i32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
        let (name, parent, func_id) = if format.inl_record == 20 {
            (12, 16, 2)
        } else {
            (4, 8, 0)
        };
        Some(Self {
            name_off: i32_at(name)?,
            func_id: *b.get(func_id)?,
            parent_pc: u32::try_from(i32_at(parent)?).ok()?,
        })
    }
}

/// Where a function's inlining tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeAt {
    /// An offset from `moduledata.gofunc` (Go 1.18+).
    FromGofunc(u32),
    /// An address (Go 1.16-1.17).
    Address(u64),
}

/// One function: entry and end relative to the text base, and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFunc {
    pub entry_off: u32,
    pub end_off: u32,
    pub name: String,
    /// `_func.funcID`: nonzero for the runtime's special functions and for ABI wrappers.
    pub func_id: u8,
    /// `_func.deferreturn`: offset from the entry of the `deferreturn` call a recovered panic
    /// resumes at (0: none).
    pub deferreturn: u32,
}

impl<B: TableBytes> Pclntab<B> {
    pub fn parse(data: B, addr: u64) -> Result<Self, BinaryError> {
        let header = data
            .chunk(0, HEADER_LEN)
            .map_err(|_| err("shorter than its header"))?;
        if header.len() < 8 {
            return Err(err("shorter than its header"));
        }
        let magic = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let format = Format::of(magic).ok_or_else(|| {
            err(format!(
                "magic {magic:#x}: not the table of Go 1.16 or newer"
            ))
        })?;
        if header.len() < format.header_len {
            return Err(err("shorter than its header"));
        }
        if header[4] != 0 || header[5] != 0 {
            return Err(err("bad header padding"));
        }
        let (min_lc, ptr_size) = (header[6], header[7]);
        if ptr_size != 8 {
            return Err(err(format!("pointer size {ptr_size}: only 64-bit targets")));
        }
        if min_lc != 1 && min_lc != 4 {
            return Err(err(format!("instruction quantum {min_lc}")));
        }
        let word =
            |i: usize| u64::from_le_bytes(header[8 + 8 * i..16 + 8 * i].try_into().expect("8"));
        let nfunc = usize::try_from(word(0)).map_err(|_| err("function count"))?;
        let o = format.offsets_word;
        let (funcname_offset, cu_offset, filetab_offset, pctab_offset, pcln_offset) =
            (word(o), word(o + 1), word(o + 2), word(o + 3), word(o + 4));
        let text_start = format.text_start_word.map_or(0, word);
        drop(header);
        let len = data.len() as u64;
        for (what, off) in [
            ("funcnametab", funcname_offset),
            ("cutab", cu_offset),
            ("filetab", filetab_offset),
            ("pctab", pctab_offset),
            ("pclntable", pcln_offset),
        ] {
            if off < format.header_len as u64 || off >= len {
                return Err(err(format!("{what} offset {off:#x} outside the table")));
            }
        }
        let ftab_end = nfunc
            .checked_mul(format.ftab_entry)
            .and_then(|n| n.checked_add(format.ftab_entry / 2))
            .and_then(|n| n.checked_add(pcln_offset as usize))
            .ok_or_else(|| err("function count overflows"))?;
        if ftab_end > data.len() {
            return Err(err(format!("{nfunc} functions do not fit in the table")));
        }
        let mut table = Self {
            data,
            addr,
            magic,
            format,
            min_lc,
            nfunc,
            text_start,
            funcname_offset,
            cu_offset,
            filetab_offset,
            pctab_offset,
            pcln_offset,
        };
        if format.absolute_entries() {
            table.text_start = table.absolute_entry(0)?;
        }
        Ok(table)
    }

    /// Entry `i` of an `ftab` of absolute pcs (Go 1.16-1.17; `i == nfunc`: the end).
    fn absolute_entry(&self, i: usize) -> Result<u64, BinaryError> {
        let at = (self.pcln_offset as usize)
            .checked_add(
                i.checked_mul(16)
                    .ok_or_else(|| err("ftab index overflows"))?,
            )
            .ok_or_else(|| err("ftab index overflows"))?;
        Ok(u64::from_le_bytes(self.bytes::<8>(at)?))
    }

    fn bytes<const N: usize>(&self, off: usize) -> Result<[u8; N], BinaryError> {
        let c = self.data.chunk(off, N)?;
        c.get(..N)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| err(format!("read at {off:#x} past the end")))
    }

    fn u32_at(&self, off: usize) -> Result<u32, BinaryError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(off)?))
    }

    /// `ftab[i]`: (entry offset from [`Self::origin`], offset of the `_func` record).
    pub fn ftab(&self, i: usize) -> Result<(u32, u32), BinaryError> {
        if self.format.absolute_entries() {
            let at = (self.pcln_offset as usize)
                .checked_add(
                    i.checked_mul(16)
                        .ok_or_else(|| err("ftab index overflows"))?,
                )
                .ok_or_else(|| err("ftab index overflows"))?;
            let b = self.bytes::<16>(at)?;
            let entry = u64::from_le_bytes(b[0..8].try_into().expect("8"));
            let func = u64::from_le_bytes(b[8..16].try_into().expect("8"));
            let off = entry
                .checked_sub(self.text_start)
                .and_then(|o| u32::try_from(o).ok())
                .ok_or_else(|| err(format!("function {i} lies before the first")))?;
            // The end marker has no record.
            let func = if i == self.nfunc { 0 } else { func };
            let func = u32::try_from(func).map_err(|_| err("_func offset out of range"))?;
            return Ok((off, func));
        }
        let at = (self.pcln_offset as usize)
            .checked_add(
                i.checked_mul(8)
                    .ok_or_else(|| err("ftab index overflows"))?,
            )
            .ok_or_else(|| err("ftab index overflows"))?;
        let b = self.bytes::<8>(at)?;
        Ok((
            u32::from_le_bytes(b[0..4].try_into().expect("4")),
            u32::from_le_bytes(b[4..8].try_into().expect("4")),
        ))
    }

    /// What function entries are offsets from: `textStart`, or the first function's entry
    /// in tables of absolute pcs.
    pub fn origin(&self) -> u64 {
        self.text_start
    }

    /// The end of the last function, relative to the text base (`ftab[nfunc]`).
    pub fn text_end_off(&self) -> Result<u32, BinaryError> {
        Ok(self.ftab(self.nfunc)?.0)
    }

    fn cstr(&self, base: u64, off: u64) -> Result<String, BinaryError> {
        let start = base
            .checked_add(off)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s < self.data.len())
            .ok_or_else(|| err("string offset outside the table"))?;
        let mut name = Vec::new();
        loop {
            let c = self.data.chunk(start + name.len(), 256)?;
            match c.iter().position(|&b| b == 0) {
                Some(end) => {
                    name.extend_from_slice(&c[..end]);
                    break;
                }
                None if name.len() + c.len() > MAX_NAME => return Err(err("name too long")),
                None => name.extend_from_slice(&c),
            }
        }
        String::from_utf8(name).map_err(|_| err("name is not UTF-8"))
    }

    /// The offset of function `i`'s `_func` record, checked against ftab.
    fn record(&self, i: usize) -> Result<(usize, u32, u32), BinaryError> {
        if i >= self.nfunc {
            return Err(err("function index out of range"));
        }
        let (entry_off, func_off) = self.ftab(i)?;
        let (end_off, _) = self.ftab(i + 1)?;
        if end_off < entry_off {
            return Err(err(format!("function {i} is not sorted")));
        }
        let rec = (self.pcln_offset as usize)
            .checked_add(func_off as usize)
            .filter(|r| {
                r.checked_add(FUNC_LEN)
                    .is_some_and(|e| e <= self.data.len())
            })
            .ok_or_else(|| err(format!("_func record {i} outside the table")))?;
        let recorded = if self.format.absolute_entries() {
            u64::from_le_bytes(self.bytes::<8>(rec)?).checked_sub(self.text_start)
        } else {
            Some(self.u32_at(rec)? as u64)
        };
        if recorded != Some(entry_off as u64) {
            return Err(err(format!("_func record {i} disagrees with ftab")));
        }
        Ok((rec, entry_off, end_off))
    }

    /// Function `i`, bounds-checked and consistent with its `_func` record.
    pub fn func(&self, i: usize) -> Result<RawFunc, BinaryError> {
        let (rec, entry_off, end_off) = self.record(i)?;
        let fixed = self.bytes::<FUNC_LEN>(rec)?;
        let n = self.format.name;
        let name_off = i32::from_le_bytes(fixed[n..n + 4].try_into().expect("4"));
        let name = self.name(name_off)?;
        let func_id = fixed[self.format.func_id];
        // `args` follows the name offset, then `deferreturn`, in every format.
        let d = n + 8;
        let deferreturn = u32::from_le_bytes(fixed[d..d + 4].try_into().expect("4"));
        Ok(RawFunc {
            entry_off,
            end_off,
            name,
            func_id,
            deferreturn,
        })
    }

    /// The function name at `name_off` in the name table.
    pub fn name(&self, name_off: i32) -> Result<String, BinaryError> {
        if name_off < 0 {
            return Err(err("negative name offset"));
        }
        self.cstr(self.funcname_offset, name_off as u64)
    }

    /// Function `i`'s record: what unwinding and inlining need.
    pub fn func_record(&self, i: usize) -> Result<FuncRecord, BinaryError> {
        let (rec, entry_off, end_off) = self.record(i)?;
        let fixed = self.bytes::<FUNC_LEN>(rec)?;
        let (f, n, p) = (&self.format, self.format.name, self.format.npcdata);
        Ok(FuncRecord {
            rec,
            entry_off,
            end_off,
            name_off: i32::from_le_bytes(fixed[n..n + 4].try_into().expect("4")),
            func_id: fixed[f.func_id],
            flag: fixed[f.func_id + 1],
            npcdata: u32::from_le_bytes(fixed[p..p + 4].try_into().expect("4")),
            nfuncdata: fixed[f.func_id + 3],
        })
    }

    /// The index into the inlining tree of the call inlined at `off` (relative to the text
    /// base) in function `f`: None where no call is inlined.
    pub fn inline_index(&self, f: &FuncRecord, off: u32) -> Result<Option<u32>, BinaryError> {
        if f.npcdata <= PCDATA_INL_TREE_INDEX || off < f.entry_off || off >= f.end_off {
            return Ok(None);
        }
        let at = f.rec + self.format.pcdata + 4 * PCDATA_INL_TREE_INDEX as usize;
        let table = self.u32_at(at)?;
        if table == 0 {
            return Ok(None);
        }
        let v = self.pc_value(table, f.entry_off, off)?;
        Ok(u32::try_from(v).ok())
    }

    /// Where function `f`'s inlining tree is.
    pub fn inline_tree(&self, f: &FuncRecord) -> Result<Option<TreeAt>, BinaryError> {
        if u32::from(f.nfuncdata) <= FUNCDATA_INL_TREE {
            return Ok(None);
        }
        let funcdata = f.rec + self.format.pcdata + 4 * f.npcdata as usize;
        if self.format.absolute_entries() {
            let at = funcdata.next_multiple_of(8) + 8 * FUNCDATA_INL_TREE as usize;
            let addr = u64::from_le_bytes(self.bytes::<8>(at)?);
            return Ok((addr != 0).then_some(TreeAt::Address(addr)));
        }
        let off = self.u32_at(funcdata + 4 * FUNCDATA_INL_TREE as usize)?;
        Ok((off != u32::MAX).then_some(TreeAt::FromGofunc(off)))
    }

    /// All functions, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = Result<RawFunc, BinaryError>> + '_ {
        (0..self.nfunc).map(|i| self.func(i))
    }

    /// The index of the function containing `off` (relative to the text base).
    pub fn func_index(&self, off: u32) -> Result<Option<usize>, BinaryError> {
        let (mut lo, mut hi) = (0, self.nfunc);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.ftab(mid)?.0 <= off {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 || off >= self.text_end_off()? {
            return Ok(None);
        }
        Ok(Some(lo - 1))
    }

    /// The source position of `off` (relative to the text base) in function `i`: its file
    /// and line, as the runtime's `funcline1` finds them (`pcfile` and `pcln` tables, the
    /// file through the compilation unit's `cutab`).
    pub fn file_line(&self, i: usize, off: u32) -> Result<(String, u32), BinaryError> {
        let (rec, entry_off, _) = self.record(i)?;
        let pcfile = self.u32_at(rec + self.format.pcfile)?;
        let pcln = self.u32_at(rec + self.format.pcln)?;
        let cu = self.u32_at(rec + self.format.cu)?;
        let file_no = self.pc_value(pcfile, entry_off, off)?;
        let line = self.pc_value(pcln, entry_off, off)?;
        if file_no < 0 || line < 0 {
            return Err(err(format!(
                "no source position at {:#x} in function {i}",
                off.wrapping_sub(entry_off)
            )));
        }
        let cu_entry = (self.cu_offset as usize)
            .checked_add(4 * (cu as usize + file_no as usize))
            .ok_or_else(|| err("cutab index overflows"))?;
        let file_off = self.u32_at(cu_entry)?;
        Ok((
            self.cstr(self.filetab_offset, file_off as u64)?,
            line as u32,
        ))
    }

    /// The frame size of function `i` at `off` (relative to the text base): how far the stack
    /// pointer is below its value at the function's entry (the `pcsp` table, as the runtime's
    /// `funcspdelta` reads it).
    pub fn sp_delta(&self, i: usize, off: u32) -> Result<i32, BinaryError> {
        let (rec, entry_off, end_off) = self.record(i)?;
        if off < entry_off || off >= end_off {
            return Err(err(format!("{off:#x} is outside function {i}")));
        }
        let pcsp = self.u32_at(rec + self.format.pcsp)?;
        let delta = self.pc_value(pcsp, entry_off, off)?;
        if delta < 0 {
            return Err(err(format!("negative frame size at {off:#x}")));
        }
        Ok(delta)
    }

    /// Decodes one pc-value table (zigzag value deltas and pc deltas, both varints) up to
    /// `target`, as the runtime's `pcvalue` does.
    fn pc_value(&self, table: u32, entry: u32, target: u32) -> Result<i32, BinaryError> {
        let at = (self.pctab_offset as usize)
            .checked_add(table as usize)
            .ok_or_else(|| err("pctab offset overflows"))?;
        let mut reader = Varints {
            table: &self.data,
            at,
            buf: Cow::Borrowed(&[]),
            pos: 0,
        };
        let (mut pc, mut val) = (entry, -1i32);
        let mut first = true;
        loop {
            let uvdelta = reader.next()?;
            if uvdelta == 0 && !first {
                return Err(err("pc not covered by its function's table"));
            }
            first = false;
            let delta = -((uvdelta & 1) as i32) ^ (uvdelta >> 1) as i32;
            val = val.wrapping_add(delta);
            let pcdelta = reader.next()?;
            pc = pc
                .checked_add(pcdelta.wrapping_mul(self.min_lc as u32))
                .ok_or_else(|| err("pc table runs past the text"))?;
            if target < pc {
                return Ok(val);
            }
        }
    }
}

/// Reads varints from a table in chunks (one positioned read per 256 bytes from a file).
struct Varints<'a, B: ?Sized> {
    table: &'a B,
    /// Table offset of `buf[0]`.
    at: usize,
    buf: Cow<'a, [u8]>,
    pos: usize,
}

impl<B: TableBytes> Varints<'_, B> {
    fn byte(&mut self) -> Result<u8, BinaryError> {
        if self.pos == self.buf.len() {
            self.at += self.buf.len();
            self.buf = self
                .table
                .chunk(self.at, 256)
                .map_err(|_| err("pc table runs past the end"))?;
            self.pos = 0;
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    fn next(&mut self) -> Result<u32, BinaryError> {
        let mut v = 0u32;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u32) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint too long"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal, well-formed table with the given (entry_off, name) functions, the last
    /// function ending at `end`.
    pub fn synthetic(funcs: &[(u32, &str)], end: u32, text_start: u64) -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (_, n) in funcs {
            name_offs.push(names.len() as u32);
            names.extend(n.as_bytes());
            names.push(0);
        }
        let funcname_offset = HEADER_LEN as u64;
        let cu_offset = funcname_offset + names.len() as u64;
        let filetab_offset = cu_offset + 4;
        let pctab_offset = filetab_offset + 4;
        let pcln_offset = pctab_offset + 4;
        let mut d = Vec::new();
        d.extend(MAGIC_GO120.to_le_bytes());
        d.extend([0, 0, 1, 8]);
        for w in [
            funcs.len() as u64,
            1,
            text_start,
            funcname_offset,
            cu_offset,
            filetab_offset,
            pctab_offset,
            pcln_offset,
        ] {
            d.extend(w.to_le_bytes());
        }
        d.extend(&names);
        d.extend([0u8; 12]);
        let ftab_len = (funcs.len() + 1) * 8;
        for (i, (entry, _)) in funcs.iter().enumerate() {
            d.extend(entry.to_le_bytes());
            d.extend(((ftab_len + i * FUNC_LEN) as u32).to_le_bytes());
        }
        d.extend(end.to_le_bytes());
        d.extend(0u32.to_le_bytes());
        for (i, (entry, _)) in funcs.iter().enumerate() {
            let mut rec = vec![0u8; FUNC_LEN];
            rec[0..4].copy_from_slice(&entry.to_le_bytes());
            rec[4..8].copy_from_slice(&name_offs[i].to_le_bytes());
            d.extend(rec);
        }
        d
    }

    #[test]
    fn parses_a_synthetic_table() {
        let data = synthetic(&[(0, "main.main"), (0x40, "runtime.gfput")], 0x90, 0x401000);
        let t = Pclntab::parse(&data, 0x500000).unwrap();
        assert_eq!(t.nfunc, 2);
        assert_eq!(t.text_start, 0x401000);
        let funcs: Vec<_> = t.funcs().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            funcs[1],
            RawFunc {
                entry_off: 0x40,
                end_off: 0x90,
                name: "runtime.gfput".into(),
                func_id: 0,
                deferreturn: 0,
            }
        );
        assert_eq!(t.text_end_off().unwrap(), 0x90);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let data = synthetic(&[(0, "main.main"), (0x40, "runtime.gfput")], 0x90, 0);
        for len in 0..data.len() {
            if let Ok(t) = Pclntab::parse(&data[..len], 0) {
                for f in t.funcs() {
                    let _ = f;
                }
            }
        }
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let data = synthetic(&[(0, "main.main"), (0x40, "runtime.gfput")], 0x90, 0);
        for i in 0..data.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut d = data.clone();
                d[i] = v;
                if let Ok(t) = Pclntab::parse(&d, 0) {
                    for f in t.funcs() {
                        let _ = f;
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_old_and_foreign_tables() {
        let mut data = synthetic(&[(0, "main.main")], 0x10, 0);
        for magic in [0xffff_fffbu32, 0xffff_fff2] {
            data[0..4].copy_from_slice(&magic.to_le_bytes());
            let e = Pclntab::parse(&data, 0).unwrap_err();
            assert!(e.to_string().contains("Go 1.16"), "{e}");
        }
    }

    /// A Go 1.16-1.17 table: 64-byte header without textStart, 16-byte ftab entries of
    /// absolute pcs, `_func` records that start with their absolute entry.
    fn synthetic_go116(funcs: &[(u64, &str)], end: u64) -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (_, n) in funcs {
            name_offs.push(names.len() as u32);
            names.extend(n.as_bytes());
            names.push(0);
        }
        let funcname_offset = 64u64;
        let cu_offset = funcname_offset + names.len() as u64;
        let filetab_offset = cu_offset + 4;
        let pctab_offset = filetab_offset + 4;
        let pcln_offset = pctab_offset + 4;
        let mut d = Vec::new();
        d.extend(MAGIC_GO116.to_le_bytes());
        d.extend([0, 0, 1, 8]);
        for w in [
            funcs.len() as u64,
            1,
            funcname_offset,
            cu_offset,
            filetab_offset,
            pctab_offset,
            pcln_offset,
        ] {
            d.extend(w.to_le_bytes());
        }
        d.extend(&names);
        d.extend([0u8; 12]);
        let ftab_len = funcs.len() * 16 + 8;
        for (i, (entry, _)) in funcs.iter().enumerate() {
            d.extend(entry.to_le_bytes());
            d.extend(((ftab_len + i * 48) as u64).to_le_bytes());
        }
        d.extend(end.to_le_bytes());
        for (i, (entry, _)) in funcs.iter().enumerate() {
            let mut rec = vec![0u8; 48];
            rec[0..8].copy_from_slice(&entry.to_le_bytes());
            rec[8..12].copy_from_slice(&name_offs[i].to_le_bytes());
            d.extend(rec);
        }
        d
    }

    #[test]
    fn reads_the_go_1_16_format_of_absolute_entries() {
        let data = synthetic_go116(
            &[(0x401000, "main.main"), (0x401040, "runtime.gfput")],
            0x401090,
        );
        let t = Pclntab::parse(&data, 0x500000).unwrap();
        assert!(t.format.absolute_entries());
        assert_eq!((t.nfunc, t.origin()), (2, 0x401000));
        let funcs: Vec<_> = t.funcs().collect::<Result<_, _>>().unwrap();
        assert_eq!(funcs[1].name, "runtime.gfput");
        assert_eq!((funcs[1].entry_off, funcs[1].end_off), (0x40, 0x90));
        assert_eq!(t.func_index(0x45).unwrap(), Some(1));
        // Every truncation and corruption is an error, never a panic.
        for len in 0..data.len() {
            if let Ok(t) = Pclntab::parse(&data[..len], 0) {
                let _ = t.funcs().count();
            }
        }
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 0xff;
            if let Ok(t) = Pclntab::parse(&d, 0) {
                let _ = t.funcs().count();
            }
        }
    }
}
