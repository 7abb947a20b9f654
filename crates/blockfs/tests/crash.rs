//! Crash-consistency harness.
//!
//! A workload runs on a device that records every block write and flush.
//! Crash images are then built from every prefix of that log, and — since
//! a disk may persist the writes issued between two flushes in any order —
//! from random subsets of the writes after each flush. Every crash image
//! must mount (replaying the journal), check clean with the library's
//! checker (the engine of `fsck-blockfs`), pass the tree walk's link and
//! count checks, and show every file that `fsync`/`sync` reported durable
//! with exactly its durable contents; renames are atomic; and no file
//! shows bytes it never wrote (another file's blocks).
//!
//! `BLOCKFS_CRASH_SUBSETS` sets the random subsets per flush epoch (default
//! 160); raise it for a longer run by hand. `BLOCKFS_CRASH_ONLY=TEXT` runs
//! only the workloads whose names contain TEXT.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use blockfs::check::{check, CheckOptions};
use blockfs::error::DeviceError;
use blockfs::format::{Block, BLOCK_SIZE};
use blockfs::fs::{format, NewInode, RenameFlags};
use blockfs::{BlockDevice, FileSystem, FileType, FormatOptions, MemDevice, MountOptions, ROOT_INO};
use support::{CowDevice, Event, Recording, Rng};

const BLOCKS: u32 = 2048;
const INODES: u32 = 4096;
const CACHE_BLOCKS: usize = 16;
/// Bytes of each file the tree walk reads.
const WALK_READ_LIMIT: u64 = 8 << 20;
const FILE: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };
const DIR: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };

/// A crash image: the image before the workload plus some of its writes.
type CrashImage = CowDevice<Arc<[u8]>>;

fn clock() -> u32 {
    1_700_000_000
}

fn options() -> MountOptions {
    MountOptions {
        cache_blocks: CACHE_BLOCKS,
        read_only: false,
        relatime: false,
        journal: true,
        record_mount: true,
        clock,
    }
}

/// The 8-byte word every file's data is made of: distinct per file and
/// version, so a file showing another file's blocks is caught.
fn tag(file: u32, version: u32) -> [u8; 8] {
    ((file as u64) << 32 | version as u64 | 0x8000_0000).to_le_bytes()
}

fn content(file: u32, version: u32, len: usize) -> Vec<u8> {
    tag(file, version).iter().copied().cycle().take(len).collect()
}

/// What a workload promises about one path once events up to `durable_at`
/// (a flush) have reached the disk, for as long as no event at or past
/// `valid_until` has.
#[derive(Clone, Debug)]
struct Promise {
    durable_at: usize,
    valid_until: usize,
    path: String,
    /// `None`: the path must not exist.
    content: Option<Vec<u8>>,
}

/// A rename of `from` (holding `moved`) over `to` (holding `replaced`),
/// issued after both were durable at event `durable_at`.
struct RenameCheck {
    durable_at: usize,
    from: String,
    to: String,
    moved: Vec<u8>,
    replaced: Vec<u8>,
}

/// Lets a workload note promises against the live event log.
struct Recorder {
    log: Arc<Mutex<Vec<Event>>>,
    promises: Vec<Promise>,
    /// Paths whose every 8-byte word must be zero or one of these tags.
    tags: BTreeMap<String, Vec<[u8; 8]>>,
    /// Atomic renames to check once both sides are durable.
    renames: Vec<RenameCheck>,
}

