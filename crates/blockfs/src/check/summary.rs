//! Pass 5: the summaries. The block bitmap must mark exactly the blocks
//! that metadata and in-use inodes claim (differences are reported as runs
//! of blocks), and the free counters follow from the claims and inode
//! states. Also the statistics of the report.

use alloc::boxed::Box;

use super::context::{Checker, Kind};
use super::report::{CheckStats, Problem, ProblemKind};
use super::superblock::Counters;
use super::RepairMode;
use crate::device::BlockDevice;
use crate::error::Result;
use crate::format::geometry::BITS_PER_BITMAP_BLOCK;
use crate::format::inode::FileType;
use crate::format::BLOCK_SIZE;

/// A run of consecutive blocks the bitmap gets wrong the same way.
struct Run {
    /// Marked used but unclaimed (else claimed but marked free).
    leaked: bool,
    first: u32,
    count: u32,
}

/// Collects differing blocks into runs, reporting each run as it ends.
struct Runs {
    current: Option<Run>,
    fix: bool,
}

impl Runs {
    fn note<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>, leaked: bool, block: u32) {
        if let Some(run) = &mut self.current {
            if run.leaked == leaked && run.first as u64 + run.count as u64 == block as u64 {
                run.count += 1;
                return;
            }
        }
        self.close(ck);
        self.current = Some(Run { leaked, first: block, count: 1 });
    }

    fn close<D: BlockDevice>(&mut self, ck: &mut Checker<'_, D>) {
        if let Some(Run { leaked, first, count }) = self.current.take() {
            let kind = if leaked {
                ProblemKind::LeakedBlocks { first, count }
            } else {
                ProblemKind::UsedBlocksMarkedFree { first, count }
            };
            ck.record(Problem::new(kind).block(first), self.fix);
        }
    }
}

/// Compares (and, when allowed, rewrites) the bitmap; returns the counters
/// the superblock should hold, and those the image held as found.
/// Differences a repair made (blocks it took, gave back or dropped) are
/// corrected without a report.
pub(super) fn check<D: BlockDevice>(ck: &mut Checker<'_, D>) -> Result<Counters> {
    let fix = ck.may_fix(&ProblemKind::BitmapTailNotZero);
    let mut runs = Runs { current: None, fix };
    let mut tail_set = false;
    let mut marked_free = 0;
    let mut expected = Box::new([0u8; BLOCK_SIZE]);
    let (first_data, block_count) = (ck.geometry.first_data_block() as u64, ck.geometry.block_count as u64);
    for index in 0..ck.geometry.bitmap_blocks {
        let base = index as u64 * BITS_PER_BITMAP_BLOCK as u64;
        let bitmap_block = ck.geometry.first_bitmap_block() + index;
        let on_disk = ck.read_new(bitmap_block)?;
        let data_bits =
            first_data.max(base) - base..block_count.min(base + BITS_PER_BITMAP_BLOCK as u64) - base;
        marked_free += clear_bits(&on_disk[..], data_bits);
        ck.claimed.copy_to_bytes(base as u32, &mut expected[..]);
        if on_disk == expected {
            runs.close(ck);
            continue;
        }
        for (byte, (&disk, &want)) in on_disk.iter().zip(expected.iter()).enumerate() {
            if disk == want {
                runs.close(ck);
                continue;
            }
            for bit in 0..8 {
                let block = base + byte as u64 * 8 + bit;
                let (marked, claimed) = (disk >> bit & 1 != 0, want >> bit & 1 != 0);
                if block >= block_count {
                    tail_set |= marked;
                } else if marked != claimed && !ck.repaired_blocks.contains(block as u32) {
                    runs.note(ck, marked, block as u32);
                } else {
                    runs.close(ck);
                }
            }
        }
        if ck.repair != RepairMode::None {
            ck.write_block(bitmap_block, &expected)?;
        }
    }
    runs.close(ck);
    if tail_set {
        ck.record(Problem::new(ProblemKind::BitmapTailNotZero), fix);
    }
    let used_inodes = ck.inodes.iter().filter(|state| state.allocated()).count() as u32;
    Ok(Counters {
        free_blocks: ck.free_data_blocks(),
        free_inodes: ck.geometry.usable_inodes() - used_inodes,
        marked_free_blocks: marked_free,
        found_free_inodes: ck.free_inodes_found,
    })
}

/// Clear bits of a bitmap block among bits `range` (a data-area range, so
/// within the block).
fn clear_bits(bitmap: &[u8], range: core::ops::Range<u64>) -> u32 {
    range.filter(|&bit| bitmap[(bit / 8) as usize] & (1 << (bit % 8)) == 0).count() as u32
}

/// Totals over the inodes and blocks as they stand now.
pub(super) fn statistics<D: BlockDevice>(ck: &Checker<'_, D>) -> CheckStats {
    let mut stats = CheckStats {
        block_count: ck.geometry.block_count,
        blocks_used: ck.claimed.ones(),
        inode_count: ck.geometry.usable_inodes(),
        reconnected: ck.report.stats.reconnected,
        ..CheckStats::default()
    };
    for state in ck.inodes.iter().filter(|state| state.allocated()) {
        stats.inodes_used += 1;
        let counter = match state.kind {
            Kind::Free | Kind::Orphan => continue,
            Kind::Known(FileType::Directory) => &mut stats.directories,
            Kind::Known(FileType::Regular) | Kind::Unknown => &mut stats.regular_files,
            Kind::Known(FileType::Symlink) => &mut stats.symlinks,
            Kind::Known(_) => &mut stats.special_files,
        };
        *counter += 1;
    }
    stats
}
