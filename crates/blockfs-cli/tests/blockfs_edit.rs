//! The editing subcommands (mkdir, rm, rmdir, mv, ln, chmod, chown,
//! touch, truncate) on an image, checked through the library, and their
//! errors and exit codes.

mod common;

use std::path::Path;

use blockfs::{Attr, FileDevice, FileSystem, FileType};
use common::*;

fn image_with_a_file(scratch: &Scratch) -> String {
    let source = scratch.path("src");
    write_file(&source.join("etc/motd"), b"welcome\n");
    let image = scratch.path("edit.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", "8", "-p", text(&source)]));
    text(&image).to_owned()
}

fn attr(fs: &FileSystem<FileDevice>, path: &str) -> Attr {
    fs.getattr(fs.resolve(path.as_bytes(), false).unwrap()).unwrap()
}

fn exists(fs: &FileSystem<FileDevice>, path: &str) -> bool {
    fs.resolve(path.as_bytes(), false).is_ok()
}

#[test]
fn every_edit_changes_the_image_as_coreutils_would() {
    let scratch = Scratch::new("edits");
    let image = image_with_a_file(&scratch);
    let img = image.as_str();

    run_ok(&["mkdir", img, "/srv"]);
    run_ok(&["mkdir", "-p", img, "/srv/www/html", "/opt/app/"]);
    run_ok(&["mkdir", "-p", img, "/srv/www"]); // exists: no error with -p
    run_ok(&["touch", img, "/srv/www/html/index.html"]);
    run_ok(&["truncate", "-s", "3", img, "/etc/motd"]);
    run_ok(&["touch", "-d", "@1000000000", img, "/etc/motd", "/srv/stamp"]);
    run_ok(&["truncate", "-s", "5M", img, "/srv/big"]);
    run_ok(&["chmod", img, "4750", "/srv/big"]);
    run_ok(&["chown", img, "1000:100", "/srv/www"]);
    run_ok(&["chown", img, ":7", "/srv/stamp"]);
    run_ok(&["ln", "-s", img, "../etc/motd", "/srv/motd-link"]);
    run_ok(&["chown", "--no-dereference", img, "42", "/srv/motd-link"]);
    run_ok(&["ln", img, "/etc/motd", "/srv/motd-hard"]);
    run_ok(&["ln", "-s", img, "/etc/motd", "/opt"]); // into a directory, under the target's name
    run_ok(&["mv", img, "/srv/stamp", "/srv/stamp2"]);
    run_ok(&["mv", img, "/srv/stamp2", "/opt/app"]); // into a directory
    run_ok(&["mkdir", img, "/gone", "/gone/sub"]);
    run_ok(&["touch", img, "/gone/sub/file"]);
    run_ok(&["rm", "-r", img, "/gone"]);
    run_ok(&["rm", img, "/srv/motd-hard"]);
    run_ok(&["rm", "-f", img, "/no/such", "/srv/nothing"]);
    run_ok(&["mkdir", img, "/empty"]);
    run_ok(&["rmdir", img, "/empty"]);

    let fs = mount(Path::new(img));
    assert_eq!(attr(&fs, "/srv/www/html").kind, FileType::Directory);
    assert_eq!((attr(&fs, "/opt/app").kind, attr(&fs, "/opt/app").perm), (FileType::Directory, 0o755));
    let index = attr(&fs, "/srv/www/html/index.html");
    assert_eq!(
        (index.kind, index.size, index.perm, index.uid, index.gid),
        (FileType::Regular, 0, 0o644, 0, 0)
    );
    let motd = attr(&fs, "/etc/motd");
    assert_eq!((motd.atime, motd.mtime), (1_000_000_000, 1_000_000_000), "touch -d sets both times");
    assert_eq!(read_all(&fs, motd.ino), b"wel", "truncate shrinks");
    assert_eq!(motd.nlink, 1, "rm removed the hard link");
    let big = attr(&fs, "/srv/big");
    assert_eq!((big.size, big.perm), (5 << 20, 0o4750));
    assert!(read_all(&fs, big.ino).iter().all(|&b| b == 0), "truncate grows with zeros");
    let www = attr(&fs, "/srv/www");
    assert_eq!((www.uid, www.gid), (1000, 100));
    let stamp = attr(&fs, "/opt/app/stamp2");
    assert_eq!((stamp.uid, stamp.gid, stamp.mtime), (0, 7, 1_000_000_000), "mv keeps the inode");
    let link = attr(&fs, "/srv/motd-link");
    assert_eq!((link.kind, link.uid), (FileType::Symlink, 42));
    assert_eq!(fs.readlink(link.ino).unwrap(), b"../etc/motd");
    assert_eq!(fs.readlink(attr(&fs, "/opt/motd").ino).unwrap(), b"/etc/motd");
    for gone in ["/gone", "/srv/motd-hard", "/empty", "/srv/stamp", "/srv/stamp2"] {
        assert!(!exists(&fs, gone), "{gone} is gone");
    }
    drop(fs);
    let info = blockfs(&["info", img]);
    assert!(stdout(&info).contains("State:              clean\n"), "every writer unmounted cleanly");
    assert!(stdout(&info).contains("Mount count:        0\n"), "edits by the host tool are not mounts");
}

