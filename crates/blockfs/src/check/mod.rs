//! The consistency checker (fsck) and its repairs.
//!
//! [`check`] reads an unmounted image straight from a [`BlockDevice`],
//! never through [`crate::FileSystem`], in passes much like e2fsck's:
//!
//! 0. block 0: superblock, layout, extension record (`superblock`); the
//!    journal's committed transaction and owner (`journal`); the orphan
//!    chain (`orphans`);
//! 1. every inode: type, block map, size, `blocks` (`inodes`); 1b. blocks
//!    claimed twice (`duplicates`);
//! 2. every directory, breadth first from the root: layout and entries
//!    (`dirs`);
//! 3. the tree: unreachable directories, `.` and `..` (`connect`);
//! 4. link counts and nameless inodes (`links`);
//! 5. bitmap and free counters (`summary`).
//!
//! Every problem is reported with a named reason ([`ProblemKind`]).
//! Repairs happen as problems are found, by read-modify-write of the
//! blocks concerned, and the device is flushed at the end. Without a
//! repair mode no byte is written.
//!
//! Memory: three bits per block (claimed, claimed twice, changed by a
//! repair; a fourth while blocks claimed twice are settled), a few bytes
//! per inode and words per directory, a handful of blocks, a bounded set
//! of names while a directory is read, and the blocks of a journal
//! transaction not replayed (as a read-only mount holds them). Nothing
//! grows with file or directory sizes, and every loop is bounded by the
//! image's structure, whatever its bytes.

mod bitset;
mod blockmap;
mod connect;
mod context;
mod dirread;
mod dirs;
mod dirwrite;
mod duplicates;
mod inodes;
mod journal;
mod legacy;
mod links;
mod lostfound;
mod orphans;
mod report;
mod summary;
mod superblock;

pub use report::{CheckStats, Problem, ProblemKind, Report, Severity};

use crate::device::BlockDevice;
use crate::error::Result;
use context::Checker;

/// How much a check may change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepairMode {
    /// Report only; the image is not written (like `e2fsck -n`).
    #[default]
    None,
    /// Repairs that cannot lose data: rebuild the bitmap and free counters,
    /// correct `blocks` counts, link counts and entry type bytes, rewrite
    /// legacy straddling directories (like `e2fsck -p`).
    Safe,
    /// Every repair (like `e2fsck -y`): also clear bad pointers, settle
    /// blocks claimed twice, drop bad entries, salvage damaged directory
    /// blocks, fix `.` and `..`, and link what nothing reaches into
    /// `/lost+found`.
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    pub repair: RepairMode,
    /// Problems kept in [`Report::problems`]; the rest are only counted.
    pub max_problems: usize,
    /// Bytes of names the duplicate-name check may hold for one directory
    /// at a time; a larger directory is read once per share of its names.
    pub name_memory: usize,
    /// Seconds since the epoch: recorded as the extension record's
    /// `last_check_time` when repairing, and given to inodes the checker
    /// creates. `None` leaves the check time alone (and uses 0).
    pub now: Option<u64>,
    /// Told how far the check is, as e2fsck's `-C`: pass (1 inodes, 2
    /// directories, 3 connectivity, 4 link counts, 5 summary), work done
    /// and work in that pass. Called often; the callee throttles.
    pub progress: Option<ProgressFn>,
}

/// A progress callback: `(pass, done, total)`.
#[derive(Clone, Copy, Debug)]
pub struct ProgressFn(pub fn(u8, u64, u64));

/// Reporting progress changes nothing checked: any two are alike.
impl PartialEq for ProgressFn {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ProgressFn {}

impl CheckOptions {
    pub fn new(repair: RepairMode) -> Self {
        CheckOptions { repair, max_problems: 10_000, name_memory: 4 << 20, now: None, progress: None }
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions::new(RepairMode::None)
    }
}

/// Checks (and, as `options.repair` allows, repairs) the image on
/// `device`, which must not be mounted.
///
/// Fails when block 0 describes no checkable image (wrong magic or sizes,
/// impossible counts, a device shorter than the image, a first data block
/// the root directory does not confirm), when repairs are asked of an
/// image with extension features this checker does not know, or on I/O
/// errors. Everything else is a [`Problem`] in the report.
pub fn check<D: BlockDevice>(device: &mut D, options: &CheckOptions) -> Result<Report> {
    crate::resize::finish_interrupted(device, options.repair == RepairMode::None)?;
    let mut volume = superblock::open(device, options.repair)?;
    let mut ck = Checker::new(device, &mut volume, options);
    superblock::check(&mut ck, &volume);
    journal::check(&mut ck, volume.recovery)?;
    orphans::check(&mut ck)?;
    inodes::scan(&mut ck)?;
    duplicates::resolve(&mut ck)?;
    ck.progress(2, 0, 1);
    dirs::scan(&mut ck)?;
    ck.progress(2, 1, 1);
    ck.progress(3, 0, 1);
    connect::run(&mut ck)?;
    ck.progress(3, 1, 1);
    ck.progress(4, 0, 1);
    links::run(&mut ck)?;
    ck.progress(4, 1, 1);
    ck.progress(5, 0, 1);
    let counters = summary::check(&mut ck)?;
    ck.progress(5, 1, 1);
    superblock::write_back(&mut ck, &volume, counters, options.now)?;
    ck.flush()?;
    let stats = summary::statistics(&ck);
    let mut report = core::mem::take(&mut ck.report);
    report.stats = stats;
    Ok(report)
}
