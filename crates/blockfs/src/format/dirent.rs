//! Directory entries: `inode u32, rec_len u16, name_len u8, file_type u8,
//! name`, and the walk over the entries packed in one directory block.

use super::{le_u16, le_u32, put_u16, put_u32, BLOCK_SIZE};

pub const DIRENT_HEADER_SIZE: usize = 8;
pub const MAX_NAME_LEN: usize = 255;

/// Bytes an entry with a name of `name_len` bytes needs, rounded up to 4.
pub const fn entry_size(name_len: usize) -> usize {
    (DIRENT_HEADER_SIZE + name_len + 3) & !3
}

/// The root is inode 0, so `.` and `..` entries may hold inode 0 and still
/// be live; only other names mark a free slot with inode 0.
pub fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirentHeader {
    pub inode: u32,
    pub rec_len: u16,
    pub name_len: u8,
    pub file_type: u8,
}

impl DirentHeader {
    pub fn decode(bytes: &[u8]) -> Self {
        DirentHeader {
            inode: le_u32(bytes, 0),
            rec_len: le_u16(bytes, 4),
            name_len: bytes[6],
            file_type: bytes[7],
        }
    }

    pub fn encode(&self, bytes: &mut [u8]) {
        put_u32(bytes, 0, self.inode);
        put_u16(bytes, 4, self.rec_len);
        bytes[6] = self.name_len;
        bytes[7] = self.file_type;
    }

    /// Whether `rec_len` can be a record length at all: at least a header
    /// and a multiple of 4. Anything else is padding that ends a block.
    pub fn rec_len_plausible(&self) -> bool {
        self.rec_len as usize >= DIRENT_HEADER_SIZE && self.rec_len % 4 == 0
    }
}

/// One record found in a directory block (live or free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// Byte offset of the record inside the block.
    pub offset: usize,
    pub header: DirentHeader,
    pub name: &'a [u8],
}

/// Whether a record names something: free records hold inode 0, except
/// `.` and `..` (the root's `..` may).
pub fn is_live_record(header: &DirentHeader, name: &[u8]) -> bool {
    header.inode != 0 || is_dot_or_dotdot(name)
}

impl RawEntry<'_> {
    pub fn is_live(&self) -> bool {
        is_live_record(&self.header, self.name)
    }

    /// Bytes of this record not needed by its own name (free for reuse).
    pub fn slack(&self) -> usize {
        if self.is_live() {
            self.header.rec_len as usize - entry_size(self.name.len())
        } else {
            self.header.rec_len as usize
        }
    }
}

/// How the walk of a block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEnd {
    /// The chain reached the end of the block or the directory's size, or
    /// stopped at zero padding.
    Clean,
    /// A record's `rec_len` runs past the block (or the directory's size):
    /// the straddling layout of the older host tool, or damage.
    Crosses { offset: usize },
    /// A record's name does not fit in its `rec_len`.
    NameOverflow { offset: usize },
    /// The chain stopped at bytes that are not zero padding.
    Garbage { offset: usize },
}

/// Walks the records of one directory block, of which only the first
/// `limit` bytes belong to the directory (its size may end mid-block).
pub struct BlockWalk<'a> {
    block: &'a [u8; BLOCK_SIZE],
    limit: usize,
    offset: usize,
    end: Option<BlockEnd>,
}

impl<'a> BlockWalk<'a> {
    pub fn new(block: &'a [u8; BLOCK_SIZE], limit: usize) -> Self {
        BlockWalk { block, limit: limit.min(BLOCK_SIZE), offset: 0, end: None }
    }

    /// How the walk ended; `None` until the iterator is exhausted.
    pub fn end(&self) -> Option<BlockEnd> {
        self.end
    }

    /// Offset just past the last record returned.
    pub fn position(&self) -> usize {
        self.offset
    }

    fn finish(&mut self, end: BlockEnd) -> Option<RawEntry<'a>> {
        self.end = Some(end);
        None
    }
}

impl<'a> Iterator for BlockWalk<'a> {
    type Item = RawEntry<'a>;

    fn next(&mut self) -> Option<RawEntry<'a>> {
        if self.end.is_some() {
            return None;
        }
        let offset = self.offset;
        let rest = &self.block[offset.min(self.limit)..self.limit];
        if rest.len() < DIRENT_HEADER_SIZE {
            return if rest.iter().all(|&b| b == 0) {
                self.finish(BlockEnd::Clean)
            } else {
                self.finish(BlockEnd::Garbage { offset })
            };
        }
        let header = DirentHeader::decode(rest);
        if !header.rec_len_plausible() {
            return if rest.iter().all(|&b| b == 0) {
                self.finish(BlockEnd::Clean)
            } else {
                self.finish(BlockEnd::Garbage { offset })
            };
        }
        let rec_len = header.rec_len as usize;
        if rec_len > rest.len() {
            return self.finish(BlockEnd::Crosses { offset });
        }
        let name_len = header.name_len as usize;
        if DIRENT_HEADER_SIZE + name_len > rec_len {
            return self.finish(BlockEnd::NameOverflow { offset });
        }
        self.offset += rec_len;
        let name = &rest[DIRENT_HEADER_SIZE..DIRENT_HEADER_SIZE + name_len];
        Some(RawEntry { offset, header, name })
    }
}

