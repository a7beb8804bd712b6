//! gprof's kernel side: uprobes on a Go program's runtime.
//!
//! Every program first looks the calling process up in `PROCS` (the in-kernel filter), then
//! updates its slot. Hot probes (goroutine creation and exit, stack scans) only bump per-CPU
//! counters; the once-per-pause and once-per-GC-cycle probes keep `GC_STATE` and stream one
//! record each to user space through `EVENTS`.
#![no_std]
#![no_main]

mod goabi;

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_map_lookup_percpu_elem,
    },
    macros::{map, uprobe},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::ProbeContext,
};
use aya_log_ebpf::warn;
use profiler_common::{
    Counters, EVENTS_BYTES, Event, GcState, MAX_CPUS, MAX_PROCS, MAX_SITE_ENTRIES,
    MAX_SITES_PER_PROC, MAX_SLOTS, ProcConfig, SiteCounts, SiteKey, event_kind, loss, pause_bucket,
    stack_bucket, stw_kind, stw_reason,
};

/// Watched processes, by host tgid. A process missing here is ignored by every probe.
#[map(name = "PROCS")]
static PROCS: HashMap<u32, ProcConfig> = HashMap::with_max_entries(MAX_PROCS, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_SLOTS, 0);

#[map(name = "GC_STATE")]
static GC_STATE: Array<GcState> = Array::with_max_entries(MAX_SLOTS, 0);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map(name = "SITES")]
static SITES: PerCpuHashMap<SiteKey, SiteCounts> =
    PerCpuHashMap::with_max_entries(MAX_SITE_ENTRIES, 0);

/// Entries each slot inserted in `SITES`, per CPU (no atomic add on this target: the CPUs'
/// counts are summed when a new site comes), for its quota ([`MAX_SITES_PER_PROC`]); user
/// space zeroes a slot's when it gives the slot out.
#[map(name = "SITE_ENTRIES")]
static SITE_ENTRIES: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_SLOTS, 0);

/// A slot's entries in `SITES`, summed over CPUs (only on the way to inserting a new site:
/// an honest process has a few hundred sites in its life).
#[inline(always)]
fn site_entries(slot: u32) -> u32 {
    let nr_cpus = unsafe { core::ptr::read_volatile(&NR_CPUS) };
    let map = &SITE_ENTRIES as *const PerCpuArray<u32> as *mut c_void;
    let mut n = 0u32;
    for cpu in 0..MAX_CPUS {
        if cpu >= nr_cpus {
            break;
        }
        // SAFETY: the helper returns a pointer into the map's value for `cpu`, or null.
        let p =
            unsafe { bpf_map_lookup_percpu_elem(map, &slot as *const u32 as *const c_void, cpu) };
        if p.is_null() {
            return MAX_SITES_PER_PROC;
        }
        // SAFETY: a u32 of the map; another CPU may be adding to its own copy (a stale
        // count lets at most one more entry in per CPU).
        n = n.saturating_add(unsafe { core::ptr::read_volatile(p as *const u32) });
    }
    n
}

/// What could not be recorded, by [`loss`] kind: user space exports these, so that no loss
/// goes unseen.
#[map(name = "LOSSES")]
static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(loss::KINDS, 0);

#[inline(always)]
fn count_loss(kind: u32) {
    if let Some(n) = LOSSES.get_ptr_mut(kind) {
        // SAFETY: per-CPU storage: no other program writes this CPU's copy while we run.
        unsafe { *n += 1 };
    }
}

