//! The pre-scan: reads a host directory tree into memory (names, metadata,
//! symlink targets; not file contents) and checks everything BlockFS
//! cannot store before an image is created. Entries are sorted by name
//! bytes so the image does not depend on the order the host lists them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use blockfs::format::dirent::MAX_NAME_LEN;
use blockfs::fs::MAX_FILE_SIZE;
use blockfs::FileType;

/// What the tree needs from the image, beyond what format() sets up: the
/// same measure the library takes of an archive.
pub use blockfs::rootfs::Needs;

use crate::host::{space, sparse};

/// What the host object is, with the content BlockFS stores for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    Directory,
    Regular {
        size: u64,
        /// Where its data is (the rest are holes), as scanned.
        extents: Vec<(u64, u64)>,
    },
    /// The target exactly as the host stores it, never followed.
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    Socket,
    CharDevice {
        rdev: (u32, u32),
    },
    BlockDevice {
        rdev: (u32, u32),
    },
}

impl HostKind {
    pub fn file_type(&self) -> FileType {
        match self {
            HostKind::Directory => FileType::Directory,
            HostKind::Regular { .. } => FileType::Regular,
            HostKind::Symlink { .. } => FileType::Symlink,
            HostKind::Fifo => FileType::Fifo,
            HostKind::Socket => FileType::Socket,
            HostKind::CharDevice { .. } => FileType::CharDevice,
            HostKind::BlockDevice { .. } => FileType::BlockDevice,
        }
    }

    /// (major, minor) for device nodes, (0, 0) otherwise.
    pub fn rdev(&self) -> (u32, u32) {
        match self {
            HostKind::CharDevice { rdev } | HostKind::BlockDevice { rdev } => *rdev,
            _ => (0, 0),
        }
    }
}

/// One host inode; several entries share it when it is hard-linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInode {
    /// The first path it was found at: read from, and named in errors.
    pub path: PathBuf,
    pub kind: HostKind,
    /// The 12 permission bits, setuid/setgid/sticky included.
    pub perm: u16,
    pub uid: u16,
    pub gid: u16,
    pub atime: u32,
    pub mtime: u32,
}

/// A name in the tree and the inode it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    /// Index into [`HostTree::inodes`].
    pub inode: usize,
    /// Sorted by name bytes; empty unless a directory.
    pub children: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTree {
    /// The populate directory itself, which becomes the image's root.
    pub root: Entry,
    pub inodes: Vec<HostInode>,
    pub needs: Needs,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Store uids and gids above 65535 as 0 instead of refusing them.
    pub squash_ids: bool,
    /// Latest time to record (SOURCE_DATE_EPOCH); later times are clamped.
    pub latest_time: Option<u32>,
}

