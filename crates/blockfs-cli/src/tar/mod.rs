//! Writing tar archives in GNU format (what GNU tar itself writes by
//! default): 512-byte ustar-layout headers with the GNU magic, names and
//! link targets over 100 bytes in `././@LongLink` records ('L' and 'K',
//! which carry any bytes, unlike pax's UTF-8 records), and numbers too big
//! for their octal field in GNU's base-256 form. Member names are the
//! caller's business; this module writes bytes, it does not judge paths.

pub mod archive;

use std::io::{self, Write};

const BLOCK: usize = 512;
/// GNU tar's default record: the archive is padded to a multiple of it.
const RECORD: u64 = 20 * BLOCK as u64;
const NAME_FIELD: usize = 100;
/// `magic` and `version` of a GNU archive: "ustar " then " \0".
const GNU_MAGIC: &[u8; 8] = b"ustar  \0";
const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// What a member is, with what its type needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A file whose `size` content bytes follow its header.
    Regular {
        size: u64,
    },
    /// A file of `size` bytes of which only the `(offset, length)`
    /// regions of `map` are stored (old GNU sparse, typeflag 'S'); the
    /// rest are holes. Each region but the last is a multiple of 512
    /// bytes; the regions' bytes follow the header back to back.
    Sparse {
        size: u64,
        map: &'a [(u64, u64)],
    },
    /// Another name of an earlier member (the name it was archived under).
    HardLink {
        target: &'a [u8],
    },
    Symlink {
        target: &'a [u8],
    },
    CharDevice {
        rdev: (u32, u32),
    },
    BlockDevice {
        rdev: (u32, u32),
    },
    Directory,
    Fifo,
}

/// One archive member's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    pub name: &'a [u8],
    pub kind: Kind<'a>,
    /// The 12 permission bits.
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

impl Kind<'_> {
    fn typeflag(&self) -> u8 {
        match self {
            Kind::Regular { .. } => b'0',
            Kind::Sparse { .. } => b'S',
            Kind::HardLink { .. } => b'1',
            Kind::Symlink { .. } => b'2',
            Kind::CharDevice { .. } => b'3',
            Kind::BlockDevice { .. } => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }
}

