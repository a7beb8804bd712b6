//! `--batch`: one JSON object per line per interval.

use std::io::Write;

use crate::snapshot::ProcessSnapshot;

pub fn write_line(out: &mut impl Write, s: &ProcessSnapshot) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, s)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::buckets;
    use crate::snapshot::GoroutineSource;

    /// The fields the README promises to scripts.
    pub const REQUIRED: &[&str] = &[
        "unix",
        "pid",
        "go_version",
        "goroutines",
        "goroutines_created_total",
        "goroutines_exited_total",
        "goroutine_create_rate_per_s",
        "goroutine_exit_rate_per_s",
        "goroutine_leak_rate_per_min",
        "gfree_pool_size",
        "gc_cycles_total",
        "gc_pause_seconds_total",
        "gc_pause_max_seconds",
        "stack_scans_total",
        "health_score",
    ];

    #[test]
    fn one_line_with_the_documented_fields() {
        let s = ProcessSnapshot {
            unix: 1_700_000_000.123,
            pid: 42,
            comm: "app".into(),
            go_version: "go1.19.8".into(),
            attached_seconds: 3.0,
            goroutines: 1001,
            goroutines_source: GoroutineSource::Runtime,
            system_goroutines: Some(4),
            goroutines_created_total: 6060,
            goroutines_exited_total: 6000,
            goroutine_create_rate_per_s: 2020.0,
            goroutine_exit_rate_per_s: 2000.0,
            goroutine_leak_rate_per_min: 1200.0,
            gfree_pool_size: Some(12),
            gomaxprocs: Some(2),
            gc_cycles_total: 1,
            gc_pauses_total: 2,
            gc_pause_seconds_total: 0.0001,
            gc_pause_max_seconds: 0.00006,
            gc_pause_p99_seconds: 0.00006,
            gc_pause_buckets: buckets(&{
                let mut h = [0; profiler_common::PAUSE_BUCKETS];
                h[15] = 2;
                h[31] = 1;
                h
            }),
            other_pauses_total: 0,
            other_pause_seconds_total: 0.0,
            stack_scans_total: 1005,
            stack_scanned_bytes_total: 1005 * 2048,
            last_gc_stacks_scanned: Some(1005),
            last_gc_stack_bytes: Some(1005 * 2048),
            health_score: 60.0,
            health: Default::default(),
        };
        let mut out = Vec::new();
        write_line(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for f in REQUIRED {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        assert_eq!(v["go_version"], "go1.19.8");
        assert_eq!(v["goroutines"], 1001);
        assert_eq!(v["goroutines_source"], "runtime");
        assert_eq!(v["unix"], 1_700_000_000.123);
        // Only non-empty buckets are listed; JSON has no infinity, so that bound is null.
        assert_eq!(v["gc_pause_buckets"].as_array().unwrap().len(), 2);
        assert_eq!(v["gc_pause_buckets"][0]["le_seconds"], 65536e-9);
        assert!(v["gc_pause_buckets"][1]["le_seconds"].is_null());
    }
}
