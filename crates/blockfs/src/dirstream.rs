//! Directories in the older host tool's layout, read as one stream of
//! records up to the directory's size: records cross block boundaries
//! freely, and zeros up to a boundary mark where a later driver started a
//! fresh block (docs/FORMAT.md §6). The filesystem reads such a directory
//! this way before rewriting it into the block layout (`dir.rs`), and the
//! checker reads it the same way to judge and convert it (`check/`), so
//! both see the same records.
//!
//! Memory is two blocks, one header and one name, whatever the size the
//! directory claims; a run of holes is stepped over at once, so time
//! follows what the directory holds.

use alloc::boxed::Box;

use crate::error::Result;
use crate::format::dirent::{is_live_record, DirentHeader, DIRENT_HEADER_SIZE, MAX_NAME_LEN};
use crate::format::{Block, BLOCK_SIZE};

const BLOCK: u64 = BLOCK_SIZE as u64;

/// A directory's blocks, mapped and read the way the reader's owner does:
/// the filesystem through its cache, reporting a bad pointer; the checker
/// from the device, reading a pointer it cannot trust as a hole.
pub(crate) trait DirBlocks {
    /// Copies logical block `logical` into `out`; false for a hole.
    fn read_logical(&mut self, logical: u64, out: &mut Block) -> Result<bool>;
    /// The first mapped logical block in `from..end`.
    fn next_mapped(&mut self, from: u64, end: u64) -> Result<Option<u64>>;
}

/// A directory record where it was found, live or free.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryRef<'n> {
    /// Byte position of the record in the directory.
    pub position: u64,
    pub header: DirentHeader,
    pub name: &'n [u8],
}

impl EntryRef<'_> {
    pub fn is_live(&self) -> bool {
        is_live_record(&self.header, self.name)
    }
}

/// The two most recent blocks of the stream (block `n` in slot `n % 2`),
/// so a header or name crossing a boundary is read without reading a
/// block twice.
struct Window {
    slots: [(u64, Box<Block>); 2],
}

impl Window {
    fn new() -> Self {
        Window { slots: [(u64::MAX, Box::new([0u8; BLOCK_SIZE])), (u64::MAX, Box::new([0u8; BLOCK_SIZE]))] }
    }

    /// Logical block `logical` (a hole reads as zeros).
    fn block<S: DirBlocks>(&mut self, blocks: &mut S, logical: u64) -> Result<&Block> {
        let (held, block) = &mut self.slots[(logical % 2) as usize];
        if *held != logical {
            if !blocks.read_logical(logical, block)? {
                block.fill(0);
            }
            *held = logical;
        }
        Ok(block)
    }

    /// Copies the bytes at `position` (at most a header and a name, so
    /// they span two blocks at most).
    fn copy<S: DirBlocks>(&mut self, blocks: &mut S, position: u64, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let at = position + done as u64;
            let within = (at % BLOCK) as usize;
            let chunk = (BLOCK_SIZE - within).min(out.len() - done);
            let block = self.block(blocks, at / BLOCK)?;
            out[done..done + chunk].copy_from_slice(&block[within..within + chunk]);
            done += chunk;
        }
        Ok(())
    }

    /// Where the stream resumes after the padding at `position`, if the
    /// bytes from there to the next block boundary (or the end) are zero.
    /// A hole at a boundary is zero to its end, and so is every hole after
    /// it: the stream resumes at the next mapped block or, with none left,
    /// on the last boundary before the end, so the end-of-stream check
    /// judges it as the older reader did.
    fn skip_padding<S: DirBlocks>(
        &mut self,
        blocks: &mut S,
        position: u64,
        size: u64,
    ) -> Result<Option<u64>> {
        let logical = position / BLOCK;
        let boundary = (logical + 1) * BLOCK;
        let count = size.div_ceil(BLOCK);
        if position % BLOCK == 0 && blocks.next_mapped(logical, logical + 1)?.is_none() {
            return Ok(Some(match blocks.next_mapped(logical + 1, count)? {
                Some(next) => next * BLOCK,
                None => boundary.max((count - 1) * BLOCK),
            }));
        }
        let start = (position % BLOCK) as usize;
        let end = (boundary.min(size) - logical * BLOCK) as usize;
        let block = self.block(blocks, logical)?;
        Ok(block[start..end].iter().all(|&byte| byte == 0).then_some(boundary))
    }
}

