//! Where blocked goroutines wait: each parked g's stack is unwound from its saved registers
//! (`g.sched`, or `g.syscallsp/pc` in a system call) with the frame sizes of `.gopclntab`'s
//! pc-sp tables, as the runtime's own unwinder does, to the first frame outside the runtime's
//! waiting machinery (see [`crate::inspect::goruntime::is_wait_machinery`]).
//!
//! All gs of a census are unwound together, one frame level at a time, so that each level
//! costs one batch of scattered reads whatever the number of gs. Every step is checked (the
//! stack pointer stays within the g's stack, every return address falls in a function): a g
//! that ran meanwhile gives no answer rather than a wrong one.

use crate::inspect::binary::Arch;
use crate::inspect::goruntime;

/// Frames walked at most per goroutine.
const MAX_DEPTH: usize = 64;

/// Where to start unwinding one goroutine (runtime addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// A return address: the saved pc of a parked goroutine is the instruction after its
    /// call into the scheduler.
    pub pc: u64,
    pub sp: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
}

/// What the unwinder needs to know about the code at a return address (a file address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeFrame {
    /// The frame's size there.
    pub sp_delta: i32,
    /// The function starts a stack (`goexit`, `mstart`...): nothing calls it.
    pub top: bool,
    /// One of the calls in progress there (the function's own, or one inlined into it) is
    /// outside the waiting machinery: the goroutine waits here.
    pub waits_here: bool,
}

pub trait Code {
    fn frame(&self, pc: u64) -> Option<CodeFrame>;
}

impl Code for crate::inspect::binary::frames::FrameTable {
    fn frame(&self, pc: u64) -> Option<CodeFrame> {
        let (f, frame) = crate::inspect::binary::frames::FrameTable::frame(self, pc)?;
        let top = frame.top || goruntime::ends_a_goroutine_stack(&f.name);
        let waits_here = !top
            && self
                .calls(pc)?
                .iter()
                .any(|c| !goruntime::is_wait_machinery(&c.function));
        Some(CodeFrame {
            sp_delta: frame.sp_delta,
            top,
            waits_here,
        })
    }
}

/// [`Code`] with each pc's answer kept: a census asks about the same few return addresses
/// for every goroutine. Bounded: emptied past [`MemoCode::MAX`] pcs.
#[derive(Debug)]
pub struct MemoCode<C> {
    code: C,
    memo: std::cell::RefCell<foldhash::HashMap<u64, Option<CodeFrame>>>,
}

impl<C: Code> MemoCode<C> {
    const MAX: usize = 1 << 16;

    pub fn new(code: C) -> Self {
        Self {
            code,
            memo: Default::default(),
        }
    }

    pub fn inner(&self) -> &C {
        &self.code
    }
}

impl<C: Code> Code for MemoCode<C> {
    fn frame(&self, pc: u64) -> Option<CodeFrame> {
        if let Some(f) = self.memo.borrow().get(&pc) {
            return *f;
        }
        let f = self.code.frame(pc);
        let mut memo = self.memo.borrow_mut();
        if memo.len() >= Self::MAX {
            memo.clear();
        }
        memo.insert(pc, f);
        f
    }
}

/// Reads 8-byte words at many addresses at once (None: unreadable).
pub trait Words {
    fn words(&self, addrs: &[u64]) -> Vec<Option<u64>>;
}

