//! The streaming parser: a state machine fed whole 512-byte records, so a
//! host tool can stream a multi-gigabyte archive through a small buffer
//! and a kernel can hand it a RAM image at once. Memory held is bounded by
//! [`MAX_METADATA_SIZE`] whatever sizes the headers declare; every call
//! consumes at least one record or fails, except one that reports a hole
//! of a sparse member, which moves that member's position forward; so no
//! input loops.

use alloc::vec::Vec;

use super::error::{Field, TarError};
use super::extended::{gnu_long_name, Overrides};
use super::header::{is_zero_record, sparse_entries, Header, Record, RECORD_SIZE};
use super::{Device, Entry, EntryKind, Event};

/// Largest pax header or GNU long name accepted. Real ones are a few
/// hundred bytes; the body is held in memory until its entry arrives.
pub const MAX_METADATA_SIZE: u64 = 64 * 1024;

/// What one [`TarParser::feed`] call did.
#[derive(Debug, PartialEq, Eq)]
pub struct Step<'a> {
    /// Bytes of the input used: always whole records, at least one.
    pub consumed: usize,
    /// `None` when the records only carried metadata, padding or the data
    /// of a skipped entry.
    pub event: Option<Event<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetaKind {
    PaxNext,
    PaxGlobal,
    LongName,
    LongLink,
}

/// What the next record is. `header` fields hold the offset of the header
/// that started the body, for errors.
#[derive(Debug)]
enum State {
    Header,
    /// A regular file's data, handed to the caller.
    Data {
        remaining: u64,
        header: u64,
    },
    /// Data nobody reads: a skipped entry's, or a non-file's.
    Skip {
        remaining: u64,
        header: u64,
    },
    /// Old GNU sparse headers chained after an `S` entry's header.
    SparseExtension {
        sparse: Sparse,
        header: u64,
    },
    /// A sparse member's data regions and the holes between them.
    SparseData {
        sparse: Sparse,
        header: u64,
    },
    Meta {
        kind: MetaKind,
        remaining: u64,
        body: Vec<u8>,
        header: u64,
    },
    Ended,
}

/// Old GNU sparse header: "more sparse records follow" flag, in the main
/// header and in each extension record.
const SPARSE_EXTENDED_IN_HEADER: usize = 482;
const SPARSE_EXTENDED_IN_EXTENSION: usize = 504;

/// Most map entries a sparse member may have (the map is held in memory).
pub const MAX_SPARSE_REGIONS: usize = MAX_METADATA_SIZE as usize / 24;

/// An old GNU sparse member being read: its map, and where in it the
/// data stands. Regions are stored back to back; the holes between them
/// are not stored at all.
#[derive(Debug)]
struct Sparse {
    /// `(offset, length)` of each data region, in file order.
    map: Vec<(u64, u64)>,
    /// The next region to start.
    next: usize,
    /// Position in the file of the next byte reported.
    position: u64,
    /// Bytes of the current region still to come.
    in_region: u64,
    real_size: u64,
    /// Bytes stored in the archive (the header's size).
    stored: u64,
}

impl Sparse {
    /// Checks the map against the sizes once it is complete: regions in
    /// order, inside the real size, adding up to the stored size, each but
    /// the last a whole number of records (so data stays record-aligned).
    fn validate(mut self, header: u64) -> Result<Self, TarError> {
        self.map.retain(|&(_, length)| length > 0);
        let bad = || TarError::BadSparseMap { offset: header };
        let mut end = 0u64;
        let mut total = 0u64;
        for (index, &(offset, length)) in self.map.iter().enumerate() {
            let region_end = offset.checked_add(length).ok_or_else(bad)?;
            let aligned = length % RECORD_SIZE as u64 == 0 || index + 1 == self.map.len();
            if offset < end || region_end > self.real_size || !aligned {
                return Err(bad());
            }
            end = region_end;
            total += length;
        }
        if total != self.stored {
            return Err(bad());
        }
        Ok(self)
    }

    /// Bytes of data still to read from the archive.
    fn stored_left(&self) -> u64 {
        self.in_region + self.map[self.next..].iter().map(|&(_, length)| length).sum::<u64>()
    }

