//! Fault injection: every operation of a workload is run once per I/O it
//! performs, with that read, write or flush failing (once; the device
//! works again afterwards). For each run:
//!
//! - the operation either succeeds, leaving the tree as a fault-free run
//!   leaves it, or fails, leaving the tree exactly as it was before — or
//!   the mount has turned read-only (a failed commit);
//! - after unmounting and mounting again, the checker finds nothing and the
//!   tree is the one before the operation or the one after, as the
//!   operation's result says;
//! - the image after a read-only abort, and the image as it stood at the
//!   fault (a power cut there), mount, check clean and show the tree before
//!   or the tree after the operation — all of its metadata one or the
//!   other; file bytes may mix the two, as ordered mode writes data in
//!   place before the commit that would make the operation durable.
//!
//! Then the commit that follows each operation is run with a fault at each
//! of its I/O points: the mount turns read-only and the image shows the
//! tree before or after the operation. The cache holds 8 blocks, so the
//! operations read and evict constantly.
//!
//! `BLOCKFS_FAULT_STEPS` limits the workload's steps (all by default).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use blockfs::check::{check, CheckOptions};
use blockfs::error::DeviceError;
use blockfs::format::Block;
use blockfs::fs::{format, NewInode, RenameFlags};
use blockfs::{
    BlockDevice, Error, FileSystem, FileType, FormatOptions, MemDevice, MountOptions, SetAttr, ROOT_INO,
};

const BLOCKS: u32 = 2048;
const INODES: u32 = 1024;
/// Entries in each of the two big directories (several blocks each).
const BIG_DIR_ENTRIES: u32 = 300;
const FILE: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };
const DIR: NewInode = NewInode { perm: 0o755, uid: 0, gid: 0 };

/// Which I/O fails.
#[derive(Default)]
struct Control {
    /// I/O calls made so far.
    calls: u64,
    /// The call that fails.
    fail_at: Option<u64>,
    /// The device as it stood when the failure happened.
    at_fault: Option<Vec<u8>>,
}

/// A memory device whose Nth read, write or flush fails.
#[derive(Clone)]
struct FaultDevice {
    storage: Arc<Mutex<MemDevice>>,
    control: Arc<Mutex<Control>>,
}

impl FaultDevice {
    fn new(bytes: Vec<u8>) -> Self {
        FaultDevice {
            storage: Arc::new(Mutex::new(MemDevice::from_bytes(bytes))),
            control: Arc::new(Mutex::new(Control::default())),
        }
    }

    /// Counts a call; fails it when it is the chosen one.
    fn io(&self, block: Option<u32>) -> Result<(), DeviceError> {
        let mut control = self.control.lock().unwrap();
        control.calls += 1;
        if control.fail_at == Some(control.calls) {
            control.fail_at = None;
            control.at_fault = Some(self.storage.lock().unwrap().as_bytes().to_vec());
            return Err(DeviceError::eio(block));
        }
        Ok(())
    }

    /// Fails the `n`th call from now (1 = the next one).
    fn fail_in(&self, n: u64) {
        let mut control = self.control.lock().unwrap();
        control.fail_at = Some(control.calls + n);
    }

    /// Whether the chosen failure happened; the image at that moment.
    fn take_fault(&self) -> Option<Vec<u8>> {
        let mut control = self.control.lock().unwrap();
        control.fail_at = None;
        control.at_fault.take()
    }

    fn bytes(&self) -> Vec<u8> {
        self.storage.lock().unwrap().as_bytes().to_vec()
    }
}

impl BlockDevice for FaultDevice {
    fn block_count(&self) -> u32 {
        self.storage.lock().unwrap().block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.io(Some(index))?;
        self.storage.lock().unwrap().read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.io(Some(index))?;
        self.storage.lock().unwrap().write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.io(None)
    }
}

fn clock() -> u32 {
    1_700_000_000
}

/// The faulted mount: a cache of 8 blocks, so operations read and evict
/// constantly.
fn options() -> MountOptions {
    MountOptions { cache_blocks: 8, relatime: false, clock, ..MountOptions::default() }
}

/// Mounts that only look (a roomy cache: faster, same results).
fn viewing_options() -> MountOptions {
    MountOptions { cache_blocks: 2048, ..options() }
}

/// A file the workload never touches that takes most of the free space;
/// trees record its size but not its bytes, which would dominate the
/// test's time.
const FILLER: &str = "/filler";

