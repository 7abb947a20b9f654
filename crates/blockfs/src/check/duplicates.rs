//! Pass 1b: blocks claimed by more than one pointer. The inodes are walked
//! again in pass 1's order, so the first pointer to reach a block is the
//! one pass 1 claimed it for: that owner keeps it. Every later pointer to
//! a data block gets a copy of the block when space allows, and becomes a
//! hole otherwise; a later pointer to an indirect block becomes a hole
//! (what it maps belongs to the first owner's tree).

use super::bitset::Bitset;
use super::blockmap::{walk_map, Action, Level};
use super::context::{Checker, Kind};
use super::inodes::for_each_inode;
use super::report::ProblemKind;
use crate::device::BlockDevice;
use crate::error::Result;

pub(super) fn resolve<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    // Reported (as fixed) in pass 1, where they were found.
    let allowed = ck.may_fix(&ProblemKind::DuplicateBlock { block: 0 });
    if ck.duplicates.ones() == 0 || !allowed {
        return Ok(());
    }
    let mut owned = Bitset::new(ck.geometry.block_count);
    for_each_inode(ck, &mut |ck, ino, inode| {
        let holds_data = match ck.state(ino).kind {
            Kind::Free | Kind::Orphan => false,
            Kind::Unknown => true,
            Kind::Known(file_type) => file_type.has_data_blocks(),
        };
        if !holds_data {
            return Ok(());
        }
        let mut held = 0u32;
        walk_map(ck, inode, &mut |ck, pointer| {
            if !ck.duplicates.contains(pointer.block) || owned.insert(pointer.block) {
                held += 1;
                return Ok(Action::Keep);
            }
            if pointer.level == Level::Data {
                if let Some(copy) = copy_block(ck, pointer.block)? {
                    held += 1;
                    return Ok(Action::Replace(copy));
                }
            }
            Ok(Action::Clear)
        })?;
        // Part of the same repair: the count follows the pointers dropped.
        inode.blocks = held;
        Ok(())
    })?;
    ck.duplicates.clear();
    Ok(())
}

/// A fresh block holding a copy of `source`, or `None` when the image is
/// full.
fn copy_block<D: BlockDevice>(ck: &mut Checker<'_, D>, source: u32) -> Result<Option<u32>> {
    let Some(copy) = ck.allocate_block() else {
        return Ok(None);
    };
    let contents = ck.read_new(source)?;
    ck.write_block(copy, &contents)?;
    Ok(Some(copy))
}
