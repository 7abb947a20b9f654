//! The boot-time root: BlockFS-versus-TAR detection, and archives made by
//! the real GNU tar (gnu, ustar and pax formats) loaded into RAM
//! filesystems and compared, member by member, with the tree they came
//! from. Hostile archives are built byte by byte here. Needs root (mknod,
//! chown) and GNU tar 1.34+.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use blockfs::fs::{format, NewInode};
use blockfs::rootfs::tar::{events, EntryKind, Event, TarError, TarParser, RECORD_SIZE};
use blockfs::rootfs::{
    detect, detect_bytes, load_tar, normalize, Detected, ExtractOptions, Extractor, LargeIds, LoadError,
    LoadOptions, Loader, OnMemberError, Plan, Skipped, BLOCKFS_MESSAGE, TAR_MESSAGE,
};
use blockfs::{Error, FileSystem, FileType, FormatOptions, MemDevice, MountOptions, ROOT_INO};
use proptest::prelude::*;

// ---------------------------------------------------------------------
// Scratch directories and commands

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("blockfs-rootfs-{}-{tag}-{unique}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------
// The source tree and its archives

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Gnu,
    Ustar,
    Pax,
}

impl Format {
    fn flag(self) -> &'static str {
        match self {
            Format::Gnu => "--format=gnu",
            Format::Ustar => "--format=ustar",
            Format::Pax => "--format=pax",
        }
    }

    /// ustar has no long names, long link targets, or times outside
    /// 0 .. 8^11 seconds.
    fn is_ustar(self) -> bool {
        self == Format::Ustar
    }
}

/// A path over 100 bytes whose components each fit ustar's name field, so
/// ustar must split it across its prefix and name fields.
const PREFIX_SPLIT_PATH: &str =
    "a_directory_name_that_is_fairly_long_one/a_directory_name_that_is_fairly_long_two/\
     a_directory_name_that_is_fairly_long_three/leaf.txt";
/// Past the 4 MiB that direct and single-indirect pointers map.
const BIG_FILE_SIZE: usize = (9 << 19) + 123;

/// Deterministic bytes that no run of zeros hides.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect()
}

/// Builds the tree every format is tested on (without what ustar cannot
/// hold, for ustar).
fn build_tree(root: &Path, format: Format) {
    let at = |relative: &str| root.join(relative);
    for dir in ["dir/sub/deep", "dir/setgid_dir", "tmp", "dev", "empty_dir"] {
        fs::create_dir_all(at(dir)).unwrap();
    }
    fs::write(at("dir/hello.txt"), b"hello, rootfs\n").unwrap();
    fs::write(at("dir/sub/deep/nested.txt"), pattern(5000, 1)).unwrap();
    fs::write(at("empty"), b"").unwrap();
    fs::write(at("big.bin"), pattern(BIG_FILE_SIZE, 2)).unwrap();
    fs::create_dir_all(at(PREFIX_SPLIT_PATH).parent().unwrap()).unwrap();
    fs::write(at(PREFIX_SPLIT_PATH), b"split across prefix and name\n").unwrap();
    fs::write(at("suid"), b"#!/bin/sh\n").unwrap();
    fs::write(at("secret"), b"s").unwrap();
    std::os::unix::fs::symlink("hello.txt", at("dir/link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", at("abs_link")).unwrap();
    std::os::unix::fs::symlink("../big.bin", at("dir/up")).unwrap();
    fs::hard_link(at("dir/hello.txt"), at("dir/hard")).unwrap();
    run("mkfifo", &[path_str(&at("fifo"))]);
    run("mknod", &[path_str(&at("dev/null")), "c", "1", "3"]);
    run("mknod", &[path_str(&at("dev/sda1")), "b", "8", "1"]);
    run("mknod", &[path_str(&at("dev/wide")), "c", "259", "70000"]);
    for (mode, path) in [("4755", "suid"), ("2755", "dir/setgid_dir"), ("1777", "tmp"), ("600", "secret")] {
        run("chmod", &[mode, path_str(&at(path))]);
    }
    run("chown", &["1234:5678", path_str(&at("dir/hello.txt"))]);
    run("chown", &["42:43", path_str(&at("dir"))]);
    run("chown", &["-h", "7:8", path_str(&at("dir/link"))]);
    if !format.is_ustar() {
        let long_name = format!("long/{}", "n".repeat(150));
        fs::create_dir_all(at("long")).unwrap();
        fs::write(at(&long_name), b"long name\n").unwrap();
        // Sorted after the long name, so its link target is the long name.
        fs::hard_link(at(&long_name), at("long/z_hard_to_long")).unwrap();
        std::os::unix::fs::symlink("t".repeat(120), at("long/long_target")).unwrap();
        fs::write(at("before_1970"), b"old").unwrap();
        fs::write(at("after_2106"), b"new").unwrap();
    }
    stamp_times(root);
    if !format.is_ustar() {
        run("touch", &["-d", "1960-01-01 UTC", path_str(&at("before_1970"))]);
        run("touch", &["-d", "2300-01-01 UTC", path_str(&at("after_2106"))]);
    }
    run("chmod", &["750", path_str(root)]);
}

/// Gives every path a distinct mtime, deepest first so a directory's time
/// is set after its children are in place.
fn stamp_times(root: &Path) {
    let mut paths = vec![root.to_path_buf()];
    collect(root, &mut paths);
    paths.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for (index, path) in paths.iter().enumerate() {
        let stamp = format!("@{}", 1_000_000_000 + index * 1000);
        run("touch", &["-h", "-d", &stamp, path_str(path)]);
    }
}

fn collect(dir: &Path, paths: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        paths.push(path.clone());
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            collect(&path, paths);
        }
    }
}

/// Archives `source` with GNU tar; returns the archive's path.
fn make_archive(scratch: &TempDir, source: &Path, format: Format) -> PathBuf {
    let archive = scratch.join(&format!("{format:?}.tar"));
    run("tar", &[format.flag(), "--sort=name", "-cf", path_str(&archive), "-C", path_str(source), "."]);
    archive
}

