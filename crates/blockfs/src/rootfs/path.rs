//! Archive member paths made safe to create: everything lands inside the
//! root, whatever the archive says.

use alloc::vec::Vec;

use crate::format::dirent::MAX_NAME_LEN;

use super::error::LoadError;

/// `path` relative to the root, components joined by `/` (empty for the
/// root itself). Leading `/` and `./`, empty and `.` components go, as
/// tar extraction drops them; a `..` component is refused, so nothing is
/// created outside the root; every name must fit a directory entry.
pub fn normalize(path: &[u8]) -> Result<Vec<u8>, LoadError> {
    let mut normal = Vec::with_capacity(path.len());
    for name in components(path) {
        if name == b".." {
            return Err(LoadError::UnsafePath { path: path.to_vec() });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(LoadError::NameTooLong { path: path.to_vec() });
        }
        if !normal.is_empty() {
            normal.push(b'/');
        }
        normal.extend_from_slice(name);
    }
    Ok(normal)
}

/// The names along `path`, without empty and `.` components.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&byte| byte == b'/').filter(|name| !name.is_empty() && *name != b".")
}

/// A normalized, non-empty path's parent and last name.
pub fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&byte| byte == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (&[], path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_slashes_and_dots_go() {
        assert_eq!(normalize(b"./a/b/").unwrap(), b"a/b");
        assert_eq!(normalize(b"/etc//x").unwrap(), b"etc/x");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a/./b").unwrap(), b"a/b");
    }

    #[test]
    fn parent_components_and_long_names_are_refused() {
        assert!(matches!(normalize(b"../escape"), Err(LoadError::UnsafePath { .. })));
        assert!(matches!(normalize(b"a/../../b"), Err(LoadError::UnsafePath { .. })));
        let long = [b'n'; MAX_NAME_LEN + 1];
        assert!(matches!(normalize(&long), Err(LoadError::NameTooLong { .. })));
        assert!(normalize(&long[1..]).is_ok());
    }

    #[test]
    fn split_last_names_parent_and_leaf() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
    }
}
