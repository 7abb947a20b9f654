//! Is a FUSE filesystem mounted at a path? Read from /proc/self/mountinfo.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// True when a FUSE filesystem (a dead one included) is mounted at `path`;
/// false for a path that does not exist.
pub fn is_mounted(path: &Path) -> io::Result<bool> {
    let path = match path.canonicalize() {
        Ok(path) => path,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    let table = fs::read("/proc/self/mountinfo")?;
    let found = fuse_mount_points(&table).any(|point| point == path.as_os_str().as_bytes());
    Ok(found)
}

/// Mount points of the FUSE entries in a mountinfo table. A line reads
/// `id parent major:minor root MOUNT-POINT options [optional...] - TYPE
/// source super-options`, with space, tab, newline and backslash in paths
/// written as octal escapes.
fn fuse_mount_points(table: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    table.split(|&byte| byte == b'\n').filter_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&byte| byte == b' ').collect();
        let separator = fields.iter().position(|field| *field == b"-")?;
        let fs_type = fields.get(separator + 1)?;
        let is_fuse = *fs_type == b"fuse" || fs_type.starts_with(b"fuse.");
        is_fuse.then(|| unescape(fields.get(4)?)).flatten()
    })
}

fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'\\' && tail.len() >= 3 {
            let digits = std::str::from_utf8(&tail[..3]).ok()?;
            out.push(u8::from_str_radix(digits, 8).ok()?);
            rest = &tail[3..];
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fuse_mount_points_with_escapes() {
        let table = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            61 22 0:52 / /tmp/my\\040mount rw,nosuid,nodev shared:1 - fuse blockfs rw,user_id=0\n\
            62 22 0:53 / /mnt/b rw - fuse.blockfs blockfs rw\n\
            63 22 0:54 / /mnt/fuseblk rw - fuseblk /dev/sdb1 rw\n";
        let points: Vec<Vec<u8>> = fuse_mount_points(table).collect();
        assert_eq!(points, vec![b"/tmp/my mount".to_vec(), b"/mnt/b".to_vec()]);
    }

    #[test]
    fn proc_and_missing_paths_are_not_fuse_mounts() {
        assert!(!is_mounted(Path::new("/proc")).unwrap());
        assert!(!is_mounted(Path::new("/no/such/mount/point")).unwrap());
    }
}
