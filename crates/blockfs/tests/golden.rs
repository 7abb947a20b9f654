//! Golden-image tests: images assembled byte by byte from the on-disk
//! specification (seed "On-Disk Layout" + docs/FORMAT.md), read through the
//! library; and images written by the library, decoded here by hand.
//!
//! Nothing in this file uses the library's encoders (superblock, inode,
//! directory entry, `format()`) to build an input image: every byte of the
//! hand-made images comes from the small helpers below, written from the
//! specification.

use std::collections::{BTreeMap, BTreeSet};

use blockfs::error::Error;
use blockfs::format::extension::ExtensionError;
use blockfs::fs::{format, FileSystem, FormatOptions, MountOptions, NewInode};
use blockfs::{DirEntry, FileType, MemDevice};

// ---------------------------------------------------------------------------
// Specification constants and byte helpers
// ---------------------------------------------------------------------------

const BS: usize = 4096;
const MAGIC: u32 = 0x424C_4B46;
const INODE_SIZE: usize = 96;
const INODES_PER_BLOCK: usize = 42;
const BITS_PER_BITMAP_BLOCK: usize = BS * 8;

const FT_REG: u8 = 1;
const FT_DIR: u8 = 2;
const FT_CHR: u8 = 3;
const FT_LNK: u8 = 7;

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}
fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
}
fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}
fn rec_len_for(name: &[u8]) -> usize {
    align4(8 + name.len())
}

/// B = ceil(blocks / 32768), I = ceil(inodes * 96 / 4096).
fn geometry(block_count: u32, inode_count: u32) -> (u32, u32, u32) {
    let b = (block_count as usize).div_ceil(BITS_PER_BITMAP_BLOCK) as u32;
    let i = (inode_count as usize * INODE_SIZE).div_ceil(BS) as u32;
    (b, i, 1 + b + i)
}

fn block(img: &[u8], b: u32) -> &[u8] {
    &img[b as usize * BS..(b as usize + 1) * BS]
}
fn block_mut(img: &mut [u8], b: u32) -> &mut [u8] {
    &mut img[b as usize * BS..(b as usize + 1) * BS]
}

/// The 16 superblock fields, at the seed's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sb {
    magic: u32,
    block_count: u32,
    inode_count: u32,
    free_blocks: u32,
    free_inodes: u32,
    first_data_block: u32,
    block_size: u32,
    inode_size: u16,
    blocks_per_group: u32,
    inodes_per_group: u32,
    mount_time: u64,
    write_time: u64,
    mount_count: u16,
    max_mount_count: u16,
    state: u16,
    errors: u16,
}

fn put_superblock(img: &mut [u8], sb: &Sb) {
    let b0 = block_mut(img, 0);
    put_u32(b0, 0, sb.magic);
    put_u32(b0, 4, sb.block_count);
    put_u32(b0, 8, sb.inode_count);
    put_u32(b0, 12, sb.free_blocks);
    put_u32(b0, 16, sb.free_inodes);
    put_u32(b0, 20, sb.first_data_block);
    put_u32(b0, 24, sb.block_size);
    put_u16(b0, 28, sb.inode_size);
    put_u32(b0, 30, sb.blocks_per_group);
    put_u32(b0, 34, sb.inodes_per_group);
    put_u64(b0, 38, sb.mount_time);
    put_u64(b0, 46, sb.write_time);
    put_u16(b0, 54, sb.mount_count);
    put_u16(b0, 56, sb.max_mount_count);
    put_u16(b0, 58, sb.state);
    put_u16(b0, 60, sb.errors);
}

fn get_superblock(img: &[u8]) -> Sb {
    let b0 = block(img, 0);
    Sb {
        magic: get_u32(b0, 0),
        block_count: get_u32(b0, 4),
        inode_count: get_u32(b0, 8),
        free_blocks: get_u32(b0, 12),
        free_inodes: get_u32(b0, 16),
        first_data_block: get_u32(b0, 20),
        block_size: get_u32(b0, 24),
        inode_size: get_u16(b0, 28),
        blocks_per_group: get_u32(b0, 30),
        inodes_per_group: get_u32(b0, 34),
        mount_time: get_u64(b0, 38),
        write_time: get_u64(b0, 46),
        mount_count: get_u16(b0, 54),
        max_mount_count: get_u16(b0, 56),
        state: get_u16(b0, 58),
        errors: get_u16(b0, 60),
    }
}

/// The 96-byte inode, at the seed's offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ino {
    mode: u16,
    uid: u16,
    size: u32,
    atime: u32,
    ctime: u32,
    mtime: u32,
    dtime: u32,
    gid: u16,
    links: u16,
    blocks: u32,
    flags: u32,
    direct: [u32; 12],
    indirect: u32,
    double_indirect: u32,
    triple_indirect: u32,
}

/// Byte offset of inode `ino` in the image: block `1 + B + ino / 42`,
/// byte `(ino % 42) * 96`.
fn inode_offset(bitmap_blocks: u32, ino: u32) -> usize {
    let blk = 1 + bitmap_blocks as usize + ino as usize / INODES_PER_BLOCK;
    blk * BS + (ino as usize % INODES_PER_BLOCK) * INODE_SIZE
}

fn put_inode(img: &mut [u8], bitmap_blocks: u32, ino: u32, i: &Ino) {
    let at = inode_offset(bitmap_blocks, ino);
    let raw = &mut img[at..at + INODE_SIZE];
    put_u16(raw, 0, i.mode);
    put_u16(raw, 2, i.uid);
    put_u32(raw, 4, i.size);
    put_u32(raw, 8, i.atime);
    put_u32(raw, 12, i.ctime);
    put_u32(raw, 16, i.mtime);
    put_u32(raw, 20, i.dtime);
    put_u16(raw, 24, i.gid);
    put_u16(raw, 26, i.links);
    put_u32(raw, 28, i.blocks);
    put_u32(raw, 32, i.flags);
    for (k, p) in i.direct.iter().enumerate() {
        put_u32(raw, 36 + 4 * k, *p);
    }
    put_u32(raw, 84, i.indirect);
    put_u32(raw, 88, i.double_indirect);
    put_u32(raw, 92, i.triple_indirect);
}

fn get_inode(img: &[u8], bitmap_blocks: u32, ino: u32) -> Ino {
    let at = inode_offset(bitmap_blocks, ino);
    let raw = &img[at..at + INODE_SIZE];
    let mut direct = [0u32; 12];
    for (k, p) in direct.iter_mut().enumerate() {
        *p = get_u32(raw, 36 + 4 * k);
    }
    Ino {
        mode: get_u16(raw, 0),
        uid: get_u16(raw, 2),
        size: get_u32(raw, 4),
        atime: get_u32(raw, 8),
        ctime: get_u32(raw, 12),
        mtime: get_u32(raw, 16),
        dtime: get_u32(raw, 20),
        gid: get_u16(raw, 24),
        links: get_u16(raw, 26),
        blocks: get_u32(raw, 28),
        flags: get_u32(raw, 32),
        direct,
        indirect: get_u32(raw, 84),
        double_indirect: get_u32(raw, 88),
        triple_indirect: get_u32(raw, 92),
    }
}

/// Writes one directory record: `inode u32, rec_len u16, name_len u8,
/// file_type u8, name`.
fn put_dirent(buf: &mut [u8], at: usize, ino: u32, rec_len: usize, file_type: u8, name: &[u8]) {
    put_u32(buf, at, ino);
    put_u16(buf, at + 4, rec_len as u16);
    buf[at + 6] = name.len() as u8;
    buf[at + 7] = file_type;
    buf[at + 8..at + 8 + name.len()].copy_from_slice(name);
}

fn set_bit(img: &mut [u8], b: u32) {
    let at = BS + b as usize / 8;
    img[at] |= 1 << (b % 8);
}
fn bit(img: &[u8], b: u32) -> bool {
    img[BS + b as usize / 8] & (1 << (b % 8)) != 0
}

/// Physical blocks of logical blocks `0..count` (0 = hole), following the
/// direct, single- and double-indirect pointers.
fn logical_map(img: &[u8], i: &Ino, count: usize) -> Vec<u32> {
    (0..count)
        .map(|l| {
            if l < 12 {
                i.direct[l]
            } else if l < 12 + 1024 {
                if i.indirect == 0 {
                    0
                } else {
                    get_u32(block(img, i.indirect), (l - 12) * 4)
                }
            } else {
                let rest = l - 12 - 1024;
                if i.double_indirect == 0 {
                    return 0;
                }
                let mid = get_u32(block(img, i.double_indirect), (rest / 1024) * 4);
                if mid == 0 {
                    0
                } else {
                    get_u32(block(img, mid), (rest % 1024) * 4)
                }
            }
        })
        .collect()
}

