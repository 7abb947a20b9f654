//! The `blockfs` inspection tool on an image made by mkfs-blockfs.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;

/// 2004-11-09 11:33:20 UTC.
const MTIME: u32 = 1_100_000_000;

/// An image of a small tree, made reproducibly so times are known.
fn sample_image(scratch: &Scratch) -> String {
    let source = scratch.path("src");
    write_file(&source.join("etc/motd"), b"welcome\n");
    write_file(&source.join("bin/su"), b"#!/bin/sh\n");
    set_mode(&source.join("bin/su"), 0o4755);
    write_file(&source.join(".hidden"), b"");
    symlink("motd", source.join("etc/issue")).unwrap();
    set_times(&source.join("bin/su"), MTIME, MTIME);
    let image = scratch.path("sample.img");
    let output = mkfs_binary()
        .env("SOURCE_DATE_EPOCH", "1200000000")
        .args(["-o", text(&image), "-s", "4", "--label", "sample", "-p", text(&source)])
        .output()
        .unwrap();
    assert_success(&output);
    text(&image).to_owned()
}

#[test]
fn info_reports_geometry_state_and_extension() {
    let scratch = Scratch::new("info");
    let image = sample_image(&scratch);
    let info = run_ok(&["info", &image]);
    for line in [
        "Blocks:             1024\n",
        "Inodes:             672\n",
        "Inode table blocks: 16\n",
        "First data block:   18\n",
        "Mount count:        0\n",
        "State:              clean\n",
        "Extension:          present\n",
        "Label:              sample\n",
        "Created:            2008-01-10 21:20:00 UTC\n",
        "Last checked:       never\n",
        "Journal inode:      ",
    ] {
        assert!(info.contains(line), "info lacks {line:?}:\n{info}");
    }
    let json = run_ok(&["info", "--json", &image]);
    assert!(json.starts_with("{\n") && json.ends_with("}\n"), "{json}");
    for line in [
        "  \"blocks\": 1024,\n",
        "  \"state\": \"clean\",\n",
        "  \"label\": \"sample\",\n",
        "  \"last_check_time\": 0,\n",
    ] {
        assert!(json.contains(line), "json lacks {line:?}:\n{json}");
    }
    let fields: Vec<&str> = json.lines().filter(|line| line.starts_with("  \"")).collect();
    let (last, others) = fields.split_last().unwrap();
    assert!(others.iter().all(|f| f.ends_with(',')) && !last.ends_with(','), "{json}");
}

#[test]
fn info_explains_a_missing_extension_record() {
    let scratch = Scratch::new("info-v1");
    let image = sample_image(&scratch);
    // What the older kernel driver does on sync: zero block 0 after the superblock.
    let mut bytes = fs::read(&image).unwrap();
    bytes[62..4096].fill(0);
    fs::write(&image, bytes).unwrap();
    let info = run_ok(&["info", &image]);
    assert!(info.contains("Extension:          missing: plain version 1 image"), "{info}");
    assert!(!info.contains("UUID:"), "{info}");
    assert!(run_ok(&["info", "--json", &image]).contains("\"uuid\": null,"));
}

#[test]
fn ls_lists_like_coreutils() {
    let scratch = Scratch::new("ls");
    let image = sample_image(&scratch);
    assert_eq!(run_ok(&["ls", &image]), "bin\netc\n");
    assert_eq!(run_ok(&["ls", "-a", &image, "/"]), ".\n..\n.hidden\nbin\netc\n");
    assert_eq!(run_ok(&["ls", &image, "/etc/issue"]), "/etc/issue\n");

    let long = run_ok(&["ls", "-l", &image, "/bin"]);
    assert_eq!(long, "total 4\n-rwsr-xr-x 1 0 0 10 2004-11-09 11:33 su\n");
    let links = run_ok(&["ls", "-l", &image, "/etc"]);
    assert!(links.contains(" 2008-01-10 21:20 issue -> motd\n"), "{links}");
    assert!(links.starts_with("total 8\nlrwxrwxrwx 1 0 0 4 "), "{links}");

    let recursive = run_ok(&["ls", "-R", &image, "/"]);
    assert_eq!(recursive, "/:\nbin\netc\n\n/bin:\nsu\n\n/etc:\nissue\nmotd\n");
}

#[test]
fn cat_stat_and_readlink() {
    let scratch = Scratch::new("cat");
    let image = sample_image(&scratch);
    assert_eq!(run_ok(&["cat", &image, "/etc/motd"]), "welcome\n");
    assert_eq!(run_ok(&["cat", &image, "/etc/issue"]), "welcome\n", "cat follows symlinks");
    assert_eq!(run_ok(&["readlink", &image, "/etc/issue"]), "motd\n");

    let stat = run_ok(&["stat", &image, "/bin/su"]);
    for line in [
        "  File: /bin/su\n",
        "  Type: regular file\n",
        "Access: (4755/-rwsr-xr-x)  Uid: 0  Gid: 0\n",
        "Modify: 2004-11-09 11:33:20 UTC (1100000000)\n",
    ] {
        assert!(stat.contains(line), "stat lacks {line:?}:\n{stat}");
    }
    assert!(run_ok(&["stat", &image, "/etc/issue"])
        .starts_with("  File: /etc/issue -> motd\n  Type: symbolic link\n"));
}

#[test]
fn errors_name_the_image_and_path() {
    let scratch = Scratch::new("errors");
    let image = sample_image(&scratch);
    let cases: [(&[&str], String); 4] = [
        (&["cat", &image, "/missing"], format!("blockfs: {image}: /missing: no such file or directory\n")),
        (&["readlink", &image, "/etc/motd"], format!("blockfs: {image}: /etc/motd: not a symbolic link\n")),
        (&["cat", &image, "/etc"], format!("blockfs: {image}: /etc: is a directory\n")),
        (&["ls", &image, "/etc/motd/x"], format!("blockfs: {image}: /etc/motd/x: not a directory\n")),
    ];
    for (args, expected) in cases {
        let output = blockfs(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&output), expected);
    }

    let not_an_image = scratch.path("plain.txt");
    fs::write(&not_an_image, vec![b'x'; 8192]).unwrap();
    let output = blockfs(&["info", text(&not_an_image)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with(&format!("blockfs: {}: not a BlockFS image", not_an_image.display())));
}
