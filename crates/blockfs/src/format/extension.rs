//! The extension record: everything version 1 lacks (journal, UUID, label,
//! feature flags) lives in block 0 after the superblock, with its own magic
//! and CRC-32C. Older drivers rewrite block 0 with zeros after byte 62, so
//! a missing or damaged record simply means "plain version 1 image".

use super::{le_u32, le_u64, put_u16, put_u32, put_u64, BLOCK_SIZE};
use crate::crc::crc32c;

/// Byte offset of the record in block 0 (62 rounded up to 8).
pub const EXTENSION_OFFSET: usize = 64;
pub const EXTENSION_SIZE: usize = 128;
/// `"BFSX"` read as a little-endian u32.
pub const EXTENSION_MAGIC: u32 = 0x5853_4642;
pub const EXTENSION_VERSION: u16 = 1;
pub const LABEL_SIZE: usize = 32;
const CRC_OFFSET: usize = EXTENSION_SIZE - 4;

/// Compatible feature: a journal lives in inode `journal_inode`.
pub const FEATURE_JOURNAL: u32 = 1 << 0;
/// Feature bits this implementation understands; an image with others in
/// `incompat_features` must not be written.
pub const KNOWN_INCOMPAT: u32 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension {
    pub version: u16,
    pub compat_features: u32,
    pub incompat_features: u32,
    pub uuid: [u8; 16],
    /// NUL-padded; up to 32 bytes.
    pub label: [u8; LABEL_SIZE],
    pub journal_inode: u32,
    /// Length of the journal's contiguous block run.
    pub journal_blocks: u32,
    /// First block of that run (the journal superblock).
    pub journal_first_block: u32,
    pub created_time: u64,
    pub last_check_time: u64,
    /// First unlinked-but-open inode (chained through `dtime`); 0 = none.
    pub orphan_head: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtensionError {
    /// No record: a plain version 1 image (or one an older driver synced).
    Missing,
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    UnsupportedVersion(u16),
    BadLength(u16),
}

impl Extension {
    pub fn new(uuid: [u8; 16], label: &[u8], created_time: u64) -> Self {
        let mut padded = [0u8; LABEL_SIZE];
        let len = label.len().min(LABEL_SIZE);
        padded[..len].copy_from_slice(&label[..len]);
        Extension {
            version: EXTENSION_VERSION,
            compat_features: 0,
            incompat_features: 0,
            uuid,
            label: padded,
            journal_inode: 0,
            journal_blocks: 0,
            journal_first_block: 0,
            created_time,
            last_check_time: 0,
            orphan_head: 0,
        }
    }

    /// The label without its NUL padding.
    pub fn has_journal(&self) -> bool {
        self.compat_features & FEATURE_JOURNAL != 0
    }

    pub fn label(&self) -> &[u8] {
        let end = self.label.iter().position(|&b| b == 0).unwrap_or(LABEL_SIZE);
        &self.label[..end]
    }

    pub fn decode_block(block: &[u8; BLOCK_SIZE]) -> Result<Self, ExtensionError> {
        let record = &block[EXTENSION_OFFSET..EXTENSION_OFFSET + EXTENSION_SIZE];
        if le_u32(record, 0) != EXTENSION_MAGIC {
            return Err(ExtensionError::Missing);
        }
        // The version comes first: a newer record may checksum differently,
        // and must still be recognised as "newer", not as "missing".
        let version = super::le_u16(record, 4);
        if version != EXTENSION_VERSION {
            return Err(ExtensionError::UnsupportedVersion(version));
        }
        let length = super::le_u16(record, 6);
        if length as usize != EXTENSION_SIZE {
            return Err(ExtensionError::BadLength(length));
        }
        let stored = le_u32(record, CRC_OFFSET);
        let computed = crc32c(&record[..CRC_OFFSET]);
        if stored != computed {
            return Err(ExtensionError::BadChecksum { stored, computed });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&record[16..32]);
        let mut label = [0u8; LABEL_SIZE];
        label.copy_from_slice(&record[32..64]);
        Ok(Extension {
            version,
            compat_features: le_u32(record, 8),
            incompat_features: le_u32(record, 12),
            uuid,
            label,
            journal_inode: le_u32(record, 64),
            journal_blocks: le_u32(record, 68),
            journal_first_block: le_u32(record, 88),
            created_time: le_u64(record, 72),
            last_check_time: le_u64(record, 80),
            orphan_head: le_u32(record, 92),
        })
    }

    pub fn encode_block(&self, block: &mut [u8; BLOCK_SIZE]) {
        let record = &mut block[EXTENSION_OFFSET..EXTENSION_OFFSET + EXTENSION_SIZE];
        record.fill(0);
        put_u32(record, 0, EXTENSION_MAGIC);
        put_u16(record, 4, self.version);
        put_u16(record, 6, EXTENSION_SIZE as u16);
        put_u32(record, 8, self.compat_features);
        put_u32(record, 12, self.incompat_features);
        record[16..32].copy_from_slice(&self.uuid);
        record[32..64].copy_from_slice(&self.label);
        put_u32(record, 64, self.journal_inode);
        put_u32(record, 68, self.journal_blocks);
        put_u64(record, 72, self.created_time);
        put_u64(record, 80, self.last_check_time);
        put_u32(record, 88, self.journal_first_block);
        put_u32(record, 92, self.orphan_head);
        let crc = crc32c(&record[..CRC_OFFSET]);
        put_u32(record, CRC_OFFSET, crc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_label() {
        let mut ext = Extension::new([7; 16], b"rootfs", 1_700_000_000);
        ext.compat_features = FEATURE_JOURNAL;
        ext.journal_inode = 1;
        ext.journal_blocks = 1024;
        ext.journal_first_block = 400;
        ext.orphan_head = 17;
        let mut block = [0u8; BLOCK_SIZE];
        ext.encode_block(&mut block);
        assert_eq!(&block[64..68], b"BFSX");
        assert!(block[..64].iter().all(|&b| b == 0), "superblock bytes untouched");
        let back = Extension::decode_block(&block).unwrap();
        assert_eq!(back, ext);
        assert_eq!(back.label(), b"rootfs");
    }

    #[test]
    fn zeroed_tail_means_missing() {
        let block = [0u8; BLOCK_SIZE];
        assert_eq!(Extension::decode_block(&block), Err(ExtensionError::Missing));
    }

    #[test]
    fn newer_versions_are_recognised() {
        let mut block = [0u8; BLOCK_SIZE];
        Extension::new([1; 16], b"x", 5).encode_block(&mut block);
        block[EXTENSION_OFFSET + 4] = 2;
        assert_eq!(Extension::decode_block(&block), Err(ExtensionError::UnsupportedVersion(2)));
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let ext = Extension::new([1; 16], b"x", 5);
        let mut block = [0u8; BLOCK_SIZE];
        ext.encode_block(&mut block);
        for byte in EXTENSION_OFFSET + 8..EXTENSION_OFFSET + EXTENSION_SIZE {
            let mut damaged = block;
            damaged[byte] ^= 0x10;
            assert!(
                matches!(Extension::decode_block(&damaged), Err(ExtensionError::BadChecksum { .. })),
                "flip at byte {byte} not detected"
            );
        }
    }
}
