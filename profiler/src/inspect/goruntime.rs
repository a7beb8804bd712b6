//! What gprof knows about the Go runtime, per release, as data: the functions it probes, the
//! globals it reads, and the struct offsets of each supported release.
//!
//! Every number here was read from the DWARF of binaries built by each toolchain (see
//! `shared/docs/go-runtime.md`) and is checked again by the end-to-end tests against the
//! runtime's own figures. A release missing from [`LAYOUTS`] is refused, never guessed.

use std::fmt;

use profiler_common::programs;
use profiler_common::stw_reason;

/// A Go release as `.go.buildinfo` names it, e.g. `go1.19.8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoVersion {
    /// The exact string from the binary.
    pub raw: String,
    pub major: u32,
    pub minor: u32,
    /// 0 for a release candidate or beta.
    pub patch: u32,
}

impl GoVersion {
    /// Parses `go1.N`, `go1.N.P`, `go1.NrcK`, `go1.NbetaK`, with optional suffixes such as
    /// ` X:boringcrypto` or `-bigcorp`.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix("go")?;
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(rest.len());
        let mut parts = rest[..end].split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_part = parts.next()?;
        let digits = minor_part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(minor_part.len());
        let minor = minor_part[..digits].parse().ok()?;
        let patch = match parts.next() {
            Some(p) => {
                let d = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
                p[..d].parse().ok()?
            }
            None => 0,
        };
        Some(Self {
            raw: raw.to_string(),
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Where `sched.gFree` keeps its counts (the shape changed in Go 1.25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedGFree {
    /// Go <= 1.24: lists `stack` and `noStack` plus one `n int32`.
    Counter { stack: u64, no_stack: u64, n: u64 },
    /// Go 1.25+: each `gList` carries its own `size int32` right after its head pointer.
    Sized { stack: u64, no_stack: u64 },
}

impl SchedGFree {
    /// The offsets (within `schedt`) of the `int32` counts whose sum is the global pool size.
    pub fn count_offsets(&self) -> Vec<u64> {
        match *self {
            Self::Counter { n, .. } => vec![n],
            Self::Sized { stack, no_stack } => vec![stack + 8, no_stack + 8],
        }
    }

    /// Every field `runtime.gfput` touches: the lock (an 8-byte mutex right before the lists
    /// in every release), both list heads and the counts.
    pub fn gfput_offsets(&self) -> Vec<u64> {
        let (stack, no_stack) = self.list_offsets();
        let mut all = vec![stack - 8, stack, no_stack];
        all.extend(self.count_offsets());
        all
    }

    /// The offsets of the two list heads.
    pub fn list_offsets(&self) -> (u64, u64) {
        match *self {
            Self::Counter {
                stack, no_stack, ..
            }
            | Self::Sized { stack, no_stack } => (stack, no_stack),
        }
    }
}

/// Struct offsets and calling details of one range of releases (linux, amd64 and arm64 alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First and last minor release (of Go 1) this layout was verified on.
    pub minors: (u32, u32),
    pub g_m: u64,
    pub g_atomicstatus: u64,
    pub g_goid: u64,
    pub g_gopc: u64,
    pub g_startpc: u64,
    /// `g.sched`, a `gobuf` that starts with `sp` then `pc`: where a parked goroutine resumes.
    pub g_sched: u64,
    /// `gobuf.lr` (arm64's saved link register) within `g.sched`: after sp, pc, g, ctxt and
    /// (before Go 1.25) ret.
    pub gobuf_lr: u64,
    /// `g.syscallsp`, followed by `g.syscallpc`: the same for a goroutine in a system call.
    pub g_syscallsp: u64,
    /// `g.waitsince` (int64, nanotime): stamped by the GC on a goroutine it finds blocked,
    /// cleared when the goroutine runs.
    pub g_waitsince: u64,
    /// `g.waitreason` (uint8): an index into the release's [`wait_reasons`].
    pub g_waitreason: u64,
    /// `g.trackingSeq` (uint8): bumped every time the goroutine stops running.
    pub g_tracking_seq: u64,
    /// `g.lockedm`: the M a goroutine is locked to (`runtime.LockOSThread`), else 0.
    pub g_lockedm: u64,
    /// Go 1.21+: `g.parentGoid`, the goroutine that created it.
    pub g_parent_goid: Option<u64>,
    pub m_curg: u64,
    /// `m.id`, as a traceback's header shows it.
    pub m_id: u64,
    pub m_preemptoff: u64,
    /// `p.gFree`'s count (`n` before 1.25, `size` since).
    pub p_gfree_count: u64,
    pub sched_ngsys: u64,
    /// `sched.goidgen`: goroutine IDs handed out to the Ps, in batches of 16.
    pub sched_goidgen: u64,
    /// `p.goidcache` (the next ID the P hands out), followed by `p.goidcacheend`.
    pub p_goidcache: u64,
    pub sched_gfree: SchedGFree,
    /// One of [`profiler_common::stw_reason`].
    pub stw_reason_source: u32,
    /// Which argument of `runtime.newproc1` is the `go` statement's PC (Go 1.17's newproc1
    /// also took the argument pointer and size).
    pub newproc1_callerpc_arg: u32,
    pub pause_clock: PauseClock,
}

/// Where the runtime reads the clock for the start and end of a GC pause, so that gprof's
/// pauses are the runtime's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseClock {
    /// Go 1.22+: a pause starts in `stopTheWorldWithSema` (gprof's entry probe reads the clock
    /// a few instructions earlier) and ends at the time `startTheWorldWithSema` returns (for
    /// mark termination, the `now` that `gcMarkTermination` passes to it).
    Registers,
    /// Go <= 1.21: the runtime's pause starts at `work.pauseStart`, read from the clock before
    /// it calls `stopTheWorldWithSema`, and ends at the time `startTheWorldWithSema` returns
    /// or, for mark termination, at the `now` that `gcMarkTermination` stores in
    /// `memstats.last_gc_nanotime` before restarting the world. The offsets are in `workType`
    /// and `mstats`; the field stored just before each (`tSweepTerm`, `last_gc_unix`)
    /// identifies the pair in stripped machine code.
    Globals {
        work_t_sweep_term: u64,
        work_pause_start: u64,
        last_gc_unix: u64,
        last_gc_nanotime: u64,
    },
}

/// The known releases, Go 1.17 to 1.27. Newer ones are read with the newest entry (or their
/// DWARF) only when the self-check at attach accepts it (see `selfcheck`).
pub const LAYOUTS: &[Layout] = &[
    // Go 1.17, 1.18 and 1.20: no toolchain here; read off the runtime sources of go1.17.13,
    // go1.18 and go1.20.2 (struct layouts computed by compiling the sources' type
    // declarations, the method checked against DWARF on every release that has a toolchain
    // here) and confirmed in the machine code of third-party binaries of 1.17.2, 1.17.8,
    // 1.18.0, 1.18.3 and 1.20.12 (shared/docs and docs/releases.md). The self-check at
    // attach checks them again in every process.
    Layout {
        minors: (17, 17),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x128,
        g_startpc: 0x138,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbd,
        g_lockedm: 0xe8,
        g_parent_goid: None,
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0xe08,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x5e0,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa0,
            no_stack: 0xa8,
            n: 0xb0,
        },
        stw_reason_source: stw_reason::FROM_PREEMPTOFF,
        newproc1_callerpc_arg: 4,
        pause_clock: PauseClock::Globals {
            work_t_sweep_term: 0x150,
            work_pause_start: 0x178,
            last_gc_unix: 0xa8,
            last_gc_nanotime: 0x1738,
        },
    },
    Layout {
        minors: (18, 18),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x128,
        g_startpc: 0x138,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbd,
        g_lockedm: 0xe8,
        g_parent_goid: None,
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a8,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x180,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa0,
            no_stack: 0xa8,
            n: 0xb0,
        },
        stw_reason_source: stw_reason::FROM_PREEMPTOFF,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Globals {
            work_t_sweep_term: 0x168,
            work_pause_start: 0x190,
            last_gc_unix: 0xa8,
            last_gc_nanotime: 0x1738,
        },
    },
    Layout {
        minors: (19, 19),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x128,
        g_startpc: 0x138,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbd,
        g_lockedm: 0xe8,
        g_parent_goid: None,
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a8,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x180,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa0,
            no_stack: 0xa8,
            n: 0xb0,
        },
        stw_reason_source: stw_reason::FROM_PREEMPTOFF,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Globals {
            work_t_sweep_term: 0x168,
            work_pause_start: 0x190,
            last_gc_unix: 0xe08,
            last_gc_nanotime: 0x1e28,
        },
    },
    Layout {
        minors: (20, 20),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x128,
        g_startpc: 0x138,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbd,
        g_lockedm: 0xe8,
        g_parent_goid: None,
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a8,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x180,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa8,
            no_stack: 0xb0,
            n: 0xb8,
        },
        stw_reason_source: stw_reason::FROM_PREEMPTOFF,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Globals {
            work_t_sweep_term: 0x160,
            work_pause_start: 0x188,
            last_gc_unix: 0xe08,
            last_gc_nanotime: 0x1e28,
        },
    },
    Layout {
        minors: (21, 21),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x118,
        g_startpc: 0x128,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbc,
        g_lockedm: 0xd0,
        g_parent_goid: Some(0x110),
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a8,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x180,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa8,
            no_stack: 0xb0,
            n: 0xb8,
        },
        stw_reason_source: stw_reason::FROM_ARG,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Globals {
            work_t_sweep_term: 0x1a0,
            work_pause_start: 0x1c8,
            last_gc_unix: 0xe08,
            last_gc_nanotime: 0x1e28,
        },
    },
    Layout {
        minors: (22, 22),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x118,
        g_startpc: 0x128,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbf,
        g_lockedm: 0xd0,
        g_parent_goid: Some(0x110),
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a8,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x180,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa8,
            no_stack: 0xb0,
            n: 0xb8,
        },
        stw_reason_source: stw_reason::FROM_ARG,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Registers,
    },
    Layout {
        minors: (23, 24),
        g_m: 0x30,
        g_atomicstatus: 0x98,
        g_goid: 0xa0,
        g_gopc: 0x120,
        g_startpc: 0x130,
        g_sched: 0x38,
        gobuf_lr: 0x28,
        g_syscallsp: 0x70,
        g_waitsince: 0xb0,
        g_waitreason: 0xb8,
        g_tracking_seq: 0xc7,
        g_lockedm: 0xd8,
        g_parent_goid: Some(0x118),
        m_curg: 0xc0,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a0,
        sched_ngsys: 0x48,
        sched_goidgen: 0x0,
        p_goidcache: 0x178,
        sched_gfree: SchedGFree::Counter {
            stack: 0xa8,
            no_stack: 0xb0,
            n: 0xb8,
        },
        stw_reason_source: stw_reason::FROM_ARG,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Registers,
    },
    Layout {
        minors: (25, 25),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x118,
        g_startpc: 0x128,
        g_sched: 0x38,
        gobuf_lr: 0x20,
        g_syscallsp: 0x68,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbf,
        g_lockedm: 0xd0,
        g_parent_goid: Some(0x110),
        m_curg: 0xb8,
        m_id: 0xe0,
        m_preemptoff: 0xf0,
        p_gfree_count: 0x9a0,
        sched_ngsys: 0x50,
        sched_goidgen: 0x0,
        p_goidcache: 0x178,
        sched_gfree: SchedGFree::Sized {
            stack: 0xb0,
            no_stack: 0xc0,
        },
        stw_reason_source: stw_reason::FROM_ARG,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Registers,
    },
    Layout {
        minors: (26, 27),
        g_m: 0x30,
        g_atomicstatus: 0x90,
        g_goid: 0x98,
        g_gopc: 0x120,
        g_startpc: 0x130,
        g_sched: 0x38,
        gobuf_lr: 0x20,
        g_syscallsp: 0x68,
        g_waitsince: 0xa8,
        g_waitreason: 0xb0,
        g_tracking_seq: 0xbf,
        g_lockedm: 0xd0,
        g_parent_goid: Some(0x118),
        m_curg: 0xb8,
        m_id: 0xe8,
        m_preemptoff: 0xf8,
        p_gfree_count: 0x9a8,
        sched_ngsys: 0x60,
        sched_goidgen: 0x0,
        p_goidcache: 0x180,
        sched_gfree: SchedGFree::Sized {
            stack: 0xc0,
            no_stack: 0xd0,
        },
        stw_reason_source: stw_reason::FROM_ARG,
        newproc1_callerpc_arg: 2,
        pause_clock: PauseClock::Registers,
    },
];