fn tree_and_archive(format: Format) -> (TempDir, PathBuf, PathBuf) {
    let scratch = TempDir::new(&format!("{format:?}"));
    let source = scratch.join("src");
    fs::create_dir(&source).unwrap();
    build_tree(&source, format);
    let archive = make_archive(&scratch, &source, format);
    (scratch, source, archive)
}

// ---------------------------------------------------------------------
// Comparing a loaded image with its source tree

fn kind_of(meta: &fs::Metadata) -> FileType {
    let kind = meta.file_type();
    match () {
        _ if kind.is_dir() => FileType::Directory,
        _ if kind.is_file() => FileType::Regular,
        _ if kind.is_symlink() => FileType::Symlink,
        _ if kind.is_fifo() => FileType::Fifo,
        _ if kind.is_char_device() => FileType::CharDevice,
        _ if kind.is_block_device() => FileType::BlockDevice,
        _ => panic!("unexpected file type {kind:?}"),
    }
}

/// glibc's `major()` / `minor()`.
fn split_rdev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn read_all(fs: &FileSystem<MemDevice>, ino: u32, size: u64) -> Vec<u8> {
    let mut contents = vec![0u8; size as usize];
    let mut done = 0;
    while done < contents.len() {
        let read = fs.read(ino, done as u64, &mut contents[done..]).unwrap();
        assert!(read > 0, "short read of inode {ino}");
        done += read;
    }
    contents
}

fn image_names(fs: &FileSystem<MemDevice>, ino: u32) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    fs.readdir(ino, 0, &mut |entry, _| {
        if entry.name != b"." && entry.name != b".." {
            names.push(entry.name.clone());
        }
        true
    })
    .unwrap();
    names.sort();
    names
}

/// Walks the source tree and the image together.
struct Comparison<'a> {
    fs: &'a FileSystem<MemDevice>,
    /// Source (device, inode) → image inode: hard links must agree.
    inodes: BTreeMap<(u64, u64), u32>,
    compared: usize,
}

impl Comparison<'_> {
    fn entry(&mut self, source: &Path, image_path: &str) {
        let meta = fs::symlink_metadata(source).unwrap();
        let ino =
            self.fs.resolve(image_path.as_bytes(), false).unwrap_or_else(|e| panic!("{image_path}: {e}"));
        let attr = self.fs.getattr(ino).unwrap();
        let what = format!("{image_path} (from {})", source.display());
        assert_eq!(attr.kind, kind_of(&meta), "{what}: type");
        if attr.kind != FileType::Symlink {
            assert_eq!(attr.perm as u32, meta.mode() & 0o7777, "{what}: permissions");
        }
        assert_eq!((attr.uid as u32, attr.gid as u32), (meta.uid(), meta.gid()), "{what}: owner");
        assert_eq!(attr.mtime as i64, meta.mtime().clamp(0, u32::MAX as i64), "{what}: mtime");
        assert_eq!(attr.nlink as u64, meta.nlink(), "{what}: link count");
        let first_ino = *self.inodes.entry((meta.dev(), meta.ino())).or_insert(attr.ino);
        assert_eq!(first_ino, attr.ino, "{what}: hard links must share an inode");
        match attr.kind {
            FileType::Regular => {
                assert_eq!(attr.size, meta.len(), "{what}: size");
                assert!(read_all(self.fs, ino, attr.size) == fs::read(source).unwrap(), "{what}: contents");
            }
            FileType::Symlink => {
                let target = fs::read_link(source).unwrap();
                assert_eq!(self.fs.readlink(ino).unwrap(), target.as_os_str().as_encoded_bytes(), "{what}");
            }
            FileType::CharDevice | FileType::BlockDevice => {
                assert_eq!(attr.rdev, split_rdev(meta.rdev()), "{what}: device number");
            }
            FileType::Directory => self.directory(source, image_path, ino),
            _ => {}
        }
        self.compared += 1;
    }

    fn directory(&mut self, source: &Path, image_path: &str, ino: u32) {
        let mut names: Vec<Vec<u8>> =
            fs::read_dir(source).unwrap().map(|e| e.unwrap().file_name().into_encoded_bytes()).collect();
        names.sort();
        assert_eq!(image_names(self.fs, ino), names, "{image_path}: directory entries");
        for name in names {
            let name = String::from_utf8(name).unwrap();
            self.entry(&source.join(&name), &format!("{}/{name}", image_path.trim_end_matches('/')));
        }
    }
}

/// Compares every member; returns how many were compared.
fn assert_same_tree(source: &Path, fs: &FileSystem<MemDevice>) -> usize {
    let mut comparison = Comparison { fs, inodes: BTreeMap::new(), compared: 0 };
    comparison.entry(source, "/");
    comparison.compared
}

fn check_format(format: Format) {
    let (_scratch, source, archive) = tree_and_archive(format);
    let bytes = fs::read(&archive).unwrap();
    let fs = load_tar(&bytes, &LoadOptions::default()).unwrap_or_else(|e| panic!("{format:?}: {e}"));
    let compared = assert_same_tree(&source, &fs);
    assert!(compared >= 25, "{format:?}: only {compared} members compared");
}

#[test]
fn gnu_archive_loads_exactly() {
    check_format(Format::Gnu);
}

#[test]
fn ustar_archive_loads_exactly() {
    check_format(Format::Ustar);
}

#[test]
fn pax_archive_loads_exactly() {
    check_format(Format::Pax);
}

