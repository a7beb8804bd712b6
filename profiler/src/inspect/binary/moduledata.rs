//! Finding `runtime.firstmoduledata`, the runtime's own description of the binary, to learn
//! the text base that `.gopclntab` offsets are relative to. Go 1.26+ zeroes
//! `pcHeader.textStart`, and cgo or external linking moves `runtime.text` away from the start
//! of `.text`, so neither can be trusted alone: the moduledata is found through its pointer to
//! `.gopclntab` and accepted only when every cross-reference to the table agrees.

use super::BinaryError;
use super::pclntab::{Pclntab, TableBytes};

/// Offsets inside `moduledata` (stable from Go 1.18 to 1.27): the header pointer, then six
/// slices (pointer, length, capacity), `findfunctab`, `minpc`, `maxpc`, `text`, `etext`.
mod off {
    pub const FUNCNAMETAB: u64 = 8;
    pub const CUTAB: u64 = 32;
    pub const FILETAB: u64 = 56;
    pub const PCTAB: u64 = 80;
    pub const PCLNTABLE: u64 = 104;
    pub const FTAB: u64 = 128;
    pub const FTAB_LEN: u64 = 136;
    pub const MINPC: u64 = 160;
    pub const MAXPC: u64 = 168;
    pub const TEXT: u64 = 176;
    pub const ETEXT: u64 = 184;
}

/// What the moduledata says about the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleText {
    /// Address of `runtime.firstmoduledata`.
    pub moduledata: u64,
    /// `runtime.text`: the base of every `.gopclntab` entry offset.
    pub text: u64,
    pub etext: u64,
    pub minpc: u64,
    pub maxpc: u64,
}

/// Checks one candidate address. `read` returns the (relocated) 8-byte word at an address.
pub fn validate<B: TableBytes>(
    addr: u64,
    table: &Pclntab<B>,
    read: &impl Fn(u64) -> Option<u64>,
    is_code: &impl Fn(u64, u64) -> bool,
) -> Result<ModuleText, String> {
    let word = |o: u64| read(addr + o).ok_or_else(|| format!("cannot read moduledata+{o:#x}"));
    if word(0)? != table.addr {
        return Err("does not point at .gopclntab".into());
    }
    for (what, o, want) in [
        ("funcnametab", off::FUNCNAMETAB, table.funcname_offset),
        ("cutab", off::CUTAB, table.cu_offset),
        ("filetab", off::FILETAB, table.filetab_offset),
        ("pctab", off::PCTAB, table.pctab_offset),
        ("pclntable", off::PCLNTABLE, table.pcln_offset),
        ("ftab", off::FTAB, table.pcln_offset),
    ] {
        if word(o)? != table.addr + want {
            return Err(format!("{what} disagrees with the table header"));
        }
    }
    if word(off::FTAB_LEN)? != table.nfunc as u64 + 1 {
        return Err("ftab length disagrees with the function count".into());
    }
    let text = word(off::TEXT)?;
    let etext = word(off::ETEXT)?;
    let minpc = word(off::MINPC)?;
    let maxpc = word(off::MAXPC)?;
    let first = table.ftab(0).map_err(|e| e.to_string())?.0 as u64;
    let last = table.text_end_off().map_err(|e| e.to_string())? as u64;
    // Entries are offsets from `text`, or (Go 1.16-1.17) from the table's first entry.
    let origin = if table.format.absolute_entries() {
        table.origin()
    } else {
        text
    };
    if minpc != origin + first || maxpc != origin + last || text > minpc {
        return Err(format!(
            "minpc/maxpc {minpc:#x}/{maxpc:#x} disagree with text {text:#x}"
        ));
    }
    if etext < maxpc || !is_code(text, maxpc) {
        return Err(format!(
            "text {text:#x}..{maxpc:#x} is not inside an executable segment"
        ));
    }
    if !table.format.absolute_entries() && table.text_start != 0 && table.text_start != text {
        return Err(format!(
            "pcHeader.textStart {:#x} disagrees with moduledata.text {text:#x}",
            table.text_start
        ));
    }
    Ok(ModuleText {
        moduledata: addr,
        text,
        etext,
        minpc,
        maxpc,
    })
}

