//! `blockfs put`: copies host files and trees into an image with the
//! fidelity of `mkfs-blockfs --populate`, whose scanner and copier it
//! uses, placed as `cp` places them.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use blockfs::FileType;
use clap::Args;

use crate::blockfs::edit;
use crate::host::populate::{copy_into, CopyFailure, PopulateError};
use crate::host::tree::{self as hosttree, ScanOptions};
use crate::image::lock::Access;
use crate::image::{Failure, Image};
use crate::interrupt;
use crate::paths::{image_path, join, split_last, ImagePath};
use crate::progress::Progress;

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Copy directories recursively
    #[arg(short = 'r', short_alias = 'R', long)]
    pub recursive: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// Host files or directories to copy (symlinks are copied, not followed)
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Absolute path inside the image: an existing directory to copy into,
    /// or (with one source) the name for the copy
    #[arg(value_parser = image_path())]
    pub path: ImagePath,
    /// Store uids and gids above 65535 as 0 instead of failing
    #[arg(long)]
    pub squash_ids: bool,
    /// No progress line (it is shown only on a terminal anyway)
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn put(args: &PutArgs) -> Result<(), Failure> {
    let mut named = Vec::with_capacity(args.sources.len());
    for source in &args.sources {
        let metadata = fs::symlink_metadata(source).map_err(|error| Failure::host(source, error))?;
        if metadata.is_dir() && !args.recursive {
            return Err(Failure::host(source, "is a directory (use -r to copy it)"));
        }
        named.push((source.clone(), source_name(source)?));
    }
    Image::with(&args.image, Access::Write, |image| {
        let path = args.path.as_bytes();
        let (parent, parent_path) = place(image, path, &mut named)?;
        // The scan reads no content, so it is cheap to do before the copy
        // and catches what BlockFS cannot store before anything changes.
        let options = ScanOptions { squash_ids: args.squash_ids, ..ScanOptions::default() };
        let sources = hosttree::scan_sources(&named, options)
            .map_err(|error| Failure::at(image.path.display(), error))?;
        let free = image.fs.statfs();
        let needs = &sources.needs;
        if needs.blocks > free.free_blocks.into() || needs.inodes > free.free_inodes.into() {
            let message = format!(
                "not enough space: the copy needs {} blocks ({} free) and {} inodes ({} free)",
                needs.blocks, free.free_blocks, needs.inodes, free.free_inodes
            );
            return Err(image.fail(path, message));
        }
        // Names the copy creates (rather than replaces or merges into),
        // removed again if it is interrupted.
        let new_names: Vec<&[u8]> = named
            .iter()
            .map(|(_, name)| &name[..])
            .filter(|name| matches!(image.fs.lookup(parent, name), Err(blockfs::Error::NotFound)))
            .collect();
        let mut progress =
            Progress::for_stderr("blockfs put", Some((needs.entries, needs.file_bytes)), args.quiet);
        let copied = copy_into(&image.fs, &sources, parent, &parent_path, &mut progress);
        progress.finish();
        if copied.is_err() && interrupt::received().is_some() {
            remove_new(image, parent, &parent_path, &new_names);
        }
        copied.map_err(|error| failure(image, error))
    })
}

/// Removes what an interrupted copy created under `names` in `parent`.
/// Best effort: the failure to report is the interruption.
fn remove_new(image: &Image, parent: u32, parent_path: &[u8], names: &[&[u8]]) {
    for name in names {
        let path = join(parent_path, name);
        let removed = match image.fs.lookup(parent, name) {
            Ok(attr) if attr.kind == FileType::Directory => {
                edit::remove_tree(image, parent, name, &path, attr.ino)
            }
            Ok(_) => image.fs.unlink(parent, name).map_err(|error| image.fail(&path, error)),
            Err(_) => Ok(()),
        };
        if let Err(failure) = removed {
            eprintln!("blockfs: {failure}");
        }
    }
}

/// The name a source's copy gets inside a directory: its last component
/// (that of its absolute form for `.` or `..`).
fn source_name(source: &Path) -> Result<Vec<u8>, Failure> {
    let absolute;
    let name = match source.file_name() {
        Some(name) => name,
        None => {
            absolute = fs::canonicalize(source).map_err(|error| Failure::host(source, error))?;
            absolute.file_name().ok_or_else(|| Failure::host(source, "has no name to copy it under"))?
        }
    };
    Ok(name.as_bytes().to_vec())
}

/// Decides where the copies go, as `cp` does: into `path` if it is a
/// directory (or a symlink to one), else (one source only) to `path`
/// itself, renaming the source. Returns the directory's inode and path.
fn place(image: &Image, path: &[u8], named: &mut [(PathBuf, Vec<u8>)]) -> Result<(u32, Vec<u8>), Failure> {
    if let Some(dir) = image.directory_at(path)? {
        return Ok((dir.ino, path.to_vec()));
    }
    let [(_, name)] = named else {
        return Err(image.fail(path, "is not a directory (needed to copy several sources into it)"));
    };
    let Some((parent_path, last)) = split_last(path) else {
        return Err(image.fail(path, "is not a directory"));
    };
    *name = last.to_vec();
    let parent = image.attr_at(parent_path, true)?;
    if parent.kind != FileType::Directory {
        return Err(image.fail(parent_path, blockfs::Error::NotDir));
    }
    Ok((parent.ino, parent_path.to_vec()))
}

/// Host problems name the host file; problems storing it name the path
/// in the image, and the host file it came from.
fn failure(image: &Image, error: PopulateError) -> Failure {
    match error.failure {
        CopyFailure::Host(host) => Failure::host(&error.path, host),
        other => image.fail(&error.image_path, format_args!("{other} (copying {})", error.path.display())),
    }
}
