//! The leak verdict on one group of stuck goroutines: does its count grow persistently, or did
//! it only jump once (a pool warming up, connections opening), or does it come and go with
//! load, or is it a large but stable population (connection readers, workers)?
//!
//! A group's stuck count is kept over five horizons (the leak window W, 2W, 4W, 16W, 64W), each
//! as 30 buckets holding the smallest count seen in their time (a burst of goroutines stuck
//! for a while does not lift a minimum; a leak lifts every later one). On a horizon the group
//! is leaking when
//!
//! - the Theil–Sen slope's 95 % lower bound is above zero (one jump, however large, leaves
//!   it at zero: see [`crate::model::stats::theil_sen`]),
//! - the minima of its quarters rise from each quarter to the next (so a rise that lasts less
//!   than a quarter of the leak window, such as a pool warming up, is a jump, never a leak),
//! - no single step between two buckets makes half of the rise or more,
//! - the count rose by at least [`MIN_RISE`],
//! - and at least half of each of the first three quarters' minima are still there: leaked
//!   goroutines stay, while a queue that drains slower than it fills (a process starved of
//!   CPU, writers holding a lock against a crowd of readers) renews its stuck goroutines and
//!   is a backlog, not a leak, however steadily its count climbs.
//!
//! Short horizons find fast leaks within a window; long ones find slow leaks (a goroutine
//! every few minutes) that a window would miss. The growth reported for a leak is the slope
//! over the longest horizon that confirms it (the most data). A group once called leaking
//! stays so until its leak stops, that is until its count has not risen for 10 times the mean
//! gap between its leaks (a quarter of the window at least): a leak at 60/min is cleared
//! 15 s after its last goroutine got stuck, one at 6/min 100 s after. A group whose count
//! falls to half its high (its goroutines were released) is cleared at once.

use std::collections::VecDeque;

use crate::model::stats::theil_sen;

/// Horizons, as multiples of the leak window.
const HORIZONS: [f64; 5] = [1.0, 2.0, 4.0, 16.0, 64.0];
/// Buckets per horizon.
const BUCKETS: usize = 30;
/// Fewest buckets a horizon needs before it may decide.
const MIN_BUCKETS: usize = 8;
/// Share of a horizon its buckets must cover before it may decide.
const MIN_COVERAGE: f64 = 0.75;
/// Fewest goroutines a leak must add over the horizon that finds it.
pub const MIN_RISE: f64 = 3.0;
/// The times each history asks about, three per horizon: see [`LeakHistory::checkpoints`].
pub const CHECKPOINTS: usize = 3 * HORIZONS.len();

/// The smallest value seen in each time bucket of one horizon.
#[derive(Clone, Debug)]
struct Horizon {
    span: f64,
    width: f64,
    /// (bucket start, smallest value in the bucket).
    buckets: VecDeque<(f64, f64)>,
}

impl Horizon {
    fn new(span: f64) -> Self {
        Self {
            span,
            width: span / BUCKETS as f64,
            buckets: VecDeque::with_capacity(BUCKETS + 1),
        }
    }

