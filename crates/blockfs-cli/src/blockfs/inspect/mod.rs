//! The subcommands that look inside an image without changing it
//! (mounted read-only, under a shared lock, or reading a mounted image's
//! last committed state): `info`, `ls`, `cat`, `stat`, `readlink`, and
//! `probe`, which looks at any file.

pub mod probe;
pub mod text;

use std::collections::HashSet;
use std::io::Write;

use blockfs::format::dirent::is_dot_or_dotdot;
use blockfs::format::extension::{Extension, ExtensionError, FEATURE_JOURNAL};
use blockfs::format::superblock::STATE_CLEAN;
use blockfs::format::BLOCK_SIZE;
use blockfs::fs::VolumeInfo;
use blockfs::{Attr, FileType};

use crate::image::{Failure, Image};
use crate::paths::join;
use crate::uuid;
use text::{json_string, kind_name, mode_string, DateTime};

/// `blockfs info`: the fields as text or one JSON object.
pub fn info(image: &Image, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let fields = info_fields(image);
    if json {
        write_json(&fields, out)
    } else {
        write_text(&fields, out)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LsOptions {
    pub long: bool,
    pub all: bool,
    pub recursive: bool,
}

/// A name and what it names, as listed.
struct Listed {
    name: Vec<u8>,
    attr: Attr,
    /// A symlink's target, for `-l`.
    target: Option<Vec<u8>>,
}

impl Image {
    pub fn readlink(&self, path: &[u8]) -> Result<Vec<u8>, Failure> {
        let attr = self.attr_at(path, false)?;
        if attr.kind != FileType::Symlink {
            return Err(self.fail(path, "not a symbolic link"));
        }
        self.fs.readlink(attr.ino).map_err(|error| self.fail(path, error))
    }

    pub fn cat(&self, path: &[u8], out: &mut impl Write) -> Result<(), Failure> {
        let attr = self.attr_at(path, true)?;
        let mut buffer = vec![0u8; 16 * BLOCK_SIZE];
        let mut offset = 0u64;
        loop {
            let read = self.fs.read(attr.ino, offset, &mut buffer).map_err(|error| self.fail(path, error))?;
            if read == 0 {
                return Ok(());
            }
            out.write_all(&buffer[..read])?;
            offset += read as u64;
        }
    }

    pub fn stat(&self, path: &[u8], out: &mut impl Write) -> Result<(), Failure> {
        let attr = self.attr_at(path, false)?;
        out.write_all(b"  File: ")?;
        out.write_all(path)?;
        if attr.kind == FileType::Symlink {
            out.write_all(b" -> ")?;
            out.write_all(&self.readlink(path)?)?;
        }
        writeln!(out)?;
        writeln!(out, "  Type: {}", kind_name(attr.kind))?;
        writeln!(out, "  Size: {:<12} Blocks: {} (4 KiB)", attr.size, attr.blocks)?;
        writeln!(out, " Inode: {:<12} Links: {}", attr.ino, attr.nlink)?;
        if matches!(attr.kind, FileType::CharDevice | FileType::BlockDevice) {
            writeln!(out, "Device: {}, {}", attr.rdev.0, attr.rdev.1)?;
        }
        writeln!(
            out,
            "Access: ({:04o}/{})  Uid: {}  Gid: {}",
            attr.perm,
            mode_string(attr.kind, attr.perm),
            attr.uid,
            attr.gid
        )?;
        for (label, time) in [("Access", attr.atime), ("Modify", attr.mtime), ("Change", attr.ctime)] {
            writeln!(out, "{label}: {} UTC ({time})", DateTime::from_epoch(time as u64).to_seconds())?;
        }
        Ok(())
    }

    /// Like `ls`: a directory lists its entries, anything else itself. A
    /// symlink named on the command line is followed unless `-l` is given.
    pub fn ls(&self, path: &[u8], options: LsOptions, out: &mut impl Write) -> Result<(), Failure> {
        let attr = self.attr_at(path, !options.long)?;
        if attr.kind != FileType::Directory {
            let listed = self.listed(path, path.to_vec(), attr)?;
            return self.write_listing(&[listed], options, false, out);
        }
        if options.recursive {
            let mut visited = HashSet::new();
            self.ls_tree(path.to_vec(), attr.ino, options, &mut visited, out)
        } else {
            let entries = self.directory(path, attr.ino, options.all)?;
            self.write_listing(&entries, options, true, out)
        }
    }

    /// `ls -R`: this directory, then each subdirectory in name order.
    /// `visited` stops a corrupt image whose directories form a loop.
    fn ls_tree(
        &self,
        path: Vec<u8>,
        ino: u32,
        options: LsOptions,
        visited: &mut HashSet<u32>,
        out: &mut impl Write,
    ) -> Result<(), Failure> {
        if !visited.insert(ino) {
            return Err(self.fail(&path, "directory loop"));
        }
        if visited.len() > 1 {
            writeln!(out)?;
        }
        out.write_all(&path)?;
        writeln!(out, ":")?;
        let entries = self.directory(&path, ino, options.all)?;
        self.write_listing(&entries, options, true, out)?;
        for entry in entries {
            if entry.attr.kind == FileType::Directory && !is_dot_or_dotdot(&entry.name) {
                self.ls_tree(join(&path, &entry.name), entry.attr.ino, options, visited, out)?;
            }
        }
        Ok(())
    }

    /// A directory's entries, sorted by name bytes (as `LC_ALL=C ls`).
    fn directory(&self, path: &[u8], ino: u32, all: bool) -> Result<Vec<Listed>, Failure> {
        let mut names = Vec::new();
        self.fs
            .readdir(ino, 0, &mut |entry, _| {
                if all || !entry.name.starts_with(b".") {
                    names.push((entry.name.clone(), entry.ino));
                }
                true
            })
            .map_err(|error| self.fail(path, error))?;
        names.sort_unstable();
        names
            .into_iter()
            .map(|(name, ino)| {
                let entry_path = join(path, &name);
                let attr = self.fs.getattr(ino).map_err(|error| self.fail(&entry_path, error))?;
                self.listed(&entry_path, name, attr)
            })
            .collect()
    }

    fn listed(&self, path: &[u8], name: Vec<u8>, attr: Attr) -> Result<Listed, Failure> {
        let target = match attr.kind {
            FileType::Symlink => Some(self.fs.readlink(attr.ino).map_err(|error| self.fail(path, error))?),
            _ => None,
        };
        Ok(Listed { name, attr, target })
    }

    fn write_listing(
        &self,
        entries: &[Listed],
        options: LsOptions,
        is_directory: bool,
        out: &mut impl Write,
    ) -> Result<(), Failure> {
        if !options.long {
            for entry in entries {
                out.write_all(&entry.name)?;
                writeln!(out)?;
            }
            return Ok(());
        }
        if is_directory {
            // coreutils counts 1 KiB units; BlockFS blocks are 4 KiB.
            let total: u64 = entries.iter().map(|e| e.attr.blocks as u64 * 4).sum();
            writeln!(out, "total {total}")?;
        }
        let rows: Vec<[String; 4]> = entries.iter().map(|e| long_columns(&e.attr)).collect();
        let widths: [usize; 4] =
            std::array::from_fn(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0));
        for (entry, row) in entries.iter().zip(&rows) {
            write!(out, "{}", mode_string(entry.attr.kind, entry.attr.perm))?;
            for (cell, width) in row.iter().zip(widths) {
                write!(out, " {cell:>width$}")?;
            }
            write!(out, " {} ", DateTime::from_epoch(entry.attr.mtime as u64).to_minutes())?;
            out.write_all(&entry.name)?;
            if let Some(target) = &entry.target {
                out.write_all(b" -> ")?;
                out.write_all(target)?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

/// Links, owner, group, and size (or `major, minor` for devices).
fn long_columns(attr: &Attr) -> [String; 4] {
    let size = match attr.kind {
        FileType::CharDevice | FileType::BlockDevice => format!("{}, {}", attr.rdev.0, attr.rdev.1),
        _ => attr.size.to_string(),
    };
    [attr.nlink.to_string(), attr.uid.to_string(), attr.gid.to_string(), size]
}

/// One fact `info` reports, named for JSON (`key`) and for people (`label`).
struct Field {
    key: &'static str,
    label: &'static str,
    value: Value,
}

enum Value {
    Number(u64),
    Text(String),
    /// Seconds since the epoch; 0 means never.
    Time(u64),
    /// Not applicable: `null` in JSON, left out of the text.
    Absent,
}

fn field(key: &'static str, label: &'static str, value: Value) -> Field {
    Field { key, label, value }
}

fn info_fields(image: &Image) -> Vec<Field> {
    use Value::*;
    let VolumeInfo { superblock, geometry, extension, extension_problem, was_clean } = image.fs.info();
    let usable = geometry.usable_inodes() as u64;
    let mut fields = vec![
        field("image", "Image", Text(image.path.display().to_string())),
        field("block_size", "Block size", Number(BLOCK_SIZE as u64)),
        field("blocks", "Blocks", Number(geometry.block_count as u64)),
        field("used_blocks", "Used blocks", Number((superblock.block_count - superblock.free_blocks) as u64)),
        field("free_blocks", "Free blocks", Number(superblock.free_blocks as u64)),
        field("inodes", "Inodes", Number(geometry.inode_count as u64)),
        field("usable_inodes", "Usable inodes", Number(usable)),
        field("used_inodes", "Used inodes", Number(usable.saturating_sub(superblock.free_inodes as u64))),
        field("free_inodes", "Free inodes", Number(superblock.free_inodes as u64)),
        field("bitmap_blocks", "Bitmap blocks", Number(geometry.bitmap_blocks as u64)),
        field("inode_table_blocks", "Inode table blocks", Number(geometry.inode_table_blocks as u64)),
        field("first_data_block", "First data block", Number(geometry.first_data_block() as u64)),
        field("data_blocks", "Data blocks", Number(geometry.data_blocks() as u64)),
        field("mount_count", "Mount count", Number(superblock.mount_count as u64)),
        field("max_mount_count", "Max mount count", Number(superblock.max_mount_count as u64)),
        field("state", "State", Text(state_name(was_clean, superblock.state))),
        field("mount_time", "Last mounted", Time(superblock.mount_time)),
        field("write_time", "Last written", Time(superblock.write_time)),
        field("extension", "Extension", Text(extension_status(extension_problem))),
    ];
    let journal = extension.filter(|e| e.compat_features & FEATURE_JOURNAL != 0);
    let from_extension = |value: fn(&Extension) -> Value| extension.as_ref().map_or(Absent, value);
    let from_journal = |value: fn(&Extension) -> Value| journal.as_ref().map_or(Absent, value);
    fields.extend([
        field("uuid", "UUID", from_extension(|e| Text(uuid::to_string(&e.uuid)))),
        field("label", "Label", from_extension(|e| Text(String::from_utf8_lossy(e.label()).into_owned()))),
        field("created_time", "Created", from_extension(|e| Time(e.created_time))),
        field("last_check_time", "Last checked", from_extension(|e| Time(e.last_check_time))),
        field("journal_inode", "Journal inode", from_journal(|e| Number(e.journal_inode.into()))),
        field("journal_first_block", "Journal start", from_journal(|e| Number(e.journal_first_block.into()))),
        field("journal_blocks", "Journal blocks", from_journal(|e| Number(e.journal_blocks.into()))),
    ]);
    fields
}

fn state_name(was_clean: bool, state: u16) -> String {
    if was_clean {
        "clean".into()
    } else {
        format!("dirty (state {state}, expected {STATE_CLEAN}): not unmounted cleanly")
    }
}

/// "present", or why the image has no usable extension record.
fn extension_status(problem: Option<ExtensionError>) -> String {
    match problem {
        None => "present".into(),
        Some(ExtensionError::Missing) => "missing: plain version 1 image (no UUID, label or journal)".into(),
        Some(ExtensionError::BadChecksum { stored, computed }) => format!(
            "damaged: checksum {stored:#010x}, computed {computed:#010x}; treated as a plain version 1 image"
        ),
        Some(ExtensionError::UnsupportedVersion(version)) => {
            format!("unsupported version {version}; treated as a plain version 1 image")
        }
        Some(ExtensionError::BadLength(length)) => {
            format!("damaged: record length {length}; treated as a plain version 1 image")
        }
    }
}

fn write_text(fields: &[Field], out: &mut impl Write) -> Result<(), Failure> {
    for Field { label, value, .. } in fields {
        let shown = match value {
            Value::Number(number) => number.to_string(),
            Value::Text(text) => text.clone(),
            Value::Time(0) => "never".into(),
            // Past what a 32-bit time can say (2106): not Unix seconds.
            Value::Time(raw) if *raw > u32::MAX as u64 => {
                format!("{raw} (raw value, not a Unix time; VeridianOS's driver writes CPU ticks here)")
            }
            Value::Time(seconds) => format!("{} UTC", DateTime::from_epoch(*seconds).to_seconds()),
            Value::Absent => continue,
        };
        writeln!(out, "{:<20}{shown}", format!("{label}:"))?;
    }
    Ok(())
}

fn write_json(fields: &[Field], out: &mut impl Write) -> Result<(), Failure> {
    writeln!(out, "{{")?;
    for (index, Field { key, value, .. }) in fields.iter().enumerate() {
        let shown = match value {
            Value::Number(number) | Value::Time(number) => number.to_string(),
            Value::Text(text) => json_string(text),
            Value::Absent => "null".into(),
        };
        let comma = if index + 1 < fields.len() { "," } else { "" };
        writeln!(out, "  {}: {shown}{comma}", json_string(key))?;
    }
    writeln!(out, "}}")?;
    Ok(())
}
