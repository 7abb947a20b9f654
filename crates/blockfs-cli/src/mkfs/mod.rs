//! `mkfs-blockfs`: creates an image, optionally populated from a host
//! directory or a tar archive, with the flags and summary of the
//! VeridianOS tool.
//!
//! Order of work: everything that can be checked without the image is
//! checked first (flags, output, attrs file, the whole host tree, or a
//! first pass over the whole archive), then the image is formatted in a
//! temporary file. Whether the contents fit is checked against that fresh
//! image before anything is copied, because format() decides what it
//! spends (root directory, journal). The file is renamed into place only
//! when complete, and removed on any failure. A block device is
//! formatted in place instead ([`crate::image::blockdev`]): opened exclusively,
//! refused while mounted or (without `--force`) while it holds a
//! filesystem, and left without a BlockFS magic if the run fails.
//!
//! An archive (plain, gzip or zstd) is read twice and never unpacked: the
//! first pass sizes it ([`Plan`]), the second creates its members through
//! the library's extraction engine ([`Extractor`]), the one that builds
//! the boot-time RAM root, so images are built without root and with
//! the owners, modes, device nodes and times the archive records.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use blockfs::format::extension::{Extension, LABEL_SIZE};
use blockfs::format::geometry::{Geometry, GeometryError};
use blockfs::format::BLOCK_SIZE;
use blockfs::fs::{format, FormatOptions, MountOptions, StatFs};
use blockfs::rootfs::tar::Event;
use blockfs::rootfs::{ExtractOptions, Extractor, LargeIds, LoadError, OnMemberError, Plan};
use blockfs::{FileDevice, FileSystem, ROOT_INO};
use clap::Parser;

use crate::clock::{self, BadEpoch};
use crate::host::attrs::{self, AttrsError, AttrsFile};
use crate::host::output::{self, TargetError, TempImage};
use crate::host::populate::{populate, CopyFailure, PopulateError};
use crate::host::tree::{self as hosttree, HostTree, Needs, ScanError, ScanOptions};
use crate::image::blockdev::{self, DeviceError};
use crate::interrupt;
use crate::progress::Progress;
use crate::tar::archive::{self, ArchiveError};
use crate::uuid;

const BLOCKS_PER_MB: u32 = (1 << 20) / BLOCK_SIZE as u32;
/// Largest size whose block count fits the superblock's u32.
const MAX_SIZE_MB: u32 = u32::MAX / BLOCKS_PER_MB;
/// Cache while populating (32 MiB): big trees write each metadata block
/// once instead of evicting and rewriting it.
const POPULATE_CACHE_BLOCKS: usize = 8192;

/// Create a BlockFS filesystem image.
#[derive(Parser, Debug)]
#[command(name = "mkfs-blockfs", version)]
pub struct Args {
    /// Image file to create (replaced atomically when done), or block
    /// device to format in place
    #[arg(short, long, value_name = "PATH", required_unless_present = "device", conflicts_with = "device")]
    pub output: Option<PathBuf>,

