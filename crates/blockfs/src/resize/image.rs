//! The old image as the plan needs it: block 0, the bitmap, the inode
//! table, and a walk of block maps that validates every pointer.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::ResizeError;
use crate::bmap::{self, Action, MapWalk, Pointer};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Unsupported};
use crate::format::extension::{Extension, ExtensionError, KNOWN_INCOMPAT};
use crate::format::geometry::Geometry;
use crate::format::inode::{DiskInode, INODES_PER_BLOCK};
use crate::format::superblock::{Superblock, STATE_CLEAN};
use crate::format::{Block, BLOCK_SIZE};
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

/// Block `block` of the old image, on the heap.
pub(super) fn read_boxed<D: BlockDevice>(device: &mut D, block: u32) -> Result<Box<Block>, ResizeError> {
    let mut contents = Box::new([0u8; BLOCK_SIZE]);
    device.read_block(block, &mut contents)?;
    Ok(contents)
}

/// The resizer's side of the shared walk (`bmap::walk_map`): indirect
/// blocks straight from the device, every pointer checked to lie in the
/// data area before it is handed on or followed, nothing changed.
struct CheckedWalk<'w, D> {
    device: &'w mut D,
    geometry: &'w Geometry,
    ino: u32,
    visit: &'w mut dyn FnMut(Pointer) -> Result<(), ResizeError>,
}

impl<D: BlockDevice> MapWalk for CheckedWalk<'_, D> {
    type Error = ResizeError;

    fn visit(&mut self, pointer: Pointer) -> Result<Action, ResizeError> {
        if !self.geometry.is_data_block(pointer.block) {
            let corruption = Corruption::BlockOutOfRange(pointer.block);
            return Err(ResizeError::Fs(Error::corrupt(corruption, Some(self.ino), None)));
        }
        (self.visit)(pointer)?;
        Ok(Action::Keep)
    }

    fn read_indirect(&mut self, pointer: Pointer) -> Result<Option<Box<Block>>, ResizeError> {
        read_boxed(self.device, pointer.block).map(Some)
    }

    fn leave_indirect(&mut self, _: Pointer, _: Box<Block>, _: bool) -> Result<Action, ResizeError> {
        Ok(Action::Keep)
    }
}

/// Calls `visit` for every non-zero pointer of `inode`'s block map (the
/// inode must hold data blocks), after checking it lies in the data area.
pub(super) fn walk_map<D: BlockDevice>(
    device: &mut D,
    geometry: &Geometry,
    ino: u32,
    inode: &DiskInode,
    visit: &mut dyn FnMut(Pointer) -> Result<(), ResizeError>,
) -> Result<(), ResizeError> {
    bmap::walk_map(&mut CheckedWalk { device, geometry, ino, visit }, &mut { *inode })
}
