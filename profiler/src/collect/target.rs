//! One watched Go process: inspection (is it Go, which release, where to probe), attachment
//! (kernel filter entry plus probes), and sampling into snapshots. Shared by `gprof top` and
//! the daemon.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use profiler_common::SiteKey as KernelSiteKey;
use profiler_common::{Counters, Event, GcState, ProcConfig, SiteCounts};

use crate::collect::blocked::{CHUNK, GroupKey, SampleRate};
use crate::inspect::census::{BlockedG, Census, CreationSite};
use crate::inspect::clock::{monotonic_ns, thread_cpu};
use crate::inspect::goruntime::{self, status};
use crate::inspect::runtime_state::GsBuffers;
use crate::inspect::selfcheck::GsCheck;

use std::borrow::Cow;
use std::sync::Arc;

use crate::attach::kernel::{AttachScope, ExeKey, Kernel, KernelError};
use crate::collect::budget::{CENSUS_SHARE, HotLoad, process_limit};
use crate::collect::collector::{CensusStatus, HotProbes, Identity, ProcessCollector, Reading};
use crate::collect::sites::Symbolizer;
use crate::config::params::HealthModel;
use crate::config::params::OverheadBudget;
use crate::config::params::Windows;
use crate::inspect::binary::{BinaryError, ExecutableInfo, GoBinary};
use crate::inspect::plan::{self, PlanError, ProbePlan};
use crate::inspect::process::{Process, ProcessError};
use crate::inspect::runtime_state::{RuntimeCounts, RuntimeReader, StateError};
use crate::inspect::selfcheck;
use crate::model::snapshot::ProcessSnapshot;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("PID {pid} ({comm})")]
    NotGo {
        pid: u32,
        comm: String,
        source: BinaryError,
    },
    #[error("PID {pid} ({comm})")]
    Plan {
        pid: u32,
        comm: String,
        source: PlanError,
    },
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("PID {pid}")]
    State { pid: u32, source: StateError },
    #[error(
        "PID {pid} ({comm}): {release}'s runtime layout does not fit the live process, so gprof will not read or probe it: self-check {why}"
    )]
    SelfCheck {
        pid: u32,
        comm: String,
        release: String,
        why: String,
    },
    #[error(
        "PID {pid} ({comm}): its runtime's bookkeeping stopped making sense while gprof watched it, so gprof no longer reads it: {why}"
    )]
    Untrustworthy { pid: u32, comm: String, why: String },
    #[error("PID {0} exited")]
    Gone(u32),
    #[error("PID {0} replaced its program (exec)")]
    Execed(u32),
}

/// An executable, planned: shared by every process that runs it.
#[derive(Debug)]
pub struct Executable {
    /// The file the plan was made from, kept open: probes are attached through it.
    pub file: Arc<std::fs::File>,
    /// Its identity when it was read.
    pub key: ExeKey,
    pub info: ExecutableInfo,
    pub plan: ProbePlan,
    /// Names of its code addresses (creation sites, places goroutines wait at), shared by
    /// its processes; read from the file, kept open, as they are needed.
    pub symbols: std::sync::Mutex<Symbolizer>,
    /// The release's wait reasons (None for a release without a table).
    pub wait_reasons: Option<&'static [&'static str]>,
}

/// A process and everything needed to probe it, before anything touches the kernel.
pub struct Inspected {
    pub process: Process,
    pub exe: Arc<Executable>,
}

/// Reads the process's executable and plans its probes (the file's bytes are not kept, the
/// file stays open). The plan belongs to the file read, which is the process's executable
/// when the process was opened, else the process has execed since ([`TargetError::Execed`]).
pub fn plan_executable(process: &Process) -> Result<Executable, TargetError> {
    // The binary is the workload's: a bug it triggers in the parser (overflow checks are on
    // in release builds) refuses that binary instead of stopping gprof.
    std::panic::catch_unwind(|| plan_unguarded(process)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(TargetError::NotGo {
            pid: process.pid(),
            comm: process.comm.clone(),
            source: BinaryError::Malformed(format!("reading it failed inside gprof ({why})")),
        })
    })
}

