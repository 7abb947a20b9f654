//! `get -r` and `export` on images forged to escape the destination:
//! directory entries edited in the image file to names with `/`, NUL, `.`
//! and `..`, a symlink and a directory sharing a name (so a file could be
//! written "through" the symlink), a directory loop and a symlink target
//! holding NUL. Each must be refused with a warning naming it, and
//! nothing may appear outside the destination.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Finds the one directory entry called `name` in the image bytes:
/// returns the offset of its 8-byte header.
fn find_entry(image: &[u8], name: &[u8]) -> usize {
    let hits: Vec<usize> = image
        .windows(name.len())
        .enumerate()
        .filter(|&(at, window)| window == name && at >= 8 && image[at - 2] as usize == name.len())
        .map(|(at, _)| at - 8)
        .collect();
    assert_eq!(hits.len(), 1, "entry {:?} found {} times", String::from_utf8_lossy(name), hits.len());
    hits[0]
}

/// Renames an entry in place (the record keeps its length).
fn rename_entry(image: &mut [u8], old: &[u8], new: &[u8]) {
    assert!(new.len() <= old.len());
    let header = find_entry(image, old);
    image[header + 6] = new.len() as u8;
    image[header + 8..header + 8 + new.len()].copy_from_slice(new);
}

/// Points an entry at another inode.
fn retarget_entry(image: &mut [u8], name: &[u8], ino: u32) {
    let header = find_entry(image, name);
    image[header..header + 4].copy_from_slice(&ino.to_le_bytes());
}

struct Forged {
    scratch: Scratch,
    image: String,
    /// The directory the escaping symlinks point at.
    outside: PathBuf,
}

/// A good image from mkfs-blockfs, then edited.
fn forged_image(name: &str) -> Forged {
    let scratch = Scratch::new(name);
    let outside = scratch.path("outside");
    fs::create_dir(&outside).unwrap();
    let source = scratch.path("src");
    write_file(&source.join("good.txt"), b"kept\n");
    write_file(&source.join("slashXname"), b"payload\n");
    write_file(&source.join("dotdot-file"), b"payload\n");
    write_file(&source.join("dot-file"), b"payload\n");
    write_file(&source.join("nulXbyte"), b"payload\n");
    std::os::unix::fs::symlink(&outside, source.join("escape")).unwrap();
    write_file(&source.join("escapf/file"), b"through the symlink\n");
    std::os::unix::fs::symlink("../outside", source.join("relesc")).unwrap();
    write_file(&source.join("relesd/file"), b"through the symlink\n");
    // The other order: the directory has the lower inode and is kept.
    write_file(&source.join("revers/file"), b"in a real directory\n");
    std::os::unix::fs::symlink(&outside, source.join("reverz")).unwrap();
    write_file(&source.join("loop1/loop2/loopback/inner"), b"x\n");
    std::os::unix::fs::symlink("nultargetQQ", source.join("badtarget")).unwrap();
    let image = scratch.path("forged.img");
    assert_success(&mkfs(&["-o", text(&image), "-s", "4", "-p", text(&source)]));
    fs::remove_dir_all(&source).unwrap();

    let loop1 = {
        let fs = mount(&image);
        fs.resolve(b"/loop1", false).unwrap()
    };
    let mut bytes = fs::read(&image).unwrap();
    rename_entry(&mut bytes, b"slashXname", b"slash/name");
    rename_entry(&mut bytes, b"dotdot-file", b"..");
    rename_entry(&mut bytes, b"dot-file", b".");
    rename_entry(&mut bytes, b"nulXbyte", b"nul\0byte");
    rename_entry(&mut bytes, b"escapf", b"escape");
    rename_entry(&mut bytes, b"relesd", b"relesc");
    rename_entry(&mut bytes, b"reverz", b"revers");
    retarget_entry(&mut bytes, b"loopback", loop1);
    let target = bytes.windows(11).position(|w| w == b"nultargetQQ").unwrap();
    bytes[target + 9] = 0;
    fs::write(&image, bytes).unwrap();
    Forged { image: text(&image).to_owned(), scratch, outside }
}

