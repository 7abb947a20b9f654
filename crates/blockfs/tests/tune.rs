//! Adding a journal to an existing image, and re-attaching the journal of
//! an image whose extension record an older driver wiped.

use blockfs::format::BLOCK_SIZE;
use blockfs::fs::{format, JournalAdded, NewInode};
use blockfs::{Error, FileSystem, FormatOptions, MemDevice, MountOptions, ROOT_INO};

const BLOCKS: u32 = 16384;
const FILE: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };

/// A populated image: journaled, or plain version 1 (no extension record).
fn populated(journal: bool) -> MemDevice {
    let mut options = FormatOptions::new(BLOCKS);
    options.journal = journal;
    options.extension = journal;
    let fs = FileSystem::mount(format(MemDevice::new(BLOCKS), &options).unwrap(), MountOptions::default())
        .unwrap();
    for index in 0..50u32 {
        let ino = fs.create(ROOT_INO, format!("f{index}").as_bytes(), FILE).unwrap().ino;
        fs.write(ino, 0, &vec![index as u8; 5000 + index as usize * 100]).unwrap();
    }
    fs.unmount().unwrap()
}

fn assert_contents(fs: &FileSystem<MemDevice>) {
    for index in 0..50u32 {
        let ino = fs.lookup(ROOT_INO, format!("f{index}").as_bytes()).unwrap().ino;
        let mut buf = vec![0u8; 20_000];
        let read = fs.read(ino, 0, &mut buf).unwrap();
        assert_eq!(read, 5000 + index as usize * 100);
        assert!(buf[..read].iter().all(|&b| b == index as u8));
    }
}

#[test]
fn plain_image_gains_a_journal() {
    let fs = FileSystem::mount(populated(false), MountOptions::default()).unwrap();
    assert!(!fs.has_journal());
    let added = fs.add_journal([7; 16]).unwrap();
    let JournalAdded::Created { blocks, .. } = added else { panic!("{added:?}") };
    assert_eq!(blocks, 256);
    assert!(fs.has_journal());
    assert_eq!(fs.add_journal([7; 16]).unwrap_err(), Error::Exists);
    // Later changes go through the journal, and everything survives.
    let ino = fs.create(ROOT_INO, b"after", FILE).unwrap().ino;
    fs.write(ino, 0, b"journaled").unwrap();
    let fs = FileSystem::mount(fs.unmount().unwrap(), MountOptions::default()).unwrap();
    assert!(fs.has_journal());
    assert_eq!(fs.info().extension.unwrap().uuid, [7; 16]);
    assert_contents(&fs);
    assert_eq!(fs.lookup(ROOT_INO, b"after").unwrap().size, 9);
    let statfs = fs.statfs();
    // 50 files, "after", root and the journal.
    assert_eq!(statfs.inodes - statfs.free_inodes, 53);
}

#[test]
fn wiped_extension_record_is_reattached_to_the_same_journal() {
    let device = populated(true);
    let original = FileSystem::mount(device.clone(), MountOptions { read_only: true, ..Default::default() })
        .unwrap()
        .info()
        .extension
        .unwrap();
    // What the older kernel driver does when it syncs: block 0 past the
    // 62-byte superblock becomes zeros.
    let mut bytes = device.into_bytes();
    bytes[62..BLOCK_SIZE].fill(0);
    let fs = FileSystem::mount(MemDevice::from_bytes(bytes), MountOptions::default()).unwrap();
    assert!(!fs.has_journal());
    let added = fs.add_journal([0; 16]).unwrap();
    assert_eq!(
        added,
        JournalAdded::Reattached {
            inode: original.journal_inode,
            first_block: original.journal_first_block,
            blocks: original.journal_blocks
        }
    );
    let free_before = fs.statfs().free_blocks;
    let fs = FileSystem::mount(fs.unmount().unwrap(), MountOptions::default()).unwrap();
    assert!(fs.has_journal());
    // Re-attaching reuses the old blocks: nothing new was allocated.
    assert_eq!(fs.statfs().free_blocks, free_before);
    assert_contents(&fs);
}

#[test]
fn read_only_and_tiny_images_are_refused() {
    let fs =
        FileSystem::mount(populated(false), MountOptions { read_only: true, ..Default::default() }).unwrap();
    assert_eq!(fs.add_journal([0; 16]).unwrap_err(), Error::ReadOnly);
    let mut options = FormatOptions::new(256);
    options.journal = false;
    let fs =
        FileSystem::mount(format(MemDevice::new(256), &options).unwrap(), MountOptions::default()).unwrap();
    assert_eq!(fs.add_journal([0; 16]).unwrap_err(), Error::NoSpace);
}
