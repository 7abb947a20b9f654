//! `blockfs get`: copies a file or tree out of an image as `cp -a` would:
//! type, permissions (setuid, setgid and sticky included), atime and
//! mtime, symlinks as symlinks, hard links as hard links, FIFOs, sockets
//! and device nodes, and ownership when run as root.
//!
//! The image is untrusted. Every host path is the destination plus names
//! that passed [`Walk`]'s checks, and nothing is ever written through a
//! symlink: files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`,
//! directories with mkdir (which fails on anything already there), and
//! symlinks only after all other content, so while anything is written no
//! symlink exists in the copy. The copy is built under a temporary name
//! beside the destination and renamed into place when complete; a failure
//! removes it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use blockfs::format::BLOCK_SIZE;
use blockfs::{Attr, FileType};
use clap::Args;

use crate::blockfs::copy::walk::{link_target, Node, Walk};
use crate::host::output::parent_dir;
use crate::host::sparse;
use crate::image::lock::Access;
use crate::image::{Failure, Image};
use crate::interrupt;
use crate::paths::{image_path, last_component, unsafe_name, ImagePath};
use crate::progress::Progress;
use crate::sys;

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Copy directories recursively
    #[arg(short = 'r', short_alias = 'R', long)]
    pub recursive: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute path inside the image (a symlink is copied, not followed)
    #[arg(value_parser = image_path())]
    pub path: ImagePath,
    /// A new host name for the copy, or an existing directory to copy into
    pub dest: PathBuf,
    /// No progress line (it is shown only on a terminal anyway)
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn get(args: &GetArgs) -> Result<(), Failure> {
    Image::with(&args.image, Access::Read, |image| {
        let path = args.path.as_bytes();
        let attr = image.attr_at(path, false)?;
        let is_dir = attr.kind == FileType::Directory;
        if is_dir && !args.recursive {
            return Err(image.fail(path, "is a directory (use -r to copy it)"));
        }
        let target = host_target(path, &args.dest, is_dir)?;
        image.refuse_to_overwrite(&target)?;
        let staging = Staging::beside(&target);
        // Only a tree is worth a progress line.
        let progress = Progress::for_stderr("blockfs get", None, args.quiet || !is_dir);
        Extractor::new(image, &staging, progress).copy(Walk::new(image, path, attr))?;
        staging.commit()
    })
}

/// Where the copy goes, as `cp` decides it: into DEST if DEST is an
/// existing directory (or a symlink to one: the user's own choice), else
/// DEST itself. An existing non-directory is replaced, an existing
/// directory never (a copy does not merge into host directories).
fn host_target(path: &[u8], dest: &Path, is_dir: bool) -> Result<PathBuf, Failure> {
    let target = if dest.is_dir() {
        match last_component(path).filter(|name| unsafe_name(name).is_none()) {
            Some(name) => dest.join(OsStr::from_bytes(name)),
            None => return Err(Failure::host(dest, "already exists; give a new name for the copy")),
        }
    } else {
        dest.to_owned()
    };
    let problem = match fs::symlink_metadata(&target) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(target),
        Err(error) => return Err(Failure::host(&target, error)),
        Ok(existing) => match (is_dir, existing.is_dir()) {
            (false, false) => return Ok(target),
            (true, true) => "already exists (a copy never merges into a host directory)",
            (true, false) => "cannot overwrite non-directory with directory",
            (false, true) => "cannot overwrite directory with non-directory",
        },
    };
    Err(Failure::host(&target, problem))
}

/// The copy while it is being built: a temporary name beside the target,
/// renamed over it when done and removed if anything fails first.
struct Staging {
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    fn beside(target: &Path) -> Self {
        let path = parent_dir(target).join(format!(".blockfs-get-{}", std::process::id()));
        Staging { path, target: target.to_owned(), committed: false }
    }

    /// The host path a message should name for `host` (a path in the
    /// copy): where it will be, not where it is being built.
    fn shown(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(&self.path) {
            Ok(rest) if !rest.as_os_str().is_empty() => self.target.join(rest),
            _ => self.target.clone(),
        }
    }

