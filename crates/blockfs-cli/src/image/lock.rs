//! Opening an image file under an advisory lock, so two programs never
//! change one image at once: a writer takes an exclusive `flock`, a
//! reader a shared one, and neither waits. A second writer, or a writer
//! while the image is read or mounted, is told the image is in use
//! instead of corrupting it. `blockfs mount` (blockfs-fuse) takes the same
//! `flock` locks, so an image in use by a mount is refused too.

use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use blockfs::format::superblock::{Superblock, SUPERBLOCK_SIZE};
use blockfs::format::BLOCK_SIZE;
use blockfs::FileDevice;

use super::blockdev;
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
/// returned device's file and ends when that file is closed. A block
/// device is also opened exclusively for writing, so a device mounted by
/// the kernel (or held by any other exclusive opener) is refused.
pub fn open_image(path: &Path, access: Access) -> Result<FileDevice, OpenError> {
    let writable = access == Access::Write;
    let file = blockdev::open(path, writable).map_err(OpenError::Io)?;
    check_whole(&file).map_err(OpenError::Io)?;
    lock(&file, access)?;
    FileDevice::from_file(file, writable).map_err(OpenError::Io)
}

/// Opens `path` read-only with no lock, for a reader that found the image
/// in use: it sees what is on disk, the last committed state.
pub fn open_unlocked(path: &Path) -> Result<FileDevice, OpenError> {
    let file = File::open(path).map_err(OpenError::Io)?;
    check_whole(&file).map_err(OpenError::Io)?;
    FileDevice::from_file(file, false).map_err(OpenError::Io)
}

/// Refuses what cannot be a whole image, in words: a directory, or a
/// BlockFS image shorter than its superblock says (cut short by a copy
/// or a full disk), which would otherwise fail later with a puzzling
/// complaint about some block.
fn check_whole(mut file: &File) -> io::Result<()> {
    if file.metadata()?.is_dir() {
        return Err(io::Error::other("is a directory, not an image"));
    }
    let mut head = [0u8; SUPERBLOCK_SIZE];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => {}
        // Too short for a superblock: the library says what that is.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(error) => return Err(error),
    }
    let Ok(superblock) = Superblock::decode(&head) else {
        return Ok(());
    };
    let claimed = superblock.block_count as u64 * BLOCK_SIZE as u64;
    let length = file.seek(SeekFrom::End(0))?;
    if length < claimed {
        return Err(io::Error::other(format!(
            "image is truncated: it is {length} bytes, but its superblock describes {} blocks ({claimed} bytes)",
            superblock.block_count
        )));
    }
    Ok(())
}

/// Locks an open `file` for `access` without waiting.
pub fn lock(file: &File, access: Access) -> Result<(), OpenError> {
    match sys::try_flock(file, access == Access::Write) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Err(OpenError::InUse),
        Err(error) => Err(OpenError::Io(error)),
    }
}
