//! Holes, both ways. Reading a host file, only its data extents are
//! copied (SEEK_DATA / SEEK_HOLE), and within them whole zero blocks are
//! skipped too; writing a host file, zero blocks are seeked over and the
//! size set at the end. So a sparse file stays sparse through mkfs
//! --populate, put, get, export and import, and a damaged image whose
//! inodes claim gigabytes does not fill the host with zeros.

use std::fs::File;
use std::io;

use blockfs::format::inode::DIRECT_BLOCKS;
use blockfs::format::{BLOCK_SIZE, POINTERS_PER_BLOCK};

use crate::sys;

const BLOCK: u64 = BLOCK_SIZE as u64;

/// The data extents `(start, end)` of the first `size` bytes of `file`,
/// in order. A filesystem that cannot tell holes reports all of it.
pub fn data_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut extents = Vec::new();
    let mut at = 0;
    while at < size {
        let start = match sys::seek(file, at, true) {
            Ok(Some(start)) => start,
            Ok(None) => break,
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => at,
            Err(error) => return Err(error),
        };
        if start >= size {
            break;
        }
        let end = sys::seek(file, start, false)?.unwrap_or(size).min(size);
        if end <= start {
            // The file changed under us; what is left is data.
            extents.push((start, size));
            break;
        }
        extents.push((start, end));
        at = end;
    }
    Ok(extents)
}

/// Blocks (data and mapping) a file takes when only `extents` are
/// written: each touched data block, the single-indirect block if one is
/// in its range, and the double-indirect block and each middle block
/// with data under it. Whole zero blocks skipped later only lower it.
pub fn stored_blocks(extents: &[(u64, u64)]) -> u64 {
    let (direct, per_block) = (DIRECT_BLOCKS as u64, POINTERS_PER_BLOCK as u64);
    let mut data = 0;
    let (mut single, mut middles) = (false, 0);
    let mut last_block = None;
    let mut last_middle = None;
    for &(start, end) in extents {
        let first = start / BLOCK;
        let first = match last_block {
            Some(last) if last >= first => last + 1,
            _ => first,
        };
        let past = end.div_ceil(BLOCK);
        if past <= first {
            continue;
        }
        data += past - first;
        last_block = Some(past - 1);
        single |= first < direct + per_block && past > direct;
        if past > direct + per_block {
            let from = first.max(direct + per_block) - direct - per_block;
            let (low, high) = (from / per_block, (past - 1 - direct - per_block) / per_block);
            let low = match last_middle {
                Some(last) if last >= low => last + 1,
                _ => low,
            };
            if high >= low {
                middles += high - low + 1;
            }
            last_middle = Some(high);
        }
    }
    let double = u64::from(middles > 0);
    data + u64::from(single) + double + middles
}

/// The parts of `data` (found at byte `offset` of a file) that are not
/// whole zero blocks of the file: `(start, end)` ranges within `data`.
pub fn nonzero_runs(data: &[u8], offset: u64) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let block_end = ((offset + at as u64) / BLOCK + 1) * BLOCK;
        let end = ((block_end - offset) as usize).min(data.len());
        let whole = (offset + at as u64) % BLOCK == 0 && end - at == BLOCK_SIZE;
        if !(whole && data[at..end].iter().all(|&b| b == 0)) {
            match runs.last_mut() {
                Some(run) if run.1 == at => run.1 = end,
                _ => runs.push((at, end)),
            }
        }
        at = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockfs::format::geometry::file_blocks;

    #[test]
    fn stored_blocks_count_data_and_mapping() {
        assert_eq!(stored_blocks(&[]), 0);
        assert_eq!(stored_blocks(&[(0, 1)]), 1);
        assert_eq!(stored_blocks(&[(0, 12 * BLOCK)]), 12);
        assert_eq!(stored_blocks(&[(0, 13 * BLOCK)]), 14);
        // Three blocks far apart in the double-indirect range: three middles.
        let far = |n: u64| ((12 + 1024 + n * 1024) * BLOCK, (13 + 1024 + n * 1024) * BLOCK);
        assert_eq!(stored_blocks(&[far(0), far(5), far(9)]), 3 + 1 + 3);
        // Two extents sharing a block count it once.
        assert_eq!(stored_blocks(&[(0, 100), (200, 300)]), 1);
        for size in [0, 1, 4096, 50 * BLOCK, 5 << 20, 3 << 30] {
            assert_eq!(stored_blocks(&[(0, size)]), file_blocks(size), "size {size}");
        }
    }

    #[test]
    fn nonzero_runs_skip_whole_zero_blocks_only() {
        let mut data = vec![0u8; 3 * BLOCK_SIZE];
        data[BLOCK_SIZE + 7] = 1;
        assert_eq!(nonzero_runs(&data, 0), [(BLOCK_SIZE, 2 * BLOCK_SIZE)]);
        // Unaligned: the partial blocks at each end are kept.
        assert_eq!(
            nonzero_runs(&data, 100),
            [(0, 2 * BLOCK_SIZE - 100), (3 * BLOCK_SIZE - 100, 3 * BLOCK_SIZE)]
        );
        assert_eq!(nonzero_runs(&[0u8; 10], 0), [(0, 10)]);
    }
}