/// The oldest release gprof reads.
pub const OLDEST_MINOR: u32 = 17;

/// Why a release cannot be watched.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnsupportedRelease {
    #[error("{0} is older than go1.17, the oldest release gprof reads")]
    TooOld(String),
    #[error(
        "{0} on arm64 passes arguments on the stack (Go's register ABI came to arm64 in go1.18), and gprof's probes read registers"
    )]
    StackAbi(String),
}

/// How a binary's release relates to gprof's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// A release of the table.
    Known,
    /// Newer than the table: its newest entry is assumed, and must pass the self-check.
    Newer,
}

fn newest_minor() -> u32 {
    newest_layout().minors.1
}

/// The table entry of the newest known release.
pub fn newest_layout() -> &'static Layout {
    LAYOUTS
        .iter()
        .max_by_key(|l| l.minors.1)
        .expect("the table is not empty")
}

/// Where arm64 builds differ from the (amd64) table, found by the DWARF cross-check of the
/// arm64 builds of every release: go1.21's `workType` is laid out differently.
const ARM64_PAUSE_CLOCKS: &[(u32, PauseClock)] = &[
    // From the sources (arm64's cache lines are 128 bytes from Go 1.20).
    (
        20,
        PauseClock::Globals {
            work_t_sweep_term: 0x1a0,
            work_pause_start: 0x1c8,
            last_gc_unix: 0xe08,
            last_gc_nanotime: 0x1e28,
        },
    ),
    (
        21,
        PauseClock::Globals {
            work_t_sweep_term: 0x220,
            work_pause_start: 0x248,
            last_gc_unix: 0xe08,
            last_gc_nanotime: 0x1e28,
        },
    ),
];

