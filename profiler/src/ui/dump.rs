//! `gprof dump --pid PID`: every goroutine of a Go process with its whole stack, read from
//! outside while it runs, in the runtime's text format, pprof's or JSON.

use std::io::{BufWriter, Write};

use anyhow::Context as _;

use crate::collect::dump::Dumper;
use crate::inspect::process::Process;
use crate::model::dump::DumpTotals;
use crate::render::{dump_text, pprof};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The runtime's own (`runtime.Stack(buf, true)`, `debug=2`).
    Text,
    /// pprof's goroutine profile (gzipped protobuf).
    Pprof,
    /// One JSON object per goroutine, one per line.
    Json,
}

#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub pid: i64,
    pub format: Format,
    /// Runtime goroutines and frames too, as `GOTRACEBACK=system` (a SIGQUIT dump) shows them.
    pub system: bool,
    pub output: Option<std::path::PathBuf>,
}

pub fn run(opts: &DumpOptions) -> anyhow::Result<()> {
    let process = Process::from_user_pid(opts.pid)?;
    let mut dumper = Dumper::open(process)?;
    let out: Box<dyn Write> = match &opts.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let totals = write(&mut dumper, opts.format, opts.system, &mut out)?;
    out.flush()?;
    log::info!(
        "PID {}: {} goroutines, {} running, {} unreadable, {} read twice",
        opts.pid,
        totals.goroutines,
        totals.running,
        totals.unreadable,
        totals.reread
    );
    Ok(())
}

/// One dump of `dumper`'s process to `out` (also what the daemon serves).
pub fn write(
    dumper: &mut Dumper,
    format: Format,
    system: bool,
    out: &mut impl Write,
) -> anyhow::Result<DumpTotals> {
    let mut failed: Option<std::io::Error> = None;
    let mut keep = |r: std::io::Result<()>| {
        if let Err(e) = r
            && failed.is_none()
        {
            failed = Some(e);
        }
    };
    let totals = match format {
        Format::Text => {
            let style = dumper.info().style;
            dumper.dump(|g| {
                if dump_text::shown(&g, system) {
                    keep(dump_text::write(out, &style, &g, system));
                }
            })?
        }
        Format::Json => dumper.dump(|g| {
            if dump_text::shown(&g, system) {
                keep(
                    serde_json::to_writer(&mut *out, &g)
                        .map_err(std::io::Error::other)
                        .and_then(|()| out.write_all(b"\n")),
                );
            }
        })?,
        Format::Pprof => {
            let mut profile = pprof::GoroutineProfile::new(dumper.info());
            let totals = dumper.dump(|g| {
                if dump_text::shown(&g, system) {
                    profile.add(&g);
                }
            })?;
            keep(profile.finish(out));
            totals
        }
    };
    match failed {
        Some(e) => Err(anyhow::Error::from(e).context("writing the dump")),
        None => Ok(totals),
    }
}
