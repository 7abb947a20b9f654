//! The filesystem operations, with POSIX semantics and errno-mapped errors.
//!
//! [`FileSystem`] is `Send + Sync`: every operation takes `&self` and runs
//! under one lock (a kernel or a multi-threaded FUSE server may call from
//! several threads). Inode numbers are the on-disk ones; the root is 0.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::cache::{BlockCache, CacheStats};
use crate::device::BlockDevice;
use crate::dir::{check_name, DirEntry, DirIndexes};
use crate::error::{Corruption, Error, Result};
use crate::format::dirent::{is_dot_or_dotdot, MAX_NAME_LEN};
use crate::format::extension::{Extension, ExtensionError, KNOWN_INCOMPAT};
use crate::format::geometry::{Geometry, ROOT_INODE};
use crate::format::inode::{DiskInode, FileType, PERMISSION_BITS, S_IFMT};
use crate::format::superblock::{
    Superblock, BLOCKS_PER_GROUP, DEFAULT_MAX_MOUNT_COUNT, INODES_PER_GROUP, MAGIC, STATE_CLEAN,
    STATE_DIRTY,
};
use crate::format::BLOCK_SIZE;
use crate::sync::Mutex;
use crate::volume::Volume;

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
    /// `None` picks the default rule (DESIGN.md §1).
    pub inode_count: Option<u32>,
    /// Timestamp for the root directory and the extension record.
    pub time: u32,
    pub uuid: [u8; 16],
    pub label: Vec<u8>,
    /// Write the extension record; `false` makes a plain version 1 image.
    pub extension: bool,
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
    pub clock: Clock,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_blocks: DEFAULT_CACHE_BLOCKS,
            read_only: false,
            relatime: true,
            clock: system_clock,
        }
    }
}