/// The layout of a release on an architecture: its table entry, or for a release newer than
/// the table the newest entry (which the self-check must then accept); or why there is none.
pub mod traceback;

pub fn layout_for_arch(
    version: &GoVersion,
    arch: crate::inspect::binary::Arch,
) -> Result<(Layout, Fit), UnsupportedRelease> {
    let (layout, fit) = match layout_for(version) {
        Some(l) => (l.clone(), Fit::Known),
        None if version.major > 1 || version.minor > newest_minor() => {
            (newest_layout().clone(), Fit::Newer)
        }
        None => return Err(UnsupportedRelease::TooOld(version.raw.clone())),
    };
    let mut layout = layout;
    if arch == crate::inspect::binary::Arch::Aarch64 {
        if version.major == 1 && version.minor < 18 {
            return Err(UnsupportedRelease::StackAbi(version.raw.clone()));
        }
        if let Some((_, clock)) = ARM64_PAUSE_CLOCKS.iter().find(|(m, _)| *m == version.minor) {
            layout.pause_clock = *clock;
        }
    }
    Ok((layout, fit))
}

/// The (amd64) table entry of a release.
pub fn layout_for(version: &GoVersion) -> Option<&'static Layout> {
    (version.major == 1)
        .then(|| {
            LAYOUTS
                .iter()
                .find(|l| (l.minors.0..=l.minors.1).contains(&version.minor))
        })
        .flatten()
}

