//! mkfs-blockfs --populate end to end: build a host tree with every kind
//! of object, make an image with the real binary, and read every entry
//! back through the library.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use blockfs::{FileDevice, FileSystem, FileType, ROOT_INO};
use blockfs_cli::host::tree::{self as hosttree, ScanOptions};
use common::*;

/// Bytes reachable without the double-indirect block: (12 + 1024) * 4096.
const WITHOUT_DOUBLE_INDIRECT: usize = 4_243_456;
const BIG_DIR_ENTRIES: usize = 5000;
const ATIME: u32 = 1_000_000_000;
const MTIME: u32 = 1_100_000_000;

/// Builds a tree with files of every size class, a 5,000-entry
/// directory, symlinks, hard links, a FIFO, a socket, special permission
/// bits, a non-UTF-8 name and chosen times.
fn build_tree(root: &Path) {
    write_file(&root.join("hello.txt"), b"hello, world\n");
    write_file(&root.join("empty"), b"");
    write_file(&root.join("big.bin"), &pattern(WITHOUT_DOUBLE_INDIRECT + 1_000_000 + 123));
    write_file(&root.join("sub/deeper/deepest/file"), b"deep\n");
    write_file(&root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name\n");

    let big_dir = root.join("many");
    fs::create_dir(&big_dir).unwrap();
    for index in 0..BIG_DIR_ENTRIES {
        let content = if index % 1000 == 0 { format!("entry {index}\n") } else { String::new() };
        fs::write(big_dir.join(format!("f{index:05}")), content).unwrap();
    }

    std::os::unix::fs::symlink("hello.txt", root.join("link-relative")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link-absolute")).unwrap();
    std::os::unix::fs::symlink("no/such/target", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9"), root.join("link-bytes")).unwrap();

    write_file(&root.join("hard-a"), b"one inode, three names\n");
    fs::hard_link(root.join("hard-a"), root.join("sub/hard-b")).unwrap();
    fs::hard_link(root.join("hard-a"), root.join("many/hard-c")).unwrap();

    let fifo = Command::new("mkfifo").arg(root.join("pipe")).status().expect("run mkfifo");
    assert!(fifo.success());
    drop(UnixListener::bind(root.join("socket")).unwrap());

    write_file(&root.join("setuid"), b"#!/bin/sh\n");
    set_mode(&root.join("setuid"), 0o4755);
    write_file(&root.join("setgid"), b"");
    set_mode(&root.join("setgid"), 0o2710);
    fs::create_dir(root.join("sticky")).unwrap();
    set_mode(&root.join("sticky"), 0o1777);
    write_file(&root.join("private"), b"secret\n");
    set_mode(&root.join("private"), 0o600);

    set_times(&root.join("hello.txt"), ATIME, MTIME);
    set_times(&root.join("sub/deeper"), ATIME, MTIME);
    set_mode(root, 0o750);
}

/// Device nodes, one with numbers that need Linux's large encoding, where
/// this user may make them (root with CAP_MKNOD). Returns whether it could.
fn make_device_nodes(root: &Path) -> bool {
    DEVICES.iter().all(|(name, kind, major, minor)| {
        Command::new("mknod")
            .arg(root.join(name))
            .args([kind.to_string(), major.to_string(), minor.to_string()])
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// (name, mknod type, major, minor)
const DEVICES: [(&str, &str, u32, u32); 2] = [("dev-null", "c", 1, 3), ("dev-disk", "b", 259, 70_000)];

#[test]
fn populated_image_matches_the_host_tree() {
    let scratch = Scratch::new("roundtrip");
    let source = scratch.path("src");
    fs::create_dir(&source).unwrap();
    build_tree(&source);
    let with_devices = make_device_nodes(&source);
    let image = scratch.path("out.img");

    let output = mkfs(&["-o", text(&image), "-s", "64", "-p", text(&source)]);
    assert_success(&output);
    // The default inode count is names + names / 4 + 64 (5,022 names
    // without the device nodes), here 6,341 or 6,344 inodes in 149 blocks.
    let names = 5022 + if with_devices { DEVICES.len() } else { 0 };
    let inodes_line = format!("  Inodes: {}\n", names + names / 4 + 64);
    let summary = stdout(&output);
    for line in [
        "mkfs-blockfs: Creating BlockFS image\n",
        "  Size: 64 MB (16384 blocks)\n",
        &inodes_line,
        "  Inode table: 149 blocks\n",
        "  Populating from: ",
        "  Inodes used: ",
        "  Free blocks: ",
        "mkfs-blockfs: Image created successfully (64 MB)\n",
    ] {
        assert!(summary.contains(line), "summary lacks {line:?}:\n{summary}");
    }

    let fs = mount(&image);
    let mut image_inos = HashMap::new();
    compare_directory(&fs, &source, b"/", &mut image_inos);
    let root = fs.getattr(ROOT_INO).unwrap();
    assert_eq!(root.perm, 0o750, "the root takes the populate directory's mode");
    assert_eq!(fs.getattr(fs.resolve(b"/hello.txt", false).unwrap()).unwrap().atime, ATIME);
    assert_eq!(fs.getattr(fs.resolve(b"/sub/deeper", false).unwrap()).unwrap().mtime, MTIME);
    let big = fs.getattr(fs.resolve(b"/big.bin", false).unwrap()).unwrap();
    assert!(big.size as usize > WITHOUT_DOUBLE_INDIRECT, "big.bin needs the double-indirect block");

    if with_devices {
        for (name, _, major, minor) in DEVICES {
            let attr = fs.getattr(fs.resolve(format!("/{name}").as_bytes(), false).unwrap()).unwrap();
            assert_eq!(attr.rdev, (major, minor), "{name}");
        }
    } else {
        eprintln!("device nodes not tested: mknod needs root");
    }
    assert_prescan_is_exact(&scratch, &fs, &source);
    let on_disk = fs::metadata(&image).unwrap();
    assert!(on_disk.blocks() * 512 < on_disk.len() / 4, "the image file is sparse");
}

/// The pre-scan's figures (used to refuse trees that do not fit) equal
/// what populating used: the difference between the populated image's
/// free counts and those of an empty image of the same geometry.
fn assert_prescan_is_exact(scratch: &Scratch, populated: &FileSystem<FileDevice>, source: &Path) {
    let geometry = populated.info().geometry;
    let empty_image = scratch.path("empty.img");
    let size_mb = (geometry.block_count / 256).to_string();
    let inodes = geometry.inode_count.to_string();
    assert_success(&mkfs(&["-o", text(&empty_image), "-s", &size_mb, "--inodes", &inodes]));
    let empty = mount(&empty_image).statfs();
    let full = populated.statfs();

    let tree = hosttree::scan(source, ScanOptions::default()).unwrap();
    assert_eq!(tree.needs.blocks, (empty.free_blocks - full.free_blocks) as u64);
    assert_eq!(tree.needs.inodes, (empty.free_inodes - full.free_inodes) as u64);
    assert_eq!(tree.needs.entries, tree.needs.inodes + 2, "two extra names for the hard link");
}

fn host_kind(metadata: &fs::Metadata) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    match () {
        _ if kind.is_dir() => FileType::Directory,
        _ if kind.is_file() => FileType::Regular,
        _ if kind.is_symlink() => FileType::Symlink,
        _ if kind.is_fifo() => FileType::Fifo,
        _ if kind.is_socket() => FileType::Socket,
        _ if kind.is_char_device() => FileType::CharDevice,
        _ => FileType::BlockDevice,
    }
}

/// Checks that directory `image_dir` holds exactly the host directory's
/// names, each with the same type, permissions, owner, size, mtime and
/// content, and that hard links share an inode.
fn compare_directory(
    fs: &FileSystem<FileDevice>,
    host_dir: &Path,
    image_dir: &[u8],
    inos: &mut HashMap<(u64, u64), u32>,
) {
    let dir_ino = fs.resolve(image_dir, false).unwrap();
    let mut image_names = Vec::new();
    fs.readdir(dir_ino, 0, &mut |entry, _| {
        if entry.name != b"." && entry.name != b".." {
            image_names.push(entry.name.clone());
        }
        true
    })
    .unwrap();
    image_names.sort();
    let mut host_names: Vec<Vec<u8>> =
        fs::read_dir(host_dir).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    host_names.sort();
    assert_eq!(image_names, host_names, "names in {}", String::from_utf8_lossy(image_dir));

    for name in host_names {
        let host_path = host_dir.join(OsStr::from_bytes(&name));
        let mut image_path = image_dir.to_vec();
        if !image_path.ends_with(b"/") {
            image_path.push(b'/');
        }
        image_path.extend_from_slice(&name);
        compare_entry(fs, &host_path, &image_path, inos);
    }
}

fn compare_entry(
    fs: &FileSystem<FileDevice>,
    host_path: &Path,
    image_path: &[u8],
    inos: &mut HashMap<(u64, u64), u32>,
) {
    let what = host_path.display();
    let host = fs::symlink_metadata(host_path).unwrap();
    let attr = fs.getattr(fs.resolve(image_path, false).unwrap()).unwrap();
    let kind = host_kind(&host);
    assert_eq!(attr.kind, kind, "{what}: type");
    assert_eq!(attr.perm as u32, host.permissions().mode() & 0o7777, "{what}: permissions");
    assert_eq!((attr.uid as u32, attr.gid as u32), (host.uid(), host.gid()), "{what}: owner");
    assert_eq!(attr.mtime as i64, host.mtime(), "{what}: mtime");
    if let Some(first) = inos.insert((host.dev(), host.ino()), attr.ino) {
        assert_eq!(first, attr.ino, "{what}: hard links share one inode");
    }
    match kind {
        FileType::Directory => compare_directory(fs, host_path, image_path, inos),
        FileType::Regular => {
            assert_eq!(attr.nlink as u64, host.nlink(), "{what}: links");
            assert_eq!(read_all(fs, attr.ino), fs::read(host_path).unwrap(), "{what}: content");
        }
        FileType::Symlink => {
            let target = fs::read_link(host_path).unwrap();
            assert_eq!(fs.readlink(attr.ino).unwrap(), target.as_os_str().as_bytes(), "{what}: target");
            assert_eq!(attr.size, target.as_os_str().len() as u64, "{what}: size");
        }
        _ => assert_eq!(attr.size, 0, "{what}: size"),
    }
}

#[test]
fn source_date_epoch_makes_identical_images() {
    let scratch = Scratch::new("reproducible");
    let source = scratch.path("src");
    fs::create_dir(&source).unwrap();
    build_tree(&source);
    // Every time in the tree is later than the epoch, so all are clamped,
    // except the empty file's, set earlier. (Times earlier than the epoch
    // are kept as they are; an atime older than its mtime would be bumped
    // by the first run's reading, and so differ in the second.)
    let epoch: u32 = 900_000_000;
    let (early_atime, early_mtime) = (800_000_000, 850_000_000);
    set_times(&source.join("empty"), early_atime, early_mtime);

    let build = |name: &str| {
        let image = scratch.path(name);
        let output = mkfs_binary()
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args(["-o", text(&image), "-s", "64", "--label", "repro", "-p", text(&source)])
            .output()
            .unwrap();
        assert_success(&output);
        fs::read(image).unwrap()
    };
    let first = build("first.img");
    let second = build("second.img");
    assert!(first == second, "two runs with SOURCE_DATE_EPOCH differ");

    let fs = mount(&scratch.path("first.img"));
    let hello = fs.getattr(fs.resolve(b"/hello.txt", false).unwrap()).unwrap();
    assert_eq!((hello.atime, hello.mtime, hello.ctime), (epoch, epoch, epoch), "later times are clamped");
    let empty = fs.getattr(fs.resolve(b"/empty", false).unwrap()).unwrap();
    assert_eq!((empty.atime, empty.mtime), (early_atime, early_mtime), "earlier times are kept");
    let info = fs.info();
    assert_eq!(info.superblock.write_time, epoch as u64);
    assert_eq!(info.superblock.mount_count, 0, "mkfs's own mount is not counted");
    assert_eq!(info.extension.unwrap().created_time, epoch as u64);
}

#[test]
fn attrs_file_sets_owner_and_mode() {
    let scratch = Scratch::new("attrs");
    let source = scratch.path("src");
    write_file(&source.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n");
    write_file(&source.join("bin/su"), b"");
    fs::create_dir(source.join("tmp")).unwrap();
    let attrs = scratch.path("attrs.txt");
    fs::write(
        &attrs,
        "# ownership for the image\n\n/ 0 0 755\n/etc/passwd 0 42 0644 # keep the type\n/bin/su 0 0 4755\n/tmp/ 7 8 1777\n/bin 1 2\n",
    )
    .unwrap();
    let image = scratch.path("out.img");

    let output = mkfs(&["-o", text(&image), "-s", "8", "-p", text(&source), "--attrs", text(&attrs)]);
    assert_success(&output);
    assert!(stdout(&output).contains(&format!("  Attributes: 5 entries from {}", attrs.display())));

    let fs = mount(&image);
    let attr_of = |path: &[u8]| fs.getattr(fs.resolve(path, false).unwrap()).unwrap();
    let passwd = attr_of(b"/etc/passwd");
    assert_eq!((passwd.kind, passwd.perm, passwd.uid, passwd.gid), (FileType::Regular, 0o644, 0, 42));
    assert_eq!(attr_of(b"/bin/su").perm, 0o4755);
    let tmp = attr_of(b"/tmp");
    assert_eq!((tmp.kind, tmp.perm, tmp.uid, tmp.gid), (FileType::Directory, 0o1777, 7, 8));
    let bin = attr_of(b"/bin");
    assert_eq!((bin.uid, bin.gid), (1, 2));
    assert_eq!(fs.getattr(ROOT_INO).unwrap().perm, 0o755);
}