/// Every block an inode holds: data blocks and indirect blocks.
fn held_blocks(img: &[u8], i: &Ino) -> Vec<u32> {
    let mut out: Vec<u32> = i.direct.iter().copied().filter(|&p| p != 0).collect();
    if i.indirect != 0 {
        out.push(i.indirect);
        let ib = block(img, i.indirect);
        out.extend((0..1024).map(|k| get_u32(ib, 4 * k)).filter(|&p| p != 0));
    }
    if i.double_indirect != 0 {
        out.push(i.double_indirect);
        let db = block(img, i.double_indirect);
        for k in 0..1024 {
            let mid = get_u32(db, 4 * k);
            if mid != 0 {
                out.push(mid);
                let mb = block(img, mid);
                out.extend((0..1024).map(|j| get_u32(mb, 4 * j)).filter(|&p| p != 0));
            }
        }
    }
    assert_eq!(i.triple_indirect, 0, "triple indirect is never used");
    out
}

/// Reads file content by hand, holes as zeros.
fn read_by_hand(img: &[u8], i: &Ino) -> Vec<u8> {
    let size = i.size as usize;
    let map = logical_map(img, i, size.div_ceil(BS));
    let mut out = Vec::with_capacity(size);
    for (l, &p) in map.iter().enumerate() {
        let n = (size - l * BS).min(BS);
        if p == 0 {
            out.resize(out.len() + n, 0);
        } else {
            out.extend_from_slice(&block(img, p)[..n]);
        }
    }
    out
}

/// A directory record decoded by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    position: usize,
    ino: u32,
    rec_len: usize,
    file_type: u8,
    name: Vec<u8>,
}

/// Decodes a directory following the docs/FORMAT.md §6.2 rule, block by block:
/// records chain by `rec_len` inside each block; a chain stops at the end
/// of the block, at the directory's size, or at a `rec_len` < 8 / not a
/// multiple of 4, which must be zero padding. A record crossing its block
/// or the size is an error. Returns live records only.
fn try_dir_records(img: &[u8], dir: &Ino) -> Result<Vec<Rec>, String> {
    let size = dir.size as usize;
    let map = logical_map(img, dir, size.div_ceil(BS));
    let mut out = Vec::new();
    for (l, &p) in map.iter().enumerate() {
        if p == 0 {
            return Err(format!("directory block {l} is a hole"));
        }
        let blk = block(img, p);
        let limit = (size - l * BS).min(BS);
        let mut off = 0;
        while off < limit {
            if limit - off < 8 {
                if blk[off..limit].iter().any(|&b| b != 0) {
                    return Err(format!("tail garbage in dir block {l} at {off}"));
                }
                break;
            }
            let ino = get_u32(blk, off);
            let rec_len = get_u16(blk, off + 4) as usize;
            let name_len = blk[off + 6] as usize;
            let file_type = blk[off + 7];
            if rec_len < 8 || rec_len % 4 != 0 {
                if blk[off..limit].iter().any(|&b| b != 0) {
                    return Err(format!("non-zero bytes after the chain ended in dir block {l} at {off}"));
                }
                break;
            }
            if off + rec_len > limit {
                return Err(format!(
                    "record at block {l} offset {off} (rec_len {rec_len}) crosses the block or the size"
                ));
            }
            if 8 + name_len > rec_len {
                return Err(format!("name overflows record at block {l} offset {off}"));
            }
            let name = blk[off + 8..off + 8 + name_len].to_vec();
            let live = ino != 0 || name == b"." || name == b"..";
            if live {
                out.push(Rec { position: l * BS + off, ino, rec_len, file_type, name });
            }
            off += rec_len;
        }
    }
    Ok(out)
}

fn strict_dir_records(img: &[u8], dir: &Ino) -> Vec<Rec> {
    try_dir_records(img, dir).unwrap_or_else(|e| panic!("directory does not follow the block rule: {e}"))
}

fn list_dir(fs: &FileSystem<MemDevice>, ino: u32) -> Vec<DirEntry> {
    let mut out = Vec::new();
    fs.readdir(ino, 0, &mut |e, _| {
        out.push(e.clone());
        true
    })
    .unwrap();
    out
}

/// Lists a directory in chunks of `chunk` entries, resuming from cookies.
fn list_dir_chunked(fs: &FileSystem<MemDevice>, ino: u32, chunk: usize) -> Vec<DirEntry> {
    let mut out = Vec::new();
    let mut cookie = 0u64;
    loop {
        let mut taken = 0;
        fs.readdir(ino, cookie, &mut |e, next| {
            if taken == chunk {
                return false;
            }
            out.push(e.clone());
            cookie = next;
            taken += 1;
            true
        })
        .unwrap();
        if taken < chunk {
            return out;
        }
    }
}