/// What `stat` reports about an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u32,
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
        let kind = inode.file_type().ok_or(Error::corrupt(
            Corruption::BadFileType(inode.mode),
            Some(ino),
            None,
        ))?;
        let rdev = match kind {
            FileType::CharDevice | FileType::BlockDevice => inode.rdev(),
            _ => (0, 0),
        };
        Ok(Attr {
            ino,
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

struct State<D> {
    volume: Volume<D>,
    /// Open handles per inode; unlinked inodes stay allocated while open.
    open: BTreeMap<u32, u32>,
}

pub struct FileSystem<D> {
    state: Mutex<State<D>>,
    info: VolumeInfo,
    options: MountOptions,
}

/// Creates a filesystem on `device` and returns the device.
pub fn format<D: BlockDevice>(mut device: D, options: &FormatOptions) -> Result<D> {
    let inode_count = options
        .inode_count
        .unwrap_or_else(|| Geometry::default_inode_count(options.block_count, 0));
    let geometry = Geometry::new(options.block_count, inode_count).map_err(Error::BadGeometry)?;
    if device.block_count() < options.block_count {
        return Err(Error::NoSpace);
    }
    let first_data = geometry.first_data_block();
    let root_block = first_data;

    // Inode table, in runs, zeroed except for the root.
    let run_blocks = 64u32;
    let mut run = vec![0u8; run_blocks as usize * BLOCK_SIZE];
    let mut block = geometry.first_inode_table_block();
    while block < first_data {
        let count = run_blocks.min(first_data - block);
        device.write_blocks(block, &run[..count as usize * BLOCK_SIZE])?;
        block += count;
    }
    let root = DiskInode {
        mode: FileType::Directory.mode_bits() | (options.root_permissions & PERMISSION_BITS),
        uid: options.root_uid,
        gid: options.root_gid,
        size: 24,
        atime: options.time,
        ctime: options.time,
        mtime: options.time,
        links_count: 2,
        blocks: 1,
        direct: {
            let mut direct = [0; 12];
            direct[0] = root_block;
            direct
        },
        ..DiskInode::default()
    };
    let mut table_block = [0u8; BLOCK_SIZE];
    root.encode_slot(&mut table_block, 0);
    device.write_block(geometry.first_inode_table_block(), &table_block)?;

    // Bitmap: metadata blocks and the root directory block are used.
    let used_blocks = first_data + 1;
    run.fill(0);
    for bitmap_index in 0..geometry.bitmap_blocks {
        let mut bitmap = [0u8; BLOCK_SIZE];
        let base = bitmap_index * crate::format::geometry::BITS_PER_BITMAP_BLOCK;
        for bit in 0..crate::format::geometry::BITS_PER_BITMAP_BLOCK {
            if base + bit >= used_blocks {
                break;
            }
            bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
        }
        device.write_block(geometry.first_bitmap_block() + bitmap_index, &bitmap)?;
    }

    // Root directory: "." and "..", both inode 0.
    let mut dir_block = [0u8; BLOCK_SIZE];
    for (offset, name) in [(0usize, &b"."[..]), (12, b"..")] {
        let header = crate::format::dirent::DirentHeader {
            inode: ROOT_INODE,
            rec_len: 12,
            name_len: name.len() as u8,
            file_type: FileType::Directory.dirent_code(),
        };
        crate::format::dirent::write_entry(&mut dir_block, offset, header, name);
    }
    device.write_block(root_block, &dir_block)?;

    let superblock = Superblock {
        magic: MAGIC,
        block_count: options.block_count,
        inode_count,
        free_blocks: options.block_count - used_blocks,
        free_inodes: geometry.usable_inodes() - 1,
        first_data_block: first_data,
        block_size: BLOCK_SIZE as u32,
        inode_size: crate::format::inode::INODE_SIZE as u16,
        blocks_per_group: BLOCKS_PER_GROUP,
        inodes_per_group: INODES_PER_GROUP,
        mount_time: 0,
        write_time: options.time as u64,
        mount_count: 0,
        max_mount_count: DEFAULT_MAX_MOUNT_COUNT,
        state: STATE_CLEAN,
        errors: 0,
    };
    let mut block0 = [0u8; BLOCK_SIZE];
    superblock.encode_block(&mut block0);
    if options.extension {
        Extension::new(options.uuid, &options.label, options.time as u64).encode_block(&mut block0);
    }
    device.write_block(0, &block0)?;
    device.flush()?;
    Ok(device)
}

impl<D: BlockDevice> FileSystem<D> {
    /// Mounts: reads block 0 and nothing else. A read-write mount marks the
    /// image dirty (state 0) and bumps the mount count at once, so a crash
    /// is recognisable later.
    pub fn mount(mut device: D, options: MountOptions) -> Result<Self> {
        let mut block0 = [0u8; BLOCK_SIZE];
        device.read_block(0, &mut block0)?;
        let superblock = Superblock::decode_block(&block0).map_err(Error::NotBlockFs)?;
        let geometry = Geometry::from_superblock(&superblock).map_err(Error::BadGeometry)?;
        if device.block_count() < superblock.block_count {
            return Err(Error::corrupt(
                Corruption::BlockOutOfRange(device.block_count()),
                None,
                Some(superblock.block_count - 1),
            ));
        }
        let (extension, extension_problem) = match Extension::decode_block(&block0) {
            Ok(extension) => (Some(extension), None),
            Err(problem) => (None, Some(problem)),
        };
        // A newer record (another version, or incompat features we do not
        // know) describes an image this driver must not write.
        let unknown_features = extension.is_some_and(|e| e.incompat_features & !KNOWN_INCOMPAT != 0);
        let newer_record = matches!(extension_problem, Some(ExtensionError::UnsupportedVersion(_)));
        if !options.read_only && (unknown_features || newer_record) {
            return Err(Error::Unsupported);
        }
        let was_clean = superblock.state == STATE_CLEAN;
        let cache = BlockCache::new(options.cache_blocks);
        let index_budget = cache.capacity() * BLOCK_SIZE / 2;
        let mut volume = Volume::new(
            device,
            cache,
            superblock,
            extension,
            geometry,
            options.read_only,
            DirIndexes::new(index_budget),
        );
        let root = volume.read_inode(ROOT_INODE)?;
        if root.file_type() != Some(FileType::Directory) || root.is_free() {
            return Err(Error::corrupt(
                Corruption::BadFileType(root.mode),
                Some(ROOT_INODE),
                None,
            ));
        }
        if !options.read_only {
            volume.superblock.state = STATE_DIRTY;
            volume.superblock.mount_count = volume.superblock.mount_count.wrapping_add(1);
            volume.superblock.mount_time = (options.clock)() as u64;
            volume.store_superblock()?;
            volume.cache.write_back(&mut volume.device)?;
            volume.device.flush()?;
        }
        let info = VolumeInfo {
            superblock,
            geometry,
            extension,
            extension_problem,
            was_clean,
        };
        Ok(FileSystem {
            state: Mutex::new(State {
                volume,
                open: BTreeMap::new(),
            }),
            info,
            options,
        })
    }

    /// Writes everything back, marks the image clean and returns the device.
    pub fn unmount(self) -> Result<D> {
        let now = (self.options.clock)();
        let mut state = self.state.into_inner();
        let open: Vec<u32> = state.open.keys().copied().collect();
        for ino in open {
            if state.volume.orphans.contains(&ino) {
                state.free_inode(ino, now)?;
            }
        }
        if !state.volume.read_only {
            state.volume.superblock.state = STATE_CLEAN;
            state.volume.superblock_dirty = true;
            state.volume.sync(now)?;
        }
        Ok(state.volume.device)
    }

    /// Facts read at mount time (superblock as found, extension record).
    pub fn info(&self) -> VolumeInfo {
        self.info
    }

    /// The superblock as it is now in memory.
    pub fn superblock(&self) -> Superblock {
        self.state.lock().volume.superblock
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.state.lock().volume.cache.stats()
    }

    pub fn is_read_only(&self) -> bool {
        self.options.read_only
    }

    fn now(&self) -> u32 {
        (self.options.clock)()
    }

    pub fn statfs(&self) -> StatFs {
        let state = self.state.lock();
        let volume = &state.volume;
        StatFs {
            block_size: BLOCK_SIZE as u32,
            blocks: volume.geometry.block_count,
            free_blocks: volume.superblock.free_blocks,
            inodes: volume.geometry.usable_inodes(),
            free_inodes: volume.superblock.free_inodes,
            name_max: MAX_NAME_LEN as u32,
        }
    }

    pub fn getattr(&self, ino: u32) -> Result<Attr> {
        let mut state = self.state.lock();
        let inode = state.live_inode(ino)?;
        Attr::from_inode(ino, &inode)
    }

    pub fn lookup(&self, parent: u32, name: &[u8]) -> Result<Attr> {
        let mut state = self.state.lock();
        let ino = state.lookup(parent, name)?;
        let inode = state.linked_inode(ino)?;
        Attr::from_inode(ino, &inode)
    }

    /// Resolves an absolute path, following symlinks in every component
    /// but the last (and the last too when `follow_last`).
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> Result<u32> {
        let mut state = self.state.lock();
        state.resolve(path, follow_last)
    }

    pub fn setattr(&self, ino: u32, changes: &SetAttr) -> Result<Attr> {
        let now = self.now();
        let mut state = self.state.lock();
        state.setattr(ino, changes, now)
    }

    pub fn read(&self, ino: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let now = self.now();
        let relatime = self.options.relatime && !self.options.read_only;
        let mut state = self.state.lock();
        state.read(ino, offset, buf, relatime.then_some(now))
    }

    pub fn write(&self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        let now = self.now();
        let mut state = self.state.lock();
        state.write(ino, offset, data, now)
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
        if matches!(kind, FileType::Directory | FileType::Symlink) {
            return Err(Error::InvalidArgument);
        }
        let now = self.now();
        let mut state = self.state.lock();
        state.make_node(parent, name, kind, new, now, |_, _, inode| {
            if matches!(kind, FileType::CharDevice | FileType::BlockDevice) {
                inode.set_rdev(rdev.0, rdev.1);
            }
            Ok(())
        })
    }

    pub fn mkdir(&self, parent: u32, name: &[u8], new: NewInode) -> Result<Attr> {
        let now = self.now();
        let mut state = self.state.lock();
        state.mkdir(parent, name, new, now)
    }

    pub fn symlink(
        &self,
        parent: u32,
        name: &[u8],
        target: &[u8],
        uid: u16,
        gid: u16,
    ) -> Result<Attr> {
        if target.is_empty() {
            return Err(Error::NotFound);
        }
        if target.len() > MAX_SYMLINK_LEN {
            return Err(Error::NameTooLong);
        }
        let now = self.now();
        let mut state = self.state.lock();
        let new = NewInode {
            perm: 0o777,
            uid,
            gid,
        };
        state.make_node(
            parent,
            name,
            FileType::Symlink,
            new,
            now,
            |volume, ino, inode| write_data(volume, ino, inode, 0, target).map(|_| ()),
        )
    }

    pub fn readlink(&self, ino: u32) -> Result<Vec<u8>> {
        let mut state = self.state.lock();
        state.readlink(ino)
    }

    pub fn unlink(&self, parent: u32, name: &[u8]) -> Result<()> {
        let now = self.now();
        let mut state = self.state.lock();
        state.unlink(parent, name, now)
    }

    pub fn rmdir(&self, parent: u32, name: &[u8]) -> Result<()> {
        let now = self.now();
        let mut state = self.state.lock();
        state.rmdir(parent, name, now)
    }

    pub fn link(&self, ino: u32, new_parent: u32, new_name: &[u8]) -> Result<Attr> {
        let now = self.now();
        let mut state = self.state.lock();
        state.link(ino, new_parent, new_name, now)
    }

    pub fn rename(
        &self,
        parent: u32,
        name: &[u8],
        new_parent: u32,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let now = self.now();
        let mut state = self.state.lock();
        state.rename(parent, name, new_parent, new_name, flags, now)
    }

    /// Lists directory `ino` from cookie `offset` (0 = start). `visit`
    /// gets each entry and the cookie that resumes after it; it returns
    /// false to stop (the entry it refused is offered again next time).
    pub fn readdir(
        &self,
        ino: u32,
        offset: u64,
        visit: &mut dyn FnMut(&DirEntry, u64) -> bool,
    ) -> Result<()> {
        let mut state = self.state.lock();
        let inode = state.live_inode(ino)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotDir);
        }
        let from = offset.min(u32::MAX as u64) as u32;
        state.volume.list_entries(ino, &inode, from, &mut |entry| {
            let next = entry.position as u64 + 1;
            visit(&entry, next)
        })
    }

    /// Notes an open handle: an unlinked inode keeps its data until the
    /// last handle is released.
    pub fn open(&self, ino: u32) -> Result<Attr> {
        let mut state = self.state.lock();
        let inode = state.live_inode(ino)?;
        *state.open.entry(ino).or_insert(0) += 1;
        Attr::from_inode(ino, &inode)
    }

    pub fn release(&self, ino: u32) -> Result<()> {
        let now = self.now();
        let mut state = self.state.lock();
        let remaining = match state.open.get_mut(&ino) {
            Some(count) => {
                *count -= 1;
                *count
            }
            None => return Ok(()),
        };
        if remaining == 0 {
            state.open.remove(&ino);
            if state.volume.orphans.contains(&ino) {
                state.free_inode(ino, now)?;
            }
        }
        Ok(())
    }

    /// Writes back every change and flushes the device. Returns the number
    /// of blocks written.
    pub fn sync(&self) -> Result<usize> {
        let now = self.now();
        let mut state = self.state.lock();
        state.volume.sync(now)
    }

    /// Makes inode `ino`'s data and metadata durable. Without a journal,
    /// metadata is only consistent as a whole, so this syncs everything
    /// that changed (which is still proportional to the change).
    pub fn fsync(&self, ino: u32) -> Result<usize> {
        {
            let mut state = self.state.lock();
            state.live_inode(ino)?;
        }
        self.sync()
    }
}

