//! Logical → physical block mapping through the inode's 12 direct
//! pointers, one single-indirect and one double-indirect block. A zero
//! pointer is a hole. The triple-indirect pointer is never needed: sizes
//! are u32, and direct + single + double already cover 4 GiB.
//!
//! Everything here is shared by the volume, the checker and the resizer,
//! each through a source of its own: the lookup reader (`map_logical`,
//! `next_mapped`, over a `PointerSource`; the checker reads pointers it
//! cannot trust as holes), the walk over every pointer (`walk_map`, over a
//! `MapWalk`), and the path that gets a new mapping its indirect blocks
//! (`slot_for`, over a `MapWriter`). The filesystem's own sources are at
//! the end: a transaction's blocks, its allocator, and corruption for a
//! bad pointer.

use alloc::boxed::Box;

use crate::cache::{BlockKind, Fill};
use crate::device::BlockDevice;
use crate::error::{Corruption, Error, Result};
use crate::format::inode::{DiskInode, DIRECT_BLOCKS};
use crate::format::{le_u32, put_u32, Block, POINTERS_PER_BLOCK};
use crate::tx::Tx;

mod walk;

pub(crate) use walk::{walk_map, Action, Level, MapWalk, Pointer};

pub(crate) const PER_BLOCK: u64 = POINTERS_PER_BLOCK as u64;
pub(crate) const SINGLE_START: u64 = DIRECT_BLOCKS as u64;
pub(crate) const DOUBLE_START: u64 = SINGLE_START + PER_BLOCK;
/// One past the last logical block the inode can address.
pub const MAX_LOGICAL_BLOCKS: u64 = DOUBLE_START + PER_BLOCK * PER_BLOCK;

/// Where a logical block's pointer lives.
pub(crate) enum Path {
    Direct(usize),
    Single(usize),
    Double(usize, usize),
}

pub(crate) fn path_of(logical: u64) -> Option<Path> {
    if logical < SINGLE_START {
        Some(Path::Direct(logical as usize))
    } else if logical < DOUBLE_START {
        Some(Path::Single((logical - SINGLE_START) as usize))
    } else if logical < MAX_LOGICAL_BLOCKS {
        let rest = logical - DOUBLE_START;
        Some(Path::Double((rest / PER_BLOCK) as usize, (rest % PER_BLOCK) as usize))
    } else {
        None
    }
}

/// Where a map reader gets its pointers.
pub(crate) trait PointerSource {
    /// Whether a non-zero pointer may be followed. The filesystem reports
    /// one outside the data area as corruption; the checker reads one it
    /// cannot trust (outside the data area, or claimed twice) as a hole.
    fn follow(&mut self, pointer: u32) -> Result<bool>;
    /// Pointer `index` of indirect block `block`, which `follow` allowed.
    fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32>;
}

/// `pointer`, if it is neither a hole nor refused by `source`.
fn followed<S: PointerSource>(source: &mut S, pointer: u32) -> Result<Option<u32>> {
    Ok((pointer != 0 && source.follow(pointer)?).then_some(pointer))
}

/// Physical block of `logical` in `inode`'s map, or `None` for a hole.
pub(crate) fn map_logical<S: PointerSource>(
    source: &mut S,
    inode: &DiskInode,
    logical: u64,
) -> Result<Option<u32>> {
    let pointer = match path_of(logical) {
        None => return Ok(None),
        Some(Path::Direct(index)) => inode.direct[index],
        Some(Path::Single(index)) => match followed(source, inode.indirect)? {
            Some(single) => source.pointer_in(single, index)?,
            None => return Ok(None),
        },
        Some(Path::Double(outer, inner)) => {
            let Some(root) = followed(source, inode.double_indirect)? else {
                return Ok(None);
            };
            let middle = source.pointer_in(root, outer)?;
            match followed(source, middle)? {
                Some(middle) => source.pointer_in(middle, inner)?,
                None => return Ok(None),
            }
        }
    };
    followed(source, pointer)
}

