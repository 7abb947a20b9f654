//! Threads that create, write and delete files as fast as they can on a
//! small image never run out of space: the image is nearly empty all
//! the time, but every freed block waits for a commit before it is free
//! again, so the threads keep filling the image with frees and commits
//! keep making them free while the others work. An operation that runs
//! out of space while freed blocks are on their way to being free (in the
//! running transaction, in a commit being written, or landed meanwhile)
//! must wait for them, not fail. Flushes are slowed down, so commits are
//! long and the threads meet them in every state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use blockfs::check::{check, CheckOptions};
use blockfs::format::Block;
use blockfs::fs::{format, NewInode};
use blockfs::{BlockDevice, DeviceError, FileSystem, FormatOptions, MemDevice, MountOptions, ROOT_INO};

const BLOCKS: u32 = 16384;
const THREADS: usize = 3;
const FILE_BYTES: usize = 16 * 1024;
const RUN: Duration = Duration::from_secs(3);
/// Far more than the run: a thread stuck for good fails the test.
const DEADLINE: Duration = Duration::from_secs(120);

/// Memory whose flushes take a while, as a disk's do.
struct SlowFlush(MemDevice);

impl BlockDevice for SlowFlush {
    fn block_count(&self) -> u32 {
        self.0.block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        self.0.read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        self.0.write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        thread::sleep(Duration::from_millis(2));
        self.0.flush()
    }
}

#[test]
fn writers_churning_a_small_image_never_run_out_of_space() {
    let device = format(MemDevice::new(BLOCKS), &FormatOptions::new(BLOCKS)).unwrap();
    let fs = Arc::new(FileSystem::mount(SlowFlush(device), MountOptions::default()).unwrap());
    let new = NewInode { perm: 0o755, uid: 0, gid: 0 };
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel();
    let mut writers = Vec::new();
    for thread in 0..THREADS {
        let dir = fs.mkdir(ROOT_INO, format!("t{thread}").as_bytes(), new).unwrap().ino;
        let (fs, stop, done) = (Arc::clone(&fs), Arc::clone(&stop), done.clone());
        writers.push(thread::spawn(move || {
            let data = vec![thread as u8; FILE_BYTES];
            let mut cycles = 0u64;
            let outcome = loop {
                if stop.load(Ordering::Relaxed) {
                    break Ok(cycles);
                }
                let name = format!("f{cycles}");
                let attempt = fs.create(dir, name.as_bytes(), new).and_then(|attr| {
                    let written = fs.write(attr.ino, 0, &data)?;
                    fs.unlink(dir, name.as_bytes())?;
                    Ok(written)
                });
                match attempt {
                    Ok(FILE_BYTES) => cycles += 1,
                    other => break Err(format!("cycle {cycles}: {other:?}, statfs {:?}", fs.statfs())),
                }
            };
            stop.store(true, Ordering::Relaxed);
            let _ = done.send(outcome);
        }));
    }
    drop(done);
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for _ in 0..THREADS {
        let outcome = finished.recv_timeout(DEADLINE).expect("a writer is stuck");
        total += outcome.unwrap_or_else(|error| panic!("a writer failed: {error}"));
    }
    // Each cycle frees 4 blocks: the image was filled with frees many times.
    assert!(total * 4 > 10 * BLOCKS as u64, "only {total} cycles");
    for writer in writers {
        writer.join().unwrap();
    }
    let fs = Arc::into_inner(fs).expect("the writers are gone");
    // Once committed, every block the writers freed counts as free.
    fs.sync().unwrap();
    let used = BLOCKS - fs.superblock().free_blocks;
    assert_eq!(fs.statfs().free_blocks, fs.superblock().free_blocks);
    let SlowFlush(mut device) = fs.unmount().unwrap();
    let report = check(&mut device, &CheckOptions::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.stats.blocks_used, used, "the counts agree with the bitmap");
}