fn read_all(fs: &FileSystem<MemDevice>, ino: u32, len: usize) -> Vec<u8> {
    let mut buf = vec![0xEEu8; len + 100];
    let n = fs.read(ino, 0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn ro() -> MountOptions {
    MountOptions { read_only: true, ..Default::default() }
}

const T_MOUNT: u32 = 1_700_000_000;
fn fixed_clock() -> u32 {
    T_MOUNT
}
fn rw() -> MountOptions {
    MountOptions { read_only: false, clock: fixed_clock, ..Default::default() }
}

/// Hand-written CRC-32C (Castagnoli, reflected, init and final xor !0).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Checks bitmap ↔ inode-table consistency of an image and returns the
/// free block and free inode counts computed by hand.
fn audit(img: &[u8]) -> (u32, u32) {
    let sb = get_superblock(img);
    let (b, i, first) = geometry(sb.block_count, sb.inode_count);
    assert_eq!(sb.first_data_block, first);
    let usable = (sb.inode_count as usize).min(INODES_PER_BLOCK * i as usize) as u32;

    // Bits past block_count are zero.
    for blk in sb.block_count as usize..b as usize * BITS_PER_BITMAP_BLOCK {
        assert!(!bit(img, blk as u32), "bitmap bit {blk} past block_count is set");
    }
    // Metadata blocks are marked used.
    for blk in 0..first {
        assert!(bit(img, blk), "metadata block {blk} not marked used");
    }
    // Blocks held by in-use inodes: in the data area, unique, marked used.
    let mut owner: BTreeMap<u32, u32> = BTreeMap::new();
    let mut used_inodes = 0u32;
    for ino in 0..usable {
        let node = get_inode(img, b, ino);
        if node.links == 0 {
            continue;
        }
        used_inodes += 1;
        let kind = node.mode & 0o170000;
        let has_data = kind == 0o100000 || kind == 0o040000 || kind == 0o120000;
        if !has_data {
            continue;
        }
        let held = held_blocks(img, &node);
        assert_eq!(node.blocks as usize, held.len(), "inode {ino}: `blocks` counts data + indirect blocks");
        for blk in held {
            assert!(blk >= first && blk < sb.block_count, "inode {ino} points outside the data area: {blk}");
            assert!(bit(img, blk), "block {blk} of inode {ino} not marked used");
            if let Some(other) = owner.insert(blk, ino) {
                panic!("block {blk} owned by inodes {other} and {ino}");
            }
        }
    }
    // Every used data block has an owner.
    let mut used_blocks = 0u32;
    for blk in 0..sb.block_count {
        if bit(img, blk) {
            used_blocks += 1;
            if blk >= first {
                assert!(owner.contains_key(&blk), "block {blk} marked used but owned by no inode");
            }
        }
    }
    (sb.block_count - used_blocks, usable - used_inodes)
}

// ---------------------------------------------------------------------------
// 1. A golden image written by hand
// ---------------------------------------------------------------------------

const G_BLOCKS: u32 = 256;
const G_INODES: u32 = 672;
const BIG_SIZE: usize = 13 * BS + 100; // 14 data blocks: 12 direct + 2 via the indirect block
const HOLEY_SIZE: usize = 15 * BS + 123; // logical blocks 0, 5 and 15 mapped
const LINK_TARGET: &[u8] = b"sub/../big";
const TIME_BASE: u32 = 1_600_000_000;

fn big_content() -> Vec<u8> {
    (0..BIG_SIZE).map(|i| ((i * 31 + i / BS) % 251) as u8).collect()
}

fn holey_content() -> Vec<u8> {
    let mut v = vec![0u8; HOLEY_SIZE];
    v[..BS].fill(0xAA);
    for (k, b) in v[5 * BS..6 * BS].iter_mut().enumerate() {
        *b = (k % 200) as u8 + 1;
    }
    v[15 * BS..].fill(0x5A);
    v
}

fn times(ino: u32) -> (u32, u32, u32) {
    // (atime, ctime, mtime), distinct per inode and per field.
    (TIME_BASE + ino * 10 + 1, TIME_BASE + ino * 10 + 2, TIME_BASE + ino * 10 + 3)
}

fn timed(ino: u32, node: Ino) -> Ino {
    let (atime, ctime, mtime) = times(ino);
    Ino { atime, ctime, mtime, ..node }
}

/// Inodes: 0 root, 1 sub, 2 big (2 links), 3 holey, 4 link, 5 tty, 6 empty,
/// 7 a freed inode (links 0). Blocks: 18 root dir, 19 sub dir, 20..=31 big
/// direct, 32 big's indirect, 33..=34 big via indirect, 35 holey[0],
/// 36 holey[5], 37 holey's indirect, 38 holey[15], 39 symlink target.
fn golden_image() -> Vec<u8> {
    let (b, i, first) = geometry(G_BLOCKS, G_INODES);
    assert_eq!((b, i, first), (1, 16, 18));
    let mut img = vec![0u8; G_BLOCKS as usize * BS];

    put_superblock(
        &mut img,
        &Sb {
            magic: MAGIC,
            block_count: G_BLOCKS,
            inode_count: G_INODES,
            free_blocks: G_BLOCKS - 40,
            free_inodes: G_INODES - 7,
            first_data_block: first,
            block_size: 4096,
            inode_size: 96,
            blocks_per_group: 8192,
            inodes_per_group: 2048,
            mount_time: 1_600_000_500,
            write_time: 1_600_000_600,
            mount_count: 7,
            max_mount_count: 100,
            state: 1,
            errors: 1,
        },
    );
    // Block 0 bytes 62.. stay zero: no extension record.

    for blk in 0..40 {
        set_bit(&mut img, blk);
    }

    // Root directory (inode 0), block 18; "ghost" is a free entry.
    {
        let d = block_mut(&mut img, 18);
        let mut off = 0;
        for (ino, ft, name) in [
            (0u32, FT_DIR, &b"."[..]),
            (0, FT_DIR, b".."),
            (1, FT_DIR, b"sub"),
            (2, FT_REG, b"big"),
            (0, FT_REG, b"ghost"),
            (3, FT_REG, b"holey"),
            (4, FT_LNK, b"link"),
            (5, FT_CHR, b"tty"),
        ] {
            let rl = rec_len_for(name);
            put_dirent(d, off, ino, rl, ft, name);
            off += rl;
        }
        assert_eq!(off, 104);
    }
    let mut direct = [0u32; 12];
    direct[0] = 18;
    put_inode(
        &mut img,
        b,
        0,
        &timed(
            0,
            Ino { mode: 0o040755, uid: 0, gid: 0, links: 3, size: 104, blocks: 1, direct, ..Ino::default() },
        ),
    );

    // Subdirectory (inode 1), block 19; its last record runs to the block
    // end ext2-style and the size is the whole block.
    {
        let d = block_mut(&mut img, 19);
        put_dirent(d, 0, 1, 12, FT_DIR, b".");
        put_dirent(d, 12, 0, 12, FT_DIR, b"..");
        put_dirent(d, 24, 6, 16, FT_REG, b"empty");
        put_dirent(d, 40, 2, BS - 40, FT_REG, b"big-again");
    }
    let mut direct = [0u32; 12];
    direct[0] = 19;
    put_inode(
        &mut img,
        b,
        1,
        &timed(
            1,
            Ino {
                mode: 0o040750,
                uid: 1000,
                gid: 100,
                links: 2,
                size: 4096,
                blocks: 1,
                direct,
                ..Ino::default()
            },
        ),
    );

    // Big file (inode 2): 12 direct blocks, then an indirect block.
    let big = big_content();
    let mut direct = [0u32; 12];
    for (k, p) in direct.iter_mut().enumerate() {
        *p = 20 + k as u32;
    }
    let big_map: Vec<u32> = (20..32).chain([33, 34]).collect();
    {
        let ib = block_mut(&mut img, 32);
        put_u32(ib, 0, 33);
        put_u32(ib, 4, 34);
    }
    for (l, &p) in big_map.iter().enumerate() {
        let chunk = &big[l * BS..((l + 1) * BS).min(BIG_SIZE)];
        block_mut(&mut img, p)[..chunk.len()].copy_from_slice(chunk);
    }
    put_inode(
        &mut img,
        b,
        2,
        &timed(
            2,
            Ino {
                mode: 0o100644,
                uid: 0,
                gid: 0,
                links: 2,
                size: BIG_SIZE as u32,
                blocks: 15,
                direct,
                indirect: 32,
                ..Ino::default()
            },
        ),
    );

    // File with holes (inode 3).
    let holey = holey_content();
    let mut direct = [0u32; 12];
    direct[0] = 35;
    direct[5] = 36;
    put_u32(block_mut(&mut img, 37), 3 * 4, 38);
    for (l, p) in [(0usize, 35u32), (5, 36), (15, 38)] {
        let chunk = &holey[l * BS..((l + 1) * BS).min(HOLEY_SIZE)];
        block_mut(&mut img, p)[..chunk.len()].copy_from_slice(chunk);
    }
    put_inode(
        &mut img,
        b,
        3,
        &timed(
            3,
            Ino {
                mode: 0o100600,
                uid: 1000,
                gid: 1000,
                links: 1,
                size: HOLEY_SIZE as u32,
                blocks: 4,
                direct,
                indirect: 37,
                ..Ino::default()
            },
        ),
    );

    // Symlink (inode 4), target in data block 39.
    block_mut(&mut img, 39)[..LINK_TARGET.len()].copy_from_slice(LINK_TARGET);
    let mut direct = [0u32; 12];
    direct[0] = 39;
    put_inode(
        &mut img,
        b,
        4,
        &timed(
            4,
            Ino {
                mode: 0o120777,
                uid: 0,
                gid: 0,
                links: 1,
                size: LINK_TARGET.len() as u32,
                blocks: 1,
                direct,
                ..Ino::default()
            },
        ),
    );

    // Character device (inode 5): tty1 = (4, 1), old 16-bit form.
    let mut direct = [0u32; 12];
    direct[0] = (4 << 8) | 1;
    put_inode(
        &mut img,
        b,
        5,
        &timed(5, Ino { mode: 0o020620, uid: 0, gid: 5, links: 1, direct, ..Ino::default() }),
    );

    // Empty regular file (inode 6) in the subdirectory.
    put_inode(
        &mut img,
        b,
        6,
        &timed(6, Ino { mode: 0o100400, uid: 1000, gid: 100, links: 1, ..Ino::default() }),
    );

    // A deleted inode (7): links 0 means free, whatever else it holds.
    put_inode(&mut img, b, 7, &Ino { mode: 0o100644, dtime: TIME_BASE + 99, ..Ino::default() });

    img
}

struct Expect {
    ino: u32,
    kind: FileType,
    perm: u16,
    mode: u32,
    uid: u16,
    gid: u16,
    nlink: u16,
    size: u64,
    blocks: u32,
    rdev: (u32, u32),
}

#[test]
fn golden_image_written_by_hand_is_read_exactly() {
    let img = golden_image();
    // The hand-made image is itself consistent.
    assert_eq!(audit(&img), (G_BLOCKS - 40, G_INODES - 7));

    let fs = FileSystem::mount(MemDevice::from_bytes(img.clone()), ro()).expect("golden image mounts");

    // Superblock as decoded by the library.
    let info = fs.info();
    let sb = info.superblock;
    assert_eq!(sb.magic, MAGIC);
    assert_eq!(sb.block_count, G_BLOCKS);
    assert_eq!(sb.inode_count, G_INODES);
    assert_eq!(sb.free_blocks, G_BLOCKS - 40);
    assert_eq!(sb.free_inodes, G_INODES - 7);
    assert_eq!(sb.first_data_block, 18);
    assert_eq!(sb.block_size, 4096);
    assert_eq!(sb.inode_size, 96);
    assert_eq!(sb.blocks_per_group, 8192);
    assert_eq!(sb.inodes_per_group, 2048);
    assert_eq!(sb.mount_time, 1_600_000_500);
    assert_eq!(sb.write_time, 1_600_000_600);
    assert_eq!(sb.mount_count, 7);
    assert_eq!(sb.max_mount_count, 100);
    assert_eq!(sb.state, 1);
    assert_eq!(sb.errors, 1);
    assert!(info.was_clean);
    assert_eq!(info.extension, None);
    assert_eq!(info.extension_problem, Some(ExtensionError::Missing));
    assert_eq!(info.geometry.bitmap_blocks, 1);
    assert_eq!(info.geometry.inode_table_blocks, 16);
    assert_eq!(info.geometry.usable_inodes(), 672);

    let st = fs.statfs();
    assert_eq!(st.block_size, 4096);
    assert_eq!(st.blocks, G_BLOCKS);
    assert_eq!(st.free_blocks, G_BLOCKS - 40);
    assert_eq!(st.inodes, 672);
    assert_eq!(st.free_inodes, 665);
    assert_eq!(st.name_max, 255);

    // Every inode's attributes.
    #[rustfmt::skip]
    let expected = [
        Expect { ino: 0, kind: FileType::Directory, perm: 0o755, mode: 0o040755, uid: 0, gid: 0, nlink: 3, size: 104, blocks: 1, rdev: (0, 0) },
        Expect { ino: 1, kind: FileType::Directory, perm: 0o750, mode: 0o040750, uid: 1000, gid: 100, nlink: 2, size: 4096, blocks: 1, rdev: (0, 0) },
        Expect { ino: 2, kind: FileType::Regular, perm: 0o644, mode: 0o100644, uid: 0, gid: 0, nlink: 2, size: BIG_SIZE as u64, blocks: 15, rdev: (0, 0) },
        Expect { ino: 3, kind: FileType::Regular, perm: 0o600, mode: 0o100600, uid: 1000, gid: 1000, nlink: 1, size: HOLEY_SIZE as u64, blocks: 4, rdev: (0, 0) },
        Expect { ino: 4, kind: FileType::Symlink, perm: 0o777, mode: 0o120777, uid: 0, gid: 0, nlink: 1, size: LINK_TARGET.len() as u64, blocks: 1, rdev: (0, 0) },
        Expect { ino: 5, kind: FileType::CharDevice, perm: 0o620, mode: 0o020620, uid: 0, gid: 5, nlink: 1, size: 0, blocks: 0, rdev: (4, 1) },
        Expect { ino: 6, kind: FileType::Regular, perm: 0o400, mode: 0o100400, uid: 1000, gid: 100, nlink: 1, size: 0, blocks: 0, rdev: (0, 0) },
    ];
    for e in &expected {
        let a = fs.getattr(e.ino).unwrap_or_else(|err| panic!("getattr({}) failed: {err:?}", e.ino));
        let (atime, ctime, mtime) = times(e.ino);
        assert_eq!(a.ino, e.ino);
        assert_eq!(a.kind, e.kind, "kind of {}", e.ino);
        assert_eq!(a.perm, e.perm, "perm of {}", e.ino);
        assert_eq!(a.mode(), e.mode, "mode of {}", e.ino);
        assert_eq!((a.uid, a.gid), (e.uid, e.gid), "owner of {}", e.ino);
        assert_eq!(a.nlink, e.nlink, "nlink of {}", e.ino);
        assert_eq!(a.size, e.size, "size of {}", e.ino);
        assert_eq!(a.blocks, e.blocks, "blocks of {}", e.ino);
        assert_eq!((a.atime, a.ctime, a.mtime), (atime, ctime, mtime), "times of {}", e.ino);
        assert_eq!(a.rdev, e.rdev, "rdev of {}", e.ino);
    }
    // The freed inode and inodes never used are not there.
    assert_eq!(fs.getattr(7), Err(Error::NotFound));
    assert_eq!(fs.getattr(100), Err(Error::NotFound));
    assert_eq!(fs.getattr(672), Err(Error::NotFound));

    // Directory listings: exactly these names, in on-disk order; the free
    // "ghost" entry is invisible.
    let root: Vec<(Vec<u8>, u32, Option<FileType>)> =
        list_dir(&fs, 0).into_iter().map(|e| (e.name.clone(), e.ino, e.kind())).collect();
    assert_eq!(
        root,
        vec![
            (b".".to_vec(), 0, Some(FileType::Directory)),
            (b"..".to_vec(), 0, Some(FileType::Directory)),
            (b"sub".to_vec(), 1, Some(FileType::Directory)),
            (b"big".to_vec(), 2, Some(FileType::Regular)),
            (b"holey".to_vec(), 3, Some(FileType::Regular)),
            (b"link".to_vec(), 4, Some(FileType::Symlink)),
            (b"tty".to_vec(), 5, Some(FileType::CharDevice)),
        ]
    );
    assert_eq!(list_dir_chunked(&fs, 0, 2), list_dir(&fs, 0));
    let sub: Vec<(Vec<u8>, u32, u8)> =
        list_dir(&fs, 1).into_iter().map(|e| (e.name, e.ino, e.file_type)).collect();
    assert_eq!(
        sub,
        vec![
            (b".".to_vec(), 1, FT_DIR),
            (b"..".to_vec(), 0, FT_DIR),
            (b"empty".to_vec(), 6, FT_REG),
            (b"big-again".to_vec(), 2, FT_REG),
        ]
    );

    // Lookups.
    for (parent, name, ino) in [
        (0u32, &b"."[..], 0u32),
        (0, b"..", 0),
        (0, b"sub", 1),
        (0, b"big", 2),
        (0, b"holey", 3),
        (0, b"link", 4),
        (0, b"tty", 5),
        (1, b".", 1),
        (1, b"..", 0),
        (1, b"empty", 6),
        (1, b"big-again", 2),
    ] {
        assert_eq!(
            fs.lookup(parent, name).map(|a| a.ino),
            Ok(ino),
            "lookup {:?}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(fs.lookup(0, b"ghost").map(|a| a.ino), Err(Error::NotFound));
    assert_eq!(fs.lookup(0, b"missing").map(|a| a.ino), Err(Error::NotFound));
    assert_eq!(fs.lookup(2, b"x").map(|a| a.ino), Err(Error::NotDir));

    // Paths and symlinks.
    assert_eq!(fs.resolve(b"/", true), Ok(0));
    assert_eq!(fs.resolve(b"/sub/big-again", true), Ok(2));
    assert_eq!(fs.resolve(b"/sub/../holey", true), Ok(3));
    assert_eq!(fs.resolve(b"/link", false), Ok(4));
    assert_eq!(fs.resolve(b"/link", true), Ok(2));
    assert_eq!(fs.readlink(4).unwrap(), LINK_TARGET);
    assert_eq!(read_all(&fs, 4, 64), LINK_TARGET);
    assert_eq!(fs.readlink(2), Err(Error::InvalidArgument));

    // Contents, byte for byte.
    let big = big_content();
    assert_eq!(read_all(&fs, 2, BIG_SIZE), big);
    // A read straddling the last direct block and the first indirect one.
    let mut buf = [0u8; 300];
    assert_eq!(fs.read(2, 12 * BS as u64 - 150, &mut buf), Ok(300));
    assert_eq!(&buf[..], &big[12 * BS - 150..12 * BS + 150]);
    // Reads at and past the end.
    assert_eq!(fs.read(2, BIG_SIZE as u64 - 10, &mut buf), Ok(10));
    assert_eq!(&buf[..10], &big[BIG_SIZE - 10..]);
    assert_eq!(fs.read(2, BIG_SIZE as u64, &mut buf), Ok(0));
    assert_eq!(fs.read(2, 1 << 30, &mut buf), Ok(0));

    let holey = holey_content();
    let got = read_all(&fs, 3, HOLEY_SIZE);
    assert_eq!(got.len(), HOLEY_SIZE);
    assert!(got[BS..5 * BS].iter().all(|&b| b == 0), "direct hole reads as zeros");
    assert!(got[6 * BS..15 * BS].iter().all(|&b| b == 0), "holes behind the indirect block read as zeros");
    assert_eq!(got, holey);
    let mut hole = [0xFFu8; 100];
    assert_eq!(fs.read(3, 13 * BS as u64 + 7, &mut hole), Ok(100));
    assert!(hole.iter().all(|&b| b == 0));

    assert_eq!(read_all(&fs, 6, 0), Vec::<u8>::new());
    assert_eq!(fs.read(5, 0, &mut buf), Err(Error::InvalidArgument));
    assert_eq!(fs.read(0, 0, &mut buf), Err(Error::IsDir));

    // Read-only: nothing may be written, and the image is untouched.
    assert_eq!(fs.write(2, 0, b"x"), Err(Error::ReadOnly));
    assert_eq!(
        fs.create(0, b"new", NewInode { perm: 0o644, uid: 0, gid: 0 }).map(|a| a.ino),
        Err(Error::ReadOnly)
    );
    let back = fs.unmount().unwrap().into_bytes();
    assert!(back == img, "a read-only mount changed the image");

    // A read-write mount and a clean unmount with no changes touch only
    // the superblock's mount fields, and add no extension record (a plain
    // version 1 image stays one).
    let fs = FileSystem::mount(MemDevice::from_bytes(img.clone()), rw()).unwrap();
    let back = fs.unmount().unwrap().into_bytes();
    assert!(back[BS..] == img[BS..], "blocks past 0 changed by a no-op read-write mount");
    assert!(back[62..BS].iter().all(|&b| b == 0), "bytes 62.. of block 0 must stay zero");
    let sb = get_superblock(&back);
    assert_eq!(sb.mount_count, 8);
    assert_eq!(sb.state, 1);
    assert_eq!((sb.mount_time, sb.write_time), (T_MOUNT as u64, T_MOUNT as u64));
    assert_eq!((sb.free_blocks, sb.free_inodes), (G_BLOCKS - 40, G_INODES - 7));
    assert_eq!(&back[..38], &img[..38], "counts and constants unchanged");
    assert_eq!(&back[56..62], &img[56..62], "max_mount_count, state, errors unchanged");
}

// ---------------------------------------------------------------------------
// 2. A legacy (straddling, stream-written) directory
// ---------------------------------------------------------------------------

const L_ENTRIES: usize = 500;

fn legacy_name(i: usize) -> Vec<u8> {
    // 8 to 12 bytes: record lengths of 16 and 20 bytes.
    format!("file-{:03}{}", i, "_".repeat(i % 5)).into_bytes()
}

/// Root (inode 0) holds `legacy` (inode 1); `legacy` holds 500 names
/// pointing at empty regular files 2..=501, written as one stream.
/// Returns the image and the directory's data block count.
fn legacy_image() -> (Vec<u8>, usize) {
    let (b, _, first) = geometry(G_BLOCKS, G_INODES);
    assert_eq!(first, 18);
    let mut img = vec![0u8; G_BLOCKS as usize * BS];

    // The stream, exactly as the old host tool appends records.
    let mut stream = Vec::new();
    let mut push = |ino: u32, ft: u8, name: &[u8]| {
        let rl = rec_len_for(name);
        let at = stream.len();
        stream.resize(at + rl, 0);
        put_dirent(&mut stream, at, ino, rl, ft, name);
        at
    };
    push(1, FT_DIR, b".");
    push(0, FT_DIR, b"..");
    let mut straddlers = 0;
    let mut split_headers = 0;
    for k in 0..L_ENTRIES {
        let name = legacy_name(k);
        let at = push(2 + k as u32, FT_REG, &name);
        if at / BS != (at + rec_len_for(&name) - 1) / BS {
            straddlers += 1;
        }
        if at / BS != (at + 7) / BS {
            split_headers += 1;
        }
    }
    let size = stream.len();
    let nblocks = size.div_ceil(BS);
    assert!(nblocks >= 3, "stream must span at least 3 blocks");
    assert!(straddlers >= 2, "some records must straddle block boundaries");
    assert!(split_headers >= 1, "one record's 8-byte header is split across blocks");

    // Root directory, block 18.
    {
        let d = block_mut(&mut img, 18);
        put_dirent(d, 0, 0, 12, FT_DIR, b".");
        put_dirent(d, 12, 0, 12, FT_DIR, b"..");
        put_dirent(d, 24, 1, 16, FT_DIR, b"legacy");
    }
    let mut direct = [0u32; 12];
    direct[0] = 18;
    put_inode(
        &mut img,
        b,
        0,
        &Ino { mode: 0o040755, links: 3, size: 40, blocks: 1, direct, ..Ino::default() },
    );

    // The legacy directory: blocks 19.. hold the stream.
    let mut direct = [0u32; 12];
    for l in 0..nblocks {
        direct[l] = 19 + l as u32;
        let chunk = &stream[l * BS..((l + 1) * BS).min(size)];
        block_mut(&mut img, 19 + l as u32)[..chunk.len()].copy_from_slice(chunk);
    }
    put_inode(
        &mut img,
        b,
        1,
        &Ino {
            mode: 0o040755,
            links: 2,
            size: size as u32,
            blocks: nblocks as u32,
            direct,
            atime: TIME_BASE,
            ctime: TIME_BASE,
            mtime: TIME_BASE,
            ..Ino::default()
        },
    );
    for k in 0..L_ENTRIES {
        put_inode(
            &mut img,
            b,
            2 + k as u32,
            &Ino { mode: 0o100644, links: 1, uid: k as u16, ..Ino::default() },
        );
    }
    let used_blocks = 19 + nblocks as u32;
    for blk in 0..used_blocks {
        set_bit(&mut img, blk);
    }
    let used_inodes = 2 + L_ENTRIES as u32;
    put_superblock(
        &mut img,
        &Sb {
            magic: MAGIC,
            block_count: G_BLOCKS,
            inode_count: G_INODES,
            free_blocks: G_BLOCKS - used_blocks,
            free_inodes: G_INODES - used_inodes,
            first_data_block: first,
            block_size: 4096,
            inode_size: 96,
            blocks_per_group: 8192,
            inodes_per_group: 2048,
            mount_time: 0,
            write_time: TIME_BASE as u64,
            mount_count: 0,
            max_mount_count: 100,
            state: 1,
            errors: 0,
        },
    );
    (img, nblocks)
}

fn check_legacy_listing(fs: &FileSystem<MemDevice>, extra: Option<(&[u8], u32)>) {
    let listed = list_dir(fs, 1);
    let mut expected: Vec<(Vec<u8>, u32)> = vec![(b".".to_vec(), 1), (b"..".to_vec(), 0)];
    expected.extend((0..L_ENTRIES).map(|k| (legacy_name(k), 2 + k as u32)));
    if let Some((name, ino)) = extra {
        expected.push((name.to_vec(), ino));
    }
    let mut got: Vec<(Vec<u8>, u32)> = listed.iter().map(|e| (e.name.clone(), e.ino)).collect();
    assert_eq!(got.len(), expected.len(), "readdir returned {} entries", got.len());
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    for e in &listed {
        let want_type = if e.name == b"." || e.name == b".." { FT_DIR } else { FT_REG };
        assert_eq!(e.file_type, want_type, "file type of {:?}", String::from_utf8_lossy(&e.name));
    }
    // Resuming from cookies yields the same listing.
    assert_eq!(list_dir_chunked(fs, 1, 7), listed);
    for (name, ino) in &expected {
        let a = fs
            .lookup(1, name)
            .unwrap_or_else(|e| panic!("lookup {:?}: {e:?}", String::from_utf8_lossy(name)));
        assert_eq!(a.ino, *ino);
    }
    assert_eq!(fs.lookup(1, b"file-500").map(|a| a.ino), Err(Error::NotFound));
}

#[test]
fn legacy_straddling_directory_is_read_as_a_stream() {
    let (img, nblocks) = legacy_image();
    assert_eq!(audit(&img), (G_BLOCKS - 19 - nblocks as u32, G_INODES - 502));
    assert!(try_dir_records(&img, &get_inode(&img, 1, 1)).is_err(), "the input really straddles");

    // Read-only: every name is found, nothing is rewritten.
    let fs = FileSystem::mount(MemDevice::from_bytes(img.clone()), ro()).unwrap();
    check_legacy_listing(&fs, None);
    assert_eq!(fs.resolve(b"/legacy/file-123___", true), Ok(2 + 123));
    assert_eq!(fs.resolve(b"/legacy/file-499____/..", true).map(|_| ()), Err(Error::NotDir));
    let back = fs.unmount().unwrap().into_bytes();
    assert!(back == img, "a read-only mount changed the image");

    // Read-write: add one name, which rewrites the directory.
    let fs = FileSystem::mount(MemDevice::from_bytes(img), rw()).unwrap();
    let created = fs.create(1, b"file-new", NewInode { perm: 0o640, uid: 7, gid: 8 }).unwrap();
    assert_eq!(created.ino, 502, "new inodes are taken from 1 upward: 502 is the first free one");
    check_legacy_listing(&fs, Some((b"file-new", 502)));
    let bytes = fs.unmount().unwrap().into_bytes();

    // Remount: all 501 names (plus "." and "..") are there.
    let fs = FileSystem::mount(MemDevice::from_bytes(bytes.clone()), ro()).unwrap();
    check_legacy_listing(&fs, Some((b"file-new", 502)));
    let a = fs.getattr(502).unwrap();
    assert_eq!((a.kind, a.perm, a.uid, a.gid, a.nlink), (FileType::Regular, 0o640, 7, 8, 1));
    drop(fs);

    // Decode the rewritten directory by hand: no record crosses a block.
    let sb = get_superblock(&bytes);
    assert_eq!(sb.state, 1);
    assert_eq!(sb.mount_count, 1);
    let dir = get_inode(&bytes, 1, 1);
    assert_eq!(dir.mode, 0o040755);
    assert_eq!(dir.links, 2);
    let records = strict_dir_records(&bytes, &dir);
    let mut names: Vec<Vec<u8>> = records.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names.len(), L_ENTRIES + 3);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), L_ENTRIES + 3, "duplicate names after the rewrite");
    for r in &records {
        assert_eq!(r.rec_len % 4, 0);
        assert!(r.rec_len >= 8);
        assert_eq!(r.position / BS, (r.position + r.rec_len - 1) / BS, "record {:?} crosses a block", r.name);
        let want = match r.name.as_slice() {
            b"." => 1,
            b".." => 0,
            b"file-new" => 502,
            n => 2 + std::str::from_utf8(&n[5..8]).unwrap().parse::<u32>().unwrap(),
        };
        assert_eq!(r.ino, want, "entry {:?}", String::from_utf8_lossy(&r.name));
    }
    // "size = 4096 × k + bytes used in block k".
    let last = records.iter().max_by_key(|r| r.position).unwrap();
    let blocks_now = (dir.size as usize).div_ceil(BS);
    assert!(dir.size as usize > (blocks_now - 1) * BS && dir.size as usize <= blocks_now * BS);
    assert!(last.position + entry_len(&last.name) <= dir.size as usize);
    // The new inode on disk.
    let new = get_inode(&bytes, 1, 502);
    assert_eq!((new.mode, new.uid, new.gid, new.links, new.size), (0o100640, 7, 8, 1, 0));
    assert_eq!((new.atime, new.ctime, new.mtime), (T_MOUNT, T_MOUNT, T_MOUNT));
    // Bitmap and counters are consistent after the rewrite.
    let (free_blocks, free_inodes) = audit(&bytes);
    assert_eq!(sb.free_blocks, free_blocks);
    assert_eq!(sb.free_inodes, free_inodes);
    assert_eq!(free_inodes, G_INODES - 503);
}

fn entry_len(name: &[u8]) -> usize {
    rec_len_for(name)
}

// ---------------------------------------------------------------------------
// 3. An image written by the library, decoded by hand
// ---------------------------------------------------------------------------

#[test]
fn image_written_by_library_decodes_field_by_field() {
    const BLOCKS: u32 = 300;
    const INODES: u32 = 700;
    const FORMAT_TIME: u32 = 1_650_000_000;
    let (b, i, first) = geometry(BLOCKS, INODES);
    assert_eq!((b, i, first), (1, 17, 19));

    let options = FormatOptions {
        inode_count: Some(INODES),
        time: FORMAT_TIME,
        label: b"golden".to_vec(),
        uuid: [0x42; 16],
        // A plain version 1 layout: the journal's own inode and blocks are
        // checked by the journal tests.
        journal: false,
        ..FormatOptions::new(BLOCKS)
    };
    let device = format(MemDevice::new(BLOCKS), &options).unwrap();
    let fs = FileSystem::mount(device, rw()).unwrap();
    let owner = NewInode { perm: 0o750, uid: 1000, gid: 100 };
    let docs = fs.mkdir(0, b"docs", owner).unwrap();
    assert_eq!(docs.ino, 1);
    let readme = fs.create(docs.ino, b"readme.txt", NewInode { perm: 0o644, uid: 1000, gid: 100 }).unwrap();
    assert_eq!(readme.ino, 2);
    let content: Vec<u8> = (0..13 * BS + 77).map(|k| (k * 7 % 253) as u8).collect();
    assert_eq!(fs.write(readme.ino, 0, &content), Ok(content.len()));
    let link = fs.symlink(0, b"readme", b"docs/readme.txt", 1000, 100).unwrap();
    assert_eq!(link.ino, 3);
    let small = fs.create(0, b"small", NewInode { perm: 0o600, uid: 0, gid: 0 }).unwrap();
    assert_eq!(small.ino, 4);
    assert_eq!(fs.write(small.ino, 0, b"hello, blockfs\n"), Ok(15));
    let null =
        fs.mknod(0, b"null", FileType::CharDevice, NewInode { perm: 0o666, uid: 0, gid: 0 }, (1, 3)).unwrap();
    assert_eq!(null.ino, 5);
    let img = fs.unmount().unwrap().into_bytes();
    assert_eq!(img.len(), BLOCKS as usize * BS);

    // Superblock.
    let sb = get_superblock(&img);
    let (free_blocks, free_inodes) = audit(&img);
    assert_eq!(
        sb,
        Sb {
            magic: MAGIC,
            block_count: BLOCKS,
            inode_count: INODES,
            free_blocks,
            free_inodes,
            first_data_block: first,
            block_size: 4096,
            inode_size: 96,
            blocks_per_group: 8192,
            inodes_per_group: 2048,
            mount_time: T_MOUNT as u64,
            write_time: T_MOUNT as u64,
            mount_count: 1,
            max_mount_count: 100,
            state: 1,
            errors: 0,
        }
    );
    assert_eq!(&img[0..4], b"FKLB");
    assert_eq!(free_inodes, 700 - 6);
    // Root dir, docs dir, 14 data + 1 indirect, symlink, small.
    assert_eq!(free_blocks, BLOCKS - first - (1 + 1 + 15 + 1 + 1));

    // Block 0 after the superblock: two zero bytes, then the extension
    // record (magic "BFSX", CRC-32C over its first 124 bytes at byte 124).
    assert_eq!(&img[62..64], &[0, 0]);
    let ext = &img[64..64 + 128];
    assert_eq!(&ext[0..4], b"BFSX");
    assert_eq!(get_u16(ext, 4), 1);
    assert_eq!(get_u16(ext, 6), 128);
    assert_eq!(&ext[16..32], &[0x42; 16]);
    assert_eq!(&ext[32..38], b"golden");
    assert!(ext[38..64].iter().all(|&b| b == 0));
    assert_eq!(get_u32(ext, 124), crc32c(&ext[..124]));
    assert!(img[64 + 128..BS].iter().all(|&b| b == 0));
    assert_eq!(crc32c(b"123456789"), 0xE306_9283, "the hand CRC-32C itself");

    // Inode table: 6 inodes in use, the rest free; slot tails are zero.
    for ino in 0..INODES {
        let node = get_inode(&img, b, ino);
        assert_eq!(node.links != 0, ino <= 5, "inode {ino} in-use state");
    }
    for t in 0..i {
        let blk = block(&img, 1 + b + t);
        assert!(blk[INODES_PER_BLOCK * INODE_SIZE..].iter().all(|&x| x == 0), "table block {t} tail");
    }

    // Root (inode 0).
    let root = get_inode(&img, b, 0);
    assert_eq!(root.mode, 0o040755);
    assert_eq!(root.links, 3, "2 + one subdirectory");
    assert_eq!(root.blocks, 1);
    assert_eq!(root.direct[0], first, "format puts the root directory in the first data block");
    assert_eq!(root.atime, FORMAT_TIME);
    assert_eq!((root.mtime, root.ctime), (T_MOUNT, T_MOUNT));
    let recs = strict_dir_records(&img, &root);
    let got: Vec<(&[u8], u32, u8)> = recs.iter().map(|r| (r.name.as_slice(), r.ino, r.file_type)).collect();
    assert_eq!(
        got,
        vec![
            (&b"."[..], 0, FT_DIR),
            (b"..", 0, FT_DIR),
            (b"docs", 1, FT_DIR),
            (b"readme", 3, FT_LNK),
            (b"small", 4, FT_REG),
            (b"null", 5, FT_CHR),
        ]
    );
    for r in &recs {
        assert_eq!(r.rec_len % 4, 0);
        assert!(r.rec_len >= 8 + r.name.len());
    }
    let end = recs.iter().map(|r| r.position + entry_len(&r.name)).max().unwrap();
    assert!(root.size as usize >= end && root.size as usize <= BS);

    // docs (inode 1).
    let docs_i = get_inode(&img, b, 1);
    assert_eq!((docs_i.mode, docs_i.uid, docs_i.gid, docs_i.links), (0o040750, 1000, 100, 2));
    assert_eq!((docs_i.atime, docs_i.ctime, docs_i.mtime), (T_MOUNT, T_MOUNT, T_MOUNT));
    assert_eq!(docs_i.blocks, 1);
    let recs = strict_dir_records(&img, &docs_i);
    let got: Vec<(&[u8], u32, u8)> = recs.iter().map(|r| (r.name.as_slice(), r.ino, r.file_type)).collect();
    assert_eq!(got, vec![(&b"."[..], 1, FT_DIR), (b"..", 0, FT_DIR), (b"readme.txt", 2, FT_REG)]);

    // readme.txt (inode 2): 12 direct blocks and one single-indirect block.
    let file = get_inode(&img, b, 2);
    assert_eq!((file.mode, file.uid, file.gid, file.links), (0o100644, 1000, 100, 1));
    assert_eq!(file.size as usize, content.len());
    assert_eq!(file.blocks, 15, "14 data blocks + the indirect block");
    assert!(file.direct.iter().all(|&p| p != 0));
    assert_ne!(file.indirect, 0);
    assert_eq!(file.double_indirect, 0);
    let ib = block(&img, file.indirect);
    assert_ne!(get_u32(ib, 0), 0);
    assert_ne!(get_u32(ib, 4), 0);
    assert!(ib[8..].iter().all(|&x| x == 0), "only two pointers in the indirect block");
    for (l, &p) in logical_map(&img, &file, 14).iter().enumerate() {
        let chunk = &content[l * BS..((l + 1) * BS).min(content.len())];
        assert_eq!(&block(&img, p)[..chunk.len()], chunk, "data of logical block {l} at block {p}");
    }
    assert_eq!(read_by_hand(&img, &file), content);

    // Symlink (inode 3): target in its data block.
    let sl = get_inode(&img, b, 3);
    assert_eq!((sl.mode, sl.uid, sl.gid, sl.links), (0o120777, 1000, 100, 1));
    assert_eq!(sl.size, 15);
    assert_eq!(sl.blocks, 1);
    assert_ne!(sl.direct[0], 0);
    assert_eq!(&block(&img, sl.direct[0])[..15], b"docs/readme.txt");

    // small (inode 4).
    let sm = get_inode(&img, b, 4);
    assert_eq!((sm.mode, sm.size, sm.blocks, sm.links), (0o100600, 15, 1, 1));
    assert_eq!(&block(&img, sm.direct[0])[..15], b"hello, blockfs\n");

    // Character device (inode 5): rdev as (major << 8) | minor in direct[0].
    let nd = get_inode(&img, b, 5);
    assert_eq!((nd.mode, nd.size, nd.blocks, nd.links), (0o020666, 0, 0, 1));
    assert_eq!(nd.direct[0], (1 << 8) | 3);
    assert!(nd.direct[1..].iter().all(|&p| p == 0));
    assert_eq!((nd.indirect, nd.double_indirect), (0, 0));
}

// ---------------------------------------------------------------------------
// 4. Usable inodes: min(inode_count, 42 * I)
// ---------------------------------------------------------------------------

#[test]
fn usable_inode_limit() {
    // The seed's default for 256 MiB: 16384 inodes, I = 384, 16128 slots.
    let (b, i, first) = geometry(1024, 16384);
    assert_eq!((b, i, first), (1, 384, 386));
    let mut device = format(
        MemDevice::new(1024),
        &FormatOptions { inode_count: Some(16384), journal: false, ..FormatOptions::new(1024) },
    )
    .unwrap();
    let sb = get_superblock(device.as_bytes());
    assert_eq!(sb.first_data_block, 386);
    assert_eq!(sb.free_inodes, 16128 - 1);
    let fs = FileSystem::mount(device, rw()).unwrap();
    assert_eq!(fs.statfs().inodes, 16128);
    assert_eq!(fs.statfs().free_inodes, 16127);
    // Fill every slot: numbers 1..16128 are handed out, 16128.. never.
    let new = NewInode { perm: 0o644, uid: 0, gid: 0 };
    let mut highest = 0;
    for k in 1..16128u32 {
        let a =
            fs.create(0, format!("{k:05}").as_bytes(), new).unwrap_or_else(|e| panic!("create #{k}: {e:?}"));
        highest = highest.max(a.ino);
    }
    assert_eq!(highest, 16127);
    assert_eq!(fs.statfs().free_inodes, 0);
    assert_eq!(fs.create(0, b"16128", new).map(|a| a.ino), Err(Error::NoSpace));
    let img = fs.unmount().unwrap().into_bytes();
    let (free_blocks, free_inodes) = audit(&img);
    let sb = get_superblock(&img);
    assert_eq!((sb.free_blocks, sb.free_inodes), (free_blocks, free_inodes));
    assert_eq!(free_inodes, 0);
    // Nothing past the table: the last table block (383) holds slots
    // 16086..16127 and its 64-byte tail is zero; the root directory block
    // right after the table is still the root's first block.
    assert!(block(&img, 1 + 383)[INODES_PER_BLOCK * INODE_SIZE..].iter().all(|&x| x == 0));
    assert_eq!(get_inode(&img, 1, 0).direct[0], 386);
    assert_eq!(get_inode(&img, 1, 16127).links, 1);
    let root = get_inode(&img, 1, 0);
    let recs = strict_dir_records(&img, &root);
    assert_eq!(recs.len(), 2 + 16127);
    assert!(recs.iter().all(|r| r.ino < 16128));

    // A small case with the same defect: 128 inodes → I = 3 → 126 slots.
    const BLOCKS: u32 = 64;
    const INODES: u32 = 128;
    let (b, i, first) = geometry(BLOCKS, INODES);
    assert_eq!((b, i, first), (1, 3, 5));
    let usable = 42 * i;
    assert_eq!(usable, 126);
    let device = format(
        MemDevice::new(BLOCKS),
        &FormatOptions { inode_count: Some(INODES), journal: false, ..FormatOptions::new(BLOCKS) },
    )
    .unwrap();
    let fs = FileSystem::mount(device, rw()).unwrap();
    assert_eq!(fs.statfs().inodes, usable);
    assert_eq!(fs.statfs().free_inodes, usable - 1);
    let new = NewInode { perm: 0o644, uid: 0, gid: 0 };
    for k in 1..usable {
        let a =
            fs.create(0, format!("f{k:03}").as_bytes(), new).unwrap_or_else(|e| panic!("create #{k}: {e:?}"));
        assert_eq!(a.ino, k, "inodes are taken from 1 upward");
    }
    assert_eq!(fs.statfs().free_inodes, 0);
    // Inode numbers 126 and 127 exist in inode_count but have no slot.
    assert_eq!(fs.create(0, b"one-too-many", new).map(|a| a.ino), Err(Error::NoSpace));
    assert_eq!(fs.mkdir(0, b"dir-too-many", new).map(|a| a.ino), Err(Error::NoSpace));
    assert_eq!(fs.symlink(0, b"link-too-many", b"f001", 0, 0).map(|a| a.ino), Err(Error::NoSpace));
    assert_eq!(fs.lookup(0, b"one-too-many").map(|a| a.ino), Err(Error::NotFound));
    assert_eq!(fs.getattr(126), Err(Error::NotFound));
    assert_eq!(fs.getattr(127), Err(Error::NotFound));
    assert_eq!(fs.statfs().free_inodes, 0);
    let img = fs.unmount().unwrap().into_bytes();

    // By hand: the table's three blocks are full, nothing written past
    // slot 41 of any block, and the data area was not touched by inodes.
    let sb = get_superblock(&img);
    assert_eq!(sb.free_inodes, 0);
    let (free_blocks, free_inodes) = audit(&img);
    assert_eq!((sb.free_blocks, sb.free_inodes), (free_blocks, free_inodes));
    for ino in 0..usable {
        assert_ne!(get_inode(&img, b, ino).links, 0, "inode {ino}");
    }
    for t in 0..i {
        let blk = block(&img, 1 + b + t);
        assert!(blk[INODES_PER_BLOCK * INODE_SIZE..].iter().all(|&x| x == 0), "table block {t} tail written");
    }
    let root = get_inode(&img, b, 0);
    assert_eq!(root.direct[0], first);
    let recs = strict_dir_records(&img, &root);
    assert_eq!(recs.len(), 2 + (usable as usize - 1));
    assert!(recs.iter().all(|r| r.ino < usable));
    let inos: BTreeSet<u32> = recs.iter().map(|r| r.ino).collect();
    assert_eq!(inos, (0..usable).collect());

    // After a remount the limit still holds, and a freed number is reused.
    let fs = FileSystem::mount(MemDevice::from_bytes(img), rw()).unwrap();
    assert_eq!(fs.create(0, b"again", new).map(|a| a.ino), Err(Error::NoSpace));
    fs.unlink(0, b"f077").unwrap();
    assert_eq!(fs.statfs().free_inodes, 1);
    assert_eq!(fs.create(0, b"again", new).map(|a| a.ino), Ok(77));
    assert_eq!(fs.create(0, b"again2", new).map(|a| a.ino), Err(Error::NoSpace));
    let img = fs.unmount().unwrap().into_bytes();
    let (_, free_inodes) = audit(&img);
    assert_eq!(free_inodes, 0);
}

// ---------------------------------------------------------------------------
// 5. An image as VeridianOS's own mkfs-blockfs writes it by default
// ---------------------------------------------------------------------------

/// `mkfs-blockfs --size 64` (VeridianOS host tool): 16384 blocks, default
/// inode count 16384 / 4 = 4096, so I = 96 and only 42 * 96 = 4032 inodes
/// have a slot. That tool writes `free_inodes = inode_count -
/// next_free_inode`, counting the 64 slot-less inode numbers as free. Such
/// images must mount here (docs/FORMAT.md §4).
#[test]
fn image_from_veridian_mkfs_defaults_mounts() {
    const BLOCKS: u32 = 16384;
    const INODES: u32 = 4096;
    let (b, i, first) = geometry(BLOCKS, INODES);
    assert_eq!((b, i, first), (1, 96, 98));
    let usable = 42 * i;
    assert_eq!(usable, 4032);
    let mut img = vec![0u8; BLOCKS as usize * BS];

    // Root (inode 0, mode 0x41ED): "." and ".." then "etc" (inode 1, a
    // directory) and "hello" (inode 2), appended as a stream in block 98.
    // "etc" holds "." and ".." in block 99; "hello" has its data in 100.
    let mut off = 0;
    for (ino, ft, name) in
        [(0u32, FT_DIR, &b"."[..]), (0, FT_DIR, b".."), (1, FT_DIR, b"etc"), (2, FT_REG, b"hello")]
    {
        let rl = rec_len_for(name);
        put_dirent(block_mut(&mut img, 98), off, ino, rl, ft, name);
        off += rl;
    }
    let mut direct = [0u32; 12];
    direct[0] = 98;
    put_inode(
        &mut img,
        b,
        0,
        &Ino { mode: 0x41ED, links: 3, size: off as u32, blocks: 1, direct, ..Ino::default() },
    );
    put_dirent(block_mut(&mut img, 99), 0, 1, 12, FT_DIR, b".");
    put_dirent(block_mut(&mut img, 99), 12, 0, 12, FT_DIR, b"..");
    direct[0] = 99;
    put_inode(&mut img, b, 1, &Ino { mode: 0x41ED, links: 2, size: 24, blocks: 1, direct, ..Ino::default() });
    block_mut(&mut img, 100)[..6].copy_from_slice(b"hello\n");
    direct[0] = 100;
    put_inode(&mut img, b, 2, &Ino { mode: 0x81A4, links: 1, size: 6, blocks: 1, direct, ..Ino::default() });
    for blk in 0..101 {
        set_bit(&mut img, blk);
    }
    let next_free_inode = 3;
    put_superblock(
        &mut img,
        &Sb {
            magic: MAGIC,
            block_count: BLOCKS,
            inode_count: INODES,
            free_blocks: BLOCKS - 101,
            free_inodes: INODES - next_free_inode, // 4093 > 4032 - 3 usable free
            first_data_block: first,
            block_size: 4096,
            inode_size: 96,
            blocks_per_group: 8192,
            inodes_per_group: 2048,
            mount_time: 0,
            write_time: 0,
            mount_count: 0,
            max_mount_count: 100,
            state: 1,
            errors: 0,
        },
    );

    let fs = match FileSystem::mount(MemDevice::from_bytes(img.clone()), ro()) {
        Ok(fs) => fs,
        Err(e) => panic!("a default VeridianOS mkfs-blockfs image must mount; got {e:?}"),
    };
    let st = fs.statfs();
    assert_eq!(st.inodes, usable);
    assert!(st.free_inodes <= usable - 3, "free_inodes {} counts slot-less inodes", st.free_inodes);
    assert_eq!(fs.lookup(0, b"etc").map(|a| a.ino), Ok(1));
    assert_eq!(read_all(&fs, 2, 6), b"hello\n");
    drop(fs);

    // Read-write: the library may create files and writes a usable count.
    let fs = FileSystem::mount(MemDevice::from_bytes(img), rw()).unwrap();
    assert_eq!(fs.create(1, b"passwd", NewInode { perm: 0o644, uid: 0, gid: 0 }).map(|a| a.ino), Ok(3));
    let img = fs.unmount().unwrap().into_bytes();
    let sb = get_superblock(&img);
    let (free_blocks, free_inodes) = audit(&img);
    assert_eq!(free_inodes, usable - 4);
    assert_eq!(sb.free_blocks, free_blocks);
    assert!(sb.free_inodes <= usable - 4, "free_inodes written as {}", sb.free_inodes);
}

// ---------------------------------------------------------------------------
// 6. A legacy directory whose stream goes past the 12 direct blocks
// ---------------------------------------------------------------------------

const H_ENTRIES: usize = 3000;

fn huge_name(k: usize) -> Vec<u8> {
    // 24 to 30 bytes: records of 32, 36 and 40 bytes.
    format!("a-rather-long-name-{k:04}{}", "z".repeat(k % 7)).into_bytes()
}

/// Root holds `huge` (inode 1), a stream-written directory of 3000 names
/// spread over inodes 2..=5 (750 hard links each). Its blocks 12.. sit
/// behind the single-indirect pointer, as the older host tool writes them.
fn huge_legacy_image() -> (Vec<u8>, usize) {
    const BLOCKS: u32 = 512;
    let (b, _, first) = geometry(BLOCKS, G_INODES);
    assert_eq!(first, 18);
    let mut img = vec![0u8; BLOCKS as usize * BS];

    let mut stream = Vec::new();
    let mut push = |ino: u32, ft: u8, name: &[u8]| {
        let rl = rec_len_for(name);
        let at = stream.len();
        stream.resize(at + rl, 0);
        put_dirent(&mut stream, at, ino, rl, ft, name);
    };
    push(1, FT_DIR, b".");
    push(0, FT_DIR, b"..");
    for k in 0..H_ENTRIES {
        push(2 + (k % 4) as u32, FT_REG, &huge_name(k));
    }
    let size = stream.len();
    let nblocks = size.div_ceil(BS);
    assert!(nblocks > 12, "the stream must reach the indirect block");

    {
        let d = block_mut(&mut img, 18);
        put_dirent(d, 0, 0, 12, FT_DIR, b".");
        put_dirent(d, 12, 0, 12, FT_DIR, b"..");
        put_dirent(d, 24, 1, 12, FT_DIR, b"huge");
    }
    let mut direct = [0u32; 12];
    direct[0] = 18;
    put_inode(
        &mut img,
        b,
        0,
        &Ino { mode: 0o040755, links: 3, size: 36, blocks: 1, direct, ..Ino::default() },
    );

    // Direct blocks 19..=30, the indirect block 31, then 32.. for the rest.
    let mut direct = [0u32; 12];
    let mut next = 19u32;
    let indirect = 31u32;
    for l in 0..nblocks {
        if l == 12 {
            next = 32;
        }
        let p = next;
        next += 1;
        if l < 12 {
            direct[l] = p;
        } else {
            put_u32(block_mut(&mut img, indirect), (l - 12) * 4, p);
        }
        let chunk = &stream[l * BS..((l + 1) * BS).min(size)];
        block_mut(&mut img, p)[..chunk.len()].copy_from_slice(chunk);
    }
    put_inode(
        &mut img,
        b,
        1,
        &Ino {
            mode: 0o040755,
            links: 2,
            size: size as u32,
            blocks: nblocks as u32 + 1,
            direct,
            indirect,
            ..Ino::default()
        },
    );
    for t in 0..4u32 {
        put_inode(
            &mut img,
            b,
            2 + t,
            &Ino { mode: 0o100644, links: (H_ENTRIES / 4) as u16, ..Ino::default() },
        );
    }
    for blk in 0..next {
        set_bit(&mut img, blk);
    }
    put_superblock(
        &mut img,
        &Sb {
            magic: MAGIC,
            block_count: BLOCKS,
            inode_count: G_INODES,
            free_blocks: BLOCKS - next,
            free_inodes: G_INODES - 6,
            first_data_block: first,
            block_size: 4096,
            inode_size: 96,
            blocks_per_group: 8192,
            inodes_per_group: 2048,
            mount_time: 0,
            write_time: 0,
            mount_count: 0,
            max_mount_count: 100,
            state: 1,
            errors: 0,
        },
    );
    (img, nblocks)
}

fn check_huge_listing(fs: &FileSystem<MemDevice>, extra: Option<(&[u8], u32)>) {
    let mut want: Vec<(Vec<u8>, u32)> = vec![(b".".to_vec(), 1), (b"..".to_vec(), 0)];
    want.extend((0..H_ENTRIES).map(|k| (huge_name(k), 2 + (k % 4) as u32)));
    if let Some((name, ino)) = extra {
        want.push((name.to_vec(), ino));
    }
    let mut got: Vec<(Vec<u8>, u32)> = list_dir(fs, 1).into_iter().map(|e| (e.name, e.ino)).collect();
    assert_eq!(got.len(), want.len());
    got.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    for (name, ino) in &want {
        assert_eq!(fs.lookup(1, name).map(|a| a.ino), Ok(*ino), "lookup {:?}", String::from_utf8_lossy(name));
    }
}

#[test]
fn legacy_directory_past_twelve_blocks_is_read_and_rewritten() {
    let (img, nblocks) = huge_legacy_image();
    assert!(try_dir_records(&img, &get_inode(&img, 1, 1)).is_err(), "the input really straddles");
    let (free_blocks, free_inodes) = audit(&img);
    assert_eq!((free_blocks, free_inodes), (512 - 32 - (nblocks as u32 - 12), G_INODES - 6));

    let fs = FileSystem::mount(MemDevice::from_bytes(img.clone()), ro()).unwrap();
    check_huge_listing(&fs, None);
    assert_eq!(fs.getattr(3).map(|a| a.nlink), Ok(750));
    drop(fs);

    let fs = FileSystem::mount(MemDevice::from_bytes(img), rw()).unwrap();
    assert_eq!(fs.create(1, b"newcomer", NewInode { perm: 0o644, uid: 0, gid: 0 }).map(|a| a.ino), Ok(6));
    let bytes = fs.unmount().unwrap().into_bytes();

    let fs = FileSystem::mount(MemDevice::from_bytes(bytes.clone()), ro()).unwrap();
    check_huge_listing(&fs, Some((b"newcomer", 6)));
    drop(fs);

    let dir = get_inode(&bytes, 1, 1);
    assert_ne!(dir.indirect, 0, "the rewritten directory still needs the indirect block");
    let recs = strict_dir_records(&bytes, &dir);
    assert_eq!(recs.len(), H_ENTRIES + 3);
    let sb = get_superblock(&bytes);
    let (free_blocks, free_inodes) = audit(&bytes);
    assert_eq!((sb.free_blocks, sb.free_inodes), (free_blocks, free_inodes));
    assert_eq!(free_inodes, G_INODES - 7);
}
