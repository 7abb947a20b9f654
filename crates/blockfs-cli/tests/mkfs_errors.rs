//! mkfs-blockfs failures: each exits non-zero with a message naming the
//! problem and leaves no output (and no temporary file) behind.

mod common;

use std::fs;

use common::*;

/// Names that may be in the scratch dir after a failed run: only inputs.
fn assert_only(scratch: &Scratch, expected: &[&str]) {
    assert_eq!(scratch.names(), expected, "leftover files after a failed run");
}

#[test]
fn bad_command_lines_are_refused() {
    let scratch = Scratch::new("flags");
    let out = text(&scratch.path("out.img")).to_owned();
    let cases: [(Vec<&str>, &str); 8] = [
        (vec!["-o", &out, "--size", "abc"], "--size"),
        (vec!["-o", &out, "--size", "0"], "--size"),
        (vec!["-o", &out, "--bogus"], "--bogus"),
        (vec!["--size", "8"], "--output"),
        (vec!["-o", &out, "--inodes", "0"], "--inodes"),
        (vec!["-o", &out, "--label", "a-label-that-is-longer-than-32-bytes"], "at most 32"),
        (vec!["-o", &out, "--attrs", "attrs.txt"], "--populate"),
        (vec!["-o", &out, "-s", "1", "--inodes", "100000"], "cannot lay out a 1 MB image with 100000 inodes"),
    ];
    for (args, needle) in cases {
        let output = mkfs(&args);
        assert_failure(&output, &[needle]);
        assert_only(&scratch, &[]);
    }
}

#[test]
fn malformed_source_date_epoch_is_an_error() {
    let scratch = Scratch::new("epoch");
    let output = mkfs_binary()
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .args(["-o", text(&scratch.path("out.img")), "-s", "1"])
        .output()
        .unwrap();
    assert_failure(&output, &["SOURCE_DATE_EPOCH=\"yesterday\""]);
    assert_only(&scratch, &[]);
}

#[test]
fn existing_files_that_are_not_images_are_kept_unless_forced() {
    let scratch = Scratch::new("overwrite");
    let out = scratch.path("out.img");
    fs::write(&out, b"precious data").unwrap();

    let refused = mkfs(&["-o", text(&out), "-s", "1"]);
    assert_failure(&refused, &["out.img", "not a BlockFS image", "--force"]);
    assert_eq!(fs::read(&out).unwrap(), b"precious data");
    assert_only(&scratch, &["out.img"]);

    assert_success(&mkfs(&["-o", text(&out), "-s", "1", "--force"]));
    assert_eq!(&fs::read(&out).unwrap()[..4], b"FKLB", "BlockFS magic, little-endian");

    // An existing BlockFS image may be replaced without --force.
    assert_success(&mkfs(&["-o", text(&out), "-s", "2"]));
    assert_eq!(fs::metadata(&out).unwrap().len(), 2 << 20);
    assert_only(&scratch, &["out.img"]);
}

#[test]
fn a_tree_that_does_not_fit_is_refused_before_writing() {
    let scratch = Scratch::new("too-big");
    let source = scratch.path("src");
    write_file(&source.join("large.bin"), &pattern(3 << 20));
    let out = scratch.path("out.img");

    let output = mkfs(&["-o", text(&out), "-s", "1", "-p", text(&source)]);
    // 3 MiB is 768 data blocks and one indirect block; a 1 MB image has
    // fewer than 256. (What is available depends on what format() spends.)
    assert_failure(&output, &["src does not fit", "needs 769 blocks (", "use a larger --size"]);
    assert_only(&scratch, &["src"]);

    for index in 0..50 {
        write_file(&source.join(format!("small-{index}")), b"");
    }
    let output = mkfs(&["-o", text(&out), "-s", "8", "--inodes", "42", "-p", text(&source)]);
    assert_failure(&output, &["and 51 inodes (", "use a larger --inodes"]);
    assert_only(&scratch, &["src"]);
}

