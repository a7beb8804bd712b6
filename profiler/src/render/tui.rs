//! The `gprof top` screen (ratatui). [`TopView`] keeps the short histories the sparklines
//! show; [`draw`] renders a view and computes nothing else.

use std::collections::VecDeque;
use std::io::{self, Stdout};

use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table};

use crate::model::snapshot::{GoroutineSource, ProcessSnapshot, SiteSnapshot};

/// Points kept for each sparkline.
const HISTORY: usize = 240;

/// What the screen shows: the latest snapshot and the recent past.
#[derive(Debug, Default)]
pub struct TopView {
    pub latest: Option<ProcessSnapshot>,
    pub interval_seconds: f64,
    goroutines: VecDeque<u64>,
    /// GC pause time per interval, microseconds.
    pause_us: VecDeque<u64>,
    create_rate: VecDeque<u64>,
    last_pause_total: Option<f64>,
    /// A line for the status bar (e.g. "target exited").
    pub status: Option<String>,
    /// How the leak-sites panel is sorted (`s` cycles).
    pub site_order: SiteOrder,
    /// The stuck group selected (arrow keys).
    pub selected: usize,
    /// The whole stack of one goroutine of the selected group, as `gprof dump` prints it,
    /// shown in place of the sites (Enter toggles).
    pub stack: Option<Vec<String>>,
}

/// Orders of the leak-sites panel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SiteOrder {
    /// Suspects first, by growth (as gprof ranks them).
    #[default]
    Growth,
    /// Most live goroutines first.
    Live,
    /// By source position.
    Source,
}

impl SiteOrder {
    pub fn next(self) -> Self {
        match self {
            Self::Growth => Self::Live,
            Self::Live => Self::Source,
            Self::Source => Self::Growth,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Growth => "growth",
            Self::Live => "live goroutines",
            Self::Source => "source",
        }
    }

    fn sort(self, sites: &mut [&SiteSnapshot]) {
        match self {
            Self::Growth => {}
            Self::Live => sites.sort_by_key(|s| std::cmp::Reverse(s.goroutines)),
            Self::Source => {
                sites.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            }
        }
    }
}

