//! Step 1: everything a resize will write, computed from reads alone.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::bits::Bits;
use super::build;
use super::image::{walk_map, OldImage};
use super::{ResizeError, Target};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error};
use crate::format::geometry::{Geometry, ROOT_INODE};
use crate::format::inode::FileType;
use crate::format::journal::TARGETS_PER_DESCRIPTOR;
use crate::format::Block;

/// What a resize does, for the caller to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub old_blocks: u32,
    pub new_blocks: u32,
    pub old_inodes: u32,
    pub new_inodes: u32,
    /// Data and indirect blocks given a new home.
    pub moved_blocks: u32,
    pub renumbered_inodes: u32,
    /// Whether the journal got a new run.
    pub journal_moved: bool,
    /// Metadata blocks written through the redo log (block 0 included).
    pub logged_blocks: u32,
    /// Blocks of the redo log run.
    pub log_blocks: u32,
}

/// A resize worked out in memory, ready to write.
pub struct Plan {
    pub summary: Summary,
    pub(super) old_geometry: Geometry,
    pub(super) new_geometry: Geometry,
    /// Blocks copied unchanged to a new home before the commit (old → new).
    pub(super) copies: Vec<(u32, u32)>,
    /// A relocated journal's run: first block and length.
    pub(super) new_journal: Option<(u32, u32)>,
    /// New contents of every changed metadata block but block 0, by home.
    pub(super) targets: BTreeMap<u32, Box<Block>>,
    /// Block 0 of the new state.
    pub(super) block0: Block,
    /// Block 0 of the commit: old superblock, record naming the log.
    pub(super) commit0: Block,
    pub(super) log_first: u32,
    pub(super) log_blocks: u32,
}

impl Plan {
    /// Blocks the device must hold for [`Plan::execute`].
    pub fn device_blocks_needed(&self) -> u32 {
        self.new_geometry.block_count.max(self.log_first + self.log_blocks).max(self.old_geometry.block_count)
    }
}

/// Blocks a journal-format log of `logged` copies takes: superblock,
/// descriptors, copies, commit record.
pub(super) fn log_size(logged: usize) -> u32 {
    (2 + logged.div_ceil(TARGETS_PER_DESCRIPTOR).max(1) + logged) as u32
}

/// Facts about the old image the builder needs besides the image itself.
pub(super) struct Layout {
    pub old: Geometry,
    pub new: Geometry,
    /// old block → new block, for every block that moves.
    pub moves: BTreeMap<u32, u32>,
    /// old inode number → new number, for every inode renumbered.
    pub renumber: BTreeMap<u32, u32>,
    /// Inodes whose map names a block that moves.
    pub touched: Vec<u32>,
    /// Every block the old state's files use (data and maps).
    pub claimed: Bits,
    /// Blocks of the old journal, when it moves.
    pub old_journal: Option<Bits>,
    /// New journal run (first, length) and its map blocks' extent.
    pub new_journal: Option<(u32, u32, u32)>,
    pub used_inodes: u32,
}

