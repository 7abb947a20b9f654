//! The consistency checker against damaged images.
//!
//! One good image is built through the library (files of every size class,
//! directories, a symlink, hard links, a FIFO, a device node, a directory of
//! 1500 entries spread over more than 12 blocks). Each test damages a copy
//! by editing bytes (locations decoded with the public format codecs), then
//! checks that a plain check reports the damage without writing, that a
//! full repair corrects it, that a second check finds nothing, and that
//! every file the damage did not touch reads back byte for byte.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use blockfs::check::{check, CheckOptions, ProblemKind, RepairMode, Report, Severity};
use blockfs::crc::crc32_append;
use blockfs::error::DeviceError;
use blockfs::format::dirent::{entry_size, BlockWalk, DirentHeader};
use blockfs::format::extension::Extension;
use blockfs::format::geometry::Geometry;
use blockfs::format::inode::DiskInode;
use blockfs::format::journal::{Commit, Descriptor, JournalSuperblock};
use blockfs::format::superblock::Superblock;
use blockfs::format::{Block, BLOCK_SIZE};
use blockfs::fs::{format, NewInode};
use blockfs::{BlockDevice, Error, FileSystem, FileType, FormatOptions, MemDevice, MountOptions};
use support::{CowDevice, Rng};

const BLOCKS: u32 = 4096;
const INODES: u32 = 2048;
const BIG_ENTRIES: usize = 1500;
const ROOT: u32 = 0;

// ---------------------------------------------------------------------------
// The good image
// ---------------------------------------------------------------------------

struct Good {
    bytes: Vec<u8>,
    /// Regular files: path and contents.
    files: Vec<(&'static str, Vec<u8>)>,
    ino: BTreeMap<&'static str, u32>,
}

/// Deterministic bytes, different per seed.
fn contents(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn big_name(index: usize) -> String {
    format!("entry-{index:04}-{}", "x".repeat(29))
}

const SYMLINK_TARGET: &[u8] = b"/docs/readme";

struct Builder {
    fs: FileSystem<MemDevice>,
    files: Vec<(&'static str, Vec<u8>)>,
    ino: BTreeMap<&'static str, u32>,
}

impl Builder {
    fn parent_and_name(&self, path: &'static str) -> (u32, &'static [u8]) {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() { ROOT } else { self.ino[parent] };
        (parent, name.as_bytes())
    }

    fn file(&mut self, path: &'static str, pieces: &[(u64, Vec<u8>)]) {
        let (parent, name) = self.parent_and_name(path);
        let attr = self.fs.create(parent, name, perm(0o644)).unwrap();
        let mut whole = Vec::new();
        for (offset, data) in pieces {
            assert_eq!(self.fs.write(attr.ino, *offset, data).unwrap(), data.len());
            let end = *offset as usize + data.len();
            whole.resize(whole.len().max(end), 0);
            whole[*offset as usize..end].copy_from_slice(data);
        }
        self.files.push((path, whole));
        self.ino.insert(path, attr.ino);
    }

    fn dir(&mut self, path: &'static str) {
        let (parent, name) = self.parent_and_name(path);
        let attr = self.fs.mkdir(parent, name, perm(0o755)).unwrap();
        self.ino.insert(path, attr.ino);
    }

    fn node(&mut self, path: &'static str, kind: FileType, rdev: (u32, u32)) {
        let (parent, name) = self.parent_and_name(path);
        let attr = self.fs.mknod(parent, name, kind, perm(0o644), rdev).unwrap();
        self.ino.insert(path, attr.ino);
    }
}

fn perm(perm: u16) -> NewInode {
    NewInode { perm, uid: 0, gid: 0 }
}

fn build() -> Good {
    let mut options = FormatOptions::new(BLOCKS);
    options.inode_count = Some(INODES);
    let device = format(MemDevice::new(BLOCKS), &options).unwrap();
    let fs = FileSystem::mount(device, MountOptions::default()).unwrap();
    let mut b = Builder { fs, files: Vec::new(), ino: BTreeMap::new() };
    b.file("/small.txt", &[(0, contents(1, 100))]);
    // 15 blocks: past the 12 direct pointers.
    b.file("/medium.bin", &[(0, contents(2, 60_000))]);
    // A block at 5 MiB: logical block 1280, behind the double indirect.
    b.file("/sparse.bin", &[(0, contents(3, 10_000)), (5 << 20, contents(4, 8192))]);
    b.dir("/docs");
    b.file("/docs/readme", &[(0, contents(5, 2000))]);
    b.dir("/docs/deep");
    b.file("/docs/deep/file", &[(0, contents(6, 500))]);
    let small = b.ino["/small.txt"];
    b.fs.link(small, b.ino["/docs"], b"small-link").unwrap();
    b.files.push(("/docs/small-link", contents(1, 100)));
    let sym = b.fs.symlink(ROOT, b"sym", SYMLINK_TARGET, 0, 0).unwrap();
    b.ino.insert("/sym", sym.ino);
    b.node("/fifo", FileType::Fifo, (0, 0));
    b.node("/dev0", FileType::CharDevice, (8, 1));
    b.dir("/big");
    for index in 0..BIG_ENTRIES {
        b.fs.create(b.ino["/big"], big_name(index).as_bytes(), perm(0o600)).unwrap();
    }
    b.file("/victim.txt", &[(0, contents(7, 9000))]);
    let Builder { fs, files, ino } = b;
    let bytes = fs.unmount().unwrap().into_bytes();
    Good { bytes, files, ino }
}

fn good() -> &'static Good {
    static GOOD: OnceLock<Good> = OnceLock::new();
    GOOD.get_or_init(build)
}

// ---------------------------------------------------------------------------
// Byte-level helpers
// ---------------------------------------------------------------------------

fn block(img: &[u8], index: u32) -> &Block {
    img[index as usize * BLOCK_SIZE..][..BLOCK_SIZE].try_into().unwrap()
}

fn block_mut(img: &mut [u8], index: u32) -> &mut Block {
    (&mut img[index as usize * BLOCK_SIZE..][..BLOCK_SIZE]).try_into().unwrap()
}

fn superblock(img: &[u8]) -> Superblock {
    Superblock::decode_block(block(img, 0)).unwrap()
}

fn edit_superblock(img: &mut [u8], edit: impl FnOnce(&mut Superblock)) {
    let mut sb = superblock(img);
    edit(&mut sb);
    sb.encode_block(block_mut(img, 0));
}

fn extension(img: &[u8]) -> Extension {
    Extension::decode_block(block(img, 0)).unwrap()
}

fn edit_extension(img: &mut [u8], edit: impl FnOnce(&mut Extension)) {
    let mut record = extension(img);
    edit(&mut record);
    record.encode_block(block_mut(img, 0));
}

fn geometry(img: &[u8]) -> Geometry {
    let sb = superblock(img);
    Geometry::new(sb.block_count, sb.inode_count).unwrap()
}

fn inode(img: &[u8], ino: u32) -> DiskInode {
    let (table, slot) = geometry(img).inode_location(ino);
    DiskInode::decode_slot(block(img, table), slot)
}

fn edit_inode(img: &mut [u8], ino: u32, edit: impl FnOnce(&mut DiskInode)) {
    let (table, slot) = geometry(img).inode_location(ino);
    let mut found = DiskInode::decode_slot(block(img, table), slot);
    edit(&mut found);
    found.encode_slot(block_mut(img, table), slot);
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Physical blocks of a file's first 1036 logical blocks (direct and
/// single indirect), holes left out.
fn mapped_blocks(img: &[u8], file: &DiskInode) -> Vec<u32> {
    let mut blocks: Vec<u32> = file.direct.iter().copied().filter(|&b| b != 0).collect();
    if file.indirect != 0 {
        let table = block(img, file.indirect);
        blocks.extend((0..1024).map(|i| le_u32(table, i * 4)).filter(|&b| b != 0));
    }
    blocks
}

fn set_bitmap_bit(img: &mut [u8], index: u32, used: bool) {
    let (bitmap, bit) = geometry(img).bitmap_location(index);
    let byte = &mut block_mut(img, bitmap)[(bit / 8) as usize];
    if used {
        *byte |= 1 << (bit % 8);
    } else {
        *byte &= !(1 << (bit % 8));
    }
}

fn bitmap_bit(img: &[u8], index: u32) -> bool {
    let (bitmap, bit) = geometry(img).bitmap_location(index);
    block(img, bitmap)[(bit / 8) as usize] & (1 << (bit % 8)) != 0
}

/// Where directory `dir`'s record called `name` lives: (image byte offset,
/// header).
fn find_entry(img: &[u8], dir: u32, name: &[u8]) -> (usize, DirentHeader) {
    let dir_inode = inode(img, dir);
    for (index, physical) in mapped_blocks(img, &dir_inode).into_iter().enumerate() {
        let limit = (dir_inode.size as usize).saturating_sub(index * BLOCK_SIZE).min(BLOCK_SIZE);
        if let Some(record) = BlockWalk::new(block(img, physical), limit).find(|r| r.name == name) {
            return (physical as usize * BLOCK_SIZE + record.offset, record.header);
        }
    }
    panic!("no entry {:?} in directory {dir}", String::from_utf8_lossy(name));
}

fn set_entry_inode(img: &mut [u8], dir: u32, name: &[u8], target: u32) {
    let (at, _) = find_entry(img, dir, name);
    img[at..at + 4].copy_from_slice(&target.to_le_bytes());
}

/// Appends a record in the zero tail of a directory's first block.
fn append_entry(img: &mut [u8], dir: u32, name: &[u8], target: u32, file_type: u8) {
    let dir_inode = inode(img, dir);
    let first = dir_inode.direct[0];
    let mut walk = BlockWalk::new(block(img, first), dir_inode.size as usize);
    walk.by_ref().count();
    let offset = walk.position();
    let header = DirentHeader {
        inode: target,
        rec_len: entry_size(name.len()) as u16,
        name_len: name.len() as u8,
        file_type,
    };
    blockfs::format::dirent::write_entry(block_mut(img, first), offset, header, name);
    edit_inode(img, dir, |d| d.size = d.size.max((offset + entry_size(name.len())) as u32));
}

// ---------------------------------------------------------------------------
// Running checks
// ---------------------------------------------------------------------------

fn options(repair: RepairMode) -> CheckOptions {
    CheckOptions::new(repair)
}

fn run_with(img: &mut Vec<u8>, options: &CheckOptions) -> Result<Report, Error> {
    let mut device = MemDevice::from_bytes(std::mem::take(img));
    let result = check(&mut device, options);
    *img = device.into_bytes();
    result
}

fn run(img: &mut Vec<u8>, repair: RepairMode) -> Report {
    run_with(img, &options(repair)).expect("check failed")
}

fn describe(report: &Report) -> String {
    let lines: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
    format!("status {}:\n{}", report.status(), lines.join("\n"))
}

fn has(report: &Report, wanted: impl Fn(&ProblemKind) -> bool) -> bool {
    report.problems.iter().any(|p| wanted(&p.kind))
}

fn mount_read_only(img: &[u8]) -> FileSystem<MemDevice> {
    let options = MountOptions { read_only: true, ..MountOptions::default() };
    FileSystem::mount(MemDevice::from_bytes(img.to_vec()), options).expect("mount")
}

fn read_all(fs: &FileSystem<MemDevice>, ino: u32) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size as usize;
    let mut buf = vec![0; size];
    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), size);
    buf
}

