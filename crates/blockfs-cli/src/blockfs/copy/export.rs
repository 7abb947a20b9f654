//! `blockfs export`: the whole tree as a tar archive that GNU tar
//! extracts faithfully: contents, types, permissions (setuid, setgid and
//! sticky included), owners, mtimes, symlinks, hard links (members of
//! type '1' naming the first name archived), device nodes and FIFOs.
//! Member names come from [`Walk`], so they are relative and never hold
//! `..`; the root is the member `./`, which gives the directory the
//! archive is extracted into the root's mode and times.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use blockfs::format::BLOCK_SIZE;
use blockfs::rootfs::tar::MAX_SPARSE_REGIONS;
use blockfs::FileType;
use clap::Args;

use crate::blockfs::copy::walk::{link_target, Node, Walk};
use crate::host::output::TempImage;
use crate::host::sparse;
use crate::image::lock::Access;
use crate::image::{Failure, Image};
use crate::interrupt;
use crate::progress::Progress;
use crate::tar::{Kind, Member, TarWriter};

/// Output buffer: big writes to the archive file or pipe.
const OUTPUT_BUFFER: usize = 1 << 20;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The BlockFS image file
    pub image: PathBuf,
    /// The archive to write, replaced only once complete; `-` writes to
    /// standard output
    pub output: PathBuf,
    /// No progress line (it is shown only on a terminal anyway)
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn export(args: &ExportArgs) -> Result<(), Failure> {
    Image::with(&args.image, Access::Read, |image| {
        let root = image.attr_at(b"/", false)?;
        let walk = Walk::new(image, b"/", root);
        if args.output == Path::new("-") {
            let out = BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout().lock());
            let out = write_archive(image, walk, out, args.quiet)?;
            return out.into_inner().map_err(|error| Failure::Output(error.into_error())).map(drop);
        }
        image.refuse_to_overwrite(&args.output)?;
        let output_failure = |error| Failure::host(&args.output, error);
        // Written beside the output and renamed over it when complete, so
        // a failure never leaves a truncated archive under that name.
        let (temp, file) = TempImage::create(&args.output, 0).map_err(output_failure)?;
        let out = write_archive(image, walk, BufWriter::with_capacity(OUTPUT_BUFFER, file), args.quiet)
            .map_err(|failure| match failure {
                Failure::Output(error) => output_failure(error),
                other => other,
            })?;
        let file = out.into_inner().map_err(|error| output_failure(error.into_error()))?;
        file.sync_all().map_err(output_failure)?;
        temp.commit().map_err(output_failure)
    })
}

/// Archives the walk to `out`; write errors come back as
/// [`Failure::Output`], image problems as warnings about their entries.
fn write_archive<W: Write>(image: &Image, mut walk: Walk, out: W, quiet: bool) -> Result<W, Failure> {
    let mut exporter = Exporter {
        image,
        tar: TarWriter::new(out),
        first_names: HashMap::new(),
        buffer: vec![0; 256 * BLOCK_SIZE],
        progress: Progress::for_stderr("blockfs export", None, quiet),
    };
    while let Some(node) = walk.next() {
        interrupt::check()?;
        if node.attr.kind == FileType::Directory {
            walk.enter(&node);
        }
        exporter.add(&node)?;
        exporter.progress.entry_done();
    }
    exporter.progress.finish();
    Ok(exporter.tar.finish()?)
}

struct Exporter<'a, W> {
    image: &'a Image,
    tar: TarWriter<W>,
    /// The member name of the first name of each hard-linked inode.
    first_names: HashMap<u32, Vec<u8>>,
    buffer: Vec<u8>,
    progress: Progress,
}