#[test]
fn formats_use_the_headers_they_are_meant_to() {
    let typeflags = |format| {
        let (_scratch, _, archive) = tree_and_archive(format);
        let bytes = fs::read(archive).unwrap();
        let flags: Vec<u8> =
            bytes.chunks(RECORD_SIZE).filter(|r| r[257..262] == *b"ustar").map(|r| r[156]).collect();
        (bytes, flags)
    };
    let (_, gnu) = typeflags(Format::Gnu);
    assert!(gnu.contains(&b'L') && gnu.contains(&b'K'), "GNU long name and long link headers");
    let (_, pax) = typeflags(Format::Pax);
    assert!(pax.contains(&b'x'), "pax extended headers");
    let (ustar, _) = typeflags(Format::Ustar);
    let prefix_used = ustar
        .chunks(RECORD_SIZE)
        .any(|r| r[257..263] == *b"ustar\0" && r[345..352] == *b"./a_dir" && r[0] != 0);
    assert!(prefix_used, "ustar splits the long path into prefix and name");
}

/// What a host tool does with a multi-gigabyte archive: stream it through
/// a buffer of a few records, once to plan, once to load.
fn stream(path: &Path, buffer_records: usize, mut handle: impl FnMut(Event<'_>) -> Result<(), LoadError>) {
    let mut file = File::open(path).unwrap();
    let mut buffer = vec![0u8; buffer_records * RECORD_SIZE];
    let mut parser = TarParser::new();
    let mut filled = 0;
    loop {
        while filled < buffer.len() {
            let read = file.read(&mut buffer[filled..]).unwrap();
            if read == 0 {
                break;
            }
            filled += read;
        }
        if filled < RECORD_SIZE {
            assert_eq!(filled, 0, "archive ends mid-record");
            parser.finish().unwrap();
            return;
        }
        let step = parser.feed(&buffer[..filled]).unwrap();
        let consumed = step.consumed;
        let ended = matches!(step.event, Some(Event::End));
        if let Some(event) = step.event {
            handle(event).unwrap();
        }
        if ended {
            return;
        }
        buffer.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
}

#[test]
fn streamed_archive_loads_like_one_in_memory() {
    let (_scratch, source, archive) = tree_and_archive(Format::Pax);
    let mut plan = Plan::new();
    stream(&archive, 3, |event| plan.note(&event));
    let mut loader = Loader::new(&plan, &LoadOptions::default()).unwrap();
    stream(&archive, 3, |event| loader.apply(event));
    let fs = loader.finish().unwrap();
    assert_same_tree(&source, &fs);
}

#[test]
fn loaded_root_is_writable_and_sized_with_slack() {
    let (_scratch, _, archive) = tree_and_archive(Format::Gnu);
    let fs = load_tar(&fs::read(archive).unwrap(), &LoadOptions::default()).unwrap();
    let statfs = fs.statfs();
    assert!(statfs.blocks as u64 * 4096 >= 64 << 20, "at least 64 MiB");
    assert!(statfs.free_blocks as u64 * 4096 >= 16 << 20, "16 MiB of slack");
    assert!(!fs.has_journal(), "a RAM root needs no journal");
    let tmp = fs.resolve(b"/tmp", false).unwrap();
    let new = fs.create(tmp, b"scratch", NewInode { perm: 0o644, uid: 0, gid: 0 }).unwrap();
    assert_eq!(fs.write(new.ino, 0, &pattern(100_000, 3)).unwrap(), 100_000);
    assert!(read_all(&fs, new.ino, 100_000) == pattern(100_000, 3));
    let big = fs.resolve(b"/big.bin", false).unwrap();
    fs.unlink(ROOT_INO, b"big.bin").unwrap();
    assert!(fs.getattr(big).is_err());
}

// ---------------------------------------------------------------------
// Detection

#[test]
fn detection_tells_blockfs_tar_and_unknown_apart() {
    let mut image = format(MemDevice::new(1024), &FormatOptions::new(1024)).unwrap();
    assert_eq!(detect(&mut image).unwrap(), Detected::BlockFs);
    assert_eq!(Detected::BlockFs.message(), Some(BLOCKFS_MESSAGE));
    assert_eq!(BLOCKFS_MESSAGE, "[ROOTFS] BlockFS magic detected -- mounting persistent root");

    let (_scratch, _, archive) = tree_and_archive(Format::Ustar);
    let mut bytes = fs::read(archive).unwrap();
    bytes.resize(bytes.len().next_multiple_of(4096), 0);
    assert_eq!(detect(&mut MemDevice::from_bytes(bytes.clone())).unwrap(), Detected::Tar);
    assert_eq!(detect_bytes(&bytes[..4096]), Detected::Tar);
    assert_eq!(Detected::Tar.message(), Some(TAR_MESSAGE));
    assert_eq!(TAR_MESSAGE, "[ROOTFS] Loading TAR rootfs from virtio-blk...");

    assert_eq!(detect_bytes(&[0; 4096]), Detected::Tar, "zeros are an empty archive");
    for seed in 0..64 {
        assert_eq!(detect_bytes(&pattern(4096, seed)), Detected::Unknown, "random block {seed}");
    }
    assert_eq!(detect_bytes(&[0x46, 0x4b, 0x4c]), Detected::Unknown, "too short for the magic");
    assert_eq!(detect_bytes(&0x424C_4B46u32.to_le_bytes()), Detected::BlockFs);
    assert_eq!(detect(&mut MemDevice::new(0)).unwrap(), Detected::Unknown);
    assert_eq!(Detected::Unknown.message(), None);
}

#[test]
fn empty_archive_gives_an_empty_root() {
    let scratch = TempDir::new("empty");
    let archive = scratch.join("empty.tar");
    run("tar", &["-cf", path_str(&archive), "-T", "/dev/null"]);
    let bytes = fs::read(archive).unwrap();
    assert_eq!(detect_bytes(&bytes[..4096]), Detected::Tar);
    let fs = load_tar(&bytes, &LoadOptions::default()).unwrap();
    assert!(image_names(&fs, ROOT_INO).is_empty());
    assert!(load_tar(&[], &LoadOptions::default()).is_ok(), "no bytes at all: an empty archive");
}

// ---------------------------------------------------------------------
// Archives built byte by byte

fn set_octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

fn seal(header: &mut [u8]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| b as u32).sum();
    set_octal(&mut header[148..155], sum as u64);
}

/// A ustar header: mode 0644, root-owned, mtime 1e9.
fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; 512] {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name);
    set_octal(&mut header[100..108], 0o644);
    set_octal(&mut header[108..116], 0);
    set_octal(&mut header[116..124], 0);
    set_octal(&mut header[124..136], size);
    set_octal(&mut header[136..148], 1_000_000_000);
    header[156] = typeflag;
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    seal(&mut header);
    header
}

