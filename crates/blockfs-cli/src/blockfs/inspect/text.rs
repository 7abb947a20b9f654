//! Rendering inode facts for people (and JSON for scripts): mode strings
//! as `ls -l` prints them, UTC dates, file-type names.

use std::fmt::Write;

use blockfs::FileType;

/// `ls -l`'s ten-character mode, e.g. `drwxr-xr-x`, `-rwsr-xr-x`, `drwxrwxrwt`.
pub fn mode_string(kind: FileType, perm: u16) -> String {
    let type_char = match kind {
        FileType::Regular => '-',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
    };
    let mut text = String::with_capacity(10);
    text.push(type_char);
    // (shift of the rwx triple, its special bit, the letter for it)
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let triple = (perm >> shift) & 0o7;
        text.push(if triple & 0o4 != 0 { 'r' } else { '-' });
        text.push(if triple & 0o2 != 0 { 'w' } else { '-' });
        let executable = triple & 0o1 != 0;
        text.push(match (perm & special != 0, executable) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// What `stat` calls each type.
pub fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::CharDevice => "character special file",
        FileType::BlockDevice => "block special file",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
    }
}

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// Converts seconds since 1970 with Howard Hinnant's `civil_from_days`
    /// (no time-zone database: BlockFS times are UTC).
    pub fn from_epoch(seconds: u64) -> Self {
        let days = (seconds / 86_400) as i64;
        let in_day = (seconds % 86_400) as u32;
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        DateTime { year, month, day, hour: in_day / 3600, minute: in_day / 60 % 60, second: in_day % 60 }
    }

    /// `YYYY-MM-DD HH:MM`, as `ls -l --time-style=+%Y-%m-%d\ %H:%M`.
    pub fn to_minutes(&self) -> String {
        format!("{:04}-{:02}-{:02} {:02}:{:02}", self.year, self.month, self.day, self.hour, self.minute)
    }

    /// `YYYY-MM-DD HH:MM:SS`.
    pub fn to_seconds(&self) -> String {
        format!("{}:{:02}", self.to_minutes(), self.second)
    }
}

/// A JSON string literal for `text`.
pub fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c if (c as u32) < 0x20 => write!(quoted, "\\u{:04x}", c as u32).expect("writing to a String"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(FileType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(FileType::Regular, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(FileType::Regular, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(FileType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(FileType::Directory, 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(FileType::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(FileType::Fifo, 0), "p---------");
    }

    #[test]
    fn dates() {
        assert_eq!(DateTime::from_epoch(0).to_seconds(), "1970-01-01 00:00:00");
        assert_eq!(DateTime::from_epoch(951_782_400).to_minutes(), "2000-02-29 00:00");
        assert_eq!(DateTime::from_epoch(1_700_000_000).to_seconds(), "2023-11-14 22:13:20");
        assert_eq!(DateTime::from_epoch(u32::MAX as u64).to_seconds(), "2106-02-07 06:28:15");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
