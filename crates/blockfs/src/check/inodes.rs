//! Pass 1: every inode in the table. For each in-use inode: a known type,
//! pointers inside the data area, each block claimed once, a size that
//! covers the mapped blocks, a `blocks` count that matches the map, and
//! the rules of symlinks and special files. Claimed blocks are recorded
//! for the bitmap pass; blocks claimed twice are left for pass 1b.

use super::blockmap::{blocks_for, forget_map, walk_map, Action, Level, Pointer, SIZE_LIMIT_BLOCKS};
use super::context::{Checker, DirState, InodeState, Kind};
use super::report::{Problem, ProblemKind};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::dirent::BlockWalk;
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::{
    DiskInode, FileType, DIRECT_BLOCKS, INODES_PER_BLOCK, PERMISSION_BITS, SYSTEM_INODE_FLAG,
};
use crate::format::BLOCK_SIZE;
use crate::fs::MAX_SYMLINK_LEN;

/// `format`'s default for the root, given to a root rebuilt from nothing.
const NEW_ROOT_PERMISSIONS: u16 = 0o755;

pub(super) type InodeVisitor<'v, 'a, D> =
    dyn FnMut(&mut Checker<'a, D>, u32, &mut DiskInode) -> Result<()> + 'v;

/// Calls `visit` for every usable inode, a table block at a time, and
/// writes back the blocks whose inodes it changed. The journal comes
/// first: the record names its blocks, so it is their first owner when
/// another map claims one of them too.
pub(super) fn for_each_inode<'a, D: BlockDevice>(
    ck: &mut Checker<'a, D>,
    visit: &mut InodeVisitor<'_, 'a, D>,
) -> Result<()> {
    let journal = ck.journal;
    if let Some(ino) = journal {
        let mut inode = ck.read_inode(ino)?;
        let before = inode;
        visit(ck, ino, &mut inode)?;
        if inode != before {
            ck.write_inode(ino, &inode)?;
        }
    }
    let usable = ck.geometry.usable_inodes();
    for index in 0..ck.geometry.inode_table_blocks {
        let first = index * INODES_PER_BLOCK;
        if first >= usable {
            break;
        }
        let block = ck.geometry.first_inode_table_block() + index;
        let mut table = ck.read_new(block)?;
        let mut dirty = false;
        for ino in first..usable.min(first + INODES_PER_BLOCK) {
            if Some(ino) == journal {
                continue;
            }
            let slot = (ino - first) as usize;
            let mut inode = DiskInode::decode_slot(&table, slot);
            let before = inode;
            visit(ck, ino, &mut inode)?;
            if inode != before {
                inode.encode_slot(&mut table, slot);
                dirty = true;
            }
        }
        if dirty {
            ck.write_block(block, &table)?;
        }
    }
    Ok(())
}

/// Pass 1.
pub(super) fn scan<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    let total = ck.geometry.usable_inodes() as u64;
    for_each_inode(ck, &mut |ck, ino, inode| {
        ck.progress(1, ino as u64, total);
        check_inode(ck, ino, inode)
    })?;
    ck.progress(1, total, total);
    Ok(())
}

fn check_inode<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32, inode: &mut DiskInode) -> Result<()> {
    // Free exactly when unlinked; the root is in use whatever its count.
    if inode.is_free() && ino != ROOT_INODE {
        if ck.state(ino).kind == Kind::Orphan {
            release_or_claim(ck, ino, inode)?;
        } else {
            ck.free_inodes_found += 1;
        }
        return Ok(());
    }
    let kind = settle_kind(ck, ino, inode)?;
    // The root is never a hidden inode, whatever its flags say.
    let system = inode.flags & SYSTEM_INODE_FLAG != 0 && ino != ROOT_INODE;
    if system && ck.journal != Some(ino) {
        ck.record(Problem::new(ProblemKind::JournalDetached).inode(ino), false);
    }
    let in_use = match kind {
        Kind::Known(file_type) if !file_type.has_data_blocks() => {
            check_special(ck, ino, inode, file_type);
            true
        }
        Kind::Known(FileType::Symlink) if !check_symlink_size(ck, ino, inode)? => false,
        _ => {
            check_data(ck, ino, inode, kind)?;
            true
        }
    };
    if in_use {
        ck.set_state(ino, InodeState { kind, system, links: inode.links_count, found: 0 });
        if kind == Kind::Known(FileType::Directory) {
            ck.dirs.insert(ino, DirState::new());
        }
    }
    Ok(())
}

/// An orphan on the chain: freed when repairing (the chain is emptied),
/// else its blocks are counted as owned.
fn release_or_claim<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32, inode: &mut DiskInode) -> Result<()> {
    if ck.may_fix(&ProblemKind::PendingOrphans { count: 1 }) {
        forget_map(ck, inode)?;
        *inode = DiskInode { mode: inode.mode, dtime: ck.now, ..DiskInode::default() };
        ck.set_state(ino, InodeState::FREE);
    } else if inode.file_type().is_none_or(FileType::has_data_blocks) {
        claim_map(ck, ino, inode, SIZE_LIMIT_BLOCKS, false)?;
    }
    Ok(())
}