fn entry_count(fs: &FileSystem<MemDevice>, dir: u32) -> usize {
    let mut count = 0;
    fs.readdir(dir, 0, &mut |_, _| {
        count += 1;
        true
    })
    .unwrap();
    count
}

/// Every file not in `touched` reads back as written, the symlink and the
/// large directory included.
fn verify_untouched(img: &[u8], touched: &[&str]) {
    let fs = mount_read_only(img);
    for (path, data) in &good().files {
        if touched.contains(path) {
            continue;
        }
        let ino = fs.resolve(path.as_bytes(), false).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(read_all(&fs, ino) == *data, "{path} changed");
    }
    if !touched.contains(&"/sym") {
        let sym = fs.resolve(b"/sym", false).unwrap();
        assert_eq!(fs.readlink(sym).unwrap(), SYMLINK_TARGET);
    }
    if !touched.contains(&"/big") {
        let big = fs.resolve(b"/big", false).unwrap();
        assert_eq!(entry_count(&fs, big), BIG_ENTRIES + 2);
    }
}

/// Reads `/lost+found/#<ino>` (following it to `rest` inside a directory).
fn read_lost(img: &[u8], ino: u32, rest: &str) -> Vec<u8> {
    let fs = mount_read_only(img);
    let path = format!("/lost+found/#{ino}{rest}");
    let found = fs.resolve(path.as_bytes(), false).unwrap_or_else(|e| panic!("{path}: {e}"));
    read_all(&fs, found)
}

fn file_contents(path: &str) -> &'static [u8] {
    &good().files.iter().find(|(p, _)| *p == path).unwrap().1
}

/// The whole cycle for one damage: a plain check reports it (status 4)
/// and writes nothing, a full repair corrects it (status 1), a second
/// check is clean (status 0), and the untouched files are intact.
/// Returns the repaired image.
fn damage_case(
    damage: impl FnOnce(&mut Vec<u8>),
    expected: impl Fn(&ProblemKind) -> bool,
    touched: &[&str],
) -> Vec<u8> {
    let mut img = good().bytes.clone();
    damage(&mut img);
    let damaged = img.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, &expected), "damage not reported\n{}", describe(&report));
    assert_eq!(report.status(), 4, "{}", describe(&report));
    assert!(img == damaged, "a check without repairs changed the image");
    let repaired = run(&mut img, RepairMode::All);
    assert!(has(&repaired, &expected), "{}", describe(&repaired));
    assert_eq!(repaired.status(), 1, "{}", describe(&repaired));
    assert!(repaired.problems.iter().all(|p| p.repaired || p.severity != Severity::Error));
    let again = run(&mut img, RepairMode::None);
    assert_eq!(again.status(), 0, "not clean after repair\n{}", describe(&again));
    verify_untouched(&img, touched);
    img
}

fn ino(path: &str) -> u32 {
    good().ino[path]
}

// ---------------------------------------------------------------------------
// The clean image
// ---------------------------------------------------------------------------