#[test]
fn missing_populate_directory_is_named() {
    let scratch = Scratch::new("no-source");
    let output = mkfs(&["-o", text(&scratch.path("out.img")), "-p", text(&scratch.path("absent"))]);
    assert_failure(&output, &["absent: No such file or directory"]);
    assert_only(&scratch, &[]);
}

#[test]
fn bad_attrs_lines_name_the_file_and_line() {
    let scratch = Scratch::new("bad-attrs");
    let source = scratch.path("src");
    write_file(&source.join("etc/passwd"), b"");
    let out = scratch.path("out.img");
    let cases = [
        ("# ok\n/etc/passwd 0 0\netc 0 0\n", "line 3: path \"etc\" must be absolute"),
        ("/etc 0\n", "line 1: expected PATH UID GID [MODE], found 2 fields"),
        ("/etc 70000 0\n", "line 1: UID \"70000\" is not a decimal number"),
        ("/etc 0 x\n", "line 1: GID \"x\" is not a decimal number"),
        ("/etc 0 0 9\n", "line 1: mode \"9\" is not an octal number"),
        ("/etc 0 0 17777\n", "line 1: mode \"17777\""),
        ("/etc 0 0\n\n/etc/shadow 0 0 600\n", "line 3: /etc/shadow is not in the populated tree"),
    ];
    for (content, needle) in cases {
        let attrs = scratch.path("attrs.txt");
        fs::write(&attrs, content).unwrap();
        let output = mkfs(&["-o", text(&out), "-s", "1", "-p", text(&source), "--attrs", text(&attrs)]);
        assert_failure(&output, &[&format!("{}: {needle}", attrs.display())]);
        assert_only(&scratch, &["attrs.txt", "src"]);
    }
}

#[test]
fn ids_beyond_16_bits_are_refused_unless_squashed() {
    let scratch = Scratch::new("big-ids");
    let source = scratch.path("src");
    let owned = source.join("owned");
    write_file(&owned, b"");
    if std::os::unix::fs::chown(&owned, Some(70_000), Some(80_000)).is_err() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let out = scratch.path("out.img");
    let refused = mkfs(&["-o", text(&out), "-s", "1", "-p", text(&source)]);
    assert_failure(&refused, &["owned: uid 70000 does not fit", "--squash-ids"]);
    assert_only(&scratch, &["src"]);

    assert_success(&mkfs(&["-o", text(&out), "-s", "1", "-p", text(&source), "--squash-ids"]));
    let fs = mount(&out);
    let attr = fs.getattr(fs.resolve(b"/owned", false).unwrap()).unwrap();
    assert_eq!((attr.uid, attr.gid), (0, 0));
}

#[test]
fn unreadable_files_are_named_before_the_image_is_made() {
    let scratch = Scratch::new("unreadable");
    let source = scratch.path("src");
    let locked = source.join("locked");
    write_file(&locked, b"secret");
    set_mode(&locked, 0o000);
    if fs::File::open(&locked).is_ok() {
        eprintln!("skipped: this user (root) can read any file");
        return;
    }
    let output = mkfs(&["-o", text(&scratch.path("out.img")), "-s", "1", "-p", text(&source)]);
    assert_failure(&output, &["locked: Permission denied"]);
    assert_only(&scratch, &["src"]);
}

#[test]
fn files_of_4_gib_are_refused() {
    let scratch = Scratch::new("huge-file");
    let source = scratch.path("src");
    let huge = source.join("huge");
    write_file(&huge, b"");
    // Sparse on the host: costs no disk space.
    fs::File::options().write(true).open(&huge).unwrap().set_len(1 << 32).unwrap();
    let output = mkfs(&["-o", text(&scratch.path("out.img")), "-s", "1", "-p", text(&source)]);
    assert_failure(&output, &["huge: file is 4294967296 bytes, BlockFS allows at most 4294967295"]);
    assert_only(&scratch, &["src"]);
}