/// The inode's type, after repairing a mode that names none (or a root
/// that is not a directory).
fn settle_kind<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32, inode: &mut DiskInode) -> Result<Kind> {
    let file_type = inode.file_type();
    if ino == ROOT_INODE && file_type != Some(FileType::Directory) {
        let kind = ProblemKind::RootNotDirectory { mode: inode.mode };
        let fix = ck.may_fix(&kind);
        if fix {
            if looks_like_directory(ck, ino, inode)? {
                inode.mode = FileType::Directory.mode_bits() | (inode.mode & PERMISSION_BITS);
            } else {
                // Nothing of a directory left: start an empty one; what
                // hung below it is reconnected under /lost+found.
                forget_map(ck, inode)?;
                *inode = DiskInode {
                    mode: FileType::Directory.mode_bits() | NEW_ROOT_PERMISSIONS,
                    uid: inode.uid,
                    gid: inode.gid,
                    links_count: 2,
                    ..DiskInode::default()
                };
            }
        }
        ck.record(Problem::new(kind).inode(ino), fix);
        if fix {
            return Ok(Kind::Known(FileType::Directory));
        }
    }
    if let Some(file_type) = file_type {
        return Ok(Kind::Known(file_type));
    }
    let kind = ProblemKind::BadFileType { mode: inode.mode };
    let fix = ck.may_fix(&kind);
    ck.record(Problem::new(kind).inode(ino), fix);
    if !fix {
        return Ok(Kind::Unknown);
    }
    // Keep the data either way: a directory if its first block says so,
    // else a regular file.
    let file_type =
        if looks_like_directory(ck, ino, inode)? { FileType::Directory } else { FileType::Regular };
    inode.mode = file_type.mode_bits() | (inode.mode & PERMISSION_BITS);
    Ok(Kind::Known(file_type))
}

/// Whether the inode's first block starts with a `.` entry naming it.
fn looks_like_directory<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    ino: u32,
    inode: &DiskInode,
) -> Result<bool> {
    let first = inode.direct[0];
    if !ck.geometry.is_data_block(first) {
        return Ok(false);
    }
    let block = ck.read_new(first)?;
    let found = BlockWalk::new(&block, BLOCK_SIZE).next();
    Ok(found.is_some_and(|entry| entry.name == b"." && entry.header.inode == ino))
}

/// Device nodes keep their number in `direct[0]` (old form) or
/// `direct[1]` (new form); FIFOs and sockets keep nothing. No such inode
/// has a size or data blocks.
fn check_special<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    ino: u32,
    inode: &mut DiskInode,
    file_type: FileType,
) {
    let mut expected = DiskInode {
        direct: [0; DIRECT_BLOCKS],
        indirect: 0,
        double_indirect: 0,
        triple_indirect: 0,
        size: 0,
        ..*inode
    };
    if matches!(file_type, FileType::CharDevice | FileType::BlockDevice) {
        let rdev_field = if inode.direct[0] != 0 { 0 } else { 1 };
        expected.direct[rdev_field] = inode.direct[rdev_field];
    }
    if expected != *inode {
        let kind = ProblemKind::SpecialInodeHasData;
        let fix = ck.may_fix(&kind);
        ck.record(Problem::new(kind).inode(ino), fix);
        if fix {
            *inode = expected;
        }
    }
    check_block_count(ck, ino, inode, 0);
}

fn check_block_count<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32, inode: &mut DiskInode, actual: u32) {
    if inode.blocks != actual {
        let kind = ProblemKind::BadBlockCount { recorded: inode.blocks, actual };
        let fix = ck.may_fix(&kind);
        ck.record(Problem::new(kind).inode(ino), fix);
        if fix {
            inode.blocks = actual;
        }
    }
}

/// A symlink's size is its target's length, 1..=4095. A bad size is
/// recovered from the target block (the bytes up to the first NUL); a
/// symlink with no target left is freed. Returns whether it stays in use.
fn check_symlink_size<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    ino: u32,
    inode: &mut DiskInode,
) -> Result<bool> {
    if (1..=MAX_SYMLINK_LEN as u32).contains(&inode.size) {
        return Ok(true);
    }
    let kind = ProblemKind::SymlinkBadSize { size: inode.size };
    let fix = ck.may_fix(&kind);
    ck.record(Problem::new(kind).inode(ino), fix);
    if !fix {
        return Ok(true);
    }
    let length = target_length(ck, inode)?;
    if length > 0 {
        inode.size = length;
        return Ok(true);
    }
    forget_map(ck, inode)?;
    *inode = DiskInode { mode: inode.mode, dtime: ck.now, ..DiskInode::default() };
    Ok(false)
}

/// Bytes before the first NUL of a symlink's target block (at most 4095).
fn target_length<D: BlockDevice>(ck: &mut Checker<'_, D>, inode: &DiskInode) -> Result<u32> {
    let first = inode.direct[0];
    if !ck.geometry.is_data_block(first) {
        return Ok(0);
    }
    let block = ck.read_new(first)?;
    let end = block[..MAX_SYMLINK_LEN].iter().position(|&b| b == 0).unwrap_or(MAX_SYMLINK_LEN);
    Ok(end as u32)
}