fn with_field(mut header: [u8; 512], at: usize, bytes: &[u8]) -> [u8; 512] {
    header[at..at + bytes.len()].copy_from_slice(bytes);
    seal(&mut header);
    header
}

/// A header followed by its data, padded to whole records.
fn member(header: [u8; 512], data: &[u8]) -> Vec<u8> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len().next_multiple_of(RECORD_SIZE), 0);
    bytes
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    member(header(name.as_bytes(), b'0', data.len() as u64), data)
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut length = body + 1;
    while length != body + length.to_string().len() {
        length = body + length.to_string().len();
    }
    let mut record = format!("{length} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn pax(typeflag: u8, records: &[(&str, &[u8])]) -> Vec<u8> {
    let body: Vec<u8> = records.iter().flat_map(|(key, value)| pax_record(key, value)).collect();
    member(header(b"PaxHeader", typeflag, body.len() as u64), &body)
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = members.concat();
    bytes.extend_from_slice(&[0; 2 * RECORD_SIZE]);
    bytes
}

fn load(bytes: &[u8]) -> Result<FileSystem<MemDevice>, LoadError> {
    load_tar(bytes, &LoadOptions::default())
}

fn refused(bytes: &[u8]) -> LoadError {
    load(bytes).expect_err("the archive must be refused")
}

fn contents_at(fs: &FileSystem<MemDevice>, path: &str) -> Vec<u8> {
    let ino = fs.resolve(path.as_bytes(), false).unwrap();
    read_all(fs, ino, fs.getattr(ino).unwrap().size)
}

#[test]
fn bad_checksum_names_the_record() {
    let mut bytes = archive(&[file("a", b"one"), file("b", b"two")]);
    bytes[1024] ^= 0x20;
    let error = refused(&bytes);
    assert_eq!(error, LoadError::Tar(TarError::BadChecksum { offset: 1024 }));
    assert!(error.to_string().contains("byte 1024"), "{error}");
}

#[test]
fn signed_checksums_and_base256_numbers_are_read() {
    let mut signed = header("caf\u{e9}".as_bytes(), b'0', 0);
    signed[148..156].fill(b' ');
    let sum: i64 = signed.iter().map(|&b| b as i8 as i64).sum();
    set_octal(&mut signed[148..155], sum as u64);
    let mut base256_size = [0u8; 12];
    base256_size[0] = 0x80;
    base256_size[11] = 5;
    let sized = with_field(header(b"five", b'0', 0), 124, &base256_size);
    let fs = load(&archive(&[member(signed, b""), member(sized, b"12345")])).unwrap();
    assert!(fs.resolve("/caf\u{e9}".as_bytes(), false).is_ok());
    assert_eq!(contents_at(&fs, "/five"), b"12345");
}

#[test]
fn truncation_is_reported_and_a_missing_end_marker_is_fine() {
    let whole = archive(&[file("a", &[7; 10])]);
    assert!(load(&whole[..1024]).is_ok(), "no end marker");
    assert_eq!(refused(&whole[..612]), LoadError::Tar(TarError::Truncated { offset: 0, missing: 10 }));
    assert_eq!(refused(&whole[..1124]), LoadError::Tar(TarError::PartialRecord { offset: 1024, len: 100 }));

    let (_scratch, _, real) = tree_and_archive(Format::Gnu);
    let real = fs::read(real).unwrap();
    let big = events(&real)
        .find_map(|event| match event.unwrap() {
            Event::Entry(entry) if entry.path == b"./big.bin" => Some(entry.offset),
            _ => None,
        })
        .unwrap();
    let cut = big as usize + RECORD_SIZE + 100 * RECORD_SIZE;
    let error = refused(&real[..cut]);
    let missing = BIG_FILE_SIZE as u64 - 100 * RECORD_SIZE as u64;
    assert_eq!(error, LoadError::Tar(TarError::Truncated { offset: big, missing }));
}

#[test]
fn oversized_and_malformed_pax_headers_are_refused() {
    let huge = member(header(b"PaxHeader", b'x', 100_000), &[b'x'; 1000]);
    assert_eq!(
        refused(&archive(&[huge, file("a", b"")])),
        LoadError::Tar(TarError::MetadataTooLarge { offset: 0, size: 100_000 })
    );
    let bad_length = member(header(b"PaxHeader", b'x', 12), b"99 path=abc\n");
    assert_eq!(
        refused(&archive(&[bad_length, file("a", b"")])),
        LoadError::Tar(TarError::BadPaxRecord { offset: 0 })
    );
    let dangling = pax(b'x', &[("path", b"never")]);
    assert_eq!(refused(&archive(&[dangling])), LoadError::Tar(TarError::DanglingMetadata { offset: 0 }));
}

#[test]
fn huge_declared_sizes_allocate_nothing() {
    let mut ten_gb = [0u8; 12];
    ten_gb[0] = 0x80;
    ten_gb[4..].copy_from_slice(&10_000_000_000u64.to_be_bytes());
    let huge = member(with_field(header(b"huge", b'0', 0), 124, &ten_gb), &[1; 1024]);
    let bytes = archive(&[huge]);
    let seen: Vec<_> = events(&bytes).collect();
    assert!(matches!(&seen[0], Ok(Event::Entry(entry)) if entry.size == 10_000_000_000));
    assert!(matches!(seen.last(), Some(Err(TarError::Truncated { offset: 0, .. }))));
    assert!(matches!(load(&bytes), Err(LoadError::FileTooBig { size: 10_000_000_000, .. })));

    let under_limit = archive(&[pax(b'x', &[("size", b"3000000000")]), file("big", &[1; 512])]);
    assert!(matches!(load(&under_limit), Err(LoadError::Tar(TarError::Truncated { offset: 1024, .. }))));
}

