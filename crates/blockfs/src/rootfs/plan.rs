//! The first pass over an archive: what its contents need, so the RAM
//! image can be sized (and an archive too big refused) before any memory
//! is taken for it.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::format::dirent::{entry_size, MAX_NAME_LEN};
use crate::format::geometry::{Geometry, BITS_PER_BITMAP_BLOCK};
use crate::format::inode::{DIRECT_BLOCKS, INODE_SIZE};
use crate::format::{BLOCK_SIZE, POINTERS_PER_BLOCK};
use crate::fs::{MAX_FILE_SIZE, MAX_SYMLINK_LEN};

use super::error::LoadError;
use super::path::{components, normalize, split_last};
use super::tar::{EntryKind, Event};

const BLOCK: u64 = BLOCK_SIZE as u64;
const MIB_BLOCKS: u64 = (1 << 20) / BLOCK;
/// Room for what runs in the RAM root: a quarter of the contents more,
/// plus 16 MiB, and never less than a 64 MiB image.
const SLACK_BLOCKS: u64 = 16 * MIB_BLOCKS;
const MIN_IMAGE_BLOCKS: u64 = 64 * MIB_BLOCKS;
/// A directory block is filled until the next entry does not fit, so at
/// most one longest entry's worth of it is left unused.
const DIRENT_BYTES_PER_BLOCK: u64 = (BLOCK_SIZE - entry_size(MAX_NAME_LEN)) as u64;

/// Totals gathered from an archive's events by [`Plan::note`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Members other than directories that need an inode of their own
    /// (everything but hard links).
    inodes: u64,
    /// Data and indirect blocks of files and symlinks.
    file_blocks: u64,
    /// Directory-entry bytes of every member's name.
    dirent_bytes: u64,
    /// Every directory, named or implied by a member's path.
    directories: BTreeSet<Vec<u8>>,
}

/// Size of the RAM image to format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub block_count: u32,
    pub inode_count: u32,
}

impl Plan {
    pub fn new() -> Self {
        Plan::default()
    }

    /// Counts one event. Members that the loader would refuse for their
    /// path or size are refused here already, before the image exists.
    pub fn note(&mut self, event: &Event<'_>) -> Result<(), LoadError> {
        let Event::Entry(entry) = event else {
            return Ok(());
        };
        let path = normalize(&entry.path)?;
        match &entry.kind {
            EntryKind::Regular if entry.size > MAX_FILE_SIZE => {
                return Err(LoadError::FileTooBig { path: entry.path.clone(), size: entry.size });
            }
            EntryKind::Regular => self.file_blocks += file_blocks(entry.size),
            EntryKind::Symlink(target) if target.len() > MAX_SYMLINK_LEN => {
                return Err(LoadError::SymlinkTargetTooLong { path: entry.path.clone(), len: target.len() });
            }
            // The target lives in a data block, however short.
            EntryKind::Symlink(_) => self.file_blocks += 1,
            EntryKind::HardLink(target) => {
                normalize(target)?;
            }
            _ => {}
        }
        if path.is_empty() {
            return Ok(());
        }
        let (parent, name) = split_last(&path);
        self.dirent_bytes += entry_size(name.len()) as u64;
        self.note_ancestors(parent);
        match entry.kind {
            EntryKind::Directory => {
                self.directories.insert(path);
            }
            EntryKind::HardLink(_) => {}
            _ => self.inodes += 1,
        }
        Ok(())
    }

    fn note_ancestors(&mut self, parent: &[u8]) {
        let mut ancestor = Vec::with_capacity(parent.len());
        for name in components(parent) {
            if !ancestor.is_empty() {
                ancestor.push(b'/');
            }
            ancestor.extend_from_slice(name);
            if !self.directories.contains(&ancestor) {
                self.directories.insert(ancestor.clone());
            }
        }
    }

    /// Blocks the contents take: files, symlinks, and directories (one
    /// block each plus their entries, with a block per directory for the
    /// part-filled last one).
    fn content_blocks(&self) -> u64 {
        let directories = self.directories.len() as u64 + 1;
        self.file_blocks + 2 * directories + self.dirent_bytes.div_ceil(DIRENT_BYTES_PER_BLOCK)
    }

    /// The image: contents × 1.25 + 16 MiB (at least 64 MiB) plus
    /// metadata, cut down to `max_image_bytes` as long as the contents
    /// still fit.
    pub fn layout(&self, max_image_bytes: u64) -> Result<Layout, LoadError> {
        let content = self.content_blocks();
        let inodes = self.inodes + self.directories.len() as u64;
        let wanted = (content + content / 4 + SLACK_BLOCKS).max(MIN_IMAGE_BLOCKS);
        let limit = (max_image_bytes / BLOCK).min(u32::MAX as u64);
        let block_count = (wanted + metadata_blocks(wanted, inodes)).min(limit) as u32;
        let needed = content + metadata_blocks(content, inodes);
        let too_large = || LoadError::ImageTooLarge { needed: needed * BLOCK, limit: max_image_bytes };
        let inode_count = Geometry::default_inode_count(block_count, inodes);
        let geometry = Geometry::new(block_count, inode_count).map_err(|_| too_large())?;
        if (geometry.data_blocks() as u64) < content {
            return Err(too_large());
        }
        Ok(Layout { block_count, inode_count })
    }
}

/// Superblock, bitmap and inode table of an image of `blocks` blocks
/// holding `inodes` members.
fn metadata_blocks(blocks: u64, inodes: u64) -> u64 {
    let blocks32 = blocks.min(u32::MAX as u64) as u32;
    let inode_count = Geometry::default_inode_count(blocks32, inodes) as u64;
    1 + blocks.div_ceil(BITS_PER_BITMAP_BLOCK as u64) + (inode_count * INODE_SIZE as u64).div_ceil(BLOCK)
}

/// Data blocks of a file of `size` bytes plus the indirect blocks mapping
/// them: one single-indirect block past the 12 direct pointers, then the
/// double-indirect block and one second-level block per 1024 more.
fn file_blocks(size: u64) -> u64 {
    const DIRECT: u64 = DIRECT_BLOCKS as u64;
    const PER_BLOCK: u64 = POINTERS_PER_BLOCK as u64;
    let data = size.div_ceil(BLOCK);
    let indirect = match data {
        0..=DIRECT => 0,
        _ if data <= DIRECT + PER_BLOCK => 1,
        _ => 2 + (data - DIRECT - PER_BLOCK).div_ceil(PER_BLOCK),
    };
    data + indirect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_blocks_count_indirect_blocks() {
        assert_eq!(file_blocks(0), 0);
        assert_eq!(file_blocks(12 * BLOCK), 12);
        assert_eq!(file_blocks(12 * BLOCK + 1), 14);
        assert_eq!(file_blocks(1036 * BLOCK + 1), 1037 + 3);
    }

    #[test]
    fn small_archives_get_the_minimum_image() {
        let layout = Plan::new().layout(1 << 30).unwrap();
        assert!(layout.block_count as u64 >= MIN_IMAGE_BLOCKS);
        assert!(matches!(Plan::new().layout(1 << 20), Ok(Layout { block_count: 256, .. })));
    }
}
