//! How many blocks a tree will take, computed before the image exists so
//! that a tree that cannot fit is refused without writing anything.

use blockfs::format::dirent::entry_size;
use blockfs::format::inode::DIRECT_BLOCKS;
use blockfs::format::{BLOCK_SIZE, POINTERS_PER_BLOCK};

const BLOCK: u64 = BLOCK_SIZE as u64;
const DIRECT: u64 = DIRECT_BLOCKS as u64;
const PER_INDIRECT: u64 = POINTERS_PER_BLOCK as u64;

/// Indirect blocks needed to map `data_blocks` logical blocks: none for the
/// 12 direct ones, one single-indirect block for the next 1024, then the
/// double-indirect block and one second-level block per 1024 beyond.
pub fn indirect_blocks(data_blocks: u64) -> u64 {
    if data_blocks <= DIRECT {
        0
    } else if data_blocks <= DIRECT + PER_INDIRECT {
        1
    } else {
        2 + (data_blocks - DIRECT - PER_INDIRECT).div_ceil(PER_INDIRECT)
    }
}

/// Blocks a file (or symlink target) of `size` bytes takes, data and
/// mapping together; every byte is written, so there are no holes.
pub fn file_blocks(size: u64) -> u64 {
    let data = size.div_ceil(BLOCK);
    data + indirect_blocks(data)
}

/// Blocks of a new directory holding `.`, `..` and `names`, added in order
/// to a fresh directory. Entries never cross a block, so each block is
/// filled until the next entry does not fit. The library places entries
/// first-fit, which never needs more blocks than this, so the estimate is
/// an upper bound that is exact for sorted, similar-length names.
pub fn directory_blocks<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut blocks = 1u64;
    let mut used = entry_size(1) + entry_size(2);
    for name in names {
        let needed = entry_size(name.len());
        if used + needed > BLOCK_SIZE {
            blocks += 1;
            used = 0;
        }
        used += needed;
    }
    blocks + indirect_blocks(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes covered by the direct and single-indirect pointers (the seed's figure).
    const WITHOUT_DOUBLE: u64 = 4_243_456;

    #[test]
    fn file_blocks_at_the_mapping_boundaries() {
        assert_eq!(file_blocks(0), 0);
        assert_eq!(file_blocks(1), 1);
        assert_eq!(file_blocks(12 * BLOCK), 12);
        assert_eq!(file_blocks(12 * BLOCK + 1), 13 + 1);
        assert_eq!(file_blocks(WITHOUT_DOUBLE), 1036 + 1);
        assert_eq!(file_blocks(WITHOUT_DOUBLE + 1), 1037 + 3);
        assert_eq!(file_blocks(u32::MAX as u64), 1_048_576 + 2 + 1023);
    }

    #[test]
    fn directory_blocks_pack_whole_entries() {
        assert_eq!(directory_blocks([]), 1);
        // 12-byte entries for 4-byte names: 24 bytes of dots, then 339 fit in block 0.
        let names: Vec<[u8; 4]> = (0..340u32).map(|i| i.to_le_bytes()).collect();
        assert_eq!(directory_blocks(names[..339].iter().map(|n| &n[..])), 1);
        assert_eq!(directory_blocks(names.iter().map(|n| &n[..])), 2);
        // Thirteen blocks of 255-byte names need the single-indirect block.
        let long = [b'x'; 255];
        assert_eq!(directory_blocks(std::iter::repeat_n(&long[..], 15 * 13)), 13 + 1);
    }
}
