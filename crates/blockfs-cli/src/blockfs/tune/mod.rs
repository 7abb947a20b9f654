//! `blockfs tune --journal IMAGE`: gives an existing image a journal (one
//! made with `--no-journal`, or a plain version 1 image of the older tools),
//! or re-attaches the journal of an image whose extension record an older
//! kernel driver wiped.

use std::path::PathBuf;

use blockfs::fs::JournalAdded;
use clap::Args;

use crate::image::lock::Access;
use crate::image::{Failure, Image};
use crate::uuid;

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Add a journal (or re-attach the one an older driver detached)
    #[arg(long, required = true)]
    pub journal: bool,
    /// The BlockFS image file (not mounted)
    pub image: PathBuf,
}

pub fn tune(args: &TuneArgs) -> Result<(), Failure> {
    Image::with(&args.image, Access::Write, |image| {
        let id = uuid::unique();
        let added = image.fs.add_journal(id).map_err(|error| match error {
            blockfs::Error::Exists => Failure::host(&args.image, "already has a journal"),
            blockfs::Error::NoSpace => {
                Failure::host(&args.image, "no room for a journal (too small, or no contiguous free run)")
            }
            error => Failure::host(&args.image, error),
        })?;
        let (verb, inode, first, blocks) = match added {
            JournalAdded::Created { inode, first_block, blocks } => ("added", inode, first_block, blocks),
            JournalAdded::Reattached { inode, first_block, blocks } => {
                ("re-attached", inode, first_block, blocks)
            }
        };
        println!(
            "{}: journal {verb}: inode {inode}, blocks {first}..{} ({} KiB)",
            args.image.display(),
            first + blocks - 1,
            blocks * 4
        );
        Ok(())
    })
}
