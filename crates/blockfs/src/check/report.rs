//! What the checker found: one [`Problem`] per broken invariant, and the
//! [`Report`] a front end turns into messages and an exit status. Nothing
//! here prints; [`Problem`]'s `Display` gives the one-line message.

use alloc::vec::Vec;
use core::fmt;

use super::RepairMode;
use crate::format::extension::ExtensionError;

/// How much a problem matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, nothing wrong (a plain version 1 image).
    Note,
    /// Tolerated: the image is usable as it is (entries only the newer
    /// driver sees, an extension record an older driver wiped).
    Warning,
    /// A broken invariant.
    Error,
}

/// The invariant a problem breaks, with the values that show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    // --- superblock and extension record ---
    /// `first_data_block` disagrees with `1 + B + I` (the root directory's
    /// first block confirms the computed layout).
    FirstDataBlockMismatch {
        recorded: u32,
        computed: u32,
    },
    /// `free_blocks` disagrees with the free data blocks of the bitmap as
    /// found (bitmap errors are reported on their own).
    FreeBlocksCount {
        recorded: u32,
        counted: u32,
    },
    /// `free_inodes` disagrees with the free inodes of the table as found.
    FreeInodesCount {
        recorded: u32,
        counted: u32,
    },
    /// `free_inodes` also counts the inode numbers without a table slot,
    /// as the older host tool's images do.
    HomelessInodesCounted {
        count: u32,
    },
    /// `state` is not 1: a driver stopped without unmounting.
    NotCleanlyUnmounted,
    /// No extension record: a plain version 1 image.
    ExtensionMissing,
    /// The record is there but unusable; its fields are ignored.
    ExtensionInvalid(ExtensionError),
    /// A valid record with incompatible features this checker does not
    /// know: the image must not be written.
    UnknownIncompatFeatures(u32),
    /// A committed journal transaction was not yet written home: replayed
    /// when repairing, read through otherwise.
    JournalPending,
    /// The journal superblock, or the transaction it holds, is unusable;
    /// a read-write mount would refuse the image.
    JournalDamaged,
    /// The record's journal inode does not own the journal's block run
    /// (free, not a regular file, wrong size, or mapping other blocks).
    JournalInodeInvalid,
    /// The record's journal inode owns the journal's blocks but is not
    /// flagged as a system inode, so mount refuses the journal.
    JournalInodeUnflagged,
    /// A hidden system inode the record does not name: a journal an older
    /// driver detached by wiping the record.
    JournalDetached,
    /// Unlinked-but-open inodes on the orphan chain, still holding blocks
    /// (released by the next read-write mount, or by repairs).
    PendingOrphans {
        count: u32,
    },
    /// The orphan chain names an inode in use, past the table, or loops.
    BadOrphanChain,

    // --- block bitmap ---
    /// Blocks marked used that nothing owns.
    LeakedBlocks {
        first: u32,
        count: u32,
    },
    /// Blocks some inode owns but the bitmap marks free.
    UsedBlocksMarkedFree {
        first: u32,
        count: u32,
    },
    /// Bits for block numbers at or past `block_count` are set.
    BitmapTailNotZero,

    // --- inodes ---
    /// The mode's type bits name no file type.
    BadFileType {
        mode: u16,
    },
    RootNotDirectory {
        mode: u16,
    },
    /// A block pointer at or past `block_count`.
    PointerOutOfRange {
        pointer: u32,
    },
    /// A block pointer into the superblock, bitmap or inode table.
    PointerIntoMetadata {
        pointer: u32,
    },
    /// A block already claimed by an earlier pointer (this inode's or
    /// another's).
    DuplicateBlock {
        block: u32,
    },
    /// The triple-indirect pointer is set; the format never uses it.
    TripleIndirectSet {
        pointer: u32,
    },
    /// Data blocks are mapped past the end `size` gives (or past what any
    /// u32 size can reach).
    BlocksPastEnd {
        size: u32,
        mapped_blocks: u64,
    },
    /// A symlink's size is outside 1..=4095.
    SymlinkBadSize {
        size: u32,
    },
    /// A device, FIFO or socket inode has a size or pointer fields other
    /// than its device number.
    SpecialInodeHasData,
    /// `blocks` disagrees with the data and indirect blocks mapped.
    BadBlockCount {
        recorded: u32,
        actual: u32,
    },
    BadLinkCount {
        recorded: u16,
        actual: u32,
    },
    /// More names than a 16-bit link count can hold.
    TooManyLinks {
        count: u32,
    },
    /// An in-use inode that no directory entry names.
    OrphanInode,
    /// A directory not reachable from the root.
    UnreachableDirectory {
        in_cycle: bool,
    },

    // --- directories ---
    /// Records cross block boundaries as the older host tool wrote them.
    LegacyLayout,
    /// A directory block whose records do not parse.
    DamagedBlock {
        logical: u32,
        offset: u32,
    },
    /// An empty name, or one holding `/` or NUL.
    BadName,
    EntryInodeOutOfRange {
        target: u32,
    },
    EntryToFreeInode {
        target: u32,
    },
    /// A name already used earlier in the same directory.
    DuplicateName {
        target: u32,
    },
    /// The entry's `file_type` byte disagrees with the inode's type.
    BadFileTypeByte {
        found: u8,
        expected: u8,
    },
    MissingDot,
    BadDot {
        found: u32,
    },
    MissingDotDot,
    BadDotDot {
        found: u32,
        expected: u32,
    },
    /// A second entry naming a directory (directories have one parent).
    DirectoryHardLink {
        target: u32,
    },
    /// An entry naming one of the directory's own ancestors.
    DirectoryLoop {
        target: u32,
    },
    /// Entries in blocks past the 12 direct ones: the older kernel driver
    /// cannot see them.
    EntriesPastDirectBlocks,
    /// The directory is too large to look for duplicate names within the
    /// checker's memory budget.
    DuplicateCheckSkipped,
    /// `/lost+found` cannot be used (the root names something else so, or
    /// there is no free inode or block for it): unattached inodes go into
    /// the root directory instead.
    LostFoundUnavailable,
}

