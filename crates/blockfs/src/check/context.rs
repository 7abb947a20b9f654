//! The checker's state across passes: the device (every read and write
//! goes through here, so a check without repairs cannot write), what each
//! inode and directory turned out to be, the claimed-block sets, and the
//! small allocator repairs use.
//!
//! Memory: two bits per block, eight bytes per inode, a few words per
//! directory, and the blocks of an unreplayed journal transaction (as a
//! read-only mount holds them); never anything proportional to file or
//! directory sizes.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;

use hashbrown::HashMap;

use super::bitset::Bitset;
use super::report::{Problem, ProblemKind, Report};
use super::superblock::Volume;
use super::{CheckOptions, ProgressFn, RepairMode};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::extension::Extension;
use crate::format::geometry::Geometry;
use crate::format::inode::{DiskInode, FileType};
use crate::format::{Block, BLOCK_SIZE};

/// "No inode" in parent links.
pub(super) const NO_INODE: u32 = u32::MAX;

/// What pass 1 found an inode to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Free,
    /// Unlinked but still holding its blocks, on the orphan chain (left
    /// for the next mount to release).
    Orphan,
    /// In use, with a mode naming no file type (left unrepaired).
    Unknown,
    Known(FileType),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct InodeState {
    pub kind: Kind,
    /// A hidden system inode (the journal): named by no entry.
    pub system: bool,
    /// `links_count` as it is on disk now.
    pub links: u16,
    /// Directory entries naming this inode (non-directories only).
    pub found: u32,
}

impl InodeState {
    pub const FREE: InodeState = InodeState { kind: Kind::Free, system: false, links: 0, found: 0 };

    /// Linked: entries may name it.
    pub fn in_use(&self) -> bool {
        matches!(self.kind, Kind::Unknown | Kind::Known(_))
    }

    /// Not available for a new file (linked, or an orphan on the chain).
    pub fn allocated(&self) -> bool {
        self.kind != Kind::Free
    }

    /// The `file_type` byte entries naming this inode should carry.
    pub fn dirent_code(&self) -> Option<u8> {
        match self.kind {
            Kind::Known(file_type) => Some(file_type.dirent_code()),
            _ => None,
        }
    }
}

/// What the directory pass learnt about one directory.
#[derive(Clone, Copy, Debug)]
pub(super) struct DirState {
    /// The directory holding the first entry that names this one.
    pub parent: u32,
    /// The inodes its first `.` and `..` entries name.
    pub dot: Option<u32>,
    pub dotdot: Option<u32>,
    /// Scanned (or waiting in the scan queue).
    pub queued: bool,
    pub reachable: bool,
    /// Still in the older tool's stream layout: block-rule edits would
    /// corrupt it, so repairs leave it alone.
    pub legacy: bool,
    /// Subdirectories whose parent this is.
    pub children: u32,
    /// Scratch mark for the walks up parent chains (pass 3).
    pub mark: u32,
}

impl DirState {
    pub fn new() -> Self {
        DirState {
            parent: NO_INODE,
            dot: None,
            dotdot: None,
            queued: false,
            reachable: false,
            legacy: false,
            children: 0,
            mark: NO_INODE,
        }
    }
}

/// Where orphans go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LostFound {
    /// Not seen in the root (yet): create it when needed.
    Missing,
    Found(u32),
    /// The root names something else `lost+found`.
    NameTaken,
    /// It could not be had (and that was reported).
    Unavailable,
}

pub(super) struct Checker<'a, D> {
    device: &'a mut D,
    pub geometry: Geometry,
    pub repair: RepairMode,
    /// Timestamp for inodes the checker creates.
    pub now: u32,
    /// Directory name bytes the duplicate-name check may hold at once.
    pub name_memory: usize,
    max_problems: usize,
    progress: Option<ProgressFn>,
    pub report: Report,
    /// The extension record when block 0 holds a valid one, as repairs
    /// leave it (written back at the end).
    pub extension: Option<Extension>,
    /// The journal inode the record names, once it proved to own the
    /// journal's run.
    pub journal: Option<u32>,
    /// Linked inodes on the orphan chain: a truncation whose blocks past
    /// `size` are still to be freed.
    pub truncating: BTreeSet<u32>,
    /// Metadata blocks of a committed journal transaction not replayed
    /// (a check without repairs reads the image as replay would leave it).
    overlay: BTreeMap<u32, Box<Block>>,
    /// Blocks owned by metadata or by an in-use inode.
    pub claimed: Bitset,
    /// Blocks claimed more than once; read as holes until resolved.
    pub duplicates: Bitset,
    /// Blocks whose owner a repair changed (taken, given back, or dropped
    /// with the pointer to them): the bitmap follows them unreported.
    pub repaired_blocks: Bitset,
    /// Free inodes in the table as found (before repairs), for the
    /// superblock's counter.
    pub free_inodes_found: u32,
    pub inodes: Vec<InodeState>,
    pub dirs: HashMap<u32, DirState>,
    pub lost_found: LostFound,
    block_hint: u32,
    wrote: bool,
}

