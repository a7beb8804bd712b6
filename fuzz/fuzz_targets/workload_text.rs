//! Any bytes as the text a workload controls: its cgroup file, its stat line (the process
//! names itself), its environment, a pod directory name, a maps file. Parsing must not panic,
//! and whatever tenant comes out is a valid label value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::serve::tenancy;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(path) = tenancy::cgroup_path(&text) {
        let _ = tenancy::pod_and_container(&path);
    }
    let _ = tenancy::pod_and_container(&text);
    let _ = profiler::inspect::process::parse_stat(&text);
    if let Some(v) = tenancy::env_var(data, "GPROF_TENANT") {
        if profiler::config::label::check_label_value(&v).is_ok() {
            assert!(v.len() <= 63 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        }
        assert!(tenancy::shown(&v).chars().count() <= 64 * 10 + 32);
    }
    let _ = tenancy::parse_pod_dir(&text);
    let _ = profiler::inspect::process::load_bias_from_maps(&text, 0xfd01, 42, 0x400000, 0);
});