fn plan_unguarded(process: &Process) -> Result<Executable, TargetError> {
    let binary = GoBinary::open(&process.exe_path()).map_err(|source| match source {
        BinaryError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            TargetError::Gone(process.pid())
        }
        BinaryError::Io { path, source }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            TargetError::Process(crate::inspect::process::permission_error(path))
        }
        source => TargetError::NotGo {
            pid: process.pid(),
            comm: process.comm.clone(),
            source,
        },
    })?;
    let file = binary.file().ok_or(TargetError::Gone(process.pid()))?;
    let key = ExeKey::of_file(&file).map_err(|source| {
        TargetError::Process(ProcessError::Io {
            path: process.exe_path(),
            source,
        })
    })?;
    if key != process.exe {
        return Err(TargetError::Execed(process.pid()));
    }
    let plan = plan::plan(&binary).map_err(|source| TargetError::Plan {
        pid: process.pid(),
        comm: process.comm.clone(),
        source,
    })?;
    Ok(Executable {
        file,
        key,
        info: binary.info(),
        plan,
        symbols: std::sync::Mutex::new(Symbolizer::new(
            binary.frame_table(),
            goruntime::traceback::style(&binary.version).wrapper_func_id,
        )),
        wait_reasons: goruntime::wait_reasons(&binary.version),
    })
}

pub fn inspect(process: Process) -> Result<Inspected, TargetError> {
    let exe = Arc::new(plan_executable(&process)?);
    Ok(Inspected { process, exe })
}

/// A process being watched.
pub struct Target {
    pub process: Process,
    pub exe: ExeKey,
    pub slot: u32,
    pub go_version: String,
    reader: Option<RuntimeReader>,
    collector: ProcessCollector,
    attached: Instant,
    /// What the hot-probe rate is estimated from at the last sample: (monotonic ns, probe
    /// hits counted, goroutine IDs handed out, GC cycles).
    last_hot: Option<HotMark>,
    hot_load: HotLoad,
    /// The last surge check: (monotonic ns, `sched.goidgen`).
    surge_mark: Option<(u64, u64)>,
    /// PIE load bias (runtime address = file address + bias).
    bias: u64,
    /// The executable: names of the creation sites the census finds.
    executable: Arc<Executable>,
    /// Censuses that failed since [`Self::take_census_errors`] last ran, and in a row.
    census_errors: u64,
    census_failures_in_a_row: u32,
    /// How long a quiet process's last census may stand in for a new one.
    census_refresh: Duration,
    /// The overhead budget the census shares with the hot probes.
    budget: OverheadBudget,
    /// How long after the last census began the next may begin: what the last cost the
    /// process, paid at its census share of the budget.
    census_pace: Duration,
    /// What a census checks the gs against.
    expect: selfcheck::Expect,
    /// The census under way (it runs in slices, between samples: see [`Self::census_slice`]).
    pass: Option<CensusPass>,
    /// The last census finished.
    last: Option<Finished>,
    /// The last census stands in for this round's (nothing happened since).
    standing: bool,
    /// CPU time spent on censuses since attach.
    census_cpu: Duration,
    /// The runtime's counts at the last sample, and when: the next must follow from them.
    prev_counts: Option<(RuntimeCounts, Instant)>,
    /// `allglen` when the address space was last checked to hold that many gs.
    allglen_checked: i64,
    /// This round's reading, until [`Self::snapshot`] turns it into a snapshot.
    pending: Option<(Reading, u64)>,
    /// Where the next spot check of a standing census starts in `allgs`.
    spot: u64,
}

/// A census under way: `allgs` read chunk by chunk, each chunk's blocked goroutines followed
/// as it is read.
struct CensusPass {
    began: Instant,
    /// Collector seconds at the start.
    t0: f64,
    quiet: Option<Quiet>,
    /// The runtime's counts at the start: the census's totals are checked against them.
    counts0: Option<RuntimeCounts>,
    next: u64,
    census: Census,
    check: GsCheck,
    cpu: Duration,
}

/// The last census finished. In a process where no goroutine was created or exited and no GC
/// ran since (no stacks scanned or moved), the next census would find the same goroutines
/// with the same stacks; one may still have woken and blocked again, which the next real
/// census sees (its trackingSeq moved) and dates again. So the last one stands in, for at
/// most a tenth of `stuck_after`: what it shows is at most that old.
struct Finished {
    began: Instant,
    t0: f64,
    quiet: Option<Quiet>,
    census: Census,
    cpu: Duration,
}

/// What one slice of census work came to.
#[derive(Clone, Copy, Debug)]
pub struct Slice {
    /// CPU time it took.
    pub cpu: Duration,
    /// More of the census is left for the next slice.
    pub more: bool,
}

/// What changes when goroutines are created, exit, are scanned or moved, or a GC runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quiet {
    goids: i64,
    allglen: i64,
    free: i64,
    hits: u64,
    gc_cycles: u64,
}

