//! `blockfs put`, `get` and `export` end to end: every kind of object goes
//! into an image and comes back out (by `get`, and through a tar archive
//! extracted by the real GNU tar) the same in everything `cp -a` keeps.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::tree::{self, Extras, ATIME, BIG_FILE};
use common::*;

/// A fresh, empty image of `size_mb`.
fn empty_image(scratch: &Scratch, size_mb: u32) -> String {
    let image = scratch.path("test.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", &size_mb.to_string()]));
    text(&image).to_owned()
}

#[test]
fn put_then_get_keeps_every_kind_of_object() {
    let scratch = Scratch::new("put-get");
    let source = scratch.path("src");
    tree::build(&source, Extras { socket: true });
    let expected = tree::snapshot(&source);
    let image = empty_image(&scratch, 64);

    run_ok(&["put", "-r", &image, text(&source), "/"]);
    let out = scratch.path("out");
    run_ok(&["get", "-r", &image, "/src", text(&out)]);
    tree::assert_same(&expected, &tree::snapshot(&out));
    if !tree::is_root() {
        eprintln!("owners and device nodes not tested: they need root");
    }

    // The same objects one at a time, into an existing directory.
    let one_by_one = scratch.path("one-by-one");
    fs::create_dir(&one_by_one).unwrap();
    for name in ["big.bin", "empty", "link-absolute", "pipe", "socket", "setuid", "sticky"] {
        let inner = format!("/src/{name}");
        let args = ["get", "-r", &image, &inner, text(&one_by_one)];
        run_ok(&args);
        let copied = tree::snapshot(&one_by_one.join(name));
        assert_eq!(copied[&Vec::new()], expected[name.as_bytes()], "{name}");
    }
    assert_eq!(fs::metadata(one_by_one.join("big.bin")).unwrap().len(), BIG_FILE as u64);
}