/// What a walk of a data-bearing inode's map found.
struct MapSummary {
    /// Pointers kept (data and indirect blocks), for `blocks`.
    held: u32,
    /// One past the highest logical block mapped.
    end: u64,
    /// Data blocks were mapped where no size can reach (and, when
    /// repairing, cleared).
    past_limit: bool,
}

/// Regular files, directories and symlinks (and inodes whose type is
/// unknown, whose pointers are taken at their word).
fn check_data<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    ino: u32,
    inode: &mut DiskInode,
    kind: Kind,
) -> Result<()> {
    // A symlink target lives in block 0 alone; the journal maps exactly its
    // run, so blocks past it are cleared rather than the size grown (which
    // would make the run no longer the journal's).
    let truncating = ck.truncating.contains(&ino);
    let trim = truncating && ck.may_fix(&ProblemKind::PendingOrphans { count: 1 });
    let limit = if kind == Kind::Known(FileType::Symlink) {
        1
    } else if ck.journal == Some(ino) || trim {
        blocks_for(inode.size)
    } else {
        SIZE_LIMIT_BLOCKS
    };
    let summary = claim_map(ck, ino, inode, limit, trim)?;
    if truncating {
        // Blocks past its size are the pending truncation (reported with
        // the chain, and trimmed when repairing), not damage.
        check_block_count(ck, ino, inode, summary.held);
        return Ok(());
    }
    if inode.triple_indirect != 0 {
        let kind = ProblemKind::TripleIndirectSet { pointer: inode.triple_indirect };
        let fix = ck.may_fix(&kind);
        ck.record(Problem::new(kind).inode(ino), fix);
        if fix {
            inode.triple_indirect = 0;
        }
    }
    // A symlink whose size is itself wrong was reported as such.
    let size_known = kind != Kind::Known(FileType::Symlink) || inode.size != 0;
    if summary.past_limit || (size_known && summary.end > blocks_for(inode.size)) {
        let kind = ProblemKind::BlocksPastEnd { size: inode.size, mapped_blocks: summary.end };
        let fix = ck.may_fix(&kind);
        ck.record(Problem::new(kind).inode(ino), fix);
        if fix && summary.end > blocks_for(inode.size) {
            // The blocks past any reachable size were cleared; the size
            // grows to cover the rest, so no data is dropped.
            let covered = summary.end * BLOCK_SIZE as u64;
            inode.size = covered.min(u32::MAX as u64) as u32;
        }
    }
    check_block_count(ck, ino, inode, summary.held);
    Ok(())
}

/// Walks the map: checks each pointer's range, claims its block, and
/// notes blocks claimed before (pass 1b settles those). Data blocks at or
/// past `limit` are dropped when `trim` (a pending truncation) or the
/// repair mode allows.
fn claim_map<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    ino: u32,
    inode: &mut DiskInode,
    limit: u64,
    trim: bool,
) -> Result<MapSummary> {
    let mut summary = MapSummary { held: 0, end: 0, past_limit: false };
    let clear_past_limit =
        trim || ck.may_fix(&ProblemKind::BlocksPastEnd { size: inode.size, mapped_blocks: limit + 1 });
    walk_map(ck, inode, &mut |ck, pointer: Pointer| {
        if let Some(kind) = range_problem(ck, pointer.block) {
            let fix = ck.may_fix(&kind);
            ck.record(Problem::new(kind).inode(ino).block(pointer.block), fix);
            return Ok(if fix { Action::Clear } else { Action::Skip });
        }
        let is_data = pointer.level == Level::Data;
        if is_data && pointer.logical >= limit {
            // Unreachable through any size: reported after the walk.
            summary.past_limit = true;
            if clear_past_limit {
                ck.drop_block(pointer.block);
                return Ok(Action::Clear);
            }
        }
        summary.held += 1;
        if is_data {
            summary.end = summary.end.max(pointer.logical + 1);
        }
        if ck.claimed.insert(pointer.block) {
            return Ok(Action::Keep);
        }
        ck.duplicates.insert(pointer.block);
        let kind = ProblemKind::DuplicateBlock { block: pointer.block };
        // Settled in pass 1b: a copy for this owner, or a hole.
        let fix = ck.may_fix(&kind);
        ck.record(Problem::new(kind).inode(ino).block(pointer.block), fix);
        Ok(Action::Skip)
    })?;
    Ok(summary)
}

/// Why a pointer may not be followed at all.
fn range_problem<D: BlockDevice>(ck: &Checker<'_, D>, pointer: u32) -> Option<ProblemKind> {
    if pointer >= ck.geometry.block_count {
        Some(ProblemKind::PointerOutOfRange { pointer })
    } else if pointer < ck.geometry.first_data_block() {
        Some(ProblemKind::PointerIntoMetadata { pointer })
    } else {
        None
    }
}