impl Recorder {
    fn position(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Everything before now is durable (called right after sync/fsync).
    fn durable(&mut self, path: &str, content: Option<Vec<u8>>) {
        let at = self.position();
        self.promises.push(Promise { durable_at: at, valid_until: usize::MAX, path: path.into(), content });
    }

    /// The path is about to change: older promises about it expire.
    fn changing(&mut self, path: &str) {
        let at = self.position();
        for promise in self.promises.iter_mut().filter(|p| p.path == path && p.valid_until == usize::MAX) {
            promise.valid_until = at;
        }
    }

    /// Flushes the device has seen so far.
    fn flushes(&self) -> usize {
        self.log.lock().unwrap().iter().filter(|event| matches!(event, Event::Flush)).count()
    }

    fn allow(&mut self, path: &str, file: u32, version: u32) {
        self.tags.entry(path.into()).or_default().push(tag(file, version));
    }
}

type Workload = fn(&FileSystem<Recording>, &mut Recorder);

/// A memory device whose bytes outlive the filesystem on it, so a setup
/// can end in a crash (the filesystem dropped without unmounting).
#[derive(Clone)]
struct Shared(Arc<Mutex<MemDevice>>);

impl BlockDevice for Shared {
    fn block_count(&self) -> u32 {
        self.0.lock().unwrap().block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.0.lock().unwrap().read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.0.lock().unwrap().write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// How a setup leaves the image the crash images start from.
#[derive(PartialEq)]
enum SetupEnd {
    Unmounted,
    /// Synced, then dropped without unmounting: the recorded mount
    /// recovers it.
    Crashed,
}

/// Runs before recording starts: its result is the crash images' base.
type Setup = fn(&FileSystem<Shared>) -> SetupEnd;

fn no_setup(_: &FileSystem<Shared>) -> SetupEnd {
    SetupEnd::Unmounted
}

/// Leaves only `free` blocks free, so new data must reuse freed blocks.
fn nearly_full(fs: &FileSystem<Shared>, free: u32) {
    let ballast = fs.create(ROOT_INO, b"ballast", FILE).unwrap().ino;
    // The ballast's own indirect blocks take a few more.
    let spare = fs.statfs().free_blocks.saturating_sub(free + 4);
    let chunk = vec![0x5Au8; 64 * BLOCK_SIZE];
    let mut written = 0u64;
    while written < spare as u64 * BLOCK_SIZE as u64 {
        let len = chunk.len().min((spare as u64 * BLOCK_SIZE as u64 - written) as usize);
        written += fs.write(ballast, written, &chunk[..len]).unwrap() as u64;
    }
}

fn lookup_path(fs: &FileSystem<impl BlockDevice>, path: &str) -> Option<u32> {
    fs.resolve(path.as_bytes(), false).ok()
}

fn read_all(fs: &FileSystem<impl BlockDevice>, ino: u32) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size as usize;
    let mut buf = vec![0u8; size];
    let read = fs.read(ino, 0, &mut buf).unwrap();
    buf.truncate(read);
    buf
}

/// The first `WALK_READ_LIMIT` bytes of a file (a 4 GiB sparse file need
/// not be read whole to prove its map sound: the checker walks it).
fn read_head(fs: &FileSystem<impl BlockDevice>, ino: u32) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size.min(WALK_READ_LIMIT);
    let mut buf = vec![0u8; size as usize];
    let read = fs.read(ino, 0, &mut buf).unwrap();
    buf.truncate(read);
    buf
}

fn create_file(fs: &FileSystem<Recording>, parent: u32, name: &str, data: &[u8]) -> u32 {
    let ino = fs.create(parent, name.as_bytes(), FILE).unwrap().ino;
    fs.write(ino, 0, data).unwrap();
    ino
}

// ---- workloads -------------------------------------------------------

fn create_write_fsync(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    for index in 0..4u32 {
        let path = format!("/f{index}");
        rec.allow(&path, index, 0);
        let ino = create_file(fs, ROOT_INO, &path[1..], &content(index, 0, 3000 + 5000 * index as usize));
        fs.fsync(ino).unwrap();
        rec.durable(&path, Some(content(index, 0, 3000 + 5000 * index as usize)));
    }
}

fn overwrite_in_place(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let ino = create_file(fs, ROOT_INO, "data", &content(1, 0, 40_000));
    rec.allow("/data", 1, 0);
    fs.fsync(ino).unwrap();
    rec.durable("/data", Some(content(1, 0, 40_000)));
    for version in 1..4u32 {
        rec.changing("/data");
        rec.allow("/data", 1, version);
        fs.write(ino, 0, &content(1, version, 40_000)).unwrap();
        fs.fsync(ino).unwrap();
        rec.durable("/data", Some(content(1, version, 40_000)));
    }
}

fn append_fsync_loop(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let ino = fs.create(ROOT_INO, b"log", FILE).unwrap().ino;
    rec.allow("/log", 2, 0);
    let mut expected = Vec::new();
    for round in 0..12usize {
        rec.changing("/log");
        let chunk = content(2, 0, 700 + round * 300);
        // Appends continue the same word pattern only at 8-byte multiples.
        let chunk = &chunk[..chunk.len() / 8 * 8];
        fs.write(ino, expected.len() as u64, chunk).unwrap();
        expected.extend_from_slice(chunk);
        fs.fsync(ino).unwrap();
        rec.durable("/log", Some(expected.clone()));
    }
}

fn rename_over_existing(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let old = content(3, 0, 9000);
    let new = content(4, 0, 13_000);
    create_file(fs, ROOT_INO, "config", &old);
    rec.allow("/config", 3, 0);
    rec.allow("/config", 4, 0);
    rec.allow("/config.tmp", 4, 0);
    fs.sync().unwrap();
    rec.durable("/config", Some(old.clone()));
    let tmp = create_file(fs, ROOT_INO, "config.tmp", &new);
    fs.fsync(tmp).unwrap();
    rec.durable("/config.tmp", Some(new.clone()));
    rec.changing("/config");
    rec.changing("/config.tmp");
    rec.renames.push(RenameCheck {
        durable_at: rec.position(),
        from: "/config.tmp".into(),
        to: "/config".into(),
        moved: new.clone(),
        replaced: old,
    });
    fs.rename(ROOT_INO, b"config.tmp", ROOT_INO, b"config", RenameFlags::default()).unwrap();
    fs.sync().unwrap();
    rec.durable("/config", Some(new));
    rec.durable("/config.tmp", None);
}

fn mkdir_deep_tree(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let mut parent = ROOT_INO;
    let mut path = String::new();
    for depth in 0..20u32 {
        path.push_str(&format!("/level{depth}"));
        parent = fs.mkdir(parent, format!("level{depth}").as_bytes(), DIR).unwrap().ino;
        if depth % 5 == 4 {
            let file = format!("{path}/marker");
            rec.allow(&file, 5, depth);
            create_file(fs, parent, "marker", &content(5, depth, 100));
            fs.sync().unwrap();
            rec.durable(&file, Some(content(5, depth, 100)));
        }
    }
}

fn unlink_open_file(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let ino = create_file(fs, ROOT_INO, "victim", &content(6, 0, 60_000));
    rec.allow("/victim", 6, 0);
    fs.sync().unwrap();
    rec.durable("/victim", Some(content(6, 0, 60_000)));
    fs.open(ino).unwrap();
    rec.changing("/victim");
    fs.unlink(ROOT_INO, b"victim").unwrap();
    fs.write(ino, 60_000, &content(6, 0, 8000)).unwrap();
    fs.sync().unwrap();
    rec.durable("/victim", None);
    let survivor = create_file(fs, ROOT_INO, "after", &content(7, 0, 20_000));
    rec.allow("/after", 7, 0);
    fs.fsync(survivor).unwrap();
    rec.durable("/after", Some(content(7, 0, 20_000)));
    fs.release(ino).unwrap();
    fs.sync().unwrap();
}

fn truncate_down_and_up(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let full = content(8, 0, 100_000);
    let ino = create_file(fs, ROOT_INO, "shrink", &full);
    rec.allow("/shrink", 8, 0);
    fs.fsync(ino).unwrap();
    rec.durable("/shrink", Some(full.clone()));
    let set_size = |size: u64| {
        let changes = blockfs::SetAttr { size: Some(size), ..Default::default() };
        fs.setattr(ino, &changes).unwrap();
    };
    rec.changing("/shrink");
    set_size(10_000);
    fs.fsync(ino).unwrap();
    rec.durable("/shrink", Some(full[..10_000].to_vec()));
    rec.changing("/shrink");
    set_size(70_000);
    fs.fsync(ino).unwrap();
    let mut grown = full[..10_000].to_vec();
    grown.resize(70_000, 0);
    rec.durable("/shrink", Some(grown));
    rec.changing("/shrink");
    fs.write(ino, 10_000, &full[10_000..]).unwrap();
    fs.fsync(ino).unwrap();
    rec.durable("/shrink", Some(full));
    // The disk is nearly full: the next file can only live in the blocks
    // /shrink frees now. Until that free commits, /shrink must never show
    // the new file's data.
    rec.changing("/shrink");
    set_size(0);
    let other = create_file(fs, ROOT_INO, "reuser", &content(9, 0, 60_000));
    rec.allow("/reuser", 9, 0);
    fs.fsync(other).unwrap();
    rec.durable("/shrink", Some(Vec::new()));
    rec.durable("/reuser", Some(content(9, 0, 60_000)));
}

/// Blocks a file took and gave back between two commits are free again
/// at once: on a nearly full disk, a file written, removed and written
/// again under another name fits without a commit in between (no flush),
/// in the same blocks, its data going straight to the device. No crash
/// state may show the removed file's data under the new name, or lose
/// the file made durable before.
fn reuse_before_commit(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let anchor = create_file(fs, ROOT_INO, "anchor", &content(10, 0, 9000));
    rec.allow("/anchor", 10, 0);
    fs.fsync(anchor).unwrap();
    rec.durable("/anchor", Some(content(10, 0, 9000)));
    for round in 0..3u32 {
        // 20 blocks each: together more than the 30 left free.
        create_file(fs, ROOT_INO, "gone", &content(20 + round, 0, 20 * BLOCK_SIZE));
        rec.allow("/gone", 20 + round, 0);
        fs.unlink(ROOT_INO, b"gone").unwrap();
        let path = format!("/new{round}");
        let data = content(30 + round, 0, 20 * BLOCK_SIZE);
        let flushes_before = rec.flushes();
        let ino = create_file(fs, ROOT_INO, &path[1..], &data);
        rec.allow(&path, 30 + round, 0);
        assert_eq!(rec.flushes(), flushes_before, "reusing the freed blocks needed a commit");
        fs.fsync(ino).unwrap();
        rec.durable(&path, Some(data));
        rec.changing(&path);
        fs.unlink(ROOT_INO, &path.as_bytes()[1..]).unwrap();
        fs.sync().unwrap();
        rec.durable(&path, None);
    }
}

fn truncate_setup(fs: &FileSystem<Shared>) -> SetupEnd {
    nearly_full(fs, 30);
    SetupEnd::Unmounted
}

fn grow_into_double_indirect(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let ino = fs.create(ROOT_INO, b"big", FILE).unwrap().ino;
    rec.allow("/big", 10, 0);
    let mut expected = Vec::new();
    // Direct, single-indirect, then (sparsely) double-indirect ranges.
    for (offset, len) in [(0usize, 30_000usize), (4_200_000, 20_000), (6_000_000, 9000)] {
        rec.changing("/big");
        let piece = content(10, 0, offset + len);
        fs.write(ino, offset as u64, &piece[offset..]).unwrap();
        if expected.len() < offset {
            expected.resize(offset, 0);
        }
        expected.truncate(offset);
        expected.extend_from_slice(&piece[offset..]);
        fs.fsync(ino).unwrap();
        rec.durable("/big", Some(expected.clone()));
    }
}

fn directory_past_twelve_blocks(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let dir = fs.mkdir(ROOT_INO, b"many", DIR).unwrap().ino;
    for index in 0..1800u32 {
        let name = format!("a-rather-long-file-name-{index:05}");
        fs.create(dir, name.as_bytes(), FILE).unwrap();
        if index % 600 == 599 {
            fs.sync().unwrap();
            rec.durable(&format!("/many/{name}"), Some(Vec::new()));
        }
    }
}

fn many_small_files_then_sync(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let dir = fs.mkdir(ROOT_INO, b"small", DIR).unwrap().ino;
    for index in 0..150u32 {
        let path = format!("/small/s{index}");
        rec.allow(&path, 100 + index, 0);
        create_file(fs, dir, &path[7..], &content(100 + index, 0, 100 + index as usize * 37));
    }
    fs.sync().unwrap();
    for index in 0..150u32 {
        rec.durable(&format!("/small/s{index}"), Some(content(100 + index, 0, 100 + index as usize * 37)));
    }
}

/// Files whose inodes lie in different inode-table blocks: unlinking them
/// while open makes orphans that one transaction cannot free together.
const SPREAD_ORPHANS: u32 = 72;

/// Leaves `SPREAD_ORPHANS` empty files in /spread, one per inode-table
/// block (42 inodes share one): creates 42 times as many, then removes all
/// but every 42nd, so crash states have a small tree to walk.
fn spread_files(fs: &FileSystem<impl BlockDevice>) -> u32 {
    let dir = fs.mkdir(ROOT_INO, b"spread", DIR).unwrap().ino;
    for index in 0..SPREAD_ORPHANS * 42 {
        fs.create(dir, format!("s{index}").as_bytes(), FILE).unwrap();
    }
    for index in (0..SPREAD_ORPHANS * 42).filter(|index| index % 42 != 0) {
        fs.unlink(dir, format!("s{index}").as_bytes()).unwrap();
    }
    dir
}

/// Writes to one file per inode-table block, opens it and unlinks it.
fn make_spread_orphans(fs: &FileSystem<impl BlockDevice>, dir: u32) {
    for index in 0..SPREAD_ORPHANS {
        let name = format!("s{}", index * 42);
        let ino = fs.lookup(dir, name.as_bytes()).unwrap().ino;
        fs.write(ino, 0, &content(20 + index, 0, 5000)).unwrap();
        fs.open(ino).unwrap();
        fs.unlink(dir, name.as_bytes()).unwrap();
    }
}

fn spread_setup(fs: &FileSystem<Shared>) -> SetupEnd {
    spread_files(fs);
    SetupEnd::Unmounted
}

/// More orphans than one transaction can free: unmount frees them in steps.
fn orphans_freed_at_unmount(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let dir = fs.resolve(b"/spread", false).unwrap();
    make_spread_orphans(fs, dir);
    fs.sync().unwrap();
    for index in 0..SPREAD_ORPHANS {
        rec.durable(&format!("/spread/s{}", index * 42), None);
    }
    // The harness unmounts: the orphans are freed then.
}

/// The same orphans left on disk by a crash: the recorded mount frees them.
fn crashed_with_orphans_setup(fs: &FileSystem<Shared>) -> SetupEnd {
    let dir = spread_files(fs);
    make_spread_orphans(fs, dir);
    SetupEnd::Crashed
}

fn after_orphan_recovery(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let ino = create_file(fs, ROOT_INO, "after", &content(11, 0, 9000));
    rec.allow("/after", 11, 0);
    fs.fsync(ino).unwrap();
    rec.durable("/after", Some(content(11, 0, 9000)));
}

/// A file of 4 GiB − 1 (sparse: blocks spread over the double-indirect
/// range) truncated on an image with the smallest journal.
fn truncate_huge_file(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let ino = fs.create(ROOT_INO, b"huge", FILE).unwrap().ino;
    rec.allow("/huge", 12, 0);
    let piece = content(12, 0, 8192);
    for index in 0..24u64 {
        fs.write(ino, index * (170 << 20) + 4096 * index, &piece).unwrap();
    }
    fs.write(ino, u32::MAX as u64 - 8, &piece[..8]).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, u32::MAX as u64);
    fs.fsync(ino).unwrap();
    rec.changing("/huge");
    let changes = blockfs::SetAttr { size: Some(6000), ..Default::default() };
    fs.setattr(ino, &changes).unwrap();
    fs.fsync(ino).unwrap();
    rec.durable("/huge", Some(piece[..6000].to_vec()));
    rec.changing("/huge");
    let changes = blockfs::SetAttr { size: Some(0), ..Default::default() };
    fs.setattr(ino, &changes).unwrap();
    fs.fsync(ino).unwrap();
    rec.durable("/huge", Some(Vec::new()));
}

