//! Time-series arithmetic for the figures gprof derives: rates over a window, net growth
//! (leak rate) as a least-squares slope, percentiles. Pure functions, unit-tested.

use std::collections::VecDeque;

/// Samples `(t seconds, value)` kept for `horizon` seconds.
#[derive(Clone, Debug)]
pub struct Series {
    points: VecDeque<(f64, f64)>,
    horizon: f64,
}

impl Series {
    pub fn new(horizon: f64) -> Self {
        Self {
            points: VecDeque::new(),
            horizon,
        }
    }

    pub fn push(&mut self, t: f64, v: f64) {
        self.points.push_back((t, v));
        while self
            .points
            .front()
            .is_some_and(|&(t0, _)| t - t0 > self.horizon)
        {
            self.points.pop_front();
        }
    }

    pub fn last(&self) -> Option<f64> {
        self.points.back().map(|&(_, v)| v)
    }

    /// The points no older than `window` seconds before the newest.
    pub fn window(&self, window: f64) -> impl Iterator<Item = (f64, f64)> + '_ {
        let newest = self.points.back().map_or(0.0, |&(t, _)| t);
        self.points
            .iter()
            .copied()
            .filter(move |&(t, _)| newest - t <= window + 1e-9)
    }

    /// Average increase per second of a counter over the last `window` seconds (first and
    /// last point). None until two points span some time.
    pub fn rate(&self, window: f64) -> Option<f64> {
        let mut w = self.window(window);
        let (t0, v0) = w.next()?;
        let (t1, v1) = w.last()?;
        (t1 > t0).then(|| (v1 - v0) / (t1 - t0))
    }

    /// Least-squares slope per second over the last `window` seconds: the trend of a gauge
    /// whose samples are noisy (live goroutines jitter with the short-lived ones in flight).
    pub fn slope(&self, window: f64) -> Option<f64> {
        slope(&self.window(window).collect::<Vec<_>>())
    }

    /// The values in the window, oldest first (for sparklines).
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.points.iter().map(|&(_, v)| v)
    }
}

/// Least-squares slope of `(x, y)` points; None for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// A Theil–Sen fit: the median of the slopes between every pair of points, with the bounds of
/// its 95 % confidence interval (Sen 1968, from the distribution of Kendall's S with the
/// variance corrected for tied values). Robust to outliers and to a step: a series that only
/// jumps once has a lower bound of 0, whatever the jump.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TheilSen {
    pub slope: f64,
    pub lower: f64,
    pub upper: f64,
}

/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.96;

/// Theil–Sen slope of `(x, y)` points; None for fewer than two distinct x.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<TheilSen> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dx = b.0 - a.0;
            if dx != 0.0 {
                slopes.push((b.1 - a.1) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_unstable_by(f64::total_cmp);
    let n = points.len() as f64;
    // Var(S) = [n(n-1)(2n+5) - sum over groups of tied y of t(t-1)(2t+5)] / 18.
    let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    ys.sort_unstable_by(f64::total_cmp);
    let ties: f64 = ys
        .chunk_by(|a, b| a == b)
        .map(|g| {
            let t = g.len() as f64;
            t * (t - 1.0) * (2.0 * t + 5.0)
        })
        .sum();
    let variance = ((n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0).max(0.0);
    let c = Z_95 * variance.sqrt();
    let count = slopes.len() as f64;
    // Ranks (1-based) of the bounds: (N - C)/2 and (N + C)/2 + 1, clamped to the slopes.
    let rank = |r: f64| (r.round() as usize).clamp(1, slopes.len()) - 1;
    let median = if slopes.len() % 2 == 1 {
        slopes[slopes.len() / 2]
    } else {
        (slopes[slopes.len() / 2 - 1] + slopes[slopes.len() / 2]) / 2.0
    };
    Some(TheilSen {
        slope: median,
        lower: slopes[rank(((count - c) / 2.0).floor())],
        upper: slopes[rank(((count + c) / 2.0).ceil() + 1.0)],
    })
}

/// The `q` quantile (0..=1) by nearest rank; None for no values.
pub fn quantile(values: &mut [u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_uses_the_window_ends() {
        let mut s = Series::new(100.0);
        for i in 0..=20 {
            s.push(i as f64, (i * 50) as f64);
        }
        assert_eq!(s.rate(10.0), Some(50.0));
        assert_eq!(s.rate(1000.0), Some(50.0));
        let mut one = Series::new(10.0);
        one.push(0.0, 5.0);
        assert_eq!(one.rate(10.0), None);
    }

    #[test]
    fn horizon_drops_old_points() {
        let mut s = Series::new(5.0);
        for i in 0..20 {
            s.push(i as f64, 1.0);
        }
        assert_eq!(s.values().count(), 6);
    }

    #[test]
    fn slope_recovers_a_leak_through_noise() {
        // 20 goroutines/s leaked, plus +-15 of short-lived ones in flight.
        let pts: Vec<(f64, f64)> = (0..120)
            .map(|i| {
                let t = i as f64 * 0.5;
                let noise = [(7 * i) % 31, (13 * i) % 29][i % 2] as f64 - 15.0;
                (t, 1000.0 + 20.0 * t + noise)
            })
            .collect();
        let s = slope(&pts).unwrap();
        assert!((s - 20.0).abs() < 0.5, "{s}");
        assert_eq!(slope(&pts[..1]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn theil_sen_recovers_a_trend_and_bounds_it() {
        // 1 per second with +-3 of noise: the slope is 1, the interval tight around it.
        let pts: Vec<(f64, f64)> = (0..60)
            .map(|i| {
                (
                    i as f64,
                    i as f64 + [(7 * i) % 7, (3 * i) % 5][i % 2] as f64 - 3.0,
                )
            })
            .collect();
        let fit = theil_sen(&pts).unwrap();
        assert!((fit.slope - 1.0).abs() < 0.1, "{fit:?}");
        assert!(fit.lower > 0.8 && fit.lower <= fit.slope, "{fit:?}");
        assert!(fit.upper < 1.2 && fit.upper >= fit.slope, "{fit:?}");
        assert_eq!(theil_sen(&pts[..1]), None);
        assert_eq!(theil_sen(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn theil_sen_is_not_fooled_by_one_jump_or_an_outlier() {
        // 300 connections open at once, wherever in the window: the lower bound stays 0.
        for at in [5, 15, 30, 45, 55] {
            let pts: Vec<(f64, f64)> = (0..60)
                .map(|i| (i as f64, if i < at { 10.0 } else { 310.0 }))
                .collect();
            let fit = theil_sen(&pts).unwrap();
            assert_eq!(fit.lower, 0.0, "jump at {at}: {fit:?}");
        }
        // One wild reading does not make a flat series grow.
        let mut pts: Vec<(f64, f64)> = (0..60).map(|i| (i as f64, 100.0)).collect();
        pts[40].1 = 5000.0;
        let fit = theil_sen(&pts).unwrap();
        assert_eq!((fit.slope, fit.lower), (0.0, 0.0));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut v, 0.0), Some(1));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [7], 0.99), Some(7));
    }
}
