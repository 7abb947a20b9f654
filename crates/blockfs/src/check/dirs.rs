//! Pass 2: every directory, breadth first from the root, then whatever
//! the root does not reach. A directory's layout is settled first (legacy
//! streams rewritten, damaged blocks salvaged, when allowed); then every
//! entry is judged: its name, its target, the `file_type` byte, `.` and
//! `..`, names used twice, and directories named twice. Entries are
//! counted per target for pass 4, and each directory's parent is the
//! directory whose entry reached it first.
//!
//! Duplicate names need the directory's names in memory. When they would
//! not fit the budget, the directory is read several times, each time
//! holding only the names that hash into one share.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use hashbrown::HashSet;

use super::context::{Checker, LostFound, NO_INODE};
use super::dirread::{for_each_block, survey, walk_stream, EntryRef, Layout};
use super::dirwrite::{apply_edits, salvage_block, Edit, Record};
use super::legacy;
use super::report::{Problem, ProblemKind};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::dirent::{is_dot_or_dotdot, BlockEnd, BlockWalk};
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::{FileType, DIRECT_BLOCKS};
use crate::format::{Block, BLOCK_SIZE};

/// Most reads of one directory spent looking for duplicate names.
const MAX_NAME_SHARES: u64 = 64;
const LOST_FOUND: &[u8] = b"lost+found";

/// Pass 2.
pub(super) fn scan<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<()> {
    let mut queue = VecDeque::new();
    if ck.is_directory(ROOT_INODE) {
        let root = ck.dir(ROOT_INODE);
        root.parent = ROOT_INODE;
        root.queued = true;
        root.reachable = true;
        queue.push_back(ROOT_INODE);
        drain(ck, &mut queue)?;
    }
    for dir in ck.directories() {
        let state = ck.dir(dir);
        if !state.queued {
            state.queued = true;
            queue.push_back(dir);
            drain(ck, &mut queue)?;
        }
    }
    Ok(())
}

fn drain<D: BlockDevice>(ck: &mut Checker<'_, D>, queue: &mut VecDeque<u32>) -> Result<()> {
    while let Some(dir) = queue.pop_front() {
        scan_directory(ck, dir, queue)?;
    }
    Ok(())
}

fn scan_directory<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    dir: u32,
    queue: &mut VecDeque<u32>,
) -> Result<()> {
    let inode = ck.read_inode(dir)?;
    let survey = survey(ck, &inode)?;
    let stream = match survey.layout {
        Layout::Legacy => !rewrite_legacy(ck, dir)?,
        Layout::Damaged => {
            salvage(ck, dir)?;
            false
        }
        Layout::Blocks => false,
    };
    let shares = name_shares(ck, dir, survey.name_cost);
    let mut scan = DirScan {
        dir,
        reachable: ck.dir(dir).reachable,
        editable: !stream,
        shares,
        share: 0,
        names: HashSet::new(),
        past_direct: false,
    };
    // Extra shares first, so the full pass counts no name they drop.
    for share in 1..shares {
        scan.share = share;
        scan.read(ck, stream, None)?;
    }
    scan.share = 0;
    scan.read(ck, stream, Some(queue))?;
    if scan.past_direct {
        let problem = Problem::new(ProblemKind::EntriesPastDirectBlocks).inode(dir);
        ck.record(problem, false);
    }
    Ok(())
}

/// Returns whether the directory is in the block layout now.
fn rewrite_legacy<D: BlockDevice>(ck: &mut Checker<'_, D>, dir: u32) -> Result<bool> {
    let kind = ProblemKind::LegacyLayout;
    let fixed = ck.may_fix(&kind) && legacy::rewrite(ck, dir)?;
    ck.record(Problem::new(kind).inode(dir), fixed);
    ck.dir(dir).legacy = !fixed;
    Ok(fixed)
}

/// Rebuilds every damaged block around what still parses, when allowed;
/// otherwise the damage is reported as the entries are read.
fn salvage<D: BlockDevice>(ck: &mut Checker<'_, D>, dir: u32) -> Result<()> {
    if !ck.may_fix(&ProblemKind::DamagedBlock { logical: 0, offset: 0 }) {
        return Ok(());
    }
    let inode = ck.read_inode(dir)?;
    for_each_block(ck, &inode, &mut |ck, logical, block, limit| {
        let Some(offset) = salvage_block(block, limit, &ck.inodes) else {
            return Ok(false);
        };
        let kind = ProblemKind::DamagedBlock { logical: logical as u32, offset: offset as u32 };
        ck.record(Problem::new(kind).inode(dir), true);
        Ok(true)
    })
}