/// What a tree looks like from outside: every path with its type,
/// permissions, link count and contents, and the free counts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tree {
    entries: BTreeMap<String, Entry>,
    free_blocks: u32,
    free_inodes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    kind: FileType,
    perm: u16,
    nlink: u16,
    /// File contents, or a symlink's target.
    data: Vec<u8>,
}

fn tree<D: BlockDevice>(fs: &FileSystem<D>) -> Result<Tree, Error> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![(String::new(), ROOT_INO)];
    while let Some((path, dir)) = pending.pop() {
        let mut children = Vec::new();
        fs.readdir(dir, 0, &mut |entry, _| {
            if entry.name != b"." && entry.name != b".." {
                children.push(entry.name.clone());
            }
            true
        })?;
        for name in children {
            let attr = fs.lookup(dir, &name)?;
            let child = format!("{path}/{}", String::from_utf8_lossy(&name));
            let data = match attr.kind {
                FileType::Regular if child == FILLER => Vec::new(),
                FileType::Regular => {
                    let mut data = vec![0; attr.size as usize];
                    let read = fs.read(attr.ino, 0, &mut data)?;
                    data.truncate(read);
                    data
                }
                FileType::Symlink => fs.readlink(attr.ino)?,
                FileType::Directory => {
                    pending.push((child.clone(), attr.ino));
                    Vec::new()
                }
                _ => Vec::new(),
            };
            entries.insert(child, Entry { kind: attr.kind, perm: attr.perm, nlink: attr.nlink, data });
        }
    }
    let statfs = fs.statfs();
    Ok(Tree { entries, free_blocks: statfs.free_blocks, free_inodes: statfs.free_inodes })
}

/// Mounts an image, checks it, and returns its tree.
fn recovered_tree(bytes: Vec<u8>) -> Result<Tree, String> {
    let fs = FileSystem::mount(MemDevice::from_bytes(bytes), viewing_options())
        .map_err(|e| format!("mount: {e}"))?;
    let tree = tree(&fs).map_err(|e| format!("walk: {e}"))?;
    let mut device = fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let report = check(&mut device, &CheckOptions::default()).map_err(|e| format!("check: {e}"))?;
    if !report.is_clean() {
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        return Err(format!("checker: {problems:?}"));
    }
    Ok(tree)
}

/// One library call of the workload.
type Step = Box<dyn Fn(&FileSystem<FaultDevice>) -> Result<(), Error>>;

fn path_ino<D: BlockDevice>(fs: &FileSystem<D>, path: &str) -> Result<u32, Error> {
    fs.resolve(path.as_bytes(), false)
}

fn name_of(path: &str) -> (&str, &[u8]) {
    let (parent, name) = path.rsplit_once('/').unwrap();
    (if parent.is_empty() { "/" } else { parent }, name.as_bytes())
}

fn create(path: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.create(path_ino(fs, parent)?, name, FILE).map(drop)
    })
}

fn mkdir(path: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.mkdir(path_ino(fs, parent)?, name, DIR).map(drop)
    })
}

fn write(path: &'static str, offset: u64, len: usize, seed: u8) -> Step {
    Box::new(move |fs| {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let written = fs.write(path_ino(fs, path)?, offset, &data)?;
        assert_eq!(written, len, "a fault-free piece of {path} was not written whole");
        Ok(())
    })
}

fn truncate(path: &'static str, size: u64) -> Step {
    Box::new(move |fs| {
        let changes = SetAttr { size: Some(size), ..SetAttr::default() };
        fs.setattr(path_ino(fs, path)?, &changes).map(drop)
    })
}

fn chmod(path: &'static str, perm: u16) -> Step {
    Box::new(move |fs| {
        let changes = SetAttr { perm: Some(perm), ..SetAttr::default() };
        fs.setattr(path_ino(fs, path)?, &changes).map(drop)
    })
}

fn rename(from: &'static str, to: &'static str) -> Step {
    Box::new(move |fs| {
        let (from_parent, from_name) = name_of(from);
        let (to_parent, to_name) = name_of(to);
        let (from_dir, to_dir) = (path_ino(fs, from_parent)?, path_ino(fs, to_parent)?);
        fs.rename(from_dir, from_name, to_dir, to_name, RenameFlags::default())
    })
}

fn link(target: &'static str, path: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.link(path_ino(fs, target)?, path_ino(fs, parent)?, name).map(drop)
    })
}

