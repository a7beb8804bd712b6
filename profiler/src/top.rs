//! `gprof top --pid PID`: one process, live (TUI) or as JSON lines (`--batch`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};

use crate::collector::Windows;
use crate::health::HealthModel;
use crate::kernel::{Kernel, Scope};
use crate::process::Process;
use crate::render::{json, tui};
use crate::target::{self, Target, TargetError};

#[derive(Clone, Debug)]
pub struct TopOptions {
    pub pid: i64,
    pub interval: Duration,
    pub batch: bool,
    pub iterations: Option<u64>,
    pub windows: Windows,
}

/// Attaches (all checks happen before the terminal is touched), then runs the chosen view.
pub fn run(opts: &TopOptions) -> anyhow::Result<()> {
    let process = Process::from_user_pid(opts.pid)?;
    let pid = process.pid();
    let inspected = target::inspect(process)?;
    let mut kernel = Kernel::load()?;
    let mut target = Target::attach(
        &mut kernel,
        &inspected,
        Scope::Process(pid),
        opts.windows,
        HealthModel::default(),
    )?;
    drop(inspected);
    if let Some(why) = &target.reader_error {
        log::warn!("{why}");
    }
    if opts.batch {
        batch(&mut kernel, &mut target, opts)
    } else {
        interactive(&mut kernel, &mut target, opts)
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

fn sample(
    kernel: &mut Kernel,
    target: &mut Target,
) -> Result<crate::snapshot::ProcessSnapshot, TargetError> {
    kernel.flush_logs();
    let events = kernel.drain_events();
    target.sample(kernel, &events)
}

fn batch(kernel: &mut Kernel, target: &mut Target, opts: &TopOptions) -> anyhow::Result<()> {
    let mut ticker = Ticker::new(opts.interval);
    let stdout = std::io::stdout();
    for _ in 0..opts.iterations.unwrap_or(u64::MAX) {
        std::thread::sleep(ticker.remaining());
        ticker.advance();
        match sample(kernel, target) {
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

fn interactive(kernel: &mut Kernel, target: &mut Target, opts: &TopOptions) -> anyhow::Result<()> {
    let mut view = tui::TopView::new(opts.interval.as_secs_f64());
    crate::logging::hold();
    let result = (|| -> anyhow::Result<Option<String>> {
        let mut guard = tui::TerminalGuard::enter().context("setting up the terminal")?;
        let mut ticker = Ticker::new(opts.interval);
        let mut ticks = 0u64;
        loop {
            guard.terminal.draw(|f| tui::draw(f, &view))?;
            if event::poll(ticker.remaining())? {
                if let TermEvent::Key(k) = event::read()?
                    && k.kind == KeyEventKind::Press
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL)))
                {
                    return Ok(None);
                }
                continue;
            }
            ticker.advance();
            match sample(kernel, target) {
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
