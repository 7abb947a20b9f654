//! Images in use by a mount, with the real binaries and a real FUSE mount:
//! mkfs never replaces a mounted image, read-only commands read it (its
//! last committed state) and say so, and `blockfs mount` refuses a
//! mountpoint that is not a directory, announcing an image only once it
//! has been accepted. Needs /dev/fuse and fusermount3; fails without them.

mod common;
mod fuse_support;

use std::fs;
use std::process::Command;

use blockfs_fuse::is_mounted;

use common::*;
use fuse_support::*;

const LAST_COMMITTED: &str =
    "image is in use (mounted read-write or being changed); showing its last committed state";

#[test]
fn mkfs_over_a_mounted_image_is_refused_and_the_mount_stays_intact() {
    require_fuse();
    let scratch = Scratch::new("in-use-mkfs");
    let image = scratch.path("live.img");
    mkfs_image(&image, 8);
    let mnt = scratch.path("mnt");
    let mounted = Mounted::new(&image, &mnt, &[]);
    fs::write(mnt.join("before"), "written before mkfs\n").unwrap();

    let output = mkfs(&["-o", text(&image), "-s", "8"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_failure(&output, &[text(&image), "image is in use", "refusing to replace it"]);
    assert_eq!(scratch.names(), ["live.img", "mnt"], "no temporary file left");

    fs::write(mnt.join("after"), "written after mkfs\n").unwrap();
    mounted.unmount();
    assert_eq!(run_ok(&["cat", text(&image), "/before"]), "written before mkfs\n");
    assert_eq!(run_ok(&["cat", text(&image), "/after"]), "written after mkfs\n");
    assert_success(&Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).arg("-n").arg(&image).output().unwrap());
}

#[test]
fn read_only_commands_show_a_mounted_image_as_last_committed() {
    require_fuse();
    let scratch = Scratch::new("in-use-read");
    let image = scratch.path("live.img");
    mkfs_image(&image, 8);
    let mnt = scratch.path("mnt");
    let mounted = Mounted::new(&image, &mnt, &["--writeback-secs", "0"]);
    sh(&mnt, r#"cd "$MNT" && mkdir dir && printf 'synced\n' > dir/file && sync dir/file"#);
    let image = text(&image);

    for (args, expected) in [
        (&["ls", image, "/dir"][..], "file\n"),
        (&["cat", image, "/dir/file"][..], "synced\n"),
        (&["readlink", image, "/dir"][..], ""),
    ] {
        let output = blockfs(args);
        if expected.is_empty() {
            assert_eq!(output.status.code(), Some(1), "{args:?}");
        } else {
            assert_success(&output);
            assert_eq!(stdout(&output), expected, "{args:?}");
        }
        assert!(stderr(&output).contains(LAST_COMMITTED), "{args:?}: {}", stderr(&output));
    }
    for args in [&["info", image][..], &["stat", image, "/dir/file"][..], &["export", image, "-"][..]] {
        let output = blockfs(args);
        assert_success(&output);
        assert!(stderr(&output).contains(LAST_COMMITTED), "{args:?}: {}", stderr(&output));
    }
    let copy = scratch.path("copy");
    assert_success(&blockfs(&["get", "-r", image, "/dir", text(&copy)]));
    assert_eq!(fs::read_to_string(copy.join("file")).unwrap(), "synced\n");

    // Writers are still turned away.
    let output = blockfs(&["mkdir", image, "/other"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    mounted.unmount();
}

#[test]
fn mount_onto_a_file_is_refused_before_anything_is_announced() {
    require_fuse();
    let scratch = Scratch::new("in-use-mountpoint");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    let file = scratch.path("regular-file");
    fs::write(&file, "not a directory\n").unwrap();
    for args in [&[][..], &["--foreground"][..]] {
        let output = blockfs_command().arg("mount").arg(&image).arg(&file).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert_failure(&output, &[text(&file), "not a directory"]);
        assert_eq!(stdout(&output), "", "nothing announced");
        assert!(!is_mounted(&file).unwrap());
    }
    // The image was never locked: a writer gets it at once.
    assert_success(&blockfs(&["mkdir", text(&image), "/free"]));
}

#[test]
fn an_image_the_filesystem_refuses_is_never_announced() {
    require_fuse();
    let scratch = Scratch::new("in-use-announce");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    let file = fs::OpenOptions::new().write(true).open(&image).unwrap();
    file.set_len(4 << 20).unwrap();
    let mnt = scratch.path("mnt");
    let output = mount_command(&image, &mnt, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_failure(&output, &[text(&image)]);
    assert!(!stdout(&output).contains("[ROOTFS]"), "announced: {}", stdout(&output));
    assert!(!is_mounted(&mnt).unwrap());
}
