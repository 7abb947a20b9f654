//! Stopping cleanly on SIGINT, SIGTERM and SIGXFSZ. The commands that
//! create things (mkfs-blockfs, and blockfs get, put, export and import)
//! call [`watch`] first; a signal is then only recorded, and the work
//! asks [`check`] between steps (each entry, each chunk of data), so it
//! unwinds through its ordinary failure path, which removes what the run
//! made: mkfs's and export's temporary file `.NAME.tmp-PID` beside the
//! output, get's copy `.blockfs-get-PID` beside the destination, the
//! names put created (and its staging name `.blockfs-put-PID`), the
//! member import was writing.
//! The binary then exits 128 + the signal's number (130 for SIGINT, 143
//! for SIGTERM). A second SIGINT or SIGTERM ends the process at once.
//!
//! SIGXFSZ (a write past `ulimit -f`) is recorded too, so the write fails
//! with EFBIG instead of the process dying with the file half-written.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
use signal_hook::flag;

/// The signal received, 0 for none.
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn received_cell() -> &'static Arc<AtomicUsize> {
    RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Records SIGINT, SIGTERM and SIGXFSZ from now on.
pub fn watch() -> io::Result<()> {
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it runs before `stopping` is set: only a
        // second signal finds it set.
        flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stopping))?;
        flag::register(signal, Arc::clone(&stopping))?;
    }
    for signal in [SIGINT, SIGTERM, SIGXFSZ] {
        flag::register_usize(signal, Arc::clone(received_cell()), signal as usize)?;
    }
    Ok(())
}

/// The signal that stopped the run, if one came.
pub fn received() -> Option<Signal> {
    match received_cell().load(Ordering::SeqCst) {
        0 => None,
        number => Some(Signal(number as i32)),
    }
}

/// Fails once a signal has come, for the work to stop at this step.
pub fn check() -> io::Result<()> {
    match received() {
        None => Ok(()),
        Some(signal) => Err(io::Error::new(io::ErrorKind::Interrupted, format!("interrupted by {signal}"))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// What the shell reports for a process killed by this signal.
    pub fn exit_code(self) -> u8 {
        (128 + self.0) as u8
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SIGINT => write!(f, "SIGINT"),
            SIGTERM => write!(f, "SIGTERM"),
            SIGXFSZ => write!(f, "SIGXFSZ (file size limit exceeded)"),
            other => write!(f, "signal {other}"),
        }
    }
}
