//! Changes to paths in an image, shaped like the coreutils of the same
//! names: mkdir, rm, rmdir, mv, ln, chmod, chown, touch, truncate. Every
//! library operation is atomic, so an image is consistent after each
//! step; a command naming several paths stops at the first failure, with
//! the paths before it done. New objects belong to 0:0 (the usual owner
//! in a root filesystem image; `chown` changes it) and get mode 0755
//! (directories) or 0644 (files), no umask applied.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use blockfs::format::dirent::is_dot_or_dotdot;
use blockfs::fs::{NewInode, RenameFlags};
use blockfs::{Attr, FileType, SetAttr, ROOT_INO};
use clap::Args;

use crate::clock;
use crate::host::attrs::parse_digits;
use crate::image::{Failure, Image};
use crate::paths::{image_path, join, last_component, split_last, ImagePath};

const NEW_DIRECTORY: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };
const NEW_FILE: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };

#[derive(Args, Debug)]
pub struct MkdirArgs {
    /// Make missing parents too; an existing directory is no error
    #[arg(short = 'p', long)]
    pub parents: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute paths inside the image
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove directories and their contents
    #[arg(short = 'r', short_alias = 'R', long)]
    pub recursive: bool,
    /// Ignore paths that do not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute paths inside the image (a symlink is removed, not followed)
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

#[derive(Args, Debug)]
pub struct RmdirArgs {
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute paths of empty directories inside the image
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

#[derive(Args, Debug)]
pub struct MvArgs {
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute path inside the image to move
    #[arg(value_parser = image_path())]
    pub source: ImagePath,
    /// New name, or an existing directory to move into
    #[arg(value_parser = image_path())]
    pub dest: ImagePath,
}

#[derive(Args, Debug)]
pub struct LnArgs {
    /// Make a symbolic link (TARGET is stored as given, and may be relative)
    #[arg(short = 's', long)]
    pub symbolic: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// What the link points to: for a hard link, an absolute path inside
    /// the image (a symlink there is linked itself, not followed)
    pub target: OsString,
    /// Name of the new link, or an existing directory to put it in
    #[arg(value_parser = image_path())]
    pub link: ImagePath,
}

#[derive(Args, Debug)]
pub struct ChmodArgs {
    /// The BlockFS image file
    pub image: PathBuf,
    /// Octal permission bits, setuid/setgid/sticky included (e.g. 4755)
    #[arg(value_parser = parse_mode)]
    pub mode: u16,
    /// Absolute paths inside the image (symlinks are followed)
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

#[derive(Args, Debug)]
pub struct ChownArgs {
    /// Change a symlink itself rather than what it points to (`-h` of
    /// coreutils, which clap keeps for --help)
    #[arg(long)]
    pub no_dereference: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Numeric UID, UID:GID or :GID (0 to 65535)
    #[arg(value_parser = parse_owner, value_name = "UID[:GID]")]
    pub owner: Owner,
    /// Absolute paths inside the image
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

#[derive(Args, Debug)]
pub struct TouchArgs {
    /// Use this time (seconds since 1970, optionally written @SECONDS)
    /// instead of now
    #[arg(short = 'd', long = "date", value_name = "EPOCH_SECONDS", value_parser = parse_epoch)]
    pub time: Option<u32>,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute paths inside the image; missing files are created empty
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

#[derive(Args, Debug)]
pub struct TruncateArgs {
    /// New size in bytes; a K, M or G suffix multiplies by 1024, 1024², 1024³
    #[arg(short = 's', long, value_parser = parse_size)]
    pub size: u64,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute paths inside the image; missing files are created
    #[arg(required = true, value_parser = image_path())]
    pub paths: Vec<ImagePath>,
}

/// A `chown` argument: either id may be left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u16>,
    pub gid: Option<u16>,
}

fn parse_mode(text: &str) -> Result<u16, String> {
    parse_digits(text.as_bytes(), 8)
        .filter(|&mode| mode <= 0o7777)
        .map(|mode| mode as u16)
        .ok_or_else(|| format!("{text:?} is not an octal mode from 0 to 7777"))
}

fn parse_owner(text: &str) -> Result<Owner, String> {
    let id = |part: &str| {
        parse_digits(part.as_bytes(), 10)
            .and_then(|id| u16::try_from(id).ok())
            .ok_or_else(|| format!("{part:?} is not a numeric id from 0 to 65535"))
    };
    let owner = match text.split_once(':') {
        None => Owner { uid: Some(id(text)?), gid: None },
        Some(("", gid)) => Owner { uid: None, gid: Some(id(gid)?) },
        Some((uid, gid)) => Owner { uid: Some(id(uid)?), gid: Some(id(gid)?) },
    };
    Ok(owner)
}

fn parse_epoch(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('@').unwrap_or(text);
    parse_digits(digits.as_bytes(), 10)
        .ok_or_else(|| format!("{text:?} is not a number of seconds since 1970 (0 to {})", u32::MAX))
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown size unit {unit:?} (use K, M or G)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| !digits.is_empty())
        .and_then(|count| count.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size in bytes"))
}

/// The directory holding `path`'s last component (symlinks in the way
/// followed), and that component.
fn parent_and_name<'p>(image: &Image, path: &'p [u8]) -> Result<(u32, &'p [u8]), Failure> {
    let Some((parent, name)) = split_last(path) else {
        return Err(image.fail(path, "not allowed on the root directory"));
    };
    if is_dot_or_dotdot(name) {
        return Err(image.fail(path, "refusing to use . or .. as a name"));
    }
    let dir = image.fs.resolve(parent, true).and_then(|ino| image.fs.getattr(ino));
    match dir {
        Ok(dir) if dir.kind == FileType::Directory => Ok((dir.ino, name)),
        Ok(_) => Err(image.fail(path, blockfs::Error::NotDir)),
        Err(error) => Err(image.fail(path, error)),
    }
}

/// Runs `change` on each path in turn, stopping at the first failure.
fn each(paths: &[ImagePath], mut change: impl FnMut(&[u8]) -> Result<(), Failure>) -> Result<(), Failure> {
    paths.iter().try_for_each(|path| change(path.as_bytes()))
}

pub fn mkdir(image: &Image, args: &MkdirArgs) -> Result<(), Failure> {
    each(&args.paths, |path| {
        if args.parents {
            return mkdir_parents(image, path);
        }
        let (parent, name) = parent_and_name(image, path)?;
        image.fs.mkdir(parent, name, NEW_DIRECTORY).map(drop).map_err(|error| image.fail(path, error))
    })
}

/// `mkdir -p`: each missing component is made; existing ones must be
/// directories (or symlinks to them).
fn mkdir_parents(image: &Image, path: &[u8]) -> Result<(), Failure> {
    let mut dir = ROOT_INO;
    let mut walked = b"/".to_vec();
    for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        walked = join(&walked, component);
        let made = match image.fs.resolve(&walked, true) {
            Err(blockfs::Error::NotFound) => image.fs.mkdir(dir, component, NEW_DIRECTORY),
            found => found.and_then(|ino| image.fs.getattr(ino)),
        };
        let attr = made.map_err(|error| image.fail(&walked, error))?;
        if attr.kind != FileType::Directory {
            return Err(image.fail(&walked, blockfs::Error::NotDir));
        }
        dir = attr.ino;
    }
    Ok(())
}

pub fn rm(image: &Image, args: &RmArgs) -> Result<(), Failure> {
    each(&args.paths, |path| {
        let found = parent_and_name(image, path).and_then(|(parent, name)| {
            let attr = image.fs.lookup(parent, name).map_err(|error| image.fail(path, error))?;
            Ok((parent, name, attr))
        });
        let (parent, name, attr) = match found {
            Ok(found) => found,
            Err(_) if args.force && image.fs.resolve(path, false) == Err(blockfs::Error::NotFound) => {
                return Ok(());
            }
            Err(failure) => return Err(failure),
        };
        match attr.kind {
            FileType::Directory if args.recursive => remove_tree(image, parent, name, path, attr.ino),
            FileType::Directory => Err(image.fail(path, "is a directory (use -r to remove it)")),
            _ => image.fs.unlink(parent, name).map_err(|error| image.fail(path, error)),
        }
    })
}

/// A directory being emptied by [`remove_tree`].
struct Level {
    parent: u32,
    name: Vec<u8>,
    path: Vec<u8>,
    ino: u32,
    /// Entries still to remove.
    entries: Vec<(Vec<u8>, u32)>,
}

/// `rm -r`: removes a directory's contents depth first, then the
/// directory. The stack is explicit, so a deep tree cannot overflow the
/// call stack, and a damaged image whose directories loop is refused.
pub(crate) fn remove_tree(
    image: &Image,
    parent: u32,
    name: &[u8],
    path: &[u8],
    ino: u32,
) -> Result<(), Failure> {
    let level = |parent, name: &[u8], path: Vec<u8>, ino| -> Result<Level, Failure> {
        let listed = image.entries(ino).map_err(|error| image.fail(&path, error))?;
        let entries =
            listed.into_iter().filter(|e| !is_dot_or_dotdot(&e.name)).map(|e| (e.name, e.ino)).collect();
        Ok(Level { parent, name: name.to_vec(), path, ino, entries })
    };
    let mut stack = vec![level(parent, name, path.to_vec(), ino)?];
    while let Some(top) = stack.last_mut() {
        let Some((child, child_ino)) = top.entries.pop() else {
            let done = stack.pop().expect("the loop saw a top level");
            image.fs.rmdir(done.parent, &done.name).map_err(|error| image.fail(&done.path, error))?;
            continue;
        };
        let (dir, child_path) = (top.ino, join(&top.path, &child));
        let attr = image.fs.getattr(child_ino).map_err(|error| image.fail(&child_path, error))?;
        if attr.kind != FileType::Directory {
            image.fs.unlink(dir, &child).map_err(|error| image.fail(&child_path, error))?;
        } else if stack.iter().any(|level| level.ino == child_ino) {
            return Err(image.fail(&child_path, "directory loop (the image is damaged; run fsck-blockfs)"));
        } else {
            stack.push(level(dir, &child, child_path, child_ino)?);
        }
    }
    Ok(())
}

pub fn rmdir(image: &Image, args: &RmdirArgs) -> Result<(), Failure> {
    each(&args.paths, |path| {
        let (parent, name) = parent_and_name(image, path)?;
        image.fs.rmdir(parent, name).map_err(|error| image.fail(path, error))
    })
}

/// Where a new name goes, as `mv` and `ln` decide: inside `dest` if it is
/// a directory, under `name`; else at `dest` itself.
fn destination<'p>(image: &Image, dest: &'p [u8], name: &'p [u8]) -> Result<(u32, &'p [u8]), Failure> {
    match image.directory_at(dest)? {
        Some(dir) => Ok((dir.ino, name)),
        None => parent_and_name(image, dest),
    }
}

pub fn mv(image: &Image, args: &MvArgs) -> Result<(), Failure> {
    let source = args.source.as_bytes();
    let (parent, name) = parent_and_name(image, source)?;
    let (new_parent, new_name) = destination(image, args.dest.as_bytes(), name)?;
    match image.fs.rename(parent, name, new_parent, new_name, RenameFlags::default()) {
        Ok(()) => Ok(()),
        Err(blockfs::Error::InvalidArgument) => {
            Err(image.fail(source, "cannot move a directory into itself or its subdirectories"))
        }
        Err(error) => Err(image.fail(source, error)),
    }
}

pub fn ln(image: &Image, args: &LnArgs) -> Result<(), Failure> {
    let target = args.target.as_bytes();
    let link = args.link.as_bytes();
    let Some(target_name) = last_component(target) else {
        return Err(image.fail(target, "has no name to give the link"));
    };
    let (parent, name) = destination(image, link, target_name)?;
    let made = if args.symbolic {
        image.fs.symlink(parent, name, target, 0, 0)
    } else if target.first() != Some(&b'/') {
        return Err(image.fail(target, "a hard link's target must be an absolute path in the image"));
    } else {
        let ino = image.fs.resolve(target, false).map_err(|error| image.fail(target, error))?;
        image.fs.link(ino, parent, name)
    };
    made.map(drop).map_err(|error| image.fail(link, error))
}

/// Applies `changes` to each path's inode.
fn set(image: &Image, paths: &[ImagePath], follow: bool, changes: &SetAttr) -> Result<(), Failure> {
    each(paths, |path| {
        let attr = image.attr_at(path, follow)?;
        image.fs.setattr(attr.ino, changes).map(drop).map_err(|error| image.fail(path, error))
    })
}

pub fn chmod(image: &Image, args: &ChmodArgs) -> Result<(), Failure> {
    set(image, &args.paths, true, &SetAttr { perm: Some(args.mode), ..SetAttr::default() })
}

pub fn chown(image: &Image, args: &ChownArgs) -> Result<(), Failure> {
    let Owner { uid, gid } = args.owner;
    let changes = SetAttr { uid: uid.map(u32::from), gid: gid.map(u32::from), ..SetAttr::default() };
    set(image, &args.paths, !args.no_dereference, &changes)
}

/// The regular file at `path` (symlinks followed), created empty if
/// missing, and whether it was.
fn file_at(image: &Image, path: &[u8]) -> Result<(Attr, bool), Failure> {
    match image.fs.resolve(path, true).and_then(|ino| image.fs.getattr(ino)) {
        Ok(attr) => Ok((attr, false)),
        Err(blockfs::Error::NotFound) => {
            let (parent, name) = parent_and_name(image, path)?;
            let attr = image.fs.create(parent, name, NEW_FILE).map_err(|error| image.fail(path, error))?;
            Ok((attr, true))
        }
        Err(error) => Err(image.fail(path, error)),
    }
}

pub fn touch(image: &Image, args: &TouchArgs) -> Result<(), Failure> {
    each(&args.paths, |path| {
        let (attr, created) = file_at(image, path)?;
        if created && args.time.is_none() {
            return Ok(()); // made just now, with both times now
        }
        let time = args.time.unwrap_or_else(clock::system_seconds);
        let times = SetAttr { atime: Some(time), mtime: Some(time), ..SetAttr::default() };
        image.fs.setattr(attr.ino, &times).map(drop).map_err(|error| image.fail(path, error))
    })
}

pub fn truncate(image: &Image, args: &TruncateArgs) -> Result<(), Failure> {
    each(&args.paths, |path| {
        let (attr, _) = file_at(image, path)?;
        let size = SetAttr { size: Some(args.size), ..SetAttr::default() };
        image.fs.setattr(attr.ino, &size).map(drop).map_err(|error| image.fail(path, error))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_parsers() {
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        assert_eq!(parse_mode("0"), Ok(0));
        assert!(parse_mode("10000").is_err() && parse_mode("9").is_err() && parse_mode("+7").is_err());
        assert_eq!(parse_owner("1000"), Ok(Owner { uid: Some(1000), gid: None }));
        assert_eq!(parse_owner("0:100"), Ok(Owner { uid: Some(0), gid: Some(100) }));
        assert_eq!(parse_owner(":7"), Ok(Owner { uid: None, gid: Some(7) }));
        assert!(parse_owner("65536").is_err() && parse_owner("root").is_err() && parse_owner("1:").is_err());
        assert_eq!(parse_epoch("@1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_epoch("5"), Ok(5));
        assert!(parse_epoch("-5").is_err() && parse_epoch("4294967296").is_err());
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("3G"), Ok(3 << 30));
        assert!(parse_size("").is_err() && parse_size("K").is_err() && parse_size("1KB").is_err());
        assert!(parse_size("-1").is_err() && parse_size("99999999999999999999").is_err());
    }
}
