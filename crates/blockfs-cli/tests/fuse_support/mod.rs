//! Helpers for the FUSE tests: checking that the machine can mount,
//! mounting with the real binary, unmounting however a test ends, and
//! snapshots of a tree (mounted or on the host) to compare.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use blockfs_fuse::is_mounted;

use crate::common::{assert_success, stdout, text};

/// Fails, never skips, when the machine cannot run the FUSE tests.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the FUSE tests need the fuse kernel module"
    );
    let helper = Command::new("fusermount3").arg("--version").output();
    assert!(helper.is_ok(), "fusermount3 is missing: the FUSE tests need Debian's fuse3 package");
}

pub fn blockfs_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blockfs"))
}

/// `blockfs mount IMAGE DIR ARGS...`, as a user runs it (in the background).
pub fn mount_command(image: &Path, dir: &Path, args: &[&str]) -> Output {
    fs::create_dir_all(dir).expect("create mount point");
    blockfs_command().arg("mount").arg(image).arg(dir).args(args).output().expect("run blockfs mount")
}

/// Runs `script` with `sh -e`, with `MNT` set to `dir`; panics with its
/// output unless it succeeds.
pub fn sh(dir: &Path, script: &str) -> Output {
    let output = Command::new("sh").args(["-ec", script]).env("MNT", dir).output().expect("run sh");
    assert_success(&output);
    output
}

/// Waits until no writer holds `image`'s lock: a read-write mount process
/// has finished (`fusermount3 -u` returns before it has written the last
/// changes and marked the image clean).
pub fn wait_released(image: &Path) {
    let output =
        Command::new("flock").args(["-s", "-w", "20", text(image), "true"]).output().expect("run flock");
    assert_success(&output);
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A mounted directory; dropping it unmounts lazily (which cannot fail on
/// a busy or dead mount), so a failing test leaves no mount behind.
pub struct Mounted {
    pub dir: PathBuf,
    /// What `blockfs mount` printed.
    pub stdout: String,
    image: PathBuf,
}

impl Mounted {
    /// Mounts in the background and asserts that it worked.
    pub fn new(image: &Path, dir: &Path, args: &[&str]) -> Self {
        let output = mount_command(image, dir, args);
        assert_success(&output);
        assert!(is_mounted(dir).unwrap(), "{} not mounted after success", dir.display());
        Mounted { dir: dir.to_owned(), stdout: stdout(&output), image: image.to_owned() }
    }

    /// `fusermount3 -u`, as a user unmounts; waits for the mount process
    /// to finish with the image.
    pub fn unmount(self) {
        let output = Command::new("fusermount3").arg("-u").arg(&self.dir).output().expect("run fusermount3");
        assert_success(&output);
        wait_released(&self.image);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        detach(&self.dir);
    }
}

/// Lazy unmount when something is mounted at `dir`.
pub fn detach(dir: &Path) {
    if is_mounted(dir).unwrap_or(false) {
        let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(dir).status();
    }
}

/// `blockfs mount -f` as a child process, killed and unmounted on drop.
pub struct Foreground {
    pub child: Child,
    pub dir: PathBuf,
}

impl Foreground {
    pub fn start(image: &Path, dir: &Path, args: &[&str]) -> Self {
        fs::create_dir_all(dir).expect("create mount point");
        let child = blockfs_command()
            .args(["mount", "-f"])
            .arg(image)
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start blockfs mount -f");
        let mut mount = Foreground { child, dir: dir.to_owned() };
        wait_until("foreground mount", || {
            let exited = mount.child.try_wait().expect("poll mount process");
            assert!(exited.is_none(), "mount process exited: {exited:?}");
            is_mounted(dir).unwrap()
        });
        mount
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        detach(&self.dir);
    }
}

/// What a test compares about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub size: u64,
    pub mtime: i64,
    /// A file's bytes or a symlink's target.
    pub data: Vec<u8>,
}

/// Every path under `root` (relative; the root itself is "") and what it is.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut nodes = BTreeMap::new();
    visit(root, Path::new(""), &mut nodes);
    nodes
}

fn visit(root: &Path, relative: &Path, nodes: &mut BTreeMap<PathBuf, Node>) {
    let path = root.join(relative);
    let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let data = if meta.file_type().is_symlink() {
        fs::read_link(&path).expect("readlink").into_os_string().into_encoded_bytes()
    } else if meta.is_file() {
        fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    } else {
        Vec::new()
    };
    let node = Node {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        nlink: meta.nlink(),
        size: meta.size(),
        mtime: meta.mtime(),
        data,
    };
    nodes.insert(relative.to_owned(), node);
    if meta.is_dir() {
        let mut names: Vec<_> =
            fs::read_dir(&path).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        for name in names {
            visit(root, &relative.join(name), nodes);
        }
    }
}

/// A snapshot without what legitimately differs between two filesystems
/// given the same commands: directory sizes (a layout detail) and times
/// (the runs happen at different moments) unless `keep_times`.
pub fn comparable(
    nodes: &BTreeMap<PathBuf, Node>,
    keep_times: impl Fn(&Path) -> bool,
) -> BTreeMap<PathBuf, Node> {
    nodes
        .iter()
        .map(|(path, node)| {
            let mut node = node.clone();
            if node.mode & 0o170000 == 0o040000 {
                node.size = 0;
            }
            if !keep_times(path) {
                node.mtime = 0;
            }
            (path.clone(), node)
        })
        .collect()
}

/// Panics naming the first path whose node differs (a whole-map
/// assert_eq would print megabytes of file contents).
pub fn assert_same(left: &BTreeMap<PathBuf, Node>, right: &BTreeMap<PathBuf, Node>, what: &str) {
    let left_paths: Vec<_> = left.keys().collect();
    let right_paths: Vec<_> = right.keys().collect();
    assert_eq!(left_paths, right_paths, "{what}: different paths");
    for (path, node) in left {
        let other = &right[path];
        if node != other {
            let brief = |n: &Node| Node { data: n.data.iter().take(64).copied().collect(), ..n.clone() };
            panic!(
                "{what}: {} differs\n  left:  {:?} ({} bytes of data)\n  right: {:?} ({} bytes of data)",
                path.display(),
                brief(node),
                node.data.len(),
                brief(other),
                other.data.len()
            );
        }
    }
}