/// Writes a record at `offset` of `block`: header, name, and zeros over the
/// rest of the record so no stale name bytes survive.
pub fn write_entry(block: &mut [u8; BLOCK_SIZE], offset: usize, header: DirentHeader, name: &[u8]) {
    debug_assert_eq!(header.name_len as usize, name.len());
    debug_assert!(offset + header.rec_len as usize <= BLOCK_SIZE);
    let record = &mut block[offset..offset + header.rec_len as usize];
    header.encode(record);
    record[DIRENT_HEADER_SIZE..DIRENT_HEADER_SIZE + name.len()].copy_from_slice(name);
    record[DIRENT_HEADER_SIZE + name.len()..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn header(inode: u32, rec_len: usize, name: &[u8], file_type: u8) -> DirentHeader {
        DirentHeader { inode, rec_len: rec_len as u16, name_len: name.len() as u8, file_type }
    }

    #[test]
    fn header_round_trip() {
        let h = header(0x0102_0304, 20, b"hello", 1);
        let mut bytes = [0u8; 8];
        h.encode(&mut bytes);
        assert_eq!(bytes, [4, 3, 2, 1, 20, 0, 5, 1]);
        assert_eq!(DirentHeader::decode(&bytes), h);
    }

    #[test]
    fn entry_sizes_round_up_to_four() {
        assert_eq!(entry_size(1), 12);
        assert_eq!(entry_size(4), 12);
        assert_eq!(entry_size(5), 16);
        assert_eq!(entry_size(255), 264);
    }

    #[test]
    fn walk_stops_at_size_and_padding() {
        let mut block = [0u8; BLOCK_SIZE];
        write_entry(&mut block, 0, header(0, 12, b".", 2), b".");
        write_entry(&mut block, 12, header(0, 12, b"..", 2), b"..");
        write_entry(&mut block, 24, header(5, 12, b"a", 1), b"a");
        let mut walk = BlockWalk::new(&block, BLOCK_SIZE);
        let names: Vec<&[u8]> = walk.by_ref().map(|e| e.name).collect();
        assert_eq!(names, [&b"."[..], b"..", b"a"]);
        assert_eq!(walk.end(), Some(BlockEnd::Clean));
        assert_eq!(walk.position(), 36);
        let mut short = BlockWalk::new(&block, 24);
        assert_eq!(short.by_ref().count(), 2);
        assert_eq!(short.end(), Some(BlockEnd::Clean));
    }

    #[test]
    fn root_dot_entries_are_live_but_other_zero_inodes_are_free() {
        let mut block = [0u8; BLOCK_SIZE];
        write_entry(&mut block, 0, header(0, 12, b".", 2), b".");
        write_entry(&mut block, 12, header(0, 16, b"gone", 1), b"gone");
        let live: Vec<bool> = BlockWalk::new(&block, 28).map(|e| e.is_live()).collect();
        assert_eq!(live, [true, false]);
    }

    #[test]
    fn walk_reports_crossing_overflow_and_garbage() {
        let mut block = [0u8; BLOCK_SIZE];
        write_entry(&mut block, 0, header(3, 12, b"x", 1), b"x");
        block[12..20].copy_from_slice(&[9, 0, 0, 0, 0x00, 0x10, 1, 1]);
        let mut walk = BlockWalk::new(&block, BLOCK_SIZE);
        assert_eq!(walk.by_ref().count(), 1);
        assert_eq!(walk.end(), Some(BlockEnd::Crosses { offset: 12 }));

        let mut block = [0u8; BLOCK_SIZE];
        block[0..8].copy_from_slice(&[9, 0, 0, 0, 12, 0, 200, 1]);
        let mut walk = BlockWalk::new(&block, BLOCK_SIZE);
        assert_eq!(walk.by_ref().count(), 0);
        assert_eq!(walk.end(), Some(BlockEnd::NameOverflow { offset: 0 }));

        let mut block = [0u8; BLOCK_SIZE];
        block[0..8].copy_from_slice(&[9, 0, 0, 0, 7, 0, 1, 1]);
        let mut walk = BlockWalk::new(&block, BLOCK_SIZE);
        assert_eq!(walk.by_ref().count(), 0);
        assert_eq!(walk.end(), Some(BlockEnd::Garbage { offset: 0 }));
    }
}