pub struct TarWriter<W> {
    out: W,
    written: u64,
    /// Content bytes the current member still expects.
    remaining: u64,
    /// The current member has content whose end is still to be padded.
    in_content: bool,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, written: 0, remaining: 0, in_content: false }
    }

    /// Writes a member's header; a regular file's content follows through
    /// [`content`](Self::content) and [`end_content`](Self::end_content).
    pub fn header(&mut self, member: &Member) -> io::Result<()> {
        debug_assert!(!self.in_content, "end_content() not called for the previous member");
        if member.name.len() > NAME_FIELD {
            self.long_link(b'L', member.name)?;
        }
        let link = match member.kind {
            Kind::HardLink { target } | Kind::Symlink { target } => target,
            _ => &[],
        };
        if link.len() > NAME_FIELD {
            self.long_link(b'K', link)?;
        }
        let size = match member.kind {
            Kind::Regular { size } => size,
            Kind::Sparse { map, .. } => map.iter().map(|&(_, length)| length).sum(),
            _ => 0,
        };
        let rdev = match member.kind {
            Kind::CharDevice { rdev } | Kind::BlockDevice { rdev } => rdev,
            _ => (0, 0),
        };
        let mut block = [0u8; BLOCK];
        put_bytes(&mut block[0..100], member.name);
        put_number(&mut block[100..108], (member.perm & 0o7777).into());
        put_number(&mut block[108..116], member.uid.into());
        put_number(&mut block[116..124], member.gid.into());
        put_number(&mut block[124..136], size);
        put_number(&mut block[136..148], member.mtime.into());
        block[156] = member.kind.typeflag();
        put_bytes(&mut block[157..257], link);
        block[257..265].copy_from_slice(GNU_MAGIC);
        put_number(&mut block[329..337], rdev.0.into());
        put_number(&mut block[337..345], rdev.1.into());
        let mut map_left: &[(u64, u64)] = &[];
        if let Kind::Sparse { size: real_size, map } = member.kind {
            map_left = put_sparse_map(&mut block[386..483], map);
            put_number(&mut block[483..495], real_size);
        }
        self.write_header(block)?;
        while !map_left.is_empty() {
            let mut extension = [0u8; BLOCK];
            map_left = put_sparse_map(&mut extension[..505], map_left);
            self.write(&extension)?;
        }
        self.remaining = size;
        self.in_content = size > 0;
        Ok(())
    }

    /// Writes content of the current regular file.
    pub fn content(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more content than the header announced",
            ));
        }
        self.write(data)?;
        self.remaining -= data.len() as u64;
        Ok(())
    }

    /// Ends the current file's content: zeros for any announced bytes not
    /// written (so the archive stays readable), then padding to a block.
    /// Returns how many bytes were missing.
    pub fn end_content(&mut self) -> io::Result<u64> {
        let missing = self.remaining;
        let zeros = [0u8; BLOCK];
        while self.remaining > 0 {
            let chunk = self.remaining.min(BLOCK as u64) as usize;
            self.write(&zeros[..chunk])?;
            self.remaining -= chunk as u64;
        }
        self.pad_to(BLOCK as u64)?;
        self.in_content = false;
        Ok(missing)
    }

    /// Writes the end-of-archive marker (two zero blocks) and pads to a
    /// whole record, as GNU tar does.
    pub fn finish(mut self) -> io::Result<W> {
        debug_assert!(!self.in_content, "end_content() not called for the last member");
        self.write(&[0u8; 2 * BLOCK])?;
        self.pad_to(RECORD)?;
        Ok(self.out)
    }

    /// A `././@LongLink` record holding a name (`L`) or link target (`K`)
    /// too long for its field, NUL-terminated.
    fn long_link(&mut self, typeflag: u8, name: &[u8]) -> io::Result<()> {
        let mut block = [0u8; BLOCK];
        put_bytes(&mut block[0..100], LONG_LINK_NAME);
        put_number(&mut block[100..108], 0);
        put_number(&mut block[108..116], 0);
        put_number(&mut block[116..124], 0);
        put_number(&mut block[124..136], name.len() as u64 + 1);
        put_number(&mut block[136..148], 0);
        block[156] = typeflag;
        block[257..265].copy_from_slice(GNU_MAGIC);
        self.write_header(block)?;
        self.write(name)?;
        self.write(&[0])?;
        self.pad_to(BLOCK as u64)
    }

    fn write_header(&mut self, mut block: [u8; BLOCK]) -> io::Result<()> {
        // The checksum is taken with its own field read as spaces.
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.write(&block)
    }

    fn pad_to(&mut self, multiple: u64) -> io::Result<()> {
        let short = (multiple - self.written % multiple) % multiple;
        let zeros = [0u8; BLOCK];
        let mut left = short;
        while left > 0 {
            let chunk = left.min(BLOCK as u64) as usize;
            self.write(&zeros[..chunk])?;
            left -= chunk as u64;
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }
}

/// Fills a sparse map area (24-byte entries, then the "more follow"
/// byte) from `map`; returns the entries that did not fit.
fn put_sparse_map<'m>(area: &mut [u8], map: &'m [(u64, u64)]) -> &'m [(u64, u64)] {
    let (entries, more) = area.split_at_mut(area.len() - 1);
    let fits = (entries.len() / 24).min(map.len());
    for (slot, &(offset, length)) in entries.chunks_exact_mut(24).zip(&map[..fits]) {
        put_number(&mut slot[..12], offset);
        put_number(&mut slot[12..], length);
    }
    more[0] = u8::from(fits < map.len());
    &map[fits..]
}

/// Copies up to the field's length; a name of exactly 100 bytes has no
/// terminating NUL, as ustar allows.
fn put_bytes(field: &mut [u8], bytes: &[u8]) {
    let length = bytes.len().min(field.len());
    field[..length].copy_from_slice(&bytes[..length]);
}

