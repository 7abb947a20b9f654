//! Building the volatile root: a RAM BlockFS sized by a [`Plan`], with
//! every archive member created as tar extraction creates it. The result
//! is an ordinary writable filesystem whose changes vanish with it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::device::MemDevice;
use crate::error::Error;
use crate::format::inode::FileType;
use crate::fs::{format, Attr, FileSystem, FormatOptions, MountOptions, NewInode, SetAttr, ROOT_INO};

use super::error::LoadError;
use super::path::{components, normalize, split_last};
use super::plan::Plan;
use super::tar::{events, Device, Entry, EntryKind, Event};

/// Default limit on the RAM image: 1 GiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 1 << 30;
/// The device is RAM already; the cache only batches metadata updates.
const RAM_CACHE_BLOCKS: usize = 1024;
/// The device numbers an inode can encode (ext2's 32-bit form).
const MAX_MAJOR: u32 = 0xfff;
const MAX_MINOR: u32 = 0xf_ffff;
/// Directories a member's path implies but the archive does not list.
const IMPLIED_DIRECTORY: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };

/// What to do with a uid or gid above 65535 (inodes keep 16 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeIds {
    Reject,
    /// Map it to this id (65534, "nobody", is customary).
    SquashTo(u16),
}

#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// How the RAM image is mounted; its clock also dates the image and
    /// the directories the archive implies.
    pub mount: MountOptions,
    /// Largest RAM image to build. Slack is trimmed to fit; contents that
    /// do not fit are refused.
    pub max_image_bytes: u64,
    pub large_ids: LargeIds,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mount: MountOptions { cache_blocks: RAM_CACHE_BLOCKS, ..MountOptions::default() },
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            large_ids: LargeIds::Reject,
        }
    }
}

/// Builds a RAM filesystem from an archive held in memory: one pass to
/// size the image, one to fill it.
pub fn load_tar(archive: &[u8], options: &LoadOptions) -> Result<FileSystem<MemDevice>, LoadError> {
    let mut plan = Plan::new();
    for event in events(archive) {
        plan.note(&event?)?;
    }
    let mut loader = Loader::new(&plan, options)?;
    for event in events(archive) {
        loader.apply(event?)?;
    }
    loader.finish()
}

/// Creates the members of an archive from its events, for callers that
/// stream the archive: a first pass feeds a [`Plan`], a second this.
pub struct Loader {
    fs: FileSystem<MemDevice>,
    large_ids: LargeIds,
    /// The regular file whose data events are arriving.
    current: Option<OpenFile>,
    /// Directory mtimes by path, set last: adding children changes them.
    directory_times: BTreeMap<Vec<u8>, u32>,
}

struct OpenFile {
    ino: u32,
    /// As stored in the archive, for errors.
    path: Vec<u8>,
    written: u64,
    size: u64,
    mtime: u32,
}

impl Loader {
    /// Formats and mounts a RAM image sized by `plan`.
    pub fn new(plan: &Plan, options: &LoadOptions) -> Result<Self, LoadError> {
        let layout = plan.layout(options.max_image_bytes)?;
        let mut format_options = FormatOptions::new(layout.block_count);
        format_options.inode_count = Some(layout.inode_count);
        // Nothing survives a crash of a RAM image, so nothing needs a journal.
        format_options.journal = false;
        format_options.time = (options.mount.clock)();
        let device = format(MemDevice::new(layout.block_count), &format_options).map_err(LoadError::Image)?;
        let fs = FileSystem::mount(device, options.mount).map_err(LoadError::Image)?;
        Ok(Loader { fs, large_ids: options.large_ids, current: None, directory_times: BTreeMap::new() })
    }

    pub fn apply(&mut self, event: Event<'_>) -> Result<(), LoadError> {
        match event {
            Event::Entry(entry) => self.entry(entry),
            Event::Data(bytes) => self.data(bytes),
            Event::Skipped { .. } | Event::End => Ok(()),
        }
    }

    /// Sets the directories' times and hands over the filesystem.
    pub fn finish(self) -> Result<FileSystem<MemDevice>, LoadError> {
        if let Some(file) = self.current {
            return Err(LoadError::IncompleteFile { path: file.path });
        }
        for (path, &mtime) in &self.directory_times {
            // A directory replaced by a later non-directory keeps that
            // member's time.
            let found = self.find(path).map_err(at(path))?;
            if let Some(directory) = found.filter(|attr| attr.kind == FileType::Directory) {
                self.set_times(directory.ino, mtime).map_err(at(path))?;
            }
        }
        Ok(self.fs)
    }

