//! Where everything lives, computed from the superblock's two counts.

use super::inode::{DIRECT_BLOCKS, INODES_PER_BLOCK, INODE_SIZE};
use super::superblock::Superblock;
use super::{BLOCK_SIZE, POINTERS_PER_BLOCK};

/// Bits of block bitmap held by one bitmap block.
pub const BITS_PER_BITMAP_BLOCK: u32 = (BLOCK_SIZE * 8) as u32;
/// The root directory's inode number.
pub const ROOT_INODE: u32 = 0;
/// The most inodes the format allows (docs/FORMAT.md §1, default inode count).
pub const MAX_DEFAULT_INODES: u32 = 65536;
pub const MIN_DEFAULT_INODES: u32 = 672;

/// Indirect blocks needed to map `data_blocks` logical blocks: none for the
/// 12 direct ones, one single-indirect block for the next 1024, then the
/// double-indirect block and one second-level block per 1024 beyond.
pub fn indirect_blocks(data_blocks: u64) -> u64 {
    const DIRECT: u64 = DIRECT_BLOCKS as u64;
    const PER_BLOCK: u64 = POINTERS_PER_BLOCK as u64;
    if data_blocks <= DIRECT {
        0
    } else if data_blocks <= DIRECT + PER_BLOCK {
        1
    } else {
        2 + (data_blocks - DIRECT - PER_BLOCK).div_ceil(PER_BLOCK)
    }
}

/// Blocks a file of `size` bytes takes when written without holes: its
/// data blocks and the indirect blocks that map them.
pub fn file_blocks(size: u64) -> u64 {
    let data = size.div_ceil(BLOCK_SIZE as u64);
    data + indirect_blocks(data)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_count: u32,
    pub inode_count: u32,
    /// B: bitmap blocks, starting at block 1.
    pub bitmap_blocks: u32,
    /// I: inode-table blocks, starting at block `1 + B`.
    pub inode_table_blocks: u32,
}

/// Why a superblock's counts cannot describe a usable filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// The metadata would not leave room for even the root directory block.
    TooSmall {
        block_count: u32,
        needed: u64,
    },
    NoInodes,
    /// `first_data_block` disagrees with `1 + B + I`.
    FirstDataBlockMismatch {
        recorded: u32,
        computed: u32,
    },
}

impl Geometry {
    /// The layout rule of the seed: `B = ceil(blocks / 32768)`,
    /// `I = ceil(inodes * 96 / 4096)`.
    pub fn new(block_count: u32, inode_count: u32) -> Result<Self, GeometryError> {
        if inode_count == 0 {
            return Err(GeometryError::NoInodes);
        }
        let bitmap_blocks = block_count.div_ceil(BITS_PER_BITMAP_BLOCK);
        let table_bytes = inode_count as u64 * INODE_SIZE as u64;
        let inode_table_blocks = table_bytes.div_ceil(BLOCK_SIZE as u64);
        // Metadata plus one block for the root directory.
        let needed = 1 + bitmap_blocks as u64 + inode_table_blocks + 1;
        if needed > block_count as u64 {
            return Err(GeometryError::TooSmall { block_count, needed });
        }
        Ok(Geometry {
            block_count,
            inode_count,
            bitmap_blocks,
            inode_table_blocks: inode_table_blocks as u32,
        })
    }

    /// Geometry of an existing image, cross-checked with what it records.
    pub fn from_superblock(sb: &Superblock) -> Result<Self, GeometryError> {
        let geometry = Geometry::new(sb.block_count, sb.inode_count)?;
        if sb.first_data_block != geometry.first_data_block() {
            return Err(GeometryError::FirstDataBlockMismatch {
                recorded: sb.first_data_block,
                computed: geometry.first_data_block(),
            });
        }
        Ok(geometry)
    }

    pub fn first_bitmap_block(&self) -> u32 {
        1
    }

    pub fn first_inode_table_block(&self) -> u32 {
        1 + self.bitmap_blocks
    }

    pub fn first_data_block(&self) -> u32 {
        1 + self.bitmap_blocks + self.inode_table_blocks
    }

    pub fn data_blocks(&self) -> u32 {
        self.block_count - self.first_data_block()
    }

