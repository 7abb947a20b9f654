//! The orphan chain: inodes unlinked while open, still holding their
//! blocks, chained from the extension record's `orphan_head` through
//! `dtime`. A read-write mount frees them; so do repairs. A check without
//! repairs counts their blocks as owned, so a crashed image is not
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
        let fits = next < ck.geometry.usable_inodes() && ck.state(next).kind != Kind::Orphan;
        let member = if fits { Some(ck.read_inode(next)?) } else { None };
        let Some(inode) = member.filter(|inode| inode.is_free()) else {
            broken = Some(next);
            break;
        };
        let mut state = ck.state(next);
        state.kind = Kind::Orphan;
        ck.set_state(next, state);
        count += 1;
        next = inode.dtime;
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
