//! Concurrency stress through the kernel: several client processes run
//! seeded random file operations with std::fs on one `blockfs mount`
//! with a 1 MiB cache. Each client has a directory of its own, whose every
//! result is predicted by an in-memory model, and all share a directory
//! where results race, so only the kind of error is checked there.
//!
//! The clients are this test binary run again with `BLOCKFS_STRESS_CLIENT`
//! set. Each checks its directory against its model at the end and leaves
//! a copy of what it expects on the host. The test kills everything and
//! fails when the clients overstay a deadline, so a deadlock cannot hang
//! CI. After unmounting, `fsck-blockfs -n` must be clean, and a remount
//! must show every client's directory exactly as its copy.
//!
//! Needs /dev/fuse and fusermount3, as the other FUSE tests (it fails
//! without them). `BLOCKFS_STRESS_SEED=n` reruns a seed (printed),
//! `BLOCKFS_STRESS_SECS=n` sets how long the clients run.

mod common;
mod fuse_support;
/// The library's test support: its seeded generator and the operation
/// mix the library's own stress test uses.
#[path = "../../blockfs/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use fuse_support::*;
use support::stress::{apply_write, bytes, env_number, write_length, write_offset, OWN_NAMES, SHARED_NAMES};
use support::Rng;

const CLIENTS: usize = 4;
const DEFAULT_SECS: u64 = 15;
/// Past the client's run time: generous, as two cores may be shared.
const DEADLINE_MARGIN: Duration = Duration::from_secs(180);
/// The environment variables that make this binary a client.
const CLIENT_ENV: &str = "BLOCKFS_STRESS_CLIENT";
const ROOT_ENV: &str = "BLOCKFS_STRESS_ROOT";
const EXPECTED_ENV: &str = "BLOCKFS_STRESS_EXPECTED";
const SEED_ENV: &str = "BLOCKFS_STRESS_SEED";
const SECS_ENV: &str = "BLOCKFS_STRESS_SECS";
/// The test's own name, which a client process is run as.
const TEST_NAME: &str = "clients_in_own_and_shared_directories_through_the_mount";

fn errno(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The model of one client's directories
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// A file, by its number in `Model::files` (hard links share one).
    File(usize),
    Dir,
}

struct FileModel {
    data: Vec<u8>,
    links: u64,
}

/// A client's tree: its top directory ("") and subdirectories of that
/// (never deeper), with files anywhere, hard links among them.
#[derive(Default)]
struct Model {
    dirs: BTreeMap<String, BTreeMap<String, Entry>>,
    files: HashMap<usize, FileModel>,
    next_file: usize,
}

impl Model {
    fn new() -> Self {
        let mut model = Model::default();
        model.dirs.insert(String::new(), BTreeMap::new());
        model
    }

    fn entry(&self, dir: &str, name: &str) -> Option<Entry> {
        self.dirs[dir].get(name).copied()
    }

    fn drop_file_link(&mut self, dir: &str, name: &str, file: usize) {
        self.dirs.get_mut(dir).unwrap().remove(name);
        let model = self.files.get_mut(&file).unwrap();
        model.links -= 1;
        if model.links == 0 {
            self.files.remove(&file);
        }
    }

    fn write(&mut self, file: usize, offset: u64, data: &[u8]) {
        apply_write(&mut self.files.get_mut(&file).unwrap().data, offset, data);
    }

    /// Each file's names, first name first.
    fn names_of_files(&self) -> BTreeMap<usize, Vec<String>> {
        let mut names: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (dir, entries) in &self.dirs {
            for (name, entry) in entries {
                if let Entry::File(file) = entry {
                    names.entry(*file).or_default().push(join(dir, name));
                }
            }
        }
        names
    }
}

