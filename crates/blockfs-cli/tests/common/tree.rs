//! Host trees for the copy tests: one with every kind of object
//! `blockfs` must carry, and a snapshot of everything `cp -a` preserves,
//! so two trees can be compared whole.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use super::{pattern, set_mode, write_file};

/// Later than any test runs (2096): relatime never refreshes an atime in
/// the future, so reading a tree leaves its atimes as set.
pub const ATIME: u32 = 4_000_000_000;
/// The first mtime given; each object gets its own after it.
pub const MTIME: u32 = 1_100_000_000;
/// Past the single-indirect range ((12 + 1024) * 4096 bytes).
pub const BIG_FILE: usize = 4_500_123;
/// Owner given to some objects when the tests run as root.
pub const OWNER: (u32, u32) = (1234, 5678);

/// Whether this process can chown and make device nodes.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// What a tree holds beyond the basics.
#[derive(Clone, Copy)]
pub struct Extras {
    /// A Unix socket (tar cannot carry one).
    pub socket: bool,
}

/// Builds a tree with regular files (empty, small, one past the single
/// indirect block), nested and special-mode directories, symlinks
/// (relative, absolute, dangling, long), hard links, a FIFO, device nodes
/// and other owners when root, a non-UTF-8 name, names over 100 bytes,
/// and distinct times on everything.
pub fn build(root: &Path, extras: Extras) {
    fs::create_dir_all(root).unwrap();
    write_file(&root.join("hello.txt"), b"hello, world\n");
    write_file(&root.join("empty"), b"");
    write_file(&root.join("big.bin"), &pattern(BIG_FILE));
    write_file(&root.join("sub/deeper/deepest/file"), b"deep\n");
    write_file(&root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name\n");
    let long_name = "n".repeat(120);
    write_file(&root.join("long").join(&long_name).join(&long_name), b"long path\n");

    let symlink = |target: &[u8], name: &str| {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), root.join(name)).unwrap();
    };
    symlink(b"hello.txt", "link-relative");
    symlink(b"/etc/passwd", "link-absolute");
    symlink(b"no/such/target", "link-dangling");
    symlink(b"sub", "link-dir");
    symlink("t".repeat(150).as_bytes(), "link-long");

    write_file(&root.join("hard-a"), b"one inode, three names\n");
    fs::hard_link(root.join("hard-a"), root.join("sub/hard-b")).unwrap();
    fs::hard_link(root.join("hard-a"), root.join("long/hard-c")).unwrap();

    assert!(Command::new("mkfifo").arg(root.join("pipe")).status().unwrap().success());
    if extras.socket {
        drop(UnixListener::bind(root.join("socket")).unwrap());
    }

    write_file(&root.join("setuid"), b"#!/bin/sh\n");
    set_mode(&root.join("setuid"), 0o4755);
    write_file(&root.join("setgid"), b"");
    set_mode(&root.join("setgid"), 0o2710);
    write_file(&root.join("private"), b"secret\n");
    set_mode(&root.join("private"), 0o600);
    fs::create_dir(root.join("sticky")).unwrap();
    set_mode(&root.join("sticky"), 0o1777);
    write_file(&root.join("read-only/inside"), b"made before the directory lost its w bit\n");
    set_mode(&root.join("read-only"), 0o555);

    if is_root() {
        for (name, kind, major, minor) in [("dev-null", "c", 1, 3), ("dev-disk", "b", 259, 70_000)] {
            let numbers = [major.to_string(), minor.to_string()];
            let made = Command::new("mknod").arg(root.join(name)).arg(kind).args(numbers).status();
            assert!(made.unwrap().success());
        }
        let (uid, gid) = OWNER;
        std::os::unix::fs::lchown(root.join("private"), Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::lchown(root.join("link-relative"), Some(gid), Some(uid)).unwrap();
        std::os::unix::fs::lchown(root.join("sub"), Some(uid), Some(0)).unwrap();
        // chown clears setuid; put it back.
        std::os::unix::fs::lchown(root.join("setuid"), Some(uid), None).unwrap();
        set_mode(&root.join("setuid"), 0o4755);
    }
    set_all_times(root);
}

