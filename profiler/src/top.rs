//! `gprof top --pid PID`: one process, live (TUI) or as JSON lines (`--batch`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};

use crate::budget::{BudgetConfig, HotControl, SURGE_CHECK};
use crate::collector::Windows;
use crate::health::HealthModel;
use crate::kernel::{Kernel, Scope};
use crate::process::Process;
use crate::render::{json, tui};
use crate::target::{self, Target, TargetError, monotonic_ns};

/// Plans made at most for a process that keeps replacing its program.
const MAX_PLANS: u32 = 3;

#[derive(Clone, Debug)]
pub struct TopOptions {
    pub pid: i64,
    pub interval: Duration,
    pub batch: bool,
    pub iterations: Option<u64>,
    pub windows: Windows,
    pub budget: BudgetConfig,
}

/// Attaches (all checks happen before the terminal is touched), then runs the chosen view.
pub fn run(opts: &TopOptions) -> anyhow::Result<()> {
    let mut kernel = None;
    let mut plans = 0;
    // A plan is for the file the process runs when it is read: a process that execs in
    // between is planned again (a few times at most).
    let target = loop {
        plans += 1;
        let process = Process::from_user_pid(opts.pid)?;
        let pid = process.pid();
        let attempt = target::inspect(process).and_then(|inspected| {
            let kernel = match &mut kernel {
                Some(k) => k,
                None => kernel.insert(Kernel::load()?),
            };
            Target::attach(
                kernel,
                &inspected,
                Scope::Process(pid),
                opts.windows,
                HealthModel::default(),
                opts.budget.fraction_of_core.is_some(),
            )
        });
        match attempt {
            Err(TargetError::Execed(_)) if plans < MAX_PLANS => {
                log::warn!(
                    "PID {pid} replaced its program while gprof planned its probes; planning again"
                );
            }
            result => break result?,
        }
    };
    let kernel = kernel.expect("attached, so loaded");
    let hot_attached = kernel.hot_is_on(target.exe);
    let hot = HotControl::new(
        target.exe,
        opts.budget,
        target.has_exact_counts(),
        hot_attached,
        monotonic_ns(),
    );
    let mut session = Session {
        kernel,
        target,
        hot,
        interval: opts.interval,
    };
    if opts.batch {
        batch(&mut session, opts)
    } else {
        interactive(&mut session, opts)
    }
}

/// The attached process, its kernel side, and its hot probes under the budget.
struct Session {
    kernel: Kernel,
    target: Target,
    hot: HotControl,
    interval: Duration,
}

impl Session {
    /// Between samples: detaches the hot probes at once if creations surge.
    fn check_surge(&mut self) {
        if self.hot.watches_for_surges()
            && let Some(demand) = self.target.creation_demand_now()
        {
            self.hot.check_surge(&mut self.kernel, demand);
        }
    }

    /// Waits until the next tick, looking for surges meanwhile.
    fn wait(&mut self, ticker: &Ticker) {
        loop {
            let left = ticker.remaining();
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(SURGE_CHECK));
            self.check_surge();
        }
    }

    fn sample(&mut self) -> Result<crate::snapshot::ProcessSnapshot, TargetError> {
        self.kernel.flush_logs();
        let events = self.kernel.drain_events();
        let sites = self.kernel.site_counts();
        let snapshot = self
            .target
            .sample(&self.kernel, &events, &sites, self.hot.probes())?;
        let load = self.target.hot_load();
        self.hot.step(
            &mut self.kernel,
            Instant::now(),
            monotonic_ns(),
            self.interval,
            load,
        );
        Ok(snapshot)
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
        session.wait(&ticker);
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
            session.check_surge();
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
