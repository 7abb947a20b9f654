//! The filesystem operations, with POSIX semantics and errno-mapped errors.
//!
//! [`FileSystem`] is `Send + Sync`: every operation takes `&self`, and a
//! kernel or a multi-threaded FUSE server may call from several threads:
//! operations on different files run in parallel, each holding the locks
//! of the inodes it works on, and none waits for the device holding a
//! lock another operation needs (docs/DESIGN.md §5). Inode numbers are
//! the on-disk ones; the root is 0.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cache::CacheStats;
use crate::device::BlockDevice;
use crate::dir::DirEntry;
use crate::error::{Corruption, Error, Result};
use crate::format::dirent::MAX_NAME_LEN;
use crate::format::extension::{Extension, ExtensionError};
use crate::format::geometry::Geometry;
use crate::format::inode::{DiskInode, FileType};
use crate::format::superblock::{Superblock, STATE_CLEAN};
use crate::format::BLOCK_SIZE;
use crate::sync::Mutex;
use crate::tx::Tx;
use crate::volume::Volume;

mod data;
mod format;
mod lifetime;
pub(crate) mod mount;
mod ops;
mod tune;

use data::read_data;
use lifetime::Lifetimes;

pub use format::format;
pub use tune::JournalAdded;

pub use crate::format::geometry::ROOT_INODE as ROOT_INO;

/// Largest file size: `size` is a u32.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
/// Most hard links an inode may have (as ext2's limit, below u16::MAX).
pub const LINK_MAX: u16 = 65000;
/// Longest symlink target (PATH_MAX less its NUL).
pub const MAX_SYMLINK_LEN: usize = 4095;
/// Symbolic links followed while resolving one path.
const MAX_SYMLINK_FOLLOWS: usize = 40;
/// Default block-cache budget: 16 MiB.
pub const DEFAULT_CACHE_BLOCKS: usize = 4096;
/// Seconds after which relatime refreshes atime regardless.
const RELATIME_WINDOW: u32 = 24 * 60 * 60;
/// Journal blocks an operation reserves when it starts: more than any
/// single namespace operation changes. An operation that needs more is
/// rolled back and retried alone, with the whole journal.
const OPERATION_CREDITS: usize = 24;
/// Times an operation that ran out of space is run again after frees
/// became free (concurrent commits can keep taking its space away).
const MAX_SPACE_RETRIES: u32 = 3;
/// Largest piece of a write done as one transaction (1 MiB).
const WRITE_PIECE: usize = 256 * BLOCK_SIZE;
/// Times one operation may be run again after reading a missing block
/// with no lock held (see `FileSystem::update`); past that it reads the
/// rest in place, so an operation over many cold blocks (a lookup in a
/// large directory) is not run once per block.
const MAX_DEFERRED_MISSES: u32 = 8;
/// Times a read fetches its uncached data with no lock held before it
/// reads holding the inode's lock (blocks went home meanwhile each time).
const MAX_DEFERRED_READS: u32 = 3;

/// Seconds since the epoch, as the inode stores them.
pub type Clock = fn() -> u32;

#[cfg(feature = "std")]
fn system_clock() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}

#[cfg(not(feature = "std"))]
fn system_clock() -> u32 {
    0
}

/// How to create a filesystem.
#[derive(Clone, Debug)]
pub struct FormatOptions {
    pub block_count: u32,
    /// `None` picks the default rule (docs/FORMAT.md §1).
    pub inode_count: Option<u32>,
    /// Timestamp for the root directory and the extension record.
    pub time: u32,
    pub uuid: [u8; 16],
    pub label: Vec<u8>,
    /// Write the extension record; `false` makes a plain version 1 image.
    pub extension: bool,
    /// Create a journal (needs the extension record, and an image of at
    /// least 2 MiB; see `journal_size_for`).
    pub journal: bool,
    pub root_permissions: u16,
    pub root_uid: u16,
    pub root_gid: u16,
}

impl FormatOptions {
    pub fn new(block_count: u32) -> Self {
        FormatOptions {
            block_count,
            inode_count: None,
            time: 0,
            uuid: [0; 16],
            label: Vec::new(),
            extension: true,
            journal: true,
            root_permissions: 0o755,
            root_uid: 0,
            root_gid: 0,
        }
    }
}

