//! A whole goroutine dump written in one format as the [`Dumper`] reads it, goroutine by
//! goroutine (what `gprof dump` prints and the daemon serves).

use std::io::Write;

use crate::collect::dump::Dumper;
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
            let style = dumper.style();
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
            let mut profile = pprof::GoroutineProfile::new(dumper.info(), dumper.style());
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
