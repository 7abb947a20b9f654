//! The FUSE request handlers: each one translates its arguments, calls one
//! `FileSystem` operation and translates the answer (see `convert`).
//!
//! The adapter keeps no per-inode or per-handle state: the library counts
//! the kernel's lookup references (returned by `FORGET`), and open handles
//! where the kernel still sends OPEN, so an unlinked inode lives until the
//! kernel lets go of it; it hands out generations for reused inode numbers
//! and stable readdir cookies; and the kernel enforces permissions
//! (`default_permissions`), except on a mount only root can use, where the
//! adapter admits root alone and answers `access` (`Permissions::RootOnly`).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use blockfs::format::inode::S_ISGID;
use blockfs::fs::{NewInode, RenameFlags};
use blockfs::{Attr, BlockDevice, Error, FileSystem, FileType, ListedEntry, SetAttr};
use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::convert::{self, blockfs_ino};
use crate::options::Permissions;
use crate::poll::Activity;

/// Largest write the kernel sends in one request: fewer round trips than
/// FUSE's 128 KiB default for streaming writes.
const MAX_WRITE: u32 = 1 << 20;
/// Readahead we ask for; the kernel grants at most its own limit
/// (128 KiB unless raised in /sys/class/bdi).
const MAX_READAHEAD: u32 = 128 << 10;
/// Bytes of entries read from the library per readdir request: the one
/// page a reply holds (each entry takes a 24-byte header and its name,
/// padded to 8), so no entry is decoded only to be thrown away.
const READDIR_BYTES: usize = 4096;

/// Bytes an entry takes in a FUSE readdir reply.
fn reply_size(name_len: usize) -> usize {
    (24 + name_len + 7) & !7
}
/// Bytes an entry takes in a READDIRPLUS reply: the entry and its
/// attributes (`fuse_entry_out`, 128 bytes) before it.
fn reply_plus_size(name_len: usize) -> usize {
    128 + reply_size(name_len)
}
/// Background requests (readahead, page write-back) the kernel may have
/// in flight: enough to keep every server thread busy.
const MAX_BACKGROUND: u16 = 64;
/// No per-open state, only whether the library counts the handle as an
/// open one: it does only where the kernel sends OPEN (see `open`).
const COUNTED_HANDLE: FileHandle = FileHandle(1);
/// A handle the library does not count; also what the kernel passes for
/// an open it made without asking.
const UNCOUNTED_HANDLE: FileHandle = FileHandle(0);
/// The image file only changes through this mount (it is locked, or in
/// memory), so pages the kernel cached stay valid across opens.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;
/// The same holds for listings: the kernel keeps a directory's entries
/// across opens and drops them itself when it changes the directory.
const OPENDIR_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE.union(FopenFlags::FOPEN_CACHE_DIR);
/// What we ask of the kernel, each only if it offers it (see `init`).
/// - Write-back caching: the kernel gathers small writes in its page
///   cache and sends them in large requests (at the latest on close or
///   fsync); it keeps size and mtime itself and sends them with SETATTR.
/// - READDIRPLUS, adaptively: a listing carries attributes, so `ls -l`
///   or a walk does not look every name up again.
/// - Parallel directory operations: lookups and creates in one directory
///   are not serialised by the kernel's directory lock.
/// - Cached symlink targets.
const CAPABILITIES: [InitFlags; 5] = [
    InitFlags::FUSE_WRITEBACK_CACHE,
    InitFlags::FUSE_DO_READDIRPLUS,
    InitFlags::FUSE_READDIRPLUS_AUTO,
    InitFlags::FUSE_PARALLEL_DIROPS,
    InitFlags::FUSE_CACHE_SYMLINKS,
];

pub struct Adapter<D> {
    fs: Arc<FileSystem<D>>,
    /// How long the kernel may trust attributes and names we return.
    ttl: Duration,
    /// The image, named in the messages about errors the errno hides.
    image: PathBuf,
    permissions: Permissions,
    /// The kernel opens files, and directories, without asking once we
    /// answer OPEN (OPENDIR) with ENOSYS (see `open`).
    silent_open: bool,
    silent_opendir: bool,
    /// Told of every request, so the server polls while they keep coming.
    activity: Activity,
}

impl<D: BlockDevice> Adapter<D> {
    pub fn new(
        fs: Arc<FileSystem<D>>,
        ttl: Duration,
        image: &Path,
        permissions: Permissions,
        activity: Activity,
    ) -> Self {
        // Every entry reply hands the kernel a reference it later forgets.
        fs.track_lookups();
        Adapter {
            fs,
            ttl,
            image: image.to_owned(),
            permissions,
            silent_open: false,
            silent_opendir: false,
            activity,
        }
    }

