//! `blockfs import`: extracts a tar archive into a directory of an image,
//! as `tar -x` would: members replace what has their name (a directory
//! only updates a directory), hard links link to the member named,
//! directories get their times last, and `./` describes the destination
//! itself. The archive streams through the library's parser
//! ([`TarParser`]) and a fixed buffer, so it may be any size, or a pipe.
//!
//! The archive is untrusted: a leading `/` is dropped (as tar does), a
//! member whose path holds `..` is skipped with a warning, and parent
//! directories are looked up without following symlinks, so nothing is
//! created outside the destination directory.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use blockfs::format::dirent::is_dot_or_dotdot;
use blockfs::fs::NewInode;
use blockfs::rootfs::tar::{Device, Entry, EntryKind, Event, TarParser, RECORD_SIZE};
use blockfs::{Attr, FileType, SetAttr};
use clap::Args;

use crate::image::{Failure, Image};
use crate::lock::Access;
use crate::paths::{image_path, join, shown, ImagePath};

/// Archive bytes read at a time (whole records).
const BUFFER: usize = 2048 * RECORD_SIZE;
/// Directories a member's path implies but the archive does not list.
const IMPLIED_DIRECTORY: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };
/// Largest device numbers an inode holds (ext2's encoding: 12-bit
/// major, 20-bit minor).
const MAX_MAJOR: u32 = 0xfff;
const MAX_MINOR: u32 = 0xf_ffff;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Store uids and gids above 65535 as 0 instead of skipping the member
    #[arg(long)]
    pub squash_ids: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// The tar archive (ustar, GNU or pax); `-` reads standard input
    pub archive: PathBuf,
    /// Absolute path of a directory inside the image to extract into
    #[arg(value_parser = image_path())]
    pub path: ImagePath,
}

pub fn import(args: &ImportArgs) -> Result<(), Failure> {
    let from_stdin = args.archive == Path::new("-");
    let archive: Box<dyn Read> = match from_stdin {
        true => Box::new(io::stdin().lock()),
        false => Box::new(File::open(&args.archive).map_err(|error| Failure::host(&args.archive, error))?),
    };
    let archive_name = if from_stdin { Path::new("standard input") } else { args.archive.as_path() };
    Image::with(&args.image, Access::Write, |image| {
        let path = args.path.as_bytes();
        let root = image.attr_at(path, true)?;
        if root.kind != FileType::Directory {
            return Err(image.fail(path, blockfs::Error::NotDir));
        }
        let mut importer = Importer {
            image,
            root: root.ino,
            root_path: path.to_vec(),
            squash_ids: args.squash_ids,
            file: None,
            directories: Vec::new(),
        };
        read_archive(archive, archive_name, |event| importer.apply(event))?;
        importer.finish()
    })
}

/// Feeds the archive to the parser, handing each event to `apply`, until
/// the end marker or the end of input (allowed between members).
fn read_archive(
    mut archive: impl Read,
    name: &Path,
    mut apply: impl FnMut(Event) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut parser = TarParser::new();
    let mut buffer = vec![0u8; BUFFER];
    let (mut start, mut end) = (0, 0);
    let mut at_end = false;
    loop {
        if end - start < RECORD_SIZE && !at_end {
            buffer.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            while end < buffer.len() {
                match archive.read(&mut buffer[end..]) {
                    Ok(0) => break,
                    Ok(read) => end += read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(Failure::host(name, error)),
                }
            }
            at_end = end < buffer.len();
        }
        let tar_failure = |error| Failure::host(name, error);
        if end == start {
            return parser.finish().map_err(tar_failure);
        }
        // Less than a record left at the end is an error the parser names.
        let step = parser.feed(&buffer[start..end]).map_err(tar_failure)?;
        start += step.consumed;
        match step.event {
            Some(Event::End) => return Ok(()),
            Some(event) => apply(event)?,
            None => {}
        }
    }
}

struct Importer<'a> {
    image: &'a Image,
    /// The destination directory.
    root: u32,
    root_path: Vec<u8>,
    squash_ids: bool,
    /// The regular file whose data comes next, when its member is kept.
    file: Option<OpenFile>,
    /// Directories (path below the root, mtime), whose times are set
    /// last, since adding entries changes them.
    directories: Vec<(Vec<Vec<u8>>, u32)>,
}

struct OpenFile {
    ino: u32,
    path: Vec<u8>,
    written: u64,
    size: u64,
    mtime: u32,
}

