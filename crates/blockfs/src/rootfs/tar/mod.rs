//! A TAR reader written from POSIX.1-2001 (ustar and pax) and the GNU tar
//! manual's format notes: ustar, old GNU and v7 headers, GNU long names,
//! old GNU sparse members ('S'), pax extended headers, octal and base-256
//! numbers.
//!
//! [`TarParser`] is a streaming state machine fed whole 512-byte records;
//! [`events`] drives it over an archive held in memory. Neither prints, and
//! hostile input yields a [`TarError`] naming the offending record, never a
//! panic or an allocation sized by a header.

use alloc::vec::Vec;

mod error;
mod extended;
mod header;
mod parser;
mod slice;

pub use error::{Field, TarError};
pub use header::RECORD_SIZE;
pub use parser::{Step, TarParser, MAX_METADATA_SIZE, MAX_SPARSE_REGIONS};
pub use slice::{events, Events};

/// One archive member, with every override applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path as stored (ustar prefix joined, GNU long name or pax
    /// `path` applied); not yet made safe to create.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// The 12 permission bits.
    pub mode: u16,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch (any fraction dropped); may be negative.
    pub mtime: i64,
    /// Bytes that follow as [`Event::Data`] and [`Event::Hole`]: a regular
    /// file's size (a sparse member's real size), else 0.
    pub size: u64,
    /// Byte offset of the entry's own header record.
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    Directory,
    /// Target as stored.
    Symlink(Vec<u8>),
    /// Path of an earlier member this one is another name for.
    HardLink(Vec<u8>),
    CharDevice(Device),
    BlockDevice(Device),
    Fifo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

/// What the parser found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Entry(Entry),
    /// The next bytes of the last regular file's data, without padding.
    Data(&'a [u8]),
    /// The next bytes of the last regular file's data are this many
    /// zeros, stored nowhere: a hole of a GNU sparse member.
    Hole(u64),
    /// A member of a type this reader does not create (volume labels,
    /// vendor types); its data is passed over.
    Skipped {
        offset: u64,
        typeflag: u8,
        path: Vec<u8>,
    },
    /// The end-of-archive marker.
    End,
}

/// Whether `first_block` starts a tar archive: its first record is a
/// header with a valid checksum, or the block is all zeros (an empty
/// archive is nothing but its end marker).
pub fn looks_like_archive(first_block: &[u8]) -> bool {
    match first_block.first_chunk::<RECORD_SIZE>() {
        Some(record) => header::checksum_matches(record) || first_block.iter().all(|&byte| byte == 0),
        None => false,
    }
}
