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

/// Every difference between gprof's dump and the runtime's, by goroutine (those `woken`
/// says the runtime's dump itself disturbed left out), and how many were compared.
pub fn differences(
    ours: &str,
    theirs: &str,
    woken: impl Fn(u64, &Block) -> bool,
) -> (usize, Vec<String>) {
    let (ours, theirs) = (parse(ours), parse(theirs));
    let mut diffs = Vec::new();
    let mut compared = 0;
    for (id, want) in &theirs {
        let Some(got) = ours.get(id) else {
            if !running(want) && !woken(*id, want) {
                diffs.push(format!("goroutine {id} missing: {want:?}"));
            }
            continue;
        };
        if running(want) || running(got) || woken(*id, want) || woken(*id, got) {
            continue;
        }
        compared += 1;
        if got != want {
            diffs.push(format!(
                "goroutine {id}:\n  gprof:   {got:?}\n  runtime: {want:?}"
            ));
        }
    }
    for (id, got) in ours.iter().filter(|(id, _)| !theirs.contains_key(id)) {
        if !woken(*id, got) {
            diffs.push(format!("goroutine {id} is not in the runtime's dump"));
        }
    }
    (compared, diffs)
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