impl<W: Write> Exporter<'_, W> {
    fn add(&mut self, node: &Node) -> io::Result<()> {
        let attr = &node.attr;
        let name = member_name(node);
        let member = |kind| Member {
            name: &name,
            kind,
            perm: attr.perm,
            uid: attr.uid.into(),
            gid: attr.gid.into(),
            mtime: attr.mtime,
        };
        if let Some(first) = self.first_names.get(&attr.ino).filter(|_| node.is_hard_linked()).cloned() {
            return self.tar.header(&member(Kind::HardLink { target: &first }));
        }
        let target;
        let map = match attr.kind {
            FileType::Regular => self.data_map(node),
            _ => Vec::new(),
        };
        let kind = match attr.kind {
            // A file with holes is archived sparse, so they stay holes.
            FileType::Regular if map.len() <= MAX_SPARSE_REGIONS && map != [(0, attr.size)] => {
                Kind::Sparse { size: attr.size, map: &map }
            }
            FileType::Regular => Kind::Regular { size: attr.size },
            FileType::Directory => Kind::Directory,
            FileType::Symlink => match link_target(self.image, node) {
                Some(read) => {
                    target = read;
                    Kind::Symlink { target: &target }
                }
                None => return Ok(()),
            },
            FileType::CharDevice => Kind::CharDevice { rdev: attr.rdev },
            FileType::BlockDevice => Kind::BlockDevice { rdev: attr.rdev },
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => {
                self.image.warn(&node.path, "a socket cannot be archived; skipped");
                return Ok(());
            }
        };
        self.tar.header(&member(kind))?;
        match kind {
            Kind::Sparse { map, .. } => self.content(node, map)?,
            Kind::Regular { size } => self.content(node, &[(0, size)])?,
            _ => {}
        }
        if node.is_hard_linked() {
            self.first_names.insert(attr.ino, name);
        }
        Ok(())
    }

    /// Where a file's data is: its runs of blocks that are not all zeros
    /// (holes read as zeros), and a last empty region at the end when it
    /// ends in a hole, as GNU tar writes. What cannot be read counts as
    /// data, for [`content`](Self::content) to report.
    fn data_map(&mut self, node: &Node) -> Vec<(u64, u64)> {
        let size = node.attr.size;
        let mut map: Vec<(u64, u64)> = Vec::new();
        let mut offset = 0u64;
        while offset < size {
            let want = (size - offset).min(self.buffer.len() as u64) as usize;
            let runs = match self.image.fs.read(node.attr.ino, offset, &mut self.buffer[..want]) {
                Ok(read) if read > 0 => sparse::nonzero_runs(&self.buffer[..read], offset),
                _ => return vec![(0, size)],
            };
            for (from, to) in runs {
                let (start, end) = (offset + from as u64, offset + to as u64);
                match map.last_mut() {
                    Some((last_start, length)) if *last_start + *length == start => {
                        *length = end - *last_start
                    }
                    _ => map.push((start, end - start)),
                }
            }
            offset += want as u64;
        }
        if map.last().is_none_or(|&(start, length)| start + length < size) {
            map.push((size, 0));
        }
        map
    }

    /// Streams the `map` regions of a file's content; what cannot be read
    /// becomes zeros (the header already promised the size) and a warning.
    fn content(&mut self, node: &Node, map: &[(u64, u64)]) -> io::Result<()> {
        let mut problem = None;
        'regions: for &(start, length) in map {
            let mut offset = start;
            while offset < start + length {
                let want = (start + length - offset).min(self.buffer.len() as u64) as usize;
                match self.image.fs.read(node.attr.ino, offset, &mut self.buffer[..want]) {
                    Ok(0) => break 'regions,
                    Ok(read) => {
                        self.tar.content(&self.buffer[..read])?;
                        offset += read as u64;
                        self.progress.add_bytes(read as u64);
                        interrupt::check()?;
                    }
                    Err(error) => {
                        problem = Some(error.to_string());
                        break 'regions;
                    }
                }
            }
        }
        let missing = self.tar.end_content()?;
        if missing > 0 {
            let why = problem.unwrap_or_else(|| "file ended early".into());
            let size = node.attr.size;
            let message = format!("{why}: the last {missing} stored bytes of {size} are archived as zeros");
            self.image.warn(&node.path, message);
        }
        Ok(())
    }
}

/// `./` for the root, `dir/` for a directory, the relative path otherwise.
fn member_name(node: &Node) -> Vec<u8> {
    let mut name = match node.relative.is_empty() {
        true => b".".to_vec(),
        false => node.relative.clone(),
    };
    if node.attr.kind == FileType::Directory {
        name.push(b'/');
    }
    name
}