    fn entry(&mut self, entry: Entry) -> Result<(), LoadError> {
        if let Some(file) = self.current.take() {
            return Err(LoadError::IncompleteFile { path: file.path });
        }
        let path = normalize(&entry.path)?;
        let owner = NewInode {
            perm: entry.mode,
            uid: self.id(entry.uid, &entry.path)?,
            gid: self.id(entry.gid, &entry.path)?,
        };
        let mtime = inode_time(entry.mtime);
        if path.is_empty() {
            return self.root(&entry, owner, mtime);
        }
        let stored = &entry.path;
        let (parent_path, name) = split_last(&path);
        let parent = self.make_parents(parent_path).map_err(at(stored))?;
        let made = match &entry.kind {
            EntryKind::Directory => {
                return self.directory(parent, name, owner, &path, mtime).map_err(at(stored))
            }
            EntryKind::HardLink(target) => return self.hard_link(parent, name, target, stored),
            EntryKind::Symlink(target) => {
                self.replace(parent, name, |fs| fs.symlink(parent, name, target, owner.uid, owner.gid))
            }
            EntryKind::Regular => self.make_node(parent, name, FileType::Regular, owner, (0, 0)),
            EntryKind::CharDevice(device) => {
                self.make_node(parent, name, FileType::CharDevice, owner, device_number(*device, stored)?)
            }
            EntryKind::BlockDevice(device) => {
                self.make_node(parent, name, FileType::BlockDevice, owner, device_number(*device, stored)?)
            }
            EntryKind::Fifo => self.make_node(parent, name, FileType::Fifo, owner, (0, 0)),
        };
        let ino = made.map_err(at(stored))?;
        if entry.size == 0 {
            return self.set_times(ino, mtime).map_err(at(stored));
        }
        self.current = Some(OpenFile { ino, path: entry.path, written: 0, size: entry.size, mtime });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        let mut file = self.current.take().ok_or(LoadError::StrayData)?;
        let written = self.fs.write(file.ino, file.written, bytes).map_err(at(&file.path))?;
        if written < bytes.len() {
            // The library writes short only when the image is full.
            return Err(at(&file.path)(Error::NoSpace));
        }
        file.written += written as u64;
        if file.written < file.size {
            self.current = Some(file);
            return Ok(());
        }
        // Writing set the mtime to now; the archive's comes last.
        self.set_times(file.ino, file.mtime).map_err(at(&file.path))
    }

    /// `./` in the archive: the root's owner, mode and time.
    fn root(&mut self, entry: &Entry, owner: NewInode, mtime: u32) -> Result<(), LoadError> {
        if entry.kind != EntryKind::Directory {
            return Err(at(&entry.path)(Error::IsDir));
        }
        self.set_owner(ROOT_INO, owner).map_err(at(&entry.path))?;
        self.directory_times.insert(Vec::new(), mtime);
        Ok(())
    }

    /// A listed directory updates one already there (as tar does), and
    /// replaces anything else. Its time is set at the end.
    fn directory(
        &mut self,
        parent: u32,
        name: &[u8],
        owner: NewInode,
        path: &[u8],
        mtime: u32,
    ) -> Result<(), Error> {
        match self.fs.lookup(parent, name) {
            Ok(existing) if existing.kind == FileType::Directory => self.set_owner(existing.ino, owner)?,
            Ok(_) | Err(Error::NotFound) => {
                self.replace(parent, name, |fs| fs.mkdir(parent, name, owner))?;
            }
            Err(error) => return Err(error),
        }
        self.directory_times.insert(path.to_vec(), mtime);
        Ok(())
    }

    /// Links to the inode now at `target`: like tar, the latest member of
    /// that name, found without following symlinks.
    fn hard_link(&mut self, parent: u32, name: &[u8], target: &[u8], stored: &[u8]) -> Result<(), LoadError> {
        let missing = || LoadError::HardLinkTargetMissing { path: stored.to_vec(), target: target.to_vec() };
        let linked = self.find(&normalize(target)?).map_err(at(stored))?.ok_or_else(missing)?;
        if self.fs.lookup(parent, name).is_ok_and(|existing| existing.ino == linked.ino) {
            return Ok(());
        }
        self.replace(parent, name, |fs| fs.link(linked.ino, parent, name)).map(drop).map_err(at(stored))
    }