    /// The next event: data of the current region, the hole before the
    /// next region, or the hole to the real size after the last.
    fn step<'a>(mut self, input: &'a [u8], header: u64) -> (State, Step<'a>) {
        if self.in_region == 0 {
            let hole_end = match self.map.get(self.next) {
                Some(&(offset, length)) if offset == self.position => {
                    self.in_region = length;
                    self.next += 1;
                    None
                }
                Some(&(offset, _)) => Some(offset),
                None => Some(self.real_size),
            };
            if let Some(end) = hole_end {
                let hole = end - self.position;
                self.position = end;
                let state = self.after_step(header);
                return (state, Step { consumed: 0, event: Some(Event::Hole(hole)) });
            }
        }
        let (consumed, data) = take(&mut self.in_region, input);
        self.position += data.len() as u64;
        (self.after_step(header), Step { consumed, event: Some(Event::Data(data)) })
    }

    /// Where the parser goes next: this member's next event, or the next
    /// header once it has all been reported.
    fn after_step(self, header: u64) -> State {
        if self.in_region == 0 && self.next == self.map.len() && self.position == self.real_size {
            State::Header
        } else {
            State::SparseData { sparse: self, header }
        }
    }
}

/// Parses one archive. Errors are final: drop the parser after one.
#[derive(Debug)]
pub struct TarParser {
    state: State,
    /// Bytes consumed so far: the offset of the next record.
    offset: u64,
    /// Values from `g` headers, for every entry that follows.
    global: Overrides,
    /// Values for the next entry: the globals, then its `x`, `L`, `K`.
    pending: Overrides,
    /// Offset of the first `x`/`L`/`K` header still awaiting its entry.
    pending_since: Option<u64>,
}

impl Default for TarParser {
    fn default() -> Self {
        Self::new()
    }
}

impl TarParser {
    pub fn new() -> Self {
        TarParser {
            state: State::Header,
            offset: 0,
            global: Overrides::default(),
            pending: Overrides::default(),
            pending_since: None,
        }
    }

