//! Concurrency stress: worker threads run seeded random operations against
//! one mounted filesystem with a tiny block cache. Each worker has a
//! directory of its own, whose every result is predicted by an in-memory
//! model, and all share one directory where results race, so only the
//! kind of error is checked there. Another thread syncs all the while.
//!
//! A watchdog aborts the process when the test overstays its deadline, so
//! a deadlock fails CI instead of hanging it. Afterwards every worker's
//! directory is compared with its model, the image is unmounted and
//! checked, then remounted and compared again.
//!
//! `BLOCKFS_STRESS_SEED=n` reruns a seed (the test prints its seed; the
//! threads interleave differently each run, so a seed reproduces each
//! worker's operations, not their timing). `BLOCKFS_STRESS_SECS=n` sets
//! how long the workers run, `BLOCKFS_STRESS_OPS=n` caps their operations,
//! `BLOCKFS_STRESS_WORKERS=n` sets their number, and
//! `BLOCKFS_STRESS_DEADLINE_SECS=n` the watchdog's deadline.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use blockfs::check::{check, CheckOptions};
use blockfs::fs::{format, NewInode, RenameFlags};
use blockfs::{Error, FileSystem, FileType, FormatOptions, MemDevice, MountOptions, SetAttr, ROOT_INO};
use support::stress::{apply_write, bytes, env_number, write_length, write_offset, OWN_NAMES, SHARED_NAMES};
use support::Rng;

/// 64 MiB, so the workers never run out of space; its journal is 256
/// blocks, but the tiny cache makes transactions commit every few
/// operations anyway (a transaction commits once it holds half the cache).
const BLOCKS: u32 = 16384;
const CACHE_BLOCKS: usize = 32;
const WORKERS: usize = 4;
/// How long the workers run; the checks afterwards take under a second.
const DEFAULT_SECS: u64 = 20;
const DEFAULT_DEADLINE_SECS: u64 = 300;

fn clock() -> u32 {
    1_700_000_000
}

fn mount_options() -> MountOptions {
    MountOptions { cache_blocks: CACHE_BLOCKS, relatime: false, clock, ..MountOptions::default() }
}

fn new_inode() -> NewInode {
    NewInode { perm: 0o644, uid: 0, gid: 0 }
}

fn own_name(index: usize) -> Vec<u8> {
    format!("n{index}").into_bytes()
}

fn shared_name(index: usize) -> Vec<u8> {
    format!("s{index}").into_bytes()
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

// ---------------------------------------------------------------------------
// The model of one worker's directories
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u32),
    Dir(u32),
}

struct FileModel {
    data: Vec<u8>,
    links: u16,
}

/// What a worker's tree holds: its top directory and subdirectories of
/// that (never deeper), with files anywhere, hard links among them.
struct OwnModel {
    top: u32,
    /// Entries of the top directory and of each subdirectory.
    dirs: BTreeMap<u32, BTreeMap<Vec<u8>, Entry>>,
    files: HashMap<u32, FileModel>,
}

impl OwnModel {
    fn new(top: u32) -> Self {
        OwnModel { top, dirs: BTreeMap::from([(top, BTreeMap::new())]), files: HashMap::new() }
    }

    fn parent(&self, dir: u32) -> u32 {
        if dir == self.top {
            ROOT_INO
        } else {
            self.top
        }
    }

    fn entry(&self, dir: u32, name: &[u8]) -> Option<Entry> {
        self.dirs[&dir].get(name).copied()
    }

    /// Directory links: its own `.`, its entry, each subdirectory's `..`.
    fn dir_links(&self, dir: u32) -> u16 {
        2 + self.dirs[&dir].values().filter(|e| matches!(e, Entry::Dir(_))).count() as u16
    }

    /// Removes a name of a file, and the file with its last name.
    fn drop_file_link(&mut self, dir: u32, name: &[u8], ino: u32) {
        self.dirs.get_mut(&dir).unwrap().remove(name);
        let file = self.files.get_mut(&ino).unwrap();
        file.links -= 1;
        if file.links == 0 {
            self.files.remove(&ino);
        }
    }