/// `dir/name` relative to the client's top directory.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// One step of a client. `dir` is relative to the client's top directory
/// ("" for the top itself); the `Shared` ones work in the shared directory.
#[derive(Debug)]
enum Op {
    Create {
        dir: String,
        name: String,
    },
    Mkdir {
        name: String,
    },
    Write {
        path: String,
        file: usize,
        offset: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        path: String,
        file: usize,
        size: u64,
    },
    Read {
        path: String,
        file: usize,
        offset: u64,
        len: usize,
    },
    Rename {
        dir: String,
        name: String,
        to_dir: String,
        to_name: String,
    },
    Link {
        dir: String,
        name: String,
        to_dir: String,
        to_name: String,
    },
    Unlink {
        dir: String,
        name: String,
    },
    Rmdir {
        name: String,
    },
    Readdir {
        dir: String,
    },
    Fsync {
        path: String,
    },
    /// Open a file, unlink its only name, then write and read it through
    /// the open descriptor before closing it.
    UseUnlinkedOpenFile {
        dir: String,
        name: String,
        file: usize,
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
    /// Create or unlink `name` inside the shared entry `dir`, which may be
    /// a file, a directory or gone (or removed meanwhile).
    SharedNested {
        dir: String,
        name: String,
        remove: bool,
    },
    SharedList,
}

/// Errors the shared directory may legitimately give: other clients
/// create, remove and rename the same names at the same time.
fn is_race(error: &io::Error) -> bool {
    [libc::EEXIST, libc::ENOENT, libc::ENOTEMPTY, libc::EISDIR, libc::ENOTDIR].contains(&errno(error))
}

/// Operations a failure report shows.
const RECENT_OPS: usize = 12;

struct Client {
    id: usize,
    rng: Rng,
    model: Model,
    top: PathBuf,
    shared: PathBuf,
    recent: VecDeque<String>,
}

impl Client {
    fn path(&self, relative: &str) -> PathBuf {
        self.top.join(relative)
    }

    fn own_name(&mut self) -> String {
        format!("n{}", self.rng.below(OWN_NAMES))
    }

    fn shared_name(&mut self) -> String {
        format!("s{}", self.rng.below(SHARED_NAMES))
    }

    fn any_dir(&mut self) -> String {
        let dirs: Vec<&String> = self.model.dirs.keys().collect();
        dirs[self.rng.below(dirs.len())].clone()
    }

    /// A name of a file: (dir, name, file).
    fn any_file(&mut self) -> Option<(String, String, usize)> {
        let mut names = Vec::new();
        for (dir, entries) in &self.model.dirs {
            for (name, entry) in entries {
                if let Entry::File(file) = entry {
                    names.push((dir.clone(), name.clone(), *file));
                }
            }
        }
        (!names.is_empty()).then(|| names.swap_remove(self.rng.below(names.len())))
    }

    /// An existing name in `dir` most of the time, else any name.
    fn name_in(&mut self, dir: &str) -> String {
        let names: Vec<&String> = self.model.dirs[dir].keys().collect();
        if names.is_empty() || self.rng.below(8) == 0 {
            return self.own_name();
        }
        names[self.rng.below(names.len())].clone()
    }

    /// The next operation; decisions depend only on the rng and the
    /// client's own model.
    fn next_op(&mut self) -> Op {
        let roll = self.rng.below(100);
        if roll < 25 {
            return self.next_shared_op();
        }
        let file = self.any_file();
        match (roll, file) {
            (35..=37, _) => Op::Mkdir { name: self.own_name() },
            (38..=51, Some((dir, name, file))) => {
                let (offset, len, seed) =
                    (write_offset(&mut self.rng), write_length(&mut self.rng), self.rng.next());
                Op::Write { path: join(&dir, &name), file, offset, len, seed }
            }
            (52..=57, Some((dir, name, file))) => {
                let size = match self.rng.below(4) {
                    0 => 0,
                    1 => write_offset(&mut self.rng),
                    _ => self.rng.below(64 << 10) as u64,
                };
                Op::Truncate { path: join(&dir, &name), file, size }
            }
            (58..=65, Some((dir, name, file))) => {
                let (offset, len) = (write_offset(&mut self.rng), write_length(&mut self.rng));
                Op::Read { path: join(&dir, &name), file, offset, len }
            }
            (66..=72, _) => {
                let dir = self.any_dir();
                let name = self.name_in(&dir);
                // Directories move only within the top directory.
                let to_dir = match self.model.entry(&dir, &name) {
                    Some(Entry::Dir) => String::new(),
                    _ => self.any_dir(),
                };
                Op::Rename { dir, name, to_dir, to_name: self.own_name() }
            }
            (73..=76, Some((dir, name, _))) => {
                let to_dir = self.any_dir();
                Op::Link { dir, name, to_dir, to_name: self.own_name() }
            }
            (77..=84, _) => {
                let dir = self.any_dir();
                Op::Unlink { name: self.name_in(&dir), dir }
            }
            (85..=87, _) => Op::Rmdir { name: self.name_in("") },
            (88..=92, _) => Op::Readdir { dir: self.any_dir() },
            (93..=95, Some((dir, name, _))) => Op::Fsync { path: join(&dir, &name) },
            (96..=99, Some((dir, name, file))) if self.model.files[&file].links == 1 => {
                Op::UseUnlinkedOpenFile { dir, name, file, seed: self.rng.next() }
            }
            // Creates, and file operations with no file to work on.
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
            5 => Op::SharedRename { name, to_name: self.shared_name() },
            6 => {
                let (offset, len, seed) =
                    (self.rng.below(32 << 10) as u64, write_length(&mut self.rng), self.rng.next());
                Op::SharedWrite { name, offset, len, seed }
            }
            7 => Op::SharedRead { name },
            8 | 9 => Op::SharedNested { dir: name, name: self.shared_name(), remove: self.rng.below(2) == 0 },
            _ => Op::SharedList,
        }
    }

