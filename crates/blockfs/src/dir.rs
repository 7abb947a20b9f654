//! Directories: finding, adding, removing and listing entries.
//!
//! Layout (docs/FORMAT.md §6): records never cross a 4 KiB block; a new record
//! goes into a freed record, the slack of a live one, or the zero tail of a
//! block, and only then into a new block; removing a record merges it into
//! the previous record of its block (or, first in a block, zeroes its inode
//! number), so records never move and positions stay valid readdir cookies.
//!
//! Directories written by the older host tool are one byte stream whose
//! records straddle block boundaries. They are read as a stream and
//! rewritten into the block layout before their first change.
//!
//! Directories of more than one block get an in-memory name index (built on
//! first use, bounded in total size) so lookups and inserts do not scan.

use alloc::boxed::Box;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::cache::{BlockKind, Fill};
use crate::device::BlockDevice;
use crate::dirstream::{self, DirBlocks};
use crate::error::{Corruption, Error, Result};
use crate::format::dirent::{
    entry_size, is_dot_or_dotdot, write_entry, BlockEnd, BlockWalk, DirentHeader, RawEntry,
};
use crate::format::inode::{DiskInode, FileType};
use crate::format::{Block, BLOCK_SIZE};
use crate::tx::Tx;

/// Largest directory the legacy-stream reader will rewrite in memory.
const MAX_LEGACY_DIR_SIZE: u32 = 64 << 20;
/// Estimated bytes an index entry costs beyond its name.
const INDEX_ENTRY_OVERHEAD: usize = 48;

/// A live entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Byte position of the record in the directory: a stable cookie.
    pub position: u32,
    pub ino: u32,
    /// The raw `file_type` byte (1 regular, 2 directory, 7 symlink, …).
    pub file_type: u8,
    pub name: Vec<u8>,
}

impl DirEntry {
    pub fn kind(&self) -> Option<FileType> {
        FileType::from_dirent_code(self.file_type)
    }
}

/// A found entry, without its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub position: u32,
    pub ino: u32,
    pub file_type: u8,
}

/// Where an entry about to change lives.
struct EntryLocation {
    slot: Slot,
    /// Logical block of the directory, and offset in it.
    index: u64,
    offset: usize,
    physical: u32,
}

struct DirIndex {
    names: HashMap<Box<[u8]>, Slot>,
    /// Largest record that fits in each block (block layout only).
    room: Vec<u16>,
    /// The directory is in the older tool's straddling stream layout.
    legacy: bool,
    last_used: u64,
    cost: usize,
}

/// The name indexes of recently used large directories, within a memory
/// budget. A directory's index is used and changed only by the holder of
/// the directory's inode lock; the map of them is shared, behind
/// `Volume::dir_indexes`. An operation that fails drops the indexes it
/// used (`Tx::rollback`): they are rebuilt from the blocks.
pub(crate) struct DirIndexes {
    by_dir: HashMap<u32, DirIndex>,
    budget: usize,
    used: usize,
    clock: u64,
}

impl DirIndexes {
    pub fn new(budget_bytes: usize) -> Self {
        DirIndexes { by_dir: HashMap::new(), budget: budget_bytes, used: 0, clock: 0 }
    }

    /// Drops a directory's index (the directory was freed or rewritten).
    pub fn forget(&mut self, dir: u32) {
        if let Some(index) = self.by_dir.remove(&dir) {
            self.used -= index.cost;
        }
    }

    fn get(&mut self, dir: u32) -> Option<&mut DirIndex> {
        self.clock += 1;
        let clock = self.clock;
        let index = self.by_dir.get_mut(&dir)?;
        index.last_used = clock;
        Some(index)
    }

    fn insert(&mut self, dir: u32, mut index: DirIndex) -> &mut DirIndex {
        self.forget(dir);
        while self.used + index.cost > self.budget && !self.by_dir.is_empty() {
            let oldest = self.by_dir.iter().min_by_key(|(_, idx)| idx.last_used).map(|(&d, _)| d);
            if let Some(oldest) = oldest {
                self.forget(oldest);
            }
        }
        self.clock += 1;
        index.last_used = self.clock;
        self.used += index.cost;
        self.by_dir.entry(dir).insert(index).into_mut()
    }