impl Words for crate::inspect::process::ProcMem {
    fn words(&self, addrs: &[u64]) -> Vec<Option<u64>> {
        let mut bytes = vec![0u8; 8 * addrs.len()];
        let ok = self.read_scattered(addrs, 8, &mut bytes);
        bytes
            .chunks_exact(8)
            .zip(ok)
            .map(|(b, ok)| ok.then(|| u64::from_le_bytes(b.try_into().expect("8 bytes"))))
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
struct Walk {
    /// Index into the starts.
    g: usize,
    pc: u64,
    sp: u64,
    depth: usize,
}

/// The top of each goroutine's stack, read at once: most walks end within it, so a walk
/// needs one read per goroutine instead of one per frame. Words beyond it are read from the
/// process.
pub struct StackTops<'a, M: Words> {
    /// (start address, where its bytes start in `bytes`, length), sorted by start.
    tops: Vec<(u64, usize, usize)>,
    /// Every top's bytes, end to end (one buffer: a census reads a million tops).
    bytes: Vec<u8>,
    mem: &'a M,
}

/// Bytes read from the top of each stack.
pub const STACK_TOP: u64 = 4096;

impl<'a> StackTops<'a, crate::inspect::process::ProcMem> {
    pub fn read(starts: &[Start], mem: &'a crate::inspect::process::ProcMem) -> Self {
        let parts: Vec<(u64, usize)> = starts
            .iter()
            .filter(|s| s.stack_lo <= s.sp && s.sp < s.stack_hi)
            .map(|s| (s.sp, (s.stack_hi - s.sp).min(STACK_TOP) as usize))
            .collect();
        let mut bytes = vec![0u8; parts.iter().map(|p| p.1).sum()];
        let ok = mem.read_each(&parts, &mut bytes);
        let mut at = 0;
        let mut tops = Vec::with_capacity(parts.len());
        for (&(addr, n), ok) in parts.iter().zip(ok) {
            if ok {
                tops.push((addr, at, n));
            }
            at += n;
        }
        tops.sort_unstable_by_key(|t| t.0);
        Self { tops, bytes, mem }
    }
}

impl<M: Words> StackTops<'_, M> {
    fn word(&self, addr: u64) -> Option<u64> {
        let i = self.tops.partition_point(|t| t.0 <= addr).checked_sub(1)?;
        let (start, offset, len) = self.tops[i];
        let at = usize::try_from(addr - start).ok()?;
        if at.checked_add(8)? > len {
            return None;
        }
        Some(u64::from_le_bytes(
            self.bytes[offset + at..offset + at + 8].try_into().ok()?,
        ))
    }
}

impl<M: Words> Words for StackTops<'_, M> {
    fn words(&self, addrs: &[u64]) -> Vec<Option<u64>> {
        let mut out: Vec<Option<u64>> = addrs.iter().map(|&a| self.word(a)).collect();
        let missing: Vec<usize> = (0..addrs.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let read = self
                .mem
                .words(&missing.iter().map(|&i| addrs[i]).collect::<Vec<_>>());
            for (i, w) in missing.into_iter().zip(read) {
                out[i] = w;
            }
        }
        out
    }
}