impl<D: BlockDevice> State<D> {
    /// An inode that is in use (linked, or unlinked but still open).
    fn live_inode(&mut self, ino: u32) -> Result<DiskInode> {
        if ino >= self.volume.geometry.usable_inodes() {
            return Err(Error::NotFound);
        }
        let inode = self.volume.read_inode(ino)?;
        if inode.is_free() && !self.volume.orphans.contains(&ino) {
            return Err(Error::NotFound);
        }
        Ok(inode)
    }

    /// The target of a directory entry, which must be in use.
    fn linked_inode(&mut self, ino: u32) -> Result<DiskInode> {
        self.volume.check_inode(ino)?;
        let inode = self.volume.read_inode(ino)?;
        if inode.is_free() {
            return Err(Error::corrupt(
                Corruption::EntryToFreeInode(ino),
                Some(ino),
                None,
            ));
        }
        Ok(inode)
    }

    fn directory(&mut self, ino: u32) -> Result<DiskInode> {
        let inode = self.live_inode(ino)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotDir);
        }
        Ok(inode)
    }

    fn lookup(&mut self, parent: u32, name: &[u8]) -> Result<u32> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        let dir = self.directory(parent)?;
        let slot = self
            .volume
            .find_entry(parent, &dir, name)?
            .ok_or(Error::NotFound)?;
        self.volume.check_inode(slot.ino)?;
        Ok(slot.ino)
    }

    fn resolve(&mut self, path: &[u8], follow_last: bool) -> Result<u32> {
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

    fn readlink(&mut self, ino: u32) -> Result<Vec<u8>> {
        let inode = self.live_inode(ino)?;
        if inode.file_type() != Some(FileType::Symlink) {
            return Err(Error::InvalidArgument);
        }
        if inode.size as usize > MAX_SYMLINK_LEN {
            return Err(Error::corrupt(
                Corruption::SymlinkTooLong(inode.size),
                Some(ino),
                None,
            ));
        }
        let mut target = vec![0u8; inode.size as usize];
        let read = read_data(&mut self.volume, ino, &inode, 0, &mut target)?;
        target.truncate(read);
        Ok(target)
    }

    fn setattr(&mut self, ino: u32, changes: &SetAttr, now: u32) -> Result<Attr> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
        let mut inode = self.live_inode(ino)?;
        let kind = inode.file_type().ok_or(Error::corrupt(
            Corruption::BadFileType(inode.mode),
            Some(ino),
            None,
        ))?;
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
            truncate(&mut self.volume, ino, &mut inode, size)?;
            inode.mtime = now;
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
        Attr::from_inode(ino, &inode)
    }

    fn read(
        &mut self,
        ino: u32,
        offset: u64,
        buf: &mut [u8],
        atime_now: Option<u32>,
    ) -> Result<usize> {
        let mut inode = self.live_inode(ino)?;
        match inode.file_type() {
            Some(FileType::Directory) => return Err(Error::IsDir),
            Some(FileType::Regular) | Some(FileType::Symlink) => {}
            _ => return Err(Error::InvalidArgument),
        }
        let read = read_data(&mut self.volume, ino, &inode, offset, buf)?;
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

    fn write(&mut self, ino: u32, offset: u64, data: &[u8], now: u32) -> Result<usize> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
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
        let result = write_data(&mut self.volume, ino, &mut inode, offset, &data[..length]);
        inode.mtime = now;
        inode.ctime = now;
        // The inode is written even after a failure: blocks it gained stay
        // accounted for.
        self.volume.write_inode(ino, &inode)?;
        match result {
            Ok(written) => Ok(written),
            Err(error) => Err(error),
        }
    }

    /// Allocates an inode, lets `fill` give it content, and links it into
    /// `parent` under `name`; undoes the allocation if any step fails.
    fn make_node(
        &mut self,
        parent: u32,
        name: &[u8],
        kind: FileType,
        new: NewInode,
        now: u32,
        fill: impl FnOnce(&mut Volume<D>, u32, &mut DiskInode) -> Result<()>,
    ) -> Result<Attr> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
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
        let built = fill(&mut self.volume, ino, &mut inode)
            .and_then(|()| self.volume.write_inode(ino, &inode))
            .and_then(|()| self.volume.add_entry(parent, &mut dir, name, ino, kind));
        if let Err(error) = built {
            self.discard_inode(ino, &mut inode, now)?;
            return Err(error);
        }
        if kind == FileType::Directory {
            dir.links_count += 1;
        }
        dir.mtime = now;
        dir.ctime = now;
        self.volume.write_inode(parent, &dir)?;
        Attr::from_inode(ino, &inode)
    }

    fn mkdir(&mut self, parent: u32, name: &[u8], new: NewInode, now: u32) -> Result<Attr> {
        self.make_node(
            parent,
            name,
            FileType::Directory,
            new,
            now,
            |volume, ino, inode| volume.init_directory(ino, inode, parent),
        )
    }

    /// Frees the blocks of a half-made inode and returns it to the pool.
    fn discard_inode(&mut self, ino: u32, inode: &mut DiskInode, now: u32) -> Result<()> {
        self.volume.truncate_blocks(ino, inode, 0)?;
        *inode = DiskInode {
            dtime: now,
            ..DiskInode::default()
        };
        self.volume.write_inode(ino, inode)?;
        self.volume.release_inode(ino);
        Ok(())
    }

    /// Frees an inode whose last link is gone (and which nobody has open).
    fn free_inode(&mut self, ino: u32, now: u32) -> Result<()> {
        let mut inode = self.volume.read_inode(ino)?;
        if inode.file_type().is_some_and(FileType::has_data_blocks) {
            self.volume.truncate_blocks(ino, &mut inode, 0)?;
        }
        let mode = inode.mode;
        inode = DiskInode {
            mode,
            dtime: now,
            ..DiskInode::default()
        };
        self.volume.write_inode(ino, &inode)?;
        self.volume.orphans.remove(&ino);
        self.volume.dir_indexes.forget(ino);
        self.volume.release_inode(ino);
        Ok(())
    }

    /// Drops one link of `ino`; frees it (or defers to the last close).
    fn drop_link(&mut self, ino: u32, inode: &mut DiskInode, now: u32) -> Result<()> {
        let is_dir = inode.file_type() == Some(FileType::Directory);
        inode.links_count = if is_dir {
            0
        } else {
            inode.links_count.saturating_sub(1)
        };
        inode.ctime = now;
        self.volume.write_inode(ino, inode)?;
        if inode.links_count == 0 {
            if self.open.contains_key(&ino) {
                self.volume.orphans.insert(ino);
            } else {
                self.free_inode(ino, now)?;
            }
        }
        Ok(())
    }

    fn unlink(&mut self, parent: u32, name: &[u8], now: u32) -> Result<()> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
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

    fn rmdir(&mut self, parent: u32, name: &[u8], now: u32) -> Result<()> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
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

    fn link(&mut self, ino: u32, new_parent: u32, new_name: &[u8], now: u32) -> Result<Attr> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
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
        if self
            .volume
            .find_entry(new_parent, &dir, new_name)?
            .is_some()
        {
            return Err(Error::Exists);
        }
        let kind = inode.file_type().ok_or(Error::corrupt(
            Corruption::BadFileType(inode.mode),
            Some(ino),
            None,
        ))?;
        self.volume
            .add_entry(new_parent, &mut dir, new_name, ino, kind)?;
        dir.mtime = now;
        dir.ctime = now;
        self.volume.write_inode(new_parent, &dir)?;
        inode.links_count += 1;
        inode.ctime = now;
        self.volume.write_inode(ino, &inode)?;
        Attr::from_inode(ino, &inode)
    }

    /// Whether directory `ancestor` is `ino` or one of its ancestors.
    fn is_ancestor(&mut self, ancestor: u32, mut ino: u32) -> Result<bool> {
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

    fn rename(
        &mut self,
        parent: u32,
        name: &[u8],
        new_parent: u32,
        new_name: &[u8],
        flags: RenameFlags,
        now: u32,
    ) -> Result<()> {
        if self.volume.read_only {
            return Err(Error::ReadOnly);
        }
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
                self.volume.retarget_entry(
                    new_parent,
                    &mut new_dir,
                    new_name,
                    source,
                    source_kind,
                )?;
            }
            None => {
                self.volume
                    .add_entry(new_parent, &mut new_dir, new_name, source, source_kind)?
            }
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
            self.volume.retarget_entry(
                source,
                &mut source_inode,
                b"..",
                new_parent,
                FileType::Directory,
            )?;
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
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    for part in parts.into_iter().rev() {
        stack.push(part.to_vec());
    }
}