/// Reads the image on `device` and works out the resize to `target`.
/// Writes nothing; an `Err` means the image is left as it was.
pub fn plan<D: BlockDevice>(device: &mut D, target: Target) -> Result<Plan, ResizeError> {
    let image = OldImage::read(device)?;
    let old = image.geometry;
    let new = Geometry::new(target.block_count, target.inode_count).map_err(ResizeError::BadGeometry)?;
    let old_end = old.first_data_block();
    let new_end = new.first_data_block();
    // Blocks the new state cannot use for data: the grown metadata area
    // and everything past a smaller end.
    let in_zone = |block: u32| (block >= old_end && block < new_end) || block >= new.block_count;

    // Inodes: which are in use, which must be renumbered.
    let journal_ino = image.journal_inode();
    let mut used_inodes = 0u32;
    let mut claimed = Bits::new(old.block_count);
    let mut touched = Vec::new();
    let mut zone_blocks: Vec<u32> = Vec::new();
    let mut journal_blocks = Bits::new(old.block_count);
    let mut journal_in_zone = false;
    for (ino, inode) in image.inodes.iter().enumerate() {
        let ino = ino as u32;
        if inode.is_free() {
            continue;
        }
        used_inodes += 1;
        let kind = inode.file_type().ok_or(ResizeError::Fs(Error::corrupt(
            Corruption::BadFileType(inode.mode),
            Some(ino),
            None,
        )))?;
        if ino == ROOT_INODE && kind != FileType::Directory {
            return Err(Error::corrupt(Corruption::BadFileType(inode.mode), Some(ino), None).into());
        }
        if !kind.has_data_blocks() {
            continue;
        }
        let is_journal = Some(ino) == journal_ino;
        let mut touches = false;
        walk_map(device, &old, ino, inode, &mut |pointer| {
            let block = pointer.block;
            if !claimed.insert(block) {
                return Err(Error::corrupt(Corruption::DoubleFree(block), Some(ino), Some(block)).into());
            }
            if !image.bitmap_used(block) {
                return Err(ResizeError::BitmapDisagrees { inode: ino, block });
            }
            if is_journal {
                journal_blocks.insert(block);
                journal_in_zone |= in_zone(block);
            } else if in_zone(block) {
                touches = true;
                zone_blocks.push(block);
            }
            Ok(())
        })?;
        if touches {
            touched.push(ino);
        }
    }
    let used_blocks = claimed.iter().count() as u32;
    let usable = new.usable_inodes();
    if used_inodes > usable {
        return Err(ResizeError::InodesDoNotFit { used: used_inodes, usable });
    }
    if used_blocks > new.data_blocks() {
        return Err(ResizeError::DataDoesNotFit { needed: used_blocks, available: new.data_blocks() });
    }
    let mut renumber = BTreeMap::new();
    let mut free_numbers =
        (1..usable).filter(|&n| n as usize >= image.inodes.len() || image.inodes[n as usize].is_free());
    for ino in usable..image.inodes.len() as u32 {
        if !image.inodes[ino as usize].is_free() {
            let to = free_numbers.next().ok_or(ResizeError::InodesDoNotFit { used: used_inodes, usable })?;
            renumber.insert(ino, to);
        }
    }

    // New homes: free in the old state (so writing them early is safe)
    // and inside the new data area.
    let mut taken = Bits::new(new.block_count.max(old.block_count));
    let free_in_both = |block: u32, taken: &Bits| {
        block >= new_end
            && block >= old_end
            && block < new.block_count
            && (block >= old.block_count || (!image.bitmap_used(block) && !claimed.contains(block)))
            && !taken.contains(block)
    };
    let mut new_journal = None;
    if journal_in_zone {
        // A journal inode is only known through the record.
        let length = image.extension.map_or(0, |extension| extension.journal_blocks);
        let span = length.saturating_add(crate::format::geometry::indirect_blocks(length as u64) as u32);
        let first = find_run(new_end, new.block_count, span, |b| free_in_both(b, &taken))
            .ok_or(ResizeError::NoRoomForJournal { blocks: span })?;
        for block in first..first + span {
            taken.insert(block);
        }
        new_journal = Some((first, length, span));
    }
    let mut moves = BTreeMap::new();
    let mut cursor = new_end.max(old_end);
    zone_blocks.sort_unstable();
    for &block in &zone_blocks {
        while cursor < new.block_count && !free_in_both(cursor, &taken) {
            cursor += 1;
        }
        if cursor >= new.block_count {
            let short = (zone_blocks.len() - moves.len()) as u32;
            return Err(ResizeError::DataDoesNotFit {
                needed: new.data_blocks() + short,
                available: new.data_blocks(),
            });
        }
        taken.insert(cursor);
        moves.insert(block, cursor);
    }

    let layout = Layout {
        old,
        new,
        moves,
        renumber,
        touched,
        claimed,
        old_journal: journal_in_zone.then_some(journal_blocks),
        new_journal,
        used_inodes,
    };
    let built = build::build(device, &image, &layout)?;

    // The log: free in the old state, not written by the copies, the
    // replay or the new journal, and never a new metadata block.
    let logged = built.targets.len() + 1;
    let log_blocks = log_size(logged);
    let limit = new.block_count.max(old.block_count);
    let log_free = |block: u32| {
        block >= new_end
            && block >= old_end
            && (block >= old.block_count || (!image.bitmap_used(block) && !layout.claimed.contains(block)))
            && !taken.contains(block)
            && !built.targets.contains_key(&block)
    };
    let log_first = find_run(new_end.max(old_end), limit, log_blocks, log_free)
        .ok_or(ResizeError::NoRoomForLog { blocks: log_blocks })?;

    let mut commit_extension =
        image.extension.unwrap_or_else(|| crate::format::extension::Extension::new([0; 16], b"", 0));
    commit_extension.incompat_features |= crate::format::extension::FEATURE_RESIZE_LOG;
    commit_extension.resize_log_first = log_first;
    commit_extension.resize_log_blocks = log_blocks;
    let mut commit0 = image.block0;
    commit_extension.encode_block(&mut commit0);

    let copies: Vec<(u32, u32)> = layout
        .moves
        .iter()
        .filter(|(_, to)| !built.targets.contains_key(to))
        .map(|(&from, &to)| (from, to))
        .collect();
    let summary = Summary {
        old_blocks: old.block_count,
        new_blocks: new.block_count,
        old_inodes: old.inode_count,
        new_inodes: new.inode_count,
        moved_blocks: layout.moves.len() as u32,
        renumbered_inodes: layout.renumber.len() as u32,
        journal_moved: layout.new_journal.is_some(),
        logged_blocks: logged as u32,
        log_blocks,
    };
    Ok(Plan {
        summary,
        old_geometry: old,
        new_geometry: new,
        copies,
        new_journal: layout.new_journal.map(|(first, length, _)| (first, length)),
        targets: built.targets,
        block0: built.block0,
        commit0,
        log_first,
        log_blocks,
    })
}

/// First run of `length` consecutive blocks in `start..end` all passing `ok`.
fn find_run(start: u32, end: u32, length: u32, ok: impl Fn(u32) -> bool) -> Option<u32> {
    let mut run_start = start;
    let mut block = start;
    while block < end {
        if !ok(block) {
            run_start = block + 1;
        } else if block + 1 - run_start == length {
            return Some(run_start);
        }
        block += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_first_fit() {
        let ok = |b: u32| !(5..8).contains(&b);
        assert_eq!(find_run(0, 20, 5, ok), Some(0));
        assert_eq!(find_run(0, 20, 6, ok), Some(8));
        assert_eq!(find_run(0, 12, 6, ok), None);
        assert_eq!(find_run(0, 20, 1, |b| b == 19), Some(19));
    }

    #[test]
    fn log_sizes_fit_the_journal_capacity() {
        for logged in [1usize, 2, 1017, 1018, 5000] {
            let blocks = log_size(logged) as usize;
            let descriptors = logged.div_ceil(TARGETS_PER_DESCRIPTOR);
            assert_eq!(blocks, 2 + descriptors + logged);
        }
    }
}
