//! The fuzz targets' bodies, shared by `cargo fuzz` (fuzz_targets/*.rs)
//! and by the regression test that replays saved inputs
//! (crates/blockfs/tests/fuzz_regressions.rs).
//!
//! Input is a sparse edit list over a small valid image, so the fuzzer
//! starts from something that mounts and explores damage to it, instead
//! of spending its time failing the magic check. Input bytes are consumed
//! as (block: u16, offset: u16, value: u8) records; the base image holds
//! files, a large directory, a symlink and a journal.

use blockfs::check::{check, CheckOptions, RepairMode};
use blockfs::format::BLOCK_SIZE;
use blockfs::fs::{format, NewInode};
use blockfs::rootfs::{detect_bytes, load_tar, LoadOptions};
use blockfs::{FileSystem, FormatOptions, MemDevice, MountOptions, ROOT_INO};

const BLOCKS: u32 = 1024;

fn clock() -> u32 {
    1_700_000_000
}

fn options() -> MountOptions {
    MountOptions { cache_blocks: 16, clock, ..MountOptions::default() }
}

fn base_image() -> Vec<u8> {
    let mut format_options = FormatOptions::new(BLOCKS);
    format_options.inode_count = Some(256);
    let device = format(MemDevice::new(BLOCKS), &format_options).unwrap();
    let fs = FileSystem::mount(device, options()).unwrap();
    let file = NewInode { perm: 0o644, uid: 1, gid: 2 };
    let dir = fs.mkdir(ROOT_INO, b"dir", NewInode { perm: 0o755, uid: 0, gid: 0 }).unwrap().ino;
    for index in 0..120u32 {
        let ino = fs.create(dir, format!("entry-with-a-long-name-{index}").as_bytes(), file).unwrap().ino;
        fs.write(ino, 0, &vec![index as u8; (index as usize * 97) % 9000]).unwrap();
    }
    let big = fs.create(ROOT_INO, b"big", file).unwrap().ino;
    fs.write(big, 0, &vec![0xAB; 60_000]).unwrap();
    fs.write(big, 4_300_000, b"tail").unwrap();
    fs.symlink(ROOT_INO, b"link", b"dir/entry-with-a-long-name-3", 0, 0).unwrap();
    fs.unmount().unwrap().into_bytes()
}

/// The base image with the input's edits applied.
fn image(data: &[u8]) -> MemDevice {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let mut bytes = BASE.get_or_init(base_image).clone();
    for edit in data.chunks_exact(5) {
        let block = u16::from_le_bytes([edit[0], edit[1]]) as usize % BLOCKS as usize;
        let offset = u16::from_le_bytes([edit[2], edit[3]]) as usize % BLOCK_SIZE;
        bytes[block * BLOCK_SIZE + offset] = edit[4];
    }
    MemDevice::from_bytes(bytes)
}

/// Reads everything reachable, ignoring errors (they are fine; panics,
/// hangs and huge allocations are not). Each directory is listed once: a damaged entry can name a directory
/// already seen (itself, say), which is the checker's to report.
fn walk<D: blockfs::BlockDevice>(fs: &FileSystem<D>) {
    let mut stack = vec![ROOT_INO];
    let mut visited = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        if !visited.insert(dir) {
            continue;
        }
        if visited.len() > 512 {
            return;
        }
        let mut entries = Vec::new();
        let _ = fs.readdir(dir, 0, &mut |entry, _| {
            entries.push(entry.clone());
            entries.len() < 4096
        });
        for entry in entries {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let Ok(attr) = fs.lookup(dir, &entry.name) else { continue };
            match attr.kind {
                blockfs::FileType::Directory => stack.push(attr.ino),
                blockfs::FileType::Symlink => {
                    let _ = fs.readlink(attr.ino);
                }
                _ => {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut offset = 0;
                    while let Ok(read) = fs.read(attr.ino, offset, &mut buf) {
                        if read == 0 || offset > 8 << 20 {
                            break;
                        }
                        offset += read as u64;
                    }
                }
            }
        }
    }
}

/// Mount a damaged image, read everything, then change things: errors are
/// fine, panics, hangs and unbounded allocation are not.
pub fn mount_walk(data: &[u8]) {
    let Ok(fs) = FileSystem::mount(image(data), options()) else { return };
    walk(&fs);
    let file = NewInode { perm: 0o644, uid: 0, gid: 0 };
    if let Ok(attr) = fs.create(ROOT_INO, b"new-file", file) {
        let _ = fs.write(attr.ino, 0, &[1u8; 20_000]);
    }
    let _ = fs.unlink(ROOT_INO, b"big");
    let _ = fs.rename(ROOT_INO, b"dir", ROOT_INO, b"moved", Default::default());
    let _ = fs.unmount();
}

/// `fsck -n` on a damaged image: never panics, and never writes.
pub fn fsck_check(data: &[u8]) {
    let mut device = image(data);
    let before = device.as_bytes().to_vec();
    let _ = check(&mut device, &CheckOptions::default());
    assert!(device.as_bytes() == &before[..], "check without repair wrote to the image");
}

/// `fsck -y` then `fsck -n`: whatever the damage, after a full repair a
/// second check finds no errors, and the repaired image mounts and reads.
pub fn fsck_repair(data: &[u8]) {
    let mut device = image(data);
    if check(&mut device, &CheckOptions::new(RepairMode::All)).is_err() {
        return; // block 0 beyond repair: reported as an operational error
    }
    let report = check(&mut device, &CheckOptions::default()).expect("a repaired image stays checkable");
    assert!(report.is_clean(), "errors left after repair: {:?}", report.problems);
    let fs = FileSystem::mount(device, options()).expect("a repaired image mounts");
    walk(&fs);
}

/// TAR detection and loading of arbitrary bytes: never panics, never
/// allocates by a declared size.
pub fn tar_load(data: &[u8]) {
    let _ = detect_bytes(data);
    let options = LoadOptions { max_image_bytes: 16 << 20, ..LoadOptions::default() };
    if let Ok(fs) = load_tar(data, &options) {
        let _ = fs.statfs();
    }
}
