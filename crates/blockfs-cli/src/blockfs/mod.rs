//! `blockfs`: the command line and its dispatch. The command groups are
//! the folders below: [`inspect`] (info, ls, cat, stat, readlink, probe),
//! [`copy`] (get, put, export, import), [`edit`] (mkdir, rm, mv, ln, ...),
//! [`mount`] and [`tune`]; [`commands`] gathers the subcommands that
//! copy and change.

pub mod commands;
pub mod copy;
pub mod edit;
pub mod inspect;
pub mod mount;
pub mod resize;
pub mod tune;

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use crate::image::Failure;
use crate::image::{Image, EXIT_STATUS_HELP};

/// Look inside BlockFS images, copy files in and out, and change them.
#[derive(Parser, Debug)]
#[command(name = "blockfs", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show geometry, usage, state and the extension record
    Info {
        /// The BlockFS image file
        image: PathBuf,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// List a directory's entries, sorted by name
    Ls {
        /// Long format: mode, links, owner, group, size, mtime (UTC), name
        #[arg(short = 'l')]
        long: bool,
        /// Include names starting with `.` (and the `.` and `..` entries)
        #[arg(short = 'a')]
        all: bool,
        /// List subdirectories recursively
        #[arg(short = 'R')]
        recursive: bool,
        #[command(flatten)]
        target: ListTarget,
    },
    /// Write a file's contents to standard output
    Cat(Target),
    /// Show an inode's attributes (a symlink's own, not its target's)
    Stat(Target),
    /// Print a symlink's target
    Readlink(Target),
    /// Tell what the boot-time detection would pick: BlockFS, TAR or neither
    #[command(after_help = crate::blockfs::inspect::probe::PROBE_STATUS_HELP)]
    Probe(crate::blockfs::inspect::probe::ProbeArgs),
    /// Mount an image (or a TAR archive, in RAM) with FUSE
    Mount(crate::blockfs::mount::MountArgs),
    #[command(flatten)]
    Files(crate::blockfs::commands::Command),
}

/// An image and a path in it.
#[derive(Args, Debug)]
pub struct Target {
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute path inside the image
    pub path: OsString,
}

/// As [`Target`], the path defaulting to the root.
#[derive(Args, Debug)]
pub struct ListTarget {
    /// The BlockFS image file
    pub image: PathBuf,
    /// Absolute path inside the image
    #[arg(default_value = "/")]
    pub path: OsString,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Probe answers with its exit status, not with success or failure.
    if let Command::Probe(args) = &cli.command {
        return crate::blockfs::inspect::probe::probe(args);
    }
    if let Command::Files(command) = &cli.command {
        if command.creates_files() {
            if let Err(error) = crate::interrupt::watch() {
                eprintln!("blockfs: cannot watch for signals: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let stdout = io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    let result = run(&cli.command, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`blockfs cat … | head`) is not an error.
        Err(Failure::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("blockfs: {failure}");
            match crate::interrupt::received() {
                Some(signal) => ExitCode::from(signal.exit_code()),
                None => ExitCode::from(failure.exit_code()),
            }
        }
    }
}

pub fn run(command: &Command, out: &mut impl Write) -> Result<(), Failure> {
    match command {
        Command::Info { image, json } => inspect::info(&Image::open(image)?, *json, out),
        Command::Ls { long, all, recursive, target } => {
            let options = inspect::LsOptions { long: *long, all: *all, recursive: *recursive };
            Image::open(&target.image)?.ls(target.path.as_bytes(), options, out)
        }
        Command::Cat(target) => Image::open(&target.image)?.cat(target.path.as_bytes(), out),
        Command::Stat(target) => Image::open(&target.image)?.stat(target.path.as_bytes(), out),
        Command::Readlink(target) => {
            let link_target = Image::open(&target.image)?.readlink(target.path.as_bytes())?;
            out.write_all(&link_target)?;
            writeln!(out)?;
            Ok(())
        }
        Command::Mount(args) => crate::blockfs::mount::run(args, out),
        // `main` answers probe itself, to return its status; this arm only
        // serves callers of `run`, who get the verdict printed.
        Command::Probe(args) => {
            crate::blockfs::inspect::probe::probe(args);
            Ok(())
        }
        Command::Files(command) => crate::blockfs::commands::run(command),
    }
}