/// Calls `visit` with every record of the stream up to `size`, live or
/// free, until it returns false. Returns whether the stream parsed exactly
/// up to `size` (true when `visit` stopped it first).
pub(crate) fn walk_stream<S: DirBlocks>(
    blocks: &mut S,
    size: u64,
    visit: &mut dyn FnMut(&mut S, &EntryRef<'_>) -> Result<bool>,
) -> Result<bool> {
    let mut window = Window::new();
    let mut head = [0u8; DIRENT_HEADER_SIZE];
    let mut name = [0u8; MAX_NAME_LEN];
    let mut position = 0u64;
    while position < size {
        if size - position < DIRENT_HEADER_SIZE as u64 {
            return Ok(false);
        }
        window.copy(blocks, position, &mut head)?;
        let header = DirentHeader::decode(&head);
        if !header.rec_len_plausible() {
            match window.skip_padding(blocks, position, size)? {
                Some(next) => {
                    position = next;
                    continue;
                }
                None => return Ok(false),
            }
        }
        let (rec_len, name_len) = (header.rec_len as u64, header.name_len as usize);
        if position + rec_len > size || (DIRENT_HEADER_SIZE + name_len) as u64 > rec_len {
            return Ok(false);
        }
        window.copy(blocks, position + DIRENT_HEADER_SIZE as u64, &mut name[..name_len])?;
        if !visit(blocks, &EntryRef { position, header, name: &name[..name_len] })? {
            return Ok(true);
        }
        position += rec_len;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    /// A directory held in memory: its mapped blocks, and how many times
    /// a block was read.
    struct MemBlocks {
        mapped: BTreeMap<u64, Block>,
        reads: usize,
    }

    impl MemBlocks {
        /// Cuts `stream` into blocks, leaving the blocks in `holes` unmapped.
        fn new(stream: &[u8], holes: &[u64]) -> Self {
            let mut mapped = BTreeMap::new();
            for (index, bytes) in (0..).zip(stream.chunks(BLOCK_SIZE)) {
                if !holes.contains(&index) {
                    let mut block = [0u8; BLOCK_SIZE];
                    block[..bytes.len()].copy_from_slice(bytes);
                    mapped.insert(index, block);
                }
            }
            MemBlocks { mapped, reads: 0 }
        }
    }

    impl DirBlocks for MemBlocks {
        fn read_logical(&mut self, logical: u64, out: &mut Block) -> Result<bool> {
            self.reads += 1;
            match self.mapped.get(&logical) {
                Some(block) => {
                    out.copy_from_slice(block);
                    Ok(true)
                }
                None => Ok(false),
            }
        }

        fn next_mapped(&mut self, from: u64, end: u64) -> Result<Option<u64>> {
            Ok(self.mapped.range(from..end).next().map(|(&logical, _)| logical))
        }
    }

    /// Appends a record at the end of `stream`, taking `rec_len` bytes.
    fn push(stream: &mut Vec<u8>, inode: u32, name: &[u8], rec_len: usize) {
        let mut record = vec![0u8; rec_len];
        let header =
            DirentHeader { inode, rec_len: rec_len as u16, name_len: name.len() as u8, file_type: 1 };
        header.encode(&mut record);
        record[DIRENT_HEADER_SIZE..DIRENT_HEADER_SIZE + name.len()].copy_from_slice(name);
        stream.extend_from_slice(&record);
    }

    /// (position, inode, name) of every record, and whether the stream
    /// parsed up to `size`.
    fn read(blocks: &mut MemBlocks, size: u64) -> (Vec<(u64, u32, Vec<u8>)>, bool) {
        let mut records = Vec::new();
        let parsed = walk_stream(blocks, size, &mut |_, record| {
            records.push((record.position, record.header.inode, record.name.to_vec()));
            Ok(true)
        })
        .unwrap();
        (records, parsed)
    }

    #[test]
    fn records_straddle_blocks_and_padding_starts_a_fresh_block() {
        let mut stream = Vec::new();
        push(&mut stream, 2, b".", 12);
        push(&mut stream, 2, b"..", 12);
        // Fills up to 4092: the next header crosses the boundary.
        push(&mut stream, 11, b"a", 4092 - 24);
        push(&mut stream, 12, b"crossing", 100);
        // Up to 8180: the next name crosses the boundary.
        let rest = 8180 - stream.len();
        push(&mut stream, 13, b"b", rest);
        push(&mut stream, 14, b"name-across", 40);
        // Zeros to the boundary, then records in a fresh block.
        stream.resize(3 * BLOCK_SIZE, 0);
        push(&mut stream, 15, b"fresh", 16);
        let size = stream.len() as u64;
        let (records, parsed) = read(&mut MemBlocks::new(&stream, &[]), size);
        assert!(parsed);
        let names: Vec<&[u8]> = records.iter().map(|(_, _, name)| name.as_slice()).collect();
        assert_eq!(names, [&b"."[..], b"..", b"a", b"crossing", b"b", b"name-across", b"fresh"]);
        assert_eq!(records[3].0, 4092);
        assert_eq!(records[5].0, 8180);
        assert_eq!(records[6], (3 * BLOCK, 15, b"fresh".to_vec()));
    }

    #[test]
    fn holes_are_stepped_over_to_the_next_mapped_block() {
        let mut stream = Vec::new();
        push(&mut stream, 2, b".", 12);
        push(&mut stream, 2, b"..", BLOCK_SIZE - 12);
        stream.resize(5 * BLOCK_SIZE, 0);
        push(&mut stream, 20, b"after-holes", BLOCK_SIZE);
        // Trailing holes: the stream ends on the last boundary.
        stream.resize(8 * BLOCK_SIZE, 0);
        let mut blocks = MemBlocks::new(&stream, &[1, 2, 3, 4, 6, 7]);
        let (records, parsed) = read(&mut blocks, stream.len() as u64);
        assert!(parsed);
        assert_eq!(records.last().unwrap(), &(5 * BLOCK, 20, b"after-holes".to_vec()));

        // A size claiming a gigabyte of holes costs what is mapped.
        let mut blocks = MemBlocks::new(&stream, &[1, 2, 3, 4, 6, 7]);
        let (huge_records, parsed) = read(&mut blocks, 1 << 30);
        assert!(parsed);
        assert_eq!(huge_records, records);
        assert!(blocks.reads <= 8, "{} block reads", blocks.reads);
    }

    #[test]
    fn damage_stops_the_stream_unparsed() {
        let mut stream = Vec::new();
        push(&mut stream, 2, b".", 12);
        push(&mut stream, 2, b"..", 12);
        // A record length that is not a multiple of 4, with bytes after it.
        let mut bad = stream.clone();
        bad.extend_from_slice(&[9, 0, 0, 0, 13, 0, 1, 1, b'x']);
        bad.resize(BLOCK_SIZE, 0xaa);
        assert_eq!(read(&mut MemBlocks::new(&bad, &[]), bad.len() as u64), (read_prefix(&stream), false));
        // A record running past the size.
        let mut long = stream.clone();
        push(&mut long, 9, b"long", 64);
        assert!(!read(&mut MemBlocks::new(&long, &[]), long.len() as u64 - 8).1);
        // Fewer bytes left than a header.
        assert!(!read(&mut MemBlocks::new(&stream, &[]), stream.len() as u64 + 4).1);
    }

    /// The records of a well-formed `stream`.
    fn read_prefix(stream: &[u8]) -> Vec<(u64, u32, Vec<u8>)> {
        read(&mut MemBlocks::new(stream, &[]), stream.len() as u64).0
    }

    #[test]
    fn a_visitor_stops_the_walk() {
        let mut stream = Vec::new();
        push(&mut stream, 2, b".", 12);
        push(&mut stream, 2, b"..", 12);
        push(&mut stream, 0, b"free", 16);
        push(&mut stream, 7, b"live", 16);
        let mut blocks = MemBlocks::new(&stream, &[]);
        let mut seen = Vec::new();
        let parsed = walk_stream(&mut blocks, stream.len() as u64, &mut |_, record| {
            seen.push((record.name.to_vec(), record.is_live()));
            Ok(seen.len() < 3)
        })
        .unwrap();
        assert!(parsed);
        assert_eq!(seen, [(b".".to_vec(), true), (b"..".to_vec(), true), (b"free".to_vec(), false)]);
    }
}
