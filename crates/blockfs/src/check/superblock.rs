//! Block 0: the superblock decides whether there is anything to check at
//! all (magic, sizes, a layout that fits the device), the extension record
//! whether repairs are allowed, and at the end the corrected counters are
//! written back here.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

use super::context::Checker;
use super::journal::{self, Recovery};
use super::report::{Problem, ProblemKind};
use super::RepairMode;
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::extension::{Extension, ExtensionError, KNOWN_INCOMPAT};
use crate::format::geometry::{Geometry, GeometryError, ROOT_INODE};
use crate::format::inode::DiskInode;
use crate::format::superblock::{Superblock, STATE_CLEAN};
use crate::format::{Block, BLOCK_SIZE};
use crate::fs::mount::{check_device_holds, refuse_writes_to_newer};

/// What block 0 says, once it is known to describe a checkable image.
pub(super) struct Volume {
    pub geometry: Geometry,
    pub superblock: Superblock,
    pub extension: Result<Extension, ExtensionError>,
    pub recovery: Recovery,
    /// Blocks of a committed journal transaction read through.
    pub overlay: BTreeMap<u32, Box<Block>>,
}

/// Reads block 0, brings the journal's committed transaction in, and
/// settles the layout. Fails when there is no BlockFS image, when repairs
/// are asked of an image this checker must not write, when the counts
/// cannot describe an image, when the device is shorter than the image, or
/// when `first_data_block` disagrees with the layout and the root
/// directory does not confirm which one is right.
pub(super) fn open<D: BlockDevice>(device: &mut D, repair: RepairMode) -> Result<Volume> {
    if device.block_count() == 0 {
        return Err(Error::NotBlockFs(crate::format::superblock::SuperblockError::TooShort));
    }
    let mut block0 = [0u8; BLOCK_SIZE];
    device.read_block(0, &mut block0)?;
    let superblock = Superblock::decode_block(&block0).map_err(Error::NotBlockFs)?;
    let extension = Extension::decode_block(&block0);
    if repair != RepairMode::None {
        refuse_writes_to_newer(&extension)?;
    }
    let (recovery, overlay) = journal::recover(device, &superblock, &extension, repair)?;
    // The transaction may have rewritten block 0 itself.
    match overlay.get(&0) {
        Some(copy) => block0 = **copy,
        None => device.read_block(0, &mut block0)?,
    }
    let superblock = Superblock::decode_block(&block0).map_err(Error::NotBlockFs)?;
    let geometry =
        Geometry::new(superblock.block_count, superblock.inode_count).map_err(Error::BadGeometry)?;
    check_device_holds(device, &superblock)?;
    let computed = geometry.first_data_block();
    if superblock.first_data_block != computed && !root_starts_at(device, &geometry, &overlay)? {
        return Err(Error::BadGeometry(GeometryError::FirstDataBlockMismatch {
            recorded: superblock.first_data_block,
            computed,
        }));
    }
    Ok(Volume { geometry, superblock, extension: Extension::decode_block(&block0), recovery, overlay })
}

/// Whether the root directory's first block is the first data block the
/// counts give: `format` puts it there and directories never move their
/// first block, so this tells a damaged `first_data_block` from damaged
/// counts.
fn root_starts_at<D: BlockDevice>(
    device: &mut D,
    geometry: &Geometry,
    overlay: &BTreeMap<u32, Box<Block>>,
) -> Result<bool> {
    let (block, slot) = geometry.inode_location(ROOT_INODE);
    let mut table: Block = [0u8; BLOCK_SIZE];
    match overlay.get(&block) {
        Some(copy) => table = **copy,
        None => device.read_block(block, &mut table)?,
    }
    Ok(DiskInode::decode_slot(&table, slot).direct[0] == geometry.first_data_block())
}

/// Reports what block 0 holds beyond the layout.
pub(super) fn check<D: BlockDevice>(ck: &mut Checker<'_, D>, volume: &Volume) {
    let recorded = volume.superblock.first_data_block;
    let computed = volume.geometry.first_data_block();
    if recorded != computed {
        let kind = ProblemKind::FirstDataBlockMismatch { recorded, computed };
        // Fixed when block 0 is written back at the end.
        let fix = ck.may_fix(&kind);
        ck.record(Problem::new(kind).block(0), fix);
    }
    let kind = match volume.extension {
        Ok(record) if record.incompat_features & !KNOWN_INCOMPAT != 0 => {
            ProblemKind::UnknownIncompatFeatures(record.incompat_features & !KNOWN_INCOMPAT)
        }
        Ok(_) => return,
        Err(ExtensionError::Missing) => ProblemKind::ExtensionMissing,
        Err(error) => ProblemKind::ExtensionInvalid(error),
    };
    ck.record(Problem::new(kind), false);
}

/// A free counter is wrong when it disagrees with what it summarises as
/// found (the bitmap, the inode table); either way repairs set it to what
/// is free now, after the bitmap rebuild and the repairs' own changes.
fn fix_counter<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    kind: ProblemKind,
    field: &mut u32,
    found: u32,
    now: u32,
) {
    let fix = ck.may_fix(&kind);
    if *field != found {
        ck.record(Problem::new(kind), fix);
    }
    if fix {
        *field = now;
    }
}

/// The free counters: as the superblock should now hold them, and as the
/// bitmap and inode table held them when found.
pub(super) struct Counters {
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub marked_free_blocks: u32,
    pub found_free_inodes: u32,
}

/// Compares the superblock's counters and state with what the check
/// found, and writes block 0 back (with the extension record as repairs
/// left it, and the check time) when repairing changed anything in it.
pub(super) fn write_back<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    volume: &Volume,
    counters: Counters,
    check_time: Option<u64>,
) -> Result<()> {
    let mut block0 = ck.read_new(0)?;
    let mut sb = volume.superblock;
    let found = counters.marked_free_blocks;
    let kind = ProblemKind::FreeBlocksCount { recorded: sb.free_blocks, counted: found };
    fix_counter(ck, kind, &mut sb.free_blocks, found, counters.free_blocks);
    let found = counters.found_free_inodes;
    let homeless = volume.geometry.inode_count - volume.geometry.usable_inodes();
    let kind = if homeless > 0 && sb.free_inodes as u64 == found as u64 + homeless as u64 {
        // The older host tool's count, which includes the inode numbers
        // the table has no slot for: expected in its images.
        ProblemKind::HomelessInodesCounted { count: homeless }
    } else {
        ProblemKind::FreeInodesCount { recorded: sb.free_inodes, counted: found }
    };
    fix_counter(ck, kind, &mut sb.free_inodes, found, counters.free_inodes);
    let computed = volume.geometry.first_data_block();
    let kind = ProblemKind::FirstDataBlockMismatch { recorded: sb.first_data_block, computed };
    if ck.may_fix(&kind) {
        // Reported by `check` at the start.
        sb.first_data_block = computed;
    }
    if sb.state != STATE_CLEAN {
        // Clean only if nothing is left to fix.
        let fix = ck.may_fix(&ProblemKind::NotCleanlyUnmounted) && ck.report.unfixed == 0;
        ck.record(Problem::new(ProblemKind::NotCleanlyUnmounted), fix);
        if fix {
            sb.state = STATE_CLEAN;
        }
    }
    let before = *block0;
    sb.encode_block(&mut block0);
    if let Some(mut record) = ck.extension {
        if let Some(time) = check_time {
            record.last_check_time = time;
        }
        record.encode_block(&mut block0);
    }
    if ck.repair != RepairMode::None && *block0 != before {
        ck.write_block(0, &block0)?;
    }
    Ok(())
}
