//! `blockfs resize IMAGE [--size MB] [--inodes N]`: grows or shrinks an
//! unmounted image in place (blocks, inode count, or both) through
//! [`blockfs::resize`], extending a regular-file image before and
//! truncating it after. An image in use is refused (exit 3); an image not
//! unmounted cleanly is first recovered by a mount and unmount.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use blockfs::format::BLOCK_SIZE;
use blockfs::resize::{self, ResizeError, Summary, Target};
use blockfs::{BlockDevice, FileDevice, FileSystem, MountOptions};
use clap::Args;

use crate::image::lock::{self, Access, OpenError};
use crate::image::Failure;

const BLOCKS_PER_MB: u32 = (1 << 20) / BLOCK_SIZE as u32;
const MAX_SIZE_MB: u32 = u32::MAX / BLOCKS_PER_MB;

#[derive(Args, Debug)]
pub struct ResizeArgs {
    /// New size in megabytes (256 blocks of 4 KiB each) [default: unchanged]
    #[arg(short, long, value_name = "MB",
          value_parser = clap::value_parser!(u32).range(1..=MAX_SIZE_MB as i64))]
    pub size: Option<u32>,
    /// New inode count [default: unchanged]
    #[arg(short = 'N', long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub inodes: Option<u32>,
    /// The BlockFS image file or block device (not mounted)
    pub image: PathBuf,
}

pub fn resize(args: &ResizeArgs) -> Result<(), Failure> {
    let path = &args.image;
    let fail = |error: &dyn std::fmt::Display| Failure::host(path, error);
    let mut device = lock::open_image(path, Access::Write).map_err(|error| match error {
        OpenError::InUse => Failure::InUse(path.clone()),
        OpenError::Io(error) => fail(&error),
    })?;
    if resize::finish_interrupted(&mut device, false).map_err(|e| fail(&e))? {
        println!("{}: finished an interrupted resize", path.display());
    }
    let superblock = current(&mut device).map_err(|e| fail(&e))?;
    let target = Target {
        block_count: args.size.map_or(superblock.0, |mb| mb * BLOCKS_PER_MB),
        inode_count: args.inodes.unwrap_or(superblock.1),
    };
    if (target.block_count, target.inode_count) == superblock {
        println!(
            "{}: already {} blocks and {} inodes; nothing to do",
            path.display(),
            superblock.0,
            superblock.1
        );
        return Ok(());
    }
    let plan = match resize::plan(&mut device, target) {
        Err(ResizeError::NotClean) => {
            device = recover(device).map_err(|e| fail(&e))?;
            resize::plan(&mut device, target)
        }
        other => other,
    }
    .map_err(|e| fail(&e))?;

    let regular = device.file().metadata().map_err(|e| fail(&e))?.is_file();
    let needed = plan.device_blocks_needed();
    if device.block_count() < needed {
        if !regular {
            return Err(fail(&ResizeError::DeviceTooSmall { needed, device: device.block_count() }));
        }
        device = set_blocks(device.into_file(), needed).map_err(|e| fail(&e))?;
    }
    let summary = plan.execute(&mut device).map_err(|e| fail(&e))?;
    if regular && device.block_count() != target.block_count {
        let file = device.into_file();
        file.set_len(target.block_count as u64 * BLOCK_SIZE as u64)
            .and_then(|()| file.sync_all())
            .map_err(|e| fail(&e))?;
    }
    report(path, &summary);
    Ok(())
}

/// Block and inode counts of the image's superblock.
fn current(device: &mut FileDevice) -> blockfs::Result<(u32, u32)> {
    if device.block_count() == 0 {
        return Err(blockfs::Error::NotBlockFs(blockfs::format::superblock::SuperblockError::TooShort));
    }
    let mut block0 = [0u8; BLOCK_SIZE];
    device.read_block(0, &mut block0)?;
    let superblock =
        blockfs::format::superblock::Superblock::decode_block(&block0).map_err(blockfs::Error::NotBlockFs)?;
    Ok((superblock.block_count, superblock.inode_count))
}

/// A mount and unmount: replays the journal, frees orphans, marks clean.
fn recover(device: FileDevice) -> blockfs::Result<FileDevice> {
    let options = MountOptions { record_mount: false, relatime: false, ..MountOptions::default() };
    FileSystem::mount(device, options)?.unmount()
}

/// Grows the image file (sparse) to `blocks` blocks, keeping its lock.
fn set_blocks(file: File, blocks: u32) -> io::Result<FileDevice> {
    file.set_len(blocks as u64 * BLOCK_SIZE as u64)?;
    FileDevice::from_file(file, true)
}

fn report(path: &Path, summary: &Summary) {
    let mb = |blocks: u32| blocks as f64 / BLOCKS_PER_MB as f64;
    println!(
        "{}: resized from {} blocks ({:.1} MB), {} inodes to {} blocks ({:.1} MB), {} inodes",
        path.display(),
        summary.old_blocks,
        mb(summary.old_blocks),
        summary.old_inodes,
        summary.new_blocks,
        mb(summary.new_blocks),
        summary.new_inodes
    );
    println!(
        "  moved {} blocks, renumbered {} inodes{}; {} metadata blocks through a {}-block log",
        summary.moved_blocks,
        summary.renumbered_inodes,
        if summary.journal_moved { ", moved the journal" } else { "" },
        summary.logged_blocks,
        summary.log_blocks
    );
}