    /// Image size in megabytes (256 blocks of 4 KiB each) [default: 256, or a whole block device]
    #[arg(short, long, value_name = "MB",
          value_parser = clap::value_parser!(u32).range(1..=MAX_SIZE_MB as i64))]
    pub size: Option<u32>,

    /// The image to create, as mkfs(8) passes it (`mkfs -t blockfs IMAGE
    /// [SIZE]`, also `mkfs.blockfs IMAGE [SIZE]`); same as -o
    #[arg(value_name = "DEVICE")]
    pub device: Option<PathBuf>,

    /// With DEVICE: the size, in megabytes, or with a suffix K, M or G
    /// (a whole number of megabytes); same as -s
    #[arg(value_name = "SIZE", requires = "device", conflicts_with = "size", value_parser = parse_size)]
    pub device_size: Option<u32>,

    /// Copy this directory's contents, or this tar archive's members
    /// (plain, gzip or zstd), into the image
    #[arg(short, long, value_name = "DIR|TAR")]
    pub populate: Option<PathBuf>,

    /// Inode count [default: size/16 KiB clamped to 672..65536, and at least 1.25 x entries + 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub inodes: Option<u32>,

    /// Ownership and permissions for image paths, one `PATH UID GID [MODE]` a line
    #[arg(long, value_name = "FILE", requires = "populate")]
    pub attrs: Option<PathBuf>,

    /// Volume label (up to 32 bytes)
    #[arg(long, value_name = "TEXT", value_parser = parse_label)]
    pub label: Option<String>,

    /// Overwrite an existing output file even if it is not a BlockFS
    /// image, or a block device that holds a filesystem
    #[arg(long)]
    pub force: bool,

    /// Store uids and gids above 65535 as 0 instead of failing
    #[arg(long)]
    pub squash_ids: bool,

    /// Make an image without a journal (no crash safety). It still has
    /// the extension record (UUID, label); `blockfs tune --journal` adds
    /// a journal later
    #[arg(long)]
    pub no_journal: bool,

    /// No progress line (it is shown only on a terminal anyway)
    #[arg(short, long)]
    pub quiet: bool,
}

/// mkfs(8)'s SIZE: megabytes, or bytes with a K, M or G suffix.
fn parse_size(text: &str) -> Result<u32, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, suffix)) if suffix.is_ascii_alphabetic() => (&text[..at], suffix.to_ascii_uppercase()),
        _ => (text, 'M'),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (like 64, 64M or 1G)"))?;
    let kib = match unit {
        'K' => Some(number),
        'M' => number.checked_mul(1 << 10),
        'G' => number.checked_mul(1 << 20),
        _ => return Err(format!("{text:?}: the suffix must be K, M or G")),
    };
    let mb = kib.filter(|kib| kib % 1024 == 0).map(|kib| kib / 1024);
    match mb {
        Some(mb) if (1..=MAX_SIZE_MB as u64).contains(&mb) => Ok(mb as u32),
        _ => Err(format!("{text:?}: a whole number of megabytes from 1 to {MAX_SIZE_MB} is needed")),
    }
}

impl Args {
    /// The image to create, however it was named.
    pub fn output(&self) -> &Path {
        self.output.as_deref().or(self.device.as_deref()).expect("clap requires -o or DEVICE")
    }

    /// The size asked for (-s or SIZE), in megabytes.
    pub fn size_mb(&self) -> Option<u32> {
        self.device_size.or(self.size)
    }
}

fn parse_label(text: &str) -> Result<String, String> {
    if text.len() > LABEL_SIZE {
        return Err(format!("label is {} bytes, at most {LABEL_SIZE} allowed", text.len()));
    }
    Ok(text.into())
}

#[derive(Debug)]
pub enum MkfsError {
    Epoch(BadEpoch),
    Target(TargetError),
    Attrs(AttrsError),
    Scan(ScanError),
    Layout {
        size_mb: u32,
        inodes: u32,
        error: GeometryError,
    },
    DoesNotFit(Shortfall),
    /// The output is a block device that may not be formatted.
    Device(DeviceError),
    /// --size asks for more than the block device holds.
    DeviceTooSmall {
        path: PathBuf,
        size_mb: u32,
        device_mb: u32,
    },
    /// Creating, syncing or renaming the image file.
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// The library refused to format, mount or unmount the image.
    Image {
        path: PathBuf,
        error: blockfs::Error,
    },
    Populate(PopulateError),
    /// The archive could not be read, or is malformed.
    Archive(ArchiveError),
    /// A member of the archive could not be created.
    Member {
        archive: PathBuf,
        error: LoadError,
    },
}

impl MkfsError {
    /// 3 when the output is an image in use (as `blockfs`), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            MkfsError::Target(TargetError::InUse(_)) => 3,
            _ => 1,
        }
    }
}

