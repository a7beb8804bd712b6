//! `gprof top --pid PID`: one process, live (TUI) or as JSON lines (`--batch`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};

use crate::attach::kernel::{AttachScope, Kernel};
use crate::collect::budget::SURGE_CHECK;
use crate::collect::sampler::{Outcome, Sampler, SamplerSettings};
use crate::collect::target::{self, TargetError};
use crate::config::params::{CensusLimits, HealthModel, OverheadBudget, Windows};
use crate::inspect::process::Process;
use crate::model::snapshot::ProcessSnapshot;
use crate::render::{json, tui};

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

fn interactive(session: &mut Session, opts: &TopOptions) -> anyhow::Result<()> {
    let mut view = tui::TopView::new(opts.interval.as_secs_f64());
    crate::logging::hold();
    let result = (|| -> anyhow::Result<Option<String>> {
        let mut guard = tui::TerminalGuard::enter().context("setting up the terminal")?;
        let mut ticker = Ticker::new(opts.interval);
        let mut ticks = 0u64;
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
                Ok(s) => view.update(s),
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