/// On which stack a probed function runs, which decides where its entry probe may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// The system stack (g0): never grows, so the stack check's branch is hit once per call.
    System,
    /// A goroutine stack: the prologue may call morestack and re-enter the function, so the
    /// probe must sit after the stack check.
    Goroutine,
}

/// Which instructions of the function carry the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeAt {
    /// Once per call, near the entry (see [`Stack`]); the arguments are still in registers.
    Entry,
    /// Every RET instruction; the result is in the result register.
    Returns,
}

/// One probed runtime function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub function: &'static str,
    pub program: &'static str,
    pub stack: Stack,
    pub at: ProbeAt,
    /// What the probe measures, for `gprof check` and error messages.
    pub purpose: &'static str,
    /// Fires in proportion to the target's activity (per goroutine created, exited, scanned):
    /// subject to the overhead budget.
    pub hot: bool,
}

/// The probes gprof attaches, in attach order (counters before the events that read them).
pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        function: "runtime.newproc1",
        program: programs::NEWPROC1,
        stack: Stack::System,
        at: ProbeAt::Entry,
        hot: true,
        purpose: "goroutine created",
    },
    ProbeSpec {
        function: "runtime.gfput",
        program: programs::GFPUT,
        stack: Stack::System,
        at: ProbeAt::Entry,
        hot: true,
        purpose: "goroutine exited to the free pool",
    },
    ProbeSpec {
        function: "runtime.scanstack",
        program: programs::SCANSTACK,
        stack: Stack::System,
        at: ProbeAt::Entry,
        hot: true,
        purpose: "GC scans a live goroutine's stack",
    },
    ProbeSpec {
        function: "runtime.copystack",
        program: programs::COPYSTACK,
        stack: Stack::System,
        at: ProbeAt::Entry,
        hot: true,
        purpose: "a goroutine's stack is copied (grows, or shrinks in GC)",
    },
    ProbeSpec {
        function: "runtime.stopTheWorldWithSema",
        program: programs::STW_STOP,
        stack: Stack::System,
        at: ProbeAt::Entry,
        hot: false,
        purpose: "stop-the-world begins",
    },
    ProbeSpec {
        function: "runtime.startTheWorldWithSema",
        program: programs::STW_START_RET,
        stack: Stack::System,
        at: ProbeAt::Returns,
        hot: false,
        purpose: "stop-the-world ends (result: the runtime's own end time)",
    },
    ProbeSpec {
        function: "runtime.gcMarkTermination",
        program: programs::GC_MARK_TERMINATION,
        stack: Stack::Goroutine,
        at: ProbeAt::Entry,
        hot: false,
        purpose: "GC cycle completes",
    },
];

/// The runtime's `waitReasonStrings` per range of releases (index = `g.waitreason`), as the
/// traceback prints them. Releases before this table's first have none; `gprof` prints an
/// unknown index as `wait reason N`.
pub const WAIT_REASONS: &[((u32, u32), &[&str])] = &[
    (
        (17, 19),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "select",
            "select (no cases)",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "chan receive",
            "chan send",
            "finalizer wait",
            "force gc (idle)",
            "semacquire",
            "sleep",
            "sync.Cond.Wait",
            "timer goroutine (idle)",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "preempted",
            "debug call",
        ],
    ),
    (
        (20, 21),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "select",
            "select (no cases)",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "chan receive",
            "chan send",
            "finalizer wait",
            "force gc (idle)",
            "semacquire",
            "sleep",
            "sync.Cond.Wait",
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.RWMutex.Lock",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "GC worker (active)",
            "preempted",
            "debug call",
            "GC mark termination",
            "stopping the world",
        ],
    ),
    (
        (22, 22),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "select",
            "select (no cases)",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "chan receive",
            "chan send",
            "finalizer wait",
            "force gc (idle)",
            "semacquire",
            "sleep",
            "sync.Cond.Wait",
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.RWMutex.Lock",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "GC worker (active)",
            "preempted",
            "debug call",
            "GC mark termination",
            "stopping the world",
            "flushing proc caches",
            "trace goroutine status",
            "trace proc status",
            "page trace flush",
            "coroutine",
        ],
    ),
    (
        (23, 23),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "select",
            "select (no cases)",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "chan receive",
            "chan send",
            "finalizer wait",
            "force gc (idle)",
            "semacquire",
            "sleep",
            "sync.Cond.Wait",
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.RWMutex.Lock",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "GC worker (active)",
            "preempted",
            "debug call",
            "GC mark termination",
            "stopping the world",
            "flushing proc caches",
            "trace goroutine status",
            "trace proc status",
            "page trace flush",
            "coroutine",
            "GC weak to strong wait",
        ],
    ),
    (
        (24, 24),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "select",
            "select (no cases)",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "chan receive",
            "chan send",
            "finalizer wait",
            "force gc (idle)",
            "semacquire",
            "sleep",
            "sync.Cond.Wait",
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.RWMutex.Lock",
            "sync.WaitGroup.Wait",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "GC worker (active)",
            "preempted",
            "debug call",
            "GC mark termination",
            "stopping the world",
            "flushing proc caches",
            "trace goroutine status",
            "trace proc status",
            "page trace flush",
            "coroutine",
            "GC weak to strong wait",
            "synctest.Run",
            "synctest.Wait",
            "chan receive (synctest)",
            "chan send (synctest)",
            "select (synctest)",
        ],
    ),
    (
        (25, 25),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "select",
            "select (no cases)",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "chan receive",
            "chan send",
            "finalizer wait",
            "force gc (idle)",
            "GOMAXPROCS updater (idle)",
            "semacquire",
            "sleep",
            "sync.Cond.Wait",
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.RWMutex.Lock",
            "sync.WaitGroup.Wait",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "GC worker (active)",
            "preempted",
            "debug call",
            "GC mark termination",
            "stopping the world",
            "flushing proc caches",
            "trace goroutine status",
            "trace proc status",
            "page trace flush",
            "coroutine",
            "GC weak to strong wait",
            "synctest.Run",
            "synctest.Wait",
            "chan receive (durable)",
            "chan send (durable)",
            "select (durable)",
            "sync.WaitGroup.Wait (durable)",
            "cleanup wait",
        ],
    ),
    (
        (26, 27),
        &[
            "",
            "GC assist marking",
            "IO wait",
            "dumping heap",
            "garbage collection",
            "garbage collection scan",
            "panicwait",
            "GC assist wait",
            "GC sweep wait",
            "GC scavenge wait",
            "finalizer wait",
            "force gc (idle)",
            "GOMAXPROCS updater (idle)",
            "semacquire",
            "sleep",
            "chan receive (nil chan)",
            "chan send (nil chan)",
            "select (no cases)",
            "select",
            "chan receive",
            "chan send",
            "sync.Cond.Wait",
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.RWMutex.Lock",
            "sync.WaitGroup.Wait",
            "trace reader (blocked)",
            "wait for GC cycle",
            "GC worker (idle)",
            "GC worker (active)",
            "preempted",
            "debug call",
            "GC mark termination",
            "stopping the world",
            "flushing proc caches",
            "trace goroutine status",
            "trace proc status",
            "page trace flush",
            "coroutine",
            "GC weak to strong wait",
            "synctest.Run",
            "synctest.Wait",
            "chan receive (durable)",
            "chan send (durable)",
            "select (durable)",
            "sync.WaitGroup.Wait (durable)",
            "cleanup wait",
        ],
    ),
];