#[test]
fn good_image_checks_clean_and_unchanged() {
    let mut img = good().bytes.clone();
    let report = run(&mut img, RepairMode::None);
    assert_eq!(report.errors, 0, "{}", describe(&report));
    assert_eq!(report.status(), 0);
    assert!(img == good().bytes, "a check without repairs changed the image");
    // The large directory's entries past block 12 are only a warning.
    let big = ino("/big");
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::EntriesPastDirectBlocks && p.inode == Some(big)));
    let stats = report.stats;
    assert_eq!(stats.directories, 4);
    assert_eq!(stats.symlinks, 1);
    assert_eq!(stats.special_files, 2);
    // Files, the 1500 empty ones, and the journal.
    assert_eq!(stats.regular_files as usize, 6 + BIG_ENTRIES + 1);
    let sb = superblock(&img);
    assert_eq!(stats.blocks_used, sb.block_count - sb.free_blocks);

    // Repairing a clean image changes nothing either.
    let report = run(&mut img, RepairMode::All);
    assert_eq!(report.status(), 0, "{}", describe(&report));
    assert_eq!(report.fixed, 0);
    assert!(img == good().bytes);
    verify_untouched(&img, &[]);
}

#[test]
fn messages_name_the_inode_block_and_entry() {
    let mut img = good().bytes.clone();
    let victim = ino("/victim.txt");
    edit_inode(&mut img, victim, |i| i.direct[1] = BLOCKS + 5);
    let (at, _) = find_entry(&img, ROOT, b"small.txt");
    img[at + 7] = 2;
    let report = run(&mut img, RepairMode::None);
    let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        lines.iter().any(|l| l.contains(&format!("inode {victim}")) && l.contains(&(BLOCKS + 5).to_string())),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("entry \"small.txt\"") && l.contains("file type")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\n')));
}

// ---------------------------------------------------------------------------
// Block bitmap and counters
// ---------------------------------------------------------------------------

#[test]
fn leaked_block() {
    let unused = BLOCKS - 10;
    assert!(!bitmap_bit(&good().bytes, unused));
    damage_case(
        |img| set_bitmap_bit(img, unused, true),
        |k| matches!(k, ProblemKind::LeakedBlocks { first, count: 1 } if *first == unused),
        &[],
    );
}

#[test]
fn used_block_marked_free() {
    let medium = inode(&good().bytes, ino("/medium.bin"));
    let used = medium.direct[3];
    damage_case(
        |img| set_bitmap_bit(img, used, false),
        |k| matches!(k, ProblemKind::UsedBlocksMarkedFree { first, .. } if *first == used),
        &[],
    );
}

#[test]
fn wrong_free_counters() {
    let img = damage_case(
        |img| {
            edit_superblock(img, |sb| {
                sb.free_blocks -= 7;
                sb.free_inodes += 3;
            })
        },
        |k| matches!(k, ProblemKind::FreeBlocksCount { .. }),
        &[],
    );
    assert_eq!(superblock(&img), superblock(&good().bytes));
    let mut damaged = good().bytes.clone();
    edit_superblock(&mut damaged, |sb| sb.free_inodes += 3);
    let report = run(&mut damaged, RepairMode::None);
    assert!(has(&report, |k| matches!(k, ProblemKind::FreeInodesCount { .. })));
}

// ---------------------------------------------------------------------------
// Block maps
// ---------------------------------------------------------------------------

#[test]
fn doubly_claimed_block() {
    let medium = inode(&good().bytes, ino("/medium.bin"));
    let shared = medium.direct[2];
    let victim = ino("/victim.txt");
    let img = damage_case(
        |img| edit_inode(img, victim, |i| i.direct[1] = shared),
        |k| matches!(k, ProblemKind::DuplicateBlock { block } if *block == shared),
        &["/victim.txt"],
    );
    // The later owner got its own copy; its other blocks are as written.
    let repaired = inode(&img, victim);
    assert_ne!(repaired.direct[1], shared);
    let fs = mount_read_only(&img);
    let data = read_all(&fs, victim);
    let original = file_contents("/victim.txt");
    assert_eq!(data[..4096], original[..4096]);
    assert_eq!(data[8192..], original[8192..]);
    assert_eq!(data[4096..8192], file_contents("/medium.bin")[8192..12288]);
}

#[test]
fn pointer_out_of_range() {
    let victim = ino("/victim.txt");
    damage_case(
        |img| edit_inode(img, victim, |i| i.direct[1] = BLOCKS + 100),
        |k| matches!(k, ProblemKind::PointerOutOfRange { pointer } if *pointer == BLOCKS + 100),
        &["/victim.txt"],
    );
}

#[test]
fn pointer_into_metadata() {
    let victim = ino("/victim.txt");
    let table = geometry(&good().bytes).first_inode_table_block();
    let img = damage_case(
        |img| edit_inode(img, victim, |i| i.direct[1] = table),
        |k| matches!(k, ProblemKind::PointerIntoMetadata { pointer } if *pointer == table),
        &["/victim.txt"],
    );
    // Cleared to a hole; the rest of the file is intact.
    let fs = mount_read_only(&img);
    let data = read_all(&fs, victim);
    assert!(data[4096..8192].iter().all(|&b| b == 0));
    assert_eq!(data[8192..], file_contents("/victim.txt")[8192..]);
}

#[test]
fn bad_blocks_count() {
    let medium = ino("/medium.bin");
    let img = damage_case(
        |img| edit_inode(img, medium, |i| i.blocks += 3),
        |k| matches!(k, ProblemKind::BadBlockCount { .. }),
        &[],
    );
    assert_eq!(inode(&img, medium).blocks, inode(&good().bytes, medium).blocks);
}

#[test]
fn triple_indirect_set() {
    let victim = ino("/victim.txt");
    damage_case(
        |img| edit_inode(img, victim, |i| i.triple_indirect = BLOCKS - 20),
        |k| matches!(k, ProblemKind::TripleIndirectSet { .. }),
        &[],
    );
}

#[test]
fn blocks_past_the_size() {
    let medium = ino("/medium.bin");
    let img = damage_case(
        |img| edit_inode(img, medium, |i| i.size = 4096),
        |k| matches!(k, ProblemKind::BlocksPastEnd { .. }),
        &["/medium.bin"],
    );
    // The size grew back over every mapped block: nothing was dropped.
    let fs = mount_read_only(&img);
    let data = read_all(&fs, medium);
    assert_eq!(data.len(), 15 * 4096);
    assert_eq!(data[..60_000], file_contents("/medium.bin")[..]);
}

#[test]
fn symlink_with_bad_size() {
    let sym = ino("/sym");
    damage_case(
        |img| edit_inode(img, sym, |i| i.size = 0),
        |k| matches!(k, ProblemKind::SymlinkBadSize { size: 0 }),
        &[],
    );
}

#[test]
fn fifo_holding_data() {
    let fifo = ino("/fifo");
    damage_case(
        |img| edit_inode(img, fifo, |i| i.direct[3] = 1234),
        |k| *k == ProblemKind::SpecialInodeHasData,
        &[],
    );
}

#[test]
fn device_number_is_not_a_block_pointer() {
    // (8, 1) is kept as 0x0801 in direct[0]: a block number inside the
    // data area, which a checker following it would claim.
    let dev = ino("/dev0");
    assert_eq!(inode(&good().bytes, dev).direct[0], 0x0801);
    assert!(geometry(&good().bytes).is_data_block(0x0801));
    let mut img = good().bytes.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(!report.problems.iter().any(|p| p.inode == Some(dev) || p.block == Some(0x0801)));
}

