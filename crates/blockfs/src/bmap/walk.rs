//! The walk over every pointer of a block map: direct, single-indirect,
//! and the double-indirect tree, in logical order. The caller keeps,
//! skips, clears or replaces each pointer. It is the one walk the code
//! has: the volume frees a truncated tail with it, the checker claims,
//! clears and copies blocks with it, and the resizer validates and remaps
//! maps with it. Each brings its own [`MapWalk`]: where indirect blocks
//! come from and go back to, and what to do with a pointer.
//!
//! Work is bounded by the map, never by a size: holes cost nothing, the
//! walk descends two levels at most, and a pointer the caller does not
//! `Keep` is not descended into (which is how a checker visits a block
//! claimed twice once, and how a truncation passes over the kept head).

use alloc::boxed::Box;

use super::{DOUBLE_START, PER_BLOCK, SINGLE_START};
use crate::format::inode::DiskInode;
use crate::format::{le_u32, put_u32, Block, POINTERS_PER_BLOCK};

/// What a pointer points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Data,
    /// A single-indirect block (the inode's, or one under the double).
    Single,
    Double,
}

/// One non-zero pointer of a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub block: u32,
    pub level: Level,
    /// The first logical block it maps.
    pub logical: u64,
}

impl Level {
    /// Logical blocks a pointer at this level maps.
    pub fn span(self) -> u64 {
        match self {
            Level::Data => 1,
            Level::Single => PER_BLOCK,
            Level::Double => PER_BLOCK * PER_BLOCK,
        }
    }

    /// The level of the pointers inside an indirect block of this level.
    fn below(self) -> Level {
        if self == Level::Double {
            Level::Single
        } else {
            Level::Data
        }
    }
}

impl Pointer {
    /// Logical blocks it maps.
    pub fn span(&self) -> u64 {
        self.level.span()
    }
}

/// The caller's decision about one pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Keep it, and descend into it if it is an indirect block.
    Keep,
    /// Keep it but do not descend.
    Skip,
    /// Set it to 0 (a hole).
    Clear,
    /// Point it at another block.
    Replace(u32),
}

/// A walk's source of indirect blocks and its decisions.
pub(crate) trait MapWalk {
    type Error;

    /// Decides about a pointer before anything under it is visited.
    fn visit(&mut self, pointer: Pointer) -> Result<Action, Self::Error>;

    /// The contents of an indirect block `visit` kept, or `None` when the
    /// walk must not descend into it.
    fn read_indirect(&mut self, pointer: Pointer) -> Result<Option<Box<Block>>, Self::Error>;

    /// Takes an indirect block back once its pointers were visited;
    /// `changed` says whether any was cleared or replaced. What it returns
    /// replaces `visit`'s `Keep` for the pointer to this block.
    fn leave_indirect(
        &mut self,
        pointer: Pointer,
        contents: Box<Block>,
        changed: bool,
    ) -> Result<Action, Self::Error>;
}

/// Applies `action` to a pointer; returns whether it changed.
fn apply(pointer: &mut u32, action: Action) -> bool {
    let new = match action {
        Action::Keep | Action::Skip => return false,
        Action::Clear => 0,
        Action::Replace(block) => block,
    };
    let changed = *pointer != new;
    *pointer = new;
    changed
}

/// Visits every non-zero pointer of `inode`'s map in logical order (the
/// triple-indirect pointer is not part of the map). Changes to the inode's
/// own pointers are made in `inode`; changes inside an indirect block go
/// to `leave_indirect`.
pub(crate) fn walk_map<W: MapWalk>(walk: &mut W, inode: &mut DiskInode) -> Result<(), W::Error> {
    for (index, pointer) in inode.direct.iter_mut().enumerate() {
        visit_slot(walk, pointer, Level::Data, index as u64)?;
    }
    visit_slot(walk, &mut inode.indirect, Level::Single, SINGLE_START)?;
    visit_slot(walk, &mut inode.double_indirect, Level::Double, DOUBLE_START)?;
    Ok(())
}

/// Visits the pointer in `slot` if it is not a hole, descending into an
/// indirect block it keeps. Returns whether the slot changed.
fn visit_slot<W: MapWalk>(
    walk: &mut W,
    slot: &mut u32,
    level: Level,
    logical: u64,
) -> Result<bool, W::Error> {
    if *slot == 0 {
        return Ok(false);
    }
    let pointer = Pointer { block: *slot, level, logical };
    let mut action = walk.visit(pointer)?;
    if action == Action::Keep && level != Level::Data {
        if let Some(mut contents) = walk.read_indirect(pointer)? {
            let changed = walk_indirect(walk, pointer, &mut contents)?;
            action = walk.leave_indirect(pointer, contents, changed)?;
        }
    }
    Ok(apply(slot, action))
}

