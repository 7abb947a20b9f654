//! Polling the FUSE device (`blockfs mount --poll-us`): while requests
//! come in quick succession, the server thread reads the next one without
//! sleeping; once they stop it sleeps again, so an idle mount costs no
//! CPU; requests that come now and then are read sleeping, as all are
//! with `--poll-us 0`. Needs /dev/fuse and
//! fusermount3 (Debian's fuse3); without them the test fails saying so.

mod common;
mod fuse_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::*;
use fuse_support::*;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Files each burst creates: a LOOKUP and a CREATE request each. A
/// server thread that sleeps between requests sleeps once or twice per
/// file (twice when it sleeps before each request; once when the client,
/// woken on the server's core, sends the next request before the server
/// is back in its read); one that polls, hardly at all.
const FILES: u64 = 4000;
/// Files created one every `SPACED_BY`, too far apart for polling to pay.
const SPACED_FILES: u64 = 500;
const SPACED_BY: Duration = Duration::from_micros(300);
/// Each count is the fewest sleeps of this many runs, so that a run
/// disturbed by another task on the machine does not decide the test.
const RUNS: usize = 3;

/// The task of the server's request thread (fuser names it `fuser-0`).
fn server_thread(pid: u32) -> PathBuf {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("list the server's threads");
    tasks
        .map(|task| task.expect("read a thread entry").path())
        .find(|task| fs::read_to_string(task.join("comm")).is_ok_and(|name| name.trim() == "fuser-0"))
        .unwrap_or_else(|| panic!("process {pid} has no fuser-0 thread"))
}

/// Runs this test's thread on one CPU and every thread of the server
/// `pid` on another. A client and a server that share a core take turns
/// on it: the client, woken by a reply, runs before the server is back in
/// its read, and the server then finds the next request waiting and
/// never sleeps, polling or not. Pinned apart, they behave as on an
/// otherwise idle machine whatever else runs, which is what polling is
/// for (it is on by default only when there is a core to spare).
fn pin_apart(pid: u32) {
    // The process's CPUs, as its main thread has them (this thread may
    // already be pinned).
    let allowed = sched_getaffinity(Pid::this()).expect("read this process's CPUs");
    let cpus: Vec<usize> = (0..CpuSet::count()).filter(|&cpu| allowed.is_set(cpu).unwrap_or(false)).collect();
    assert!(
        cpus.len() >= 2,
        "polling needs a core for the server beside the client: this test may use {cpus:?}"
    );
    let only = |cpu: usize| {
        let mut set = CpuSet::new();
        set.set(cpu).expect("a CPU number");
        set
    };
    sched_setaffinity(Pid::from_raw(0), &only(cpus[0])).expect("pin the test's thread");
    for task in fs::read_dir(format!("/proc/{pid}/task")).expect("list the server's threads") {
        let tid: i32 = task
            .expect("a thread entry")
            .file_name()
            .to_str()
            .and_then(|tid| tid.parse().ok())
            .expect("a thread id");
        sched_setaffinity(Pid::from_raw(tid), &only(cpus[cpus.len() - 1])).expect("pin a server thread");
    }
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

/// Creates `files` files in a new directory of the mount, `gap` apart,
/// `RUNS` times; returns the fewest times the server's request thread
/// slept during one run.
fn sleeps_while_creating(mount: &Foreground, name: &str, files: u64, gap: Duration) -> u64 {
    let task = server_thread(mount.child.id());
    (0..RUNS)
        .map(|run| {
            let dir = mount.dir.join(format!("{name}{run}"));
            fs::create_dir(&dir).expect("mkdir on the mount");
            let before = voluntary_switches(&task);
            for n in 0..files {
                fs::File::create(dir.join(format!("f{n}"))).expect("create on the mount");
                if !gap.is_zero() {
                    thread::sleep(gap);
                }
            }
            let slept = voluntary_switches(&task) - before;
            fs::remove_dir_all(&dir).expect("remove the run's files");
            slept
        })
        .min()
        .expect("at least one run")
}

#[test]
fn the_server_polls_while_requests_come_and_sleeps_when_they_stop() {
    require_fuse();
    let scratch = Scratch::new("fuse-poll");
    let image = scratch.path("image");
    mkfs_image(&image, 128);
    let mnt = scratch.path("mnt");

    // Without polling first: the count to compare polling with, taken on
    // the machine as it is now.
    let sleeping = Foreground::start(&image, &mnt, &["--poll-us", "0"]);
    pin_apart(sleeping.child.id());
    let without = sleeps_while_creating(&sleeping, "burst", FILES, Duration::ZERO);
    assert!(without >= FILES, "without polling the server slept only {without} times over {FILES} creates");
    drop(sleeping);
    wait_released(&image);

    let polling = Foreground::start(&image, &mnt, &["--poll-us", "1000"]);
    pin_apart(polling.child.id());
    let slept = sleeps_while_creating(&polling, "quick", FILES, Duration::ZERO);
    assert!(
        slept < FILES / 4,
        "polling: the server slept {slept} times over {FILES} quick creates ({without} without polling)"
    );

    // Idle: once a window has passed the thread sleeps in its read.
    thread::sleep(Duration::from_millis(200));
    let pid = polling.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    // 10 ticks is 0.1 s at the usual 100 per second; a spinning thread
    // would use about 100.
    assert!(used <= 10, "an idle mount used {used} clock ticks of CPU in a second");

    // Requests 300 µs apart are each read sleeping: at least one sleep
    // per file (a thread that kept polling for a window after every
    // request would hardly sleep at all).
    let slept = sleeps_while_creating(&polling, "spaced", SPACED_FILES, SPACED_BY);
    assert!(
        slept >= SPACED_FILES * 9 / 10,
        "polling: the server slept only {slept} times over {SPACED_FILES} creates {SPACED_BY:?} apart"
    );
}