#[derive(Debug)]
pub enum ScanError {
    Io { path: PathBuf, error: io::Error },
    NotADirectory(PathBuf),
    NameTooLong { path: PathBuf, len: usize },
    FileTooBig { path: PathBuf, size: u64 },
    IdTooLarge { path: PathBuf, which: &'static str, id: u32 },
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ScanError::NotADirectory(path) => write!(f, "{}: not a directory", path.display()),
            ScanError::NameTooLong { path, len } => {
                write!(f, "{}: name is {len} bytes, BlockFS allows at most {MAX_NAME_LEN}", path.display())
            }
            ScanError::FileTooBig { path, size } => write!(
                f,
                "{}: file is {size} bytes, BlockFS allows at most {MAX_FILE_SIZE} (4 GiB - 1)",
                path.display()
            ),
            ScanError::IdTooLarge { path, which, id } => write!(
                f,
                "{}: {which} {id} does not fit BlockFS's 16 bits (use --squash-ids to store it as 0)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ScanError {}

/// Linux's `dev_t` split, as glibc's `major()`/`minor()` do it.
pub fn split_rdev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Host seconds (possibly negative or past 2106) as BlockFS's u32, never
/// later than `latest`.
fn clamp_time(seconds: i64, latest: Option<u32>) -> u32 {
    let stored = seconds.clamp(0, u32::MAX as i64) as u32;
    latest.map_or(stored, |latest| stored.min(latest))
}

/// Walks `root` (following it if it is a symlink, but nothing below it).
pub fn scan(root: &Path, options: ScanOptions) -> Result<HostTree, ScanError> {
    let metadata = fs::metadata(root).map_err(|error| io_error(root, error))?;
    if !metadata.is_dir() {
        return Err(ScanError::NotADirectory(root.to_owned()));
    }
    let mut scanner = Scanner::new(options);
    let root_inode = scanner.add_inode(root, &metadata, HostKind::Directory)?;
    let mut root_entry = Entry { name: Vec::new(), inode: root_inode, children: Vec::new() };
    scanner.scan_children(root, &mut root_entry)?;
    // format() already made the root inode and its first directory block.
    scanner.needs.inodes -= 1;
    scanner.needs.blocks -= 1;
    Ok(HostTree { root: root_entry, inodes: scanner.inodes, needs: scanner.needs })
}

/// Host objects named on a command line (`blockfs put`), each with the
/// name it gets in the image, scanned together so that hard links between
/// them are found. A symlink is taken as itself, never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSources {
    pub entries: Vec<Entry>,
    pub inodes: Vec<HostInode>,
    pub needs: Needs,
}

pub fn scan_sources(sources: &[(PathBuf, Vec<u8>)], options: ScanOptions) -> Result<HostSources, ScanError> {
    let mut scanner = Scanner::new(options);
    let entries = sources
        .iter()
        .map(|(path, name)| scanner.scan_entry(path, name.clone()))
        .collect::<Result<_, _>>()?;
    Ok(HostSources { entries, inodes: scanner.inodes, needs: scanner.needs })
}

fn io_error(path: &Path, error: io::Error) -> ScanError {
    ScanError::Io { path: path.to_owned(), error }
}

struct Scanner {
    options: ScanOptions,
    inodes: Vec<HostInode>,
    /// (st_dev, st_ino) of multiply-linked inodes already taken in.
    seen: HashMap<(u64, u64), usize>,
    needs: Needs,
}

impl Scanner {
    fn new(options: ScanOptions) -> Self {
        Scanner { options, inodes: Vec::new(), seen: HashMap::new(), needs: Needs::default() }
    }

    /// Fills `dir.children` from the host directory at `path`, depth first.
    fn scan_children(&mut self, path: &Path, dir: &mut Entry) -> Result<(), ScanError> {
        let mut names: Vec<OsString> = fs::read_dir(path)
            .and_then(|listing| listing.map(|entry| entry.map(|e| e.file_name())).collect())
            .map_err(|error| io_error(path, error))?;
        names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let child_path = path.join(&name);
            let entry = self.scan_entry(&child_path, name.into_vec())?;
            dir.children.push(entry);
        }
        self.needs.blocks += space::directory_blocks(dir.children.iter().map(|c| &c.name[..]));
        Ok(())
    }

    fn scan_entry(&mut self, path: &Path, name: Vec<u8>) -> Result<Entry, ScanError> {
        if name.len() > MAX_NAME_LEN {
            return Err(ScanError::NameTooLong { path: path.to_owned(), len: name.len() });
        }
        self.needs.entries += 1;
        let metadata = fs::symlink_metadata(path).map_err(|error| io_error(path, error))?;
        let identity = (metadata.dev(), metadata.ino());
        let shared = !metadata.is_dir() && metadata.nlink() > 1;
        if let Some(&inode) = self.seen.get(&identity) {
            // Only multiply-linked inodes are recorded, so this is a hard link.
            return Ok(Entry { name, inode, children: Vec::new() });
        }
        let kind = host_kind(path, &metadata)?;
        let is_dir = kind == HostKind::Directory;
        let inode = self.add_inode(path, &metadata, kind)?;
        if shared {
            self.seen.insert(identity, inode);
        }
        let mut entry = Entry { name, inode, children: Vec::new() };
        if is_dir {
            self.scan_children(path, &mut entry)?;
        }
        Ok(entry)
    }

    /// Records a new inode and what it costs (directories are costed
    /// once their children are known).
    fn add_inode(&mut self, path: &Path, metadata: &Metadata, kind: HostKind) -> Result<usize, ScanError> {
        let content_blocks = match &kind {
            HostKind::Regular { size, extents } => {
                self.needs.file_bytes += size;
                sparse::stored_blocks(extents)
            }
            HostKind::Symlink { target } => space::file_blocks(target.len() as u64),
            _ => 0,
        };
        self.needs.blocks += content_blocks;
        self.needs.inodes += 1;
        let latest = self.options.latest_time;
        self.inodes.push(HostInode {
            path: path.to_owned(),
            kind,
            perm: (metadata.mode() & 0o7777) as u16,
            uid: self.id(path, "uid", metadata.uid())?,
            gid: self.id(path, "gid", metadata.gid())?,
            atime: clamp_time(metadata.atime(), latest),
            mtime: clamp_time(metadata.mtime(), latest),
        });
        Ok(self.inodes.len() - 1)
    }

    fn id(&self, path: &Path, which: &'static str, id: u32) -> Result<u16, ScanError> {
        match u16::try_from(id) {
            Ok(id) => Ok(id),
            Err(_) if self.options.squash_ids => Ok(0),
            Err(_) => Err(ScanError::IdTooLarge { path: path.to_owned(), which, id }),
        }
    }
}

/// Classifies a host object and reads what BlockFS keeps of it. Regular
/// files are opened (and closed) here so an unreadable one is reported
/// before the image exists.
fn host_kind(path: &Path, metadata: &Metadata) -> Result<HostKind, ScanError> {
    let file_type = metadata.file_type();
    let kind = if file_type.is_dir() {
        HostKind::Directory
    } else if file_type.is_file() {
        let size = metadata.len();
        if size > MAX_FILE_SIZE {
            return Err(ScanError::FileTooBig { path: path.to_owned(), size });
        }
        let file = File::open(path).map_err(|error| io_error(path, error))?;
        let extents = sparse::data_extents(&file, size).map_err(|error| io_error(path, error))?;
        HostKind::Regular { size, extents }
    } else if file_type.is_symlink() {
        let target = fs::read_link(path).map_err(|error| io_error(path, error))?;
        HostKind::Symlink { target: target.into_os_string().into_vec() }
    } else if file_type.is_fifo() {
        HostKind::Fifo
    } else if file_type.is_socket() {
        HostKind::Socket
    } else if file_type.is_char_device() {
        HostKind::CharDevice { rdev: split_rdev(metadata.rdev()) }
    } else {
        HostKind::BlockDevice { rdev: split_rdev(metadata.rdev()) }
    };
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's `makedev()`, the inverse of `split_rdev`.
    fn makedev(major: u64, minor: u64) -> u64 {
        (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
    }

    #[test]
    fn rdev_split_matches_glibc() {
        assert_eq!(split_rdev(0x0801), (8, 1));
        for (major, minor) in [(8, 1), (259, 70000), (5000, 1 << 19)] {
            assert_eq!(split_rdev(makedev(major, minor)), (major as u32, minor as u32));
        }
    }

    #[test]
    fn times_are_clamped_to_u32_and_the_epoch() {
        assert_eq!(clamp_time(-1, None), 0);
        assert_eq!(clamp_time(1 << 40, None), u32::MAX);
        assert_eq!(clamp_time(2_000, Some(1_000)), 1_000);
        assert_eq!(clamp_time(500, Some(1_000)), 500);
    }

    #[test]
    fn over_long_names_are_refused_before_anything_else() {
        // No Linux filesystem stores a 256-byte name, so this path is
        // reachable only through a (FUSE or network) host filesystem that
        // does; check the rule directly.
        let mut scanner = Scanner::new(ScanOptions::default());
        let name = vec![b'n'; MAX_NAME_LEN + 1];
        let error = scanner.scan_entry(Path::new("/nonexistent/long"), name).unwrap_err();
        assert!(matches!(error, ScanError::NameTooLong { len: 256, .. }));
        assert!(error.to_string().starts_with("/nonexistent/long: name is 256 bytes"));
    }

    #[test]
    fn large_ids_are_refused_or_squashed() {
        let strict = Scanner::new(ScanOptions::default());
        assert_eq!(strict.id(Path::new("/f"), "uid", 65535).unwrap(), 65535);
        let error = strict.id(Path::new("/f"), "uid", 65536).unwrap_err();
        assert!(error.to_string().contains("uid 65536"));
        let squash = Scanner::new(ScanOptions { squash_ids: true, latest_time: None });
        assert_eq!(squash.id(Path::new("/f"), "gid", 100_000).unwrap(), 0);
    }
}
