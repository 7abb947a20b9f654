//! What `blockfs mount` is given: a BlockFS image, mounted in place and
//! locked against a second writer, or a TAR archive, loaded into a RAM
//! filesystem that is fully writable and vanishes at unmount. Telling the
//! two apart is the library's job (`blockfs::rootfs`), as at boot.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use blockfs::format::BLOCK_SIZE;
use blockfs::rootfs::{self, Detected, LoadOptions};
use blockfs::{FileDevice, FileSystem, MountOptions};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Reason};
use crate::{serve, MountConfig};

/// An opened file, classified by its first block.
pub struct Source {
    path: PathBuf,
    file: File,
    kind: Detected,
}

impl Source {
    /// Opens `path` (read-only: a TAR archive need not be writable) and
    /// reads its first block to tell a BlockFS image from a TAR archive.
    pub fn probe(path: &Path) -> Result<Self, Error> {
        let io = |error| Error::new(path, Reason::Io(error));
        let mut file = File::open(path).map_err(io)?;
        let mut first_block = Vec::with_capacity(BLOCK_SIZE);
        file.by_ref().take(BLOCK_SIZE as u64).read_to_end(&mut first_block).map_err(io)?;
        match rootfs::detect_bytes(&first_block) {
            Detected::Unknown => Err(Error::new(path, Reason::NotImageOrTar)),
            kind => Ok(Source { path: path.to_owned(), file, kind }),
        }
    }

    /// The boot log's line for this source, naming the file where the
    /// kernel names its disk.
    fn message(&self) -> String {
        match self.kind {
            Detected::Tar => format!("[ROOTFS] Loading TAR rootfs from {}...", self.path.display()),
            _ => rootfs::BLOCKFS_MESSAGE.to_owned(),
        }
    }

    /// Mounts the filesystem at `mountpoint` and serves it until unmounted.
    /// `announce` gets the boot log's line for this source once the
    /// archive has loaded or the image has mounted, before serving.
    pub fn serve(
        self,
        mountpoint: &Path,
        config: &MountConfig,
        announce: impl FnOnce(&str) -> io::Result<()>,
    ) -> Result<(), Error> {
        let message = self.message();
        let announced = |path: &Path| announce(&message).map_err(|error| Error::new(path, Reason::Io(error)));
        if self.kind == Detected::Tar {
            let path = self.path.clone();
            let fs = self.load_tar()?;
            announced(&path)?;
            // Syncing RAM to RAM would make nothing durable.
            let config = MountConfig { writeback: None, ..config.clone() };
            return serve(fs, &path, mountpoint, &config);
        }
        let fail = |reason| Error::new(&self.path, reason);
        let lock = self.lock(config.read_only)?;
        let file = lock.try_clone().map_err(|error| fail(Reason::Io(error)))?;
        let device =
            FileDevice::from_file(file, !config.read_only).map_err(|error| fail(Reason::Io(error)))?;
        let options = MountOptions {
            cache_blocks: config.cache_blocks,
            read_only: config.read_only,
            ..MountOptions::default()
        };
        let fs = FileSystem::mount(device, options).map_err(|error| fail(Reason::Filesystem(error)))?;
        announced(&self.path)?;
        // The lock lives until the image is unmounted and closed.
        let served = serve(fs, &self.path, mountpoint, config);
        drop(lock);
        served
    }

    fn load_tar(mut self) -> Result<FileSystem<blockfs::MemDevice>, Error> {
        let mut archive = Vec::new();
        self.file
            .rewind()
            .and_then(|()| self.file.read_to_end(&mut archive))
            .map_err(|error| Error::new(&self.path, Reason::Io(error)))?;
        rootfs::load_tar(&archive, &LoadOptions::default())
            .map_err(|error| Error::new(&self.path, Reason::Tar(error)))
    }

    /// Locks the image: exclusively to write it, shared to read it, so
    /// a writer never changes an image under another mount's cache. A
    /// block device is also opened exclusively (`O_EXCL`) to write it, so
    /// one mounted by the kernel, or being formatted, is refused.
    fn lock(&self, read_only: bool) -> Result<Flock<File>, Error> {
        let io = |error| Error::new(&self.path, Reason::Io(error));
        let (file, mode) = if read_only {
            (self.file.try_clone().map_err(io)?, FlockArg::LockSharedNonblock)
        } else {
            let mut options = OpenOptions::new();
            options.read(true).write(true);
            if self.file.metadata().map_err(io)?.file_type().is_block_device() {
                options.custom_flags(nix::libc::O_EXCL);
            }
            let file = options.open(&self.path).map_err(|error| match error.raw_os_error() {
                Some(nix::libc::EBUSY) => Error::new(&self.path, Reason::InUse),
                _ => io(error),
            })?;
            (file, FlockArg::LockExclusiveNonblock)
        };
        Flock::lock(file, mode).map_err(|(_, errno)| match errno {
            Errno::EWOULDBLOCK => Error::new(&self.path, Reason::InUse),
            errno => io(io::Error::from(errno)),
        })
    }
}
