//! Go's function table, `.gopclntab` (format of Go 1.18+). It survives `-ldflags='-s -w'`, so
//! it names functions in stripped binaries. Every read is bounds-checked: a truncated or
//! corrupted table gives an error, never a panic.

use super::BinaryError;

/// `pcHeader.magic` of Go 1.18–1.19 and of Go 1.20+ (the layout is the same).
pub const MAGIC_GO118: u32 = 0xffff_fff0;
pub const MAGIC_GO120: u32 = 0xffff_fff1;
const HEADER_LEN: usize = 72;
/// Size of one `_func` record's fixed part.
const FUNC_LEN: usize = 44;

/// A parsed `pcHeader` over the section's bytes.
#[derive(Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    /// Virtual address of the header (the section start).
    pub addr: u64,
    pub magic: u32,
    /// Minimum instruction size (1 on amd64, 4 on arm64).
    pub min_lc: u8,
    pub nfunc: usize,
    /// `pcHeader.textStart`; Go 1.26+ leaves it zero (use `moduledata.text`).
    pub text_start: u64,
    pub funcname_offset: u64,
    pub cu_offset: u64,
    pub filetab_offset: u64,
    pub pctab_offset: u64,
    pub pcln_offset: u64,
}

/// One function: entry and end relative to the text base, and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFunc<'a> {
    pub entry_off: u32,
    pub end_off: u32,
    pub name: &'a str,
    /// `_func.funcID`: nonzero for the runtime's special functions and for ABI wrappers.
    pub func_id: u8,
}

fn err(why: impl Into<String>) -> BinaryError {
    BinaryError::Pclntab(why.into())
}