/// Names in the big directory: hard links, so the inode table stays small.
const BIG_DIRECTORY_NAMES: u32 = 100_000;

fn big_directory_setup(fs: &FileSystem<Shared>) -> SetupEnd {
    let dir = fs.mkdir(ROOT_INO, b"big", DIR).unwrap().ino;
    let mut target = 0;
    for index in 0..BIG_DIRECTORY_NAMES {
        if index % 50_000 == 0 {
            target = fs.create(dir, format!("n{index}").as_bytes(), FILE).unwrap().ino;
            continue;
        }
        fs.link(target, dir, format!("n{index}").as_bytes()).unwrap();
    }
    SetupEnd::Unmounted
}

/// Deletes every name of a 100,000-entry directory, then the directory.
fn delete_big_directory(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    let dir = fs.resolve(b"/big", false).unwrap();
    for index in 0..BIG_DIRECTORY_NAMES {
        fs.unlink(dir, format!("n{index}").as_bytes()).unwrap();
    }
    fs.rmdir(ROOT_INO, b"big").unwrap();
    fs.sync().unwrap();
    rec.durable("/big", None);
}

/// The kernel's stale references (FUSE lookups not yet forgotten): an
/// unlinked file and a removed directory stay whole while referenced, and
/// a file created meanwhile never gets their inode numbers.
fn stale_references(fs: &FileSystem<Recording>, rec: &mut Recorder) {
    fs.track_lookups();
    let original = content(13, 0, 7000);
    let file = create_file(fs, ROOT_INO, "f", &original);
    let dir = fs.mkdir(ROOT_INO, b"d", DIR).unwrap().ino;
    rec.allow("/f", 13, 0);
    fs.sync().unwrap();
    rec.durable("/f", Some(original.clone()));
    rec.changing("/f");
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.rmdir(ROOT_INO, b"d").unwrap();
    let secret = create_file(fs, ROOT_INO, "secret", &content(14, 0, 3000));
    let new_dir = fs.mkdir(ROOT_INO, b"new", DIR).unwrap().ino;
    assert!(secret != file && secret != dir && new_dir != file && new_dir != dir, "a held inode was reused");
    rec.allow("/secret", 14, 0);
    fs.sync().unwrap();
    rec.durable("/f", None);
    rec.durable("/secret", Some(content(14, 0, 3000)));
    let mut buf = vec![0; original.len()];
    assert_eq!(fs.read(file, 0, &mut buf).unwrap(), original.len());
    assert_eq!(buf, original);
    let mut listed = 0;
    fs.readdir(dir, 0, &mut |_, _| {
        listed += 1;
        true
    })
    .unwrap();
    assert_eq!(listed, 0, "a removed directory lists as empty");
    assert_eq!(fs.lookup(dir, b".").map(drop), Err(blockfs::Error::NotFound));
    fs.forget(file, 1);
    fs.forget(dir, 1);
    assert_eq!(fs.getattr(file).map(drop), Err(blockfs::Error::NotFound));
    fs.sync().unwrap();
}

