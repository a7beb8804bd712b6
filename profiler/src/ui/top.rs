//! `gprof top --pid PID`: one process, live (TUI) or as JSON lines (`--batch`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};

use crate::attach::kernel::{AttachScope, Kernel};
use crate::collect::budget::SURGE_CHECK;
use crate::collect::dump::Dumper;
use crate::collect::sampler::{Outcome, Sampler, SamplerSettings};
use crate::collect::target::{self, TargetError};
use crate::config::params::{CensusLimits, HealthModel, OverheadBudget, Windows};
use crate::inspect::process::Process;
use crate::model::snapshot::ProcessSnapshot;
use crate::render::{dump_text, json, tui};

/// Plans made at most for a process that keeps replacing its program.
const MAX_PLANS: u32 = 3;

#[derive(Clone, Debug)]
pub struct TopOptions {
    pub pid: i64,
    pub interval: Duration,
    pub batch: bool,
    pub iterations: Option<u64>,
    pub windows: Windows,
    pub budget: OverheadBudget,
    pub census: CensusLimits,
}

/// Attaches (all checks happen before the terminal is touched), then runs the chosen view.
pub fn run(opts: &TopOptions) -> anyhow::Result<()> {
    let settings = SamplerSettings {
        interval: opts.interval,
        windows: opts.windows,
        health: HealthModel::default(),
        budget: opts.budget,
        census: opts.census,
    };
    let mut sampler: Option<Sampler<()>> = None;
    let mut plans = 0;
    // A plan is for the file the process runs when it is read: a process that execs in
    // between is planned again (a few times at most).
    let pid = loop {
        plans += 1;
        let process = Process::from_user_pid(opts.pid)?;
        let pid = process.pid();
        let attempt = target::inspect(process).and_then(|inspected| {
            let sampler = match &mut sampler {
                Some(s) => s,
                None => sampler.insert(Sampler::new(Kernel::load()?, settings)),
            };
            sampler
                .attach(&inspected, AttachScope::Process(pid), ())
                .map(|_| ())
        });
        match attempt {
            Err(TargetError::Execed(_)) if plans < MAX_PLANS => {
                log::warn!(
                    "PID {pid} replaced its program while gprof planned its probes; planning again"
                );
            }
            result => break result.map(|()| pid)?,
        }
    };
    let mut session = Session {
        sampler: sampler.expect("attached, so loaded"),
        pid,
    };
    if opts.batch {
        batch(&mut session, opts)
    } else {
        interactive(&mut session, opts)
    }
}

/// The one attached process.
struct Session {
    sampler: Sampler<()>,
    pid: u32,
}

impl Session {
    /// One round: the process's snapshot, or why there is none.
    fn sample(&mut self) -> Result<ProcessSnapshot, TargetError> {
        let mut outcomes = self.sampler.sample();
        match outcomes.pop().map(|(_, o)| o) {
            Some(Outcome::Sampled(s)) => Ok(*s),
            Some(Outcome::Ended(e) | Outcome::Failed { error: e, .. } | Outcome::Distrusted(e)) => {
                Err(e)
            }
            // Backing off after a failure: none (top stops at the first failure).
            None => Err(TargetError::Gone(self.pid)),
        }
    }
}

/// Sleeps until the next tick of a fixed schedule (no drift), or returns early on input.
struct Ticker {
    next: Instant,
    every: Duration,
}

impl Ticker {
    fn new(every: Duration) -> Self {
        Self {
            next: Instant::now() + every,
            every,
        }
    }

