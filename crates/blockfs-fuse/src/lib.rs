//! The FUSE driver of BlockFS: serves a [`blockfs::FileSystem`] through the
//! kernel's FUSE module (with the `fuser` crate), so an image mounts like
//! any local filesystem.
//!
//! - [`image::Source`] opens what the user named: a BlockFS image (mounted
//!   in place, locked against a second writer) or a TAR archive (loaded
//!   into RAM; changes vanish at unmount).
//! - [`serve`] mounts a filesystem and answers the kernel until the mount
//!   goes away (`fusermount3 -u`, or SIGINT/SIGTERM/SIGHUP), then marks
//!   the image clean. A background thread syncs every few seconds.
//! - [`daemon`] runs a mount in the background once it is up.
//!
//! Errors from the library reach the caller as its errno
//! (`blockfs::Error::errno`). The kernel checks permissions, except on a
//! mount only root can use (`options::Permissions`).

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use blockfs::{BlockDevice, FileSystem};
use fuser::Session;

mod adapter;
mod convert;
pub mod daemon;
mod error;
pub mod image;
mod mountinfo;
mod options;
mod poll;
mod signals;
mod writeback;

pub use error::{Error, Reason};
pub use mountinfo::is_mounted;
pub use options::{default_poll, default_threads, MountConfig};

use adapter::Adapter;
use poll::{Activity, Poller};
use writeback::Writeback;

/// Mounts `fs` (read from `image`, named in messages) at `mountpoint` and
/// serves it until it is unmounted, then unmounts `fs`, which commits
/// everything and marks the image clean. The calling thread keeps SIGINT,
/// SIGTERM and SIGHUP blocked: a thread waits for them and unmounts.
pub fn serve<D: BlockDevice + 'static>(
    fs: FileSystem<D>,
    image: &Path,
    mountpoint: &Path,
    config: &MountConfig,
) -> Result<(), Error> {
    let fs = Arc::new(fs);
    let served = run_session(&fs, image, mountpoint, config);
    // Every other handle went with the session and its threads, unless a
    // request handler panicked and is still running; then `served`
    // reports that, and the image is synced but stays marked in use.
    let unmounted = match Arc::try_unwrap(fs) {
        Ok(fs) => fs.unmount().map(drop).map_err(|error| Error::new(image, Reason::Filesystem(error))),
        Err(fs) => fs.sync().map(drop).map_err(|error| Error::new(image, Reason::Filesystem(error))),
    };
    served.and(unmounted)
}

fn run_session<D: BlockDevice + 'static>(
    fs: &Arc<FileSystem<D>>,
    image: &Path,
    mountpoint: &Path,
    config: &MountConfig,
) -> Result<(), Error> {
    let mount_error = |error| Error::new(mountpoint, Reason::Mount(error));
    // Absolute, so unmounting still works after the daemon leaves its
    // working directory.
    let mountpoint = &mountpoint.canonicalize().map_err(mount_error)?;
    // Before any thread starts, so all of them inherit the blocked set.
    let thread_error = |error| Error::new(mountpoint, Reason::Io(error));
    let signals = signals::block().map_err(thread_error)?;
    let permissions = config.permissions((nix::unistd::getuid(), nix::unistd::getgid()));
    let mut poller = config.poll.map(Poller::new);
    let activity = poller.as_ref().map_or_else(Activity::default, Poller::activity);
    let adapter = Adapter::new(fs.clone(), config.ttl, image, permissions, activity);
    let fuser_config = config.fuser_config(permissions);
    let mut session = Session::new(adapter, mountpoint, &fuser_config).map_err(mount_error)?;
    if let Some(poller) = &mut poller {
        poller.start(session.as_fd()).map_err(thread_error)?;
    }
    daemon::detach_if_background().map_err(thread_error)?;
    signals
        .watch(Arc::downgrade(fs), session.unmount_callable(), mountpoint.clone())
        .map_err(thread_error)?;
    let _writeback = config
        .writeback
        .map(|every| Writeback::start(fs.clone(), every, image))
        .transpose()
        .map_err(thread_error)?;
    session.run().map_err(|error| Error::new(mountpoint, Reason::Session(error)))
}