impl Importer<'_> {
    fn apply(&mut self, event: Event) -> Result<(), Failure> {
        match event {
            Event::Entry(entry) => self.entry(entry),
            Event::Data(bytes) => self.data(bytes),
            Event::Skipped { typeflag, path, .. } => {
                let message =
                    format!("skipping member {}: type '{}' is not supported", shown(&path), typeflag as char);
                self.image.warn(&self.root_path, message);
                Ok(())
            }
            Event::End => Ok(()),
        }
    }

    /// Image path of a member, for messages.
    fn image_path(&self, components: &[Vec<u8>]) -> Vec<u8> {
        components.iter().fold(self.root_path.clone(), |path, name| join(&path, name))
    }

    fn entry(&mut self, entry: Entry) -> Result<(), Failure> {
        let Some(components) = member_names(&entry.path) else {
            let message = format!("skipping member {}: its path contains ..", shown(&entry.path));
            self.image.warn(&self.root_path, message);
            return Ok(());
        };
        let path = self.image_path(&components);
        match self.create(&entry, &components) {
            Ok(()) => Ok(()),
            Err(Outcome::Skipped(reason)) => {
                self.image.warn(&path, format_args!("{reason}; skipped"));
                Ok(())
            }
            Err(Outcome::Failed(error)) => Err(self.image.fail(&path, error)),
        }
    }

    fn create(&mut self, entry: &Entry, components: &[Vec<u8>]) -> Result<(), Outcome> {
        let owner =
            NewInode { perm: entry.mode, uid: self.id(entry.uid, "uid")?, gid: self.id(entry.gid, "gid")? };
        let mtime = entry.mtime.clamp(0, u32::MAX.into()) as u32;
        let Some((name, parents)) = components.split_last() else {
            // `./`: the destination directory itself.
            if entry.kind != EntryKind::Directory {
                return Err(Outcome::Skipped("only a directory can describe the destination itself".into()));
            }
            self.set_owner(self.root, owner)?;
            self.directories.push((Vec::new(), mtime));
            return Ok(());
        };
        let parent = self.parent(parents)?;
        let fs = &self.image.fs;
        let ino = match &entry.kind {
            EntryKind::Directory => {
                match fs.lookup(parent, name) {
                    Ok(existing) if existing.kind == FileType::Directory => {
                        self.set_owner(existing.ino, owner)?
                    }
                    _ => drop(self.replace(parent, name, || fs.mkdir(parent, name, owner))?),
                }
                self.directories.push((components.to_vec(), mtime));
                return Ok(());
            }
            EntryKind::HardLink(target) => {
                let target =
                    member_names(target).ok_or_else(|| Outcome::Skipped("link target contains ..".into()))?;
                let linked = self.find(&target)?.ok_or_else(|| {
                    let target = self.image_path(&target);
                    Outcome::Skipped(format!(
                        "link target {} is not in the image",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                if fs.lookup(parent, name).is_ok_and(|existing| existing.ino == linked.ino) {
                    return Ok(());
                }
                return self.replace(parent, name, || fs.link(linked.ino, parent, name)).map(drop);
            }
            EntryKind::Symlink(target) => {
                self.replace(parent, name, || fs.symlink(parent, name, target, owner.uid, owner.gid))?
            }
            EntryKind::Regular => self.make_node(parent, name, FileType::Regular, owner, (0, 0))?,
            EntryKind::Fifo => self.make_node(parent, name, FileType::Fifo, owner, (0, 0))?,
            EntryKind::CharDevice(device) => {
                self.make_node(parent, name, FileType::CharDevice, owner, device_number(*device)?)?
            }
            EntryKind::BlockDevice(device) => {
                self.make_node(parent, name, FileType::BlockDevice, owner, device_number(*device)?)?
            }
        };
        if entry.size > 0 {
            let path = self.image_path(components);
            self.file = Some(OpenFile { ino, path, written: 0, size: entry.size, mtime });
            return Ok(());
        }
        Ok(self.set_times(ino, mtime)?)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        // Data of a skipped member is passed over.
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let written = match self.image.fs.write(file.ino, file.written, bytes) {
            Ok(written) if written == bytes.len() => Ok(written),
            // The library writes short only when the image is full.
            Ok(_) => Err(blockfs::Error::NoSpace),
            Err(error) => Err(error),
        };
        file.written += written.map_err(|error| self.image.fail(&file.path, error))? as u64;
        if file.written < file.size {
            self.file = Some(file);
            return Ok(());
        }
        // Writing set the mtime to now; the archive's comes last.
        self.set_times(file.ino, file.mtime).map_err(|error| self.image.fail(&file.path, error))
    }

    /// Sets the directories' times, now that nothing more is added.
    fn finish(self) -> Result<(), Failure> {
        for (components, mtime) in &self.directories {
            let fail = |error| self.image.fail(&self.image_path(components), error);
            // A directory replaced by a later member keeps that one's time.
            if let Some(directory) =
                self.find(components).map_err(fail)?.filter(|a| a.kind == FileType::Directory)
            {
                self.set_times(directory.ino, *mtime).map_err(fail)?;
            }
        }
        Ok(())
    }

    fn id(&self, id: u64, which: &str) -> Result<u16, Outcome> {
        match u16::try_from(id) {
            Ok(id) => Ok(id),
            Err(_) if self.squash_ids => Ok(0),
            Err(_) => Err(Outcome::Skipped(format!("{which} {id} does not fit 16 bits (use --squash-ids)"))),
        }
    }

    /// The directory holding a member, made as needed. Symlinks are not
    /// followed: a member lands at its literal path below the root.
    fn parent(&self, names: &[Vec<u8>]) -> Result<u32, Outcome> {
        let mut ino = self.root;
        for name in names {
            ino = match self.image.fs.lookup(ino, name) {
                Ok(found) if found.kind == FileType::Directory => found.ino,
                Ok(_) => return Err(Outcome::Skipped(format!("{} is not a directory", shown(name)))),
                Err(blockfs::Error::NotFound) => self.image.fs.mkdir(ino, name, IMPLIED_DIRECTORY)?.ino,
                Err(error) => return Err(error.into()),
            };
        }
        Ok(ino)
    }

    /// What a path below the root names, without following symlinks.
    fn find(&self, names: &[Vec<u8>]) -> blockfs::Result<Option<Attr>> {
        let mut attr = self.image.fs.getattr(self.root)?;
        for name in names {
            attr = match self.image.fs.lookup(attr.ino, name) {
                Ok(found) => found,
                Err(blockfs::Error::NotFound | blockfs::Error::NotDir) => return Ok(None),
                Err(error) => return Err(error),
            };
        }
        Ok(Some(attr))
    }

    fn make_node(
        &self,
        parent: u32,
        name: &[u8],
        kind: FileType,
        owner: NewInode,
        rdev: (u32, u32),
    ) -> Result<u32, Outcome> {
        self.replace(parent, name, || self.image.fs.mknod(parent, name, kind, owner, rdev))
    }

    /// Makes a member where something may have its name: a non-directory
    /// there is removed first, as tar does; a directory is never replaced
    /// by anything but a directory update.
    fn replace(
        &self,
        parent: u32,
        name: &[u8],
        make: impl FnOnce() -> blockfs::Result<Attr>,
    ) -> Result<u32, Outcome> {
        match self.image.fs.lookup(parent, name) {
            Ok(existing) if existing.kind == FileType::Directory => {
                return Err(Outcome::Skipped("a directory of that name is in the way".into()));
            }
            Ok(_) => self.image.fs.unlink(parent, name)?,
            Err(blockfs::Error::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(make()?.ino)
    }

    fn set_owner(&self, ino: u32, owner: NewInode) -> blockfs::Result<()> {
        let changes = SetAttr {
            perm: Some(owner.perm),
            uid: Some(owner.uid.into()),
            gid: Some(owner.gid.into()),
            ..SetAttr::default()
        };
        self.image.fs.setattr(ino, &changes).map(drop)
    }

    /// Archives keep one time; access time starts equal to it.
    fn set_times(&self, ino: u32, mtime: u32) -> blockfs::Result<()> {
        let times = SetAttr { atime: Some(mtime), mtime: Some(mtime), ..SetAttr::default() };
        self.image.fs.setattr(ino, &times).map(drop)
    }
}

/// How a member that could not be made ends: skipped with a warning
/// when the problem is the member's own, else the import fails.
enum Outcome {
    Skipped(String),
    Failed(blockfs::Error),
}

impl From<blockfs::Error> for Outcome {
    fn from(error: blockfs::Error) -> Self {
        use blockfs::Error::*;
        match error {
            // Out of space, I/O, corruption: no later member fares better.
            NoSpace | Io(_) | Corrupt { .. } | ReadOnly | Unsupported => Outcome::Failed(error),
            other => Outcome::Skipped(other.to_string()),
        }
    }
}

/// A member path's names below the root: a leading `/`, empty and `.`
/// components dropped as tar drops them; `None` if any is `..`.
fn member_names(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    let names: Vec<Vec<u8>> = path
        .split(|&b| b == b'/')
        .filter(|name| !name.is_empty() && *name != b".")
        .map(<[u8]>::to_vec)
        .collect();
    names.iter().all(|name| !is_dot_or_dotdot(name)).then_some(names)
}

fn device_number(device: Device) -> Result<(u32, u32), Outcome> {
    if device.major > MAX_MAJOR || device.minor > MAX_MINOR {
        let message = format!("device {}:{} does not fit an inode", device.major, device.minor);
        return Err(Outcome::Skipped(message));
    }
    Ok((device.major, device.minor))
}
