//! Device reads hold up no other file's operations (docs/DESIGN.md,
//! "Locking"): while one thread waits for the device, others go on; a
//! file read waits for the device holding no lock at all, and one whose
//! blocks change owner meanwhile never returns the new owner's bytes.
//!
//! A gated device holds the first read after it is armed until the test
//! opens the gate, so the tests decide exactly what happens while a read
//! waits. Every wait is bounded: a thread stuck behind the lock fails the
//! test instead of hanging it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use blockfs::format::Block;
use blockfs::fs::{format, NewInode};
use blockfs::{
    BlockDevice, DeviceError, Error, FileSystem, FormatOptions, MemDevice, MountOptions, SetAttr, ROOT_INO,
};

const WAIT: Duration = Duration::from_secs(20);
const FILE_BYTES: usize = 32 * 1024;

#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    /// (a read is held, the gate is open)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn arm(&self) {
        *self.state.lock().unwrap() = (false, false);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Holds the calling read if the gate is armed (once per arming).
    fn pass(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn wait_until_holding(&self) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self.changed.wait_timeout_while(state, WAIT, |state| !state.0).unwrap();
        assert!(!timeout.timed_out() && state.0, "no read reached the device");
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

struct GatedDevice {
    inner: MemDevice,
    gate: Arc<Gate>,
}

impl BlockDevice for GatedDevice {
    fn block_count(&self) -> u32 {
        self.inner.block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.gate.pass();
        self.inner.read_block(index, buf)
    }
    fn read_blocks(&self, start: u32, data: &mut [u8]) -> Result<(), DeviceError> {
        self.gate.pass();
        self.inner.read_blocks(start, data)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.inner.write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.inner.flush()
    }
}

fn clock() -> u32 {
    1_700_000_000
}

fn options() -> MountOptions {
    MountOptions { cache_blocks: 64, relatime: false, clock, ..MountOptions::default() }
}

fn new_inode() -> NewInode {
    NewInode { perm: 0o644, uid: 0, gid: 0 }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..FILE_BYTES).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// An image with `a` (32 KiB), `b` (a few bytes) and `d/x`; with `fill`,
/// a file `filler` takes every block left, so the next blocks allocated
/// after `a` is truncated are `a`'s.
fn image(fill: bool) -> MemDevice {
    let device = format(MemDevice::new(2048), &FormatOptions::new(2048)).expect("format");
    let fs = FileSystem::mount(device, options()).expect("mount");
    let a = fs.create(ROOT_INO, b"a", new_inode()).expect("create a");
    assert_eq!(fs.write(a.ino, 0, &pattern(1)).expect("write a"), FILE_BYTES);
    let b = fs.create(ROOT_INO, b"b", new_inode()).expect("create b");
    fs.write(b.ino, 0, b"bee").expect("write b");
    let d = fs.mkdir(ROOT_INO, b"d", NewInode { perm: 0o755, uid: 0, gid: 0 }).expect("mkdir d");
    fs.create(d.ino, b"x", new_inode()).expect("create d/x");
    if fill {
        let filler = fs.create(ROOT_INO, b"filler", new_inode()).expect("create filler");
        let chunk = vec![0xAAu8; 1024 * 1024];
        let mut at = 0u64;
        loop {
            match fs.write(filler.ino, at, &chunk) {
                Ok(0) | Err(Error::NoSpace) => break,
                Ok(written) => at += written as u64,
                Err(error) => panic!("filling the image: {error}"),
            }
        }
        fs.sync().expect("sync");
        assert_eq!(fs.statfs().free_blocks, 0, "the filler took every block");
    }
    fs.unmount().expect("unmount")
}

fn mount_gated(device: MemDevice) -> (Arc<FileSystem<GatedDevice>>, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let fs = FileSystem::mount(GatedDevice { inner: device, gate: gate.clone() }, options()).expect("mount");
    (Arc::new(fs), gate)
}

/// Runs `work` on another thread and fails if it does not finish in time
/// (it would be waiting for the lock the held read has).
fn within_time<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver.recv_timeout(WAIT).unwrap_or_else(|_| panic!("{what} waited for another thread's device read"))
}

/// Reads file `ino` from the start on another thread: the bytes read.
fn read_in_background(fs: &Arc<FileSystem<GatedDevice>>, ino: u32) -> thread::JoinHandle<Vec<u8>> {
    let fs = fs.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; FILE_BYTES];
        let count = fs.read(ino, 0, &mut buf).expect("read");
        buf.truncate(count);
        buf
    })
}

#[test]
fn other_operations_go_on_while_a_read_waits_for_the_device() {
    let (fs, gate) = mount_gated(image(false));
    let a = fs.lookup(ROOT_INO, b"a").expect("lookup a").ino;
    let b = fs.lookup(ROOT_INO, b"b").expect("lookup b").ino;
    let d = fs.lookup(ROOT_INO, b"d").expect("lookup d").ino;

    // File data: `a`'s blocks are not cached, so the read fetches them.
    gate.arm();
    let reader = read_in_background(&fs, a);
    gate.wait_until_holding();
    let other = fs.clone();
    let size = within_time("getattr of another file", move || other.getattr(b).expect("getattr b").size);
    assert_eq!(size, 3);
    let other = fs.clone();
    within_time("a write to another file", move || other.write(b, 3, b"s").expect("write b"));
    gate.open();
    let read = reader.join().expect("reader panicked");
    assert!(read == pattern(1), "the read returned other bytes than the file holds");

    // Metadata: `d`'s directory block is not cached, so the lookup reads it.
    gate.arm();
    let looker = {
        let fs = fs.clone();
        thread::spawn(move || fs.lookup(d, b"x").map(|attr| attr.size))
    };
    gate.wait_until_holding();
    let other = fs.clone();
    let size = within_time("getattr during a lookup", move || other.getattr(b).expect("getattr b").size);
    assert_eq!(size, 4);
    gate.open();
    assert_eq!(looker.join().expect("lookup panicked"), Ok(0));
    let mut buf = [0u8; 8];
    assert_eq!(fs.read(b, 0, &mut buf).expect("read b"), 4);
    assert_eq!(&buf[..4], b"bees");
}

#[test]
fn a_read_whose_blocks_change_owner_meanwhile_never_returns_the_new_owners_bytes() {
    let (fs, gate) = mount_gated(image(true));
    let a = fs.lookup(ROOT_INO, b"a").expect("lookup a").ino;

    gate.arm();
    let reader = read_in_background(&fs, a);
    gate.wait_until_holding();
    // While the read waits: `a` is emptied, its blocks' free is committed,
    // and `c` gets them (nothing else is free) and its bytes reach the
    // device.
    let other = fs.clone();
    within_time("truncating, reusing and syncing", move || {
        other.setattr(a, &SetAttr { size: Some(0), ..SetAttr::default() }).expect("truncate a");
        other.sync().expect("sync");
        let c = other.create(ROOT_INO, b"c", new_inode()).expect("create c");
        assert_eq!(other.write(c.ino, 0, &pattern(2)).expect("write c"), FILE_BYTES);
        other.sync().expect("sync");
        assert_eq!(other.statfs().free_blocks, 0, "c took a's blocks");
    });
    gate.open();
    let read = reader.join().expect("reader panicked");
    // The read either saw `a` whole or saw it empty; `c`'s bytes are a leak.
    assert!(read.is_empty() || read == pattern(1), "the read returned {} bytes of another file", read.len());
    assert!(read.is_empty(), "the read started before the truncation finished after it");
}