#[test]
fn paths_never_leave_the_root() {
    for path in ["../escape", "a/../../escape", "./../escape"] {
        assert_eq!(
            refused(&archive(&[file(path, b"x")])),
            LoadError::UnsafePath { path: path.as_bytes().to_vec() },
            "{path}"
        );
    }
    let link = member(with_field(header(b"inside", b'1', 0), 157, b"../outside"), b"");
    assert!(matches!(load(&archive(&[link])), Err(LoadError::UnsafePath { .. })));

    let fs = load(&archive(&[file("/etc/x", b"absolute"), file("//./srv//y", b"doubled")])).unwrap();
    assert_eq!(contents_at(&fs, "/etc/x"), b"absolute");
    assert_eq!(contents_at(&fs, "/srv/y"), b"doubled");
    assert_eq!(image_names(&fs, ROOT_INO), [b"etc".to_vec(), b"srv".to_vec()]);
    let implied = fs.getattr(fs.resolve(b"/etc", false).unwrap()).unwrap();
    assert_eq!((implied.kind, implied.perm, implied.uid), (FileType::Directory, 0o755, 0));

    let long = "n".repeat(256);
    assert_eq!(
        refused(&archive(&[pax(b'x', &[("path", long.as_bytes())]), file("short", b"")])),
        LoadError::NameTooLong { path: long.into_bytes() }
    );
}

#[test]
fn symlinked_parents_are_not_followed() {
    let link = member(with_field(header(b"lnk", b'2', 0), 157, b"/tmp"), b"");
    let bytes = archive(&[file("tmp/keep", b""), link, file("lnk/file", b"x")]);
    let error = refused(&bytes);
    assert_eq!(error, LoadError::Filesystem { path: b"lnk/file".to_vec(), error: Error::NotDir });
}

#[test]
fn names_with_nul_are_refused() {
    let long_name = member(header(b"././@LongLink", b'L', 4), b"a\0b\0");
    assert_eq!(
        refused(&archive(&[long_name, file("x", b"")])),
        LoadError::Tar(TarError::NulInPath { offset: 0 })
    );
    let pax_path = pax(b'x', &[("path", b"a\0b")]);
    assert_eq!(
        refused(&archive(&[pax_path, file("x", b"")])),
        LoadError::Tar(TarError::NulInPath { offset: 0 })
    );
}

#[test]
fn later_members_replace_earlier_ones() {
    let hard = |name: &[u8], target: &[u8]| member(with_field(header(name, b'1', 0), 157, target), b"");
    let bytes = archive(&[
        file("f", b"first"),
        hard(b"old_link", b"f"),
        file("f", b"second"),
        hard(b"new_link", b"f"),
        hard(b"f", b"f"),
        file("d", b"file first"),
        member(header(b"d/", b'5', 0), b""),
        member(header(b"e/", b'5', 0), b""),
        file("e", b"now a file"),
    ]);
    let fs = load(&bytes).unwrap();
    assert_eq!(contents_at(&fs, "/f"), b"second");
    assert_eq!(contents_at(&fs, "/old_link"), b"first", "a link keeps the inode it named");
    let f = fs.resolve(b"/f", false).unwrap();
    assert_eq!(fs.resolve(b"/new_link", false).unwrap(), f);
    assert_eq!(fs.getattr(f).unwrap().nlink, 2);
    assert_eq!(fs.getattr(fs.resolve(b"/d", false).unwrap()).unwrap().kind, FileType::Directory);
    assert_eq!(contents_at(&fs, "/e"), b"now a file");

    let full_dir = archive(&[file("d/child", b""), file("d", b"")]);
    let error = refused(&full_dir);
    assert_eq!(error, LoadError::Filesystem { path: b"d".to_vec(), error: Error::NotEmpty });
}

#[test]
fn symlink_targets_past_the_limit_are_refused() {
    let symlink_to =
        |target: &[u8]| archive(&[pax(b'x', &[("linkpath", target)]), member(header(b"lnk", b'2', 0), b"")]);
    let target = vec![b't'; 4096];
    assert_eq!(
        refused(&symlink_to(&target)),
        LoadError::SymlinkTargetTooLong { path: b"lnk".to_vec(), len: 4096 }
    );
    let fs = load(&symlink_to(&target[1..])).unwrap();
    assert_eq!(fs.readlink(fs.resolve(b"/lnk", false).unwrap()).unwrap(), &target[1..]);
}

#[test]
fn hard_link_to_nothing_is_refused() {
    let link = member(with_field(header(b"link", b'1', 0), 157, b"missing"), b"");
    let error = refused(&archive(&[link]));
    assert_eq!(
        error,
        LoadError::HardLinkTargetMissing { path: b"link".to_vec(), target: b"missing".to_vec() }
    );
    assert!(error.to_string().contains("missing"));
}