    fn run(&mut self, until: Instant) -> usize {
        let mut done = 0;
        while Instant::now() < until {
            let op = self.next_op();
            if self.recent.len() == RECENT_OPS {
                self.recent.pop_front();
            }
            self.recent.push_back(format!("{op:?}"));
            self.apply(&op);
            done += 1;
        }
        done
    }

    /// Panics saying which client failed, at what, after what.
    fn fail(&self, what: String) -> ! {
        let recent: Vec<String> = self.recent.iter().map(|op| format!("\n    {op}")).collect();
        panic!("client {}: {what}\n  its last operations:{}", self.id, recent.concat())
    }

    /// Checks an own-directory result against the model's expectation.
    fn expect<T>(&self, op: &Op, result: io::Result<T>, expected: Result<(), i32>) -> Option<T> {
        match (result, expected) {
            (Ok(value), Ok(())) => Some(value),
            (Err(error), Err(code)) if errno(&error) == code => None,
            (Ok(_), Err(code)) => {
                self.fail(format!("{op:?} succeeded, expected {}", io::Error::from_raw_os_error(code)))
            }
            (Err(error), _) => self.fail(format!("{op:?}: {error} (expected {expected:?})")),
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { dir, name } => {
                let exists = self.model.entry(dir, name).is_some();
                let result =
                    OpenOptions::new().write(true).create_new(true).open(self.path(&join(dir, name)));
                if self.expect(op, result, if exists { Err(libc::EEXIST) } else { Ok(()) }).is_some() {
                    let file = self.model.next_file;
                    self.model.next_file += 1;
                    self.model.files.insert(file, FileModel { data: Vec::new(), links: 1 });
                    self.model.dirs.get_mut(dir).unwrap().insert(name.clone(), Entry::File(file));
                }
            }
            Op::Mkdir { name } => {
                let exists = self.model.entry("", name).is_some();
                let result = fs::create_dir(self.path(name));
                if self.expect(op, result, if exists { Err(libc::EEXIST) } else { Ok(()) }).is_some() {
                    self.model.dirs.get_mut("").unwrap().insert(name.clone(), Entry::Dir);
                    self.model.dirs.insert(name.clone(), BTreeMap::new());
                }
            }
            Op::Write { path, file, offset, len, seed } => {
                let data = bytes(*seed, *len);
                let result = OpenOptions::new()
                    .write(true)
                    .open(self.path(path))
                    .and_then(|handle| handle.write_all_at(&data, *offset));
                self.expect(op, result, Ok(()));
                self.model.write(*file, *offset, &data);
            }
            Op::Truncate { path, file, size } => {
                let result = OpenOptions::new()
                    .write(true)
                    .open(self.path(path))
                    .and_then(|handle| handle.set_len(*size));
                self.expect(op, result, Ok(()));
                self.model.files.get_mut(file).unwrap().data.resize(*size as usize, 0);
            }
            Op::Read { path, file, offset, len } => {
                let handle = self.expect(op, File::open(self.path(path)), Ok(())).unwrap();
                self.check_read(op, &handle, *file, *offset, *len);
            }
            Op::Rename { dir, name, to_dir, to_name } => self.rename(op, dir, name, to_dir, to_name),
            Op::Link { dir, name, to_dir, to_name } => {
                let exists = self.model.entry(to_dir, to_name).is_some();
                let result = fs::hard_link(self.path(&join(dir, name)), self.path(&join(to_dir, to_name)));
                if self.expect(op, result, if exists { Err(libc::EEXIST) } else { Ok(()) }).is_some() {
                    let Some(Entry::File(file)) = self.model.entry(dir, name) else { unreachable!() };
                    self.model.files.get_mut(&file).unwrap().links += 1;
                    self.model.dirs.get_mut(to_dir).unwrap().insert(to_name.clone(), Entry::File(file));
                }
            }
            Op::Unlink { dir, name } => {
                let entry = self.model.entry(dir, name);
                let expected = match entry {
                    None => Err(libc::ENOENT),
                    Some(Entry::Dir) => Err(libc::EISDIR),
                    Some(Entry::File(_)) => Ok(()),
                };
                self.expect(op, fs::remove_file(self.path(&join(dir, name))), expected);
                if let Some(Entry::File(file)) = entry {
                    self.model.drop_file_link(dir, name, file);
                }
            }
            Op::Rmdir { name } => {
                let expected = match self.model.entry("", name) {
                    None => Err(libc::ENOENT),
                    Some(Entry::File(_)) => Err(libc::ENOTDIR),
                    Some(Entry::Dir) if !self.model.dirs[name].is_empty() => Err(libc::ENOTEMPTY),
                    Some(Entry::Dir) => Ok(()),
                };
                if self.expect(op, fs::remove_dir(self.path(name)), expected).is_some() {
                    self.model.dirs.get_mut("").unwrap().remove(name);
                    self.model.dirs.remove(name);
                }
            }
            Op::Readdir { dir } => self.check_listing(dir),
            Op::Fsync { path } => {
                let result = File::open(self.path(path)).and_then(|handle| handle.sync_all());
                self.expect(op, result, Ok(()));
            }
            Op::UseUnlinkedOpenFile { dir, name, file, seed } => {
                let path = self.path(&join(dir, name));
                let handle =
                    self.expect(op, OpenOptions::new().read(true).write(true).open(&path), Ok(())).unwrap();
                self.expect(op, fs::remove_file(&path), Ok(()));
                let data = bytes(*seed, 5000);
                self.expect(op, handle.write_all_at(&data, 100), Ok(()));
                self.model.write(*file, 100, &data);
                let size = self.model.files[file].data.len();
                self.check_read(op, &handle, *file, 0, size);
                let meta = self.expect(op, handle.metadata(), Ok(())).unwrap();
                if (meta.len(), std::os::unix::fs::MetadataExt::nlink(&meta)) != (size as u64, 0) {
                    self.fail(format!(
                        "{op:?}: the unlinked file has {meta:?}, expected {size} bytes and no links"
                    ));
                }
                self.model.drop_file_link(dir, name, *file);
            }
            _ => self.apply_shared(op),
        }
    }