// ---- the harness -----------------------------------------------------

struct Run {
    base: Arc<[u8]>,
    events: Vec<Event>,
    recorder: Recorder,
}

/// How a workload runs and how densely its crash states are sampled.
#[derive(Clone, Copy)]
struct Scale {
    /// Cache of the setup's and the workload's mounts (crash images are
    /// always mounted with `CACHE_BLOCKS`).
    cache_blocks: usize,
    /// Every how many events a prefix is checked (1: all).
    prefix_stride: usize,
    /// Random subsets of each flush epoch (`None`: `BLOCKFS_CRASH_SUBSETS`).
    subsets: Option<usize>,
}

const EXHAUSTIVE: Scale = Scale { cache_blocks: CACHE_BLOCKS, prefix_stride: 1, subsets: None };

fn run_workload(setup: Setup, workload: Workload, scale: Scale) -> Run {
    let options = MountOptions { cache_blocks: scale.cache_blocks, ..options() };
    let mut format_options = FormatOptions::new(BLOCKS);
    format_options.inode_count = Some(INODES);
    let shared = Shared(Arc::new(Mutex::new(format(MemDevice::new(BLOCKS), &format_options).unwrap())));
    let fs = FileSystem::mount(shared.clone(), options).unwrap();
    if setup(&fs) == SetupEnd::Unmounted {
        fs.unmount().unwrap();
    } else {
        fs.sync().unwrap();
        drop(fs);
    }
    let mut device = with_stale_free_blocks(shared.0.lock().unwrap().clone());
    let base: Arc<[u8]> = Arc::from(device.as_bytes());
    let log = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording { inner: device, log: log.clone() };
    let fs = FileSystem::mount(recording, options).unwrap();
    assert!(fs.has_journal());
    let mut recorder =
        Recorder { log: log.clone(), promises: Vec::new(), tags: BTreeMap::new(), renames: Vec::new() };
    workload(&fs, &mut recorder);
    fs.unmount().unwrap();
    let events = log.lock().unwrap().clone();
    Run { base, events, recorder }
}