/// Gives every object (children before their directory, whose mtime
/// they would change) atime [`ATIME`] and an mtime of its own.
fn set_all_times(root: &Path) {
    let mut paths = Vec::new();
    collect(root, &mut paths);
    for (index, path) in paths.iter().enumerate().rev() {
        set_times_nofollow(path, ATIME, MTIME + 1000 * index as u32);
    }
}

fn collect(path: &Path, paths: &mut Vec<std::path::PathBuf>) {
    paths.push(path.to_owned());
    if fs::symlink_metadata(path).unwrap().is_dir() {
        let mut names: Vec<_> = fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            collect(&path.join(name), paths);
        }
    }
}

/// Sets a path's own times (a symlink's, not its target's) with touch -h.
pub fn set_times_nofollow(path: &Path, atime: u32, mtime: u32) {
    for (flag, time) in [("-a", atime), ("-m", mtime)] {
        let status = Command::new("touch").args(["-h", flag, "-d", &format!("@{time}")]).arg(path).status();
        assert!(status.unwrap().success(), "touch {}", path.display());
    }
}

/// Everything `cp -a` preserves about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: &'static str,
    /// The 12 permission bits (0 for symlinks, whose mode means nothing).
    pub perm: u32,
    pub owner: (u32, u32),
    pub atime: i64,
    pub mtime: i64,
    pub size: u64,
    /// A digest of a regular file's content.
    pub content: Option<u64>,
    pub target: Option<Vec<u8>>,
    pub rdev: u64,
    /// For a hard-linked non-directory, the first of its names (in path
    /// order), so two trees with the same links compare equal.
    pub first_name: Option<Vec<u8>>,
}

/// Every object under `root` (the root itself under the empty path), by
/// path relative to it. All metadata is read before any content, so
/// the snapshot sees the atimes the tree had.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Object> {
    let mut paths = Vec::new();
    collect(root, &mut paths);
    let metadata: Vec<_> = paths.iter().map(|path| fs::symlink_metadata(path).unwrap()).collect();
    let mut first_names = HashMap::new();
    let mut objects = BTreeMap::new();
    for (path, meta) in paths.iter().zip(metadata) {
        let relative = path.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let kind = meta.file_type();
        let first_name = (meta.nlink() > 1 && !kind.is_dir())
            .then(|| first_names.entry(meta.ino()).or_insert_with(|| relative.clone()).clone());
        let object = Object {
            kind: match () {
                _ if kind.is_dir() => "directory",
                _ if kind.is_file() => "file",
                _ if kind.is_symlink() => "symlink",
                _ if kind.is_fifo() => "fifo",
                _ if kind.is_socket() => "socket",
                _ if kind.is_char_device() => "char device",
                _ => "block device",
            },
            perm: if kind.is_symlink() { 0 } else { meta.mode() & 0o7777 },
            owner: (meta.uid(), meta.gid()),
            atime: meta.atime(),
            mtime: meta.mtime(),
            size: if kind.is_dir() { 0 } else { meta.size() },
            content: kind.is_file().then(|| digest(&fs::read(path).unwrap())),
            target: kind.is_symlink().then(|| fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec()),
            rdev: meta.rdev(),
            first_name,
        };
        objects.insert(relative, object);
    }
    objects
}

/// FNV-1a: enough to tell contents apart in a test.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Asserts two snapshots are equal, naming the first path that differs.
pub fn assert_same(expected: &BTreeMap<Vec<u8>, Object>, found: &BTreeMap<Vec<u8>, Object>) {
    let names = |map: &BTreeMap<Vec<u8>, Object>| -> Vec<String> {
        map.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
    };
    assert_eq!(names(expected), names(found), "the trees hold different names");
    for (path, object) in expected {
        assert_eq!(Some(object), found.get(path), "{}", String::from_utf8_lossy(path));
    }
}
