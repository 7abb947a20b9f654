//! Steps 2–5: copies, redo log, commit, replay; and finishing a resize a
//! crash interrupted.

use alloc::vec::Vec;

use super::plan::{Plan, Summary};
use super::ResizeError;
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result, Unsupported};
use crate::format::extension::Extension;
use crate::format::geometry::Geometry;
use crate::format::journal::TARGETS_PER_DESCRIPTOR;
use crate::format::superblock::Superblock;
use crate::format::{Block, BLOCK_SIZE};
use crate::journal::Journal;

/// Blocks copied per device request.
const RUN: usize = 64;

impl Plan {
    /// Writes the planned resize to `device`, which must hold at least
    /// [`Plan::device_blocks_needed`] blocks (extend an image file first).
    /// Once this returns, the image is in the new geometry; the caller may
    /// then truncate an image file to the new size.
    pub fn execute<D: BlockDevice>(self, device: &mut D) -> Result<Summary, ResizeError> {
        let needed = self.device_blocks_needed();
        if device.block_count() < needed {
            return Err(ResizeError::DeviceTooSmall { needed, device: device.block_count() });
        }
        // 2. Blocks that move unchanged, and the relocated journal's empty
        // run: all free in the old state.
        copy_blocks(device, &self.copies)?;
        if let Some((first, length)) = self.new_journal {
            Journal::create(device, first, length)?;
        }
        device.flush()?;

        // 3. The redo log, block 0 first among its targets.
        let mut log = Journal::create(device, self.log_first, self.log_blocks)?;
        let targets: Vec<u32> = core::iter::once(0).chain(self.targets.keys().copied()).collect();
        log.write_transaction(device, &targets, |target| match target {
            0 => Some(self.block0),
            home => self.targets.get(&home).map(|block| **block),
        })?;
        device.flush()?;

        // 4. The commit point.
        device.write_block(0, &self.commit0)?;
        device.flush()?;

        // 5. Replay from memory: the same bytes the log holds.
        let mut run: Vec<u8> = Vec::with_capacity(RUN * BLOCK_SIZE);
        let mut run_start = 0;
        for (&home, block) in &self.targets {
            if !run.is_empty()
                && (home != run_start + (run.len() / BLOCK_SIZE) as u32 || run.len() == RUN * BLOCK_SIZE)
            {
                device.write_blocks(run_start, &run)?;
                run.clear();
            }
            if run.is_empty() {
                run_start = home;
            }
            run.extend_from_slice(&block[..]);
        }
        if !run.is_empty() {
            device.write_blocks(run_start, &run)?;
        }
        device.flush()?;
        device.write_block(0, &self.block0)?;
        device.flush()?;
        Ok(self.summary)
    }
}

/// Copies each `(from, to)` block, in runs where both sides are consecutive.
fn copy_blocks<D: BlockDevice>(device: &mut D, copies: &[(u32, u32)]) -> Result<(), ResizeError> {
    let mut buffer: Vec<u8> = Vec::with_capacity(RUN * BLOCK_SIZE);
    let mut index = 0;
    while index < copies.len() {
        let (from, to) = copies[index];
        let mut length = 1;
        while index + length < copies.len()
            && length < RUN
            && copies[index + length] == (from + length as u32, to + length as u32)
        {
            length += 1;
        }
        buffer.resize(length * BLOCK_SIZE, 0);
        device.read_blocks(from, &mut buffer)?;
        device.write_blocks(to, &buffer)?;
        index += length;
    }
    Ok(())
}

/// Finishes a resize that a crash interrupted after its commit point:
/// replays the redo log named by block 0, which ends by writing the new
/// block 0. Returns whether there was one. Call before anything else reads
/// the image. A `read_only` caller cannot finish it and gets
/// [`Error::Unsupported`]; an image that is not BlockFS is left for the
/// caller to refuse.
pub fn finish_interrupted<D: BlockDevice>(device: &mut D, read_only: bool) -> Result<bool> {
    if device.block_count() == 0 {
        return Ok(false);
    }
    let mut block0 = [0u8; BLOCK_SIZE];
    device.read_block(0, &mut block0)?;
    finish_interrupted_from(device, &mut block0, read_only)
}

