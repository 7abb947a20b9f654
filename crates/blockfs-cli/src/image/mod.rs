//! An image opened for one `blockfs` command: locked (shared to read,
//! exclusive to write), mounted, named in every message, and for writers
//! unmounted (committed and marked clean) even when the command fails.
//! Also the command's failure type and the exit status it maps to.

pub mod blockdev;
pub mod lock;

use std::cell::Cell;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use blockfs::{Attr, DirEntry, FileDevice, FileSystem, FileType, MountOptions};

use lock::{Access, OpenError};

/// Every subcommand's --help ends with this.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  the operation failed, or some entries were skipped (each is named in a warning)
  2  usage error
  3  the image is in use (by another blockfs command or a mount)";

#[derive(Debug)]
pub enum Failure {
    /// A problem with the image, a path in it or a host file; `place` is
    /// `IMAGE`, `IMAGE: PATH` or a host path.
    At { place: String, message: String },
    /// Writing to standard output failed.
    Output(io::Error),
    /// Another process holds the image's lock.
    InUse(PathBuf),
}

impl Failure {
    pub fn at(place: impl fmt::Display, message: impl fmt::Display) -> Self {
        Failure::At { place: place.to_string(), message: message.to_string() }
    }

    /// About a host file.
    pub fn host(path: &Path, error: impl fmt::Display) -> Self {
        Failure::at(path.display(), error)
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::InUse(_) => 3,
            Failure::At { .. } | Failure::Output(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::At { place, message } => write!(f, "{place}: {message}"),
            Failure::Output(error) => write!(f, "standard output: {error}"),
            Failure::InUse(image) => write!(f, "{}: {}", image.display(), OpenError::InUse),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Output(error)
    }
}

/// A mounted image and the path it was opened from.
pub struct Image {
    pub path: PathBuf,
    pub fs: FileSystem<FileDevice>,
    /// Entries skipped with a warning; any makes the command fail at the end.
    skipped: Cell<usize>,
}

impl Image {
    /// Mounts read-only under a shared lock.
    pub fn open(path: &Path) -> Result<Self, Failure> {
        Self::mount(path, Access::Read)
    }

    /// A reader that finds the image locked by a writer (a read-write
    /// mount, or a command changing it) reads it anyway, without a lock:
    /// the read-only mount replays the journal in memory, so it sees the
    /// last committed state, and says so.
    fn mount(path: &Path, access: Access) -> Result<Self, Failure> {
        let device = match (lock::open_image(path, access), access) {
            (Err(OpenError::InUse), Access::Read) => {
                eprintln!(
                    "blockfs: {}: image is in use (mounted read-write or being changed); \
                     showing its last committed state",
                    path.display()
                );
                lock::open_unlocked(path)
            }
            (opened, _) => opened,
        }
        .map_err(|error| match error {
            OpenError::InUse => Failure::InUse(path.to_owned()),
            OpenError::Io(error) => Failure::host(path, error),
        })?;
        let options = MountOptions {
            read_only: access == Access::Read,
            // Copying a file out is not an access worth recording.
            relatime: false,
            // Like `debugfs -w`, an edit by a host tool is not a mount.
            record_mount: false,
            ..MountOptions::default()
        };
        let fs = FileSystem::mount(device, options).map_err(|error| Failure::host(path, error))?;
        Ok(Image { path: path.to_owned(), fs, skipped: Cell::new(0) })
    }

    /// Runs `command` on the image opened for `access`, then closes it:
    /// a writer unmounts whether or not the command succeeded, so what
    /// it did is committed and the image is marked clean.
    pub fn with<T>(
        path: &Path,
        access: Access,
        command: impl FnOnce(&Image) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let image = Self::mount(path, access)?;
        let result = command(&image);
        let Image { path, fs, skipped } = image;
        let unmounted = match fs.is_read_only() {
            true => Ok(()),
            false => fs.unmount().map(drop).map_err(|error| Failure::host(&path, error)),
        };
        let value = match (result, unmounted) {
            (Ok(value), Ok(())) => value,
            (Err(failure), Ok(())) | (Ok(_), Err(failure)) => return Err(failure),
            (Err(failure), Err(also)) => {
                eprintln!("blockfs: {also}");
                return Err(failure);
            }
        };
        match skipped.get() {
            0 => Ok(value),
            1 => Err(Failure::host(&path, "1 entry skipped (see the warning above)")),
            count => Err(Failure::host(&path, format!("{count} entries skipped (see the warnings above)"))),
        }
    }

    /// Refuses to replace the image file itself with a copy's output.
    pub fn refuse_to_overwrite(&self, output: &Path) -> Result<(), Failure> {
        let identity = |path: &Path| fs::metadata(path).map(|m| (m.dev(), m.ino()));
        match (identity(&self.path), identity(output)) {
            (Ok(image), Ok(out)) if image == out => Err(Failure::host(output, "is the image itself")),
            _ => Ok(()),
        }
    }

    /// A failure about `inner` (a path in the image).
    pub fn fail(&self, inner: &[u8], error: impl fmt::Display) -> Failure {
        Failure::at(format_args!("{}: {}", self.path.display(), String::from_utf8_lossy(inner)), error)
    }

    /// Reports an entry the command skips and carries on without.
    pub fn warn(&self, inner: &[u8], message: impl fmt::Display) {
        eprintln!("blockfs: {}", self.fail(inner, message));
        self.skipped.set(self.skipped.get() + 1);
    }

    pub fn attr_at(&self, path: &[u8], follow_last: bool) -> Result<Attr, Failure> {
        self.fs
            .resolve(path, follow_last)
            .and_then(|ino| self.fs.getattr(ino))
            .map_err(|error| self.fail(path, error))
    }

    /// The directory at `path` (following symlinks, as `cp`, `mv` and
    /// `ln` do for their destination); `None` if nothing or something
    /// else is there.
    pub fn directory_at(&self, path: &[u8]) -> Result<Option<Attr>, Failure> {
        match self.fs.resolve(path, true).and_then(|ino| self.fs.getattr(ino)) {
            Ok(attr) if attr.kind == FileType::Directory => Ok(Some(attr)),
            Ok(_) | Err(blockfs::Error::NotFound) => Ok(None),
            Err(error) => Err(self.fail(path, error)),
        }
    }

    /// Every entry of directory `ino`, `.` and `..` included, in
    /// directory order.
    pub fn entries(&self, ino: u32) -> blockfs::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        self.fs.readdir(ino, 0, &mut |entry, _| {
            entries.push(entry.clone());
            true
        })?;
        Ok(entries)
    }
}
