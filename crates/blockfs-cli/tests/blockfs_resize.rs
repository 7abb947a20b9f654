//! `blockfs resize` end to end: the image file grows (sparse) and shrinks
//! with the filesystem, files survive, refusals change no byte, an image
//! in use is refused with exit status 3, and a dirty image is recovered
//! before it is resized.

mod common;
#[path = "../../blockfs/tests/support/mod.rs"]
mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use blockfs_cli::image::lock::{open_image, Access};
use common::*;
use support::CutAfter;

fn image_with_files(scratch: &Scratch, size_mb: &str) -> String {
    let source = scratch.path("src");
    write_file(&source.join("big"), &pattern(3 << 20));
    write_file(&source.join("dir/small"), b"small file");
    let image = scratch.path("resize.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", size_mb, "-p", text(&source)]));
    text(&image).to_owned()
}

fn assert_files_intact(image: &str) {
    assert_eq!(run_ok(&["cat", image, "/dir/small"]), "small file");
    let output = blockfs(&["cat", image, "/big"]);
    assert_success(&output);
    assert!(output.stdout == pattern(3 << 20), "/big differs");
    let fsck = mkfs_sibling("fsck-blockfs").arg(image).output().unwrap();
    assert_success(&fsck);
}

fn mkfs_sibling(name: &str) -> std::process::Command {
    let mkfs = mkfs_binary();
    let path = std::path::Path::new(mkfs.get_program()).with_file_name(name);
    std::process::Command::new(path)
}

fn info(image: &str, field: &str) -> String {
    let text = run_ok(&["info", image]);
    let line =
        text.lines().find(|line| line.starts_with(field)).unwrap_or_else(|| panic!("{field} in {text}"));
    line[field.len()..].trim().to_owned()
}

#[test]
fn grows_and_shrinks_the_image_file() {
    let scratch = Scratch::new("resize-grow");
    let image = image_with_files(&scratch, "16");
    let out = run_ok(&["resize", &image, "--size", "200"]);
    assert!(out.contains("to 51200 blocks"), "{out}");
    let meta = fs::metadata(&image).unwrap();
    assert_eq!(meta.len(), 200 << 20);
    assert!(meta.blocks() * 512 < 100 << 20, "the grown file is sparse");
    assert_eq!(info(&image, "Blocks:"), "51200");
    assert_eq!(info(&image, "Bitmap blocks:"), "2");
    assert_files_intact(&image);

    run_ok(&["resize", &image, "--size", "20", "--inodes", "800"]);
    assert_eq!(fs::metadata(&image).unwrap().len(), 20 << 20);
    assert_eq!(info(&image, "Inodes:"), "800");
    assert_files_intact(&image);
}

#[test]
fn refusals_change_no_byte() {
    let scratch = Scratch::new("resize-refuse");
    let image = image_with_files(&scratch, "16");
    let before = fs::read(&image).unwrap();
    assert_failure(&blockfs(&["resize", &image, "--size", "2"]), &["data does not fit", "more needed"]);
    assert_failure(&blockfs(&["resize", &image, "--inodes", "3"]), &["inodes do not fit"]);
    assert!(fs::read(&image).unwrap() == before, "a refused resize changed the image");
    let output = blockfs(&["resize", &image, "--size", "0"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn an_image_in_use_is_refused_with_status_3() {
    let scratch = Scratch::new("resize-lock");
    let image = image_with_files(&scratch, "16");
    let held = open_image(scratch.path("resize.img").as_path(), Access::Read).unwrap();
    let output = blockfs(&["resize", &image, "--size", "32"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    drop(held);
    assert_eq!(fs::metadata(&image).unwrap().len(), 16 << 20);
}

#[test]
fn a_dirty_image_is_recovered_then_resized() {
    let scratch = Scratch::new("resize-dirty");
    let image = image_with_files(&scratch, "16");
    let mut bytes = fs::read(&image).unwrap();
    bytes[58] = 0; // state: not unmounted
    fs::write(&image, &bytes).unwrap();
    run_ok(&["resize", &image, "--size", "24"]);
    assert_eq!(info(&image, "State:"), "clean");
    assert_files_intact(&image);
}

#[test]
fn an_interrupted_resize_is_reported_and_finished() {
    let scratch = Scratch::new("resize-interrupted");
    let image = image_with_files(&scratch, "16");
    // Cut the power right after the commit point of a resize to 24 MB.
    fs::OpenOptions::new().write(true).open(&image).unwrap().set_len(24 << 20).unwrap();
    let device = blockfs::FileDevice::open(std::path::Path::new(&image), true).unwrap();
    let mut cut = CutAfter::new(device, 3);
    let target = blockfs::resize::Target { block_count: 24 * 256, inode_count: 1000 };
    let plan = blockfs::resize::plan(&mut cut, target).unwrap();
    assert!(plan.execute(&mut cut).is_err());
    drop(cut);

    let output = blockfs(&["info", &image]);
    assert_eq!(output.status.code(), Some(1));
    let output = mkfs_sibling("fsck-blockfs").args(["-n", &image]).output().unwrap();
    assert!(!output.status.success());
    let out = run_ok(&["resize", &image]);
    assert!(out.contains("finished an interrupted resize"), "{out}");
    assert_eq!(info(&image, "Blocks:"), "6144");
    assert_eq!(info(&image, "Inodes:"), "1000");
    assert_files_intact(&image);
}
