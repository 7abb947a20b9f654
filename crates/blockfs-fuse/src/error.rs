//! Why a mount failed, and which file it was about.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use blockfs::format::superblock::MAGIC;
use blockfs::rootfs::LoadError;

#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    reason: Reason,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum Reason {
    Io(io::Error),
    /// Another process holds the image's lock (a read-write mount, or a
    /// read-only one when we want to write).
    InUse,
    /// Block 0 holds neither the BlockFS magic nor a TAR header.
    NotImageOrTar,
    /// The TAR archive could not be loaded.
    Tar(LoadError),
    /// The library refused the image (mounting it, or marking it clean).
    Filesystem(blockfs::Error),
    /// The kernel mount failed.
    Mount(io::Error),
    /// The FUSE session ended with an error.
    Session(io::Error),
    /// The background mount process exited before the mount was up.
    Exited(ExitStatus),
    /// The background mount process is running but the mount is missing.
    NotMounted,
}

impl Error {
    pub fn new(path: &Path, reason: Reason) -> Self {
        Error { path: path.to_owned(), reason }
    }

    /// The image or mount point the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Io(error) => write!(f, "{error}"),
            Reason::InUse => write!(f, "image is in use (another process has it mounted or locked)"),
            Reason::NotImageOrTar => write!(
                f,
                "neither a BlockFS image (no magic {MAGIC:#010x} in block 0) nor a TAR archive (no tar header)"
            ),
            Reason::Tar(error) => write!(f, "cannot load TAR archive: {error}"),
            Reason::Filesystem(error) => write!(f, "{error}"),
            Reason::Mount(error) => write!(f, "cannot mount: {error}"),
            Reason::Session(error) => write!(f, "FUSE session failed: {error}"),
            Reason::Exited(status) => write!(f, "mount process failed ({status})"),
            Reason::NotMounted => write!(f, "mount process is running but nothing is mounted here"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for Error {}