    /// Offset of the next record in the archive.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Parses the records at the start of `input` (at least one whole
    /// record; a trailing partial one is left alone). A header takes one
    /// record; data takes as many as `input` holds, so a file held in
    /// memory comes as one [`Event::Data`].
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<Step<'a>, TarError> {
        let Some(record) = input.first_chunk::<RECORD_SIZE>() else {
            return Err(TarError::PartialRecord { offset: self.offset, len: input.len() });
        };
        let (state, step) = match core::mem::replace(&mut self.state, State::Header) {
            State::Header => {
                let (state, event) = self.header(record)?;
                (state, Step { consumed: RECORD_SIZE, event })
            }
            State::Data { mut remaining, header } => {
                let (consumed, data) = take(&mut remaining, input);
                let state = if remaining == 0 { State::Header } else { State::Data { remaining, header } };
                (state, Step { consumed, event: Some(Event::Data(data)) })
            }
            State::Skip { mut remaining, header } => {
                let (consumed, _) = take(&mut remaining, input);
                (skip(remaining, header), Step { consumed, event: None })
            }
            State::SparseExtension { mut sparse, header } => {
                sparse_entries(&record[..SPARSE_EXTENDED_IN_EXTENSION], header, &mut sparse.map)?;
                if sparse.map.len() > MAX_SPARSE_REGIONS {
                    return Err(TarError::MetadataTooLarge {
                        offset: header,
                        size: sparse.map.len() as u64 * 24,
                    });
                }
                let state = if record[SPARSE_EXTENDED_IN_EXTENSION] != 0 {
                    State::SparseExtension { sparse, header }
                } else {
                    sparse.validate(header)?.after_step(header)
                };
                (state, Step { consumed: RECORD_SIZE, event: None })
            }
            State::SparseData { sparse, header } => sparse.step(input, header),
            State::Meta { kind, mut remaining, mut body, header } => {
                let (consumed, bytes) = take(&mut remaining, input);
                body.extend_from_slice(bytes);
                let state = if remaining == 0 {
                    self.apply_meta(kind, &body, header)?;
                    State::Header
                } else {
                    State::Meta { kind, remaining, body, header }
                };
                (state, Step { consumed, event: None })
            }
            State::Ended => {
                let consumed = input.len() / RECORD_SIZE * RECORD_SIZE;
                (State::Ended, Step { consumed, event: None })
            }
        };
        self.state = state;
        self.offset += step.consumed as u64;
        Ok(step)
    }

    /// Checks that the archive may end here: between entries (an end
    /// marker is not required) or after the end marker.
    pub fn finish(&self) -> Result<(), TarError> {
        match self.state {
            State::Header | State::Ended => match self.pending_since {
                Some(offset) => Err(TarError::DanglingMetadata { offset }),
                None => Ok(()),
            },
            State::Data { remaining, header }
            | State::Skip { remaining, header }
            | State::Meta { remaining, header, .. } => {
                Err(TarError::Truncated { offset: header, missing: remaining })
            }
            State::SparseExtension { ref sparse, header } => {
                Err(TarError::Truncated { offset: header, missing: sparse.stored })
            }
            State::SparseData { ref sparse, header } => {
                Err(TarError::Truncated { offset: header, missing: sparse.stored_left().max(1) })
            }
        }
    }

    fn header<'a>(&mut self, record: &Record) -> Result<(State, Option<Event<'a>>), TarError> {
        if is_zero_record(record) {
            // GNU tar and libarchive both stop at the first zero record;
            // the second one of the end marker is not needed.
            return match self.pending_since {
                Some(offset) => Err(TarError::DanglingMetadata { offset }),
                None => Ok((State::Ended, Some(Event::End))),
            };
        }
        let header = Header::parse(record, self.offset)?;
        let meta = match header.typeflag() {
            b'x' => MetaKind::PaxNext,
            b'g' => MetaKind::PaxGlobal,
            b'L' => MetaKind::LongName,
            b'K' => MetaKind::LongLink,
            _ => return self.entry(&header, record),
        };
        Ok((self.begin_meta(meta, &header)?, None))
    }

    fn begin_meta(&mut self, kind: MetaKind, header: &Header) -> Result<State, TarError> {
        let size = header.unsigned(Field::Size)?;
        if size > MAX_METADATA_SIZE {
            return Err(TarError::MetadataTooLarge { offset: header.offset, size });
        }
        if kind != MetaKind::PaxGlobal {
            self.pending_since.get_or_insert(header.offset);
        }
        if size == 0 {
            self.apply_meta(kind, &[], header.offset)?;
            return Ok(State::Header);
        }
        let body = Vec::with_capacity(size as usize);
        Ok(State::Meta { kind, remaining: size, body, header: header.offset })
    }

    fn apply_meta(&mut self, kind: MetaKind, body: &[u8], offset: u64) -> Result<(), TarError> {
        match kind {
            MetaKind::PaxNext => self.pending.apply_pax(body, offset)?,
            MetaKind::PaxGlobal => {
                self.global.apply_pax(body, offset)?;
                self.pending.apply_pax(body, offset)?;
            }
            MetaKind::LongName => self.pending.path = gnu_long_name(body, offset)?,
            MetaKind::LongLink => self.pending.link = gnu_long_name(body, offset)?,
        }
        Ok(())
    }

    fn entry<'a>(
        &mut self,
        header: &Header,
        record: &Record,
    ) -> Result<(State, Option<Event<'a>>), TarError> {
        let offset = header.offset;
        let pending = core::mem::replace(&mut self.pending, self.global.clone());
        self.pending_since = None;
        let typeflag = header.typeflag();
        let path = pending.path.unwrap_or_else(|| header.path());
        if path.is_empty() {
            return Err(TarError::EmptyPath { offset });
        }
        let size = match pending.size {
            Some(size) => size,
            // ustar and GNU hard links carry no data even when the size
            // field is set; GNU tar reads it as 0 too.
            None if typeflag == b'1' => 0,
            None => header.unsigned(Field::Size)?,
        };
        let sparse = match typeflag {
            b'S' => {
                let mut sparse = Sparse {
                    map: Vec::new(),
                    next: 0,
                    position: 0,
                    in_region: 0,
                    real_size: 0,
                    stored: size,
                };
                sparse.real_size = header.sparse_real_size()?;
                header.sparse_map(&mut sparse.map)?;
                Some(sparse)
            }
            _ => None,
        };
        let kind = match sparse {
            Some(_) => Some(EntryKind::Regular),
            None => entry_kind(header, &path, pending.link)?,
        };
        let Some(kind) = kind else {
            return Ok((skip(size, offset), Some(Event::Skipped { offset, typeflag, path })));
        };
        let entry = Entry {
            mode: (header.unsigned(Field::Mode)? & 0o7777) as u16,
            uid: pending.uid.map_or_else(|| header.unsigned(Field::Uid), Ok)?,
            gid: pending.gid.map_or_else(|| header.unsigned(Field::Gid), Ok)?,
            mtime: pending.mtime.map_or_else(|| header.number(Field::Mtime), Ok)?,
            size: match (&sparse, &kind) {
                (Some(sparse), _) => sparse.real_size,
                (None, EntryKind::Regular) => size,
                (None, _) => 0,
            },
            offset,
            path,
            kind,
        };
        let state = match sparse {
            Some(sparse) if record[SPARSE_EXTENDED_IN_HEADER] != 0 => {
                State::SparseExtension { sparse, header: offset }
            }
            Some(sparse) => sparse.validate(offset)?.after_step(offset),
            None if entry.size == 0 => skip(size, offset),
            None => State::Data { remaining: entry.size, header: offset },
        };
        Ok((state, Some(Event::Entry(entry))))
    }
}