#[test]
fn unknown_file_type_keeps_the_data() {
    let victim = ino("/victim.txt");
    damage_case(
        |img| edit_inode(img, victim, |i| i.mode = 0o170644),
        |k| matches!(k, ProblemKind::BadFileType { .. }),
        &[],
    );
}

#[test]
fn root_that_is_not_a_directory() {
    damage_case(
        |img| edit_inode(img, ROOT, |i| i.mode = 0o100755),
        |k| matches!(k, ProblemKind::RootNotDirectory { .. }),
        &[],
    );
}

// ---------------------------------------------------------------------------
// Link counts and reachability
// ---------------------------------------------------------------------------

#[test]
fn link_count_too_high() {
    let small = ino("/small.txt");
    damage_case(
        |img| edit_inode(img, small, |i| i.links_count = 5),
        |k| matches!(k, ProblemKind::BadLinkCount { recorded: 5, actual: 2 }),
        &[],
    );
}

#[test]
fn link_count_too_low() {
    let small = ino("/small.txt");
    let docs = ino("/docs");
    let img = damage_case(
        |img| {
            edit_inode(img, small, |i| i.links_count = 1);
            edit_inode(img, docs, |i| i.links_count = 2);
        },
        |k| matches!(k, ProblemKind::BadLinkCount { recorded: 1, actual: 2 }),
        &[],
    );
    assert_eq!(inode(&img, docs).links_count, 3);
}

#[test]
fn orphan_inode_goes_to_lost_and_found() {
    let file = ino("/docs/deep/file");
    let img = damage_case(
        |img| set_entry_inode(img, ino("/docs/deep"), b"file", 0),
        |k| *k == ProblemKind::OrphanInode,
        &["/docs/deep/file"],
    );
    assert_eq!(read_lost(&img, file, ""), file_contents("/docs/deep/file"));
}

#[test]
fn orphan_left_alone_by_safe_repairs() {
    let mut img = good().bytes.clone();
    set_entry_inode(&mut img, ino("/docs/deep"), b"file", 0);
    let report = run(&mut img, RepairMode::Safe);
    assert_eq!(report.status(), 4, "{}", describe(&report));
    // The inode keeps its link count rather than being freed.
    assert_eq!(inode(&img, ino("/docs/deep/file")).links_count, 1);
}

#[test]
fn lost_and_found_name_taken_puts_orphans_in_the_root() {
    // A regular file called lost+found: as e2fsck does, the orphan goes
    // into the root instead.
    let mut img = good().bytes.clone();
    let (at, _) = find_entry(&img, ROOT, b"victim.txt");
    img[at + 8..at + 18].copy_from_slice(b"lost+found");
    let file = ino("/docs/deep/file");
    set_entry_inode(&mut img, ino("/docs/deep"), b"file", 0);
    let small = ino("/small.txt");
    edit_inode(&mut img, small, |i| i.links_count = 7);
    let report = run(&mut img, RepairMode::All);
    assert!(has(&report, |k| *k == ProblemKind::LostFoundUnavailable), "{}", describe(&report));
    assert_eq!(report.status(), 1, "{}", describe(&report));
    assert_eq!(inode(&img, small).links_count, 2);
    let again = run(&mut img, RepairMode::None);
    assert_eq!(again.errors, 0, "{}", describe(&again));
    let fs = mount_read_only(&img);
    let path = format!("/#{file}");
    let found = fs.resolve(path.as_bytes(), false).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(read_all(&fs, found), file_contents("/docs/deep/file"));
}

#[test]
fn unreachable_directory() {
    let docs = ino("/docs");
    let img = damage_case(
        |img| set_entry_inode(img, ROOT, b"docs", 0),
        |k| matches!(k, ProblemKind::UnreachableDirectory { in_cycle: false }),
        &["/docs/readme", "/docs/deep/file", "/docs/small-link"],
    );
    assert_eq!(read_lost(&img, docs, "/readme"), file_contents("/docs/readme"));
    assert_eq!(read_lost(&img, docs, "/deep/file"), file_contents("/docs/deep/file"));
}

// ---------------------------------------------------------------------------
// Directory entries
// ---------------------------------------------------------------------------

#[test]
fn entry_naming_a_free_inode() {
    let victim = ino("/victim.txt");
    let free = 2000;
    assert!(inode(&good().bytes, free).is_free());
    let img = damage_case(
        |img| set_entry_inode(img, ROOT, b"victim.txt", free),
        |k| matches!(k, ProblemKind::EntryToFreeInode { target } if *target == free),
        &["/victim.txt"],
    );
    assert_eq!(read_lost(&img, victim, ""), file_contents("/victim.txt"));
}

#[test]
fn entry_naming_an_inode_past_the_table() {
    damage_case(
        |img| set_entry_inode(img, ROOT, b"victim.txt", INODES + 7),
        |k| matches!(k, ProblemKind::EntryInodeOutOfRange { .. }),
        &["/victim.txt"],
    );
}

#[test]
fn bad_file_type_byte() {
    let damage = |img: &mut Vec<u8>| {
        let (at, _) = find_entry(img, ROOT, b"small.txt");
        img[at + 7] = 2;
    };
    damage_case(damage, |k| matches!(k, ProblemKind::BadFileTypeByte { found: 2, expected: 1 }), &[]);
    // A safe repair fixes it too.
    let mut img = good().bytes.clone();
    damage(&mut img);
    assert_eq!(run(&mut img, RepairMode::Safe).status(), 1);
    assert_eq!(run(&mut img, RepairMode::None).status(), 0);
}

#[test]
fn name_with_a_slash() {
    let victim = ino("/victim.txt");
    let img = damage_case(
        |img| {
            let (at, _) = find_entry(img, ROOT, b"victim.txt");
            img[at + 8 + 3] = b'/';
        },
        |k| *k == ProblemKind::BadName,
        &["/victim.txt"],
    );
    assert_eq!(read_lost(&img, victim, ""), file_contents("/victim.txt"));
}

#[test]
fn duplicate_name() {
    let dev = ino("/dev0");
    let img = damage_case(
        |img| {
            let (at, _) = find_entry(img, ROOT, b"dev0");
            img[at + 8..at + 12].copy_from_slice(b"fifo");
        },
        |k| matches!(k, ProblemKind::DuplicateName { target } if *target == dev),
        &[],
    );
    let fs = mount_read_only(&img);
    assert_eq!(fs.getattr(fs.resolve(b"/fifo", false).unwrap()).unwrap().kind, FileType::Fifo);
    let lost = fs.resolve(format!("/lost+found/#{dev}").as_bytes(), false).unwrap();
    assert_eq!(fs.getattr(lost).unwrap().rdev, (8, 1));
}

#[test]
fn duplicate_name_found_with_little_memory() {
    // 1500 names in 16 KiB shares: the directory is read several times.
    let mut small_memory = options(RepairMode::None);
    small_memory.name_memory = 16 << 10;
    let mut img = good().bytes.clone();
    let big = ino("/big");
    let (at, _) = find_entry(&img, big, big_name(700).as_bytes());
    img[at + 8..at + 48].copy_from_slice(big_name(10).as_bytes());
    let report = run_with(&mut img, &small_memory).unwrap();
    assert!(has(&report, |k| matches!(k, ProblemKind::DuplicateName { .. })), "{}", describe(&report));
    small_memory.repair = RepairMode::All;
    assert_eq!(run_with(&mut img, &small_memory).unwrap().status(), 1);
    small_memory.repair = RepairMode::None;
    assert_eq!(run_with(&mut img, &small_memory).unwrap().status(), 0);
}

