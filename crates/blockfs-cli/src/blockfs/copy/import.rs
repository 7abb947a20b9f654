//! `blockfs import`: extracts a tar archive into a directory of an image,
//! as `tar -x` would. The members are created by the library's engine
//! ([`Extractor`]), the same one that builds the boot-time RAM root and
//! `mkfs-blockfs --populate ARCHIVE`: members replace what has their name
//! (a directory only while empty), a directory member updates a
//! directory, hard links link to the member named, directories get their
//! times last, and `./` describes the destination itself. The archive
//! streams through a fixed buffer ([`archive::for_each_event`]), so it
//! may be any size, or a pipe.
//!
//! The archive is untrusted: a leading `/` is dropped (as tar does), a
//! member whose path holds `..` is skipped with a warning, and parent
//! directories are looked up without following symlinks, so nothing is
//! created outside the destination directory. A member that cannot be
//! made is skipped with a warning naming it; a full or failing image ends
//! the import.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use blockfs::rootfs::{normalize, ExtractOptions, Extractor, LargeIds, LoadError, OnMemberError, Skipped};
use blockfs::FileType;
use clap::Args;

use crate::image::lock::Access;
use crate::image::{Failure, Image};
use crate::paths::{image_path, join, shown, ImagePath};
use crate::progress::Progress;
use crate::tar::archive::{self, ArchiveError};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Store uids and gids above 65535 as 0 instead of skipping the member
    #[arg(long)]
    pub squash_ids: bool,
    /// No progress line (it is shown only on a terminal anyway)
    #[arg(short, long)]
    pub quiet: bool,
    /// The BlockFS image file
    pub image: PathBuf,
    /// The tar archive (ustar, GNU or pax); `-` reads standard input
    pub archive: PathBuf,
    /// Absolute path of a directory inside the image to extract into
    #[arg(value_parser = image_path())]
    pub path: ImagePath,
}

impl From<ArchiveError> for Failure {
    fn from(error: ArchiveError) -> Self {
        Failure::host(&error.path, error.message())
    }
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
        let options = ExtractOptions {
            large_ids: if args.squash_ids { LargeIds::SquashTo(0) } else { LargeIds::Reject },
            latest_time: None,
            on_member_error: OnMemberError::Skip,
        };
        let reporter = Reporter { image, root: root.ino, root_path: path.to_vec() };
        let mut extractor = Extractor::new(&image.fs, root.ino, options);
        let mut progress = Progress::for_stderr("blockfs import", None, args.quiet);
        let read = archive::for_each_event(archive, archive_name, |event| {
            progress.archive_event(&event);
            let applied = extractor.apply(event);
            extractor.take_skipped().into_iter().for_each(|skipped| reporter.warn(skipped));
            applied.map_err(|error| reporter.fail(error))
        });
        progress.finish();
        if let Err(failure) = read {
            // Best effort: the failure to report is the reading's.
            let _ = extractor.abandon();
            return Err(failure);
        }
        let skipped = extractor.finish().map_err(|error| reporter.fail(error))?;
        skipped.into_iter().for_each(|skipped| reporter.warn(skipped));
        Ok(())
    })
}

/// Names members in messages by their path in the image.
struct Reporter<'a> {
    image: &'a Image,
    /// The destination directory.
    root: u32,
    root_path: Vec<u8>,
}

impl Reporter<'_> {
    /// Image path of a member below the destination.
    fn image_path(&self, below: &[u8]) -> Vec<u8> {
        match below.is_empty() {
            true => self.root_path.clone(),
            false => join(&self.root_path, below),
        }
    }

    /// An error that ends the import, at the member it concerns.
    fn fail(&self, error: LoadError) -> Failure {
        match error {
            LoadError::Filesystem { path, error } => {
                let below = normalize(&path).unwrap_or(path);
                self.image.fail(&self.image_path(&below), error)
            }
            other => self.image.fail(&self.root_path, other),
        }
    }

    /// Reports a member left out, where it would have gone.
    fn warn(&self, skipped: Skipped) {
        let path = match (skipped.path, &skipped.error) {
            (Some(path), error) if !matches!(error, LoadError::UnsupportedType { .. }) => path,
            (_, error) => {
                let message = match error {
                    LoadError::UnsupportedType { path, typeflag } => format!(
                        "skipping member {}: type '{}' is not supported",
                        shown(path),
                        typeflag.escape_ascii()
                    ),
                    LoadError::UnsafePath { path } => {
                        format!("skipping member {}: its path contains ..", shown(path))
                    }
                    LoadError::NameTooLong { path } => {
                        format!(
                            "skipping member {}: a name in its path is longer than 255 bytes",
                            shown(path)
                        )
                    }
                    other => format!("skipping member: {other}"),
                };
                return self.image.warn(&self.root_path, message);
            }
        };
        let reason = match skipped.error {
            // The member's own path passed, so the link target's did not.
            LoadError::UnsafePath { .. } => "link target contains ..".to_owned(),
            LoadError::HardLinkTargetMissing { target, .. } => {
                let target = self.image_path(&normalize(&target).unwrap_or(target));
                format!("link target {} is not in the image", String::from_utf8_lossy(&target))
            }
            LoadError::IdTooLarge { id, .. } => {
                format!("owner id {id} does not fit 16 bits (use --squash-ids)")
            }
            LoadError::FileTooBig { size, .. } => {
                format!("{size} bytes is past the 4 GiB - 1 file size limit")
            }
            LoadError::SymlinkTargetTooLong { len, .. } => {
                format!("symlink target of {len} bytes is over the 4095-byte limit")
            }
            LoadError::DeviceNumberTooLarge { major, minor, .. } => {
                format!("device {major}:{minor} does not fit an inode")
            }
            LoadError::Filesystem { error: blockfs::Error::IsDir, .. } if path.is_empty() => {
                "only a directory can describe the destination itself".to_owned()
            }
            LoadError::Filesystem { error: blockfs::Error::NotDir, .. } => {
                match self.non_directory_parent(&path) {
                    Some(name) => format!("{} is not a directory", shown(&name)),
                    None => blockfs::Error::NotDir.to_string(),
                }
            }
            LoadError::Filesystem { error, .. } => error.to_string(),
            other => other.to_string(),
        };
        self.image.warn(&self.image_path(&path), format_args!("{reason}; skipped"));
    }

    /// The first of the parents of `path` (below the destination) that
    /// is there but not a directory, looked up without following symlinks.
    fn non_directory_parent(&self, path: &[u8]) -> Option<Vec<u8>> {
        let names: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
        let mut ino = self.root;
        for name in &names[..names.len().saturating_sub(1)] {
            let found = self.image.fs.lookup(ino, name).ok()?;
            if found.kind != FileType::Directory {
                return Some(name.to_vec());
            }
            ino = found.ino;
        }
        None
    }
}
