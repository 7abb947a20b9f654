//! Creating archive members in a filesystem as `tar -x` creates them: the
//! one engine behind the RAM root ([`load_tar`](super::load_tar)),
//! `blockfs import` and `mkfs-blockfs --populate ARCHIVE`.
//!
//! Members land below a chosen directory at their literal path: a leading
//! `/` is dropped, a `..` component is refused, and parents are looked up
//! without following symlinks, so nothing is created outside that
//! directory. A later member of a name replaces the earlier one (a
//! directory only while empty); a listed directory that exists already is
//! updated; a hard link links to what the name it gives holds now;
//! directories get their times last, since adding entries changes them;
//! `./` describes the extraction directory itself.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::error::Error;
use crate::format::inode::FileType;
use crate::format::BLOCK_SIZE;
use crate::fs::{Attr, FileSystem, NewInode, SetAttr, MAX_FILE_SIZE, MAX_SYMLINK_LEN};

use super::error::LoadError;
use super::path::{components, normalize, split_last};
use super::tar::{Device, Entry, EntryKind, Event};

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

/// What to do when one member cannot be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMemberError {
    /// Stop: [`Extractor::apply`] returns the error.
    Abort,
    /// Leave the member out, record it as [`Skipped`] and go on. Errors
    /// that no later member would escape still stop the extraction: see
    /// [`LoadError::is_fatal`].
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractOptions {
    pub large_ids: LargeIds,
    /// Latest time to store (SOURCE_DATE_EPOCH): later member times are
    /// clamped to it.
    pub latest_time: Option<u32>,
    pub on_member_error: OnMemberError,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            large_ids: LargeIds::Reject,
            latest_time: None,
            on_member_error: OnMemberError::Abort,
        }
    }
}

/// A member that was not created. Members of types this engine does not
/// create (GNU sparse files, volume labels, vendor types) are reported
/// here whatever the [`OnMemberError`]; others only under
/// [`OnMemberError::Skip`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where it would have been created, relative to the extraction
    /// directory and [`normalize`]d; `None` when its own path was refused.
    pub path: Option<Vec<u8>>,
    /// Why; it names the member as stored in the archive.
    pub error: LoadError,
}

/// Creates an archive's members, from its events, in directory `root` of
/// a mounted filesystem. Feed it every event in order, then call
/// [`finish`](Extractor::finish), which sets the directories' times.
#[derive(Debug)]
pub struct Extractor<'a, D: BlockDevice> {
    fs: &'a FileSystem<D>,
    members: Members,
}

impl<'a, D: BlockDevice> Extractor<'a, D> {
    /// `root` must be a directory of `fs`.
    pub fn new(fs: &'a FileSystem<D>, root: u32, options: ExtractOptions) -> Self {
        Extractor { fs, members: Members::new(root, options) }
    }

    pub fn apply(&mut self, event: Event<'_>) -> Result<(), LoadError> {
        self.members.apply(self.fs, event)
    }

    /// The members skipped since the last call.
    pub fn take_skipped(&mut self) -> Vec<Skipped> {
        core::mem::take(&mut self.members.skipped)
    }

    /// Stops before the archive's end (its reader was interrupted, say):
    /// removes the file whose data was still arriving, so no member is
    /// left half written. Directory times are left as they are.
    pub fn abandon(mut self) -> Result<(), LoadError> {
        let Pending::File(file) = core::mem::replace(&mut self.members.pending, Pending::Nothing) else {
            return Ok(());
        };
        let normal = normalize(&file.path)?;
        let (parent, name) = split_last(&normal);
        let found = self.members.find(self.fs, parent).map_err(at(&file.path))?;
        match found {
            Some(dir) => self.fs.unlink(dir.ino, name).map_err(at(&file.path)),
            None => Ok(()),
        }
    }

    /// Checks the last file got all its data and sets the directories'
    /// times. Returns the members skipped since the last
    /// [`take_skipped`](Extractor::take_skipped).
    pub fn finish(mut self) -> Result<Vec<Skipped>, LoadError> {
        self.members.finish(self.fs)?;
        Ok(self.members.skipped)
    }
}

/// The engine's state, apart from the filesystem it works on, so that a
/// caller may own the filesystem ([`Loader`](super::Loader)) or borrow it
/// ([`Extractor`]).
#[derive(Debug)]
pub(super) struct Members {
    root: u32,
    options: ExtractOptions,
    pending: Pending,
    /// Directory mtimes by path below the root, set last.
    directory_times: BTreeMap<Vec<u8>, u32>,
    skipped: Vec<Skipped>,
}

/// What the next data events are for.
#[derive(Debug)]
enum Pending {
    Nothing,
    File(OpenFile),
    /// The data of a skipped member.
    Discard,
}

