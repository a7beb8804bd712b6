//! The overhead budget. Every probe hit costs the target a trap into the kernel (1 µs in the
//! worst churn, 2 µs in an HTTP server here: more than a goroutine costs to create). The hot probes (creation, exit, stack scan)
//! fire in proportion to the target's activity, so they get a budget per process: a fraction
//! (default 1 %) of the CPU time the process uses, counted as at least half a core and at
//! most one: a process held to half a core (a container's limit, a shared CPU) loses no more
//! than the fraction of its throughput, and an idle one still keeps half the budget. While their estimated cost stays inside it they stay attached;
//! past it they run in windows: attached for one sampling interval, then detached until the
//! hits the kernel counted in the window (late ones too: detaching takes time) are paid for
//! at the budget's rate. The figures that matter most never depend on them: live goroutines,
//! the free-G pool, creations and exits come from the runtime's own counters in memory, GC
//! cycles and pauses from probes that fire a few times per cycle.

use std::time::{Duration, Instant};

use crate::config::params::OverheadBudget;

/// What the hot probes cost a process between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HotLoad {
    /// Their hits per second were they attached all the time: estimated from the runtime's
    /// counts when it has them (two hits per goroutine created, one per live stack per GC
    /// cycle), whether the probes ran or not; else counted by the probes. None before a rate
    /// can be taken.
    pub demand_per_s: Option<f64>,
    /// Hits the kernel counted (only while attached).
    pub hits: u64,
    /// Cores the process used (CPU seconds per second); None when unknown.
    pub cpu_cores: Option<f64>,
    /// What the censuses finished since the last sample cost the process (estimated: see
    /// [`crate::config::params::OverheadBudget::cost_per_g_read`]), paid from the same budget.
    pub census_cost: Duration,
}

/// The share of a process's budget its census may take: the rest is the hot probes'.
pub const CENSUS_SHARE: f64 = 0.5;

/// The budget of a process using `cpu_cores` (None: unknown, counted as one core), in cores;
/// None without a limit.
pub fn process_limit(config: &OverheadBudget, cpu_cores: Option<f64>) -> Option<f64> {
    let fraction = config.process_cpu_share?;
    Some(fraction * cpu_cores.unwrap_or(1.0).clamp(MIN_CORES, 1.0))
}

/// The budget is relative to the process's CPU time down to this share of a core: below it,
/// an idle process would leave the probes almost no time at all.
const MIN_CORES: f64 = 0.5;

/// Between steps, a surge this many times over the budget, and costing at least
/// [`SURGE_CORES`], detaches the hot probes at once. Below that a window lasts its interval:
/// every window costs a fixed overhead, so few long windows cost less than many short ones.
const SURGE: f64 = 2.0;

/// The share of a core above which a window's cost is cut short (a process going from idle
/// to the worst churn would otherwise lose most of its CPU for an interval).
const SURGE_CORES: f64 = 0.25;

/// How often a surge is looked for (the kernel's creation counts, only while the hot probes
/// are attached under a limit; the daemon spaces checks out with many processes). A process going from idle to the worst churn
/// makes about 1.2 M hits/s: each check period lets through about 1 % of a core-second.
pub const SURGE_CHECK: Duration = Duration::from_millis(20);

/// Whether the hot probes are attached, and until when they stay detached.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Not attached yet: the first estimate decides.
    Undecided,
    On,
    /// Detached until `until`; `owed`: to pay for hits counted, not only to pace windows.
    Off {
        until: Instant,
        owed: bool,
    },
}

/// One controller per attachment of the hot probes (a process in `gprof top`, an executable
/// in the daemon).
#[derive(Debug)]
pub struct DutyCycle {
    config: OverheadBudget,
    state: State,
    /// Share of time the hot probes will be attached (1 when within budget).
    duty: f64,
    /// The budget in cores, as of the last step.
    limit: Option<f64>,
}

