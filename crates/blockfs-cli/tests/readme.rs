//! Every command example in README.md runs as written: each ```bash block,
//! in order, in one scratch directory holding the bundled `samples/`, with
//! the tools installed by scripts/install.sh first in PATH. A block is
//! left out only when the line before it says why (`<!-- not run by
//! tests/readme.rs: ... -->`). Needs FUSE (the mounting example) and root.

mod common;
mod fuse_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use fuse_support::*;

const SKIP_MARK: &str = "<!-- not run by tests/readme.rs:";

/// The README's ```bash blocks: (first line number, text, skipped).
fn bash_blocks(readme: &str) -> Vec<(usize, String, bool)> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines().enumerate().peekable();
    let mut previous = "";
    while let Some((number, line)) = lines.next() {
        if line.trim() == "```bash" {
            let skipped = previous.starts_with(SKIP_MARK);
            let mut body = String::new();
            for (_, line) in lines.by_ref() {
                if line.trim() == "```" {
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            blocks.push((number + 1, body, skipped));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    blocks
}

#[test]
fn every_readme_example_runs_as_written() {
    require_fuse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = bash_blocks(&readme);
    let skipped: Vec<usize> = blocks.iter().filter(|block| block.2).map(|block| block.0).collect();
    assert_eq!(skipped.len(), 7, "blocks left out (each must say why): lines {skipped:?}");
    assert!(blocks.len() >= 7, "found only {} bash blocks", blocks.len());

    let scratch = Scratch::new("readme");
    std::os::unix::fs::symlink(root.join("samples"), scratch.path("samples")).unwrap();
    let prefix = scratch.path("prefix");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_blockfs")).parent().unwrap();
    let installed = Command::new(root.join("scripts/install.sh"))
        .env("PREFIX", &prefix)
        .env("BLOCKFS_BIN_DIR", bin_dir)
        .output()
        .unwrap();
    assert_success(&installed);
    let path = format!("{}:{}", prefix.join("sbin").display(), std::env::var("PATH").unwrap());

    for (line, body, _) in blocks.iter().filter(|block| !block.2) {
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", body])
            .current_dir(&scratch.dir)
            .env("PATH", &path)
            .output()
            .unwrap();
        detach(&scratch.path("mnt"));
        assert!(
            output.status.success(),
            "README.md block at line {line} failed ({}):\n{body}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
    }
    // The examples left a consistent image behind.
    assert_success(
        &Command::new(prefix.join("sbin/fsck-blockfs"))
            .arg("-n")
            .arg(scratch.path("rootfs.img"))
            .output()
            .unwrap(),
    );
}
