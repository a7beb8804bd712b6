//! One watched Go process: inspection (is it Go, which release, where to probe), attachment
//! (kernel filter entry plus probes), and sampling into snapshots. Shared by `gprof top` and
//! the daemon.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use profiler_common::SiteKey as KernelSiteKey;
use profiler_common::{Counters, Event, GcState, ProcConfig, SiteCounts};

use crate::collect::blocked::{GroupKey, Observed};
use crate::inspect::census::{BlockedG, Census, CreationSite};
use crate::inspect::clock::monotonic_ns;
use crate::inspect::goruntime::{self, status};

use std::borrow::Cow;
use std::sync::Arc;

use crate::attach::kernel::{AttachScope, ExeKey, Kernel, KernelError};
use crate::collect::budget::HotLoad;
use crate::collect::collector::{HotProbes, Identity, ProcessCollector, Reading};
use crate::collect::sites::{SiteNames, Symbolizer};
use crate::config::params::HealthModel;
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
        symbols: std::sync::Mutex::new(Symbolizer::new(binary.frame_table())),
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
    /// When the next census may run: a census of a huge process takes a while, and gprof
    /// spends at most a twentieth of its time on one.
    next_census: Instant,
    /// Censuses that failed since [`Self::take_census_errors`] last ran.
    census_errors: u64,
    /// The last census, while nothing has happened in the process since (see
    /// [`LastCensus`]).
    last_census: Option<LastCensus>,
    /// How long a quiet process's last census may stand in for a new one.
    census_refresh: Duration,
}

