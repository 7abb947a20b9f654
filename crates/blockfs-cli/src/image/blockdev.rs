//! Images on block devices (`/dev/loop0`, `/dev/vdb`): telling a device
//! from a file, opening it exclusively as mke2fs does, and the checks
//! made before formatting one: not mounted, not in use, and not holding
//! another filesystem (unless `--force`).
//!
//! Linux gives a block device opened with `O_EXCL` (without `O_CREAT`) to
//! one opener only, and never while a kernel filesystem has it mounted, so
//! an exclusive open is the check that covers every holder; the mount
//! table is read as well to name the mount point in the message.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use blockfs::format::extension::Extension;
use blockfs::format::superblock::MAGIC;
use blockfs::format::{Block, BLOCK_SIZE};
use blockfs::{BlockDevice, FileDevice};

/// Whether `path` names a block device (following symlinks, as opening does).
pub fn is_block_device(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|metadata| metadata.file_type().is_block_device())
}

/// Opens `path` for reading, and for writing if `write`; a block device
/// opened for writing is opened exclusively. A device someone else holds
/// gives an error that says so.
pub fn open(path: &Path, write: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    if write && is_block_device(path) {
        options.custom_flags(libc::O_EXCL);
    }
    options.open(path).map_err(|error| match error.raw_os_error() {
        Some(libc::EBUSY) => io::Error::new(
            io::ErrorKind::ResourceBusy,
            "device is in use (mounted, or opened exclusively by another program)",
        ),
        _ => error,
    })
}

/// Why a device may not be formatted.
#[derive(Debug)]
pub enum DeviceError {
    /// The device is mounted at this mount point.
    Mounted {
        device: PathBuf,
        at: String,
    },
    /// The device is an active swap area.
    Swap(PathBuf),
    /// The device holds a filesystem or other data of this kind; `--force` overrides.
    Signature {
        device: PathBuf,
        kind: &'static str,
    },
    Io {
        device: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Mounted { device, at } => {
                write!(f, "{}: device is mounted on {at}; unmount it first", device.display())
            }
            DeviceError::Swap(device) => write!(f, "{}: device is in use as swap", device.display()),
            DeviceError::Signature { device, kind } => {
                write!(f, "{}: device holds {kind}; refusing to overwrite it (use --force)", device.display())
            }
            DeviceError::Io { device, error } => write!(f, "{}: {error}", device.display()),
        }
    }
}

impl std::error::Error for DeviceError {}

/// Opens the block device `device` exclusively for formatting, after
/// checking that it is not mounted or used as swap and (unless `force`)
/// that it holds no filesystem or other recognisable data.
pub fn open_for_format(device: &Path, force: bool) -> Result<File, DeviceError> {
    let io_error = |error| DeviceError::Io { device: device.to_owned(), error };
    let rdev = fs::metadata(device).map_err(io_error)?.rdev();
    if let Some(at) = mount_point_of(rdev, "/proc/self/mounts").map_err(io_error)? {
        return Err(DeviceError::Mounted { device: device.to_owned(), at });
    }
    if listed_in(rdev, "/proc/swaps", 0).map_err(io_error)? {
        return Err(DeviceError::Swap(device.to_owned()));
    }
    let mut file = open(device, true).map_err(io_error)?;
    if !force {
        let mut head = Vec::with_capacity(HEAD_BYTES);
        (&mut file).take(HEAD_BYTES as u64).read_to_end(&mut head).map_err(io_error)?;
        if let Some(kind) = signature(&head) {
            return Err(DeviceError::Signature { device: device.to_owned(), kind });
        }
    }
    Ok(file)
}

/// Bytes zeroed at the start of a device before formatting it, so no
/// other filesystem's signature (btrfs at 64 KiB, a partition table's
/// backup records) survives between BlockFS's own structures.
const WIPE_BYTES: u64 = 1 << 20;

/// The size of the device `file` in blocks, capped at `max_blocks`.
pub fn device_blocks(file: &File, max_blocks: u32) -> io::Result<u32> {
    let file = file.try_clone()?;
    Ok(FileDevice::from_file(file, false)?.block_count().min(max_blocks))
}

/// Zeroes the device's first MiB (or all of it, if smaller).
pub fn wipe_start(file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let blocks = device_blocks(file, u32::MAX)? as u64;
    let length = WIPE_BYTES.min(blocks * BLOCK_SIZE as u64) as usize;
    file.write_all_at(&vec![0u8; length], 0)
}