/// The first mapped logical block of `inode` in `from..end`, with its
/// physical block. A missing single- or double-indirect block, or a
/// missing middle block of the double-indirect tree, is a run of holes
/// passed in one step, so a size claiming gigabytes costs what the map
/// holds.
pub(crate) fn next_mapped<S: PointerSource>(
    source: &mut S,
    inode: &DiskInode,
    from: u64,
    end: u64,
) -> Result<Option<(u64, u32)>> {
    let end = end.min(MAX_LOGICAL_BLOCKS);
    let mut logical = from;
    while logical < end {
        if (SINGLE_START..DOUBLE_START).contains(&logical) && followed(source, inode.indirect)?.is_none() {
            logical = DOUBLE_START;
            continue;
        }
        if logical >= DOUBLE_START {
            let Some(root) = followed(source, inode.double_indirect)? else {
                return Ok(None);
            };
            let outer = (logical - DOUBLE_START) / PER_BLOCK;
            let middle = source.pointer_in(root, outer as usize)?;
            if followed(source, middle)?.is_none() {
                logical = DOUBLE_START + (outer + 1) * PER_BLOCK;
                continue;
            }
        }
        if let Some(physical) = map_logical(source, inode, logical)? {
            return Ok(Some((logical, physical)));
        }
        logical += 1;
    }
    Ok(None)
}

/// Where a map writer gets indirect blocks: the volume allocates them in
/// its transaction, the checker from the bitmap it rebuilds.
pub(crate) trait MapWriter {
    /// A fresh zeroed indirect block, counted in `inode.blocks`; `None`
    /// when there is no space.
    fn new_indirect(&mut self, inode: &mut DiskInode) -> Result<Option<u32>>;
    /// Pointer `index` of indirect block `block`.
    fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32>;
    fn set_pointer_in(&mut self, block: u32, index: usize, pointer: u32) -> Result<()>;
}

/// Where a logical block's pointer is stored.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Direct(usize),
    /// Pointer `index` of an indirect block.
    Indirect(u32, usize),
}

/// The slot of the logical block at `path`, allocating the indirect
/// blocks on the way; `None` when there is no space for them.
pub(crate) fn slot_for<W: MapWriter>(
    writer: &mut W,
    inode: &mut DiskInode,
    path: Path,
) -> Result<Option<Slot>> {
    match path {
        Path::Direct(index) => Ok(Some(Slot::Direct(index))),
        Path::Single(index) => {
            let Some(single) = existing_or_new(writer, inode, inode.indirect)? else { return Ok(None) };
            inode.indirect = single;
            Ok(Some(Slot::Indirect(single, index)))
        }
        Path::Double(outer, inner) => {
            let Some(double) = existing_or_new(writer, inode, inode.double_indirect)? else {
                return Ok(None);
            };
            inode.double_indirect = double;
            let middle = writer.pointer_in(double, outer)?;
            let Some(new_middle) = existing_or_new(writer, inode, middle)? else { return Ok(None) };
            if middle == 0 {
                writer.set_pointer_in(double, outer, new_middle)?;
            }
            Ok(Some(Slot::Indirect(new_middle, inner)))
        }
    }
}

/// `pointer`, or a new indirect block when it is a hole.
fn existing_or_new<W: MapWriter>(writer: &mut W, inode: &mut DiskInode, pointer: u32) -> Result<Option<u32>> {
    if pointer != 0 {
        return Ok(Some(pointer));
    }
    writer.new_indirect(inode)
}

/// Stores `pointer` in `slot`.
pub(crate) fn set_slot<W: MapWriter>(
    writer: &mut W,
    inode: &mut DiskInode,
    slot: Slot,
    pointer: u32,
) -> Result<()> {
    match slot {
        Slot::Direct(index) => inode.direct[index] = pointer,
        Slot::Indirect(block, index) => writer.set_pointer_in(block, index, pointer)?,
    }
    Ok(())
}

