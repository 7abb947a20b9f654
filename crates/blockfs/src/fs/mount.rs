//! Opening an image: superblock and extension record, journal recovery,
//! and marking the image mounted.

use crate::cache::BlockCache;
use crate::device::BlockDevice;
use crate::dir::DirIndexes;
use crate::error::{Corruption, Error, Result, Unsupported};
use crate::format::extension::{Extension, ExtensionError, KNOWN_INCOMPAT};
use crate::format::geometry::{Geometry, ROOT_INODE};
use crate::format::inode::{DiskInode, FileType, SYSTEM_INODE_FLAG};
use crate::format::superblock::{Superblock, SuperblockError, STATE_CLEAN, STATE_DIRTY};
use crate::format::{Block, BLOCK_SIZE};
use crate::journal::{Journal, MIN_JOURNAL_BLOCKS};
use crate::volume::Volume;

use super::{MountOptions, VolumeInfo};

/// Block 0, decoded.
struct Head {
    superblock: Superblock,
    extension: Result<Extension, ExtensionError>,
}

fn decode_head(block0: &Block) -> Result<Head> {
    let superblock = Superblock::decode_block(block0).map_err(Error::NotBlockFs)?;
    Ok(Head { superblock, extension: Extension::decode_block(block0) })
}

/// The record's journal run must lie in the data area and be the run its
/// hidden inode maps: a record pointing anywhere else (say, into the inode
/// table) would have commits overwrite metadata.
fn journal_run_is_owned<D: BlockDevice>(
    device: &mut D,
    superblock: &Superblock,
    extension: &Extension,
) -> Result<()> {
    let corrupt = || Error::corrupt(Corruption::BadJournal, Some(extension.journal_inode), None);
    let geometry = Geometry::from_superblock(superblock).map_err(Error::BadGeometry)?;
    let first = extension.journal_first_block;
    let end = first as u64 + extension.journal_blocks as u64;
    let too_small = extension.journal_blocks < MIN_JOURNAL_BLOCKS;
    if too_small || first < geometry.first_data_block() || end > geometry.block_count as u64 {
        return Err(corrupt());
    }
    if extension.journal_inode == 0 || extension.journal_inode >= geometry.usable_inodes() {
        return Err(corrupt());
    }
    let (table_block, slot) = geometry.inode_location(extension.journal_inode);
    let mut block = [0u8; BLOCK_SIZE];
    device.read_block(table_block, &mut block)?;
    let inode = DiskInode::decode_slot(&block, slot);
    let owns_run = inode.flags & SYSTEM_INODE_FLAG != 0
        && inode.direct[0] == first
        && inode.size as u64 == extension.journal_blocks as u64 * BLOCK_SIZE as u64;
    if owns_run {
        Ok(())
    } else {
        Err(corrupt())
    }
}

/// Refuses to write an image whose extension record is newer than this
/// driver: another version, or incompatible features it does not know.
/// Mount and the checker's repairs share this rule.
pub(crate) fn refuse_writes_to_newer(extension: &Result<Extension, ExtensionError>) -> Result<()> {
    match extension {
        Err(ExtensionError::UnsupportedVersion(version)) => {
            Err(Error::Unsupported(Unsupported::ExtensionVersion(*version)))
        }
        Ok(record) if record.incompat_features & !KNOWN_INCOMPAT != 0 => {
            Err(Error::Unsupported(Unsupported::IncompatFeatures(record.incompat_features & !KNOWN_INCOMPAT)))
        }
        _ => Ok(()),
    }
}

/// The device must hold every block the superblock describes.
pub(crate) fn check_device_holds<D: BlockDevice>(device: &D, superblock: &Superblock) -> Result<()> {
    let (image_blocks, device_blocks) = (superblock.block_count, device.block_count());
    if device_blocks < image_blocks {
        return Err(Error::corrupt(Corruption::DeviceTooShort { image_blocks, device_blocks }, None, None));
    }
    Ok(())
}

