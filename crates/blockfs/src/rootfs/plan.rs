//! The first pass over an archive: what its contents need, so the RAM
//! image can be sized (and an archive too big refused) before any memory
//! is taken for it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::format::dirent::{entry_size, MAX_NAME_LEN};
use crate::format::geometry::{file_blocks, Geometry, BITS_PER_BITMAP_BLOCK};
use crate::format::inode::INODE_SIZE;
use crate::format::BLOCK_SIZE;

use super::error::LoadError;
use super::extract::check_limits;
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
    /// Names of members other than directories (hard links included).
    names: u64,
    /// Data and indirect blocks of files and symlinks.
    file_blocks: u64,
    /// Bytes of regular-file data.
    file_bytes: u64,
    /// Directory-entry bytes of every member's name.
    dirent_bytes: u64,
    /// Every directory below the root, named or implied by a member's
    /// path, and how its entries fill its blocks.
    directories: BTreeMap<Vec<u8>, DirectoryFill>,
    root: DirectoryFill,
}

/// What contents need from a fresh image beyond its root directory's
/// inode and first block, for sizing a persistent image
/// (`mkfs-blockfs --populate`). For an archive ([`Plan::needs`]) these are
/// upper bounds: a member that replaces an earlier one of its name is
/// counted again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Names below the root, every hard link's included.
    pub entries: u64,
    /// Inodes below the root.
    pub inodes: u64,
    /// Data, mapping and directory blocks.
    pub blocks: u64,
    /// Bytes of regular-file data.
    pub file_bytes: u64,
}

/// A directory's blocks as its entries arrive: each block is filled
/// until the next entry does not fit. The library places entries
/// first-fit, which never takes more blocks than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirectoryFill {
    blocks: u64,
    /// Bytes used in the last block.
    used: usize,
}

impl Default for DirectoryFill {
    /// A new directory: `.` and `..` in its first block.
    fn default() -> Self {
        DirectoryFill { blocks: 1, used: entry_size(1) + entry_size(2) }
    }
}

impl DirectoryFill {
    fn add(&mut self, name_len: usize) {
        let needed = entry_size(name_len);
        if self.used + needed > BLOCK_SIZE {
            self.blocks += 1;
            self.used = 0;
        }
        self.used += needed;
    }

    /// Its blocks and the indirect blocks mapping them.
    fn total(&self) -> u64 {
        file_blocks(self.blocks * BLOCK)
    }
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
        check_limits(entry)?;
        match &entry.kind {
            EntryKind::Regular => {
                self.file_blocks += file_blocks(entry.size);
                self.file_bytes += entry.size;
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
            EntryKind::Directory => self.note_directory(path),
            EntryKind::HardLink(_) => self.add_name(parent, name),
            _ => {
                self.add_name(parent, name);
                self.inodes += 1;
            }
        }
        Ok(())
    }

    /// What the members noted so far need from a fresh image.
    pub fn needs(&self) -> Needs {
        let directories = self.directories.len() as u64;
        let directory_blocks: u64 = self.directories.values().map(DirectoryFill::total).sum();
        Needs {
            entries: self.names + directories,
            inodes: self.inodes + directories,
            // The root's first block exists already.
            blocks: self.file_blocks + directory_blocks + self.root.total() - 1,
            file_bytes: self.file_bytes,
        }
    }

    fn note_ancestors(&mut self, parent: &[u8]) {
        let mut ancestor = Vec::with_capacity(parent.len());
        for name in components(parent) {
            if !ancestor.is_empty() {
                ancestor.push(b'/');
            }
            ancestor.extend_from_slice(name);
            if !self.directories.contains_key(&ancestor) {
                self.note_directory(ancestor.clone());
            }
        }
    }

    /// A directory's name goes into its parent once, however often the
    /// archive lists it.
    fn note_directory(&mut self, path: Vec<u8>) {
        if self.directories.contains_key(&path) {
            return;
        }
        let (parent, name) = split_last(&path);
        self.fill(parent).add(name.len());
        self.directories.insert(path, DirectoryFill::default());
    }

    fn add_name(&mut self, parent: &[u8], name: &[u8]) {
        self.names += 1;
        self.fill(parent).add(name.len());
    }

    /// The fill of directory `path`, which [`note_ancestors`] has noted.
    ///
    /// [`note_ancestors`]: Plan::note_ancestors
    fn fill(&mut self, path: &[u8]) -> &mut DirectoryFill {
        match path.is_empty() {
            true => &mut self.root,
            false => self.directories.entry(path.to_vec()).or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_archives_get_the_minimum_image() {
        let layout = Plan::new().layout(1 << 30).unwrap();
        assert!(layout.block_count as u64 >= MIN_IMAGE_BLOCKS);
        assert!(matches!(Plan::new().layout(1 << 20), Ok(Layout { block_count: 256, .. })));
    }
}
