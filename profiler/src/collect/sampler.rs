//! The sampling loop `gprof top` (one process) and the daemon (every Go process on the node)
//! both run: each round drains the kernel's events and site counts once, samples every
//! attached target, and steers each executable's hot probes under the overhead budget;
//! between rounds it watches for creation surges.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::attach::kernel::{AttachScope, ExeKey, Kernel};
use crate::collect::blocked::SampleRate;
use crate::collect::budget::{HotControl, HotLoad, SURGE_CHECK};
use crate::collect::census_budget::{CensusBudget, QUANTUM};
use crate::collect::target::{Inspected, Target, TargetError};
use crate::config::params::{CensusLimits, HealthModel, OverheadBudget, Windows};
use crate::inspect::clock::monotonic_ns;
use crate::inspect::process::ProcessError;
use crate::inspect::runtime_state::GsBuffers;
use crate::model::snapshot::ProcessSnapshot;

/// What every target is sampled with.
#[derive(Clone, Copy, Debug)]
pub struct SamplerSettings {
    pub interval: Duration,
    pub windows: Windows,
    pub health: HealthModel,
    pub budget: OverheadBudget,
    pub census: CensusLimits,
}

/// Why a sample failed: the `reason` label of `gprof_sample_errors_total`.
pub const SAMPLE_ERROR_REASONS: &[&str] =
    &["process_read", "permission", "runtime_read", "kernel_map"];

pub fn sample_error_reason(e: &TargetError) -> &'static str {
    match e {
        TargetError::Process(ProcessError::Permission(_) | ProcessError::PermissionAsRoot(_)) => {
            "permission"
        }
        TargetError::State { .. } => "runtime_read",
        TargetError::Kernel(_) => "kernel_map",
        _ => "process_read",
    }
}

/// The longest back-off of a failing process, in sampling rounds.
const MAX_BACKOFF_ROUNDS: u32 = 32;

/// Surge checks read every process's counters from the kernel in one batch, whose work grows
/// with the processes: they space out by this per process (every 20 ms up to 20 processes,
/// every 300 ms at 300).
const SURGE_CHECK_PER_PROCESS: Duration = Duration::from_millis(1);

/// An attached process and what its owner keeps beside it (`T`: the daemon's tenant
/// attribution; nothing for `top`).
pub struct Sampled<T> {
    pub target: Target,
    pub tag: T,
    /// Samples failed in a row; the process is sampled again after 1, 2, 4 ... 32 rounds.
    pub failures: u32,
    /// No sample before this (a failing process backs off).
    retry_at: Option<Instant>,
}

/// What became of one target in a round.
pub enum Outcome {
    Sampled(Box<ProcessSnapshot>),
    /// It exited or replaced its program (the error says which): to be removed.
    Ended(TargetError),
    /// It could not be read this time (stopped, briefly unreadable): it stays attached and
    /// is sampled again, less and less often, until it reads or exits.
    Failed {
        reason: &'static str,
        error: TargetError,
    },
    /// Its runtime's bookkeeping stopped making sense ([`TargetError::Untrustworthy`]): to be
    /// removed, and not watched again.
    Distrusted(TargetError),
}

pub struct Sampler<T> {
    kernel: Kernel,
    settings: SamplerSettings,
    targets: BTreeMap<u32, Sampled<T>>,
    /// The hot probes of each attached executable, under the budget.
    hot: HashMap<ExeKey, HotControl>,
    /// When surges are looked for next.
    next_surge_check: Instant,
    sample_errors: BTreeMap<String, u64>,
    census_errors: u64,
    census: CensusBudget,
    /// The buffers census reads go through, one set for every target (they run in turn).
    buffers: GsBuffers,
}

impl<T> Sampler<T> {
    pub fn new(kernel: Kernel, settings: SamplerSettings) -> Self {
        Self {
            kernel,
            settings,
            targets: BTreeMap::new(),
            hot: HashMap::new(),
            next_surge_check: Instant::now(),
            sample_errors: SAMPLE_ERROR_REASONS
                .iter()
                .map(|r| (r.to_string(), 0))
                .collect(),
            census_errors: 0,
            census: CensusBudget::new(settings.census),
            buffers: GsBuffers::default(),
        }
    }