/// A transaction's pointers, through the cache, for inode `ino`.
struct TxPointers<'t, 'v, D: BlockDevice> {
    tx: &'t mut Tx<'v, D>,
    ino: u32,
}

impl<D: BlockDevice> PointerSource for TxPointers<'_, '_, D> {
    fn follow(&mut self, pointer: u32) -> Result<bool> {
        self.tx.checked_pointer(pointer, self.ino).map(|_| true)
    }

    fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32> {
        self.tx.read_block(block, |bytes| le_u32(bytes, index * 4))
    }
}

/// A transaction as a map writer: indirect blocks allocated near `goal`
/// (just before the data they map, keeping runs), pointers checked as
/// they are read.
struct TxWriter<'t, 'v, D: BlockDevice> {
    tx: &'t mut Tx<'v, D>,
    ino: u32,
    goal: Option<u32>,
}

impl<D: BlockDevice> MapWriter for TxWriter<'_, '_, D> {
    fn new_indirect(&mut self, inode: &mut DiskInode) -> Result<Option<u32>> {
        let block = self.tx.allocate_block(self.ino, self.goal)?;
        self.tx.modify_block(block, BlockKind::Metadata, Fill::Zero, |_| ())?;
        inode.blocks += 1;
        Ok(Some(block))
    }

    fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32> {
        self.tx.pointer_in(block, index, self.ino)
    }

    fn set_pointer_in(&mut self, block: u32, index: usize, pointer: u32) -> Result<()> {
        self.tx
            .modify_block(block, BlockKind::Metadata, Fill::Read, |bytes| put_u32(bytes, index * 4, pointer))
    }
}

