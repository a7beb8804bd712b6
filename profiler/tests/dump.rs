//! `gprof dump` against the runtime's own dumps of the same idle process: the SIGQUIT dump
//! (written at the system level) for `--system`, goroutine by goroutine: the same IDs,
//! headers (wait reasons, minutes, the g and its M), frames (function, file:line, offset,
//! fp/sp/pc; arguments aside, which gprof prints as `(...)`) and created-by lines.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dumps::{Block, compare, newest, parse};
use common::{all_targets, gprof, require_root};

/// A `stacks` program, its goroutines parked; `dir` gets the runtime's own dumps on SIGUSR1.
struct Stacks {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Stacks {
    fn start(path: &std::path::Path, name: &str) -> Self {
        Self::start_with(path, name, &[])
    }

    fn start_with(path: &std::path::Path, name: &str, args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("gprof-dump-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(path)
            .args(["-out", dir.to_str().unwrap()])
            .args(args)
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
        common::dumps::sigquit(&mut self.child, &self.dir.join("stderr.txt"))
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The goroutines that the signal behind the runtime's own dumps woke (its handler and
/// os/signal's loop): not in the same state in both dumps.
fn woken(b: &Block) -> bool {
    b.lines
        .iter()
        .any(|l| l.starts_with("main.dumpOnSignal") || l.starts_with("os/signal."))
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

        // The program starts no goroutine after its start: every one must be in both.
        let never = |_: u64, _: &Block| false;
        let text_cmp = compare(&text, &own_text, |_, b| woken(b), never);
        let system_cmp = compare(&system, &sigquit, |_, b| woken(b), never);
        let (compared, diffs) = (text_cmp.compared, text_cmp.diffs);
        let (compared_system, diffs_system) = (system_cmp.compared, system_cmp.diffs);
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

/// A busy program (`workload`: short-lived goroutines churning, a GC every 2 s, goroutines
/// leaking and parked beside them), its stderr kept for its SIGQUIT dump.
struct Busy {
    child: std::process::Child,
    stderr: std::path::PathBuf,
}

impl Busy {
    const PARKED: usize = 20;

    fn start(path: &std::path::Path, name: &str) -> Self {
        let stderr =
            std::env::temp_dir().join(format!("gprof-busy-{}-{name}.txt", std::process::id()));
        let parked = Self::PARKED.to_string();
        let child = Command::new(path)
            .args(["-leak-rate", "2", "-churn-rate", "3000", "-gc-every", "2s"])
            .args(["-parked", &parked, "-report", "0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr }
    }

    fn sigquit(&mut self) -> String {
        common::dumps::sigquit(&mut self.child, &self.stderr)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Goroutines blocked for over a minute: their header shows `N minutes` as the runtime
/// computes it (from the wait a GC dated), in `gprof dump` as in the runtime's SIGQUIT dump
/// (`stacks -gc`). And busy programs: beside churn and GCs, the goroutines that stood still
/// across two of gprof's dumps equal the runtime's SIGQUIT dump taken right after, the
/// long-blocked ones (parked, leaked) all among them. Every release at once, one wait of a
/// minute and a quarter (the middle of the minute: both dumps read the same whole minutes).
#[test]
fn long_waits_and_busy_programs_equal_the_runtimes_dump() {
    let test = "long_waits_and_busy_programs_equal_the_runtimes_dump";
    if !require_root(test) {
        return;
    }
    let stacks: Vec<_> = all_targets("stacks")
        .into_iter()
        .filter(|(_, v, _)| v == "plain")
        .collect();
    let busy: BTreeMap<String, std::path::PathBuf> = all_targets("workload")
        .into_iter()
        .filter(|(_, v, _)| v == "stripped")
        .map(|(r, _, p)| (r, p))
        .collect();
    assert!(
        stacks.len() >= 8 && stacks.iter().all(|(r, _, _)| busy.contains_key(r)),
        "{test}: stacks and workload targets of every release: run `cargo xtask test`"
    );
    let started = Instant::now();
    let mut programs: Vec<(String, Stacks, Busy)> = stacks
        .iter()
        .map(|(release, _, path)| {
            let name = format!("{release}-long");
            (
                release.clone(),
                Stacks::start_with(path, &name, &["-gc"]),
                Busy::start(&busy[release], &name),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(75).saturating_sub(started.elapsed()));
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for (release, stacks, busy) in &mut programs {
        let system = dump(stacks.child.id(), &["--system"]);
        let sigquit = stacks.sigquit();
        let c = compare(&system, &sigquit, |_, b| woken(b), |_, _| false);
        let (compared, diffs) = (c.compared, c.diffs);
        let minutes = |text: &str| {
            parse(text)
                .values()
                .filter(|b| b.header.contains(", 1 minutes"))
                .count()
        };
        let (ours_minutes, theirs_minutes) = (minutes(&system), minutes(&sigquit));
        if ours_minutes < 14 || ours_minutes != theirs_minutes {
            failures.push(format!(
                "{release}: {ours_minutes} goroutines of gprof's dump show \"1 minutes\", {theirs_minutes} of the runtime's"
            ));
        }
        failures.extend(diffs.iter().map(|d| format!("{release} (stacks): {d}")));

        let pid = busy.child.id();
        let first = dump(pid, &["--system"]);
        std::thread::sleep(Duration::from_millis(300));
        let second = dump(pid, &["--system"]);
        let theirs = busy.sigquit();
        let (before, after) = (parse(&first), parse(&second));
        let moved = |g: u64| !after.contains_key(&g) || before.get(&g) != after.get(&g);
        // A wait can pass a whole minute between gprof's second dump and the runtime's: such
        // goroutines are compared with one more minute in the runtime's header.
        let theirs_parsed = parse(&theirs);
        let aged: Vec<u64> = after
            .iter()
            .filter(|(g, b)| {
                theirs_parsed
                    .get(g)
                    .is_some_and(|t| common::dumps::a_minute_older(b, t))
            })
            .map(|(g, _)| *g)
            .collect();
        // 3000 goroutines a second start and end: those newer than gprof's first dump may be
        // missing from its second (every P hands out IDs in order, all of them busy here).
        let first_newest = newest(&before);
        let busy_cmp = compare(
            &second,
            &theirs,
            |g, _| moved(g) || aged.contains(&g),
            |g, _| g > first_newest,
        );
        let (busy_compared, busy_diffs) = (busy_cmp.compared, busy_cmp.diffs);
        // Parked and leaked goroutines wait in main.leak for the whole run: every one that
        // gprof saw stand still is in the runtime's dump, and compared.
        let long = after
            .iter()
            .filter(|(g, b)| !moved(**g) && b.lines.iter().any(|l| l == "main.leak"))
            .filter(|(g, _)| theirs_parsed.contains_key(g))
            .count();
        let at_least = Busy::PARKED + 2 * 70;
        if long < at_least {
            failures.push(format!(
                "{release} (busy): {long} goroutines blocked in main.leak compared, at least {at_least} expected"
            ));
        }
        failures.extend(busy_diffs.iter().map(|d| format!("{release} (busy): {d}")));
        table.push(format!(
            "| {release} | {compared} | {ours_minutes} | {} | {busy_compared} | {} | {} | {} |",
            diffs.len(),
            after.len(),
            aged.len(),
            busy_diffs.len()
        ));
    }
    eprintln!(
        "{test}:\n| Go | stacks: compared | with \"1 minutes\" | differences | busy: compared | goroutines | a minute older in the runtime's | differences |\n|---|---|---|---|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Goroutines that run while they are read (`stacks -movers`: pairs that recurse to a new
/// depth each time, their stacks grown, moved and shrunk, and wait for each other at the
/// bottom): a goroutine that moved is read again, or shown as unreadable, never with frames
/// it did not have. Every mover shown with frames has exactly the chain its code makes:
/// `main.moverRecurse` at its recursive call down to the wait, then `main.mover`.
#[test]
fn goroutines_that_run_while_read_are_read_again_never_misread() {
    let test = "goroutines_that_run_while_read_are_read_again_never_misread";
    if !require_root(test) {
        return;
    }
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for release in ["1.19", "1.27.3"] {
        let Some(path) = common::go_target(test, "stacks", release, "plain") else {
            return;
        };
        let p = Stacks::start_with(&path, &format!("{release}-movers"), &["-movers", "4"]);
        let pid = p.child.id().to_string();
        let (mut shown, mut reread, mut unreadable) = (0, 0, 0);
        for round in 0..20 {
            let system = round % 2 == 1;
            let out = Command::new(gprof())
                .args(["dump", "--pid", &pid])
                .args(if system { &["--system"][..] } else { &[] })
                .env("GPROF_LOG", "info")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // "PID N: 30 goroutines, 1 running, 2 unreadable, 8 read twice"
            let log = String::from_utf8_lossy(&out.stderr).into_owned();
            let count = |what: &str| -> usize {
                log.split(", ")
                    .find_map(|part| part.strip_suffix(what)?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no \"{what}\" in {log}"))
            };
            reread += count(" read twice\n");
            unreadable += count(" unreadable");
            for (id, b) in parse(&String::from_utf8(out.stdout).unwrap()) {
                // Function lines (the elision line aside), without the runtime's frames and
                // the `go` statement's wrapper (`main.main.funcN`, `gowrap`).
                let elided = b.lines.iter().any(|l| l.starts_with("..."));
                let functions: Vec<&str> = b
                    .lines
                    .iter()
                    .filter(|l| {
                        !l.starts_with('\t')
                            && !l.starts_with("created by")
                            && !l.starts_with("...")
                    })
                    .map(String::as_str)
                    .filter(|f| {
                        !f.starts_with("runtime.")
                            && !f.starts_with("main.main.func")
                            && !f.contains("gowrap")
                    })
                    .collect();
                if !functions.iter().any(|f| f.starts_with("main.mover")) {
                    continue;
                }
                shown += 1;
                // main.moverRecurse down to main.mover, which a long stack's cut may hide
                // (before Go 1.21 the runtime stops at 100 physical frames and says so only
                // when it printed 100).
                let recursing = functions
                    .iter()
                    .take_while(|f| **f == "main.moverRecurse")
                    .count();
                let rest = &functions[recursing..];
                let cut = elided || recursing >= 90;
                // A mover waits only at the bottom of its recursion; one that was preempted
                // (`[runnable]`) may be in main.mover itself, between two recursions.
                let between = recursing == 0 && b.header.starts_with("[runnable]");
                let chain_ok = (recursing >= 1 || between)
                    && (rest == ["main.mover"] || (cut && rest.is_empty()));
                // Each moverRecurse frame but the innermost is at the recursive call.
                let places: Vec<&str> = b
                    .lines
                    .windows(2)
                    .filter(|w| w[0] == "main.moverRecurse")
                    .map(|w| w[1].split(" +").next().unwrap_or(""))
                    .collect();
                let calls_ok = places.len() == recursing
                    && places
                        .get(1)
                        .is_none_or(|call| places[1..].iter().all(|p| p == call));
                if !chain_ok || !calls_ok {
                    failures.push(format!("{release}: goroutine {id} misread: {b:?}"));
                }
            }
        }
        table.push(format!("| {release} | {shown} | {reread} | {unreadable} |"));
        if reread == 0 {
            failures.push(format!(
                "{release}: no goroutine was read again in 20 dumps: the test did not test"
            ));
        }
    }
    eprintln!(
        "{test}:\n| Go | movers shown with frames | read again | shown unreadable |\n|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each blocked group names the function its goroutines run (`started`) as the runtime's own
/// tracebacks and leak reports do: the bottom frame of its goroutines' stacks in
/// `runtime.Stack`, where the compiler's wrapper for a `go` statement (`F.gowrapN` since Go
/// 1.22, a closure before, a method value's `-fm`) is not shown but the function it calls is.
/// Every release, plain and stripped.
#[test]
fn groups_name_the_function_they_run_as_the_runtime_does() {
    let test = "groups_name_the_function_they_run_as_the_runtime_does";
    if !require_root(test) {
        return;
    }
    let targets: Vec<_> = all_targets("stacks")
        .into_iter()
        .filter(|(_, v, _)| v == "plain" || v == "stripped")
        .collect();
    assert!(
        targets.len() >= 16,
        "{test}: stacks targets: run `cargo xtask test`"
    );
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for (release, variant, path) in &targets {
        let p = Stacks::start(path, &format!("{release}-{variant}-started"));
        let (ok, samples, err) = common::run_gprof(&[
            "top",
            "--pid",
            &p.child.id().to_string(),
            "--batch",
            "--interval",
            "1",
            "--iterations",
            "3",
            "--stuck-after",
            "1",
        ]);
        assert!(ok, "{release}/{variant}: {err}");
        let (own, _) = p.own_dumps();
        let own = parse(&own);
        let last = samples.last().expect("a sample");
        let (mut compared, mut wrapped) = (0, 0);
        for g in last["blocked_groups"].as_array().unwrap() {
            let started = g["started"].as_str().unwrap();
            let Some(b) = g["example_goroutine"].as_u64().and_then(|id| own.get(&id)) else {
                continue;
            };
            if !g["created_at"].as_str().unwrap().starts_with("main.") || woken(b) {
                continue;
            }
            // The bottom frame shown: the last function line before "created by" (unless the
            // stack was cut: at 100 frames before Go 1.21, hidden runtime frames included, and
            // silently when it printed fewer).
            let functions: Vec<&str> = b
                .lines
                .iter()
                .filter(|l| !l.starts_with('\t') && !l.starts_with("created by"))
                .map(String::as_str)
                .collect();
            if functions.len() >= 90 || functions.iter().any(|l| l.starts_with("...")) {
                continue;
            }
            let bottom = functions.last().copied().unwrap_or("");
            compared += 1;
            wrapped += usize::from(
                [
                    "main.parkWith",
                    "main.(*waiter).waitWith",
                    "main.waiter.wait",
                ]
                .contains(&started),
            );
            if started != bottom {
                failures.push(format!(
                    "{release}/{variant}: group {} runs {started}, the runtime's bottom frame is {bottom}",
                    g["created_at"]
                ));
            }
        }
        table.push(format!(
            "| {release} | {variant} | {compared} | {wrapped} |"
        ));
        if compared < 12 || wrapped < 3 {
            failures.push(format!(
                "{release}/{variant}: {compared} groups compared, {wrapped} started through a wrapper"
            ));
        }
    }
    eprintln!(
        "{test}:\n| Go | build | groups compared | through a wrapper |\n|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The daemon serves the same dumps for the processes it watches, only when enabled, and
/// says why it does not for the others.
#[test]
fn the_daemon_serves_dumps_of_the_processes_it_watches() {
    use common::daemon::{Daemon, pid_label, series};
    use common::{go_target, http_get, wait_for};
    let test = "the_daemon_serves_dumps_of_the_processes_it_watches";
    if !require_root(test) {
        return;
    }
    let Some(path) = go_target(test, "stacks", "1.27.3", "stripped") else {
        return;
    };
    let daemon = Daemon::start("interval: 1s\ndumps:\n  enabled: true\n", &[]);
    let p = Stacks::start(&path, "daemon");
    let pid = p.child.id();
    assert!(
        wait_for(Duration::from_secs(20), || series(
            &daemon.metrics(),
            "gprof_goroutines",
            &pid_label(pid)
        )
        .is_some()),
        "{test}: the daemon does not watch PID {pid}: {}",
        daemon.log_text()
    );
    // The text, as the command line writes it.
    let (code, served) = http_get(
        daemon.port,
        &format!("/debug/pprof/goroutine?pid={pid}&debug=2"),
    )
    .expect("an answer");
    assert_eq!(code, 200, "{served}");
    let c = compare(&served, &dump(pid, &[]), |_, _| false, |_, _| false);
    // Every goroutine in both (none starts later), the program's 14 and main compared.
    assert!(
        c.compared >= 14 && c.diffs.is_empty(),
        "{test}: {} compared: {:?}",
        c.compared,
        c.diffs
    );
    // pprof, read by go tool pprof straight from the daemon.
    let go = go_of("1.27.3");
    let url = format!(
        "http://127.0.0.1:{}/debug/pprof/goroutine?pid={pid}",
        daemon.port
    );
    let ours_pb = p.dir.join("cli.pb.gz");
    dump(pid, &["--format", "pprof", "-o", ours_pb.to_str().unwrap()]);
    let from_daemon = traces(&go, std::path::Path::new(&url));
    assert!(!from_daemon.is_empty());
    assert_eq!(from_daemon, traces(&go, &ours_pb), "{test}");
    // Not a watched Go process, no PID, a debug level not served.
    let (code, why) = http_get(daemon.port, "/debug/pprof/goroutine?pid=1").unwrap();
    assert_eq!(code, 404);
    assert!(
        why.contains("not a Go process this daemon watches"),
        "{why}"
    );
    assert_eq!(
        http_get(daemon.port, "/debug/pprof/goroutine").unwrap().0,
        400
    );
    assert_eq!(
        http_get(
            daemon.port,
            &format!("/debug/pprof/goroutine?pid={pid}&debug=1")
        )
        .unwrap()
        .0,
        400
    );
    drop(daemon);
    // Off by default.
    let off = Daemon::start("interval: 1s\n", &[]);
    let (code, why) = http_get(off.port, &format!("/debug/pprof/goroutine?pid={pid}")).unwrap();
    assert_eq!(code, 404);
    assert!(why.contains("dumps are off"), "{why}");
}

/// Bad input gets one clear line and a failure, never a panic.
#[test]
fn bad_input_gets_a_clear_error() {
    let run = |args: &[&str]| {
        let out = Command::new(gprof())
            .arg("dump")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        err
    };
    assert!(run(&["--pid", "0"]).contains("PID"), "an invalid PID");
    let gone = run(&["--pid", "4194000"]);
    assert!(gone.contains("4194000"), "{gone}");
    // This test's own process is not a Go program.
    let me = std::process::id().to_string();
    let not_go = run(&["--pid", &me]);
    assert!(not_go.contains("Go"), "{not_go}");
    let format = run(&["--pid", &me, "--format", "svg"]);
    assert!(
        format.contains("--format") && format.contains("pprof"),
        "{format}"
    );
}

/// `gprof top`: the selected stuck group shows the whole stack of one of its goroutines (the
/// demo's leaking group, in a real terminal: tmux).
#[test]
fn top_shows_the_whole_stack_of_a_stuck_group() {
    use common::{go_target, wait_for, which};
    let test = "top_shows_the_whole_stack_of_a_stuck_group";
    if !require_root(test) {
        return;
    }
    let Some(path) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    assert!(which("tmux").is_some(), "{test}: tmux is missing");
    let mut program = Command::new(&path)
        .args(["-leak-rate", "20", "-churn-rate", "200", "-report", "0"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let session = format!("gprof-top-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let command = format!("{} top --pid {} --stuck-after 2", gprof(), program.id());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "60",
        &command,
    ]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session]);
    let stuck_row = |s: &str| {
        s.lines()
            .skip_while(|l| !l.contains("Stuck goroutines"))
            .nth(2)
            .is_some_and(|l| l.contains("main.leak"))
    };
    let listed = wait_for(Duration::from_secs(40), || stuck_row(&screen()));
    let before = screen();
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let shown = wait_for(Duration::from_secs(10), || {
        let s = screen();
        s.contains("One goroutine of the selected group") && s.contains("main.leak(...)")
    });
    let after = screen();
    tmux(&["kill-session", "-t", &session]);
    let _ = program.kill();
    let _ = program.wait();
    assert!(
        listed,
        "{test}: the leaking group was not listed first:\n{before}"
    );
    assert!(shown, "{test}: no stack shown:\n{after}");
    assert!(
        after.contains("[chan receive") && after.contains("created by main."),
        "{test}: {after}"
    );
}