/// Octal digits and a NUL when the value fits, else GNU base-256: the
/// first byte's high bit set, the value big-endian in the rest.
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if value >> (3 * digits) == 0 {
        field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        for (slot, byte) in field.iter_mut().rev().zip(value.to_be_bytes().iter().rev()) {
            *slot = *byte;
        }
        field[0] |= 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octal(field: &[u8]) -> u64 {
        let digits = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect::<String>();
        u64::from_str_radix(&digits, 8).unwrap()
    }

    fn file(name: &[u8], size: u64) -> Member<'_> {
        Member { name, kind: Kind::Regular { size }, perm: 0o4755, uid: 1000, gid: 100, mtime: 1_700_000_000 }
    }

    #[test]
    fn header_fields_and_checksum() {
        let mut tar = TarWriter::new(Vec::new());
        tar.header(&file(b"etc/motd", 5)).unwrap();
        tar.content(b"hello").unwrap();
        assert_eq!(tar.end_content().unwrap(), 0);
        let bytes = tar.finish().unwrap();
        assert_eq!(bytes.len() as u64, RECORD);
        let header = &bytes[..BLOCK];
        assert_eq!(&header[..9], b"etc/motd\0");
        assert_eq!(octal(&header[100..108]), 0o4755);
        assert_eq!(octal(&header[108..116]), 1000);
        assert_eq!(octal(&header[124..136]), 5);
        assert_eq!(octal(&header[136..148]), 1_700_000_000);
        assert_eq!(header[156], b'0');
        assert_eq!(&header[257..265], GNU_MAGIC);
        let mut blanked = header.to_vec();
        blanked[148..156].fill(b' ');
        let sum: u64 = blanked.iter().map(|&b| b as u64).sum();
        assert_eq!(octal(&header[148..155]), sum);
        assert_eq!(&bytes[BLOCK..BLOCK + 6], b"hello\0");
        assert!(bytes[BLOCK + 5..].iter().all(|&b| b == 0));
    }

    #[test]
    fn long_names_and_targets_get_long_link_records() {
        let name = vec![b'n'; 150];
        let target = vec![b't'; 300];
        let mut tar = TarWriter::new(Vec::new());
        let link = Member { name: &name, kind: Kind::Symlink { target: &target }, ..file(b"", 0) };
        tar.header(&link).unwrap();
        let bytes = tar.finish().unwrap();
        assert_eq!(&bytes[..13], LONG_LINK_NAME);
        assert_eq!(bytes[156], b'L');
        assert_eq!(octal(&bytes[124..136]), 151);
        assert_eq!(&bytes[BLOCK..BLOCK + 151], [&name[..], b"\0"].concat());
        let k = 2 * BLOCK;
        assert_eq!(bytes[k + 156], b'K');
        assert_eq!(octal(&bytes[k + 124..k + 136]), 301);
        let header = k + 2 * BLOCK;
        assert_eq!(bytes[header + 156], b'2');
        assert_eq!(&bytes[header..header + 100], &name[..100]);
        assert_eq!(&bytes[header + 157..header + 257], &target[..100]);
    }

    #[test]
    fn numbers_too_big_for_octal_use_base_256() {
        let mut field = [0u8; 8];
        put_number(&mut field, 0o7777777);
        assert_eq!(&field, b"7777777\0");
        put_number(&mut field, 0o10000000);
        assert_eq!(field, [0x80, 0, 0, 0, 0, 0x20, 0, 0]);
        let mut size = [0u8; 12];
        put_number(&mut size, 1 << 33);
        assert_eq!(size, [0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    }

    #[test]
    fn short_content_is_padded_and_counted() {
        let mut tar = TarWriter::new(Vec::new());
        tar.header(&file(b"f", 1000)).unwrap();
        tar.content(&[1; 10]).unwrap();
        assert!(tar.content(&[1; 991]).is_err());
        assert_eq!(tar.end_content().unwrap(), 990);
        assert_eq!(tar.finish().unwrap().len() as u64, RECORD);
    }
}
