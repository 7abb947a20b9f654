//! Values crossing the FUSE boundary: node ids, attributes, file types,
//! times, device numbers, owners and errors. Pure functions, no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blockfs::format::BLOCK_SIZE;
use blockfs::{Attr, FileType};
use fuser::{Errno, FileAttr, INodeNo, TimeOrNow};

/// BlockFS numbers its root directory 0, but FUSE reserves 0 and calls the
/// root 1 (`FUSE_ROOT_ID`), so every id is shifted by one.
pub fn fuse_ino(ino: u32) -> INodeNo {
    INodeNo(u64::from(ino) + 1)
}

/// The BlockFS inode behind a FUSE node id. The kernel only sends ids we
/// gave it; anything else names no inode.
pub fn blockfs_ino(ino: INodeNo) -> Result<u32, Errno> {
    ino.0.checked_sub(1).and_then(|ino| u32::try_from(ino).ok()).ok_or(Errno::ENOENT)
}

pub fn errno(error: blockfs::Error) -> Errno {
    Errno::from_i32(error.errno())
}

pub fn kind(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::Regular => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
    }
}

/// The file type in a `mode` from the kernel (`mknod`).
pub fn kind_of_mode(mode: u32) -> Result<FileType, Errno> {
    let type_bits = u16::try_from(mode & 0o170000).map_err(|_| Errno::EINVAL)?;
    FileType::from_mode(type_bits).ok_or(Errno::EINVAL)
}

/// The 12 permission bits of a `mode` (the kernel has applied the umask).
pub fn permissions(mode: u32) -> u16 {
    (mode & 0o7777) as u16
}

/// An owner id as the inode stores it. BlockFS keeps 16-bit ids; a larger
/// one is refused rather than truncated, which would hand the file to a
/// different user.
pub fn owner_id(id: u32) -> Result<u16, Errno> {
    u16::try_from(id).map_err(|_| Errno::EOVERFLOW)
}

fn system_time(seconds: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.into())
}

/// A time as the inode stores it: whole seconds in a u32, so times before
/// 1970 become 0 and times past 2106 the largest value.
pub fn stored_time(time: TimeOrNow) -> u32 {
    let time = match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    };
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs().min(u32::MAX.into()) as u32)
}

/// Linux's 32-bit device number encoding (`new_encode_dev`), which FUSE
/// uses for `rdev`: minor bits 0-7, major bits 8-19, minor bits 8-19 at 20.
pub fn encode_device((major, minor): (u32, u32)) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

pub fn decode_device(rdev: u32) -> (u32, u32) {
    ((rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00))
}

pub fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: fuse_ino(attr.ino),
        size: attr.size,
        // `st_blocks` counts 512-byte units.
        blocks: u64::from(attr.blocks) * (BLOCK_SIZE as u64 / 512),
        atime: system_time(attr.atime),
        mtime: system_time(attr.mtime),
        ctime: system_time(attr.ctime),
        // No creation time is stored; ctime is the closest (docs/FORMAT.md §5, times).
        crtime: system_time(attr.ctime),
        kind: kind(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink.into(),
        uid: attr.uid.into(),
        gid: attr.gid.into(),
        rdev: encode_device(attr.rdev),
        blksize: BLOCK_SIZE as u32,
        flags: 0,
    }
}

/// The attributes of a negative entry: inode 0 tells the kernel the name
/// does not exist; nothing else in them is read.
pub fn absent_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK_SIZE as u32,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_fuse_root_and_ids_round_trip() {
        assert_eq!(fuse_ino(blockfs::ROOT_INO), INodeNo::ROOT);
        for ino in [0, 1, 41, u32::MAX - 1, u32::MAX] {
            assert_eq!(blockfs_ino(fuse_ino(ino)), Ok(ino));
        }
        assert_eq!(blockfs_ino(INodeNo(0)), Err(Errno::ENOENT));
        assert_eq!(blockfs_ino(INodeNo(u64::from(u32::MAX) + 2)), Err(Errno::ENOENT));
    }

    #[test]
    fn device_numbers_match_linux_encoding() {
        // /dev/sda1 is 8:1, /dev/pts/300 is 136:300.
        assert_eq!(encode_device((8, 1)), 0x801);
        assert_eq!(encode_device((136, 300)), 0x10_882c);
        for device in [(0, 0), (8, 1), (136, 300), (4095, 0xfffff)] {
            assert_eq!(decode_device(encode_device(device)), device);
        }
    }

    #[test]
    fn times_clamp_to_the_stored_range() {
        let at = |seconds: u64| TimeOrNow::SpecificTime(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(stored_time(at(1_100_000_000)), 1_100_000_000);
        assert_eq!(stored_time(at(u64::from(u32::MAX) + 10)), u32::MAX);
        assert_eq!(stored_time(TimeOrNow::SpecificTime(UNIX_EPOCH - Duration::from_secs(5))), 0);
        let now = stored_time(TimeOrNow::Now);
        assert!(now > 1_700_000_000, "now is {now}");
    }

    #[test]
    fn modes_split_into_kind_and_permissions() {
        assert_eq!(kind_of_mode(0o100644), Ok(FileType::Regular));
        assert_eq!(kind_of_mode(0o060660), Ok(FileType::BlockDevice));
        assert_eq!(kind_of_mode(0o010600), Ok(FileType::Fifo));
        assert_eq!(kind_of_mode(0o4755), Err(Errno::EINVAL));
        assert_eq!(permissions(0o104755), 0o4755);
    }

    #[test]
    fn large_owner_ids_are_refused() {
        assert_eq!(owner_id(65535), Ok(65535));
        assert_eq!(owner_id(65536), Err(Errno::EOVERFLOW));
    }

    #[test]
    fn attributes_convert_with_units() {
        let attr = Attr {
            ino: 5,
            generation: 0,
            kind: FileType::CharDevice,
            perm: 0o620,
            nlink: 2,
            uid: 1000,
            gid: 5,
            size: 0,
            blocks: 3,
            atime: 10,
            mtime: 20,
            ctime: 30,
            rdev: (136, 300),
        };
        let converted = file_attr(&attr);
        assert_eq!(converted.ino, INodeNo(6));
        assert_eq!(converted.blocks, 24);
        assert_eq!(converted.kind, fuser::FileType::CharDevice);
        assert_eq!(converted.mtime, UNIX_EPOCH + Duration::from_secs(20));
        assert_eq!((converted.uid, converted.gid, converted.nlink), (1000, 5, 2));
        assert_eq!(decode_device(converted.rdev), (136, 300));
        assert_eq!(converted.blksize, 4096);
    }
}