impl<D: BlockDevice> Tx<'_, D> {
    /// Validates a pointer read from an inode or indirect block.
    fn checked_pointer(&self, pointer: u32, ino: u32) -> Result<u32> {
        if pointer == 0 || self.geometry().is_data_block(pointer) {
            Ok(pointer)
        } else {
            Err(Error::corrupt(Corruption::BlockOutOfRange(pointer), Some(ino), Some(pointer)))
        }
    }

    fn pointer_in(&mut self, block: u32, index: usize, ino: u32) -> Result<u32> {
        let pointer = self.read_block(block, |bytes| le_u32(bytes, index * 4))?;
        self.checked_pointer(pointer, ino)
    }

    /// Physical block of `logical`, or `None` for a hole.
    pub fn map_block(&mut self, ino: u32, inode: &DiskInode, logical: u64) -> Result<Option<u32>> {
        map_logical(&mut TxPointers { tx: self, ino }, inode, logical)
    }

    /// The first mapped logical block of `inode` in `from..end`.
    pub fn next_mapped_block(
        &mut self,
        ino: u32,
        inode: &DiskInode,
        from: u64,
        end: u64,
    ) -> Result<Option<u64>> {
        Ok(next_mapped(&mut TxPointers { tx: self, ino }, inode, from, end)?.map(|(logical, _)| logical))
    }

    /// Physical block of `logical`, allocating it (and any indirect block
    /// on the way) when it is a hole. Returns the block and whether it was
    /// newly allocated — a new block's contents are undefined until the
    /// caller writes it whole or zeroes it.
    pub fn map_or_allocate(
        &mut self,
        ino: u32,
        inode: &mut DiskInode,
        logical: u64,
        goal: Option<u32>,
    ) -> Result<(u32, bool)> {
        if let Some(physical) = self.map_block(ino, inode, logical)? {
            return Ok((physical, false));
        }
        let path = path_of(logical).ok_or(Error::FileTooBig)?;
        let mut writer = TxWriter { tx: self, ino, goal };
        // The transaction's allocation fails with an error, never `None`.
        let slot = slot_for(&mut writer, inode, path)?.ok_or(Error::NoSpace)?;
        let block = writer.tx.allocate_block(ino, goal)?;
        inode.blocks += 1;
        set_slot(&mut writer, inode, slot, block)?;
        Ok((block, true))
    }

    /// The highest logical block whose path holds any allocated block (a
    /// data block, or an indirect block left empty), or `None` when the
    /// inode maps nothing. Freeing from there down lets a huge truncation
    /// proceed in steps that each fit one transaction.
    pub fn last_mapped(&mut self, ino: u32, inode: &DiskInode) -> Result<Option<u64>> {
        let double = self.checked_pointer(inode.double_indirect, ino)?;
        if double != 0 {
            for outer in (0..POINTERS_PER_BLOCK).rev() {
                let middle = self.pointer_in(double, outer, ino)?;
                if middle == 0 {
                    continue;
                }
                let base = DOUBLE_START + outer as u64 * PER_BLOCK;
                let inner = self.last_pointer(middle, ino)?;
                return Ok(Some(base + inner.unwrap_or(0) as u64));
            }
            return Ok(Some(DOUBLE_START));
        }
        let single = self.checked_pointer(inode.indirect, ino)?;
        if single != 0 {
            let index = self.last_pointer(single, ino)?;
            return Ok(Some(SINGLE_START + index.unwrap_or(0) as u64));
        }
        Ok(inode.direct.iter().rposition(|&pointer| pointer != 0).map(|index| index as u64))
    }

    /// Index of the last non-zero pointer in an indirect block.
    fn last_pointer(&mut self, block: u32, ino: u32) -> Result<Option<usize>> {
        self.checked_pointer(block, ino)?;
        let last = self.read_block(block, |bytes| {
            (0..POINTERS_PER_BLOCK).rev().find(|&index| le_u32(bytes, index * 4) != 0)
        })?;
        match last {
            Some(index) => self.pointer_in(block, index, ino).map(|_| Some(index)),
            None => Ok(None),
        }
    }

    /// Frees every data and indirect block mapping logical blocks at or
    /// past `keep`, and indirect blocks left with no pointers.
    pub fn truncate_blocks(&mut self, ino: u32, inode: &mut DiskInode, keep: u64) -> Result<()> {
        let mut truncation = Truncation { tx: self, ino, keep, freed: 0 };
        let walked = walk_map(&mut truncation, inode);
        // Counted as they go, so a failure part-way still matches the map
        // (the transaction rolls both back anyway).
        inode.blocks = inode.blocks.saturating_sub(truncation.freed);
        walked
    }
}

/// The walk of a truncation: frees what maps logical blocks at or past
/// `keep`, and indirect blocks it leaves with no pointers; skips subtrees
/// wholly before `keep`.
struct Truncation<'t, 'v, D: BlockDevice> {
    tx: &'t mut Tx<'v, D>,
    ino: u32,
    keep: u64,
    freed: u32,
}

impl<D: BlockDevice> MapWalk for Truncation<'_, '_, D> {
    type Error = Error;

    fn visit(&mut self, pointer: Pointer) -> Result<Action> {
        self.tx.checked_pointer(pointer.block, self.ino)?;
        if pointer.logical + pointer.span() <= self.keep {
            return Ok(Action::Skip);
        }
        if pointer.level != Level::Data {
            return Ok(Action::Keep);
        }
        self.tx.free_block(pointer.block)?;
        self.freed += 1;
        Ok(Action::Clear)
    }

    fn read_indirect(&mut self, pointer: Pointer) -> Result<Option<Box<Block>>> {
        Ok(Some(self.tx.read_block(pointer.block, |bytes| Box::new(*bytes))?))
    }