impl DutyCycle {
    /// `start_on`: attach at once (when nothing can estimate the cost before the probes
    /// run); otherwise the first estimate decides.
    pub fn new(config: OverheadBudget, start_on: bool) -> Self {
        Self {
            config,
            state: if start_on {
                State::On
            } else {
                State::Undecided
            },
            duty: 1.0,
            limit: config.process_cpu_share,
        }
    }

    pub fn duty(&self) -> f64 {
        self.duty
    }

    pub fn is_limited(&self) -> bool {
        self.config.process_cpu_share.is_some()
    }

    /// Between steps: a surge of `demand_per_s` hits/s, beyond twice the budget, detaches
    /// the hot probes at once (the next step charges the hits counted until then). Returns
    /// whether it did.
    pub fn cut(&mut self, now: Instant, demand_per_s: f64) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        let cost = self.cost(demand_per_s);
        if self.state != State::On || cost <= (SURGE * limit).max(SURGE_CORES) {
            return false;
        }
        self.duty = limit / cost;
        self.state = State::Off {
            until: now + self.overhead_payback(demand_per_s, limit),
            owed: true,
        };
        true
    }

    /// How long the hits a window costs uncounted take to pay for.
    fn overhead_payback(&self, demand_per_s: f64, limit: f64) -> Duration {
        let cost = self.cost(demand_per_s) * self.config.window_overhead.as_secs_f64();
        Duration::from_secs_f64((cost / limit).min(self.config.max_off.as_secs_f64()))
    }

    /// Estimated share of a core the hot probes cost at `hits_per_second`.
    pub fn cost(&self, hits_per_second: f64) -> f64 {
        hits_per_second * self.config.cost_per_hit.as_secs_f64()
    }

    /// Called once per sampling interval with the hot probes' load since the last call
    /// (with several processes, the busiest's). Returns whether they must be attached now.
    pub fn step(&mut self, now: Instant, interval: Duration, load: HotLoad) -> bool {
        let Some(limit) = process_limit(&self.config, load.cpu_cores) else {
            self.state = State::On;
            return true;
        };
        self.limit = Some(limit);
        // How long the hits counted since the last step, and the censuses, take to pay for at
        // the budget's rate.
        let payback = Duration::from_secs_f64(
            (self.cost(load.hits as f64) + load.census_cost.as_secs_f64()) / limit,
        );
        let over = match load.demand_per_s {
            Some(rate) => {
                let cost = self.cost(rate);
                self.duty = (limit / cost).min(1.0);
                cost > limit
            }
            // No estimate (yet): stay as we are.
            None => self.state != State::On,
        };
        self.state = match self.state {
            // Hits counted (late ones too: detaching takes time) are paid for, even when the
            // load drops: bursts must not add up to more than the budget.
            State::Off { until, owed } if owed || payback > Duration::ZERO => {
                let until = until + payback;
                if now >= until {
                    State::On
                } else {
                    State::Off { until, owed: true }
                }
            }
            _ if !over => State::On,
            // The window (one interval) is over: detached until its hits are paid for.
            State::On => State::Off {
                until: now.checked_sub(interval).unwrap_or(now)
                    + payback
                    + self.overhead_payback(load.demand_per_s.unwrap_or(0.0), limit),
                owed: true,
            },
            // Begin with the off part of a period that averages to the budget (nothing is
            // owed yet: if the load drops, the probes come back at once).
            State::Undecided if load.demand_per_s.is_some() => State::Off {
                until: now + interval.mul_f64(1.0 / self.duty - 1.0),
                owed: false,
            },
            State::Undecided => State::Undecided,
            State::Off { until, owed } if now < until => State::Off { until, owed },
            State::Off { .. } => State::On,
        };
        if let State::Off { until, .. } = &mut self.state {
            *until = (*until).min(now + self.config.max_off);
        }
        self.state == State::On
    }
}

/// Drives the hot probes of one attachment (a process in `gprof top`, an executable in the
/// daemon) by its [`DutyCycle`]. Their cost is estimated from cheap sources (creations from the
/// runtime's goroutine IDs, scans from the live count and the GC cycles), so they need not
/// run to be measured: under the worst churn they are never attached outside their windows.
#[derive(Debug)]
pub struct HotControl {
    pub key: crate::inspect::process::ExeKey,
    budget: DutyCycle,
    /// Monotonic ns since when the hot probes are attached (None while detached).
    on_since_ns: Option<u64>,
    /// The last period they were attached, once closed.
    last_window_ns: Option<(u64, u64)>,
}