/// The wait reasons of a release (None for a release missing from [`WAIT_REASONS`]).
pub fn wait_reasons(version: &GoVersion) -> Option<&'static [&'static str]> {
    (version.major == 1)
        .then(|| {
            WAIT_REASONS
                .iter()
                .find(|((a, b), _)| (*a..=*b).contains(&version.minor))
                .map(|(_, r)| *r)
        })
        .flatten()
}

/// Goroutine statuses (`g.atomicstatus` without the `_Gscan` bit) gprof tells apart.
pub mod status {
    pub const SYSCALL: u32 = 3;
    pub const WAITING: u32 = 4;
    /// Go 1.26+: found leaked by the goroutineleak profile's GC cycle.
    pub const LEAKED: u32 = 10;
    /// Set on top of a status while the GC scans the goroutine's stack.
    pub const SCAN: u32 = 0x1000;
}

/// The package of a Go function name: `net/http.(*conn).serve` is in `net/http`,
/// `sync.(*Mutex).Lock` in `sync`, `main.worker.func1` in `main`.
pub fn package_of(function: &str) -> &str {
    let head = &function[..function.find(['(', '[']).unwrap_or(function.len())];
    let after_slash = head.rfind('/').map_or(0, |i| i + 1);
    match head[after_slash..].find('.') {
        Some(dot) => &function[..after_slash + dot],
        None => head,
    }
}

/// Packages whose frames are the standard library's waiting and I/O machinery rather than the
/// place a program waits: a goroutine blocked in `mu.Lock()` waits in the caller of
/// `sync.(*Mutex).Lock`, one blocked reading a connection in the caller of `net.(*conn).Read`
/// (through `bufio`, `io` or `crypto/tls` as well). Also every function the runtime provides to
/// another package (`sync.runtime_Semacquire`, `internal/poll.runtime_pollWait`).
const WAIT_MACHINERY: &[&str] = &[
    "runtime",
    "sync",
    "sync/atomic",
    "syscall",
    "time",
    "net",
    "os",
    "io",
    "bufio",
    "crypto/tls",
    // The signal goroutine waits in the runtime's signal_recv.
    "os/signal",
];

/// Whether a frame of `function` belongs to the waiting machinery (see [`WAIT_MACHINERY`]).
pub fn is_wait_machinery(function: &str) -> bool {
    let package = package_of(function);
    WAIT_MACHINERY.contains(&package)
        || package == "internal"
        || package.starts_with("internal/")
        || function[package.len()..].starts_with(".runtime_")
}

/// Functions at the bottom of a goroutine's stack (or of the system stack): unwinding stops.
const STACK_ENDS: &[&str] = &[
    "runtime.goexit",
    "runtime.mstart",
    "runtime.mstart0",
    "runtime.rt0_go",
    "runtime.mcall",
    "runtime.morestack",
    "runtime.systemstack",
    "runtime.systemstack_switch",
    "runtime.asmcgocall",
    "runtime.cgocallback",
];

pub fn ends_a_goroutine_stack(function: &str) -> bool {
    STACK_ENDS.contains(&function)
}

