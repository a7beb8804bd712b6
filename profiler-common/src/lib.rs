//! Plain types shared by the eBPF programs (`profiler-ebpf`) and user space (`profiler`).
//!
//! Everything here is `#[repr(C)]`, fixed size and free of pointers: these are the bytes of
//! kernel map keys, values and ring-buffer records.
#![no_std]

/// Process slots: every watched process owns one index into the per-slot arrays.
pub const MAX_SLOTS: u32 = 4096;
/// Entries of the tgid -> [`ProcConfig`] filter map.
pub const MAX_PROCS: u32 = MAX_SLOTS;
/// Upper bound of CPUs the kernel side sums over (per-CPU counters are summed once per GC cycle).
pub const MAX_CPUS: u32 = 256;
/// Buckets of the STW pause histogram: bucket `i` counts pauses of `[2^i, 2^(i+1))` ns; the
/// last bucket takes everything longer (2^31 ns is 2.1 s).
pub const PAUSE_BUCKETS: usize = 32;
/// Ring buffer size in bytes (a power of two, a multiple of the page size): about 26,000
/// records, shared by every watched process.
pub const EVENTS_BYTES: u32 = 1024 * 1024;
/// Records one process may stream per second (pauses and GC cycles: three per cycle), and
/// at once: a process that collects garbage in a loop cannot fill the ring for the others.
/// Its pause totals and histogram stay exact; only its records beyond these are dropped.
pub const EVENTS_PER_SECOND: u64 = 200;
pub const EVENTS_BURST: u64 = 400;

/// Go's register-based calling convention (ABIInternal) as indices into the kernel's saved
/// registers (`struct pt_regs` read as an array of u64): where a probe finds a Go function's
/// integer arguments and results, and the current g.
pub mod abi {
    pub struct Abi {
        /// Argument (and result) registers, in order.
        pub args: [usize; 9],
        /// The register that holds the current g.
        pub g: usize,
        /// u64 words of `struct pt_regs`.
        pub regs_len: usize,
    }

    /// `struct pt_regs` of x86_64, in kernel order.
    pub const X86_64_PT_REGS: [&str; 21] = [
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
        "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
    ];

    /// amd64: arguments in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; g in R14.
    pub const X86_64: Abi = Abi {
        args: [10, 5, 11, 14, 13, 9, 8, 7, 6],
        g: 1,
        regs_len: 21,
    };

    /// arm64 (`user_pt_regs`: x0-x30, sp, pc, pstate): arguments in R0-R15 (the first nine
    /// are all gprof reads), g in R28.
    pub const AARCH64: Abi = Abi {
        args: [0, 1, 2, 3, 4, 5, 6, 7, 8],
        g: 28,
        regs_len: 34,
    };
}

/// Map names, as the eBPF object defines them and user space looks them up.
pub mod maps {
    pub const PROCS: &str = "PROCS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const GC_STATE: &str = "GC_STATE";
    pub const EVENTS: &str = "EVENTS";
    pub const SITES: &str = "SITES";
    pub const SITE_ENTRIES: &str = "SITE_ENTRIES";
    pub const LOSSES: &str = "LOSSES";
}

/// What the kernel side could not record, counted per CPU in `LOSSES` (index = kind).
pub mod loss {
    /// Records dropped because the `EVENTS` ring buffer was full.
    pub const EVENTS_DROPPED: u32 = 0;
    /// Creations or exits counted under a process's "other" site: `SITES` was full.
    pub const SITES_FULL: u32 = 1;
    /// Creations or exits not counted per site at all: not even "other" fit in `SITES`.
    pub const SITE_COUNTS_LOST: u32 = 2;
    /// Records a process streamed beyond [`super::EVENTS_PER_SECOND`], dropped.
    pub const EVENTS_THROTTLED: u32 = 3;
    /// Creations or exits counted under a process's "other" site: the process had
    /// [`super::MAX_SITES_PER_PROC`] sites in `SITES` already.
    pub const SITES_QUOTA: u32 = 4;
    pub const KINDS: u32 = 5;
}

