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
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut v, 0.0), Some(1));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [7], 0.99), Some(7));
    }
}