    fn commit(mut self) -> Result<(), Failure> {
        fs::rename(&self.path, &self.target).map_err(|error| Failure::host(&self.target, error))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: the command is already failing with a better
        // message. remove_dir_all does not follow symlinks.
        let _ = match fs::symlink_metadata(&self.path) {
            Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(&self.path),
            Ok(_) => fs::remove_file(&self.path),
            Err(_) => Ok(()),
        };
    }
}

struct Extractor<'a> {
    image: &'a Image,
    staging: &'a Staging,
    /// Ownership is restored only by root (as `cp -a` and `tar` do).
    as_root: bool,
    /// The host path made for the first name of each hard-linked inode.
    first_names: HashMap<u32, PathBuf>,
    /// Made last, so that no symlink exists while anything is written.
    symlinks: Vec<(Node, PathBuf)>,
    /// In the order made; their metadata is set in reverse (children
    /// first), since making a child changes its parent's mtime and a
    /// read-only mode would stop the children being made.
    directories: Vec<(Attr, PathBuf)>,
    buffer: Vec<u8>,
    progress: Progress,
}

impl<'a> Extractor<'a> {
    fn new(image: &'a Image, staging: &'a Staging, progress: Progress) -> Self {
        Extractor {
            image,
            staging,
            as_root: sys::is_root(),
            first_names: HashMap::new(),
            symlinks: Vec::new(),
            directories: Vec::new(),
            buffer: vec![0; 256 * BLOCK_SIZE],
            progress,
        }
    }

    fn copy(mut self, mut walk: Walk) -> Result<(), Failure> {
        while let Some(node) = walk.next() {
            let host = match node.relative.is_empty() {
                true => self.staging.path.clone(),
                false => self.staging.path.join(OsStr::from_bytes(&node.relative)),
            };
            interrupt::check().map_err(|error| self.host_failure(&host, error))?;
            self.progress.entry_done();
            match node.attr.kind {
                FileType::Directory => {
                    let made = DirBuilder::new().mode(0o700).create(&host);
                    if self.created(&node, &host, made)?.is_some() {
                        walk.enter(&node);
                        self.directories.push((node.attr, host));
                    }
                }
                FileType::Symlink => self.symlinks.push((node, host)),
                _ => self.place(&node, &host)?,
            }
        }
        for (node, host) in std::mem::take(&mut self.symlinks) {
            self.place(&node, &host)?;
        }
        self.progress.finish();
        for (attr, host) in self.directories.iter().rev() {
            let dir =
                OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(host);
            dir.and_then(|dir| self.set_metadata(&dir, attr))
                .map_err(|error| self.host_failure(host, error))?;
        }
        Ok(())
    }

    /// Makes a non-directory: a hard link to an earlier name of its
    /// inode, or the object itself.
    fn place(&mut self, node: &Node, host: &Path) -> Result<(), Failure> {
        if let Some(first) = self.first_names.get(&node.attr.ino).filter(|_| node.is_hard_linked()) {
            // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, not its target.
            let linked = fs::hard_link(first, host);
            return self.created(node, host, linked).map(drop);
        }
        let made = match node.attr.kind {
            FileType::Regular => self.write_file(node, host)?,
            FileType::Symlink => self.make_symlink(node, host)?,
            _ => self.make_node(node, host)?,
        };
        if made && node.is_hard_linked() {
            self.first_names.insert(node.attr.ino, host.to_owned());
        }
        Ok(())
    }

