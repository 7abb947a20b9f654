//! Changing directories under the block rule: dropping or retyping
//! records inside a block, repacking a damaged block around what still
//! parses, adding an entry, and retargeting one. Records never cross a
//! 4 KiB boundary; packed records take `align4(8 + name_len)` bytes.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::blockmap::{blocks_for, set_mapping, MapCursor};
use super::context::{Checker, InodeState};
use super::dirread::{block_limit, for_each_block};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::dirent::{
    entry_size, is_dot_or_dotdot, write_entry, BlockEnd, BlockWalk, DirentHeader, DIRENT_HEADER_SIZE,
};
use crate::format::{put_u32, Block, BLOCK_SIZE};

/// What to do with one record of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Edit {
    Keep,
    Remove,
    /// Rewrite the `file_type` byte.
    SetType(u8),
}

/// One record of a block, as the edits see it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    pub offset: usize,
    pub rec_len: u16,
    pub edit: Edit,
}

/// Applies edits to a block's records (all of them, in block order). A
/// removed record is merged into the record before it, as the library
/// does; the first record of a block becomes a free record instead (inode
/// 0, and no name, so not even a `.` or `..` stays live).
pub(super) fn apply_edits(block: &mut Block, records: &[Record]) {
    let mut previous: Option<usize> = None;
    for record in records {
        let (offset, length) = (record.offset, record.rec_len as usize);
        match (record.edit, previous) {
            (Edit::Remove, Some(before)) => {
                let mut header = DirentHeader::decode(&block[before..]);
                header.rec_len += record.rec_len;
                header.encode(&mut block[before..]);
                block[offset..offset + length].fill(0);
            }
            (Edit::Remove, None) => {
                let free = DirentHeader { inode: 0, rec_len: record.rec_len, name_len: 0, file_type: 0 };
                write_entry(block, offset, free, b"");
                previous = Some(offset);
            }
            (Edit::SetType(code), _) => {
                block[offset + 7] = code;
                previous = Some(offset);
            }
            (Edit::Keep, _) => previous = Some(offset),
        }
    }
}

/// Where the next packed record goes: records in order, a new block when
/// one does not fit in the rest of the current block.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Packer {
    pub logical: u64,
    pub used: usize,
    pub any: bool,
}

impl Packer {
    /// Places a record of `needed` bytes; returns whether it opened a new
    /// block after a used one.
    pub fn place(&mut self, needed: usize) -> bool {
        let new_block = self.any && self.used + needed > BLOCK_SIZE;
        if new_block {
            self.logical += 1;
            self.used = 0;
        }
        self.used += needed;
        self.any = true;
        new_block
    }

    /// Blocks used so far.
    pub fn blocks(&self) -> u64 {
        if self.any {
            self.logical + 1
        } else {
            0
        }
    }

    /// The directory size: whole blocks before the last, and the bytes
    /// used in the last.
    pub fn size(&self) -> u64 {
        if self.any {
            self.logical * BLOCK_SIZE as u64 + self.used as u64
        } else {
            0
        }
    }
}

/// Writes a live record packed at `offset` (its `rec_len` is exactly what
/// its name needs).
pub(super) fn write_packed(block: &mut Block, offset: usize, inode: u32, file_type: u8, name: &[u8]) {
    let header =
        DirentHeader { inode, rec_len: entry_size(name.len()) as u16, name_len: name.len() as u8, file_type };
    write_entry(block, offset, header, name);
}

/// Whether a header at an arbitrary offset is believable enough to resume
/// parsing there: a record that fits, with a proper name, naming an inode
/// in use.
fn believable(block: &Block, offset: usize, limit: usize, inodes: &[InodeState]) -> bool {
    if offset + DIRENT_HEADER_SIZE > limit {
        return false;
    }
    let header = DirentHeader::decode(&block[offset..]);
    let name_len = header.name_len as usize;
    let name_end = offset + DIRENT_HEADER_SIZE + name_len;
    header.rec_len_plausible()
        && offset + header.rec_len as usize <= limit
        && name_len > 0
        && DIRENT_HEADER_SIZE + name_len <= header.rec_len as usize
        && !block[offset + DIRENT_HEADER_SIZE..name_end].iter().any(|&b| b == b'/' || b == 0)
        && inodes.get(header.inode as usize).is_some_and(|state| state.in_use())
}

