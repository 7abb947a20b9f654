//! Reading tar archives from host files and pipes, for `blockfs import`
//! and `mkfs-blockfs --populate ARCHIVE`. The archive streams through the
//! library's parser ([`TarParser`]) and a fixed buffer, so it may be any
//! size, or a pipe; gzip and zstd compression are recognised by their
//! magic and undone on the fly. A malformed archive's error names the
//! member it concerns where one is known.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use blockfs::rootfs::tar::{Event, TarError, TarParser, RECORD_SIZE};

use crate::interrupt;

/// Archive bytes read at a time (whole records).
const BUFFER: usize = 2048 * RECORD_SIZE;
/// Bytes of the ustar name field, which a damaged header may still hold.
const NAME_FIELD: usize = 100;
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Why an archive could not be read to its end.
#[derive(Debug)]
pub struct ArchiveError {
    /// The archive, as named to the user.
    pub path: PathBuf,
    pub kind: ArchiveErrorKind,
    /// The member it concerns, when one is known.
    pub member: Option<Member>,
}

#[derive(Debug)]
pub enum ArchiveErrorKind {
    /// Reading (or decompressing) failed.
    Io(io::Error),
    /// The archive is malformed.
    Tar(TarError),
}

/// The member a malformed archive's error concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// The error is in this member (its data is cut short).
    In(Vec<u8>),
    /// The damaged header's name field reads this.
    Damaged(Vec<u8>),
    /// The error comes after this member, the last one read whole.
    After(Vec<u8>),
}

impl ArchiveError {
    /// The message without the archive's name.
    pub fn message(&self) -> String {
        let what = match &self.kind {
            ArchiveErrorKind::Io(error) => error.to_string(),
            ArchiveErrorKind::Tar(error) => error.to_string(),
        };
        match &self.member {
            Some(Member::In(path)) => format!("{what} (member \"{}\")", path.escape_ascii()),
            Some(Member::Damaged(path)) => {
                format!("{what} (its name field reads \"{}\")", path.escape_ascii())
            }
            Some(Member::After(path)) => format!("{what} (after member \"{}\")", path.escape_ascii()),
            None => what,
        }
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message())
    }
}

impl std::error::Error for ArchiveError {}

/// Opens an archive file, undoing its compression.
pub fn open(path: &Path) -> io::Result<(Compression, Box<dyn Read>)> {
    decompress(File::open(path)?)
}

/// Recognises gzip and zstd by their first bytes and wraps `reader` in
/// the matching decoder; anything else is read as it is.
pub fn decompress(mut reader: impl Read + 'static) -> io::Result<(Compression, Box<dyn Read>)> {
    let mut head = [0u8; ZSTD_MAGIC.len()];
    let mut len = 0;
    while len < head.len() {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(read) => len += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let head = &head[..len];
    let compression = if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    };
    // The bytes looked at go back in front of the rest.
    let whole = io::Cursor::new(head.to_vec()).chain(reader);
    Ok(match compression {
        // Multi-member: `cat a.gz b.gz` is one stream to gzip -d too.
        Compression::Gzip => (compression, Box::new(flate2::read::MultiGzDecoder::new(whole))),
        Compression::Zstd => (compression, Box::new(zstd::stream::read::Decoder::new(whole)?)),
        Compression::None => (compression, Box::new(whole)),
    })
}

