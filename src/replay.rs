//! `momentd replay`: the engine over a JSON Lines file. Event time only; at the end of the input
//! the clock moves to `--until` (default: the last event's time) so due timers fire.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use crate::engine::{Engine, Outcome, Output};
use crate::event::{self, ErrorCode, Limits};
use crate::time::{format_rfc3339, Ts};

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Where to move the clock at the end of the input.
    pub until: Option<Ts>,
}

/// What a replay saw, for the summary line and the exit code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayStats {
    pub lines: u64,
    pub events: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub rejected: BTreeMap<ErrorCode, u64>,
    pub triggers: u64,
    pub audits: u64,
    pub clock_end: Option<Ts>,
}

impl ReplayStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "replay: {} lines, {} events applied, {} duplicates, {} ignored (exited or erased), {} rejected",
            self.lines,
            self.events,
            self.duplicates,
            self.ignored,
            self.rejected_total()
        );
        if !self.rejected.is_empty() {
            let parts: Vec<String> = self
                .rejected
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        s.push_str(&format!(", {} triggers", self.triggers));
        if let Some(t) = self.clock_end {
            s.push_str(&format!(", clock at {}", format_rfc3339(t)));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the input: {0}")]
    Read(std::io::Error),
    #[error("writing the output: {0}")]
    Write(std::io::Error),
}

/// Writes the outputs that replay publishes: triggers as JSON lines; audit records when the
/// engine makes them go to `audit`, if given.
fn emit(
    outputs: &mut Vec<Output>,
    out: &mut dyn Write,
    audit: &mut Option<&mut dyn Write>,
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    for o in outputs.drain(..) {
        match o {
            Output::Trigger(t) => {
                stats.triggers += 1;
                out.write_all(t.to_json().as_bytes())
                    .map_err(ReplayError::Write)?;
                out.write_all(b"\n").map_err(ReplayError::Write)?;
            }
            Output::Audit(a) => {
                stats.audits += 1;
                if let Some(w) = audit.as_mut() {
                    let line = serde_json::to_string(&a).unwrap_or_default();
                    w.write_all(line.as_bytes()).map_err(ReplayError::Write)?;
                    w.write_all(b"\n").map_err(ReplayError::Write)?;
                }
            }
        }
    }
    Ok(())
}

/// Runs the engine over JSON Lines. Bad lines are reported on `diag` as
/// `line N: <reason>: <detail>`, counted, and skipped. Blank lines are skipped silently.
pub fn replay(
    engine: &mut Engine,
    limits: &Limits,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    mut audit: Option<&mut dyn Write>,
    diag: &mut dyn Write,
    opts: &ReplayOptions,
) -> Result<ReplayStats, ReplayError> {
    let mut stats = ReplayStats::default();
    let mut buf = Vec::with_capacity(1024);
    let mut outputs = Vec::new();
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(ReplayError::Read)?;
        if n == 0 {
            break;
        }
        stats.lines += 1;
        let mut line: &[u8] = &buf;
        while let Some((&last, rest)) = line.split_last() {
            if last == b'\n' || last == b'\r' {
                line = rest;
            } else {
                break;
            }
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match event::decode(line, event::Encoding::Json, None, limits) {
            Err(rej) => {
                *stats.rejected.entry(rej.code).or_default() += 1;
                let _ = writeln!(diag, "line {}: {}: {}", stats.lines, rej.code, rej.detail);
            }
            Ok(ev) => match engine.apply(&ev, &mut outputs) {
                Outcome::Applied => stats.events += 1,
                Outcome::Duplicate => stats.duplicates += 1,
                Outcome::AfterExit | Outcome::Erased | Outcome::Restored => stats.ignored += 1,
            },
        }
        emit(&mut outputs, out, &mut audit, &mut stats)?;
        gaps(engine, diag);
    }
    let end = opts.until.or(engine.max_event_time());
    if let Some(end) = end {
        engine.advance(end, &mut outputs);
        emit(&mut outputs, out, &mut audit, &mut stats)?;
    }
    gaps(engine, diag);
    stats.clock_end = engine.watermark();
    out.flush().map_err(ReplayError::Write)?;
    Ok(stats)
}

/// Feed gaps found (docs/contract.md §8), one line each on `diag`, as `run` logs them.
fn gaps(engine: &mut Engine, diag: &mut dyn Write) {
    for (day, source) in engine.take_gaps() {
        let _ = writeln!(
            diag,
            "feed gap: {} on {}: far fewer employees sent it than on the same weekday before; the day is left out of its windows for everyone",
            source.as_str(),
            crate::time::format_date(day)
        );
    }
}
