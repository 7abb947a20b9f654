//! Metadata carried in headers of their own, ahead of the entry they
//! describe: pax extended records (`x` for the next entry, `g` for all
//! that follow) and GNU long names (`L` for the path, `K` for the link).

use alloc::vec::Vec;

use super::error::{Field, TarError};

/// Values that replace the next entry's header fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub path: Option<Vec<u8>>,
    pub link: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<i64>,
}

impl Overrides {
    /// Applies every `"LEN KEY=VALUE\n"` record of a pax header body
    /// (`offset` is the header's, for errors).
    pub fn apply_pax(&mut self, mut body: &[u8], offset: u64) -> Result<(), TarError> {
        while !body.is_empty() {
            let (key, value, rest) = split_record(body).ok_or(TarError::BadPaxRecord { offset })?;
            self.apply_record(key, value, offset)?;
            body = rest;
        }
        Ok(())
    }

    /// An empty value deletes the keyword: the header's own field applies.
    fn apply_record(&mut self, key: &[u8], value: &[u8], offset: u64) -> Result<(), TarError> {
        match key {
            b"path" => self.path = path_value(value, offset)?,
            b"linkpath" => self.link = path_value(value, offset)?,
            b"size" => self.size = number_value(value, decimal, Field::Size, offset)?,
            b"uid" => self.uid = number_value(value, decimal, Field::Uid, offset)?,
            b"gid" => self.gid = number_value(value, decimal, Field::Gid, offset)?,
            b"mtime" => self.mtime = number_value(value, seconds, Field::Mtime, offset)?,
            // uname/gname (ids are taken as stored), atime, ctime, charset
            // and vendor keys: nothing a BlockFS inode keeps.
            _ => {}
        }
        Ok(())
    }
}

/// A GNU long name or link body: the name and its terminating NUL(s).
pub fn gnu_long_name(body: &[u8], offset: u64) -> Result<Option<Vec<u8>>, TarError> {
    let end = body.iter().rposition(|&byte| byte != 0).map_or(0, |last| last + 1);
    path_value(&body[..end], offset)
}

/// Splits the first record off a pax body: `(key, value, rest)`.
fn split_record(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let space = bytes.iter().position(|&byte| byte == b' ')?;
    let length = usize::try_from(decimal(&bytes[..space])?).ok()?;
    if length <= space + 1 || length > bytes.len() {
        return None;
    }
    let record = bytes[space + 1..length].strip_suffix(b"\n")?;
    let equals = record.iter().position(|&byte| byte == b'=')?;
    Some((&record[..equals], &record[equals + 1..], &bytes[length..]))
}

fn path_value(value: &[u8], offset: u64) -> Result<Option<Vec<u8>>, TarError> {
    if value.contains(&0) {
        return Err(TarError::NulInPath { offset });
    }
    Ok((!value.is_empty()).then(|| value.to_vec()))
}

fn number_value<T>(
    value: &[u8],
    parse: fn(&[u8]) -> Option<T>,
    field: Field,
    offset: u64,
) -> Result<Option<T>, TarError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(value).map(Some).ok_or(TarError::BadNumber { offset, field })
}

fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.is_ascii_digit().then(|| (byte - b'0') as u64)?;
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// pax times: `[-]SECONDS[.FRACTION]`; the fraction is dropped, since
/// inodes keep whole seconds.
fn seconds(text: &[u8]) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let whole = match unsigned.iter().position(|&byte| byte == b'.') {
        Some(dot) if unsigned[dot + 1..].iter().all(u8::is_ascii_digit) => &unsigned[..dot],
        Some(_) => return None,
        None => unsigned,
    };
    let value = i64::try_from(decimal(whole)?).ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_override_and_delete() {
        let mut overrides = Overrides::default();
        let body = b"30 mtime=1700000000.123456789\n11 size=42\n14 uname=root\n12 path=a/b\n";
        overrides.apply_pax(body, 0).unwrap();
        assert_eq!(overrides.mtime, Some(1_700_000_000));
        assert_eq!(overrides.size, Some(42));
        assert_eq!(overrides.path.as_deref(), Some(&b"a/b"[..]));
        overrides.apply_pax(b"8 path=\n", 0).unwrap();
        assert_eq!(overrides.path, None);
    }

    #[test]
    fn malformed_records_are_refused() {
        let bad = TarError::BadPaxRecord { offset: 7 };
        let mut overrides = Overrides::default();
        for body in [&b"99 path=x\n"[..], b"3 path=x\n", b"x path=x\n", b"10 path=xy", b"9 pathxx\n", b"0 \n"]
        {
            assert_eq!(overrides.apply_pax(body, 7), Err(bad), "{body:?}");
        }
        assert_eq!(
            overrides.apply_pax(b"12 size=-1x\n", 7),
            Err(TarError::BadNumber { offset: 7, field: Field::Size })
        );
        assert_eq!(overrides.apply_pax(b"11 path=\0x\n", 7), Err(TarError::NulInPath { offset: 7 }));
    }

    #[test]
    fn negative_and_fractional_times() {
        assert_eq!(seconds(b"-12.75"), Some(-12));
        assert_eq!(seconds(b"12."), Some(12));
        assert_eq!(seconds(b"1.2.3"), None);
        assert_eq!(seconds(b"99999999999999999999"), None);
    }

    #[test]
    fn gnu_long_names_lose_their_nul() {
        assert_eq!(gnu_long_name(b"long/name\0", 0), Ok(Some(b"long/name".to_vec())));
        assert_eq!(gnu_long_name(b"\0\0", 0), Ok(None));
        assert_eq!(gnu_long_name(b"a\0b\0", 3), Err(TarError::NulInPath { offset: 3 }));
    }
}
