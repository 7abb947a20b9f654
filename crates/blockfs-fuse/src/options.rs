//! How a mount behaves, and the fuser configuration that follows from it.

use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

/// Name and subtype the mount shows in `df` and /proc/mounts.
const FS_NAME: &str = "blockfs";

#[derive(Clone, Debug, PartialEq)]
pub struct MountConfig {
    /// Mount read-only (`-o ro`): the kernel refuses every change.
    pub read_only: bool,
    /// Let users other than the one who mounted use the mount
    /// (`-o allow_other`; for non-root users it needs `user_allow_other`
    /// in /etc/fuse.conf).
    pub allow_other: bool,
    /// Honour device nodes (`-o dev`); without it the mount is `nodev`.
    /// Only root may ask, as for any mount; a root filesystem needs it.
    pub dev: bool,
    /// Honour setuid and setgid bits (`-o suid`); without it the mount is
    /// `nosuid`. Only root may ask; a root filesystem needs it.
    pub suid: bool,
    /// How long the kernel may cache attributes and names. Longer means
    /// fewer requests (a walk that ends after the TTL looks every name up
    /// again before it unlinks it); nothing but this mount changes the
    /// image, so the cache cannot go stale through another path.
    pub ttl: Duration,
    /// Interval of the background sync that bounds what an abrupt kill
    /// loses; `None` leaves durability to `fsync`, `sync` and unmount.
    pub writeback: Option<Duration>,
    /// Block-cache budget, in 4 KiB blocks.
    pub cache_blocks: usize,
    /// Threads answering the kernel, each with its own FUSE channel.
    pub threads: usize,
}

/// One server thread per two cores. Each request is a round trip from a
/// client that waits for the answer, so a client and the thread serving
/// it share the work of one request; more threads than that only add
/// wake-ups on other cores. Measured on 2 cores (docs/BENCHMARKS.md):
/// one thread untars 16 % faster than two and removes the tree 20 %
/// faster, and two parallel untars gain nothing from a second thread.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            read_only: false,
            allow_other: false,
            dev: false,
            suid: false,
            ttl: Duration::from_secs(10),
            writeback: Some(Duration::from_secs(5)),
            cache_blocks: blockfs::fs::DEFAULT_CACHE_BLOCKS,
            threads: default_threads(),
        }
    }
}

impl MountConfig {
    pub(crate) fn fuser_config(&self) -> Config {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FS_NAME.into()),
            MountOption::Subtype(FS_NAME.into()),
            // The kernel checks permissions from the attributes we return,
            // as for a local filesystem; the adapter does no checks itself.
            MountOption::DefaultPermissions,
            if self.read_only { MountOption::RO } else { MountOption::RW },
        ];
        if self.dev {
            config.mount_options.push(MountOption::Dev);
        }
        if self.suid {
            config.mount_options.push(MountOption::Suid);
        }
        if self.allow_other {
            config.acl = SessionACL::All;
        }
        config.n_threads = Some(self.threads.max(1));
        config.clone_fd = true;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_always_the_kernels() {
        let config = MountConfig::default().fuser_config();
        assert!(config.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(config.mount_options.contains(&MountOption::RW));
        assert!(config.mount_options.contains(&MountOption::FSName("blockfs".into())));
        assert_eq!(config.acl, SessionACL::Owner);
    }

    #[test]
    fn read_only_and_allow_other_reach_the_mount() {
        let mount = MountConfig { read_only: true, allow_other: true, ..MountConfig::default() };
        let config = mount.fuser_config();
        assert!(config.mount_options.contains(&MountOption::RO));
        assert!(!config.mount_options.contains(&MountOption::RW));
        assert_eq!(config.acl, SessionACL::All);
    }

    #[test]
    fn dev_and_suid_are_off_unless_asked() {
        let plain = MountConfig::default().fuser_config();
        assert!(!plain.mount_options.contains(&MountOption::Dev));
        assert!(!plain.mount_options.contains(&MountOption::Suid));
        let root = MountConfig { dev: true, suid: true, ..MountConfig::default() }.fuser_config();
        assert!(root.mount_options.contains(&MountOption::Dev));
        assert!(root.mount_options.contains(&MountOption::Suid));
    }
}