    fn check_read(&self, op: &Op, handle: &File, file: usize, offset: u64, len: usize) {
        let data = &self.model.files[&file].data;
        let mut buf = vec![0xAA; len];
        let mut read = 0;
        while read < len {
            match handle.read_at(&mut buf[read..], offset + read as u64) {
                Ok(0) => break,
                Ok(count) => read += count,
                Err(error) => self.fail(format!("{op:?}: read: {error}")),
            }
        }
        let start = (offset as usize).min(data.len());
        let end = (start + len).min(data.len());
        if read != end - start {
            self.fail(format!("{op:?}: read {read} bytes, expected {}", end - start));
        }
        if buf[..read] != data[start..end] {
            let first = (0..read).find(|&i| buf[i] != data[start + i]).unwrap();
            self.fail(format!("{op:?}: content differs first at byte {} of the file", start + first));
        }
    }

    fn rename(&mut self, op: &Op, dir: &str, name: &str, to_dir: &str, to_name: &str) {
        let source = self.model.entry(dir, name);
        let target = self.model.entry(to_dir, to_name);
        let same = (dir, name) == (to_dir, to_name);
        let expected = match (source, target) {
            (None, _) => Err(libc::ENOENT),
            // A name onto itself, or two names of one file: nothing happens.
            (Some(_), _) if same => Ok(()),
            (Some(Entry::File(a)), Some(Entry::File(b))) if a == b => Ok(()),
            // The kernel's check that the target is no ancestor of the
            // source comes first.
            (Some(_), Some(Entry::Dir)) if to_dir.is_empty() && to_name == dir => Err(libc::ENOTEMPTY),
            (Some(Entry::File(_)), Some(Entry::Dir)) => Err(libc::EISDIR),
            (Some(Entry::Dir), Some(Entry::File(_))) => Err(libc::ENOTDIR),
            (Some(Entry::Dir), Some(Entry::Dir)) if !self.model.dirs[to_name].is_empty() => {
                Err(libc::ENOTEMPTY)
            }
            _ => Ok(()),
        };
        let result = fs::rename(self.path(&join(dir, name)), self.path(&join(to_dir, to_name)));
        self.expect(op, result, expected);
        let (Ok(()), Some(source)) = (expected, source) else { return };
        if same || matches!((source, target), (Entry::File(a), Some(Entry::File(b))) if a == b) {
            return;
        }
        match target {
            Some(Entry::File(file)) => self.model.drop_file_link(to_dir, to_name, file),
            Some(Entry::Dir) => {
                self.model.dirs.get_mut(to_dir).unwrap().remove(to_name);
                self.model.dirs.remove(to_name);
            }
            None => {}
        }
        self.model.dirs.get_mut(dir).unwrap().remove(name);
        self.model.dirs.get_mut(to_dir).unwrap().insert(to_name.to_owned(), source);
        if source == Entry::Dir {
            // A subdirectory's entries move with it (to_dir is the top).
            let entries = self.model.dirs.remove(name).unwrap();
            self.model.dirs.insert(to_name.to_owned(), entries);
        }
    }