#[test]
fn unknown_types_are_skipped_with_their_data_and_gnu_sparse_files_extracted() {
    let vendor = member(header(b"vendor", b'Z', 700), &[b'Z'; 700]);
    let bytes = archive(&[vendor, file("after", b"still here")]);
    let skipped: Vec<_> = events(&bytes).filter_map(Result::ok).collect();
    assert!(matches!(&skipped[0], Event::Skipped { offset: 0, typeflag: b'Z', path } if path == b"vendor"));
    assert_eq!(contents_at(&load(&bytes).unwrap(), "/after"), b"still here");

    // Ten data runs need old-GNU sparse extension records after the header.
    let scratch = TempDir::new("sparse");
    let source = scratch.join("src");
    fs::create_dir(&source).unwrap();
    let mut sparse = File::create(source.join("sparse")).unwrap();
    for run in 0..10u64 {
        use std::io::{Seek, SeekFrom, Write};
        sparse.seek(SeekFrom::Start(run << 20)).unwrap();
        sparse.write_all(&[b'x'; 100]).unwrap();
    }
    fs::write(source.join("z_after"), b"after the sparse file").unwrap();
    let archive = scratch.join("sparse.tar");
    run(
        "tar",
        &["-S", "--format=gnu", "--sort=name", "-cf", path_str(&archive), "-C", path_str(&source), "."],
    );
    let bytes = fs::read(archive).unwrap();
    let sparse_header =
        bytes.chunks(RECORD_SIZE).find(|r| r[156] == b'S').expect("tar wrote a sparse member");
    assert_eq!(sparse_header[482], 1, "extension records follow");
    let fs = load(&bytes).unwrap();
    let mut expected = vec![0u8; (9 << 20) + 100];
    for run in 0..10usize {
        expected[run << 20..(run << 20) + 100].fill(b'x');
    }
    assert!(contents_at(&fs, "/sparse") == expected, "sparse file's contents");
    // Holes and zero blocks take no space.
    let attr = fs.getattr(fs.resolve(b"/sparse", false).unwrap()).unwrap();
    assert!(attr.blocks < 40, "{} blocks for 10 runs of 100 bytes", attr.blocks);
    assert_eq!(contents_at(&fs, "/z_after"), b"after the sparse file");
}

#[test]
fn pax_globals_apply_until_deleted() {
    let bytes = archive(&[
        pax(b'g', &[("mtime", b"1234.999"), ("uid", b"77")]),
        file("a", b""),
        pax(b'x', &[("mtime", b""), ("gid", b"88"), ("uname", b"ignored")]),
        file("b", b""),
        file("c", b""),
    ]);
    let fs = load(&bytes).unwrap();
    let attr = |path: &str| fs.getattr(fs.resolve(path.as_bytes(), false).unwrap()).unwrap();
    assert_eq!((attr("/a").mtime, attr("/a").uid, attr("/a").gid), (1234, 77, 0));
    assert_eq!((attr("/b").mtime, attr("/b").uid, attr("/b").gid), (1_000_000_000, 77, 88));
    assert_eq!((attr("/c").mtime, attr("/c").uid, attr("/c").gid), (1234, 77, 0));
}

#[test]
fn large_ids_are_refused_or_squashed() {
    let bytes = archive(&[pax(b'x', &[("uid", b"70000")]), file("owned", b"")]);
    assert_eq!(refused(&bytes), LoadError::IdTooLarge { path: b"owned".to_vec(), id: 70000 });
    let options = LoadOptions { large_ids: LargeIds::SquashTo(65534), ..LoadOptions::default() };
    let fs = load_tar(&bytes, &options).unwrap();
    assert_eq!(fs.getattr(fs.resolve(b"/owned", false).unwrap()).unwrap().uid, 65534);
}

#[test]
fn device_numbers_an_inode_cannot_hold_are_refused() {
    let mut device = header(b"dev", b'3', 0);
    set_octal(&mut device[329..337], 5000);
    set_octal(&mut device[337..345], 1);
    seal(&mut device);
    let error = refused(&archive(&[member(device, b"")]));
    assert_eq!(error, LoadError::DeviceNumberTooLarge { path: b"dev".to_vec(), major: 5000, minor: 1 });
}

#[test]
fn root_member_must_be_a_directory() {
    let error = refused(&archive(&[file(".", b"")]));
    assert!(matches!(error, LoadError::Filesystem { error: Error::IsDir, .. }), "{error:?}");
    let fs = load(&archive(&[member(with_field(header(b"./", b'5', 0), 100, b"0000700\0"), b"")])).unwrap();
    assert_eq!(fs.getattr(ROOT_INO).unwrap().perm, 0o700);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().mtime, 1_000_000_000);
}

#[test]
fn image_limit_trims_slack_but_never_contents() {
    let bytes = archive(&[file("data", &pattern(3 << 20, 4))]);
    let tight = LoadOptions { max_image_bytes: 8 << 20, ..LoadOptions::default() };
    let fs = load_tar(&bytes, &tight).unwrap();
    assert_eq!(fs.statfs().blocks, 2048);
    assert!(contents_at(&fs, "/data") == pattern(3 << 20, 4));
    let too_small = LoadOptions { max_image_bytes: 2 << 20, ..LoadOptions::default() };
    assert!(matches!(load_tar(&bytes, &too_small), Err(LoadError::ImageTooLarge { limit: 2097152, .. })));
}

// ---------------------------------------------------------------------
// Extracting into a mounted filesystem

/// A fresh 16 MiB image, mounted.
fn fresh_image() -> FileSystem<MemDevice> {
    let device = format(MemDevice::new(4096), &FormatOptions::new(4096)).unwrap();
    FileSystem::mount(device, MountOptions::default()).unwrap()
}

fn extract(fs: &FileSystem<MemDevice>, root: u32, bytes: &[u8], options: ExtractOptions) -> Vec<Skipped> {
    let mut extractor = Extractor::new(fs, root, options);
    let mut skipped = Vec::new();
    for event in events(bytes) {
        extractor.apply(event.unwrap()).unwrap();
        skipped.extend(extractor.take_skipped());
    }
    skipped.extend(extractor.finish().unwrap());
    skipped
}

