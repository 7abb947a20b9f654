//! The `--attrs` file: ownership and permissions to give paths in the
//! image, for trees built by a user who cannot own files as root.
//!
//! One rule a line: `PATH UID GID [MODE]`. `#` starts a comment; blank
//! lines are skipped. PATH is absolute in the image (a trailing `/` is
//! ignored) and must exist there; UID and GID are decimal 0–65535; MODE is
//! octal up to 7777 and replaces the permission bits, keeping the type.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use blockfs::format::dirent::is_dot_or_dotdot;
use blockfs::{BlockDevice, FileSystem, SetAttr, ROOT_INO};

use crate::host::tree::{Entry, HostTree};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrRule {
    /// 1-based line number, for messages.
    pub line: usize,
    /// Absolute image path, without trailing `/` (except the root's own).
    pub path: Vec<u8>,
    pub uid: u16,
    pub gid: u16,
    pub perm: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrsFile {
    pub path: PathBuf,
    pub rules: Vec<AttrRule>,
}

/// What was wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    FieldCount(usize),
    RelativePath(String),
    BadId { which: &'static str, text: String },
    BadMode(String),
    NotInImage(String),
}

#[derive(Debug)]
pub enum AttrsError {
    Read {
        file: PathBuf,
        error: io::Error,
    },
    Line {
        file: PathBuf,
        line: usize,
        error: LineError,
    },
    /// The image refused the change a line asks for.
    Image {
        file: PathBuf,
        line: usize,
        error: blockfs::Error,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::FieldCount(found) => {
                write!(f, "expected PATH UID GID [MODE], found {found} fields")
            }
            LineError::RelativePath(path) => {
                write!(f, "path {path:?} must be absolute (start with /)")
            }
            LineError::BadId { which, text } => {
                write!(f, "{which} {text:?} is not a decimal number from 0 to 65535")
            }
            LineError::BadMode(text) => {
                write!(f, "mode {text:?} is not an octal number from 0 to 7777")
            }
            LineError::NotInImage(path) => write!(f, "{path} is not in the populated tree"),
        }
    }
}

impl fmt::Display for AttrsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrsError::Read { file, error } => write!(f, "{}: {error}", file.display()),
            AttrsError::Line { file, line, error } => {
                write!(f, "{}: line {line}: {error}", file.display())
            }
            AttrsError::Image { file, line, error } => {
                write!(f, "{}: line {line}: cannot apply: {error}", file.display())
            }
        }
    }
}

impl std::error::Error for AttrsError {}

/// Reads and parses an attributes file.
pub fn read(file: &Path) -> Result<AttrsFile, AttrsError> {
    let text = fs::read(file).map_err(|error| AttrsError::Read { file: file.to_owned(), error })?;
    let rules =
        parse(&text).map_err(|(line, error)| AttrsError::Line { file: file.to_owned(), line, error })?;
    Ok(AttrsFile { path: file.to_owned(), rules })
}

/// Parses the file's bytes (paths need not be UTF-8); an error carries
/// its line number.
pub fn parse(text: &[u8]) -> Result<Vec<AttrRule>, (usize, LineError)> {
    let mut rules = Vec::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let content = raw.split(|&b| b == b'#').next().unwrap_or_default();
        let fields: Vec<&[u8]> = content.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty()).collect();
        if fields.is_empty() {
            continue;
        }
        rules.push(parse_rule(line, &fields).map_err(|error| (line, error))?);
    }
    Ok(rules)
}

