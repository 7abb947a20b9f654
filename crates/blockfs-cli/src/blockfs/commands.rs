//! The `blockfs` subcommands that copy files in and out of an image or
//! change it (the read-only inspection commands are in `inspect`).

use std::path::Path;

use clap::Subcommand;

use crate::blockfs::copy::export::{self, ExportArgs};
use crate::blockfs::copy::get::{self, GetArgs};
use crate::blockfs::copy::import::{self, ImportArgs};
use crate::blockfs::copy::put::{self, PutArgs};
use crate::blockfs::edit::{
    self, ChmodArgs, ChownArgs, LnArgs, MkdirArgs, MvArgs, RmArgs, RmdirArgs, TouchArgs, TruncateArgs,
};
use crate::blockfs::resize::{self, ResizeArgs};
use crate::blockfs::tune::{self, TuneArgs};
use crate::image::lock::Access;
use crate::image::{Failure, Image, EXIT_STATUS_HELP};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy a file or tree out of the image, like `cp -a` (never writes
    /// outside DEST, whatever the image holds)
    #[command(after_help = EXIT_STATUS_HELP)]
    Get(GetArgs),
    /// Copy host files or trees into the image, like `cp -a`
    #[command(after_help = EXIT_STATUS_HELP)]
    Put(PutArgs),
    /// Write the whole tree as a tar archive (GNU format)
    #[command(after_help = EXIT_STATUS_HELP)]
    Export(ExportArgs),
    /// Extract a tar archive into a directory of the image, like `tar -x`
    #[command(after_help = EXIT_STATUS_HELP)]
    Import(ImportArgs),
    /// Make directories
    #[command(after_help = EXIT_STATUS_HELP)]
    Mkdir(MkdirArgs),
    /// Remove files (and with -r, directories)
    #[command(after_help = EXIT_STATUS_HELP)]
    Rm(RmArgs),
    /// Remove empty directories
    #[command(after_help = EXIT_STATUS_HELP)]
    Rmdir(RmdirArgs),
    /// Rename or move a file or directory
    #[command(after_help = EXIT_STATUS_HELP)]
    Mv(MvArgs),
    /// Make a hard link, or with -s a symbolic link
    #[command(after_help = EXIT_STATUS_HELP)]
    Ln(LnArgs),
    /// Change permission bits (octal)
    #[command(after_help = EXIT_STATUS_HELP)]
    Chmod(ChmodArgs),
    /// Change owner and group (numeric)
    #[command(after_help = EXIT_STATUS_HELP)]
    Chown(ChownArgs),
    /// Set access and modification times, creating missing files
    #[command(after_help = EXIT_STATUS_HELP)]
    Touch(TouchArgs),
    /// Set a file's size, creating missing files
    #[command(after_help = EXIT_STATUS_HELP)]
    Truncate(TruncateArgs),
    /// Change image features: add a journal to a plain image
    #[command(after_help = EXIT_STATUS_HELP)]
    Tune(TuneArgs),
    /// Grow or shrink an unmounted image (size, inode count, or both)
    #[command(after_help = EXIT_STATUS_HELP)]
    Resize(ResizeArgs),
}

impl Command {
    /// Whether the command copies data in or out, and so cleans up after
    /// itself when interrupted (see [`crate::interrupt`]).
    pub fn creates_files(&self) -> bool {
        matches!(self, Command::Get(_) | Command::Put(_) | Command::Export(_) | Command::Import(_))
    }
}

pub fn run(command: &Command) -> Result<(), Failure> {
    match command {
        Command::Get(args) => get::get(args),
        Command::Put(args) => put::put(args),
        Command::Export(args) => export::export(args),
        Command::Import(args) => import::import(args),
        Command::Mkdir(args) => change(&args.image, |image| edit::mkdir(image, args)),
        Command::Rm(args) => change(&args.image, |image| edit::rm(image, args)),
        Command::Rmdir(args) => change(&args.image, |image| edit::rmdir(image, args)),
        Command::Mv(args) => change(&args.image, |image| edit::mv(image, args)),
        Command::Ln(args) => change(&args.image, |image| edit::ln(image, args)),
        Command::Chmod(args) => change(&args.image, |image| edit::chmod(image, args)),
        Command::Chown(args) => change(&args.image, |image| edit::chown(image, args)),
        Command::Touch(args) => change(&args.image, |image| edit::touch(image, args)),
        Command::Truncate(args) => change(&args.image, |image| edit::truncate(image, args)),
        Command::Tune(args) => tune::tune(args),
        Command::Resize(args) => resize::resize(args),
    }
}

/// Runs an edit on the image opened for writing.
fn change(image: &Path, edit: impl FnOnce(&Image) -> Result<(), Failure>) -> Result<(), Failure> {
    Image::with(image, Access::Write, edit)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        crate::blockfs::Cli::command().debug_assert();
    }
}