    fn push(&mut self, t: f64, v: f64) {
        match self.buckets.back_mut() {
            Some((start, min)) if t < *start + self.width => *min = min.min(v),
            _ => self.buckets.push_back((t, v)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|&(start, _)| t - start > self.span)
        {
            self.buckets.pop_front();
        }
    }

    /// Time covered by the buckets.
    fn covered(&self) -> f64 {
        match (self.buckets.front(), self.buckets.back()) {
            (Some(a), Some(b)) => b.0 - a.0 + self.width,
            _ => 0.0,
        }
    }

    /// By when the minima of the first three quarters were stuck (a quarter's smallest count
    /// was seen by the end of its last bucket); the quarters as [`Self::quarter_minima`] cuts them.
    fn quarter_ends(&self) -> [f64; 3] {
        match (self.buckets.front(), self.buckets.back()) {
            (Some(a), Some(b)) => {
                let length = b.0 - a.0;
                [1.0, 2.0, 3.0].map(|k| a.0 + length * k / 4.0 + self.width)
            }
            _ => [f64::NEG_INFINITY; 3],
        }
    }

    /// The growth per second this horizon confirms, if it does; `stuck_by` holds how many of
    /// the group's goroutines have been stuck since each of [`Self::quarter_ends`].
    fn confirms(&self, stuck_by: &[f64]) -> Option<f64> {
        if self.buckets.len() < MIN_BUCKETS || self.covered() < MIN_COVERAGE * self.span {
            return None;
        }
        let points: Vec<(f64, f64)> = self.buckets.iter().copied().collect();
        let (first, last) = (points[0].1, points[points.len() - 1].1);
        let rise = last - first;
        if rise < MIN_RISE {
            return None;
        }
        let biggest_step = points
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .fold(0.0, f64::max);
        if 2.0 * biggest_step >= rise {
            return None;
        }
        let quarters = self.quarter_minima(&points)?;
        if quarters.windows(2).any(|w| w[1] <= w[0]) {
            return None;
        }
        if quarters
            .iter()
            .zip(stuck_by)
            .any(|(&min, &stayed)| stayed < min / 2.0)
        {
            return None;
        }
        let fit = theil_sen(&points)?;
        (fit.lower > 0.0).then_some(fit.slope)
    }

    /// The smallest value in each quarter of the covered time (None if a quarter is empty).
    fn quarter_minima(&self, points: &[(f64, f64)]) -> Option<[f64; 4]> {
        let t0 = points[0].0;
        let length = (points[points.len() - 1].0 - t0).max(f64::EPSILON);
        let mut q = [f64::INFINITY; 4];
        for &(t, v) in points {
            let i = (((t - t0) / length * 4.0) as usize).min(3);
            q[i] = q[i].min(v);
        }
        q.iter().all(|v| v.is_finite()).then_some(q)
    }

    fn slope(&self) -> Option<f64> {
        let points: Vec<(f64, f64)> = self.buckets.iter().copied().collect();
        theil_sen(&points).map(|f| f.slope)
    }
}

/// The verdict on one group at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Verdict {
    pub leaking: bool,
    /// Growth of the stuck count per minute: over the horizon that confirmed the leak, else
    /// over the leak window (Theil–Sen).
    pub growth_per_min: f64,
}

/// A group's stuck count over the horizons, and its verdict.
#[derive(Clone, Debug)]
pub struct LeakHistory {
    window: f64,
    horizons: Vec<Horizon>,
    /// The newest count.
    last: f64,
    /// The highest count seen, and when the count last rose to a new high.
    high: f64,
    rose_at: f64,
    /// While a leak is confirmed: its growth per second.
    confirmed: Option<f64>,
}

/// A confirmed leak has stopped when its count has not risen for this many times its mean
/// gap between leaks (the chance that a leak going on at that rate pauses so long is e^-10,
/// 1 in 22,000 gaps).
const STOP_GAPS: f64 = 10.0;

impl LeakHistory {
    pub fn new(window: f64) -> Self {
        Self {
            window,
            horizons: HORIZONS.iter().map(|k| Horizon::new(k * window)).collect(),
            last: 0.0,
            high: 0.0,
            rose_at: 0.0,
            confirmed: None,
        }
    }

    /// The times the verdict asks about at the next [`Self::push`]: for each horizon, the ends
    /// of its first three quarters.
    pub fn checkpoints(&self) -> [f64; CHECKPOINTS] {
        let mut out = [f64::NEG_INFINITY; CHECKPOINTS];
        for (h, chunk) in self.horizons.iter().zip(out.chunks_mut(3)) {
            chunk.copy_from_slice(&h.quarter_ends());
        }
        out
    }

    /// Records the stuck count at `t` seconds and gives the verdict. `stuck_by[i]`: how many
    /// of the `stuck` goroutines had been stuck already at `checkpoints()[i]` (as asked
    /// before this push).
    pub fn push(&mut self, t: f64, stuck: f64, stuck_by: &[f64; CHECKPOINTS]) -> Verdict {
        self.last = stuck;
        if stuck > self.high {
            (self.high, self.rose_at) = (stuck, t);
        }
        for h in &mut self.horizons {
            h.push(t, stuck);
        }
        // The longest horizon that confirms gives the rate (it has the most data).
        let confirmed_now = self
            .horizons
            .iter()
            .zip(stuck_by.chunks(3))
            .rev()
            .find_map(|(h, by)| h.confirms(by));
        let rate = confirmed_now.or(self.confirmed);
        let stopped = rate.is_some_and(|r| {
            t - self.rose_at > (self.window / 4.0).max(STOP_GAPS / r.max(f64::MIN_POSITIVE))
        });
        // Goroutines that leave were not leaked: a count fallen to half its high clears it.
        let released = stuck < self.high / 2.0;
        self.confirmed = rate.filter(|_| !stopped && !released);
        if released {
            self.high = stuck;
        }
        match self.confirmed {
            Some(r) => Verdict {
                leaking: true,
                growth_per_min: 60.0 * r.max(0.0),
            },
            None => Verdict {
                leaking: false,
                growth_per_min: 60.0 * self.horizons[0].slope().unwrap_or(0.0),
            },
        }
    }