#[test]
fn put_places_copies_like_cp() {
    let scratch = Scratch::new("put-place");
    let image = empty_image(&scratch, 8);
    let a = scratch.path("a.txt");
    let b = scratch.path("b.txt");
    write_file(&a, b"first\n");
    write_file(&b, b"second\n");
    fs::hard_link(&a, scratch.path("a-again")).unwrap();
    let a_again = scratch.path("a-again");

    run_ok(&["mkdir", &image, "/dir"]);
    // Several sources into a directory; hard links between them are kept.
    run_ok(&["put", &image, text(&a), text(&b), text(&a_again), "/dir"]);
    let fs = mount(Path::new(&image));
    let attr = |path: &[u8]| fs.getattr(fs.resolve(path, false).unwrap()).unwrap();
    assert_eq!(read_all(&fs, attr(b"/dir/b.txt").ino), b"second\n");
    assert_eq!(attr(b"/dir/a.txt").ino, attr(b"/dir/a-again").ino);
    assert_eq!(attr(b"/dir/a.txt").nlink, 2);
    drop(fs);

    // One source to a new name; then over an existing file, which is replaced.
    run_ok(&["put", &image, text(&a), "/renamed"]);
    run_ok(&["put", &image, text(&b), "/renamed"]);
    assert_eq!(run_ok(&["cat", &image, "/renamed"]), "second\n");
    assert_eq!(run_ok(&["ls", &image, "/"]), "dir\nrenamed\n", "no temporary name is left behind");

    // A directory merges into an existing one; a file never replaces a directory.
    let tree = scratch.path("dir");
    write_file(&tree.join("new.txt"), b"merged\n");
    write_file(&tree.join("b.txt"), b"replaced\n");
    run_ok(&["put", "-r", &image, text(&tree), "/"]);
    assert_eq!(run_ok(&["ls", &image, "/dir"]), "a-again\na.txt\nb.txt\nnew.txt\n");
    assert_eq!(run_ok(&["cat", &image, "/dir/b.txt"]), "replaced\n");

    run_ok(&["mkdir", &image, "/dir/sub"]);
    let sub = scratch.path("sub");
    write_file(&sub, b"a file named like a directory\n");
    let sub_refused = format!("{image}: /dir/sub: cannot overwrite directory with non-directory (copying ");
    let refusals: [(&[&str], &str); 5] = [
        (&["put", &image, text(&sub), "/dir"], &sub_refused),
        (&["put", &image, text(&tree), "/"], "dir: is a directory (use -r to copy it)"),
        (
            &["put", "-r", &image, text(&tree), "/renamed"],
            "/renamed: cannot overwrite non-directory with directory",
        ),
        (&["put", &image, text(&a), text(&b), "/renamed"], "/renamed: is not a directory"),
        (&["put", &image, "/no/such/file", "/"], "/no/such/file: No such file or directory"),
    ];
    let before = run_ok(&["ls", "-lR", &image]);
    for (args, message) in refusals {
        let output = blockfs(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_failure(&output, &[message]);
    }
    assert_eq!(run_ok(&["ls", "-lR", &image]), before, "refused copies change nothing");

    let tiny = scratch.path("tiny.img");
    assert_success(&mkfs(&["-o", text(&tiny), "-s", "1"]));
    let big = scratch.path("big.bin");
    write_file(&big, &pattern(2 << 20));
    let output = blockfs(&["put", text(&tiny), text(&big), "/"]);
    assert_failure(&output, &[&format!("{}: /: not enough space: the copy needs ", text(&tiny))]);
}

#[test]
fn a_failed_put_leaves_a_clean_consistent_image() {
    let scratch = Scratch::new("put-fails");
    let image = empty_image(&scratch, 8);
    let source = scratch.path("src");
    write_file(&source.join("a/first"), b"1\n");
    write_file(&source.join("b/clash/inner"), b"2\n");
    write_file(&source.join("c/last"), b"3\n");
    run_ok(&["mkdir", "-p", &image, "/src/b"]);
    run_ok(&["touch", &image, "/src/b/clash"]);

    let output = blockfs(&["put", "-r", &image, text(&source), "/"]);
    assert_failure(
        &output,
        &[&format!("{image}: /src/b/clash: cannot overwrite non-directory with directory")],
    );
    // What was copied before the clash stays; the image was unmounted cleanly.
    assert_eq!(run_ok(&["cat", &image, "/src/a/first"]), "1\n");
    assert!(run_ok(&["info", &image]).contains("State:              clean\n"));
    assert_eq!(run_ok(&["ls", &image, "/src"]), "a\nb\n");
}

#[test]
fn get_places_copies_like_cp_and_never_merges() {
    let scratch = Scratch::new("get-place");
    let image = empty_image(&scratch, 8);
    let file = scratch.path("f.txt");
    write_file(&file, b"v1\n");
    run_ok(&["put", &image, text(&file), "/"]);
    run_ok(&["mkdir", "-p", &image, "/d/e"]);

    let dest = scratch.path("dest");
    fs::create_dir(&dest).unwrap();
    run_ok(&["get", &image, "/f.txt", text(&dest)]);
    assert_eq!(fs::read(dest.join("f.txt")).unwrap(), b"v1\n");
    // An existing file is replaced (by rename, so a link to it is untouched).
    fs::hard_link(dest.join("f.txt"), scratch.path("old-link")).unwrap();
    write_file(&file, b"v2\n");
    run_ok(&["put", &image, text(&file), "/f.txt"]);
    run_ok(&["get", &image, "/f.txt", text(&dest.join("f.txt"))]);
    assert_eq!(fs::read(dest.join("f.txt")).unwrap(), b"v2\n");
    assert_eq!(fs::read(scratch.path("old-link")).unwrap(), b"v1\n");

    let onto_file = dest.join("f.txt");
    let cases: [(&[&str], String); 6] = [
        (&["get", &image, "/d", text(&dest)], format!("{image}: /d: is a directory (use -r to copy it)")),
        (&["get", "-r", &image, "/", text(&dest)], format!("{}: already exists", text(&dest))),
        (
            &["get", "-r", &image, "/d", text(&onto_file)],
            "cannot overwrite non-directory with directory".into(),
        ),
        (&["get", &image, "/missing", text(&dest)], format!("{image}: /missing: no such file or directory")),
        (&["get", &image, "/f.txt", &image], format!("{image}: is the image itself")),
        (&["export", &image, &image], format!("{image}: is the image itself")),
    ];
    for (args, message) in cases {
        let output = blockfs(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_failure(&output, &[&message]);
    }
    run_ok(&["get", "-r", &image, "/d", text(&dest)]);
    let output = blockfs(&["get", "-r", &image, "/d", text(&dest)]);
    assert_failure(&output, &["dest/d: already exists (a copy never merges into a host directory)"]);
    let mut names: Vec<_> = fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["d", "f.txt"], "no temporary copy is left behind");
}

#[test]
fn export_extracts_with_gnu_tar_to_the_same_tree() {
    let scratch = Scratch::new("export");
    let source = scratch.path("src");
    tree::build(&source, Extras { socket: false });
    let mut expected = tree::snapshot(&source);
    let image = scratch.path("tree.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", "64", "-p", text(&source)]));

    let archive = scratch.path("tree.tar");
    run_ok(&["export", text(&image), text(&archive)]);
    let listing = Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    assert_success(&listing);
    for name in stdout(&listing).lines() {
        assert!(!name.starts_with('/') && !name.split('/').any(|c| c == ".."), "member {name:?}");
    }
    assert!(stdout(&listing).starts_with("./\n"), "the root comes first, as ./");

    let out = scratch.path("extracted");
    fs::create_dir(&out).unwrap();
    let extract = Command::new("tar")
        .args(["-x", "--same-permissions", "--numeric-owner", "-f"])
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&extract);
    assert_eq!(stderr(&extract), "", "tar had nothing to complain about");
    // Tar keeps mtimes only; extraction sets atimes to now.
    let mut found = tree::snapshot(&out);
    for object in expected.values_mut().chain(found.values_mut()) {
        object.atime = ATIME.into();
    }
    if !tree::is_root() {
        // Without root, tar leaves files owned by whoever extracts them.
        for object in expected.values_mut().chain(found.values_mut()) {
            object.owner = (0, 0);
        }
    }
    tree::assert_same(&expected, &found);

    // `-` streams the same archive to standard output.
    let streamed = blockfs(&["export", text(&image), "-"]);
    assert_success(&streamed);
    assert!(streamed.stdout == fs::read(&archive).unwrap(), "stdout export differs from the file");
    assert_eq!(fs::metadata(&archive).unwrap().size() % 10240, 0, "padded to whole records");
}

