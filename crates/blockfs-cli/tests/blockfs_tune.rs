//! `blockfs tune --journal`: a plain image gains a journal, and an image
//! whose extension record an older driver wiped gets its journal back.

mod common;

use std::fs;
use std::process::Command;

use common::{assert_failure, assert_success, blockfs, mkfs, stdout, Scratch};

fn fsck_clean(image: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(["-n", image]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn plain_image_gains_a_journal_and_keeps_its_files() {
    let scratch = Scratch::new("tune");
    let tree = scratch.path("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("keep"), b"kept across tune\n").unwrap();
    let image = scratch.path("plain.img");
    let image = image.to_str().unwrap();
    assert_success(&mkfs(&["-o", image, "-s", "32", "-p", tree.to_str().unwrap(), "--no-journal"]));
    assert!(!stdout(&blockfs(&["info", image])).contains("Journal blocks"));

    let output = blockfs(&["tune", "--journal", image]);
    assert_success(&output);
    assert!(stdout(&output).contains("journal added"), "{}", stdout(&output));
    assert!(stdout(&blockfs(&["info", image])).contains("Journal blocks"));
    assert_eq!(stdout(&blockfs(&["cat", image, "/keep"])), "kept across tune\n");
    fsck_clean(image);
    assert_failure(&blockfs(&["tune", "--journal", image]), &["already has a journal"]);

    // An older kernel driver syncs block 0 with zeros after byte 62.
    let mut bytes = fs::read(image).unwrap();
    bytes[62..4096].fill(0);
    fs::write(image, &bytes).unwrap();
    assert!(!stdout(&blockfs(&["info", image])).contains("Journal blocks"));
    let output = blockfs(&["tune", "--journal", image]);
    assert_success(&output);
    assert!(stdout(&output).contains("journal re-attached"), "{}", stdout(&output));
    fsck_clean(image);
}