/// Creation sites the kernel counts, over all watched processes; when the map is full, new
/// sites of a process are counted under its "other" key (`gopc` and `startpc` 0).
pub const MAX_SITE_ENTRIES: u32 = 16384;
/// Sites one process may hold in `SITES` (its creation sites come from its own memory, which
/// it can forge): its further sites are counted under its "other" key.
pub const MAX_SITES_PER_PROC: u32 = 512;

/// A creation site of one process: the `go` statement's PC and the function started.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SiteKey {
    pub tgid: u32,
    pub _pad: u32,
    pub gopc: u64,
    pub startpc: u64,
}

/// Goroutines created and exited at one site (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounts {
    pub created: u64,
    pub exited: u64,
}

/// Program names, one per probe kind.
pub mod programs {
    pub const NEWPROC1: &str = "go_newproc1";
    pub const GFPUT: &str = "go_gfput";
    pub const SCANSTACK: &str = "go_scanstack";
    pub const STW_STOP: &str = "go_stw_stop";
    pub const STW_START_RET: &str = "go_stw_start_ret";
    pub const GC_MARK_TERMINATION: &str = "go_gc_mark_termination";
    pub const COPYSTACK: &str = "go_copystack";
}

/// Stack sizes grown to, by log2: bucket `i` counts stacks of `2^(i + STACK_BUCKET_SHIFT)`
/// bytes (2 KiB, the smallest stack, up; the last bucket takes everything larger).
pub const STACK_BUCKETS: usize = 20;
pub const STACK_BUCKET_SHIFT: u32 = 11;

/// The bucket of a stack of `size` bytes.
#[inline(always)]
pub fn stack_bucket(size: u64) -> usize {
    let log2 = 63u32.saturating_sub(size.max(1).leading_zeros());
    let i = log2.saturating_sub(STACK_BUCKET_SHIFT) as usize;
    if i >= STACK_BUCKETS {
        STACK_BUCKETS - 1
    } else {
        i
    }
}

/// How the kernel side learns why the world stopped (differs between Go releases).
pub mod stw_reason {
    /// The reason is the first argument of `stopTheWorldWithSema` (Go 1.21+).
    pub const FROM_ARG: u32 = 0;
    /// Go 1.19 passes no reason: GC stops are told apart by `m.preemptoff`, which is empty
    /// when `gcStart` stops the world and "gcing" when `gcMarkDone` does.
    pub const FROM_PREEMPTOFF: u32 = 1;
}

/// Why the world stopped, as the runtime's `stwReason` enum numbers it (Go 1.21+). Go 1.19's
/// stops are mapped onto the same values.
pub mod stw_kind {
    pub const UNKNOWN: u32 = 0;
    pub const GC_MARK_TERM: u32 = 1;
    pub const GC_SWEEP_TERM: u32 = 2;
    /// Any stop that is not part of a GC cycle (ReadMemStats, GOMAXPROCS, tracing...). For
    /// Go 1.19 the exact reason is unknown.
    pub const OTHER: u32 = 255;

    /// Whether the runtime counts this stop as a GC pause.
    pub const fn is_gc(kind: u32) -> bool {
        kind == GC_MARK_TERM || kind == GC_SWEEP_TERM
    }
}

/// What the kernel needs to know about one watched process. Key: host tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcConfig {
    /// Index into [`Counters`] and [`GcState`] arrays.
    pub slot: u32,
    /// One of [`stw_reason`].
    pub stw_reason_source: u32,
    /// Offset of `g.m` (the goroutine's M).
    pub g_m: u32,
    /// Offset of `m.preemptoff` (a Go string), used with [`stw_reason::FROM_PREEMPTOFF`].
    pub m_preemptoff: u32,
    /// Go <= 1.21 measures GC pauses from `work.pauseStart` to, for mark termination,
    /// `memstats.last_gc_nanotime`: the addresses of those words in the target (0 for releases
    /// whose pause bounds are in registers at the probes).
    pub pause_start_addr: u64,
    pub mark_term_end_addr: u64,
    /// Offsets of `g.gopc` and `g.startpc`: an exiting goroutine's creation site.
    pub g_gopc: u32,
    pub g_startpc: u32,
    /// Which argument of `runtime.newproc1` is the `go` statement's PC: 2 (Go 1.18+), or 4
    /// (Go 1.17, whose newproc1 also took the argument pointer and size).
    pub newproc1_callerpc_arg: u32,
    pub _pad: u32,
}