#[test]
fn skipped_members_are_reported_and_nothing_lands_outside_the_directory() {
    let fs = fresh_image();
    let dest = fs.mkdir(ROOT_INO, b"dest", NewInode { perm: 0o755, uid: 0, gid: 0 }).unwrap().ino;
    let hard = |name: &[u8], target: &[u8]| member(with_field(header(name, b'1', 0), 157, target), b"");
    let bytes = archive(&[
        file("../escape", b"evil"),
        member(with_field(header(b"lnk", b'2', 0), 157, b"/"), b""),
        file("lnk/through", b"evil"),
        hard(b"hard", b"../outside"),
        hard(b"hard2", b"nowhere"),
        pax(b'x', &[("uid", b"70000")]),
        file("owned", b"data of a skipped member"),
        member(header(b"vendor", b'Z', 10), &[b'Z'; 10]),
        file("/absolute/kept", b"fine"),
        file("./good", b"ok"),
    ]);
    let options = ExtractOptions { on_member_error: OnMemberError::Skip, ..ExtractOptions::default() };
    let skipped = extract(&fs, dest, &bytes, options);
    let found: Vec<(Option<&[u8]>, &LoadError)> =
        skipped.iter().map(|s| (s.path.as_deref(), &s.error)).collect();
    assert_eq!(
        found,
        [
            (None, &LoadError::UnsafePath { path: b"../escape".to_vec() }),
            (
                Some(&b"lnk/through"[..]),
                &LoadError::Filesystem { path: b"lnk/through".to_vec(), error: Error::NotDir }
            ),
            (Some(&b"hard"[..]), &LoadError::UnsafePath { path: b"../outside".to_vec() }),
            (
                Some(&b"hard2"[..]),
                &LoadError::HardLinkTargetMissing { path: b"hard2".to_vec(), target: b"nowhere".to_vec() }
            ),
            (Some(&b"owned"[..]), &LoadError::IdTooLarge { path: b"owned".to_vec(), id: 70000 }),
            (Some(&b"vendor"[..]), &LoadError::UnsupportedType { path: b"vendor".to_vec(), typeflag: b'Z' }),
        ]
    );
    assert_eq!(image_names(&fs, ROOT_INO), [b"dest".to_vec()], "nothing outside the directory");
    assert_eq!(image_names(&fs, dest), [b"absolute".to_vec(), b"good".to_vec(), b"lnk".to_vec()]);
    assert_eq!(contents_at(&fs, "/dest/good"), b"ok");
    assert_eq!(contents_at(&fs, "/dest/absolute/kept"), b"fine");
}

#[test]
fn errors_no_later_member_escapes_end_a_skipping_extraction() {
    let fs = fresh_image();
    let free = fs.statfs().free_blocks as usize;
    let bytes = archive(&[file("huge", &pattern((free + 1) * 4096, 5)), file("after", b"")]);
    let options = ExtractOptions { on_member_error: OnMemberError::Skip, ..ExtractOptions::default() };
    let mut extractor = Extractor::new(&fs, ROOT_INO, options);
    let error = events(&bytes).map(|event| extractor.apply(event.unwrap())).find_map(Result::err).unwrap();
    assert_eq!(error, LoadError::Filesystem { path: b"huge".to_vec(), error: Error::NoSpace });
    assert!(error.is_fatal());
}

#[test]
fn the_root_member_describes_the_extraction_directory_and_times_are_clamped() {
    let fs = fresh_image();
    let dest = fs.mkdir(ROOT_INO, b"dest", NewInode { perm: 0o755, uid: 0, gid: 0 }).unwrap().ino;
    let late = |name: &[u8], typeflag| {
        let mut record = header(name, typeflag, 0);
        set_octal(&mut record[100..108], 0o700);
        set_octal(&mut record[136..148], 3_000_000_000);
        seal(&mut record);
        member(record, b"")
    };
    let bytes = archive(&[late(b"./", b'5'), late(b"sub/", b'5'), late(b"sub/file", b'0')]);
    let options = ExtractOptions { latest_time: Some(2_000_000_000), ..ExtractOptions::default() };
    assert!(extract(&fs, dest, &bytes, options).is_empty());
    for path in ["/dest", "/dest/sub", "/dest/sub/file"] {
        let attr = fs.getattr(fs.resolve(path.as_bytes(), false).unwrap()).unwrap();
        assert_eq!((attr.perm, attr.mtime, attr.atime), (0o700, 2_000_000_000, 2_000_000_000), "{path}");
    }
    assert_eq!(fs.getattr(ROOT_INO).unwrap().perm, 0o755, "the image root is left alone");
}

#[test]
fn normalize_is_public_and_refuses_parent_components() {
    assert_eq!(normalize(b"/a//./b/").unwrap(), b"a/b");
    assert_eq!(normalize(b"..").unwrap_err(), LoadError::UnsafePath { path: b"..".to_vec() });
}

#[test]
fn planned_needs_bound_what_an_extraction_uses() {
    for format in [Format::Gnu, Format::Pax] {
        let (_scratch, _, archive) = tree_and_archive(format);
        let bytes = fs::read(archive).unwrap();
        let mut plan = Plan::new();
        for event in events(&bytes) {
            plan.note(&event.unwrap()).unwrap();
        }
        let needs = plan.needs();
        let fs = fresh_image();
        let before = fs.statfs();
        assert!(extract(&fs, ROOT_INO, &bytes, ExtractOptions::default()).is_empty());
        let after = fs.statfs();
        let used_blocks = (before.free_blocks - after.free_blocks) as u64;
        let used_inodes = (before.free_inodes - after.free_inodes) as u64;
        assert!(needs.blocks >= used_blocks, "{format:?}: {needs:?} against {used_blocks} blocks used");
        assert!(needs.blocks <= used_blocks + 8, "{format:?}: {needs:?} against {used_blocks} blocks used");
        assert_eq!(needs.inodes, used_inodes, "{format:?}");
        assert_eq!(needs.file_bytes, (BIG_FILE_SIZE + 5000 + 14 + 29 + 10 + 1 + 10 + 3 + 3) as u64);
    }
}

// ---------------------------------------------------------------------
// Random damage

