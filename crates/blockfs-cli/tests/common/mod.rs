//! Helpers shared by the end-to-end tests: scratch directories, running
//! the real binaries, and reading images back through the library.

#![allow(dead_code)] // each test binary uses its own subset

pub mod tree;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use blockfs::{FileDevice, FileSystem, MountOptions};

/// A fresh directory under the system temp dir, removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("blockfs-cli-{name}-{}-{unique}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Names in the scratch directory itself (to spot leftover temp files).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .expect("list scratch dir")
            .map(|entry| entry.expect("scratch entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Tests may have made entries unwritable; undo that so removal works.
        make_writable(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(listing) = fs::read_dir(dir) {
        for entry in listing.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path());
            }
        }
    }
}

pub fn mkfs_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mkfs-blockfs"));
    command.env_remove("SOURCE_DATE_EPOCH");
    command
}

/// Runs mkfs-blockfs with `args` and no SOURCE_DATE_EPOCH.
pub fn mkfs<S: AsRef<OsStr>>(args: &[S]) -> Output {
    mkfs_binary().args(args).output().expect("run mkfs-blockfs")
}

/// Makes an empty image of `size_mib` MiB at `image`, or panics saying why.
pub fn mkfs_image(image: &Path, size_mib: u32) {
    assert_success(&mkfs(&["-o", text(image), "-s", &size_mib.to_string()]));
}

/// Runs the `blockfs` inspection tool.
pub fn blockfs<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockfs")).args(args).output().expect("run blockfs")
}

/// A scratch path as a command-line argument (scratch paths are UTF-8).
pub fn text(path: &Path) -> &str {
    path.to_str().expect("scratch paths are UTF-8")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `blockfs ARGS`, which must succeed; returns its standard output.
pub fn run_ok(args: &[&str]) -> String {
    let output = blockfs(args);
    assert_success(&output);
    stdout(&output)
}

/// Panics with both streams unless the command succeeded.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// Asserts a failure whose message contains every one of `needles`.
pub fn assert_failure(output: &Output, needles: &[&str]) {
    assert!(!output.status.success(), "unexpectedly succeeded:\n{}", stdout(output));
    let message = stderr(output);
    for needle in needles {
        assert!(message.contains(needle), "stderr lacks {needle:?}:\n{message}");
    }
}

pub fn mount(image: &Path) -> FileSystem<FileDevice> {
    let device = FileDevice::open(image, false).expect("open image");
    let options = MountOptions { read_only: true, relatime: false, ..MountOptions::default() };
    FileSystem::mount(device, options).expect("mount image")
}

pub fn read_all(fs: &FileSystem<FileDevice>, ino: u32) -> Vec<u8> {
    let size = fs.getattr(ino).expect("getattr").size as usize;
    let mut data = vec![0u8; size];
    let mut done = 0;
    while done < size {
        let read = fs.read(ino, done as u64, &mut data[done..]).expect("read");
        assert!(read > 0, "short read at {done} of {size}");
        done += read;
    }
    data
}

/// Sets a host file's or directory's atime and mtime (seconds).
pub fn set_times(path: &Path, atime: u32, mtime: u32) {
    let at = |seconds: u32| UNIX_EPOCH + Duration::from_secs(seconds as u64);
    let times = fs::FileTimes::new().set_accessed(at(atime)).set_modified(at(mtime));
    fs::File::open(path).and_then(|file| file.set_times(times)).expect("set times");
}

pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent");
    }
    fs::write(path, data).expect("write file");
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A pattern that differs in every block, so misplaced blocks are caught.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
}