/// Fills every free block with a pattern no workload writes, as if earlier
/// files had lived there: a file that ever shows a block it did not write
/// (data not flushed before its commit, a freed block reused too early)
/// then shows this pattern instead of innocent zeros.
fn with_stale_free_blocks(device: MemDevice) -> MemDevice {
    let mut bytes = device.into_bytes();
    let first_data = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    let stale = content(0xDEAD, 0xBEEF, BLOCK_SIZE);
    for block in first_data..BLOCKS as usize {
        let used = bytes[BLOCK_SIZE + block / 8] & (1 << (block % 8)) != 0;
        if !used {
            bytes[block * BLOCK_SIZE..(block + 1) * BLOCK_SIZE].copy_from_slice(&stale);
        }
    }
    MemDevice::from_bytes(bytes)
}

/// Mounts a crash image and checks every promise that applies to it.
/// `included` is the highest event index in the image (exclusive bound of
/// what may have reached the disk); `durable` the events known durable.
fn verify(run: &Run, image: CrashImage, durable: usize, included: usize) -> Result<(), String> {
    let fs = FileSystem::mount(image, options()).map_err(|e| format!("mount failed: {e}"))?;
    if let Err(error) = walk_everything(&fs) {
        let mut device = fs.unmount().map_err(|e| format!("{error}; unmount failed: {e}"))?;
        let report =
            check(&mut device, &CheckOptions::default()).map_err(|e| format!("check failed: {e}"))?;
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        return Err(format!("{error}; the checker says {problems:?}"));
    }
    for promise in &run.recorder.promises {
        if promise.durable_at > durable || included > promise.valid_until {
            continue;
        }
        let found = lookup_path(&fs, &promise.path).map(|ino| read_all(&fs, ino));
        if found != promise.content {
            return Err(format!(
                "{}: durable contents lost (want {:?} bytes, found {:?})",
                promise.path,
                promise.content.as_ref().map(Vec::len),
                found.as_ref().map(Vec::len)
            ));
        }
    }
    for (path, tags) in &run.recorder.tags {
        let Some(ino) = lookup_path(&fs, path) else { continue };
        let data = read_head(&fs, ino);
        for (index, word) in data.chunks(8).enumerate() {
            let known = word.iter().all(|&b| b == 0) || tags.iter().any(|t| &t[..word.len()] == word);
            if !known {
                return Err(format!("{path}: bytes at {} were never written to this file", index * 8));
            }
        }
    }
    for check in run.recorder.renames.iter().filter(|check| check.durable_at <= durable) {
        let RenameCheck { from, to, moved, replaced, .. } = check;
        let source = lookup_path(&fs, from).map(|ino| read_all(&fs, ino));
        let target = lookup_path(&fs, to).map(|ino| read_all(&fs, ino));
        let before = source.as_ref() == Some(moved) && target.as_ref() == Some(replaced);
        let after = source.is_none() && target.as_ref() == Some(moved);
        if !(before || after) {
            return Err(format!(
                "rename {from} -> {to} not atomic: source {:?}, target {:?}",
                source.map(|s| s.len()),
                target.map(|t| t.len())
            ));
        }
    }
    let mut device = fs.unmount().map_err(|e| format!("unmount failed: {e}"))?;
    // The checker, as the oracle: the recovered image has no errors.
    let report = check(&mut device, &CheckOptions::default()).map_err(|e| format!("check failed: {e}"))?;
    if !report.is_clean() {
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        return Err(format!("checker found errors: {problems:?}"));
    }
    // A second mount of the recovered image must be just as good.
    let fs = FileSystem::mount(device, options()).map_err(|e| format!("remount failed: {e}"))?;
    walk_everything(&fs)?;
    Ok(())
}

