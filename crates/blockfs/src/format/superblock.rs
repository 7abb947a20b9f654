//! The 62-byte superblock at the start of block 0.

use super::{le_u16, le_u32, le_u64, put_u16, put_u32, put_u64, BLOCK_SIZE};

/// `"BLKF"` read as a little-endian u32.
pub const MAGIC: u32 = 0x424C_4B46;
/// Bytes of block 0 the superblock occupies; the extension record follows.
pub const SUPERBLOCK_SIZE: usize = 62;
/// The seed's informational group sizes, written as the existing tools do.
pub const BLOCKS_PER_GROUP: u32 = 8192;
pub const INODES_PER_GROUP: u32 = 2048;
pub const DEFAULT_MAX_MOUNT_COUNT: u16 = 100;

/// `state` value of a cleanly unmounted filesystem.
pub const STATE_CLEAN: u16 = 1;
/// `state` value while mounted read-write (or after a crash).
pub const STATE_DIRTY: u16 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub magic: u32,
    pub block_count: u32,
    pub inode_count: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub first_data_block: u32,
    pub block_size: u32,
    pub inode_size: u16,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub mount_time: u64,
    pub write_time: u64,
    pub mount_count: u16,
    pub max_mount_count: u16,
    pub state: u16,
    pub errors: u16,
}

/// Why a superblock was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// The device is smaller than one block: there is no block 0.
    TooShort,
    BadMagic(u32),
    BadBlockSize(u32),
    BadInodeSize(u16),
}

impl Superblock {
    /// Decodes the first 62 bytes. Only the constants are validated here;
    /// geometry is checked by [`super::geometry::Geometry::from_superblock`].
    pub fn decode(bytes: &[u8; SUPERBLOCK_SIZE]) -> Result<Self, SuperblockError> {
        let sb = Superblock {
            magic: le_u32(bytes, 0),
            block_count: le_u32(bytes, 4),
            inode_count: le_u32(bytes, 8),
            free_blocks: le_u32(bytes, 12),
            free_inodes: le_u32(bytes, 16),
            first_data_block: le_u32(bytes, 20),
            block_size: le_u32(bytes, 24),
            inode_size: le_u16(bytes, 28),
            blocks_per_group: le_u32(bytes, 30),
            inodes_per_group: le_u32(bytes, 34),
            mount_time: le_u64(bytes, 38),
            write_time: le_u64(bytes, 46),
            mount_count: le_u16(bytes, 54),
            max_mount_count: le_u16(bytes, 56),
            state: le_u16(bytes, 58),
            errors: le_u16(bytes, 60),
        };
        if sb.magic != MAGIC {
            return Err(SuperblockError::BadMagic(sb.magic));
        }
        if sb.block_size as usize != BLOCK_SIZE {
            return Err(SuperblockError::BadBlockSize(sb.block_size));
        }
        if sb.inode_size as usize != super::inode::INODE_SIZE {
            return Err(SuperblockError::BadInodeSize(sb.inode_size));
        }
        Ok(sb)
    }

    /// Decodes the superblock from the start of block 0.
    pub fn decode_block(block: &[u8; BLOCK_SIZE]) -> Result<Self, SuperblockError> {
        let mut head = [0u8; SUPERBLOCK_SIZE];
        head.copy_from_slice(&block[..SUPERBLOCK_SIZE]);
        Self::decode(&head)
    }

    pub fn encode(&self, bytes: &mut [u8; SUPERBLOCK_SIZE]) {
        put_u32(bytes, 0, self.magic);
        put_u32(bytes, 4, self.block_count);
        put_u32(bytes, 8, self.inode_count);
        put_u32(bytes, 12, self.free_blocks);
        put_u32(bytes, 16, self.free_inodes);
        put_u32(bytes, 20, self.first_data_block);
        put_u32(bytes, 24, self.block_size);
        put_u16(bytes, 28, self.inode_size);
        put_u32(bytes, 30, self.blocks_per_group);
        put_u32(bytes, 34, self.inodes_per_group);
        put_u64(bytes, 38, self.mount_time);
        put_u64(bytes, 46, self.write_time);
        put_u16(bytes, 54, self.mount_count);
        put_u16(bytes, 56, self.max_mount_count);
        put_u16(bytes, 58, self.state);
        put_u16(bytes, 60, self.errors);
    }

    /// Writes the superblock into the start of block 0, leaving the rest
    /// (the extension record) untouched.
    pub fn encode_block(&self, block: &mut [u8; BLOCK_SIZE]) {
        let mut head = [0u8; SUPERBLOCK_SIZE];
        self.encode(&mut head);
        block[..SUPERBLOCK_SIZE].copy_from_slice(&head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            magic: MAGIC,
            block_count: 65536,
            inode_count: 16384,
            free_blocks: 60000,
            free_inodes: 16000,
            first_data_block: 387,
            block_size: 4096,
            inode_size: 96,
            blocks_per_group: BLOCKS_PER_GROUP,
            inodes_per_group: INODES_PER_GROUP,
            mount_time: 0x0102_0304_0506_0708,
            write_time: 0x1112_1314_1516_1718,
            mount_count: 3,
            max_mount_count: 100,
            state: STATE_CLEAN,
            errors: 1,
        }
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        let mut bytes = [0u8; SUPERBLOCK_SIZE];
        sb.encode(&mut bytes);
        assert_eq!(Superblock::decode(&bytes), Ok(sb));
    }

    #[test]
    fn field_offsets_follow_the_seed() {
        let mut bytes = [0u8; SUPERBLOCK_SIZE];
        sample().encode(&mut bytes);
        assert_eq!(&bytes[0..4], b"FKLB");
        assert_eq!(&bytes[24..28], &4096u32.to_le_bytes());
        assert_eq!(&bytes[28..30], &96u16.to_le_bytes());
        assert_eq!(&bytes[38..46], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&bytes[54..56], &3u16.to_le_bytes());
        assert_eq!(&bytes[58..60], &1u16.to_le_bytes());
    }

    #[test]
    fn rejects_wrong_constants() {
        let mut bytes = [0u8; SUPERBLOCK_SIZE];
        let mut sb = sample();
        sb.magic = 0x1234;
        sb.encode(&mut bytes);
        assert_eq!(Superblock::decode(&bytes), Err(SuperblockError::BadMagic(0x1234)));
        let mut sb = sample();
        sb.block_size = 1024;
        sb.encode(&mut bytes);
        assert_eq!(Superblock::decode(&bytes), Err(SuperblockError::BadBlockSize(1024)));
        let mut sb = sample();
        sb.inode_size = 128;
        sb.encode(&mut bytes);
        assert_eq!(Superblock::decode(&bytes), Err(SuperblockError::BadInodeSize(128)));
    }
}