/// Rebuilds a block that does not parse: the live records before the
/// damage, then those found by resuming at the next believable record on a
/// 4-byte boundary, packed from offset 0 with zeros after them. Returns
/// the offset where the damage began, if the block was damaged.
pub(super) fn salvage_block(block: &mut Block, limit: usize, inodes: &[InodeState]) -> Option<usize> {
    let mut packed = Box::new([0u8; BLOCK_SIZE]);
    let mut used = 0;
    let mut first_damage = None;
    let mut start = 0;
    let mut shifted = Box::new([0u8; BLOCK_SIZE]);
    while start < limit {
        // Walk from `start` by walking a copy shifted to offset 0.
        shifted.fill(0);
        shifted[..limit - start].copy_from_slice(&block[start..limit]);
        let mut walk = BlockWalk::new(&shifted, limit - start);
        for record in walk.by_ref().filter(|r| r.is_live()) {
            // Records kept never overlap, so their packed sizes fit.
            let needed = entry_size(record.name.len());
            if used + needed <= limit {
                write_packed(&mut packed, used, record.header.inode, record.header.file_type, record.name);
                used += needed;
            }
        }
        let damage = match walk.end() {
            Some(BlockEnd::Crosses { offset })
            | Some(BlockEnd::NameOverflow { offset })
            | Some(BlockEnd::Garbage { offset }) => start + offset,
            _ => break,
        };
        first_damage.get_or_insert(damage);
        let resume = (damage + 4..limit).step_by(4).find(|&offset| believable(block, offset, limit, inodes));
        match resume {
            Some(offset) => start = offset,
            None => break,
        }
    }
    if first_damage.is_some() {
        *block = *packed;
    }
    first_damage
}

/// Places a record for `name` in `block` if it fits: in a free record, in
/// the slack of a live one, or in the zero tail. Returns the end of the
/// new record.
fn place_in_block(block: &mut Block, limit: usize, name: &[u8], target: u32, file_type: u8) -> Option<usize> {
    let needed = entry_size(name.len());
    let mut walk = BlockWalk::new(block, limit);
    let spot = walk
        .by_ref()
        .find(|record| record.slack() >= needed)
        .map(|record| (record.offset, record.header, record.is_live(), record.name.len()));
    let tail = (walk.end() == Some(BlockEnd::Clean)).then_some(walk.position());
    let header = |rec_len: usize| DirentHeader {
        inode: target,
        rec_len: rec_len as u16,
        name_len: name.len() as u8,
        file_type,
    };
    match (spot, tail) {
        (Some((offset, old, false, _)), _) => {
            write_entry(block, offset, header(old.rec_len as usize), name);
            Some(offset + needed)
        }
        (Some((offset, old, true, old_name_len)), _) => {
            let kept = entry_size(old_name_len);
            let mut shrunk = old;
            shrunk.rec_len = kept as u16;
            shrunk.encode(&mut block[offset..]);
            write_entry(block, offset + kept, header(old.rec_len as usize - kept), name);
            Some(offset + kept + needed)
        }
        (None, Some(tail)) if BLOCK_SIZE - tail >= needed => {
            write_entry(block, tail, header(needed), name);
            Some(tail + needed)
        }
        _ => None,
    }
}

/// Adds `name → target` to directory `dir`: into the first block with
/// room, else into the first hole, else into a new block at the end.
/// Returns false when the directory cannot take it (still in the legacy
/// layout, or no space).
pub(super) fn add_entry<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    dir: u32,
    name: &[u8],
    target: u32,
    file_type: u8,
) -> Result<bool> {
    if ck.dirs.get(&dir).is_none_or(|state| state.legacy) {
        return Ok(false);
    }
    let mut inode = ck.read_inode(dir)?;
    let count = blocks_for(inode.size);
    let mut cursor = MapCursor::new(&inode);
    let mut logical = 0;
    while logical < count {
        match cursor.next_mapped(ck, logical, count)? {
            Some((found, physical)) if found == logical => {
                let mut block = ck.read_new(physical)?;
                let limit = block_limit(inode.size, logical);
                let placed = place_in_block(&mut block, limit, name, target, file_type)
                    .map(|end| logical * BLOCK_SIZE as u64 + end as u64)
                    // The size must still fit a u32.
                    .filter(|&end| end <= u32::MAX as u64);
                if let Some(end) = placed {
                    ck.write_block(physical, &block)?;
                    if end > inode.size as u64 {
                        inode.size = end as u32;
                        ck.write_inode(dir, &inode)?;
                    }
                    return Ok(true);
                }
                logical += 1;
            }
            _ => break,
        }
    }
    add_in_new_block(ck, dir, &mut inode, logical, name, target, file_type)
}

/// Puts the entry alone in a new block mapped at `logical` (a hole or the
/// end of the directory).
fn add_in_new_block<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    dir: u32,
    inode: &mut crate::format::inode::DiskInode,
    logical: u64,
    name: &[u8],
    target: u32,
    file_type: u8,
) -> Result<bool> {
    let end = logical * BLOCK_SIZE as u64 + entry_size(name.len()) as u64;
    if end > u32::MAX as u64 {
        return Ok(false);
    }
    let Some(physical) = ck.allocate_block() else {
        return Ok(false);
    };
    let mut block = Box::new([0u8; BLOCK_SIZE]);
    write_packed(&mut block, 0, target, file_type, name);
    ck.write_block(physical, &block)?;
    if !set_mapping(ck, inode, logical, physical)? {
        ck.release_block(physical);
        return Ok(false);
    }
    inode.blocks = inode.blocks.saturating_add(1);
    inode.size = inode.size.max(end as u32);
    ck.write_inode(dir, inode)?;
    Ok(true)
}

