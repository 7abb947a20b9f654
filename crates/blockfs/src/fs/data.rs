//! File contents: reading, writing and truncating through the block map.
//! File data blocks are not journaled (ordered mode); see `journal`.

use alloc::vec::Vec;

use crate::cache::{BlockKind, Fill};
use crate::device::{BlockDevice, MAX_WRITE_RUN};
use crate::error::{Error, Result};
use crate::format::inode::DiskInode;
use crate::format::BLOCK_SIZE;
use crate::tx::Tx;

/// Longest run of blocks read from the device in one request.
const MAX_READ_RUN: u64 = 256;

/// A run of whole blocks, not cached, that a read leaves to its caller to
/// fetch from the device into `buf[at..at + len]` holding no lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRun {
    pub first: u32,
    pub at: usize,
    pub len: usize,
}

/// Reads file bytes at `offset`, holes as zeros, stopping at `size`.
/// Whole blocks that sit contiguously on disk and are not cached are read
/// straight into `buf`, a run per device request, without passing through
/// (and flushing out) the cache; with `later`, those runs are listed
/// there for the caller to read instead.
pub(super) fn read_data<D: BlockDevice>(
    tx: &mut Tx<'_, D>,
    ino: u32,
    inode: &DiskInode,
    offset: u64,
    buf: &mut [u8],
    mut later: Option<&mut Vec<DeviceRun>>,
) -> Result<usize> {
    let size = inode.size as u64;
    if offset >= size {
        return Ok(0);
    }
    let length = (buf.len() as u64).min(size - offset) as usize;
    let mut done = 0;
    while done < length {
        let position = offset + done as u64;
        let logical = position / BLOCK_SIZE as u64;
        let within = (position % BLOCK_SIZE as u64) as usize;
        let chunk = (BLOCK_SIZE - within).min(length - done);
        let physical = tx.map_block(ino, inode, logical)?;
        // What memory holds (and holes) is copied first.
        let target = &mut buf[done..done + chunk];
        let copied = match physical {
            Some(physical) => {
                tx.peek_block(physical, |block| target.copy_from_slice(&block[within..within + chunk]))?
            }
            None => {
                target.fill(0);
                Some(())
            }
        };
        if copied.is_some() {
            done += chunk;
            continue;
        }
        let physical = physical.expect("holes are copied above");
        if chunk < BLOCK_SIZE {
            let target = &mut buf[done..done + chunk];
            tx.read_block(physical, |block| target.copy_from_slice(&block[within..within + chunk]))?;
            done += chunk;
            continue;
        }
        let whole_blocks = ((length - done) / BLOCK_SIZE) as u64;
        let mut run = 1;
        while run < whole_blocks.min(MAX_READ_RUN)
            && tx.map_block(ino, inode, logical + run)? == Some(physical + run as u32)
            && !tx.is_cached(physical + run as u32)
        {
            run += 1;
        }
        let bytes = run as usize * BLOCK_SIZE;
        match later.as_deref_mut() {
            Some(runs) => runs.push(DeviceRun { first: physical, at: done, len: bytes }),
            None => tx.read_uncached(physical, &mut buf[done..done + bytes])?,
        }
        done += bytes;
    }
    Ok(length)
}