#[test]
fn missing_dotdot() {
    let deep = ino("/docs/deep");
    let img = damage_case(
        |img| {
            let (at, _) = find_entry(img, deep, b"..");
            img[at + 9] = b'_';
        },
        |k| *k == ProblemKind::MissingDotDot,
        &[],
    );
    let (_, header) = find_entry(&img, deep, b"..");
    assert_eq!(header.inode, ino("/docs"));
}

#[test]
fn wrong_dotdot() {
    let deep = ino("/docs/deep");
    let docs = ino("/docs");
    damage_case(
        |img| set_entry_inode(img, deep, b"..", ROOT),
        |k| matches!(k, ProblemKind::BadDotDot { found: 0, expected } if *expected == docs),
        &[],
    );
}

#[test]
fn directory_cycle() {
    let deep = ino("/docs/deep");
    let docs = ino("/docs");
    damage_case(
        |img| append_entry(img, deep, b"loop", docs, 2),
        |k| matches!(k, ProblemKind::DirectoryLoop { target } if *target == docs),
        &[],
    );
}

#[test]
fn detached_directory_cycle() {
    // /docs loses its name and /docs/deep gets an entry back to it: the
    // two only reach each other.
    let deep = ino("/docs/deep");
    let docs = ino("/docs");
    let img = damage_case(
        |img| {
            set_entry_inode(img, ROOT, b"docs", 0);
            append_entry(img, deep, b"up", docs, 2);
        },
        |k| matches!(k, ProblemKind::UnreachableDirectory { in_cycle: true }),
        &["/docs/readme", "/docs/deep/file", "/docs/small-link"],
    );
    assert_eq!(read_lost(&img, docs, "/deep/file"), file_contents("/docs/deep/file"));
}

#[test]
fn garbage_in_a_directory_block() {
    let docs = ino("/docs");
    let readme = ino("/docs/readme");
    let deep = ino("/docs/deep");
    let img = damage_case(
        |img| {
            // Over the records of "readme" and "deep", after "." and "..".
            let first = inode(img, docs).direct[0];
            block_mut(img, first)[24..48].fill(0xa5);
        },
        |k| matches!(k, ProblemKind::DamagedBlock { logical: 0, offset: 24 }),
        &["/docs/readme", "/docs/deep/file"],
    );
    // What followed the garbage is still in place; the rest was rescued.
    verify_untouched(&img, &["/docs/readme", "/docs/deep/file"]);
    assert_eq!(read_lost(&img, readme, ""), file_contents("/docs/readme"));
    assert_eq!(read_lost(&img, deep, "/file"), file_contents("/docs/deep/file"));
}

/// Rewrites `/big` as the older host tool did: one stream of records
/// packed back to back across block boundaries, `size` = stream length.
fn make_legacy(img: &mut [u8]) {
    let big = ino("/big");
    let dir = inode(img, big);
    let blocks = mapped_blocks(img, &dir);
    let mut stream = Vec::new();
    for (index, &physical) in blocks.iter().enumerate() {
        let limit = (dir.size as usize).saturating_sub(index * BLOCK_SIZE).min(BLOCK_SIZE);
        for record in BlockWalk::new(block(img, physical), limit).filter(|r| r.is_live()) {
            let start = stream.len();
            stream.resize(start + entry_size(record.name.len()), 0);
            let header = DirentHeader { rec_len: entry_size(record.name.len()) as u16, ..record.header };
            header.encode(&mut stream[start..]);
            stream[start + 8..start + 8 + record.name.len()].copy_from_slice(record.name);
        }
    }
    assert_eq!(stream.len().div_ceil(BLOCK_SIZE), blocks.len(), "stream needs as many blocks");
    stream.resize(blocks.len() * BLOCK_SIZE, 0);
    for (chunk, &physical) in stream.chunks(BLOCK_SIZE).zip(&blocks) {
        block_mut(img, physical).copy_from_slice(chunk);
    }
    let length = (BIG_ENTRIES * entry_size(big_name(0).len()) + 24) as u32;
    edit_inode(img, big, |d| d.size = length);
}

#[test]
fn legacy_straddling_directory() {
    let mut legacy = good().bytes.clone();
    make_legacy(&mut legacy);
    // The library reads it as a stream.
    let fs = mount_read_only(&legacy);
    assert_eq!(entry_count(&fs, ino("/big")), BIG_ENTRIES + 2);
    drop(fs);
    let img = damage_case(|img| make_legacy(img), |k| *k == ProblemKind::LegacyLayout, &[]);
    // Now in the block layout: every record inside its block.
    let big = inode(&img, ino("/big"));
    for (index, physical) in mapped_blocks(&img, &big).into_iter().enumerate() {
        let limit = (big.size as usize).saturating_sub(index * BLOCK_SIZE).min(BLOCK_SIZE);
        let mut walk = BlockWalk::new(block(&img, physical), limit);
        walk.by_ref().count();
        assert_eq!(walk.end(), Some(blockfs::format::dirent::BlockEnd::Clean));
    }
    // A safe repair rewrites it as well.
    let mut img = legacy;
    assert_eq!(run(&mut img, RepairMode::Safe).status(), 1);
    assert_eq!(run(&mut img, RepairMode::None).status(), 0);
    verify_untouched(&img, &[]);
}

// ---------------------------------------------------------------------------
// Superblock, extension record, journal, orphan chain
// ---------------------------------------------------------------------------

#[test]
fn first_data_block_wrong() {
    damage_case(
        |img| edit_superblock(img, |sb| sb.first_data_block += 1),
        |k| matches!(k, ProblemKind::FirstDataBlockMismatch { .. }),
        &[],
    );
}

#[test]
fn impossible_superblocks_are_errors_not_panics() {
    type Damage = fn(&mut Superblock);
    let cases: [(&str, Damage); 5] = [
        ("inode count", |sb| sb.inode_count += 500),
        ("no inodes", |sb| sb.inode_count = 0),
        ("larger than the device", |sb| sb.block_count = BLOCKS * 2),
        ("magic", |sb| sb.magic ^= 1),
        ("tiny", |sb| sb.block_count = 3),
    ];
    for (what, damage) in cases {
        for repair in [RepairMode::None, RepairMode::All] {
            let mut img = good().bytes.clone();
            edit_superblock(&mut img, damage);
            let before = img.clone();
            let result = run_with(&mut img, &options(repair));
            assert!(result.is_err(), "{what}: {result:?}");
            assert!(img == before, "{what}: image changed");
        }
    }
}

#[test]
fn extension_record_problems_are_not_errors() {
    let mut img = good().bytes.clone();
    block_mut(&mut img, 0)[64 + 40] ^= 0xff;
    let before = img.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, |k| matches!(k, ProblemKind::ExtensionInvalid(_))), "{}", describe(&report));
    // The journal inode is still flagged: reported as detached.
    assert!(has(&report, |k| *k == ProblemKind::JournalDetached));
    assert_eq!(report.status(), 0, "{}", describe(&report));
    assert!(img == before);

    let mut plain = good().bytes.clone();
    block_mut(&mut plain, 0)[62..].fill(0);
    let report = run(&mut plain, RepairMode::All);
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::ExtensionMissing && p.severity == Severity::Note));
    assert_eq!(report.status(), 0, "{}", describe(&report));
}

