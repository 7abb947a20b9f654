//! mkfs-blockfs --populate ARCHIVE end to end: archives made by GNU tar
//! (plain, gzip and zstd) from a tree with every kind of object give the
//! same image contents as the tree itself, entry by entry, read back
//! through the library; hostile and damaged archives are refused by name
//! and leave no output; SOURCE_DATE_EPOCH makes the bytes reproducible.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use blockfs::{FileDevice, FileSystem, FileType, ROOT_INO};
use blockfs_cli::tar::{Kind, Member, TarWriter};
use common::tree::{self, Extras};
use common::*;

/// Between the tree's first and last mtimes, so some are clamped.
const EPOCH: &str = "1100020000";

/// Everything an image holds about one object, as the library reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Object {
    kind: FileType,
    perm: u16,
    uid: u16,
    gid: u16,
    nlink: u16,
    /// Not for directories, whose size depends on the order entries came.
    size: Option<u64>,
    mtime: u32,
    rdev: (u32, u32),
    /// Length and FNV-1a digest of a regular file's content.
    content: Option<(usize, u64)>,
    target: Option<Vec<u8>>,
    /// For a hard-linked non-directory, the first of its paths in path
    /// order: the same in two images exactly when the links are.
    first_name: Option<Vec<u8>>,
}

fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Every object of a mounted image by path (the root under "/").
fn snapshot(fs: &FileSystem<FileDevice>) -> BTreeMap<Vec<u8>, Object> {
    let mut paths = Vec::new();
    walk(fs, ROOT_INO, b"", &mut paths);
    paths.sort();
    let mut first_names: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut objects = BTreeMap::new();
    for (path, ino) in paths {
        let attr = fs.getattr(ino).unwrap();
        let linked = attr.kind != FileType::Directory && attr.nlink > 1;
        let object = Object {
            kind: attr.kind,
            perm: attr.perm,
            uid: attr.uid,
            gid: attr.gid,
            nlink: attr.nlink,
            size: (attr.kind != FileType::Directory).then_some(attr.size),
            mtime: attr.mtime,
            rdev: attr.rdev,
            content: (attr.kind == FileType::Regular).then(|| {
                let data = read_all(fs, ino);
                (data.len(), digest(&data))
            }),
            target: (attr.kind == FileType::Symlink).then(|| fs.readlink(ino).unwrap()),
            first_name: linked.then(|| first_names.entry(ino).or_insert_with(|| path.clone()).clone()),
        };
        let key = if path.is_empty() { b"/".to_vec() } else { path };
        objects.insert(key, object);
    }
    objects
}

fn walk(fs: &FileSystem<FileDevice>, ino: u32, path: &[u8], out: &mut Vec<(Vec<u8>, u32)>) {
    out.push((path.to_vec(), ino));
    if fs.getattr(ino).unwrap().kind != FileType::Directory {
        return;
    }
    let mut children = Vec::new();
    fs.readdir(ino, 0, &mut |entry, _| {
        if entry.name != b"." && entry.name != b".." {
            children.push((entry.name.clone(), entry.ino));
        }
        true
    })
    .unwrap();
    for (name, child) in children {
        let mut child_path = path.to_vec();
        child_path.push(b'/');
        child_path.extend_from_slice(&name);
        walk(fs, child, &child_path, out);
    }
}

fn assert_same_images(expected: &Path, found: &Path) {
    let (expected, found) = (snapshot(&mount(expected)), snapshot(&mount(found)));
    let names = |map: &BTreeMap<Vec<u8>, Object>| -> Vec<String> {
        map.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
    };
    assert_eq!(names(&expected), names(&found), "the images hold different names");
    for (path, object) in &expected {
        assert_eq!(Some(object), found.get(path), "{}", String::from_utf8_lossy(path));
    }
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert_success(&output);
}

/// `tar -c` of `source`'s contents (sorted, so the archive is stable).
fn gnu_tar(source: &Path, archive: &Path, extra: &[&str]) {
    run(Command::new("tar")
        .args(["-c", "--sort=name"])
        .args(extra)
        .arg("-f")
        .arg(archive)
        .arg("-C")
        .arg(source)
        .arg("."));
}

fn has_program(name: &str) -> bool {
    Command::new("which").arg(name).output().is_ok_and(|output| output.status.success())
}