fn unlink(path: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.unlink(path_ino(fs, parent)?, name)
    })
}

fn rmdir(path: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.rmdir(path_ino(fs, parent)?, name)
    })
}

fn symlink(path: &'static str, target: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.symlink(path_ino(fs, parent)?, name, target.as_bytes(), 0, 0).map(drop)
    })
}

fn mknod(path: &'static str) -> Step {
    Box::new(move |fs| {
        let (parent, name) = name_of(path);
        fs.mknod(path_ino(fs, parent)?, name, FileType::Fifo, FILE, (0, 0)).map(drop)
    })
}

/// The workload: every kind of change, on directories several blocks
/// long, files reaching the double-indirect range, and a disk that fills.
fn workload() -> Vec<(&'static str, Step)> {
    vec![
        ("create", create("/a/new")),
        ("write 5000 bytes", write("/a/new", 0, 5000, 1)),
        ("write into the single-indirect range", write("/a/new", 4090, 90_000, 2)),
        ("write into the double-indirect range", write("/a/new", 6 << 20, 9000, 3)),
        ("truncate down past the indirect blocks", truncate("/a/new", 3000)),
        ("truncate up", truncate("/a/new", 200_000)),
        ("mkdir", mkdir("/b/sub")),
        ("rename a file across directories", rename("/a/f17", "/b/sub/moved")),
        ("rename a directory across directories", rename("/b/sub", "/a/sub2")),
        ("rename over an existing file", rename("/a/f18", "/a/f19")),
        ("hard link", link("/a/f20", "/b/l20")),
        ("unlink one of two links", unlink("/a/f20")),
        ("unlink the last link", unlink("/b/l20")),
        ("symlink", symlink("/b/s", "../a/f21")),
        ("chmod", chmod("/a/f21", 0o600)),
        ("rmdir a directory that is not empty", rmdir("/a/sub2")),
        ("unlink in a moved directory", unlink("/a/sub2/moved")),
        ("rmdir", rmdir("/a/sub2")),
        ("mknod", mknod("/b/fifo")),
        ("mkdir to be replaced", mkdir("/b/empty")),
        ("rename a directory over an empty one", rename("/a/d0", "/b/empty")),
        ("unlink a file with double-indirect blocks", unlink("/a/new")),
        ("create after freeing", create("/b/after")),
        ("write into the space just freed", write("/b/after", 0, 120_000, 5)),
    ]
}

/// Free blocks the starting image keeps: the workload's big file takes
/// most, so the last write needs the blocks an unlink just freed.
const FREE_AT_START: u32 = 45;

/// The starting image: two directories of `BIG_DIR_ENTRIES` small files
/// each, a subdirectory, and a file that fills the disk but for
/// `FREE_AT_START` blocks.
fn base_image() -> Vec<u8> {
    let mut format_options = FormatOptions::new(BLOCKS);
    format_options.inode_count = Some(INODES);
    let device = format(MemDevice::new(BLOCKS), &format_options).unwrap();
    let fs = FileSystem::mount(device, MountOptions { clock, ..MountOptions::default() }).unwrap();
    for dir in [b"a", b"b"] {
        let dir = fs.mkdir(ROOT_INO, dir, DIR).unwrap().ino;
        for index in 0..BIG_DIR_ENTRIES {
            let file = fs.create(dir, format!("f{index}").as_bytes(), FILE).unwrap().ino;
            fs.write(file, 0, format!("file {index}\n").as_bytes()).unwrap();
        }
    }
    let a = fs.resolve(b"/a", false).unwrap();
    fs.mkdir(a, b"d0", DIR).unwrap();
    let big = fs.create(ROOT_INO, &FILLER.as_bytes()[1..], FILE).unwrap().ino;
    // Data blocks plus the indirect blocks that map them.
    let fill = fs.statfs().free_blocks - FREE_AT_START;
    let data_blocks = fill - 1 - fill / 1025;
    fs.write(big, 0, &vec![7; data_blocks as usize * 4096]).unwrap();
    let device = fs.unmount().unwrap();
    let fs = FileSystem::mount(device, viewing_options()).unwrap();
    assert!(fs.statfs().free_blocks.abs_diff(FREE_AT_START) <= 2, "{}", fs.statfs().free_blocks);
    fs.unmount().unwrap().into_bytes()
}