    fn apply_shared(&self, op: &Op) {
        let shared = &self.shared;
        // Results race with the other clients: any of the expected errors
        // is fine, anything else (EIO, ESTALE, ENOTCONN...) is a failure.
        let racy = |result: io::Result<()>| match result {
            Err(error) if !is_race(&error) => self.fail(format!("{op:?}: {error}")),
            _ => {}
        };
        match op {
            Op::SharedCreate { name } => {
                racy(OpenOptions::new().write(true).create_new(true).open(shared.join(name)).map(drop))
            }
            Op::SharedMkdir { name } => racy(fs::create_dir(shared.join(name))),
            Op::SharedUnlink { name } => racy(fs::remove_file(shared.join(name))),
            Op::SharedRmdir { name } => racy(fs::remove_dir(shared.join(name))),
            Op::SharedRename { name, to_name } => racy(fs::rename(shared.join(name), shared.join(to_name))),
            Op::SharedWrite { name, offset, len, seed } => {
                // An open descriptor keeps the file even if another client
                // unlinks the name meanwhile: the write must work.
                match OpenOptions::new().write(true).open(shared.join(name)) {
                    Ok(handle) => {
                        if let Err(error) = handle.write_all_at(&bytes(*seed, *len), *offset) {
                            self.fail(format!("{op:?}: write: {error}"));
                        }
                    }
                    Err(error) => racy(Err(error)),
                }
            }
            Op::SharedRead { name } => {
                // (A directory opens, and reading it is EISDIR.)
                racy(
                    File::open(shared.join(name))
                        .and_then(|handle| handle.read_at(&mut [0; 64 << 10], 0))
                        .map(drop),
                )
            }
            Op::SharedNested { dir, name, remove } => {
                let path = shared.join(dir).join(name);
                if *remove {
                    racy(fs::remove_file(path));
                } else {
                    racy(OpenOptions::new().write(true).create_new(true).open(path).map(drop));
                }
            }
            Op::SharedList => {
                let listing = fs::read_dir(shared).unwrap_or_else(|e| self.fail(format!("{op:?}: {e}")));
                for entry in listing {
                    // An entry removed while listing is fine; a name no
                    // client uses is not.
                    let entry = entry.unwrap_or_else(|e| self.fail(format!("{op:?}: {e}")));
                    let name = entry.file_name().into_string().unwrap_or_default();
                    if !(0..SHARED_NAMES).any(|i| name == format!("s{i}")) {
                        self.fail(format!("{op:?}: the shared directory lists {name:?}"));
                    }
                }
            }
            _ => unreachable!("not a shared operation: {op:?}"),
        }
    }