#[derive(Debug)]
struct OpenFile {
    ino: u32,
    /// As stored in the archive, for errors.
    path: Vec<u8>,
    written: u64,
    size: u64,
    mtime: u32,
}

impl Members {
    pub(super) fn new(root: u32, options: ExtractOptions) -> Self {
        Members {
            root,
            options,
            pending: Pending::Nothing,
            directory_times: BTreeMap::new(),
            skipped: Vec::new(),
        }
    }

    pub(super) fn clear_skipped(&mut self) {
        self.skipped.clear();
    }

    pub(super) fn apply<D: BlockDevice>(
        &mut self,
        fs: &FileSystem<D>,
        event: Event<'_>,
    ) -> Result<(), LoadError> {
        match event {
            Event::Entry(entry) => self.entry(fs, entry),
            Event::Data(bytes) => self.data(fs, bytes),
            Event::Hole(length) => self.hole(fs, length),
            Event::Skipped { typeflag, path, .. } => {
                self.end_member()?;
                let normal = normalize(&path).ok();
                self.skipped
                    .push(Skipped { path: normal, error: LoadError::UnsupportedType { path, typeflag } });
                Ok(())
            }
            Event::End => Ok(()),
        }
    }

    pub(super) fn finish<D: BlockDevice>(&mut self, fs: &FileSystem<D>) -> Result<(), LoadError> {
        self.end_member()?;
        for (path, &mtime) in &self.directory_times {
            // A directory replaced by a later non-directory keeps that
            // member's time.
            let found = self.find(fs, path).map_err(at(path))?;
            if let Some(directory) = found.filter(|attr| attr.kind == FileType::Directory) {
                set_times(fs, directory.ino, mtime).map_err(at(path))?;
            }
        }
        Ok(())
    }