/// How to mount.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Block-cache budget in 4 KiB blocks (at least 8).
    pub cache_blocks: usize,
    pub read_only: bool,
    /// Update atime on read as Linux's relatime does; off means noatime.
    pub relatime: bool,
    /// Log metadata through the image's journal (when it has one). Off is
    /// for bulk loads whose result is thrown away on failure, such as
    /// `mkfs-blockfs --populate`: no flushes until `sync`/`unmount`.
    pub journal: bool,
    /// Count this mount in the superblock (`mount_count`, `mount_time`).
    /// Off for a tool's own mount of an image it is building, which should
    /// still read as never mounted.
    pub record_mount: bool,
    pub clock: Clock,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_blocks: DEFAULT_CACHE_BLOCKS,
            read_only: false,
            relatime: true,
            journal: true,
            record_mount: true,
            clock: system_clock,
        }
    }
}

/// What `stat` reports about an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u32,
    /// Distinguishes the uses of one inode number within a mount: a
    /// number freed and allocated again gets a new generation.
    pub generation: u64,
    pub kind: FileType,
    /// The 12 permission bits.
    pub perm: u16,
    pub nlink: u16,
    pub uid: u16,
    pub gid: u16,
    pub size: u64,
    /// Blocks held (data and indirect), in 4 KiB units.
    pub blocks: u32,
    pub atime: u32,
    pub mtime: u32,
    pub ctime: u32,
    /// (major, minor) for device nodes, else (0, 0).
    pub rdev: (u32, u32),
}

impl Attr {
    fn from_inode(ino: u32, inode: &DiskInode) -> Result<Self> {
        let kind =
            inode.file_type().ok_or(Error::corrupt(Corruption::BadFileType(inode.mode), Some(ino), None))?;
        let rdev = match kind {
            FileType::CharDevice | FileType::BlockDevice => inode.rdev(),
            _ => (0, 0),
        };
        Ok(Attr {
            ino,
            generation: 0,
            kind,
            perm: inode.permissions(),
            nlink: inode.links_count,
            uid: inode.uid,
            gid: inode.gid,
            size: inode.size as u64,
            blocks: inode.blocks,
            atime: inode.atime,
            mtime: inode.mtime,
            ctime: inode.ctime,
            rdev,
        })
    }

    pub fn mode(&self) -> u32 {
        (self.kind.mode_bits() | self.perm) as u32
    }
}

/// Changes for [`FileSystem::setattr`]; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (the file type is kept).
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<u32>,
    pub mtime: Option<u32>,
    /// Clear set-user-ID, and set-group-ID when the group may execute,
    /// from a file that is not a directory, as Linux does when a file
    /// changes owner; an explicit `perm` wins. For a caller (a FUSE server
    /// with `FUSE_HANDLE_KILLPRIV`) that pairs it with `uid` or `gid`.
    pub drop_privileges: bool,
}

/// Ownership and permissions of a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewInode {
    pub perm: u16,
    pub uid: u16,
    pub gid: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u32,
    pub free_blocks: u32,
    /// Inodes with a slot in the table.
    pub inodes: u32,
    pub free_inodes: u32,
    pub name_max: u32,
}

/// Facts about a mounted image beyond its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub superblock: Superblock,
    pub geometry: Geometry,
    pub extension: Option<Extension>,
    /// Why block 0 has no usable extension record, when it has none.
    pub extension_problem: Option<ExtensionError>,
    /// The superblock said "clean" when mounted.
    pub was_clean: bool,
}

/// `rename` flags (Linux `renameat2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// Fail with `Exists` instead of replacing.
    pub no_replace: bool,
}

/// A directory entry with its inode's attributes (`readdir_plus`).
#[derive(Clone, Debug)]
pub struct ListedEntry {
    pub entry: DirEntry,
    pub attr: Attr,
    /// The cookie that resumes after this entry.
    pub next: u64,
}

