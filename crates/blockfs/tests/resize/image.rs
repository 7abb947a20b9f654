//! Shared by the resize tests: building populated images, and an
//! independent reader that places the bitmap and inode table by the
//! seed's formulas (as VeridianOS's driver does), not through the library.

#![allow(dead_code)]

use std::collections::BTreeMap;

use blockfs::fs::{format, NewInode};
use blockfs::{FileSystem, FormatOptions, MemDevice, MountOptions, ROOT_INO};

pub const BLOCK: usize = 4096;
pub const MB: u32 = 256;
const FILE: NewInode = NewInode { perm: 0o644, uid: 7, gid: 8 };
const DIR: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };

fn clock() -> u32 {
    1_700_000_000
}

pub fn mount_options() -> MountOptions {
    MountOptions { cache_blocks: 256, relatime: false, clock, ..MountOptions::default() }
}

/// A formatted image of `blocks` blocks on a device of `device_blocks`.
pub fn formatted(blocks: u32, inodes: Option<u32>, device_blocks: u32, journal: bool) -> MemDevice {
    let mut options = FormatOptions::new(blocks);
    options.inode_count = inodes;
    options.journal = journal;
    options.time = clock();
    format(MemDevice::new(device_blocks), &options).unwrap()
}

/// Bytes distinct per file and position, so misplaced blocks show.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32 / 4096).wrapping_mul(31) ^ seed.wrapping_mul(2_654_435_761) ^ i as u32) as u8)
        .collect()
}

/// The generated tree: hard links, symlinks, a directory of more than 12
/// blocks, a file reaching double-indirect blocks, a sparse file, and
/// freed space in between (so later files are scattered).
pub fn populate(device: MemDevice, big_file: usize, wide_dir: usize) -> MemDevice {
    let fs = FileSystem::mount(device, mount_options()).unwrap();
    let a = fs.mkdir(ROOT_INO, b"a", DIR).unwrap().ino;
    let b = fs.mkdir(a, b"b", DIR).unwrap().ino;
    let wide = fs.mkdir(ROOT_INO, b"wide", DIR).unwrap().ino;
    let scratch = fs.create(ROOT_INO, b"scratch", FILE).unwrap().ino;
    fs.write(scratch, 0, &pattern(99, 300_000)).unwrap();
    for index in 0..wide_dir {
        let name =
            format!("entry-with-a-fairly-long-name-to-fill-blocks-quickly-{index:05}-{}", "x".repeat(40));
        let ino = fs.create(wide, name.as_bytes(), FILE).unwrap().ino;
        if index % 50 == 0 {
            fs.write(ino, 0, &pattern(index as u32, 100 + index)).unwrap();
        }
    }
    let shared = fs.create(a, b"shared", FILE).unwrap().ino;
    fs.write(shared, 0, &pattern(1, 70_000)).unwrap();
    fs.link(shared, b, b"shared-link").unwrap();
    fs.link(shared, ROOT_INO, b"shared-root").unwrap();
    fs.symlink(a, b"to-b", b"b/shared-link", 0, 0).unwrap();
    fs.symlink(ROOT_INO, b"long-link", "t".repeat(3000).as_bytes(), 0, 0).unwrap();
    let big = fs.create(b, b"big", FILE).unwrap().ino;
    fs.write(big, 0, &pattern(2, big_file)).unwrap();
    let sparse = fs.create(b, b"sparse", FILE).unwrap().ino;
    fs.write(sparse, 5 * 4096 * 1024, b"far out").unwrap();
    fs.write(sparse, 3, b"near").unwrap();
    for index in 0..20u32 {
        let ino = fs.create(a, format!("small{index}").as_bytes(), FILE).unwrap().ino;
        fs.write(ino, 0, &pattern(100 + index, 1 + 997 * index as usize)).unwrap();
    }
    fs.unlink(ROOT_INO, b"scratch").unwrap();
    fs.unmount().unwrap()
}