/// What a tree needs against what the image offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub dir: PathBuf,
    pub blocks_needed: u64,
    pub blocks_free: u32,
    pub inodes_needed: u64,
    pub inodes_free: u32,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not fit: it needs {} blocks ({} available) and {} inodes ({} available)",
            self.dir.display(),
            self.blocks_needed,
            self.blocks_free,
            self.inodes_needed,
            self.inodes_free
        )?;
        if self.blocks_needed > self.blocks_free as u64 {
            write!(f, "; use a larger --size")?;
        }
        if self.inodes_needed > self.inodes_free as u64 {
            write!(f, "; use a larger --inodes")?;
        }
        Ok(())
    }
}

impl fmt::Display for MkfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MkfsError::Epoch(error) => write!(f, "{error}"),
            MkfsError::Target(error) => write!(f, "{error}"),
            MkfsError::Attrs(error) => write!(f, "{error}"),
            MkfsError::Scan(error) => write!(f, "{error}"),
            MkfsError::Layout { size_mb, inodes, error } => write!(
                f,
                "cannot lay out a {size_mb} MB image with {inodes} inodes: {}",
                blockfs::Error::BadGeometry(*error)
            ),
            MkfsError::DoesNotFit(shortfall) => write!(f, "{shortfall}"),
            MkfsError::Device(error) => write!(f, "{error}"),
            MkfsError::DeviceTooSmall { path, size_mb, device_mb } => {
                write!(f, "{}: --size {size_mb} is larger than the device ({device_mb} MB)", path.display())
            }
            MkfsError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            MkfsError::Image { path, error } => write!(f, "{}: {error}", path.display()),
            MkfsError::Populate(error) => write!(f, "{error}"),
            MkfsError::Archive(error) => write!(f, "{error}"),
            MkfsError::Member { archive, error } => {
                write!(f, "{}: {error}", archive.display())?;
                match error {
                    LoadError::IdTooLarge { .. } => write!(f, " (use --squash-ids to store it as 0)"),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for MkfsError {}

impl From<BadEpoch> for MkfsError {
    fn from(error: BadEpoch) -> Self {
        MkfsError::Epoch(error)
    }
}

impl From<DeviceError> for MkfsError {
    fn from(error: DeviceError) -> Self {
        MkfsError::Device(error)
    }
}

impl From<TargetError> for MkfsError {
    fn from(error: TargetError) -> Self {
        MkfsError::Target(error)
    }
}

impl From<AttrsError> for MkfsError {
    fn from(error: AttrsError) -> Self {
        MkfsError::Attrs(error)
    }
}

impl From<ScanError> for MkfsError {
    fn from(error: ScanError) -> Self {
        MkfsError::Scan(error)
    }
}

impl From<PopulateError> for MkfsError {
    fn from(error: PopulateError) -> Self {
        MkfsError::Populate(error)
    }
}

impl From<ArchiveError> for MkfsError {
    fn from(error: ArchiveError) -> Self {
        MkfsError::Archive(error)
    }
}

/// What to copy, ready to go.
struct Source {
    /// The directory or archive named by --populate.
    path: PathBuf,
    contents: Contents,
    attrs: Option<AttrsFile>,
    needs: Needs,
}

enum Contents {
    /// A scanned host directory (--attrs applied to it already).
    Tree(HostTree),
    /// A tar archive, sized by a first pass and extracted with these
    /// options (--attrs applied after).
    Archive(ExtractOptions),
}

/// What the summary reports about a populated image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Populated {
    pub dir: PathBuf,
    /// Rules applied and the file they came from.
    pub attrs: Option<(usize, PathBuf)>,
    pub inodes_used: u32,
    pub free_blocks: u32,
}

/// The summary printed after success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub output: PathBuf,
    pub size_mb: u32,
    pub geometry: Geometry,
    pub journal: Journal,
    pub populated: Option<Populated>,
}

