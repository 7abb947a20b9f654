//! The orphan chain (see the library's `orphan` module): inodes still
//! holding blocks they are to give up, chained from the extension record's
//! `orphan_head` through `dtime`. A member without links is freed whole; a
//! member with links is mid-truncation and gives up its blocks past
//! `size`. A read-write mount finishes both; so do repairs. A check
//! without repairs counts their blocks as owned, so a crashed image is not
//! reported as leaking.

use super::context::{Checker, Kind};
use super::report::{Problem, ProblemKind};
use crate::device::BlockDevice;
use crate::error::Result;

/// Marks the chain's members (pass 1 releases or claims them) and, when
/// repairing, empties the chain.
pub(super) fn check<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    let Some(head) = ck.extension.map(|record| record.orphan_head) else {
        return Ok(());
    };
    let mut next = head;
    let mut count = 0u32;
    let mut broken = None;
    // Each step marks a new member, so the walk ends within the table.
    while next != 0 {
        let fits = next < ck.geometry.usable_inodes()
            && ck.state(next).kind != Kind::Orphan
            && !ck.truncating.contains(&next);
        let Some(mut inode) = (if fits { Some(ck.read_inode(next)?) } else { None }) else {
            broken = Some(next);
            break;
        };
        if inode.is_free() {
            let mut state = ck.state(next);
            state.kind = Kind::Orphan;
            ck.set_state(next, state);
        } else {
            ck.truncating.insert(next);
        }
        count += 1;
        let member = next;
        next = inode.dtime;
        if !inode.is_free() && ck.may_fix(&ProblemKind::PendingOrphans { count }) {
            // Off the chain (which is emptied below); pass 1 trims it.
            inode.dtime = 0;
            ck.write_inode(member, &inode)?;
        }
    }
    let release = ck.may_fix(&ProblemKind::PendingOrphans { count });
    if count > 0 {
        ck.record(Problem::new(ProblemKind::PendingOrphans { count }), release);
    }
    if let Some(ino) = broken {
        ck.record(Problem::new(ProblemKind::BadOrphanChain).inode(ino), release);
    }
    if let (true, Some(record)) = (release, ck.extension.as_mut()) {
        record.orphan_head = 0;
    }
    Ok(())
}
