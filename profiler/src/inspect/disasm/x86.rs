//! amd64 decoding with iced-x86.
//!
//! A Go function with a frame starts with the stack-bound check
//! ```text
//! CMPQ SP, 16(R14)            (or LEAQ -N(SP), R12; CMPQ R12, 16(R14) for larger frames)
//! JBE  morestack_stub         (the stub at the function's end calls morestack, then
//!                              jumps back to the entry)
//! ```
//! R14 holds the current g and 16(R14) is `g.stackguard0`. Functions marked
//! `//go:systemstack` compare against 24(R14), `g.stackguard1`, instead.

use iced_x86::{
    ConditionCode, Decoder, DecoderOptions, FlowControl, Formatter, Instruction,
    InstructionInfoFactory, IntelFormatter, Mnemonic, OpAccess, OpKind, Register,
};

use super::{DisasmError, GlobalRef, ProbePlacement, ProbePoint};
use crate::inspect::goruntime::Stack;

/// `g.stackguard0` and `g.stackguard1`, the bounds a prologue compares SP against.
const STACKGUARDS: [u64; 2] = [0x10, 0x18];
/// How far into a function the stack check may start.
const PROLOGUE_WINDOW: usize = 4;
/// Registers that carry arguments in Go's ABIInternal, plus R14 (g): none may be written
/// before an entry probe, or the probe would read the wrong values.
const ABI_REGS: &[Register] = &[
    Register::RAX,
    Register::RBX,
    Register::RCX,
    Register::RDI,
    Register::RSI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R14,
];

fn decode_all(name: &str, code: &[u8], entry: u64) -> Result<Vec<Instruction>, DisasmError> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            // Functions end with INT3 padding; anything else undecodable is refused.
            if code[(insn.ip() - entry) as usize..]
                .iter()
                .all(|&b| b == 0xcc)
            {
                break;
            }
            return Err(DisasmError::Undecodable {
                function: name.to_string(),
                addr: insn.ip(),
            });
        }
        out.push(insn);
    }
    Ok(out)
}

fn text(insn: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(insn, &mut s);
    s
}

/// `CMP rsp-or-r12, [r14+0x10 or 0x18]` in either operand order.
fn is_stack_check(insn: &Instruction) -> bool {
    if insn.mnemonic() != Mnemonic::Cmp || insn.op_count() != 2 {
        return false;
    }
    let guard = |i: u32| {
        insn.op_kind(i) == OpKind::Memory
            && insn.memory_base() == Register::R14
            && insn.memory_index() == Register::None
            && STACKGUARDS.contains(&insn.memory_displacement64())
    };
    let sp = |i: u32| {
        insn.op_kind(i) == OpKind::Register
            && matches!(insn.op_register(i), Register::RSP | Register::R12)
    };
    (sp(0) && guard(1)) || (guard(0) && sp(1))
}

/// Whether `insn` writes an ABI register (or any memory: a spill would mean we are past the
/// point where arguments are only in registers).
fn clobbers_abi(insn: &Instruction, info: &mut InstructionInfoFactory) -> bool {
    let info = info.info(insn);
    let writes = |a: OpAccess| {
        matches!(
            a,
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        )
    };
    info.used_registers()
        .iter()
        .any(|r| writes(r.access()) && ABI_REGS.contains(&r.register().full_register()))
        || info.used_memory().iter().any(|m| writes(m.access()))
}