    fn write(&mut self, ino: u32, offset: u64, data: &[u8]) {
        apply_write(&mut self.files.get_mut(&ino).unwrap().data, offset, data);
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// One step of a worker. `dir`s and `ino`s are inode numbers; the `Shared`
/// ones work in the shared directory by name.
#[derive(Debug)]
enum Op {
    Create {
        dir: u32,
        name: String,
    },
    Mkdir {
        name: String,
    },
    Write {
        ino: u32,
        offset: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        ino: u32,
        size: u64,
    },
    Read {
        ino: u32,
        offset: u64,
        len: usize,
    },
    Rename {
        dir: u32,
        name: String,
        to_dir: u32,
        to_name: String,
        no_replace: bool,
    },
    Link {
        ino: u32,
        dir: u32,
        name: String,
    },
    Unlink {
        dir: u32,
        name: String,
    },
    Rmdir {
        name: String,
    },
    Readdir {
        dir: u32,
    },
    Fsync {
        ino: u32,
    },
    /// Open a file, unlink its only name, then write and read it through
    /// the open handle before releasing it.
    UseUnlinkedOpenFile {
        dir: u32,
        name: String,
        ino: u32,
        seed: u64,
    },
    SharedCreate {
        name: String,
    },
    SharedMkdir {
        name: String,
    },
    SharedUnlink {
        name: String,
    },
    SharedRmdir {
        name: String,
    },
    SharedRename {
        name: String,
        to_name: String,
        no_replace: bool,
    },
    SharedWrite {
        name: String,
        offset: u64,
        len: usize,
        seed: u64,
    },
    SharedRead {
        name: String,
    },
    /// Create or unlink `name` inside the shared entry `dir_name`, which
    /// may be a file, a directory or gone (or removed meanwhile).
    SharedNested {
        dir_name: String,
        name: String,
        remove: bool,
    },
    SharedList,
}

/// Operations a failure report shows, per worker.
const RECENT_OPS: usize = 12;

/// What a worker has done, for the watchdog's and the failure reports.
#[derive(Default)]
struct Progress {
    ops: AtomicUsize,
    /// The last few operations, the one running last.
    recent: Mutex<VecDeque<String>>,
    /// Shared-directory operations that did their work, and those that
    /// lost a race (an expected error).
    shared_done: AtomicUsize,
    shared_raced: AtomicUsize,
}

impl Progress {
    fn report(&self, id: usize) -> String {
        let recent: Vec<String> = self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|op| format!("\n    {op}"))
            .collect();
        format!(
            "  worker {id}: {} operations done; the last ones:{}",
            self.ops.load(Ordering::Relaxed),
            recent.concat()
        )
    }
}

/// When the workers stop.
#[derive(Clone, Copy)]
struct Budget {
    until: Instant,
    max_ops: usize,
}

struct Worker {
    id: usize,
    fs: Arc<FileSystem<MemDevice>>,
    rng: Rng,
    model: OwnModel,
    shared: u32,
    progress: Arc<Progress>,
}

/// Errors the shared directory may legitimately give: other workers
/// create, remove and rename the same names at the same time.
fn is_race(error: &Error) -> bool {
    matches!(error, Error::Exists | Error::NotFound | Error::NotEmpty | Error::IsDir | Error::NotDir)
}

impl Worker {
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.below(items.len())])
    }

    fn any_dir(&mut self) -> u32 {
        let dirs: Vec<u32> = self.model.dirs.keys().copied().collect();
        self.pick(&dirs).unwrap()
    }

    fn any_file(&mut self) -> Option<u32> {
        let mut files: Vec<u32> = self.model.files.keys().copied().collect();
        files.sort_unstable();
        self.pick(&files)
    }

    fn own_name(&mut self) -> String {
        show(&own_name(self.rng.below(OWN_NAMES)))
    }

    fn shared_name(&mut self) -> String {
        show(&shared_name(self.rng.below(SHARED_NAMES)))
    }

    /// An existing name in `dir` most of the time, else any name.
    fn name_in(&mut self, dir: u32) -> String {
        let names: Vec<&Vec<u8>> = self.model.dirs[&dir].keys().collect();
        if names.is_empty() || self.rng.below(8) == 0 {
            return self.own_name();
        }
        show(names[self.rng.below(names.len())])
    }

    /// The next operation. Decisions depend only on the rng and the
    /// worker's own model, so a seed gives the same sequence every time.
    fn next_op(&mut self) -> Op {
        let roll = self.rng.below(100);
        if roll < 25 {
            return self.next_shared_op();
        }
        let file = self.any_file();
        match (roll, file) {
            (25..=34, _) => {
                let dir = self.any_dir();
                Op::Create { dir, name: self.own_name() }
            }
            (35..=37, _) => Op::Mkdir { name: self.own_name() },
            (38..=51, Some(ino)) => {
                let (offset, len, seed) =
                    (write_offset(&mut self.rng), write_length(&mut self.rng), self.rng.next());
                Op::Write { ino, offset, len, seed }
            }
            (52..=57, Some(ino)) => {
                let size = match self.rng.below(4) {
                    0 => 0,
                    1 => write_offset(&mut self.rng),
                    _ => self.rng.below(64 << 10) as u64,
                };
                Op::Truncate { ino, size }
            }
            (58..=65, Some(ino)) => {
                let (offset, len) = (write_offset(&mut self.rng), write_length(&mut self.rng));
                Op::Read { ino, offset, len }
            }
            (66..=72, _) => {
                let dir = self.any_dir();
                let name = self.name_in(dir);
                // Directories move only within the top directory.
                let to_dir = match self.model.entry(dir, name.as_bytes()) {
                    Some(Entry::Dir(_)) => self.model.top,
                    _ => self.any_dir(),
                };
                let to_name = self.own_name();
                Op::Rename { dir, name, to_dir, to_name, no_replace: self.rng.below(4) == 0 }
            }
            (73..=76, Some(ino)) => {
                let dir = self.any_dir();
                Op::Link { ino, dir, name: self.own_name() }
            }
            (77..=84, _) => {
                let dir = self.any_dir();
                Op::Unlink { dir, name: self.name_in(dir) }
            }
            (85..=87, _) => {
                let top = self.model.top;
                Op::Rmdir { name: self.name_in(top) }
            }
            (88..=92, _) => Op::Readdir { dir: self.any_dir() },
            (93..=95, Some(ino)) => Op::Fsync { ino },
            (96..=99, _) => {
                let dir = self.any_dir();
                let name = self.name_in(dir);
                match self.model.entry(dir, name.as_bytes()) {
                    Some(Entry::File(ino)) if self.model.files[&ino].links == 1 => {
                        Op::UseUnlinkedOpenFile { dir, name, ino, seed: self.rng.next() }
                    }
                    _ => Op::Readdir { dir },
                }
            }
            // A file operation with no file yet.
            _ => {
                let dir = self.any_dir();
                Op::Create { dir, name: self.own_name() }
            }
        }
    }

    fn next_shared_op(&mut self) -> Op {
        let name = self.shared_name();
        match self.rng.below(11) {
            0 | 1 => Op::SharedCreate { name },
            2 => Op::SharedMkdir { name },
            3 => Op::SharedUnlink { name },
            4 => Op::SharedRmdir { name },
            5 => Op::SharedRename { name, to_name: self.shared_name(), no_replace: self.rng.below(3) == 0 },
            6 => {
                let (offset, len, seed) =
                    (self.rng.below(32 << 10) as u64, write_length(&mut self.rng), self.rng.next());
                Op::SharedWrite { name, offset, len, seed }
            }
            7 => Op::SharedRead { name },
            8 | 9 => {
                Op::SharedNested { dir_name: name, name: self.shared_name(), remove: self.rng.below(2) == 0 }
            }
            _ => Op::SharedList,
        }
    }

    fn run(&mut self, budget: Budget, failed: &AtomicBool) {
        for _ in 0..budget.max_ops {
            if failed.load(Ordering::Relaxed) || Instant::now() >= budget.until {
                return;
            }
            let op = self.next_op();
            {
                let mut recent = self.progress.recent.lock().unwrap();
                if recent.len() == RECENT_OPS {
                    recent.pop_front();
                }
                recent.push_back(format!("{op:?}"));
            }
            self.apply(&op);
            self.progress.ops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns the reference a create, mkdir, link or lookup handed out.
    fn forget(&self, ino: u32) {
        self.fs.forget(ino, 1);
    }

    fn apply(&mut self, op: &Op) {
        let fs = Arc::clone(&self.fs);
        let id = self.id;
        let context = || format!("worker {id} at {op:?}");
        match *op {
            Op::Create { dir, ref name } => {
                let exists = self.model.entry(dir, name.as_bytes()).is_some();
                match fs.create(dir, name.as_bytes(), new_inode()) {
                    Ok(attr) => {
                        assert!(!exists, "{}: created over an existing name", context());
                        self.forget(attr.ino);
                        self.model
                            .dirs
                            .get_mut(&dir)
                            .unwrap()
                            .insert(name.clone().into(), Entry::File(attr.ino));
                        let previous =
                            self.model.files.insert(attr.ino, FileModel { data: Vec::new(), links: 1 });
                        assert!(
                            previous.is_none(),
                            "{}: inode {} handed out while live",
                            context(),
                            attr.ino
                        );
                    }
                    Err(error) => assert!(exists && error == Error::Exists, "{}: {error:?}", context()),
                }
            }
            Op::Mkdir { ref name } => {
                let top = self.model.top;
                let exists = self.model.entry(top, name.as_bytes()).is_some();
                match fs.mkdir(top, name.as_bytes(), new_inode()) {
                    Ok(attr) => {
                        assert!(!exists, "{}: made a directory over an existing name", context());
                        self.forget(attr.ino);
                        self.model
                            .dirs
                            .get_mut(&top)
                            .unwrap()
                            .insert(name.clone().into(), Entry::Dir(attr.ino));
                        self.model.dirs.insert(attr.ino, BTreeMap::new());
                    }
                    Err(error) => assert!(exists && error == Error::Exists, "{}: {error:?}", context()),
                }
            }
            Op::Write { ino, offset, len, seed } => {
                let data = bytes(seed, len);
                assert_eq!(fs.write(ino, offset, &data), Ok(len), "{}", context());
                self.model.write(ino, offset, &data);
            }
            Op::Truncate { ino, size } => {
                let changes = SetAttr { size: Some(size), ..SetAttr::default() };
                assert_eq!(fs.setattr(ino, &changes).map(|a| a.size), Ok(size), "{}", context());
                self.model.files.get_mut(&ino).unwrap().data.resize(size as usize, 0);
            }
            Op::Read { ino, offset, len } => self.check_read(ino, offset, len, &context()),
            Op::Rename { dir, ref name, to_dir, ref to_name, no_replace } => {
                self.rename(dir, name.as_bytes(), to_dir, to_name.as_bytes(), no_replace, &context())
            }
            Op::Link { ino, dir, ref name } => {
                let exists = self.model.entry(dir, name.as_bytes()).is_some();
                match fs.link(ino, dir, name.as_bytes()) {
                    Ok(attr) => {
                        assert!(!exists, "{}: linked over an existing name", context());
                        self.forget(attr.ino);
                        self.model.dirs.get_mut(&dir).unwrap().insert(name.clone().into(), Entry::File(ino));
                        let file = self.model.files.get_mut(&ino).unwrap();
                        file.links += 1;
                        assert_eq!(attr.nlink, file.links, "{}: link count", context());
                    }
                    Err(error) => assert!(exists && error == Error::Exists, "{}: {error:?}", context()),
                }
            }
            Op::Unlink { dir, ref name } => {
                let expected = match self.model.entry(dir, name.as_bytes()) {
                    None => Err(Error::NotFound),
                    Some(Entry::Dir(_)) => Err(Error::IsDir),
                    Some(Entry::File(_)) => Ok(()),
                };
                assert_eq!(fs.unlink(dir, name.as_bytes()), expected, "{}", context());
                if let Some(Entry::File(ino)) = self.model.entry(dir, name.as_bytes()) {
                    self.model.drop_file_link(dir, name.as_bytes(), ino);
                }
            }
            Op::Rmdir { ref name } => {
                let top = self.model.top;
                let expected = match self.model.entry(top, name.as_bytes()) {
                    None => Err(Error::NotFound),
                    Some(Entry::File(_)) => Err(Error::NotDir),
                    Some(Entry::Dir(ino)) if !self.model.dirs[&ino].is_empty() => Err(Error::NotEmpty),
                    Some(Entry::Dir(_)) => Ok(()),
                };
                assert_eq!(fs.rmdir(top, name.as_bytes()), expected, "{}", context());
                if expected.is_ok() {
                    if let Some(Entry::Dir(ino)) =
                        self.model.dirs.get_mut(&top).unwrap().remove(name.as_bytes())
                    {
                        self.model.dirs.remove(&ino);
                    }
                }
            }
            Op::Readdir { dir } => check_listing(&fs, &self.model, dir, &context()),
            Op::Fsync { ino } => {
                fs.fsync(ino).unwrap_or_else(|e| panic!("{}: {e:?}", context()));
            }
            Op::UseUnlinkedOpenFile { dir, ref name, ino, seed } => {
                fs.open(ino).unwrap_or_else(|e| panic!("{}: open: {e:?}", context()));
                assert_eq!(fs.unlink(dir, name.as_bytes()), Ok(()), "{}", context());
                let data = bytes(seed, 5000);
                assert_eq!(fs.write(ino, 100, &data), Ok(data.len()), "{}", context());
                self.model.write(ino, 100, &data);
                let expected = &self.model.files[&ino].data;
                assert_eq!(
                    fs.getattr(ino).map(|a| (a.nlink, a.size)),
                    Ok((0, expected.len() as u64)),
                    "{}",
                    context()
                );
                self.check_read(ino, 0, expected.len(), &context());
                self.model.drop_file_link(dir, name.as_bytes(), ino);
                fs.release(ino).unwrap_or_else(|e| panic!("{}: release: {e:?}", context()));
            }
            _ => self.apply_shared(op, &context()),
        }
    }

    fn check_read(&self, ino: u32, offset: u64, len: usize, context: &str) {
        let data = &self.model.files[&ino].data;
        let mut buf = vec![0xAA; len];
        let read = self.fs.read(ino, offset, &mut buf).unwrap_or_else(|e| panic!("{context}: read: {e:?}"));
        let start = (offset as usize).min(data.len());
        let end = (start + len).min(data.len());
        assert_eq!(read, end - start, "{context}: bytes read");
        if buf[..read] != data[start..end] {
            let first = (0..read).find(|&i| buf[i] != data[start + i]).unwrap();
            panic!("{context}: content differs first at byte {} of the file", start + first);
        }
    }

    fn rename(
        &mut self,
        dir: u32,
        name: &[u8],
        to_dir: u32,
        to_name: &[u8],
        no_replace: bool,
        context: &str,
    ) {
        let source = self.model.entry(dir, name);
        let target = self.model.entry(to_dir, to_name);
        let same_inode = |a: Entry, b: Entry| match (a, b) {
            (Entry::File(x), Entry::File(y)) | (Entry::Dir(x), Entry::Dir(y)) => x == y,
            _ => false,
        };
        let expected = match (source, target) {
            (None, _) => Err(Error::NotFound),
            (Some(_), Some(_)) if no_replace => Err(Error::Exists),
            // Two names of one file (or a name onto itself): nothing happens.
            (Some(s), Some(t)) if same_inode(s, t) => Ok(()),
            (Some(Entry::File(_)), Some(Entry::Dir(_))) => Err(Error::IsDir),
            (Some(Entry::Dir(_)), Some(Entry::File(_))) => Err(Error::NotDir),
            (Some(Entry::Dir(_)), Some(Entry::Dir(t))) if !self.model.dirs[&t].is_empty() => {
                Err(Error::NotEmpty)
            }
            _ => Ok(()),
        };
        let flags = RenameFlags { no_replace };
        assert_eq!(self.fs.rename(dir, name, to_dir, to_name, flags), expected, "{context}");
        let (Ok(()), Some(source)) = (expected, source) else { return };
        if target.is_some_and(|t| same_inode(source, t)) {
            return;
        }
        match target {
            Some(Entry::File(ino)) => self.model.drop_file_link(to_dir, to_name, ino),
            Some(Entry::Dir(ino)) => {
                self.model.dirs.get_mut(&to_dir).unwrap().remove(to_name);
                self.model.dirs.remove(&ino);
            }
            None => {}
        }
        self.model.dirs.get_mut(&dir).unwrap().remove(name);
        self.model.dirs.get_mut(&to_dir).unwrap().insert(to_name.to_vec(), source);
    }

    fn apply_shared(&self, op: &Op, context: &str) {
        let fs = &*self.fs;
        let shared = self.shared;
        // Results race with the other workers: any of the expected errors
        // is fine, anything else (corruption, I/O, ...) is a failure.
        let count = |done: bool| {
            let counter = if done { &self.progress.shared_done } else { &self.progress.shared_raced };
            counter.fetch_add(1, Ordering::Relaxed);
        };
        let racy = |result: Result<(), Error>| match result {
            Ok(()) => count(true),
            Err(error) if is_race(&error) => count(false),
            Err(error) => panic!("{context}: {error:?}"),
        };
        let referenced = |result: Result<blockfs::Attr, Error>| match result {
            Ok(attr) => {
                count(true);
                Some(attr)
            }
            Err(error) if is_race(&error) => {
                count(false);
                None
            }
            Err(error) => panic!("{context}: {error:?}"),
        };
        match *op {
            Op::SharedCreate { ref name } => {
                if let Some(attr) = referenced(fs.create(shared, name.as_bytes(), new_inode())) {
                    self.forget(attr.ino);
                }
            }
            Op::SharedMkdir { ref name } => {
                if let Some(attr) = referenced(fs.mkdir(shared, name.as_bytes(), new_inode())) {
                    self.forget(attr.ino);
                }
            }
            Op::SharedUnlink { ref name } => {
                racy(fs.unlink(shared, name.as_bytes()));
            }
            Op::SharedRmdir { ref name } => {
                racy(fs.rmdir(shared, name.as_bytes()));
            }
            Op::SharedRename { ref name, ref to_name, no_replace } => {
                let flags = RenameFlags { no_replace };
                racy(fs.rename(shared, name.as_bytes(), shared, to_name.as_bytes(), flags));
            }
            Op::SharedWrite { ref name, offset, len, seed } => {
                // The lookup's reference keeps the inode even if another
                // worker unlinks the name meanwhile.
                if let Some(attr) = referenced(fs.lookup(shared, name.as_bytes())) {
                    if attr.kind == FileType::Regular {
                        let data = bytes(seed, len);
                        assert_eq!(fs.write(attr.ino, offset, &data), Ok(len), "{context}");
                    }
                    self.forget(attr.ino);
                }
            }
            Op::SharedRead { ref name } => {
                if let Some(attr) = referenced(fs.lookup(shared, name.as_bytes())) {
                    if attr.kind == FileType::Regular {
                        let mut buf = vec![0; 64 << 10];
                        fs.read(attr.ino, 0, &mut buf).unwrap_or_else(|e| panic!("{context}: read: {e:?}"));
                    }
                    self.forget(attr.ino);
                }
            }
            Op::SharedNested { ref dir_name, ref name, remove } => {
                if let Some(dir) = referenced(fs.lookup(shared, dir_name.as_bytes())) {
                    if remove {
                        racy(fs.unlink(dir.ino, name.as_bytes()));
                    } else if let Some(attr) = referenced(fs.create(dir.ino, name.as_bytes(), new_inode())) {
                        self.forget(attr.ino);
                    }
                    self.forget(dir.ino);
                }
            }
            Op::SharedList => {
                let names = list(fs, shared).unwrap_or_else(|e| panic!("{context}: readdir: {e:?}"));
                check_shared_names(&names, shared, context);
            }
            _ => unreachable!("not a shared operation: {op:?}"),
        }
    }
}

/// A directory's entries: name -> (inode, type byte).
fn list(fs: &FileSystem<MemDevice>, dir: u32) -> Result<BTreeMap<Vec<u8>, (u32, u8)>, Error> {
    let mut names = BTreeMap::new();
    let mut duplicate = None;
    fs.readdir(dir, 0, &mut |entry, _| {
        if names.insert(entry.name.clone(), (entry.ino, entry.file_type)).is_some() {
            duplicate = Some(entry.name.clone());
        }
        true
    })?;
    assert_eq!(duplicate, None, "directory {dir} lists a name twice");
    Ok(names)
}

/// The shared directory holds only names the workers use, as files and
/// directories.
fn check_shared_names(names: &BTreeMap<Vec<u8>, (u32, u8)>, shared: u32, context: &str) {
    assert_eq!(names.get(&b"."[..]).map(|e| e.0), Some(shared), "{context}: `.` of the shared directory");
    assert_eq!(names.get(&b".."[..]).map(|e| e.0), Some(ROOT_INO), "{context}: `..` of the shared directory");
    for (name, &(_, kind)) in names {
        let known = name == b"." || name == b".." || (0..SHARED_NAMES).any(|i| shared_name(i) == *name);
        assert!(known && (kind == 1 || kind == 2), "{context}: shared entry {:?} of type {kind}", show(name));
    }
}

/// A worker's directory lists exactly what its model says.
fn check_listing(fs: &FileSystem<MemDevice>, model: &OwnModel, dir: u32, context: &str) {
    let listed = list(fs, dir).unwrap_or_else(|e| panic!("{context}: readdir {dir}: {e:?}"));
    let mut expected: BTreeMap<Vec<u8>, (u32, u8)> = model.dirs[&dir]
        .iter()
        .map(|(name, entry)| match *entry {
            Entry::File(ino) => (name.clone(), (ino, 1)),
            Entry::Dir(ino) => (name.clone(), (ino, 2)),
        })
        .collect();
    expected.insert(b".".to_vec(), (dir, 2));
    expected.insert(b"..".to_vec(), (model.parent(dir), 2));
    if listed != expected {
        let render = |m: &BTreeMap<Vec<u8>, (u32, u8)>| {
            m.iter().map(|(n, e)| format!("{}={e:?}", show(n))).collect::<Vec<_>>()
        };
        panic!("{context}: directory {dir} lists {:?}, expected {:?}", render(&listed), render(&expected));
    }
}

/// Everything in a worker's tree: names, link counts, sizes, bytes.
fn check_tree(fs: &FileSystem<MemDevice>, worker: usize, model: &OwnModel, when: &str) {
    let context = format!("worker {worker}'s tree {when}");
    let top = fs.lookup(ROOT_INO, &worker_dir_name(worker)).unwrap_or_else(|e| panic!("{context}: {e:?}"));
    fs.forget(top.ino, 1);
    assert_eq!(top.ino, model.top, "{context}: top directory");
    for &dir in model.dirs.keys() {
        check_listing(fs, model, dir, &context);
        let attr = fs.getattr(dir).unwrap_or_else(|e| panic!("{context}: {e:?}"));
        assert_eq!(attr.nlink, model.dir_links(dir), "{context}: links of directory {dir}");
    }
    for (&ino, file) in &model.files {
        let attr = fs.getattr(ino).unwrap_or_else(|e| panic!("{context}: {e:?}"));
        assert_eq!(
            (attr.kind, attr.nlink, attr.size),
            (FileType::Regular, file.links, file.data.len() as u64)
        );
        let mut buf = vec![0; file.data.len()];
        assert_eq!(fs.read(ino, 0, &mut buf), Ok(buf.len()), "{context}: read inode {ino}");
        assert!(buf == file.data, "{context}: content of inode {ino}");
    }
}

fn worker_dir_name(worker: usize) -> Vec<u8> {
    format!("worker-{worker}").into_bytes()
}

// ---------------------------------------------------------------------------
// The watchdog
// ---------------------------------------------------------------------------

/// Aborts the whole process if not dropped before `deadline`, saying what
/// every worker was doing: a deadlocked test must fail, not hang CI.
struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(
        deadline: Duration,
        seed: u64,
        stage: Arc<Mutex<&'static str>>,
        workers: Vec<Arc<Progress>>,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let start = Instant::now();
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if start.elapsed() > deadline {
                    // Straight to stderr: the test harness would hold back
                    // eprintln!'s output, and abort() loses it.
                    let mut message = format!(
                        "concurrency stress (seed {seed}): still running after {deadline:?}, at stage {:?}; \
                         a deadlock? Aborting.\n",
                        stage.lock().unwrap_or_else(PoisonError::into_inner)
                    );
                    for (id, progress) in workers.iter().enumerate() {
                        message += &progress.report(id);
                        message += "\n";
                    }
                    let _ = std::io::stderr().write_all(message.as_bytes());
                    std::process::abort();
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Marks the run failed when a thread panics, so the others stop early.
struct FailOnPanic<'a>(&'a AtomicBool);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn workers_in_own_and_shared_directories_with_a_tiny_cache() {
    let seed = env_number("BLOCKFS_STRESS_SEED").unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 & 0xFFFF_FFFF
    });
    let seconds = env_number("BLOCKFS_STRESS_SECS").unwrap_or(DEFAULT_SECS);
    let max_ops = env_number("BLOCKFS_STRESS_OPS").map_or(usize::MAX, |n| n as usize);
    let workers = env_number("BLOCKFS_STRESS_WORKERS").map_or(WORKERS, |n| n as usize);
    let deadline =
        Duration::from_secs(env_number("BLOCKFS_STRESS_DEADLINE_SECS").unwrap_or(DEFAULT_DEADLINE_SECS));
    // Shown when the test fails (the harness prints a failing test's output).
    println!("concurrency stress: seed {seed} (BLOCKFS_STRESS_SEED={seed} reruns it), {workers} workers for {seconds} s");

    let progress: Vec<Arc<Progress>> = (0..workers).map(|_| Arc::default()).collect();
    let stage = Arc::new(Mutex::new("format"));
    let _watchdog = Watchdog::start(deadline, seed, Arc::clone(&stage), progress.clone());

    let device = format(MemDevice::new(BLOCKS), &FormatOptions::new(BLOCKS)).unwrap();
    let fs = FileSystem::mount(device, mount_options()).unwrap();
    // As a FUSE server does: lookups hold inodes until forgotten, so a
    // worker may use a shared file another worker unlinks meanwhile.
    fs.track_lookups();
    let fs = Arc::new(fs);
    let shared = fs.mkdir(ROOT_INO, b"shared", new_inode()).unwrap().ino;
    let mut workers = Vec::new();
    for (id, progress) in progress.iter().enumerate() {
        let top = fs.mkdir(ROOT_INO, &worker_dir_name(id), new_inode()).unwrap().ino;
        let rng = Rng((seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        let progress = Arc::clone(progress);
        workers.push(Worker { id, fs: Arc::clone(&fs), rng, model: OwnModel::new(top), shared, progress });
    }

    *stage.lock().unwrap() = "workers running";
    let failed = AtomicBool::new(false);
    let stop_syncing = AtomicBool::new(false);
    let started = Instant::now();
    let budget = Budget { until: started + Duration::from_secs(seconds), max_ops };
    let (results, syncs) = thread::scope(|scope| {
        let syncer = thread::Builder::new()
            .name("sync".into())
            .spawn_scoped(scope, || {
                let _guard = FailOnPanic(&failed);
                let mut syncs = 0;
                while !stop_syncing.load(Ordering::Relaxed) {
                    fs.sync().expect("sync");
                    syncs += 1;
                    thread::sleep(Duration::from_millis(3));
                }
                syncs
            })
            .unwrap();
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let failed = &failed;
                thread::Builder::new()
                    .name(format!("worker-{}", worker.id))
                    .spawn_scoped(scope, move || {
                        let _guard = FailOnPanic(failed);
                        worker.run(budget, failed);
                        worker.model
                    })
                    .unwrap()
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        stop_syncing.store(true, Ordering::Relaxed);
        (results, syncer.join())
    });
    let failures: Vec<usize> = (0..results.len()).filter(|&id| results[id].is_err()).collect();
    if !failures.is_empty() || syncs.is_err() {
        let reports: Vec<String> = failures.iter().map(|&id| progress[id].report(id)).collect();
        panic!(
            "workers {failures:?} failed (the sync thread {}); seed {seed}, BLOCKFS_STRESS_SEED={seed} reruns it\n{}",
            if syncs.is_ok() { "did not" } else { "failed too" },
            reports.join("\n")
        );
    }
    let models: Vec<OwnModel> = results.into_iter().map(Result::unwrap).collect();
    let total = |count: fn(&Progress) -> &AtomicUsize| -> usize {
        progress.iter().map(|p| count(p).load(Ordering::Relaxed)).sum()
    };
    println!(
        "{} operations in {:?} ({} in the shared directory did their work, {} lost a race), {} syncs meanwhile; cache {:?}",
        total(|p| &p.ops),
        started.elapsed(),
        total(|p| &p.shared_done),
        total(|p| &p.shared_raced),
        syncs.unwrap(),
        fs.cache_stats()
    );

    *stage.lock().unwrap() = "checking the live mount";
    for (worker, model) in models.iter().enumerate() {
        check_tree(&fs, worker, model, "before unmount");
    }
    check_shared_names(&list(&fs, shared).unwrap(), shared, "the shared directory at the end");

    *stage.lock().unwrap() = "unmount and check";
    let fs = Arc::into_inner(fs).expect("no thread holds the filesystem");
    let mut device = fs.unmount().unwrap();
    let report = check(&mut device, &CheckOptions::default()).unwrap();
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(report.is_clean() && problems.is_empty(), "seed {seed}: the checker found {problems:#?}");

    *stage.lock().unwrap() = "remount";
    let fs = FileSystem::mount(device, mount_options()).unwrap();
    fs.track_lookups();
    for (worker, model) in models.iter().enumerate() {
        check_tree(&fs, worker, model, "after remount");
    }
    fs.unmount().unwrap();
}
