//! The background sync: every interval, everything changed becomes
//! durable, so killing the mount abruptly (or a power cut) loses at most
//! one interval of work that nobody fsync'd. The same thread commits
//! whenever an operation finds the running transaction grown large, so
//! that operation's reply does not wait for the commit's writes and
//! flushes (`FileSystem::hand_off_commits`).

use std::io;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use blockfs::{BlockDevice, FileSystem};

enum Wake {
    /// An operation found a commit due.
    CommitDue,
    Stop,
}

/// The running sync thread; dropping it stops the thread (without a last
/// sync: unmount does that) and gives commits back to the operations.
pub struct Writeback<D: BlockDevice + 'static> {
    fs: Arc<FileSystem<D>>,
    wake: mpsc::Sender<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl<D: BlockDevice + 'static> Writeback<D> {
    pub fn start(fs: Arc<FileSystem<D>>, every: Duration, image: &Path) -> io::Result<Self> {
        let (wake, woken) = mpsc::channel();
        let image = image.to_owned();
        let syncing = fs.clone();
        let thread = thread::Builder::new().name("blockfs-writeback".into()).spawn(move || {
            // Waiting on the channel rather than sleeping lets `drop`
            // stop the thread at once.
            while let Ok(Wake::CommitDue) | Err(RecvTimeoutError::Timeout) = woken.recv_timeout(every) {
                if let Err(error) = syncing.sync() {
                    eprintln!("blockfs: {}: background sync failed: {error}", image.display());
                }
            }
        })?;
        let commit_due = wake.clone();
        fs.hand_off_commits(Some(Box::new(move || {
            // The thread is gone only once `drop` has taken the helper back.
            commit_due.send(Wake::CommitDue).ok();
        })));
        Ok(Writeback { fs, wake, thread: Some(thread) })
    }
}

impl<D: BlockDevice + 'static> Drop for Writeback<D> {
    fn drop(&mut self) {
        self.fs.hand_off_commits(None);
        // The thread may have ended already (a panic, reported by the
        // panic hook), in which case there is nobody to tell.
        self.wake.send(Wake::Stop).ok();
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use blockfs::fs::{format, NewInode};
    use blockfs::{FormatOptions, MemDevice, MountOptions};

    use super::*;

    fn memory_fs() -> Arc<FileSystem<MemDevice>> {
        let device = format(MemDevice::new(1024), &FormatOptions::new(1024)).unwrap();
        Arc::new(FileSystem::mount(device, MountOptions::default()).unwrap())
    }

    #[test]
    fn syncs_periodically_and_stops_promptly() {
        let fs = memory_fs();
        let new = NewInode { perm: 0o644, uid: 0, gid: 0 };
        fs.create(blockfs::ROOT_INO, b"file", new).unwrap();
        let writeback = Writeback::start(fs.clone(), Duration::from_millis(20), Path::new("mem")).unwrap();
        let started = Instant::now();
        while fs.superblock().write_time == 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "no sync within 5 s");
            thread::sleep(Duration::from_millis(5));
        }
        let writeback_with_long_interval =
            Writeback::start(fs.clone(), Duration::from_secs(3600), Path::new("mem"));
        let stopping = Instant::now();
        drop(writeback_with_long_interval.unwrap());
        drop(writeback);
        // Far below the hour it would take if stopping waited for the
        // interval, and far above a loaded machine's scheduling delays.
        assert!(stopping.elapsed() < Duration::from_secs(30), "stopping waited for the interval");
        assert_eq!(Arc::strong_count(&fs), 1, "the threads let go of the filesystem");
    }
}