/// Counts one creation or exit at a site; a process past its quota of sites, or a full map,
/// counts it under the process's "other".
#[inline(always)]
fn count_site(tgid: u32, cfg: &ProcConfig, gopc: u64, startpc: u64, created: u64, exited: u64) {
    let key = SiteKey {
        tgid,
        _pad: 0,
        gopc,
        startpc,
    };
    if let Some(c) = SITES.get_ptr_mut(&key) {
        // SAFETY: per-CPU storage: no other program writes this CPU's copy while we run.
        let c = unsafe { &mut *c };
        c.created += created;
        c.exited += exited;
        return;
    }
    let value = SiteCounts { created, exited };
    let refused = gopc != 0 && site_entries(cfg.slot) >= MAX_SITES_PER_PROC;
    if refused {
        count_loss(loss::SITES_QUOTA);
        if let Some(c) = counters(cfg.slot) {
            c.sites_refused += 1;
        }
    }
    let inserted = !refused && SITES.insert(&key, &value, 0).is_ok();
    if inserted {
        if let Some(n) = SITE_ENTRIES.get_ptr_mut(cfg.slot) {
            // SAFETY: per-CPU storage: no other program writes this CPU's copy while we run.
            unsafe { *n += 1 };
        }
        return;
    }
    {
        if !refused {
            count_loss(loss::SITES_FULL);
        }
        let other = SiteKey {
            gopc: 0,
            startpc: 0,
            ..key
        };
        if let Some(c) = SITES.get_ptr_mut(&other) {
            // SAFETY: as above.
            let c = unsafe { &mut *c };
            c.created += created;
            c.exited += exited;
        } else if SITES.insert(&other, &value, 0).is_err() {
            count_loss(loss::SITE_COUNTS_LOST);
        }
    }
}

/// Possible CPUs, set by the loader; bounds the per-CPU sums.
#[unsafe(no_mangle)]
static NR_CPUS: u32 = 1;

/// Pauses longer than this are taken as a probe that missed the stop (attached mid-pause).
const MAX_PLAUSIBLE_PAUSE_NS: u64 = 60_000_000_000;
/// `bpf_ringbuf_output` flag: do not wake a reader (gprof polls instead).
const BPF_RB_NO_WAKEUP: u64 = 1;

/// How long before `stopTheWorldWithSema` the runtime's own pause start may lie (Go <= 1.21).
const MAX_PAUSE_START_LEAD_NS: u64 = 10_000_000;

#[inline(always)]
fn watched() -> Option<(u32, ProcConfig)> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is copied out before the map can change it.
    unsafe { PROCS.get(tgid) }.map(|cfg| (tgid, *cfg))
}

#[inline(always)]
fn counters(slot: u32) -> Option<&'static mut Counters> {
    // SAFETY: per-CPU storage: no other program writes this CPU's copy while we run.
    COUNTERS.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn gc_state(slot: u32) -> Option<&'static mut GcState> {
    // SAFETY: written only during stop-the-world and GC transitions, serialized by the runtime.
    GC_STATE.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// `runtime.newproc1`: a goroutine is being created (runs on g0, probe at the stack check's
/// branch so that it fires exactly once per call).
#[uprobe]
pub fn go_newproc1(ctx: ProbeContext) -> u32 {
    if let Some((tgid, cfg)) = watched()
        && let Some(c) = counters(cfg.slot)
    {
        c.created += 1;
        // newproc1(fn *funcval, callergp *g, callerpc uintptr, ...): fn.fn is the start PC.
        // Go 1.17: newproc1(fn, argp, narg, callergp, callerpc).
        let startpc =
            unsafe { bpf_probe_read_user(goabi::arg(&ctx, 0) as *const u64) }.unwrap_or(0);
        let (arg2, arg4) = (goabi::arg(&ctx, 2), goabi::arg(&ctx, 4));
        let callerpc = if cfg.newproc1_callerpc_arg == 4 {
            arg4
        } else {
            arg2
        };
        count_site(tgid, &cfg, callerpc, startpc, 1, 0);
    }
    0
}

/// `runtime.gfput`: an exited goroutine goes to the free pool (every release's one exit path).
#[uprobe]
pub fn go_gfput(ctx: ProbeContext) -> u32 {
    if let Some((tgid, cfg)) = watched()
        && let Some(c) = counters(cfg.slot)
    {
        c.exited += 1;
        // gfput(pp *p, gp *g): the goroutine's creation site is still in its g.
        let gp = goabi::arg(&ctx, 1);
        let read = |off: u32| unsafe { bpf_probe_read_user((gp + off as u64) as *const u64) };
        if let (Ok(gopc), Ok(startpc)) = (read(cfg.g_gopc), read(cfg.g_startpc)) {
            count_site(tgid, &cfg, gopc, startpc, 0, 1);
        }
    }
    0
}

