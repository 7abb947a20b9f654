//! `blockfs probe`: the boot-time detection's verdict, as text and status.

mod common;

use std::fs;
use std::process::Command;

use common::{assert_success, mkfs, Scratch};

fn probe(path: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_blockfs")).arg("probe").arg(path).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn blockfs_tar_and_neither_are_told_apart() {
    let scratch = Scratch::new("probe");
    let image = scratch.path("fs.img");
    assert_success(&mkfs(&["-o", image.to_str().unwrap(), "-s", "8"]));
    let (status, text) = probe(&image);
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("BlockFS image"), "{text}");

    let tree = scratch.path("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("file"), b"x").unwrap();
    let archive = scratch.path("root.tar");
    let tar = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&tree).arg(".").status().unwrap();
    assert!(tar.success());
    let (status, text) = probe(&archive);
    assert_eq!(status, Some(10), "{text}");
    assert!(text.contains("TAR archive"), "{text}");

    let other = scratch.path("other");
    fs::write(&other, b"#!/bin/sh\necho not an image\n").unwrap();
    assert_eq!(probe(&other).0, Some(11));
    assert_eq!(probe(&scratch.path("missing")).0, Some(1));
}
