//! Machine-code decoding: where on a runtime function a probe may sit, where it returns, and
//! which globals it touches. Nothing here guesses: every address handed out is the start of
//! an instruction found by decoding the function from its entry.

mod arm64;
mod x86;

use crate::inspect::binary::{Arch, BinaryError, Function, GoBinary};
use crate::inspect::goruntime::Stack;

#[derive(Debug, thiserror::Error)]
pub enum DisasmError {
    #[error("{function}: undecodable instruction at {addr:#x}")]
    Undecodable { function: String, addr: u64 },
    #[error("{function}: {why}")]
    Prologue { function: String, why: String },
    #[error("{function}: no RET instruction")]
    NoReturn { function: String },
    #[error(transparent)]
    Binary(#[from] BinaryError),
}

/// How a probe address was chosen; shown by `gprof check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbePlacement {
    /// On the conditional branch of the stack-bound check (`JBE morestack`): the kernel
    /// emulates branches instead of single-stepping them. Only for system-stack functions,
    /// whose check never fails, so the probe fires once per call.
    StackCheckBranch,
    /// On the first instruction after the stack check: a goroutine-stack function re-enters
    /// its prologue after growing its stack, and this point is passed once per call.
    AfterStackCheck,
    /// The first instruction (the function has no stack check).
    Entry,
    /// A RET instruction.
    Return,
}

impl ProbePlacement {
    pub fn describe(self) -> &'static str {
        match self {
            ProbePlacement::StackCheckBranch => "stack-check branch (emulated, once per call)",
            ProbePlacement::AfterStackCheck => "after the stack check (once per call)",
            ProbePlacement::Entry => "function entry",
            ProbePlacement::Return => "RET instruction",
        }
    }
}

/// A validated probe address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePoint {
    pub addr: u64,
    pub placement: ProbePlacement,
    /// The instruction at `addr`, as text.
    pub instruction: String,
}

/// A memory operand with an absolute address (RIP-relative on amd64), e.g. a global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalRef {
    pub addr: u64,
    /// Access size in bytes (0 when the instruction only computes the address, as LEA does).
    pub size: u32,
}

/// A decoder's view of one function: its name, code and entry address.
type Decode<Extra, T> = fn(&str, &[u8], u64, Extra) -> Result<T, DisasmError>;
type Scan<T> = fn(&str, &[u8], u64) -> Result<Vec<T>, DisasmError>;
type Returns = for<'a> fn(&str, &[u8], u64, &'a [u64]) -> Result<Vec<ProbePoint>, DisasmError>;

/// The decoders of one instruction set.
struct Isa {
    entry_site: Decode<Stack, ProbePoint>,
    /// The extra addresses are where control also enters (a recovered panic's resume point).
    return_sites: Returns,
    global_refs: Scan<GlobalRef>,
    displacements: Scan<u64>,
    call_targets: Scan<(u64, u64)>,
}

fn isa(arch: Arch) -> &'static Isa {
    static X86: Isa = Isa {
        entry_site: x86::entry_site,
        return_sites: x86::return_sites,
        global_refs: x86::global_refs,
        displacements: x86::displacements,
        call_targets: x86::call_targets,
    };
    static ARM64: Isa = Isa {
        entry_site: arm64::entry_site,
        return_sites: arm64::return_sites,
        global_refs: arm64::global_refs,
        displacements: arm64::displacements,
        call_targets: arm64::call_targets,
    };
    match arch {
        Arch::X86_64 => &X86,
        Arch::Aarch64 => &ARM64,
    }
}

/// The entry probe site of `f`, chosen by where `f` runs (see [`ProbePlacement`]). The arguments
/// are verified to still be in their registers at the chosen instruction.
pub fn entry_site(bin: &GoBinary, f: &Function, stack: Stack) -> Result<ProbePoint, DisasmError> {
    (isa(bin.arch).entry_site)(&f.name, bin.code(f)?, f.entry, stack)
}

/// Every RET instruction of `f`.
pub fn return_sites(bin: &GoBinary, f: &Function) -> Result<Vec<ProbePoint>, DisasmError> {
    // Besides the entry, control enters at the deferreturn call when a panic is recovered.
    let resumes: Vec<u64> = (f.deferreturn != 0)
        .then(|| f.entry + u64::from(f.deferreturn))
        .into_iter()
        .collect();
    (isa(bin.arch).return_sites)(&f.name, bin.code(f)?, f.entry, &resumes)
}

/// The absolute-addressed memory operands of `f` (its globals), in code order.
pub fn global_refs(bin: &GoBinary, f: &Function) -> Result<Vec<GlobalRef>, DisasmError> {
    (isa(bin.arch).global_refs)(&f.name, bin.code(f)?, f.entry)
}

/// The direct calls in `code` (the function `name`, at `entry`), in code order: (the call's
/// address, its target).
pub fn call_targets(
    arch: Arch,
    name: &str,
    code: &[u8],
    entry: u64,
) -> Result<Vec<(u64, u64)>, DisasmError> {
    (isa(arch).call_targets)(name, code, entry)
}

/// The displacements of `f`'s register-based memory operands (e.g. struct field offsets).
pub fn displacements(bin: &GoBinary, f: &Function) -> Result<Vec<u64>, DisasmError> {
    (isa(bin.arch).displacements)(&f.name, bin.code(f)?, f.entry)
}