struct Counts {
    runs: u64,
    failed_operations: u64,
    aborted: u64,
}

/// Checks one run with a fault at call `n` of `step`.
fn fault_in_operation(
    step: &Step,
    baseline: &Result<(), Error>,
    start: &[u8],
    before: &Tree,
    after: &Tree,
    n: u64,
    counts: &mut Counts,
) -> Result<bool, String> {
    let device = FaultDevice::new(start.to_vec());
    let fs = FileSystem::mount(device.clone(), options()).map_err(|e| format!("mount: {e}"))?;
    device.fail_in(n);
    let result = step(&fs);
    let Some(at_fault) = device.take_fault() else {
        // `n` is past the operation's last I/O: the sweep is done.
        if result != *baseline {
            return Err(format!("fault-free run gave {result:?}, not {baseline:?}"));
        }
        return Ok(false);
    };
    counts.runs += 1;
    let expected = match &result {
        Ok(()) => after,
        Err(_) => {
            counts.failed_operations += 1;
            before
        }
    };
    if fs.is_aborted() {
        counts.aborted += 1;
        // Read-only now: reads still work, changes are refused.
        tree(&fs).map_err(|e| format!("reading after the abort: {e}"))?;
        let refused = fs.mkdir(ROOT_INO, b"after-abort", DIR).map(drop);
        if refused != Err(Error::Aborted) {
            return Err(format!("a change after the abort gave {refused:?}"));
        }
    } else {
        let seen = tree(&fs).map_err(|e| format!("walk after the fault: {e}"))?;
        if &seen != expected {
            return Err(format!(
                "tree after {result:?} differs from the expected one:\n{}",
                diff(expected, &seen)
            ));
        }
    }
    // Unmount (or, read-only, take the image as it is), mount again.
    let aborted = fs.is_aborted();
    let image = match fs.unmount() {
        Ok(_) if !aborted => device.bytes(),
        Err(Error::Aborted) if aborted => device.bytes(),
        other => return Err(format!("unmount gave {:?} (aborted: {aborted})", other.map(drop))),
    };
    let recovered = recovered_tree(image).map_err(|e| format!("after unmount: {e}"))?;
    let fits = if aborted { before_or_after(&recovered, before, after) } else { recovered == *expected };
    if !fits {
        return Err(format!("remounted tree after {result:?}:\n{}", diff(expected, &recovered)));
    }
    // A power cut at the fault.
    let crashed = recovered_tree(at_fault).map_err(|e| format!("power cut at the fault: {e}"))?;
    if !before_or_after(&crashed, before, after) {
        return Err(format!(
            "power cut at the fault: tree is neither before nor after:\n{}",
            diff(before, &crashed)
        ));
    }
    Ok(true)
}

/// Checks one run where the commit after `step` fails at call `n`.
fn fault_in_commit(step: &Step, start: &[u8], before: &Tree, after: &Tree, n: u64) -> Result<bool, String> {
    let device = FaultDevice::new(start.to_vec());
    let fs = FileSystem::mount(device.clone(), options()).map_err(|e| format!("mount: {e}"))?;
    let _ = step(&fs);
    device.fail_in(n);
    let synced = fs.sync();
    let Some(at_fault) = device.take_fault() else {
        synced.map_err(|e| format!("fault-free sync failed: {e}"))?;
        return Ok(false);
    };
    if synced.is_ok() || !fs.is_aborted() {
        return Err(format!("a failed commit must abort the mount (sync gave {synced:?})"));
    }
    let image = match fs.unmount() {
        Err(Error::Aborted) => device.bytes(),
        other => return Err(format!("unmount after an abort gave {:?}", other.map(drop))),
    };
    for (what, image) in [("after the abort", image), ("power cut at the fault", at_fault)] {
        let tree = recovered_tree(image).map_err(|e| format!("{what}: {e}"))?;
        if !before_or_after(&tree, before, after) {
            return Err(format!("{what}: tree is neither before nor after:\n{}", diff(before, &tree)));
        }
    }
    Ok(true)
}

