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
use blockfs::FileType;
use clap::Args;

use crate::blockfs::copy::walk::{link_target, Node, Walk};
use crate::host::output::TempImage;
use crate::image::lock::Access;
use crate::image::{Failure, Image};
use crate::interrupt;
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
}

pub fn export(args: &ExportArgs) -> Result<(), Failure> {
    Image::with(&args.image, Access::Read, |image| {
        let root = image.attr_at(b"/", false)?;
        let walk = Walk::new(image, b"/", root);
        if args.output == Path::new("-") {
            let out = BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout().lock());
            let out = write_archive(image, walk, out)?;
            return out.into_inner().map_err(|error| Failure::Output(error.into_error())).map(drop);
        }
        image.refuse_to_overwrite(&args.output)?;
        let output_failure = |error| Failure::host(&args.output, error);
        // Written beside the output and renamed over it when complete, so
        // a failure never leaves a truncated archive under that name.
        let (temp, file) = TempImage::create(&args.output, 0).map_err(output_failure)?;
        let out =
            write_archive(image, walk, BufWriter::with_capacity(OUTPUT_BUFFER, file)).map_err(|failure| {
                match failure {
                    Failure::Output(error) => output_failure(error),
                    other => other,
                }
            })?;
        let file = out.into_inner().map_err(|error| output_failure(error.into_error()))?;
        file.sync_all().map_err(output_failure)?;
        temp.commit().map_err(output_failure)
    })
}

/// Archives the walk to `out`; write errors come back as
/// [`Failure::Output`], image problems as warnings about their entries.
fn write_archive<W: Write>(image: &Image, mut walk: Walk, out: W) -> Result<W, Failure> {
    let mut exporter = Exporter {
        image,
        tar: TarWriter::new(out),
        first_names: HashMap::new(),
        buffer: vec![0; 256 * BLOCK_SIZE],
    };
    while let Some(node) = walk.next() {
        interrupt::check()?;
        if node.attr.kind == FileType::Directory {
            walk.enter(&node);
        }
        exporter.add(&node)?;
    }
    Ok(exporter.tar.finish()?)
}

struct Exporter<'a, W> {
    image: &'a Image,
    tar: TarWriter<W>,
    /// The member name of the first name of each hard-linked inode.
    first_names: HashMap<u32, Vec<u8>>,
    buffer: Vec<u8>,
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
        if let Some(first) = self.first_names.get(&attr.ino).filter(|_| node.is_hard_linked()) {
            return self.tar.header(&member(Kind::HardLink { target: first }));
        }
        let target;
        let kind = match attr.kind {
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
        if attr.kind == FileType::Regular {
            self.content(node)?;
        }
        if node.is_hard_linked() {
            self.first_names.insert(attr.ino, name);
        }
        Ok(())
    }

    /// Streams a file's content; what cannot be read becomes zeros (the
    /// header already promised the size) and a warning.
    fn content(&mut self, node: &Node) -> io::Result<()> {
        let size = node.attr.size;
        let mut offset = 0u64;
        let mut problem = None;
        while offset < size {
            let want = (size - offset).min(self.buffer.len() as u64) as usize;
            match self.image.fs.read(node.attr.ino, offset, &mut self.buffer[..want]) {
                Ok(0) => break,
                Ok(read) => {
                    self.tar.content(&self.buffer[..read])?;
                    offset += read as u64;
                    interrupt::check()?;
                }
                Err(error) => {
                    problem = Some(error.to_string());
                    break;
                }
            }
        }
        let missing = self.tar.end_content()?;
        if missing > 0 {
            let why = problem.unwrap_or_else(|| "file ended early".into());
            let message = format!("{why}: the last {missing} of {size} bytes are archived as zeros");
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