    fn make_node(
        &mut self,
        parent: u32,
        name: &[u8],
        kind: FileType,
        owner: NewInode,
        rdev: (u32, u32),
    ) -> Result<u32, Error> {
        self.replace(parent, name, |fs| fs.mknod(parent, name, kind, owner, rdev))
    }

    /// Removes whatever `name` holds (a later member of a name replaces
    /// the earlier one; a directory only when empty), then makes the new
    /// one. Returns its inode.
    fn replace(
        &mut self,
        parent: u32,
        name: &[u8],
        make: impl FnOnce(&FileSystem<MemDevice>) -> Result<Attr, Error>,
    ) -> Result<u32, Error> {
        match self.fs.lookup(parent, name) {
            Ok(existing) if existing.kind == FileType::Directory => self.fs.rmdir(parent, name)?,
            Ok(_) => self.fs.unlink(parent, name)?,
            Err(Error::NotFound) => {}
            Err(error) => return Err(error),
        }
        make(&self.fs).map(|attr| attr.ino)
    }

    /// The directory at `parent` (normalized), creating what is missing.
    /// Symlinks are not followed: members land at their literal path.
    fn make_parents(&mut self, parent: &[u8]) -> Result<u32, Error> {
        let mut ino = ROOT_INO;
        for name in components(parent) {
            ino = match self.fs.lookup(ino, name) {
                Ok(found) if found.kind == FileType::Directory => found.ino,
                Ok(_) => return Err(Error::NotDir),
                Err(Error::NotFound) => self.fs.mkdir(ino, name, IMPLIED_DIRECTORY)?.ino,
                Err(error) => return Err(error),
            };
        }
        Ok(ino)
    }

    /// What a normalized path names, without following symlinks.
    fn find(&self, path: &[u8]) -> Result<Option<Attr>, Error> {
        let mut attr = self.fs.getattr(ROOT_INO)?;
        for name in components(path) {
            attr = match self.fs.lookup(attr.ino, name) {
                Ok(found) => found,
                Err(Error::NotFound | Error::NotDir) => return Ok(None),
                Err(error) => return Err(error),
            };
        }
        Ok(Some(attr))
    }

    fn set_owner(&self, ino: u32, owner: NewInode) -> Result<(), Error> {
        let changes = SetAttr {
            perm: Some(owner.perm),
            uid: Some(owner.uid.into()),
            gid: Some(owner.gid.into()),
            ..SetAttr::default()
        };
        self.fs.setattr(ino, &changes).map(drop)
    }

    /// Archives keep one time; access time starts equal to it.
    fn set_times(&self, ino: u32, mtime: u32) -> Result<(), Error> {
        let times = SetAttr { atime: Some(mtime), mtime: Some(mtime), ..SetAttr::default() };
        self.fs.setattr(ino, &times).map(drop)
    }

    fn id(&self, id: u64, path: &[u8]) -> Result<u16, LoadError> {
        match (u16::try_from(id), self.large_ids) {
            (Ok(id), _) => Ok(id),
            (Err(_), LargeIds::SquashTo(squashed)) => Ok(squashed),
            (Err(_), LargeIds::Reject) => Err(LoadError::IdTooLarge { path: path.to_vec(), id }),
        }
    }
}

/// Attributes a library error to the member at `path`.
fn at(path: &[u8]) -> impl Fn(Error) -> LoadError + '_ {
    move |error| LoadError::Filesystem { path: path.to_vec(), error }
}

/// Inodes keep unsigned 32-bit seconds: earlier times become the epoch,
/// later ones the last second of 2106.
fn inode_time(seconds: i64) -> u32 {
    seconds.clamp(0, u32::MAX as i64) as u32
}

fn device_number(device: Device, path: &[u8]) -> Result<(u32, u32), LoadError> {
    if device.major > MAX_MAJOR || device.minor > MAX_MINOR {
        return Err(LoadError::DeviceNumberTooLarge {
            path: path.to_vec(),
            major: device.major,
            minor: device.minor,
        });
    }
    Ok((device.major, device.minor))
}