/// Reads file bytes at `offset`, holes as zeros, stopping at `size`.
fn read_data<D: BlockDevice>(
    volume: &mut Volume<D>,
    ino: u32,
    inode: &DiskInode,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let size = inode.size as u64;
    if offset >= size {
        return Ok(0);
    }
    let length = (buf.len() as u64).min(size - offset) as usize;
    let mut done = 0;
    while done < length {
        let position = offset + done as u64;
        let logical = position / BLOCK_SIZE as u64;
        let within = (position % BLOCK_SIZE as u64) as usize;
        let chunk = (BLOCK_SIZE - within).min(length - done);
        let target = &mut buf[done..done + chunk];
        match volume.map_block(ino, inode, logical)? {
            Some(physical) => {
                target.copy_from_slice(&volume.block(physical)?[within..within + chunk])
            }
            None => target.fill(0),
        }
        done += chunk;
    }
    Ok(length)
}

/// Writes file bytes at `offset` (the caller has bounded the length),
/// growing `size`. On running out of space part-way, returns the bytes
/// written so far if any.
fn write_data<D: BlockDevice>(
    volume: &mut Volume<D>,
    ino: u32,
    inode: &mut DiskInode,
    offset: u64,
    data: &[u8],
) -> Result<usize> {
    let mut done = 0;
    let mut previous: Option<u32> = None;
    while done < data.len() {
        let position = offset + done as u64;
        let logical = position / BLOCK_SIZE as u64;
        let within = (position % BLOCK_SIZE as u64) as usize;
        let chunk = (BLOCK_SIZE - within).min(data.len() - done);
        let goal = match previous {
            Some(block) => Some(block + 1),
            None if logical > 0 => volume.map_block(ino, inode, logical - 1)?.map(|b| b + 1),
            None => None,
        };
        let (physical, fresh) = match volume.map_or_allocate(ino, inode, logical, goal) {
            Ok(mapped) => mapped,
            Err(Error::NoSpace) if done > 0 => break,
            Err(error) => return Err(error),
        };
        let block = if fresh || chunk == BLOCK_SIZE {
            volume.block_overwrite(physical)?
        } else {
            volume.block_mut(physical)?
        };
        block[within..within + chunk].copy_from_slice(&data[done..done + chunk]);
        previous = Some(physical);
        done += chunk;
        let end = (position + chunk as u64) as u32;
        inode.size = inode.size.max(end);
    }
    Ok(done)
}

/// Sets the size, freeing blocks past it and zeroing the tail of the last
/// kept block, so a later extension reads zeros.
fn truncate<D: BlockDevice>(
    volume: &mut Volume<D>,
    ino: u32,
    inode: &mut DiskInode,
    size: u64,
) -> Result<()> {
    if size < inode.size as u64 {
        let keep = size.div_ceil(BLOCK_SIZE as u64);
        volume.truncate_blocks(ino, inode, keep)?;
        let within = (size % BLOCK_SIZE as u64) as usize;
        if within != 0 {
            if let Some(physical) = volume.map_block(ino, inode, size / BLOCK_SIZE as u64)? {
                volume.block_mut(physical)?[within..].fill(0);
            }
        }
    }
    inode.size = size as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FileSystem<crate::device::MemDevice>>();
    }
}
