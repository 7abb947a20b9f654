//! The 512-byte header record: field offsets, numbers and the checksum.
//!
//! Layout of POSIX.1-2001 `ustar`. The old GNU format shares the first 345
//! bytes but stores access times and sparse maps where ustar has its
//! `prefix`, so the prefix is read only under the POSIX magic. Pre-POSIX
//! (v7) headers have no magic and are read like GNU ones.

use alloc::vec::Vec;
use core::ops::Range;

use super::error::{Field, TarError};

pub const RECORD_SIZE: usize = 512;
pub type Record = [u8; RECORD_SIZE];

const NAME: Range<usize> = 0..100;
const CHECKSUM: Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINK_NAME: Range<usize> = 157..257;
const MAGIC: Range<usize> = 257..263;
const PREFIX: Range<usize> = 345..500;
/// Old GNU sparse header: the first map entries and the real size.
const SPARSE_MAP_IN_HEADER: Range<usize> = 386..482;
const SPARSE_REAL_SIZE: Range<usize> = 483..495;
/// One map entry: offset and length, 12 bytes each.
const SPARSE_ENTRY: usize = 24;

/// POSIX ustar's magic. Old GNU headers have `"ustar "` here instead.
const USTAR_MAGIC: &[u8] = b"ustar\0";
/// The checksum is summed with its own field taken as eight spaces.
const CHECKSUM_FIELD_AS_SPACES: i64 = 8 * b' ' as i64;

impl Field {
    fn range(self) -> Range<usize> {
        match self {
            Field::Mode => 100..108,
            Field::Uid => 108..116,
            Field::Gid => 116..124,
            Field::Size => 124..136,
            Field::Mtime => 136..148,
            Field::DevMajor => 329..337,
            Field::DevMinor => 337..345,
        }
    }
}

/// A record whose checksum has been verified, and where it was read.
pub struct Header<'a> {
    record: &'a Record,
    pub offset: u64,
}

impl<'a> Header<'a> {
    pub fn parse(record: &'a Record, offset: u64) -> Result<Self, TarError> {
        if checksum_matches(record) {
            Ok(Header { record, offset })
        } else {
            Err(TarError::BadChecksum { offset })
        }
    }

    pub fn typeflag(&self) -> u8 {
        self.record[TYPEFLAG]
    }

    /// The stored path: ustar's prefix field, when set, joined to the name.
    pub fn path(&self) -> Vec<u8> {
        let name = text(&self.record[NAME]);
        let prefix = if &self.record[MAGIC] == USTAR_MAGIC { text(&self.record[PREFIX]) } else { &[] };
        let mut path = Vec::with_capacity(prefix.len() + 1 + name.len());
        if !prefix.is_empty() {
            path.extend_from_slice(prefix);
            path.push(b'/');
        }
        path.extend_from_slice(name);
        path
    }

    pub fn link_name(&self) -> Vec<u8> {
        text(&self.record[LINK_NAME]).to_vec()
    }

    pub fn number(&self, field: Field) -> Result<i64, TarError> {
        numeric(&self.record[field.range()]).ok_or(TarError::BadNumber { offset: self.offset, field })
    }

    /// A field that cannot be negative (sizes, ids, mode, device numbers).
    pub fn unsigned(&self, field: Field) -> Result<u64, TarError> {
        let value = self.number(field)?;
        u64::try_from(value).map_err(|_| TarError::BadNumber { offset: self.offset, field })
    }
}

impl Header<'_> {
    /// An old GNU sparse member's real size.
    pub fn sparse_real_size(&self) -> Result<u64, TarError> {
        let size = numeric(&self.record[SPARSE_REAL_SIZE]).and_then(|n| u64::try_from(n).ok());
        size.ok_or(TarError::BadSparseMap { offset: self.offset })
    }

    /// The map entries in an old GNU sparse header.
    pub fn sparse_map(&self, map: &mut Vec<(u64, u64)>) -> Result<(), TarError> {
        sparse_entries(&self.record[SPARSE_MAP_IN_HEADER], self.offset, map)
    }
}

