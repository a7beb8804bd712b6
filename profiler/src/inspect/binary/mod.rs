//! Reading a Go executable: its release, its functions (from `.symtab`, or from `.gopclntab`
//! when stripped), its validated text base, and the bytes behind any virtual address.

pub mod buildinfo;
pub mod dwarf;
pub mod frames;
pub mod moduledata;
pub mod pclntab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::elf::{self, FileHeader64};
use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};

use crate::inspect::goruntime::{GoVersion, sections};

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ELF executable ({0})")]
    NotElf(String),
    #[error("not a Go program ({0})")]
    NotGo(&'static str),
    #[error("unsupported architecture {0}: gprof supports x86_64 and aarch64")]
    Arch(String),
    #[error("bad .go.buildinfo: {0}")]
    BuildInfo(String),
    #[error("bad .gopclntab: {0}")]
    Pclntab(String),
    #[error("cannot validate the text base: {0}")]
    TextBase(String),
    #[error("runtime function {0} not found")]
    MissingFunction(String),
    #[error("runtime function {0} appears several times in .gopclntab")]
    AmbiguousFunction(String),
    #[error("{name} is at {symtab:#x} in .symtab but at {pclntab:#x} by .gopclntab")]
    SymbolMismatch {
        name: String,
        symtab: u64,
        pclntab: u64,
    },
    #[error("unreadable DWARF: {0}")]
    Dwarf(String),
    #[error("address {0:#x} is not backed by the file")]
    Unmapped(u64),
    #[error("malformed: {0}")]
    Malformed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// Where function addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    /// `.symtab`, cross-checked against `.gopclntab`.
    Symtab,
    /// `.gopclntab` alone (stripped binary).
    Pclntab,
}

impl SymbolSource {
    pub fn name(self) -> &'static str {
        match self {
            SymbolSource::Symtab => "symtab (checked against pclntab)",
            SymbolSource::Pclntab => "pclntab (stripped binary)",
        }
    }
}

/// Why an ELF file is not a Go program.
const NO_FUNCTION_TABLE: &str = "no Go function table: no .gopclntab section, none in its data";

/// Where a binary's Go release was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSource {
    /// The `.go.buildinfo` section (what `go version` reads).
    BuildInfo,
    /// The build-info blob, found in the data though its section is gone.
    BuildInfoBlob,
    /// `runtime.buildVersion`, by its symbol.
    BuildVersionSymbol,
    /// `runtime.buildVersion`, found through the machine code of `runtime.schedinit` (which
    /// tests it against ""), in a binary without build info or symbols.
    BuildVersionDecoded,
}

impl VersionSource {
    pub fn describe(self) -> &'static str {
        match self {
            VersionSource::BuildInfo => ".go.buildinfo",
            VersionSource::BuildInfoBlob => "the build-info blob (no .go.buildinfo section)",
            VersionSource::BuildVersionSymbol => {
                "runtime.buildVersion, by its symbol (no build info)"
            }
            VersionSource::BuildVersionDecoded => {
                "runtime.buildVersion, found through runtime.schedinit's code (no build info, no symbols)"
            }
        }
    }
}

/// A function's address range `[entry, end)`; `end` includes the alignment padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub entry: u64,
    pub end: u64,
    /// `_func.funcID`: 0 for ordinary functions. Go emits ABI wrappers under the same name
    /// as the function they wrap, with a nonzero ID.
    pub func_id: u8,
    /// Where a recovered panic resumes (the `deferreturn` call), as an offset from the entry;
    /// 0 when the function has no defer. Code reached only from there ends in a RET too.
    pub deferreturn: u32,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    exec: bool,
    write: bool,
}

/// A position in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// What outlives the reading of an executable: enough to attach to its processes.
#[derive(Clone, Debug)]
pub struct ExecutableInfo {
    pub path: PathBuf,
    pub version: GoVersion,
    pub pie: bool,
    /// The lowest PT_LOAD address and its file offset (anchors a PIE's load bias).
    pub first_load: Option<(u64, u64)>,
    /// The Go functions' code, `[minpc, maxpc)` (file addresses).
    pub text: std::ops::Range<u64>,
}