/// The entry type a typeflag names; `None` for types that are skipped.
fn entry_kind(header: &Header, path: &[u8], link: Option<Vec<u8>>) -> Result<Option<EntryKind>, TarError> {
    let link_target = || {
        let target = link.unwrap_or_else(|| header.link_name());
        if target.is_empty() {
            Err(TarError::EmptyLinkTarget { offset: header.offset })
        } else {
            Ok(target)
        }
    };
    Ok(Some(match header.typeflag() {
        // A trailing slash marks a directory in pre-POSIX archives; GNU
        // tar honours it for every regular type.
        b'0' | b'\0' | b'7' if path.ends_with(b"/") => EntryKind::Directory,
        // '7' is a contiguous file: a regular file everywhere but one OS.
        b'0' | b'\0' | b'7' => EntryKind::Regular,
        b'1' => EntryKind::HardLink(link_target()?),
        b'2' => EntryKind::Symlink(link_target()?),
        b'3' => EntryKind::CharDevice(device(header)?),
        b'4' => EntryKind::BlockDevice(device(header)?),
        // 'D' is a GNU incremental dump's directory; its data (the list of
        // names it held) is skipped.
        b'5' | b'D' => EntryKind::Directory,
        b'6' => EntryKind::Fifo,
        _ => return Ok(None),
    }))
}

fn device(header: &Header) -> Result<Device, TarError> {
    let number = |field| {
        let value = header.unsigned(field)?;
        u32::try_from(value).map_err(|_| TarError::BadNumber { offset: header.offset, field })
    };
    Ok(Device { major: number(Field::DevMajor)?, minor: number(Field::DevMinor)? })
}

fn skip(remaining: u64, header: u64) -> State {
    if remaining == 0 {
        State::Header
    } else {
        State::Skip { remaining, header }
    }
}

/// Takes the records holding the next `remaining` body bytes, as many as
/// `input` has whole: returns the bytes consumed (whole records, padding
/// included) and the body bytes among them.
fn take<'a>(remaining: &mut u64, input: &'a [u8]) -> (usize, &'a [u8]) {
    let available = (input.len() / RECORD_SIZE) as u64;
    let records = available.min(remaining.div_ceil(RECORD_SIZE as u64)) as usize;
    let bytes = (*remaining).min((records * RECORD_SIZE) as u64) as usize;
    *remaining -= bytes as u64;
    (records * RECORD_SIZE, &input[..bytes])
}
