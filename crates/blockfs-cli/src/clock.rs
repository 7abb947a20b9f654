//! The one "now" of a run. The library asks for the time through a plain
//! `fn() -> u32` ([`blockfs::fs::Clock`]); pointing it at a value fixed at
//! startup makes every timestamp mkfs writes (ctime, superblock times)
//! the same across the whole run, and across runs when SOURCE_DATE_EPOCH
//! is set.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static NOW: AtomicU32 = AtomicU32::new(0);

/// The library's clock: the value last given to [`set`].
pub fn now() -> u32 {
    NOW.load(Ordering::Relaxed)
}

pub fn set(seconds: u32) {
    NOW.store(seconds, Ordering::Relaxed);
}

/// Seconds since the epoch, saturated to the u32 range inodes store.
pub fn system_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs().min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}

/// A SOURCE_DATE_EPOCH value that is not a u32 count of seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEpoch(pub String);

impl fmt::Display for BadEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SOURCE_DATE_EPOCH={:?} is not a number of seconds between 0 and {}", self.0, u32::MAX)
    }
}

/// Parses SOURCE_DATE_EPOCH as the reproducible-builds specification
/// asks: unset or empty means "not reproducible", anything but decimal
/// digits is an error rather than silently ignored.
pub fn parse_source_date_epoch(value: Option<&str>) -> Result<Option<u32>, BadEpoch> {
    match value {
        None | Some("") => Ok(None),
        Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().map(Some).map_err(|_| BadEpoch(text.to_owned()))
        }
        Some(text) => Err(BadEpoch(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_values() {
        assert_eq!(parse_source_date_epoch(None), Ok(None));
        assert_eq!(parse_source_date_epoch(Some("")), Ok(None));
        assert_eq!(parse_source_date_epoch(Some("1700000000")), Ok(Some(1_700_000_000)));
        assert!(parse_source_date_epoch(Some("-5")).is_err());
        assert!(parse_source_date_epoch(Some("+5")).is_err());
        assert!(parse_source_date_epoch(Some("12abc")).is_err());
        assert!(parse_source_date_epoch(Some("4294967296")).is_err());
    }
}