pub fn entry_site(
    name: &str,
    code: &[u8],
    entry: u64,
    stack: Stack,
) -> Result<ProbePoint, DisasmError> {
    let insns = decode_all(name, code, entry)?;
    let end = entry + code.len() as u64;
    let fail = |why: String| DisasmError::Prologue {
        function: name.to_string(),
        why,
    };
    let first = insns.first().ok_or_else(|| fail("empty function".into()))?;
    let check = insns.iter().take(PROLOGUE_WINDOW).position(is_stack_check);
    let Some(check) = check else {
        return match stack {
            // No stack check: a frameless or nosplit function, entered exactly once per call.
            Stack::System => Ok(ProbePoint {
                addr: first.ip(),
                placement: ProbePlacement::Entry,
                instruction: text(first),
            }),
            Stack::Goroutine => Err(fail(format!(
                "no recognizable stack check at the entry (first instruction: {})",
                text(first)
            ))),
        };
    };
    let branch = insns
        .get(check + 1)
        .ok_or_else(|| fail("function ends after its stack check".into()))?;
    let is_jbe = branch.flow_control() == FlowControl::ConditionalBranch
        && branch.condition_code() == ConditionCode::be;
    if !is_jbe {
        return Err(fail(format!(
            "stack check not followed by JBE but by {}",
            text(branch)
        )));
    }
    let target = branch.near_branch_target();
    if !(entry..end).contains(&target) || target <= branch.ip() {
        return Err(fail(format!(
            "stack check branches to {target:#x}, outside the function's morestack stub"
        )));
    }
    let (index, placement) = match stack {
        Stack::System => (check + 1, ProbePlacement::StackCheckBranch),
        Stack::Goroutine => (check + 2, ProbePlacement::AfterStackCheck),
    };
    let site = insns
        .get(index)
        .ok_or_else(|| fail("no instruction after the stack check".into()))?;
    let mut info = InstructionInfoFactory::new();
    if let Some(bad) = insns[..index].iter().find(|i| clobbers_abi(i, &mut info)) {
        return Err(fail(format!(
            "{} before the probe point would clobber an argument register",
            text(bad)
        )));
    }
    Ok(ProbePoint {
        addr: site.ip(),
        placement,
        instruction: text(site),
    })
}

/// amd64 code holds no data: every instruction is decoded in order from the entry, so code
/// reached only from `_resumes` is decoded too.
pub fn return_sites(
    name: &str,
    code: &[u8],
    entry: u64,
    _resumes: &[u64],
) -> Result<Vec<ProbePoint>, DisasmError> {
    let sites: Vec<ProbePoint> = decode_all(name, code, entry)?
        .iter()
        .filter(|i| i.flow_control() == FlowControl::Return)
        .map(|i| ProbePoint {
            addr: i.ip(),
            placement: ProbePlacement::Return,
            instruction: text(i),
        })
        .collect();
    if sites.is_empty() {
        return Err(DisasmError::NoReturn {
            function: name.to_string(),
        });
    }
    Ok(sites)
}

pub fn global_refs(name: &str, code: &[u8], entry: u64) -> Result<Vec<GlobalRef>, DisasmError> {
    let mut out = Vec::new();
    for insn in decode_all(name, code, entry)? {
        if !insn.is_ip_rel_memory_operand() {
            continue;
        }
        let size = if insn.mnemonic() == Mnemonic::Lea {
            0
        } else {
            insn.memory_size().size() as u32
        };
        out.push(GlobalRef {
            addr: insn.ip_rel_memory_address(),
            size,
        });
    }
    Ok(out)
}

/// Direct near calls (`CALL rel32`): (the call's address, its target).
pub fn call_targets(name: &str, code: &[u8], entry: u64) -> Result<Vec<(u64, u64)>, DisasmError> {
    Ok(decode_all(name, code, entry)?
        .iter()
        .filter(|i| i.flow_control() == FlowControl::Call && i.op0_kind() == OpKind::NearBranch64)
        .map(|i| (i.ip(), i.near_branch_target()))
        .collect())
}