impl HotControl {
    /// `exact_counts`: whether creations, exits and live goroutines come from the runtime's
    /// memory; without them the hot probes must stay attached. `attached`: whether they are
    /// attached now.
    pub fn new(
        key: crate::inspect::process::ExeKey,
        config: OverheadBudget,
        exact_counts: bool,
        attached: bool,
        now_ns: u64,
    ) -> Self {
        let config = if exact_counts {
            config
        } else {
            OverheadBudget {
                process_cpu_share: None,
                ..config
            }
        };
        Self {
            key,
            budget: DutyCycle::new(config, attached),
            on_since_ns: attached.then_some(now_ns),
            last_window_ns: None,
        }
    }

    /// Whether the budget may detach the hot probes.
    pub fn is_limited(&self) -> bool {
        self.budget.is_limited()
    }

    /// What the collectors need to know about the hot probes.
    pub fn probes(&self) -> crate::collect::collector::HotProbes {
        crate::collect::collector::HotProbes {
            on_since_ns: self.on_since_ns,
            last_window_ns: self.last_window_ns,
            duty: self.budget.duty(),
        }
    }

    /// Whether a surge check is worth it: the hot probes are attached under a limit.
    pub fn watches_for_surges(&self) -> bool {
        self.on_since_ns.is_some() && self.budget.is_limited()
    }

    /// Between samples, with the creation demand of the busiest process: whether to detach
    /// the hot probes at once (`Some(false)`) because it surged far over the budget.
    pub fn check_surge(&mut self, demand_per_s: f64) -> Option<bool> {
        if !self.budget.cut(Instant::now(), demand_per_s) {
            return None;
        }
        log::info!(
            "creations surged to {:.0}/s, {:.1} % of a core in probe hits: hot probes detached until the budget allows",
            demand_per_s / 2.0,
            self.budget.cost(demand_per_s) * 100.0
        );
        self.change(false)
    }

    /// After a sampling round, with the hot probes' load in the busiest process: whether to
    /// attach (`Some(true)`) or detach (`Some(false)`) them for the next interval.
    pub fn step(&mut self, now: Instant, interval: Duration, load: HotLoad) -> Option<bool> {
        let was_limited = self.budget.duty() < 1.0;
        let on = self.budget.step(now, interval, load);
        log::debug!("hot probes: {load:?} -> {:?}", self.budget.state);
        if let Some(rate) = load.demand_per_s
            && self.budget.duty() < 1.0
            && !was_limited
        {
            log::info!(
                "hot probes would cost {:.1} % of a core ({rate:.0} hits/s): over the budget, attached {:.2} % of the time",
                self.budget.cost(rate) * 100.0,
                self.budget.duty() * 100.0
            );
        }
        self.change(on)
    }

    fn change(&self, on: bool) -> Option<bool> {
        (on != self.on_since_ns.is_some()).then_some(on)
    }