    /// A new member begins: the last one must have had all its data.
    fn end_member(&mut self) -> Result<(), LoadError> {
        match core::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::File(file) => Err(LoadError::IncompleteFile { path: file.path }),
            Pending::Nothing | Pending::Discard => Ok(()),
        }
    }

    fn entry<D: BlockDevice>(&mut self, fs: &FileSystem<D>, entry: Entry) -> Result<(), LoadError> {
        self.end_member()?;
        let data = entry.size;
        let path = match normalize(&entry.path) {
            Ok(path) => path,
            Err(error) => return self.failed(None, error, data),
        };
        match self.create(fs, entry, &path) {
            Ok(()) => Ok(()),
            Err(error) => self.failed(Some(path), error, data),
        }
    }

    /// A member could not be made: the end, or a skip whose `data` bytes
    /// are passed over.
    fn failed(&mut self, path: Option<Vec<u8>>, error: LoadError, data: u64) -> Result<(), LoadError> {
        if self.options.on_member_error == OnMemberError::Abort || error.is_fatal() {
            return Err(error);
        }
        if data > 0 {
            self.pending = Pending::Discard;
        }
        self.skipped.push(Skipped { path, error });
        Ok(())
    }

    fn create<D: BlockDevice>(
        &mut self,
        fs: &FileSystem<D>,
        entry: Entry,
        path: &[u8],
    ) -> Result<(), LoadError> {
        check_limits(&entry)?;
        let stored = &entry.path;
        let owner =
            NewInode { perm: entry.mode, uid: self.id(entry.uid, stored)?, gid: self.id(entry.gid, stored)? };
        let mtime = self.time(entry.mtime);
        if path.is_empty() {
            return self.root(fs, &entry, owner, mtime);
        }
        let (parent_path, name) = split_last(path);
        let parent = self.make_parents(fs, parent_path).map_err(at(stored))?;
        let made = match &entry.kind {
            EntryKind::Directory => {
                return self.directory(fs, parent, name, owner, path, mtime).map_err(at(stored))
            }
            EntryKind::HardLink(target) => return self.hard_link(fs, parent, name, target, stored),
            EntryKind::Symlink(target) => {
                replace(fs, parent, name, |fs| fs.symlink(parent, name, target, owner.uid, owner.gid))
            }
            EntryKind::Regular => make_node(fs, parent, name, FileType::Regular, owner, (0, 0)),
            EntryKind::CharDevice(device) => {
                make_node(fs, parent, name, FileType::CharDevice, owner, device_number(*device, stored)?)
            }
            EntryKind::BlockDevice(device) => {
                make_node(fs, parent, name, FileType::BlockDevice, owner, device_number(*device, stored)?)
            }
            EntryKind::Fifo => make_node(fs, parent, name, FileType::Fifo, owner, (0, 0)),
        };
        let ino = made.map_err(at(stored))?;
        if entry.size == 0 {
            return set_times(fs, ino, mtime).map_err(at(stored));
        }
        self.pending = Pending::File(OpenFile { ino, path: entry.path, written: 0, size: entry.size, mtime });
        Ok(())
    }

    /// The file's next bytes. Whole zero blocks are not written: they
    /// stay holes, as in the file the archive was made from.
    fn data<D: BlockDevice>(&mut self, fs: &FileSystem<D>, bytes: &[u8]) -> Result<(), LoadError> {
        let Some(mut file) = self.take_pending()? else {
            return Ok(());
        };
        let mut done = 0;
        while done < bytes.len() {
            let position = file.written + done as u64;
            let block_end = (position / BLOCK_SIZE as u64 + 1) * BLOCK_SIZE as u64;
            let end = ((block_end - file.written) as usize).min(bytes.len());
            let chunk = &bytes[done..end];
            let whole_block = position % BLOCK_SIZE as u64 == 0 && chunk.len() == BLOCK_SIZE;
            if !(whole_block && chunk.iter().all(|&b| b == 0)) {
                let written = fs.write(file.ino, position, chunk).map_err(at(&file.path))?;
                if written < chunk.len() {
                    // The library writes short only when the image is full.
                    return Err(at(&file.path)(Error::NoSpace));
                }
            }
            done = end;
        }
        file.written += bytes.len() as u64;
        self.file_advanced(fs, file)
    }

    /// A hole of a sparse member: nothing is written.
    fn hole<D: BlockDevice>(&mut self, fs: &FileSystem<D>, length: u64) -> Result<(), LoadError> {
        let Some(mut file) = self.take_pending()? else {
            return Ok(());
        };
        file.written += length;
        self.file_advanced(fs, file)
    }

    /// The file data is going to, or `None` while a skipped member's
    /// data passes.
    fn take_pending(&mut self) -> Result<Option<OpenFile>, LoadError> {
        match core::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::File(file) => Ok(Some(file)),
            Pending::Discard => {
                self.pending = Pending::Discard;
                Ok(None)
            }
            Pending::Nothing => Err(LoadError::StrayData),
        }
    }

    /// Keeps the file pending until all its data has come; then sets its
    /// size (a trailing hole writes nothing) and the archive's mtime
    /// (writing set it to now).
    fn file_advanced<D: BlockDevice>(&mut self, fs: &FileSystem<D>, file: OpenFile) -> Result<(), LoadError> {
        if file.written < file.size {
            self.pending = Pending::File(file);
            return Ok(());
        }
        let sized = SetAttr { size: Some(file.size), ..SetAttr::default() };
        fs.setattr(file.ino, &sized).map_err(at(&file.path))?;
        set_times(fs, file.ino, file.mtime).map_err(at(&file.path))
    }

    /// `./` in the archive: the extraction directory's owner, mode and time.
    fn root<D: BlockDevice>(
        &mut self,
        fs: &FileSystem<D>,
        entry: &Entry,
        owner: NewInode,
        mtime: u32,
    ) -> Result<(), LoadError> {
        if entry.kind != EntryKind::Directory {
            return Err(at(&entry.path)(Error::IsDir));
        }
        set_owner(fs, self.root, owner).map_err(at(&entry.path))?;
        self.directory_times.insert(Vec::new(), mtime);
        Ok(())
    }

    /// A listed directory updates one already there (as tar does), and
    /// replaces anything else. Its time is set at the end.
    fn directory<D: BlockDevice>(
        &mut self,
        fs: &FileSystem<D>,
        parent: u32,
        name: &[u8],
        owner: NewInode,
        path: &[u8],
        mtime: u32,
    ) -> Result<(), Error> {
        match fs.lookup(parent, name) {
            Ok(existing) if existing.kind == FileType::Directory => set_owner(fs, existing.ino, owner)?,
            Ok(_) | Err(Error::NotFound) => {
                replace(fs, parent, name, |fs| fs.mkdir(parent, name, owner))?;
            }
            Err(error) => return Err(error),
        }
        self.directory_times.insert(path.to_vec(), mtime);
        Ok(())
    }

    /// Links to the inode now at `target`: like tar, the latest member of
    /// that name, found without following symlinks.
    fn hard_link<D: BlockDevice>(
        &self,
        fs: &FileSystem<D>,
        parent: u32,
        name: &[u8],
        target: &[u8],
        stored: &[u8],
    ) -> Result<(), LoadError> {
        let missing = || LoadError::HardLinkTargetMissing { path: stored.to_vec(), target: target.to_vec() };
        let linked = self.find(fs, &normalize(target)?).map_err(at(stored))?.ok_or_else(missing)?;
        if fs.lookup(parent, name).is_ok_and(|existing| existing.ino == linked.ino) {
            return Ok(());
        }
        replace(fs, parent, name, |fs| fs.link(linked.ino, parent, name)).map(drop).map_err(at(stored))
    }

    /// The directory at `parent` (normalized) below the root, creating
    /// what is missing. Symlinks are not followed: members land at their
    /// literal path.
    fn make_parents<D: BlockDevice>(&self, fs: &FileSystem<D>, parent: &[u8]) -> Result<u32, Error> {
        let mut ino = self.root;
        for name in components(parent) {
            ino = match fs.lookup(ino, name) {
                Ok(found) if found.kind == FileType::Directory => found.ino,
                Ok(_) => return Err(Error::NotDir),
                Err(Error::NotFound) => fs.mkdir(ino, name, IMPLIED_DIRECTORY)?.ino,
                Err(error) => return Err(error),
            };
        }
        Ok(ino)
    }

    /// What a normalized path below the root names, without following
    /// symlinks.
    fn find<D: BlockDevice>(&self, fs: &FileSystem<D>, path: &[u8]) -> Result<Option<Attr>, Error> {
        let mut attr = fs.getattr(self.root)?;
        for name in components(path) {
            attr = match fs.lookup(attr.ino, name) {
                Ok(found) => found,
                Err(Error::NotFound | Error::NotDir) => return Ok(None),
                Err(error) => return Err(error),
            };
        }
        Ok(Some(attr))
    }

    fn id(&self, id: u64, path: &[u8]) -> Result<u16, LoadError> {
        match (u16::try_from(id), self.options.large_ids) {
            (Ok(id), _) => Ok(id),
            (Err(_), LargeIds::SquashTo(squashed)) => Ok(squashed),
            (Err(_), LargeIds::Reject) => Err(LoadError::IdTooLarge { path: path.to_vec(), id }),
        }
    }

    /// Inodes keep unsigned 32-bit seconds: earlier times become the
    /// epoch, later ones the last second of 2106 (or the latest time
    /// allowed).
    fn time(&self, seconds: i64) -> u32 {
        let stored = seconds.clamp(0, u32::MAX as i64) as u32;
        self.options.latest_time.map_or(stored, |latest| stored.min(latest))
    }
}