/// Visits the pointers inside indirect block `parent` (whose contents are
/// `contents`); returns whether any changed.
fn walk_indirect<W: MapWalk>(walk: &mut W, parent: Pointer, contents: &mut Block) -> Result<bool, W::Error> {
    let level = parent.level.below();
    let span = level.span();
    let mut changed = false;
    for index in 0..POINTERS_PER_BLOCK {
        let mut slot = le_u32(contents, index * 4);
        if visit_slot(walk, &mut slot, level, parent.logical + index as u64 * span)? {
            put_u32(contents, index * 4, slot);
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::format::inode::DIRECT_BLOCKS;
    use crate::format::BLOCK_SIZE;

    /// Indirect blocks in memory; records what the walk did.
    struct MemWalk<F> {
        indirect: BTreeMap<u32, Box<Block>>,
        decide: F,
        visited: Vec<Pointer>,
        /// (block, changed) for each block handed back.
        left: Vec<(u32, bool)>,
        /// The indirect block `leave_indirect` clears.
        cleared_on_leave: Option<u32>,
    }

    impl<F: FnMut(Pointer) -> Action> MapWalk for MemWalk<F> {
        type Error = ();

        fn visit(&mut self, pointer: Pointer) -> Result<Action, ()> {
            self.visited.push(pointer);
            Ok((self.decide)(pointer))
        }

        fn read_indirect(&mut self, pointer: Pointer) -> Result<Option<Box<Block>>, ()> {
            Ok(self.indirect.get(&pointer.block).cloned())
        }

        fn leave_indirect(
            &mut self,
            pointer: Pointer,
            contents: Box<Block>,
            changed: bool,
        ) -> Result<Action, ()> {
            self.left.push((pointer.block, changed));
            self.indirect.insert(pointer.block, contents);
            Ok(if self.cleared_on_leave == Some(pointer.block) { Action::Clear } else { Action::Keep })
        }
    }

    fn pointers(entries: &[(usize, u32)]) -> Box<Block> {
        let mut block = Box::new([0u8; BLOCK_SIZE]);
        for &(index, pointer) in entries {
            put_u32(&mut block[..], index * 4, pointer);
        }
        block
    }

    /// Direct 0 → 100, single 200 → [0] 201, double 300 → [1] middle 301
    /// → [2] 302; middle 303 (at index 3) is missing: not descended.
    fn sample<F: FnMut(Pointer) -> Action>(decide: F) -> (DiskInode, MemWalk<F>) {
        let mut inode = DiskInode::default();
        inode.direct[0] = 100;
        inode.indirect = 200;
        inode.double_indirect = 300;
        let mut indirect = BTreeMap::new();
        indirect.insert(200, pointers(&[(0, 201)]));
        indirect.insert(300, pointers(&[(1, 301), (3, 303)]));
        indirect.insert(301, pointers(&[(2, 302)]));
        (inode, MemWalk { indirect, decide, visited: Vec::new(), left: Vec::new(), cleared_on_leave: None })
    }

    #[test]
    fn visits_every_pointer_in_logical_order_with_its_level() {
        let (mut inode, mut walk) = sample(|_| Action::Keep);
        walk_map(&mut walk, &mut inode).unwrap();
        let seen: Vec<_> = walk.visited.iter().map(|p| (p.block, p.level, p.logical)).collect();
        let double_first = DOUBLE_START + PER_BLOCK;
        assert_eq!(
            seen,
            vec![
                (100, Level::Data, 0),
                (200, Level::Single, SINGLE_START),
                (201, Level::Data, DIRECT_BLOCKS as u64),
                (300, Level::Double, DOUBLE_START),
                (301, Level::Single, double_first),
                (302, Level::Data, double_first + 2),
                (303, Level::Single, DOUBLE_START + 3 * PER_BLOCK),
            ]
        );
        assert_eq!(walk.left, vec![(200, false), (301, false), (300, false)]);
    }

    #[test]
    fn skip_does_not_descend_and_changes_reach_the_right_block() {
        let (mut inode, mut walk) = sample(|p| match p.block {
            100 => Action::Replace(110),
            200 => Action::Skip,
            302 => Action::Clear,
            _ => Action::Keep,
        });
        walk_map(&mut walk, &mut inode).unwrap();
        assert!(!walk.visited.iter().any(|p| p.block == 201), "descended into a skipped block");
        assert_eq!(inode.direct[0], 110);
        assert_eq!(inode.indirect, 200);
        assert_eq!(le_u32(&walk.indirect[&301][..], 2 * 4), 0);
        assert_eq!(walk.left, vec![(301, true), (300, false)]);
    }

    #[test]
    fn leave_decides_for_the_indirect_block_itself() {
        let (mut inode, mut walk) = sample(|_| Action::Keep);
        walk.cleared_on_leave = Some(301);
        walk_map(&mut walk, &mut inode).unwrap();
        assert!(walk.visited.iter().any(|p| p.block == 302), "301's pointers are visited first");
        assert_eq!(inode.double_indirect, 300);
        assert_eq!(le_u32(&walk.indirect[&300][..], 4), 0, "the pointer to 301 is cleared");
        assert_eq!(walk.left, vec![(200, false), (301, false), (300, true)]);
    }
}
