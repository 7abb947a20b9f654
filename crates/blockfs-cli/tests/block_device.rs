//! Images on real block devices: a loop device (losetup) made, formatted,
//! checked, edited and mounted through FUSE with the real binaries, and
//! the refusals that protect a device: another filesystem on it, a kernel
//! mount of it, a FUSE mount of it. Needs root and loop devices (CI runs
//! as root); without them every test fails saying so, never skips.

mod common;
mod fuse_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use fuse_support::*;

/// A loop device over a scratch file, detached on drop however the test ends.
struct Loop {
    device: PathBuf,
}

impl Loop {
    fn new(backing: &Path, size_mb: u64) -> Self {
        let file = fs::File::create(backing).expect("create loop backing file");
        file.set_len(size_mb << 20).expect("size loop backing file");
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .unwrap_or_else(|error| panic!("losetup (util-linux) cannot run: {error}"));
        assert!(
            output.status.success(),
            "loop devices are unavailable (these tests need root and /dev/loop-control): {}",
            stderr(&output)
        );
        let device = PathBuf::from(stdout(&output).trim());
        assert!(device.starts_with("/dev/"), "losetup printed {device:?}");
        Loop { device }
    }

    fn path(&self) -> &str {
        text(&self.device)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// A kernel mount, unmounted lazily on drop.
struct KernelMount(PathBuf);

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fsck(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(args).output().expect("run fsck-blockfs")
}

#[test]
fn mkfs_takes_the_whole_device_and_every_tool_works_on_it() {
    let scratch = Scratch::new("loop-tools");
    let dev = Loop::new(&scratch.path("backing"), 24);
    let tree = scratch.path("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/motd"), b"on a block device\n").unwrap();

    let made = mkfs(&["-o", dev.path(), "-p", text(&tree)]);
    assert_success(&made);
    assert!(stdout(&made).contains("Size: 24 MB (6144 blocks)"), "{}", stdout(&made));

    let info = run_ok(&["info", dev.path()]);
    assert!(info.contains("6144"), "info does not show the device's blocks:\n{info}");
    assert_eq!(run_ok(&["cat", dev.path(), "/etc/motd"]), "on a block device\n");
    assert!(run_ok(&["ls", dev.path(), "/etc"]).contains("motd"));
    fs::write(scratch.path("note"), b"added\n").unwrap();
    run_ok(&["put", dev.path(), text(&scratch.path("note")), "/etc"]);
    assert_eq!(run_ok(&["cat", dev.path(), "/etc/note"]), "added\n");
    let probe = blockfs(&["probe", dev.path()]);
    assert_eq!(probe.status.code(), Some(0), "probe: {}", stdout(&probe));

    let checked = fsck(&["-n", dev.path()]);
    assert_success(&checked);
    assert!(stdout(&checked).contains("clean"), "{}", stdout(&checked));
    assert_success(&fsck(&["-p", dev.path()]));

    // What the device holds is what the backing file holds.
    drop(dev);
    let fs = mount(&scratch.path("backing"));
    let ino = fs.resolve(b"/etc/note", true).expect("note in the backing file");
    assert_eq!(read_all(&fs, ino), b"added\n");
}

#[test]
fn mkfs_refuses_a_device_holding_a_filesystem_unless_forced() {
    let scratch = Scratch::new("loop-signature");
    let dev = Loop::new(&scratch.path("backing"), 16);
    let made = Command::new("mke2fs").args(["-q", "-F", "-t", "ext2", dev.path()]).output();
    assert_success(&made.expect("mke2fs (e2fsprogs) must be installed"));

    assert_failure(&mkfs(&["-o", dev.path()]), &[dev.path(), "ext2/ext3/ext4", "--force"]);
    assert_success(&mkfs(&["-o", dev.path(), "--force"]));
    // A BlockFS filesystem is data too.
    assert_failure(&mkfs(&["-o", dev.path()]), &[dev.path(), "BlockFS filesystem", "--force"]);
    // No ext2 superblock survives beside the new filesystem.
    let blkid = Command::new("blkid").args(["-p", "-o", "value", "-s", "TYPE", dev.path()]).output();
    if let Ok(blkid) = blkid {
        assert!(!stdout(&blkid).contains("ext"), "blkid still sees {}", stdout(&blkid));
    }
    assert_failure(&mkfs(&["-o", dev.path(), "--force", "-s", "17"]), &["larger than the device (16 MB)"]);
    assert_success(&fsck(&["-n", dev.path()]));
}

#[test]
fn a_failed_populate_leaves_no_blockfs_magic_on_the_device() {
    let scratch = Scratch::new("loop-failed");
    let dev = Loop::new(&scratch.path("backing"), 16);
    let tree = scratch.path("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("small"), b"fits\n").unwrap();
    assert_success(&mkfs(&["-o", dev.path(), "-p", text(&tree)]));
    // 20 MB of data cannot fit in 16 MB.
    fs::write(tree.join("big"), pattern(20 << 20)).unwrap();
    assert_failure(&mkfs(&["-o", dev.path(), "--force", "-p", text(&tree)]), &["does not fit"]);
    let probe = blockfs(&["probe", dev.path()]);
    assert_ne!(probe.status.code(), Some(0), "still a BlockFS image: {}", stdout(&probe));
    // Nothing left to refuse: the device formats again without --force.
    assert_success(&mkfs(&["-o", dev.path()]));
}

#[test]
fn a_device_mounted_by_the_kernel_is_never_formatted_or_repaired() {
    let scratch = Scratch::new("loop-mounted");
    let dev = Loop::new(&scratch.path("backing"), 16);
    assert_success(&Command::new("mke2fs").args(["-q", "-F", "-t", "ext2", dev.path()]).output().unwrap());
    let point = scratch.path("mnt");
    fs::create_dir_all(&point).unwrap();
    let mounted = Command::new("mount").arg(dev.path()).arg(&point).output().expect("run mount");
    assert_success(&mounted);
    let _guard = KernelMount(point.clone());

    assert_failure(&mkfs(&["-o", dev.path(), "--force"]), &[dev.path(), "mounted on", text(&point)]);
    let repaired = fsck(&["-y", dev.path()]);
    assert_eq!(repaired.status.code(), Some(8));
    assert!(stderr(&repaired).contains("in use"), "{}", stderr(&repaired));
    // The ext2 filesystem is untouched.
    assert!(point.join("lost+found").is_dir());
}

#[test]
fn a_device_mounts_through_fuse_and_is_held_while_mounted() {
    require_fuse();
    let scratch = Scratch::new("loop-fuse");
    let dev = Loop::new(&scratch.path("backing"), 16);
    assert_success(&mkfs(&["-o", dev.path()]));
    let dir = scratch.path("mnt");

    let mounted = Mounted::new(&dev.device, &dir, &[]);
    assert!(mounted.stdout.contains("[ROOTFS] BlockFS magic detected"), "{}", mounted.stdout);
    sh(&dir, r#"printf 'persistent\n' > "$MNT/test.txt"; mkdir "$MNT/d"; sync "$MNT/test.txt""#);
    // Held: neither formatted, nor mounted twice, nor repaired underneath.
    assert_failure(&mkfs(&["-o", dev.path(), "--force"]), &[dev.path(), "in use"]);
    let again = mount_command(&dev.device, &scratch.path("second"), &[]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    assert_eq!(fsck(&["-p", dev.path()]).status.code(), Some(8));
    mounted.unmount();

    assert_eq!(run_ok(&["cat", dev.path(), "/test.txt"]), "persistent\n");
    assert_success(&fsck(&["-n", dev.path()]));
    let mounted = Mounted::new(&dev.device, &dir, &["-o", "ro"]);
    assert_eq!(fs::read_to_string(dir.join("test.txt")).unwrap(), "persistent\n");
    mounted.unmount();
}