    fn add_name(&mut self, dir: u32, name: &[u8], slot: Slot) {
        if let Some(index) = self.by_dir.get_mut(&dir) {
            let cost = name.len() + INDEX_ENTRY_OVERHEAD;
            index.names.insert(name.into(), slot);
            index.cost += cost;
            self.used += cost;
        }
    }

    fn remove_name(&mut self, dir: u32, name: &[u8]) {
        if let Some(index) = self.by_dir.get_mut(&dir) {
            if index.names.remove(name).is_some() {
                let cost = name.len() + INDEX_ENTRY_OVERHEAD;
                index.cost -= cost;
                self.used -= cost;
            }
        }
    }

    fn set_room(&mut self, dir: u32, block_index: u64, room: usize) {
        if let Some(slot) =
            self.by_dir.get_mut(&dir).and_then(|index| index.room.get_mut(block_index as usize))
        {
            *slot = room as u16;
        }
    }
}

fn block_limit(size: u32, block_index: u64) -> usize {
    let start = block_index * BLOCK_SIZE as u64;
    (size as u64).saturating_sub(start).min(BLOCK_SIZE as u64) as usize
}

/// The largest record that could be placed in `block` (see module docs).
fn room_in_block(block: &Block, limit: usize) -> usize {
    let mut walk = BlockWalk::new(block, limit);
    let mut best = 0;
    for record in walk.by_ref() {
        best = best.max(record.slack());
    }
    if walk.end() == Some(BlockEnd::Clean) {
        best = best.max(BLOCK_SIZE - walk.position());
    }
    best
}

/// Places a record for `name` in `block` if it fits; returns its offset.
fn place_in_block(block: &mut Block, limit: usize, name: &[u8], ino: u32, file_type: u8) -> Option<usize> {
    let needed = entry_size(name.len());
    let header = |rec_len: usize| DirentHeader {
        inode: ino,
        rec_len: rec_len as u16,
        name_len: name.len() as u8,
        file_type,
    };
    let mut walk = BlockWalk::new(block, limit);
    let mut choice = None;
    for record in walk.by_ref() {
        if record.slack() >= needed {
            choice = Some((record.offset, record.header, record.is_live(), record.name.len()));
            break;
        }
    }
    let end = walk.end();
    let tail = walk.position();
    match choice {
        Some((offset, old, false, _)) => {
            write_entry(block, offset, header(old.rec_len as usize), name);
            Some(offset)
        }
        Some((offset, old, true, old_name_len)) => {
            let kept = entry_size(old_name_len);
            let mut shrunk = old;
            shrunk.rec_len = kept as u16;
            shrunk.encode(&mut block[offset..]);
            let new_offset = offset + kept;
            write_entry(block, new_offset, header(old.rec_len as usize - kept), name);
            Some(new_offset)
        }
        None if end == Some(BlockEnd::Clean) && BLOCK_SIZE - tail >= needed => {
            write_entry(block, tail, header(needed), name);
            Some(tail)
        }
        None => None,
    }
}

/// Validates a name for a new entry.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::InvalidName);
    }
    if name.len() > crate::format::dirent::MAX_NAME_LEN {
        return Err(Error::NameTooLong);
    }
    Ok(())
}

/// A directory's blocks through a transaction, for the stream reader; a
/// bad pointer is reported as corruption.
struct TxDirBlocks<'t, 'v, D: BlockDevice> {
    tx: &'t mut Tx<'v, D>,
    ino: u32,
    inode: &'t DiskInode,
}