/// Hot counters, one per slot and CPU. Cumulative since the slot was assigned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `runtime.newproc1` calls: goroutines created.
    pub created: u64,
    /// `runtime.gfput` calls: goroutines that exited into the free pool.
    pub exited: u64,
    /// `runtime.scanstack` calls: live goroutine stacks scanned by the GC.
    pub stack_scans: u64,
    /// Sum of `g.stack.hi - g.stack.lo` over those scans.
    pub stack_scan_bytes: u64,
    /// `runtime.copystack` calls (growths and shrinks).
    pub stack_copies: u64,
    /// Those to a larger stack: stack growths.
    pub stack_growths: u64,
    /// Those growths by the size grown to ([`stack_bucket`]).
    pub stack_growth_sizes: [u64; STACK_BUCKETS],
    /// Creations and exits counted under "other" because the process had its quota of sites.
    pub sites_refused: u64,
}

/// GC and stop-the-world state of one slot. Written only around stop-the-world and at the end
/// of GC cycles, which the runtime serializes per process, so no per-CPU copies are needed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcState {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC, as Go's `nanotime`) when the current stop began;
    /// 0 when the world is running.
    pub stw_start_ns: u64,
    /// [`stw_kind`] of the current stop.
    pub stw_kind: u32,
    pub _pad: u32,
    /// Completed GC cycles (`runtime.gcMarkTermination` calls).
    pub gc_cycles: u64,
    /// GC stop-the-world pauses (sweep termination and mark termination).
    pub gc_pauses: u64,
    pub gc_pause_total_ns: u64,
    pub gc_pause_max_ns: u64,
    /// Log2 histogram of GC pauses, see [`PAUSE_BUCKETS`].
    pub gc_pause_hist: [u64; PAUSE_BUCKETS],
    /// Stops that are not part of a GC cycle.
    pub other_pauses: u64,
    pub other_pause_total_ns: u64,
    /// Stack-scan totals (summed over CPUs) at the end of the previous GC cycle, so that each
    /// cycle's figures can be reported on their own.
    pub scans_at_last_cycle: u64,
    pub scan_bytes_at_last_cycle: u64,
    /// The process's record budget (a token bucket of [`EVENTS_BURST`], filled at
    /// [`EVENTS_PER_SECOND`]): tokens, when it was last filled, and records dropped for want
    /// of a token.
    pub event_tokens: u64,
    pub event_tokens_ns: u64,
    pub events_throttled: u64,
}

impl GcState {
    /// Takes a record token at `now` (monotonic ns); false when the process has streamed
    /// its share.
    #[inline(always)]
    pub fn take_event_token(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.event_tokens_ns);
        let earned = elapsed / (1_000_000_000 / EVENTS_PER_SECOND);
        if earned > 0 {
            let tokens = self.event_tokens.saturating_add(earned);
            self.event_tokens = if tokens > EVENTS_BURST {
                EVENTS_BURST
            } else {
                tokens
            };
            self.event_tokens_ns = now;
        }
        if self.event_tokens == 0 {
            self.events_throttled += 1;
            return false;
        }
        self.event_tokens -= 1;
        true
    }
}

impl Default for GcState {
    fn default() -> Self {
        Self {
            stw_start_ns: 0,
            stw_kind: 0,
            _pad: 0,
            gc_cycles: 0,
            gc_pauses: 0,
            gc_pause_total_ns: 0,
            gc_pause_max_ns: 0,
            gc_pause_hist: [0; PAUSE_BUCKETS],
            other_pauses: 0,
            other_pause_total_ns: 0,
            scans_at_last_cycle: 0,
            scan_bytes_at_last_cycle: 0,
            event_tokens: 0,
            event_tokens_ns: 0,
            events_throttled: 0,
        }
    }
}

/// Ring-buffer record kinds.
pub mod event_kind {
    /// A stop-the-world pause ended: [`super::Event::a`] = duration ns, `b` = [`super::stw_kind`].
    pub const PAUSE: u32 = 1;
    /// A GC cycle completed: `a` = cycle number (since the slot was assigned), `b` = stacks
    /// scanned in that cycle, `c` = stack bytes scanned in that cycle.
    pub const GC_CYCLE: u32 = 2;
}

