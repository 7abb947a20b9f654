//! `blockfs import`: archives made by `export` and by GNU tar (GNU and
//! pax formats) come back as the tree they hold; hostile members are
//! skipped with a warning and nothing lands outside the destination.

mod common;

use std::fs;
use std::process::Command;

use blockfs_cli::tar::{Kind, Member, TarWriter};
use common::tree::{self, Extras};
use common::*;

fn empty_image(scratch: &Scratch, name: &str) -> String {
    let image = scratch.path(name);
    mkfs_image(&image, 64);
    text(&image).to_owned()
}

#[test]
fn export_then_import_gives_back_the_same_tree_and_archive() {
    let scratch = Scratch::new("import-roundtrip");
    let source = scratch.path("src");
    tree::build(&source, Extras { socket: false });
    let original = scratch.path("original.img");
    assert_success(&mkfs(&["-o", text(&original), "-s", "64", "-p", text(&source)]));
    let archive = scratch.path("tree.tar");
    run_ok(&["export", text(&original), text(&archive)]);

    let copy = empty_image(&scratch, "copy.img");
    run_ok(&["import", &copy, text(&archive), "/"]);
    let again = scratch.path("again.tar");
    run_ok(&["export", &copy, text(&again)]);
    assert!(fs::read(&archive).unwrap() == fs::read(&again).unwrap(), "the archive survives a round trip");

    let out = scratch.path("out");
    run_ok(&["get", "-r", &copy, "/", text(&out)]);
    let (mut expected, mut found) = (tree::snapshot(&source), tree::snapshot(&out));
    for object in expected.values_mut().chain(found.values_mut()) {
        object.atime = 0;
    }
    tree::assert_same(&expected, &found);
}

#[test]
fn gnu_tar_archives_import_into_a_subdirectory() {
    let scratch = Scratch::new("import-gnu");
    let source = scratch.path("src");
    tree::build(&source, Extras { socket: false });
    let image = empty_image(&scratch, "gnu.img");
    run_ok(&["mkdir", "-p", &image, "/from-gnu", "/from-pax"]);
    for (format, dir) in [("gnu", "/from-gnu"), ("pax", "/from-pax")] {
        let archive = scratch.path(&format!("{format}.tar"));
        let made = Command::new("tar")
            .args(["-c", &format!("--format={format}"), "-f"])
            .arg(&archive)
            .arg("-C")
            .arg(&source)
            .arg(".")
            .output()
            .unwrap();
        assert_success(&made);
        // Read from standard input, as in `tar -c ... | blockfs import IMAGE - DIR`.
        let imported = Command::new(env!("CARGO_BIN_EXE_blockfs"))
            .args(["import", &image, "-", dir])
            .stdin(fs::File::open(&archive).unwrap())
            .output()
            .unwrap();
        assert_success(&imported);

        let out = scratch.path(format);
        run_ok(&["get", "-r", &image, dir, text(&out)]);
        let (mut expected, mut found) = (tree::snapshot(&source), tree::snapshot(&out));
        for object in expected.values_mut().chain(found.values_mut()) {
            object.atime = 0;
        }
        tree::assert_same(&expected, &found);
    }
}

/// Appends one content-less member (or a file with `content`).
fn member(tar: &mut TarWriter<Vec<u8>>, name: &[u8], kind: Kind, content: &[u8]) {
    let header = Member { name, kind, perm: 0o644, uid: 0, gid: 0, mtime: 1_000_000_000 };
    tar.header(&header).unwrap();
    if !content.is_empty() {
        tar.content(content).unwrap();
        tar.end_content().unwrap();
    }
}

