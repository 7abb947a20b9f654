//! A one-line progress report for long jobs (mkfs, get, put, export,
//! import), redrawn in place on a terminal and absent otherwise (logs and
//! pipes get only the summary) or with `--quiet`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use blockfs::rootfs::tar::Event;

/// Jobs with fewer entries than this finish too fast to need a report.
const MIN_ENTRIES: u64 = 2000;
/// Redraw at most this often, so drawing costs nothing measurable.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    /// What the line starts with: `mkfs-blockfs`, `blockfs get`, ...
    label: &'static str,
    /// Entries and bytes to do, when known before the job starts.
    totals: Option<(u64, u64)>,
    entries: u64,
    bytes: u64,
    /// `None` when disabled; else when the line was last drawn.
    last_drawn: Option<Instant>,
}

impl Progress {
    /// Reports on stderr if it is a terminal, `quiet` is not set and the
    /// job is large enough (or of a size not known in advance).
    pub fn for_stderr(label: &'static str, totals: Option<(u64, u64)>, quiet: bool) -> Self {
        let large = totals.is_none_or(|(entries, _)| entries > MIN_ENTRIES);
        let enabled = large && !quiet && io::stderr().is_terminal();
        Progress { label, totals, entries: 0, bytes: 0, last_drawn: enabled.then(Instant::now) }
    }

    pub fn add_bytes(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.redraw_if_due();
    }

    pub fn entry_done(&mut self) {
        self.entries += 1;
        self.redraw_if_due();
    }

    /// Counts an archive event: an entry, or its data (holes included).
    pub fn archive_event(&mut self, event: &Event) {
        match event {
            Event::Entry(_) => self.entry_done(),
            Event::Data(bytes) => self.add_bytes(bytes.len() as u64),
            Event::Hole(length) => self.add_bytes(*length),
            Event::Skipped { .. } | Event::End => {}
        }
    }

    /// Ends the line so later output starts on a fresh one.
    pub fn finish(&mut self) {
        if self.last_drawn.is_some() {
            self.draw();
            eprintln!();
            self.last_drawn = None;
        }
    }

    fn redraw_if_due(&mut self) {
        if self.last_drawn.is_some_and(|at| at.elapsed() >= REDRAW_EVERY) {
            self.draw();
            self.last_drawn = Some(Instant::now());
        }
    }

    fn draw(&self) {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let line = match self.totals {
            Some((entries, bytes)) => format!(
                "{}/{entries} entries, {:.1}/{:.1} MB copied",
                self.entries,
                mib(self.bytes),
                mib(bytes)
            ),
            None => format!("{} entries, {:.1} MB copied", self.entries, mib(self.bytes)),
        };
        let mut stderr = io::stderr().lock();
        // A progress line that cannot be drawn is not worth failing over.
        let _ = write!(stderr, "\r{}: {line}", self.label);
        let _ = stderr.flush();
    }
}
