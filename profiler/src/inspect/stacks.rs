//! Whole goroutine stacks, for `gprof dump`: each goroutine's frames from where it stopped
//! (`g.sched`, or `g.syscallsp/pc` in a system call) to the function that started its stack,
//! unwound as the runtime's own unwinder does (frame sizes from `.gopclntab`'s pc-sp tables,
//! arm64's link register, the faulting pc below an injected call), each frame expanded into
//! the calls inlined at it.
//!
//! The target runs on while its stacks are read: every step is checked (each pc falls in a
//! function of the program's text, each sp inside the goroutine's stack and above the last),
//! and a walk that does not hold together is an error, never frames.

use std::sync::Arc;

use crate::inspect::binary::Arch;
use crate::inspect::binary::frames::{FrameTable, FuncInfo, LogicalFrame};
use crate::inspect::goruntime::traceback;
use crate::inspect::process::ProcMem;

/// Physical frames walked at most: deeper stacks are reported as such (the runtime prints
/// 100 of them at most, but must walk them all to count the elided ones).
pub const MAX_FRAMES: usize = 100_000;

/// Bytes of a stack read at once, from its sp up.
pub const BLOCK: u64 = 16 * 1024;

/// Where to start unwinding one goroutine (runtime addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GStart {
    pub pc: u64,
    pub sp: u64,
    /// arm64: the link register saved with them (used if the innermost function is a leaf).
    pub lr: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
}

/// One physical frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhysFrame {
    /// The frame's pc (runtime address): a return address, or the faulting instruction below
    /// an injected call.
    pub pc: u64,
    pub sp: u64,
    /// The caller's sp (amd64: above the return address), as the runtime prints `fp=`.
    pub fp: u64,
    pub func: FuncInfo,
    /// The calls in progress, innermost first (the function's own last).
    pub calls: Arc<[LogicalFrame]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error("sp {sp:#x} outside the stack [{lo:#x}, {hi:#x})")]
    SpOutside { sp: u64, lo: u64, hi: u64 },
    #[error("pc {0:#x} is in no function of the program")]
    NoFunction(u64),
    #[error("stack word at {0:#x} unreadable")]
    Unreadable(u64),
    #[error("the stack ends at {0} without the function that starts a stack")]
    NoEnd(String),
    #[error("deeper than {MAX_FRAMES} frames")]
    TooDeep,
}

/// The stack memory of one goroutine, read in blocks as the walk climbs.
pub struct StackMemory<'a> {
    mem: &'a ProcMem,
    /// (start, bytes), in address order, contiguous from the first.
    blocks: Vec<(u64, Vec<u8>)>,
    hi: u64,
}

impl<'a> StackMemory<'a> {
    /// `first`: the bytes from `sp` already read (with many goroutines' at once), if any.
    pub fn new(mem: &'a ProcMem, sp: u64, hi: u64, first: Option<Vec<u8>>) -> Self {
        Self {
            mem,
            blocks: first.map(|b| vec![(sp, b)]).unwrap_or_default(),
            hi,
        }
    }

    fn word(&mut self, addr: u64) -> Option<u64> {
        loop {
            for (start, bytes) in self.blocks.iter().rev() {
                if addr >= *start {
                    let at = usize::try_from(addr - start).ok()?;
                    if let Some(b) = bytes.get(at..at.checked_add(8)?) {
                        return Some(u64::from_le_bytes(b.try_into().ok()?));
                    }
                    break;
                }
            }
            // Read the next block: from where the last ended (or the word itself).
            let from = match self.blocks.last() {
                Some((s, b)) if addr >= *s => s + b.len() as u64,
                _ => addr,
            };
            if from >= self.hi || from > addr {
                return None;
            }
            let len = (self.hi - from).min(BLOCK) as usize;
            let mut buf = vec![0u8; len];
            self.mem.read(from, &mut buf).ok()?;
            if self
                .blocks
                .last()
                .is_none_or(|(s, b)| s + b.len() as u64 != from)
            {
                self.blocks.clear();
            }
            self.blocks.push((from, buf));
        }
    }
}

/// Anything a walk reads words from (tests give a map).
pub trait StackWords {
    fn word(&mut self, addr: u64) -> Option<u64>;
}

impl StackWords for StackMemory<'_> {
    fn word(&mut self, addr: u64) -> Option<u64> {
        StackMemory::word(self, addr)
    }
}

/// What a walk needs of the program's code.
pub trait CodeTable {
    /// The function at a file address and its frame size there (None: no function).
    fn frame_at(&self, pc: u64) -> Option<(FuncInfo, i32, bool)>;
    fn calls_at(&self, pc: u64) -> Option<Arc<[LogicalFrame]>>;
}

impl CodeTable for FrameTable {
    fn frame_at(&self, pc: u64) -> Option<(FuncInfo, i32, bool)> {
        let (f, frame) = self.frame(pc)?;
        Some((f, frame.sp_delta, frame.top))
    }
    fn calls_at(&self, pc: u64) -> Option<Arc<[LogicalFrame]>> {
        self.logical(pc)
    }
}

