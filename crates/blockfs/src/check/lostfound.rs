//! `/lost+found`: where inodes no directory reaches get a name, `#<ino>`.
//! Found in the root by pass 2, or created on first need; the root itself
//! when it cannot be.

use alloc::boxed::Box;
use alloc::format;

use super::context::{Checker, DirState, InodeState, Kind, LostFound};
use super::dirwrite::{add_entry, write_packed};
use super::report::{Problem, ProblemKind};
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::{DiskInode, FileType};
use crate::format::BLOCK_SIZE;

const NAME: &[u8] = b"lost+found";
/// Only root may look inside, as e2fsck makes it.
const PERMISSIONS: u16 = 0o700;

/// Links inode `ino` into `/lost+found` (or the root, see `directory`) as
/// `#<ino>`. Returns the directory it went into, or `None` when that is
/// impossible (no room in either).
pub(super) fn attach<D: BlockDevice>(
    ck: &mut Checker<'_, D>,
    ino: u32,
    file_type: FileType,
) -> Result<Option<u32>> {
    let Some(dir) = directory(ck)? else {
        return Ok(None);
    };
    let name = format!("#{ino}");
    if !add_entry(ck, dir, name.as_bytes(), ino, file_type.dirent_code())? {
        return Ok(None);
    }
    if file_type == FileType::Directory {
        ck.adjust_links(dir, 1)?;
    }
    ck.report.stats.reconnected += 1;
    Ok(Some(dir))
}

/// `/lost+found`, found or made. The first time it cannot be had, that is
/// reported (once), and, as e2fsck does, lost inodes go into the root
/// instead: a full disk or a name taken should not leave them nameless.
fn directory<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<Option<u32>> {
    let made = match ck.lost_found {
        LostFound::Found(dir) => return Ok(Some(dir)),
        LostFound::Unavailable => return Ok(None),
        LostFound::Missing => create(ck)?,
        LostFound::NameTaken => None,
    };
    if made.is_none() {
        ck.record(Problem::new(ProblemKind::LostFoundUnavailable), false);
    }
    let home = made.or_else(|| ck.is_directory(ROOT_INODE).then_some(ROOT_INODE));
    ck.lost_found = match home {
        Some(dir) => LostFound::Found(dir),
        None => LostFound::Unavailable,
    };
    Ok(home)
}

/// Makes `/lost+found`: an inode, one block with `.` and `..`, and an
/// entry in the root. Undone if the root cannot take the entry.
fn create<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<Option<u32>> {
    if !ck.is_directory(ROOT_INODE) {
        return Ok(None);
    }
    let Some(ino) = ck.allocate_inode() else {
        return Ok(None);
    };
    let Some(block) = ck.allocate_block() else {
        ck.set_state(ino, InodeState::FREE);
        return Ok(None);
    };
    let dir_code = FileType::Directory.dirent_code();
    let mut contents = Box::new([0u8; BLOCK_SIZE]);
    write_packed(&mut contents, 0, ino, dir_code, b".");
    write_packed(&mut contents, 12, ROOT_INODE, dir_code, b"..");
    ck.write_block(block, &contents)?;
    let mut inode = DiskInode {
        mode: FileType::Directory.mode_bits() | PERMISSIONS,
        size: 24,
        atime: ck.now,
        ctime: ck.now,
        mtime: ck.now,
        links_count: 2,
        blocks: 1,
        ..DiskInode::default()
    };
    inode.direct[0] = block;
    ck.write_inode(ino, &inode)?;
    ck.set_state(
        ino,
        InodeState { kind: Kind::Known(FileType::Directory), system: false, links: 2, found: 0 },
    );
    ck.dirs.insert(
        ino,
        DirState {
            parent: ROOT_INODE,
            dot: Some(ino),
            dotdot: Some(ROOT_INODE),
            queued: true,
            reachable: true,
            ..DirState::new()
        },
    );
    if add_entry(ck, ROOT_INODE, NAME, ino, dir_code)? {
        ck.adjust_links(ROOT_INODE, 1)?;
        return Ok(Some(ino));
    }
    let freed = DiskInode { mode: inode.mode, dtime: ck.now, ..DiskInode::default() };
    ck.write_inode(ino, &freed)?;
    ck.set_state(ino, InodeState::FREE);
    ck.dirs.remove(&ino);
    ck.release_block(block);
    Ok(None)
}
