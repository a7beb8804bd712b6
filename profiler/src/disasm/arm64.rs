//! arm64 decoding: fixed 4-byte instructions; only the forms gprof relies on are decoded,
//! anything else in a prologue makes it refuse.
//!
//! A Go function with a frame starts with the stack-bound check
//! ```text
//! LDR  X16, [X28, #16]          (g.stackguard0; #24, g.stackguard1, on //go:systemstack)
//! SUB  X17, SP, #frame          (larger frames only)
//! CMP  SP, X16                  (or CMP X17, X16)
//! B.LS morestack_stub
//! ```
//! X28 holds the current g. The kernel simulates B.cond instead of single-stepping it.

use super::{DisasmError, GlobalRef, Placement, Site};
use crate::goruntime::Stack;

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

pub fn entry_site(name: &str, code: &[u8], entry: u64, stack: Stack) -> Result<Site, DisasmError> {
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
            Stack::System => Ok(Site {
                addr: entry,
                placement: Placement::Entry,
                instruction: text(&first),
            }),
            Stack::Goroutine => Err(fail(format!(
                "no recognizable stack check at the entry ({})",
                text(&first)
            ))),
        };
    }
    let mut i = 1;
    if let (_, Insn::SubImm { rd: 17 }) = at(i)? {
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
        Stack::System => (i + 1, Placement::StackCheckBranch),
        Stack::Goroutine => (i + 2, Placement::AfterStackCheck),
    };
    let (addr, insn) = at(index)?;
    Ok(Site {
        addr,
        placement,
        instruction: if insn == Insn::Other {
            format!("{:#010x}", word(code, 4 * index).unwrap_or(0))
        } else {
            text(&insn)
        },
    })
}

pub fn return_sites(name: &str, code: &[u8], entry: u64) -> Result<Vec<Site>, DisasmError> {
    let sites: Vec<Site> = (0..code.len() / 4)
        .filter_map(|i| {
            let pc = entry + 4 * i as u64;
            (decode(word(code, 4 * i)?, pc) == Insn::Ret).then(|| Site {
                addr: pc,
                placement: Placement::Return,
                instruction: "ret".into(),
            })
        })
        .collect();
    if sites.is_empty() {
        return Err(DisasmError::NoReturn {
            function: name.to_string(),
        });
    }
    Ok(sites)
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
            (ENTRY + 8, Placement::StackCheckBranch)
        );
        assert_eq!(s.instruction, "b.ls 0x63b4c");
    }

    #[test]
    fn goroutine_stack_functions_probe_after_the_check() {
        let s = entry_site("gfput", &gfput(), ENTRY, Stack::Goroutine).unwrap();
        assert_eq!(
            (s.addr, s.placement),
            (ENTRY + 12, Placement::AfterStackCheck)
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
            (0x3d670 + 12, Placement::StackCheckBranch)
        );
    }

    #[test]
    fn refuses_what_it_does_not_recognize() {
        // mov x0, x1 first: no stack check.
        let plain = bytes(&[0xaa0103e0, 0xd65f03c0]);
        assert_eq!(
            entry_site("f", &plain, 0, Stack::System).unwrap().placement,
            Placement::Entry
        );
        assert!(entry_site("f", &plain, 0, Stack::Goroutine).is_err());
        // A check followed by b.eq instead of b.ls.
        let wrong = bytes(&[0xf9400b90, 0xeb3063ff, 0x54000100, 0xd65f03c0]);
        let e = entry_site("f", &wrong, 0, Stack::System).unwrap_err();
        assert!(e.to_string().contains("B.LS"), "{e}");
        assert!(entry_site("f", &bytes(&[0xf9400b90]), 0, Stack::System).is_err());
    }

    #[test]
    fn returns_and_globals() {
        // adrp x27, +0x21c000 page; ldr w5, [x27, #1636]; ret; adrp x27, ...; add x27, x27, #0x6f8
        let code = bytes(&[0xb00010fb, 0xb9466765, 0xd65f03c0, 0xb00010fb, 0x911be37b]);
        let pc = 0x63964u64;
        let r = return_sites("f", &code, pc).unwrap();
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