/// Reads every directory and file reachable from the root, checking link
/// counts against the entries found and free counts against what exists.
fn walk_everything(fs: &FileSystem<impl BlockDevice>) -> Result<(), String> {
    let mut stack = vec![ROOT_INO];
    let mut names_per_inode: HashMap<u32, u32> = HashMap::new();
    let mut subdirs: HashMap<u32, u32> = HashMap::new();
    let mut seen_dirs = 0;
    while let Some(dir) = stack.pop() {
        seen_dirs += 1;
        if seen_dirs > INODES {
            return Err("directory cycle".into());
        }
        let mut entries = Vec::new();
        fs.readdir(dir, 0, &mut |entry, _| {
            entries.push(entry.clone());
            true
        })
        .map_err(|e| format!("readdir {dir}: {e}"))?;
        for entry in entries {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let attr = fs.getattr(entry.ino).map_err(|e| format!("getattr {}: {e}", entry.ino))?;
            match attr.kind {
                FileType::Directory => {
                    *subdirs.entry(dir).or_default() += 1;
                    stack.push(entry.ino);
                }
                _ => {
                    *names_per_inode.entry(entry.ino).or_default() += 1;
                    read_head(fs, entry.ino);
                }
            }
        }
    }
    for (&ino, &names) in &names_per_inode {
        let links = fs.getattr(ino).unwrap().nlink as u32;
        if links != names {
            return Err(format!("inode {ino} has {links} links but {names} names"));
        }
    }
    let statfs = fs.statfs();
    let used_inodes = statfs.inodes - statfs.free_inodes;
    // Root, journal, every directory below the root, every file.
    let counted = 2 + (seen_dirs - 1) + names_per_inode.len() as u32;
    if used_inodes != counted {
        return Err(format!("superblock says {used_inodes} inodes in use, the tree has {counted}"));
    }
    Ok(())
}

