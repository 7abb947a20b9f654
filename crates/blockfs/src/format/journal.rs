//! Journal records. The journal is a run of blocks owned by a hidden inode:
//! block 0 of the run is the journal superblock, and a transaction is
//! written from block 1 as descriptor blocks (the home block numbers),
//! copies of those blocks, and one commit block whose CRC-32C covers the
//! descriptors and copies. Only one transaction lives in the journal at a
//! time: each is checkpointed (written home) right after it commits.

use super::{le_u32, le_u64, put_u32, put_u64, Block, BLOCK_SIZE};
use crate::crc::crc32c;

pub const JOURNAL_MAGIC: u32 = 0x4A53_4642; // "BFSJ"
pub const DESCRIPTOR_MAGIC: u32 = 0x4453_4642; // "BFSD"
pub const COMMIT_MAGIC: u32 = 0x4353_4642; // "BFSC"
/// Version 2 sums a transaction's body with CRC-32 (IEEE); version 1 (the
/// first journals) summed it with CRC-32C, which cannot tell two versions
/// of block 0 apart (see `crc`). Version 1 journals are still replayed,
/// and upgraded before anything is written to them.
pub const JOURNAL_VERSION: u32 = 2;
pub const JOURNAL_VERSION_CRC32C_BODY: u32 = 1;

const HEADER_SIZE: usize = 24;
/// Home block numbers one descriptor block holds.
pub const TARGETS_PER_DESCRIPTOR: usize = (BLOCK_SIZE - HEADER_SIZE) / 4;

/// Journal superblock: which transaction replay expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalSuperblock {
    pub version: u32,
    /// Blocks in the journal, this one included.
    pub block_count: u32,
    /// Sequence number of the next transaction; anything older in the
    /// journal is already checkpointed.
    pub sequence: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalRecordError {
    BadMagic,
    BadChecksum,
    UnsupportedVersion(u32),
}

fn seal(block: &mut Block, crc_at: usize) {
    let crc = crc32c(&block[..crc_at]);
    put_u32(block, crc_at, crc);
}

fn sealed(block: &Block, magic: u32, crc_at: usize) -> Result<(), JournalRecordError> {
    if le_u32(block, 0) != magic {
        return Err(JournalRecordError::BadMagic);
    }
    if le_u32(block, crc_at) != crc32c(&block[..crc_at]) {
        return Err(JournalRecordError::BadChecksum);
    }
    Ok(())
}

impl JournalSuperblock {
    // magic u32 | version u32 | block_count u32 | reserved u32 | sequence u64 | crc u32
    pub fn encode(&self) -> Block {
        let mut block = [0u8; BLOCK_SIZE];
        put_u32(&mut block, 0, JOURNAL_MAGIC);
        put_u32(&mut block, 4, self.version);
        put_u32(&mut block, 8, self.block_count);
        put_u64(&mut block, 16, self.sequence);
        seal(&mut block, HEADER_SIZE);
        block
    }

    pub fn decode(block: &Block) -> Result<Self, JournalRecordError> {
        sealed(block, JOURNAL_MAGIC, HEADER_SIZE)?;
        let version = le_u32(block, 4);
        if version != JOURNAL_VERSION && version != JOURNAL_VERSION_CRC32C_BODY {
            return Err(JournalRecordError::UnsupportedVersion(version));
        }
        Ok(JournalSuperblock { version, block_count: le_u32(block, 8), sequence: le_u64(block, 16) })
    }
}

/// One descriptor block: up to [`TARGETS_PER_DESCRIPTOR`] home blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub sequence: u64,
    /// Blocks logged by the whole transaction (all its descriptors).
    pub total: u32,
    pub targets: alloc::vec::Vec<u32>,
}

impl Descriptor {
    // magic u32 | count-here u32 | sequence u64 | total u32 | crc u32 | targets
    pub fn encode(&self) -> Block {
        debug_assert!(self.targets.len() <= TARGETS_PER_DESCRIPTOR);
        let mut block = [0u8; BLOCK_SIZE];
        put_u32(&mut block, 0, DESCRIPTOR_MAGIC);
        put_u32(&mut block, 4, self.targets.len() as u32);
        put_u64(&mut block, 8, self.sequence);
        put_u32(&mut block, 16, self.total);
        for (index, target) in self.targets.iter().enumerate() {
            put_u32(&mut block, HEADER_SIZE + 4 * index, *target);
        }
        // The CRC sits in the header but covers the targets too.
        put_u32(&mut block, 20, 0);
        let crc = crc32c(&block[..]);
        put_u32(&mut block, 20, crc);
        block
    }

    pub fn decode(block: &Block) -> Result<Self, JournalRecordError> {
        if le_u32(block, 0) != DESCRIPTOR_MAGIC {
            return Err(JournalRecordError::BadMagic);
        }
        let mut zeroed = *block;
        put_u32(&mut zeroed, 20, 0);
        if le_u32(block, 20) != crc32c(&zeroed[..]) {
            return Err(JournalRecordError::BadChecksum);
        }
        let count = (le_u32(block, 4) as usize).min(TARGETS_PER_DESCRIPTOR);
        let targets = (0..count).map(|index| le_u32(block, HEADER_SIZE + 4 * index)).collect();
        Ok(Descriptor { sequence: le_u64(block, 8), total: le_u32(block, 16), targets })
    }
}

/// The commit record closing a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub sequence: u64,
    /// Blocks logged (not counting descriptors).
    pub total: u32,
    /// CRC-32C over every descriptor block and every logged copy, in order.
    pub body_crc: u32,
}

impl Commit {
    // magic u32 | reserved u32 | sequence u64 | total u32 | body_crc u32 | crc u32
    pub fn encode(&self) -> Block {
        let mut block = [0u8; BLOCK_SIZE];
        put_u32(&mut block, 0, COMMIT_MAGIC);
        put_u64(&mut block, 8, self.sequence);
        put_u32(&mut block, 16, self.total);
        put_u32(&mut block, 20, self.body_crc);
        seal(&mut block, HEADER_SIZE);
        block
    }

    pub fn decode(block: &Block) -> Result<Self, JournalRecordError> {
        sealed(block, COMMIT_MAGIC, HEADER_SIZE)?;
        Ok(Commit { sequence: le_u64(block, 8), total: le_u32(block, 16), body_crc: le_u32(block, 20) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn records_round_trip() {
        let sb = JournalSuperblock { version: JOURNAL_VERSION, block_count: 1024, sequence: 77 };
        assert_eq!(JournalSuperblock::decode(&sb.encode()), Ok(sb));
        let descriptor = Descriptor { sequence: 9, total: 3, targets: vec![0, 5, 900] };
        assert_eq!(Descriptor::decode(&descriptor.encode()), Ok(descriptor));
        let commit = Commit { sequence: 9, total: 3, body_crc: 0xDEAD_BEEF };
        assert_eq!(Commit::decode(&commit.encode()), Ok(commit));
    }

    #[test]
    fn damage_is_detected() {
        let mut block = Commit { sequence: 1, total: 1, body_crc: 2 }.encode();
        block[9] ^= 1;
        assert_eq!(Commit::decode(&block), Err(JournalRecordError::BadChecksum));
        let mut block = Descriptor { sequence: 1, total: 1, targets: vec![44] }.encode();
        block[HEADER_SIZE] ^= 1;
        assert_eq!(Descriptor::decode(&block), Err(JournalRecordError::BadChecksum));
        let block = [0u8; BLOCK_SIZE];
        assert_eq!(JournalSuperblock::decode(&block), Err(JournalRecordError::BadMagic));
    }
}