    /// Whether the count has been zero through the longest horizon (the history can go).
    pub fn is_idle(&self) -> bool {
        self.last == 0.0
            && self
                .horizons
                .last()
                .is_some_and(|h| h.buckets.iter().all(|b| b.1 == 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (xorshift), for arrivals.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Poisson arrivals at `rate` per second over [0, end).
        fn arrivals(&mut self, rate: f64, end: f64) -> Vec<f64> {
            let mut out = Vec::new();
            let mut t = 0.0;
            loop {
                t += -(1.0 - self.next()).ln() / rate;
                if t >= end {
                    return out;
                }
                out.push(t);
            }
        }
    }

    const STUCK_AFTER: f64 = 10.0;
    const WINDOW: f64 = 60.0;

    /// Pushes `stuck(t)`, its goroutines staying as long as the count does (nobody leaves
    /// while others come: the case least favourable to the rule on renewed goroutines).
    fn push(h: &mut LeakHistory, t: f64, stuck: &impl Fn(f64) -> f64) -> Verdict {
        let now = stuck(t);
        let by = h.checkpoints().map(|c| stuck(c.min(t)).min(now));
        h.push(t, now, &by)
    }

    /// Runs a history over `stuck(t)` sampled every `every` seconds up to `end`; returns the
    /// first time it says leaking, the times it does, and the last verdict.
    fn run(end: f64, every: f64, stuck: impl Fn(f64) -> f64) -> (Option<f64>, usize, Verdict) {
        let mut h = LeakHistory::new(WINDOW);
        let (mut first, mut count, mut last) = (None, 0, Verdict::default());
        let mut t = 0.0;
        while t <= end {
            last = push(&mut h, t, &stuck);
            if last.leaking {
                first.get_or_insert(t);
                count += 1;
            }
            t += every;
        }
        (first, count, last)
    }

    /// Goroutines blocked at `times`, stuck once blocked for STUCK_AFTER, never released.
    fn leaked(times: &[f64], t: f64) -> f64 {
        times.iter().filter(|&&b| t - b >= STUCK_AFTER).count() as f64
    }

    #[test]
    fn finds_leaks_of_every_rate_within_two_minutes_past_stuck_after() {
        for per_min in [6.0, 12.0, 30.0, 60.0, 600.0, 6000.0] {
            for seed in 1..=20u64 {
                let times = Rng(seed * 7919).arrivals(per_min / 60.0, 400.0);
                let (first, count, last) = run(400.0, 1.0, |t| leaked(&times, t));
                let first = first.unwrap_or_else(|| panic!("{per_min}/min seed {seed}: missed"));
                // Once found, it stays found (the odd sample of a slow leak may drop it).
                let share = count as f64 / (401.0 - first);
                assert!(
                    share > 0.8,
                    "{per_min}/min seed {seed}: leaking {share} of the time"
                );
                assert!(
                    first <= STUCK_AFTER + 120.0,
                    "{per_min}/min seed {seed}: found after {first} s"
                );
                assert!(last.leaking, "{per_min}/min seed {seed}: verdict lost");
                let err = (last.growth_per_min - per_min).abs() / per_min;
                assert!(
                    err < 0.5,
                    "{per_min}/min seed {seed}: growth {}",
                    last.growth_per_min
                );
            }
        }
    }

    #[test]
    fn fast_leaks_are_found_within_a_window() {
        // One a second, sampled every second: found within the acceptance's 70 s.
        for seed in 1..=20u64 {
            let times = Rng(seed).arrivals(1.0, 120.0);
            let (first, _, _) = run(120.0, 1.0, |t| leaked(&times, t));
            assert!(first.is_some_and(|f| f <= 60.0), "seed {seed}: {first:?}");
        }
    }

    #[test]
    fn one_jump_is_not_a_leak() {
        // A few hundred connections open at once (over a second or two), then stay.
        for (at, n) in [(5.0, 300.0), (30.0, 50.0), (100.0, 5000.0), (200.0, 4.0)] {
            let (first, _, _) = run(600.0, 1.0, |t| if t >= at { n } else { 0.0 });
            assert_eq!(first, None, "jump of {n} at {at}");
            let (first, _, _) = run(600.0, 1.0, |t| (((t - at) * n / 2.0).clamp(0.0, n)).floor());
            assert_eq!(first, None, "ramp of {n} over 2 s at {at}");
        }
        // A pool warming up: 200 connections dialled over 12 s (under a quarter of the window).
        let (first, _, _) = run(600.0, 1.0, |t| {
            ((t - 50.0) * 16.7).clamp(0.0, 200.0).floor()
        });
        assert_eq!(first, None, "a pool warming up over 12 s");
        // Two steps up for good, a minute apart.
        let (first, _, _) = run(900.0, 2.0, |t| {
            100.0 * f64::from(u8::from(t > 100.0)) + 100.0 * f64::from(u8::from(t > 160.0))
        });
        assert_eq!(first, None, "two steps");
    }

    #[test]
    fn counts_that_come_and_go_are_not_a_leak() {
        // Load alternating every 10 s: long requests stuck a while, then done.
        for (period, high) in [(20.0, 40.0), (60.0, 300.0), (600.0, 1000.0)] {
            let (first, _, _) = run(3600.0, 2.0, |t| {
                if ((t / (period / 2.0)) as u64).is_multiple_of(2) {
                    high
                } else {
                    3.0
                }
            });
            assert_eq!(first, None, "period {period}");
        }
        // Random comings and goings of long-lived connections around a stable population.
        let mut rng = Rng(42);
        let noise: Vec<f64> = (0..3600).map(|_| (rng.next() * 40.0).floor()).collect();
        let (first, _, _) = run(3599.0, 1.0, |t| 2000.0 + noise[t as usize]);
        assert_eq!(first, None, "stable population");
    }

    #[test]
    fn a_backlog_that_renews_its_goroutines_is_not_a_leak() {
        // Readers queue behind a starved writer, more of them every minute (1 a second at
        // first, 7 at 600 s), each waiting 10 to 40 s for the lock (a fixed GoKer kernel
        // under a CPU quota): the stuck count climbs steadily, its goroutines renewed.
        let mut rng = Rng(5);
        let arrivals: Vec<f64> = rng
            .arrivals(7.0, 600.0)
            .into_iter()
            .filter(|&b| 7.0 * rng.next() < 1.0 + b / 100.0)
            .collect();
        let waits: Vec<f64> = arrivals.iter().map(|_| 10.0 + 30.0 * rng.next()).collect();
        let stuck_since = |t: f64| -> Vec<f64> {
            arrivals
                .iter()
                .zip(&waits)
                .filter(|&(&b, &w)| t - b >= STUCK_AFTER && t - b < w)
                .map(|(&b, _)| b + STUCK_AFTER)
                .collect()
        };
        let (mut h, mut old_rule) = (LeakHistory::new(WINDOW), LeakHistory::new(WINDOW));
        let (mut called, mut called_by_old_rule) = (false, false);
        for t in 0..600 {
            let t = t as f64;
            let now = stuck_since(t);
            let stuck = now.len() as f64;
            let by = h
                .checkpoints()
                .map(|c| now.iter().filter(|&&s| s <= c).count() as f64);
            called |= h.push(t, stuck, &by).leaking;
            // Counted as if every goroutine stayed, the same counts look like a leak.
            called_by_old_rule |= old_rule.push(t, stuck, &[stuck; CHECKPOINTS]).leaking;
        }
        assert!(called_by_old_rule, "the backlog's count does not climb");
        assert!(!called, "a backlog called leaking");
    }

    #[test]
    fn a_leak_that_stops_is_cleared() {
        let times = Rng(9).arrivals(1.0, 200.0);
        let mut h = LeakHistory::new(WINDOW);
        let mut seen = false;
        let mut cleared_at = None;
        for t in 0..2000 {
            let v = push(&mut h, t as f64, &|t| leaked(&times, t));
            seen |= v.leaking;
            if seen && !v.leaking && cleared_at.is_none() {
                cleared_at = Some(t);
            }
        }
        assert!(seen);
        // Stopped at 200 s, stuck counts flat from 210 s: at 60/min, cleared 15 s later.
        let at = cleared_at.expect("cleared");
        assert!((225..=232).contains(&at), "cleared at {at}");
    }

    #[test]
    fn released_goroutines_clear_the_verdict() {
        let times = Rng(3).arrivals(2.0, 10_000.0);
        let mut h = LeakHistory::new(WINDOW);
        let mut leaking_at_100 = false;
        for t in 0..=130 {
            let t = t as f64;
            // At 110 s everything blocked is released.
            let stuck = |at: f64| if t < 110.0 { leaked(&times, at) } else { 0.0 };
            let v = push(&mut h, t, &stuck);
            if t == 100.0 {
                leaking_at_100 = v.leaking;
            }
            if t > 111.0 {
                assert!(!v.leaking, "still leaking at {t}");
            }
        }
        assert!(leaking_at_100);
    }

    #[test]
    fn idle_history_can_go() {
        let mut h = LeakHistory::new(1.0);
        for t in 0..100 {
            push(&mut h, t as f64, &|_| 0.0);
        }
        assert!(h.is_idle());
        push(&mut h, 100.0, &|_| 1.0);
        assert!(!h.is_idle());
    }
}
