//! `gprof daemon --config FILE --dry-run` on fixture files: the valid ones pass, each invalid
//! one fails with one line naming the file, the line and the key (the `# expect:` header).

mod common;

use std::process::Command;

use common::gprof;

#[test]
fn fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no # expect: line", path.display()));
        let out = Command::new(gprof())
            .args(["daemon", "--dry-run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if expect == "valid" {
            assert!(out.status.success(), "{}: {stderr}", path.display());
            assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
        } else {
            assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
            assert_eq!(stderr.lines().count(), 1, "{}: {stderr}", path.display());
            let want = format!("gprof: error: {}: {expect}", path.display());
            assert!(
                stderr.starts_with(&want),
                "{}:\n got: {stderr}\nwant: {want}",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} fixtures");
}

#[test]
fn missing_file_and_flag_overrides() {
    let out = Command::new(gprof())
        .args(["daemon", "--dry-run", "--config", "/nonexistent/gprof.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim(),
        "gprof: error: cannot read /nonexistent/gprof.yaml: No such file or directory (os error 2)"
    );

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let out = Command::new(gprof())
        .args([
            "daemon",
            "--dry-run",
            "--metrics-addr",
            "127.0.0.1:1234",
            "--alertmanager-url",
            "http://am:1",
            "--config",
        ])
        .arg(dir.join("valid-issue-example.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("metrics on 127.0.0.1:1234") && stdout.contains("alerts to http://am:1"),
        "{stdout}"
    );
    let out = Command::new(gprof())
        .args([
            "daemon",
            "--dry-run",
            "--alertmanager-url",
            "ftp://x",
            "--config",
        ])
        .arg(dir.join("valid-issue-example.yaml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alertmanager-url"));
}