#[test]
fn refused_edits_name_the_image_and_path() {
    let scratch = Scratch::new("edit-errors");
    let image = image_with_a_file(&scratch);
    let img = image.as_str();
    run_ok(&["mkdir", "-p", img, "/d/sub"]);
    let cases: [(&[&str], &str); 14] = [
        (&["mkdir", img, "/etc"], "/etc: file exists"),
        (&["mkdir", img, "/no/such"], "/no/such: no such file or directory"),
        (&["mkdir", "-p", img, "/etc/motd/x"], "/etc/motd: not a directory"),
        (&["rm", img, "/d"], "/d: is a directory (use -r to remove it)"),
        (&["rm", img, "/missing"], "/missing: no such file or directory"),
        (&["rm", "-r", img, "/"], "/: not allowed on the root directory"),
        (&["rm", img, "/d/.."], "/d/..: refusing to use . or .. as a name"),
        (&["rmdir", img, "/d"], "/d: directory not empty"),
        (&["rmdir", img, "/etc/motd"], "/etc/motd: not a directory"),
        (&["mv", img, "/d", "/d/sub"], "/d: cannot move a directory into itself or its subdirectories"),
        (&["ln", img, "/d", "/d2"], "/d2: operation not permitted"),
        (
            &["ln", img, "relative", "/x"],
            "relative: a hard link's target must be an absolute path in the image",
        ),
        (&["truncate", "-s", "1", img, "/d"], "/d: is a directory"),
        (&["chmod", img, "644", "/missing"], "/missing: no such file or directory"),
    ];
    for (args, message) in cases {
        let output = blockfs(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output), format!("blockfs: {img}: {message}\n"), "{args:?}");
    }
    // Bad command lines are usage errors (exit 2), caught before the image is opened.
    let usage: [&[&str]; 5] = [
        &["chmod", img, "999", "/etc"],
        &["chown", img, "root", "/etc"],
        &["touch", "-d", "yesterday", img, "/etc"],
        &["truncate", "-s", "1KB", img, "/etc"],
        &["mkdir", img, "relative/path"],
    ];
    for args in usage {
        let output = blockfs(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
    let missing = scratch.path("missing.img");
    let output = blockfs(&["mkdir", text(&missing), "/x"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!("blockfs: {}: No such file or directory (os error 2)\n", text(&missing))
    );
}

#[test]
fn a_multi_path_edit_stops_at_the_first_failure() {
    let scratch = Scratch::new("edit-stop");
    let image = image_with_a_file(&scratch);
    let img = image.as_str();
    let output = blockfs(&["mkdir", img, "/one", "/etc", "/three"]);
    assert_failure(&output, &["/etc: file exists"]);
    let fs = mount(Path::new(img));
    assert!(exists(&fs, "/one") && !exists(&fs, "/three"));
}
