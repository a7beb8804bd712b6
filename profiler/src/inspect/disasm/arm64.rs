//! arm64 decoding: fixed 4-byte instructions; only the forms gprof relies on are decoded,
//! anything else in a prologue makes it refuse.
//!
//! A Go function with a frame starts with the stack-bound check
//! ```text
//! LDR  X16, [X28, #16]          (g.stackguard0; #24, g.stackguard1, on //go:systemstack)
//! SUB  X17, SP, #frame          (larger frames only; MOV X17, SP for small ones up to Go 1.18)
//! CMP  SP, X16                  (or CMP X17, X16)
//! B.LS morestack_stub
//! ```
//! X28 holds the current g. The kernel simulates B.cond instead of single-stepping it.

use super::{DisasmError, GlobalRef, ProbePlacement, ProbePoint};
use crate::inspect::goruntime::Stack;

const STACKGUARDS: [u32; 2] = [16, 24];
const G_REG: u32 = 28;
/// Registers that carry arguments (R0-R15) and g (R28): none may be written before an entry
/// probe.
fn is_abi_reg(r: u32) -> bool {
    r <= 15 || r == G_REG
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Insn {
    /// LDR Xt, [Xn, #imm]
    LdrImm {
        rt: u32,
        rn: u32,
        offset: u32,
    },
    /// SUB Xd, Xn|SP, #imm
    SubImm {
        rd: u32,
    },
    /// MOV Xd, SP (ADD Xd, SP, #0)
    MovFromSp {
        rd: u32,
    },
    /// CMP (SUBS XZR, ...), register forms
    Cmp,
    /// B.cond: condition and target
    BCond {
        cond: u32,
        target: u64,
    },
    Ret,
    Other,
}

fn word(code: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(code.get(i..i + 4)?.try_into().ok()?))
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn decode(w: u32, pc: u64) -> Insn {
    if w & 0xFFC0_0000 == 0xF940_0000 {
        // LDR (immediate, unsigned offset), 64-bit: imm12 scaled by 8.
        return Insn::LdrImm {
            rt: w & 31,
            rn: (w >> 5) & 31,
            offset: ((w >> 10) & 0xFFF) * 8,
        };
    }
    if w & 0xFF80_0000 == 0xD100_0000 {
        return Insn::SubImm { rd: w & 31 };
    }
    if w & 0xFFFF_FFE0 == 0x9100_03E0 {
        return Insn::MovFromSp { rd: w & 31 };
    }
    // SUBS XZR, Xn, Xm (shifted register) or SUBS XZR, SP, Xm (extended register).
    if (w & 0xFF20_001F == 0xEB00_001F) || (w & 0xFFE0_001F == 0xEB20_001F) {
        return Insn::Cmp;
    }
    if w & 0xFF00_0010 == 0x5400_0000 {
        let imm19 = ((w >> 5) & 0x7FFFF) as u64;
        let target = pc.wrapping_add((sign_extend(imm19, 19) * 4) as u64);
        return Insn::BCond {
            cond: w & 0xF,
            target,
        };
    }
    if w & 0xFFFF_FC1F == 0xD65F_0000 {
        return Insn::Ret;
    }
    Insn::Other
}

fn text(i: &Insn) -> String {
    match i {
        Insn::LdrImm { rt, rn, offset } => format!("ldr x{rt}, [x{rn}, #{offset}]"),
        Insn::SubImm { rd } => format!("sub x{rd}, ..."),
        Insn::MovFromSp { rd } => format!("mov x{rd}, sp"),
        Insn::Cmp => "cmp".into(),
        Insn::BCond { cond, target } => {
            format!("b.{} {target:#x}", if *cond == 9 { "ls" } else { "cond" })
        }
        Insn::Ret => "ret".into(),
        Insn::Other => "(other)".into(),
    }
}

/// Condition code LS (unsigned lower or same), what Go's prologue branches on.
const COND_LS: u32 = 9;

pub fn entry_site(
    name: &str,
    code: &[u8],
    entry: u64,
    stack: Stack,
) -> Result<ProbePoint, DisasmError> {
    let fail = |why: String| DisasmError::Prologue {
        function: name.to_string(),
        why,
    };
    let at = |i: usize| -> Result<(u64, Insn), DisasmError> {
        let w =
            word(code, 4 * i).ok_or_else(|| fail("function ends inside its prologue".into()))?;
        let pc = entry + 4 * i as u64;
        Ok((pc, decode(w, pc)))
    };
    let (_, first) = at(0)?;
    let guard = matches!(first, Insn::LdrImm { rt: 16, rn: G_REG, offset } if STACKGUARDS.contains(&offset));
    if !guard {
        return match stack {
            Stack::System => Ok(ProbePoint {
                addr: entry,
                placement: ProbePlacement::Entry,
                instruction: text(&first),
            }),
            Stack::Goroutine => Err(fail(format!(
                "no recognizable stack check at the entry ({})",
                text(&first)
            ))),
        };
    }
    let mut i = 1;
    if let (_, Insn::SubImm { rd: 17 } | Insn::MovFromSp { rd: 17 }) = at(i)? {
        i += 1;
    }
    let (_, cmp) = at(i)?;
    if cmp != Insn::Cmp {
        return Err(fail(format!(
            "stack check without its compare ({})",
            text(&cmp)
        )));
    }
    let (branch_pc, branch) = at(i + 1)?;
    let Insn::BCond {
        cond: COND_LS,
        target,
    } = branch
    else {
        return Err(fail(format!(
            "stack check not followed by B.LS but by {}",
            text(&branch)
        )));
    };
    let end = entry + code.len() as u64;
    if !(branch_pc + 4..end).contains(&target) {
        return Err(fail(format!(
            "stack check branches to {target:#x}, outside the function's morestack stub"
        )));
    }
    // Only X16, X17 and the flags were written so far: the arguments are intact.
    debug_assert!(!is_abi_reg(16) && !is_abi_reg(17));
    let (index, placement) = match stack {
        Stack::System => (i + 1, ProbePlacement::StackCheckBranch),
        Stack::Goroutine => (i + 2, ProbePlacement::AfterStackCheck),
    };
    let (addr, insn) = at(index)?;
    Ok(ProbePoint {
        addr,
        placement,
        instruction: if insn == Insn::Other {
            format!("{:#010x}", word(code, 4 * index).unwrap_or(0))
        } else {
            text(&insn)
        },
    })
}

/// Every RET reachable from the entry, found by decoding (yaxpeax-arm) along the control
/// flow from the entry and from `resumes` (where a recovered panic continues): fall-through,
/// and the targets of direct branches inside the function. Go's arm64
/// code keeps literal pools in its text, after unconditional branches, so a constant that
/// reads as RET is never reached this way. An indirect jump (`BR`) or a reachable word that
/// does not decode makes it refuse: some RET could be missed, or a pool taken for code.
pub fn return_sites(
    name: &str,
    code: &[u8],
    entry: u64,
    resumes: &[u64],
) -> Result<Vec<ProbePoint>, DisasmError> {
    use yaxpeax_arch::{Decoder as _, U8Reader};
    use yaxpeax_arm::armv8::a64::{InstDecoder, Opcode, Operand};

    let words = code.len() / 4;
    let decoder = InstDecoder::default();
    let mut seen = vec![false; words];
    let mut todo = vec![0usize];
    for &r in resumes {
        match r.checked_sub(entry) {
            Some(off) if off % 4 == 0 && off / 4 < words as u64 => todo.push((off / 4) as usize),
            _ => {
                return Err(DisasmError::Prologue {
                    function: name.to_string(),
                    why: format!("resume point {r:#x} is not an instruction of the function"),
                });
            }
        }
    }
    let mut rets = Vec::new();
    let refuse = |i: usize, why: &str| DisasmError::Prologue {
        function: name.to_string(),
        why: format!(
            "{why} at {:#x}: cannot be sure to see every return",
            entry + 4 * i as u64
        ),
    };
    while let Some(start) = todo.pop() {
        let mut i = start;
        while i < words && !seen[i] {
            seen[i] = true;
            let pc = entry + 4 * i as u64;
            let mut reader = U8Reader::new(&code[4 * i..4 * i + 4]);
            let insn = decoder
                .decode(&mut reader)
                .map_err(|_| DisasmError::Undecodable {
                    function: name.to_string(),
                    addr: pc,
                })?;
            // Direct branch targets, as word indexes inside the function (None: outside, a
            // tail call).
            let target = || {
                insn.operands.iter().find_map(|o| match o {
                    Operand::PCOffset(off) => {
                        let t = (pc as i64).checked_add(*off)? as u64;
                        (t >= entry && t < entry + 4 * words as u64 && t.is_multiple_of(4))
                            .then(|| ((t - entry) / 4) as usize)
                    }
                    _ => None,
                })
            };
            match insn.opcode {
                Opcode::RET => {
                    rets.push(ProbePoint {
                        addr: pc,
                        placement: ProbePlacement::Return,
                        instruction: insn.to_string(),
                    });
                    break;
                }
                Opcode::B => {
                    todo.extend(target());
                    break;
                }
                Opcode::Bcc(_) | Opcode::CBZ | Opcode::CBNZ | Opcode::TBZ | Opcode::TBNZ => {
                    todo.extend(target());
                }
                Opcode::BR => return Err(refuse(i, "indirect jump")),
                Opcode::RETAA | Opcode::RETAB | Opcode::ERET => {
                    return Err(refuse(i, "authenticated or exception return"));
                }
                // Traps end the path (the runtime's `throw` paths, UNDEF markers).
                Opcode::UDF | Opcode::BRK | Opcode::HLT => break,
                _ => {}
            }
            i += 1;
        }
    }
    if rets.is_empty() {
        return Err(DisasmError::NoReturn {
            function: name.to_string(),
        });
    }
    rets.sort_by_key(|s| s.addr);
    Ok(rets)
}

/// Load/store (unsigned immediate) fields: (Rt, Rn, byte offset, access size).
fn load_store(w: u32) -> Option<(u32, u32, u64, u32)> {
    if w & 0x3B00_0000 != 0x3900_0000 || w & (1 << 26) != 0 {
        return None;
    }
    let size = w >> 30;
    Some((
        w & 31,
        (w >> 5) & 31,
        (((w >> 10) & 0xFFF) as u64) << size,
        1 << size,
    ))
}

/// Globals: ADRP Xd, page then an ADD or a load/store based on Xd (how Go materializes a
/// global's address, usually in R27).
pub fn global_refs(_name: &str, code: &[u8], entry: u64) -> Result<Vec<GlobalRef>, DisasmError> {
    let mut out = Vec::new();
    let words: Vec<u32> = (0..code.len() / 4)
        .filter_map(|i| word(code, 4 * i))
        .collect();
    for (i, &w) in words.iter().enumerate() {
        if w & 0x9F00_0000 != 0x9000_0000 {
            continue;
        }
        let pc = entry + 4 * i as u64;
        let rd = w & 31;
        let imm = (((w >> 5) & 0x7FFFF) as u64) << 2 | ((w >> 29) & 3) as u64;
        let page = (pc & !0xFFF).wrapping_add((sign_extend(imm, 21) << 12) as u64);
        let Some(&next) = words.get(i + 1) else {
            continue;
        };
        if next & 0xFF80_0000 == 0x9100_0000 && (next >> 5) & 31 == rd {
            let shift = if next & (1 << 22) != 0 { 12 } else { 0 };
            out.push(GlobalRef {
                addr: page + ((((next >> 10) & 0xFFF) as u64) << shift),
                size: 0,
            });
        } else if let Some((_, rn, offset, size)) = load_store(next)
            && rn == rd
        {
            out.push(GlobalRef {
                addr: page + offset,
                size,
            });
        }
    }
    Ok(out)
}

/// Immediate offsets of register-based loads and stores (struct fields).
/// `BL imm26` instructions (direct calls): (the call's address, its target). A literal pool's
/// word may read as one: callers check that a target starts a function.
pub fn call_targets(_name: &str, code: &[u8], entry: u64) -> Result<Vec<(u64, u64)>, DisasmError> {
    Ok(code
        .chunks_exact(4)
        .enumerate()
        .filter_map(|(i, b)| {
            let w = u32::from_le_bytes(b.try_into().expect("4 bytes"));
            let pc = entry + 4 * i as u64;
            (w & 0xFC00_0000 == 0x9400_0000).then(|| {
                let target =
                    pc.wrapping_add((sign_extend(u64::from(w & 0x03FF_FFFF), 26) * 4) as u64);
                (pc, target)
            })
        })
        .collect())
}

pub fn displacements(_name: &str, code: &[u8], _entry: u64) -> Result<Vec<u64>, DisasmError> {
    Ok((0..code.len() / 4)
        .filter_map(|i| load_store(word(code, 4 * i)?))
        .filter(|&(_, rn, _, _)| rn != 27 && rn != 31)
        .map(|(_, _, offset, _)| offset)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    const ENTRY: u64 = 0x63930;

    /// go1.27 arm64 runtime.gfput: ldr x16,[x28,#16]; cmp sp,x16; b.ls +0x214; str x30,[sp,#-128]!
    fn gfput() -> Vec<u8> {
        let mut w = vec![0xf9400b90, 0xeb3063ff, 0x540010a9, 0xf8180ffe, 0xd65f03c0];
        w.resize(0x220 / 4, 0xd503201f); // nop up to the stub
        bytes(&w)
    }

    #[test]
    fn system_stack_functions_probe_the_branch() {
        let s = entry_site("gfput", &gfput(), ENTRY, Stack::System).unwrap();
        assert_eq!(
            (s.addr, s.placement),
            (ENTRY + 8, ProbePlacement::StackCheckBranch)
        );
        assert_eq!(s.instruction, "b.ls 0x63b4c");
    }

    #[test]
    fn goroutine_stack_functions_probe_after_the_check() {
        let s = entry_site("gfput", &gfput(), ENTRY, Stack::Goroutine).unwrap();
        assert_eq!(
            (s.addr, s.placement),
            (ENTRY + 12, ProbePlacement::AfterStackCheck)
        );
    }

    #[test]
    fn large_frames_and_systemstack_guards() {
        // go1.27 arm64 runtime.scanstack: ldr x16,[x28,#24]; sub x17,sp,#0xa0; cmp x17,x16; b.ls
        let mut w = vec![
            0xf9400f90, 0xd10283f1, 0xeb10023f, 0x54002e69, 0xd10483f4, 0xd65f03c0,
        ];
        w.resize(0x5e0 / 4, 0xd503201f);
        let s = entry_site("scanstack", &bytes(&w), 0x3d670, Stack::System).unwrap();
        assert_eq!(
            (s.addr, s.placement),
            (0x3d670 + 12, ProbePlacement::StackCheckBranch)
        );
    }

    #[test]
    fn go118_small_frames_compare_a_copy_of_sp() {
        // go1.18.1 arm64 runtime.newproc1 (esbuild-linux-arm64 0.14.39): ldr x16,[x28,#16];
        // mov x17,sp; cmp x17,x16; b.ls +0x400; str x30,[sp,#-80]!
        let mut w = vec![0xf9400b90, 0x910003f1, 0xeb10023f, 0x54002009, 0xf81b0ffe];
        w.resize(0x410 / 4, 0xd503201f);
        let s = entry_site("newproc1", &bytes(&w), 0x4e730, Stack::Goroutine).unwrap();
        assert_eq!(
            (s.addr, s.placement),
            (0x4e730 + 16, ProbePlacement::AfterStackCheck)
        );
    }

    #[test]
    fn refuses_what_it_does_not_recognize() {
        // mov x0, x1 first: no stack check.
        let plain = bytes(&[0xaa0103e0, 0xd65f03c0]);
        assert_eq!(
            entry_site("f", &plain, 0, Stack::System).unwrap().placement,
            ProbePlacement::Entry
        );
        assert!(entry_site("f", &plain, 0, Stack::Goroutine).is_err());
        // A check followed by b.eq instead of b.ls.
        let wrong = bytes(&[0xf9400b90, 0xeb3063ff, 0x54000100, 0xd65f03c0]);
        let e = entry_site("f", &wrong, 0, Stack::System).unwrap_err();
        assert!(e.to_string().contains("B.LS"), "{e}");
        assert!(entry_site("f", &bytes(&[0xf9400b90]), 0, Stack::System).is_err());
    }

    #[test]
    fn returns_are_reachable_instructions_never_pool_words() {
        const RET: u32 = 0xd65f03c0;
        // cbz x0, +12; ret; <pool: RET's encoding>; mov x0, x1; ret; <pool>
        let code = bytes(&[0xb4000060, RET, RET, 0xaa0103e0, RET, RET]);
        let r = return_sites("f", &code, 0x1000, &[]).unwrap();
        let addrs: Vec<u64> = r.iter().map(|s| s.addr).collect();
        assert_eq!(addrs, [0x1004, 0x1010]);
        // ret; bl deferreturn; ret: the second RET only after a recovered panic.
        let code = bytes(&[RET, 0x94000000, RET]);
        assert_eq!(return_sites("f", &code, 0x1000, &[]).unwrap().len(), 1);
        let r = return_sites("f", &code, 0x1000, &[0x1004]).unwrap();
        assert_eq!(
            r.iter().map(|s| s.addr).collect::<Vec<_>>(),
            [0x1000, 0x1008]
        );
        assert!(return_sites("f", &code, 0x1000, &[0x1002]).is_err());
        // An indirect jump: some RET may be out of sight.
        let e = return_sites("f", &bytes(&[0xd61f0000, RET]), 0x1000, &[]).unwrap_err();
        assert!(e.to_string().contains("indirect jump"), "{e}");
        // A reachable word that is no instruction.
        assert!(return_sites("f", &bytes(&[0x00000000, RET]), 0x1000, &[]).is_err());
    }

    #[test]
    fn returns_and_globals() {
        // adrp x27, +0x21c000 page; ldr w5, [x27, #1636]; ret; adrp x27, ...; add x27, x27, #0x6f8
        let code = bytes(&[0xb00010fb, 0xb9466765, 0xd65f03c0, 0xb00010fb, 0x911be37b]);
        let pc = 0x63964u64;
        let r = return_sites("f", &code, pc, &[]).unwrap();
        assert_eq!(r[0].addr, pc + 8);
        let g = global_refs("f", &code, pc).unwrap();
        assert_eq!(
            g[0],
            GlobalRef {
                addr: 0x280664,
                size: 4
            }
        );
        assert_eq!(
            g[1],
            GlobalRef {
                addr: 0x2806f8,
                size: 0
            }
        );
        // ldrsw x1, [x0, #2472]: p.gFree.size on go1.27.
        assert_eq!(
            displacements("f", &bytes(&[0xb989a801]), 0).unwrap(),
            [2472]
        );
    }
}