/// Writes a file near the end of the image (behind a ballast file that
/// is then deleted), so shrinking must move it.
pub fn data_near_the_end(device: MemDevice, ballast_blocks: u32, tail_bytes: usize) -> MemDevice {
    let fs = FileSystem::mount(device, mount_options()).unwrap();
    let ballast = fs.create(ROOT_INO, b"ballast", FILE).unwrap().ino;
    let chunk = vec![0xA5u8; 256 * BLOCK];
    for index in 0..(ballast_blocks as u64).div_ceil(256) {
        fs.write(ballast, index * chunk.len() as u64, &chunk).unwrap();
    }
    let tail = fs.create(ROOT_INO, b"tail", FILE).unwrap().ino;
    fs.write(tail, 0, &pattern(77, tail_bytes)).unwrap();
    let dir = fs.mkdir(ROOT_INO, b"tail-dir", DIR).unwrap().ino;
    fs.symlink(dir, b"link", b"../tail", 0, 0).unwrap();
    fs.unlink(ROOT_INO, b"ballast").unwrap();
    fs.unmount().unwrap()
}

/// Creates `count` files and deletes all but the last few, so the inodes
/// in use sit high in the table (a shrunk table must renumber them),
/// including a directory with a child directory and a hard link.
pub fn high_inodes(device: MemDevice, count: u32) -> MemDevice {
    let fs = FileSystem::mount(device, mount_options()).unwrap();
    let dir = fs.mkdir(ROOT_INO, b"many", DIR).unwrap().ino;
    for index in 0..count {
        let ino = fs.create(dir, format!("n{index}").as_bytes(), FILE).unwrap().ino;
        if index + 5 >= count {
            fs.write(ino, 0, &pattern(index, 9000)).unwrap();
        }
    }
    let late = fs.mkdir(dir, b"late", DIR).unwrap().ino;
    fs.mkdir(late, b"child", DIR).unwrap();
    let inner = fs.create(late, b"inner", FILE).unwrap().ino;
    fs.write(inner, 0, b"inner data").unwrap();
    fs.link(inner, ROOT_INO, b"inner-link").unwrap();
    for index in 0..count - 5 {
        fs.unlink(dir, format!("n{index}").as_bytes()).unwrap();
    }
    fs.unmount().unwrap()
}

/// What a path holds, as read by [`Reader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u16, uid: u16 },
    File { mode: u16, uid: u16, mtime: u32, data: Vec<u8>, links: u16 },
    Symlink(Vec<u8>),
    Other { mode: u16 },
}

/// Path → node, plus the hard-link groups (paths sharing an inode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    pub groups: Vec<Vec<String>>,
}

/// A reader of the version 1 layout written from the seed's formulas.
pub struct Reader<'a> {
    fetch: Box<dyn Fn(u32) -> Vec<u8> + 'a>,
    pub blocks: u32,
    pub inodes: u32,
    pub bitmap_blocks: u32,
    pub table_blocks: u32,
    head: Vec<u8>,
    bitmap: Vec<u8>,
}

fn u16at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

impl<'a> Reader<'a> {
    pub fn new(img: &'a [u8]) -> Self {
        let device_blocks = (img.len() / BLOCK) as u32;
        Self::over(device_blocks, move |n| img[n as usize * BLOCK..(n as usize + 1) * BLOCK].to_vec())
    }

    /// Over any source of blocks: `fetch(n)` returns block `n`'s bytes.
    pub fn over(device_blocks: u32, fetch: impl Fn(u32) -> Vec<u8> + 'a) -> Self {
        let head = fetch(0);
        assert_eq!(u32at(&head, 0), 0x424C_4B46, "magic");
        let blocks = u32at(&head, 4);
        let inodes = u32at(&head, 8);
        let bitmap_blocks = blocks.div_ceil(32768);
        let table_blocks = (inodes as u64 * 96).div_ceil(4096) as u32;
        assert_eq!(
            u32at(&head, 20),
            1 + bitmap_blocks + table_blocks,
            "first_data_block by the seed's formula"
        );
        assert!(device_blocks >= blocks, "image shorter than block_count");
        let bitmap = (1..1 + bitmap_blocks).flat_map(&fetch).collect();
        Reader { fetch: Box::new(fetch), blocks, inodes, bitmap_blocks, table_blocks, head, bitmap }
    }