/// `runtime.scanstack(gp, gcw)`: the GC scans one live goroutine's stack. `g.stack` (lo, hi)
/// is at offset 0 in every release.
#[uprobe]
pub fn go_scanstack(ctx: ProbeContext) -> u32 {
    if let Some((_, cfg)) = watched()
        && let Some(c) = counters(cfg.slot)
    {
        let gp = goabi::arg(&ctx, 0);
        let bytes = match unsafe { bpf_probe_read_user(gp as *const [u64; 2]) } {
            Ok([lo, hi]) if hi > lo => hi - lo,
            _ => 0,
        };
        c.stack_scans += 1;
        c.stack_scan_bytes += bytes;
    }
    0
}

/// `runtime.copystack(gp, newsize)`: a goroutine's stack moves to a new one (runs on g0).
/// Growth when the new stack is larger than the old; shrinking (by the GC) is not counted.
#[uprobe]
pub fn go_copystack(ctx: ProbeContext) -> u32 {
    if let Some((_, cfg)) = watched()
        && let Some(c) = counters(cfg.slot)
    {
        c.stack_copies += 1;
        let gp = goabi::arg(&ctx, 0);
        let new_size = goabi::arg(&ctx, 1);
        let old = match unsafe { bpf_probe_read_user(gp as *const [u64; 2]) } {
            Ok([lo, hi]) if hi > lo => hi - lo,
            _ => return 0,
        };
        if new_size > old {
            c.stack_growths += 1;
            let i = stack_bucket(new_size);
            if let Some(n) = c.stack_growth_sizes.get_mut(i) {
                *n += 1;
            }
        }
    }
    0
}

/// `runtime.stopTheWorldWithSema`: a stop-the-world begins.
#[uprobe]
pub fn go_stw_stop(ctx: ProbeContext) -> u32 {
    let Some((_, cfg)) = watched() else { return 0 };
    let Some(state) = gc_state(cfg.slot) else {
        return 0;
    };
    state.stw_kind = match cfg.stw_reason_source {
        stw_reason::FROM_ARG => goabi::arg(&ctx, 0) as u8 as u32,
        _ => stw_kind_from_preemptoff(&ctx, &cfg),
    };
    state.stw_start_ns = unsafe { bpf_ktime_get_ns() };
    0
}

/// Go 1.19: `gcStart` stops the world with `m.preemptoff` empty, `gcMarkDone` with "gcing",
/// every other caller with its own reason string. The probe runs on g0, whose `g.m` is the M.
#[inline(always)]
fn stw_kind_from_preemptoff(ctx: &ProbeContext, cfg: &ProcConfig) -> u32 {
    let g0 = goabi::g(ctx);
    let Ok(m) = (unsafe { bpf_probe_read_user((g0 + cfg.g_m as u64) as *const u64) }) else {
        return stw_kind::UNKNOWN;
    };
    let Ok([ptr, len]) =
        (unsafe { bpf_probe_read_user((m + cfg.m_preemptoff as u64) as *const [u64; 2]) })
    else {
        return stw_kind::UNKNOWN;
    };
    match len {
        0 => stw_kind::GC_SWEEP_TERM,
        5 => match unsafe { bpf_probe_read_user(ptr as *const [u8; 5]) } {
            Ok(s) if &s == b"gcing" => stw_kind::GC_MARK_TERM,
            _ => stw_kind::OTHER,
        },
        _ => stw_kind::OTHER,
    }
}

