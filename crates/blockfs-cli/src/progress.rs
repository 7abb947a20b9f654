//! A one-line progress report for long populates, redrawn in place on a
//! terminal and absent otherwise (logs and pipes get only the summary).

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// Populates with fewer entries than this finish too fast to need a report.
const MIN_ENTRIES: u64 = 2000;
/// Redraw at most this often, so drawing costs nothing measurable.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    total_entries: u64,
    total_bytes: u64,
    entries: u64,
    bytes: u64,
    /// `None` when disabled; else when the line was last drawn.
    last_drawn: Option<Instant>,
}

impl Progress {
    /// Reports on stderr if it is a terminal and the job is large enough.
    pub fn for_stderr(total_entries: u64, total_bytes: u64) -> Self {
        let enabled = total_entries > MIN_ENTRIES && io::stderr().is_terminal();
        Progress { total_entries, total_bytes, entries: 0, bytes: 0, last_drawn: enabled.then(Instant::now) }
    }

    pub fn add_bytes(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.redraw_if_due();
    }

    pub fn entry_done(&mut self) {
        self.entries += 1;
        self.redraw_if_due();
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
        let mut stderr = io::stderr().lock();
        // A progress line that cannot be drawn is not worth failing over.
        let _ = write!(
            stderr,
            "\rmkfs-blockfs: {}/{} entries, {:.1}/{:.1} MB copied",
            self.entries,
            self.total_entries,
            mib(self.bytes),
            mib(self.total_bytes)
        );
        let _ = stderr.flush();
    }
}
