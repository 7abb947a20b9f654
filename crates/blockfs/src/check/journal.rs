//! The journal, before anything else is read. A committed transaction not
//! yet replayed is replayed when repairing, and otherwise read through (as
//! a read-only mount does), so the check sees what the next mount will.
//! Then the record's journal must be owned by its inode: a regular file of
//! `journal_blocks × 4096` bytes mapping exactly the run from
//! `journal_first_block`, so no file can be given a journal block, and
//! flagged as the system's (mount requires both). An owner that lost only
//! its flag gets it back; a journal without an owner is dropped from the
//! record; a run whose contents cannot be read as a journal is reset.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

use super::blockmap::{forget_map, MapCursor};
use super::context::Checker;
use super::report::{Problem, ProblemKind};
use super::RepairMode;
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::extension::{Extension, ExtensionError, FEATURE_JOURNAL};
use crate::format::inode::{DiskInode, FileType, SYSTEM_INODE_FLAG};
use crate::format::superblock::Superblock;
use crate::format::{Block, BLOCK_SIZE};
use crate::journal::{Journal, MIN_JOURNAL_BLOCKS};

/// What recovery did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Recovery {
    /// A committed transaction was written home.
    pub replayed: bool,
    /// A committed transaction is read through, not written home.
    pub read_through: bool,
    /// The journal superblock, or the transaction it holds, is unusable.
    pub damaged: bool,
}

/// Replays (or, without repairs, loads) a committed transaction. Returns
/// what happened and the blocks to read through.
pub(super) fn recover<D: BlockDevice>(
    device: &mut D,
    superblock: &Superblock,
    extension: &Result<Extension, ExtensionError>,
    repair: RepairMode,
) -> Result<(Recovery, BTreeMap<u32, Box<Block>>)> {
    let mut recovery = Recovery::default();
    let mut overlay = BTreeMap::new();
    let Some(record) = extension.as_ref().ok().filter(|e| e.has_journal()) else {
        return Ok((recovery, overlay));
    };
    let mut journal = match Journal::open(device, record.journal_first_block, record.journal_blocks) {
        Ok(journal) => journal,
        Err(Error::Corrupt { .. }) => {
            recovery.damaged = true;
            return Ok((recovery, overlay));
        }
        Err(error) => return Err(error),
    };
    match journal.pending(device, superblock.block_count) {
        Ok(None) => {}
        Ok(Some(pending)) if repair != RepairMode::None => {
            journal.replay(device, &pending)?;
            recovery.replayed = true;
        }
        Ok(Some(pending)) => {
            overlay = journal.load(device, &pending)?;
            recovery.read_through = true;
        }
        Err(Error::Corrupt { .. }) => recovery.damaged = true,
        Err(error) => return Err(error),
    }
    Ok((recovery, overlay))
}

/// Reports what recovery did, and checks the journal's owner.
pub(super) fn check<D: BlockDevice>(ck: &mut Checker<'_, D>, recovery: Recovery) -> Result<()> {
    if recovery.replayed || recovery.read_through {
        ck.record(Problem::new(ProblemKind::JournalPending), recovery.replayed);
    }
    let Some(record) = ck.extension.filter(Extension::has_journal) else {
        return Ok(());
    };
    let ino = record.journal_inode;
    match owns_run(ck, ino, &record)? {
        Ownership::Owned => {}
        Ownership::Unflagged => {
            // Mount refuses a journal whose inode is not flagged as the
            // system's; it owns the run exactly, so it is the journal.
            let kind = ProblemKind::JournalInodeUnflagged;
            let fix = ck.may_fix(&kind);
            if fix {
                let mut inode = ck.read_inode(ino)?;
                inode.flags |= SYSTEM_INODE_FLAG;
                ck.write_inode(ino, &inode)?;
            }
            ck.record(Problem::new(kind).inode(ino), fix);
        }
        Ownership::None => {
            let kind = ProblemKind::JournalInodeInvalid;
            let fix = ck.may_fix(&kind);
            if fix {
                detach(ck, ino)?;
            }
            ck.record(Problem::new(kind).inode(ino), fix);
            return Ok(());
        }
    }
    ck.journal = Some(ino);
    if recovery.damaged {
        let kind = ProblemKind::JournalDamaged;
        let fix = ck.may_fix(&kind);
        if fix {
            // Nothing in it can be trusted: start it afresh.
            Journal::create(ck.device_for_writes()?, record.journal_first_block, record.journal_blocks)?;
        }
        ck.record(Problem::new(kind).inode(ino), fix);
    }
    Ok(())
}

/// How the record's journal inode relates to the record's run.
enum Ownership {
    /// A system inode mapping exactly the run: what mount requires.
    Owned,
    /// Maps exactly the run, but lacks the system flag.
    Unflagged,
    None,
}

/// Whether inode `ino` is a regular file mapping exactly the record's run,
/// and is flagged as the system's (as mount's own test requires).
fn owns_run<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32, record: &Extension) -> Result<Ownership> {
    let (first, blocks) = (record.journal_first_block, record.journal_blocks);
    let run_fits = blocks >= MIN_JOURNAL_BLOCKS
        && first >= ck.geometry.first_data_block()
        && first as u64 + blocks as u64 <= ck.geometry.block_count as u64;
    if ino == 0 || ino >= ck.geometry.usable_inodes() || !run_fits {
        return Ok(Ownership::None);
    }
    let inode = ck.read_inode(ino)?;
    if inode.is_free()
        || inode.file_type() != Some(FileType::Regular)
        || inode.size as u64 != blocks as u64 * BLOCK_SIZE as u64
    {
        return Ok(Ownership::None);
    }
    let mut cursor = MapCursor::new(&inode);
    for index in 0..blocks {
        if cursor.lookup(ck, index as u64)? != Some(first + index) {
            return Ok(Ownership::None);
        }
    }
    Ok(if inode.flags & SYSTEM_INODE_FLAG != 0 { Ownership::Owned } else { Ownership::Unflagged })
}

/// Drops the journal from the record. Its inode, when flagged as the
/// system's, is freed (its blocks go back with the bitmap rebuild); an
/// unflagged one may be someone's file and stays.
fn detach<D: BlockDevice>(ck: &mut Checker<'_, D>, ino: u32) -> Result<()> {
    if let Some(record) = ck.extension.as_mut() {
        record.compat_features &= !FEATURE_JOURNAL;
        record.journal_inode = 0;
        record.journal_blocks = 0;
        record.journal_first_block = 0;
    }
    if ino == 0 || ino >= ck.geometry.usable_inodes() {
        return Ok(());
    }
    let inode = ck.read_inode(ino)?;
    if !inode.is_free() && inode.flags & SYSTEM_INODE_FLAG != 0 {
        forget_map(ck, &inode)?;
        let freed = DiskInode { mode: inode.mode, dtime: ck.now, ..DiskInode::default() };
        ck.write_inode(ino, &freed)?;
    }
    Ok(())
}
