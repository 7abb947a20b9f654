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
//! 64); raise it for a longer run by hand.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use blockfs::check::{check, CheckOptions};
use blockfs::error::DeviceError;
use blockfs::format::{Block, BLOCK_SIZE};
use blockfs::fs::{format, NewInode, RenameFlags};
use blockfs::{BlockDevice, FileSystem, FileType, FormatOptions, MemDevice, MountOptions, ROOT_INO};
use support::{CowDevice, Rng};

const BLOCKS: u32 = 2048;
const INODES: u32 = 4096;
const CACHE_BLOCKS: usize = 16;
const FILE: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };
const DIR: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };

#[derive(Clone)]
enum Event {
    Write(u32, Arc<Block>),
    Flush,
}

/// A device that applies writes to memory and logs them.
struct Recording {
    inner: MemDevice,
    log: Arc<Mutex<Vec<Event>>>,
}

impl BlockDevice for Recording {
    fn block_count(&self) -> u32 {
        self.inner.block_count()
    }
    fn read_block(&mut self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.inner.read_block(index, buf)
    }
    fn write_block(&mut self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.inner.write_block(index, buf)?;
        self.log.lock().unwrap().push(Event::Write(index, Arc::new(*buf)));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Event::Flush);
        Ok(())
    }
}

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

    fn allow(&mut self, path: &str, file: u32, version: u32) {
        self.tags.entry(path.into()).or_default().push(tag(file, version));
    }
}

type Workload = fn(&FileSystem<Recording>, &mut Recorder);

/// Runs before recording starts: its result is the crash images' base.
type Setup = fn(&FileSystem<MemDevice>);

fn no_setup(_: &FileSystem<MemDevice>) {}

/// Leaves only `free` blocks free, so new data must reuse freed blocks.
fn nearly_full(fs: &FileSystem<MemDevice>, free: u32) {
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

fn truncate_setup(fs: &FileSystem<MemDevice>) {
    nearly_full(fs, 30);
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

// ---- the harness -----------------------------------------------------

struct Run {
    base: Arc<[u8]>,
    events: Vec<Event>,
    recorder: Recorder,
}

fn run_workload(setup: Setup, workload: Workload) -> Run {
    let mut format_options = FormatOptions::new(BLOCKS);
    format_options.inode_count = Some(INODES);
    let device = format(MemDevice::new(BLOCKS), &format_options).unwrap();
    let fs = FileSystem::mount(device, options()).unwrap();
    setup(&fs);
    let device = with_stale_free_blocks(fs.unmount().unwrap());
    let base: Arc<[u8]> = Arc::from(device.as_bytes());
    let log = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording { inner: device, log: log.clone() };
    let fs = FileSystem::mount(recording, options()).unwrap();
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
    walk_everything(&fs)?;
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
        let data = read_all(&fs, ino);
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
                    read_all(fs, entry.ino);
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
    let mut changed = HashMap::new();
    for index in writes {
        if let Event::Write(block, data) = &run.events[index] {
            changed.insert(*block, data.clone());
        }
    }
    CrashImage { base: run.base.clone(), changed }
}

/// Builds and verifies every crash state of a workload; returns how many.
fn crash_states(name: &str, setup: Setup, workload: Workload) -> usize {
    let run = run_workload(setup, workload);
    let subsets: usize =
        std::env::var("BLOCKFS_CRASH_SUBSETS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
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
        for (&block, data) in &image.changed {
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
    let workloads: [(&str, Setup, Workload); 10] = [
        ("create+write+fsync", no_setup, create_write_fsync),
        ("overwrite in place", no_setup, overwrite_in_place),
        ("append+fsync loop", no_setup, append_fsync_loop),
        ("rename over existing", no_setup, rename_over_existing),
        ("mkdir -p deep tree", no_setup, mkdir_deep_tree),
        ("unlink open file", no_setup, unlink_open_file),
        ("truncate down and up", truncate_setup, truncate_down_and_up),
        ("grow into double indirect", no_setup, grow_into_double_indirect),
        ("directory past 12 blocks", no_setup, directory_past_twelve_blocks),
        ("many small files then sync", no_setup, many_small_files_then_sync),
    ];
    let mut total = 0;
    for (name, setup, workload) in workloads {
        let states = crash_states(name, setup, workload);
        println!("{name}: {states} crash states");
        total += states;
    }
    println!("total: {total} crash states");
    assert!(total >= 10_000, "only {total} crash states");
}
