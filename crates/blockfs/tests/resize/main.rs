//! `blockfs::resize`: round trips on populated images (compared by an
//! independent reader), refusals that leave the image byte-identical, and
//! crash states at every write of a resize.

mod crash;
mod image;
#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use blockfs::check::{check, CheckOptions};
use blockfs::resize::{plan, ResizeError, Summary, Target};
use blockfs::{BlockDevice, FileSystem, MemDevice};
use image::{formatted, populate, tree_of, Reader, MB};
use support::CutAfter;

/// Resizes `device` in place (its size must already fit).
fn resize(device: &mut MemDevice, blocks: u32, inodes: u32) -> Result<Summary, ResizeError> {
    let plan = plan(device, Target { block_count: blocks, inode_count: inodes })?;
    plan.execute(device)
}

fn assert_checks_clean(device: &mut MemDevice) {
    let report = check(device, &CheckOptions::default()).unwrap();
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(report.is_clean(), "checker: {problems:?}");
}

fn geometry(device: &mut MemDevice) -> (u32, u32) {
    let reader = Reader::new(device.as_bytes());
    (reader.blocks, reader.inodes)
}

fn populated(blocks: u32, inodes: Option<u32>, device_blocks: u32) -> MemDevice {
    populate(formatted(blocks, inodes, device_blocks, true), 5 << 20, 700)
}

/// Resizes and checks that every file is as before, both by the
/// independent reader and by the checker, and that the library mounts it.
fn round_trip(device: &mut MemDevice, blocks: u32, inodes: u32) -> Summary {
    let before = tree_of(device.as_bytes());
    let summary = resize(device, blocks, inodes).unwrap();
    assert_eq!(geometry(device), (blocks, inodes));
    let after = tree_of(&device.as_bytes()[..blocks as usize * 4096]);
    assert_eq!(before.nodes.len(), after.nodes.len());
    for (path, node) in &before.nodes {
        assert_eq!(Some(node), after.nodes.get(path), "{path} differs after the resize");
    }
    assert_eq!(before.groups, after.groups, "hard links");
    assert!(!after.groups.is_empty());
    assert_checks_clean(device);
    let fs = FileSystem::mount(std::mem::replace(device, MemDevice::new(1)), image::mount_options()).unwrap();
    assert_eq!(fs.info().geometry.block_count, blocks);
    *device = fs.unmount().unwrap();
    summary
}

#[test]
fn grow_across_a_bitmap_block_then_shrink_back() {
    let mut device = populated(100 * MB, None, 300 * MB);
    let inodes = geometry(&mut device).1;
    let summary = round_trip(&mut device, 300 * MB, inodes);
    assert!(summary.moved_blocks > 0, "the grown bitmap displaces data: {summary:?}");
    assert!(summary.journal_moved);
    device = image::data_near_the_end(device, 200 * MB, 3 << 20);
    let summary = round_trip(&mut device, 60 * MB, inodes);
    assert!(summary.moved_blocks > 0, "the cut region held data: {summary:?}");
}

#[test]
fn grow_and_shrink_the_inode_table() {
    let mut device = populated(64 * MB, Some(1000), 64 * MB);
    round_trip(&mut device, 64 * MB, 5000);
    round_trip(&mut device, 64 * MB, 1200);
    // Both at once, and without a journal-sized gap anywhere in particular.
    round_trip(&mut device, 48 * MB, 2000);
}

#[test]
fn shrinking_the_inode_table_renumbers_inodes() {
    let mut device = formatted(32 * MB, Some(3000), 32 * MB, true);
    // Inodes in use far up the table: create many, delete the early ones.
    let fs = FileSystem::mount(device, image::mount_options()).unwrap();
    let dir = fs.mkdir(0, b"d", blockfs::fs::NewInode { perm: 0o755, uid: 0, gid: 0 }).unwrap().ino;
    let file = blockfs::fs::NewInode { perm: 0o600, uid: 0, gid: 0 };
    let mut kept = Vec::new();
    for index in 0..2500u32 {
        let ino = fs.create(dir, format!("f{index}").as_bytes(), file).unwrap().ino;
        if index >= 2400 {
            fs.write(ino, 0, &image::pattern(index, 5000)).unwrap();
            kept.push(index);
        }
    }
    let sub = fs.mkdir(dir, b"late-dir", blockfs::fs::NewInode { perm: 0o700, uid: 0, gid: 0 }).unwrap().ino;
    let inner = fs.create(sub, b"inner", file).unwrap().ino;
    fs.link(inner, 0, b"inner-link").unwrap();
    fs.mkdir(sub, b"grandchild", blockfs::fs::NewInode { perm: 0o700, uid: 0, gid: 0 }).unwrap();
    for index in 0..2400u32 {
        fs.unlink(dir, format!("f{index}").as_bytes()).unwrap();
    }
    assert!(sub > 2400);
    device = fs.unmount().unwrap();
    let before = tree_of(device.as_bytes());
    let summary = resize(&mut device, 32 * MB, 300).unwrap();
    assert!(summary.renumbered_inodes >= 100, "{summary:?}");
    let after = tree_of(device.as_bytes());
    assert_eq!(before, after);
    assert_checks_clean(&mut device);
}