/// Whether `seen` has the metadata of `before` or of `after` — paths,
/// types, permissions, links, sizes, symlink targets, free counts — with
/// every file byte from one of the two.
fn before_or_after(seen: &Tree, before: &Tree, after: &Tree) -> bool {
    [before, after].iter().any(|&shape| {
        let same_counts = (seen.free_blocks, seen.free_inodes) == (shape.free_blocks, shape.free_inodes);
        same_counts
            && seen.entries.len() == shape.entries.len()
            && seen.entries.iter().all(|(path, entry)| {
                let Some(expected) = shape.entries.get(path) else { return false };
                let same_shape = (entry.kind, entry.perm, entry.nlink, entry.data.len())
                    == (expected.kind, expected.perm, expected.nlink, expected.data.len());
                let bytes_fit = match entry.kind {
                    FileType::Regular => {
                        let old = before.entries.get(path).map_or(&[][..], |e| &e.data[..]);
                        let new = after.entries.get(path).map_or(&[][..], |e| &e.data[..]);
                        let byte_of = |data: &[u8], at: usize| data.get(at).copied().unwrap_or(0);
                        entry
                            .data
                            .iter()
                            .enumerate()
                            .all(|(at, &byte)| byte == byte_of(old, at) || byte == byte_of(new, at))
                    }
                    _ => entry.data == expected.data,
                };
                same_shape && bytes_fit
            })
    })
}

fn diff(expected: &Tree, seen: &Tree) -> String {
    let mut lines = Vec::new();
    if (expected.free_blocks, expected.free_inodes) != (seen.free_blocks, seen.free_inodes) {
        lines.push(format!(
            "  free blocks/inodes: expected {}/{}, seen {}/{}",
            expected.free_blocks, expected.free_inodes, seen.free_blocks, seen.free_inodes
        ));
    }
    for (path, entry) in &expected.entries {
        match seen.entries.get(path) {
            None => lines.push(format!("  missing {path}")),
            Some(other) if other != entry => {
                let first_difference = entry.data.iter().zip(&other.data).position(|(a, b)| a != b);
                lines.push(format!(
                    "  {path}: expected {:?} {:o} nlink {} {} bytes, seen {:?} {:o} nlink {} {} bytes \
                     (contents first differ at {first_difference:?})",
                    entry.kind,
                    entry.perm,
                    entry.nlink,
                    entry.data.len(),
                    other.kind,
                    other.perm,
                    other.nlink,
                    other.data.len()
                ))
            }
            Some(_) => {}
        }
    }
    for path in seen.entries.keys().filter(|path| !expected.entries.contains_key(*path)) {
        lines.push(format!("  unexpected {path}"));
    }
    lines.truncate(20);
    lines.join("\n")
}

#[test]
fn every_io_failure_rolls_back_or_aborts() {
    let steps = workload();
    let limit = std::env::var("BLOCKFS_FAULT_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(steps.len());
    let mut image = base_image();
    let mut counts = Counts { runs: 0, failed_operations: 0, aborted: 0 };
    let mut commit_points = 0;
    for (name, step) in steps.iter().take(limit) {
        let started = std::time::Instant::now();
        let runs_before = counts.runs;
        let before = recovered_tree(image.clone()).unwrap();
        // The fault-free run gives the tree after, and the next start. A
        // step may fail by design (rmdir of a full directory).
        let (baseline, next) = {
            let device = FaultDevice::new(image.clone());
            let fs = FileSystem::mount(device.clone(), options()).unwrap();
            let baseline = step(&fs);
            assert!(matches!(baseline, Ok(()) | Err(Error::NotEmpty)), "{name}: {baseline:?}");
            fs.unmount().unwrap();
            (baseline, device.bytes())
        };
        let after = recovered_tree(next.clone()).unwrap();
        for n in 1.. {
            match fault_in_operation(step, &baseline, &image, &before, &after, n, &mut counts) {
                Ok(true) => {}
                Ok(false) => break,
                Err(message) => panic!("{name}: fault at I/O {n} of the operation: {message}"),
            }
        }
        for n in 1.. {
            match fault_in_commit(step, &image, &before, &after, n) {
                Ok(true) => commit_points += 1,
                Ok(false) => break,
                Err(message) => panic!("{name}: fault at I/O {n} of the commit: {message}"),
            }
        }
        println!(
            "{name}: {} fault points, {:.1} s",
            counts.runs - runs_before,
            started.elapsed().as_secs_f64()
        );
        image = next;
    }
    println!(
        "{} fault points in operations ({} failed operations, {} aborts), {commit_points} in commits",
        counts.runs, counts.failed_operations, counts.aborted
    );
    assert!(counts.failed_operations > 0 && commit_points > 0);
}