    /// A directory lists exactly the model's names, with their types.
    fn check_listing(&self, dir: &str) {
        let listing =
            fs::read_dir(self.path(dir)).unwrap_or_else(|e| self.fail(format!("listing {dir:?}: {e}")));
        let mut listed = BTreeMap::new();
        for entry in listing {
            let entry = entry.unwrap_or_else(|e| self.fail(format!("listing {dir:?}: {e}")));
            let is_dir = entry.file_type().unwrap_or_else(|e| self.fail(format!("{e}"))).is_dir();
            listed.insert(entry.file_name().into_string().unwrap(), is_dir);
        }
        let expected: BTreeMap<String, bool> =
            self.model.dirs[dir].iter().map(|(name, entry)| (name.clone(), *entry == Entry::Dir)).collect();
        if listed != expected {
            self.fail(format!(
                "directory {dir:?} lists {listed:?}, expected {expected:?} (name: is a directory)"
            ));
        }
    }

    /// Everything in the client's tree: names, link counts, sizes, bytes.
    fn check_tree(&self) {
        for (dir, entries) in &self.model.dirs {
            self.check_listing(dir);
            let subdirs = entries.values().filter(|e| **e == Entry::Dir).count() as u64;
            let links = fs::metadata(self.path(dir)).map(|m| std::os::unix::fs::MetadataExt::nlink(&m));
            if links.as_ref().ok() != Some(&(2 + subdirs)) {
                self.fail(format!("directory {dir:?} has {links:?} links, expected {}", 2 + subdirs));
            }
        }
        for (file, names) in self.model.names_of_files() {
            let model = &self.model.files[&file];
            for name in names {
                let data =
                    fs::read(self.path(&name)).unwrap_or_else(|e| self.fail(format!("reading {name}: {e}")));
                let links = fs::metadata(self.path(&name)).map(|m| std::os::unix::fs::MetadataExt::nlink(&m));
                if data != model.data || links.as_ref().ok() != Some(&model.links) {
                    self.fail(format!(
                        "{name}: {} bytes and {links:?} links, expected {} bytes and {} links{}",
                        data.len(),
                        model.data.len(),
                        model.links,
                        if data.len() == model.data.len() { " (the bytes differ)" } else { "" }
                    ));
                }
            }
        }
    }