    /// Inodes with a slot in the table: `min(inode_count, 42 * I)`. The
    /// table-size formula can leave the last few inode numbers homeless.
    pub fn usable_inodes(&self) -> u32 {
        let slots = self.inode_table_blocks as u64 * INODES_PER_BLOCK as u64;
        slots.min(self.inode_count as u64) as u32
    }

    /// Block and slot of inode `ino`'s 96 bytes.
    pub fn inode_location(&self, ino: u32) -> (u32, usize) {
        let block = self.first_inode_table_block() + ino / INODES_PER_BLOCK;
        (block, (ino % INODES_PER_BLOCK) as usize)
    }

    /// Bitmap block and bit within it that track block `block`.
    pub fn bitmap_location(&self, block: u32) -> (u32, u32) {
        (self.first_bitmap_block() + block / BITS_PER_BITMAP_BLOCK, block % BITS_PER_BITMAP_BLOCK)
    }

    /// Whether `block` may hold file data (and so appear in a block map).
    pub fn is_data_block(&self, block: u32) -> bool {
        block >= self.first_data_block() && block < self.block_count
    }

    /// docs/FORMAT.md §1: `block_count / 4` clamped to [672, 65536], and when
    /// populating at least `entries × 1.25 + 64`.
    pub fn default_inode_count(block_count: u32, entries: u64) -> u32 {
        let by_size = (block_count / 4).clamp(MIN_DEFAULT_INODES, MAX_DEFAULT_INODES) as u64;
        let by_entries = if entries == 0 { 0 } else { entries + entries / 4 + 64 };
        by_size.max(by_entries).min(u32::MAX as u64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_layout_for_256_mib() {
        let geometry = Geometry::new(65536, 16384).unwrap();
        assert_eq!(geometry.bitmap_blocks, 2);
        assert_eq!(geometry.inode_table_blocks, 384);
        assert_eq!(geometry.first_inode_table_block(), 3);
        assert_eq!(geometry.first_data_block(), 387);
        // 42 * 384 = 16128 slots for 16384 inode numbers.
        assert_eq!(geometry.usable_inodes(), 16128);
    }

    #[test]
    fn inode_locations_never_straddle() {
        let geometry = Geometry::new(65536, 16384).unwrap();
        assert_eq!(geometry.inode_location(0), (3, 0));
        assert_eq!(geometry.inode_location(41), (3, 41));
        assert_eq!(geometry.inode_location(42), (4, 0));
    }

    #[test]
    fn bitmap_locations() {
        let geometry = Geometry::new(100_000, 1000).unwrap();
        assert_eq!(geometry.bitmap_blocks, 4);
        assert_eq!(geometry.bitmap_location(5), (1, 5));
        assert_eq!(geometry.bitmap_location(32768 + 9), (2, 9));
    }

    #[test]
    fn too_small_and_inconsistent_geometry_is_refused() {
        assert!(matches!(Geometry::new(3, 42), Err(GeometryError::TooSmall { .. })));
        assert_eq!(Geometry::new(100, 0), Err(GeometryError::NoInodes));
        assert!(Geometry::new(4, 42).is_ok());
    }

    #[test]
    fn file_blocks_at_the_mapping_boundaries() {
        const BLOCK: u64 = BLOCK_SIZE as u64;
        // Bytes covered by the direct and single-indirect pointers (the seed's figure).
        const WITHOUT_DOUBLE: u64 = 4_243_456;
        assert_eq!(file_blocks(0), 0);
        assert_eq!(file_blocks(1), 1);
        assert_eq!(file_blocks(12 * BLOCK), 12);
        assert_eq!(file_blocks(12 * BLOCK + 1), 13 + 1);
        assert_eq!(file_blocks(WITHOUT_DOUBLE), 1036 + 1);
        assert_eq!(file_blocks(WITHOUT_DOUBLE + 1), 1037 + 3);
        assert_eq!(file_blocks(u32::MAX as u64), 1_048_576 + 2 + 1023);
        assert_eq!(indirect_blocks(8192), 1 + 1 + 7);
    }

    #[test]
    fn default_inode_count_rule() {
        assert_eq!(Geometry::default_inode_count(256, 0), 672);
        assert_eq!(Geometry::default_inode_count(65536, 0), 16384);
        assert_eq!(Geometry::default_inode_count(1 << 20, 0), 65536);
        assert_eq!(Geometry::default_inode_count(65536, 20000), 25064);
    }
}