/// [`finish_interrupted`] for a caller that has read block 0 already
/// (into `block0`); when a resize is finished, `block0` becomes the new
/// block 0.
pub fn finish_interrupted_from<D: BlockDevice>(
    device: &mut D,
    block0: &mut Block,
    read_only: bool,
) -> Result<bool> {
    if Superblock::decode_block(block0).is_err() {
        return Ok(false);
    }
    let Ok(extension) = Extension::decode_block(block0) else {
        return Ok(false);
    };
    if !extension.resize_pending() {
        return Ok(false);
    }
    if read_only {
        return Err(Error::Unsupported(Unsupported::ResizeInProgress));
    }
    let first = extension.resize_log_first;
    let damaged = || Error::corrupt(Corruption::BadJournal, None, Some(first));
    let log = Journal::open(device, first, extension.resize_log_blocks).map_err(|_| damaged())?;
    let pending = log.pending(device, device.block_count())?.ok_or_else(damaged)?;
    // The copies follow the superblock and the descriptors.
    let first_copy = first + 1 + pending.targets.len().div_ceil(TARGETS_PER_DESCRIPTOR).max(1) as u32;
    let mut block = [0u8; BLOCK_SIZE];
    let mut new_block0: Option<Block> = None;
    for (index, &home) in pending.targets.iter().enumerate() {
        device.read_block(first_copy + index as u32, &mut block)?;
        if home == 0 {
            new_block0 = Some(block);
        } else {
            device.write_block(home, &block)?;
        }
    }
    // The log must end in a superblock describing an image this device holds.
    let new_block0 = new_block0.ok_or_else(damaged)?;
    let superblock = Superblock::decode_block(&new_block0).map_err(|_| damaged())?;
    Geometry::from_superblock(&superblock).map_err(|_| damaged())?;
    if superblock.block_count > device.block_count() {
        return Err(damaged());
    }
    device.flush()?;
    device.write_block(0, &new_block0)?;
    device.flush()?;
    *block0 = new_block0;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    /// `finish_interrupted` finds the copies by the journal's layout; this
    /// pins that layout against the journal's own reader.
    #[test]
    fn copies_are_where_the_journal_reader_finds_them() {
        let device = MemDevice::new(4000);
        let targets: Vec<u32> = (0..1500).collect();
        let blocks = super::super::plan::log_size(targets.len());
        let mut log = Journal::create(&device, 2000, blocks).unwrap();
        log.write_transaction(&device, &targets, |t| Some([(t % 251) as u8; BLOCK_SIZE])).unwrap();
        let pending = log.pending(&device, 4000).unwrap().unwrap();
        let overlay = log.load(&device, &pending).unwrap();
        let first_copy = 2000 + 1 + pending.targets.len().div_ceil(TARGETS_PER_DESCRIPTOR) as u32;
        let mut block = [0u8; BLOCK_SIZE];
        for (index, target) in pending.targets.iter().enumerate() {
            device.read_block(first_copy + index as u32, &mut block).unwrap();
            assert_eq!(block, *overlay[target], "copy of {target}");
        }
    }

    #[test]
    fn a_record_without_a_valid_log_is_corruption() {
        let mut device = MemDevice::new(64);
        let mut block0 = [0u8; BLOCK_SIZE];
        let superblock = Superblock {
            magic: crate::format::superblock::MAGIC,
            block_count: 64,
            inode_count: 42,
            free_blocks: 0,
            free_inodes: 0,
            first_data_block: 3,
            block_size: BLOCK_SIZE as u32,
            inode_size: 96,
            blocks_per_group: 0,
            inodes_per_group: 0,
            mount_time: 0,
            write_time: 0,
            mount_count: 0,
            max_mount_count: 0,
            state: 1,
            errors: 0,
        };
        superblock.encode_block(&mut block0);
        let mut extension = Extension::new([0; 16], b"", 0);
        extension.incompat_features = crate::format::extension::FEATURE_RESIZE_LOG;
        extension.resize_log_first = 40;
        extension.resize_log_blocks = 10;
        extension.encode_block(&mut block0);
        device.write_block(0, &block0).unwrap();
        assert!(matches!(finish_interrupted(&mut device, false), Err(Error::Corrupt { .. })));
        assert_eq!(
            finish_interrupted(&mut device, true),
            Err(Error::Unsupported(Unsupported::ResizeInProgress))
        );
        // A log run past the device is refused the same way, without panics.
        extension.resize_log_first = u32::MAX - 3;
        extension.encode_block(&mut block0);
        device.write_block(0, &block0).unwrap();
        assert!(matches!(finish_interrupted(&mut device, false), Err(Error::Corrupt { .. })));
    }
}
