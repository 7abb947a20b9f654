//! The old image as the plan needs it: block 0, the bitmap, the inode
//! table, and a walk of block maps that validates every pointer.

use alloc::vec;
use alloc::vec::Vec;

use super::ResizeError;
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Unsupported};
use crate::format::extension::{Extension, ExtensionError, KNOWN_INCOMPAT};
use crate::format::geometry::Geometry;
use crate::format::inode::{DiskInode, INODES_PER_BLOCK};
use crate::format::superblock::{Superblock, STATE_CLEAN};
use crate::format::{le_u32, Block, BLOCK_SIZE, POINTERS_PER_BLOCK};
use crate::journal::Journal;

pub(super) struct OldImage {
    pub block0: Block,
    pub superblock: Superblock,
    pub extension: Option<Extension>,
    pub geometry: Geometry,
    /// The bitmap's bytes (`B` blocks).
    pub bitmap: Vec<u8>,
    /// Every usable inode, by number.
    pub inodes: Vec<DiskInode>,
}

impl OldImage {
    pub fn read<D: BlockDevice>(device: &mut D) -> Result<OldImage, ResizeError> {
        if device.block_count() == 0 {
            return Err(Error::NotBlockFs(crate::format::superblock::SuperblockError::TooShort).into());
        }
        let mut block0 = [0u8; BLOCK_SIZE];
        device.read_block(0, &mut block0)?;
        let superblock = Superblock::decode_block(&block0).map_err(Error::NotBlockFs)?;
        let geometry = Geometry::from_superblock(&superblock).map_err(Error::BadGeometry)?;
        if device.block_count() < superblock.block_count {
            return Err(ResizeError::DeviceTooSmall {
                needed: superblock.block_count,
                device: device.block_count(),
            });
        }
        let extension = match Extension::decode_block(&block0) {
            Ok(extension) => Some(extension),
            Err(ExtensionError::UnsupportedVersion(version)) => {
                return Err(Error::Unsupported(Unsupported::ExtensionVersion(version)).into())
            }
            // A missing or damaged record: a plain version 1 image.
            Err(_) => None,
        };
        if let Some(extension) = &extension {
            // A committed resize awaits its replay: `finish_interrupted`
            // (or any read-write mount) must run first.
            if extension.resize_pending() {
                return Err(ResizeError::NotClean);
            }
            if extension.incompat_features & !KNOWN_INCOMPAT != 0 {
                return Err(ResizeError::UnknownFeatures(extension.incompat_features));
            }
            if extension.orphan_head != 0 {
                return Err(ResizeError::NotClean);
            }
        }
        if superblock.state != STATE_CLEAN {
            return Err(ResizeError::NotClean);
        }
        if let Some(extension) = extension.filter(Extension::has_journal) {
            let journal = Journal::open(device, extension.journal_first_block, extension.journal_blocks)?;
            if journal.pending(device, superblock.block_count)?.is_some() {
                return Err(ResizeError::NotClean);
            }
        }

        let mut bitmap = vec![0u8; geometry.bitmap_blocks as usize * BLOCK_SIZE];
        device.read_blocks(geometry.first_bitmap_block(), &mut bitmap)?;
        let usable = geometry.usable_inodes();
        let mut inodes = Vec::with_capacity(usable as usize);
        let mut table = vec![0u8; 64 * BLOCK_SIZE];
        let mut block = geometry.first_inode_table_block();
        let end = geometry.first_data_block();
        while block < end && (inodes.len() as u32) < usable {
            let run = (end - block).min(64);
            let bytes = &mut table[..run as usize * BLOCK_SIZE];
            device.read_blocks(block, bytes)?;
            for chunk in bytes.chunks_exact(BLOCK_SIZE) {
                let chunk: &Block = chunk.try_into().expect("whole blocks");
                for slot in 0..INODES_PER_BLOCK as usize {
                    if (inodes.len() as u32) < usable {
                        inodes.push(DiskInode::decode_slot(chunk, slot));
                    }
                }
            }
            block += run;
        }
        Ok(OldImage { block0, superblock, extension, geometry, bitmap, inodes })
    }

    /// Whether the old bitmap marks `block` used (false past the old end).
    pub fn bitmap_used(&self, block: u32) -> bool {
        block < self.geometry.block_count && self.bitmap[block as usize / 8] & (1 << (block % 8)) != 0
    }

    pub fn journal_inode(&self) -> Option<u32> {
        self.extension.filter(Extension::has_journal).map(|e| e.journal_inode)
    }
}

/// What a pointer of a block map points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pointer {
    /// A data block: logical block `n` of the file.
    Data(u64),
    /// An indirect block (single, double, or a double's second level).
    Map,
}

/// Calls `visit` for every non-zero pointer of `inode`'s block map (the
/// inode must hold data blocks), after checking it lies in the data area.
pub(super) fn walk_map<D: BlockDevice>(
    device: &mut D,
    geometry: &Geometry,
    ino: u32,
    inode: &DiskInode,
    visit: &mut dyn FnMut(Pointer, u32) -> Result<(), ResizeError>,
) -> Result<(), ResizeError> {
    let check = |block: u32| {
        if geometry.is_data_block(block) {
            Ok(())
        } else {
            Err(ResizeError::Fs(Error::corrupt(Corruption::BlockOutOfRange(block), Some(ino), None)))
        }
    };
    const DIRECT: u64 = crate::format::inode::DIRECT_BLOCKS as u64;
    const PER: u64 = POINTERS_PER_BLOCK as u64;
    for (index, &pointer) in inode.direct.iter().enumerate() {
        if pointer != 0 {
            check(pointer)?;
            visit(Pointer::Data(index as u64), pointer)?;
        }
    }
    let mut block = [0u8; BLOCK_SIZE];
    if inode.indirect != 0 {
        check(inode.indirect)?;
        visit(Pointer::Map, inode.indirect)?;
        device.read_block(inode.indirect, &mut block)?;
        for index in 0..POINTERS_PER_BLOCK {
            let pointer = le_u32(&block, index * 4);
            if pointer != 0 {
                check(pointer)?;
                visit(Pointer::Data(DIRECT + index as u64), pointer)?;
            }
        }
    }
    if inode.double_indirect != 0 {
        check(inode.double_indirect)?;
        visit(Pointer::Map, inode.double_indirect)?;
        let mut top = [0u8; BLOCK_SIZE];
        device.read_block(inode.double_indirect, &mut top)?;
        for outer in 0..POINTERS_PER_BLOCK {
            let middle = le_u32(&top, outer * 4);
            if middle == 0 {
                continue;
            }
            check(middle)?;
            visit(Pointer::Map, middle)?;
            device.read_block(middle, &mut block)?;
            for inner in 0..POINTERS_PER_BLOCK {
                let pointer = le_u32(&block, inner * 4);
                if pointer != 0 {
                    check(pointer)?;
                    let logical = DIRECT + PER + outer as u64 * PER + inner as u64;
                    visit(Pointer::Data(logical), pointer)?;
                }
            }
        }
    }
    Ok(())
}