/// Finds the one moduledata among `candidates` (addresses holding a pointer to the table).
pub fn find<B: TableBytes>(
    candidates: impl IntoIterator<Item = u64>,
    table: &Pclntab<B>,
    read: &impl Fn(u64) -> Option<u64>,
    is_code: &impl Fn(u64, u64) -> bool,
) -> Result<ModuleText, BinaryError> {
    let mut reasons = Vec::new();
    let mut found: Option<ModuleText> = None;
    for addr in candidates {
        match validate(addr, table, read, is_code) {
            Ok(m) if found.is_some_and(|f| f != m) => {
                return Err(BinaryError::TextBase(format!(
                    "two module descriptions disagree ({:#x} and {addr:#x})",
                    found.map_or(0, |f| f.moduledata)
                )));
            }
            Ok(m) => found = Some(m),
            Err(why) => reasons.push(format!("{addr:#x}: {why}")),
        }
    }
    found.ok_or_else(|| {
        BinaryError::TextBase(if reasons.is_empty() {
            "no pointer to .gopclntab in the data sections".into()
        } else {
            reasons.join("; ")
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::inspect::binary::pclntab::tests::synthetic;

    const TAB: u64 = 0x50_0000;
    const MD: u64 = 0x60_0000;
    const TEXT: u64 = 0x40_1000;

    fn moduledata(table: &Pclntab<&Vec<u8>>, text: u64) -> HashMap<u64, u64> {
        let mut m = HashMap::new();
        m.insert(MD, TAB);
        m.insert(MD + off::FUNCNAMETAB, TAB + table.funcname_offset);
        m.insert(MD + off::CUTAB, TAB + table.cu_offset);
        m.insert(MD + off::FILETAB, TAB + table.filetab_offset);
        m.insert(MD + off::PCTAB, TAB + table.pctab_offset);
        m.insert(MD + off::PCLNTABLE, TAB + table.pcln_offset);
        m.insert(MD + off::FTAB, TAB + table.pcln_offset);
        m.insert(MD + off::FTAB_LEN, table.nfunc as u64 + 1);
        m.insert(MD + off::MINPC, text);
        m.insert(MD + off::MAXPC, text + 0x90);
        m.insert(MD + off::TEXT, text);
        m.insert(MD + off::ETEXT, text + 0x90);
        m
    }

    #[test]
    fn finds_the_text_base_when_text_start_is_zero() {
        let data = synthetic(&[(0, "main.main"), (0x40, "runtime.gfput")], 0x90, 0);
        let table = Pclntab::parse(&data, TAB).unwrap();
        let mem = moduledata(&table, TEXT);
        let read = |a: u64| mem.get(&a).copied();
        let is_code = |lo: u64, hi: u64| lo >= 0x40_0000 && hi <= 0x50_0000;
        let m = find([0x12345, MD], &table, &read, &is_code).unwrap();
        assert_eq!(m.text, TEXT);
        assert_eq!(m.moduledata, MD);
    }

    #[test]
    fn refuses_inconsistent_descriptions() {
        let data = synthetic(&[(0, "main.main"), (0x40, "runtime.gfput")], 0x90, 0);
        let table = Pclntab::parse(&data, TAB).unwrap();
        let is_code = |lo: u64, hi: u64| lo >= 0x40_0000 && hi <= 0x50_0000;
        let mut mem = moduledata(&table, TEXT);
        mem.insert(MD + off::MINPC, TEXT + 8);
        let read = |a: u64| mem.get(&a).copied();
        assert!(find([MD], &table, &read, &is_code).is_err());

        let mem = moduledata(&table, 0x90_0000); // text outside any executable segment
        let read = |a: u64| mem.get(&a).copied();
        let e = find([MD], &table, &read, &is_code).unwrap_err();
        assert!(e.to_string().contains("executable"), "{e}");
    }

    #[test]
    fn text_start_must_agree_when_present() {
        let data = synthetic(
            &[(0, "main.main"), (0x40, "runtime.gfput")],
            0x90,
            TEXT + 0x10,
        );
        let table = Pclntab::parse(&data, TAB).unwrap();
        let mem = moduledata(&table, TEXT);
        let read = |a: u64| mem.get(&a).copied();
        let is_code = |_: u64, _: u64| true;
        assert!(find([MD], &table, &read, &is_code).is_err());
    }
}