impl Target {
    /// Starts watching: reads the runtime's globals, adds the process to the kernel filter and
    /// attaches the probes to its executable (unless already attached for another process).
    /// Under a `budget`, the hot probes wait for its first estimate when the runtime's counts
    /// can be read (else they start attached: counts need them), and the census is paced.
    pub fn attach(
        kernel: &mut Kernel,
        inspected: &Inspected,
        scope: AttachScope,
        windows: Windows,
        health: HealthModel,
        budget: OverheadBudget,
    ) -> Result<Self, TargetError> {
        let limit_hot = budget.process_cpu_share.is_some();
        let Inspected { process, exe } = inspected;
        let plan = &exe.plan;
        let pid = process.pid();
        // The plan is for one file: the process must run it, and it must be unchanged.
        let runs_planned_file =
            || process.runs(exe.key) && ExeKey::of_file(&exe.file).is_ok_and(|k| k == exe.key);
        if !runs_planned_file() {
            return Err(if process.is_alive() {
                TargetError::Execed(pid)
            } else {
                TargetError::Gone(pid)
            });
        }
        let bias = process.load_bias(&exe.info)?;
        let reader = match open_reader(process, plan, bias) {
            Ok(r) => r,
            Err(StateError::Process(
                e @ (ProcessError::Permission(_) | ProcessError::PermissionAsRoot(_)),
            )) => {
                return Err(e.into());
            }
            Err(StateError::Process(ProcessError::NotFound(_))) => {
                return Err(TargetError::Gone(pid));
            }
            // Reading a process that is exiting fails: that is an exit, not a fallback.
            Err(_) if !process.is_alive() => return Err(TargetError::Gone(pid)),
            // The globals read at this layout's offsets hold nothing a runtime would.
            Err(e) => {
                return Err(TargetError::SelfCheck {
                    pid,
                    comm: process.comm.clone(),
                    release: exe.info.version.raw.clone(),
                    why: format!("failed: {e}"),
                });
            }
        };
        // Before a probe goes in: the struct offsets must fit what the process holds.
        let expect = selfcheck::Expect::new(&exe.info.version, exe.info.text.clone(), plan, bias);
        match selfcheck::run(&reader, &expect) {
            Ok(r) if r.passed() => log::debug!("PID {pid}: layout self-check {}", r.describe()),
            Err(_) if !process.is_alive() => return Err(TargetError::Gone(pid)),
            outcome => {
                return Err(TargetError::SelfCheck {
                    pid,
                    comm: process.comm.clone(),
                    release: exe.info.version.raw.clone(),
                    why: match outcome {
                        Ok(r) => r.describe(),
                        Err(e) => format!("could not run: {e}"),
                    },
                });
            }
        }
        let reader = Some(reader);
        let config = ProcConfig {
            slot: 0,
            stw_reason_source: plan.layout.stw_reason_source,
            g_m: plan.layout.g_m as u32,
            m_preemptoff: plan.layout.m_preemptoff as u32,
            pause_start_addr: plan.globals.pause_start.map_or(0, |a| a + bias),
            mark_term_end_addr: plan.globals.last_gc_nanotime.map_or(0, |a| a + bias),
            g_gopc: plan.layout.g_gopc as u32,
            g_startpc: plan.layout.g_startpc as u32,
            newproc1_callerpc_arg: plan.layout.newproc1_callerpc_arg,
            _pad: 0,
        };
        let slot = kernel.watch(pid, config)?;
        let key = exe.key;
        let hot = !(limit_hot && reader.is_some());
        let attached_before = kernel.is_attached(key);
        crate::faults::pause_before_attach(pid);
        if let Err(e) = kernel.attach(key, &exe.file, plan, scope, hot) {
            kernel.unwatch(pid);
            return Err(if process.is_alive() {
                e.into()
            } else {
                TargetError::Gone(pid)
            });
        }
        // An exec while attaching: the probes sit in the planned file, which the process no
        // longer runs; they harm nothing, and go with the attachment if nothing else uses it.
        if !runs_planned_file() {
            kernel.unwatch(pid);
            if !attached_before {
                kernel.detach(key);
            }
            return Err(if process.is_alive() {
                TargetError::Execed(pid)
            } else {
                TargetError::Gone(pid)
            });
        }
        let identity = Identity {
            pid,
            comm: process.comm.clone(),
            go_version: exe.info.version.raw.clone(),
        };
        let mut collector = ProcessCollector::new(identity, windows, health);
        let mut last_hot = None;
        if let Some(counts) = reader.as_ref().and_then(|r| r.read().ok()) {
            collector.set_baseline(counts);
            // The kernel's counts start at zero: the first sample already gives a rate.
            last_hot = Some(HotMark {
                ns: monotonic_ns(),
                hits: 0,
                goids: Some(counts.goids),
                gc_cycles: 0,
                cpu: process.cpu_seconds().map(|s| (monotonic_ns(), s)),
            });
        }
        Ok(Self {
            process: process.clone(),
            exe: key,
            slot,
            go_version: exe.info.version.raw.clone(),
            reader,
            collector,
            attached: Instant::now(),
            last_hot,
            hot_load: HotLoad::default(),
            surge_mark: None,
            bias,
            executable: exe.clone(),
            census_errors: 0,
            census_failures_in_a_row: 0,
            census_refresh: Duration::from_secs_f64(windows.stuck_after_seconds / 10.0),
            budget,
            census_pace: Duration::ZERO,
            expect,
            pass: None,
            last: None,
            standing: false,
            census_cpu: Duration::ZERO,
            prev_counts: None,
            allglen_checked: 0,
            pending: None,
            spot: 0,
        })
    }