/// One low-rate record streamed to user space (per pause, per GC cycle).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// One of [`event_kind`].
    pub kind: u32,
    pub tgid: u32,
    /// `bpf_ktime_get_ns` when the record was made.
    pub ts_ns: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

/// The histogram bucket of a pause of `ns` nanoseconds.
#[inline(always)]
pub const fn pause_bucket(ns: u64) -> usize {
    if ns == 0 {
        return 0;
    }
    let b = 63 - ns.leading_zeros() as usize;
    if b >= PAUSE_BUCKETS {
        PAUSE_BUCKETS - 1
    } else {
        b
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers and arrays of integers, with explicit padding.
    unsafe impl aya::Pod for super::ProcConfig {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::GcState {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::SiteKey {}
    unsafe impl aya::Pod for super::SiteCounts {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_buckets_start_at_2k() {
        assert_eq!(stack_bucket(0), 0);
        assert_eq!(stack_bucket(2048), 0);
        assert_eq!(stack_bucket(4096), 1);
        assert_eq!(stack_bucket(8192), 2);
        assert_eq!(stack_bucket(1 << 30), STACK_BUCKETS - 1);
        assert_eq!(stack_bucket(u64::MAX), STACK_BUCKETS - 1);
    }

    #[test]
    fn pause_buckets_are_log2_and_capped() {
        assert_eq!(pause_bucket(0), 0);
        assert_eq!(pause_bucket(1), 0);
        assert_eq!(pause_bucket(2), 1);
        assert_eq!(pause_bucket(1023), 9);
        assert_eq!(pause_bucket(1024), 10);
        assert_eq!(pause_bucket(u64::MAX), PAUSE_BUCKETS - 1);
    }

    #[test]
    fn go_register_abi() {
        let name = |i: usize| abi::X86_64_PT_REGS[i];
        let args: [&str; 9] = abi::X86_64.args.map(name);
        assert_eq!(
            args,
            ["rax", "rbx", "rcx", "rdi", "rsi", "r8", "r9", "r10", "r11"]
        );
        assert_eq!(name(abi::X86_64.g), "r14");
        assert_eq!(abi::X86_64.regs_len, abi::X86_64_PT_REGS.len());
        assert_eq!(abi::AARCH64.args, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(abi::AARCH64.g, 28);
        for a in [&abi::X86_64, &abi::AARCH64] {
            assert!(a.args.iter().chain([&a.g]).all(|&i| i < a.regs_len));
        }
    }

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<ProcConfig>(), 4 * 4 + 8 * 2 + 4 * 4);
        assert_eq!(core::mem::size_of::<SiteKey>(), 24);
        assert_eq!(core::mem::size_of::<SiteCounts>(), 16);
        assert_eq!(core::mem::size_of::<Counters>(), 8 * 7 + 8 * STACK_BUCKETS);
        assert_eq!(core::mem::size_of::<Event>(), 40);
        assert_eq!(core::mem::size_of::<GcState>(), 8 * 13 + 8 * PAUSE_BUCKETS);
    }

    #[test]
    fn a_process_streams_its_share_of_records_and_no_more() {
        let mut g = GcState::default();
        let second = 1_000_000_000u64;
        let t0 = 1_000 * second;
        // A burst at first, then the rate.
        let first: u64 = (0..1000).map(|_| u64::from(g.take_event_token(t0))).sum();
        assert_eq!(first, EVENTS_BURST);
        let mut taken = 0;
        for i in 0..10_000u64 {
            taken += u64::from(g.take_event_token(t0 + i * second / 1000));
        }
        assert!(taken.abs_diff(10 * EVENTS_PER_SECOND) <= 2, "{taken}");
        assert_eq!(g.events_throttled, 1000 - EVENTS_BURST + 10_000 - taken);
        // An honest process (a few records a second) never loses one.
        let mut h = GcState::default();
        assert!((0..600u64).all(|i| h.take_event_token(t0 + i * second / 3)));
    }
}