    /// Passes a creation's result on. The walk yields each name once, so
    /// a name that exists already is one the host cannot tell from
    /// another (on a case-insensitive filesystem, say): that one is
    /// skipped, since writing into it would write into the other.
    fn created<T>(&self, node: &Node, host: &Path, result: io::Result<T>) -> Result<Option<T>, Failure> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && !node.relative.is_empty() => {
                self.image.warn(&node.path, "the host has this name already (for another entry); skipped");
                Ok(None)
            }
            Err(error) => Err(self.host_failure(host, error)),
        }
    }

    fn host_failure(&self, host: &Path, error: io::Error) -> Failure {
        Failure::host(&self.staging.shown(host), error)
    }

    fn write_file(&mut self, node: &Node, host: &Path) -> Result<bool, Failure> {
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host);
        let Some(file) = self.created(node, host, opened)? else {
            return Ok(false);
        };
        let mut offset = 0u64;
        loop {
            let read = match self.image.fs.read(node.attr.ino, offset, &mut self.buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) => {
                    drop(file);
                    fs::remove_file(host).map_err(|error| self.host_failure(host, error))?;
                    self.image.warn(&node.path, format_args!("cannot read: {error}; skipped"));
                    return Ok(false);
                }
            };
            // Zero blocks (holes in the image, or written zeros) stay holes.
            for (from, to) in sparse::nonzero_runs(&self.buffer[..read], offset) {
                file.write_all_at(&self.buffer[from..to], offset + from as u64)
                    .map_err(|error| self.host_failure(host, error))?;
            }
            offset += read as u64;
            self.progress.add_bytes(read as u64);
            interrupt::check().map_err(|error| self.host_failure(host, error))?;
        }
        file.set_len(offset).map_err(|error| self.host_failure(host, error))?;
        self.set_metadata(&file, &node.attr).map_err(|error| self.host_failure(host, error))?;
        Ok(true)
    }

    fn make_symlink(&self, node: &Node, host: &Path) -> Result<bool, Failure> {
        let Some(target) = link_target(self.image, node) else {
            return Ok(false);
        };
        let made = std::os::unix::fs::symlink(OsStr::from_bytes(&target), host);
        if self.created(node, host, made)?.is_none() {
            return Ok(false);
        }
        self.set_path_metadata(host, &node.attr).map_err(|error| self.host_failure(host, error))?;
        Ok(true)
    }

    /// FIFOs, sockets and device nodes.
    fn make_node(&self, node: &Node, host: &Path) -> Result<bool, Failure> {
        let is_device = matches!(node.attr.kind, FileType::CharDevice | FileType::BlockDevice);
        let made = match sys::mknod(host, node.attr.kind, node.attr.rdev) {
            Err(error) if is_device && !self.as_root && error.kind() == io::ErrorKind::PermissionDenied => {
                self.image.warn(&node.path, "making a device node needs root; skipped");
                return Ok(false);
            }
            made => made,
        };
        if self.created(node, host, made)?.is_none() {
            return Ok(false);
        }
        self.set_path_metadata(host, &node.attr).map_err(|error| self.host_failure(host, error))?;
        Ok(true)
    }

    /// Owner, then mode (a chown clears setuid and setgid), then times,
    /// through an open file or directory.
    fn set_metadata(&self, file: &File, attr: &Attr) -> io::Result<()> {
        if self.as_root {
            std::os::unix::fs::fchown(file, Some(attr.uid.into()), Some(attr.gid.into()))?;
        }
        file.set_permissions(Permissions::from_mode(attr.perm.into()))?;
        file.set_times(FileTimes::new().set_accessed(time(attr.atime)).set_modified(time(attr.mtime)))
    }

    /// As [`Self::set_metadata`], by path, for objects that must not be
    /// opened (symlinks, FIFOs, devices), never following a symlink.
    fn set_path_metadata(&self, host: &Path, attr: &Attr) -> io::Result<()> {
        if self.as_root {
            std::os::unix::fs::lchown(host, Some(attr.uid.into()), Some(attr.gid.into()))?;
        }
        // A symlink's own mode means nothing (and chmod would follow it).
        // Anything else here is a node just made in a directory this
        // command made, so the path names that node.
        if attr.kind != FileType::Symlink {
            fs::set_permissions(host, Permissions::from_mode(attr.perm.into()))?;
        }
        sys::set_times_nofollow(host, attr.atime, attr.mtime)
    }
}

fn time(seconds: u32) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.into())
}