#[test]
fn the_sample_tree_round_trips() {
    let mut device = formatted(16 * MB, Some(700), 64 * MB, true);
    let fs = FileSystem::mount(device, image::mount_options()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/rootfs");
    copy_in(&fs, 0, &root);
    device = fs.unmount().unwrap();
    let before = tree_of(device.as_bytes());
    assert!(before.nodes.len() > 5);
    for (blocks, inodes) in [(64 * MB, 700), (64 * MB, 3000), (8 * MB, 3000), (8 * MB, 200)] {
        resize(&mut device, blocks, inodes).unwrap();
        assert_eq!(tree_of(device.as_bytes()).nodes, before.nodes, "{blocks} blocks, {inodes} inodes");
        assert_checks_clean(&mut device);
    }
}

fn copy_in(fs: &FileSystem<MemDevice>, parent: u32, dir: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type().unwrap();
        let new = blockfs::fs::NewInode { perm: 0o644, uid: 0, gid: 0 };
        if kind.is_dir() {
            let ino = fs.mkdir(parent, name.as_bytes(), new).unwrap().ino;
            copy_in(fs, ino, &entry.path());
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            fs.symlink(parent, name.as_bytes(), target.as_os_str().as_bytes(), 0, 0).unwrap();
        } else if kind.is_file() {
            let ino = fs.create(parent, name.as_bytes(), new).unwrap().ino;
            fs.write(ino, 0, &std::fs::read(entry.path()).unwrap()).unwrap();
        }
    }
}

/// Which refusal a case expects.
type Expect = fn(&ResizeError) -> bool;

#[test]
fn refusals_leave_the_image_byte_identical() {
    let mut device = populated(24 * MB, Some(1000), 24 * MB);
    let original = device.as_bytes().to_vec();
    let cases: [(u32, u32, Expect); 5] = [
        (3 * MB, 1000, |e| matches!(e, ResizeError::DataDoesNotFit { .. })),
        (24 * MB, 100, |e| matches!(e, ResizeError::InodesDoNotFit { .. })),
        (24 * MB, 0, |e| matches!(e, ResizeError::BadGeometry(_))),
        (2, 1000, |e| matches!(e, ResizeError::BadGeometry(_))),
        // Growing past the device: planned, refused by execute before writing.
        (40 * MB, 1000, |e| matches!(e, ResizeError::DeviceTooSmall { .. })),
    ];
    for (blocks, inodes, expected) in cases {
        let error = resize(&mut device, blocks, inodes).unwrap_err();
        assert!(expected(&error), "{blocks}/{inodes}: {error}");
        assert!(device.as_bytes() == &original[..], "{blocks}/{inodes} changed the image");
    }
    let message = resize(&mut device, 3 * MB, 1000).unwrap_err().to_string();
    assert!(message.contains("more needed"), "{message}");
}

/// Damaged images give errors, never panics, and are not written.
#[test]
fn hostile_images_are_refused_without_panics() {
    let mut device = populated(16 * MB, Some(900), 24 * MB);
    let pristine = device.as_bytes().to_vec();
    let metadata_end = Reader::new(&pristine).first_data_block() as usize * 4096;
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..300 {
        let mut bytes = pristine.clone();
        for _ in 0..1 + round % 8 {
            // Mostly metadata (superblock, bitmap, inode table), sometimes anywhere.
            let span = if next() % 4 == 0 { 16 * MB as usize * 4096 } else { metadata_end };
            let at = next() as usize % span;
            bytes[at] ^= 1 << (next() % 8);
        }
        let mut device = MemDevice::from_bytes(bytes);
        let blocks = [12 * MB, 16 * MB, 24 * MB][round % 3];
        let inodes = [800, 900, 2000][round / 3 % 3];
        let Ok(plan) = plan(&mut device, Target { block_count: blocks, inode_count: inodes }) else {
            continue;
        };
        let _ = plan.execute(&mut device);
    }
}

#[test]
fn a_dirty_image_is_refused() {
    let mut device = formatted(8 * MB, None, 8 * MB, true);
    let mut block0 = [0u8; 4096];
    device.read_block(0, &mut block0).unwrap();
    block0[58] = 0; // state: mounted
    device.write_block(0, &block0).unwrap();
    let original = device.as_bytes().to_vec();
    assert_eq!(resize(&mut device, 16 * MB, 2000).unwrap_err(), ResizeError::NotClean);
    assert!(device.as_bytes() == &original[..]);
}

