//! `blockfs probe IMAGE`: what the boot-time detection would pick for this
//! file (seed, "Auto-Detection Mechanism"), told by the exit status too.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use blockfs::format::BLOCK_SIZE;
use blockfs::rootfs::{detect_bytes, Detected};
use clap::Args;

/// Exit statuses: which root filesystem the kernel would mount.
pub const PROBE_STATUS_HELP: &str = "Exit status: 0 BlockFS image, 10 TAR archive, 11 neither, 1 unreadable.";

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The file (image, archive or block device) to probe
    pub image: PathBuf,
}

pub fn probe(args: &ProbeArgs) -> ExitCode {
    let mut first_block = Vec::with_capacity(BLOCK_SIZE);
    let read =
        File::open(&args.image).and_then(|file| file.take(BLOCK_SIZE as u64).read_to_end(&mut first_block));
    if let Err(error) = read {
        eprintln!("blockfs: {}: {error}", args.image.display());
        return ExitCode::from(1);
    }
    let (verdict, status) = match detect_bytes(&first_block) {
        Detected::BlockFs => ("BlockFS image: mounted as a persistent root", 0),
        Detected::Tar => ("TAR archive: loaded into RAM as a volatile root", 10),
        Detected::Unknown => ("neither a BlockFS image nor a TAR archive", 11),
    };
    println!("{}: {verdict}", args.image.display());
    let _ = io::Write::flush(&mut io::stdout());
    ExitCode::from(status)
}