fn image_of(run: &Run, writes: impl IntoIterator<Item = usize>) -> CrashImage {
    CowDevice::after_writes(&run.base, &run.events, writes)
}

/// Builds and verifies every crash state of a workload; returns how many.
fn crash_states(name: &str, setup: Setup, workload: Workload, scale: Scale) -> usize {
    let run = run_workload(setup, workload, scale);
    let subsets: usize = scale.subsets.unwrap_or_else(|| {
        std::env::var("BLOCKFS_CRASH_SUBSETS").ok().and_then(|v| v.parse().ok()).unwrap_or(160)
    });
    let flushes: Vec<usize> =
        run.events.iter().enumerate().filter(|(_, e)| matches!(e, Event::Flush)).map(|(i, _)| i).collect();
    let mut checked = 0;
    let fail = |what: String, error: String| -> ! { panic!("{name}: {what}: {error}") };

    // Every prefix of the log.
    let mut last_flush = 0;
    for cut in 0..=run.events.len() {
        if cut > 0 && matches!(run.events[cut - 1], Event::Flush) {
            last_flush = cut;
        }
        let at_flush = last_flush == cut;
        if cut % scale.prefix_stride != 0 && !at_flush && cut != run.events.len() {
            continue;
        }
        if let Err(error) = verify(&run, image_of(&run, 0..cut), last_flush, cut) {
            fail(format!("prefix of {cut} events"), error);
        }
        checked += 1;
    }

    // Random subsets of each epoch's writes, on top of everything flushed.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut epoch_start = 0;
    for &flush in flushes.iter().chain(std::iter::once(&run.events.len())) {
        let epoch: Vec<usize> =
            (epoch_start..flush).filter(|&i| matches!(run.events[i], Event::Write(..))).collect();
        if epoch.len() > 1 {
            for _ in 0..subsets {
                let chosen: Vec<usize> = epoch.iter().copied().filter(|_| rng.next() % 2 == 0).collect();
                let included = chosen.last().map_or(epoch_start, |&last| last + 1);
                let image = image_of(&run, (0..epoch_start).chain(chosen.iter().copied()));
                if let Err(error) = verify(&run, image, epoch_start, included) {
                    fail(format!("subset {chosen:?} of epoch {epoch_start}..{flush}"), error);
                }
                checked += 1;
            }
        }
        epoch_start = flush + 1;
    }

    // A crash while replaying: take the state right after each commit's
    // journal flush (a transaction waiting) and cut the replay short.
    for &flush in flushes.iter().step_by(7) {
        checked += crash_during_replay(&run, flush + 1);
    }
    checked
}