/// The journal the image got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    Blocks(u32),
    /// Asked for, but the image cannot spare one.
    TooSmall,
    /// `--no-journal`.
    NotAsked,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let geometry = &self.geometry;
        writeln!(f, "mkfs-blockfs: Creating BlockFS image")?;
        writeln!(f, "  Output: {}", self.output.display())?;
        writeln!(f, "  Size: {} MB ({} blocks)", self.size_mb, geometry.block_count)?;
        writeln!(f, "  Inodes: {}", geometry.inode_count)?;
        writeln!(f, "  Bitmap blocks: {}", geometry.bitmap_blocks)?;
        writeln!(f, "  Inode table: {} blocks", geometry.inode_table_blocks)?;
        writeln!(f, "  First data block: {}", geometry.first_data_block())?;
        writeln!(f, "  Data blocks: {}", geometry.data_blocks())?;
        match self.journal {
            Journal::Blocks(blocks) => writeln!(f, "  Journal: {blocks} blocks")?,
            Journal::TooSmall => writeln!(
                f,
                "  Journal: none: the image is too small to spare one (a journal needs an image of at least 2 MB); no crash safety"
            )?,
            Journal::NotAsked => writeln!(f, "  Journal: none (--no-journal); no crash safety")?,
        }
        if let Some(populated) = &self.populated {
            writeln!(f, "  Populating from: {}", populated.dir.display())?;
            if let Some((rules, file)) = &populated.attrs {
                writeln!(f, "  Attributes: {rules} entries from {}", file.display())?;
            }
            writeln!(f, "  Inodes used: {}/{}", populated.inodes_used, geometry.inode_count)?;
            writeln!(f, "  Free blocks: {}", populated.free_blocks)?;
        }
        writeln!(f, "mkfs-blockfs: Image created successfully ({} MB)", self.size_mb)
    }
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = interrupt::watch() {
        eprintln!("mkfs-blockfs: cannot watch for signals: {error}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => match interrupt::received() {
            Some(signal) => {
                eprintln!(
                    "mkfs-blockfs: interrupted by {signal}; the partial image was removed and {} left as it was",
                    args.output().display()
                );
                ExitCode::from(signal.exit_code())
            }
            None => {
                eprintln!("mkfs-blockfs: {error}");
                ExitCode::from(error.exit_code())
            }
        },
    }
}

/// Creates the image `args` describe and returns its summary.
pub fn run(args: &Args) -> Result<Report, MkfsError> {
    let epoch_text = std::env::var_os("SOURCE_DATE_EPOCH").map(|v| v.to_string_lossy().into_owned());
    let epoch = clock::parse_source_date_epoch(epoch_text.as_deref())?;
    clock::set(epoch.unwrap_or_else(clock::system_seconds));
    // Held until the new image has replaced the old one.
    let _old_image = output::check_target(args.output(), args.force)?;
    let device = match blockdev::is_block_device(args.output()) {
        true => Some(blockdev::open_for_format(args.output(), args.force)?),
        false => None,
    };
    let block_count = target_blocks(args, device.as_ref())?;
    let size_mb = block_count / BLOCKS_PER_MB;
    let source = args.populate.as_deref().map(|dir| load_source(dir, args, epoch)).transpose()?;

    let entries = source.as_ref().map_or(0, |source| source.needs.entries);
    let inode_count = args.inodes.unwrap_or_else(|| Geometry::default_inode_count(block_count, entries));
    let geometry = Geometry::new(block_count, inode_count).map_err(|error| MkfsError::Layout {
        size_mb,
        inodes: inode_count,
        error,
    })?;

    let tree = source.as_ref().and_then(|source| match &source.contents {
        Contents::Tree(tree) => Some(tree),
        Contents::Archive(_) => None,
    });
    let options = format_options(args, &geometry, tree, epoch);
    let (journal, populated) = match device {
        Some(device) => build_on_device(args.output(), device, &options, source.as_ref(), args.quiet)?,
        None => build_image(args.output(), &options, source.as_ref(), args.quiet)?,
    };
    Ok(Report { output: args.output().to_owned(), size_mb, geometry, journal, populated })
}

