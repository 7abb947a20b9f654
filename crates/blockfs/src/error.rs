//! The library's one error type. Each variant maps to the errno a POSIX
//! system would give, so the FUSE and CLI edges translate mechanically.

use core::fmt;

use crate::format::geometry::GeometryError;
use crate::format::superblock::SuperblockError;

/// An I/O failure reported by a block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError {
    /// The errno that best describes the failure (EIO when unknown).
    pub errno: i32,
    /// The block being read or written, when known.
    pub block: Option<u32>,
}

impl DeviceError {
    pub const fn eio(block: Option<u32>) -> Self {
        DeviceError { errno: errno::EIO, block }
    }
}

/// The invariant an image broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A block pointer outside the data area.
    BlockOutOfRange(u32),
    /// A directory entry names an inode past the usable inodes.
    InodeOutOfRange(u32),
    /// A directory entry names an inode that is free.
    EntryToFreeInode(u32),
    /// The inode's mode has no known file type.
    BadFileType(u16),
    /// A directory record runs past its block or the directory's size.
    DirEntryCrossesBlock { offset: u32 },
    /// A directory record's name is longer than the record.
    DirEntryNameOverflow { offset: u32 },
    /// A directory has no valid `.`/`..` entries.
    DirMissingDots,
    /// `size` disagrees with what the inode can hold.
    BadSize(u32),
    /// A symlink target longer than allowed.
    SymlinkTooLong(u32),
    /// Walking `..` did not reach the root within the inode count.
    DirectoryLoop,
    /// The journal's superblock or a committed transaction is unusable.
    BadJournal,
    /// A block freed twice in one transaction.
    DoubleFree(u32),
    /// The orphan chain loops or leaves the inode table.
    BadOrphanChain,
    /// The device is shorter than the image the superblock describes (a
    /// truncated image file, or the wrong device).
    DeviceTooShort { image_blocks: u32, device_blocks: u32 },
    /// The root directory's inode is free (no links).
    RootNotInUse,
}

/// Why an image may be read but not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// An extension record of a version this driver does not know.
    ExtensionVersion(u16),
    /// Incompatible feature bits this driver does not know.
    IncompatFeatures(u32),
    /// A resize was interrupted: a read-write mount (or `fsck-blockfs -p`,
    /// or `blockfs resize IMAGE`) must finish it before the image is read.
    ResizeInProgress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    Io(DeviceError),
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    NameTooLong,
    /// A name containing `/` or NUL, or empty.
    InvalidName,
    InvalidArgument,
    /// Out of data blocks or inodes.
    NoSpace,
    /// The file would grow past 4 GiB − 1.
    FileTooBig,
    TooManyLinks,
    /// A path with too many symbolic links.
    Loop,
    /// Operation not allowed on this object (hard link to a directory…).
    NotPermitted,
    ReadOnly,
    /// The device is not a BlockFS image.
    NotBlockFs(SuperblockError),
    BadGeometry(GeometryError),
    /// The image uses features this implementation cannot write safely.
    Unsupported(Unsupported),
    /// A commit failed on the device: the filesystem turned read-only and
    /// the image holds its last committed state.
    Aborted,
    /// One operation would change more metadata than the journal holds.
    TooLargeForJournal,
    /// An operation needs a block that is not in memory, and was asked
    /// not to read the device itself: the caller rolls it back, reads the
    /// block holding no lock and runs the operation again
    /// (docs/DESIGN.md, "Locking"). [`FileSystem`](crate::FileSystem)
    /// never returns it.
    NotCached(u32),
    Corrupt {
        what: Corruption,
        inode: Option<u32>,
        block: Option<u32>,
    },
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

impl From<DeviceError> for Error {
    fn from(error: DeviceError) -> Self {
        Error::Io(error)
    }
}

impl Error {
    pub fn corrupt(what: Corruption, inode: Option<u32>, block: Option<u32>) -> Self {
        Error::Corrupt { what, inode, block }
    }

    /// The errno a POSIX filesystem gives for this failure.
    pub fn errno(&self) -> i32 {
        use errno::*;
        match self {
            Error::Io(device) => device.errno,
            Error::NotFound => ENOENT,
            Error::Exists => EEXIST,
            Error::NotDir => ENOTDIR,
            Error::IsDir => EISDIR,
            Error::NotEmpty => ENOTEMPTY,
            Error::NameTooLong => ENAMETOOLONG,
            Error::InvalidName | Error::InvalidArgument => EINVAL,
            Error::NoSpace => ENOSPC,
            Error::FileTooBig => EFBIG,
            Error::TooManyLinks => EMLINK,
            Error::Loop => ELOOP,
            Error::NotPermitted => EPERM,
            Error::ReadOnly | Error::Aborted => EROFS,
            Error::TooLargeForJournal => ENOSPC,
            Error::NotCached(_) => EAGAIN,
            Error::NotBlockFs(_) | Error::BadGeometry(_) | Error::Unsupported(_) => EINVAL,
            Error::Corrupt { .. } => EUCLEAN,
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BlockOutOfRange(block) => {
                write!(f, "block pointer {block} outside the data area")
            }
            Corruption::InodeOutOfRange(ino) => {
                write!(f, "entry names inode {ino}, past the inode table")
            }
            Corruption::EntryToFreeInode(ino) => write!(f, "entry names free inode {ino}"),
            Corruption::BadFileType(mode) => write!(f, "mode {mode:#o} has no file type"),
            Corruption::DirEntryCrossesBlock { offset } => {
                write!(f, "directory entry at offset {offset} crosses its block")
            }
            Corruption::DirEntryNameOverflow { offset } => {
                write!(f, "directory entry at offset {offset} has a name longer than its record")
            }
            Corruption::DirMissingDots => write!(f, "directory lacks its . and .. entries"),
            Corruption::BadSize(size) => write!(f, "size {size} does not match the inode"),
            Corruption::SymlinkTooLong(len) => write!(f, "symlink target of {len} bytes"),
            Corruption::DirectoryLoop => write!(f, "directory tree contains a loop"),
            Corruption::BadJournal => write!(f, "journal is damaged (run fsck-blockfs)"),
            Corruption::DoubleFree(block) => write!(f, "block {block} freed twice"),
            Corruption::BadOrphanChain => write!(f, "orphan inode chain is damaged"),
            Corruption::DeviceTooShort { image_blocks, device_blocks } => write!(
                f,
                "image is truncated: the superblock describes {image_blocks} blocks, the device holds {device_blocks}"
            ),
            Corruption::RootNotInUse => write!(f, "the root directory's inode is free"),
        }
    }
}