/// Replays the journal of the crash state holding events `0..cut` on a
/// recording device, then crashes at every point of that replay.
fn crash_during_replay(run: &Run, cut: usize) -> usize {
    let image = image_of(run, 0..cut);
    let base: Vec<u8> = {
        let mut bytes = run.base.to_vec();
        for (&block, data) in image.changed.lock().unwrap().iter() {
            bytes[block as usize * BLOCK_SIZE..(block as usize + 1) * BLOCK_SIZE].copy_from_slice(&data[..]);
        }
        bytes
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording { inner: MemDevice::from_bytes(base.clone()), log: log.clone() };
    let fs = FileSystem::mount(recording, options()).unwrap();
    drop(fs);
    let events = log.lock().unwrap().clone();
    let replay = Run {
        base: Arc::from(base),
        events,
        recorder: Recorder { log, promises: Vec::new(), tags: BTreeMap::new(), renames: Vec::new() },
    };
    for partial in 0..replay.events.len() {
        if let Err(error) = verify(&replay, image_of(&replay, 0..partial), 0, partial) {
            panic!("crash after {partial} replay events of state {cut}: {error}");
        }
    }
    replay.events.len()
}

#[test]
fn every_crash_state_recovers() {
    // The big directory's index needs a larger cache, and each of its
    // crash states walks up to 100,000 names: its states are sampled.
    let big_directory = Scale { cache_blocks: 4096, prefix_stride: 4, subsets: Some(4) };
    // A cache that no commit has to relieve between two operations.
    let roomy_cache = Scale { cache_blocks: 1024, ..EXHAUSTIVE };
    let workloads: [(&str, Setup, Workload, Scale); 16] = [
        ("create+write+fsync", no_setup, create_write_fsync, EXHAUSTIVE),
        ("overwrite in place", no_setup, overwrite_in_place, EXHAUSTIVE),
        ("append+fsync loop", no_setup, append_fsync_loop, EXHAUSTIVE),
        ("rename over existing", no_setup, rename_over_existing, EXHAUSTIVE),
        ("mkdir -p deep tree", no_setup, mkdir_deep_tree, EXHAUSTIVE),
        ("unlink open file", no_setup, unlink_open_file, EXHAUSTIVE),
        ("truncate down and up", truncate_setup, truncate_down_and_up, EXHAUSTIVE),
        ("reuse blocks freed before the commit", truncate_setup, reuse_before_commit, roomy_cache),
        ("grow into double indirect", no_setup, grow_into_double_indirect, EXHAUSTIVE),
        ("directory past 12 blocks", no_setup, directory_past_twelve_blocks, EXHAUSTIVE),
        ("many small files then sync", no_setup, many_small_files_then_sync, EXHAUSTIVE),
        (
            "orphans past one transaction, freed at unmount",
            spread_setup,
            orphans_freed_at_unmount,
            EXHAUSTIVE,
        ),
        (
            "orphans past one transaction, freed at mount",
            crashed_with_orphans_setup,
            after_orphan_recovery,
            EXHAUSTIVE,
        ),
        ("truncate a 4 GiB - 1 file", no_setup, truncate_huge_file, EXHAUSTIVE),
        ("delete a 100,000-entry directory", big_directory_setup, delete_big_directory, big_directory),
        ("stale references", no_setup, stale_references, EXHAUSTIVE),
    ];
    let mut total = 0;
    let only = std::env::var("BLOCKFS_CRASH_ONLY").ok();
    for (name, setup, workload, scale) in workloads {
        if only.as_ref().is_some_and(|only| !name.contains(only.as_str())) {
            continue;
        }
        let started = std::time::Instant::now();
        let states = crash_states(name, setup, workload, scale);
        println!("{name}: {:.1} s", started.elapsed().as_secs_f64());
        println!("{name}: {states} crash states");
        total += states;
    }
    println!("total: {total} crash states");
    assert!(only.is_some() || total >= 50_000, "only {total} crash states");
}