fn parse_rule(line: usize, fields: &[&[u8]]) -> Result<AttrRule, LineError> {
    let [path, uid, gid, rest @ ..] = fields else {
        return Err(LineError::FieldCount(fields.len()));
    };
    if rest.len() > 1 {
        return Err(LineError::FieldCount(fields.len()));
    }
    if path.first() != Some(&b'/') {
        return Err(LineError::RelativePath(lossy(path)));
    }
    let trimmed_len = path.iter().rposition(|&b| b != b'/').map_or(1, |last| last + 1);
    Ok(AttrRule {
        line,
        path: path[..trimmed_len].to_vec(),
        uid: parse_id("UID", uid)?,
        gid: parse_id("GID", gid)?,
        perm: rest.first().map(|mode| parse_mode(mode)).transpose()?,
    })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses digits only: Rust's integer parsers also take a leading `+`.
pub(crate) fn parse_digits(text: &[u8], radix: u32) -> Option<u32> {
    if text.is_empty() || !text.iter().all(|&b| (b as char).is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(text).ok()?, radix).ok()
}

fn parse_id(which: &'static str, text: &[u8]) -> Result<u16, LineError> {
    parse_digits(text, 10)
        .and_then(|id| u16::try_from(id).ok())
        .ok_or_else(|| LineError::BadId { which, text: lossy(text) })
}

fn parse_mode(text: &[u8]) -> Result<u16, LineError> {
    parse_digits(text, 8)
        .filter(|&mode| mode <= 0o7777)
        .map(|mode| mode as u16)
        .ok_or_else(|| LineError::BadMode(lossy(text)))
}

/// Applies the rules to the scanned tree (so they reach the image through
/// the normal copy), checking every path exists first-to-last; a later
/// rule for the same path wins.
pub fn apply(tree: &mut HostTree, file: &AttrsFile) -> Result<(), AttrsError> {
    for rule in &file.rules {
        let inode = find(&tree.root, &rule.path).ok_or_else(|| AttrsError::Line {
            file: file.path.clone(),
            line: rule.line,
            error: LineError::NotInImage(lossy(&rule.path)),
        })?;
        let target = &mut tree.inodes[inode];
        target.uid = rule.uid;
        target.gid = rule.gid;
        if let Some(perm) = rule.perm {
            target.perm = perm;
        }
    }
    Ok(())
}

/// Applies the rules to a populated image (`--populate ARCHIVE`, whose
/// members exist only once extracted), first to last; a later rule for
/// the same path wins. Paths are looked up without following symlinks.
pub fn apply_to_image<D: BlockDevice>(fs: &FileSystem<D>, file: &AttrsFile) -> Result<(), AttrsError> {
    for rule in &file.rules {
        let failed = |error| AttrsError::Image { file: file.path.clone(), line: rule.line, error };
        let ino = find_in_image(fs, &rule.path).map_err(failed)?.ok_or_else(|| AttrsError::Line {
            file: file.path.clone(),
            line: rule.line,
            error: LineError::NotInImage(lossy(&rule.path)),
        })?;
        let changes = SetAttr {
            uid: Some(rule.uid.into()),
            gid: Some(rule.gid.into()),
            perm: rule.perm,
            ..SetAttr::default()
        };
        fs.setattr(ino, &changes).map_err(failed)?;
    }
    Ok(())
}

/// The inode at an absolute image path, as [`find`] finds it in a tree.
fn find_in_image<D: BlockDevice>(fs: &FileSystem<D>, path: &[u8]) -> blockfs::Result<Option<u32>> {
    let mut ino = ROOT_INO;
    for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if is_dot_or_dotdot(component) {
            return Ok(None);
        }
        ino = match fs.lookup(ino, component) {
            Ok(found) => found.ino,
            Err(blockfs::Error::NotFound | blockfs::Error::NotDir) => return Ok(None),
            Err(error) => return Err(error),
        };
    }
    Ok(Some(ino))
}

/// The inode at an absolute image path; `.` and `..` are names like any
/// other here, and so are never found.
fn find(root: &Entry, path: &[u8]) -> Option<usize> {
    let mut current = root;
    for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let index = current.children.binary_search_by(|child| child.name[..].cmp(component)).ok()?;
        current = &current.children[index];
    }
    Some(current.inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(line: usize, path: &[u8], uid: u16, gid: u16, perm: Option<u16>) -> AttrRule {
        AttrRule { line, path: path.to_vec(), uid, gid, perm }
    }

    #[test]
    fn good_lines() {
        let text = b"# header\n\n/ 0 0 755\n/etc/ 1 2\n/tmp 0 0 1777 # sticky\n\t/bin/su  0 0 4755\r\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                rule(3, b"/", 0, 0, Some(0o755)),
                rule(4, b"/etc", 1, 2, None),
                rule(5, b"/tmp", 0, 0, Some(0o1777)),
                rule(6, b"/bin/su", 0, 0, Some(0o4755)),
            ]
        );
    }

    #[test]
    fn bad_lines_name_their_number() {
        let cases: [(&[u8], LineError); 8] = [
            (b"/a 0\n", LineError::FieldCount(2)),
            (b"\n/a 0 0 644 extra\n", LineError::FieldCount(5)),
            (b"etc 0 0\n", LineError::RelativePath("etc".into())),
            (b"/a 65536 0\n", LineError::BadId { which: "UID", text: "65536".into() }),
            (b"/a 0 -1\n", LineError::BadId { which: "GID", text: "-1".into() }),
            (b"/a +1 0\n", LineError::BadId { which: "UID", text: "+1".into() }),
            (b"/a 0 0 10000\n", LineError::BadMode("10000".into())),
            (b"/a 0 0 0o755\n", LineError::BadMode("0o755".into())),
        ];
        for (text, expected) in cases {
            let line = text.iter().take_while(|&&b| b == b'\n').count() + 1;
            assert_eq!(parse(text), Err((line, expected)), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn find_walks_sorted_children() {
        let leaf = |name: &[u8], inode| Entry { name: name.to_vec(), inode, children: Vec::new() };
        let etc =
            Entry { name: b"etc".to_vec(), inode: 1, children: vec![leaf(b"hostname", 2), leaf(b"motd", 3)] };
        let root = Entry { name: Vec::new(), inode: 0, children: vec![leaf(b"bin", 4), etc] };
        assert_eq!(find(&root, b"/"), Some(0));
        assert_eq!(find(&root, b"/etc/motd"), Some(3));
        assert_eq!(find(&root, b"//etc//hostname"), Some(2));
        assert_eq!(find(&root, b"/etc/nope"), None);
        assert_eq!(find(&root, b"/bin/.."), None);
    }
}
