//! SIGINT and SIGTERM in the middle of the commands that create things:
//! each stops, removes what it made (temporary image, partial copy or
//! archive, what put created, the member import was writing) and exits
//! 128 + the signal.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Enough data that copying it takes a while even in a release build.
fn big_tree(dir: &Path) {
    for index in 0..48 {
        write_file(&dir.join(format!("d{}/file-{index}", index % 4)), &pattern(1 << 20));
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(sent.success(), "kill -{name}");
}

/// Waits for `child`; asserts it either finished or stopped for the
/// signal the way it should (or was killed outright, before it watched
/// for signals, which is just as clean). Returns whether it finished.
fn finished(mut child: Child, name: &str, code: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 60 s after the signal");
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    if status.success() {
        return true;
    }
    if status.signal().is_none() {
        assert_eq!(status.code(), Some(code), "exit status after SIG{name}: {stderr}");
        assert!(stderr.contains(&format!("interrupted by SIG{name}")), "{stderr}");
    }
    false
}

fn start(mut command: Command) -> Child {
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// xorshift: the same "random" moments every run.
fn moments(count: usize, most_ms: u64) -> Vec<Duration> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            Duration::from_millis(state % most_ms)
        })
        .collect()
}

#[test]
fn sigint_at_random_moments_of_a_large_populate_leaves_no_files() {
    let scratch = Scratch::new("interrupt-mkfs");
    big_tree(&scratch.path("src"));
    let (image, source) = (scratch.path("image"), scratch.path("src"));
    let args = ["-o", text(&image), "-s", "96", "-p", text(&source)];
    // The signals fall within the time an uninterrupted run takes here,
    // so some runs are interrupted however fast the build and machine.
    // The fastest of three runs: the first can be several times slower
    // (cold caches), and moments past the real run time interrupt nothing.
    let mut whole_run = (0..3)
        .map(|_| {
            let started = Instant::now();
            assert_success(&mkfs(&args));
            std::fs::remove_file(&image).unwrap();
            started.elapsed().as_millis().max(2) as u64
        })
        .min()
        .unwrap();
    let mut interrupted = 0;
    for (round, share) in moments(8, 1000).into_iter().enumerate() {
        let (name, code) = if round % 2 == 0 { ("INT", 130) } else { ("TERM", 143) };
        // `share` is in thousandths of the run.
        let delay = Duration::from_millis(share.as_millis() as u64 * whole_run / 1000);
        let mut command = mkfs_binary();
        command.args(args);
        let child = start(command);
        thread::sleep(delay);
        signal(&child, name);
        if finished(child, name, code) {
            assert_eq!(scratch.names(), ["image", "src"]);
            std::fs::remove_file(&image).unwrap();
            // It finished before the signal: later moments aim within
            // this faster run.
            whole_run = whole_run.min(delay.as_millis().max(2) as u64);
        } else {
            interrupted += 1;
            assert_eq!(scratch.names(), ["src"], "round {round}: SIG{name} after {delay:?}");
        }
    }
    assert!(interrupted > 0, "no run was interrupted: make the tree bigger");
}

#[test]
fn get_put_export_and_import_clean_up_when_interrupted() {
    let scratch = Scratch::new("interrupt-copy");
    big_tree(&scratch.path("src"));
    let image = scratch.path("image");
    assert_success(&mkfs(&["-o", text(&image), "-s", "256", "-p", text(&scratch.path("src"))]));
    let blockfs = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_blockfs"));
        command.args(args);
        command
    };
    let image = text(&image);
    let archive = scratch.path("archive.tar");
    assert_success(
        &Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(scratch.path("src"))
            .arg(".")
            .output()
            .unwrap(),
    );

    for delay in moments(3, 400) {
        // get -r: the copy is built under .blockfs-get-PID and removed.
        let child = start(blockfs(&["get", "-r", image, "/", text(&scratch.path("copy"))]));
        thread::sleep(delay);
        signal(&child, "INT");
        if !finished(child, "INT", 130) {
            assert_eq!(scratch.names(), ["archive.tar", "image", "src"], "get after {delay:?}");
        } else {
            std::fs::remove_dir_all(scratch.path("copy")).unwrap();
        }

        // export: the archive is written as .NAME.tmp-PID and removed.
        let child = start(blockfs(&["export", image, text(&scratch.path("out.tar"))]));
        thread::sleep(delay);
        signal(&child, "TERM");
        if !finished(child, "TERM", 143) {
            assert_eq!(scratch.names(), ["archive.tar", "image", "src"], "export after {delay:?}");
        } else {
            std::fs::remove_file(scratch.path("out.tar")).unwrap();
        }

        // put and import: the image stays consistent, and no file is left
        // half copied.
        let child = start(blockfs(&["put", "-r", image, text(&scratch.path("src")), "/put"]));
        thread::sleep(delay);
        signal(&child, "INT");
        if finished(child, "INT", 130) {
            assert_success(&blockfs(&["rm", "-r", image, "/put"]).output().unwrap());
        } else {
            // What the interrupted put created is gone again.
            assert!(!run_ok(&["ls", image, "/"]).lines().any(|name| name == "put"), "put after {delay:?}");
        }
        let child = start(blockfs(&["import", image, text(&archive), "/d0"]));
        thread::sleep(delay);
        signal(&child, "INT");
        finished(child, "INT", 130);
        let check = Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(["-n", image]).output().unwrap();
        assert_success(&check);
        let listing = run_ok(&["ls", "-l", "-R", image, "/"]);
        for line in listing.lines().filter(|line| line.starts_with('-')) {
            assert!(line.contains(" 1048576 "), "a file was left half copied: {line}");
        }
        assert!(!listing.contains(".blockfs-put-"), "{listing}");
    }
}

#[test]
fn a_file_size_limit_stops_mkfs_cleanly() {
    let scratch = Scratch::new("interrupt-xfsz");
    big_tree(&scratch.path("src"));
    let image = scratch.path("image");
    // ulimit -f counts 1024-byte blocks: writing past 8 MiB raises SIGXFSZ.
    let script = format!(
        "ulimit -f 8192; exec '{}' -o '{}' -s 96 -p '{}'",
        env!("CARGO_BIN_EXE_mkfs-blockfs"),
        text(&image),
        text(&scratch.path("src"))
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(output.status.code(), Some(128 + 25), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("interrupted by SIGXFSZ (file size limit exceeded)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(scratch.names(), ["src"]);
}