/// Writes file bytes at `offset` (the caller has bounded the length),
/// growing `size`. On running out of space part-way, returns the bytes
/// written so far if any.
///
/// Runs of whole blocks that were just allocated (at least
/// `MIN_DIRECT_RUN`) go straight to the device, a contiguous run per
/// request, without passing through the cache: no one
/// has them cached, the last commit does not own them (so a crash cannot
/// expose the new bytes), and they are home before the commit that makes
/// them reachable, as ordered mode requires. A rolled-back write frees
/// them again.
pub(super) fn write_data<D: BlockDevice>(
    tx: &mut Tx<'_, D>,
    ino: u32,
    inode: &mut DiskInode,
    offset: u64,
    data: &[u8],
) -> Result<usize> {
    let mut done = 0;
    let mut previous: Option<u32> = None;
    let mut fresh_run = FreshRun::default();
    while done < data.len() {
        let position = offset + done as u64;
        let logical = position / BLOCK_SIZE as u64;
        let within = (position % BLOCK_SIZE as u64) as usize;
        let chunk = (BLOCK_SIZE - within).min(data.len() - done);
        let goal = match previous {
            Some(block) => Some(block + 1),
            None if logical > 0 => tx.map_block(ino, inode, logical - 1)?.map(|b| b + 1),
            None => None,
        };
        let (physical, fresh) = match tx.map_or_allocate(ino, inode, logical, goal) {
            Ok(mapped) => mapped,
            Err(Error::NoSpace) if done > 0 => break,
            Err(error) => return Err(error),
        };
        if fresh && chunk == BLOCK_SIZE {
            if !fresh_run.extends(physical, done) {
                fresh_run.write(tx, data)?;
                fresh_run = FreshRun { first: physical, blocks: 0, from: done };
            }
            fresh_run.blocks += 1;
        } else {
            // A whole block, or one just allocated, is not read first.
            let fill = match (fresh, chunk == BLOCK_SIZE) {
                (_, true) => Fill::Whole,
                (true, false) => Fill::Zero,
                (false, false) => Fill::Read,
            };
            tx.modify_block(physical, BlockKind::Data, fill, |block| {
                block[within..within + chunk].copy_from_slice(&data[done..done + chunk])
            })?;
        }
        previous = Some(physical);
        done += chunk;
        let end = (position + chunk as u64) as u32;
        inode.size = inode.size.max(end);
    }
    fresh_run.write(tx, &data[..done])?;
    Ok(done)
}

/// Fewest fresh blocks written straight to the device (64 KiB).
const MIN_DIRECT_RUN: u32 = 16;

/// Consecutive whole blocks just allocated, waiting to be written as one
/// request: disk blocks `first..first + blocks` get `data[from..]`.
#[derive(Default)]
struct FreshRun {
    first: u32,
    blocks: u32,
    from: usize,
}

impl FreshRun {
    /// Whether disk block `physical` with the bytes at `at` continues
    /// the run.
    fn extends(&self, physical: u32, at: usize) -> bool {
        self.blocks > 0
            && self.first + self.blocks == physical
            && self.from + self.blocks as usize * BLOCK_SIZE == at
            && (self.blocks as usize) < MAX_WRITE_RUN
    }

    /// Short runs go through the cache after all: a small file often
    /// dies before the next commit, and then its data never reaches the
    /// device at all.
    fn write<D: BlockDevice>(&self, tx: &mut Tx<'_, D>, data: &[u8]) -> Result<()> {
        let bytes = &data[self.from..self.from + self.blocks as usize * BLOCK_SIZE];
        if self.blocks >= MIN_DIRECT_RUN {
            return tx.write_fresh(self.first, bytes);
        }
        for (block, contents) in (self.first..).zip(bytes.chunks_exact(BLOCK_SIZE)) {
            tx.modify_block(block, BlockKind::Data, Fill::Whole, |data| data.copy_from_slice(contents))?;
        }
        Ok(())
    }
}

/// Sets the size, zeroing the tail of the last kept block so a later
/// extension reads zeros. Returns whether blocks past the new size remain
/// to be freed (by reclamation, after the operation: see `lifetime`).
pub(super) fn truncate<D: BlockDevice>(
    tx: &mut Tx<'_, D>,
    ino: u32,
    inode: &mut DiskInode,
    size: u64,
) -> Result<bool> {
    let mut blocks_past = false;
    if size < inode.size as u64 {
        let keep = size.div_ceil(BLOCK_SIZE as u64);
        blocks_past = tx.last_mapped(ino, inode)?.is_some_and(|last| last >= keep);
        let within = (size % BLOCK_SIZE as u64) as usize;
        if within != 0 {
            if let Some(physical) = tx.map_block(ino, inode, size / BLOCK_SIZE as u64)? {
                tx.modify_block(physical, BlockKind::Data, Fill::Read, |block| block[within..].fill(0))?;
            }
        }
    }
    inode.size = size as u32;
    Ok(blocks_past)
}