/// Whether the function a goroutine starts in is one the compiler wrote for its `go`
/// statement rather than the function the statement names: Go 1.22+'s `F.gowrapN` (for `go
/// f(x)`), a method value's `T.m-fm` (`go t.m`), and before 1.22 the closures `F.funcN` that
/// `go f(x)` compiled to, marked with the wrapper FuncID (`wrapper_func_id`, per release: see
/// [`traceback::Style`]). A reader expects the function it calls.
pub fn is_go_wrapper(function: &str, func_id: u8, wrapper_func_id: u8) -> bool {
    func_id == wrapper_func_id || function.contains(".gowrap") || function.ends_with("-fm")
}

/// Runtime globals gprof reads from the target's memory, and the always-linked functions whose
/// machine code references them (used to find them in stripped binaries).
pub mod globals {
    /// `runtime.sched` (type `schedt`): free-list counts and `ngsys`. `gfput` pushes onto its
    /// free lists.
    pub const SCHED: &str = "runtime.sched";
    pub const SCHED_USER: &str = "runtime.gfput";
    /// `runtime.allglen`: every g ever allocated. In stripped binaries the length of
    /// `runtime.allgs`, which `allgadd` appends to, stands in for it (allglen mirrors it).
    pub const ALLGLEN: &str = "runtime.allglen";
    pub const ALLGS: &str = "runtime.allgs";
    pub const ALLGS_USER: &str = "runtime.allgadd";
    /// `runtime.allp`: the Ps, each with its own free list. `procresize` rebuilds it.
    pub const ALLP: &str = "runtime.allp";
    pub const ALLP_USER: &str = "runtime.procresize";
    /// `runtime.memstats`, where Go <= 1.21 records the end of mark termination;
    /// `gcMarkTermination` stores it.
    pub const MEMSTATS: &str = "runtime.memstats";
    pub const MEMSTATS_USER: &str = "runtime.gcMarkTermination";
    /// `runtime.work`, where Go <= 1.21 records the start of a GC pause; `gcStart` stores it.
    pub const WORK: &str = "runtime.work";
    pub const WORK_USER: &str = "runtime.gcStart";
    /// `p.id` and `p.status` lead `struct p` in every release; they validate a candidate
    /// `allp` in live memory.
    pub const P_ID: u64 = 0;
    pub const P_STATUS: u64 = 4;
    /// The largest `p.status` (`_Pdead` = 4).
    pub const P_STATUS_MAX: u32 = 4;
}

/// Offset of `moduledata.gofunc` (the base of function data such as inlining trees) per range
/// of releases; it appeared in Go 1.18.
const MODULEDATA_GOFUNC: &[((u32, u32), u64)] =
    &[((18, 19), 0x130), ((20, 26), 0x140), ((27, 27), 0x158)];

pub fn moduledata_gofunc(version: &GoVersion) -> Option<u64> {
    MODULEDATA_GOFUNC
        .iter()
        .find(|((a, b), _)| version.major == 1 && (*a..=*b).contains(&version.minor))
        .map(|&(_, off)| off)
}