fn push(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

impl TopView {
    pub fn new(interval_seconds: f64) -> Self {
        Self {
            interval_seconds,
            ..Default::default()
        }
    }

    pub fn update(&mut self, s: ProcessSnapshot) {
        push(&mut self.goroutines, s.goroutines.max(0) as u64);
        let paused =
            s.gc_pause_seconds_total - self.last_pause_total.unwrap_or(s.gc_pause_seconds_total);
        self.last_pause_total = Some(s.gc_pause_seconds_total);
        push(&mut self.pause_us, (paused * 1e6).round().max(0.0) as u64);
        push(
            &mut self.create_rate,
            s.goroutine_create_rate_per_s.round().max(0.0) as u64,
        );
        self.latest = Some(s);
    }
}

fn kv(key: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{key:<22}"), Style::default().fg(Color::Gray)),
        Span::styled(value, Style::default().add_modifier(Modifier::BOLD)),
    ])
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Formats seconds with a unit that keeps three significant digits.
pub fn duration(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

/// Formats bytes in binary units.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Whether the hot probes run all the time (all figures exact) or in budget windows.
fn probes_status(s: &ProcessSnapshot) -> String {
    if s.hot_probes_duty >= 1.0 {
        "probes: all on".into()
    } else {
        format!(
            "probes: sampled {:.1}% (budget; stack census sampled)",
            s.hot_probes_duty * 100.0
        )
    }
}

pub fn draw(frame: &mut Frame, view: &TopView) {
    let [header, body, health, stuck, sites, sparks, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(11),
        Constraint::Length(3),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let Some(s) = &view.latest else {
        frame.render_widget(Paragraph::new("gprof: attaching..."), header);
        return;
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                " gprof top ",
                Style::default().fg(Color::Black).bg(Color::Cyan),
            ),
            Span::raw(format!(
                "  PID {} ({})  {}  attached {}  every {}  {}",
                s.pid,
                s.comm,
                s.go_version,
                clock(s.attached_seconds),
                duration(view.interval_seconds),
                probes_status(s)
            )),
        ])),
        header,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
    let source = match s.goroutines_source {
        GoroutineSource::Runtime => "",
        GoroutineSource::GcCensus => " (GC census)",
        GoroutineSource::Unknown => " (waiting for a GC)",
    };
    let goroutines = vec![
        kv("live", format!("{}{source}", s.goroutines)),
        kv("system", opt(s.system_goroutines)),
        kv(
            "created / exited",
            format!(
                "{} / {}",
                s.goroutines_created_total, s.goroutines_exited_total
            ),
        ),
        kv(
            "create rate",
            format!("{:.0} /s", s.goroutine_create_rate_per_s),
        ),
        kv(
            "exit rate",
            format!("{:.0} /s", s.goroutine_exit_rate_per_s),
        ),
        kv(
            "confirmed leak",
            format!(
                "{:.0} /min ({} stuck, {} leaking)",
                s.confirmed_leak_rate_per_min, s.stuck_goroutines, s.leaking_goroutines
            ),
        ),
        kv(
            "net growth",
            format!("{:+.0} /min", s.goroutine_leak_rate_per_min),
        ),
        kv("free-G pool", opt(s.gfree_pool_size)),
        kv("GOMAXPROCS", opt(s.gomaxprocs)),
    ];
    frame.render_widget(
        Paragraph::new(goroutines)
            .block(Block::default().borders(Borders::ALL).title(" Goroutines ")),
        left,
    );
    let gc = vec![
        kv("GC cycles", s.gc_cycles_total.to_string()),
        kv("STW pauses", s.gc_pauses_total.to_string()),
        kv("pause total", duration(s.gc_pause_seconds_total)),
        kv("pause max", duration(s.gc_pause_max_seconds)),
        kv("pause p99", duration(s.gc_pause_p99_seconds)),
        kv(
            "other STW",
            format!(
                "{} ({})",
                s.other_pauses_total,
                duration(s.other_pause_seconds_total)
            ),
        ),
        kv("last GC: stacks", opt(s.last_gc_stacks_scanned)),
        kv(
            "last GC: stack mem",
            match (s.last_gc_stack_bytes, s.mean_stack_bytes()) {
                (Some(b), Some(m)) => format!("{} (mean {})", bytes(b as f64), bytes(m)),
                _ => "-".into(),
            },
        ),
    ];
    frame.render_widget(
        Paragraph::new(gc).block(Block::default().borders(Borders::ALL).title(" GC ")),
        right,
    );
    let h = &s.health;
    let color = if s.health_score >= 80.0 {
        Color::Green
    } else if s.health_score >= 50.0 {
        Color::Yellow
    } else {
        Color::Red
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::default().borders(Borders::ALL).title(format!(
                " Health  (penalties: leak {:.0}, pause {:.0}, pool {:.0}, stack {:.0}) ",
                h.leak_penalty, h.pause_penalty, h.pool_penalty, h.stack_penalty
            )))
            .gauge_style(Style::default().fg(color))
            .percent(s.health_score.clamp(0.0, 100.0) as u16)
            .label(format!("{:.0} / 100", s.health_score)),
        health,
    );
    draw_stuck(frame, stuck, s, view.selected);
    match &view.stack {
        Some(lines) => {
            let text: Vec<Line> = lines.iter().map(|l| Line::from(l.as_str())).collect();
            let [stack_area] = Layout::vertical([Constraint::Min(0)]).areas(sites.union(sparks));
            frame.render_widget(
                Paragraph::new(text).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" One goroutine of the selected group (Enter: back) "),
                ),
                stack_area,
            );
        }
        None => {
            draw_sites(frame, sites, s, view.site_order);
            draw_sparks(frame, sparks, view);
        }
    }
    let footer_text = view.status.clone().unwrap_or_else(|| {
        " q: quit   s: sort leak sites   up/down: select a stuck group   Enter: its stack".into()
    });
    frame.render_widget(
        Paragraph::new(footer_text).style(Style::default().fg(Color::Gray)),
        footer,
    );
}