    fn leave_indirect(&mut self, pointer: Pointer, contents: Box<Block>, changed: bool) -> Result<Action> {
        if changed {
            self.tx.modify_block(pointer.block, BlockKind::Metadata, Fill::Whole, |bytes| {
                bytes.copy_from_slice(&contents[..])
            })?;
        }
        if contents.iter().any(|&byte| byte != 0) {
            return Ok(Action::Keep);
        }
        self.tx.free_block(pointer.block)?;
        self.freed += 1;
        Ok(Action::Clear)
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::{BTreeMap, BTreeSet};
    use alloc::vec::Vec;

    use super::*;
    use crate::error::Corruption;
    use crate::format::Block;

    /// Indirect blocks in memory; pointers in `refused` may not be
    /// followed, read as holes or, with `strict`, reported as corruption.
    #[derive(Default)]
    struct MemPointers {
        indirect: BTreeMap<u32, Block>,
        refused: BTreeSet<u32>,
        strict: bool,
        reads: usize,
    }

    impl MemPointers {
        fn set(&mut self, block: u32, index: usize, pointer: u32) {
            put_u32(self.indirect.entry(block).or_insert([0; crate::format::BLOCK_SIZE]), index * 4, pointer);
        }
    }

    impl PointerSource for MemPointers {
        fn follow(&mut self, pointer: u32) -> Result<bool> {
            match self.refused.contains(&pointer) {
                false => Ok(true),
                true if self.strict => {
                    Err(Error::corrupt(Corruption::BlockOutOfRange(pointer), None, Some(pointer)))
                }
                true => Ok(false),
            }
        }

        fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32> {
            self.reads += 1;
            Ok(self.indirect.get(&block).map_or(0, |contents| le_u32(contents, index * 4)))
        }
    }

    /// A map writer over `MemPointers` that hands out indirect blocks
    /// from 1000 up while `free` lasts.
    struct MemWriter {
        pointers: MemPointers,
        free: usize,
        next: u32,
    }

    impl MapWriter for MemWriter {
        fn new_indirect(&mut self, inode: &mut DiskInode) -> Result<Option<u32>> {
            if self.free == 0 {
                return Ok(None);
            }
            self.free -= 1;
            self.next += 1;
            inode.blocks += 1;
            Ok(Some(self.next))
        }

        fn pointer_in(&mut self, block: u32, index: usize) -> Result<u32> {
            self.pointers.pointer_in(block, index)
        }

        fn set_pointer_in(&mut self, block: u32, index: usize, pointer: u32) -> Result<()> {
            self.pointers.set(block, index, pointer);
            Ok(())
        }
    }

    #[test]
    fn slots_get_their_indirect_blocks_once_and_map_what_is_stored() {
        let mut writer = MemWriter { pointers: MemPointers::default(), free: 3, next: 1000 };
        let mut inode = DiskInode::default();
        let far = DOUBLE_START + 3 * PER_BLOCK + 7;
        for (round, logical) in [far, far + 1, SINGLE_START + 4, 5].into_iter().enumerate() {
            let slot = slot_for(&mut writer, &mut inode, path_of(logical).unwrap()).unwrap().unwrap();
            set_slot(&mut writer, &mut inode, slot, 50 + round as u32).unwrap();
        }
        // Root, middle and single: three indirect blocks, counted.
        assert_eq!((inode.double_indirect, inode.indirect, inode.blocks), (1001, 1003, 3));
        for (round, logical) in [far, far + 1, SINGLE_START + 4, 5].into_iter().enumerate() {
            let mapped = map_logical(&mut writer.pointers, &inode, logical).unwrap();
            assert_eq!(mapped, Some(50 + round as u32), "logical {logical}");
        }
        // No space for a second middle block: no slot, and nothing else
        // changed.
        let before = inode;
        assert!(slot_for(&mut writer, &mut inode, path_of(far + PER_BLOCK).unwrap()).unwrap().is_none());
        assert_eq!(inode, before);
    }

    /// An inode mapping logical 0 directly, 12 through the single block
    /// 100, and 1036 + 2 · 1024 + 5 through root 200 and middle 300.
    fn sample() -> (DiskInode, MemPointers) {
        let mut inode = DiskInode::default();
        inode.direct[0] = 10;
        inode.indirect = 100;
        inode.double_indirect = 200;
        let mut pointers = MemPointers::default();
        pointers.set(100, 0, 11);
        pointers.set(200, 2, 300);
        pointers.set(300, 5, 12);
        (inode, pointers)
    }

    #[test]
    fn a_map_reads_through_every_level() {
        let (inode, mut pointers) = sample();
        let far = DOUBLE_START + 2 * PER_BLOCK + 5;
        assert_eq!(map_logical(&mut pointers, &inode, 0).unwrap(), Some(10));
        assert_eq!(map_logical(&mut pointers, &inode, 1).unwrap(), None);
        assert_eq!(map_logical(&mut pointers, &inode, SINGLE_START).unwrap(), Some(11));
        assert_eq!(map_logical(&mut pointers, &inode, far).unwrap(), Some(12));
        assert_eq!(map_logical(&mut pointers, &inode, far + 1).unwrap(), None);
        assert_eq!(map_logical(&mut pointers, &inode, MAX_LOGICAL_BLOCKS).unwrap(), None);
        let mapped: Vec<_> = core::iter::successors(
            next_mapped(&mut pointers, &inode, 0, u64::MAX).unwrap(),
            |&(logical, _)| next_mapped(&mut pointers, &inode, logical + 1, u64::MAX).unwrap(),
        )
        .collect();
        assert_eq!(mapped, [(0, 10), (SINGLE_START, 11), (far, 12)]);
    }

    #[test]
    fn missing_levels_are_stepped_over_at_once() {
        let (inode, mut pointers) = sample();
        // Past the single block's one mapping: 1023 holes, then a root
        // whose first two middle pointers are holes.
        let found = next_mapped(&mut pointers, &inode, SINGLE_START + 1, u64::MAX).unwrap();
        assert_eq!(found, Some((DOUBLE_START + 2 * PER_BLOCK + 5, 12)));
        // The single block's 1023 pointers are read one by one, each
        // missing middle block costs one read: about 1,040 in all. Were the
        // 2,048 holes under them visited one by one, over 5,000.
        assert!(pointers.reads < 1100, "{} pointer reads", pointers.reads);
        let mut empty = MemPointers::default();
        let bare = DiskInode { indirect: 0, double_indirect: 0, ..DiskInode::default() };
        assert_eq!(next_mapped(&mut empty, &bare, 0, u64::MAX).unwrap(), None);
        assert_eq!(empty.reads, 0);
    }

    #[test]
    fn a_refused_pointer_is_a_hole_or_an_error() {
        let (inode, mut pointers) = sample();
        pointers.refused.insert(300);
        let far = DOUBLE_START + 2 * PER_BLOCK + 5;
        assert_eq!(map_logical(&mut pointers, &inode, far).unwrap(), None);
        assert_eq!(next_mapped(&mut pointers, &inode, SINGLE_START + 1, u64::MAX).unwrap(), None);
        pointers.strict = true;
        assert!(matches!(map_logical(&mut pointers, &inode, far), Err(Error::Corrupt { .. })));
        assert!(next_mapped(&mut pointers, &inode, SINGLE_START + 1, u64::MAX).is_err());
        // A refused data pointer too.
        pointers.refused.insert(10);
        assert!(map_logical(&mut pointers, &inode, 0).is_err());
    }

    #[test]
    fn paths_cover_the_three_levels() {
        assert!(matches!(path_of(0), Some(Path::Direct(0))));
        assert!(matches!(path_of(11), Some(Path::Direct(11))));
        assert!(matches!(path_of(12), Some(Path::Single(0))));
        assert!(matches!(path_of(1035), Some(Path::Single(1023))));
        assert!(matches!(path_of(1036), Some(Path::Double(0, 0))));
        assert!(matches!(path_of(1036 + 1025), Some(Path::Double(1, 1))));
        assert!(path_of(MAX_LOGICAL_BLOCKS).is_none());
        // The largest u32 size fits.
        assert!((u32::MAX as u64 / 4096) < MAX_LOGICAL_BLOCKS);
    }
}