/// Small real archives (gnu and pax) with every kind of member, and the
/// offsets of their header records.
fn samples() -> &'static [(Vec<u8>, Vec<usize>)] {
    static SAMPLES: OnceLock<Vec<(Vec<u8>, Vec<usize>)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let scratch = TempDir::new("samples");
        let source = scratch.join("src");
        fs::create_dir_all(source.join("d/e")).unwrap();
        fs::write(source.join("d/file"), pattern(3000, 5)).unwrap();
        fs::write(source.join(format!("d/{}", "l".repeat(120))), b"long").unwrap();
        fs::hard_link(source.join("d/file"), source.join("hard")).unwrap();
        std::os::unix::fs::symlink("d/file", source.join("sym")).unwrap();
        run("mknod", &[path_str(&source.join("null")), "c", "1", "3"]);
        [Format::Gnu, Format::Pax]
            .into_iter()
            .map(|format| {
                let bytes = fs::read(make_archive(&scratch, &source, format)).unwrap();
                let headers = bytes
                    .chunks(RECORD_SIZE)
                    .enumerate()
                    .filter(|(_, record)| record[257..262] == *b"ustar")
                    .map(|(index, _)| index * RECORD_SIZE)
                    .collect();
                (bytes, headers)
            })
            .collect()
    })
}

fn damage_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        b'0'..=b'7',
        Just(0u8),
        Just(0x80),
        Just(0xff),
        Just(b' '),
        Just(b'/'),
        Just(b'.')
    ]
}

#[derive(Clone, Debug)]
struct Damage {
    sample: usize,
    /// (header to hit, byte within it, new value)
    header_hits: Vec<(prop::sample::Index, usize, u8)>,
    /// (anywhere in the archive, new value)
    anywhere: Vec<(prop::sample::Index, u8)>,
    /// Recompute the checksums of damaged headers, so that parsing gets
    /// past them to the fields.
    reseal: bool,
    truncate: Option<prop::sample::Index>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        0..2usize,
        prop::collection::vec((any::<prop::sample::Index>(), 0..512usize, damage_byte()), 0..6),
        prop::collection::vec((any::<prop::sample::Index>(), damage_byte()), 0..4),
        prop::bool::weighted(0.85),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
    )
        .prop_map(|(sample, header_hits, anywhere, reseal, truncate)| Damage {
            sample,
            header_hits,
            anywhere,
            reseal,
            truncate,
        })
}

fn apply(damage: &Damage) -> Vec<u8> {
    let (original, headers) = &samples()[damage.sample];
    let mut bytes = original.clone();
    let mut hit_headers = Vec::new();
    for (header, at, value) in &damage.header_hits {
        let start = headers[header.index(headers.len())];
        bytes[start + at] = *value;
        hit_headers.push(start);
    }
    for (at, value) in &damage.anywhere {
        let at = at.index(bytes.len());
        bytes[at] = *value;
        hit_headers.push(at / RECORD_SIZE * RECORD_SIZE);
    }
    if damage.reseal {
        for start in hit_headers.into_iter().filter(|start| headers.contains(start)) {
            seal(&mut bytes[start..start + RECORD_SIZE]);
        }
    }
    if let Some(cut) = damage.truncate {
        bytes.truncate(cut.index(bytes.len()));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn damaged_archives_never_panic(damage in damage()) {
        let bytes = apply(&damage);
        let mut steps = 0;
        for event in events(&bytes) {
            steps += 1;
            prop_assert!(steps <= bytes.len() / RECORD_SIZE + 1, "parser made no progress");
            if let Err(error) = event {
                prop_assert!(!error.to_string().is_empty());
            }
        }
        let options = LoadOptions { max_image_bytes: 64 << 20, ..LoadOptions::default() };
        match load_tar(&bytes, &options) {
            Ok(fs) => prop_assert!(fs.statfs().blocks > 0),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn any_record_chunking_gives_the_same_members(chunks in prop::collection::vec(1..9usize, 1..64)) {
        let (bytes, _) = &samples()[1];
        let whole = members(bytes, &[usize::MAX]);
        prop_assert_eq!(members(bytes, &chunks), whole);
    }
}

/// Each member's event and its data, feeding `bytes` in chunks of the
/// given record counts (cycled).
fn members(bytes: &[u8], chunk_records: &[usize]) -> Vec<(String, Vec<u8>)> {
    let mut parser = TarParser::new();
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut at = 0usize;
    for &records in chunk_records.iter().cycle() {
        let end = bytes.len().min(at.saturating_add(records.saturating_mul(RECORD_SIZE)));
        if end - at < RECORD_SIZE {
            break;
        }
        let step = parser.feed(&bytes[at..end]).unwrap();
        at += step.consumed;
        match step.event {
            Some(Event::Entry(entry)) => members.push((format!("{entry:?}"), Vec::new())),
            Some(Event::Data(data)) => members.last_mut().unwrap().1.extend_from_slice(data),
            Some(Event::Hole(length)) => {
                let data = &mut members.last_mut().unwrap().1;
                data.resize(data.len() + length as usize, 0);
            }
            Some(Event::End) => break,
            Some(Event::Skipped { .. }) | None => {}
        }
    }
    parser.finish().unwrap();
    members
}

#[test]
fn entry_kinds_of_a_real_archive() {
    let (bytes, _) = &samples()[0];
    let kinds: Vec<EntryKind> = events(bytes)
        .filter_map(|event| match event.unwrap() {
            Event::Entry(entry) => Some(entry.kind),
            _ => None,
        })
        .collect();
    assert!(kinds.contains(&EntryKind::Symlink(b"d/file".to_vec())));
    assert!(kinds
        .iter()
        .any(|kind| matches!(kind, EntryKind::CharDevice(device) if device.major == 1 && device.minor == 3)));
    assert!(kinds.iter().any(|kind| matches!(kind, EntryKind::HardLink(_))));
    let data = members(bytes, &[usize::MAX]);
    assert!(data.iter().any(|(entry, data)| entry.contains("Regular") && data == &pattern(3000, 5)));
}