#[test]
fn hidden_system_inode_is_no_orphan() {
    let journal = extension(&good().bytes).journal_inode;
    assert_ne!(journal, 0);
    assert_eq!(inode(&good().bytes, journal).links_count, 1);
    let mut img = good().bytes.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(!report.problems.iter().any(|p| p.inode == Some(journal)), "{}", describe(&report));
}

#[test]
fn journal_inode_not_owning_its_run() {
    let journal = extension(&good().bytes).journal_inode;
    let img = damage_case(
        |img| edit_inode(img, journal, |i| i.direct[5] = BLOCKS - 30),
        |k| *k == ProblemKind::JournalInodeInvalid,
        &[],
    );
    assert!(!extension(&img).has_journal());
    // The image still mounts read-write.
    FileSystem::mount(MemDevice::from_bytes(img), MountOptions::default()).unwrap();
}

#[test]
fn damaged_journal_superblock() {
    let first = extension(&good().bytes).journal_first_block;
    let mut img =
        damage_case(|img| block_mut(img, first)[10] ^= 0x40, |k| *k == ProblemKind::JournalDamaged, &[]);
    assert!(JournalSuperblock::decode(block(&img, first)).is_ok());
    let fs =
        FileSystem::mount(MemDevice::from_bytes(std::mem::take(&mut img)), MountOptions::default()).unwrap();
    fs.unmount().unwrap();
}

/// Puts a committed transaction in the journal that logs `blocks` with
/// the given contents (their home locations keep what they had).
fn log_transaction(img: &mut [u8], blocks: &[(u32, Block)]) {
    let record = extension(img);
    let first = record.journal_first_block;
    let sequence = JournalSuperblock::decode(block(img, first)).unwrap().sequence;
    let targets = blocks.iter().map(|(home, _)| *home).collect();
    let descriptor = Descriptor { sequence, total: blocks.len() as u32, targets }.encode();
    let mut crc = crc32_append(0, &descriptor);
    *block_mut(img, first + 1) = descriptor;
    for (index, (_, copy)) in blocks.iter().enumerate() {
        crc = crc32_append(crc, copy);
        *block_mut(img, first + 2 + index as u32) = *copy;
    }
    let commit = Commit { sequence, total: blocks.len() as u32, body_crc: crc };
    *block_mut(img, first + 2 + blocks.len() as u32) = commit.encode();
}

#[test]
fn committed_journal_transaction_is_read_through_then_replayed() {
    // The home inode-table block holds a wrong link count; the journal
    // holds the block as committed.
    let small = ino("/small.txt");
    let (table, _) = geometry(&good().bytes).inode_location(small);
    let committed = *block(&good().bytes, table);
    let mut img = good().bytes.clone();
    edit_inode(&mut img, small, |i| i.links_count = 9);
    log_transaction(&mut img, &[(table, committed)]);
    let before = img.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, |k| *k == ProblemKind::JournalPending), "{}", describe(&report));
    assert_eq!(report.status(), 0, "{}", describe(&report));
    assert!(img == before);
    // Replaying changes the image: 1, as e2fsck after a journal replay.
    let report = run(&mut img, RepairMode::Safe);
    assert_eq!(report.status(), 1, "{}", describe(&report));
    assert_eq!(inode(&img, small).links_count, 2);
    assert_eq!(
        run(&mut img, RepairMode::None)
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::JournalPending)
            .count(),
        0
    );
}

#[test]
fn orphan_chain_left_by_a_crash() {
    // /victim.txt unlinked while open, then the machine stopped.
    let victim = ino("/victim.txt");
    let held = inode(&good().bytes, victim).direct[0];
    let mut img = good().bytes.clone();
    set_entry_inode(&mut img, ROOT, b"victim.txt", 0);
    edit_inode(&mut img, victim, |i| {
        i.links_count = 0;
        i.dtime = 0;
    });
    edit_extension(&mut img, |e| e.orphan_head = victim);
    let before = img.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, |k| matches!(k, ProblemKind::PendingOrphans { count: 1 })), "{}", describe(&report));
    assert_eq!(report.status(), 0, "{}", describe(&report));
    assert!(img == before);
    // Releasing them is what a mount does: nothing was wrong, but the
    // image changed, which the status tells (as e2fsck's does).
    let report = run(&mut img, RepairMode::Safe);
    assert_eq!(report.status(), 1, "{}", describe(&report));
    assert!(report.problems.iter().any(|p| p.kind == ProblemKind::PendingOrphans { count: 1 } && p.repaired));
    assert_eq!(extension(&img).orphan_head, 0);
    assert!(!bitmap_bit(&img, held));
    let blocks = inode(&good().bytes, victim).blocks;
    assert_eq!(superblock(&img).free_blocks, superblock(&good().bytes).free_blocks + blocks);
    assert_eq!(superblock(&img).free_inodes, superblock(&good().bytes).free_inodes + 1);
    assert_eq!(run(&mut img, RepairMode::None).status(), 0);
    verify_untouched(&img, &["/victim.txt"]);
}

#[test]
fn orphan_chain_naming_a_linked_inode_is_a_pending_truncation() {
    // A crash between a truncation's first step (size cut, inode chained)
    // and its last (blocks past the size freed).
    let medium = ino("/medium.bin");
    let mut img = good().bytes.clone();
    edit_inode(&mut img, medium, |inode| inode.size = 4096);
    edit_extension(&mut img, |e| e.orphan_head = medium);
    let pristine = img.clone();
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, |k| matches!(k, ProblemKind::PendingOrphans { count: 1 })), "{}", describe(&report));
    assert!(report.problems.iter().all(|p| p.severity != Severity::Error), "{}", describe(&report));

    // A read-write mount finishes the truncation.
    let mut mounted = pristine.clone();
    {
        let fs = FileSystem::mount(MemDevice::from_bytes(mounted.clone()), MountOptions::default()).unwrap();
        assert_eq!(read_all(&fs, medium), contents(2, 60_000)[..4096]);
        mounted = fs.unmount().unwrap().into_bytes();
    }
    let after_mount = run(&mut mounted, RepairMode::None);
    assert_eq!(after_mount.status(), 0, "{}", describe(&after_mount));

    // So does a repair.
    let repaired = run(&mut img, RepairMode::Safe);
    assert!(repaired.problems.iter().all(|p| p.repaired || p.severity != Severity::Error));
    let again = run(&mut img, RepairMode::None);
    assert_eq!(again.status(), 0, "not clean after repair\n{}", describe(&again));
    let fs = mount_read_only(&img);
    // The data block, and at most the emptied indirect block the trim
    // leaves (the checker clears pointers; it does not restructure maps).
    assert!(fs.getattr(medium).unwrap().blocks <= 2);
    assert_eq!(read_all(&fs, medium), contents(2, 60_000)[..4096]);
}

#[test]
fn older_tools_free_inode_count_is_a_warning() {
    // The good image's 2048 inode numbers have 2016 slots: the older host
    // tool counts the 32 homeless ones as free.
    let mut img = good().bytes.clone();
    edit_superblock(&mut img, |sb| sb.free_inodes += 32);
    let report = run(&mut img, RepairMode::None);
    assert!(
        has(&report, |k| *k == ProblemKind::HomelessInodesCounted { count: 32 }),
        "{}",
        describe(&report)
    );
    assert_eq!(report.status(), 0);
    assert_eq!(run(&mut img, RepairMode::Safe).status(), 1, "the count was rewritten");
    assert_eq!(superblock(&img).free_inodes, superblock(&good().bytes).free_inodes);
}

