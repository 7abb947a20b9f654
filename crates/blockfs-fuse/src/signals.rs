//! SIGINT (Ctrl-C), SIGTERM and SIGHUP end the mount the way
//! `fusermount3 -u` does: the mount is taken down, the session ends, and
//! `serve` syncs and marks the image clean.
//!
//! The signals are blocked in every thread and taken by one thread with
//! `sigwait`, so the work runs as ordinary code rather than in a handler.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Weak;
use std::thread;

use blockfs::{BlockDevice, FileSystem};
use fuser::SessionUnmounter;
use nix::sys::signal::{SigSet, Signal};

/// The signals, blocked in the thread that called [`block`].
pub struct Blocked(SigSet);

/// Blocks the signals in the calling thread and so in every thread it
/// starts afterwards: call it before starting any, or one of them would
/// take the signal with the default action (death, nothing flushed).
pub fn block() -> io::Result<Blocked> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block()?;
    Ok(Blocked(set))
}

impl Blocked {
    /// Starts the thread that waits for the signals and unmounts on each.
    /// It waits for the rest of the process's life: `serve` is meant to be
    /// what a process does until it exits, and the signals stay blocked.
    pub fn watch<D: BlockDevice + 'static>(
        self,
        fs: Weak<FileSystem<D>>,
        mut unmounter: SessionUnmounter,
        mountpoint: PathBuf,
    ) -> io::Result<()> {
        let Blocked(set) = self;
        thread::Builder::new().name("blockfs-signals".into()).spawn(move || {
            while let Ok(signal) = set.wait() {
                eprintln!("blockfs: {signal}: unmounting {}", mountpoint.display());
                if let Err(error) = unmounter.unmount() {
                    // Busy (a shell's working directory, an open file): make
                    // everything durable now and detach the mount; the
                    // session ends when the last user lets go of it.
                    eprintln!("blockfs: {}: {error}; detaching it instead", mountpoint.display());
                    if let Some(Err(error)) = fs.upgrade().map(|fs| fs.sync()) {
                        eprintln!("blockfs: {}: sync failed: {error}", mountpoint.display());
                    }
                    detach(&mountpoint);
                }
            }
        })?;
        Ok(())
    }
}

/// Lazy unmount through the setuid helper, which works for any user.
fn detach(mountpoint: &Path) {
    let status = Command::new("fusermount3").args(["-u", "-z", "--"]).arg(mountpoint).status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("blockfs: fusermount3 -u -z {}: {status}", mountpoint.display()),
        Err(error) => eprintln!("blockfs: fusermount3: {error}"),
    }
}