    /// The kernel attached (`on`) or detached the hot probes at `now_ns`.
    pub fn switched(&mut self, on: bool, now_ns: u64) {
        if on {
            self.on_since_ns = Some(now_ns);
        } else {
            self.last_window_ns = self.on_since_ns.take().map(|since| (since, now_ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// The figures below were worked out at 0.7 µs per hit, windows free of overhead.
    fn config() -> OverheadBudget {
        OverheadBudget {
            cost_per_hit: Duration::from_nanos(700),
            window_overhead: Duration::ZERO,
            ..OverheadBudget::default()
        }
    }

    #[test]
    fn each_window_pays_for_its_overhead() {
        let with_overhead = OverheadBudget {
            window_overhead: Duration::from_millis(30),
            ..config()
        };
        let t = Instant::now();
        // 1.4 M hits/s: 98 % of a core. A surge cut owes 30 ms of it: 2.94 s at 1 %.
        let mut b = DutyCycle::new(with_overhead, true);
        assert!(b.cut(t, 1.4e6));
        assert!(!b.step(t + SECOND * 2, SECOND, load(1.4e6, 0)));
        assert!(b.step(t + SECOND * 3, SECOND, load(1.4e6, 0)));
        // A window ended by a step owes the same on top of its hits.
        let demand = 0.02 / 0.7e-6;
        let mut b = DutyCycle::new(with_overhead, true);
        assert!(!b.step(t, SECOND, load(demand, demand as u64)));
        // 2 s for the hits, 0.06 s for the overhead, less the window itself.
        assert!(!b.step(t + Duration::from_millis(1050), SECOND, load(demand, 0)));
        assert!(b.step(t + Duration::from_millis(1070), SECOND, load(demand, 0)));
    }

    fn load(demand: f64, hits: u64) -> HotLoad {
        HotLoad {
            cpu_cores: None,
            demand_per_s: Some(demand),
            hits,
            census_cost: Duration::ZERO,
        }
    }

    #[test]
    fn a_census_is_paid_from_the_same_budget() {
        let t = Instant::now();
        // Over budget: a window of one interval, then off until its 70 ms of hits are paid at
        // 1 % of a core (7 s); a census that cost the process 10 ms more adds 1 s.
        let demand = 100_000.0;
        let paced = |census_ms: u64| {
            let mut b = DutyCycle::new(config(), true);
            let charged = HotLoad {
                census_cost: Duration::from_millis(census_ms),
                ..load(demand, demand as u64)
            };
            assert!(!b.step(t, SECOND, charged));
            (1..2000u64)
                .map(|i| t + Duration::from_millis(10 * i))
                .find(|&at| b.step(at, SECOND, load(demand, 0)))
                .map(|at| at - t)
                .unwrap()
        };
        let (without, with) = (paced(0), paced(10));
        assert!(
            with.abs_diff(without + SECOND) <= Duration::from_millis(20),
            "{without:?} then {with:?}"
        );
    }

    #[test]
    fn within_budget_stays_on() {
        let mut b = DutyCycle::new(config(), false);
        let t = Instant::now();
        // 4040 hits/s x 0.7 us = 0.28 % of a core.
        for i in 0..10 {
            assert!(b.step(t + SECOND * i, SECOND, load(4040.0, 4040)));
        }
        assert_eq!(b.duty(), 1.0);
    }

    #[test]
    fn over_budget_the_windows_average_to_the_budget() {
        let mut b = DutyCycle::new(config(), false);
        let t = Instant::now();
        // 28,571 hits/s x 0.7 us = 2 % of a core: attached half the time at most.
        let demand = 0.02 / 0.7e-6;
        assert!(!b.step(t, SECOND, load(demand, 0)), "starts detached");
        assert!((b.duty() - 0.5).abs() < 1e-9, "{}", b.duty());
        let (mut on, mut hits) = (false, 0u64);
        let mut on_seconds = 0;
        for s in 1..=100 {
            // The kernel counts hits only while attached.
            let counted = if on { demand as u64 } else { 0 };
            hits += counted;
            on = b.step(t + SECOND * s, SECOND, load(demand, counted));
            on_seconds += u32::from(on);
        }
        let cost = hits as f64 * 0.7e-6 / 100.0;
        assert!((cost - 0.01).abs() < 0.0005, "{cost} of a core");
        assert!((45..=55).contains(&on_seconds), "{on_seconds} s on");
    }

    #[test]
    fn hits_counted_after_a_window_lengthen_the_pause() {
        let mut b = DutyCycle::new(config(), true);
        let t = Instant::now();
        // 10x the budget: a 1 s window costs 10 s of budget.
        let demand = 0.1 / 0.7e-6;
        assert!(!b.step(t, SECOND, load(demand, demand as u64)));
        assert!(!b.step(t + SECOND * 5, SECOND, load(demand, 0)));
        // Detaching took a while: half a second of hits more, five seconds more off.
        assert!(!b.step(t + SECOND * 6, SECOND, load(demand, demand as u64 / 2)));
        assert!(!b.step(t + SECOND * 13, SECOND, load(demand, 0)));
        assert!(b.step(t + SECOND * 14, SECOND, load(demand, 0)));
    }

    #[test]
    fn hits_counted_are_paid_for_even_when_the_load_drops() {
        let mut b = DutyCycle::new(config(), true);
        let t = Instant::now();
        // A surge: cut between steps, with 0.1 s of hits at 1.4 M/s counted (9.8 s to pay).
        assert!(b.cut(t, 2.8e6));
        assert!(!b.step(t + SECOND / 10, SECOND / 5, load(0.0, 140_000)));
        assert!(!b.step(t + SECOND * 9, SECOND / 5, load(0.0, 0)));
        assert!(b.step(t + SECOND * 10, SECOND / 5, load(0.0, 0)));
        // A cut needs a surge well over the budget, with the probes attached.
        assert!(
            !b.cut(t + SECOND * 10, 200_000.0),
            "14 % of a core: the step's business"
        );
        assert!(b.cut(t + SECOND * 10, 400_000.0));
        assert!(!b.cut(t + SECOND * 10, 400_000.0), "already detached");
    }

    #[test]
    fn the_budget_follows_the_cpu_the_process_uses() {
        let t = Instant::now();
        // 10,000 hits/s x 0.7 us = 0.7 % of a core: within 1 % of a whole core...
        let mut b = DutyCycle::new(config(), false);
        assert!(b.step(t, SECOND, load(10_000.0, 0)));
        // ...but not of half a core: attached 5/7 of the time.
        let half = HotLoad {
            cpu_cores: Some(0.5),
            ..load(10_000.0, 0)
        };
        let mut b = DutyCycle::new(config(), false);
        assert!(!b.step(t, SECOND, half));
        assert!((b.duty() - 0.005 / 0.007).abs() < 1e-9, "{}", b.duty());
        // An idle process still gets half the budget of a core.
        let idle = HotLoad {
            cpu_cores: Some(0.0),
            ..load(7000.0, 0)
        };
        let mut b = DutyCycle::new(config(), false);
        assert!(b.step(t, SECOND, idle), "0.49 % of a core is within 0.5 %");
        let mut b = DutyCycle::new(config(), false);
        assert!(!b.step(
            t,
            SECOND,
            HotLoad {
                cpu_cores: Some(0.0),
                ..load(7300.0, 0)
            }
        ));
    }

    #[test]
    fn the_load_drops_back_within_budget() {
        let mut b = DutyCycle::new(config(), false);
        let t = Instant::now();
        assert!(!b.step(t, SECOND, load(2.8e6, 0)));
        assert!(b.step(t + SECOND, SECOND, load(1000.0, 0)));
        assert_eq!(b.duty(), 1.0);
    }

    #[test]
    fn the_off_time_is_capped() {
        let mut b = DutyCycle::new(
            OverheadBudget {
                max_off: Duration::from_secs(10),
                ..config()
            },
            true,
        );
        let t = Instant::now();
        assert!(!b.step(t, SECOND, load(1e9, 1_000_000_000)));
        assert!(!b.step(t + Duration::from_secs(9), SECOND, load(1e9, 0)));
        assert!(b.step(t + Duration::from_secs(10), SECOND, load(1e9, 0)));
    }

    #[test]
    fn no_limit_keeps_them_on_and_no_estimate_waits() {
        let unlimited = OverheadBudget {
            process_cpu_share: None,
            ..config()
        };
        let mut b = DutyCycle::new(unlimited, true);
        assert!(b.step(Instant::now(), SECOND, load(1e9, 1_000_000_000)));
        let mut b = DutyCycle::new(config(), false);
        let none = HotLoad::default();
        assert!(!b.step(Instant::now(), SECOND, none), "undecided waits");
        assert!(b.step(Instant::now(), SECOND, load(10.0, 0)));
        assert!(b.step(Instant::now(), SECOND, none), "on stays on");
    }
}
