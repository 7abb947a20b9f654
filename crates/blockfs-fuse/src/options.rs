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
    /// How long the kernel may cache attributes and names. Longer means
    /// fewer requests; nothing but this mount changes the image, so the
    /// cache cannot go stale through another path.
    pub ttl: Duration,
    /// Interval of the background sync that bounds what an abrupt kill
    /// loses; `None` leaves durability to `fsync`, `sync` and unmount.
    pub writeback: Option<Duration>,
    /// Block-cache budget, in 4 KiB blocks.
    pub cache_blocks: usize,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            read_only: false,
            allow_other: false,
            ttl: Duration::from_secs(1),
            writeback: Some(Duration::from_secs(5)),
            cache_blocks: blockfs::fs::DEFAULT_CACHE_BLOCKS,
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
        if self.allow_other {
            config.acl = SessionACL::All;
        }
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
}