impl<'a, D: BlockDevice> Checker<'a, D> {
    /// Takes over the device and what block 0 said (the overlay moves
    /// here).
    pub fn new(device: &'a mut D, volume: &mut Volume, options: &CheckOptions) -> Self {
        let geometry = volume.geometry;
        let mut claimed = Bitset::new(geometry.block_count);
        for block in 0..geometry.first_data_block() {
            claimed.insert(block);
        }
        Checker {
            device,
            geometry,
            repair: options.repair,
            now: options.now.unwrap_or(0).min(u32::MAX as u64) as u32,
            name_memory: options.name_memory,
            max_problems: options.max_problems,
            progress: options.progress,
            report: Report::default(),
            extension: volume.extension.ok(),
            journal: None,
            truncating: BTreeSet::new(),
            overlay: core::mem::take(&mut volume.overlay),
            claimed,
            duplicates: Bitset::new(geometry.block_count),
            repaired_blocks: Bitset::new(geometry.block_count),
            free_inodes_found: 0,
            inodes: vec![InodeState::FREE; geometry.usable_inodes() as usize],
            dirs: HashMap::new(),
            lost_found: LostFound::Missing,
            block_hint: geometry.first_data_block(),
            wrote: false,
        }
    }

    // --- problems ---

    /// Whether the repair mode allows fixing `kind`.
    /// Tells the caller's progress callback, if any, how far `pass` is.
    pub fn progress(&self, pass: u8, done: u64, total: u64) {
        if let Some(ProgressFn(report)) = self.progress {
            report(pass, done, total);
        }
    }

    pub fn may_fix(&self, kind: &ProblemKind) -> bool {
        kind.repair_mode().is_some_and(|needed| self.repair >= needed)
    }

    pub fn record(&mut self, mut problem: Problem, repaired: bool) {
        problem.repaired = repaired;
        self.report.add(problem, self.max_problems);
    }

    // --- blocks ---

    pub fn read_block(&mut self, block: u32, buf: &mut Block) -> Result<()> {
        self.check_block(block)?;
        match self.overlay.get(&block) {
            Some(copy) => buf.copy_from_slice(&copy[..]),
            None => self.device.read_block(block, buf)?,
        }
        Ok(())
    }

    /// The device itself, for the journal's own writes (refused, as all
    /// writes are, without a repair mode).
    pub fn device_for_writes(&mut self) -> Result<&mut D> {
        if self.repair == RepairMode::None {
            return Err(Error::ReadOnly);
        }
        self.wrote = true;
        Ok(self.device)
    }

    pub fn read_new(&mut self, block: u32) -> Result<Box<Block>> {
        let mut buf = Box::new([0u8; BLOCK_SIZE]);
        self.read_block(block, &mut buf)?;
        Ok(buf)
    }

    /// Writes a block. Refused without a repair mode, so a plain check
    /// cannot change a byte whatever path it takes.
    pub fn write_block(&mut self, block: u32, buf: &Block) -> Result<()> {
        if self.repair == RepairMode::None {
            return Err(Error::ReadOnly);
        }
        self.check_block(block)?;
        self.device.write_block(block, buf)?;
        self.wrote = true;
        Ok(())
    }

    fn check_block(&self, block: u32) -> Result<()> {
        if block < self.geometry.block_count {
            Ok(())
        } else {
            Err(Error::corrupt(Corruption::BlockOutOfRange(block), None, Some(block)))
        }
    }

    /// Makes the repairs durable.
    pub fn flush(&mut self) -> Result<()> {
        if self.wrote {
            self.device.flush()?;
        }
        Ok(())
    }

