//! The block-device boundary: the library reads and writes whole 4 KiB
//! blocks through this trait and knows nothing else about storage.
//!
//! I/O is positioned and goes through `&self`, so a commit can write the
//! journal while operations read other blocks (docs/DESIGN.md, "Locking").

use alloc::vec;
use alloc::vec::Vec;

use crate::error::DeviceError;
use crate::format::{Block, BLOCK_SIZE};
use crate::sync::Mutex;

pub trait BlockDevice: Send + Sync {
    /// Blocks the device holds.
    fn block_count(&self) -> u32;

    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError>;

    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError>;

    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), DeviceError>;

    /// Writes `data.len() / 4096` consecutive blocks starting at `start`.
    /// Devices that can do it in one request should override this.
    fn write_blocks(&self, start: u32, data: &[u8]) -> Result<(), DeviceError> {
        for (offset, chunk) in data.chunks_exact(BLOCK_SIZE).enumerate() {
            let block: &Block = chunk.try_into().expect("chunks_exact yields whole blocks");
            self.write_block(start + offset as u32, block)?;
        }
        Ok(())
    }

    /// Reads `data.len() / 4096` consecutive blocks starting at `start`.
    fn read_blocks(&self, start: u32, data: &mut [u8]) -> Result<(), DeviceError> {
        for (offset, chunk) in data.chunks_exact_mut(BLOCK_SIZE).enumerate() {
            let block: &mut Block = chunk.try_into().expect("chunks_exact yields whole blocks");
            self.read_block(start + offset as u32, block)?;
        }
        Ok(())
    }
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn block_count(&self) -> u32 {
        (**self).block_count()
    }
    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        (**self).read_block(index, buf)
    }
    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        (**self).write_block(index, buf)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        (**self).flush()
    }
    fn write_blocks(&self, start: u32, data: &[u8]) -> Result<(), DeviceError> {
        (**self).write_blocks(start, data)
    }
    fn read_blocks(&self, start: u32, data: &mut [u8]) -> Result<(), DeviceError> {
        (**self).read_blocks(start, data)
    }
}

/// Largest run of blocks handed to the device in one write.
pub(crate) const MAX_WRITE_RUN: usize = 256;

/// Writes `blocks` (sorted by block number), neighbours coalesced into
/// one request of up to `MAX_WRITE_RUN` blocks. Does not flush.
pub(crate) fn write_runs<D: BlockDevice + ?Sized>(
    device: &D,
    blocks: &[(u32, &Block)],
) -> Result<(), DeviceError> {
    let mut run: Vec<u8> = Vec::new();
    let mut start = 0;
    while start < blocks.len() {
        let mut end = start + 1;
        while end < blocks.len() && end - start < MAX_WRITE_RUN && blocks[end].0 == blocks[end - 1].0 + 1 {
            end += 1;
        }
        if end - start == 1 {
            device.write_block(blocks[start].0, blocks[start].1)?;
        } else {
            run.clear();
            for (_, data) in &blocks[start..end] {
                run.extend_from_slice(&data[..]);
            }
            device.write_blocks(blocks[start].0, &run)?;
        }
        start = end;
    }
    Ok(())
}

fn check_range(index: u32, count: usize, block_count: u32) -> Result<(), DeviceError> {
    if index as u64 + count as u64 > block_count as u64 {
        Err(DeviceError::eio(Some(index)))
    } else {
        Ok(())
    }
}

/// A device held in memory: tests, and the RAM filesystem built from a TAR.
pub struct MemDevice {
    /// Behind a lock only because I/O goes through `&self`; the length
    /// never changes.
    bytes: Mutex<Vec<u8>>,
    block_count: u32,
}

impl MemDevice {
    pub fn new(block_count: u32) -> Self {
        Self::from_bytes(vec![0; block_count as usize * BLOCK_SIZE])
    }

    /// Wraps an image; a trailing partial block is ignored.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Self {
        bytes.truncate(bytes.len() / BLOCK_SIZE * BLOCK_SIZE);
        let block_count = (bytes.len() / BLOCK_SIZE).min(u32::MAX as usize) as u32;
        MemDevice { bytes: Mutex::new(bytes), block_count }
    }

    pub fn as_bytes(&mut self) -> &[u8] {
        self.bytes.get_mut()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes.into_inner()
    }
}

impl Clone for MemDevice {
    fn clone(&self) -> Self {
        MemDevice { bytes: Mutex::new(self.bytes.lock().clone()), block_count: self.block_count }
    }
}

impl core::fmt::Debug for MemDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemDevice").field("block_count", &self.block_count).finish_non_exhaustive()
    }
}

impl BlockDevice for MemDevice {
    fn block_count(&self) -> u32 {
        self.block_count
    }

    fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
        check_range(index, 1, self.block_count())?;
        let start = index as usize * BLOCK_SIZE;
        buf.copy_from_slice(&self.bytes.lock()[start..start + BLOCK_SIZE]);
        Ok(())
    }

    fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
        check_range(index, 1, self.block_count())?;
        let start = index as usize * BLOCK_SIZE;
        self.bytes.lock()[start..start + BLOCK_SIZE].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

#[cfg(feature = "std")]
pub use file::FileDevice;

#[cfg(feature = "std")]
mod file {
    use std::fs::{File, OpenOptions};
    use std::io::{self, Seek, SeekFrom};
    use std::os::unix::fs::{FileExt, FileTypeExt};
    use std::path::Path;

    use super::{check_range, Block, BlockDevice, BLOCK_SIZE};
    use crate::error::{errno, DeviceError};

    /// An image file (or a block device node) used through positioned I/O.
    #[derive(Debug)]
    pub struct FileDevice {
        file: File,
        block_count: u32,
        writable: bool,
    }

    /// Writes at least this large are sent on to the disk at once.
    const EARLY_WRITEBACK_BYTES: usize = 256 * 1024;

    /// Starts writing `length` bytes at `offset` back to the disk without
    /// waiting. Everything the library writes is made durable by a flush
    /// soon after; started early, a large write's pages go to the disk
    /// while the writer goes on, instead of all at the flush
    /// (docs/BENCHMARKS.md, "Early write-back"). A hint: a file that
    /// cannot take it is written back at the flush as before.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn start_writeback(file: &File, offset: u64, length: usize) {
        use std::os::fd::AsRawFd;
        // SAFETY: a system call on a descriptor that `file` keeps open;
        // it reads and writes no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset as _, length as _, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(_file: &File, _offset: u64, _length: usize) {}

    fn device_error(error: io::Error, block: Option<u32>) -> DeviceError {
        DeviceError { errno: error.raw_os_error().unwrap_or(errno::EIO), block }
    }

    impl FileDevice {
        /// Opens an image; its size fixes the block count (a partial last
        /// block is ignored, and images past 2^32 blocks are clamped).
        pub fn open(path: &Path, writable: bool) -> io::Result<Self> {
            let file = OpenOptions::new().read(true).write(writable).open(path)?;
            Self::from_file(file, writable)
        }

        /// A block device's node reports size 0, so its size is where
        /// a seek to the end lands (the kernel's BLKGETSIZE64); the file
        /// position is put back, though this device only uses positioned
        /// I/O.
        pub fn from_file(file: File, writable: bool) -> io::Result<Self> {
            let metadata = file.metadata()?;
            let length = if metadata.file_type().is_block_device() {
                let mut handle = &file;
                let position = handle.stream_position()?;
                let end = handle.seek(SeekFrom::End(0))?;
                handle.seek(SeekFrom::Start(position))?;
                end
            } else {
                metadata.len()
            };
            let block_count = (length / BLOCK_SIZE as u64).min(u32::MAX as u64) as u32;
            Ok(FileDevice { file, block_count, writable })
        }

        pub fn file(&self) -> &File {
            &self.file
        }

        pub fn into_file(self) -> File {
            self.file
        }

        fn check_writable(&self, index: u32) -> Result<(), DeviceError> {
            if self.writable {
                Ok(())
            } else {
                Err(DeviceError { errno: errno::EROFS, block: Some(index) })
            }
        }
    }

    impl BlockDevice for FileDevice {
        fn block_count(&self) -> u32 {
            self.block_count
        }

        fn read_block(&self, index: u32, buf: &mut Block) -> Result<(), DeviceError> {
            self.read_blocks(index, buf)
        }

        fn write_block(&self, index: u32, buf: &Block) -> Result<(), DeviceError> {
            self.write_blocks(index, buf)
        }

        fn read_blocks(&self, start: u32, data: &mut [u8]) -> Result<(), DeviceError> {
            check_range(start, data.len() / BLOCK_SIZE, self.block_count)?;
            self.file
                .read_exact_at(data, start as u64 * BLOCK_SIZE as u64)
                .map_err(|e| device_error(e, Some(start)))
        }

        fn write_blocks(&self, start: u32, data: &[u8]) -> Result<(), DeviceError> {
            self.check_writable(start)?;
            check_range(start, data.len() / BLOCK_SIZE, self.block_count)?;
            let offset = start as u64 * BLOCK_SIZE as u64;
            self.file.write_all_at(data, offset).map_err(|e| device_error(e, Some(start)))?;
            if data.len() >= EARLY_WRITEBACK_BYTES {
                start_writeback(&self.file, offset, data.len());
            }
            Ok(())
        }

        fn flush(&self) -> Result<(), DeviceError> {
            if !self.writable {
                return Ok(());
            }
            self.file.sync_data().map_err(|e| device_error(e, None))
        }
    }
}