/// For each start, the return address (file address) in the frame where the goroutine
/// waits: the first frame outside the waiting machinery or, for a goroutine that is all
/// machinery (the runtime's own, `os/signal`'s loop), its outermost frame. None when the
/// stack could not be walked.
pub fn blocked_at(
    starts: &[Start],
    bias: u64,
    arch: Arch,
    code: &impl Code,
    mem: &impl Words,
) -> Vec<Option<u64>> {
    let mut out = vec![None; starts.len()];
    let mut walks: Vec<Walk> = starts
        .iter()
        .enumerate()
        .map(|(g, s)| Walk {
            g,
            pc: s.pc,
            sp: s.sp,
            depth: 0,
        })
        .collect();
    // The last frame seen of each goroutine (a return address, as a file address).
    let mut last: Vec<Option<u64>> = vec![None; starts.len()];
    while !walks.is_empty() {
        // Frames to step out of, and the word each one's caller pc is read from.
        let mut next: Vec<(Walk, u64)> = Vec::with_capacity(walks.len());
        for w in walks.drain(..) {
            let s = &starts[w.g];
            let file_pc = w.pc.wrapping_sub(bias);
            if w.sp < s.stack_lo || w.sp >= s.stack_hi || w.depth >= MAX_DEPTH {
                continue;
            }
            let Some(frame) = code.frame(file_pc) else {
                continue;
            };
            if frame.top {
                out[w.g] = last[w.g];
                continue;
            }
            if frame.waits_here {
                out[w.g] = Some(file_pc);
                continue;
            }
            last[w.g] = Some(file_pc);
            let delta = frame.sp_delta as u64;
            let (ret_at, caller_sp) = match arch {
                // CALL pushed the return address just above the frame.
                Arch::X86_64 => (w.sp + delta, w.sp + delta + 8),
                // The prologue saved the link register at the bottom of the frame; a function
                // without a frame never saved it.
                Arch::Aarch64 if delta == 0 => continue,
                Arch::Aarch64 => (w.sp, w.sp + delta),
            };
            if caller_sp > s.stack_hi {
                continue;
            }
            next.push((
                Walk {
                    sp: caller_sp,
                    depth: w.depth + 1,
                    ..w
                },
                ret_at,
            ));
        }
        let addrs: Vec<u64> = next.iter().map(|&(_, a)| a).collect();
        for ((w, _), pc) in next.into_iter().zip(mem.words(&addrs)) {
            if let Some(pc) = pc.filter(|&pc| pc != 0) {
                walks.push(Walk { pc, ..w });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Functions as (entry, end, name, frame size).
    struct FakeCode(Vec<(u64, u64, &'static str, i32)>);

    impl Code for FakeCode {
        fn frame(&self, pc: u64) -> Option<CodeFrame> {
            self.0
                .iter()
                .find(|f| (f.0..f.1).contains(&pc))
                .map(|f| CodeFrame {
                    sp_delta: f.3,
                    top: goruntime::ends_a_goroutine_stack(f.2),
                    waits_here: !goruntime::is_wait_machinery(f.2),
                })
        }
    }

    struct FakeMem(HashMap<u64, u64>);

    impl Words for FakeMem {
        fn words(&self, addrs: &[u64]) -> Vec<Option<u64>> {
            addrs.iter().map(|a| self.0.get(a).copied()).collect()
        }
    }

    #[test]
    fn stack_tops_serve_words_within_and_read_the_rest() {
        let mem = FakeMem(HashMap::from([(0x9000, 42), (0x1ff8, 7)]));
        let mut top = vec![0u8; 24];
        top[8..16].copy_from_slice(&0x1234u64.to_le_bytes());
        let mut bytes = vec![0u8; 8];
        bytes.extend(top);
        let tops = StackTops {
            tops: vec![(0x1000, 0, 8), (0x2000, 8, 24)],
            bytes,
            mem: &mem,
        };
        // In a top, past its end (read from the process), before every top, misaligned.
        assert_eq!(
            tops.words(&[0x2008, 0x9000, 0x1ff8, 0x10, 0x2014]),
            vec![Some(0x1234), Some(42), Some(7), None, None]
        );
    }

    fn code() -> FakeCode {
        FakeCode(vec![
            (0x1000, 0x1100, "runtime.gopark", 0x28),
            (0x1100, 0x1200, "runtime.chansend", 0x60),
            (0x1200, 0x1300, "runtime.chansend1", 0x18),
            (0x2000, 0x2100, "main.worker", 0x40),
            (0x2100, 0x2200, "sync.(*WaitGroup).Wait", 0x30),
            (0x2200, 0x2300, "sync.runtime_SemacquireWaitGroup", 0x20),
            (0x3000, 0x3100, "runtime.goexit", 0),
            (0x3100, 0x3200, "runtime.bgsweep", 0x20),
            (0x3200, 0x3300, "os/signal.loop", 0x18),
        ])
    }

    #[test]
    fn walks_amd64_frames_to_the_first_frame_outside_the_runtime() {
        // gopark (sp 0x8000) <- chansend <- chansend1 <- main.worker <- goexit.
        let mut mem = HashMap::new();
        let mut sp = 0x8000u64;
        for (frame, ret) in [(0x28, 0x1150), (0x60, 0x1250), (0x18, 0x2050)] {
            mem.insert(sp + frame, ret);
            sp += frame + 8;
        }
        mem.insert(sp + 0x40, 0x3001);
        let start = Start {
            pc: 0x1080,
            sp: 0x8000,
            stack_lo: 0x7000,
            stack_hi: 0x9000,
        };
        let at = blocked_at(&[start], 0, Arch::X86_64, &code(), &FakeMem(mem.clone()));
        assert_eq!(at, vec![Some(0x2050)]);
        // The same stack in a PIE loaded 0x5550_0000_0000 higher.
        let bias = 0x5550_0000_0000;
        let moved: HashMap<u64, u64> = mem.iter().map(|(&a, &v)| (a, v + bias)).collect();
        let start = Start {
            pc: 0x1080 + bias,
            ..start
        };
        let at = blocked_at(&[start], bias, Arch::X86_64, &code(), &FakeMem(moved));
        assert_eq!(at, vec![Some(0x2050)]);
    }

    #[test]
    fn walks_arm64_frames_through_saved_link_registers() {
        // Each frame saved its caller's pc at its own bottom.
        let mut mem = HashMap::new();
        let mut sp = 0x8000u64;
        for (frame, ret) in [(0x28u64, 0x2180u64), (0x30, 0x2060)] {
            mem.insert(sp, ret);
            sp += frame;
        }
        let code = FakeCode(vec![
            (0x1000, 0x1100, "runtime.gopark", 0x28),
            (0x2100, 0x2200, "sync.(*WaitGroup).Wait", 0x30),
            (0x2000, 0x2100, "main.worker", 0x40),
        ]);
        let start = Start {
            pc: 0x1080,
            sp: 0x8000,
            stack_lo: 0x7000,
            stack_hi: 0x9000,
        };
        let at = blocked_at(&[start], 0, Arch::Aarch64, &code, &FakeMem(mem));
        assert_eq!(at, vec![Some(0x2060)]);
    }

    #[test]
    fn a_goroutine_of_machinery_only_is_placed_at_its_outermost_frame() {
        let mut mem = HashMap::new();
        mem.insert(0x8000 + 0x28, 0x3150); // gopark <- bgsweep
        mem.insert(0x8000 + 0x30 + 0x20, 0x3001); // bgsweep <- goexit
        let start = Start {
            pc: 0x1080,
            sp: 0x8000,
            stack_lo: 0x7000,
            stack_hi: 0x9000,
        };
        let at = blocked_at(&[start], 0, Arch::X86_64, &code(), &FakeMem(mem));
        assert_eq!(at, vec![Some(0x3150)]);
    }

    #[test]
    fn gives_up_on_stacks_that_do_not_hold_together() {
        let start = Start {
            pc: 0x1080,
            sp: 0x8000,
            stack_lo: 0x7000,
            stack_hi: 0x9000,
        };
        // A return address outside any function.
        let mem = FakeMem(HashMap::from([(0x8028, 0xdead_0000)]));
        assert_eq!(
            blocked_at(&[start], 0, Arch::X86_64, &code(), &mem),
            vec![None]
        );
        // A frame that would end above the stack.
        let high = Start {
            stack_hi: 0x8020,
            ..start
        };
        let mem = FakeMem(HashMap::from([(0x8028, 0x2050)]));
        assert_eq!(
            blocked_at(&[high], 0, Arch::X86_64, &code(), &mem),
            vec![None]
        );
        // A saved sp outside the stack, an unreadable word, a pc in no function.
        let outside = Start { sp: 0x100, ..start };
        let nowhere = Start { pc: 0x10, ..start };
        let empty = FakeMem(HashMap::new());
        assert_eq!(
            blocked_at(&[outside, start, nowhere], 0, Arch::X86_64, &code(), &empty),
            vec![None, None, None]
        );
        // A loop (each frame returning into itself) ends at the depth limit.
        let looping = FakeMem(
            (0..200u64)
                .map(|i| (0x7100 + i * 0x30 + 0x28, 0x1080))
                .collect(),
        );
        let low = Start {
            sp: 0x7100,
            ..start
        };
        assert_eq!(
            blocked_at(&[low], 0, Arch::X86_64, &code(), &looping),
            vec![None]
        );
    }
}