fn mkfs_with_epoch(args: &[&str], epoch: &str) -> Output {
    mkfs_binary().env("SOURCE_DATE_EPOCH", epoch).args(args).output().expect("run mkfs-blockfs")
}

/// The archives of `source`: plain, gzip and zstd (by GNU tar when the
/// zstd program is here, else compressed with the zstd crate).
fn archives(scratch: &Scratch, source: &Path) -> Vec<PathBuf> {
    let plain = scratch.path("tree.tar");
    gnu_tar(source, &plain, &[]);
    let gzip = scratch.path("tree.tar.gz");
    gnu_tar(source, &gzip, &["-z"]);
    let zstd = scratch.path("tree.tar.zst");
    if has_program("zstd") {
        gnu_tar(source, &zstd, &["--zstd"]);
    } else {
        let compressed = zstd::stream::encode_all(&fs::read(&plain).unwrap()[..], 3).unwrap();
        fs::write(&zstd, compressed).unwrap();
    }
    assert_eq!(&fs::read(&gzip).unwrap()[..2], [0x1f, 0x8b]);
    assert_eq!(&fs::read(&zstd).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    vec![plain, gzip, zstd]
}

#[test]
fn archives_give_the_same_image_as_their_directory() {
    let scratch = Scratch::new("tar-same");
    let source = scratch.path("src");
    tree::build(&source, Extras { socket: false });
    let from_dir = scratch.path("dir.img");
    let dir_output = mkfs_with_epoch(&["-o", text(&from_dir), "-s", "64", "-p", text(&source)], EPOCH);
    assert_success(&dir_output);
    let dir_summary = stdout(&dir_output);

    for archive in archives(&scratch, &source) {
        let image = scratch.path("archive.img");
        let output = mkfs_with_epoch(&["-o", text(&image), "-s", "64", "-p", text(&archive)], EPOCH);
        assert_success(&output);
        let summary = stdout(&output);
        assert!(summary.contains(&format!("  Populating from: {}\n", archive.display())), "{summary}");
        // Same size, same entries: the same default inode count and use.
        let line = |text: &str, key: &str| text.lines().find(|l| l.starts_with(key)).unwrap().to_owned();
        for key in ["  Inodes:", "  Inodes used:"] {
            assert_eq!(line(&summary, key), line(&dir_summary, key), "{}", archive.display());
        }
        assert_same_images(&from_dir, &image);
    }

    // What the tree holds is what the test means to compare.
    let fs = mount(&from_dir);
    let objects = snapshot(&fs);
    let big = &objects[&b"/big.bin"[..]];
    assert_eq!(big.content.unwrap().0, tree::BIG_FILE);
    const { assert!(tree::BIG_FILE > 4_300_000) };
    assert_eq!(objects[&b"/hard-a"[..]].first_name.as_deref(), Some(&b"/hard-a"[..]));
    assert_eq!(objects[&b"/sub/hard-b"[..]].first_name.as_deref(), Some(&b"/hard-a"[..]));
    assert_eq!(objects[&b"/pipe"[..]].kind, FileType::Fifo);
    assert_eq!(objects[&b"/setuid"[..]].perm, 0o4755);
    assert_eq!(objects[&b"/sticky"[..]].perm, 0o1777);
    assert_eq!(objects[&b"/link-relative"[..]].target.as_deref(), Some(&b"hello.txt"[..]));
    assert_eq!(objects[&b"/empty"[..]].size, Some(0));
    let epoch: u32 = EPOCH.parse().unwrap();
    assert!(objects.values().all(|object| object.mtime <= epoch), "times are clamped");
    assert!(objects.values().any(|object| object.mtime < epoch), "and only where later");
    if tree::is_root() {
        assert_eq!(objects[&b"/dev-null"[..]].kind, FileType::CharDevice);
        assert_eq!(objects[&b"/dev-null"[..]].rdev, (1, 3));
        assert_eq!(objects[&b"/dev-disk"[..]].rdev, (259, 70_000));
        let private = &objects[&b"/private"[..]];
        assert_eq!((private.uid, private.gid), (1234, 5678));
    } else {
        eprintln!("device nodes and owners not checked: they need root");
    }
}

#[test]
fn the_same_archive_and_epoch_give_the_same_bytes() {
    let scratch = Scratch::new("tar-reproducible");
    let source = scratch.path("src");
    tree::build(&source, Extras { socket: false });
    let mut images = Vec::new();
    for (index, archive) in
        archives(&scratch, &source).iter().chain(archives(&scratch, &source).iter()).enumerate()
    {
        let image = scratch.path(&format!("{index}.img"));
        assert_success(&mkfs_with_epoch(&["-o", text(&image), "-s", "32", "-p", text(archive)], EPOCH));
        images.push(fs::read(&image).unwrap());
    }
    assert!(
        images.iter().all(|image| image == &images[0]),
        "every run and every compression: the same bytes"
    );

    // Without SOURCE_DATE_EPOCH the volume id differs from run to run.
    let archive = scratch.path("tree.tar");
    let (first, second) = (scratch.path("first.img"), scratch.path("second.img"));
    for image in [&first, &second] {
        assert_success(&mkfs(&["-o", text(image), "-s", "32", "-p", text(&archive)]));
    }
    assert!(fs::read(&first).unwrap() != fs::read(&second).unwrap());
}

/// Appends one member (with `content` for a regular file).
fn member(tar: &mut TarWriter<Vec<u8>>, name: &[u8], kind: Kind, content: &[u8]) {
    member_owned(tar, name, kind, content, 0);
}

fn member_owned(tar: &mut TarWriter<Vec<u8>>, name: &[u8], kind: Kind, content: &[u8], uid: u32) {
    let header = Member { name, kind, perm: 0o644, uid, gid: 0, mtime: 1_000_000_000 };
    tar.header(&header).unwrap();
    if !content.is_empty() {
        tar.content(content).unwrap();
        tar.end_content().unwrap();
    }
}

fn file(size: usize) -> Kind<'static> {
    Kind::Regular { size: size as u64 }
}

