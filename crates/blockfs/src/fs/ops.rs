//! The operations themselves, each inside one transaction (`Op::tx`): it
//! takes the locks of the inodes it works on, checks its arguments, then
//! changes blocks, and any error rolls the whole operation back.
//!
//! Locks are taken in the order docs/DESIGN.md §5 gives: a directory
//! before an inode found in it, never an inode's parent while holding the
//! inode (`..` lets go first), two directories only by a rename (which
//! holds the rename lock), the ancestor first.

use alloc::vec;
use alloc::vec::Vec;

use crate::allocator::InodeGoal;
use crate::device::BlockDevice;
use crate::dir::check_name;
use crate::error::{Corruption, Error, Result};
use crate::format::dirent::{is_dot_or_dotdot, MAX_NAME_LEN};
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::{DiskInode, FileType, PERMISSION_BITS, S_IFMT};
use crate::tx::Tx;

use super::data::{read_data, truncate, write_data};
use super::{
    atime_is_stale, Attr, NewInode, Op, RenameFlags, SetAttr, LINK_MAX, MAX_FILE_SIZE, MAX_SYMLINK_FOLLOWS,
    MAX_SYMLINK_LEN,
};

/// Attempts at locking a directory's parent before the directory, when
/// renames keep moving it meanwhile.
const PARENT_LOCK_ATTEMPTS: usize = 8;