/// Points the first live entry called `name` at `target`. Returns whether
/// there was one.
pub(super) fn set_entry<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    dir: u32,
    name: &[u8],
    target: u32,
) -> Result<bool> {
    let inode = ck.read_inode(dir)?;
    let mut done = false;
    for_each_block(ck, &inode, &mut |_, _, block, limit| {
        if done {
            return Ok(false);
        }
        let found = BlockWalk::new(block, limit)
            .find(|record| record.is_live() && record.name == name)
            .map(|record| record.offset);
        if let Some(offset) = found {
            put_u32(&mut block[..], offset, target);
            done = true;
        }
        Ok(done)
    })?;
    Ok(done)
}

/// Removes every entry of `dir` (other than `.` and `..`) naming `target`.
pub(super) fn remove_entries_to<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    dir: u32,
    target: u32,
) -> Result<()> {
    let inode = ck.read_inode(dir)?;
    for_each_block(ck, &inode, &mut |_, _, block, limit| {
        let records: Vec<Record> = BlockWalk::new(block, limit)
            .map(|record| {
                let names_target = record.header.inode == target && !is_dot_or_dotdot(record.name);
                Record {
                    offset: record.offset,
                    rec_len: record.header.rec_len,
                    edit: if names_target { Edit::Remove } else { Edit::Keep },
                }
            })
            .collect();
        let changed = records.iter().any(|record| record.edit != Edit::Keep);
        if changed {
            apply_edits(block, &records);
        }
        Ok(changed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::inode::FileType;

    fn live(inodes: usize) -> alloc::vec::Vec<InodeState> {
        alloc::vec![
            InodeState {
                kind: super::super::context::Kind::Known(FileType::Regular),
                system: false,
                links: 1,
                found: 0,
            };
            inodes
        ]
    }

    fn names(block: &Block, limit: usize) -> alloc::vec::Vec<alloc::vec::Vec<u8>> {
        BlockWalk::new(block, limit).filter(|r| r.is_live()).map(|r| r.name.to_vec()).collect()
    }

    #[test]
    fn removal_merges_or_frees() {
        let mut block = [0u8; BLOCK_SIZE];
        write_packed(&mut block, 0, 5, 1, b"a");
        write_packed(&mut block, 12, 6, 1, b"b");
        write_packed(&mut block, 24, 7, 1, b"c");
        let records = [
            Record { offset: 0, rec_len: 12, edit: Edit::Remove },
            Record { offset: 12, rec_len: 12, edit: Edit::Remove },
            Record { offset: 24, rec_len: 12, edit: Edit::SetType(2) },
        ];
        apply_edits(&mut block, &records);
        assert_eq!(names(&block, 36), [b"c".to_vec()]);
        let first = DirentHeader::decode(&block[..]);
        assert_eq!((first.inode, first.rec_len, first.name_len), (0, 24, 0));
        assert_eq!(block[31], 2);
    }

    #[test]
    fn salvage_keeps_what_parses_around_garbage() {
        let mut block = [0u8; BLOCK_SIZE];
        write_packed(&mut block, 0, 1, 2, b".");
        write_packed(&mut block, 12, 1, 2, b"..");
        write_packed(&mut block, 24, 3, 1, b"lost");
        write_packed(&mut block, 36, 4, 1, b"kept");
        block[24..30].copy_from_slice(&[0xa5; 6]);
        let damage = salvage_block(&mut block, 48, &live(10));
        assert_eq!(damage, Some(24));
        assert_eq!(names(&block, 48), [b".".to_vec(), b"..".to_vec(), b"kept".to_vec()]);
        assert!(block[36..].iter().all(|&b| b == 0));
    }

    #[test]
    fn placement_uses_slack_then_tail() {
        let mut block = [0u8; BLOCK_SIZE];
        let header = DirentHeader { inode: 3, rec_len: 40, name_len: 1, file_type: 1 };
        write_entry(&mut block, 0, header, b"x");
        assert_eq!(place_in_block(&mut block, 40, b"yy", 4, 1), Some(24));
        assert_eq!(place_in_block(&mut block, 40, b"zzzzzzzzzzzzzzzz", 5, 1), Some(64));
        assert_eq!(names(&block, 64), [b"x".to_vec(), b"yy".to_vec(), b"zzzzzzzzzzzzzzzz".to_vec()]);
    }

    #[test]
    fn packer_sizes() {
        let mut packer = Packer::default();
        assert_eq!(packer.size(), 0);
        assert!(!packer.place(4000));
        assert!(packer.place(200));
        assert_eq!((packer.blocks(), packer.size()), (2, 4096 + 200));
    }
}
