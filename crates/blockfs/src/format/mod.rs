//! On-disk structures of the version 1 layout: bytes in, typed values out,
//! and back. Nothing here does I/O; validation that needs more context than
//! the bytes themselves (is a block inside the image?) lives with the caller.

pub mod dirent;
pub mod extension;
pub mod geometry;
pub mod inode;
pub mod journal;
pub mod superblock;

/// Every BlockFS block is 4 KiB.
pub const BLOCK_SIZE: usize = 4096;

/// One block's bytes.
pub type Block = [u8; BLOCK_SIZE];

/// Block pointers held by one indirect block.
pub const POINTERS_PER_BLOCK: usize = BLOCK_SIZE / 4;

pub(crate) fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

pub(crate) fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
