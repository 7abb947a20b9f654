//! Building the volatile root: a RAM BlockFS sized by a [`Plan`], with
//! every archive member created as tar extraction creates it. The result
//! is an ordinary writable filesystem whose changes vanish with it.

use crate::device::MemDevice;
use crate::fs::{format, FileSystem, FormatOptions, MountOptions, ROOT_INO};

use super::error::LoadError;
use super::extract::{ExtractOptions, LargeIds, Members, OnMemberError};
use super::plan::Plan;
use super::tar::{events, Event};

/// Default limit on the RAM image: 1 GiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 1 << 30;
/// The device is RAM already; the cache only batches metadata updates.
const RAM_CACHE_BLOCKS: usize = 1024;

#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// How the RAM image is mounted; its clock also dates the image and
    /// the directories the archive implies.
    pub mount: MountOptions,
    /// Largest RAM image to build. Slack is trimmed to fit; contents that
    /// do not fit are refused.
    pub max_image_bytes: u64,
    pub large_ids: LargeIds,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mount: MountOptions { cache_blocks: RAM_CACHE_BLOCKS, ..MountOptions::default() },
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            large_ids: LargeIds::Reject,
        }
    }
}

/// Builds a RAM filesystem from an archive held in memory: one pass to
/// size the image, one to fill it.
pub fn load_tar(archive: &[u8], options: &LoadOptions) -> Result<FileSystem<MemDevice>, LoadError> {
    let mut plan = Plan::new();
    for event in events(archive) {
        plan.note(&event?)?;
    }
    let mut loader = Loader::new(&plan, options)?;
    for event in events(archive) {
        loader.apply(event?)?;
    }
    loader.finish()
}

/// Fills a RAM filesystem from an archive's events, for callers that
/// stream the archive: a first pass feeds a [`Plan`], a second this.
/// Members are created by the same engine as [`Extractor`]'s, at the
/// root, stopping at the first member that cannot be made.
///
/// [`Extractor`]: super::Extractor
pub struct Loader {
    fs: FileSystem<MemDevice>,
    members: Members,
}

impl Loader {
    /// Formats and mounts a RAM image sized by `plan`.
    pub fn new(plan: &Plan, options: &LoadOptions) -> Result<Self, LoadError> {
        let layout = plan.layout(options.max_image_bytes)?;
        let mut format_options = FormatOptions::new(layout.block_count);
        format_options.inode_count = Some(layout.inode_count);
        // Nothing survives a crash of a RAM image, so nothing needs a journal.
        format_options.journal = false;
        format_options.time = (options.mount.clock)();
        let device = format(MemDevice::new(layout.block_count), &format_options).map_err(LoadError::Image)?;
        let fs = FileSystem::mount(device, options.mount).map_err(LoadError::Image)?;
        let extract = ExtractOptions {
            large_ids: options.large_ids,
            latest_time: None,
            on_member_error: OnMemberError::Abort,
        };
        Ok(Loader { fs, members: Members::new(ROOT_INO, extract) })
    }

    /// Members of types that are not created are passed over.
    pub fn apply(&mut self, event: Event<'_>) -> Result<(), LoadError> {
        self.members.apply(&self.fs, event)?;
        self.members.clear_skipped();
        Ok(())
    }

    /// Sets the directories' times and hands over the filesystem.
    pub fn finish(mut self) -> Result<FileSystem<MemDevice>, LoadError> {
        self.members.finish(&self.fs)?;
        Ok(self.fs)
    }
}