pub fn displacements(name: &str, code: &[u8], entry: u64) -> Result<Vec<u64>, DisasmError> {
    Ok(decode_all(name, code, entry)?
        .iter()
        .filter(|i| {
            (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory)
                && !i.is_ip_rel_memory_operand()
                && i.memory_base() != Register::None
        })
        .map(|i| i.memory_displacement64())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: u64 = 0x1000;

    /// go1.27 `runtime.gfput`'s prologue shape: CMP RSP,[R14+16]; JBE stub; PUSH RBP; ...;
    /// RET; stub: CALL morestack; JMP entry.
    fn small_frame() -> Vec<u8> {
        let mut c = vec![
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x76, 0x08, // jbe +8 -> stub
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp, rsp
            0x5d, // pop rbp
            0xc3, // ret
        ];
        c.extend([0x90, 0x90]); // pad to the stub at 0x0e
        c.extend([0xe8, 0, 0, 0, 0]); // call (morestack)
        c.extend([0xeb, 0xeb]); // jmp back
        c.extend([0xcc, 0xcc, 0xcc]);
        c
    }

    #[test]
    fn system_stack_functions_probe_the_branch() {
        let s = entry_site("f", &small_frame(), ENTRY, Stack::System).unwrap();
        assert_eq!(s.addr, ENTRY + 4);
        assert_eq!(s.placement, ProbePlacement::StackCheckBranch);
        assert!(s.instruction.starts_with("jbe"), "{}", s.instruction);
    }

    #[test]
    fn goroutine_stack_functions_probe_after_the_check() {
        let s = entry_site("f", &small_frame(), ENTRY, Stack::Goroutine).unwrap();
        assert_eq!(s.addr, ENTRY + 6);
        assert_eq!(s.placement, ProbePlacement::AfterStackCheck);
        assert_eq!(s.instruction, "push rbp");
    }

    #[test]
    fn large_frames_use_r12() {
        let mut c = vec![
            0x4c, 0x8d, 0xa4, 0x24, 0x68, 0xff, 0xff, 0xff, // lea r12, [rsp-0x98]
            0x4d, 0x3b, 0x66, 0x10, // cmp r12, [r14+0x10]
            0x76, 0x02, // jbe +2
            0x55, // push rbp
            0xc3, // ret
        ];
        c.extend([0xe8, 0, 0, 0, 0, 0xeb, 0xe9]);
        let s = entry_site("f", &c, ENTRY, Stack::System).unwrap();
        assert_eq!(s.addr, ENTRY + 12);
    }

    #[test]
    fn frameless_functions_probe_the_entry_only_on_the_system_stack() {
        let c = [0x48, 0x89, 0xd8, 0xc3]; // mov rax, rbx; ret
        let s = entry_site("f", &c, ENTRY, Stack::System).unwrap();
        assert_eq!((s.addr, s.placement), (ENTRY, ProbePlacement::Entry));
        assert!(entry_site("f", &c, ENTRY, Stack::Goroutine).is_err());
    }

    #[test]
    fn refuses_a_check_not_followed_by_jbe() {
        let c = [0x49, 0x3b, 0x66, 0x10, 0x90, 0xc3];
        let e = entry_site("f", &c, ENTRY, Stack::System).unwrap_err();
        assert!(e.to_string().contains("JBE"), "{e}");
    }

    #[test]
    fn refuses_when_arguments_are_clobbered_first() {
        let mut c = vec![
            0x48, 0x31, 0xc0, // xor rax, rax  (writes an argument register)
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x76, 0x02, // jbe
            0x55, 0xc3,
        ];
        c.extend([0xe8, 0, 0, 0, 0, 0xeb, 0xf0]);
        let e = entry_site("f", &c, ENTRY, Stack::System).unwrap_err();
        assert!(e.to_string().contains("clobber"), "{e}");
    }

    #[test]
    fn finds_every_return() {
        let c = [0x74, 0x01, 0xc3, 0x31, 0xc0, 0xc3, 0xcc, 0xcc];
        let r = return_sites("f", &c, ENTRY, &[]).unwrap();
        let addrs: Vec<u64> = r.iter().map(|s| s.addr).collect();
        assert_eq!(addrs, [ENTRY + 2, ENTRY + 5]);
    }

    #[test]
    fn refuses_undecodable_code_but_accepts_int3_padding() {
        assert!(return_sites("f", &[0xc3, 0xcc, 0xcc], ENTRY, &[]).is_ok());
        let e = return_sites("f", &[0xc3, 0x0f, 0xff], ENTRY, &[]).unwrap_err();
        assert!(matches!(e, DisasmError::Undecodable { .. }), "{e}");
    }

    #[test]
    fn resolves_rip_relative_globals() {
        // mov rax, [rip+0x10]; lea rbx, [rip+0x20]; mov ecx, [rip+0]
        let c = [
            0x48, 0x8b, 0x05, 0x10, 0, 0, 0, //
            0x48, 0x8d, 0x1d, 0x20, 0, 0, 0, //
            0x8b, 0x0d, 0, 0, 0, 0,
        ];
        let g = global_refs("f", &c, ENTRY).unwrap();
        assert_eq!(
            g,
            [
                GlobalRef {
                    addr: ENTRY + 7 + 0x10,
                    size: 8
                },
                GlobalRef {
                    addr: ENTRY + 14 + 0x20,
                    size: 0
                },
                GlobalRef {
                    addr: ENTRY + 20,
                    size: 4
                },
            ]
        );
    }
}