    pub fn first_data_block(&self) -> u32 {
        1 + self.bitmap_blocks + self.table_blocks
    }

    pub fn usable_inodes(&self) -> u32 {
        self.inodes.min(42 * self.table_blocks)
    }

    fn block(&self, n: u32) -> Vec<u8> {
        assert!(n >= self.first_data_block() && n < self.blocks, "pointer {n} outside the data area");
        (self.fetch)(n)
    }

    pub fn inode(&self, n: u32) -> Vec<u8> {
        assert!(n < self.usable_inodes(), "inode {n} has no slot");
        let block = (self.fetch)(1 + self.bitmap_blocks + n / 42);
        block[(n % 42) as usize * 96..(n % 42) as usize * 96 + 96].to_vec()
    }

    pub fn bitmap_bit(&self, block: u32) -> bool {
        self.bitmap[block as usize / 8] & (1 << (block % 8)) != 0
    }

    /// Physical block of logical block `n`, 0 for a hole; every block
    /// visited (maps included) goes to `seen`.
    fn map(&self, inode: &[u8], n: u32, seen: &mut Vec<u32>) -> u32 {
        let pointer = |block: u32, index: u32| u32at(&self.block(block), index as usize * 4);
        if n < 12 {
            return u32at(inode, 36 + 4 * n as usize);
        }
        let n = n - 12;
        if n < 1024 {
            let single = u32at(inode, 84);
            if single == 0 {
                return 0;
            }
            seen.push(single);
            return pointer(single, n);
        }
        let n = n - 1024;
        let double = u32at(inode, 88);
        if double == 0 {
            return 0;
        }
        seen.push(double);
        let middle = pointer(double, n / 1024);
        if middle == 0 {
            return 0;
        }
        seen.push(middle);
        pointer(middle, n % 1024)
    }

    /// The file's bytes; its blocks (data and maps, each once) go to `seen`.
    fn data(&self, inode: &[u8], seen: &mut Vec<u32>) -> Vec<u8> {
        let size = u32at(inode, 4) as usize;
        let mut out = Vec::with_capacity(size);
        let mut maps = Vec::new();
        for logical in 0..size.div_ceil(BLOCK) as u32 {
            let physical = self.map(inode, logical, &mut maps);
            let take = (size - out.len()).min(BLOCK);
            if physical == 0 {
                out.extend(std::iter::repeat_n(0, take));
            } else {
                seen.push(physical);
                out.extend_from_slice(&self.block(physical)[..take]);
            }
        }
        maps.sort_unstable();
        maps.dedup();
        seen.extend(maps);
        out
    }

    fn entries(&self, dir: &[u8], seen: &mut Vec<u32>) -> Vec<(u32, Vec<u8>)> {
        let data = self.data(dir, seen);
        let mut out = Vec::new();
        for (index, block) in data.chunks(BLOCK).enumerate() {
            let mut at = 0;
            while at + 8 <= block.len() {
                let ino = u32at(block, at);
                let rec_len = u16at(block, at + 4) as usize;
                let name_len = block[at + 6] as usize;
                if rec_len < 8 || rec_len % 4 != 0 {
                    break;
                }
                assert!(at + rec_len <= block.len(), "entry crosses block {index}");
                let name = block[at + 8..at + 8 + name_len].to_vec();
                if ino != 0 || name == b"." || name == b".." {
                    out.push((ino, name));
                }
                at += rec_len;
            }
        }
        out
    }