/// Feeds the archive to the parser, handing each event to `apply`, until
/// the end marker or the end of input (allowed between members).
/// `apply`'s errors end the reading and are returned as they are.
pub fn for_each_event<E: From<ArchiveError>>(
    mut archive: impl Read,
    name: &Path,
    mut apply: impl FnMut(Event) -> Result<(), E>,
) -> Result<(), E> {
    let mut parser = TarParser::new();
    let mut buffer = vec![0u8; BUFFER];
    let (mut start, mut end) = (0, 0);
    let mut at_end = false;
    let mut context = Context::default();
    // A read error is reported once the records read before it are
    // parsed, so that it can name the member it cut short.
    let mut read_error = None;
    let fail = |kind, member| ArchiveError { path: name.to_owned(), kind, member };
    loop {
        if let Err(error) = interrupt::check() {
            return Err(fail(ArchiveErrorKind::Io(error), context.reading()).into());
        }
        if end - start < RECORD_SIZE && !at_end {
            buffer.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            while end < buffer.len() {
                match archive.read(&mut buffer[end..]) {
                    Ok(0) => break,
                    Ok(read) => end += read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        read_error = Some(error);
                        break;
                    }
                }
            }
            at_end = end < buffer.len() || read_error.is_some();
        }
        if end - start < RECORD_SIZE {
            if let Some(error) = read_error.take() {
                return Err(fail(ArchiveErrorKind::Io(error), context.reading()).into());
            }
        }
        let offset = parser.offset();
        let tar_error = |error, record: &[u8]| {
            let member = context.member(&error, offset, record);
            fail(ArchiveErrorKind::Tar(error), member)
        };
        if end == start {
            return parser.finish().map_err(|error| tar_error(error, &[]).into());
        }
        // Less than a record left at the end is an error the parser names.
        let input = &buffer[start..end];
        let step = parser.feed(input).map_err(|error| tar_error(error, input))?;
        start += step.consumed;
        match step.event {
            Some(Event::End) => return Ok(()),
            Some(event) => {
                context.note(&event);
                apply(event)?;
            }
            None => {}
        }
    }
}

/// The member being read, for naming it in errors.
#[derive(Default)]
struct Context {
    /// Header offset and stored path of the last member.
    last: Option<(u64, Vec<u8>)>,
    /// Its data bytes not yet read.
    data_left: u64,
}

impl Context {
    fn note(&mut self, event: &Event) {
        match event {
            Event::Entry(entry) => {
                self.last = Some((entry.offset, entry.path.clone()));
                self.data_left = entry.size;
            }
            Event::Skipped { offset, path, .. } => {
                self.last = Some((*offset, path.clone()));
                self.data_left = 0;
            }
            Event::Data(bytes) => self.data_left = self.data_left.saturating_sub(bytes.len() as u64),
            Event::Hole(length) => self.data_left = self.data_left.saturating_sub(*length),
            Event::End => {}
        }
    }

    /// The member whose data was being read, or else the last one read.
    fn reading(&self) -> Option<Member> {
        let (_, path) = self.last.as_ref()?;
        Some(if self.data_left > 0 { Member::In(path.clone()) } else { Member::After(path.clone()) })
    }

    /// Which member `error` concerns; `record` is the input at `offset`
    /// that the parser refused (empty at the end of input).
    fn member(&self, error: &TarError, offset: u64, record: &[u8]) -> Option<Member> {
        let (last_offset, last) = match &self.last {
            Some((at, path)) => (Some(*at), Some(path)),
            None => (None, None),
        };
        let cut_short = match error {
            TarError::Truncated { offset, .. } => Some(*offset) == last_offset,
            TarError::PartialRecord { .. } => self.data_left > 0,
            _ => false,
        };
        if cut_short {
            return last.cloned().map(Member::In);
        }
        let name = record.get(..NAME_FIELD).map(|field| field.split(|&b| b == 0).next().unwrap_or_default());
        match name {
            Some(name) if error_offset(error) == Some(offset) && !name.is_empty() => {
                Some(Member::Damaged(name.to_vec()))
            }
            _ => last.cloned().map(Member::After),
        }
    }
}

/// The record a parser error is about.
fn error_offset(error: &TarError) -> Option<u64> {
    match *error {
        TarError::PartialRecord { offset, .. }
        | TarError::BadChecksum { offset }
        | TarError::BadNumber { offset, .. }
        | TarError::BadPaxRecord { offset }
        | TarError::MetadataTooLarge { offset, .. }
        | TarError::NulInPath { offset }
        | TarError::EmptyPath { offset }
        | TarError::EmptyLinkTarget { offset }
        | TarError::Truncated { offset, .. }
        | TarError::DanglingMetadata { offset } => Some(offset),
        _ => None,
    }
}
