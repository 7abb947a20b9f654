//! The operations themselves, on the locked state. Each runs inside a
//! transaction (`State::transaction`): it checks its arguments, then
//! changes blocks, and any error rolls the whole operation back.

use alloc::vec;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::dir::check_name;
use crate::error::{Corruption, Error, Result};
use crate::format::dirent::{is_dot_or_dotdot, MAX_NAME_LEN};
use crate::format::geometry::ROOT_INODE;
use crate::format::inode::{DiskInode, FileType, PERMISSION_BITS, S_IFMT};
use crate::volume::Volume;

use super::data::{read_data, truncate, write_data, DeviceRun};
use super::{
    Attr, NewInode, RenameFlags, SetAttr, State, LINK_MAX, MAX_FILE_SIZE, MAX_SYMLINK_FOLLOWS,
    MAX_SYMLINK_LEN, RELATIME_WINDOW,
};

impl<D: BlockDevice> State<D> {
    /// An inode that is in use (linked, or unlinked but still open).
    /// System inodes (the journal) are invisible.
    pub(super) fn live_inode(&mut self, ino: u32) -> Result<DiskInode> {
        if ino >= self.volume.geometry.usable_inodes() || self.volume.journal_inode == Some(ino) {
            return Err(Error::NotFound);
        }
        let inode = self.volume.read_inode(ino)?;
        if inode.is_free() && !self.volume.is_orphan(ino) {
            return Err(Error::NotFound);
        }
        Ok(inode)
    }

    /// The target of a directory entry, which must be in use.
    pub(super) fn linked_inode(&mut self, ino: u32) -> Result<DiskInode> {
        self.volume.check_inode(ino)?;
        let inode = self.volume.read_inode(ino)?;
        if inode.is_free() {
            return Err(Error::corrupt(Corruption::EntryToFreeInode(ino), Some(ino), None));
        }
        Ok(inode)
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

    pub(super) fn lookup(&mut self, parent: u32, name: &[u8]) -> Result<u32> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        let dir = self.directory(parent)?;
        let slot = self.volume.find_entry(parent, &dir, name)?.ok_or(Error::NotFound)?;
        self.volume.check_inode(slot.ino)?;
        Ok(slot.ino)
    }

    pub(super) fn resolve(&mut self, path: &[u8], follow_last: bool) -> Result<u32> {
        let mut follows = 0;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        push_components(&mut pending, path);
        let mut current = ROOT_INODE;
        // `pending` holds components in reverse; symlink targets are pushed
        // on top, so the walk is iterative and bounded by MAX_SYMLINK_FOLLOWS.
        while let Some(component) = pending.pop() {
            let next = self.lookup(current, &component)?;
            let inode = self.linked_inode(next)?;
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
                continue;
            }
            current = next;
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
        let read = read_data(&mut self.volume, ino, &inode, 0, &mut target, None)?;
        target.truncate(read);
        Ok(target)
    }

