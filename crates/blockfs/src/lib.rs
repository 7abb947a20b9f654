//! BlockFS: an ext2-inspired filesystem, byte-compatible with the images
//! VeridianOS makes. `no_std` + `alloc`; the `std` feature adds a
//! file-backed device and `std::error::Error`.
//!
//! Layers, each readable alone: [`format`] (bytes ↔ typed values),
//! [`device`] (the block-device trait), [`cache`] (bounded write-back
//! cache), allocation, block mapping, directories and transactions
//! (private), and [`fs`] (the operations; the handle is `Send + Sync`, and
//! operations on different files run in parallel).

#![no_std]
// Denied everywhere but one system call the standard library lacks
// (`device::file::start_writeback`).
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod allocator;
mod bmap;
pub mod cache;
pub mod check;
mod commit;
pub mod crc;
pub mod device;
mod dir;
mod dirstream;
pub mod error;
pub mod format;
pub mod fs;
mod journal;
mod orphan;
pub mod resize;
pub mod rootfs;
mod store;
mod sync;
mod tx;
mod volume;

#[cfg(feature = "std")]
pub use device::FileDevice;
pub use device::{BlockDevice, MemDevice};
pub use dir::DirEntry;
pub use error::{Corruption, DeviceError, Error, Result};
pub use format::inode::FileType;
pub use fs::{Attr, FileSystem, FormatOptions, ListedEntry, MountOptions, SetAttr, StatFs, ROOT_INO};
