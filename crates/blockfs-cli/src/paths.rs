//! Paths inside an image (absolute, `/`-separated bytes), and the one rule
//! for which entry names may be recreated on a host or in an archive.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use blockfs::format::dirent::is_dot_or_dotdot;
use clap::builder::{OsStringValueParser, TypedValueParser};

/// An absolute path inside an image, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePath(pub Vec<u8>);

impl ImagePath {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Clap parser for [`ImagePath`]: relative paths are a usage error, since
/// an image has no current directory to be relative to.
pub fn image_path() -> impl TypedValueParser<Value = ImagePath> {
    OsStringValueParser::new().try_map(|text: OsString| {
        let bytes = text.into_vec();
        if bytes.first() == Some(&b'/') {
            Ok(ImagePath(bytes))
        } else {
            Err(format!("{:?} is not an absolute path in the image", String::from_utf8_lossy(&bytes)))
        }
    })
}

/// `dir/name`, without doubling a trailing `/`.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Splits an absolute path into its parent and last component:
/// `/a/b/` gives (`/a`, `b`), `/a` gives (`/`, `a`); the root gives `None`.
pub fn split_last(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = path.iter().rposition(|&b| b != b'/')? + 1;
    let trimmed = &path[..end];
    let cut = trimmed.iter().rposition(|&b| b == b'/').map_or(0, |slash| slash + 1);
    let parent = trimmed[..cut].strip_suffix(b"/").filter(|p| !p.is_empty()).unwrap_or(b"/");
    Some((parent, &trimmed[cut..]))
}

/// The last component of a path (absolute or not), if it has one.
pub fn last_component(path: &[u8]) -> Option<&[u8]> {
    path.split(|&b| b == b'/').rfind(|c| !c.is_empty())
}

/// Why `name`, read from an untrusted image or archive, cannot be used
/// as one path component on a host; `None` when it can.
pub fn unsafe_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if is_dot_or_dotdot(name) {
        Some("name is . or ..")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains a NUL byte")
    } else {
        None
    }
}

/// A name for a message: quoted, with control and non-ASCII bytes escaped.
pub fn shown(name: &[u8]) -> String {
    format!("\"{}\"", name.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_paths() {
        assert_eq!(split_last(b"/a/b"), Some((&b"/a"[..], &b"b"[..])));
        assert_eq!(split_last(b"/a/b//"), Some((&b"/a"[..], &b"b"[..])));
        assert_eq!(split_last(b"/a"), Some((&b"/"[..], &b"a"[..])));
        assert_eq!(split_last(b"//a"), Some((&b"/"[..], &b"a"[..])));
        assert_eq!(split_last(b"/"), None);
        assert_eq!(split_last(b"///"), None);
        assert_eq!(last_component(b"../x/y/"), Some(&b"y"[..]));
        assert_eq!(last_component(b"name"), Some(&b"name"[..]));
        assert_eq!(last_component(b"/"), None);
        assert_eq!(join(b"/", b"a"), b"/a");
        assert_eq!(join(b"/a", b"b"), b"/a/b");
    }

    #[test]
    fn unsafe_names() {
        for name in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(unsafe_name(name).is_some(), "{name:?}");
        }
        for name in [&b"..."[..], b".hidden", b"a..b", b"caf\xe9"] {
            assert_eq!(unsafe_name(name), None, "{name:?}");
        }
        assert_eq!(shown(b"a/\0\xe9"), "\"a/\\x00\\xe9\"");
    }
}