/// A census with its blocked goroutines placed, and what the process's counts were then. In a
/// process where no goroutine was created or exited and no GC ran since (no stacks scanned or
/// moved), the next census would find the same goroutines with the same stacks; one may
/// still have woken and blocked again, which the next real census sees (its trackingSeq
/// moved) and dates again. So the last one stands in, for at most a tenth of `stuck_after`:
/// what it shows is at most that old.
struct LastCensus {
    taken: Instant,
    quiet: Quiet,
    census: Census,
    observed: Vec<Observed>,
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
    /// `limit_hot`: the hot probes are under a budget, so they wait for its first estimate
    /// when the runtime's counts can be read (else they start attached: counts need them).
    pub fn attach(
        kernel: &mut Kernel,
        inspected: &Inspected,
        scope: AttachScope,
        windows: Windows,
        health: HealthModel,
        limit_hot: bool,
    ) -> Result<Self, TargetError> {
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
            next_census: Instant::now(),
            census_errors: 0,
            last_census: None,
            census_refresh: Duration::from_secs_f64(windows.stuck_after_seconds / 10.0),
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

    /// Reads the kernel's counters and the runtime's own counts. `events` are all records
    /// drained from the kernel since the last round (this target picks its own).
    pub fn sample(
        &mut self,
        kernel: &Kernel,
        events: &[Event],
        sites: &HashMap<u32, Vec<(KernelSiteKey, SiteCounts)>>,
        hot: HotProbes,
    ) -> Result<ProcessSnapshot, TargetError> {
        let pid = self.pid();
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
                Err(source) => {
                    return Err(self
                        .program_changed()
                        .unwrap_or(TargetError::State { pid, source }));
                }
            },
            None => None,
        };
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
        let stands = self
            .last_census
            .as_ref()
            .is_some_and(|l| Some(l.quiet) == quiet && l.taken.elapsed() < self.census_refresh);
        if stands && let Some(last) = &self.last_census {
            let (census, observed) = (last.census.clone(), last.observed.clone());
            let symbols = self.executable.symbols.lock();
            let names = symbols
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .resolve(census.sites.keys(), self.bias);
            self.collector.absorb_census(t, &census, &names, observed);
        }
        if !stands {
            self.last_census = None;
        }
        // The census is best effort: a reading that races with the program is skipped.
        let attempt = (!stands && Instant::now() >= self.next_census).then(Instant::now);
        let census = if let Some(began) = attempt {
            let census = self.reader.as_ref().and_then(|r| match r.census() {
                Ok(Some(c)) => Some(c),
                Ok(None) => {
                    self.census_errors += 1;
                    None
                }
                Err(e) => {
                    self.census_errors += 1;
                    log::debug!("PID {pid}: census failed: {e}");
                    None
                }
            });
            if let Some(c) = &census {
                log::debug!(
                    "PID {pid}: census of {} gs in {:?}: {} live, {} dead, {} unreadable, {} blocked",
                    c.live + c.dead + c.unreadable,
                    began.elapsed(),
                    c.live,
                    c.dead,
                    c.unreadable,
                    c.blocked.len()
                );
            }
            census
        } else {
            None
        };
        let keys = census
            .iter()
            .flat_map(|c| c.sites.keys())
            .chain(counted.iter().map(|(k, _)| k));
        let executable = self.executable.clone();
        let mut symbols = executable
            .symbols
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let names = symbols.resolve(keys, self.bias);
        if let Some(mut census) = census {
            let observed = self.observe_blocked(&mut census, &mut symbols, &names);
            self.collector
                .absorb_census(t, &census, &names, observed.clone());
            if let (Some(quiet), Some(began)) = (quiet, attempt) {
                self.last_census = Some(LastCensus {
                    taken: began,
                    quiet,
                    census,
                    observed,
                });
            }
        }
        drop(symbols);
        if let Some(began) = attempt {
            let took = began.elapsed();
            log::debug!("PID {pid}: census, stacks walked and names, in {took:?}");
            self.next_census = began + took * CENSUS_SPACING;
        }
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
        };
        Ok(self.collector.update(&reading, now_ns))
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

    /// The census's blocked goroutines, placed (their stacks walked, unless they have not
    /// moved since the last census) and grouped.
    fn observe_blocked(
        &self,
        census: &mut Census,
        symbols: &mut Symbolizer,
        names: &SiteNames,
    ) -> Vec<Observed> {
        let blocked = std::mem::take(&mut census.blocked);
        let mut at: Vec<Option<u64>> = blocked
            .iter()
            .map(|b| self.collector.known_place(b))
            .collect();
        let todo: Vec<usize> = (0..blocked.len()).filter(|&i| at[i].is_none()).collect();
        if let (Some(reader), Some(frames), false) =
            (&self.reader, symbols.frames(), todo.is_empty())
        {
            let starts: Vec<_> = todo.iter().map(|&i| blocked[i].start).collect();
            for (i, found) in todo
                .into_iter()
                .zip(reader.unwind(&starts, self.bias, frames))
            {
                at[i] = found;
            }
        }
        // One key per group, shared by its goroutines.
        let mut keys: foldhash::HashSet<Arc<GroupKey>> = Default::default();
        blocked
            .into_iter()
            .zip(at)
            .map(|(g, at)| {
                let key = match (names.get(&g.site), at) {
                    (Some(site), Some(at)) if !site.system => {
                        let key = GroupKey {
                            created_at: site.clone(),
                            blocked_at: symbols.place(at),
                            wait_reason: self.wait_reason(&g),
                            leaked: g.status == status::LEAKED,
                        };
                        Some(match keys.get(&key) {
                            Some(k) => k.clone(),
                            None => {
                                let k = Arc::new(key);
                                keys.insert(k.clone());
                                k
                            }
                        })
                    }
                    _ => None,
                };
                Observed { g, at, key }
            })
            .collect()
    }

    /// The wait reason as the runtime's traceback prints it.
    fn wait_reason(&self, g: &BlockedG) -> Cow<'static, str> {
        if g.status == status::SYSCALL {
            return Cow::Borrowed("syscall");
        }
        match self
            .executable
            .wait_reasons
            .and_then(|r| r.get(g.waitreason as usize))
        {
            Some(&"") => Cow::Borrowed("waiting"),
            Some(&r) => Cow::Borrowed(r),
            None => Cow::Owned(format!("wait reason {}", g.waitreason)),
        }
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

/// A census that took `d` runs again after `d` times this, at the earliest.
const CENSUS_SPACING: u32 = 20;

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