    pub(super) fn setattr(&mut self, ino: u32, changes: &SetAttr, now: u32) -> Result<Attr> {
        self.volume.check_writable()?;
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
            if truncate(&mut self.volume, ino, &mut inode, size)? {
                // Blocks past the new size are freed after the operation,
                // in steps; the orphan chain covers a crash meanwhile.
                self.orphan(ino, &mut inode);
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
        self.volume.write_inode(ino, &inode)?;
        self.attr(ino, &inode)
    }

    pub(super) fn read(
        &mut self,
        ino: u32,
        offset: u64,
        buf: &mut [u8],
        atime_now: Option<u32>,
        later: Option<&mut Vec<DeviceRun>>,
    ) -> Result<usize> {
        let mut inode = self.live_inode(ino)?;
        match inode.file_type() {
            Some(FileType::Directory) => return Err(Error::IsDir),
            Some(FileType::Regular) | Some(FileType::Symlink) => {}
            _ => return Err(Error::InvalidArgument),
        }
        let read = read_data(&mut self.volume, ino, &inode, offset, buf, later)?;
        if let Some(now) = atime_now {
            let stale = inode.atime <= inode.mtime
                || inode.atime <= inode.ctime
                || now.saturating_sub(inode.atime) >= RELATIME_WINDOW;
            if stale && inode.atime != now {
                inode.atime = now;
                self.volume.write_inode(ino, &inode)?;
            }
        }
        Ok(read)
    }

    pub(super) fn write(&mut self, ino: u32, offset: u64, data: &[u8], now: u32) -> Result<usize> {
        self.volume.check_writable()?;
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
        let written = write_data(&mut self.volume, ino, &mut inode, offset, &data[..length])?;
        if written < length && !self.volume.pending_frees().is_empty() {
            // Out of space while blocks freed by the running transaction
            // wait for its commit: the transaction retries after one.
            return Err(Error::NoSpace);
        }
        inode.mtime = now;
        inode.ctime = now;
        self.volume.write_inode(ino, &inode)?;
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
        now: u32,
        fill: impl FnOnce(&mut Volume<D>, u32, &mut DiskInode) -> Result<()>,
    ) -> Result<Attr> {
        self.volume.check_writable()?;
        check_name(name)?;
        let mut dir = self.directory(parent)?;
        if self.volume.find_entry(parent, &dir, name)?.is_some() {
            return Err(Error::Exists);
        }
        if kind == FileType::Directory && dir.links_count >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }
        let ino = self.volume.allocate_inode()?;
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
        self.lifetimes.new_generation(ino);
        fill(&mut self.volume, ino, &mut inode)?;
        self.volume.write_inode(ino, &inode)?;
        self.volume.add_entry(parent, &mut dir, name, ino, kind)?;
        if kind == FileType::Directory {
            dir.links_count += 1;
        }
        dir.mtime = now;
        dir.ctime = now;
        self.volume.write_inode(parent, &dir)?;
        self.attr(ino, &inode)
    }

    pub(super) fn mkdir(&mut self, parent: u32, name: &[u8], new: NewInode, now: u32) -> Result<Attr> {
        self.make_node(parent, name, FileType::Directory, new, now, |volume, ino, inode| {
            volume.init_directory(ino, inode, parent)
        })
    }

    /// Drops one link of `ino`. The last one puts it on the orphan chain:
    /// it is freed after the operation, or once nothing holds it.
    pub(super) fn drop_link(&mut self, ino: u32, inode: &mut DiskInode, now: u32) -> Result<()> {
        let is_dir = inode.file_type() == Some(FileType::Directory);
        inode.links_count = if is_dir { 0 } else { inode.links_count.saturating_sub(1) };
        inode.ctime = now;
        if inode.links_count == 0 {
            self.orphan(ino, inode);
        }
        self.volume.write_inode(ino, inode)
    }

    pub(super) fn unlink(&mut self, parent: u32, name: &[u8], now: u32) -> Result<()> {
        self.volume.check_writable()?;
        if is_dot_or_dotdot(name) {
            return Err(Error::IsDir);
        }
        let ino = self.lookup(parent, name)?;
        let mut inode = self.linked_inode(ino)?;
        if inode.file_type() == Some(FileType::Directory) {
            return Err(Error::IsDir);
        }
        let mut dir = self.directory(parent)?;
        self.volume.remove_entry(parent, &mut dir, name)?;
        dir.mtime = now;
        dir.ctime = now;
        self.volume.write_inode(parent, &dir)?;
        self.drop_link(ino, &mut inode, now)
    }