impl ProblemKind {
    pub fn severity(&self) -> Severity {
        use ProblemKind::*;
        match self {
            ExtensionMissing => Severity::Note,
            NotCleanlyUnmounted
            | HomelessInodesCounted { .. }
            | ExtensionInvalid(_)
            | UnknownIncompatFeatures(_)
            | JournalPending
            | JournalDetached
            | PendingOrphans { .. }
            | EntriesPastDirectBlocks
            | DuplicateCheckSkipped
            | LostFoundUnavailable => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The least repair mode that fixes this problem; `None` when no mode
    /// does. `Safe` repairs cannot lose data: they recompute summaries
    /// (bitmap, counters, link and block counts, type bytes) or rewrite a
    /// directory without dropping a name.
    pub fn repair_mode(&self) -> Option<RepairMode> {
        use ProblemKind::*;
        match self {
            ExtensionMissing
            | ExtensionInvalid(_)
            | UnknownIncompatFeatures(_)
            | JournalDetached
            | TooManyLinks { .. }
            | EntriesPastDirectBlocks
            | DuplicateCheckSkipped
            | LostFoundUnavailable => None,
            FreeBlocksCount { .. }
            | FreeInodesCount { .. }
            | HomelessInodesCounted { .. }
            | NotCleanlyUnmounted
            | JournalPending
            | JournalInodeUnflagged
            | PendingOrphans { .. }
            | BadOrphanChain
            | LeakedBlocks { .. }
            | UsedBlocksMarkedFree { .. }
            | BitmapTailNotZero
            | BadBlockCount { .. }
            | BadLinkCount { .. }
            | BadFileTypeByte { .. }
            | LegacyLayout => Some(RepairMode::Safe),
            _ => Some(RepairMode::All),
        }
    }
}

/// One broken invariant, where it was found, and whether it was repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub severity: Severity,
    /// The inode concerned; for entry problems, the directory.
    pub inode: Option<u32>,
    /// The block concerned, when one is.
    pub block: Option<u32>,
    /// The directory entry's name, for entry problems.
    pub name: Option<Vec<u8>>,
    pub repaired: bool,
}

impl Problem {
    pub fn new(kind: ProblemKind) -> Self {
        Problem { kind, severity: kind.severity(), inode: None, block: None, name: None, repaired: false }
    }

    pub fn inode(mut self, ino: u32) -> Self {
        self.inode = Some(ino);
        self
    }

    pub fn block(mut self, block: u32) -> Self {
        self.block = Some(block);
        self
    }

    /// An entry problem: `dir` holds the entry called `name`.
    pub fn entry(kind: ProblemKind, dir: u32, name: &[u8]) -> Self {
        let mut problem = Problem::new(kind).inode(dir);
        problem.name = Some(name.to_vec());
        problem
    }
}

/// Writes a name byte for byte, escaping what a terminal should not see.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            match byte {
                b'"' | b'\\' => write!(f, "\\{}", byte as char)?,
                0x20..=0x7e => write!(f, "{}", byte as char)?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        Ok(())
    }
}

