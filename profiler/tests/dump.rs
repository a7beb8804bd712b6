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

/// A `stacks` program, its goroutines parked; `dir` gets the runtime's own dumps on SIGUSR1.
struct Stacks {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Stacks {
    fn start(path: &std::path::Path, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gprof-dump-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(path)
            .args(["-out", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready"), "{}: {line}", path.display());
        Self { child, dir }
    }

    /// The runtime's own `runtime.Stack(buf, true)` and goroutine profile, now.
    fn own_dumps(&self) -> (String, std::path::PathBuf) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
        let done = self.dir.join("done");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(done.exists(), "no dump on SIGUSR1");
        let _ = std::fs::remove_file(&done);
        (
            std::fs::read_to_string(self.dir.join("stack.txt")).unwrap(),
            self.dir.join("goroutine.pb.gz"),
        )
    }

    /// SIGQUIT, and the dump the runtime writes before it exits.
    fn sigquit(&mut self) -> String {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut text = String::new();
        std::fs::File::open(self.dir.join("stderr.txt"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

/// The goroutines that the signal behind the runtime's own dumps woke (its handler and
/// os/signal's loop): not in the same state in both dumps.
fn woken(b: &Block) -> bool {
    b.lines
        .iter()
        .any(|l| l.starts_with("main.dumpOnSignal") || l.starts_with("os/signal."))
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
        if running(want) || running(got) || woken(want) || woken(got) {
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

/// `go tool pprof -traces` of a goroutine profile: each stack (function names, innermost
/// first) with its count, the woken goroutines' left out.
fn traces(go: &std::path::Path, profile: &std::path::Path) -> BTreeMap<Vec<String>, u64> {
    let out = Command::new(go)
        .args(["tool", "pprof", "-traces"])
        .arg(profile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go tool pprof -traces {}: {}",
        profile.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut stacks = BTreeMap::new();
    for block in text
        .split("-----------+-------------------------------------------------------")
        .skip(1)
    {
        let mut count = 0;
        let mut frames = Vec::new();
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            if frames.is_empty() {
                count = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            }
            if let Some(f) = words.next() {
                frames.push(f.to_string());
            }
        }
        if frames.is_empty()
            || frames
                .iter()
                .any(|f| f.starts_with("main.dumpOnSignal") || f.starts_with("os/signal."))
        {
            continue;
        }
        *stacks.entry(frames).or_insert(0) += count;
    }
    stacks
}

/// `panicparse` reads the dump: every goroutine lands in one of its buckets ("N: state").
fn panicparse_reads(text: &str) -> Result<(), String> {
    let mut child = Command::new("panicparse")
        .args(["-no-color", "-rel-path"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("panicparse: {e} (Debian's panicparse: cargo xtask setup)"))?;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    if shown.lines().any(|l| l.starts_with("goroutine ")) {
        return Err(format!(
            "panicparse did not parse it: {}",
            &shown[..shown.len().min(300)]
        ));
    }
    let bucketed: u64 = shown
        .lines()
        .filter_map(|l| l.split_once(": ")?.0.parse::<u64>().ok())
        .sum();
    let goroutines = parse(text).len() as u64;
    if bucketed != goroutines {
        return Err(format!(
            "panicparse placed {bucketed} of {goroutines} goroutines"
        ));
    }
    Ok(())
}

fn go_of(release: &str) -> std::path::PathBuf {
    if release == "1.19" {
        "/usr/lib/go-1.19/bin/go".into()
    } else {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(format!(".cache/gprof/go-{release}/bin/go"))
    }
}

/// In every release and build variant: `gprof dump` equals `runtime.Stack(buf, true)`;
/// `--system` equals the SIGQUIT dump; `--format pprof` gives `go tool pprof` the stacks of
/// the runtime's own goroutine profile; `--format json` has every goroutine; panicparse reads
/// the text.
#[test]
fn dumps_equal_the_runtimes_own_in_every_release_and_variant() {
    let test = "dumps_equal_the_runtimes_own_in_every_release_and_variant";
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
        let mut p = Stacks::start(path, &format!("{release}-{variant}"));
        let pid = p.child.id();
        let what = format!("{release}/{variant}");
        let text = dump(pid, &[]);
        let ours_pb = p.dir.join("ours.pb.gz");
        dump(pid, &["--format", "pprof", "-o", ours_pb.to_str().unwrap()]);
        let json = dump(pid, &["--format", "json"]);
        let (own_text, own_pb) = p.own_dumps();
        let system = dump(pid, &["--system"]);
        let sigquit = p.sigquit();

        let (compared, diffs) = differences(&text, &own_text);
        let (compared_system, diffs_system) = differences(&system, &sigquit);
        let go = go_of(release);
        let (ours_traces, own_traces) = (traces(&go, &ours_pb), traces(&go, &own_pb));
        let json_goroutines = json
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|g| g["id"].as_u64().is_some() && g["stack"]["kind"].is_string())
            .count();
        table.push(format!(
            "| {release} | {variant} | {compared} | {} | {compared_system} | {} | {} |",
            diffs.len(),
            diffs_system.len(),
            own_traces.values().sum::<u64>(),
        ));
        // The program's 14 goroutines and main; at the system level the runtime's too.
        if compared < 14 || compared_system < compared + 3 {
            failures.push(format!(
                "{what}: only {compared} (system: {compared_system}) goroutines compared"
            ));
        }
        for d in diffs.iter().chain(&diffs_system) {
            failures.push(format!("{what}: {d}"));
        }
        for (stack, n) in &ours_traces {
            if own_traces.get(stack) != Some(n) {
                failures.push(format!(
                    "{what}: pprof: gprof has {n} of {stack:?}, the runtime {:?}",
                    own_traces.get(stack)
                ));
            }
        }
        for (stack, n) in &own_traces {
            if !ours_traces.contains_key(stack) {
                failures.push(format!(
                    "{what}: pprof: the runtime has {n} of {stack:?}, gprof none"
                ));
            }
        }
        if json_goroutines != parse(&text).len() {
            failures.push(format!(
                "{what}: {json_goroutines} JSON goroutines for {} in the text",
                parse(&text).len()
            ));
        }
        if let Err(e) = panicparse_reads(&text) {
            failures.push(format!("{what}: {e}"));
        }
    }
    eprintln!(
        "{test}:\n| Go | build | goroutines compared | differences | at the system level | differences | pprof goroutines |\n|---|---|---|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
