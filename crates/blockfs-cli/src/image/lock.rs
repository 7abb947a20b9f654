//! Opening an image file under an advisory lock, so two programs never
//! change one image at once: a writer takes an exclusive `flock`, a
//! reader a shared one, and neither waits. A second writer, or a writer
//! while the image is read or mounted, is told the image is in use
//! instead of corrupting it. `blockfs mount` (blockfs-fuse) takes the same
//! `flock` locks, so an image in use by a mount is refused too.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use blockfs::FileDevice;

use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only, shared with other readers.
    Read,
    /// Read-write, exclusive.
    Write,
}

#[derive(Debug)]
pub enum OpenError {
    /// Another process holds a conflicting lock.
    InUse,
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::InUse => write!(f, "image is in use"),
            OpenError::Io(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens `path` and locks it for `access`. The lock belongs to the
/// returned device's file and ends when that file is closed.
pub fn open_image(path: &Path, access: Access) -> Result<FileDevice, OpenError> {
    let writable = access == Access::Write;
    let file = OpenOptions::new().read(true).write(writable).open(path).map_err(OpenError::Io)?;
    lock(&file, access)?;
    FileDevice::from_file(file, writable).map_err(OpenError::Io)
}

/// Opens `path` read-only with no lock, for a reader that found the image
/// in use: it sees what is on disk, the last committed state.
pub fn open_unlocked(path: &Path) -> Result<FileDevice, OpenError> {
    let file = File::open(path).map_err(OpenError::Io)?;
    FileDevice::from_file(file, false).map_err(OpenError::Io)
}

/// Locks an open `file` for `access` without waiting.
pub fn lock(file: &File, access: Access) -> Result<(), OpenError> {
    match sys::try_flock(file, access == Access::Write) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Err(OpenError::InUse),
        Err(error) => Err(OpenError::Io(error)),
    }
}