    /// Censuses that failed since the last call.
    pub fn take_census_errors(&mut self) -> u64 {
        std::mem::take(&mut self.census_errors)
    }

    /// Whether creations, exits and live goroutines come from the runtime's memory (then the
    /// hot probes may run in windows without losing them).
    pub fn has_exact_counts(&self) -> bool {
        self.reader.is_some()
    }

    /// Between samples: the hot probes' demand (two hits per creation) since the last call,
    /// from the kernel's count of creations (surges are watched for only while the hot
    /// probes are attached, so it counts them all; [`Kernel::begin_round`] reads every
    /// process's at once); None without the runtime's counts or within 10 ms.
    pub fn creation_demand_now(&mut self, kernel: &Kernel) -> Option<f64> {
        self.reader.as_ref()?;
        let generated = kernel.counters(self.slot).ok()?.created;
        let now = monotonic_ns();
        let age = |t: u64| now.saturating_sub(t);
        let rate = match self.surge_mark {
            Some((t, _)) if age(t) < 10_000_000 => return None,
            // A mark from before the probes were last attached says nothing about now.
            Some((t, g)) if age(t) < 500_000_000 => {
                Some(2.0 * generated.saturating_sub(g) as f64 / (age(t) as f64 / 1e9))
            }
            _ => None,
        };
        self.surge_mark = Some((now, generated));
        rate
    }