/// Blocks to format: --size (or SIZE), or a block device's whole size
/// (which the size asked for may not exceed).
fn target_blocks(args: &Args, device: Option<&File>) -> Result<u32, MkfsError> {
    const DEFAULT_SIZE_MB: u32 = 256;
    let Some(file) = device else {
        return Ok(args.size_mb().unwrap_or(DEFAULT_SIZE_MB) * BLOCKS_PER_MB);
    };
    let io_error = |error| MkfsError::Io { path: args.output().to_owned(), error };
    let available = blockdev::device_blocks(file, MAX_SIZE_MB * BLOCKS_PER_MB).map_err(io_error)?;
    match args.size_mb() {
        None => Ok(available),
        Some(size_mb) if size_mb * BLOCKS_PER_MB <= available => Ok(size_mb * BLOCKS_PER_MB),
        Some(size_mb) => Err(MkfsError::DeviceTooSmall {
            path: args.output().to_owned(),
            size_mb,
            device_mb: available / BLOCKS_PER_MB,
        }),
    }
}

/// Reads the attrs file (cheap, so first), then scans the tree and
/// applies it, or sizes the archive (a regular file).
fn load_source(path: &Path, args: &Args, epoch: Option<u32>) -> Result<Source, MkfsError> {
    let attrs = args.attrs.as_deref().map(attrs::read).transpose()?;
    if fs::metadata(path).is_ok_and(|metadata| metadata.is_file()) {
        let options = ExtractOptions {
            large_ids: if args.squash_ids { LargeIds::SquashTo(0) } else { LargeIds::Reject },
            latest_time: epoch,
            on_member_error: OnMemberError::Abort,
        };
        let needs = plan_archive(path)?;
        return Ok(Source { path: path.to_owned(), contents: Contents::Archive(options), attrs, needs });
    }
    let options = ScanOptions { squash_ids: args.squash_ids, latest_time: epoch };
    let mut tree = hosttree::scan(path, options)?;
    if let Some(file) = &attrs {
        attrs::apply(&mut tree, file)?;
    }
    let needs = tree.needs;
    Ok(Source { path: path.to_owned(), contents: Contents::Tree(tree), attrs, needs })
}

/// The first pass over an archive: what its members need, and whether
/// they are all safe and storable as far as that can be told before the
/// image exists.
fn plan_archive(path: &Path) -> Result<Needs, MkfsError> {
    let (_, reader) = archive::open(path).map_err(|error| MkfsError::Io { path: path.to_owned(), error })?;
    let mut plan = Plan::new();
    archive::for_each_event(reader, path, |event| {
        if let Event::Skipped { typeflag, path: member, .. } = &event {
            refuse_unsupported(
                path,
                [LoadError::UnsupportedType { path: member.clone(), typeflag: *typeflag }],
            )?;
        }
        plan.note(&event).map_err(|error| MkfsError::Member { archive: path.to_owned(), error })
    })?;
    Ok(plan.needs())
}

/// Members of types that are not created: a volume label is no loss;
/// anything else (a GNU sparse file, a vendor type) would be missing from
/// the image, so it is refused.
fn refuse_unsupported(archive: &Path, errors: impl IntoIterator<Item = LoadError>) -> Result<(), MkfsError> {
    const VOLUME_LABEL: u8 = b'V';
    let lost =
        |error: &LoadError| !matches!(error, LoadError::UnsupportedType { typeflag: VOLUME_LABEL, .. });
    match errors.into_iter().find(lost) {
        Some(error) => Err(MkfsError::Member { archive: archive.to_owned(), error }),
        None => Ok(()),
    }
}

