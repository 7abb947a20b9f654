//! Why an archive could not become a root filesystem. Errors about one
//! member name its path as stored in the archive.

use alloc::vec::Vec;
use core::fmt;

use crate::error::Error;

use super::tar::TarError;

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The archive itself is malformed.
    Tar(TarError),
    /// A path (or hard-link target) with a `..` component.
    UnsafePath { path: Vec<u8> },
    /// A path with a name longer than 255 bytes.
    NameTooLong { path: Vec<u8> },
    /// A regular file past BlockFS's 4 GiB − 1 limit.
    FileTooBig { path: Vec<u8>, size: u64 },
    /// A symlink target longer than BlockFS stores (4095 bytes).
    SymlinkTargetTooLong { path: Vec<u8>, len: usize },
    /// A uid or gid above 65535 under [`LargeIds::Reject`](super::LargeIds).
    IdTooLarge { path: Vec<u8>, id: u64 },
    /// A device number an inode cannot encode (major > 4095 or minor > 2^20 − 1).
    DeviceNumberTooLarge { path: Vec<u8>, major: u32, minor: u32 },
    /// A hard link to a path that no earlier member created.
    HardLinkTargetMissing { path: Vec<u8>, target: Vec<u8> },
    /// The contents need a RAM image larger than the configured limit.
    ImageTooLarge { needed: u64, limit: u64 },
    /// Formatting or mounting the RAM image failed.
    Image(Error),
    /// Creating or filling the member at `path` failed.
    Filesystem { path: Vec<u8>, error: Error },
    /// Events ended (or a new member began) before all of a file's data.
    IncompleteFile { path: Vec<u8> },
    /// File data arrived with no regular file to hold it.
    StrayData,
    /// A member of a type that is not created (GNU sparse file, volume
    /// label, vendor type), by its typeflag.
    UnsupportedType { path: Vec<u8>, typeflag: u8 },
}

impl LoadError {
    /// Whether the error ends an extraction even when failed members are
    /// skipped: the archive itself is malformed, or the image is full,
    /// failing or damaged, so no later member would fare better.
    pub fn is_fatal(&self) -> bool {
        match self {
            LoadError::Filesystem { error, .. } => matches!(
                error,
                Error::NoSpace
                    | Error::Io(_)
                    | Error::Corrupt { .. }
                    | Error::ReadOnly
                    | Error::Unsupported(_)
            ),
            LoadError::Tar(_)
            | LoadError::ImageTooLarge { .. }
            | LoadError::Image(_)
            | LoadError::IncompleteFile { .. }
            | LoadError::StrayData => true,
            LoadError::UnsafePath { .. }
            | LoadError::NameTooLong { .. }
            | LoadError::FileTooBig { .. }
            | LoadError::SymlinkTargetTooLong { .. }
            | LoadError::IdTooLarge { .. }
            | LoadError::DeviceNumberTooLarge { .. }
            | LoadError::HardLinkTargetMissing { .. }
            | LoadError::UnsupportedType { .. } => false,
        }
    }
}

impl From<TarError> for LoadError {
    fn from(error: TarError) -> Self {
        LoadError::Tar(error)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Tar(error) => write!(f, "{error}"),
            LoadError::UnsafePath { path } => {
                write!(f, "{}: path leaves the root (has a .. component)", path.escape_ascii())
            }
            LoadError::NameTooLong { path } => {
                write!(f, "{}: a name in the path is longer than 255 bytes", path.escape_ascii())
            }
            LoadError::FileTooBig { path, size } => {
                write!(f, "{}: {size} bytes is past the 4 GiB - 1 file size limit", path.escape_ascii())
            }
            LoadError::SymlinkTargetTooLong { path, len } => {
                write!(
                    f,
                    "{}: symlink target of {len} bytes is over the 4095-byte limit",
                    path.escape_ascii()
                )
            }
            LoadError::IdTooLarge { path, id } => {
                write!(f, "{}: owner id {id} does not fit 16 bits", path.escape_ascii())
            }
            LoadError::DeviceNumberTooLarge { path, major, minor } => {
                write!(f, "{}: device number {major}:{minor} cannot be stored", path.escape_ascii())
            }
            LoadError::HardLinkTargetMissing { path, target } => write!(
                f,
                "{}: hard link to {}, which the archive did not create before it",
                path.escape_ascii(),
                target.escape_ascii()
            ),
            LoadError::ImageTooLarge { needed, limit } => {
                write!(f, "archive needs a {needed}-byte RAM image, over the {limit}-byte limit")
            }
            LoadError::Image(error) => write!(f, "cannot build the RAM filesystem: {error}"),
            LoadError::Filesystem { path, error } => write!(f, "{}: {error}", path.escape_ascii()),
            LoadError::IncompleteFile { path } => {
                write!(f, "{}: archive ended before all of the file's data", path.escape_ascii())
            }
            LoadError::StrayData => write!(f, "file data with no file to hold it"),
            LoadError::UnsupportedType { path, typeflag } => {
                write!(
                    f,
                    "{}: members of type '{}' are not supported",
                    path.escape_ascii(),
                    typeflag.escape_ascii()
                )
            }
        }
    }
}

// Display already includes the inner error, so no `source` chain.
#[cfg(feature = "std")]
impl std::error::Error for LoadError {}