    /// The hot probes' load between the last two samples.
    pub fn hot_load(&self) -> HotLoad {
        self.hot_load
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Reads the kernel's counters and the runtime's own counts, and checks the counts
    /// against the runtime's invariants. `events` are all records drained from the kernel
    /// since the last round (this target picks its own). The census work of the round comes
    /// after every target was sampled ([`Self::census_slice`]), then [`Self::snapshot`].
    pub fn sample(
        &mut self,
        kernel: &Kernel,
        events: &[Event],
        sites: &HashMap<u32, Vec<(KernelSiteKey, SiteCounts)>>,
        hot: HotProbes,
        buffers: &mut GsBuffers,
    ) -> Result<(), TargetError> {
        let pid = self.pid();
        self.pending = None;
        // With the runtime's memory read, an exit or exec shows as a failed reading (see
        // below); /proc/PID/stat is costly (the kernel sums every thread), so it is read for
        // the CPU time only when the hot probes' load may have changed.
        if self.reader.is_none()
            && let Some(e) = self.program_changed()
        {
            return Err(e);
        }
        if crate::faults::sample_error(pid) {
            return Err(TargetError::Process(ProcessError::Io {
                path: format!("/proc/{pid}/mem").into(),
                source: std::io::Error::other("injected fault (GPROF_FAULTS)"),
            }));
        }
        let counters = kernel.counters(self.slot)?;
        let gc = kernel.gc_state(self.slot)?;
        let mine: Vec<Event> = events.iter().filter(|e| e.tgid == pid).copied().collect();
        self.collector.absorb(&mine, &counters, hot);
        let now_ns = monotonic_ns();
        let runtime = match &self.reader {
            Some(r) => match r.read() {
                Ok(c) => Some(c),
                Err(StateError::Implausible(why)) => return Err(self.untrustworthy(why)),
                Err(source) => {
                    return Err(self
                        .program_changed()
                        .unwrap_or(TargetError::State { pid, source }));
                }
            },
            None => None,
        };
        if let Some(c) = &runtime {
            self.check_counts(c)?;
        }
        let active = self.active_since_last_sample(&counters, &gc, runtime.as_ref());
        let cpu_seconds = if active {
            match self.process.live_stat() {
                Some(stat) => stat.cpu_seconds(),
                None => return Err(TargetError::Gone(pid)),
            }
        } else {
            None
        };
        self.estimate_hot_rate(now_ns, &counters, &gc, runtime.as_ref(), cpu_seconds);
        let t = self.attached.elapsed().as_secs_f64();
        // Creations and exits per site, counted by the kernel while the hot probes run.
        let counted: Vec<(CreationSite, SiteCounts)> = sites
            .get(&pid)
            .into_iter()
            .flatten()
            .map(|(k, c)| {
                let key = CreationSite {
                    gopc: k.gopc,
                    startpc: k.startpc,
                };
                (key, *c)
            })
            .collect();
        let quiet = runtime.map(|r| Quiet {
            goids: r.goids,
            allglen: r.allglen,
            free: r.free_pool(),
            hits: hot_hits(&counters),
            gc_cycles: gc.gc_cycles,
        });
        self.standing = self.pass.is_none()
            && self.last.as_ref().is_some_and(|l| {
                quiet.is_some() && l.quiet == quiet && l.began.elapsed() < self.census_refresh
            });
        let executable = self.executable.clone();
        let mut symbols = executable
            .symbols
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.standing
            && let Some(last) = &self.last
        {
            let names = symbols.resolve(last.census.sites.keys(), self.bias);
            self.collector.restate_census(t, &last.census, &names);
        }
        drop(symbols);
        if self.standing {
            self.spot_check(runtime.as_ref(), buffers)?;
        }
        let mut symbols = executable
            .symbols
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let names = symbols.resolve(counted.iter().map(|(k, _)| k), self.bias);
        drop(symbols);
        self.collector.absorb_site_counts(
            t,
            counted
                .iter()
                .filter_map(|(k, c)| Some((names.get(k)?.clone(), c.created, c.exited))),
        );
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let reading = Reading {
            t,
            unix,
            counters,
            gc,
            runtime,
            hot,
            hot_demand: self.hot_load.demand_per_s,
            census: None,
        };
        self.pending = Some((reading, now_ns));
        Ok(())
    }

    /// The runtime's counts must follow from the last ones, and the address space must be
    /// able to hold the gs they claim: a process that forged them is not reported.
    fn check_counts(&mut self, c: &RuntimeCounts) -> Result<(), TargetError> {
        let prev = self
            .prev_counts
            .as_ref()
            .map(|(p, at)| (p, at.elapsed().as_secs_f64()));
        if let Err(why) = selfcheck::counts_hold(prev, c) {
            return Err(self.untrustworthy(why));
        }
        if c.allglen > (1 << 16) && c.allglen > 2 * self.allglen_checked {
            let vsize = self
                .process
                .live_stat()
                .ok_or(TargetError::Gone(self.pid()))?
                .vsize;
            if (c.allglen as u64).saturating_mul(selfcheck::MIN_G_BYTES) > vsize {
                return Err(self.untrustworthy(format!(
                    "{} gs claimed, more than its address space of {vsize} bytes holds",
                    c.allglen
                )));
            }
            self.allglen_checked = c.allglen;
        }
        self.prev_counts = Some((*c, Instant::now()));
        Ok(())
    }

    /// A standing census reads no g, so the gs are checked [`SPOT_CHECK`] at a time each
    /// round all the same, in turn: a process that rewrites them while its counts hold still
    /// is found. A reading that fails says nothing (the next census reads them all).
    fn spot_check(
        &mut self,
        counts: Option<&RuntimeCounts>,
        buffers: &mut GsBuffers,
    ) -> Result<(), TargetError> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let Ok(Some(allgs)) = reader.allgs() else {
            return Ok(());
        };
        if self.spot >= allgs.len {
            self.spot = 0;
        }
        let (start, end) = (self.spot, (self.spot + SPOT_CHECK).min(allgs.len));
        let mut fields = Vec::with_capacity((end - start) as usize);
        let read = reader.read_gs(allgs, start..end, buffers, |_, addr, g| {
            fields.push((addr, g))
        });
        let Ok(goidgen) = read.and_then(|()| reader.goidgen()) else {
            return Ok(());
        };
        self.spot = end;
        let mut check = GsCheck::new(&self.expect, goidgen);
        for (addr, g) in fields {
            check.add(addr, g);
        }
        if let Some(why) = check.hopeless() {
            return Err(self.untrustworthy(format!("spot check: {why}")));
        }
        if let Some(counts) = counts
            && start == 0
            && end == allgs.len
        {
            let report = check.finish(counts, 1.0, 0);
            if !report.passed() {
                return Err(self.untrustworthy(format!("spot check {}", report.describe())));
            }
        }
        Ok(())
    }

    fn untrustworthy(&self, why: String) -> TargetError {
        // What a reading found may be a half-finished exit or exec: that is not a lie.
        if let Some(e) = self.program_changed() {
            return e;
        }
        TargetError::Untrustworthy {
            pid: self.pid(),
            comm: self.process.comm.clone(),
            why,
        }
    }

    /// Whether this round has census work for the process: a census under way, or one due
    /// (the last began `spacing` ago or more, and cannot stand in).
    pub fn wants_census(&self, spacing: Duration) -> bool {
        if self.pending.is_none() || !self.reader.as_ref().is_some_and(RuntimeReader::has_census) {
            return false;
        }
        self.pass.is_some()
            || (!self.standing
                && self
                    .last
                    .as_ref()
                    .is_none_or(|l| l.began.elapsed() >= spacing.max(self.census_pace)))
    }

