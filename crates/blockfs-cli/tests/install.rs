//! `scripts/install.sh` into a temporary prefix, then used as a user of
//! e2fsprogs would: `mkfs -t blockfs`, `fsck -t blockfs`, `man -l` on every
//! page, the shell completions, stripped binaries.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn install(prefix: &Path) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_blockfs")).parent().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install.sh");
    let output = Command::new(script).env("PREFIX", prefix).env("BLOCKFS_BIN_DIR", bin_dir).output().unwrap();
    assert_success(&output);
}

/// Runs `program` with the prefix's sbin first in PATH.
fn run_installed(prefix: &Path, program: &str, args: &[&str]) -> Output {
    let path = format!("{}:{}", prefix.join("sbin").display(), std::env::var("PATH").unwrap());
    Command::new(program).args(args).env("PATH", path).output().unwrap()
}

#[test]
fn installed_tools_work_as_filesystem_tools() {
    let scratch = Scratch::new("install");
    let prefix = scratch.path("prefix");
    install(&prefix);

    for tool in ["mkfs-blockfs", "fsck-blockfs", "blockfs"] {
        let sections =
            Command::new("readelf").arg("-S").arg(prefix.join("sbin").join(tool)).output().unwrap();
        assert_success(&sections);
        assert!(!stdout(&sections).contains(".symtab"), "{tool} is not stripped");
    }

    // mkfs(8) runs mkfs.blockfs DEVICE [SIZE]; fsck(8) runs fsck.blockfs.
    let image = scratch.path("disk.img");
    let made = run_installed(&prefix, "mkfs", &["-t", "blockfs", text(&image)]);
    assert_success(&made);
    assert!(stdout(&made).contains("Image created successfully (256 MB)"), "{}", stdout(&made));
    let made = run_installed(&prefix, "mkfs", &["-t", "blockfs", text(&image), "16M"]);
    assert_success(&made);
    assert_eq!(fs::metadata(&image).unwrap().len(), 16 << 20);
    assert_success(&run_installed(&prefix, "fsck", &["-t", "blockfs", "-n", text(&image)]));
    // A blank file, as `truncate` or `fallocate` leave it, is taken too.
    let blank = scratch.path("blank.img");
    fs::File::create(&blank).unwrap().set_len(8 << 20).unwrap();
    assert_success(&run_installed(&prefix, "mkfs.blockfs", &[text(&blank), "8"]));
    assert_success(&run_installed(&prefix, "blockfs", &["info", text(&blank)]));
}

#[test]
fn every_man_page_renders() {
    let scratch = Scratch::new("install-man");
    let prefix = scratch.path("prefix");
    install(&prefix);
    let man8 = prefix.join("share/man/man8");
    let mut pages: Vec<PathBuf> = fs::read_dir(&man8).unwrap().map(|entry| entry.unwrap().path()).collect();
    pages.sort();
    let names: Vec<String> =
        pages.iter().map(|page| page.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for expected in [
        "mkfs-blockfs",
        "mkfs.blockfs",
        "fsck-blockfs",
        "fsck.blockfs",
        "blockfs",
        "blockfs-ls",
        "blockfs-put",
    ] {
        assert!(names.iter().any(|name| name == expected), "no page {expected}: {names:?}");
    }
    // One page for each blockfs subcommand.
    let help = run_ok(&["--help"]);
    let commands = help.lines().skip_while(|line| !line.starts_with("Commands:")).skip(1);
    for command in
        commands.take_while(|line| line.starts_with("  ")).map(|line| line.split_whitespace().next().unwrap())
    {
        if command != "help" {
            assert!(names.contains(&format!("blockfs-{command}")), "no page for blockfs {command}");
        }
    }
    for (page, name) in pages.iter().zip(&names) {
        let rendered =
            Command::new("man").args(["-P", "cat", "-l"]).arg(page).env("MANWIDTH", "80").output().unwrap();
        assert_success(&rendered);
        let text = stdout(&rendered);
        assert!(text.contains("NAME") && text.contains(name.as_str()), "{name}:\n{text}");
        assert!(stderr(&rendered).is_empty(), "{name}: {}", stderr(&rendered));
    }
}

#[test]
fn shell_completions_are_installed_and_load() {
    let scratch = Scratch::new("install-completions");
    let prefix = scratch.path("prefix");
    install(&prefix);
    let share = prefix.join("share");
    for tool in ["mkfs-blockfs", "mkfs.blockfs", "fsck-blockfs", "fsck.blockfs", "blockfs"] {
        for file in [
            format!("bash-completion/completions/{tool}"),
            format!("zsh/site-functions/_{tool}"),
            format!("fish/vendor_completions.d/{tool}.fish"),
        ] {
            assert!(share.join(&file).is_file(), "missing {file}");
        }
    }
    let bash = share.join("bash-completion/completions/blockfs");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p blockfs", text(&bash)))
        .output()
        .unwrap();
    assert_success(&loaded);
    assert!(stdout(&loaded).contains("blockfs"), "{}", stdout(&loaded));
}