impl<D: BlockDevice> DirBlocks for TxDirBlocks<'_, '_, D> {
    fn read_logical(&mut self, logical: u64, out: &mut Block) -> Result<bool> {
        match self.tx.map_block(self.ino, self.inode, logical)? {
            Some(physical) => {
                self.tx.read_block(physical, |bytes| out.copy_from_slice(bytes))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn next_mapped(&mut self, from: u64, end: u64) -> Result<Option<u64>> {
        self.tx.next_mapped_block(self.ino, self.inode, from, end)
    }
}

fn dir_block_count(inode: &DiskInode) -> u64 {
    (inode.size as u64).div_ceil(BLOCK_SIZE as u64)
}

impl<D: BlockDevice> Tx<'_, D> {
    /// Calls `visit` with the position of every live record in block
    /// layout from `from`, and the record as it lies in the cached block
    /// (nothing is copied for records the caller passes over; `visit` runs
    /// under the cache shard's lock and must not use the store). Returns
    /// false if some block did not parse cleanly.
    fn walk_blocks(
        &mut self,
        ino: u32,
        inode: &DiskInode,
        from: u32,
        visit: &mut dyn FnMut(u32, &RawEntry<'_>) -> bool,
    ) -> Result<bool> {
        let mut clean = true;
        let end = dir_block_count(inode);
        let mut next = from as u64 / BLOCK_SIZE as u64;
        // Holes are stepped over a whole missing indirect level at a time,
        // so a size that claims gigabytes costs what the map holds.
        while let Some(index) = self.next_mapped_block(ino, inode, next, end)? {
            next = index + 1;
            let Some(physical) = self.map_block(ino, inode, index)? else {
                continue;
            };
            let base = index as u32 * BLOCK_SIZE as u32;
            let limit = block_limit(inode.size, index);
            let (stopped, block_clean) = self.read_block(physical, |bytes| {
                let mut walk = BlockWalk::new(bytes, limit);
                for record in walk.by_ref() {
                    let position = base + record.offset as u32;
                    if position < from || !record.is_live() {
                        continue;
                    }
                    if !visit(position, &record) {
                        return (true, true);
                    }
                }
                (false, walk.end() == Some(BlockEnd::Clean))
            })?;
            if stopped {
                return Ok(clean);
            }
            clean &= block_clean;
        }
        Ok(clean)
    }

    /// Reads a directory in the older tool's layout, as one stream
    /// (`dirstream`), calling `visit` for every live record until it
    /// returns false. Returns whether the stream parsed exactly up to the
    /// directory's size.
    fn walk_stream(
        &mut self,
        ino: u32,
        inode: &DiskInode,
        visit: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<bool> {
        let mut blocks = TxDirBlocks { tx: self, ino, inode };
        dirstream::walk_stream(&mut blocks, inode.size as u64, &mut |_, record| {
            Ok(!record.is_live()
                || visit(DirEntry {
                    position: record.position as u32,
                    ino: record.header.inode,
                    file_type: record.header.file_type,
                    name: record.name.to_vec(),
                }))
        })
    }

    /// Runs `f` on the name index of a directory large enough to have
    /// one, building the index first if it is not in memory; `None` for a
    /// one-block directory. The caller holds the directory's lock.
    fn with_index<R>(
        &mut self,
        ino: u32,
        inode: &DiskInode,
        f: impl FnOnce(&mut DirIndex) -> R,
    ) -> Result<Option<R>> {
        if dir_block_count(inode) <= 1 {
            return Ok(None);
        }
        self.note_dir(ino);
        let volume = self.volume;
        if let Some(index) = volume.dir_indexes.lock().get(ino) {
            return Ok(Some(f(index)));
        }
        let index = self.build_index(ino, inode)?;
        Ok(Some(f(volume.dir_indexes.lock().insert(ino, index))))
    }

    fn build_index(&mut self, ino: u32, inode: &DiskInode) -> Result<DirIndex> {
        let mut names: HashMap<Box<[u8]>, Slot> = HashMap::new();
        let mut cost = 0;
        let mut collect = |position: u32, record: &RawEntry<'_>| {
            cost += record.name.len() + INDEX_ENTRY_OVERHEAD;
            let slot = Slot { position, ino: record.header.inode, file_type: record.header.file_type };
            names.entry(Box::from(record.name)).or_insert(slot);
            true
        };
        let clean = self.walk_blocks(ino, inode, 0, &mut collect)?;
        let mut legacy = false;
        if !clean {
            let mut stream_names: HashMap<Box<[u8]>, Slot> = HashMap::new();
            let mut stream_cost = 0;
            let consistent = self.walk_stream(ino, inode, &mut |entry: DirEntry| {
                stream_cost += entry.name.len() + INDEX_ENTRY_OVERHEAD;
                let slot = Slot { position: entry.position, ino: entry.ino, file_type: entry.file_type };
                stream_names.entry(entry.name.into_boxed_slice()).or_insert(slot);
                true
            })?;
            if consistent {
                names = stream_names;
                cost = stream_cost;
                legacy = true;
            }
        }
        let mut room = Vec::new();
        if !legacy {
            for index in 0..dir_block_count(inode) {
                let space = match self.map_block(ino, inode, index)? {
                    Some(physical) => {
                        let limit = block_limit(inode.size, index);
                        self.read_block(physical, |bytes| room_in_block(bytes, limit))?
                    }
                    None => 0,
                };
                room.push(space as u16);
            }
        }
        let cost = cost + room.len() * 2;
        Ok(DirIndex { names, room, legacy, last_used: 0, cost })
    }

    fn is_legacy(&mut self, ino: u32, inode: &DiskInode) -> Result<bool> {
        Ok(self.with_index(ino, inode, |index| index.legacy)?.unwrap_or(false))
    }

    /// Finds `name` in directory `ino`.
    pub(crate) fn find_entry(&mut self, ino: u32, inode: &DiskInode, name: &[u8]) -> Result<Option<Slot>> {
        if let Some(found) = self.with_index(ino, inode, |index| index.names.get(name).copied())? {
            return Ok(found);
        }
        let mut found = None;
        self.walk_blocks(ino, inode, 0, &mut |position, record| {
            if record.name == name {
                found = Some(Slot { position, ino: record.header.inode, file_type: record.header.file_type });
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// Lists live entries from cookie `from` (a position; entries at or
    /// past it are returned) until `visit` returns false. `visit` must not
    /// use the filesystem.
    pub(crate) fn list_entries(
        &mut self,
        ino: u32,
        inode: &DiskInode,
        from: u32,
        visit: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()> {
        if self.is_legacy(ino, inode)? {
            self.walk_stream(ino, inode, &mut |entry| entry.position < from || visit(entry))?;
        } else {
            self.walk_blocks(ino, inode, from, &mut |position, record| {
                visit(DirEntry {
                    position,
                    ino: record.header.inode,
                    file_type: record.header.file_type,
                    name: record.name.to_vec(),
                })
            })?;
        }
        Ok(())
    }

    /// Whether the directory holds nothing but `.` and `..`.
    pub(crate) fn dir_is_empty(&mut self, ino: u32, inode: &DiskInode) -> Result<bool> {
        let mut empty = true;
        self.list_entries(ino, inode, 0, &mut |entry| {
            empty = is_dot_or_dotdot(&entry.name);
            empty
        })?;
        Ok(empty)
    }

    /// Writes the first block of a new directory: `.` and `..`.
    pub(crate) fn init_directory(&mut self, ino: u32, inode: &mut DiskInode, parent: u32) -> Result<()> {
        let (physical, _) = self.map_or_allocate(ino, inode, 0, None)?;
        let dir_code = FileType::Directory.dirent_code();
        self.modify_block(physical, BlockKind::Metadata, Fill::Zero, |block| {
            let dot = DirentHeader { inode: ino, rec_len: 12, name_len: 1, file_type: dir_code };
            write_entry(block, 0, dot, b".");
            let dotdot = DirentHeader { inode: parent, rec_len: 12, name_len: 2, file_type: dir_code };
            write_entry(block, 12, dotdot, b"..");
        })?;
        inode.size = 24;
        Ok(())
    }

    /// Rewrites a straddling legacy directory into the block layout.
    fn convert_legacy(&mut self, ino: u32, inode: &mut DiskInode) -> Result<()> {
        if inode.size > MAX_LEGACY_DIR_SIZE {
            return Err(Error::corrupt(Corruption::BadSize(inode.size), Some(ino), None));
        }
        let mut entries = Vec::new();
        self.walk_stream(ino, inode, &mut |entry| {
            entries.push(entry);
            true
        })?;
        let mut block = [0u8; BLOCK_SIZE];
        let mut used = 0usize;
        let mut block_index = 0u64;
        let mut size = 0u32;
        for entry in &entries {
            let needed = entry_size(entry.name.len());
            if used + needed > BLOCK_SIZE {
                self.store_dir_block(ino, inode, block_index, &block)?;
                block = [0u8; BLOCK_SIZE];
                block_index += 1;
                used = 0;
            }
            let header = DirentHeader {
                inode: entry.ino,
                rec_len: needed as u16,
                name_len: entry.name.len() as u8,
                file_type: entry.file_type,
            };
            write_entry(&mut block, used, header, &entry.name);
            used += needed;
            size = block_index as u32 * BLOCK_SIZE as u32 + used as u32;
        }
        self.store_dir_block(ino, inode, block_index, &block)?;
        self.truncate_blocks(ino, inode, block_index + 1)?;
        inode.size = size;
        self.volume.dir_indexes.lock().forget(ino);
        Ok(())
    }

    fn store_dir_block(&mut self, ino: u32, inode: &mut DiskInode, index: u64, data: &Block) -> Result<()> {
        let goal = if index > 0 { self.map_block(ino, inode, index - 1)?.map(|b| b + 1) } else { None };
        let (physical, _) = self.map_or_allocate(ino, inode, index, goal)?;
        self.modify_block(physical, BlockKind::Metadata, Fill::Whole, |block| block.copy_from_slice(data))
    }

    /// Adds `name → target`. The caller has checked the name is absent and
    /// writes the directory inode afterwards (its size may grow).
    pub(crate) fn add_entry(
        &mut self,
        ino: u32,
        inode: &mut DiskInode,
        name: &[u8],
        target: u32,
        file_type: FileType,
    ) -> Result<()> {
        if self.is_legacy(ino, inode)? {
            self.convert_legacy(ino, inode)?;
        }
        let needed = entry_size(name.len());
        let code = file_type.dirent_code();
        let blocks = dir_block_count(inode);
        let roomy = |index: &mut DirIndex| index.room.iter().position(|&room| room as usize >= needed);
        let candidates: Vec<u64> = match self.with_index(ino, inode, roomy)? {
            Some(found) => found.map(|index| index as u64).into_iter().collect(),
            None => (0..blocks).collect(),
        };
        for index in candidates {
            let Some(physical) = self.map_block(ino, inode, index)? else {
                continue;
            };
            let limit = block_limit(inode.size, index);
            let placed = self.modify_block(physical, BlockKind::Metadata, Fill::Read, |block| {
                let offset = place_in_block(block, limit, name, target, code)?;
                Some((offset, room_in_block(block, limit.max(offset + needed))))
            })?;
            if let Some((offset, room)) = placed {
                let end = index as u32 * BLOCK_SIZE as u32 + (offset + needed) as u32;
                inode.size = inode.size.max(end);
                let position = index as u32 * BLOCK_SIZE as u32 + offset as u32;
                // Only larger directories have an index (`with_index`):
                // skip the shared map's lock for the rest.
                if blocks > 1 {
                    let mut indexes = self.volume.dir_indexes.lock();
                    indexes.set_room(ino, index, room);
                    indexes.add_name(ino, name, Slot { position, ino: target, file_type: code });
                }
                return Ok(());
            }
            // The index said there was room but the block disagrees: refresh.
            let room = self.read_block(physical, |block| room_in_block(block, limit))?;
            self.volume.dir_indexes.lock().set_room(ino, index, room);
        }
        // No room anywhere: start a new block.
        let index = blocks;
        let start = index * BLOCK_SIZE as u64;
        if start + needed as u64 > u32::MAX as u64 {
            return Err(Error::NoSpace);
        }
        let goal = if index > 0 { self.map_block(ino, inode, index - 1)?.map(|b| b + 1) } else { None };
        let (physical, _) = self.map_or_allocate(ino, inode, index, goal)?;
        let header = DirentHeader {
            inode: target,
            rec_len: needed as u16,
            name_len: name.len() as u8,
            file_type: code,
        };
        self.modify_block(physical, BlockKind::Metadata, Fill::Zero, |block| {
            write_entry(block, 0, header, name)
        })?;
        inode.size = (start + needed as u64) as u32;
        if blocks <= 1 {
            // The index is built when the directory is next used.
            return Ok(());
        }
        let mut indexes = self.volume.dir_indexes.lock();
        if let Some(index_entry) = indexes.get(ino) {
            index_entry.room.push((BLOCK_SIZE - needed) as u16);
        }
        indexes.add_name(ino, name, Slot { position: start as u32, ino: target, file_type: code });
        Ok(())
    }

    /// Finds `name` for changing it: converts a legacy directory first, and
    /// returns the entry with the physical block holding it.
    fn entry_for_change(&mut self, ino: u32, inode: &mut DiskInode, name: &[u8]) -> Result<EntryLocation> {
        if self.is_legacy(ino, inode)? {
            self.convert_legacy(ino, inode)?;
        }
        let slot = self.find_entry(ino, inode, name)?.ok_or(Error::NotFound)?;
        let index = slot.position as u64 / BLOCK_SIZE as u64;
        let physical = self.map_block(ino, inode, index)?.ok_or(Error::corrupt(
            Corruption::DirEntryCrossesBlock { offset: slot.position },
            Some(ino),
            None,
        ))?;
        Ok(EntryLocation { slot, index, offset: slot.position as usize % BLOCK_SIZE, physical })
    }

    /// Removes `name`, returning what it pointed to.
    pub(crate) fn remove_entry(&mut self, ino: u32, inode: &mut DiskInode, name: &[u8]) -> Result<Slot> {
        let EntryLocation { slot, index, offset, physical } = self.entry_for_change(ino, inode, name)?;
        let limit = block_limit(inode.size, index);
        let corrupt =
            || Error::corrupt(Corruption::DirEntryCrossesBlock { offset: slot.position }, Some(ino), None);
        let room = self.modify_block(physical, BlockKind::Metadata, Fill::Read, |block| {
            let mut previous = None;
            let mut target = None;
            for record in BlockWalk::new(block, limit) {
                if record.offset == offset {
                    target = Some(record.header);
                    break;
                }
                previous = Some((record.offset, record.header));
            }
            let removed = target?;
            match previous {
                Some((previous_offset, mut header)) => {
                    header.rec_len += removed.rec_len;
                    header.encode(&mut block[previous_offset..]);
                    block[offset..offset + removed.rec_len as usize].fill(0);
                }
                None => {
                    let mut header = removed;
                    header.inode = 0;
                    header.encode(&mut block[offset..]);
                }
            }
            Some(room_in_block(block, limit))
        })?;
        let room = room.ok_or_else(corrupt)?;
        if dir_block_count(inode) > 1 {
            let mut indexes = self.volume.dir_indexes.lock();
            indexes.set_room(ino, index, room);
            indexes.remove_name(ino, name);
        }
        Ok(slot)
    }

    /// Points existing entry `name` at another inode (rename over an
    /// existing name, or a moved directory's `..`). Returns the old target.
    pub(crate) fn retarget_entry(
        &mut self,
        ino: u32,
        inode: &mut DiskInode,
        name: &[u8],
        target: u32,
        file_type: FileType,
    ) -> Result<Slot> {
        let EntryLocation { slot, offset, physical, .. } = self.entry_for_change(ino, inode, name)?;
        let code = file_type.dirent_code();
        self.modify_block(physical, BlockKind::Metadata, Fill::Read, |block| {
            let mut header = DirentHeader::decode(&block[offset..]);
            header.inode = target;
            header.file_type = code;
            header.encode(&mut block[offset..]);
        })?;
        let updated = Slot { position: slot.position, ino: target, file_type: code };
        if dir_block_count(inode) <= 1 {
            return Ok(slot);
        }
        if let Some(index) = self.volume.dir_indexes.lock().get(ino) {
            if let Some(entry) = index.names.get_mut(name) {
                *entry = updated;
            }
        }
        Ok(slot)
    }
}
