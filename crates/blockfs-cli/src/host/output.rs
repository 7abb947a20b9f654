//! Writing the image file safely: the image is built in a temporary file
//! beside the output and renamed over it only when complete, so a failed
//! run leaves neither a half-written image nor a damaged previous file.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use blockfs::format::superblock::MAGIC;
use blockfs::format::BLOCK_SIZE;

use crate::image::lock::{self, Access, OpenError};

#[derive(Debug)]
pub enum TargetError {
    /// The output exists and is not a BlockFS image; `--force` overrides.
    NotAnImage(PathBuf),
    /// A directory, device or other non-regular file.
    NotARegularFile(PathBuf),
    /// The output is an image that a mount or another command has locked.
    InUse(PathBuf),
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::NotAnImage(path) => write!(
                f,
                "{}: exists and is not a BlockFS image; refusing to overwrite it (use --force)",
                path.display()
            ),
            TargetError::NotARegularFile(path) => {
                write!(f, "{}: exists and is not a regular file", path.display())
            }
            TargetError::InUse(path) => write!(
                f,
                "{}: image is in use (mounted, or locked by another blockfs command); refusing to replace it",
                path.display()
            ),
            TargetError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for TargetError {}

/// Checks that `output` may be replaced: it is absent, or a regular file
/// that already holds a BlockFS image or nothing (or anything, with
/// `force`) and is not in use, or a block device (formatted in place after
/// its own checks, `crate::image::blockdev`). An existing file comes back locked exclusively: holding it
/// until the new image is in place keeps a mount from starting on the
/// file about to be replaced.
pub fn check_target(output: &Path, force: bool) -> Result<Option<File>, TargetError> {
    let io_error = |error| TargetError::Io { path: output.to_owned(), error };
    let metadata = match fs::metadata(output) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(error)),
    };
    if metadata.file_type().is_block_device() {
        return Ok(None);
    }
    if !metadata.is_file() {
        return Err(TargetError::NotARegularFile(output.to_owned()));
    }
    let mut file = File::open(output).map_err(io_error)?;
    if !force && !image_or_blank(&mut file).map_err(io_error)? {
        return Err(TargetError::NotAnImage(output.to_owned()));
    }
    match lock::lock(&file, Access::Write) {
        Ok(()) => Ok(Some(file)),
        Err(OpenError::InUse) => Err(TargetError::InUse(output.to_owned())),
        Err(OpenError::Io(error)) => Err(io_error(error)),
    }
}

/// Whether the file holds a BlockFS image or nothing yet: empty, or a
/// first block of zeros (a fresh `truncate`d or `fallocate`d file, as
/// `mkfs -t blockfs` is often given).
fn image_or_blank(file: &mut File) -> io::Result<bool> {
    let mut head = Vec::with_capacity(BLOCK_SIZE);
    file.take(BLOCK_SIZE as u64).read_to_end(&mut head)?;
    let magic = head.first_chunk::<4>().is_some_and(|magic| u32::from_le_bytes(*magic) == MAGIC);
    Ok(magic || head.iter().all(|&byte| byte == 0))
}

/// A temporary image file, removed when dropped unless [`commit`]ted.
///
/// [`commit`]: TempImage::commit
#[derive(Debug)]
pub struct TempImage {
    temp: PathBuf,
    output: PathBuf,
    committed: bool,
}

impl TempImage {
    /// Creates `.{name}.tmp-{pid}` next to `output`, `length` bytes long
    /// and sparse: only blocks the library writes take disk space.
    pub fn create(output: &Path, length: u64) -> io::Result<(TempImage, File)> {
        let temp = temp_path(output)?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&temp)?;
        let guard = TempImage { temp, output: output.to_owned(), committed: false };
        file.set_len(length)?;
        Ok((guard, file))
    }

    /// Renames the finished image over the output. The caller has synced
    /// the file; the directory is synced too so the rename is durable.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.temp, &self.output)?;
        self.committed = true;
        File::open(parent_dir(&self.output))?.sync_all()
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the run is already failing with a better message.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn temp_path(output: &Path) -> io::Result<PathBuf> {
    let name = output
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(parent_dir(output).join(temp_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_sits_beside_the_output() {
        let pid = std::process::id();
        assert_eq!(
            temp_path(Path::new("out/rootfs.img")).unwrap(),
            PathBuf::from(format!("out/.rootfs.img.tmp-{pid}"))
        );
        assert_eq!(
            temp_path(Path::new("rootfs.img")).unwrap(),
            PathBuf::from(format!("./.rootfs.img.tmp-{pid}"))
        );
        assert!(temp_path(Path::new("/")).is_err());
    }
}