    /// Every file reachable from the root; also checks the bitmap marks
    /// every block in use and the metadata, and the free counts.
    pub fn tree(&self) -> Tree {
        let mut nodes = BTreeMap::new();
        let mut by_inode: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut seen = Vec::new();
        let mut stack = vec![(0u32, String::new(), 0u32)];
        let mut live = std::collections::BTreeSet::from([0u32]);
        while let Some((ino, path, parent)) = stack.pop() {
            let dir = self.inode(ino);
            for (child, name) in self.entries(&dir, &mut seen) {
                if name == b"." {
                    assert_eq!(child, ino, "{path}/.");
                    continue;
                }
                if name == b".." {
                    assert_eq!(child, parent, "{path}/..");
                    continue;
                }
                let child_path = format!("{path}/{}", String::from_utf8_lossy(&name));
                let inode = &self.inode(child)[..];
                let mode = u16at(inode, 0);
                assert_ne!(u16at(inode, 26), 0, "{child_path} names free inode {child}");
                live.insert(child);
                let node = match mode & 0o170000 {
                    0o040000 => {
                        stack.push((child, child_path.clone(), ino));
                        Node::Dir { mode, uid: u16at(inode, 2) }
                    }
                    0o100000 => {
                        let first_name = !by_inode.contains_key(&child);
                        by_inode.entry(child).or_default().push(child_path.clone());
                        let mut scratch = Vec::new();
                        let blocks = if first_name { &mut seen } else { &mut scratch };
                        Node::File {
                            mode,
                            uid: u16at(inode, 2),
                            mtime: u32at(inode, 16),
                            data: self.data(inode, blocks),
                            links: u16at(inode, 26),
                        }
                    }
                    0o120000 => Node::Symlink(self.data(inode, &mut seen)),
                    _ => Node::Other { mode },
                };
                nodes.insert(child_path, node);
            }
        }
        // Hidden system inodes (the journal) hold blocks too.
        for ino in 0..self.usable_inodes() {
            let inode = self.inode(ino);
            if u16at(&inode, 26) != 0 && u32at(&inode, 32) & 0x8000_0000 != 0 {
                live.insert(ino);
                self.data(&inode, &mut seen);
            }
        }
        for block in 0..self.first_data_block() {
            assert!(self.bitmap_bit(block), "metadata block {block} not marked used");
        }
        seen.sort_unstable();
        let before = seen.len();
        seen.dedup();
        assert_eq!(before, seen.len(), "a block is used twice");
        for &block in &seen {
            assert!(self.bitmap_bit(block), "block {block} in use but free in the bitmap");
        }
        let used = (self.first_data_block()..self.blocks).filter(|&b| self.bitmap_bit(b)).count();
        assert_eq!(used, seen.len(), "bitmap marks blocks nothing uses");
        let tail_bits = (self.blocks..self.bitmap_blocks * 32768).filter(|&b| self.bitmap_bit(b)).count();
        assert_eq!(tail_bits, 0, "bits past block_count");
        assert_eq!(
            u32at(&self.head, 12) as usize,
            (self.blocks - self.first_data_block()) as usize - used,
            "free_blocks"
        );
        let used_inodes = (0..self.usable_inodes()).filter(|&i| u16at(&self.inode(i), 26) != 0).count();
        assert_eq!(used_inodes, live.len(), "inodes in use that nothing reaches");
        assert_eq!(
            u32at(&self.head, 16) as usize,
            self.usable_inodes() as usize - used_inodes,
            "free_inodes"
        );
        let mut groups: Vec<Vec<String>> = by_inode
            .into_values()
            .filter(|paths| paths.len() > 1)
            .map(|mut paths| {
                paths.sort();
                paths
            })
            .collect();
        groups.sort();
        Tree { nodes, groups }
    }
}

pub fn tree_of(img: &[u8]) -> Tree {
    Reader::new(img).tree()
}
