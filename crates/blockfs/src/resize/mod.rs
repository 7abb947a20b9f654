//! Offline resize: grow or shrink an image's block count and inode count
//! in place, ending in exactly the version 1 layout of the new geometry.
//!
//! Power-loss story ("old geometry or new geometry, never between"):
//!
//! 1. **Plan** (reads only): the old image's block 0, bitmap, inode table
//!    and block maps; the new geometry; the data blocks in the way (in the
//!    new metadata area or past the new end) and their new homes, which are
//!    free in the old state and inside the new data area; inodes past the
//!    new table and their new numbers; a new journal run if the journal is
//!    in the way; and every metadata block of the new state that differs
//!    from what is on disk. A resize that does not fit is refused here,
//!    before any write.
//! 2. **Copy** the moved blocks whose contents do not change to their new
//!    homes, and write the relocated journal's empty run; flush. Only
//!    blocks the old state leaves free are written.
//! 3. **Log** the new metadata (block 0 included) as one transaction in
//!    the journal record format ([`crate::format::journal`]) into a scratch run
//!    that is free in the old state and unused by the new one; flush.
//! 4. **Commit**: rewrite block 0 as the *old* superblock with an
//!    extension record naming the log and the incompatible feature
//!    [`FEATURE_RESIZE_LOG`](crate::format::extension::FEATURE_RESIZE_LOG);
//!    flush. Before this flush lands the image is the old one, untouched
//!    where it is used.
//! 5. **Replay**: write every logged block home except block 0, flush, then
//!    block 0 (the new superblock, no resize record), flush.
//!
//! A crash after 4 leaves block 0 naming the log; [`finish_interrupted`],
//! called first thing by mount and by a repairing check, replays it again
//! (idempotent: the log is neither a home block nor a copy target). A
//! read-only open of such an image is refused, since it must write to
//! finish. The caller extends a regular-file image before
//! [`Plan::execute`] and truncates it after.

mod bits;
mod build;
mod image;
mod log;
mod plan;

use core::fmt;

use crate::error::{DeviceError, Error};
use crate::format::geometry::GeometryError;

pub use log::{finish_interrupted, finish_interrupted_from};
pub use plan::{plan, Plan, Summary};

/// The geometry a resize aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub block_count: u32,
    pub inode_count: u32,
}

/// Why a resize was refused or failed. Every refusal happens before the
/// first write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResizeError {
    /// Reading or writing the image failed, or it is corrupt.
    Fs(Error),
    /// The image was not unmounted cleanly, its journal holds a
    /// transaction, orphans await freeing, or an interrupted resize awaits
    /// [`finish_interrupted`]: mount and unmount it first.
    NotClean,
    /// The extension record sets incompatible features this code does not know.
    UnknownFeatures(u32),
    /// The new counts describe no valid layout.
    BadGeometry(GeometryError),
    /// The data does not fit the new size: `needed` data blocks are in
    /// use, the new geometry has `available`.
    DataDoesNotFit { needed: u32, available: u32 },
    /// More inodes are in use than the new table has slots.
    InodesDoNotFit { used: u32, usable: u32 },
    /// No contiguous free run of `blocks` for the relocated journal.
    NoRoomForJournal { blocks: u32 },
    /// No contiguous run of `blocks` free in both geometries for the
    /// resize's redo log.
    NoRoomForLog { blocks: u32 },
    /// The device holds `device` blocks, the resize needs `needed`.
    DeviceTooSmall { needed: u32, device: u32 },
    /// The bitmap leaves a block free that inode `inode` uses.
    BitmapDisagrees { inode: u32, block: u32 },
    /// Inodes must be renumbered, and this directory has a block that
    /// does not parse in the block layout (the older tool's straddling
    /// layout): `fsck-blockfs -p` rewrites it.
    LegacyDirectory { inode: u32 },
}

impl From<Error> for ResizeError {
    fn from(error: Error) -> Self {
        ResizeError::Fs(error)
    }
}

impl From<DeviceError> for ResizeError {
    fn from(error: DeviceError) -> Self {
        ResizeError::Fs(Error::Io(error))
    }
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResizeError::Fs(error) => write!(f, "{error}"),
            ResizeError::NotClean => write!(
                f,
                "image not clean (not unmounted; journal, orphans or an interrupted resize pending): mount and unmount it first"
            ),
            ResizeError::UnknownFeatures(bits) => {
                write!(f, "image uses unknown incompatible features {bits:#x}")
            }
            ResizeError::BadGeometry(error) => write!(f, "{}", Error::BadGeometry(*error)),
            ResizeError::DataDoesNotFit { needed, available } => write!(
                f,
                "data does not fit: {needed} data blocks in use, the new size has {available} ({} more needed, {} KiB)",
                needed.saturating_sub(*available),
                needed.saturating_sub(*available) as u64 * 4
            ),
            ResizeError::InodesDoNotFit { used, usable } => write!(
                f,
                "inodes do not fit: {used} in use, the new inode table has {usable} slots ({} more needed)",
                used.saturating_sub(*usable)
            ),
            ResizeError::NoRoomForJournal { blocks } => {
                write!(f, "no contiguous run of {blocks} free blocks to move the journal to")
            }
            ResizeError::NoRoomForLog { blocks } => write!(
                f,
                "no contiguous run of {blocks} blocks free in both geometries for the resize log; free some space"
            ),
            ResizeError::DeviceTooSmall { needed, device } => {
                write!(f, "the device holds {device} blocks, the resize needs {needed}")
            }
            ResizeError::BitmapDisagrees { inode, block } => write!(
                f,
                "bitmap marks block {block} free but inode {inode} uses it (run fsck-blockfs -p)"
            ),
            ResizeError::LegacyDirectory { inode } => write!(
                f,
                "directory inode {inode} is in the older tool's straddling layout; run fsck-blockfs -p first"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ResizeError {}