    pub fn settings(&self) -> &SamplerSettings {
        &self.settings
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Attaches to an inspected process and samples it from the next round.
    pub fn attach(
        &mut self,
        inspected: &Inspected,
        scope: AttachScope,
        tag: T,
    ) -> Result<&Sampled<T>, TargetError> {
        let s = self.settings;
        let target = Target::attach(
            &mut self.kernel,
            inspected,
            scope,
            s.windows,
            s.health,
            s.budget,
        )?;
        let key = target.exe;
        if !self.hot.contains_key(&key) {
            let attached = self.kernel.hot_is_on(key);
            let control = HotControl::new(
                key,
                s.budget,
                target.has_exact_counts(),
                attached,
                monotonic_ns(),
            );
            self.hot.insert(key, control);
        }
        let pid = target.pid();
        let sampled = Sampled {
            target,
            tag,
            failures: 0,
            retry_at: None,
        };
        Ok(self.targets.entry(pid).insert_entry(sampled).into_mut())
    }

    pub fn get(&self, pid: u32) -> Option<&Sampled<T>> {
        self.targets.get(&pid)
    }

    pub fn targets(&self) -> impl Iterator<Item = &Sampled<T>> {
        self.targets.values()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Stops sampling a process; its executable's probes stay (see
    /// [`Self::detach_executable`]).
    pub fn remove(&mut self, pid: u32) -> Option<Sampled<T>> {
        let sampled = self.targets.remove(&pid)?;
        sampled.target.unwatch(&mut self.kernel);
        Some(sampled)
    }

    /// Detaches an executable's probes (no process of it is sampled any more).
    pub fn detach_executable(&mut self, key: ExeKey) {
        self.kernel.detach(key);
        self.hot.remove(&key);
    }

    /// Samples that failed, by reason, since the start.
    pub fn sample_errors(&self) -> &BTreeMap<String, u64> {
        &self.sample_errors
    }

    /// Censuses that failed since the start.
    pub fn census_errors(&self) -> u64 {
        self.census_errors
    }

    /// Goroutines followed one by one, over all targets, and the limit.
    pub fn tracked(&self) -> (u64, u64) {
        let n = self
            .targets
            .values()
            .map(|s| s.target.tracked() as u64)
            .sum();
        (n, self.census.tracked_limit())
    }

    /// One round: every target due is sampled, then the round's census work runs (within the
    /// census budget), then each sampled target's snapshot is made. A target that ended stays
    /// until [`Self::remove`]d (it is sampled again meanwhile, and ends again).
    pub fn sample(&mut self) -> Vec<(u32, Outcome)> {
        self.kernel.flush_logs();
        let events = self.kernel.drain_events();
        let sites = self.kernel.site_counts();
        self.kernel.begin_round();
        let interval = self.settings.interval;
        let now = Instant::now();
        let mut results: Vec<(u32, Result<(), TargetError>)> = Vec::new();
        for (&pid, s) in &mut self.targets {
            if s.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            let hot = self
                .hot
                .get(&s.target.exe)
                .map(HotControl::probes)
                .unwrap_or(crate::collect::collector::HotProbes::ALWAYS);
            let result = s
                .target
                .sample(&self.kernel, &events, &sites, hot, &mut self.buffers);
            results.push((pid, result));
        }
        self.kernel.end_round();
        self.census_round(&mut results);
        let mut outcomes = Vec::new();
        for (pid, result) in results {
            let Some(s) = self.targets.get_mut(&pid) else {
                continue;
            };
            self.census_errors += s.target.take_census_errors();
            let result = result.and_then(|()| s.target.snapshot().ok_or(TargetError::Gone(pid)));
            let outcome = match result {
                Ok(snapshot) => {
                    if s.failures > 0 {
                        log::info!(
                            "pid={pid} comm={} sampled again after {} failed samples",
                            s.target.process.comm,
                            s.failures
                        );
                    }
                    (s.failures, s.retry_at) = (0, None);
                    Outcome::Sampled(Box::new(snapshot))
                }
                Err(e @ (TargetError::Gone(_) | TargetError::Execed(_))) => Outcome::Ended(e),
                Err(e @ TargetError::Untrustworthy { .. }) => Outcome::Distrusted(e),
                Err(error) => {
                    let reason = sample_error_reason(&error);
                    *self.sample_errors.entry(reason.to_string()).or_default() += 1;
                    s.failures += 1;
                    let rounds = (1u32 << (s.failures - 1).min(5)).min(MAX_BACKOFF_ROUNDS);
                    // Half a round early, so that the retry falls in the intended round.
                    s.retry_at = Some(now + interval * rounds - interval / 2);
                    Outcome::Failed { reason, error }
                }
            };
            outcomes.push((pid, outcome));
        }
        self.steer_hot_probes();
        outcomes
    }

    /// The round's census work (see [`crate::collect::census_budget`]): a slice at a time to
    /// each sampled target with census work, the oldest census first, while the budget and
    /// the round's time allow. A census that finds the process's bookkeeping forged, or the
    /// process gone, turns its sample's result into that error.
    fn census_round(&mut self, results: &mut [(u32, Result<(), TargetError>)]) {
        let started = Instant::now();
        self.census.refill(started);
        // One census begins per process per round at most (half an interval: rounds drift).
        let spacing = self.settings.interval / 2;
        let deadline = started + self.census.round_time(self.settings.interval);
        let mut queue: Vec<(usize, f64)> = results
            .iter()
            .enumerate()
            .filter(|(_, (pid, r))| {
                r.is_ok()
                    && self
                        .targets
                        .get(pid)
                        .is_some_and(|s| s.target.wants_census(spacing))
            })
            .map(|(i, (pid, _))| (i, self.targets[pid].target.census_age()))
            .collect();
        if queue.is_empty() {
            return;
        }
        // Oldest census first, each to its end before the next: every process's census then
        // comes round about as often as all of them together fit the budget (a big process is
        // not starved by many small ones each taking a slice before it).
        queue.sort_by(|a, b| b.1.total_cmp(&a.1));
        let rates = self.sample_rates();
        for (i, _) in queue {
            let pid = results[i].0;
            let rate = rates.get(&pid).copied().unwrap_or(SampleRate::ALL);
            loop {
                if !self.census.allows() || Instant::now() >= deadline {
                    return;
                }
                let Some(s) = self.targets.get_mut(&pid) else {
                    break;
                };
                match s.target.census_slice(QUANTUM, rate, &mut self.buffers) {
                    Ok(slice) => {
                        self.census.charge(slice.cpu);
                        if !slice.more {
                            break;
                        }
                    }
                    Err(e) => {
                        results[i].1 = Err(e);
                        break;
                    }
                }
            }
        }
    }

    /// The sample of blocked goroutines each target follows, under the census's memory limit:
    /// by what its last census found blocked (before one, by its live goroutines, which
    /// bound it).
    fn sample_rates(&self) -> HashMap<u32, SampleRate> {
        let (pids, demand): (Vec<u32>, Vec<u64>) = self
            .targets
            .iter()
            .map(|(&pid, s)| (pid, s.target.blocked_demand()))
            .unzip();
        pids.into_iter().zip(self.census.rates(&demand)).collect()
    }

    /// Sleeps until `deadline`, looking for surges meanwhile (when a budget may cut some
    /// executable's hot probes; else in one sleep).
    pub fn wait_until(&mut self, deadline: Instant) {
        if !self.hot.values().any(HotControl::watches_for_surges) {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // Asleep until the next check is due (no wake-ups in between).
            let check_in = self
                .next_surge_check
                .saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(check_in.max(Duration::from_millis(1))));
            self.check_surges();
        }
    }

    /// Between rounds: detaches the hot probes of an executable at once if creations surge
    /// in one of its processes.
    pub fn check_surges(&mut self) {
        let now = Instant::now();
        if now < self.next_surge_check {
            return;
        }
        let mut demand: HashMap<ExeKey, f64> = HashMap::new();
        let mut reads = 0;
        self.kernel.begin_round();
        for s in self.targets.values_mut() {
            if !self
                .hot
                .get(&s.target.exe)
                .is_some_and(HotControl::watches_for_surges)
            {
                continue;
            }
            reads += 1;
            if let Some(d) = s.target.creation_demand_now(&self.kernel) {
                let e = demand.entry(s.target.exe).or_insert(0.0);
                *e = e.max(d);
            }
        }
        self.kernel.end_round();
        self.next_surge_check = now + SURGE_CHECK.max(SURGE_CHECK_PER_PROCESS * reads);
        for (key, d) in demand {
            if let Some(control) = self.hot.get_mut(&key) {
                let change = control.check_surge(d);
                switch(&mut self.kernel, control, change);
            }
        }
    }

    /// One budget step per executable, on the busiest of its processes. An executable with a
    /// process whose counts need the probes keeps them attached.
    fn steer_hot_probes(&mut self) {
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let mut per_exe: HashMap<ExeKey, (HotLoad, bool)> = HashMap::new();
        for s in self.targets.values() {
            let e = per_exe
                .entry(s.target.exe)
                .or_insert((HotLoad::default(), true));
            let load = s.target.hot_load();
            if load.demand_per_s > e.0.demand_per_s {
                // The busiest process's demand, against its own CPU time.
                e.0.demand_per_s = load.demand_per_s;
                e.0.cpu_cores = load.cpu_cores;
            }
            e.0.hits = e.0.hits.max(load.hits);
            e.0.census_cost = e.0.census_cost.max(load.census_cost);
            e.1 &= s.target.has_exact_counts();
        }
        for (key, (load, exact)) in per_exe {
            let limited = self.hot.get(&key).is_some_and(HotControl::is_limited);
            if limited && !exact {
                // A process whose live count depends on the probes joined: back to always on.
                let _ = self.kernel.set_hot(key, true);
                self.hot.remove(&key);
            }
            let budget = self.settings.budget;
            let attached = self.kernel.hot_is_on(key);
            let control = self
                .hot
                .entry(key)
                .or_insert_with(|| HotControl::new(key, budget, exact, attached, now_ns));
            let change = control.step(now, self.settings.interval, load);
            switch(&mut self.kernel, control, change);
        }
    }
}

/// Applies a hot-probe decision of the budget in the kernel.
fn switch(kernel: &mut Kernel, control: &mut HotControl, change: Option<bool>) {
    let Some(on) = change else { return };
    match kernel.set_hot(control.key, on) {
        Ok(()) => control.switched(on, monotonic_ns()),
        Err(e) => log::warn!(
            "switching the hot probes {}: {e}",
            if on { "on" } else { "off" }
        ),
    }
}
