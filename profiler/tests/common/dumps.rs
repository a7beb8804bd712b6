//! Goroutine dumps in the runtime's text format, compared goroutine by goroutine (gprof's
//! against the runtime's own).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Sends SIGQUIT to `child` and returns the goroutine dump the runtime writes to its stderr
/// (the file at `stderr`) before it exits.
pub fn sigquit(child: &mut std::process::Child, stderr: &std::path::Path) -> String {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(stderr).unwrap_or_default()
}

/// One goroutine of a dump: its header after the ID, and its lines with arguments removed.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    pub header: String,
    pub lines: Vec<String>,
}

/// The goroutines of a text dump by ID (goroutine 0, a thread's g0, left out).
pub fn parse(text: &str) -> BTreeMap<u64, Block> {
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

/// The header's `, N minutes` (where it is, and N), if shown.
fn minutes(header: &str) -> Option<(std::ops::Range<usize>, u64)> {
    let end = header.find(" minutes")?;
    let start = header[..end].rfind(", ")?;
    let n = header[start + 2..end].parse().ok()?;
    Some((start..end + " minutes".len(), n))
}

/// The same goroutine, but for a wait that passed a whole minute between the two dumps (the
/// runtime's taken a moment after gprof's): the headers differ only in one more minute.
pub fn a_minute_older(ours: &Block, theirs: &Block) -> bool {
    let strip = |h: &str| match minutes(h) {
        Some((at, _)) => format!("{}{}", &h[..at.start], &h[at.end..]),
        None => h.to_string(),
    };
    let n = |h: &str| minutes(h).map_or(0, |(_, n)| n);
    ours.lines == theirs.lines
        && n(&theirs.header) == n(&ours.header) + 1
        && strip(&ours.header) == strip(&theirs.header)
}

#[test]
fn a_wait_a_minute_older_differs_only_in_its_minutes() {
    let block = |header: &str| Block {
        header: header.into(),
        lines: vec!["main.leak".into()],
    };
    assert!(a_minute_older(
        &block("[chan receive]:"),
        &block("[chan receive, 1 minutes]:")
    ));
    assert!(a_minute_older(
        &block("gp=0x1 m=nil [select, 2 minutes, locked to thread]:"),
        &block("gp=0x1 m=nil [select, 3 minutes, locked to thread]:")
    ));
    assert!(!a_minute_older(
        &block("[chan receive]:"),
        &block("[chan receive, 2 minutes]:")
    ));
    assert!(!a_minute_older(
        &block("[chan receive]:"),
        &block("[select, 1 minutes]:")
    ));
}

pub fn running(b: &Block) -> bool {
    b.header.contains("[running")
}

/// gprof's dump against the runtime's, goroutine by goroutine.
#[derive(Debug, Default)]
pub struct Comparison {
    /// The goroutines of the runtime's dump (goroutine 0, a thread's g0, aside).
    pub theirs: usize,
    /// Those compared header and frame for frame.
    pub compared: usize,
    /// In both dumps but not compared: running in either, or moving (see [`compare`]).
    pub not_compared: usize,
    /// Only in the runtime's dump, created after gprof's was taken.
    pub newer: usize,
    /// Every difference: a goroutine missing from either dump, or shown otherwise.
    pub diffs: Vec<String>,
}

impl Comparison {
    /// Whether the dumps agree, with at most `uncompared` goroutines of the runtime's dump
    /// left uncompared (moving, running or newer); the reason when not.
    pub fn check(&self, uncompared: usize) -> Result<(), String> {
        if !self.diffs.is_empty() {
            return Err(format!("the dumps differ:\n{}", self.diffs.join("\n")));
        }
        if self.compared + uncompared < self.theirs {
            return Err(format!(
                "only {} of the runtime's {} goroutines compared ({} moving or running, {} newer)",
                self.compared, self.theirs, self.not_compared, self.newer
            ));
        }
        Ok(())
    }

    /// Fails the test unless [`Self::check`] passes.
    pub fn assert_equal(&self, what: &str, uncompared: usize) {
        if let Err(e) = self.check(uncompared) {
            panic!("{what}: {e}");
        }
    }
}

/// Compares gprof's dump `ours` with the runtime's `theirs`. A goroutine of the runtime's
/// that gprof's lacks is a difference, unless `born_after` says it was created after gprof's
/// dump; a goroutine that `moving` says changed around the dumps (woken by the runtime's own
/// dump, or seen to move between two of gprof's) must be in both but is not compared, nor is
/// one running in either; one in gprof's only must be moving (it may have ended since).
pub fn compare(
    ours: &str,
    theirs: &str,
    moving: impl Fn(u64, &Block) -> bool,
    born_after: impl Fn(u64, &Block) -> bool,
) -> Comparison {
    let (ours, theirs) = (parse(ours), parse(theirs));
    let mut c = Comparison {
        theirs: theirs.len(),
        ..Comparison::default()
    };
    for (id, want) in &theirs {
        let Some(got) = ours.get(id) else {
            if born_after(*id, want) {
                c.newer += 1;
            } else {
                c.diffs.push(format!(
                    "goroutine {id} missing from gprof's dump: {want:?}"
                ));
            }
            continue;
        };
        if running(want) || running(got) || moving(*id, want) || moving(*id, got) {
            c.not_compared += 1;
            continue;
        }
        c.compared += 1;
        if got != want {
            c.diffs.push(format!(
                "goroutine {id}:\n  gprof:   {got:?}\n  runtime: {want:?}"
            ));
        }
    }
    for (id, got) in ours.iter().filter(|(id, _)| !theirs.contains_key(id)) {
        if !moving(*id, got) {
            c.diffs.push(format!(
                "goroutine {id} is not in the runtime's dump: {got:?}"
            ));
        }
    }
    c
}

/// The largest goroutine ID of a dump: goroutines of the runtime's dump above it were
/// created after it (a program's IDs grow; each P takes them 16 at a time, so a P that
/// creates few goroutines may hand out a smaller one later, which then shows as missing).
pub fn newest(dump: &BTreeMap<u64, Block>) -> u64 {
    dump.keys().next_back().copied().unwrap_or(0)
}

#[test]
fn a_goroutine_missing_from_gprofs_dump_is_a_difference() {
    let runtime = "goroutine 1 [chan receive]:\nmain.main()\n\tm.go:5 +0x1\n\n\
goroutine 7 [select]:\nmain.loop()\n\tm.go:9 +0x2\n\n\
goroutine 9 [running]:\nmain.spin()\n\tm.go:12 +0x3\n";
    let all = "goroutine 1 [chan receive]:\nmain.main()\n\tm.go:5 +0x1\n\n\
goroutine 7 [select]:\nmain.loop()\n\tm.go:9 +0x2\n\n\
goroutine 9 [running]:\n\tgoroutine running on other thread; stack unavailable\n";
    let none = |_: u64, _: &Block| false;
    let c = compare(all, runtime, none, none);
    assert!(c.diffs.is_empty(), "{:?}", c.diffs);
    assert_eq!((c.theirs, c.compared, c.not_compared), (3, 2, 1));
    // One goroutine dropped, a waiting one or a running one: a difference each, whether or
    // not it moved; only one created after gprof's dump may be missing.
    for dropped in [7, 9] {
        let text: String = all
            .split("\n\n")
            .filter(|b| !b.starts_with(&format!("goroutine {dropped} ")))
            .collect::<Vec<_>>()
            .join("\n\n");
        assert_eq!(compare(&text, runtime, none, none).diffs.len(), 1);
        assert_eq!(compare(&text, runtime, |_, _| true, none).diffs.len(), 1);
        let newer = compare(&text, runtime, none, |g, _| g == dropped);
        assert!(newer.diffs.is_empty());
        assert_eq!(newer.newer, 1);
    }
    // Shown otherwise: a difference, unless it moved.
    let other = all.replace("m.go:9", "m.go:10");
    assert_eq!(compare(&other, runtime, none, none).diffs.len(), 1);
    assert!(
        compare(&other, runtime, |g, _| g == 7, none)
            .diffs
            .is_empty()
    );
    // Too few compared: the check fails.
    let c = compare(all, runtime, |g, _| g == 7, none);
    assert!(c.check(0).is_err(), "one of three compared passed for all");
    assert!(c.check(2).is_ok());
}

/// Goroutines in a SIGQUIT dump that the runtime does not count as its own: those whose start
/// function (the frame above `runtime.goexit`) is outside package runtime, or `runtime.main`,
/// exactly as `runtime.isSystemGoroutine` decides from `g.startpc`.
pub fn user_goroutines(dump: &str) -> usize {
    let mut count = 0;
    for block in dump.split("\n\ngoroutine ").skip(1) {
        if block.starts_with("0 ") {
            continue;
        }
        let frames: Vec<&str> = block
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty() && !l.starts_with('\t') && !l.starts_with("created by"))
            .collect();
        let start = frames
            .iter()
            .position(|f| f.starts_with("runtime.goexit("))
            .and_then(|i| i.checked_sub(1))
            .map(|i| frames[i].split('(').next().unwrap_or(""));
        let system = start.is_some_and(|s| s.starts_with("runtime.") && s != "runtime.main");
        if !system {
            count += 1;
        }
    }
    count
}