/// The device failures a user meets, in the words of the C library
/// (this crate has no `strerror`).
fn device_errno_text(errno: i32) -> &'static str {
    match errno {
        errno::ENOSPC => "No space left on device",
        errno::EFBIG => "File too large",
        errno::EISDIR => "Is a directory",
        errno::EROFS => "Read-only file system",
        errno::EPERM => "Operation not permitted",
        _ => "I/O error",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(DeviceError { errno, block }) => {
                write!(f, "{} (errno {errno})", device_errno_text(*errno))?;
                match block {
                    Some(block) => write!(f, " at block {block}"),
                    None => Ok(()),
                }
            }
            Error::NotFound => write!(f, "no such file or directory"),
            Error::Exists => write!(f, "file exists"),
            Error::NotDir => write!(f, "not a directory"),
            Error::IsDir => write!(f, "is a directory"),
            Error::NotEmpty => write!(f, "directory not empty"),
            Error::NameTooLong => write!(f, "name too long (file names: 255 bytes, symlink targets: 4095)"),
            Error::InvalidName => write!(f, "invalid file name"),
            Error::InvalidArgument => write!(f, "invalid argument"),
            Error::NoSpace => write!(f, "no space left on device"),
            Error::FileTooBig => write!(f, "file too large (limit 4 GiB - 1)"),
            Error::TooManyLinks => write!(f, "too many links"),
            Error::Loop => write!(f, "too many levels of symbolic links"),
            Error::NotPermitted => write!(f, "operation not permitted"),
            Error::ReadOnly => write!(f, "read-only filesystem"),
            Error::NotBlockFs(SuperblockError::TooShort) => {
                write!(f, "not a BlockFS image (smaller than one 4096-byte block)")
            }
            Error::NotBlockFs(SuperblockError::BadMagic(magic)) => {
                write!(f, "not a BlockFS image (magic {magic:#010x}, expected 0x424c4b46)")
            }
            Error::NotBlockFs(SuperblockError::BadBlockSize(size)) => {
                write!(f, "unsupported block size {size} (BlockFS uses 4096)")
            }
            Error::NotBlockFs(SuperblockError::BadInodeSize(size)) => {
                write!(f, "unsupported inode size {size} (BlockFS uses 96)")
            }
            Error::BadGeometry(GeometryError::TooSmall { block_count, needed }) => write!(
                f,
                "{block_count} blocks cannot hold the metadata and root directory ({needed} needed)"
            ),
            Error::BadGeometry(GeometryError::NoInodes) => write!(f, "inode count is zero"),
            Error::BadGeometry(GeometryError::FirstDataBlockMismatch { recorded, computed }) => {
                write!(f, "superblock says first data block {recorded}, the layout gives {computed}")
            }
            Error::Unsupported(Unsupported::ExtensionVersion(version)) => write!(
                f,
                "image has an extension record of version {version}, newer than this driver (which writes version 1): \
                 it can be read, not written"
            ),
            Error::Unsupported(Unsupported::ResizeInProgress) => write!(
                f,
                "a resize of this image was interrupted: mount it read-write, or run fsck-blockfs -p or \
                 blockfs resize IMAGE, to finish it"
            ),
            Error::Unsupported(Unsupported::IncompatFeatures(bits)) => write!(
                f,
                "image uses incompatible features {bits:#x} this driver does not know: it can be read, not written"
            ),
            Error::Aborted => write!(
                f,
                "filesystem turned read-only after a device error (the image keeps its last commit; \
                 unmount and run fsck-blockfs)"
            ),
            Error::TooLargeForJournal => write!(f, "operation changes more metadata than the journal holds"),
            Error::NotCached(block) => write!(f, "block {block} is not in memory"),
            Error::Corrupt { what, inode, block } => {
                write!(f, "corrupt filesystem: {what}")?;
                if let Some(ino) = inode {
                    write!(f, " (inode {ino})")?;
                }
                if let Some(block) = block {
                    write!(f, " (block {block})")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Linux errno values, so no_std users need no libc.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EAGAIN: i32 = 11;
    pub const EEXIST: i32 = 17;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const EMLINK: i32 = 31;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOTEMPTY: i32 = 39;
    pub const ELOOP: i32 = 40;
    pub const EUCLEAN: i32 = 117;
}
