//! Library-level thread benchmark: no FUSE, a file-backed image.
//!
//! Formats an image in WORKDIR (default `target/bench`), mounts it with
//! [`FileSystem::mount`] and, for 1 and then 2 threads (a fresh image
//! each), runs for a fixed time a loop per thread on independent files in
//! the thread's own directory. Prints operations per second for each
//! thread count and the ratio to the first count's rate. It does this in
//! rounds (`BENCH_ROUNDS`, default 3), the thread counts interleaved, and
//! ends with each count's median ratio over the rounds: a virtual
//! machine's speed drifts by more than the effect measured, and a ratio
//! of two runs minutes apart mostly measures the drift. Two workloads
//! (`BENCH_WORKLOAD`):
//!
//! - `metadata` (default): create a file, write 16 KiB, read it back, stat
//!   it, unlink it; each of those five calls counts as one operation.
//! - `uncached_read`: each thread first writes 16 files of 4 MiB; the
//!   image is unmounted, the kernel's page cache dropped (as root) and the
//!   image mounted again, then each thread reads 4 KiB at random offsets of
//!   its own files; one read is one operation. The block cache does not
//!   hold file data read this way, so every read goes to the device (for
//!   an image file, the disk the first time, the kernel's page cache
//!   after): this measures whether threads wait for the device at the
//!   same time.
//!
//! ```text
//! cargo run --release -p blockfs --example bench_threads -- [WORKDIR]
//! ```
//!
//! Environment: `BENCH_SECONDS` (default 5) is the time per thread count
//! and round;
//! `BENCH_THREADS` (default "1 2") the thread counts to run;
//! `BENCH_NO_JOURNAL=1` formats without a journal; `BENCH_SIZE_MB`
//! (default 256) is the image size. `BENCH_IMAGES=separate` gives each
//! thread an image of its own instead of one shared image: nothing is
//! shared but the machine, so its 2-thread ratio is the ceiling a
//! filesystem with no contention at all could reach here.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use blockfs::format::BLOCK_SIZE;
use blockfs::fs::{format, NewInode};
use blockfs::{FileDevice, FileSystem, FormatOptions, MountOptions, ROOT_INO};

const FILE_BYTES: usize = 16 * 1024;
const OPS_PER_ROUND: u64 = 5;
const UNCACHED_FILES: u64 = 16;
const UNCACHED_FILE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Metadata,
    UncachedRead,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|_| panic!("{name}={value:?} is not valid")),
        Err(_) => default,
    }
}

fn open_image(path: &Path) -> FileDevice {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FileDevice::from_file(file, true).expect("opening the image")
}

fn make_image(path: &Path, size_mb: u64, journal: bool) -> FileSystem<FileDevice> {
    let length = size_mb * 1024 * 1024;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.set_len(length).expect("sizing the image");
    drop(file);
    let mut options = FormatOptions::new((length / BLOCK_SIZE as u64) as u32);
    options.journal = journal;
    let device = format(open_image(path), &options).expect("format");
    FileSystem::mount(device, MountOptions::default()).expect("mount")
}

/// Drops the kernel's page cache, so reads of the image reach the disk.
fn drop_page_cache() {
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        eprintln!("bench_threads: cannot drop the page cache (needs root): uncached_read reads from memory");
    }
}

/// The metadata loop; returns the operations it completed.
fn metadata_worker(fs: &FileSystem<FileDevice>, dir: u32, stop: &AtomicBool) -> u64 {
    let new = NewInode { perm: 0o644, uid: 0, gid: 0 };
    let data: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 7 + dir as usize) as u8).collect();
    let mut back = vec![0u8; FILE_BYTES];
    let mut ops = 0;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("f{n}");
        let attr = fs.create(dir, name.as_bytes(), new).expect("create");
        assert_eq!(fs.write(attr.ino, 0, &data).expect("write"), FILE_BYTES);
        assert_eq!(fs.read(attr.ino, 0, &mut back).expect("read"), FILE_BYTES);
        assert!(back == data, "read back differs from what was written");
        assert_eq!(fs.getattr(attr.ino).expect("getattr").size, FILE_BYTES as u64);
        fs.unlink(dir, name.as_bytes()).expect("unlink");
        ops += OPS_PER_ROUND;
        n += 1;
    }
    ops
}

/// Fills directory `dir` with the uncached_read files; returns their inodes.
fn write_uncached_files(fs: &FileSystem<FileDevice>, dir: u32) -> Vec<u32> {
    let new = NewInode { perm: 0o644, uid: 0, gid: 0 };
    let data: Vec<u8> = (0..UNCACHED_FILE_BYTES).map(|i| (i / BLOCK_SIZE) as u8).collect();
    (0..UNCACHED_FILES)
        .map(|n| {
            let ino = fs.create(dir, format!("f{n}").as_bytes(), new).expect("create").ino;
            assert_eq!(fs.write(ino, 0, &data).expect("write"), UNCACHED_FILE_BYTES);
            ino
        })
        .collect()
}

/// The uncached_read loop: 4 KiB at random block offsets of `files`.
fn uncached_read_worker(fs: &FileSystem<FileDevice>, files: &[u32], seed: u64, stop: &AtomicBool) -> u64 {
    let mut state = seed | 1;
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) {
        // xorshift64: cheap and good enough to scatter the offsets.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let ino = files[(state % files.len() as u64) as usize];
        let block = (state >> 32) % (UNCACHED_FILE_BYTES / BLOCK_SIZE) as u64;
        assert_eq!(fs.read(ino, block * BLOCK_SIZE as u64, &mut buf).expect("read"), BLOCK_SIZE);
        // Every byte of a block holds its index; the ends tell a wrong block.
        assert!(
            buf[0] == block as u8 && buf[BLOCK_SIZE - 1] == block as u8,
            "read returned other bytes than written"
        );
        ops += 1;
    }
    ops
}

