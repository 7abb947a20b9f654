//! `fsck-blockfs` from the command line: e2fsck's options and exit codes
//! on a clean image, a damaged one, and ones it cannot check.

mod common;

use std::fs;
use std::process::Command;

use common::{assert_success, mkfs, mkfs_image, text, Scratch};

fn fsck(args: &[&str]) -> (i32, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(args).output().expect("run fsck-blockfs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().expect("exit code"), text)
}

/// An image of a small tree.
fn image(scratch: &Scratch) -> String {
    let tree = scratch.path("tree");
    fs::create_dir_all(tree.join("etc/sub")).unwrap();
    fs::write(tree.join("etc/motd"), b"hello\n").unwrap();
    fs::write(tree.join("etc/sub/big"), vec![7u8; 200_000]).unwrap();
    let image = scratch.path("fs.img");
    assert_success(&mkfs(&["-o", image.to_str().unwrap(), "-s", "16", "-p", tree.to_str().unwrap()]));
    image.to_str().unwrap().to_owned()
}

#[test]
fn clean_image_exits_zero_and_is_left_untouched() {
    let scratch = Scratch::new("fsck-clean");
    let image = image(&scratch);
    let before = fs::read(&image).unwrap();
    let (code, text) = fsck(&["-n", &image]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("clean"), "{text}");
    assert_eq!(fs::read(&image).unwrap(), before, "-n changed the image");
    let (code, text) = fsck(&["-fv", &image]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("regular files"), "{text}");
}

#[test]
fn damage_is_reported_then_repaired() {
    let scratch = Scratch::new("fsck-damage");
    let image = image(&scratch);
    // Damage: the superblock's free-block count (offset 12) is off by 5.
    let mut bytes = fs::read(&image).unwrap();
    let free = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    bytes[12..16].copy_from_slice(&(free - 5).to_le_bytes());
    fs::write(&image, &bytes).unwrap();

    let (code, text) = fsck(&["-n", &image]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("free block count"), "{text}");
    assert_eq!(fs::read(&image).unwrap(), bytes, "-n changed the image");

    let (code, text) = fsck(&["-p", &image]);
    assert_eq!(code, 1, "{text}");
    let (code, text) = fsck(&["-n", &image]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = fsck(&["-y", &image]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn operational_and_usage_errors() {
    let scratch = Scratch::new("fsck-errors");
    let missing = scratch.path("missing.img");
    let (code, text) = fsck(&["-n", missing.to_str().unwrap()]);
    assert_eq!(code, 8, "{text}");
    assert!(text.contains("missing.img"), "{text}");

    let not_an_image = scratch.path("text");
    fs::write(&not_an_image, vec![b'x'; 8192]).unwrap();
    let (code, text) = fsck(&["-n", not_an_image.to_str().unwrap()]);
    assert_eq!(code, 8, "{text}");
    assert!(text.contains("not a BlockFS image"), "{text}");

    let (code, text) = fsck(&["-n", "-y", "x"]);
    assert_eq!(code, 16, "{text}");
    let (code, _) = fsck(&["--help"]);
    assert_eq!(code, 0);
}

#[test]
fn progress_goes_to_the_descriptor_fsck_passes_per_pass() {
    let scratch = Scratch::new("fsck-progress");
    let image = scratch.path("image");
    mkfs_image(&image, 8);
    let log = scratch.path("progress");
    let script = format!(
        "exec 3>'{}'; exec '{}' -n -C 3 '{}'",
        text(&log),
        env!("CARGO_BIN_EXE_fsck-blockfs"),
        text(&image)
    );
    assert_success(&Command::new("sh").args(["-c", &script]).output().unwrap());
    let lines = fs::read_to_string(&log).unwrap();
    let mut passes_done = Vec::new();
    for line in lines.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[3], text(&image));
        let (done, total): (u64, u64) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        assert!(done <= total, "{line}");
        if done == total {
            passes_done.push(fields[0].parse::<u8>().unwrap());
        }
    }
    assert_eq!(passes_done, [1, 2, 3, 4, 5], "each pass reaches 100% once, in order:\n{lines}");
}