impl<'a> Pclntab<'a> {
    pub fn parse(data: &'a [u8], addr: u64) -> Result<Self, BinaryError> {
        if data.len() < HEADER_LEN {
            return Err(err("shorter than its header"));
        }
        let magic = u32::from_le_bytes(data[0..4].try_into().expect("4 bytes"));
        if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
            return Err(err(format!(
                "magic {magic:#x}: not the table of Go 1.18 or newer"
            )));
        }
        if data[4] != 0 || data[5] != 0 {
            return Err(err("bad header padding"));
        }
        let (min_lc, ptr_size) = (data[6], data[7]);
        if ptr_size != 8 {
            return Err(err(format!("pointer size {ptr_size}: only 64-bit targets")));
        }
        if min_lc != 1 && min_lc != 4 {
            return Err(err(format!("instruction quantum {min_lc}")));
        }
        let word =
            |i: usize| u64::from_le_bytes(data[8 + 8 * i..16 + 8 * i].try_into().expect("8"));
        let nfunc = usize::try_from(word(0)).map_err(|_| err("function count"))?;
        let table = Self {
            data,
            addr,
            magic,
            min_lc,
            nfunc,
            text_start: word(2),
            funcname_offset: word(3),
            cu_offset: word(4),
            filetab_offset: word(5),
            pctab_offset: word(6),
            pcln_offset: word(7),
        };
        for (what, off) in [
            ("funcnametab", table.funcname_offset),
            ("cutab", table.cu_offset),
            ("filetab", table.filetab_offset),
            ("pctab", table.pctab_offset),
            ("pclntable", table.pcln_offset),
        ] {
            if off < HEADER_LEN as u64 || off >= data.len() as u64 {
                return Err(err(format!("{what} offset {off:#x} outside the table")));
            }
        }
        let ftab_end = nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .and_then(|n| n.checked_add(table.pcln_offset as usize))
            .ok_or_else(|| err("function count overflows"))?;
        if ftab_end > data.len() {
            return Err(err(format!("{nfunc} functions do not fit in the table")));
        }
        Ok(table)
    }

    fn u32_at(&self, off: usize) -> Result<u32, BinaryError> {
        self.data
            .get(off..off.checked_add(4).ok_or_else(|| err("offset overflow"))?)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| err(format!("read at {off:#x} past the end")))
    }

    /// `ftab[i]`: (entry offset from the text base, offset of the `_func` record).
    pub fn ftab(&self, i: usize) -> Result<(u32, u32), BinaryError> {
        let at = self.pcln_offset as usize + 8 * i;
        Ok((self.u32_at(at)?, self.u32_at(at + 4)?))
    }

    /// The end of the last function, relative to the text base (`ftab[nfunc]`).
    pub fn text_end_off(&self) -> Result<u32, BinaryError> {
        Ok(self.ftab(self.nfunc)?.0)
    }

    fn cstr(&self, base: u64, off: u64) -> Result<&'a str, BinaryError> {
        let start = base
            .checked_add(off)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s < self.data.len())
            .ok_or_else(|| err("string offset outside the table"))?;
        let len = self.data[start..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| err("unterminated string"))?;
        std::str::from_utf8(&self.data[start..start + len]).map_err(|_| err("name is not UTF-8"))
    }

    /// Function `i`, bounds-checked and consistent with its `_func` record.
    pub fn func(&self, i: usize) -> Result<RawFunc<'a>, BinaryError> {
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
        if self.u32_at(rec)? != entry_off {
            return Err(err(format!("_func record {i} disagrees with ftab")));
        }
        let name_off = self.u32_at(rec + 4)? as i32;
        if name_off < 0 {
            return Err(err("negative name offset"));
        }
        let name = self.cstr(self.funcname_offset, name_off as u64)?;
        // Go 1.20 inserted `startLine` before `funcID`.
        let func_id = self.data[rec + if self.magic == MAGIC_GO118 { 36 } else { 40 }];
        Ok(RawFunc {
            entry_off,
            end_off,
            name,
            func_id,
        })
    }

    /// All functions, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = Result<RawFunc<'a>, BinaryError>> + '_ {
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
    pub fn file_line(&self, i: usize, off: u32) -> Result<(&'a str, u32), BinaryError> {
        let f = self.func(i)?;
        let rec = self.pcln_offset as usize + self.ftab(i)?.1 as usize;
        let pcfile = self.u32_at(rec + 20)?;
        let pcln = self.u32_at(rec + 24)?;
        let cu = self.u32_at(rec + 32)?;
        let file_no = self.pc_value(pcfile, f.entry_off, off)?;
        let line = self.pc_value(pcln, f.entry_off, off)?;
        if file_no < 0 || line < 0 {
            return Err(err(format!(
                "no source position for {}+{:#x}",
                f.name,
                off - f.entry_off
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

    /// Decodes one pc-value table (zigzag value deltas and pc deltas, both varints) up to
    /// `target`, as the runtime's `pcvalue` does.
    fn pc_value(&self, table: u32, entry: u32, target: u32) -> Result<i32, BinaryError> {
        let mut at = (self.pctab_offset as usize)
            .checked_add(table as usize)
            .ok_or_else(|| err("pctab offset overflows"))?;
        let (mut pc, mut val) = (entry, -1i32);
        let mut first = true;
        loop {
            let uvdelta = self.varint(&mut at)?;
            if uvdelta == 0 && !first {
                return Err(err("pc not covered by its function's table"));
            }
            first = false;
            let delta = -((uvdelta & 1) as i32) ^ (uvdelta >> 1) as i32;
            val = val.wrapping_add(delta);
            let pcdelta = self.varint(&mut at)?;
            pc = pc
                .checked_add(pcdelta.wrapping_mul(self.min_lc as u32))
                .ok_or_else(|| err("pc table runs past the text"))?;
            if target < pc {
                return Ok(val);
            }
        }
    }

    fn varint(&self, at: &mut usize) -> Result<u32, BinaryError> {
        let mut v = 0u32;
        for shift in (0..35).step_by(7) {
            let b = *self
                .data
                .get(*at)
                .ok_or_else(|| err("pc table runs past the end"))?;
            *at += 1;
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
                name: "runtime.gfput",
                func_id: 0,
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
        data[0..4].copy_from_slice(&0xffff_fffau32.to_le_bytes());
        let e = Pclntab::parse(&data, 0).unwrap_err();
        assert!(e.to_string().contains("Go 1.18"), "{e}");
    }
}