#[test]
fn unclean_state_is_a_warning_that_repairs_clear() {
    let mut img = good().bytes.clone();
    edit_superblock(&mut img, |sb| sb.state = 0);
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, |k| *k == ProblemKind::NotCleanlyUnmounted), "{}", describe(&report));
    assert_eq!(report.status(), 0);
    let report = run(&mut img, RepairMode::Safe);
    assert!(report.problems.iter().any(|p| p.kind == ProblemKind::NotCleanlyUnmounted && p.repaired));
    assert_eq!(superblock(&img).state, 1);
}

#[test]
fn repairs_record_the_check_time() {
    let mut img = good().bytes.clone();
    let mut timed = options(RepairMode::All);
    timed.now = Some(1_700_000_000);
    assert_eq!(run_with(&mut img, &timed).unwrap().status(), 0);
    assert_eq!(extension(&img).last_check_time, 1_700_000_000);
    // Nothing else moved.
    let mut expected = good().bytes.clone();
    edit_extension(&mut expected, |e| e.last_check_time = 1_700_000_000);
    assert!(img == expected);
}

#[test]
fn existing_lost_and_found_is_reused() {
    let first = ino("/docs/deep/file");
    let second = ino("/docs/readme");
    let mut img = damage_case(
        |img| set_entry_inode(img, ino("/docs/deep"), b"file", 0),
        |k| *k == ProblemKind::OrphanInode,
        &["/docs/deep/file"],
    );
    set_entry_inode(&mut img, ino("/docs"), b"readme", 0);
    assert_eq!(run(&mut img, RepairMode::All).status(), 1);
    assert_eq!(run(&mut img, RepairMode::None).status(), 0);
    assert_eq!(read_lost(&img, first, ""), file_contents("/docs/deep/file"));
    assert_eq!(read_lost(&img, second, ""), file_contents("/docs/readme"));
    let fs = mount_read_only(&img);
    let lost = fs.resolve(b"/lost+found", false).unwrap();
    assert_eq!(entry_count(&fs, lost), 4);
}

#[test]
fn problems_past_the_limit_are_counted() {
    let mut img = good().bytes.clone();
    for index in 0..50 {
        set_bitmap_bit(&mut img, BLOCKS - 200 + 2 * index, true);
    }
    let mut limited = options(RepairMode::None);
    limited.max_problems = 10;
    let report = run_with(&mut img, &limited).unwrap();
    assert_eq!(report.problems.len(), 10);
    assert!(report.omitted >= 40);
    assert_eq!(report.errors, report.unfixed);
    assert!(report.errors >= 50);
}

// ---------------------------------------------------------------------------
// Random damage
// ---------------------------------------------------------------------------

/// A device over a shared base image that keeps its writes to itself.
type Overlay<'a> = CowDevice<&'a [u8]>;

/// Blocks the checker reads: block 0, the bitmap, the used part of the
/// inode table, directory blocks and indirect blocks.
fn metadata_blocks(img: &[u8]) -> Vec<u32> {
    let geo = geometry(img);
    let mut blocks: Vec<u32> = (0..geo.first_inode_table_block()).collect();
    let table_blocks = (ino("/victim.txt") / 42 + 1).min(geo.inode_table_blocks);
    blocks.extend((0..table_blocks).map(|i| geo.first_inode_table_block() + i));
    for dir in [ROOT, ino("/docs"), ino("/docs/deep"), ino("/big")] {
        blocks.extend(mapped_blocks(img, &inode(img, dir)));
    }
    for file in ["/medium.bin", "/sparse.bin", "/big"] {
        let found = inode(img, ino(file));
        blocks.extend([found.indirect, found.double_indirect].into_iter().filter(|&b| b != 0));
    }
    blocks
}

/// Applies one random kind of damage to metadata blocks; returns what it
/// did and whether block 0 was touched.
fn random_damage(rng: &mut Rng, base: &[u8], targets: &[u32], device: &mut Overlay<'_>) -> (String, bool) {
    let pick = |rng: &mut Rng, device: &mut Overlay<'_>| {
        let target = targets[rng.below(targets.len())];
        let current = device.changed.get_mut().unwrap().get(&target).map_or(*block(base, target), |b| **b);
        (target, current)
    };
    let (target, mut damaged) = pick(rng, device);
    let what = match rng.below(8) {
        0 => {
            damaged.iter_mut().for_each(|b| *b = rng.next() as u8);
            format!("block {target} filled with noise")
        }
        1 => {
            // One metadata block over another: cross-linked maps, entries
            // in two directories, inodes twice.
            let source = targets[rng.below(targets.len())];
            damaged = *block(base, source);
            format!("block {source} copied over block {target}")
        }
        2 => {
            for _ in 0..6 {
                damaged[rng.below(BLOCK_SIZE)] = rng.next() as u8;
            }
            let (second, mut other) = pick(rng, device);
            other[rng.below(BLOCK_SIZE)] ^= 1 << rng.below(8);
            device.changed.get_mut().unwrap().insert(second, Arc::new(other));
            format!("6 bytes of block {target}, a bit of block {second}")
        }
        _ => {
            // Block 0: only the superblock and extension record matter.
            let limit = if target == 0 { 192 } else { BLOCK_SIZE };
            let at = rng.below(limit);
            let value = rng.next() as u8;
            damaged[at] = value;
            format!("block {target} byte {at} = {value:#04x}")
        }
    };
    device.changed.get_mut().unwrap().insert(target, Arc::new(damaged));
    (what, device.changed.get_mut().unwrap().contains_key(&0))
}

/// Everything the library can reach: every directory listed, every file
/// and symlink read. A clean check must mean the library can do this.
fn read_everything(fs: &FileSystem<Overlay<'static>>) -> Result<(), Error> {
    let mut queue = vec![ROOT];
    let mut seen = std::collections::HashSet::from([ROOT]);
    let mut buf = vec![0; 1 << 20];
    while let Some(dir) = queue.pop() {
        let mut entries = Vec::new();
        fs.readdir(dir, 0, &mut |entry, _| {
            entries.push(entry.clone());
            true
        })?;
        for entry in entries.iter().filter(|e| e.name != b"." && e.name != b"..") {
            let attr = fs.getattr(entry.ino)?;
            match attr.kind {
                FileType::Directory if seen.insert(entry.ino) => queue.push(entry.ino),
                FileType::Regular => {
                    // Damage can leave sizes of gigabytes of holes: read
                    // the start and the end.
                    fs.read(entry.ino, 0, &mut buf)?;
                    fs.read(entry.ino, attr.size.saturating_sub(4096), &mut buf[..4096])?;
                }
                FileType::Symlink => drop(fs.readlink(entry.ino)?),
                _ => {}
            }
        }
    }
    Ok(())
}

