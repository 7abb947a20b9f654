//! How many blocks a tree will take, computed before the image exists so
//! that a tree that cannot fit is refused without writing anything.

use blockfs::format::dirent::entry_size;
pub use blockfs::format::geometry::{file_blocks, indirect_blocks};
use blockfs::format::BLOCK_SIZE;

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