/// One Go executable, read and validated.
#[derive(Debug)]
pub struct GoBinary {
    pub path: PathBuf,
    pub version: GoVersion,
    pub version_source: VersionSource,
    pub arch: Arch,
    /// Position-independent (ET_DYN): runtime addresses are file addresses plus a load bias.
    pub pie: bool,
    pub symbol_source: SymbolSource,
    pub has_dwarf: bool,
    pub text: moduledata::ModuleText,
    /// What `.gopclntab`'s function entries are offsets from: `moduledata.text`, or for
    /// Go 1.16-1.17 tables of absolute pcs, the first function's entry.
    pc_base: u64,
    functions: Vec<Function>,
    by_name: HashMap<String, Vec<usize>>,
    /// Runtime data symbols from `.symtab`, when present.
    data_symbols: HashMap<String, u64>,
    /// Runtime function symbols from `.symtab`, when present.
    text_symbols: HashMap<String, u64>,
    segments: Vec<Segment>,
    /// `.gopclntab`: its address and its byte range in the file.
    pclntab: (u64, std::ops::Range<usize>),
    /// R_*_RELATIVE relocations: address -> value the loader stores there (PIE pointers).
    relocations: HashMap<u64, u64>,
    bytes: Vec<u8>,
    /// The file the bytes were read from, kept open (see [`GoBinary::frame_table`]).
    file: Option<std::sync::Arc<std::fs::File>>,
}

impl GoBinary {
    /// Reads and validates `path` (e.g. `/proc/PID/exe`).
    pub fn open(path: &Path) -> Result<Self, BinaryError> {
        use std::io::Read as _;
        let io = |source| BinaryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut binary = Self::parse(path, bytes)?;
        binary.file = Some(std::sync::Arc::new(file));
        Ok(binary)
    }

    /// The file the bytes were read from, still open (None for a binary parsed from bytes).
    pub fn file(&self) -> Option<std::sync::Arc<std::fs::File>> {
        self.file.clone()
    }

