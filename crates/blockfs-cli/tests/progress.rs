//! Progress lines: on a terminal only (a pseudo-terminal from util-linux's
//! `script` here), never with --quiet, never into a pipe or log.

mod common;

use std::process::Command;

use common::*;

/// Runs `command` (a shell line) on a pseudo-terminal; returns what the
/// terminal showed.
fn on_terminal(command: &str) -> String {
    let output = Command::new("script").args(["-qec", command, "/dev/null"]).output().unwrap();
    assert_success(&output);
    stdout(&output)
}

#[test]
fn long_jobs_show_progress_on_a_terminal_unless_quiet() {
    let scratch = Scratch::new("progress");
    let source = scratch.path("src");
    for index in 0..2100 {
        write_file(&source.join(format!("d{}/f{index}", index % 10)), b"x");
    }
    let (mkfs_bin, blockfs_bin) = (env!("CARGO_BIN_EXE_mkfs-blockfs"), env!("CARGO_BIN_EXE_blockfs"));
    let (image, archive) = (scratch.path("image"), scratch.path("archive.tar"));
    let (image, archive) = (text(&image), text(&archive));
    let jobs = [
        ("mkfs-blockfs:", format!("{mkfs_bin} -o {image} -s 32 --inodes 8192 -p {}", text(&source))),
        ("blockfs get:", format!("{blockfs_bin} get -r {image} / {}/out$$", text(&scratch.dir))),
        ("blockfs export:", format!("{blockfs_bin} export {image} {archive}")),
        ("blockfs put:", format!("{blockfs_bin} put -r {image} {} /again", text(&source))),
        ("blockfs import:", format!("{blockfs_bin} mkdir {image} /imported$$ && {blockfs_bin} import {image} {archive} /imported$$")),
    ];
    for (label, command) in &jobs {
        let shown = on_terminal(command);
        assert!(shown.contains(&format!("\r{label} ")), "{command}: no progress:\n{shown}");
        assert!(shown.contains("entries"), "{shown}");
    }
    // Quiet, or not a terminal: no progress line.
    let quiet = on_terminal(&format!("{blockfs_bin} get -q -r {image} / {}/quiet", text(&scratch.dir)));
    assert!(!quiet.contains("blockfs get:"), "{quiet}");
    let piped = blockfs(&["get", "-r", image, "/", text(&scratch.path("piped"))]);
    assert_success(&piped);
    assert_eq!(stderr(&piped), "");
}
