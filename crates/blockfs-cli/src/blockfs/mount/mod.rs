//! `blockfs mount IMAGE MOUNTPOINT`: the command line of the FUSE driver
//! (`blockfs-fuse`), which does the work.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{self, Command};
use std::time::Duration;

use blockfs::format::BLOCK_SIZE;
use blockfs::fs::DEFAULT_CACHE_BLOCKS;
use blockfs_fuse::image::Source;
use blockfs_fuse::{daemon, MountConfig, Reason};
use clap::{Args, ValueEnum};

use crate::blockfs::Failure;

const BLOCKS_PER_MIB: usize = (1 << 20) / BLOCK_SIZE;
const DEFAULT_CACHE_MB: u32 = (DEFAULT_CACHE_BLOCKS / BLOCKS_PER_MIB) as u32;

#[derive(Args, Debug)]
pub struct MountArgs {
    /// A BlockFS image (mounted read-write in place) or a TAR archive
    /// (loaded into RAM, writable; changes vanish at unmount)
    pub image: PathBuf,
    /// The directory to mount on
    pub mountpoint: PathBuf,
    /// Stay in the foreground until unmounted (Ctrl-C unmounts); without
    /// it, return once the mount is up
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Mount options, comma-separated or repeated
    #[arg(short = 'o', value_name = "OPTION", value_delimiter = ',')]
    pub options: Vec<MountFlag>,
    /// Block cache size in MiB
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CACHE_MB,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub cache_mb: u32,
    /// Seconds between background syncs, so an abrupt stop loses at most
    /// that much unsynced work; 0 leaves it to fsync, sync and unmount
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub writeback_secs: u64,
    /// Seconds the kernel may cache attributes and names (fractions allowed)
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub ttl_secs: Duration,
    /// Threads answering requests [default: half the number of cores, at
    /// least 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// While requests come in quick succession the server reads them
    /// without sleeping, which makes a round trip about a third faster at
    /// the cost of a busy core per thread; it goes back to sleeping after
    /// a window of N microseconds in which it waited more than 50 per
    /// request on average. 0 always sleeps between requests [default: 1000
    /// when there are more cores than threads, else 0]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub poll_us: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MountFlag {
    /// Read-only: the kernel refuses every change
    Ro,
    /// Let users other than the one mounting use the mount (non-root users
    /// need user_allow_other in /etc/fuse.conf)
    #[value(name = "allow_other")]
    AllowOther,
    /// Honour device nodes (root only; default nodev), e.g. for a root filesystem
    Dev,
    /// Honour setuid and setgid bits (root only; default nosuid)
    Suid,
    /// Have the kernel check permissions even when only root can use the
    /// mount (it always does with allow_other or for a mount made by
    /// another user); costs a round trip per change in a directory
    #[value(name = "default_permissions")]
    DefaultPermissions,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a duration"))
}

impl MountArgs {
    fn config(&self) -> MountConfig {
        let threads = self.threads.map_or_else(blockfs_fuse::default_threads, usize::from);
        MountConfig {
            read_only: self.options.contains(&MountFlag::Ro),
            allow_other: self.options.contains(&MountFlag::AllowOther),
            dev: self.options.contains(&MountFlag::Dev),
            suid: self.options.contains(&MountFlag::Suid),
            ttl: self.ttl_secs,
            writeback: (self.writeback_secs > 0).then(|| Duration::from_secs(self.writeback_secs)),
            cache_blocks: self.cache_mb as usize * BLOCKS_PER_MIB,
            threads,
            poll: match self.poll_us {
                None => blockfs_fuse::default_poll(threads),
                Some(0) => None,
                Some(micros) => Some(Duration::from_micros(micros.into())),
            },
            kernel_permissions: self.options.contains(&MountFlag::DefaultPermissions),
        }
    }
}

impl From<blockfs_fuse::Error> for Failure {
    fn from(error: blockfs_fuse::Error) -> Self {
        match error.reason() {
            Reason::InUse => Failure::InUse(error.path().to_owned()),
            reason => Failure::at(error.path().display(), reason),
        }
    }
}

pub fn run(args: &MountArgs, out: &mut impl Write) -> Result<(), Failure> {
    // FUSE would mount on a file too, and serve a root directory there
    // that nothing can use.
    let mountpoint = &args.mountpoint;
    match fs::metadata(mountpoint) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(Failure::host(mountpoint, "not a directory; mount onto a directory")),
        Err(error) => return Err(Failure::host(mountpoint, error)),
    }
    if args.foreground {
        serve(args, out)
    } else {
        serve_in_background(args, out)
    }
}

fn serve(args: &MountArgs, out: &mut impl Write) -> Result<(), Failure> {
    let source = Source::probe(&args.image)?;
    Ok(source.serve(&args.mountpoint, &args.config(), |message| {
        writeln!(out, "{message}")?;
        out.flush()
    })?)
}

fn serve_in_background(args: &MountArgs, out: &mut impl Write) -> Result<(), Failure> {
    let command = foreground_command().map_err(|error| {
        Failure::at(args.mountpoint.display(), format!("cannot start the mount process: {error}"))
    })?;
    let Err(error) = daemon::start_in_background(command, &args.mountpoint, out) else {
        return Ok(());
    };
    match error.reason() {
        // The child has said why; exit as it did, so callers see the same
        // status as from a foreground mount (3: in use).
        Reason::Exited(status) => process::exit(status.code().unwrap_or(1)),
        _ => Err(error.into()),
    }
}

/// This very command line with `--foreground` added. `mount` is the first
/// argument (`blockfs` has no options before the subcommand), so the flag
/// goes right after it, ahead of any `--`.
fn foreground_command() -> io::Result<Command> {
    let mut command = Command::new(env::current_exe()?);
    command.arg("mount").arg("--foreground").args(env::args_os().skip(2));
    Ok(command)
}