/// The warnings every forged entry must produce.
fn expected_warnings(image: &str) -> Vec<String> {
    [
        "/: skipping entry \"..\": name is . or ..",
        "/: skipping entry \".\": name is . or ..",
        "/: skipping entry \"escape\": its name appears twice",
        "/: skipping entry \"nul\\x00byte\": name contains a NUL byte",
        "/: skipping entry \"relesc\": its name appears twice",
        "/: skipping entry \"revers\": its name appears twice",
        "/: skipping entry \"slash/name\": name contains '/'",
        "/badtarget: unusable symlink target \"nultarget\\x00Q\"; skipped",
        "/loop1/loop2/loopback: directory reached twice (the image is damaged); skipped",
    ]
    .iter()
    .map(|warning| format!("blockfs: {image}: {warning}"))
    .collect()
}

fn assert_warned(output: &std::process::Output, image: &str, expected: &[String]) {
    assert_eq!(output.status.code(), Some(1), "skipped entries make the command fail");
    let message = stderr(output);
    for warning in expected {
        assert!(message.contains(&format!("{warning}\n")), "stderr lacks {warning:?}:\n{message}");
    }
    let summary = format!("blockfs: {image}: {} entries skipped (see the warnings above)\n", expected.len());
    assert!(message.ends_with(&summary), "{message}");
}

/// Every path under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        if path != dir {
            paths.push(path.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
        }
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    paths.sort();
    paths
}

#[test]
fn get_refuses_forged_entries_and_writes_nothing_outside() {
    let forged = forged_image("hostile-get");
    let dest = forged.scratch.path("dest");
    let output = blockfs(&["get", "-r", &forged.image, "/", text(&dest)]);
    assert_warned(&output, &forged.image, &expected_warnings(&forged.image));

    assert_eq!(fs::read(dest.join("good.txt")).unwrap(), b"kept\n", "the sound entries are copied");
    assert_eq!(
        fs::read_link(dest.join("escape")).unwrap(),
        forged.outside,
        "a symlink is made, not followed"
    );
    assert_eq!(fs::read_link(dest.join("relesc")).unwrap(), Path::new("../outside"));
    assert_eq!(
        listing(&dest),
        ["escape", "good.txt", "loop1", "loop1/loop2", "relesc", "revers", "revers/file"],
        "nothing forged was made"
    );
    assert!(fs::symlink_metadata(dest.join("revers")).unwrap().is_dir());
    assert!(listing(&forged.outside).is_empty(), "nothing was written through a symlink");
    assert_eq!(forged.scratch.names(), ["dest", "forged.img", "outside"], "nothing beside the destination");
}

#[test]
fn export_refuses_forged_entries_and_tar_writes_nothing_outside() {
    let forged = forged_image("hostile-export");
    let archive = forged.scratch.path("forged.tar");
    let output = blockfs(&["export", &forged.image, text(&archive)]);
    assert_warned(&output, &forged.image, &expected_warnings(&forged.image));

    let members = Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    assert_eq!(
        stdout(&members),
        "./\nescape\ngood.txt\nloop1/\nloop1/loop2/\nrelesc\nrevers/\nrevers/file\n",
        "only the sound entries, under relative names without .."
    );
    let dest = forged.scratch.path("dest");
    fs::create_dir(&dest).unwrap();
    let extract = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&dest).output().unwrap();
    assert_success(&extract);
    assert_eq!(
        listing(&dest),
        ["escape", "good.txt", "loop1", "loop1/loop2", "relesc", "revers", "revers/file"]
    );
    assert!(listing(&forged.outside).is_empty(), "nothing was written through a symlink");
}

#[test]
fn rm_refuses_to_loop_forever_in_a_forged_image() {
    let forged = forged_image("hostile-rm");
    let output = blockfs(&["rm", "-r", &forged.image, "/loop1"]);
    assert_failure(&output, &[&format!("{}: /loop1/loop2/loopback: directory loop", forged.image)]);
    let info = blockfs(&["info", &forged.image]);
    assert!(stdout(&info).contains("State:              clean\n"), "unmounted after the failure");
}