/// Appends the `(offset, length)` entries of a sparse map area (in a
/// header or an extension record) up to the first empty one.
pub fn sparse_entries(area: &[u8], offset: u64, map: &mut Vec<(u64, u64)>) -> Result<(), TarError> {
    for entry in area.chunks_exact(SPARSE_ENTRY) {
        if entry[0] == 0 {
            break;
        }
        let number = |bytes: &[u8]| {
            numeric(bytes).and_then(|n| u64::try_from(n).ok()).ok_or(TarError::BadSparseMap { offset })
        };
        map.push((number(&entry[..12])?, number(&entry[12..])?));
    }
    Ok(())
}

pub fn is_zero_record(record: &Record) -> bool {
    record.iter().all(|&byte| byte == 0)
}

/// Whether the stored checksum equals the sum of the record's bytes, read
/// as unsigned or (as some historic writers did) as signed bytes; GNU tar
/// accepts either.
pub fn checksum_matches(record: &Record) -> bool {
    let Some(stored) = octal(&record[CHECKSUM]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (CHECKSUM_FIELD_AS_SPACES, CHECKSUM_FIELD_AS_SPACES);
    for (index, &byte) in record.iter().enumerate() {
        if !CHECKSUM.contains(&index) {
            unsigned += byte as i64;
            signed += byte as i8 as i64;
        }
    }
    stored == unsigned || stored == signed
}

/// A text field: up to its first NUL, or all of it when full.
fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&byte| byte == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric field: GNU base-256 when the first byte's high bit is set,
/// else octal text.
fn numeric(field: &[u8]) -> Option<i64> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => base256(field),
        _ => octal(field),
    }
}

/// Octal digits after optional leading spaces, ended by a space or NUL
/// and nothing but spaces or NULs after. A blank field reads as 0, as
/// libarchive reads it (some writers leave unused fields empty).
fn octal(field: &[u8]) -> Option<i64> {
    let start = field.iter().position(|&byte| byte != b' ').unwrap_or(field.len());
    let digits = &field[start..];
    let end = digits.iter().position(|byte| !(b'0'..=b'7').contains(byte)).unwrap_or(digits.len());
    if !digits[end..].iter().all(|&byte| byte == b' ' || byte == 0) {
        return None;
    }
    digits[..end]
        .iter()
        .try_fold(0i64, |value, &digit| value.checked_mul(8)?.checked_add((digit - b'0') as i64))
}

/// GNU base-256: big-endian two's complement whose top bit only marks the
/// encoding; bit 6 of the first byte is the sign.
fn base256(field: &[u8]) -> Option<i64> {
    let (&first, rest) = field.split_first()?;
    let sign = if first & 0x40 != 0 { 0x40 } else { 0 };
    // A 12-byte field holds 94 value bits: i128 cannot overflow here.
    let value = rest.iter().fold((first & 0x3f) as i128 - sign, |value, &byte| value * 256 + byte as i128);
    i64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_as_writers_pad_them() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"   644 \0"), Some(0o644));
        assert_eq!(octal(b"00000001750 "), Some(0o1750));
        assert_eq!(octal(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(octal(b"0000\x0089"), None);
        assert_eq!(octal(b"00x0644\0"), None);
        assert_eq!(octal(b"77777777777777777777777"), None);
    }

    #[test]
    fn base256_positive_and_negative() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&10_000_000_000u64.to_be_bytes());
        assert_eq!(numeric(&field), Some(10_000_000_000));
        assert_eq!(numeric(&[0xff; 12]), Some(-1));
        let mut minus_two = [0xff; 8];
        minus_two[7] = 0xfe;
        assert_eq!(numeric(&minus_two), Some(-2));
        let mut huge = [0xff; 12];
        huge[0] = 0x80;
        assert_eq!(numeric(&huge), None);
    }

    #[test]
    fn checksum_accepts_unsigned_and_signed_sums() {
        let mut record = [0u8; RECORD_SIZE];
        record[0] = 0xe9;
        let unsigned = 0xe9 + CHECKSUM_FIELD_AS_SPACES;
        record[CHECKSUM].copy_from_slice(&alloc::format!("{unsigned:06o}\0 ").into_bytes());
        assert!(checksum_matches(&record));
        let signed = 0xe9u8 as i8 as i64 + CHECKSUM_FIELD_AS_SPACES;
        record[CHECKSUM].copy_from_slice(&alloc::format!("{signed:06o}\0 ").into_bytes());
        assert!(checksum_matches(&record));
        record[1] = 1;
        assert!(!checksum_matches(&record));
        assert!(!checksum_matches(&[0; RECORD_SIZE]));
    }
}