    pub(super) fn rmdir(&mut self, parent: u32, name: &[u8], now: u32) -> Result<()> {
        self.volume.check_writable()?;
        if name == b"." {
            return Err(Error::InvalidArgument);
        }
        if name == b".." {
            return Err(Error::NotEmpty);
        }
        let ino = self.lookup(parent, name)?;
        let mut inode = self.linked_inode(ino)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotDir);
        }
        if !self.volume.dir_is_empty(ino, &inode)? {
            return Err(Error::NotEmpty);
        }
        let mut dir = self.directory(parent)?;
        self.volume.remove_entry(parent, &mut dir, name)?;
        dir.links_count = dir.links_count.saturating_sub(1);
        dir.mtime = now;
        dir.ctime = now;
        self.volume.write_inode(parent, &dir)?;
        self.drop_link(ino, &mut inode, now)
    }

    pub(super) fn link(&mut self, ino: u32, new_parent: u32, new_name: &[u8], now: u32) -> Result<Attr> {
        self.volume.check_writable()?;
        check_name(new_name)?;
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
        if self.volume.find_entry(new_parent, &dir, new_name)?.is_some() {
            return Err(Error::Exists);
        }
        let kind =
            inode.file_type().ok_or(Error::corrupt(Corruption::BadFileType(inode.mode), Some(ino), None))?;
        self.volume.add_entry(new_parent, &mut dir, new_name, ino, kind)?;
        dir.mtime = now;
        dir.ctime = now;
        self.volume.write_inode(new_parent, &dir)?;
        inode.links_count += 1;
        inode.ctime = now;
        self.volume.write_inode(ino, &inode)?;
        self.attr(ino, &inode)
    }

    /// Whether directory `ancestor` is `ino` or one of its ancestors.
    pub(super) fn is_ancestor(&mut self, ancestor: u32, mut ino: u32) -> Result<bool> {
        for _ in 0..=self.volume.geometry.usable_inodes() {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT_INODE {
                return Ok(false);
            }
            ino = self.lookup(ino, b"..")?;
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
        now: u32,
    ) -> Result<()> {
        self.volume.check_writable()?;
        if is_dot_or_dotdot(name) || is_dot_or_dotdot(new_name) {
            return Err(Error::InvalidArgument);
        }
        check_name(new_name)?;
        let source = self.lookup(parent, name)?;
        let mut source_inode = self.linked_inode(source)?;
        let source_kind = source_inode.file_type().ok_or(Error::corrupt(
            Corruption::BadFileType(source_inode.mode),
            Some(source),
            None,
        ))?;
        let source_is_dir = source_kind == FileType::Directory;
        let mut new_dir = self.directory(new_parent)?;
        let existing = self.volume.find_entry(new_parent, &new_dir, new_name)?;
        if existing.is_some() && flags.no_replace {
            return Err(Error::Exists);
        }
        if existing.is_some_and(|slot| slot.ino == source) {
            // Two names of one inode: POSIX says do nothing.
            return Ok(());
        }
        if source_is_dir && new_parent != parent && self.is_ancestor(source, new_parent)? {
            return Err(Error::InvalidArgument);
        }
        let mut replaced = None;
        if let Some(slot) = existing {
            let target_inode = self.linked_inode(slot.ino)?;
            let target_is_dir = target_inode.file_type() == Some(FileType::Directory);
            match (source_is_dir, target_is_dir) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                (true, true) if !self.volume.dir_is_empty(slot.ino, &target_inode)? => {
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
                self.volume.retarget_entry(new_parent, &mut new_dir, new_name, source, source_kind)?;
            }
            None => self.volume.add_entry(new_parent, &mut new_dir, new_name, source, source_kind)?,
        }
        new_dir.mtime = now;
        new_dir.ctime = now;
        if new_parent == parent {
            self.volume.remove_entry(parent, &mut new_dir, name)?;
            if replaces_dir {
                new_dir.links_count = new_dir.links_count.saturating_sub(1);
            }
            self.volume.write_inode(parent, &new_dir)?;
        } else {
            if moves_dir_between_parents && !replaces_dir {
                new_dir.links_count += 1;
            }
            self.volume.write_inode(new_parent, &new_dir)?;
            let mut old_dir = self.directory(parent)?;
            self.volume.remove_entry(parent, &mut old_dir, name)?;
            if source_is_dir {
                old_dir.links_count = old_dir.links_count.saturating_sub(1);
            }
            old_dir.mtime = now;
            old_dir.ctime = now;
            self.volume.write_inode(parent, &old_dir)?;
        }
        if moves_dir_between_parents {
            self.volume.retarget_entry(source, &mut source_inode, b"..", new_parent, FileType::Directory)?;
        }
        source_inode.ctime = now;
        self.volume.write_inode(source, &source_inode)?;
        if let Some((ino, mut inode, _)) = replaced {
            self.drop_link(ino, &mut inode, now)?;
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