/// Zeroes the journal area of a device just formatted, past the blocks
/// format() wrote, so that no record of a filesystem made on the device
/// earlier can look like a later transaction of this one. (A new image
/// file is all zeros already.)
pub fn zero_journal(device: &mut FileDevice) -> blockfs::Result<()> {
    let mut block: Block = [0; BLOCK_SIZE];
    device.read_block(0, &mut block)?;
    let Ok(extension) = Extension::decode_block(&block) else { return Ok(()) };
    if !extension.has_journal() {
        return Ok(());
    }
    const CHUNK_BLOCKS: u32 = 256;
    let zeros = vec![0u8; CHUNK_BLOCKS as usize * BLOCK_SIZE];
    // The journal's own superblock and its first record block stay.
    let mut next = extension.journal_first_block + 2;
    let end = extension.journal_first_block + extension.journal_blocks;
    while next < end {
        let count = CHUNK_BLOCKS.min(end - next);
        device.write_blocks(next, &zeros[..count as usize * BLOCK_SIZE])?;
        next += count;
    }
    Ok(device.flush()?)
}

/// After a failed format or populate: zero block 0, so the half-made
/// filesystem is not taken for a BlockFS image (best effort).
pub fn unmark(file: &File) {
    use std::os::unix::fs::FileExt;
    let _ = file.write_all_at(&[0u8; BLOCK_SIZE], 0).and_then(|()| file.sync_data());
}

/// The mount point of the first mount whose source is the device `rdev`.
fn mount_point_of(rdev: u64, table: &str) -> io::Result<Option<String>> {
    let table = match fs::read_to_string(table) {
        Ok(table) => table,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(table.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (source, point) = (fields.next()?, fields.next()?);
        same_device(&unescape(source), rdev).then(|| unescape(point))
    }))
}

/// Whether field `column` of some line of `table` (e.g. /proc/swaps) names
/// the device `rdev`.
fn listed_in(rdev: u64, table: &str, column: usize) -> io::Result<bool> {
    match fs::read_to_string(table) {
        Ok(table) => Ok(table
            .lines()
            .filter_map(|line| line.split_whitespace().nth(column))
            .any(|name| same_device(&unescape(name), rdev))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

fn same_device(name: &str, rdev: u64) -> bool {
    name.starts_with('/')
        && fs::metadata(name).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == rdev)
}

/// The mount table writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits).ok().and_then(|text| u8::from_str_radix(text, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes read from the start of a device to look for signatures (the
/// btrfs superblock sits at 64 KiB).
pub const HEAD_BYTES: usize = 0x10000 + 0x1000;

/// What the first bytes of a device hold, if recognisable: a filesystem,
/// a partition table, swap, LUKS or an archive.
pub fn signature(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let table: [(usize, &[u8], &'static str); 13] = [
        (0, &MAGIC.to_le_bytes(), "a BlockFS filesystem"),
        (1080, &[0x53, 0xEF], "an ext2/ext3/ext4 filesystem"),
        (0, b"XFSB", "an XFS filesystem"),
        (0x10040, b"_BHRfS_M", "a btrfs filesystem"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (0, b"hsqs", "a squashfs filesystem"),
        (0x8001, b"CD001", "an ISO 9660 filesystem"),
        (4086, b"SWAPSPACE2", "a swap area"),
        (4086, b"SWAP-SPACE", "a swap area"),
        (512, b"EFI PART", "a GPT partition table"),
        (1024, &[0x10, 0x20, 0xF5, 0xF2], "an F2FS filesystem"),
        (3, b"NTFS    ", "an NTFS filesystem"),
        (257, b"ustar", "a tar archive"),
    ];
    if let Some(&(_, _, kind)) = table.iter().find(|(offset, magic, _)| at(*offset, magic)) {
        return Some(kind);
    }
    if at(54, b"FAT") || at(82, b"FAT32") {
        return Some("a FAT filesystem");
    }
    if at(510, &[0x55, 0xAA]) {
        return Some("a partition table or boot sector");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut head = vec![0u8; HEAD_BYTES];
        head[offset..offset + magic.len()].copy_from_slice(magic);
        head
    }

    #[test]
    fn recognises_common_signatures() {
        assert_eq!(signature(&vec![0u8; HEAD_BYTES]), None);
        assert_eq!(signature(&[]), None);
        assert_eq!(signature(&head_with(0, &MAGIC.to_le_bytes())), Some("a BlockFS filesystem"));
        assert_eq!(signature(&head_with(1080, &[0x53, 0xEF])), Some("an ext2/ext3/ext4 filesystem"));
        assert_eq!(signature(&head_with(0x10040, b"_BHRfS_M")), Some("a btrfs filesystem"));
        assert_eq!(signature(&head_with(510, &[0x55, 0xAA])), Some("a partition table or boot sector"));
        assert_eq!(signature(&head_with(257, b"ustar")), Some("a tar archive"));
        // A short read (a tiny device) is not an error.
        assert_eq!(signature(&head_with(1080, &[0x53, 0xEF])[..1081]), None);
    }

    #[test]
    fn mount_table_fields_are_unescaped() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