    /// Writes what the tree should hold under `copy` on the host, hard
    /// links included, for the parent to compare after a remount.
    fn write_copy(&self, copy: &Path) {
        for dir in self.model.dirs.keys() {
            fs::create_dir_all(copy.join(dir)).unwrap();
        }
        for (file, names) in self.model.names_of_files() {
            fs::write(copy.join(&names[0]), &self.model.files[&file].data).unwrap();
            for name in &names[1..] {
                fs::hard_link(copy.join(&names[0]), copy.join(name)).unwrap();
            }
        }
    }
}

/// The client process: runs its mix, checks its tree, writes its copy.
fn run_client(id: usize) {
    let root = PathBuf::from(std::env::var(ROOT_ENV).unwrap());
    let seed = env_number(SEED_ENV).unwrap();
    let secs = env_number(SECS_ENV).unwrap();
    let top = root.join(format!("client-{id}"));
    fs::create_dir(&top).unwrap();
    let mut client = Client {
        id,
        rng: Rng((seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1),
        model: Model::new(),
        top,
        shared: root.join("shared"),
        recent: VecDeque::new(),
    };
    let ops = client.run(Instant::now() + Duration::from_secs(secs));
    client.check_tree();
    let copy = PathBuf::from(std::env::var(EXPECTED_ENV).unwrap()).join(format!("client-{id}"));
    client.write_copy(&copy);
    println!("client {id}: {ops} operations, {} files at the end", client.model.files.len());
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// Client processes, each logging to its own file.
struct Clients {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Clients {
    fn logs(&self) -> String {
        let read = |(id, log): (usize, &PathBuf)| {
            let text = fs::read_to_string(log).unwrap_or_default();
            format!("---- client {id} ----\n{text}")
        };
        self.logs.iter().enumerate().map(read).collect::<Vec<_>>().join("\n")
    }

    fn kill(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.kill();
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// Comparable trees: what differs between BlockFS and the host's
/// filesystem for the same files (directory sizes and link counts, times)
/// left out.
fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut nodes = comparable(&snapshot(root), |_| false);
    for node in nodes.values_mut() {
        if node.mode & 0o170000 == 0o040000 {
            node.nlink = 0;
        }
    }
    nodes
}

#[test]
fn clients_in_own_and_shared_directories_through_the_mount() {
    if let Some(id) = env_number(CLIENT_ENV) {
        return run_client(id as usize);
    }
    require_fuse();
    let seed = env_number(SEED_ENV).unwrap_or_else(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 & 0xFFFF_FFFF
    });
    let secs = env_number(SECS_ENV).unwrap_or(DEFAULT_SECS);
    println!("fuse stress: seed {seed} ({SEED_ENV}={seed} reruns it), {CLIENTS} clients for {secs} s");

    let scratch = Scratch::new("fuse-stress");
    let image = scratch.path("image");
    mkfs_image(&image, 64);
    let mnt = scratch.path("mnt");
    let expected = scratch.path("expected");
    // A 1 MiB cache, so blocks are evicted all the time, background syncs
    // every second racing with the clients, and four server threads, so
    // requests run at once whatever the number of cores.
    let mut mount =
        Foreground::start(&image, &mnt, &["--cache-mb", "1", "--writeback-secs", "1", "--threads", "4"]);
    fs::create_dir(mnt.join("shared")).unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut clients = Clients { children: Vec::new(), logs: Vec::new() };
    for id in 0..CLIENTS {
        let log = scratch.path(&format!("client-{id}.log"));
        let output = File::create(&log).unwrap();
        let child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CLIENT_ENV, id.to_string())
            .env(ROOT_ENV, &mnt)
            .env(EXPECTED_ENV, &expected)
            .env(SEED_ENV, seed.to_string())
            .env(SECS_ENV, secs.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("start a client");
        clients.children.push(child);
        clients.logs.push(log);
    }

    // Bounded: a client stuck past the deadline (a deadlock in the mount)
    // fails the test. Killing the mount process first ends the FUSE
    // connection, so clients blocked in the kernel return and die.
    let deadline = Instant::now() + Duration::from_secs(secs) + DEADLINE_MARGIN;
    let mut statuses = vec![None; CLIENTS];
    while statuses.iter().any(Option::is_none) {
        for (id, child) in clients.children.iter_mut().enumerate() {
            if statuses[id].is_none() {
                statuses[id] = child.try_wait().expect("poll a client");
            }
        }
        if Instant::now() > deadline {
            let _ = mount.child.kill();
            clients.kill();
            panic!(
                "seed {seed}: clients still running {DEADLINE_MARGIN:?} past their {secs} s (a deadlock?): \
                 finished {statuses:?}\n{}",
                clients.logs()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    let failed: Vec<usize> = (0..CLIENTS).filter(|&id| !statuses[id].unwrap().success()).collect();
    assert!(failed.is_empty(), "seed {seed}: clients {failed:?} failed\n{}", clients.logs());
    // Each client's summary line.
    for line in clients.logs().lines().filter(|line| line.contains(" operations, ")) {
        println!("{line}");
    }

    // A clean unmount writes everything and marks the image clean.
    assert_success(&Command::new("fusermount3").arg("-u").arg(&mnt).output().unwrap());
    let unmount_deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = mount.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < unmount_deadline,
            "seed {seed}: the mount process did not exit after unmount"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "seed {seed}: the mount process exited with {status}");
    drop(mount);

    let fsck = Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(["-n", text(&image)]).output().unwrap();
    assert!(
        fsck.status.success(),
        "seed {seed}: fsck-blockfs -n is not clean:\n{}{}",
        stdout(&fsck),
        stderr(&fsck)
    );

    let mounted = Mounted::new(&image, &mnt, &["-o", "ro"]);
    for id in 0..CLIENTS {
        let name = format!("client-{id}");
        assert_same(
            &tree(&mnt.join(&name)),
            &tree(&expected.join(&name)),
            &format!("seed {seed}: {name} after remount"),
        );
    }
    mounted.unmount();
}