/// "block 7" or "blocks 7..=9".
struct BlockRun {
    first: u32,
    count: u32,
}

impl fmt::Display for BlockRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(f, "block {} is", self.first)
        } else {
            let last = self.first as u64 + self.count as u64 - 1;
            write!(f, "blocks {}..={last} are", self.first)
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProblemKind::*;
        match *self {
            FirstDataBlockMismatch { recorded, computed } => {
                write!(f, "superblock records first data block {recorded}, the layout puts it at {computed}")
            }
            FreeBlocksCount { recorded, counted } => {
                write!(f, "free block count is {recorded}, the bitmap marks {counted} free")
            }
            FreeInodesCount { recorded, counted } => {
                write!(f, "free inode count is {recorded}, the inode table has {counted} free")
            }
            HomelessInodesCounted { count } => write!(
                f,
                "free inode count includes the {count} inode numbers without a table slot (older tool)"
            ),
            NotCleanlyUnmounted => write!(f, "filesystem was not cleanly unmounted"),
            ExtensionMissing => write!(f, "no extension record: a plain version 1 image"),
            ExtensionInvalid(ExtensionError::BadChecksum { stored, computed }) => write!(
                f,
                "extension record checksum {stored:#010x} should be {computed:#010x}; \
                 its label, UUID and journal fields are ignored"
            ),
            ExtensionInvalid(ExtensionError::UnsupportedVersion(version)) => {
                write!(f, "extension record version {version} is newer than this checker; repairs refused")
            }
            ExtensionInvalid(ExtensionError::BadLength(length)) => {
                write!(f, "extension record length {length} is not 128; its fields are ignored")
            }
            ExtensionInvalid(ExtensionError::Missing) => write!(f, "extension record missing"),
            UnknownIncompatFeatures(bits) => {
                write!(f, "extension record sets unknown incompatible features {bits:#x}; repairs refused")
            }
            JournalPending => write!(f, "journal holds a committed transaction not yet written home"),
            JournalDamaged => write!(f, "journal superblock or transaction is unusable"),
            JournalInodeInvalid => write!(
                f,
                "extension record names this inode as the journal, but it does not own the journal's blocks"
            ),
            JournalInodeUnflagged => write!(
                f,
                "journal inode owns the journal's blocks but lacks the system flag (mount refuses it)"
            ),
            JournalDetached => {
                write!(
                    f,
                    "system inode not named by the extension record: a detached journal (`blockfs tune --journal IMAGE` re-attaches it)"
                )
            }
            PendingOrphans { count } => {
                write!(f, "{count} unlinked inodes still hold blocks on the orphan chain")
            }
            BadOrphanChain => write!(f, "orphan chain names an inode that cannot be on it"),
            LeakedBlocks { first, count } => {
                write!(f, "{} marked in use but owned by nothing", BlockRun { first, count })
            }
            UsedBlocksMarkedFree { first, count } => {
                write!(f, "{} in use but marked free in the bitmap", BlockRun { first, count })
            }
            BitmapTailNotZero => write!(f, "bitmap marks blocks past the end of the filesystem"),
            BadFileType { mode } => write!(f, "mode {mode:#o} names no file type"),
            RootNotDirectory { mode } => {
                write!(f, "root inode is not a directory (mode {mode:#o})")
            }
            PointerOutOfRange { pointer } => {
                write!(f, "block pointer {pointer} is past the end of the filesystem")
            }
            PointerIntoMetadata { pointer } => {
                write!(f, "block pointer {pointer} points into the metadata area")
            }
            DuplicateBlock { block } => {
                write!(f, "block {block} is already claimed by an earlier pointer")
            }
            TripleIndirectSet { pointer } => {
                write!(f, "triple-indirect pointer is set ({pointer}); the format never uses it")
            }
            BlocksPastEnd { size, mapped_blocks } => {
                write!(f, "blocks are mapped past its size {size} (the map reaches {mapped_blocks} blocks)")
            }
            SymlinkBadSize { size } => write!(f, "symlink size {size} is outside 1..=4095"),
            SpecialInodeHasData => write!(f, "device, FIFO or socket inode has a size or block pointers"),
            BadBlockCount { recorded, actual } => {
                write!(f, "block count is {recorded}, the block map holds {actual}")
            }
            BadLinkCount { recorded, actual } => {
                write!(f, "link count is {recorded}, counted {actual}")
            }
            TooManyLinks { count } => {
                write!(f, "{count} links do not fit the 16-bit link count")
            }
            OrphanInode => write!(f, "inode is in use but no directory entry names it"),
            UnreachableDirectory { in_cycle } => {
                write!(f, "directory is not reachable from the root")?;
                if in_cycle {
                    write!(f, " (its parents form a cycle)")?;
                }
                Ok(())
            }
            LegacyLayout => write!(f, "directory is in the older tool's layout, records straddling blocks"),
            DamagedBlock { logical, offset } => {
                write!(f, "directory block {logical} does not parse from offset {offset}")
            }
            BadName => write!(f, "entry name is empty or holds '/' or NUL"),
            EntryInodeOutOfRange { target } => {
                write!(f, "entry names inode {target}, past the inode table")
            }
            EntryToFreeInode { target } => write!(f, "entry names free inode {target}"),
            DuplicateName { target } => {
                write!(f, "entry repeats an earlier name (inode {target})")
            }
            BadFileTypeByte { found, expected } => {
                write!(f, "entry file type is {found}, the inode's type is {expected}")
            }
            MissingDot => write!(f, "directory has no '.' entry"),
            BadDot { found } => write!(f, "'.' names inode {found}, not the directory"),
            MissingDotDot => write!(f, "directory has no '..' entry"),
            BadDotDot { found, expected } => {
                write!(f, "'..' names inode {found}, the parent is {expected}")
            }
            DirectoryHardLink { target } => {
                write!(f, "entry is a second link to directory {target}")
            }
            DirectoryLoop { target } => {
                write!(f, "entry links back to ancestor directory {target}, forming a cycle")
            }
            EntriesPastDirectBlocks => write!(
                f,
                "directory has entries past its 12 direct blocks, unseen by the older kernel driver"
            ),
            DuplicateCheckSkipped => {
                write!(f, "directory too large to look for duplicate names in the memory budget")
            }
            LostFoundUnavailable => write!(
                f,
                "cannot use /lost+found (name taken, or no free inode or block): unattached inodes go into the root directory"
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.inode) {
            (Some(name), Some(dir)) => write!(f, "directory {dir}, entry \"{}\": ", Escaped(name))?,
            (_, Some(ino)) => write!(f, "inode {ino}: ")?,
            // Block-only problems name their blocks in the message.
            _ => write!(f, "filesystem: ")?,
        }
        write!(f, "{}", self.kind)?;
        if self.repaired {
            write!(f, " [fixed]")?;
        }
        Ok(())
    }
}