    /// Whether a pointer may be followed: inside the data area and owned
    /// by one pointer only.
    pub fn usable(&self, pointer: u32) -> bool {
        self.geometry.is_data_block(pointer) && !self.duplicates.contains(pointer)
    }

    /// Claims a free data block for a repair; the caller writes all of it.
    pub fn allocate_block(&mut self) -> Option<u32> {
        let first = self.geometry.first_data_block();
        let end = self.geometry.block_count;
        let found = self
            .claimed
            .first_clear(self.block_hint, end)
            .or_else(|| self.claimed.first_clear(first, self.block_hint))?;
        self.claimed.insert(found);
        self.repaired_blocks.insert(found);
        self.block_hint = found + 1;
        Some(found)
    }

    /// Gives back a block whose only owner dropped it. A block with several
    /// owners stays claimed for the others.
    pub fn release_block(&mut self, block: u32) {
        if self.geometry.is_data_block(block) && !self.duplicates.contains(block) {
            self.claimed.remove(block);
            self.repaired_blocks.insert(block);
            self.block_hint = self.block_hint.min(block);
        }
    }

    /// Notes a block a repair unhooked before it was ever claimed.
    pub fn drop_block(&mut self, block: u32) {
        if self.geometry.is_data_block(block) {
            self.repaired_blocks.insert(block);
        }
    }

    pub fn free_data_blocks(&self) -> u32 {
        let data_claimed = self.claimed.ones() - self.geometry.first_data_block();
        self.geometry.data_blocks().saturating_sub(data_claimed)
    }

    // --- inodes ---

    pub fn read_inode(&mut self, ino: u32) -> Result<DiskInode> {
        let (block, slot) = self.geometry.inode_location(ino);
        let table = self.read_new(block)?;
        Ok(DiskInode::decode_slot(&table, slot))
    }

    pub fn write_inode(&mut self, ino: u32, inode: &DiskInode) -> Result<()> {
        let (block, slot) = self.geometry.inode_location(ino);
        let mut table = self.read_new(block)?;
        inode.encode_slot(&mut table, slot);
        self.write_block(block, &table)
    }

    pub fn state(&self, ino: u32) -> InodeState {
        self.inodes.get(ino as usize).copied().unwrap_or(InodeState::FREE)
    }

    pub fn is_directory(&self, ino: u32) -> bool {
        self.state(ino).kind == Kind::Known(FileType::Directory)
    }

    /// Hidden system inodes: named by no entry, their link count their own.
    pub fn is_system(&self, ino: u32) -> bool {
        self.journal == Some(ino) || self.state(ino).system
    }

    /// Takes a free inode number (never 0, the root) for a repair.
    pub fn allocate_inode(&mut self) -> Option<u32> {
        let ino = (1..self.inodes.len()).find(|&i| !self.inodes[i].allocated())? as u32;
        self.inodes[ino as usize].kind = Kind::Unknown;
        Some(ino)
    }

    pub fn set_state(&mut self, ino: u32, state: InodeState) {
        if let Some(slot) = self.inodes.get_mut(ino as usize) {
            *slot = state;
        }
    }

    pub fn set_links(&mut self, ino: u32, links: u16) {
        if let Some(slot) = self.inodes.get_mut(ino as usize) {
            slot.links = links;
        }
    }

    /// Follows a subdirectory a repair added to (or took from) directory
    /// `dir` in its link count, so that pass 4 reports only counts that
    /// were wrong before.
    pub fn adjust_links(&mut self, dir: u32, delta: i16) -> Result<()> {
        let mut inode = self.read_inode(dir)?;
        inode.links_count = inode.links_count.saturating_add_signed(delta);
        self.write_inode(dir, &inode)?;
        self.set_links(dir, inode.links_count);
        Ok(())
    }

    pub fn add_found(&mut self, ino: u32) {
        if let Some(slot) = self.inodes.get_mut(ino as usize) {
            slot.found = slot.found.saturating_add(1);
        }
    }

    pub fn dir(&mut self, ino: u32) -> &mut DirState {
        self.dirs.entry(ino).or_insert_with(DirState::new)
    }

    /// Directories in inode order (hash order would make reports differ
    /// from run to run).
    pub fn directories(&self) -> Vec<u32> {
        let mut list: Vec<u32> = self.dirs.keys().copied().collect();
        list.sort_unstable();
        list
    }
}