#[test]
fn export_skips_what_tar_cannot_hold_with_a_warning() {
    let scratch = Scratch::new("export-socket");
    let source = scratch.path("src");
    write_file(&source.join("kept"), b"kept\n");
    drop(std::os::unix::net::UnixListener::bind(source.join("socket")).unwrap());
    let image = scratch.path("s.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", "4", "-p", text(&source)]));
    let archive = scratch.path("s.tar");
    let output = blockfs(&["export", text(&image), text(&archive)]);
    assert_eq!(output.status.code(), Some(1));
    let image = text(&image);
    assert_eq!(
        stderr(&output),
        format!(
            "blockfs: {image}: /socket: a socket cannot be archived; skipped\n\
             blockfs: {image}: 1 entry skipped (see the warning above)\n"
        )
    );
    let listing = Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    assert_eq!(stdout(&listing), "./\nkept\n", "the rest is archived");
}

#[test]
fn device_nodes_come_out_as_root_and_are_skipped_otherwise() {
    use blockfs_cli::tar::{Kind, Member, TarWriter};
    use std::os::unix::fs::FileTypeExt;

    let scratch = Scratch::new("get-devices");
    let image = empty_image(&scratch, 4);
    // An archive carries a device node into the image without needing root.
    let mut tar = TarWriter::new(Vec::new());
    let node = Member {
        name: b"console",
        kind: Kind::CharDevice { rdev: (5, 1) },
        perm: 0o600,
        uid: 0,
        gid: 0,
        mtime: 0,
    };
    tar.header(&node).unwrap();
    let archive = scratch.path("dev.tar");
    fs::write(&archive, tar.finish().unwrap()).unwrap();
    run_ok(&["import", &image, text(&archive), "/"]);

    let out = scratch.path("out");
    let output = blockfs(&["get", "-r", &image, "/", text(&out)]);
    if tree::is_root() {
        assert_success(&output);
        let made = fs::symlink_metadata(out.join("console")).unwrap();
        assert!(made.file_type().is_char_device());
        assert_eq!(made.rdev(), 0x501);
    } else {
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output)
            .contains(&format!("{image}: /console: making a device node needs root; skipped\n")));
        assert!(!out.join("console").exists(), "the rest is copied, the node skipped");
        assert!(out.is_dir());
    }
}