/// Unwinds one goroutine from `start` to the frame that starts its stack.
pub fn walk(
    start: &GStart,
    bias: u64,
    arch: Arch,
    code: &impl CodeTable,
    mem: &mut impl StackWords,
) -> Result<Vec<PhysFrame>, WalkError> {
    let (lo, hi) = (start.stack_lo, start.stack_hi);
    let mut frames = Vec::new();
    let (mut pc, mut sp) = (start.pc, start.sp);
    // The pc is the faulting instruction, not a return address (below an injected call).
    let mut trap = false;
    loop {
        if frames.len() >= MAX_FRAMES {
            return Err(WalkError::TooDeep);
        }
        if sp < lo || sp >= hi {
            return Err(WalkError::SpOutside { sp, lo, hi });
        }
        let file_pc = pc.wrapping_sub(bias);
        let (func, delta, top) = code.frame_at(file_pc).ok_or(WalkError::NoFunction(pc))?;
        let delta = u64::try_from(delta).map_err(|_| WalkError::NoFunction(pc))?;
        let fp = match arch {
            Arch::X86_64 => sp + delta + 8,
            Arch::Aarch64 => sp + delta,
        };
        if fp > hi {
            return Err(WalkError::SpOutside { sp: fp, lo, hi });
        }
        // Back up into the call (`symPC`), unless this pc is where a fault happened.
        let sym_pc = if !trap && file_pc > func.entry {
            file_pc - 1
        } else {
            file_pc
        };
        let calls = code.calls_at(sym_pc).ok_or(WalkError::NoFunction(pc))?;
        let innermost = frames.is_empty();
        let name = func.name.clone();
        frames.push(PhysFrame {
            pc,
            sp,
            fp,
            func,
            calls,
        });
        if top {
            return Ok(frames);
        }
        let lr = match arch {
            Arch::X86_64 => mem.word(fp - 8).ok_or(WalkError::Unreadable(fp - 8))?,
            Arch::Aarch64 if innermost && delta == 0 => start.lr,
            Arch::Aarch64 => mem.word(sp).ok_or(WalkError::Unreadable(sp))?,
        };
        if lr == 0 {
            return Err(WalkError::NoEnd(name.to_string()));
        }
        trap = traceback::injected_call(&name);
        pc = lr;
        sp = fp;
        // arm64: the signal handler saved the interrupted function's link register on the
        // stack before faking the call.
        if arch == Arch::Aarch64 && trap {
            let x = mem.word(sp).ok_or(WalkError::Unreadable(sp))?;
            sp += 16;
            match code.frame_at(pc.wrapping_sub(bias)) {
                None => pc = x,
                Some((_, 0, _)) => {
                    // A leaf: its caller's pc is the saved link register.
                    return walk_leaf_after_trap(start, bias, code, mem, frames, pc, sp, x);
                }
                Some(_) => {}
            }
        }
        if let Some(last) = frames.last()
            && sp < last.sp
        {
            return Err(WalkError::SpOutside { sp, lo, hi });
        }
    }
}

