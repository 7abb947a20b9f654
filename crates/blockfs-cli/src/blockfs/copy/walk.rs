//! A depth-first walk of an image subtree for `get` and `export`, which
//! treat the image as hostile: the walk never follows a symlink, enters
//! each directory once (a damaged image may link a directory twice or
//! into a loop), keeps its own stack (a deep tree cannot overflow the
//! call stack), and skips with a warning every entry whose name could not
//! be one path component on a host or repeats a name in its directory.
//! So every `relative` path it yields stays below the walk's start, and
//! names one object only.

use std::collections::HashSet;

use blockfs::{Attr, FileType};

use crate::image::Image;
use crate::paths::{join, shown, unsafe_name};

/// One object of the walked tree.
pub struct Node {
    /// Absolute path in the image, for messages.
    pub path: Vec<u8>,
    /// Path below the walk's start, `/`-separated safe names; empty for
    /// the start itself.
    pub relative: Vec<u8>,
    pub attr: Attr,
}

pub struct Walk<'a> {
    image: &'a Image,
    /// Nodes still to visit, the next one last.
    pending: Vec<Node>,
    /// Directories entered so far, by inode.
    entered: HashSet<u32>,
}

impl<'a> Walk<'a> {
    /// A walk that starts at `path` (whose attributes, not followed if it
    /// is a symlink, are `attr`).
    pub fn new(image: &'a Image, path: &[u8], attr: Attr) -> Self {
        let start = Node { path: path.to_vec(), relative: Vec::new(), attr };
        Walk { image, pending: vec![start], entered: HashSet::new() }
    }

    /// Queues the entries of directory `dir`, to be visited next in name
    /// order. Callers enter only the directories they could recreate.
    pub fn enter(&mut self, dir: &Node) {
        self.entered.insert(dir.attr.ino);
        let mut entries: Vec<(Vec<u8>, u32)> = match self.image.entries(dir.attr.ino) {
            Ok(entries) => entries.into_iter().map(|entry| (entry.name, entry.ino)).collect(),
            Err(error) => {
                self.image.warn(&dir.path, format_args!("cannot list directory: {error}"));
                return;
            }
        };
        entries.sort_unstable();
        // One `.` and one `..` belong to every directory; any more of
        // them are forged entries, and warned about below.
        let (mut dot, mut dotdot) = (false, false);
        entries.retain(|(name, _)| {
            let seen = match &name[..] {
                b"." => &mut dot,
                b".." => &mut dotdot,
                _ => return true,
            };
            std::mem::replace(seen, true)
        });
        // Two entries of one name would be one path: a copy could write
        // into the second through the first (a symlink). Keep the first.
        entries.dedup_by(|later, first| {
            let twice = later.0 == first.0;
            if twice {
                let message = format_args!("skipping entry {}: its name appears twice", shown(&later.0));
                self.image.warn(&dir.path, message);
            }
            twice
        });
        for (name, ino) in entries.into_iter().rev() {
            if let Some(reason) = unsafe_name(&name) {
                self.image.warn(&dir.path, format_args!("skipping entry {}: {reason}", shown(&name)));
                continue;
            }
            let path = join(&dir.path, &name);
            match self.image.fs.getattr(ino) {
                Ok(attr) => {
                    let relative = if dir.relative.is_empty() { name } else { join(&dir.relative, &name) };
                    self.pending.push(Node { path, relative, attr });
                }
                Err(error) => self.image.warn(&path, error),
            }
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Node;

    /// The next node; a directory already entered (a damaged image's
    /// loop, or a directory with two names) is skipped with a warning.
    fn next(&mut self) -> Option<Node> {
        loop {
            let node = self.pending.pop()?;
            if node.attr.kind == FileType::Directory && self.entered.contains(&node.attr.ino) {
                self.image.warn(&node.path, "directory reached twice (the image is damaged); skipped");
                continue;
            }
            return Some(node);
        }
    }
}

impl Node {
    /// Whether another name of this inode may come before or after it.
    pub fn is_hard_linked(&self) -> bool {
        self.attr.nlink > 1 && self.attr.kind != FileType::Directory
    }
}

/// A symlink's target, or `None` after a warning when it cannot be read
/// or could not be a host symlink's target (empty, or holding a NUL).
pub fn link_target(image: &Image, node: &Node) -> Option<Vec<u8>> {
    match image.fs.readlink(node.attr.ino) {
        Ok(target) if !target.is_empty() && !target.contains(&0) => Some(target),
        Ok(target) => {
            image.warn(&node.path, format_args!("unusable symlink target {}; skipped", shown(&target)));
            None
        }
        Err(error) => {
            image.warn(&node.path, format_args!("cannot read: {error}; skipped"));
            None
        }
    }
}