    fn remaining(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    fn advance(&mut self) {
        self.next += self.every;
        let now = Instant::now();
        if self.next < now {
            self.next = now + self.every;
        }
    }
}

fn batch(session: &mut Session, opts: &TopOptions) -> anyhow::Result<()> {
    let mut ticker = Ticker::new(opts.interval);
    let stdout = std::io::stdout();
    for _ in 0..opts.iterations.unwrap_or(u64::MAX) {
        session.sampler.wait_until(ticker.next);
        ticker.advance();
        match session.sample() {
            Ok(s) => {
                let mut out = stdout.lock();
                if let Err(e) = json::write_line(&mut out, &s) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e).context("writing to stdout");
                }
            }
            Err(e @ (TargetError::Gone(_) | TargetError::Execed(_))) => {
                eprintln!("gprof: {e}");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The whole stack of the selected group's example goroutine, as `gprof dump` prints it (or
/// why there is none).
fn stack_of_selected(dumper: &mut Option<Dumper>, pid: u32, view: &tui::TopView) -> Vec<String> {
    let Some(group) = view
        .latest
        .as_ref()
        .and_then(|s| s.blocked_groups.get(view.selected))
    else {
        return vec!["no stuck group selected".into()];
    };
    let (Some(index), Some(goid)) = (group.example_index, group.example_goroutine) else {
        return vec!["the census has no goroutine of this group yet".into()];
    };
    if dumper.is_none() {
        match Process::open(pid)
            .map_err(anyhow::Error::from)
            .and_then(|p| Ok(Dumper::open(p)?))
        {
            Ok(d) => *dumper = Some(d),
            Err(e) => return vec![format!("cannot read stacks: {e:#}")],
        }
    }
    let Some(d) = dumper.as_mut() else {
        return Vec::new();
    };
    let style = d.style();
    match d.goroutine_at(index, goid) {
        Ok(Some(g)) => {
            let mut out = Vec::new();
            let _ = dump_text::write(&mut out, &style, &g, false);
            String::from_utf8_lossy(&out)
                .lines()
                .map(|l| l.replace('\t', "    "))
                .collect()
        }
        Ok(None) => vec![format!(
            "goroutine {goid} has gone; the next census picks another"
        )],
        Err(e) => vec![format!("cannot read goroutine {goid}: {e:#}")],
    }
}

fn interactive(session: &mut Session, opts: &TopOptions) -> anyhow::Result<()> {
    let mut view = tui::TopView::new(opts.interval.as_secs_f64());
    crate::logging::hold();
    let result = (|| -> anyhow::Result<Option<String>> {
        let mut guard = tui::TerminalGuard::enter().context("setting up the terminal")?;
        let mut ticker = Ticker::new(opts.interval);
        let mut ticks = 0u64;
        // Opened at the first Enter: reads one goroutine's whole stack.
        let mut dumper: Option<Dumper> = None;
        loop {
            guard.terminal.draw(|f| tui::draw(f, &view))?;
            if event::poll(ticker.remaining().min(SURGE_CHECK))? {
                if let TermEvent::Key(k) = event::read()?
                    && k.kind == KeyEventKind::Press
                {
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(None),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(None);
                        }
                        KeyCode::Char('s') => view.site_order = view.site_order.next(),
                        KeyCode::Up => view.selected = view.selected.saturating_sub(1),
                        KeyCode::Down => {
                            let groups = view.latest.as_ref().map_or(0, |s| s.blocked_groups.len());
                            view.selected = (view.selected + 1).min(groups.saturating_sub(1));
                        }
                        KeyCode::Enter => {
                            view.stack = match view.stack {
                                Some(_) => None,
                                None => Some(stack_of_selected(&mut dumper, session.pid, &view)),
                            };
                        }
                        _ => {}
                    }
                }
                continue;
            }
            session.sampler.check_surges();
            if !ticker.remaining().is_zero() {
                continue;
            }
            ticker.advance();
            match session.sample() {
                Ok(s) => {
                    view.update(s);
                    if view.stack.is_some() {
                        view.stack = Some(stack_of_selected(&mut dumper, session.pid, &view));
                    }
                }
                Err(e @ (TargetError::Gone(_) | TargetError::Execed(_))) => {
                    return Ok(Some(format!("gprof: {e}")));
                }
                Err(e) => return Err(e.into()),
            }
            ticks += 1;
            if opts.iterations.is_some_and(|n| ticks >= n) {
                return Ok(None);
            }
        }
    })();
    crate::logging::release();
    if let Ok(Some(message)) = &result {
        let _ = writeln!(std::io::stderr(), "{message}");
    }
    result.map(|_| ())
}
