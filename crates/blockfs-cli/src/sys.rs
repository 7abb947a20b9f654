//! The few system calls std does not wrap: advisory locks, finding a
//! file's data and holes, writing to an inherited descriptor, device and FIFO nodes, a symlink's own times,
//! and the effective user. Every unsafe block in the crate is here, each
//! passing only pointers that safe code has just made valid.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use blockfs::FileType;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `flock(LOCK_SH or LOCK_EX | LOCK_NB)`: never waits; a conflicting lock
/// held elsewhere gives an error of kind `WouldBlock`. The lock lasts
/// until `file` (its open file description) is closed.
pub fn try_flock(file: &File, exclusive: bool) -> io::Result<()> {
    let operation = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    // SAFETY: flock only takes a descriptor, which `file` keeps open.
    check(unsafe { libc::flock(file.as_raw_fd(), operation) })
}

/// `lseek(fd, from, SEEK_DATA or SEEK_HOLE)`: where the next data (or
/// hole) starts at or after `from`; `None` when there is no data past
/// `from` (ENXIO). The end of a file counts as a hole.
pub fn seek(file: &File, from: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    let from = libc::off_t::try_from(from).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: lseek only takes a descriptor, which `file` keeps open.
    match unsafe { libc::lseek(file.as_raw_fd(), from, whence) } {
        -1 => match io::Error::last_os_error() {
            error if error.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            error => Err(error),
        },
        at => Ok(Some(at as u64)),
    }
}

/// Writes all of `bytes` to descriptor `fd`, one the caller was handed
/// (fsck(8)'s progress pipe) and does not own.
pub fn write_fd(fd: i32, bytes: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        // SAFETY: the pointer and length describe `rest`, alive here.
        match unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) } {
            -1 => match io::Error::last_os_error() {
                error if error.kind() == io::ErrorKind::Interrupted => {}
                error => return Err(error),
            },
            written => done += written as usize,
        }
    }
    Ok(())
}

/// Creates a FIFO, socket or device node with permissions 0600 (the
/// caller sets the real ones after any chown, which would clear setuid).
pub fn mknod(path: &Path, kind: FileType, rdev: (u32, u32)) -> io::Result<()> {
    let type_bits = match kind {
        FileType::Fifo => libc::S_IFIFO,
        FileType::Socket => libc::S_IFSOCK,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a special file type")),
    };
    let path = c_path(path)?;
    let device = libc::makedev(rdev.0, rdev.1);
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::mknod(path.as_ptr(), type_bits | 0o600, device) })
}

/// Sets atime and mtime of `path` itself, never of a symlink's target
/// (std's `File::set_times` needs an open file, which a symlink,
/// FIFO or device node should not be opened for).
pub fn set_times_nofollow(path: &Path, atime: u32, mtime: u32) -> io::Result<()> {
    let path = c_path(path)?;
    let at = |seconds: u32| libc::timespec { tv_sec: seconds.into(), tv_nsec: 0 };
    let times = [at(atime), at(mtime)];
    // SAFETY: `path` is NUL-terminated, `times` holds the two timespecs
    // utimensat reads; both outlive the call.
    check(unsafe {
        libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    })
}

/// Whether this process may give files away (chown) and make devices.
pub fn is_root() -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
