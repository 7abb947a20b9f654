//! Why an archive was refused. Every error names the byte offset of the
//! record at fault, so a damaged archive can be inspected with `dd`/`xxd`.

use core::fmt;

/// A numeric header field (or the pax record that overrides it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Mode,
    Uid,
    Gid,
    Size,
    Mtime,
    DevMajor,
    DevMinor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TarError {
    /// Fewer than 512 bytes were left: the archive ends mid-record.
    PartialRecord {
        offset: u64,
        len: usize,
    },
    /// The header's checksum matches neither the unsigned nor the signed sum.
    BadChecksum {
        offset: u64,
    },
    /// A numeric field is neither octal text nor GNU base-256, does not fit,
    /// or is negative where only a count makes sense.
    BadNumber {
        offset: u64,
        field: Field,
    },
    /// A pax record whose length, `key=value` shape or newline is wrong.
    BadPaxRecord {
        offset: u64,
    },
    /// A pax header or GNU long name larger than
    /// [`MAX_METADATA_SIZE`](super::MAX_METADATA_SIZE).
    MetadataTooLarge {
        offset: u64,
        size: u64,
    },
    /// A path or link target with a NUL byte inside it.
    NulInPath {
        offset: u64,
    },
    EmptyPath {
        offset: u64,
    },
    /// A hard or symbolic link naming nothing.
    EmptyLinkTarget {
        offset: u64,
    },
    /// The archive ended `missing` bytes before the data of the entry
    /// whose header is at `offset`.
    Truncated {
        offset: u64,
        missing: u64,
    },
    /// A GNU sparse member's map is out of order, past its real size,
    /// disagrees with its stored size, or has a region that does not end
    /// on a 512-byte boundary before the last.
    BadSparseMap {
        offset: u64,
    },
    /// A pax or GNU long-name header not followed by the entry it describes.
    DanglingMetadata {
        offset: u64,
    },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Mode => "mode",
            Field::Uid => "uid",
            Field::Gid => "gid",
            Field::Size => "size",
            Field::Mtime => "mtime",
            Field::DevMajor => "devmajor",
            Field::DevMinor => "devminor",
        })
    }
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TarError::PartialRecord { offset, len } => {
                write!(f, "tar archive ends with a partial record of {len} bytes at byte {offset}")
            }
            TarError::BadChecksum { offset } => {
                write!(f, "tar header at byte {offset}: checksum mismatch (not a tar header, or damaged)")
            }
            TarError::BadNumber { offset, field } => {
                write!(f, "tar header at byte {offset}: invalid {field} value")
            }
            TarError::BadPaxRecord { offset } => {
                write!(f, "pax extended header at byte {offset}: malformed record")
            }
            TarError::MetadataTooLarge { offset, size } => write!(
                f,
                "extended header at byte {offset}: {size} bytes (limit {})",
                super::MAX_METADATA_SIZE
            ),
            TarError::NulInPath { offset } => {
                write!(f, "tar entry at byte {offset}: path contains a NUL byte")
            }
            TarError::EmptyPath { offset } => write!(f, "tar entry at byte {offset}: empty path"),
            TarError::EmptyLinkTarget { offset } => {
                write!(f, "tar entry at byte {offset}: link with an empty target")
            }
            TarError::Truncated { offset, missing } => {
                write!(f, "tar entry at byte {offset}: archive ends {missing} bytes before its end")
            }
            TarError::BadSparseMap { offset } => {
                write!(f, "sparse tar entry at byte {offset}: unusable sparse map")
            }
            TarError::DanglingMetadata { offset } => {
                write!(f, "extended header at byte {offset} is not followed by an entry")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TarError {}