    /// Seconds since the census shown began (how stale the blocked goroutines are), or since
    /// attach before the first.
    pub fn census_age(&self) -> f64 {
        self.last
            .as_ref()
            .map_or(self.attached.elapsed(), |l| l.began.elapsed())
            .as_secs_f64()
    }

    /// Blocked goroutines at the last census: what following every one would take.
    pub fn blocked_demand(&self) -> u64 {
        let live = self
            .prev_counts
            .map(|(c, _)| (c.goroutines() + c.ngsys).max(0) as u64);
        match (&self.last, live) {
            (Some(l), Some(now)) => l.census.blocked + now.saturating_sub(l.census.live),
            (Some(l), None) => l.census.blocked,
            (None, Some(now)) => now,
            (None, None) => 0,
        }
    }

    /// Goroutines followed one by one now.
    pub fn tracked(&self) -> usize {
        self.collector.tracked()
    }

    /// Census work for about `quantum` of CPU time: the next chunks of `allgs` read, checked
    /// and tallied, their blocked goroutines followed (those `rate` picks; a census keeps the
    /// rate it began with) and their stacks walked where they moved. When the last chunk is
    /// read the census is checked against the runtime's counts and taken in.
    pub fn census_slice(
        &mut self,
        quantum: Duration,
        rate: SampleRate,
        buffers: &mut GsBuffers,
    ) -> Result<Slice, TargetError> {
        let cpu0 = thread_cpu();
        let result = self.census_chunks(cpu0, quantum, rate, buffers);
        let cpu = thread_cpu().saturating_sub(cpu0);
        self.census_cpu += cpu;
        if let Some(p) = &mut self.pass {
            p.cpu += cpu;
        }
        match result {
            Ok(more) => {
                if !more {
                    self.census_failures_in_a_row = 0;
                }
                Ok(Slice { cpu, more })
            }
            Err(
                e @ (TargetError::Untrustworthy { .. }
                | TargetError::Gone(_)
                | TargetError::Execed(_)),
            ) => {
                self.pass = None;
                Err(e)
            }
            // A census that races with the program is given up; the next one starts over.
            Err(e) => {
                self.pass = None;
                self.census_errors += 1;
                self.census_failures_in_a_row += 1;
                log::debug!("PID {}: census failed: {e:#}", self.pid());
                if self.census_failures_in_a_row >= MAX_CENSUS_FAILURES {
                    return Err(self.untrustworthy(format!(
                        "{MAX_CENSUS_FAILURES} censuses in a row could not read runtime.allgs ({})",
                        anyhow::Error::from(e)
                    )));
                }
                Ok(Slice { cpu, more: false })
            }
        }
    }

