//! What the two concurrency stress tests (the library's and the FUSE
//! mount's) draw their random operations from, so both run the same mix.

use super::Rng;

/// Names in a worker's own directories: few, so creates collide and
/// renames replace.
pub const OWN_NAMES: usize = 8;
/// Names in the shared directory and in its subdirectories.
pub const SHARED_NAMES: usize = 6;
/// Past the 12 direct blocks and the single-indirect range (4 MiB + 48
/// KiB): writes here need the double-indirect block.
pub const FAR_OFFSET: u64 = (12 + 1024) * 4096;

pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// Deterministic bytes for one write.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where a write starts: in the direct blocks, a little further, and
/// rarely past the single-indirect range (a sparse file with a 4 MiB hole).
pub fn write_offset(rng: &mut Rng) -> u64 {
    match rng.below(40) {
        0 => FAR_OFFSET + rng.below(64 << 10) as u64,
        1..=15 => rng.below(48 << 10) as u64,
        _ => rng.below(256 << 10) as u64,
    }
}

/// How long a write is: tiny, within two blocks, or up to 40 KiB.
pub fn write_length(rng: &mut Rng) -> usize {
    match rng.below(3) {
        0 => rng.below(100),
        1 => rng.below(8 << 10),
        _ => rng.below(40 << 10),
    }
}

/// What a write does to a file's bytes in a model: a write of nothing
/// changes nothing, not even the size; a write past the end fills the gap
/// with zeros.
pub fn apply_write(content: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let end = offset as usize + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[offset as usize..end].copy_from_slice(data);
}
