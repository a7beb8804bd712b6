//! `gprof dump` against the runtime's own dumps of the same idle process: the SIGQUIT dump
//! (written at the system level) for `--system`, goroutine by goroutine: the same IDs,
//! headers (wait reasons, minutes, the g and its M), frames (function, file:line, offset,
//! fp/sp/pc; arguments aside, which gprof prints as `(...)`) and created-by lines.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{all_targets, gprof, require_root};

/// One goroutine of a dump: its header after the ID, and its lines with arguments removed.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    header: String,
    lines: Vec<String>,
}

/// The goroutines of a text dump by ID (goroutine 0, a thread's g0, left out).
fn parse(text: &str) -> BTreeMap<u64, Block> {
    let mut out = BTreeMap::new();
    let text = format!("\n{text}");
    for block in text.split("\ngoroutine ").skip(1) {
        let mut lines = block.lines();
        let Some(first) = lines.next() else { continue };
        let Some((id, header)) = first.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        if id == 0 {
            continue;
        }
        let lines = lines
            .take_while(|l| !l.is_empty())
            .map(|l| {
                if !l.starts_with('\t') && l.ends_with(')') && !l.starts_with("created by") {
                    // "name(args)": the arguments go.
                    l[..l.rfind('(').unwrap_or(l.len())].to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        out.insert(
            id,
            Block {
                header: header.to_string(),
                lines,
            },
        );
    }
    out
}

fn running(b: &Block) -> bool {
    b.header.contains("[running")
}

/// Starts a `stacks` program and waits for its goroutines to park.
fn start(path: &std::path::Path) -> (std::process::Child, std::path::PathBuf) {
    let stderr = std::env::temp_dir().join(format!(
        "gprof-dump-{}-{}.txt",
        std::process::id(),
        path.display().to_string().replace('/', "_")
    ));
    let mut child = Command::new(path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "{}: {line}", path.display());
    (child, stderr)
}

fn sigquit(child: &mut std::process::Child, stderr: &std::path::Path) -> String {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    std::fs::File::open(stderr)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = std::fs::remove_file(stderr);
    text
}

fn dump(pid: u32, args: &[&str]) -> String {
    let out = Command::new(gprof())
        .args(["dump", "--pid", &pid.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gprof dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every difference between gprof's dump and the runtime's, by goroutine.
fn differences(ours: &str, theirs: &str) -> (usize, Vec<String>) {
    let (ours, theirs) = (parse(ours), parse(theirs));
    let mut diffs = Vec::new();
    let mut compared = 0;
    for (id, want) in &theirs {
        let Some(got) = ours.get(id) else {
            if !running(want) {
                diffs.push(format!("goroutine {id} missing: {want:?}"));
            }
            continue;
        };
        if running(want) || running(got) {
            continue;
        }
        compared += 1;
        if got != want {
            diffs.push(format!(
                "goroutine {id}:\n  gprof:   {got:?}\n  runtime: {want:?}"
            ));
        }
    }
    for id in ours.keys().filter(|id| !theirs.contains_key(id)) {
        diffs.push(format!("goroutine {id} is not in the runtime's dump"));
    }
    (compared, diffs)
}

#[test]
fn the_system_dump_equals_the_runtimes_sigquit_dump_in_every_release_and_variant() {
    let test = "the_system_dump_equals_the_runtimes_sigquit_dump_in_every_release_and_variant";
    if !require_root(test) {
        return;
    }
    let targets = all_targets("stacks");
    assert!(
        !targets.is_empty(),
        "no stacks targets: run `cargo xtask test`"
    );
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for (release, variant, path) in &targets {
        let (mut child, stderr) = start(path);
        let ours = dump(child.id(), &["--system"]);
        let theirs = sigquit(&mut child, &stderr);
        let (compared, diffs) = differences(&ours, &theirs);
        table.push(format!(
            "| {release} | {variant} | {compared} | {} |",
            diffs.len()
        ));
        // Every goroutine the program parked is compared (13 of its own, main, the runtime's).
        if compared < 15 {
            failures.push(format!(
                "{release}/{variant}: only {compared} goroutines compared"
            ));
        }
        for d in diffs {
            failures.push(format!("{release}/{variant}: {d}"));
        }
    }
    eprintln!(
        "{test}:\n| Go | build | goroutines compared | differences |\n|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
