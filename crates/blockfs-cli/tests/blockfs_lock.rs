//! Two programs never use one image unsafely: writers take an exclusive
//! lock and readers a shared one, without waiting. A writer that finds the
//! image taken fails with "image is in use" (exit status 3); a reader that
//! finds a writer there reads the last committed state and says so.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use blockfs_cli::image::lock::{open_image, Access, OpenError};
use common::*;

/// The tests hold locks in this process while other tests spawn children:
/// a child forked while a lock's file is open shares that lock until it
/// execs, so a test could see "in use" after dropping its own lock. They
/// take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn small_image(scratch: &Scratch) -> String {
    let image = scratch.path("locked.img");
    mkfs_image(&image, 4);
    text(&image).to_owned()
}

fn assert_in_use(args: &[&str], image: &str) {
    let output = blockfs(args);
    assert_eq!(output.status.code(), Some(3), "{args:?}: {}", stderr(&output));
    assert_eq!(stderr(&output), format!("blockfs: {image}: image is in use\n"));
}

#[test]
fn a_held_write_lock_turns_away_writers_and_readers_see_the_committed_state() {
    let _turn = one_at_a_time();
    let scratch = Scratch::new("lock-write");
    let image = small_image(&scratch);
    let held = open_image(scratch.path("locked.img").as_path(), Access::Write).unwrap();
    assert_in_use(&["mkdir", &image, "/x"], &image);
    let listing = blockfs(&["ls", "-a", &image]);
    assert_success(&listing);
    assert_eq!(stdout(&listing), ".\n..\n");
    assert!(stderr(&listing).contains("showing its last committed state"), "{}", stderr(&listing));
    assert_success(&blockfs(&["get", "-r", &image, "/", text(&scratch.path("out"))]));
    drop(held);
    assert_success(&blockfs(&["mkdir", &image, "/x"]));
    assert_eq!(stdout(&blockfs(&["ls", &image])), "x\n");
}

#[test]
fn a_held_read_lock_admits_readers_only() {
    let _turn = one_at_a_time();
    let scratch = Scratch::new("lock-read");
    let image = small_image(&scratch);
    let held = open_image(scratch.path("locked.img").as_path(), Access::Read).unwrap();
    assert_success(&blockfs(&["info", &image]));
    assert_in_use(&["touch", &image, "/x"], &image);
    assert!(matches!(open_image(scratch.path("locked.img").as_path(), Access::Write), Err(OpenError::InUse)));
    drop(held);
    assert_success(&blockfs(&["touch", &image, "/x"]));
}

#[test]
fn a_reader_stuck_writing_holds_off_writers_until_it_ends() {
    let _turn = one_at_a_time();
    let scratch = Scratch::new("lock-child");
    let source = scratch.path("src");
    write_file(&source.join("big"), &pattern(1 << 20));
    let image_path = scratch.path("locked.img");
    assert_success(&mkfs(&["-o", text(&image_path), "-s", "8", "-p", text(&source)]));
    let image = text(&image_path);

    // The export locks the image before it writes anything; once its
    // first block is read, it is stuck on the full pipe, holding the lock.
    let mut exporter = Command::new(env!("CARGO_BIN_EXE_blockfs"))
        .args(["export", image, "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut archive = exporter.stdout.take().unwrap();
    let mut first_header = [0u8; 512];
    archive.read_exact(&mut first_header).unwrap();
    assert_eq!(&first_header[..2], b"./");
    assert_in_use(&["put", image, text(&source.join("big")), "/again"], image);
    assert_in_use(&["rm", image, "/big"], image);
    assert_success(&blockfs(&["cat", image, "/big"]));

    exporter.kill().unwrap();
    exporter.wait().unwrap();
    drop(archive);
    assert_success(&blockfs(&["rm", image, "/big"]));
}