/// How an update is run (see `FileSystem::update`).
#[derive(Clone, Copy)]
pub(super) struct Update {
    /// Journal blocks reserved for it.
    credits: usize,
    /// It needs the rename lock (taken before anything else).
    rename: bool,
    /// Outgrowing the credits retries it alone, with the whole journal.
    exclusive_retry: bool,
}

/// An ordinary operation.
const OPERATION: Update = Update { credits: OPERATION_CREDITS, rename: false, exclusive_retry: true };

/// An operation in progress: its transaction, and what the filesystem
/// keeps beside the volume (lifetimes) for it. The operations themselves
/// are in `ops`, `lifetime` and `data`.
pub(crate) struct Op<'a, D: BlockDevice> {
    pub tx: Tx<'a, D>,
    lifetimes: &'a Lifetimes,
    now: u32,
    /// Orphans this operation queued for reclamation after it.
    reclaim: Vec<u32>,
}

impl<D: BlockDevice> Op<'_, D> {
    /// Directory `ino`'s inode for listing, or `None` when it was removed
    /// while something still holds it: it lists as empty, as POSIX has it
    /// (not even `.` and `..`).
    fn listable_directory(&mut self, ino: u32) -> Result<Option<DiskInode>> {
        let inode = self.live_inode(ino)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotDir);
        }
        Ok((inode.links_count > 0).then_some(inode))
    }

    /// What `stat` reports, with the inode's generation.
    fn attr(&self, ino: u32, inode: &DiskInode) -> Result<Attr> {
        let mut attr = Attr::from_inode(ino, inode)?;
        attr.generation = self.lifetimes.generation(ino);
        Ok(attr)
    }
}

/// A mounted filesystem. `Send + Sync`: every operation takes `&self`,
/// and operations on different files run in parallel (docs/DESIGN.md §5).
pub struct FileSystem<D> {
    volume: Volume<D>,
    lifetimes: Lifetimes,
    /// See [`FileSystem::track_lookups`].
    track_lookups: AtomicBool,
    /// See [`FileSystem::hand_off_commits`].
    commit_helper: Mutex<Option<Box<dyn Fn() + Send>>>,
    has_helper: AtomicBool,
    /// The helper was woken and has not committed since.
    commit_requested: AtomicBool,
    info: VolumeInfo,
    options: MountOptions,
}

impl<D> core::fmt::Debug for FileSystem<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileSystem")
            .field("geometry", &self.info.geometry)
            .field("read_only", &self.options.read_only)
            .finish_non_exhaustive()
    }
}

impl<D: BlockDevice> FileSystem<D> {
    /// Mounts: reads block 0 and the journal superblock, replays a
    /// committed transaction if a crash left one, and reads nothing else
    /// but the orphan chain, whose work it finishes (read-write only).
    /// A read-write mount marks the image dirty (state 0) and bumps the
    /// mount count at once, so an unclean shutdown is recognisable.
    pub fn mount(device: D, options: MountOptions) -> Result<Self> {
        let (volume, info) = mount::open_volume(device, &options)?;
        let fs = FileSystem {
            volume,
            lifetimes: Lifetimes::new(),
            track_lookups: AtomicBool::new(false),
            commit_helper: Mutex::new(None),
            has_helper: AtomicBool::new(false),
            commit_requested: AtomicBool::new(false),
            info,
            options,
        };
        if !options.read_only {
            fs.volume.load_orphan_chain()?;
            if fs.reclaim_all()? > 0 {
                fs.volume.commit((options.clock)())?;
            }
        }
        Ok(fs)
    }

    /// Finishes all pending work, commits everything, marks the image
    /// clean and returns the device. After a device error aborted the
    /// mount, returns [`Error::Aborted`] and writes nothing.
    pub fn unmount(self) -> Result<D> {
        if !self.volume.is_read_only() {
            self.volume.check_writable()?;
            self.reclaim_all()?;
            self.volume.change_head(|head| head.superblock.state = STATE_CLEAN);
            self.volume.commit((self.options.clock)())?;
        }
        Ok(self.volume.into_device())
    }

    /// Facts read at mount time (superblock as found, extension record).
    pub fn info(&self) -> VolumeInfo {
        self.info
    }

    /// The superblock as it is now in memory.
    pub fn superblock(&self) -> Superblock {
        self.volume.superblock()
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.volume.store().stats()
    }

