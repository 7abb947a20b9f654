//! What the tools say when something is wrong, with the real binaries:
//! each message names the right object and the cause in words.

mod common;

use std::fs;
use std::os::unix::fs::chown;
use std::process::{Command, Output};

use blockfs::format::extension::Extension;
use blockfs::format::superblock::Superblock;
use blockfs::format::BLOCK_SIZE;
use common::*;

fn fsck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(args).output().unwrap()
}

/// Rewrites block 0 of `image` through the library's codecs.
fn edit_block0(image: &str, edit: impl FnOnce(&mut Superblock, &mut Option<Extension>)) {
    let mut bytes = fs::read(image).unwrap();
    let block: &mut [u8; BLOCK_SIZE] = (&mut bytes[..BLOCK_SIZE]).try_into().unwrap();
    let mut superblock = Superblock::decode_block(block).unwrap();
    let mut extension = Extension::decode_block(block).ok();
    edit(&mut superblock, &mut extension);
    superblock.encode_block(block);
    if let Some(extension) = extension {
        extension.encode_block(block);
    }
    fs::write(image, &bytes).unwrap();
}

/// A tmpfs of 1 MiB, unmounted when dropped: a host filesystem that fills.
struct SmallHostFs(std::path::PathBuf);

impl SmallHostFs {
    fn new(dir: std::path::PathBuf) -> Self {
        fs::create_dir_all(&dir).unwrap();
        let mounted =
            Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&dir).status();
        assert!(mounted.unwrap().success(), "mount tmpfs (the tests run as root)");
        SmallHostFs(dir)
    }
}

impl Drop for SmallHostFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_host_disk_is_named_as_the_image_and_no_space() {
    let scratch = Scratch::new("msg-enospc");
    let source = scratch.path("src");
    write_file(&source.join("big"), &pattern(3 << 20));
    let host = SmallHostFs::new(scratch.path("small"));
    let image = host.0.join("rootfs.img");
    let output = mkfs(&["-o", text(&image), "-s", "8", "-p", text(&source)]);
    assert_failure(&output, &[&format!("mkfs-blockfs: {}: No space left on device", text(&image))]);
    assert!(!stderr(&output).contains(text(&source)), "names the source: {}", stderr(&output));
    assert_eq!(fs::read_dir(&host.0).unwrap().count(), 0, "temporary image left behind");
}

#[test]
fn fsck_on_a_directory_says_it_is_a_directory() {
    let scratch = Scratch::new("msg-dir");
    let output = fsck(&["-n", text(&scratch.dir)]);
    assert_eq!(output.status.code(), Some(8));
    assert_eq!(
        stderr(&output),
        format!("fsck-blockfs: {}: is a directory, not an image\n", text(&scratch.dir))
    );
    assert_failure(&blockfs(&["info", text(&scratch.dir)]), &["is a directory, not an image"]);
}

#[test]
fn a_truncated_image_is_called_truncated() {
    let scratch = Scratch::new("msg-truncated");
    let image = scratch.path("half.img");
    mkfs_image(&image, 8);
    fs::OpenOptions::new().write(true).open(&image).unwrap().set_len(4 << 20).unwrap();
    let expected =
        "image is truncated: it is 4194304 bytes, but its superblock describes 2048 blocks (8388608 bytes)";
    let output = fsck(&["-n", text(&image)]);
    assert_eq!(output.status.code(), Some(8));
    assert_failure(&output, &[text(&image), expected]);
    for args in [&["info", text(&image)][..], &["ls", text(&image)][..], &["mkdir", text(&image), "/x"][..]] {
        assert_failure(&blockfs(args), &[text(&image), expected]);
    }
}

#[test]
fn fsck_preen_exits_1_after_fixing_and_says_fixed_once() {
    let scratch = Scratch::new("msg-preen");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    let image = text(&image);
    edit_block0(image, |superblock, _| superblock.free_blocks -= 5);
    let output = fsck(&["-p", image]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("[fixed]"), "{}", stdout(&output));
    assert!(!stdout(&output).contains("(fixed)"), "{}", stdout(&output));
    assert_eq!(fsck(&["-p", image]).status.code(), Some(0), "nothing left to fix");
}

#[test]
fn the_detached_journal_warning_points_at_tune() {
    let scratch = Scratch::new("msg-detached");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    let mut bytes = fs::read(&image).unwrap();
    bytes[62..BLOCK_SIZE].fill(0);
    fs::write(&image, &bytes).unwrap();
    let output = fsck(&["-n", text(&image)]);
    assert!(
        stdout(&output).contains("a detached journal (`blockfs tune --journal IMAGE` re-attaches it)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn mkfs_says_when_an_image_is_too_small_for_a_journal() {
    let scratch = Scratch::new("msg-journal");
    let output = mkfs(&["-o", text(&scratch.path("tiny.img")), "-s", "1"]);
    assert_success(&output);
    assert!(
        stdout(&output).contains("Journal: none: the image is too small to spare one"),
        "{}",
        stdout(&output)
    );
    let output = mkfs(&["-o", text(&scratch.path("small.img")), "-s", "4"]);
    assert!(stdout(&output).contains("Journal: 64 blocks"), "{}", stdout(&output));
}

#[test]
fn info_shows_times_that_are_not_unix_seconds_raw() {
    let scratch = Scratch::new("msg-ticks");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    // What VeridianOS's driver writes: CPU ticks, read as seconds the year 47604.
    edit_block0(text(&image), |_, extension| extension.as_mut().unwrap().last_check_time = 1_440_000_000_000);
    let info = run_ok(&["info", text(&image)]);
    assert!(
        info.contains("Last checked:       1440000000000 (raw value, not a Unix time; VeridianOS's driver writes CPU ticks here)"),
        "{info}"
    );
    assert!(!info.contains("47604"), "{info}");
}

#[test]
fn put_takes_squash_ids_as_its_message_says() {
    let scratch = Scratch::new("msg-squash");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    let file = scratch.path("owned");
    fs::write(&file, "big owner\n").unwrap();
    chown(&file, Some(70000), Some(70000)).unwrap();
    assert_failure(
        &blockfs(&["put", text(&image), text(&file), "/owned"]),
        &["uid 70000", "use --squash-ids"],
    );
    assert_success(&blockfs(&["put", "--squash-ids", text(&image), text(&file), "/owned"]));
    assert!(run_ok(&["stat", text(&image), "/owned"]).contains("Uid: 0"), "owner squashed to 0");
}