/// One mounted image and the directory each of its workers uses.
struct Mounted {
    image: PathBuf,
    fs: Arc<FileSystem<FileDevice>>,
    dirs: Vec<u32>,
}

/// Formats and mounts image `name` with a directory per worker; for
/// `uncached_read`, fills them and mounts again with the page cache
/// dropped. Returns the mount and each worker's files.
fn prepare(
    work: &Path,
    name: &str,
    workload: Workload,
    workers: usize,
    size_mb: u64,
    journal: bool,
) -> (Mounted, Vec<Vec<u32>>) {
    let image = work.join(name);
    let mut fs = make_image(&image, size_mb, journal);
    let new = NewInode { perm: 0o755, uid: 0, gid: 0 };
    let dirs: Vec<u32> = (0..workers)
        .map(|t| fs.mkdir(ROOT_INO, format!("t{t}").as_bytes(), new).expect("mkdir").ino)
        .collect();
    let mut files: Vec<Vec<u32>> = vec![Vec::new(); workers];
    if workload == Workload::UncachedRead {
        files = dirs.iter().map(|&dir| write_uncached_files(&fs, dir)).collect();
        drop(fs.unmount().expect("unmount"));
        drop_page_cache();
        fs = FileSystem::mount(
            open_image(&image),
            MountOptions { relatime: false, ..MountOptions::default() },
        )
        .expect("mount");
    }
    (Mounted { image, fs: Arc::new(fs), dirs }, files)
}

/// Runs `threads` workers for `duration` on fresh images (one shared by
/// all, or one each when `separate`); returns the total operations and
/// the seconds they took.
fn run(
    work: &Path,
    workload: Workload,
    threads: usize,
    separate: bool,
    duration: Duration,
    size_mb: u64,
    journal: bool,
) -> (u64, f64) {
    let mut mounts = Vec::new();
    let mut workers = Vec::new();
    let images = if separate { threads } else { 1 };
    for i in 0..images {
        let name = format!("bench-threads-{threads}-{i}.img");
        let (mounted, files) = prepare(work, &name, workload, threads / images, size_mb, journal);
        for (&dir, files) in mounted.dirs.iter().zip(files) {
            workers.push((Arc::clone(&mounted.fs), dir, files));
        }
        mounts.push(mounted);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|(fs, dir, files)| {
            let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                match workload {
                    Workload::Metadata => metadata_worker(&fs, dir, &stop),
                    Workload::UncachedRead => {
                        uncached_read_worker(&fs, &files, dir as u64 * 0x9E37_79B9, &stop)
                    }
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = handles.into_iter().map(|h| h.join().expect("worker panicked")).sum();
    let seconds = began.elapsed().as_secs_f64();
    for Mounted { image, fs, .. } in mounts {
        let fs = Arc::try_unwrap(fs).expect("workers still hold the filesystem");
        fs.unmount().expect("unmount");
        std::fs::remove_file(&image).ok();
    }
    (ops, seconds)
}

fn main() {
    let work = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/bench".into()));
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{}: {e}", work.display()));
    let seconds: f64 = env_or("BENCH_SECONDS", 5.0);
    let size_mb: u64 = env_or("BENCH_SIZE_MB", 256);
    let journal = env_or::<u8>("BENCH_NO_JOURNAL", 0) == 0;
    let workload = match std::env::var("BENCH_WORKLOAD").as_deref() {
        Ok("metadata") | Err(_) => Workload::Metadata,
        Ok("uncached_read") => Workload::UncachedRead,
        Ok(other) => panic!("BENCH_WORKLOAD={other:?}: metadata or uncached_read"),
    };
    let separate = match std::env::var("BENCH_IMAGES").as_deref() {
        Ok("shared") | Err(_) => false,
        Ok("separate") => true,
        Ok(other) => panic!("BENCH_IMAGES={other:?}: shared or separate"),
    };
    let counts: Vec<usize> = std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| "1 2".into())
        .split_whitespace()
        .map(|t| t.parse().expect("BENCH_THREADS: thread counts"))
        .collect();
    let what = match workload {
        Workload::Metadata => "one op = create, write 16 KiB, read, stat or unlink",
        Workload::UncachedRead => "one op = a 4 KiB read at a random offset, page cache dropped first",
    };
    println!(
        "bench_threads: {} s per run, {} MiB image{} in {}, journal {}; {what}",
        seconds,
        size_mb,
        if separate { " per thread" } else { "" },
        work.display(),
        if journal { "on" } else { "off" }
    );
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let base_threads = counts[0];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 1..=rounds {
        let mut base_rate = None;
        for (index, &threads) in counts.iter().enumerate() {
            let (ops, took) =
                run(&work, workload, threads, separate, Duration::from_secs_f64(seconds), size_mb, journal);
            let rate = ops as f64 / took;
            let ratio = rate / *base_rate.get_or_insert(rate);
            ratios[index].push(ratio);
            println!(
                "round {round}, threads {threads}: {ops} ops in {took:.2} s = {rate:.0} ops/s, \
                 {ratio:.2}x the {base_threads}-thread rate"
            );
        }
    }
    for (threads, mut ratios) in counts.iter().zip(ratios).skip(1) {
        ratios.sort_by(f64::total_cmp);
        let listed: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
        println!(
            "threads {threads}: median {:.2}x the {base_threads}-thread rate over {rounds} rounds ({})",
            (ratios[(ratios.len() - 1) / 2] + ratios[ratios.len() / 2]) / 2.0,
            listed.join(", ")
        );
    }
}