/// Where a group waits, in which function it runs when that is not the one it waits in, and
/// where it was created.
fn place(g: &crate::model::snapshot::BlockedGroup) -> String {
    let waits_in_own = g
        .blocked_at
        .strip_prefix(g.started.as_str())
        .is_some_and(|rest| rest.starts_with(" (") || rest.is_empty());
    if waits_in_own {
        format!("{}  <- go {}", g.blocked_at, g.created_at)
    } else {
        format!(
            "{}  (in {})  <- go {}",
            g.blocked_at, g.started, g.created_at
        )
    }
}

/// Blocked goroutines by creation site, place and wait reason: leaking groups first.
fn draw_stuck(frame: &mut Frame, area: Rect, s: &ProcessSnapshot, selected: usize) {
    let rows = s.blocked_groups.iter().enumerate().map(|(i, g)| {
        let style = if i == selected {
            Style::default().add_modifier(Modifier::REVERSED)
        } else if g.leaking {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(if g.leaking { "LEAK" } else { "" }),
            Cell::from(format!("{}/{}", g.stuck, g.goroutines)),
            Cell::from(clock(g.oldest_blocked_seconds)),
            Cell::from(format!("{:+.0}/min", g.stuck_growth_per_min)),
            Cell::from(g.wait_reason.clone()),
            Cell::from(place(g)),
        ])
        .style(style)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(14),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new(vec![
            "",
            "stuck/all",
            "oldest",
            "growth",
            "waiting on",
            "blocked at  (in the function they run)  <- created at",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(stuck_title(s)));
    frame.render_widget(table, area);
}

/// The stuck panel's title: how old the census behind it is, and whether its counts are
/// estimates from a sample.
fn stuck_title(s: &ProcessSnapshot) -> String {
    let census = s.census.map_or(String::new(), |c| {
        let age = c.age_seconds.map_or("first census under way".into(), |a| {
            format!("census {a:.0} s old")
        });
        if c.sample_fraction < 1.0 {
            format!(
                "  ({age}; 1 in {:.0} followed, counts estimated)",
                1.0 / c.sample_fraction
            )
        } else {
            format!("  ({age})")
        }
    });
    format!(" Stuck goroutines (blocked at one place past --stuck-after){census} ")
}

/// Goroutines by creation site, and the stack memory they hold.
fn draw_sites(frame: &mut Frame, area: Rect, s: &ProcessSnapshot, order: SiteOrder) {
    let stacks = s.goroutine_stacks.as_ref().map_or(String::new(), |k| {
        format!(
            "  stacks: {} live in {} goroutines, {} kept by {} dead gs  growths {}",
            bytes(k.live_stack_bytes as f64),
            k.live_goroutines,
            bytes(k.dead_stack_bytes as f64),
            k.dead_gs_with_stack,
            k.stack_growths_total
        )
    });
    let title = format!(" Leak sites (by {}){stacks} ", order.label());
    let mut sites: Vec<&SiteSnapshot> = s.top_leak_sites.iter().collect();
    order.sort(&mut sites);
    let rows = sites.iter().map(|site| {
        let style = if site.suspect {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(format!("{:+.0}/min", site.growth_per_min)),
            Cell::from(site.goroutines.to_string()),
            Cell::from(if site.suspect { "leak?" } else { "" }),
            Cell::from(format!("{}  -> {}", site.site, site.started)),
        ])
        .style(style)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new(vec![
            "growth",
            "live",
            "",
            "site (go statement -> started function)",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
}

fn draw_sparks(frame: &mut Frame, area: Rect, view: &TopView) {
    let [a, b, c] = Layout::vertical([Constraint::Ratio(1, 3); 3]).areas(area);
    let last = |q: &VecDeque<u64>| q.back().copied().unwrap_or(0);
    for (area, title, data) in [
        (
            a,
            format!(" live goroutines: {} ", last(&view.goroutines)),
            &view.goroutines,
        ),
        (
            b,
            format!(" GC pause per interval: {} µs ", last(&view.pause_us)),
            &view.pause_us,
        ),
        (
            c,
            format!(" creations per second: {} ", last(&view.create_rate)),
            &view.create_rate,
        ),
    ] {
        let width = area.width.saturating_sub(2) as usize;
        let data: Vec<u64> = data
            .iter()
            .skip(data.len().saturating_sub(width))
            .copied()
            .collect();
        frame.render_widget(
            Sparkline::default()
                .block(Block::default().borders(Borders::ALL).title(title))
                .data(&data)
                .style(Style::default().fg(Color::Cyan)),
            area,
        );
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Owns the terminal while the TUI runs; restores it on drop, including when unwinding.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen) {
            let _ = disable_raw_mode();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok(Self { terminal })
    }
}

pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Restores the terminal before the default hook prints the panic, so it stays readable.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;

    use super::*;

    fn snapshot() -> ProcessSnapshot {
        ProcessSnapshot {
            pid: 4242,
            comm: "leaky".into(),
            goroutines: 1543,
            goroutines_created_total: 150_000,
            goroutines_exited_total: 148_500,
            gfree_pool_size: Some(37),
            gc_cycles_total: 37,
            gc_pauses_total: 74,
            last_gc_stacks_scanned: Some(1548),
            last_gc_stack_bytes: Some(1548 * 8192),
            ..crate::model::snapshot::example()
        }
    }

    /// The view drawn on a 120x40 screen, as text.
    fn screen(view: &TopView) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        terminal.draw(|f| draw(f, view)).unwrap();
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect()
    }

    #[test]
    fn screen_shows_the_figures() {
        let mut view = TopView::new(1.0);
        view.update(snapshot());
        let screen = screen(&view);
        for needle in [
            "PID 4242 (leaky)",
            "go1.27.3",
            "1543",
            "+1200 /min",
            "2020 /s",
            "net growth",
            "free-G pool",
            "37",
            "4.20 ms",
            "60 / 100",
            "leak 40",
            "12.1 MiB (mean 8.0 KiB)",
            "q: quit",
            "Leak sites (by growth)",
            "+1200/min",
            "main.serve (/src/app/main.go:42)",
            "leak?",
            "Stuck goroutines",
            "LEAK",
            "1200/1420",
            "00:01:15",
            "chan send",
            "main.serve.func1 (/src/app/main.go:47)  <- go main.serve",
            "1200 /min (1200 stuck, 1200 leaking)",
        ] {
            assert!(screen.contains(needle), "missing {needle:?} in\n{screen}");
        }
    }

    #[test]
    fn a_group_names_the_function_it_runs_where_it_waits_elsewhere() {
        let mut g = snapshot().blocked_groups[0].clone();
        assert_eq!(
            place(&g),
            "main.serve.func1 (/src/app/main.go:47)  <- go main.serve (/src/app/main.go:42)"
        );
        g.started = "main.zooTickerLoop".into();
        g.blocked_at = "main.tick (/src/app/zoo.go:9)".into();
        assert_eq!(
            place(&g),
            "main.tick (/src/app/zoo.go:9)  (in main.zooTickerLoop)  <- go main.serve (/src/app/main.go:42)"
        );
    }

    #[test]
    fn the_selected_groups_stack_takes_the_sites_place() {
        let mut view = TopView::new(1.0);
        view.update(snapshot());
        view.stack = Some(vec![
            "goroutine 77 [chan send, 2 minutes]:".into(),
            "main.serve.func1(...)".into(),
            "    /src/app/main.go:47 +0x2c".into(),
        ]);
        let screen = screen(&view);
        for needle in [
            "One goroutine of the selected group",
            "goroutine 77 [chan send, 2 minutes]:",
            "/src/app/main.go:47 +0x2c",
        ] {
            assert!(screen.contains(needle), "missing {needle:?} in\n{screen}");
        }
        assert!(!screen.contains("Leak sites"), "{screen}");
    }

    #[test]
    fn units() {
        assert_eq!(duration(2.5), "2.50 s");
        assert_eq!(duration(0.0042), "4.20 ms");
        assert_eq!(duration(0.000_061), "61.0 µs");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
    }
}
