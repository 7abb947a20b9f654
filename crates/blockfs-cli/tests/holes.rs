//! Holes both ways, with the real binaries and GNU tar: a 3 GiB sparse
//! file goes through mkfs --populate, get, put, export (a GNU sparse
//! member GNU tar extracts sparse) and import, and stays sparse (`du`).

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;

const SIZE: u64 = 3 << 30;
/// Where the file has data: its start, a middle run, its last bytes.
const DATA: [(u64, &[u8]); 3] = [(0, b"head"), (1 << 30, b"middle of the file"), (SIZE - 5, b"tail\n")];

fn make_sparse(path: &Path) {
    let file = fs::File::create(path).unwrap();
    file.set_len(SIZE).unwrap();
    for (offset, bytes) in DATA {
        file.write_all_at(bytes, offset).unwrap();
    }
}

/// The file is the one made above, and takes under 1 MiB of disk.
fn assert_sparse_copy(path: &Path) {
    let metadata = fs::metadata(path).unwrap();
    assert_eq!(metadata.len(), SIZE, "{}", path.display());
    assert!(metadata.blocks() * 512 < 1 << 20, "{} takes {} bytes", path.display(), metadata.blocks() * 512);
    let du = Command::new("du").arg("-k").arg(path).output().unwrap();
    let kib: u64 = stdout(&du).split_whitespace().next().unwrap().parse().unwrap();
    assert!(kib < 1024, "du says {kib} KiB for {}", path.display());
    let file = fs::File::open(path).unwrap();
    for (offset, bytes) in DATA {
        let mut read = vec![0u8; bytes.len() + 2];
        let got = file.read_at(&mut read, offset.saturating_sub(1)).unwrap();
        let expected: Vec<u8> =
            if offset == 0 { [bytes, &[0][..]].concat() } else { [&[0][..], bytes].concat() };
        assert_eq!(&read[..got.min(expected.len())], &expected[..got.min(expected.len())], "at {offset}");
    }
}

fn used_blocks(image: &str) -> u64 {
    let info = run_ok(&["info", "--json", image]);
    let line = info.lines().find(|line| line.contains("\"used_blocks\"")).unwrap();
    line.trim().trim_end_matches(',').rsplit(' ').next().unwrap().parse().unwrap()
}

fn fsck_clean(image: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(["-n", image]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn a_3_gib_sparse_file_round_trips_and_stays_sparse() {
    let scratch = Scratch::new("holes");
    let source = scratch.path("src");
    fs::create_dir(&source).unwrap();
    make_sparse(&source.join("sparse"));

    // mkfs --populate: a 64 MB image holds it.
    let first = scratch.path("first.img");
    assert_success(&mkfs(&["-o", text(&first), "-s", "64", "-p", text(&source)]));
    let first = text(&first);
    fsck_clean(first);
    let empty = scratch.path("empty.img");
    assert_success(&mkfs(&["-o", text(&empty), "-s", "64"]));
    // Data, the root's block and a few mapping blocks: nothing like 3 GiB.
    let baseline = used_blocks(text(&empty));
    let holds_little = |image: &str| {
        let added = used_blocks(image) - baseline;
        assert!(added < 20, "{image}: {added} blocks more than an empty image");
    };
    holds_little(first);

    // get writes holes as holes.
    let got = scratch.path("got");
    assert_success(&blockfs(&["get", first, "/sparse", text(&got)]));
    assert_sparse_copy(&got);

    // put keeps them.
    let second = scratch.path("second.img");
    assert_success(&mkfs(&["-o", text(&second), "-s", "64"]));
    let second = text(&second);
    assert_success(&blockfs(&["put", second, text(&got), "/put"]));
    fsck_clean(second);
    holds_little(second);

    // export writes a sparse member, which GNU tar extracts sparse.
    let archive = scratch.path("archive.tar");
    assert_success(&blockfs(&["export", second, text(&archive)]));
    assert!(
        fs::metadata(&archive).unwrap().len() < 1 << 20,
        "archive of {} bytes",
        fs::metadata(&archive).unwrap().len()
    );
    let untarred = scratch.path("untarred");
    fs::create_dir(&untarred).unwrap();
    assert_success(&Command::new("tar").arg("-xSf").arg(&archive).arg("-C").arg(&untarred).output().unwrap());
    assert_sparse_copy(&untarred.join("put"));

    // import reads it back, holes as holes.
    let third = scratch.path("third.img");
    assert_success(&mkfs(&["-o", text(&third), "-s", "64"]));
    let third = text(&third);
    assert_success(&blockfs(&["import", third, text(&archive), "/"]));
    fsck_clean(third);
    holds_little(third);
    let back = scratch.path("back");
    assert_success(&blockfs(&["get", third, "/put", text(&back)]));
    assert_sparse_copy(&back);
}

#[test]
fn gnu_tar_sparse_archives_import_sparse() {
    let scratch = Scratch::new("holes-gnu");
    let source = scratch.path("src");
    fs::create_dir(&source).unwrap();
    // Many regions, so GNU tar needs sparse extension headers.
    let file = fs::File::create(source.join("fragmented")).unwrap();
    file.set_len(64 << 20).unwrap();
    for index in 0..40u64 {
        file.write_all_at(format!("region {index}").as_bytes(), index * (1 << 20) + 8192).unwrap();
    }
    let archive = scratch.path("gnu.tar");
    let made = Command::new("tar")
        .args(["--format=gnu", "-cSf"])
        .arg(&archive)
        .arg("-C")
        .arg(&source)
        .arg(".")
        .output()
        .unwrap();
    assert_success(&made);
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    let image = text(&image);
    assert_success(&blockfs(&["import", image, text(&archive), "/"]));
    fsck_clean(image);
    let empty = scratch.path("empty.img");
    assert_success(&mkfs(&["-o", text(&empty), "-s", "16"]));
    let added = used_blocks(image) - used_blocks(text(&empty));
    assert!(added < 100, "{added} blocks for 40 small regions");
    let got = scratch.path("got");
    assert_success(&blockfs(&["get", image, "/fragmented", text(&got)]));
    assert_eq!(fs::read(&got).unwrap(), fs::read(source.join("fragmented")).unwrap());
}
