//! Polling the FUSE device (`blockfs mount --poll-us`): while requests
//! come in quick succession, the server thread reads the next one without
//! sleeping; once they stop it sleeps again, so an idle mount costs no
//! CPU; requests that come now and then, even in pairs, are read
//! sleeping, as all are with `--poll-us 0`. Needs /dev/fuse and
//! fusermount3 (Debian's fuse3); without them the test fails saying so.

mod common;
mod fuse_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::*;
use fuse_support::*;

/// Files each burst creates: a LOOKUP and a CREATE request each. A
/// server thread that sleeps between requests sleeps about twice per
/// file; one that polls, hardly at all.
const FILES: u64 = 4000;
/// Files created one every `SPACED_BY`, too far apart for polling to pay.
const SPACED_FILES: u64 = 500;
const SPACED_BY: Duration = Duration::from_micros(300);

/// The task of the server's request thread (fuser names it `fuser-0`).
fn server_thread(pid: u32) -> PathBuf {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("list the server's threads");
    tasks
        .map(|task| task.expect("read a thread entry").path())
        .find(|task| fs::read_to_string(task.join("comm")).is_ok_and(|name| name.trim() == "fuser-0"))
        .unwrap_or_else(|| panic!("process {pid} has no fuser-0 thread"))
}

/// How often `task` went to sleep of its own accord.
fn voluntary_switches(task: &Path) -> u64 {
    let status = fs::read_to_string(task.join("status")).expect("read the thread's status");
    let line = status.lines().find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"));
    line.expect("status names voluntary_ctxt_switches").trim().parse().expect("a count")
}

/// The CPU time `pid` has used, in clock ticks (user and system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read the server's stat");
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a command name") + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Creates `files` files in a new directory `name` of the mount, `gap`
/// apart; returns how often the server's request thread slept meanwhile.
fn sleeps_while_creating(mount: &Foreground, name: &str, files: u64, gap: Duration) -> u64 {
    let task = server_thread(mount.child.id());
    let dir = mount.dir.join(name);
    fs::create_dir(&dir).expect("mkdir on the mount");
    let before = voluntary_switches(&task);
    for n in 0..files {
        fs::File::create(dir.join(format!("f{n}"))).expect("create on the mount");
        if !gap.is_zero() {
            thread::sleep(gap);
        }
    }
    voluntary_switches(&task) - before
}

#[test]
fn the_server_polls_while_requests_come_and_sleeps_when_they_stop() {
    require_fuse();
    let scratch = Scratch::new("fuse-poll");
    let image = scratch.path("image");
    mkfs_image(&image, 128);
    let mnt = scratch.path("mnt");

    let polling = Foreground::start(&image, &mnt, &["--poll-us", "1000"]);
    let slept = sleeps_while_creating(&polling, "burst", FILES, Duration::ZERO);
    assert!(slept < FILES / 4, "polling: the server slept {slept} times over {FILES} quick creates");

    // Idle: once a window has passed the thread sleeps in its read.
    thread::sleep(Duration::from_millis(200));
    let pid = polling.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    // 10 ticks is 0.1 s at the usual 100 per second; a spinning thread
    // would use about 100.
    assert!(used <= 10, "an idle mount used {used} clock ticks of CPU in a second");

    let slept = sleeps_while_creating(&polling, "spaced", SPACED_FILES, SPACED_BY);
    assert!(
        slept >= 3 * SPACED_FILES / 2,
        "polling: the server slept only {slept} times over {SPACED_FILES} creates {SPACED_BY:?} apart"
    );
    drop(polling);
    wait_released(&image);

    let sleeping = Foreground::start(&image, &mnt, &["--poll-us", "0"]);
    let slept = sleeps_while_creating(&sleeping, "burst", FILES, Duration::ZERO);
    assert!(
        slept >= 3 * FILES / 2,
        "without polling the server slept only {slept} times over {FILES} creates"
    );
}