pub(super) fn open_volume<D: BlockDevice>(
    mut device: D,
    options: &MountOptions,
) -> Result<(Volume<D>, VolumeInfo)> {
    if device.block_count() == 0 {
        return Err(Error::NotBlockFs(SuperblockError::TooShort));
    }
    let mut block0 = [0u8; BLOCK_SIZE];
    device.read_block(0, &mut block0)?;
    crate::resize::finish_interrupted_from(&mut device, &mut block0, options.read_only)?;
    let mut head = decode_head(&block0)?;
    let was_clean = head.superblock.state == STATE_CLEAN;

    // Recovery first: a committed transaction may rewrite block 0 itself.
    let mut journal = None;
    let mut overlay = alloc::collections::BTreeMap::new();
    if let Ok(extension) = head.extension.as_ref().copied() {
        if extension.has_journal() {
            let opened = journal_run_is_owned(&mut device, &head.superblock, &extension).and_then(|()| {
                Journal::open(&device, extension.journal_first_block, extension.journal_blocks)
            });
            match opened {
                Ok(mut opened) => {
                    if let Some(pending) = opened.pending(&device, head.superblock.block_count)? {
                        if options.read_only {
                            overlay = opened.load(&device, &pending)?;
                        } else {
                            opened.replay(&device, &pending)?;
                        }
                        match overlay.get(&0) {
                            Some(replayed) => block0 = **replayed,
                            None => device.read_block(0, &mut block0)?,
                        }
                        head = decode_head(&block0)?;
                    }
                    journal = Some(opened);
                }
                // A damaged journal can still be read around, not written.
                Err(error) if !options.read_only => return Err(error),
                Err(_) => {}
            }
        }
    }

    let Head { superblock, extension } = head;
    if !options.read_only {
        refuse_writes_to_newer(&extension)?;
    }
    let geometry = Geometry::from_superblock(&superblock).map_err(Error::BadGeometry)?;
    check_device_holds(&device, &superblock)?;
    let (extension, extension_problem) = match extension {
        Ok(extension) => (Some(extension), None),
        Err(problem) => (None, Some(problem)),
    };
    // A newer record (another version, or incompat features we do not
    // know) describes an image this driver must not write.

    // Never believe more free space than exists. The older host tool
    // counts the inode numbers that have no table slot as free; a count
    // above the possible maximum (all but the root) is that mistake.
    let mut counted = superblock;
    counted.free_blocks = counted.free_blocks.min(geometry.data_blocks());
    let most_free_inodes = geometry.usable_inodes() - 1;
    if counted.free_inodes > most_free_inodes {
        let homeless = geometry.inode_count - geometry.usable_inodes();
        counted.free_inodes = counted.free_inodes.saturating_sub(homeless).min(most_free_inodes);
    }

    let cache = BlockCache::new(options.cache_blocks).with_runs_from(geometry.first_data_block());
    let index_budget = cache.capacity() * BLOCK_SIZE / 2;
    let mut volume = Volume::new(
        device,
        cache,
        counted,
        extension,
        geometry,
        options.read_only,
        DirIndexes::new(index_budget),
    );
    volume.store_mut().set_overlay(overlay);
    volume.set_journal_inode(extension.filter(Extension::has_journal).map(|e| e.journal_inode));
    let root = volume.begin_read().read_inode(ROOT_INODE)?;
    if root.is_free() {
        return Err(Error::corrupt(Corruption::RootNotInUse, Some(ROOT_INODE), None));
    }
    if root.file_type() != Some(FileType::Directory) {
        return Err(Error::corrupt(Corruption::BadFileType(root.mode), Some(ROOT_INODE), None));
    }
    if !options.read_only {
        if let Some(journal) = journal.as_mut() {
            // Flushed with block 0, before any transaction is logged.
            journal.upgrade(volume.store().device())?;
        }
        volume.change_head(|head| {
            head.superblock.state = STATE_DIRTY;
            if options.record_mount {
                head.superblock.mount_count = head.superblock.mount_count.wrapping_add(1);
                head.superblock.mount_time = (options.clock)() as u64;
            }
        });
        volume.store_superblock()?;
        volume.store().write_back(true)?;
        if let Some(journal) = journal.filter(|_| options.journal) {
            volume.attach_journal(journal);
        }
    }
    let info = VolumeInfo { superblock, geometry, extension, extension_problem, was_clean };
    Ok((volume, info))
}