/// Compares what the contents need with what the freshly formatted image has free.
fn check_fits(source: &Source, free: &StatFs) -> Result<(), MkfsError> {
    let shortfall = Shortfall {
        dir: source.path.clone(),
        blocks_needed: source.needs.blocks,
        blocks_free: free.free_blocks,
        inodes_needed: source.needs.inodes,
        inodes_free: free.free_inodes,
    };
    let fits = shortfall.blocks_needed <= shortfall.blocks_free as u64
        && shortfall.inodes_needed <= shortfall.inodes_free as u64;
    if fits {
        Ok(())
    } else {
        Err(MkfsError::DoesNotFit(shortfall))
    }
}

/// The root takes the populate directory's mode and owner (an archive's
/// `./` member gives them when it is extracted).
fn format_options(
    args: &Args,
    geometry: &Geometry,
    tree: Option<&HostTree>,
    epoch: Option<u32>,
) -> FormatOptions {
    let label = args.label.as_deref().unwrap_or_default().as_bytes().to_vec();
    let mut options = FormatOptions::new(geometry.block_count);
    options.inode_count = Some(geometry.inode_count);
    options.time = clock::now();
    options.uuid = volume_uuid(geometry, &label, epoch);
    options.label = label;
    options.journal = !args.no_journal;
    if let Some(tree) = tree {
        let root = &tree.inodes[tree.root.inode];
        options.root_permissions = root.perm;
        options.root_uid = root.uid;
        options.root_gid = root.gid;
    }
    options
}

/// A hash of the image's parameters when the build must be reproducible,
/// else of the moment and the process (unique enough for a volume id).
fn volume_uuid(geometry: &Geometry, label: &[u8], epoch: Option<u32>) -> [u8; 16] {
    match epoch {
        Some(epoch) => uuid::from_parts(&[
            &geometry.block_count.to_le_bytes(),
            &geometry.inode_count.to_le_bytes(),
            label,
            &epoch.to_le_bytes(),
        ]),
        None => uuid::unique(),
    }
}

/// Formats (and fills) the image in a temporary file, then moves it into
/// place. Any error drops the temporary file.
fn build_image(
    output: &Path,
    options: &FormatOptions,
    source: Option<&Source>,
    quiet: bool,
) -> Result<(Journal, Option<Populated>), MkfsError> {
    let io_error = |error| MkfsError::Io { path: output.to_owned(), error };
    let image_error = |error| MkfsError::Image { path: output.to_owned(), error };
    let length = options.block_count as u64 * BLOCK_SIZE as u64;
    let (temp, file) = TempImage::create(output, length).map_err(io_error)?;
    let device = FileDevice::from_file(file, true).map_err(io_error)?;
    let device = format(device, options).map_err(image_error)?;
    let (device, journal) = journal_made(device, options).map_err(image_error)?;
    let (device, populated) = match source {
        Some(source) => {
            let (device, populated) = fill(output, device, source, quiet)?;
            (device, Some(populated))
        }
        None => (device, None),
    };
    device.into_file().sync_all().map_err(io_error)?;
    temp.commit().map_err(io_error)?;
    Ok((journal, populated))
}

/// Formats (and fills) a block device in place, opened exclusively by
/// [`blockdev::open_for_format`]. On failure block 0 is zeroed, so the
/// device is not left looking like a BlockFS image.
/// Whether format() gave the image a journal (it decides whether the
/// image can spare one).
fn journal_made(device: FileDevice, options: &FormatOptions) -> blockfs::Result<(FileDevice, Journal)> {
    let fs = FileSystem::mount(device, MountOptions { read_only: true, ..MountOptions::default() })?;
    let journal = match fs.info().extension.filter(Extension::has_journal) {
        Some(extension) => Journal::Blocks(extension.journal_blocks),
        None if options.journal => Journal::TooSmall,
        None => Journal::NotAsked,
    };
    Ok((fs.unmount()?, journal))
}