    /// The function table read through the open file, for lookups while the binary's
    /// processes are watched (None for a binary parsed from bytes alone).
    pub fn frame_table(&self) -> Option<frames::FrameTable> {
        let file = self.file.clone()?;
        let range = self.pclntab.1.clone();
        let table = pclntab::Pclntab::parse(
            pclntab::FileTable {
                file,
                start: range.start as u64,
                len: range.len(),
            },
            self.pclntab.0,
        )
        .ok()?;
        // Inlining trees live in the function data, `moduledata.gofunc` onwards (read-only).
        let gofunc = crate::inspect::goruntime::moduledata_gofunc(&self.version)
            .and_then(|off| self.read_u64(self.text.moduledata + off))
            .filter(|&a| {
                self.segments
                    .iter()
                    .any(|s| !s.exec && !s.write && a >= s.vaddr && a < s.vaddr + s.filesz)
            });
        let segments = self
            .segments
            .iter()
            .map(|s| (s.vaddr, s.filesz, s.offset))
            .collect();
        Some(frames::FrameTable::new(
            table,
            self.pc_base,
            self.arch,
            gofunc,
            segments,
        ))
    }

    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, BinaryError> {
        let file = ElfFile64::<Endianness>::parse(bytes.as_slice())
            .map_err(|e| BinaryError::NotElf(e.to_string()))?;
        let header: &FileHeader64<Endianness> = file.elf_header();
        let endian = file.endian();
        let arch = match header.e_machine(endian) {
            elf::EM_X86_64 => Arch::X86_64,
            elf::EM_AARCH64 => Arch::Aarch64,
            other => return Err(BinaryError::Arch(format!("ELF machine {other}"))),
        };
        let pie = header.e_type(endian) == elf::ET_DYN;
        let segments: Vec<Segment> = header
            .program_headers(endian, bytes.as_slice())
            .map_err(|e| BinaryError::NotElf(e.to_string()))?
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .map(|p| Segment {
                vaddr: p.p_vaddr(endian),
                memsz: p.p_memsz(endian),
                offset: p.p_offset(endian),
                filesz: p.p_filesz(endian),
                exec: p.p_flags(endian) & elf::PF_X != 0,
                write: p.p_flags(endian) & elf::PF_W != 0,
            })
            .collect();

        let section = |name: &'static str| file.section_by_name(name);
        let buildinfo = section(sections::BUILDINFO);
        // The function table: its own section, or (some position-independent links) merged
        // into a read-only data section, found by its header and accepted only when a
        // moduledata points at it.
        let named = sections::PCLNTAB_NAMES
            .iter()
            .find_map(|name| file.section_by_name(name));
        let mut tables: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        match named {
            Some(s) => tables.extend(file_range(&s).map(|r| (s.address(), r))),
            None => {
                for name in sections::PCLNTAB_HOSTS {
                    let Some(host) = file.section_by_name(name) else {
                        continue;
                    };
                    let (Ok(data), Some(range)) = (host.data(), file_range(&host)) else {
                        continue;
                    };
                    for at in pclntab::header_candidates(data) {
                        tables.push((host.address() + at as u64, range.start + at..range.end));
                    }
                }
            }
        }
        if tables.is_empty() {
            return Err(BinaryError::NotGo(NO_FUNCTION_TABLE));
        }
        let has_dwarf = section(".debug_info").is_some();

        let mut relocations = HashMap::new();
        if let Some(relocs) = file.dynamic_relocations() {
            for (at, r) in relocs {
                let relative = matches!(r.flags(), RelocationFlags::Elf { r_type }
                    if r_type == elf::R_X86_64_RELATIVE || r_type == elf::R_AARCH64_RELATIVE);
                if relative
                    && matches!(
                        r.target(),
                        RelocationTarget::Absolute | RelocationTarget::Symbol(_)
                    )
                {
                    relocations.insert(at, r.addend() as u64);
                }
            }
        }

        let mut data_symbols = HashMap::new();
        let mut symtab_funcs = HashMap::new();
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            if !name.starts_with("runtime.") {
                continue;
            }
            match sym.kind() {
                object::SymbolKind::Text => {
                    symtab_funcs.insert(name.to_string(), sym.address());
                }
                object::SymbolKind::Data | object::SymbolKind::Unknown => {
                    data_symbols.insert(name.to_string(), sym.address());
                }
                _ => {}
            }
        }
        let symbol_source = if symtab_funcs.is_empty() {
            SymbolSource::Pclntab
        } else {
            SymbolSource::Symtab
        };

        let buildinfo_data = match buildinfo {
            Some(s) => Some(
                s.data()
                    .map_err(|e| BinaryError::BuildInfo(e.to_string()))?
                    .to_vec(),
            ),
            None => None,
        };
        // Without its section, the build-info blob may still be in the data.
        let blob = buildinfo_data.is_none().then(|| {
            sections::BUILDINFO_HOSTS
                .iter()
                .filter_map(|name| file.section_by_name(name)?.data().ok())
                .find_map(buildinfo::find_blob)
                .map(<[u8]>::to_vec)
        });
        let moduledata_sections: Vec<(u64, Vec<u8>)> = sections::MODULEDATA_CANDIDATES
            .iter()
            .filter_map(|name| file.section_by_name(name))
            .filter_map(|s| Some((s.address(), s.data().ok()?.to_vec())))
            .collect();
        drop(file);

        let mut binary = Self {
            path: path.to_path_buf(),
            version: GoVersion {
                raw: String::new(),
                major: 0,
                minor: 0,
                patch: 0,
            },
            version_source: VersionSource::BuildInfo,
            arch,
            pie,
            symbol_source,
            has_dwarf,
            text: moduledata::ModuleText {
                moduledata: 0,
                text: 0,
                etext: 0,
                minpc: 0,
                maxpc: 0,
            },
            pc_base: 0,
            functions: Vec::new(),
            by_name: HashMap::new(),
            data_symbols,
            text_symbols: HashMap::new(),
            segments,
            pclntab: (0, 0..0),
            relocations,
            bytes: Vec::new(),
            file: None,
        };
        // Borrow the bytes only through the helpers below from here on.
        let from_info = match (&buildinfo_data, &blob) {
            (Some(data), _) => Some((data.as_slice(), VersionSource::BuildInfo)),
            (None, Some(Some(blob))) => Some((blob.as_slice(), VersionSource::BuildInfoBlob)),
            _ => None,
        };
        if let Some((data, source)) = from_info {
            let raw = buildinfo::version(data, |addr, ptr_size| {
                binary.read_go_string(&bytes, addr, ptr_size)
            })?;
            binary.version = GoVersion::parse(&raw).ok_or_else(|| {
                BinaryError::BuildInfo(format!("unrecognized Go version {raw:?}"))
            })?;
            binary.version_source = source;
        }

