//! The 96-byte inode and the file types its mode encodes.

use super::{le_u16, le_u32, put_u16, put_u32};

pub const INODE_SIZE: usize = 96;
/// Inodes never straddle a table block: 42 fit, 64 bytes stay unused.
pub const INODES_PER_BLOCK: u32 = (super::BLOCK_SIZE / INODE_SIZE) as u32;
pub const DIRECT_BLOCKS: usize = 12;
/// Where `dtime` lies in an inode: the orphan chain's link (see `orphan`).
pub const DTIME_OFFSET: usize = 20;

/// POSIX file-type bits of `mode`.
pub const S_IFMT: u16 = 0o170000;
pub const S_IFSOCK: u16 = 0o140000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFIFO: u16 = 0o010000;
/// The 12 permission bits (rwx for three classes plus setuid/setgid/sticky).
pub const PERMISSION_BITS: u16 = 0o7777;
const S_ISUID: u16 = 0o4000;
pub const S_ISGID: u16 = 0o2000;
const S_IXGRP: u16 = 0o0010;
/// `flags` bit of hidden system inodes (the journal): linked from no
/// directory, never shown, never freed by an older driver (links >= 1).
pub const SYSTEM_INODE_FLAG: u32 = 0x8000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileType {
    pub fn from_mode(mode: u16) -> Option<FileType> {
        Some(match mode & S_IFMT {
            S_IFREG => FileType::Regular,
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDevice,
            S_IFBLK => FileType::BlockDevice,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => return None,
        })
    }

    pub fn mode_bits(self) -> u16 {
        match self {
            FileType::Regular => S_IFREG,
            FileType::Directory => S_IFDIR,
            FileType::Symlink => S_IFLNK,
            FileType::CharDevice => S_IFCHR,
            FileType::BlockDevice => S_IFBLK,
            FileType::Fifo => S_IFIFO,
            FileType::Socket => S_IFSOCK,
        }
    }

    /// The ext2 numbering used in directory entries' `file_type` byte.
    pub fn dirent_code(self) -> u8 {
        match self {
            FileType::Regular => 1,
            FileType::Directory => 2,
            FileType::CharDevice => 3,
            FileType::BlockDevice => 4,
            FileType::Fifo => 5,
            FileType::Socket => 6,
            FileType::Symlink => 7,
        }
    }

    pub fn from_dirent_code(code: u8) -> Option<FileType> {
        Some(match code {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => return None,
        })
    }

    /// Whether the inode's block pointers address data (files, directories,
    /// symlink targets) rather than hold a device number or nothing.
    pub fn has_data_blocks(self) -> bool {
        matches!(self, FileType::Regular | FileType::Directory | FileType::Symlink)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskInode {
    pub mode: u16,
    pub uid: u16,
    pub size: u32,
    pub atime: u32,
    pub ctime: u32,
    pub mtime: u32,
    pub dtime: u32,
    pub gid: u16,
    pub links_count: u16,
    /// Data and indirect blocks held, in 4 KiB units.
    pub blocks: u32,
    pub flags: u32,
    pub direct: [u32; DIRECT_BLOCKS],
    pub indirect: u32,
    pub double_indirect: u32,
    pub triple_indirect: u32,
}

impl DiskInode {
    pub fn decode(bytes: &[u8; INODE_SIZE]) -> Self {
        let mut direct = [0u32; DIRECT_BLOCKS];
        for (index, pointer) in direct.iter_mut().enumerate() {
            *pointer = le_u32(bytes, 36 + 4 * index);
        }
        DiskInode {
            mode: le_u16(bytes, 0),
            uid: le_u16(bytes, 2),
            size: le_u32(bytes, 4),
            atime: le_u32(bytes, 8),
            ctime: le_u32(bytes, 12),
            mtime: le_u32(bytes, 16),
            dtime: le_u32(bytes, DTIME_OFFSET),
            gid: le_u16(bytes, 24),
            links_count: le_u16(bytes, 26),
            blocks: le_u32(bytes, 28),
            flags: le_u32(bytes, 32),
            direct,
            indirect: le_u32(bytes, 84),
            double_indirect: le_u32(bytes, 88),
            triple_indirect: le_u32(bytes, 92),
        }
    }

    pub fn encode(&self, bytes: &mut [u8; INODE_SIZE]) {
        put_u16(bytes, 0, self.mode);
        put_u16(bytes, 2, self.uid);
        put_u32(bytes, 4, self.size);
        put_u32(bytes, 8, self.atime);
        put_u32(bytes, 12, self.ctime);
        put_u32(bytes, 16, self.mtime);
        put_u32(bytes, DTIME_OFFSET, self.dtime);
        put_u16(bytes, 24, self.gid);
        put_u16(bytes, 26, self.links_count);
        put_u32(bytes, 28, self.blocks);
        put_u32(bytes, 32, self.flags);
        for (index, pointer) in self.direct.iter().enumerate() {
            put_u32(bytes, 36 + 4 * index, *pointer);
        }
        put_u32(bytes, 84, self.indirect);
        put_u32(bytes, 88, self.double_indirect);
        put_u32(bytes, 92, self.triple_indirect);
    }

    /// Decodes inode slot `slot` (0..42) of an inode-table block.
    pub fn decode_slot(block: &super::Block, slot: usize) -> Self {
        let mut raw = [0u8; INODE_SIZE];
        raw.copy_from_slice(&block[slot * INODE_SIZE..(slot + 1) * INODE_SIZE]);
        Self::decode(&raw)
    }

    /// The links count of inode slot `slot` of an inode-table block (free
    /// when 0), without decoding the rest.
    pub fn links_in_slot(block: &super::Block, slot: usize) -> u16 {
        le_u16(block, slot * INODE_SIZE + 26)
    }

    pub fn encode_slot(&self, block: &mut super::Block, slot: usize) {
        let mut raw = [0u8; INODE_SIZE];
        self.encode(&mut raw);
        block[slot * INODE_SIZE..(slot + 1) * INODE_SIZE].copy_from_slice(&raw);
    }

    /// An inode is free exactly when nothing links to it.
    pub fn is_free(&self) -> bool {
        self.links_count == 0
    }

    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    pub fn permissions(&self) -> u16 {
        self.mode & PERMISSION_BITS
    }

    /// The bits that run a file with its owner's privileges: set-user-ID,
    /// and set-group-ID when the group may execute (without that, the bit
    /// marks mandatory locking).
    pub fn privilege_bits(&self) -> u16 {
        let group_privilege = if self.mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP { S_ISGID } else { 0 };
        self.mode & S_ISUID | group_privilege
    }

    /// Device number of a character or block device inode, stored as ext2
    /// does: the old 16-bit form in `direct[0]`, or, when major or minor do
    /// not fit a byte, `direct[0] = 0` and the new 32-bit form in `direct[1]`.
    pub fn rdev(&self) -> (u32, u32) {
        if self.direct[0] != 0 {
            let old = self.direct[0];
            ((old >> 8) & 0xff, old & 0xff)
        } else {
            let new = self.direct[1];
            ((new & 0xfff00) >> 8, (new & 0xff) | ((new >> 12) & 0xfff00))
        }
    }

    /// Whether a device number fits the new encoding (12-bit major,
    /// 20-bit minor), as in Linux's `new_encode_dev`.
    pub fn rdev_fits(major: u32, minor: u32) -> bool {
        major <= 0xfff && minor <= 0xf_ffff
    }

    /// Stores a device number; the caller has checked [`Self::rdev_fits`].
    pub fn set_rdev(&mut self, major: u32, minor: u32) {
        self.direct = [0; DIRECT_BLOCKS];
        if major < 256 && minor < 256 {
            self.direct[0] = (major << 8) | minor;
        } else {
            self.direct[1] = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_field() {
        let mut inode = DiskInode {
            mode: 0x81ED,
            uid: 1000,
            size: 0xDEAD_BEEF,
            atime: 11,
            ctime: 12,
            mtime: 13,
            dtime: 14,
            gid: 100,
            links_count: 2,
            blocks: 77,
            flags: 0x8000_0001,
            direct: [0; DIRECT_BLOCKS],
            indirect: 500,
            double_indirect: 501,
            triple_indirect: 502,
        };
        for (index, pointer) in inode.direct.iter_mut().enumerate() {
            *pointer = 1000 + index as u32;
        }
        let mut bytes = [0u8; INODE_SIZE];
        inode.encode(&mut bytes);
        assert_eq!(DiskInode::decode(&bytes), inode);
        assert_eq!(&bytes[0..2], &[0xED, 0x81]);
        assert_eq!(&bytes[36..40], &1000u32.to_le_bytes());
        assert_eq!(&bytes[80..84], &1011u32.to_le_bytes());
        assert_eq!(&bytes[92..96], &502u32.to_le_bytes());
    }

    #[test]
    fn slots_do_not_overlap() {
        let mut block = [0u8; super::super::BLOCK_SIZE];
        for slot in 0..INODES_PER_BLOCK as usize {
            let inode = DiskInode { size: slot as u32 + 1, links_count: 1, ..Default::default() };
            inode.encode_slot(&mut block, slot);
        }
        for slot in 0..INODES_PER_BLOCK as usize {
            assert_eq!(DiskInode::decode_slot(&block, slot).size, slot as u32 + 1);
        }
        assert!(block[42 * 96..].iter().all(|&b| b == 0));
    }

    #[test]
    fn file_types_round_trip_through_mode_and_dirent_code() {
        for file_type in [
            FileType::Regular,
            FileType::Directory,
            FileType::Symlink,
            FileType::CharDevice,
            FileType::BlockDevice,
            FileType::Fifo,
            FileType::Socket,
        ] {
            assert_eq!(FileType::from_mode(file_type.mode_bits() | 0o644), Some(file_type));
            assert_eq!(FileType::from_dirent_code(file_type.dirent_code()), Some(file_type));
        }
        assert_eq!(FileType::from_mode(0o644), None);
        assert_eq!(FileType::from_dirent_code(0), None);
        assert_eq!(FileType::from_dirent_code(8), None);
    }

    #[test]
    fn rdev_old_and_new_encodings() {
        let mut inode = DiskInode::default();
        inode.set_rdev(8, 1);
        assert_eq!(inode.direct[0], 0x0801);
        assert_eq!(inode.rdev(), (8, 1));
        inode.set_rdev(259, 70000);
        assert_eq!(inode.direct[0], 0);
        assert_eq!(inode.rdev(), (259, 70000));
        assert!(DiskInode::rdev_fits(0xfff, 0xf_ffff));
        assert!(!DiskInode::rdev_fits(0x1000, 0));
        assert!(!DiskInode::rdev_fits(0, 0x10_0000));
    }
}