/// Refused with every needle in the message, and nothing left behind.
fn assert_refused(scratch: &Scratch, archive: &Path, needles: &[&str]) {
    let output = scratch.path("out.img");
    let result = mkfs(&["-o", text(&output), "-s", "8", "-p", text(archive)]);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert_failure(&result, needles);
    assert!(!output.exists(), "no output file");
    let leftovers: Vec<String> = scratch.names().into_iter().filter(|n| n.contains("out.img")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn hostile_and_damaged_archives_are_refused_by_member() {
    let scratch = Scratch::new("tar-hostile");
    let archive = scratch.path("hostile.tar");

    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"fine", file(2), b"ok");
    member(&mut tar, b"../escape", file(4), b"evil");
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    assert_refused(&scratch, &archive, &[&format!("{}: ../escape: path leaves the root", archive.display())]);

    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"hard", Kind::HardLink { target: b"a/../../outside" }, b"");
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    assert_refused(&scratch, &archive, &["a/../../outside: path leaves the root"]);

    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"lnk", Kind::Symlink { target: b"/" }, b"");
    member(&mut tar, b"lnk/through", file(4), b"evil");
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    assert_refused(&scratch, &archive, &["lnk/through: not a directory"]);

    // Truncated in the middle of a member's data.
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"first", file(3), b"one");
    member(&mut tar, b"cut-short", file(10_000), &[7; 10_000]);
    let mut bytes = tar.finish().unwrap();
    bytes.truncate(512 * 2 + 512 + 4096);
    fs::write(&archive, &bytes).unwrap();
    assert_refused(&scratch, &archive, &["tar entry at byte 1024: archive ends", "(member \"cut-short\")"]);

    // A damaged header: its checksum no longer matches.
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"first", file(3), b"one");
    member(&mut tar, b"damaged", file(3), b"two");
    let mut bytes = tar.finish().unwrap();
    bytes[1024 + 100] ^= 0x01;
    fs::write(&archive, &bytes).unwrap();
    assert_refused(&scratch, &archive, &["tar header at byte 1024: checksum mismatch", "\"damaged\""]);

    // The same damage under gzip: found while decompressing.
    let gzip = scratch.path("hostile.tar.gz");
    run(Command::new("gzip").arg("-k").arg(&archive));
    assert_refused(&scratch, &gzip, &["tar header at byte 1024: checksum mismatch"]);

    // A gzip stream cut short in the middle of a member's data.
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"first", file(3), b"one");
    member(&mut tar, b"cut-short", file(200_000), &noise(200_000));
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    run(Command::new("gzip").arg("-kf").arg(&archive));
    let whole = fs::read(&gzip).unwrap();
    fs::write(&gzip, &whole[..whole.len() / 2]).unwrap();
    assert_refused(&scratch, &gzip, &[&format!("{}: ", gzip.display()), "(member \"cut-short\")"]);
}

/// Bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn absolute_members_land_inside_the_image() {
    let scratch = Scratch::new("tar-absolute");
    let archive = scratch.path("absolute.tar");
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"/etc/hostname", file(5), b"host\n");
    member(&mut tar, b"//./srv//data", file(3), b"abc");
    member(&mut tar, b"./plain", file(0), b"");
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    let image = scratch.path("out.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", "8", "-p", text(&archive)]));
    let fs = mount(&image);
    let objects = snapshot(&fs);
    let names: Vec<&[u8]> = objects.keys().map(|k| &k[..]).collect();
    assert_eq!(names, [&b"/"[..], b"/etc", b"/etc/hostname", b"/plain", b"/srv", b"/srv/data"]);
    assert_eq!(read_all(&fs, fs.resolve(b"/etc/hostname", false).unwrap()), b"host\n");
}

#[test]
fn attrs_apply_after_the_archive_and_large_ids_need_squashing() {
    let scratch = Scratch::new("tar-attrs");
    let archive = scratch.path("ids.tar");
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"./", Kind::Directory, b"");
    member(&mut tar, b"bin/", Kind::Directory, b"");
    member(&mut tar, b"bin/su", file(3), b"su\n");
    member_owned(&mut tar, b"owned", file(0), b"", 70_000);
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    let attrs = scratch.path("attrs.txt");
    fs::write(&attrs, "/ 0 0 700\n/bin/su 0 0 4755\n/bin/su 0 10\n").unwrap();
    let image = scratch.path("out.img");
    let args = |squash: bool| {
        let mut args = vec!["-o", text(&image), "-s", "8", "-p", text(&archive), "--attrs", text(&attrs)];
        if squash {
            args.push("--squash-ids");
        }
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    let refused = mkfs(&args(false));
    assert_failure(&refused, &["owned: owner id 70000 does not fit 16 bits", "--squash-ids"]);
    assert!(!image.exists());

    let output = mkfs(&args(true));
    assert_success(&output);
    assert!(stdout(&output).contains(&format!("  Attributes: 3 entries from {}\n", attrs.display())));
    let fs = mount(&image);
    let attr = |path: &[u8]| fs.getattr(fs.resolve(path, false).unwrap()).unwrap();
    assert_eq!((attr(b"/").perm, attr(b"/").uid), (0o700, 0), "the root member, then the rules");
    assert_eq!((attr(b"/bin/su").perm, attr(b"/bin/su").gid), (0o4755, 10), "a later rule wins");
    assert_eq!((attr(b"/owned").uid, attr(b"/owned").gid), (0, 0));

    fs::write(&attrs, "/bin/sh 0 0\n").unwrap();
    drop(fs);
    fs::remove_file(&image).unwrap();
    let missing = mkfs(&args(true));
    assert_failure(
        &missing,
        &[&format!("{}: line 1: /bin/sh is not in the populated tree", attrs.display())],
    );
    assert!(!image.exists());
}

#[test]
fn archives_that_do_not_fit_are_refused_before_copying() {
    let scratch = Scratch::new("tar-fit");
    let archive = scratch.path("big.tar");
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"big", file(3 << 20), &pattern(3 << 20));
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    let output = mkfs(&["-o", text(&scratch.path("out.img")), "-s", "2", "-p", text(&archive)]);
    assert_failure(
        &output,
        &[&format!("{} does not fit: it needs", archive.display()), "use a larger --size"],
    );
    assert!(!scratch.path("out.img").exists());

    // Many small members raise the default inode count as a tree's do.
    let source = scratch.path("many");
    for index in 0..2000 {
        write_file(&source.join(format!("d{}/f{index}", index % 10)), b"");
    }
    let many = scratch.path("many.tar");
    gnu_tar(&source, &many, &[]);
    let inodes = |populate: &Path| {
        let output = mkfs(&["-o", text(&scratch.path("many.img")), "-s", "8", "-p", text(populate)]);
        assert_success(&output);
        stdout(&output).lines().find(|l| l.starts_with("  Inodes:")).unwrap().to_owned()
    };
    assert_eq!(inodes(&many), inodes(&source));
    assert_eq!(inodes(&many), format!("  Inodes: {}", 2010 + 2010 / 4 + 64));
}
