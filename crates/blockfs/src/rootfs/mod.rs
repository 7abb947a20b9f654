//! The root filesystem at boot: probe block 0 of the boot disk for the
//! BlockFS magic and mount it as a persistent root, or else read the disk
//! as a TAR archive and build a volatile root in RAM from it
//! (docs/DESIGN.md §7).
//!
//! The member-creation engine ([`Extractor`]) works on any mounted
//! filesystem, so host tools extract archives into images with the same
//! rules as the boot loader.
//!
//! The library prints nothing; the kernel and host tools print
//! [`BLOCKFS_MESSAGE`] or [`TAR_MESSAGE`] as the seed's boot log shows.

use alloc::vec;

use crate::device::BlockDevice;
use crate::error::Error;
use crate::format::superblock::MAGIC;
use crate::format::{Block, BLOCK_SIZE};

mod error;
mod extract;
mod load;
mod path;
mod plan;
pub mod tar;

pub use error::LoadError;
pub use extract::{ExtractOptions, Extractor, LargeIds, OnMemberError, Skipped};
pub use load::{load_tar, LoadOptions, Loader, DEFAULT_MAX_IMAGE_BYTES};
pub use path::normalize;
pub use plan::{Layout, Needs, Plan};

/// Printed when block 0 carries the BlockFS magic.
pub const BLOCKFS_MESSAGE: &str = "[ROOTFS] BlockFS magic detected -- mounting persistent root";
/// Printed when the disk is loaded as a TAR archive.
pub const TAR_MESSAGE: &str = "[ROOTFS] Loading TAR rootfs from virtio-blk...";

/// What the boot disk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// Mount it as the persistent root.
    BlockFs,
    /// Load it into a RAM filesystem ([`load_tar`]).
    Tar,
    /// Neither: not a BlockFS image, and its first record is no tar header.
    Unknown,
}

impl Detected {
    /// The boot-log line for this outcome, if it has one.
    pub fn message(self) -> Option<&'static str> {
        match self {
            Detected::BlockFs => Some(BLOCKFS_MESSAGE),
            Detected::Tar => Some(TAR_MESSAGE),
            Detected::Unknown => None,
        }
    }
}

/// Classifies the first block of a disk: the first four bytes as a
/// little-endian u32 equal to the BlockFS magic, else a tar archive's
/// first record (a valid header, or all zeros for an empty archive).
pub fn detect_bytes(first_block: &[u8]) -> Detected {
    match first_block.first_chunk::<4>() {
        Some(magic) if u32::from_le_bytes(*magic) == MAGIC => Detected::BlockFs,
        _ if tar::looks_like_archive(first_block) => Detected::Tar,
        _ => Detected::Unknown,
    }
}

/// Reads block 0 (the first 4096 bytes) of `device` and classifies it. An
/// empty device is [`Detected::Unknown`].
pub fn detect<D: BlockDevice>(device: &mut D) -> Result<Detected, Error> {
    if device.block_count() == 0 {
        return Ok(Detected::Unknown);
    }
    // On the heap: a 4 KiB array on a kernel stack is unwelcome.
    let mut block = vec![0u8; BLOCK_SIZE];
    let buffer: &mut Block = block.as_mut_slice().try_into().expect("exactly one block");
    device.read_block(0, buffer)?;
    Ok(detect_bytes(&block))
}