#[test]
fn a_plain_version_1_image_without_journal_resizes() {
    let mut options = blockfs::FormatOptions::new(4 * MB);
    options.extension = false;
    options.journal = false;
    let device = blockfs::fs::format(MemDevice::new(12 * MB), &options).unwrap();
    let mut device = populate(device, 200_000, 30);
    round_trip(&mut device, 12 * MB, 672);
    round_trip(&mut device, 5 * MB, 400);
    assert!(device.as_bytes()[64..192].iter().all(|&b| b == 0), "no extension record appears");
}

/// Counts the blocks a resize reads and writes.
struct Counting<'d> {
    inner: &'d mut MemDevice,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl BlockDevice for Counting<'_> {
    fn block_count(&self) -> u32 {
        self.inner.block_count()
    }
    fn read_block(
        &self,
        index: u32,
        buf: &mut blockfs::format::Block,
    ) -> Result<(), blockfs::error::DeviceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_block(index, buf)
    }
    fn write_block(
        &self,
        index: u32,
        buf: &blockfs::format::Block,
    ) -> Result<(), blockfs::error::DeviceError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_block(index, buf)
    }
    fn flush(&self) -> Result<(), blockfs::error::DeviceError> {
        self.inner.flush()
    }
}

#[test]
fn growing_with_nothing_in_the_way_touches_only_metadata() {
    let mut device = formatted(256 * MB, None, 1024 * MB, true);
    let inodes = geometry(&mut device).1;
    let mut counting = Counting { inner: &mut device, reads: 0.into(), writes: 0.into() };
    let summary = plan(&mut counting, Target { block_count: 1024 * MB, inode_count: inodes })
        .and_then(|plan| plan.execute(&mut counting))
        .unwrap();
    let (reads, writes) = (counting.reads.into_inner(), counting.writes.into_inner());
    eprintln!("256 MB -> 1 GiB: {reads} blocks read, {writes} written, {summary:?}");
    // The old inode table (384 blocks) is read, the bitmap grows from 2
    // blocks to 8, and the redo log, block 0 and what the new bitmap
    // displaces are a few blocks more: nothing scales with the 65,536
    // blocks of the old image or the 262,144 of the new one.
    let metadata_bound = 1024;
    assert!(reads < metadata_bound && writes < metadata_bound, "{reads} read, {writes} written");
    assert_checks_clean(&mut device);
}

/// The image right after a resize's commit point (copies, log, block 0
/// naming the log are durable; nothing of the replay is).
fn interrupted_after_commit(device: MemDevice, target: Target) -> MemDevice {
    let mut cut = CutAfter::new(device, 3);
    let plan = plan(&mut cut, target).unwrap();
    assert!(plan.execute(&mut cut).is_err());
    cut.inner
}

#[test]
fn an_interrupted_resize_is_finished_by_a_writer_and_refused_by_readers() {
    let mut device = populated(16 * MB, Some(1000), 32 * MB);
    let before = tree_of(device.as_bytes());
    let target = Target { block_count: 32 * MB, inode_count: 3000 };
    let mut device = interrupted_after_commit(device, target);
    let block0: [u8; 4096] = device.as_bytes()[..4096].try_into().unwrap();
    let record = blockfs::format::extension::Extension::decode_block(&block0).unwrap();
    assert!(record.resize_pending());
    assert_eq!(geometry(&mut device), (16 * MB, 1000), "block 0 still holds the old superblock");

    let read_only = blockfs::MountOptions { read_only: true, ..image::mount_options() };
    assert!(matches!(
        FileSystem::mount(device.clone(), read_only),
        Err(blockfs::Error::Unsupported(blockfs::error::Unsupported::ResizeInProgress))
    ));
    let mut copy = device.clone();
    assert!(check(&mut copy, &CheckOptions::default()).is_err(), "a check without repairs cannot finish it");
    assert!(copy.as_bytes() == device.as_bytes(), "a read-only check wrote");

    // A repairing check finishes it...
    let mut repaired = device.clone();
    let report = check(&mut repaired, &CheckOptions::new(blockfs::check::RepairMode::Safe)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(geometry(&mut repaired), (32 * MB, 3000));
    assert_eq!(tree_of(repaired.as_bytes()), before);
    // ...and so does a read-write mount, twice over if it is cut short.
    let mut twice = device.clone();
    assert!(blockfs::resize::finish_interrupted(&mut twice, false).unwrap());
    assert!(!blockfs::resize::finish_interrupted(&mut twice, false).unwrap());
    let fs = FileSystem::mount(device, image::mount_options()).unwrap();
    assert_eq!(fs.info().geometry.inode_count, 3000);
    let mut device = fs.unmount().unwrap();
    assert_eq!(tree_of(device.as_bytes()), before);
    assert_checks_clean(&mut device);
}
