//! The background sync: every interval, everything changed becomes
//! durable, so killing the mount abruptly (or a power cut) loses at most
//! one interval of work that nobody fsync'd.

use std::io;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use blockfs::{BlockDevice, FileSystem};

/// The running sync thread; dropping it stops the thread (without a last
/// sync: unmount does that).
pub struct Writeback {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    pub fn start<D: BlockDevice + 'static>(
        fs: Arc<FileSystem<D>>,
        every: Duration,
        image: &Path,
    ) -> io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let image = image.to_owned();
        let thread = thread::Builder::new().name("blockfs-writeback".into()).spawn(move || {
            // Waiting on the channel rather than sleeping lets `drop`
            // stop the thread at once.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if let Err(error) = fs.sync() {
                    eprintln!("blockfs: {}: background sync failed: {error}", image.display());
                }
            }
        })?;
        Ok(Writeback { stop, thread: Some(thread) })
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        // The thread may have ended already (a panic, reported by the
        // panic hook), in which case there is nobody to tell.
        self.stop.send(()).ok();
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