fn build_on_device(
    output: &Path,
    file: File,
    options: &FormatOptions,
    source: Option<&Source>,
    quiet: bool,
) -> Result<(Journal, Option<Populated>), MkfsError> {
    let io_error = |error| MkfsError::Io { path: output.to_owned(), error };
    let image_error = |error| MkfsError::Image { path: output.to_owned(), error };
    let guard = file.try_clone().map_err(io_error)?;
    let built = (|| {
        blockdev::wipe_start(&file).map_err(io_error)?;
        let device = FileDevice::from_file(file, true).map_err(io_error)?;
        let mut device = format(device, options).map_err(image_error)?;
        blockdev::zero_journal(&mut device).map_err(image_error)?;
        let (device, journal) = journal_made(device, options).map_err(image_error)?;
        let (device, populated) = match source {
            Some(source) => {
                let (device, populated) = fill(output, device, source, quiet)?;
                (device, Some(populated))
            }
            None => (device, None),
        };
        device.into_file().sync_all().map_err(io_error)?;
        Ok((journal, populated))
    })();
    if built.is_err() {
        blockdev::unmark(&guard);
    }
    built
}

/// Mounts the fresh image, checks the contents fit, copies them in and
/// unmounts.
fn fill(
    output: &Path,
    device: FileDevice,
    source: &Source,
    quiet: bool,
) -> Result<(FileDevice, Populated), MkfsError> {
    let image_error = |error| MkfsError::Image { path: output.to_owned(), error };
    let options = MountOptions {
        cache_blocks: POPULATE_CACHE_BLOCKS,
        read_only: false,
        relatime: false,
        // A failed populate discards the image: no need to log or flush.
        journal: false,
        record_mount: false,
        clock: clock::now,
    };
    let fs = FileSystem::mount(device, options).map_err(image_error)?;
    check_fits(source, &fs.statfs())?;
    let needs = &source.needs;
    let mut progress = Progress::for_stderr("mkfs-blockfs", Some((needs.entries, needs.file_bytes)), quiet);
    let copied = match &source.contents {
        Contents::Tree(tree) => populate(&fs, tree, &mut progress).map_err(|error| match error.failure {
            // The image file could not be written (the host is full, say):
            // that is about the image, not the source file being copied.
            CopyFailure::Image(error @ blockfs::Error::Io(_)) => image_error(error),
            _ => MkfsError::Populate(error),
        }),
        Contents::Archive(options) => extract(&fs, source, *options, &mut progress),
    };
    progress.finish();
    copied?;
    let statfs = fs.statfs();
    let device = fs.unmount().map_err(image_error)?;
    let populated = Populated {
        dir: source.path.clone(),
        attrs: source.attrs.as_ref().map(|file| (file.rules.len(), file.path.clone())),
        inodes_used: statfs.inodes - statfs.free_inodes,
        free_blocks: statfs.free_blocks,
    };
    Ok((device, populated))
}

/// The second pass over an archive: creates its members at the root,
/// then applies the attrs file.
fn extract(
    fs: &FileSystem<FileDevice>,
    source: &Source,
    options: ExtractOptions,
    progress: &mut Progress,
) -> Result<(), MkfsError> {
    let path = &source.path;
    let member_error = |error| MkfsError::Member { archive: path.clone(), error };
    let (_, reader) = archive::open(path).map_err(|error| MkfsError::Io { path: path.clone(), error })?;
    let mut extractor = Extractor::new(fs, ROOT_INO, options);
    archive::for_each_event(reader, path, |event| {
        progress.archive_event(&event);
        extractor.apply(event).map_err(member_error)?;
        // Under Abort, only members of types not created are skipped.
        refuse_unsupported(path, extractor.take_skipped().into_iter().map(|skipped| skipped.error))
    })?;
    let skipped = extractor.finish().map_err(member_error)?;
    refuse_unsupported(path, skipped.into_iter().map(|skipped| skipped.error))?;
    if let Some(file) = &source.attrs {
        attrs::apply_to_image(fs, file)?;
    }
    Ok(())
}
