//! Copies a scanned host tree into a mounted filesystem, through the same
//! operations any user of the library has: mkdir, mknod, symlink, link,
//! write, setattr and rename. `mkfs-blockfs --populate` fills a fresh
//! image ([`populate`]); `blockfs put` copies into a live one
//! ([`copy_into`]), where names may exist already.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use blockfs::fs::{NewInode, RenameFlags};
use blockfs::{Attr, BlockDevice, FileSystem, FileType, SetAttr, ROOT_INO};

use crate::host::sparse;
use crate::host::tree::{Entry, HostInode, HostKind, HostSources, HostTree};
use crate::interrupt;
use crate::progress::Progress;

/// Bytes read from the host and written to the image per call.
const COPY_CHUNK: usize = 1 << 20;

#[derive(Debug)]
pub enum CopyFailure {
    Host(io::Error),
    Image(blockfs::Error),
    /// The host file got shorter between the scan and the copy.
    Shrank {
        expected: u64,
        found: u64,
    },
    /// A non-directory would replace a directory in the image.
    ReplacesDirectory,
    /// A directory would replace a non-directory in the image.
    DirectoryReplaces,
}

/// A failure while copying, with the host path being copied and the
/// image path it was being copied to.
#[derive(Debug)]
pub struct PopulateError {
    pub path: PathBuf,
    pub image_path: Vec<u8>,
    pub failure: CopyFailure,
}

impl fmt::Display for CopyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyFailure::Host(error) => write!(f, "{error}"),
            CopyFailure::Image(error) => write!(f, "cannot store in the image: {error}"),
            CopyFailure::Shrank { expected, found } => {
                write!(f, "changed while copying ({expected} bytes when scanned, {found} now)")
            }
            CopyFailure::ReplacesDirectory => write!(f, "cannot overwrite directory with non-directory"),
            CopyFailure::DirectoryReplaces => write!(f, "cannot overwrite non-directory with directory"),
        }
    }
}

impl fmt::Display for PopulateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.failure)
    }
}

impl std::error::Error for PopulateError {}

/// Copies everything under `tree.root` into the root of `fs`. The root's
/// own mode and owner were given to format(); its times are set last.
pub fn populate<D: BlockDevice>(
    fs: &FileSystem<D>,
    tree: &HostTree,
    progress: &mut Progress,
) -> Result<(), PopulateError> {
    let mut copier = Copier::new(fs, &tree.inodes, None, b"", progress);
    copier.image_inos[tree.root.inode] = Some(ROOT_INO);
    copier.copy_directory(&tree.root, ROOT_INO)
}

/// Copies `sources` into directory `parent` (at `parent_path`) as `cp -a`
/// would: an existing directory takes the source directory's mode, owner
/// and times and gets its entries merged in; any other existing object is
/// replaced whole, the copy built under a temporary name and renamed over
/// it (so a failure leaves the old one). Replacing a directory with a
/// non-directory, or the reverse, is refused.
pub fn copy_into<D: BlockDevice>(
    fs: &FileSystem<D>,
    sources: &HostSources,
    parent: u32,
    parent_path: &[u8],
    progress: &mut Progress,
) -> Result<(), PopulateError> {
    let staging = format!(".blockfs-put-{}", std::process::id()).into_bytes();
    let mut copier = Copier::new(fs, &sources.inodes, Some(staging), parent_path, progress);
    sources.entries.iter().try_for_each(|entry| copier.copy_entry(entry, parent))
}

struct Copier<'a, D> {
    fs: &'a FileSystem<D>,
    inodes: &'a [HostInode],
    /// Image inode of each host inode once created: hard links reuse it.
    image_inos: Vec<Option<u32>>,
    /// Copying into a live image: the temporary name a replacement is
    /// built under. `None` for a fresh image, where no name exists yet
    /// and none is looked up.
    staging: Option<Vec<u8>>,
    /// Image path of the entry being copied, for messages.
    image_path: Vec<u8>,
    buffer: Vec<u8>,
    progress: &'a mut Progress,
}

impl From<io::Error> for CopyFailure {
    fn from(error: io::Error) -> Self {
        CopyFailure::Host(error)
    }
}

