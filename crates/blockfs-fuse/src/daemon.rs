//! Mounting in the background, as `mount` users expect: the command
//! starts a copy of itself that serves in the foreground, relays what that
//! copy prints while it starts, and returns once the mount is up. The copy
//! then leaves the terminal's session and silences its output, so it
//! neither dies with the terminal nor holds the caller's pipes open.
//!
//! Waiting for the child's output to end, rather than polling for the
//! mount, also catches a child that fails: its error has been relayed and
//! its exit status tells the caller.

use std::env;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Reason};
use crate::mountinfo::is_mounted;

/// Set in the child's environment: it is the background copy.
const CHILD_ENV: &str = "BLOCKFS_FUSE_BACKGROUND";
/// How long a child whose output has ended may take to exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Runs `command` (a foreground mount of `mountpoint`) in the background,
/// copying its standard output to `out` and its standard error to ours
/// until the mount is up or the child has failed.
pub fn start_in_background(
    mut command: Command,
    mountpoint: &Path,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let fail = |reason| Error::new(mountpoint, reason);
    let mut child = command
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| fail(Reason::Io(error)))?;
    let (mut child_out, mut child_err) = (child.stdout.take(), child.stderr.take());
    thread::scope(|scope| {
        if let Some(child_err) = child_err.as_mut() {
            scope.spawn(|| io::copy(child_err, &mut io::stderr()));
        }
        if let Some(child_out) = child_out.as_mut() {
            io::copy(child_out, out).map_err(|error| fail(Reason::Io(error)))?;
        }
        Ok(())
    })?;
    out.flush().map_err(|error| fail(Reason::Io(error)))?;
    if is_mounted(mountpoint).map_err(|error| fail(Reason::Io(error)))? {
        return Ok(());
    }
    // The child's output ends when it exits, a moment before it can be
    // reaped; a child that is still alive after that has not mounted.
    let deadline = Instant::now() + EXIT_GRACE;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(|error| fail(Reason::Io(error)))? {
            return Err(fail(Reason::Exited(status)));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err(fail(Reason::NotMounted))
}

/// In the background copy, once the mount is up: leave the terminal's
/// session (Ctrl-C and hang-ups there no longer reach us), stop holding
/// the starter's pipes (which tells it we are up) and the working
/// directory. Errors after this point go nowhere, as with any daemon; run
/// in the foreground to see them.
pub fn detach_if_background() -> io::Result<()> {
    if env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    nix::unistd::setsid()?;
    env::set_current_dir("/")?;
    let null: File = OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}
