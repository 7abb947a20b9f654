//! Pass 4: link counts. Files and other non-directories first get a name
//! in `/lost+found` when no entry names them; then every in-use inode's
//! `links_count` is compared with its names (a directory has
//! `2 + subdirectories`: its parent's entry, its own `.`, and each child's
//! `..`; the root's `..` is itself).

use super::context::{Checker, Kind, NO_INODE};
use super::lostfound;
use super::report::{Problem, ProblemKind};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::FileType;

/// Pass 4.
pub(super) fn run<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    // With damage left in place, some entries may have gone unseen (an
    // unreadable directory block): counts may then be raised, not lowered,
    // or a later unlink could free an inode a hidden name still holds.
    let all_seen = ck.report.unfixed == 0;
    reconnect_orphans(ck)?;
    count_subdirectories(ck);
    for ino in 0..ck.geometry.usable_inodes() {
        check_links(ck, ino, all_seen)?;
    }
    Ok(())
}

/// In-use non-directories no entry names (the journal is meant to be
/// nameless).
fn reconnect_orphans<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    for ino in 0..ck.geometry.usable_inodes() {
        let state = ck.state(ino);
        let is_directory = state.kind == Kind::Known(FileType::Directory);
        if !state.in_use() || is_directory || state.found > 0 || ck.is_system(ino) {
            continue;
        }
        let kind = ProblemKind::OrphanInode;
        let mut fixed = false;
        if let (true, Kind::Known(file_type)) = (ck.may_fix(&kind), state.kind) {
            fixed = lostfound::attach(ck, ino, file_type)?.is_some();
        }
        if fixed {
            ck.add_found(ino);
        }
        ck.record(Problem::new(kind).inode(ino), fixed);
    }
    Ok(())
}

fn count_subdirectories<D: BlockDevice>(ck: &mut Checker<'_, D>) {
    for dir in ck.directories() {
        let parent = ck.dir(dir).parent;
        if dir == ROOT_INODE || parent == NO_INODE {
            continue;
        }
        if let Some(above) = ck.dirs.get_mut(&parent) {
            above.children = above.children.saturating_add(1);
        }
    }
}

fn check_links<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32, all_seen: bool) -> Result<()> {
    let state = ck.state(ino);
    let actual = match state.kind {
        Kind::Free | Kind::Orphan => return Ok(()),
        _ if ck.is_system(ino) => return Ok(()),
        Kind::Known(FileType::Directory) => ck.dir(ino).children.saturating_add(2),
        _ => state.found,
    };
    if actual == 0 {
        // An orphan left where it is: already reported, and a count of 0
        // would free it.
        return Ok(());
    }
    let Ok(links) = u16::try_from(actual) else {
        ck.record(Problem::new(ProblemKind::TooManyLinks { count: actual }).inode(ino), false);
        return Ok(());
    };
    if links == state.links {
        return Ok(());
    }
    let kind = ProblemKind::BadLinkCount { recorded: state.links, actual };
    let fix = ck.may_fix(&kind) && (actual > state.links as u32 || all_seen);
    if fix {
        let mut inode = ck.read_inode(ino)?;
        inode.links_count = links;
        ck.write_inode(ino, &inode)?;
        ck.set_links(ino, links);
    }
    ck.record(Problem::new(kind).inode(ino), fix);
    Ok(())
}