#[test]
fn hostile_members_are_skipped_and_stay_inside_the_destination() {
    let scratch = Scratch::new("import-hostile");
    let image = empty_image(&scratch, "hostile.img");
    run_ok(&["mkdir", &image, "/dest"]);
    run_ok(&["touch", &image, "/outside-file"]);

    let mut tar = TarWriter::new(Vec::new());
    let file = |size: usize| Kind::Regular { size: size as u64 };
    member(&mut tar, b"../escape", file(4), b"evil");
    member(&mut tar, b"a/../../escape2", file(4), b"evil");
    member(&mut tar, b"/absolute/kept", file(5), b"fine\n");
    member(&mut tar, b"link", Kind::Symlink { target: b"/" }, b"");
    member(&mut tar, b"link/through", file(4), b"evil");
    member(&mut tar, b"uplink", Kind::Symlink { target: b".." }, b"");
    member(&mut tar, b"uplink/outside-file", file(4), b"evil");
    member(&mut tar, b"hard", Kind::HardLink { target: b"../outside-file" }, b"");
    member(&mut tar, b"hard2", Kind::HardLink { target: b"nowhere" }, b"");
    member(&mut tar, b"./good", file(3), b"ok\n");
    let archive = scratch.path("hostile.tar");
    fs::write(&archive, tar.finish().unwrap()).unwrap();

    let output = blockfs(&["import", &image, text(&archive), "/dest"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    for warning in [
        "/dest: skipping member \"../escape\": its path contains ..",
        "/dest: skipping member \"a/../../escape2\": its path contains ..",
        "/dest/link/through: \"link\" is not a directory; skipped",
        "/dest/uplink/outside-file: \"uplink\" is not a directory; skipped",
        "/dest/hard: link target contains ..; skipped",
        "/dest/hard2: link target /dest/nowhere is not in the image; skipped",
        "6 entries skipped (see the warnings above)",
    ] {
        assert!(message.contains(&format!("blockfs: {image}: {warning}\n")), "lacks {warning:?}:\n{message}");
    }
    assert_eq!(run_ok(&["cat", &image, "/dest/good"]), "ok\n");
    assert_eq!(run_ok(&["cat", &image, "/dest/absolute/kept"]), "fine\n", "a leading / is dropped");
    assert_eq!(run_ok(&["ls", &image, "/"]), "dest\noutside-file\n", "nothing outside the destination");
    assert_eq!(run_ok(&["cat", &image, "/outside-file"]), "");
}

#[test]
fn damaged_archives_are_refused_with_their_offset() {
    let scratch = Scratch::new("import-damaged");
    let image = empty_image(&scratch, "damaged.img");
    let archive = scratch.path("damaged.tar");
    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"file", Kind::Regular { size: 4000 }, b"");
    tar.content(&[7; 100]).unwrap();
    let mut bytes = tar.end_content().map(|_| ()).and_then(|()| tar.finish()).unwrap();
    bytes.truncate(1024);
    fs::write(&archive, &bytes).unwrap();
    let output = blockfs(&["import", &image, text(&archive), "/"]);
    assert_failure(&output, &[&format!("{}: tar entry at byte 0: archive ends", text(&archive))]);

    fs::write(&archive, vec![b'x'; 512]).unwrap();
    let output = blockfs(&["import", &image, text(&archive), "/"]);
    assert_failure(&output, &["tar header at byte 0: checksum mismatch"]);
    assert!(run_ok(&["info", &image]).contains("State:              clean\n"));
}

#[test]
fn an_import_waiting_on_a_pipe_holds_the_image() {
    let scratch = Scratch::new("import-fifo");
    let image = empty_image(&scratch, "fifo.img");
    let fifo = scratch.path("archive.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut importer = Command::new(env!("CARGO_BIN_EXE_blockfs"))
        .args(["import", &image, text(&fifo), "/"])
        .spawn()
        .unwrap();
    // Opening the FIFO for writing waits until the import has opened it;
    // the import then locks the image and waits for the first record.
    let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let started = std::time::Instant::now();
    // A reader sees the image as last committed, and is told so.
    let listing = loop {
        let output = blockfs(&["ls", &image]);
        if !stderr(&output).is_empty() || started.elapsed().as_secs() > 20 {
            break output;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_success(&listing);
    assert_eq!(
        stderr(&listing),
        format!(
            "blockfs: {image}: image is in use (mounted read-write or being changed); showing its last committed state\n"
        )
    );
    let output = blockfs(&["mkdir", &image, "/x"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stderr(&output), format!("blockfs: {image}: image is in use\n"));

    let mut tar = TarWriter::new(Vec::new());
    member(&mut tar, b"arrived", Kind::Regular { size: 3 }, b"hi\n");
    std::io::Write::write_all(&mut writer, &tar.finish().unwrap()).unwrap();
    drop(writer);
    assert!(importer.wait().unwrap().success());
    assert_eq!(run_ok(&["cat", &image, "/arrived"]), "hi\n");
}
