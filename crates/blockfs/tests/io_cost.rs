//! What mounting, syncing and looking up cost in device I/O: mount reads a
//! constant number of blocks whatever the image size, a sync writes only
//! what changed, and lookups in a huge directory do not rescan it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blockfs::error::DeviceError;
use blockfs::format::Block;
use blockfs::fs::{format, NewInode};
use blockfs::{BlockDevice, FileSystem, FormatOptions, MemDevice, MountOptions};

/// A memory device that counts block reads and writes.
struct Counting {
    inner: MemDevice,
    reads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl BlockDevice for Counting {
    fn block_count(&self) -> u32 {
        self.inner.block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

fn counting(inner: MemDevice) -> (Counting, Arc<AtomicU64>, Arc<AtomicU64>) {
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    (Counting { inner, reads: reads.clone(), writes: writes.clone() }, reads, writes)
}

fn formatted(blocks: u32, inodes: Option<u32>) -> MemDevice {
    let mut options = FormatOptions::new(blocks);
    options.inode_count = inodes;
    format(MemDevice::new(blocks), &options).unwrap()
}

const FILE: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };

fn formatted_plain(blocks: u32) -> MemDevice {
    let mut options = FormatOptions::new(blocks);
    options.journal = false;
    format(MemDevice::new(blocks), &options).unwrap()
}

/// Device reads made by mounting.
fn mount_reads(device: MemDevice, read_only: bool) -> u64 {
    let (device, reads, _) = counting(device);
    let options = MountOptions { read_only, ..MountOptions::default() };
    let fs = FileSystem::mount(device, options).unwrap();
    drop(fs);
    reads.load(Ordering::Relaxed)
}

#[test]
fn mount_reads_a_constant_number_of_blocks() {
    for blocks in [1024u32, 65536, 262144] {
        // Plain image: block 0, then block 0 again through the cache to mark
        // it mounted, and the inode-table block holding the root.
        assert_eq!(mount_reads(formatted_plain(blocks), false), 3, "{blocks} blocks");
        assert_eq!(mount_reads(formatted_plain(blocks), true), 2, "{blocks} blocks");
        // Journaled: also the journal inode's table block (does it own the
        // run?), the journal superblock and its first block (is a
        // committed transaction waiting?).
        assert_eq!(mount_reads(formatted(blocks, None), false), 6, "{blocks} blocks");
        assert_eq!(mount_reads(formatted(blocks, None), true), 5, "{blocks} blocks");
    }
}

/// Writes one byte into a file of a populated image and syncs; returns
/// (home blocks written, device block writes).
fn one_byte_sync(device: MemDevice) -> (usize, u64) {
    let fs = FileSystem::mount(device, MountOptions::default()).unwrap();
    for index in 0..200u32 {
        let attr = fs.create(0, format!("file{index}").as_bytes(), FILE).unwrap();
        fs.write(attr.ino, 0, &vec![index as u8; 10_000]).unwrap();
    }
    let device = fs.unmount().unwrap();

    let (device, _, writes) = counting(device);
    let fs = FileSystem::mount(device, MountOptions::default()).unwrap();
    let ino = fs.lookup(0, b"file77").unwrap().ino;
    writes.store(0, Ordering::Relaxed);
    fs.write(ino, 5000, b"X").unwrap();
    let home = fs.sync().unwrap();
    let device_writes = writes.load(Ordering::Relaxed);
    // Nothing changed since: a second sync writes nothing.
    writes.store(0, Ordering::Relaxed);
    assert_eq!(fs.sync().unwrap(), 0);
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    (home, device_writes)
}

#[test]
fn sync_after_changing_one_byte_writes_what_changed() {
    // The data block, the inode-table block (mtime), and block 0.
    assert_eq!(one_byte_sync(formatted_plain(65536)), (3, 3));
    // Journaled: the same three home blocks, plus a descriptor, copies of
    // the two metadata blocks, a commit record and the journal superblock.
    assert_eq!(one_byte_sync(formatted(65536, None)), (3, 8));
}

#[test]
fn lookups_in_a_huge_directory_do_not_rescan_it() {
    const NAMES: u32 = 100_000;
    let device = formatted(32768, Some(110_000));
    let fs = FileSystem::mount(device, MountOptions::default()).unwrap();
    let dir = fs.mkdir(0, b"big", NewInode { perm: 0o755, uid: 0, gid: 0 }).unwrap().ino;
    for index in 0..NAMES {
        fs.create(dir, format!("name-{index:06}").as_bytes(), FILE).unwrap();
    }
    let device = fs.unmount().unwrap();
    let (device, reads, _) = counting(device);
    let fs = FileSystem::mount(device, MountOptions::default()).unwrap();
    let dir = fs.lookup(0, b"big").unwrap().ino;
    // The first lookup builds the index from the directory's blocks.
    fs.lookup(dir, b"name-000000").unwrap();
    let after_first = reads.load(Ordering::Relaxed);
    // Later lookups read at most the target's inode-table block each.
    for index in (0..NAMES).step_by(997) {
        let attr = fs.lookup(dir, format!("name-{index:06}").as_bytes()).unwrap();
        assert!(attr.ino > dir);
    }
    let per_lookup = (reads.load(Ordering::Relaxed) - after_first) as f64 / (NAMES / 997) as f64;
    assert!(per_lookup <= 1.0, "{per_lookup} block reads per lookup");
    assert_eq!(fs.lookup(dir, b"missing").unwrap_err(), blockfs::Error::NotFound);
}
