//! How a mount behaves, and the fuser configuration that follows from it.

use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use nix::unistd::{Gid, Uid};

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
    /// Threads answering the kernel. They share the session's FUSE
    /// channel, so polling switches all of them at once.
    pub threads: usize,
    /// Polling the FUSE device while requests come fast (`poll`): the
    /// window after which it stops if the server waited more than 50 µs
    /// per request on average. `None` always sleeps between requests.
    pub poll: Option<Duration>,
    /// Have the kernel check permissions even on a mount only root can
    /// use (`-o default_permissions`); see `Permissions`.
    pub kernel_permissions: bool,
}

/// Who checks permissions on the mount (docs/DESIGN.md §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Permissions {
    /// The kernel (`default_permissions`), against the attributes it
    /// caches, as for a local filesystem. It fetches a directory's
    /// attributes again after every change inside it, at the cost of a
    /// GETATTR round trip per create or unlink.
    Kernel,
    /// Only root can use the mount: it was made by root without
    /// `allow_other`, so the kernel admits no caller whose ids are not all
    /// 0. Those checks would grant root everything but running a file
    /// without any execute bit, which the kernel still refuses itself
    /// (`access(X_OK)` the server answers), so they are skipped. A root
    /// process that dropped its capabilities is served as root.
    RootOnly,
}

/// One server thread per two cores. Each request is a round trip from a
/// client that waits for the answer, so a client and the thread serving
/// it share the work of one request; a second thread serves a second
/// client. Measured on 2 cores (docs/BENCHMARKS.md, "Server threads"):
/// two threads run two untars at once 10–24 % faster than one, but one
/// thread removes a tree 8 % faster and untars as fast, so one thread
/// per two cores serves single clients best; `--threads` says otherwise.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// The polling window when the machine has a core to spare for each
/// server thread beside a client: a round trip costs about a third less
/// (docs/BENCHMARKS.md, "Polling"). With no core to spare a polling
/// thread would take the CPU from the client it waits for, so none.
pub fn default_poll(threads: usize) -> Option<Duration> {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    (cores > threads).then_some(DEFAULT_POLL_WINDOW)
}

const DEFAULT_POLL_WINDOW: Duration = Duration::from_millis(1);

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
            poll: default_poll(default_threads()),
            kernel_permissions: false,
        }
    }
}

impl MountConfig {
    /// Who checks permissions on a mount made by a process whose real ids
    /// are `mounter` (the kernel admits callers by these ids).
    pub(crate) fn permissions(&self, mounter: (Uid, Gid)) -> Permissions {
        if self.kernel_permissions || self.allow_other || !mounter.0.is_root() || mounter.1.as_raw() != 0 {
            Permissions::Kernel
        } else {
            Permissions::RootOnly
        }
    }

    pub(crate) fn fuser_config(&self, permissions: Permissions) -> Config {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FS_NAME.into()),
            MountOption::Subtype(FS_NAME.into()),
            if self.read_only { MountOption::RO } else { MountOption::RW },
        ];
        if permissions == Permissions::Kernel {
            config.mount_options.push(MountOption::DefaultPermissions);
        }
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
        // One channel for all threads (`poll` switches its reads).
        config.clone_fd = false;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: (Uid, Gid) = (Uid::from_raw(0), Gid::from_raw(0));
    const USER: (Uid, Gid) = (Uid::from_raw(1000), Gid::from_raw(1000));

    #[test]
    fn the_kernel_checks_permissions_unless_only_root_can_enter() {
        let plain = MountConfig::default();
        assert_eq!(plain.permissions(USER), Permissions::Kernel);
        assert_eq!(plain.permissions((Uid::from_raw(0), Gid::from_raw(1000))), Permissions::Kernel);
        assert_eq!(plain.permissions(ROOT), Permissions::RootOnly);
        let shared = MountConfig { allow_other: true, ..MountConfig::default() };
        assert_eq!(shared.permissions(ROOT), Permissions::Kernel);
        let asked = MountConfig { kernel_permissions: true, ..MountConfig::default() };
        assert_eq!(asked.permissions(ROOT), Permissions::Kernel);

        let config = plain.fuser_config(Permissions::Kernel);
        assert!(config.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(config.mount_options.contains(&MountOption::RW));
        assert!(config.mount_options.contains(&MountOption::FSName("blockfs".into())));
        assert_eq!(config.acl, SessionACL::Owner);
        let config = plain.fuser_config(Permissions::RootOnly);
        assert!(!config.mount_options.contains(&MountOption::DefaultPermissions));
        assert_eq!(config.acl, SessionACL::Owner);
    }

    #[test]
    fn polling_is_on_by_default_only_with_a_core_to_spare() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default_poll(cores), None);
        assert_eq!(default_poll(cores + 1), None);
        assert_eq!(default_poll(cores - 1).is_some(), cores > 1);
    }

    #[test]
    fn read_only_and_allow_other_reach_the_mount() {
        let mount = MountConfig { read_only: true, allow_other: true, ..MountConfig::default() };
        let config = mount.fuser_config(Permissions::Kernel);
        assert!(config.mount_options.contains(&MountOption::RO));
        assert!(!config.mount_options.contains(&MountOption::RW));
        assert_eq!(config.acl, SessionACL::All);
    }

    #[test]
    fn dev_and_suid_are_off_unless_asked() {
        let plain = MountConfig::default().fuser_config(Permissions::Kernel);
        assert!(!plain.mount_options.contains(&MountOption::Dev));
        assert!(!plain.mount_options.contains(&MountOption::Suid));
        let root =
            MountConfig { dev: true, suid: true, ..MountConfig::default() }.fuser_config(Permissions::Kernel);
        assert!(root.mount_options.contains(&MountOption::Dev));
        assert!(root.mount_options.contains(&MountOption::Suid));
    }
}