impl From<blockfs::Error> for CopyFailure {
    fn from(error: blockfs::Error) -> Self {
        CopyFailure::Image(error)
    }
}

impl<'a, D: BlockDevice> Copier<'a, D> {
    fn new(
        fs: &'a FileSystem<D>,
        inodes: &'a [HostInode],
        staging: Option<Vec<u8>>,
        parent_path: &[u8],
        progress: &'a mut Progress,
    ) -> Self {
        // Kept without a trailing `/`, so that appending `/name` works for the root too.
        let image_path = parent_path.strip_suffix(b"/").unwrap_or(parent_path).to_vec();
        let image_inos = vec![None; inodes.len()];
        Copier { fs, inodes, image_inos, staging, image_path, buffer: vec![0; COPY_CHUNK], progress }
    }

    /// Attaches the host path and the current image path to a failure.
    fn at<T>(&self, path: &Path, result: Result<T, impl Into<CopyFailure>>) -> Result<T, PopulateError> {
        result.map_err(|failure| PopulateError {
            path: path.to_owned(),
            image_path: self.image_path.clone(),
            failure: failure.into(),
        })
    }

    /// Copies a directory's children, then sets its times: adding the
    /// children changed its mtime, so the host's must come after.
    fn copy_directory(&mut self, dir: &Entry, dir_ino: u32) -> Result<(), PopulateError> {
        for child in &dir.children {
            self.copy_entry(child, dir_ino)?;
        }
        self.set_times(dir.inode, dir_ino)
    }

    fn copy_entry(&mut self, entry: &Entry, parent: u32) -> Result<(), PopulateError> {
        self.at(&self.inodes[entry.inode].path, interrupt::check())?;
        let depth = self.image_path.len();
        self.image_path.push(b'/');
        self.image_path.extend_from_slice(&entry.name);
        let result = self.existing(entry, parent).and_then(|existing| match existing {
            None => self.copy_new(entry, parent, &entry.name),
            Some(old) => self.copy_over(entry, parent, old),
        });
        self.image_path.truncate(depth);
        result?;
        self.progress.entry_done();
        Ok(())
    }

    /// What already has the entry's name, when copying into a live image.
    fn existing(&self, entry: &Entry, parent: u32) -> Result<Option<Attr>, PopulateError> {
        if self.staging.is_none() {
            return Ok(None);
        }
        match self.fs.lookup(parent, &entry.name) {
            Ok(attr) => Ok(Some(attr)),
            Err(blockfs::Error::NotFound) => Ok(None),
            Err(error) => self.at(&self.inodes[entry.inode].path, Err(error)),
        }
    }

    /// Creates the entry under `name` (its own, or the staging name): a
    /// new link to an inode already copied, or a new inode and content.
    fn copy_new(&mut self, entry: &Entry, parent: u32, name: &[u8]) -> Result<(), PopulateError> {
        let host = &self.inodes[entry.inode];
        if let Some(ino) = self.image_inos[entry.inode] {
            return self.at(&host.path, self.fs.link(ino, parent, name)).map(drop);
        }
        let ino = self.at(&host.path, self.create(host, parent, name))?;
        self.image_inos[entry.inode] = Some(ino);
        match &host.kind {
            HostKind::Directory => self.copy_directory(entry, ino),
            HostKind::Regular { size, extents } => {
                let copied = self.copy_content(host, ino, *size, extents);
                if copied.is_err() {
                    // Best effort, so a stopped copy leaves no half file:
                    // the failure to report is the copy's.
                    let _ = self.fs.unlink(parent, name);
                }
                copied?;
                self.set_times(entry.inode, ino)
            }
            _ => self.set_times(entry.inode, ino),
        }
    }

