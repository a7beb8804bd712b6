//! `--batch`: one JSON object per line per interval.

use std::io::Write;

use crate::model::snapshot::ProcessSnapshot;

pub fn write_line(out: &mut impl Write, s: &ProcessSnapshot) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, s)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::buckets;
    use crate::model::snapshot::example;

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
            go_version: "go1.19.8".into(),
            goroutines: 1001,
            gc_pause_buckets: buckets(&{
                let mut h = [0; profiler_common::PAUSE_BUCKETS];
                h[15] = 2;
                h[31] = 1;
                h
            }),
            ..example()
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