/// Where Go binaries keep what gprof reads.
pub mod sections {
    pub const BUILDINFO: &str = ".go.buildinfo";
    pub const PCLNTAB: &str = ".gopclntab";
    /// Where position-independent builds of Go <= 1.19 keep it (it needs relocations there).
    pub const PCLNTAB_NAMES: &[&str] = &[PCLNTAB, ".data.rel.ro.gopclntab"];
    /// Where some externally linked position-independent builds merge it, without a name of
    /// its own (Debian's docker, go1.19): found there by its header.
    pub const PCLNTAB_HOSTS: &[&str] = &[".data.rel.ro", ".rodata"];
    /// Sections only Go's linker writes (with the function table's, they tell a Go program).
    pub const GO_MARKERS: &[&str] = &[BUILDINFO, ".note.go.buildid"];
    /// Where the build-info blob is when its section is gone.
    pub const BUILDINFO_HOSTS: &[&str] = &[".data", ".noptrdata", ".rodata", ".data.rel.ro"];
    /// Go 1.27 moved `runtime.firstmoduledata` into its own section.
    pub const MODULEDATA_CANDIDATES: &[&str] = &[".go.module", ".noptrdata", ".data"];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GoVersion {
        GoVersion::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn parses_release_strings() {
        assert_eq!((v("go1.19.8").minor, v("go1.19.8").patch), (19, 8));
        assert_eq!((v("go1.27.3").minor, v("go1.27.3").patch), (27, 3));
        assert_eq!((v("go1.22").minor, v("go1.22").patch), (22, 0));
        assert_eq!(v("go1.23rc1").minor, 23);
        assert_eq!(v("go1.21.0 X:boringcrypto").minor, 21);
        assert_eq!(v("go1.24.2-bigcorp").patch, 2);
        assert!(GoVersion::parse("devel go1.25-abcdef").is_none());
        assert!(GoVersion::parse("1.19").is_none());
        assert!(GoVersion::parse("go").is_none());
    }

    #[test]
    fn every_release_from_1_17_has_one_layout() {
        for minor in 17..=27 {
            let version = v(&format!("go1.{minor}.1"));
            let matches = LAYOUTS
                .iter()
                .filter(|l| (l.minors.0..=l.minors.1).contains(&minor))
                .count();
            assert_eq!(matches, 1, "go1.{minor}");
            assert!(layout_for(&version).is_some());
            assert!(wait_reasons(&version).is_some(), "go1.{minor}");
        }
    }

    #[test]
    fn older_releases_are_refused_newer_ones_assume_the_newest() {
        use crate::inspect::binary::Arch;
        let err = layout_for_arch(&v("go1.16.15"), Arch::X86_64).unwrap_err();
        assert_eq!(err, UnsupportedRelease::TooOld("go1.16.15".into()));
        assert!(err.to_string().contains("go1.17"), "{err}");
        let (layout, fit) = layout_for_arch(&v("go1.28.0"), Arch::X86_64).unwrap();
        assert_eq!((layout.minors, fit), ((26, 27), Fit::Newer));
        assert_eq!(
            layout_for_arch(&v("go1.20.14"), Arch::X86_64).unwrap().1,
            Fit::Known
        );
        assert_eq!(
            layout_for_arch(&v("go1.17.13"), Arch::Aarch64).unwrap_err(),
            UnsupportedRelease::StackAbi("go1.17.13".into())
        );
        assert!(layout_for_arch(&v("go1.18.1"), Arch::Aarch64).is_ok());
    }

    #[test]
    fn sched_free_counts_follow_the_release_shape() {
        let old = layout_for(&v("go1.19.8")).unwrap();
        assert_eq!(
            layout_for(&v("go1.17.13"))
                .unwrap()
                .sched_gfree
                .count_offsets(),
            vec![0xb0]
        );
        assert_eq!(old.sched_gfree.count_offsets(), vec![0xb0]);
        let new = layout_for(&v("go1.27.3")).unwrap();
        assert_eq!(new.sched_gfree.count_offsets(), vec![0xc8, 0xd8]);
        assert_eq!(new.sched_gfree.list_offsets(), (0xc0, 0xd0));
        assert_eq!(
            new.sched_gfree.gfput_offsets(),
            vec![0xb8, 0xc0, 0xd0, 0xc8, 0xd8]
        );
        assert_eq!(
            old.sched_gfree.gfput_offsets(),
            vec![0x98, 0xa0, 0xa8, 0xb0]
        );
    }

    #[test]
    fn packages_and_waiting_machinery() {
        for (f, p) in [
            ("net/http.(*conn).serve", "net/http"),
            ("sync.(*Mutex).Lock", "sync"),
            ("main.worker.func1", "main"),
            ("runtime.gopark", "runtime"),
            ("github.com/a/b.(*T[go.shape.int]).M", "github.com/a/b"),
            // The linker escapes dots in the last path element.
            ("gopkg.in/yaml%2ev3.Unmarshal", "gopkg.in/yaml%2ev3"),
            ("internal/poll.runtime_pollWait", "internal/poll"),
        ] {
            assert_eq!(package_of(f), p, "{f}");
        }
        for f in [
            "runtime.chansend1",
            "sync.(*WaitGroup).Wait",
            "sync.runtime_SemacquireMutex",
            "internal/sync.(*Mutex).lockSlow",
            "internal/poll.(*FD).Read",
            "syscall.Syscall",
            "time.Sleep",
            "net.(*netFD).Read",
            "bufio.(*Reader).fill",
            "crypto/tls.(*Conn).Read",
            "os/signal.signal_recv",
        ] {
            assert!(is_wait_machinery(f), "{f}");
        }
        for f in [
            "main.worker",
            "net/http.(*conn).serve",
            "main.runtime",
            "io/fs.ReadFile",
        ] {
            assert!(!is_wait_machinery(f), "{f}");
        }
    }

    #[test]
    fn only_gc_mark_termination_runs_on_a_goroutine_stack() {
        let user: Vec<_> = PROBES
            .iter()
            .filter(|p| p.stack == Stack::Goroutine)
            .map(|p| p.function)
            .collect();
        assert_eq!(user, ["runtime.gcMarkTermination"]);
    }
}

/// The struct fields gprof reads, as (struct, field path) in DWARF's names.
pub mod dwarf_fields {
    pub const G: &str = "runtime.g";
    pub const M: &str = "runtime.m";
    pub const P: &str = "runtime.p";
    pub const SCHED: &str = "runtime.schedt";
    pub const WORK: &str = "runtime.workType";
    pub const MSTATS: &str = "runtime.mstats";
}

/// The layout a binary's DWARF describes. `template` gives what DWARF cannot say (calling
/// conventions and pause-clock semantics) and `minors`: the table entry of the same release,
/// or of the newest known release for a newer one.
pub fn layout_from_dwarf(
    types: &crate::inspect::binary::dwarf::Types,
    template: &Layout,
) -> Result<Layout, String> {
    use dwarf_fields::*;
    let off = |ty: &str, path: &[&str]| {
        types
            .offset(ty, path)
            .ok_or_else(|| format!("DWARF has no {ty}.{}", path.join(".")))
    };
    let sched_gfree = if types.has(SCHED, &["gFree", "n"]) {
        SchedGFree::Counter {
            stack: off(SCHED, &["gFree", "stack"])?,
            no_stack: off(SCHED, &["gFree", "noStack"])?,
            n: off(SCHED, &["gFree", "n"])?,
        }
    } else {
        let layout = SchedGFree::Sized {
            stack: off(SCHED, &["gFree", "stack"])?,
            no_stack: off(SCHED, &["gFree", "noStack"])?,
        };
        // The sizes must sit right after each list head, as `SchedGFree::Sized` assumes.
        if layout.count_offsets()
            != [
                off(SCHED, &["gFree", "stack", "size"])?,
                off(SCHED, &["gFree", "noStack", "size"])?,
            ]
        {
            return Err("sched.gFree lists do not carry their size after their head".into());
        }
        layout
    };
    let p_gfree_count = off(P, &["gFree", "n"]).or_else(|_| off(P, &["gFree", "size"]))?;
    let pause_clock = match template.pause_clock {
        PauseClock::Registers => PauseClock::Registers,
        PauseClock::Globals { .. } => PauseClock::Globals {
            work_t_sweep_term: off(WORK, &["tSweepTerm"])?,
            work_pause_start: off(WORK, &["pauseStart"])?,
            last_gc_unix: off(MSTATS, &["last_gc_unix"])?,
            last_gc_nanotime: off(MSTATS, &["last_gc_nanotime"])?,
        },
    };
    Ok(Layout {
        minors: template.minors,
        g_m: off(G, &["m"])?,
        g_atomicstatus: off(G, &["atomicstatus"])?,
        g_goid: off(G, &["goid"])?,
        g_gopc: off(G, &["gopc"])?,
        g_startpc: off(G, &["startpc"])?,
        g_sched: {
            let sched = off(G, &["sched"])?;
            if off(G, &["sched", "sp"])? != sched || off(G, &["sched", "pc"])? != sched + 8 {
                return Err("g.sched does not start with sp, pc".into());
            }
            sched
        },
        gobuf_lr: off(G, &["sched", "lr"])? - off(G, &["sched"])?,
        g_syscallsp: {
            let sp = off(G, &["syscallsp"])?;
            if off(G, &["syscallpc"])? != sp + 8 {
                return Err("g.syscallpc does not follow g.syscallsp".into());
            }
            sp
        },
        g_waitsince: off(G, &["waitsince"])?,
        g_waitreason: off(G, &["waitreason"])?,
        g_tracking_seq: off(G, &["trackingSeq"])?,
        g_lockedm: off(G, &["lockedm"])?,
        g_parent_goid: types
            .has(G, &["parentGoid"])
            .then(|| off(G, &["parentGoid"]))
            .transpose()?,
        m_curg: off(M, &["curg"])?,
        m_id: off(M, &["id"])?,
        m_preemptoff: off(M, &["preemptoff"])?,
        p_gfree_count,
        sched_ngsys: off(SCHED, &["ngsys"])?,
        sched_goidgen: off(SCHED, &["goidgen"])?,
        p_goidcache: {
            let cache = off(P, &["goidcache"])?;
            if off(P, &["goidcacheend"])? != cache + 8 {
                return Err("p.goidcacheend does not follow p.goidcache".into());
            }
            cache
        },
        sched_gfree,
        stw_reason_source: template.stw_reason_source,
        newproc1_callerpc_arg: template.newproc1_callerpc_arg,
        pause_clock,
    })
}

impl Layout {
    /// The fields in which two layouts differ, for messages.
    pub fn differences(&self, other: &Layout) -> Vec<String> {
        type Show = fn(&Layout) -> String;
        let fields: [(&str, Show); 23] = [
            ("g.m", |l| format!("{:#x}", l.g_m)),
            ("g.atomicstatus", |l| format!("{:#x}", l.g_atomicstatus)),
            ("g.goid", |l| format!("{:#x}", l.g_goid)),
            ("g.gopc", |l| format!("{:#x}", l.g_gopc)),
            ("g.startpc", |l| format!("{:#x}", l.g_startpc)),
            ("g.sched", |l| format!("{:#x}", l.g_sched)),
            ("g.syscallsp", |l| format!("{:#x}", l.g_syscallsp)),
            ("g.waitsince", |l| format!("{:#x}", l.g_waitsince)),
            ("g.waitreason", |l| format!("{:#x}", l.g_waitreason)),
            ("g.trackingSeq", |l| format!("{:#x}", l.g_tracking_seq)),
            ("gobuf.lr", |l| format!("{:#x}", l.gobuf_lr)),
            ("g.lockedm", |l| format!("{:#x}", l.g_lockedm)),
            ("g.parentGoid", |l| format!("{:x?}", l.g_parent_goid)),
            ("m.curg", |l| format!("{:#x}", l.m_curg)),
            ("m.id", |l| format!("{:#x}", l.m_id)),
            ("m.preemptoff", |l| format!("{:#x}", l.m_preemptoff)),
            ("p.gFree count", |l| format!("{:#x}", l.p_gfree_count)),
            ("p.goidcache", |l| format!("{:#x}", l.p_goidcache)),
            ("schedt.ngsys", |l| format!("{:#x}", l.sched_ngsys)),
            ("schedt.goidgen", |l| format!("{:#x}", l.sched_goidgen)),
            ("schedt.gFree", |l| format!("{:x?}", l.sched_gfree)),
            ("pause clock", |l| format!("{:x?}", l.pause_clock)),
            ("stw reason", |l| l.stw_reason_source.to_string()),
        ];
        fields
            .iter()
            .filter_map(|(name, show)| {
                let (a, b) = (show(self), show(other));
                (a != b).then(|| format!("{name}: {a} vs {b}"))
            })
            .collect()
    }
}