    /// Copies onto an existing `old`: merges directories, replaces
    /// anything else.
    fn copy_over(&mut self, entry: &Entry, parent: u32, old: Attr) -> Result<(), PopulateError> {
        let host = &self.inodes[entry.inode];
        let refuse = |failure| self.at(&host.path, Err::<(), _>(failure));
        match (host.kind == HostKind::Directory, old.kind == FileType::Directory) {
            (true, true) => {
                let owner = SetAttr {
                    perm: Some(host.perm),
                    uid: Some(host.uid.into()),
                    gid: Some(host.gid.into()),
                    ..SetAttr::default()
                };
                self.at(&host.path, self.fs.setattr(old.ino, &owner))?;
                self.image_inos[entry.inode] = Some(old.ino);
                self.copy_directory(entry, old.ino)
            }
            (false, true) => refuse(CopyFailure::ReplacesDirectory),
            (true, false) => refuse(CopyFailure::DirectoryReplaces),
            // Already this inode: a source named twice, or a hard link
            // whose other name was copied first.
            (false, false) if self.image_inos[entry.inode] == Some(old.ino) => Ok(()),
            (false, false) => {
                let staging = self.staging.clone().expect("existing names are looked up only with staging");
                let replaced = self.copy_new(entry, parent, &staging).and_then(|()| {
                    let moved = self.fs.rename(parent, &staging, parent, &entry.name, RenameFlags::default());
                    self.at(&host.path, moved)
                });
                if replaced.is_err() {
                    // Best effort: the failure to report is the copy's.
                    let _ = self.fs.unlink(parent, &staging);
                }
                replaced
            }
        }
    }

    /// Creates the image inode for `host` (empty, for a regular file).
    fn create(&self, host: &HostInode, parent: u32, name: &[u8]) -> Result<u32, blockfs::Error> {
        let owner = NewInode { perm: host.perm, uid: host.uid, gid: host.gid };
        let attr = match &host.kind {
            HostKind::Directory => self.fs.mkdir(parent, name, owner)?,
            HostKind::Symlink { target } => self.fs.symlink(parent, name, target, host.uid, host.gid)?,
            other => self.fs.mknod(parent, name, other.file_type(), owner, other.rdev())?,
        };
        Ok(attr.ino)
    }

    /// Copies the data extents the scan found, leaving holes as holes
    /// (and whole zero blocks as holes too), then sets the size, which a
    /// trailing hole would otherwise not reach.
    fn copy_content(
        &mut self,
        host: &HostInode,
        ino: u32,
        size: u64,
        extents: &[(u64, u64)],
    ) -> Result<(), PopulateError> {
        let file = self.at(&host.path, File::open(&host.path))?;
        let mut copied = 0;
        for &(start, end) in extents {
            let mut offset = start;
            while offset < end {
                self.at(&host.path, interrupt::check())?;
                let want = (end - offset).min(self.buffer.len() as u64) as usize;
                let read = file.read_at(&mut self.buffer[..want], offset);
                let read = self.at(&host.path, read)?;
                if read == 0 {
                    // Copy what was scanned: space was budgeted for exactly that much.
                    return self.at(&host.path, Err(CopyFailure::Shrank { expected: size, found: offset }));
                }
                for (from, to) in sparse::nonzero_runs(&self.buffer[..read], offset) {
                    self.write_all(host, ino, offset + from as u64, from..to)?;
                }
                offset += read as u64;
                copied += read as u64;
                self.progress.add_bytes(read as u64);
            }
        }
        self.progress.add_bytes(size.saturating_sub(copied));
        let sized = SetAttr { size: Some(size), ..SetAttr::default() };
        self.at(&host.path, self.fs.setattr(ino, &sized)).map(drop)
    }

    /// Writes `buffer[range]` at `offset`; the library may write less than
    /// asked only when the image is full.
    fn write_all(
        &self,
        host: &HostInode,
        ino: u32,
        offset: u64,
        range: Range<usize>,
    ) -> Result<(), PopulateError> {
        let data = &self.buffer[range];
        let mut done = 0;
        while done < data.len() {
            let written = self.at(&host.path, self.fs.write(ino, offset + done as u64, &data[done..]))?;
            if written == 0 {
                return self.at(&host.path, Err(blockfs::Error::NoSpace));
            }
            done += written;
        }
        Ok(())
    }

    fn set_times(&self, host_inode: usize, ino: u32) -> Result<(), PopulateError> {
        let host = &self.inodes[host_inode];
        let times = SetAttr { atime: Some(host.atime), mtime: Some(host.mtime), ..SetAttr::default() };
        self.at(&host.path, self.fs.setattr(ino, &times)).map(drop)
    }
}