/// A RET instruction of `runtime.startTheWorldWithSema`: the world restarts. Its result (in
/// the result register at the RET) is the runtime's own `nanotime()` for the end of the
/// pause, on the same clock as `bpf_ktime_get_ns`.
#[uprobe]
pub fn go_stw_start_ret(ctx: ProbeContext) -> u32 {
    let Some((tgid, cfg)) = watched() else {
        return 0;
    };
    let Some(state) = gc_state(cfg.slot) else {
        return 0;
    };
    let mut start = state.stw_start_ns;
    if start == 0 {
        return 0; // gprof attached while the world was stopped
    }
    state.stw_start_ns = 0;
    let now = unsafe { bpf_ktime_get_ns() };
    let kind = state.stw_kind;
    if stw_kind::is_gc(kind) && cfg.pause_start_addr != 0 {
        // The runtime read its clock just before stopping the world, shortly before our probe.
        if let Ok(t) = unsafe { bpf_probe_read_user(cfg.pause_start_addr as *const u64) }
            && t <= start
            && start - t < MAX_PAUSE_START_LEAD_NS
        {
            start = t;
        }
    }
    let mut end = goabi::result(&ctx);
    if kind == stw_kind::GC_MARK_TERM && cfg.mark_term_end_addr != 0 {
        // Stale (from the previous cycle) when mark termination restarted the mark phase.
        if let Ok(t) = unsafe { bpf_probe_read_user(cfg.mark_term_end_addr as *const u64) }
            && t > start
        {
            end = t;
        }
    }
    if end < start || end > now {
        end = now;
    }
    let duration = end - start;
    if duration > MAX_PLAUSIBLE_PAUSE_NS {
        warn!(
            &ctx,
            "gprof: implausible pause of {} ns in pid {}, dropped", duration, tgid
        );
        return 0;
    }
    if stw_kind::is_gc(kind) {
        state.gc_pauses += 1;
        state.gc_pause_total_ns += duration;
        if duration > state.gc_pause_max_ns {
            state.gc_pause_max_ns = duration;
        }
        let bucket = pause_bucket(duration);
        if bucket < state.gc_pause_hist.len() {
            state.gc_pause_hist[bucket] += 1;
        }
    } else {
        state.other_pauses += 1;
        state.other_pause_total_ns += duration;
    }
    if !state.take_event_token(now) {
        count_loss(loss::EVENTS_THROTTLED);
        return 0;
    }
    emit(Event {
        kind: event_kind::PAUSE,
        tgid,
        ts_ns: now,
        a: duration,
        b: kind as u64,
        c: 0,
    });
    0
}

/// `runtime.gcMarkTermination`: a GC cycle completes; all of its stack scans are done. Runs on
/// a goroutine stack, so the probe sits after the stack check (fires once per call).
#[uprobe]
pub fn go_gc_mark_termination(ctx: ProbeContext) -> u32 {
    let Some((tgid, cfg)) = watched() else {
        return 0;
    };
    let Some(state) = gc_state(cfg.slot) else {
        return 0;
    };
    state.gc_cycles += 1;
    let Some((scans, bytes)) = sum_stack_scans(cfg.slot) else {
        warn!(&ctx, "gprof: cannot sum stack scans of slot {}", cfg.slot);
        return 0;
    };
    let cycle_scans = scans.wrapping_sub(state.scans_at_last_cycle);
    let cycle_bytes = bytes.wrapping_sub(state.scan_bytes_at_last_cycle);
    state.scans_at_last_cycle = scans;
    state.scan_bytes_at_last_cycle = bytes;
    let now = unsafe { bpf_ktime_get_ns() };
    if !state.take_event_token(now) {
        count_loss(loss::EVENTS_THROTTLED);
        return 0;
    }
    emit(Event {
        kind: event_kind::GC_CYCLE,
        tgid,
        ts_ns: now,
        a: state.gc_cycles,
        b: cycle_scans,
        c: cycle_bytes,
    });
    0
}

/// Sums one slot's stack-scan counters over all CPUs (once per GC cycle, so the loop is cheap).
#[inline(always)]
fn sum_stack_scans(slot: u32) -> Option<(u64, u64)> {
    let nr_cpus = unsafe { core::ptr::read_volatile(&NR_CPUS) };
    let map = &COUNTERS as *const PerCpuArray<Counters> as *mut c_void;
    let (mut scans, mut bytes) = (0u64, 0u64);
    for cpu in 0..MAX_CPUS {
        if cpu >= nr_cpus {
            break;
        }
        let p =
            unsafe { bpf_map_lookup_percpu_elem(map, &slot as *const u32 as *const c_void, cpu) };
        if p.is_null() {
            return None;
        }
        let c = unsafe { &*(p as *const Counters) };
        scans += c.stack_scans;
        bytes += c.stack_scan_bytes;
    }
    Some((scans, bytes))
}

#[inline(always)]
fn emit(event: Event) {
    // A full ring buffer drops the record; the totals in GC_STATE stay exact.
    // No wakeup: user space polls the ring once per sampling interval.
    if EVENTS.output::<Event>(&event, BPF_RB_NO_WAKEUP).is_err() {
        count_loss(loss::EVENTS_DROPPED);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