    /// On a mount only root can use, a request that names or opens
    /// something comes from root: the kernel admits no one else (short of
    /// its `allow_sys_admin_access` parameter), and anyone else is refused
    /// here too, since no permission check stands behind the request.
    fn admit(&self, req: &Request) -> Result<(), Errno> {
        match self.permissions {
            Permissions::RootOnly if req.uid() != 0 => Err(Errno::EACCES),
            _ => Ok(()),
        }
    }

    /// The errno for a library error. Corruption, device errors and the
    /// mount turning read-only also get a message, since EUCLEAN, EIO or
    /// EROFS alone does not say which inode or block is at fault, or why.
    fn fail(&self, error: Error) -> Errno {
        if matches!(error, Error::Corrupt { .. } | Error::Io(_) | Error::Aborted) {
            eprintln!("blockfs: {}: {error}", self.image.display());
        }
        convert::errno(error)
    }

    fn check<T>(&self, result: blockfs::Result<T>) -> Result<T, Errno> {
        result.map_err(|error| self.fail(error))
    }

    fn attr_reply(&self, reply: ReplyAttr, result: Result<Attr, Errno>) {
        match result {
            Ok(attr) => reply.attr(&self.ttl, &convert::file_attr(&attr)),
            Err(errno) => reply.error(errno),
        }
    }

    fn entry_reply(&self, reply: ReplyEntry, result: Result<Attr, Errno>) {
        match result {
            Ok(attr) => reply.entry(&self.ttl, &convert::file_attr(&attr), Generation(attr.generation)),
            Err(errno) => reply.error(errno),
        }
    }