/// How many shares the names are read in; 0 when too many would be
/// needed (the duplicate check is then skipped, with a warning).
fn name_shares<D: BlockDevice>(ck: &mut Checker<'_, D>, dir: u32, cost: u64) -> u64 {
    let shares = cost.div_ceil(ck.name_memory.max(1) as u64).max(1);
    if shares <= MAX_NAME_SHARES {
        return shares;
    }
    let problem = Problem::new(ProblemKind::DuplicateCheckSkipped).inode(dir);
    ck.record(problem, false);
    0
}

/// FNV-1a: spreads names over the shares.
fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3))
}

/// One reading of one directory.
struct DirScan {
    dir: u32,
    reachable: bool,
    /// Records can be edited (block layout); a stream is only read.
    editable: bool,
    /// Shares of names (0: no duplicate check), and the one held now.
    shares: u64,
    share: u64,
    names: HashSet<Box<[u8]>>,
    past_direct: bool,
}

impl DirScan {
    /// Reads every record once. `queue` is given for the full pass (share
    /// 0), which does all the checks; other shares only look for
    /// duplicate names.
    fn read<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        stream: bool,
        mut queue: Option<&mut VecDeque<u32>>,
    ) -> Result<()> {
        self.names.clear();
        let inode = ck.read_inode(self.dir)?;
        if stream {
            walk_stream(ck, &inode, &mut |ck, entry| {
                self.judge(ck, entry, queue.as_deref_mut())?;
                Ok(())
            })?;
            return Ok(());
        }
        for_each_block(ck, &inode, &mut |ck, logical, block, limit| {
            self.read_block(ck, logical, block, limit, queue.as_deref_mut())
        })
    }

    /// Judges the records of one block and applies the edits.
    fn read_block<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        logical: u64,
        block: &mut Block,
        limit: usize,
        mut queue: Option<&mut VecDeque<u32>>,
    ) -> Result<bool> {
        let mut records = Vec::new();
        let mut walk = BlockWalk::new(block, limit);
        for record in walk.by_ref() {
            let entry = EntryRef {
                position: logical * BLOCK_SIZE as u64 + record.offset as u64,
                header: record.header,
                name: record.name,
            };
            let edit = self.judge(ck, &entry, queue.as_deref_mut())?;
            records.push(Record { offset: record.offset, rec_len: record.header.rec_len, edit });
        }
        let damage = match walk.end() {
            Some(BlockEnd::Crosses { offset })
            | Some(BlockEnd::NameOverflow { offset })
            | Some(BlockEnd::Garbage { offset }) => Some(offset),
            _ => None,
        };
        if let (Some(offset), Some(_)) = (damage, &queue) {
            // Salvage did not run (or was not allowed): left as it is.
            let kind = ProblemKind::DamagedBlock { logical: logical as u32, offset: offset as u32 };
            ck.record(Problem::new(kind).inode(self.dir), false);
        }
        let changed = records.iter().any(|record| record.edit != Edit::Keep);
        if changed {
            apply_edits(block, &records);
        }
        Ok(changed)
    }

    /// Reports a problem with an entry; returns whether it is repaired
    /// (the caller then makes the edit).
    fn flag<D: BlockDevice>(&self, ck: &mut Checker<'_, D>, entry: &EntryRef<'_>, kind: ProblemKind) -> bool {
        let fix = self.editable && ck.may_fix(&kind);
        ck.record(Problem::entry(kind, self.dir, entry.name), fix);
        fix
    }

    /// Whether the name is seen for the first time (names outside the
    /// share held now always are).
    fn first_use(&mut self, name: &[u8]) -> bool {
        if self.shares == 0 || name_hash(name) % self.shares != self.share {
            return true;
        }
        self.names.insert(name.into())
    }

    fn judge<D: BlockDevice>(
        &mut self,
        ck: &mut Checker<'_, D>,
        entry: &EntryRef<'_>,
        queue: Option<&mut VecDeque<u32>>,
    ) -> Result<Edit> {
        if !entry.is_live() {
            return Ok(Edit::Keep);
        }
        let Some(queue) = queue else {
            return Ok(self.judge_duplicate(ck, entry));
        };
        if is_dot_or_dotdot(entry.name) {
            return Ok(self.judge_dot(ck, entry));
        }
        if let Some(kind) = target_problem(ck, entry) {
            let fix = self.flag(ck, entry, kind);
            return Ok(if fix { Edit::Remove } else { Edit::Keep });
        }
        let target = entry.header.inode;
        if !self.first_use(entry.name) && self.flag(ck, entry, ProblemKind::DuplicateName { target }) {
            return Ok(Edit::Remove);
        }
        if ck.is_directory(target) {
            if let Some(kind) = self.second_link(ck, target) {
                if self.flag(ck, entry, kind) {
                    return Ok(Edit::Remove);
                }
            } else {
                self.adopt(ck, target, queue);
            }
        } else {
            ck.add_found(target);
        }
        if self.dir == ROOT_INODE && entry.name == LOST_FOUND {
            ck.lost_found =
                if ck.is_directory(target) { LostFound::Found(target) } else { LostFound::NameTaken };
        }
        if entry.position / BLOCK_SIZE as u64 >= DIRECT_BLOCKS as u64 {
            self.past_direct = true;
        }
        let expected = ck.state(target).dirent_code();
        Ok(self.check_type_byte(ck, entry, expected))
    }

    /// The checks of a share other than 0: only repeated names (among
    /// entries the full pass keeps).
    fn judge_duplicate<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, entry: &EntryRef<'_>) -> Edit {
        let valid = is_dot_or_dotdot(entry.name) || target_problem(ck, entry).is_none();
        let kind = ProblemKind::DuplicateName { target: entry.header.inode };
        if valid && !self.first_use(entry.name) && self.flag(ck, entry, kind) {
            Edit::Remove
        } else {
            Edit::Keep
        }
    }

    /// `.` and `..`: the first of each is recorded (checked in pass 3,
    /// once every parent is known); a repeat is a duplicate name.
    fn judge_dot<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, entry: &EntryRef<'_>) -> Edit {
        let target = entry.header.inode;
        if !self.first_use(entry.name) && self.flag(ck, entry, ProblemKind::DuplicateName { target }) {
            return Edit::Remove;
        }
        let state = ck.dir(self.dir);
        let slot = if entry.name == b"." { &mut state.dot } else { &mut state.dotdot };
        slot.get_or_insert(target);
        self.check_type_byte(ck, entry, Some(FileType::Directory.dirent_code()))
    }

    fn check_type_byte<D: BlockDevice>(
        &self,
        ck: &mut Checker<'_, D>,
        entry: &EntryRef<'_>,
        expected: Option<u8>,
    ) -> Edit {
        match expected {
            Some(expected) if expected != entry.header.file_type => {
                let kind = ProblemKind::BadFileTypeByte { found: entry.header.file_type, expected };
                if self.flag(ck, entry, kind) {
                    Edit::SetType(expected)
                } else {
                    Edit::Keep
                }
            }
            _ => Edit::Keep,
        }
    }

    /// Why an entry naming directory `target` is not its first link.
    fn second_link<D: BlockDevice>(&self, ck: &mut Checker<'_, D>, target: u32) -> Option<ProblemKind> {
        if ck.dir(target).parent == NO_INODE {
            return None;
        }
        Some(if is_ancestor(ck, target, self.dir) {
            ProblemKind::DirectoryLoop { target }
        } else {
            ProblemKind::DirectoryHardLink { target }
        })
    }

    /// Makes this directory `child`'s parent and queues it.
    fn adopt<D: BlockDevice>(&self, ck: &mut Checker<'_, D>, child: u32, queue: &mut VecDeque<u32>) {
        let state = ck.dir(child);
        state.parent = self.dir;
        if !state.queued {
            state.queued = true;
            state.reachable = self.reachable;
            queue.push_back(child);
        }
    }
}

/// Why an entry's target cannot stand: a bad name, an inode past the
/// table, or a free inode.
fn target_problem<D: BlockDevice>(ck: &Checker<'_, D>, entry: &EntryRef<'_>) -> Option<ProblemKind> {
    let target = entry.header.inode;
    if entry.name.is_empty() || entry.name.iter().any(|&b| b == b'/' || b == 0) {
        Some(ProblemKind::BadName)
    } else if target >= ck.geometry.usable_inodes() {
        Some(ProblemKind::EntryInodeOutOfRange { target })
    } else if !ck.state(target).in_use() {
        Some(ProblemKind::EntryToFreeInode { target })
    } else {
        None
    }
}

/// Whether `ancestor` is `dir` or above it on the parent chain known so
/// far (complete for directories the root reaches, which are read in
/// breadth-first order).
fn is_ancestor<D: BlockDevice>(ck: &Checker<'_, D>, ancestor: u32, dir: u32) -> bool {
    let mut current = dir;
    for _ in 0..=ck.dirs.len() {
        if current == ancestor {
            return true;
        }
        match ck.dirs.get(&current) {
            Some(state) if state.parent != NO_INODE && current != ROOT_INODE => current = state.parent,
            _ => return false,
        }
    }
    false
}