    fn census_chunks(
        &mut self,
        cpu0: Duration,
        quantum: Duration,
        rate: SampleRate,
        buffers: &mut GsBuffers,
    ) -> Result<bool, TargetError> {
        let pid = self.pid();
        let Some(reader) = &self.reader else {
            return Ok(false);
        };
        let state = |source| TargetError::State { pid, source };
        let counts = self.pending.as_ref().and_then(|(r, _)| r.runtime);
        if self.pass.is_none() {
            // The counts the census's totals are held against, read right before its first
            // chunk (the round's reading may be a while ago in a churning process).
            let counts0 = reader.read().ok().or(counts);
            let goidgen = reader.goidgen().map_err(state)?;
            self.collector.blocked().begin(rate);
            self.pass = Some(CensusPass {
                began: Instant::now(),
                t0: self.attached.elapsed().as_secs_f64(),
                quiet: counts.map(|r| Quiet {
                    goids: r.goids,
                    allglen: r.allglen,
                    free: r.free_pool(),
                    hits: self.last_hot.map_or(0, |h| h.hits),
                    gc_cycles: self.last_hot.map_or(0, |h| h.gc_cycles),
                }),
                counts0,
                next: 0,
                census: Census::default(),
                check: GsCheck::new(&self.expect, goidgen),
                cpu: Duration::ZERO,
            });
        }
        let Some(allgs) = reader.allgs().map_err(state)? else {
            self.pass = None;
            return Ok(false);
        };
        let executable = self.executable.clone();
        let symbols = std::cell::RefCell::new(
            executable
                .symbols
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let bias = self.bias;
        let wait_reasons = executable.wait_reasons;
        let mut fields = Vec::with_capacity(CHUNK as usize);
        let mut blocked = Vec::new();
        loop {
            let pass = self.pass.as_mut().expect("a census under way");
            if pass.next >= allgs.len {
                break;
            }
            let c = pass.next / CHUNK;
            let end = ((c + 1) * CHUNK).min(allgs.len);
            fields.clear();
            reader
                .read_gs(allgs, pass.next..end, buffers, |i, addr, g| {
                    fields.push((i, addr, g))
                })
                .map_err(state)?;
            // Every goid read was handed out before this reading.
            pass.check.raise_goidgen(reader.goidgen().map_err(state)?);
            blocked.clear();
            for &(i, addr, g) in &fields {
                pass.check.add(addr, g);
                if let Some(b) = pass.census.add(addr, g) {
                    blocked.push(((i % CHUNK) as u16, b));
                }
            }
            if let Some(why) = pass.check.hopeless() {
                return Err(self.untrustworthy(format!("census: {why}")));
            }
            let t = self.attached.elapsed().as_secs_f64();
            self.collector.blocked().observe_chunk(
                c as usize,
                t,
                &blocked,
                |starts| {
                    let symbols = symbols.borrow();
                    match symbols.code() {
                        Some(code) => reader.unwind(starts, bias, code.inner().arch, code),
                        None => vec![None; starts.len()],
                    }
                },
                |g, at| {
                    let mut symbols = symbols.borrow_mut();
                    let site = symbols.name(g.site, bias);
                    (!site.system).then(|| GroupKey {
                        created_at: site,
                        blocked_at: symbols.place(at),
                        wait_reason: wait_reason(wait_reasons, g),
                        leaked: g.status == status::LEAKED,
                    })
                },
            );
            let pass = self.pass.as_mut().expect("a census under way");
            pass.next = end;
            if pass.next < allgs.len && thread_cpu().saturating_sub(cpu0) >= quantum {
                return Ok(true);
            }
        }
        // The whole of allgs is read: the census's totals against the runtime's counts.
        let pass = self.pass.take().expect("a census under way");
        let t = self.attached.elapsed().as_secs_f64();
        // ... and right after its last.
        if let Some(now) = reader.read().ok().or(counts) {
            let alive = |c: &RuntimeCounts| c.goroutines() + c.ngsys;
            let before = pass.counts0.unwrap_or(now);
            let churn = (now.goids - before.goids).max(0) + (alive(&now) - alive(&before)).abs();
            let report = pass.check.finish(&now, 1.0, churn as u64);
            if !report.passed() {
                return Err(self.untrustworthy(format!("census {}", report.describe())));
            }
        }
        let names = symbols.borrow_mut().resolve(pass.census.sites.keys(), bias);
        drop(symbols);
        self.collector
            .absorb_census(t, &pass.census, &names, allgs.len);
        log::debug!(
            "PID {pid}: census of {} gs in {:?} ({:?} of CPU): {} live, {} dead, {} unreadable, {} blocked, {} followed",
            allgs.len,
            pass.began.elapsed(),
            pass.cpu,
            pass.census.live,
            pass.census.dead,
            pass.census.unreadable,
            pass.census.blocked,
            self.collector.tracked(),
        );
        // What it cost the process: the gs it may soon write, read (see `cost_per_g_read`);
        // charged to its budget, and the next census waits until it is paid at its share.
        let hot_gs = pass.census.dead + pass.census.live.saturating_sub(pass.census.blocked);
        let cost = self
            .budget
            .cost_per_g_read
            .saturating_mul(hot_gs.min(u32::MAX as u64) as u32);
        self.hot_load.census_cost += cost;
        self.census_pace = process_limit(&self.budget, self.hot_load.cpu_cores)
            .map_or(Duration::ZERO, |limit| {
                Duration::from_secs_f64(cost.as_secs_f64() / (CENSUS_SHARE * limit))
            });
        self.last = Some(Finished {
            began: pass.began,
            t0: pass.t0,
            quiet: pass.quiet,
            census: pass.census,
            cpu: pass.cpu,
        });
        Ok(false)
    }

    /// This round's snapshot (after [`Self::sample`] and the round's census work).
    pub fn snapshot(&mut self) -> Option<ProcessSnapshot> {
        let (mut reading, now_ns) = self.pending.take()?;
        let has_census = self.reader.as_ref().is_some_and(RuntimeReader::has_census);
        reading.census = has_census.then(|| CensusStatus {
            began: self.last.as_ref().map(|l| l.t0),
            cpu_seconds_total: self.census_cpu.as_secs_f64(),
            last_cpu_seconds: self.last.as_ref().map(|l| l.cpu.as_secs_f64()),
        });
        Some(self.collector.update(&reading, now_ns))
    }

    /// Gone or Execed, if the process no longer runs the program it was attached to.
    fn program_changed(&self) -> Option<TargetError> {
        let pid = self.pid();
        if self.process.runs_same_executable() {
            return (!self.process.is_alive()).then_some(TargetError::Gone(pid));
        }
        // An exiting process loses its executable link before it turns zombie.
        if !self.process.is_alive() || std::fs::metadata(self.process.exe_path()).is_err() {
            return Some(TargetError::Gone(pid));
        }
        Some(TargetError::Execed(pid))
    }

    /// Whether goroutines were created or scanned, or a GC ran, since the last sample (else
    /// the hot probes cost nothing, and the process's CPU time need not be read).
    fn active_since_last_sample(
        &self,
        c: &Counters,
        gc: &GcState,
        rt: Option<&RuntimeCounts>,
    ) -> bool {
        self.last_hot.is_none_or(|l| {
            l.hits != hot_hits(c)
                || l.goids != rt.map(|r| r.goids)
                || l.gc_cycles != gc.gc_cycles
                || rt.is_none()
        })
    }

    /// `cpu_seconds`: the process's CPU time now, if read (else the last reading stands, and
    /// a rate spans the time since it: an underestimate of the cores, so a stricter budget).
    fn estimate_hot_rate(
        &mut self,
        now_ns: u64,
        c: &Counters,
        gc: &GcState,
        rt: Option<&RuntimeCounts>,
        cpu_seconds: Option<f64>,
    ) {
        let now = HotMark {
            ns: now_ns,
            hits: hot_hits(c),
            goids: rt.map(|r| r.goids),
            gc_cycles: gc.gc_cycles,
            cpu: cpu_seconds
                .map(|s| (now_ns, s))
                .or(self.last_hot.and_then(|l| l.cpu)),
        };
        let last = self.last_hot.replace(now);
        self.hot_load.hits = last.map_or(0, |l| now.hits.saturating_sub(l.hits));
        // Charged to this round's budget step, once.
        self.hot_load.census_cost = Duration::ZERO;
        let dt = last.map_or(0.0, |l| now_ns.saturating_sub(l.ns) as f64 / 1e9);
        let Some(last) = last.filter(|_| dt > 0.0) else {
            self.hot_load.demand_per_s = None;
            self.hot_load.cpu_cores = None;
            return;
        };
        self.hot_load.demand_per_s = Some(match (rt, last.goids) {
            (Some(r), Some(before)) => {
                let created = (r.goids - before).max(0) as f64;
                let stacks = (r.goroutines() + r.ngsys).max(0) as f64;
                (2.0 * created + stacks * gc.gc_cycles.saturating_sub(last.gc_cycles) as f64) / dt
            }
            _ => self.hot_load.hits as f64 / dt,
        });
        self.hot_load.cpu_cores = match (now.cpu, last.cpu) {
            (Some((tn, n)), Some((tl, l))) if tn > tl => {
                Some((n - l).max(0.0) / (tn.saturating_sub(tl) as f64 / 1e9))
            }
            _ => None,
        };
    }

    /// Stops watching (the executable's probes stay for other processes of the same file;
    /// the caller detaches them when the last one goes).
    pub fn unwatch(&self, kernel: &mut Kernel) {
        kernel.unwatch(self.pid());
    }
}

fn open_reader(
    process: &Process,
    plan: &ProbePlan,
    bias: u64,
) -> Result<RuntimeReader, StateError> {
    RuntimeReader::new(process.memory()?, &plan.layout, &plan.globals, bias)
}

/// Hits of the hot probes the kernel counted: creations, exits, stack scans and moves.
fn hot_hits(c: &Counters) -> u64 {
    c.created + c.exited + c.stack_scans + c.stack_copies
}

/// gs a standing census checks per round.
const SPOT_CHECK: u64 = 256;

/// Censuses that fail in a row (`allgs` unreadable) before the process is distrusted.
const MAX_CENSUS_FAILURES: u32 = 3;

/// The wait reason as the runtime's traceback prints it.
fn wait_reason(reasons: Option<&'static [&'static str]>, g: &BlockedG) -> Cow<'static, str> {
    if g.status == status::SYSCALL {
        return Cow::Borrowed("syscall");
    }
    match reasons.and_then(|r| r.get(g.waitreason as usize)) {
        Some(&"") => Cow::Borrowed("waiting"),
        Some(&r) => Cow::Borrowed(r),
        None => Cow::Owned(format!("wait reason {}", g.waitreason)),
    }
}

/// Where the hot probes' load was last measured from.
#[derive(Clone, Copy, Debug)]
struct HotMark {
    ns: u64,
    /// Hot probe hits the kernel counted.
    hits: u64,
    /// `sched.goidgen`, when the runtime's memory is read.
    goids: Option<i64>,
    gc_cycles: u64,
    /// The process's CPU seconds, and when they were read.
    cpu: Option<(u64, f64)>,
}