/// arm64: a leaf function interrupted by an injected call: its frame, then the walk goes on
/// from the link register the signal handler saved.
#[allow(clippy::too_many_arguments)]
fn walk_leaf_after_trap(
    start: &GStart,
    bias: u64,
    code: &impl CodeTable,
    mem: &mut impl StackWords,
    mut frames: Vec<PhysFrame>,
    pc: u64,
    sp: u64,
    lr: u64,
) -> Result<Vec<PhysFrame>, WalkError> {
    let file_pc = pc.wrapping_sub(bias);
    let (func, _, _) = code.frame_at(file_pc).ok_or(WalkError::NoFunction(pc))?;
    let calls = code.calls_at(file_pc).ok_or(WalkError::NoFunction(pc))?;
    frames.push(PhysFrame {
        pc,
        sp,
        fp: sp,
        func,
        calls,
    });
    let rest = walk(
        &GStart {
            pc: lr,
            sp,
            lr: 0,
            ..*start
        },
        bias,
        Arch::Aarch64,
        code,
        mem,
    )?;
    frames.extend(rest);
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Functions as (entry, end, name, frame size, func id).
    struct Code(Vec<(u64, u64, &'static str, i32)>);

    impl CodeTable for Code {
        fn frame_at(&self, pc: u64) -> Option<(FuncInfo, i32, bool)> {
            let f = self.0.iter().find(|f| (f.0..f.1).contains(&pc))?;
            Some((
                FuncInfo {
                    name: f.2.into(),
                    func_id: 0,
                    entry: f.0,
                    end: f.1,
                },
                f.3,
                f.2 == "runtime.goexit",
            ))
        }
        fn calls_at(&self, pc: u64) -> Option<Arc<[LogicalFrame]>> {
            let (f, ..) = self.frame_at(pc)?;
            Some(
                vec![LogicalFrame {
                    function: f.name,
                    func_id: 0,
                    file: "x.go".into(),
                    line: (pc & 0xff) as u32,
                    inlined: false,
                }]
                .into(),
            )
        }
    }

    impl StackWords for HashMap<u64, u64> {
        fn word(&mut self, addr: u64) -> Option<u64> {
            self.get(&addr).copied()
        }
    }

    fn code() -> Code {
        Code(vec![
            (0x1000, 0x1100, "runtime.gopark", 0x28),
            (0x1100, 0x1200, "runtime.chanrecv", 0x60),
            (0x2000, 0x2100, "main.worker", 0x40),
            (0x3000, 0x3100, "runtime.goexit", 0),
            (0x4000, 0x4100, "runtime.sigpanic", 0x20),
        ])
    }

    fn start(sp: u64) -> GStart {
        GStart {
            pc: 0x1080,
            sp,
            lr: 0,
            stack_lo: 0x7000,
            stack_hi: 0x9000,
        }
    }

    #[test]
    fn walks_amd64_to_goexit_with_the_runtimes_fp_and_sym_pc() {
        let mut mem = HashMap::new();
        let mut sp = 0x8000u64;
        for (frame, ret) in [(0x28, 0x1150), (0x60, 0x2050), (0x40, 0x3001)] {
            mem.insert(sp + frame, ret);
            sp += frame + 8;
        }
        let frames = walk(&start(0x8000), 0, Arch::X86_64, &code(), &mut mem).unwrap();
        let got: Vec<(&str, u64, u64, u64, u32)> = frames
            .iter()
            .map(|f| (&*f.func.name, f.pc, f.sp, f.fp, f.calls[0].line))
            .collect();
        assert_eq!(
            got,
            [
                ("runtime.gopark", 0x1080, 0x8000, 0x8030, 0x7f),
                ("runtime.chanrecv", 0x1150, 0x8030, 0x8098, 0x4f),
                ("main.worker", 0x2050, 0x8098, 0x80e0, 0x4f),
                // goexit's pc is its entry + 1: looked up at pc - 1, its entry.
                ("runtime.goexit", 0x3001, 0x80e0, 0x80e8, 0x00),
            ]
        );
    }

    #[test]
    fn the_frame_below_an_injected_call_is_looked_up_at_its_own_pc() {
        let mut mem = HashMap::new();
        // gopark <- sigpanic <- main.worker (faulted at 0x2050) <- goexit
        mem.insert(0x8000 + 0x28, 0x4010);
        mem.insert(0x8030 + 0x20, 0x2050);
        mem.insert(0x8058 + 0x40, 0x3001);
        let frames = walk(&start(0x8000), 0, Arch::X86_64, &code(), &mut mem).unwrap();
        assert_eq!(frames[2].func.name.as_ref(), "main.worker");
        assert_eq!(frames[2].calls[0].line, 0x50);
    }

    #[test]
    fn walks_that_do_not_hold_together_are_errors() {
        // A return address in no function.
        let mut mem = HashMap::from([(0x8028, 0xdead_0000)]);
        assert_eq!(
            walk(&start(0x8000), 0, Arch::X86_64, &code(), &mut mem),
            Err(WalkError::NoFunction(0xdead_0000))
        );
        // An sp outside the stack, an unreadable word, a stack with no end.
        assert!(matches!(
            walk(&start(0x100), 0, Arch::X86_64, &code(), &mut HashMap::new()),
            Err(WalkError::SpOutside { .. })
        ));
        assert_eq!(
            walk(
                &start(0x8000),
                0,
                Arch::X86_64,
                &code(),
                &mut HashMap::new()
            ),
            Err(WalkError::Unreadable(0x8028))
        );
        let mut zero = HashMap::from([(0x8028, 0)]);
        assert_eq!(
            walk(&start(0x8000), 0, Arch::X86_64, &code(), &mut zero),
            Err(WalkError::NoEnd("runtime.gopark".into()))
        );
        // Frames that run past the stack's top.
        let mut high = HashMap::from([(0x8028, 0x1150)]);
        let short = GStart {
            stack_hi: 0x8040,
            ..start(0x8000)
        };
        assert!(matches!(
            walk(&short, 0, Arch::X86_64, &code(), &mut high),
            Err(WalkError::SpOutside { .. })
        ));
    }

    #[test]
    fn walks_arm64_through_saved_link_registers() {
        // Each frame saved its caller's pc at its own bottom; caller sp = sp + frame size.
        let mut mem = HashMap::from([(0x8000, 0x1150), (0x8028, 0x2050), (0x8088, 0x3004)]);
        let frames = walk(&start(0x8000), 0, Arch::Aarch64, &code(), &mut mem).unwrap();
        let got: Vec<(&str, u64, u64)> =
            frames.iter().map(|f| (&*f.func.name, f.sp, f.fp)).collect();
        assert_eq!(
            got,
            [
                ("runtime.gopark", 0x8000, 0x8028),
                ("runtime.chanrecv", 0x8028, 0x8088),
                ("main.worker", 0x8088, 0x80c8),
                ("runtime.goexit", 0x80c8, 0x80c8),
            ]
        );
    }
}
