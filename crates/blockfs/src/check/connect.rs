//! Pass 3: the directory tree. Directories the root does not reach are
//! traced up their parent chains to where each chain starts (a directory
//! no entry names) or closes into a cycle; that directory is linked into
//! `/lost+found`, which brings the whole chain along. Then every
//! directory's `.` and `..` are checked against what is now known.

use alloc::vec::Vec;

use super::context::{Checker, NO_INODE};
use super::dirwrite::{add_entry, remove_entries_to, set_entry};
use super::lostfound;
use super::report::{Problem, ProblemKind};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::FileType;

/// Pass 3.
pub(super) fn run<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    for (top, in_cycle) in unattached(ck) {
        let kind = ProblemKind::UnreachableDirectory { in_cycle };
        let fixed = ck.may_fix(&kind) && reconnect(ck, top, in_cycle)?;
        ck.record(Problem::new(kind).inode(top), fixed);
    }
    for dir in ck.directories() {
        check_dots(ck, dir)?;
    }
    Ok(())
}

/// The directory heading each unreachable chain, and whether the chain
/// closes into a cycle there. Each directory is visited once: a walk stops
/// at the first directory an earlier walk marked.
fn unattached<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Vec<(u32, bool)> {
    let mut tops = Vec::new();
    for start in ck.directories() {
        let state = ck.dir(start);
        if state.reachable || state.mark != NO_INODE || ck.is_system(start) {
            continue;
        }
        let mut current = start;
        loop {
            ck.dir(current).mark = start;
            let parent = ck.dir(current).parent;
            let Some(above) = ck.dirs.get(&parent).copied() else {
                tops.push((current, false));
                break;
            };
            if above.mark == start {
                tops.push((parent, true));
                break;
            }
            if above.mark != NO_INODE || above.reachable {
                break;
            }
            current = parent;
        }
    }
    tops
}

/// Links `top` into `/lost+found` (breaking its cycle first, by removing
/// the entry its parent in the cycle has for it).
fn reconnect<D: BlockDevice>(ck: &mut Checker<'_, D>, top: u32, in_cycle: bool) -> Result<bool> {
    if in_cycle {
        let parent = ck.dir(top).parent;
        if ck.dir(parent).legacy {
            return Ok(false);
        }
        remove_entries_to(ck, parent, top)?;
        ck.adjust_links(parent, -1)?;
        ck.dir(top).parent = NO_INODE;
    }
    let Some(lost_found) = lostfound::attach(ck, top, FileType::Directory)? else {
        return Ok(false);
    };
    ck.dir(top).parent = lost_found;
    Ok(true)
}

/// `.` must name the directory, `..` its parent (the root's names the
/// root). A directory whose parent is unknown (unreachable, unrepaired)
/// has its `..` left alone.
fn check_dots<D: BlockDevice>(ck: &mut Checker<'_, D>, dir: u32) -> Result<()> {
    let state = *ck.dir(dir);
    match state.dot {
        None => fix_dot(ck, dir, b".", dir, ProblemKind::MissingDot)?,
        Some(found) if found != dir => fix_dot(ck, dir, b".", dir, ProblemKind::BadDot { found })?,
        _ => {}
    }
    let parent = if dir == ROOT_INODE { ROOT_INODE } else { state.parent };
    if parent == NO_INODE {
        return Ok(());
    }
    match state.dotdot {
        None => fix_dot(ck, dir, b"..", parent, ProblemKind::MissingDotDot)?,
        Some(found) if found != parent => {
            let kind = ProblemKind::BadDotDot { found, expected: parent };
            fix_dot(ck, dir, b"..", parent, kind)?
        }
        _ => {}
    }
    Ok(())
}

/// Points `name` at `target`, adding the entry if it is missing.
fn fix_dot<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    dir: u32,
    name: &[u8],
    target: u32,
    kind: ProblemKind,
) -> Result<()> {
    let missing = matches!(kind, ProblemKind::MissingDot | ProblemKind::MissingDotDot);
    let mut fixed = ck.may_fix(&kind) && !ck.dir(dir).legacy;
    if fixed {
        fixed = if missing {
            add_entry(ck, dir, name, target, FileType::Directory.dirent_code())?
        } else {
            set_entry(ck, dir, name, target)?
        };
    }
    let problem = if missing { Problem::new(kind).inode(dir) } else { Problem::entry(kind, dir, name) };
    ck.record(problem, fixed);
    Ok(())
}