/// Totals over the image as it stands after the check (and repairs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    pub block_count: u32,
    /// Blocks in use, metadata included.
    pub blocks_used: u32,
    /// Inodes with a slot in the table.
    pub inode_count: u32,
    pub inodes_used: u32,
    pub directories: u32,
    /// Regular files, and in-use inodes whose type is unknown.
    pub regular_files: u32,
    pub symlinks: u32,
    /// Device nodes, FIFOs and sockets.
    pub special_files: u32,
    /// Inodes given a name in `/lost+found`.
    pub reconnected: u32,
}

/// Everything a check found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The problems, in the order found, up to `CheckOptions::max_problems`.
    pub problems: Vec<Problem>,
    /// Problems found past that limit: counted below, not kept.
    pub omitted: usize,
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
    /// Problems repaired (of any severity).
    pub fixed: usize,
    /// Errors left unrepaired.
    pub unfixed: usize,
    pub stats: CheckStats,
}

impl Report {
    /// e2fsck's exit status: 0 nothing changed and no errors, 1 the image
    /// was changed (any problem repaired, a warning's too, as e2fsck -p
    /// exits 1 after replaying a journal) and no errors left, 4 errors
    /// left (5 when something was also repaired).
    pub fn status(&self) -> i32 {
        let corrected = if self.fixed > 0 { 1 } else { 0 };
        let left = if self.unfixed > 0 { 4 } else { 0 };
        corrected | left
    }

    /// No errors were found (warnings and notes allow a clean image).
    pub fn is_clean(&self) -> bool {
        self.errors == 0
    }

    pub(super) fn add(&mut self, problem: Problem, keep_at_most: usize) {
        match problem.severity {
            Severity::Error => {
                self.errors += 1;
                if !problem.repaired {
                    self.unfixed += 1;
                }
            }
            Severity::Warning => self.warnings += 1,
            Severity::Note => self.notes += 1,
        }
        if problem.repaired {
            self.fixed += 1;
        }
        if self.problems.len() < keep_at_most {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }
}
