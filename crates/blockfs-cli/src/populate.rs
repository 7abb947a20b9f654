//! Copies a scanned host tree into a mounted filesystem, through the same
//! operations any user of the library has: mkdir, mknod, symlink, link,
//! write and setattr.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use blockfs::fs::NewInode;
use blockfs::{BlockDevice, FileSystem, SetAttr, ROOT_INO};

use crate::hosttree::{Entry, HostInode, HostKind, HostTree};
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
}

/// A failure while copying, with the host path being copied.
#[derive(Debug)]
pub struct PopulateError {
    pub path: PathBuf,
    pub failure: CopyFailure,
}

impl fmt::Display for PopulateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.failure {
            CopyFailure::Host(error) => write!(f, "{path}: {error}"),
            CopyFailure::Image(error) => write!(f, "{path}: cannot store in the image: {error}"),
            CopyFailure::Shrank { expected, found } => {
                write!(f, "{path}: changed while copying ({expected} bytes when scanned, {found} now)")
            }
        }
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
    let mut copier =
        Copier { fs, tree, image_inos: vec![None; tree.inodes.len()], buffer: vec![0; COPY_CHUNK], progress };
    copier.image_inos[tree.root.inode] = Some(ROOT_INO);
    copier.copy_directory(&tree.root, ROOT_INO)
}

struct Copier<'a, D> {
    fs: &'a FileSystem<D>,
    tree: &'a HostTree,
    /// Image inode of each host inode once created: hard links reuse it.
    image_inos: Vec<Option<u32>>,
    buffer: Vec<u8>,
    progress: &'a mut Progress,
}

/// Attaches the host path to a failure.
fn at<T>(path: &Path, result: Result<T, impl Into<CopyFailure>>) -> Result<T, PopulateError> {
    result.map_err(|failure| PopulateError { path: path.to_owned(), failure: failure.into() })
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

impl<D: BlockDevice> Copier<'_, D> {
    /// Copies a directory's children, then sets its times: adding the
    /// children changed its mtime, so the host's must come after.
    fn copy_directory(&mut self, dir: &Entry, dir_ino: u32) -> Result<(), PopulateError> {
        for child in &dir.children {
            self.copy_entry(child, dir_ino)?;
        }
        self.set_times(dir.inode, dir_ino)
    }

    fn copy_entry(&mut self, entry: &Entry, parent: u32) -> Result<(), PopulateError> {
        let host = &self.tree.inodes[entry.inode];
        if let Some(ino) = self.image_inos[entry.inode] {
            at(&host.path, self.fs.link(ino, parent, &entry.name))?;
            self.progress.entry_done();
            return Ok(());
        }
        let ino = at(&host.path, self.create(host, parent, &entry.name))?;
        self.image_inos[entry.inode] = Some(ino);
        match &host.kind {
            HostKind::Directory => self.copy_directory(entry, ino)?,
            HostKind::Regular { size } => {
                self.copy_content(host, ino, *size)?;
                self.set_times(entry.inode, ino)?;
            }
            _ => self.set_times(entry.inode, ino)?,
        }
        self.progress.entry_done();
        Ok(())
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

    fn copy_content(&mut self, host: &HostInode, ino: u32, size: u64) -> Result<(), PopulateError> {
        let file = at(&host.path, File::open(&host.path))?;
        // Copy what was scanned: space was budgeted for exactly that much.
        let mut reader = file.take(size);
        let mut offset = 0u64;
        while offset < size {
            let read = at(&host.path, reader.read(&mut self.buffer))?;
            if read == 0 {
                let failure = CopyFailure::Shrank { expected: size, found: offset };
                return Err(PopulateError { path: host.path.clone(), failure });
            }
            self.write_all(host, ino, offset, read)?;
            offset += read as u64;
            self.progress.add_bytes(read as u64);
        }
        Ok(())
    }

    /// Writes `buffer[..len]` at `offset`; the library may write less than
    /// asked only when the image is full.
    fn write_all(&self, host: &HostInode, ino: u32, offset: u64, len: usize) -> Result<(), PopulateError> {
        let mut done = 0;
        while done < len {
            let written = at(&host.path, self.fs.write(ino, offset + done as u64, &self.buffer[done..len]))?;
            if written == 0 {
                return at(&host.path, Err(blockfs::Error::NoSpace));
            }
            done += written;
        }
        Ok(())
    }

    fn set_times(&self, host_inode: usize, ino: u32) -> Result<(), PopulateError> {
        let host = &self.tree.inodes[host_inode];
        let times = SetAttr { atime: Some(host.atime), mtime: Some(host.mtime), ..SetAttr::default() };
        at(&host.path, self.fs.setattr(ino, &times)).map(|_| ())
    }
}