    pub fn is_read_only(&self) -> bool {
        self.options.read_only
    }

    /// From now on, count the references each lookup, create, mkdir,
    /// mknod, symlink and link hands out; the caller returns them with
    /// [`FileSystem::forget`]. An unlinked inode is then freed only when
    /// these and its open handles are gone. A FUSE server turns this on
    /// (the kernel holds inodes past their last close); a caller that
    /// never forgets must not.
    pub fn track_lookups(&self) {
        self.track_lookups.store(true, Ordering::SeqCst);
    }

    fn tracks_lookups(&self) -> bool {
        self.track_lookups.load(Ordering::Relaxed)
    }

    /// Whether a device error during a commit turned the mount read-only.
    pub fn is_aborted(&self) -> bool {
        self.volume.store().is_aborted()
    }

    pub fn has_journal(&self) -> bool {
        self.volume.has_journal()
    }

    fn op<'a>(&'a self, tx: Tx<'a, D>, now: u32) -> Op<'a, D> {
        Op { tx, lifetimes: &self.lifetimes, now, reclaim: Vec::new() }
    }

    /// Runs an operation that only reads: outside the commit barrier, its
    /// misses read the device holding only the inode locks it took.
    fn inspect<T>(&self, operation: impl FnOnce(&mut Op<'_, D>) -> Result<T>) -> Result<T> {
        let now = (self.options.clock)();
        let value = operation(&mut self.op(self.volume.begin_read(), now));
        self.relieve(now)?;
        value
    }

    /// `update_then` with nothing after.
    fn update<T>(&self, kind: Update, operation: impl FnMut(&mut Op<'_, D>) -> Result<T>) -> Result<T> {
        self.update_then(kind, operation, |_, _| {})
    }

    /// Runs an operation that may change the filesystem as one
    /// transaction (docs/DESIGN.md §3.1), `then` applied once it has
    /// succeeded while its locks are still held; then the reclamation it
    /// queued (each step a transaction of its own), then a commit when
    /// the running transaction has grown large.
    ///
    /// Device reads happen with nothing held: the operation runs with
    /// misses deferred, and when it needs a block the cache lacks it is
    /// rolled back, the block is read with every lock let go, and the
    /// operation runs again (docs/DESIGN.md §5). After
    /// `MAX_DEFERRED_MISSES` such rounds, or a failed read, it reads in
    /// place, so it always finishes and reports device errors. Two
    /// failures are retried: running out of space while blocks freed by
    /// the running transaction wait for its commit (retried after one), or
    /// while another thread's commit freed blocks (retried at once), a few
    /// times; and outgrowing the operation's credits (retried once, alone,
    /// with the whole journal). The operation must have no effect outside the
    /// filesystem until it succeeds.
    fn update_then<T>(
        &self,
        kind: Update,
        mut operation: impl FnMut(&mut Op<'_, D>) -> Result<T>,
        then: impl FnOnce(&mut Op<'_, D>, &T),
    ) -> Result<T> {
        let now = (self.options.clock)();
        let mut misses = 0;
        let mut retried = false;
        let mut space_retries = 0;
        let mut exclusive = false;
        loop {
            let tx = if exclusive {
                self.volume.begin_exclusive(now)?
            } else {
                self.volume.begin_update(kind.credits, kind.rename, misses < MAX_DEFERRED_MISSES, now)?
            };
            let mut op = self.op(tx, now);
            match operation(&mut op).and_then(|value| op.tx.finish().map(|()| value)) {
                Ok(value) => {
                    then(&mut op, &value);
                    let queued = core::mem::take(&mut op.reclaim);
                    drop(op);
                    // The operation itself is done: a failed reclamation
                    // stays queued (and on the orphan chain).
                    self.reclaim_queued(queued);
                    self.relieve(now)?;
                    return Ok(value);
                }
                Err(error) => {
                    op.tx.rollback();
                    let space_freed_since = op.tx.space_freed_since_begin();
                    drop(op);
                    match error {
                        Error::NotCached(block) => {
                            misses += 1;
                            if !self.volume.load_unlocked(block) {
                                misses = MAX_DEFERRED_MISSES;
                            }
                        }
                        Error::NoSpace if space_retries < MAX_SPACE_RETRIES => {
                            space_retries += 1;
                            if self.volume.frees_awaiting_commit() > 0 {
                                self.volume.commit(now)?;
                            } else if !space_freed_since {
                                return Err(Error::NoSpace);
                            }
                        }
                        Error::TooLargeForJournal
                            if !retried && kind.exclusive_retry && self.has_journal() =>
                        {
                            retried = true;
                            exclusive = true;
                        }
                        error => return Err(error),
                    }
                }
            }
        }
    }

    /// Between operations: commits a running transaction grown large (or
    /// wakes the helper that commits it), or writes back a cache over its
    /// budget on an image without a journal.
    fn relieve(&self, now: u32) -> Result<()> {
        if self.volume.commit_due() {
            if !self.has_helper.load(Ordering::Relaxed) || self.volume.commit_urgent() {
                self.volume.commit_if_idle(now)?;
            } else if !self.commit_requested.swap(true, Ordering::SeqCst) {
                if let Some(wake) = &*self.commit_helper.lock() {
                    wake();
                }
            }
        } else if self.volume.needs_write_back() {
            self.volume.write_back()?;
        }
        Ok(())
    }

    /// Hands the commits that operations find due (the running transaction
    /// has grown large; see docs/DESIGN.md §3.3) to a helper thread, so
    /// the operation that finds one due returns without waiting for its
    /// I/O: it calls `wake` instead (once until the next commit), and the
    /// helper is to call [`FileSystem::sync`] soon. A transaction that
    /// keeps growing meanwhile is still committed by the operation that
    /// finds it urgent. `None` goes back to committing in the operation.
    pub fn hand_off_commits(&self, wake: Option<Box<dyn Fn() + Send>>) {
        let mut helper = self.commit_helper.lock();
        self.has_helper.store(wake.is_some(), Ordering::SeqCst);
        *helper = wake;
        self.commit_requested.store(false, Ordering::SeqCst);
    }

    /// Runs an operation that hands out a reference to the inode whose
    /// attributes it returns, and counts the reference when lookups are
    /// tracked.
    fn update_referencing(&self, operation: impl FnMut(&mut Op<'_, D>) -> Result<Attr>) -> Result<Attr> {
        let track = self.tracks_lookups();
        self.update_then(OPERATION, operation, |op, attr| {
            if track {
                op.lifetimes.hold_lookup(attr.ino);
            }
        })
    }

    pub fn statfs(&self) -> StatFs {
        let superblock = self.volume.superblock();
        StatFs {
            block_size: BLOCK_SIZE as u32,
            blocks: self.volume.geometry.block_count,
            // Blocks freed by the running transaction count as free.
            free_blocks: superblock.free_blocks + self.volume.frees_awaiting_commit() as u32,
            inodes: self.volume.geometry.usable_inodes(),
            free_inodes: superblock.free_inodes,
            name_max: MAX_NAME_LEN as u32,
        }
    }

    pub fn getattr(&self, ino: u32) -> Result<Attr> {
        self.inspect(|op| {
            op.tx.lock(ino);
            let inode = op.live_inode(ino)?;
            op.attr(ino, &inode)
        })
    }

    /// Looks `name` up in `parent` (a reference, when lookups are tracked).
    pub fn lookup(&self, parent: u32, name: &[u8]) -> Result<Attr> {
        let track = self.tracks_lookups();
        self.inspect(|op| {
            let (ino, inode) = op.lookup_locked(parent, name)?;
            let attr = op.attr(ino, &inode)?;
            if track {
                op.lifetimes.hold_lookup(ino);
            }
            Ok(attr)
        })
    }

    /// Returns `count` references that lookups handed out for `ino` (FUSE
    /// `FORGET`). An unlinked inode nothing else holds is then freed.
    pub fn forget(&self, ino: u32, count: u64) {
        // A failure leaves the orphan queued: unmount frees it.
        let _ = self.release_holds(ino, 0, count);
    }

    /// Resolves an absolute path, following symlinks in every component
    /// but the last (and the last too when `follow_last`).
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> Result<u32> {
        self.inspect(|op| op.resolve(path, follow_last))
    }

    pub fn setattr(&self, ino: u32, changes: &SetAttr) -> Result<Attr> {
        if changes.size.is_some() {
            self.settle(ino)?;
        }
        self.update(OPERATION, |op| {
            op.tx.lock(ino);
            op.setattr(ino, changes)
        })
    }

    pub fn read(&self, ino: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let relatime = self.options.relatime && !self.options.read_only;
        let now = (self.options.clock)();
        let mut attempts = 0;
        let (count, stale_atime) = loop {
            // Uncached runs of data are read after the operation, with no
            // lock held, and thrown away if a block may have gone home
            // meanwhile (see `cache::BlockCache::home_version`).
            let mut runs = Vec::new();
            let later = (attempts < MAX_DEFERRED_READS).then_some(&mut runs);
            let (count, stale, version) = self.inspect(|op| {
                op.tx.lock(ino);
                let inode = op.readable_inode(ino)?;
                let count = read_data(&mut op.tx, ino, &inode, offset, buf, later)?;
                Ok((count, relatime && atime_is_stale(&inode, now), op.tx.volume.store().home_version()))
            })?;
            if runs.is_empty() {
                break (count, stale);
            }
            let device = self.volume.store().device();
            let fetched = runs
                .iter()
                .all(|run| device.read_blocks(run.first, &mut buf[run.at..run.at + run.len]).is_ok());
            if fetched && self.volume.store().home_version() == version {
                break (count, stale);
            }
            // A failed read is read again in place, which reports it.
            attempts = if fetched { attempts + 1 } else { MAX_DEFERRED_READS };
        };
        if stale_atime {
            self.update(OPERATION, |op| {
                op.tx.lock(ino);
                op.touch_atime(ino, now)
            })?;
        }
        Ok(count)
    }

    /// Writes `data` at `offset`, a transaction per `WRITE_PIECE`. A
    /// short count means a piece failed after earlier ones were written
    /// (the disk filled up, the 4 GiB − 1 limit, a device error); a failed
    /// piece leaves nothing behind.
    pub fn write(&self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        self.settle(ino)?;
        let mut written = 0;
        for piece in data.chunks(WRITE_PIECE) {
            let at = offset + written as u64;
            let outcome = self.update(OPERATION, |op| {
                op.tx.lock(ino);
                op.write(ino, at, piece)
            });
            match outcome {
                Ok(count) => {
                    written += count;
                    if count < piece.len() {
                        break;
                    }
                }
                Err(_) if written > 0 => break,
                Err(error) => return Err(error),
            }
        }
        Ok(written)
    }

    pub fn create(&self, parent: u32, name: &[u8], new: NewInode) -> Result<Attr> {
        self.mknod(parent, name, FileType::Regular, new, (0, 0))
    }

    /// Creates a regular file, FIFO, socket or device node.
    pub fn mknod(
        &self,
        parent: u32,
        name: &[u8],
        kind: FileType,
        new: NewInode,
        rdev: (u32, u32),
    ) -> Result<Attr> {
        if matches!(kind, FileType::Directory | FileType::Symlink) || !DiskInode::rdev_fits(rdev.0, rdev.1) {
            return Err(Error::InvalidArgument);
        }
        self.update_referencing(|op| {
            op.make_node(parent, name, kind, new, |_, _, inode| {
                if matches!(kind, FileType::CharDevice | FileType::BlockDevice) {
                    inode.set_rdev(rdev.0, rdev.1);
                }
                Ok(())
            })
        })
    }

    pub fn mkdir(&self, parent: u32, name: &[u8], new: NewInode) -> Result<Attr> {
        self.update_referencing(|op| op.mkdir(parent, name, new))
    }

    pub fn symlink(&self, parent: u32, name: &[u8], target: &[u8], uid: u16, gid: u16) -> Result<Attr> {
        if target.is_empty() {
            return Err(Error::NotFound);
        }
        if target.len() > MAX_SYMLINK_LEN {
            return Err(Error::NameTooLong);
        }
        let new = NewInode { perm: 0o777, uid, gid };
        self.update_referencing(|op| {
            op.make_node(parent, name, FileType::Symlink, new, |tx, ino, inode| {
                data::write_data(tx, ino, inode, 0, target).map(|_| ())
            })
        })
    }

    pub fn readlink(&self, ino: u32) -> Result<Vec<u8>> {
        self.inspect(|op| {
            op.tx.lock(ino);
            op.readlink(ino)
        })
    }

    pub fn unlink(&self, parent: u32, name: &[u8]) -> Result<()> {
        self.update(OPERATION, |op| op.unlink(parent, name))
    }

    pub fn rmdir(&self, parent: u32, name: &[u8]) -> Result<()> {
        self.update(OPERATION, |op| op.rmdir(parent, name))
    }

    pub fn link(&self, ino: u32, new_parent: u32, new_name: &[u8]) -> Result<Attr> {
        self.update_referencing(|op| op.link(ino, new_parent, new_name))
    }

    pub fn rename(
        &self,
        parent: u32,
        name: &[u8],
        new_parent: u32,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let kind = Update { rename: true, ..OPERATION };
        self.update(kind, |op| op.rename(parent, name, new_parent, new_name, flags))
    }

    /// Lists directory `ino` from cookie `offset` (0 = start). `visit`
    /// gets each entry and the cookie that resumes after it; it returns
    /// false to stop (the entry it refused is offered again next time).
    /// `visit` must not call back into the filesystem.
    pub fn readdir(
        &self,
        ino: u32,
        offset: u64,
        visit: &mut dyn FnMut(&DirEntry, u64) -> bool,
    ) -> Result<()> {
        self.inspect(|op| {
            op.tx.lock(ino);
            let Some(inode) = op.listable_directory(ino)? else { return Ok(()) };
            let from = offset.min(u32::MAX as u64) as u32;
            op.tx.list_entries(ino, &inode, from, &mut |entry| {
                let next = entry.position as u64 + 1;
                visit(&entry, next)
            })
        })
    }

    /// `readdir` with each entry's attributes, as FUSE's READDIRPLUS
    /// wants: `accept` sees each entry and returns false to stop (that
    /// entry is offered again next time). Every accepted entry other than
    /// `.` and `..` hands out a reference, as a lookup does; the kernel
    /// takes none for those two.
    pub fn readdir_plus(
        &self,
        ino: u32,
        offset: u64,
        accept: &mut dyn FnMut(&DirEntry) -> bool,
    ) -> Result<Vec<ListedEntry>> {
        let track = self.tracks_lookups();
        self.inspect(|op| {
            op.tx.lock(ino);
            let Some(inode) = op.listable_directory(ino)? else { return Ok(Vec::new()) };
            let mut entries = Vec::new();
            let from = offset.min(u32::MAX as u64) as u32;
            op.tx.list_entries(ino, &inode, from, &mut |entry| {
                let accepted = accept(&entry);
                if accepted {
                    entries.push(entry);
                }
                accepted
            })?;
            let mut listed = Vec::with_capacity(entries.len());
            let mut parent_at = None;
            for entry in entries {
                let next = entry.position as u64 + 1;
                let attr = match &entry.name[..] {
                    b"." => op.attr(ino, &inode)?,
                    // After the others: it takes the locks again, parent first.
                    b".." => {
                        parent_at = Some(listed.len());
                        Attr::from_inode(entry.ino, &inode)?
                    }
                    _ => {
                        op.tx.lock(entry.ino);
                        let child = op.linked_inode(entry.ino)?;
                        let attr = op.attr(entry.ino, &child)?;
                        if track {
                            op.lifetimes.hold_lookup(entry.ino);
                        }
                        op.tx.unlock(entry.ino);
                        attr
                    }
                };
                listed.push(ListedEntry { entry, attr, next });
            }
            if let Some(at) = parent_at {
                let (parent, parent_inode) = op.lookup_locked(ino, b"..")?;
                listed[at].attr = op.attr(parent, &parent_inode)?;
            }
            Ok(listed)
        })
    }

    /// Notes an open handle: an unlinked inode keeps its data until the
    /// last handle is released.
    pub fn open(&self, ino: u32) -> Result<Attr> {
        self.inspect(|op| {
            op.tx.lock(ino);
            let inode = op.live_inode(ino)?;
            let attr = op.attr(ino, &inode)?;
            op.lifetimes.hold_open(ino);
            Ok(attr)
        })
    }

    /// Closes one handle; an unlinked inode nothing else holds is freed.
    pub fn release(&self, ino: u32) -> Result<()> {
        self.release_holds(ino, 1, 0)
    }

    /// Makes every change durable (one journal transaction, or a full
    /// write-back on a plain image) and flushes the device. Returns the
    /// number of home blocks written.
    pub fn sync(&self) -> Result<usize> {
        let now = (self.options.clock)();
        let _ = self.retry_reclaims();
        self.commit_requested.store(false, Ordering::SeqCst);
        self.volume.commit(now)
    }

    /// Makes inode `ino`'s data and metadata durable. Metadata is only
    /// consistent as a whole, so this commits everything that changed
    /// (which is still proportional to the change, not to the image).
    pub fn fsync(&self, ino: u32) -> Result<usize> {
        self.getattr(ino)?;
        self.volume.commit((self.options.clock)())
    }
}

/// Whether a read at `now` should refresh `inode`'s atime, as Linux's
/// relatime has it.
fn atime_is_stale(inode: &DiskInode, now: u32) -> bool {
    let stale = inode.atime <= inode.mtime
        || inode.atime <= inode.ctime
        || now.saturating_sub(inode.atime) >= RELATIME_WINDOW;
    stale && inode.atime != now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FileSystem<crate::device::MemDevice>>();
    }

    #[test]
    fn a_helper_gets_due_commits_and_urgent_ones_are_still_made() {
        use alloc::format;
        use alloc::sync::Arc;
        use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

        use crate::device::MemDevice;

        // 64 MiB: a journal of 256 blocks, so the cache (64 blocks) is what
        // makes commits due and urgent.
        let device = format(MemDevice::new(16384), &FormatOptions::new(16384)).unwrap();
        // A clock that ticks at every call, so a commit's write time is new.
        static NOW: AtomicU32 = AtomicU32::new(1_700_000_000);
        let options = MountOptions {
            cache_blocks: 64,
            clock: || NOW.fetch_add(1, Ordering::SeqCst),
            ..MountOptions::default()
        };
        let fs = FileSystem::mount(device, options).unwrap();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        fs.hand_off_commits(Some(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })));
        let new = NewInode { perm: 0o755, uid: 0, gid: 0 };
        let committed_at = fs.superblock().write_time;
        let committed = |fs: &FileSystem<MemDevice>| fs.superblock().write_time != committed_at;
        // Each directory dirties an inode-table share, its own block and
        // the root's: the transaction grows until a commit is due.
        let mut made = 0;
        while woken.load(Ordering::SeqCst) == 0 {
            fs.mkdir(ROOT_INO, format!("d{made}").as_bytes(), new).unwrap();
            made += 1;
            assert!(made < 200, "no commit came due");
        }
        assert!(!committed(&fs), "the operation that found the commit due made it");
        fs.mkdir(ROOT_INO, b"one-more", new).unwrap();
        assert_eq!(woken.load(Ordering::SeqCst), 1, "the helper is woken once until it commits");
        assert!(!committed(&fs));
        // Nobody commits: the transaction grows until it is urgent, and
        // then an operation commits it after all.
        let due_after = made;
        while !committed(&fs) {
            fs.mkdir(ROOT_INO, format!("d{made}").as_bytes(), new).unwrap();
            made += 1;
            assert!(made < 400, "an urgent commit was not made");
        }
        // Urgent at three quarters of the cache, due at half: well before
        // the journal (256 blocks) would force a commit.
        assert!(made < 2 * due_after, "commit due after {due_after} operations, made only after {made}");
        // The helper's commit, as the FUSE server's write-back thread makes it.
        fs.sync().unwrap();
        fs.hand_off_commits(None);
        let device = fs.unmount().unwrap();
        let fs = FileSystem::mount(device, options).unwrap();
        assert!(fs.lookup(ROOT_INO, format!("d{}", made - 1).as_bytes()).is_ok());
    }
}