impl<D: BlockDevice> Op<'_, D> {
    /// An inode that is in use (linked, or unlinked but still open).
    /// System inodes (the journal) are invisible.
    pub(super) fn live_inode(&mut self, ino: u32) -> Result<DiskInode> {
        if ino >= self.tx.geometry().usable_inodes() || self.tx.volume.journal_inode() == Some(ino) {
            return Err(Error::NotFound);
        }
        let inode = self.tx.read_inode(ino)?;
        if inode.is_free() && !self.tx.volume.is_orphan(ino) {
            return Err(Error::NotFound);
        }
        Ok(inode)
    }

    /// The target of a directory entry, which must be in use.
    pub(super) fn linked_inode(&mut self, ino: u32) -> Result<DiskInode> {
        self.tx.check_inode(ino)?;
        let inode = self.tx.read_inode(ino)?;
        if inode.is_free() {
            return Err(Error::corrupt(Corruption::EntryToFreeInode(ino), Some(ino), None));
        }
        Ok(inode)
    }

    /// A regular file or symlink, to read.
    pub(super) fn readable_inode(&mut self, ino: u32) -> Result<DiskInode> {
        let inode = self.live_inode(ino)?;
        match inode.file_type() {
            Some(FileType::Directory) => Err(Error::IsDir),
            Some(FileType::Regular) | Some(FileType::Symlink) => Ok(inode),
            _ => Err(Error::InvalidArgument),
        }
    }

    /// A directory that is linked in the tree: one removed while still
    /// held is empty, so nothing can be looked up or created in it.
    pub(super) fn directory(&mut self, ino: u32) -> Result<DiskInode> {
        let inode = self.live_inode(ino)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotDir);
        }
        if inode.links_count == 0 {
            return Err(Error::NotFound);
        }
        Ok(inode)
    }

    /// The inode `name` names in `parent`, whose lock the caller holds.
    pub(super) fn lookup(&mut self, parent: u32, name: &[u8]) -> Result<u32> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        let dir = self.directory(parent)?;
        let slot = self.tx.find_entry(parent, &dir, name)?.ok_or(Error::NotFound)?;
        self.tx.check_inode(slot.ino)?;
        Ok(slot.ino)
    }

    /// Looks `name` up in `parent` and returns the inode found, holding
    /// the locks of both. For `..` the parent's lock is taken first, so
    /// the directory's is let go and taken again, and the entry checked
    /// again in case a rename moved the directory meanwhile.
    pub(super) fn lookup_locked(&mut self, parent: u32, name: &[u8]) -> Result<(u32, DiskInode)> {
        if name != b".." {
            self.tx.lock(parent);
            let ino = self.lookup(parent, name)?;
            self.tx.lock(ino);
            let inode = self.linked_inode(ino)?;
            return Ok((ino, inode));
        }
        for _ in 0..PARENT_LOCK_ATTEMPTS {
            self.tx.unlock_all();
            self.tx.lock(parent);
            let grandparent = self.lookup(parent, name)?;
            self.tx.unlock_all();
            self.tx.lock(grandparent);
            self.tx.lock(parent);
            if self.lookup(parent, name)? == grandparent {
                let inode = self.linked_inode(grandparent)?;
                return Ok((grandparent, inode));
            }
        }
        Err(Error::corrupt(Corruption::DirectoryLoop, Some(parent), None))
    }

    pub(super) fn resolve(&mut self, path: &[u8], follow_last: bool) -> Result<u32> {
        let mut follows = 0;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        push_components(&mut pending, path);
        let mut current = ROOT_INODE;
        // `pending` holds components in reverse; symlink targets are pushed
        // on top, so the walk is iterative and bounded by MAX_SYMLINK_FOLLOWS.
        while let Some(component) = pending.pop() {
            let (next, inode) = self.lookup_locked(current, &component)?;
            let is_last = pending.is_empty();
            if inode.file_type() == Some(FileType::Symlink) && (!is_last || follow_last) {
                follows += 1;
                if follows > MAX_SYMLINK_FOLLOWS {
                    return Err(Error::Loop);
                }
                let target = self.readlink(next)?;
                if target.first() == Some(&b'/') {
                    current = ROOT_INODE;
                }
                push_components(&mut pending, &target);
            } else {
                current = next;
            }
            self.tx.unlock_all();
        }
        Ok(current)
    }

    pub(super) fn readlink(&mut self, ino: u32) -> Result<Vec<u8>> {
        let inode = self.live_inode(ino)?;
        if inode.file_type() != Some(FileType::Symlink) {
            return Err(Error::InvalidArgument);
        }
        if inode.size as usize > MAX_SYMLINK_LEN {
            return Err(Error::corrupt(Corruption::SymlinkTooLong(inode.size), Some(ino), None));
        }
        let mut target = vec![0u8; inode.size as usize];
        let read = read_data(&mut self.tx, ino, &inode, 0, &mut target, None)?;
        target.truncate(read);
        Ok(target)
    }

    pub(super) fn setattr(&mut self, ino: u32, changes: &SetAttr) -> Result<Attr> {
        self.tx.check_writable()?;
        let now = self.now;
        let mut inode = self.live_inode(ino)?;
        let kind =
            inode.file_type().ok_or(Error::corrupt(Corruption::BadFileType(inode.mode), Some(ino), None))?;
        let id = |value: u32| u16::try_from(value).map_err(|_| Error::InvalidArgument);
        let uid = changes.uid.map(id).transpose()?;
        let gid = changes.gid.map(id).transpose()?;
        if let Some(size) = changes.size {
            match kind {
                FileType::Regular => {}
                FileType::Directory => return Err(Error::IsDir),
                _ => return Err(Error::InvalidArgument),
            }
            if size > MAX_FILE_SIZE {
                return Err(Error::FileTooBig);
            }
            if truncate(&mut self.tx, ino, &mut inode, size)? {
                // Blocks past the new size are freed after the operation,
                // in steps; the orphan chain covers a crash meanwhile.
                self.orphan(ino)?;
            }
            inode.mtime = now;
        }
        if changes.drop_privileges && kind != FileType::Directory {
            inode.mode &= !inode.privilege_bits();
        }
        if let Some(perm) = changes.perm {
            inode.mode = (inode.mode & S_IFMT) | (perm & PERMISSION_BITS);
        }
        if let Some(uid) = uid {
            inode.uid = uid;
        }
        if let Some(gid) = gid {
            inode.gid = gid;
        }
        if let Some(atime) = changes.atime {
            inode.atime = atime;
        }
        if let Some(mtime) = changes.mtime {
            inode.mtime = mtime;
        }
        inode.ctime = now;
        self.tx.write_inode(ino, &inode)?;
        self.attr(ino, &inode)
    }

    /// Refreshes atime after a read, if it is still stale.
    pub(super) fn touch_atime(&mut self, ino: u32, now: u32) -> Result<()> {
        let mut inode = self.live_inode(ino)?;
        if atime_is_stale(&inode, now) {
            inode.atime = now;
            self.tx.write_inode(ino, &inode)?;
        }
        Ok(())
    }

    pub(super) fn write(&mut self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        self.tx.check_writable()?;
        let mut inode = self.live_inode(ino)?;
        match inode.file_type() {
            Some(FileType::Directory) => return Err(Error::IsDir),
            Some(FileType::Regular) => {}
            _ => return Err(Error::InvalidArgument),
        }
        if data.is_empty() {
            return Ok(0);
        }
        if offset >= MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        let length = (data.len() as u64).min(MAX_FILE_SIZE - offset) as usize;
        let written = write_data(&mut self.tx, ino, &mut inode, offset, &data[..length])?;
        if written < length
            && (self.tx.volume.frees_awaiting_commit() > 0 || self.tx.space_freed_since_begin())
        {
            // Out of space while freed blocks wait for a commit, or one
            // made some free meanwhile: the transaction is run again.
            return Err(Error::NoSpace);
        }
        inode.mtime = self.now;
        inode.ctime = self.now;
        self.tx.write_inode(ino, &inode)?;
        Ok(written)
    }

    /// Allocates an inode, lets `fill` give it content, and links it into
    /// `parent` under `name`.
    pub(super) fn make_node(
        &mut self,
        parent: u32,
        name: &[u8],
        kind: FileType,
        new: NewInode,
        fill: impl FnOnce(&mut Tx<'_, D>, u32, &mut DiskInode) -> Result<()>,
    ) -> Result<Attr> {
        self.tx.check_writable()?;
        check_name(name)?;
        let now = self.now;
        self.tx.lock(parent);
        let mut dir = self.directory(parent)?;
        if self.tx.find_entry(parent, &dir, name)?.is_some() {
            return Err(Error::Exists);
        }
        if kind == FileType::Directory && dir.links_count >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }
        let mut inode = DiskInode {
            mode: kind.mode_bits() | (new.perm & PERMISSION_BITS),
            uid: new.uid,
            gid: new.gid,
            atime: now,
            ctime: now,
            mtime: now,
            links_count: if kind == FileType::Directory { 2 } else { 1 },
            ..DiskInode::default()
        };
        // A directory made in the root starts a group of its own; all else
        // goes near its directory.
        let goal = match (kind, parent) {
            (FileType::Directory, ROOT_INODE) => InodeGoal::NextGroup,
            _ => InodeGoal::Near(parent),
        };
        let ino = self.tx.allocate_inode(goal, &inode)?;
        self.tx.lock(ino);
        self.lifetimes.new_generation(ino);
        fill(&mut self.tx, ino, &mut inode)?;
        self.tx.write_inode(ino, &inode)?;
        self.tx.add_entry(parent, &mut dir, name, ino, kind)?;
        if kind == FileType::Directory {
            dir.links_count += 1;
        }
        dir.mtime = now;
        dir.ctime = now;
        self.tx.write_inode(parent, &dir)?;
        self.attr(ino, &inode)
    }

    pub(super) fn mkdir(&mut self, parent: u32, name: &[u8], new: NewInode) -> Result<Attr> {
        self.make_node(parent, name, FileType::Directory, new, |tx, ino, inode| {
            tx.init_directory(ino, inode, parent)
        })
    }

    /// Drops one link of `ino`. The last one frees it at once when nothing
    /// holds it and it is small; else it goes on the orphan chain, and is
    /// freed after the operation, or once nothing holds it.
    pub(super) fn drop_link(&mut self, ino: u32, inode: &mut DiskInode) -> Result<()> {
        let is_dir = inode.file_type() == Some(FileType::Directory);
        inode.links_count = if is_dir { 0 } else { inode.links_count.saturating_sub(1) };
        inode.ctime = self.now;
        if inode.links_count == 0 {
            if self.free_unheld(ino, inode)? {
                return Ok(());
            }
            self.orphan(ino)?;
        }
        self.tx.write_inode(ino, inode)
    }

    pub(super) fn unlink(&mut self, parent: u32, name: &[u8]) -> Result<()> {
        self.tx.check_writable()?;
        if is_dot_or_dotdot(name) {
            return Err(Error::IsDir);
        }
        let (ino, mut inode) = self.lookup_locked(parent, name)?;
        if inode.file_type() == Some(FileType::Directory) {
            return Err(Error::IsDir);
        }
        let mut dir = self.directory(parent)?;
        self.tx.remove_entry(parent, &mut dir, name)?;
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.tx.write_inode(parent, &dir)?;
        self.drop_link(ino, &mut inode)
    }

    pub(super) fn rmdir(&mut self, parent: u32, name: &[u8]) -> Result<()> {
        self.tx.check_writable()?;
        if name == b"." {
            return Err(Error::InvalidArgument);
        }
        if name == b".." {
            return Err(Error::NotEmpty);
        }
        let (ino, mut inode) = self.lookup_locked(parent, name)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotDir);
        }
        if !self.tx.dir_is_empty(ino, &inode)? {
            return Err(Error::NotEmpty);
        }
        let mut dir = self.directory(parent)?;
        self.tx.remove_entry(parent, &mut dir, name)?;
        dir.links_count = dir.links_count.saturating_sub(1);
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.tx.write_inode(parent, &dir)?;
        self.drop_link(ino, &mut inode)
    }

    pub(super) fn link(&mut self, ino: u32, new_parent: u32, new_name: &[u8]) -> Result<Attr> {
        self.tx.check_writable()?;
        check_name(new_name)?;
        // A directory is refused before its lock could be taken after
        // another directory's (it might be that one's ancestor).
        self.tx.lock(ino);
        let is_dir = self.live_inode(ino)?.file_type() == Some(FileType::Directory);
        self.tx.unlock_all();
        if is_dir {
            return Err(Error::NotPermitted);
        }
        self.tx.lock(new_parent);
        self.tx.lock(ino);
        let mut inode = self.live_inode(ino)?;
        if inode.file_type() == Some(FileType::Directory) {
            return Err(Error::NotPermitted);
        }
        if inode.links_count == 0 {
            // Linking an unlinked-but-open file back in is not supported.
            return Err(Error::NotFound);
        }
        if inode.links_count >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }
        let mut dir = self.directory(new_parent)?;
        if self.tx.find_entry(new_parent, &dir, new_name)?.is_some() {
            return Err(Error::Exists);
        }
        let kind =
            inode.file_type().ok_or(Error::corrupt(Corruption::BadFileType(inode.mode), Some(ino), None))?;
        self.tx.add_entry(new_parent, &mut dir, new_name, ino, kind)?;
        dir.mtime = self.now;
        dir.ctime = self.now;
        self.tx.write_inode(new_parent, &dir)?;
        inode.links_count += 1;
        inode.ctime = self.now;
        self.tx.write_inode(ino, &inode)?;
        self.attr(ino, &inode)
    }

    /// Directory `dir` and its ancestors up to the root, each read under
    /// its own lock alone. A rename holds the rename lock, so the line
    /// stays as read.
    fn ancestry(&mut self, dir: u32) -> Result<Vec<u32>> {
        let mut line = vec![dir];
        let mut ino = dir;
        for _ in 0..=self.tx.geometry().usable_inodes() {
            if ino == ROOT_INODE {
                return Ok(line);
            }
            self.tx.lock(ino);
            let parent = self.lookup(ino, b"..");
            self.tx.unlock(ino);
            ino = parent?;
            line.push(ino);
        }
        Err(Error::corrupt(Corruption::DirectoryLoop, Some(ino), None))
    }

    pub(super) fn rename(
        &mut self,
        parent: u32,
        name: &[u8],
        new_parent: u32,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        self.tx.check_writable()?;
        if is_dot_or_dotdot(name) || is_dot_or_dotdot(new_name) {
            return Err(Error::InvalidArgument);
        }
        check_name(new_name)?;
        let now = self.now;
        // Where the two directories sit, read before their locks are
        // taken, ancestor first (unrelated ones in ascending order).
        let (line, new_line) = match parent == new_parent {
            true => (Vec::new(), Vec::new()),
            false => (self.ancestry(parent)?, self.ancestry(new_parent)?),
        };
        let first = if new_line.contains(&parent) {
            parent
        } else if line.contains(&new_parent) {
            new_parent
        } else {
            parent.min(new_parent)
        };
        self.tx.lock(first);
        self.tx.lock(if first == parent { new_parent } else { parent });

        let source = self.lookup(parent, name)?;
        let mut new_dir = self.directory(new_parent)?;
        let existing = self.tx.find_entry(new_parent, &new_dir, new_name)?;
        if existing.is_some() && flags.no_replace {
            return Err(Error::Exists);
        }
        if existing.is_some_and(|slot| slot.ino == source) {
            // Two names of one inode: POSIX says do nothing.
            return Ok(());
        }
        // A directory moved into itself or below it.
        if new_line.contains(&source) {
            return Err(Error::InvalidArgument);
        }
        self.tx.lock(source);
        let mut source_inode = self.linked_inode(source)?;
        let source_kind = source_inode.file_type().ok_or(Error::corrupt(
            Corruption::BadFileType(source_inode.mode),
            Some(source),
            None,
        ))?;
        let source_is_dir = source_kind == FileType::Directory;
        let mut replaced = None;
        if let Some(slot) = existing {
            // A target above the source's directory holds it: not empty
            // (and not to be locked after it).
            if line.contains(&slot.ino) {
                return Err(if source_is_dir { Error::NotEmpty } else { Error::IsDir });
            }
            self.tx.lock(slot.ino);
            let target_inode = self.linked_inode(slot.ino)?;
            let target_is_dir = target_inode.file_type() == Some(FileType::Directory);
            match (source_is_dir, target_is_dir) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                (true, true) if !self.tx.dir_is_empty(slot.ino, &target_inode)? => {
                    return Err(Error::NotEmpty)
                }
                _ => {}
            }
            replaced = Some((slot.ino, target_inode, target_is_dir));
        }
        let moves_dir_between_parents = source_is_dir && new_parent != parent;
        let replaces_dir = replaced.as_ref().is_some_and(|r| r.2);
        if moves_dir_between_parents && !replaces_dir && new_dir.links_count >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }

        // The new name first, so a failure (no space for a new directory
        // block) leaves the old name in place.
        match replaced {
            Some(_) => {
                self.tx.retarget_entry(new_parent, &mut new_dir, new_name, source, source_kind)?;
            }
            None => self.tx.add_entry(new_parent, &mut new_dir, new_name, source, source_kind)?,
        }
        new_dir.mtime = now;
        new_dir.ctime = now;
        if new_parent == parent {
            self.tx.remove_entry(parent, &mut new_dir, name)?;
            if replaces_dir {
                new_dir.links_count = new_dir.links_count.saturating_sub(1);
            }
            self.tx.write_inode(parent, &new_dir)?;
        } else {
            if moves_dir_between_parents && !replaces_dir {
                new_dir.links_count += 1;
            }
            self.tx.write_inode(new_parent, &new_dir)?;
            let mut old_dir = self.directory(parent)?;
            self.tx.remove_entry(parent, &mut old_dir, name)?;
            if source_is_dir {
                old_dir.links_count = old_dir.links_count.saturating_sub(1);
            }
            old_dir.mtime = now;
            old_dir.ctime = now;
            self.tx.write_inode(parent, &old_dir)?;
        }
        if moves_dir_between_parents {
            self.tx.retarget_entry(source, &mut source_inode, b"..", new_parent, FileType::Directory)?;
        }
        source_inode.ctime = now;
        self.tx.write_inode(source, &source_inode)?;
        if let Some((ino, mut inode, _)) = replaced {
            self.drop_link(ino, &mut inode)?;
        }
        Ok(())
    }
}

/// Splits a path into components, pushed in reverse so `pop` yields them
/// in order; empty components and `.` are skipped.
fn push_components(stack: &mut Vec<Vec<u8>>, path: &[u8]) {
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    for part in parts.into_iter().rev() {
        stack.push(part.to_vec());
    }
}