/// Refuses what BlockFS cannot hold before anything is made for it.
pub(super) fn check_limits(entry: &Entry) -> Result<(), LoadError> {
    match &entry.kind {
        EntryKind::Regular if entry.size > MAX_FILE_SIZE => {
            Err(LoadError::FileTooBig { path: entry.path.clone(), size: entry.size })
        }
        EntryKind::Symlink(target) if target.len() > MAX_SYMLINK_LEN => {
            Err(LoadError::SymlinkTargetTooLong { path: entry.path.clone(), len: target.len() })
        }
        _ => Ok(()),
    }
}

fn make_node<D: BlockDevice>(
    fs: &FileSystem<D>,
    parent: u32,
    name: &[u8],
    kind: FileType,
    owner: NewInode,
    rdev: (u32, u32),
) -> Result<u32, Error> {
    replace(fs, parent, name, |fs| fs.mknod(parent, name, kind, owner, rdev))
}

/// Removes whatever `name` holds (a later member of a name replaces the
/// earlier one; a directory only when empty, as tar does), then makes the
/// new one. Returns its inode.
fn replace<D: BlockDevice>(
    fs: &FileSystem<D>,
    parent: u32,
    name: &[u8],
    make: impl FnOnce(&FileSystem<D>) -> Result<Attr, Error>,
) -> Result<u32, Error> {
    match fs.lookup(parent, name) {
        Ok(existing) if existing.kind == FileType::Directory => fs.rmdir(parent, name)?,
        Ok(_) => fs.unlink(parent, name)?,
        Err(Error::NotFound) => {}
        Err(error) => return Err(error),
    }
    make(fs).map(|attr| attr.ino)
}

fn set_owner<D: BlockDevice>(fs: &FileSystem<D>, ino: u32, owner: NewInode) -> Result<(), Error> {
    let changes = SetAttr {
        perm: Some(owner.perm),
        uid: Some(owner.uid.into()),
        gid: Some(owner.gid.into()),
        ..SetAttr::default()
    };
    fs.setattr(ino, &changes).map(drop)
}

/// Archives keep one time; access time starts equal to it.
fn set_times<D: BlockDevice>(fs: &FileSystem<D>, ino: u32, mtime: u32) -> Result<(), Error> {
    let times = SetAttr { atime: Some(mtime), mtime: Some(mtime), ..SetAttr::default() };
    fs.setattr(ino, &times).map(drop)
}

/// Attributes a library error to the member at `path`.
fn at(path: &[u8]) -> impl Fn(Error) -> LoadError + '_ {
    move |error| LoadError::Filesystem { path: path.to_vec(), error }
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