    fn empty_reply(reply: ReplyEmpty, result: Result<(), Errno>) {
        match result {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    /// Owner and permissions of a new inode in `parent`: the caller's ids,
    /// except that a set-group-ID directory passes on its group (and the
    /// bit itself to new directories), as Linux's local filesystems do.
    fn new_inode(&self, req: &Request, parent: u32, perm: u16, is_dir: bool) -> Result<NewInode, Errno> {
        self.admit(req)?;
        let uid = convert::owner_id(req.uid())?;
        let dir = self.check(self.fs.getattr(parent))?;
        let (gid, perm) = if dir.perm & S_ISGID != 0 {
            (dir.gid, if is_dir { perm | S_ISGID } else { perm })
        } else {
            (convert::owner_id(req.gid())?, perm)
        };
        Ok(NewInode { perm, uid, gid })
    }

    /// Registers an open handle for an inode just created or looked up.
    fn open_inode(&self, ino: u32) -> Result<Attr, Errno> {
        self.check(self.fs.open(ino))
    }

    /// Answers OPEN or OPENDIR: ENOSYS where the kernel opens without
    /// asking (`silent`, see `open`), else an open handle the library
    /// counts.
    fn open_reply(&self, req: &Request, ino: INodeNo, silent: bool, flags: FopenFlags, reply: ReplyOpen) {
        let opened = self.admit(req).and_then(|()| match silent {
            true => Err(Errno::ENOSYS),
            false => self.open_inode(blockfs_ino(ino)?),
        });
        match opened {
            Ok(_) => reply.opened(COUNTED_HANDLE, flags),
            Err(errno) => reply.error(errno),
        }
    }

    /// Creates and opens a file; the handle says whether the open is
    /// counted (see `open`).
    fn create_inner(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Result<(Attr, FileHandle), Errno> {
        let parent = blockfs_ino(parent)?;
        let new = self.new_inode(req, parent, convert::permissions(mode), false)?;
        let attr = self.check(self.fs.create(parent, name.as_bytes(), new))?;
        if self.silent_open {
            return Ok((attr, UNCOUNTED_HANDLE));
        }
        Ok((self.open_inode(attr.ino)?, COUNTED_HANDLE))
    }

    fn mknod_inner(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<Attr, Errno> {
        let parent = blockfs_ino(parent)?;
        let kind = convert::kind_of_mode(mode)?;
        let new = self.new_inode(req, parent, convert::permissions(mode), false)?;
        let device = convert::decode_device(rdev);
        self.check(self.fs.mknod(parent, name.as_bytes(), kind, new, device))
    }

    fn mkdir_inner(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32) -> Result<Attr, Errno> {
        let parent = blockfs_ino(parent)?;
        let new = self.new_inode(req, parent, convert::permissions(mode), true)?;
        self.check(self.fs.mkdir(parent, name.as_bytes(), new))
    }

    fn symlink_inner(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
    ) -> Result<Attr, Errno> {
        let parent = blockfs_ino(parent)?;
        let owner = self.new_inode(req, parent, 0o777, false)?;
        let target = target.as_os_str().as_bytes();
        self.check(self.fs.symlink(parent, name.as_bytes(), target, owner.uid, owner.gid))
    }

    fn rename_inner(
        &self,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: fuser::RenameFlags,
    ) -> Result<(), Errno> {
        // RENAME_EXCHANGE and RENAME_WHITEOUT have no library operation.
        if !flags.difference(fuser::RenameFlags::RENAME_NOREPLACE).is_empty() {
            return Err(Errno::EINVAL);
        }
        let flags = RenameFlags { no_replace: flags.contains(fuser::RenameFlags::RENAME_NOREPLACE) };
        let (parent, new_parent) = (blockfs_ino(parent)?, blockfs_ino(new_parent)?);
        self.check(self.fs.rename(parent, name.as_bytes(), new_parent, new_name.as_bytes(), flags))
    }

    fn read_inner(&self, ino: INodeNo, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut buffer = vec![0; size as usize];
        let read = self.check(self.fs.read(blockfs_ino(ino)?, offset, &mut buffer))?;
        buffer.truncate(read);
        Ok(buffer)
    }

    fn write_inner(&self, ino: INodeNo, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let written = self.check(self.fs.write(blockfs_ino(ino)?, offset, data))?;
        // Never more than `data.len()`, which is at most MAX_WRITE.
        Ok(written as u32)
    }

    /// Closing a file or directory handle: an unlinked inode is freed on
    /// its last close (and last FORGET). A handle the kernel made without
    /// asking was never counted.
    fn release_inner(&self, ino: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        if fh == UNCOUNTED_HANDLE {
            return Ok(());
        }
        self.check(self.fs.release(blockfs_ino(ino)?))
    }

    /// `fsync`/`fsyncdir`: metadata is only consistent as a whole, so both
    /// commit everything; the device is flushed before the reply.
    fn fsync_inner(&self, ino: INodeNo) -> Result<(), Errno> {
        self.check(self.fs.fsync(blockfs_ino(ino)?).map(drop))
    }

    /// One batch of entries from cookie `offset`: inode, type, name and the
    /// cookie after the entry. Entries whose type byte is unknown (damaged
    /// or very old images) take the type from the inode, since `find` and
    /// `ls` trust the type a listing gives; that lookup takes the inode's
    /// lock, which must not be waited for while the listing holds the
    /// directory's (`readdir`'s callback may not call back), hence the
    /// batch.
    fn readdir_inner(&self, ino: INodeNo, offset: u64) -> Result<Vec<Listed>, Errno> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let listing = self.fs.readdir(blockfs_ino(ino)?, offset, &mut |entry, next| {
            bytes += reply_size(entry.name.len());
            if bytes > READDIR_BYTES && !batch.is_empty() {
                return false;
            }
            batch.push((entry.ino, entry.kind(), entry.name.clone(), next));
            true
        });
        self.check(listing)?;
        batch
            .into_iter()
            .map(|(ino, kind, name, next)| {
                let kind = match kind {
                    Some(kind) => kind,
                    None => self.check(self.fs.getattr(ino))?.kind,
                };
                Ok(Listed { ino, kind, name, next })
            })
            .collect()
    }
}

impl<D: BlockDevice> Adapter<D> {
    fn forget_unsent(&self, listed: &ListedEntry) {
        if !matches!(listed.entry.name.as_slice(), b"." | b"..") {
            self.fs.forget(listed.attr.ino, 1);
        }
    }
}

/// A directory entry as a readdir reply carries it.
struct Listed {
    ino: u32,
    kind: FileType,
    name: Vec<u8>,
    /// The cookie that resumes after this entry.
    next: u64,
}

impl<D: BlockDevice + 'static> Filesystem for Adapter<D> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each limit is refused only when above what fuser or the kernel
        // allows, and that limit (in the error) is then accepted.
        if let Err(limit) = config.set_max_write(MAX_WRITE) {
            config.set_max_write(limit).ok();
        }
        if let Err(limit) = config.set_max_readahead(MAX_READAHEAD) {
            config.set_max_readahead(limit).ok();
        }
        config.set_max_background(MAX_BACKGROUND).ok();
        config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4).ok();
        for capability in CAPABILITIES {
            // An older kernel without one works without it.
            config.add_capabilities(capability).ok();
        }
        // A change of owner drops a file's set-ID bits. Left to itself the
        // kernel works out the new mode, fetching the attributes first: a
        // GETATTR per chown, and a restoring tar chowns every file. With
        // HANDLE_KILLPRIV we drop them (`SetAttr::drop_privileges`), and
        // also those a write or truncation drops when the caller lacks
        // CAP_FSETID, which no caller of a mount only root can use lacks.
        if self.permissions == Permissions::RootOnly {
            config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV).ok();
        }
        self.silent_open = config.capabilities().contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.silent_opendir = config.capabilities().contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        Ok(())
    }

    /// The kernel has let go of the mount: make everything durable now.
    /// `serve` marks the image clean once the session has wound down.
    fn destroy(&mut self) {
        if let Err(error) = self.fs.sync() {
            eprintln!("blockfs: {}: final sync failed: {error}", self.image.display());
        }
    }

    /// A missing name is answered with inode 0 and the TTL, which the
    /// kernel caches as a negative entry: the lookup that precedes every
    /// create, or a compiler's search along an include path, is asked
    /// once. Every change comes through this mount, and the kernel drops
    /// the negative entry itself when it creates the name.
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _serving = self.activity.request();
        let result = self.admit(req).and_then(|()| {
            let parent = blockfs_ino(parent)?;
            self.check(self.fs.lookup(parent, name.as_bytes()))
        });
        match result {
            Err(Errno::ENOENT) => {
                reply.entry(&self.ttl, &convert::absent_attr(), Generation(0));
            }
            result => self.entry_reply(reply, result),
        }
    }

    /// The kernel drops `nlookup` references it got from entry replies; an
    /// unlinked inode nothing else holds is then freed.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _serving = self.activity.request();
        if let Ok(ino) = blockfs_ino(ino) {
            self.fs.forget(ino, nlookup);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _serving = self.activity.request();
        let result = blockfs_ino(ino).and_then(|ino| self.check(self.fs.getattr(ino)));
        self.attr_reply(reply, result);
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _serving = self.activity.request();
        // ctime becomes "now" whatever changes; BlockFS stores no other time.
        let changes = SetAttr {
            perm: mode.map(convert::permissions),
            uid,
            gid,
            size,
            atime: atime.map(convert::stored_time),
            mtime: mtime.map(convert::stored_time),
            // See `init`: the kernel leaves this to us only on a mount
            // only root can use.
            drop_privileges: self.permissions == Permissions::RootOnly && (uid.is_some() || gid.is_some()),
        };
        let result = self.admit(req).and_then(|()| self.check(self.fs.setattr(blockfs_ino(ino)?, &changes)));
        self.attr_reply(reply, result);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _serving = self.activity.request();
        match blockfs_ino(ino).and_then(|ino| self.check(self.fs.readlink(ino))) {
            Ok(target) => reply.data(&target),
            Err(errno) => reply.error(errno),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _serving = self.activity.request();
        self.entry_reply(reply, self.mknod_inner(req, parent, name, mode, rdev));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let _serving = self.activity.request();
        self.entry_reply(reply, self.mkdir_inner(req, parent, name, mode));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _serving = self.activity.request();
        let result =
            self.admit(req).and_then(|()| self.check(self.fs.unlink(blockfs_ino(parent)?, name.as_bytes())));
        Self::empty_reply(reply, result);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _serving = self.activity.request();
        let result =
            self.admit(req).and_then(|()| self.check(self.fs.rmdir(blockfs_ino(parent)?, name.as_bytes())));
        Self::empty_reply(reply, result);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let _serving = self.activity.request();
        self.entry_reply(reply, self.symlink_inner(req, parent, link_name, target));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _serving = self.activity.request();
        let result =
            self.admit(req).and_then(|()| self.rename_inner(parent, name, newparent, newname, flags));
        Self::empty_reply(reply, result);
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _serving = self.activity.request();
        let result = self.admit(req).and_then(|()| {
            let (ino, new_parent) = (blockfs_ino(ino)?, blockfs_ino(newparent)?);
            self.check(self.fs.link(ino, new_parent, newname.as_bytes()))
        });
        self.entry_reply(reply, result);
    }

    /// An open file needs nothing from us: the kernel holds a lookup
    /// reference on its inode until it lets go of it (FORGET), which keeps
    /// an unlinked file alive as an open handle would. So where the kernel
    /// can open without asking, the first OPEN is answered ENOSYS and the
    /// kernel stops sending OPEN and RELEASE, and opens with the caching
    /// flags we would have set (`FOPEN_KEEP_CACHE`): two round trips less
    /// per open. From the first ENOSYS on it sends no RELEASE for created
    /// files either, so on such a kernel no open is counted at all.
    fn open(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _serving = self.activity.request();
        self.open_reply(req, ino, self.silent_open, OPEN_FLAGS, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _serving = self.activity.request();
        match self.read_inner(ino, offset, size) {
            Ok(data) => reply.data(&data),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _serving = self.activity.request();
        match self.write_inner(ino, offset, data) {
            Ok(written) => reply.written(written),
            Err(errno) => reply.error(errno),
        }
    }

    /// `close` makes nothing durable on a local filesystem either: that is
    /// `fsync`'s job, and the write-back thread's within its interval.
    /// ENOSYS tells the kernel never to send FLUSH again, which saves a
    /// round trip on every close (it still writes cached pages back
    /// first).
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _serving = self.activity.request();
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _serving = self.activity.request();
        let result = self.release_inner(ino, fh);
        Self::empty_reply(reply, result);
    }

    /// Metadata is only consistent as a whole, so `datasync` commits as
    /// much as a full fsync; the device is flushed before the reply.
    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _serving = self.activity.request();
        let result = self.fsync_inner(ino);
        Self::empty_reply(reply, result);
    }

    /// As `open`: where the kernel can open directories without asking,
    /// ENOSYS stops OPENDIR and RELEASEDIR, and the kernel caches listings
    /// as `OPENDIR_FLAGS` ask. Otherwise a directory counts as open, so one
    /// removed while open keeps its inode until `releasedir`.
    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _serving = self.activity.request();
        self.open_reply(req, ino, self.silent_opendir, OPENDIR_FLAGS, reply);
    }

    /// Offsets are the library's cookies (the byte position after each
    /// entry), which stay valid while entries are added and removed, so a
    /// listing resumes where the last reply ended.
    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _serving = self.activity.request();
        match self.readdir_inner(ino, offset) {
            Ok(entries) => {
                for Listed { ino, kind, name, next } in entries {
                    if reply.add(convert::fuse_ino(ino), next, convert::kind(kind), OsStr::from_bytes(&name))
                    {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    /// A listing with attributes: each name sent (but `.` and `..`) is a
    /// lookup reference the kernel later forgets.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _serving = self.activity.request();
        let mut bytes = 0;
        let listing = blockfs_ino(ino).and_then(|ino| {
            self.check(self.fs.readdir_plus(ino, offset, &mut |entry| {
                bytes += reply_plus_size(entry.name.len());
                bytes <= READDIR_BYTES
            }))
        });
        match listing {
            Ok(entries) => {
                let mut entries = entries.into_iter();
                for listed in entries.by_ref() {
                    let attr = convert::file_attr(&listed.attr);
                    let name = OsStr::from_bytes(&listed.entry.name);
                    let generation = Generation(listed.attr.generation);
                    if reply.add(attr.ino, listed.next, name, &self.ttl, &attr, generation) {
                        // Not sent after all: return its reference.
                        self.forget_unsent(&listed);
                        break;
                    }
                }
                entries.for_each(|listed| self.forget_unsent(&listed));
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        let _serving = self.activity.request();
        let result = self.release_inner(ino, fh);
        Self::empty_reply(reply, result);
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _serving = self.activity.request();
        let result = self.fsync_inner(ino);
        Self::empty_reply(reply, result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _serving = self.activity.request();
        let stat = self.fs.statfs();
        let free = u64::from(stat.free_blocks);
        reply.statfs(
            stat.blocks.into(),
            free,
            free,
            stat.inodes.into(),
            stat.free_inodes.into(),
            stat.block_size,
            stat.name_max,
            stat.block_size,
        );
    }

    /// `access(2)` and `chdir`. With `default_permissions` the kernel
    /// checks itself and does not ask; should it ask, the answer is that
    /// the inode exists. On a mount only root can use, root may do
    /// anything but execute a file without any execute bit.
    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _serving = self.activity.request();
        let result = self.admit(req).and_then(|()| {
            let attr = self.check(self.fs.getattr(blockfs_ino(ino)?))?;
            let executes = mask.contains(AccessFlags::X_OK) && attr.kind != FileType::Directory;
            match self.permissions {
                Permissions::RootOnly if executes && attr.perm & 0o111 == 0 => Err(Errno::EACCES),
                _ => Ok(()),
            }
        });
        Self::empty_reply(reply, result);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _serving = self.activity.request();
        match self.create_inner(req, parent, name, mode) {
            Ok((attr, handle)) => {
                let generation = Generation(attr.generation);
                reply.created(&self.ttl, &convert::file_attr(&attr), generation, handle, OPEN_FLAGS)
            }
            Err(errno) => reply.error(errno),
        }
    }
}