        let read = |addr: u64| binary.read_u64_in(&bytes, addr);
        let is_code = |lo: u64, hi: u64| {
            binary
                .segments
                .iter()
                .any(|s| s.exec && lo >= s.vaddr && hi <= s.vaddr + s.memsz)
        };
        // The first table a moduledata accepts (a named section has one candidate).
        let mut found = None;
        let mut last_error = None;
        for (addr, range) in &tables {
            let Some(data) = bytes.get(range.clone()) else {
                continue;
            };
            let table = match pclntab::Pclntab::parse(data, *addr) {
                Ok(t) => t,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let mut candidates: Vec<u64> = moduledata_sections
                .iter()
                .flat_map(|(at, data)| {
                    data.chunks_exact(8)
                        .enumerate()
                        .filter(|(_, w)| u64::from_le_bytes((*w).try_into().expect("8")) == *addr)
                        .map(move |(i, _)| at + 8 * i as u64)
                })
                .collect();
            candidates.extend(
                binary
                    .relocations
                    .iter()
                    .filter(|&(_, &v)| v == *addr)
                    .map(|(&at, _)| at),
            );
            candidates.sort_unstable();
            candidates.dedup();
            match moduledata::find(candidates, &table, &read, &is_code) {
                Ok(text) => {
                    found = Some((table, text, *addr, range.clone()));
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some((table, text, pcln_addr, pcln_range)) = found else {
            return Err(last_error.unwrap_or(BinaryError::NotGo(NO_FUNCTION_TABLE)));
        };
        binary.text = text;
        binary.pclntab = (pcln_addr, pcln_range);

        if table.format.absolute_entries() && pie {
            return Err(BinaryError::Pclntab(
                "position-independent Go 1.16-1.17 binaries are not supported (their function table holds absolute, relocated addresses)".into(),
            ));
        }
        let base = if table.format.absolute_entries() {
            table.origin()
        } else {
            binary.text.text
        };
        binary.pc_base = base;
        for f in table.funcs() {
            let f = f?;
            binary.functions.push(Function {
                name: f.name.to_string(),
                entry: base + f.entry_off as u64,
                end: base + f.end_off as u64,
                func_id: f.func_id,
                deferreturn: f.deferreturn,
            });
        }
        binary.functions.sort_by_key(|f| f.entry);
        for (i, f) in binary.functions.iter().enumerate() {
            binary.by_name.entry(f.name.clone()).or_default().push(i);
        }
        if let Some(&text_sym) = binary
            .data_symbols
            .get("runtime.text")
            .or(symtab_funcs.get("runtime.text"))
            && text_sym != base
        {
            return Err(BinaryError::TextBase(format!(
                "runtime.text is {text_sym:#x} in .symtab but {base:#x} in the moduledata"
            )));
        }
        binary.text_symbols = symtab_funcs;
        binary.bytes = bytes;
        if from_info.is_none() {
            let (raw, source) = binary.build_version()?;
            binary.version = GoVersion::parse(&raw).ok_or_else(|| {
                BinaryError::BuildInfo(format!("unrecognized Go version {raw:?}"))
            })?;
            binary.version_source = source;
        }
        Ok(binary)
    }

    /// `runtime.buildVersion` (the release string the linker stores), for binaries without
    /// build info: by its symbol, or as the one Go string `runtime.schedinit` reads whose
    /// value names a release (it checks `buildVersion == ""` at start-up).
    fn build_version(&self) -> Result<(String, VersionSource), BinaryError> {
        let string_at = |header: u64| {
            let s = self.read_go_string(&self.bytes, header, 8)?;
            GoVersion::parse(&s).map(|_| s)
        };
        if let Some(s) = self.data_symbol("runtime.buildVersion").and_then(string_at) {
            return Ok((s, VersionSource::BuildVersionSymbol));
        }
        let none = || {
            BinaryError::BuildInfo(
                "no build info, and runtime.buildVersion could not be found".into(),
            )
        };
        let schedinit = self.function("runtime.schedinit").map_err(|_| none())?;
        let refs = crate::inspect::disasm::global_refs(self, schedinit).map_err(|_| none())?;
        // The comparison reads the string's length: the header starts 8 bytes before.
        let mut found: Vec<String> = refs
            .iter()
            .flat_map(|r| [r.addr, r.addr.wrapping_sub(8)])
            .filter_map(string_at)
            .collect();
        found.sort();
        found.dedup();
        match found.as_slice() {
            [one] => Ok((one.clone(), VersionSource::BuildVersionDecoded)),
            [] => Err(none()),
            many => Err(BinaryError::BuildInfo(format!(
                "no build info, and runtime.schedinit reads several release strings: {}",
                many.join(", ")
            ))),
        }
    }

    fn file_range_in(&self, vaddr: u64, len: u64) -> Option<std::ops::Range<usize>> {
        let end = vaddr.checked_add(len)?;
        let seg = self
            .segments
            .iter()
            .find(|s| vaddr >= s.vaddr && end <= s.vaddr + s.filesz)?;
        let start = usize::try_from(vaddr - seg.vaddr + seg.offset).ok()?;
        Some(start..start.checked_add(usize::try_from(len).ok()?)?)
    }

    fn read_u64_in(&self, bytes: &[u8], vaddr: u64) -> Option<u64> {
        if let Some(&v) = self.relocations.get(&vaddr) {
            return Some(v);
        }
        let r = self.file_range_in(vaddr, 8)?;
        Some(u64::from_le_bytes(bytes.get(r)?.try_into().ok()?))
    }
}

/// The file range of a section's bytes.
fn file_range<'d>(s: &impl ObjectSection<'d>) -> Option<std::ops::Range<usize>> {
    let (off, len) = s.file_range()?;
    let start = usize::try_from(off).ok()?;
    Some(start..start.checked_add(usize::try_from(len).ok()?)?)
}

impl GoBinary {
    fn read_go_string(&self, bytes: &[u8], header: u64, ptr_size: usize) -> Option<String> {
        if ptr_size != 8 {
            return None;
        }
        let ptr = self.read_u64_in(bytes, header)?;
        let len = self.read_u64_in(bytes, header + 8)?;
        if len > 256 {
            return None;
        }
        let r = self.file_range_in(ptr, len)?;
        String::from_utf8(bytes.get(r)?.to_vec()).ok()
    }

    /// The bytes at `[vaddr, vaddr + len)`, if the file backs them.
    pub fn bytes_at(&self, vaddr: u64, len: u64) -> Result<&[u8], BinaryError> {
        self.file_range_in(vaddr, len)
            .and_then(|r| self.bytes.get(r))
            .ok_or(BinaryError::Unmapped(vaddr))
    }

    /// The 8-byte word at `vaddr` as the loader leaves it (PIE relocations applied, bias 0).
    pub fn read_u64(&self, vaddr: u64) -> Option<u64> {
        self.read_u64_in(&self.bytes, vaddr)
    }

    /// File offset of `vaddr`, which is what uprobes attach to.
    pub fn file_offset(&self, vaddr: u64) -> Result<u64, BinaryError> {
        self.file_range_in(vaddr, 1)
            .map(|r| r.start as u64)
            .ok_or(BinaryError::Unmapped(vaddr))
    }

    /// The function called `name`; where an ABI wrapper shares the name, the real body.
    /// Every function of the table, in address order.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    pub fn function(&self, name: &str) -> Result<&Function, BinaryError> {
        let all = self
            .by_name
            .get(name)
            .ok_or_else(|| BinaryError::MissingFunction(name.to_string()))?;
        if let [one] = all.as_slice() {
            return self.check_symtab(&self.functions[*one]);
        }
        let mut ordinary = all
            .iter()
            .map(|&i| &self.functions[i])
            .filter(|f| f.func_id == 0);
        let f = match (ordinary.next(), ordinary.next()) {
            (Some(f), None) => f,
            _ => return Err(BinaryError::AmbiguousFunction(name.to_string())),
        };
        self.check_symtab(f)
    }

    /// With a symbol table, a function must sit where `.gopclntab` puts it.
    fn check_symtab<'a>(&self, f: &'a Function) -> Result<&'a Function, BinaryError> {
        match self.text_symbols.get(&f.name) {
            Some(&addr) if addr != f.entry => Err(BinaryError::SymbolMismatch {
                name: f.name.clone(),
                symtab: addr,
                pclntab: f.entry,
            }),
            _ => Ok(f),
        }
    }

    /// The function containing `pc`.
    pub fn function_at(&self, pc: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.entry <= pc);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (pc < f.end).then_some(f)
    }

    /// The source position of `pc` (a file address): function, file and line, from
    /// `.gopclntab` (so also in stripped binaries). For a return address (a `go`
    /// statement's PC), pass the address of the call: `pc - 1`.
    pub fn source_line(&self, pc: u64) -> Option<SourceLine> {
        let data = self.bytes.get(self.pclntab.1.clone())?;
        let table = pclntab::Pclntab::parse(data, self.pclntab.0).ok()?;
        let off = u32::try_from(pc.checked_sub(self.pc_base)?).ok()?;
        let i = table.func_index(off).ok()??;
        let function = table.func(i).ok()?.name.to_string();
        let (file, line) = table.file_line(i, off).ok()?;
        Some(SourceLine {
            function,
            file: file.to_string(),
            line,
        })
    }

    /// The machine code of a function.
    pub fn code(&self, f: &Function) -> Result<&[u8], BinaryError> {
        self.bytes_at(f.entry, f.end - f.entry)
    }

    /// A runtime data symbol's address from `.symtab` (None when stripped).
    pub fn data_symbol(&self, name: &str) -> Option<u64> {
        self.data_symbols.get(name).copied()
    }

    /// Whether `[vaddr, vaddr+len)` lies in a writable segment (where runtime globals live).
    pub fn is_writable_data(&self, vaddr: u64, len: u64) -> bool {
        self.segments.iter().any(|s| {
            s.write
                && vaddr >= s.vaddr
                && vaddr
                    .checked_add(len)
                    .is_some_and(|e| e <= s.vaddr + s.memsz)
        })
    }

    /// The struct types of the binary's DWARF (None without DWARF). Parsed on demand: it
    /// costs time and memory on large binaries.
    pub fn dwarf_types(&self) -> Result<Option<dwarf::Types>, BinaryError> {
        if !self.has_dwarf {
            return Ok(None);
        }
        let file = ElfFile64::<Endianness>::parse(self.bytes.as_slice())
            .map_err(|e| BinaryError::NotElf(e.to_string()))?;
        dwarf::Types::read(&file)
    }

    /// The small part of this binary that attaching needs (the file's bytes are dropped).
    pub fn info(&self) -> ExecutableInfo {
        ExecutableInfo {
            path: self.path.clone(),
            version: self.version.clone(),
            pie: self.pie,
            first_load: self
                .segments
                .iter()
                .min_by_key(|s| s.vaddr)
                .map(|s| (s.vaddr, s.offset)),
            text: self.text.minpc..self.text.maxpc,
        }
    }
}

/// Whether `path` is a Go executable, reading only its ELF headers (cheap for the many
/// non-Go processes the daemon sees).
pub fn is_go_executable(path: &Path) -> Result<bool, BinaryError> {
    let file = std::fs::File::open(path).map_err(|source| BinaryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return Ok(false);
    };
    // Any of Go's own sections: build info, the function table, the build ID note (some
    // release pipelines drop the first, some links merge the second into other data).
    Ok(sections::GO_MARKERS
        .iter()
        .chain(sections::PCLNTAB_NAMES)
        .any(|name| elf.section_by_name(name).is_some()))
}