#[test]
fn random_damage_is_repaired_completely() {
    let base: &'static [u8] = &good().bytes;
    let targets = metadata_blocks(base);
    let setting = |name: &str, default: u64| {
        std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
    };
    let mut rng = Rng(setting("CHECK_SEED", 0x5eed_1234_abcd_0001));
    for round in 0..setting("CHECK_ROUNDS", 200) {
        let mut device = Overlay::new(base);
        let (what, block0) = random_damage(&mut rng, base, &targets, &mut device);
        let what = format!("round {round}: {what}");
        if let Err(error) = check(&mut device, &options(RepairMode::All)) {
            assert!(block0, "{what}: {error}");
            continue;
        }
        let again = check(&mut device, &options(RepairMode::None)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(again.errors, 0, "{what}\n{}", describe(&again));
        // The library agrees: it mounts, reads everything, and what it
        // writes back still checks clean.
        let noatime = MountOptions { relatime: false, ..MountOptions::default() };
        let fs = FileSystem::mount(device, noatime).unwrap_or_else(|e| panic!("{what}: {e}"));
        read_everything(&fs).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut device = fs.unmount().unwrap_or_else(|e| panic!("{what}: {e}"));
        let after = check(&mut device, &options(RepairMode::None)).unwrap();
        assert_eq!(after.errors, 0, "{what}: after a mount\n{}", describe(&after));
    }
}

#[test]
fn random_damage_without_repairs_writes_nothing() {
    let base = &good().bytes;
    let targets = metadata_blocks(base);
    let mut rng = Rng(0x0dd_ba11_5eed_0002);
    for _ in 0..60 {
        let mut device = Overlay::new(base);
        let target = targets[rng.below(targets.len())];
        let mut damaged = *block(base, target);
        damaged.iter_mut().for_each(|b| {
            if rng.below(8) == 0 {
                *b = rng.next() as u8
            }
        });
        device.changed.get_mut().unwrap().insert(target, Arc::new(damaged));
        let result = check(&mut device, &options(RepairMode::None));
        assert!(!matches!(result, Err(Error::ReadOnly)), "a check without repairs tried to write");
        assert_eq!(device.changed.get_mut().unwrap().len(), 1, "a check without repairs wrote");
    }
}

// ---------------------------------------------------------------------------
// What the library writes checks clean
// ---------------------------------------------------------------------------

/// One write or flush a device saw.
#[derive(Clone)]
enum Event {
    Write(u32, Box<Block>),
    Flush,
}

/// A device over the good image that logs every write and flush, so any
/// prefix of them can be turned into the image a crash would leave.
struct Recorder {
    current: Mutex<HashMap<u32, Box<Block>>>,
    log: Arc<Mutex<Vec<Event>>>,
}

impl BlockDevice for Recorder {
    fn block_count(&self) -> u32 {
        BLOCKS
    }

    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        *buf = self.current.lock().unwrap().get(&index).map_or(*block(&good().bytes, index), |b| **b);
        Ok(())
    }

    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.current.lock().unwrap().insert(index, Box::new(*buf));
        self.log.lock().unwrap().push(Event::Write(index, Box::new(*buf)));
        Ok(())
    }

    fn flush(&self) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Event::Flush);
        Ok(())
    }
}

/// Random operations (errors such as `NotEmpty` or `NoSpace` included),
/// with files left open and unlinked, and syncs.
fn random_operations<D: BlockDevice>(fs: &FileSystem<D>, rng: &mut Rng, steps: u64) {
    let mut dirs = vec![ROOT, ino("/docs"), ino("/docs/deep"), ino("/big")];
    let mut files = vec![ino("/small.txt"), ino("/victim.txt")];
    let mut names: Vec<(u32, Vec<u8>)> = vec![(ROOT, b"small.txt".to_vec())];
    for step in 0..steps {
        let dir = dirs[rng.below(dirs.len())];
        let name = format!("n{}", rng.below(40)).into_bytes();
        let (old_dir, old_name) = names[rng.below(names.len())].clone();
        let file = files[rng.below(files.len())];
        let outcome = match rng.below(11) {
            0 | 1 => fs.create(dir, &name, perm(0o644)).map(|attr| files.push(attr.ino)),
            2 => fs.mkdir(dir, &name, perm(0o755)).map(|attr| dirs.push(attr.ino)),
            3 | 4 => {
                let offset = if rng.below(5) == 0 { rng.below(6 << 20) } else { rng.below(70_000) };
                fs.write(file, offset as u64, &contents(step, rng.below(9000))).map(drop)
            }
            5 => fs.unlink(old_dir, &old_name),
            6 => fs.rmdir(old_dir, &old_name),
            7 => fs.rename(old_dir, &old_name, dir, &name, Default::default()),
            8 => fs.link(file, dir, &name).map(drop),
            9 => fs.open(file).map(drop),
            _ => fs.sync().map(drop),
        };
        if outcome.is_ok() {
            names.push((dir, name));
        }
    }
}

#[test]
fn library_operations_check_clean() {
    for seed in 1..=4 {
        let mut rng = Rng(seed * 7919);
        let fs =
            FileSystem::mount(MemDevice::from_bytes(good().bytes.clone()), MountOptions::default()).unwrap();
        random_operations(&fs, &mut rng, 600);
        let mut img = fs.unmount().unwrap().into_bytes();
        let report = run(&mut img, RepairMode::None);
        assert_eq!(report.errors, 0, "seed {seed}\n{}", describe(&report));
    }
}

#[test]
fn crash_states_check_clean_and_repair_to_mountable() {
    for seed in 1..=3 {
        let mut rng = Rng(seed * 104_729);
        let log = Arc::new(Mutex::new(Vec::new()));
        let device = Recorder { current: Mutex::new(HashMap::new()), log: log.clone() };
        let fs = FileSystem::mount(device, MountOptions::default()).unwrap();
        random_operations(&fs, &mut rng, 120);
        // The machine stops: no unmount, no further write.
        drop(fs);
        let events = log.lock().unwrap().clone();
        for _ in 0..12 {
            let point = rng.below(events.len() + 1);
            let mut img = good().bytes.clone();
            for event in &events[..point] {
                if let Event::Write(index, data) = event {
                    *block_mut(&mut img, *index) = **data;
                }
            }
            let what = format!("seed {seed}, {point} of {} events", events.len());
            let report = run(&mut img, RepairMode::None);
            assert_eq!(report.errors, 0, "{what}\n{}", describe(&report));
            let report = run(&mut img, RepairMode::All);
            assert_eq!(report.errors, 0, "{what}\n{}", describe(&report));
            assert_eq!(run(&mut img, RepairMode::None).status(), 0, "{what}");
            let fs = FileSystem::mount(MemDevice::from_bytes(img), MountOptions::default()).unwrap();
            fs.unmount().unwrap();
        }
    }
}

#[test]
fn journal_inode_without_the_system_flag_is_reported_and_restored() {
    // Mount refuses a journal whose inode lacks the flag: the checker must
    // not call such an image clean, and repairing must make it mount.
    let mut img = good().bytes.clone();
    let journal = extension(&img).journal_inode;
    edit_inode(&mut img, journal, |i| i.flags &= !blockfs::format::inode::SYSTEM_INODE_FLAG);
    let refused = FileSystem::mount(MemDevice::from_bytes(img.clone()), MountOptions::default());
    assert!(refused.is_err(), "mount takes an unflagged journal");
    let report = run(&mut img, RepairMode::None);
    assert!(has(&report, |k| *k == ProblemKind::JournalInodeUnflagged), "{}", describe(&report));
    assert!(!report.is_clean());
    let report = run(&mut img, RepairMode::Safe);
    assert_eq!(report.status(), 1, "{}", describe(&report));
    assert!(run(&mut img, RepairMode::None).is_clean());
    let fs =
        FileSystem::mount(MemDevice::from_bytes(img), MountOptions::default()).expect("mounts after repair");
    fs.unmount().unwrap();
}
