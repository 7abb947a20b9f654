//! Model test: random operation sequences run against the library and
//! against a small in-memory model of POSIX semantics; every result and
//! error must agree, and the whole tree is compared after remounts and at
//! the end. The cache is as small as the library allows, so eviction and
//! write-back happen on nearly every operation.

use std::collections::{BTreeMap, BTreeSet};

use blockfs::fs::{format, NewInode, RenameFlags};
use blockfs::{Error, FileSystem, FileType, FormatOptions, MemDevice, MountOptions, SetAttr, ROOT_INO};
use proptest::prelude::*;

const BLOCKS: u32 = 8192;
const INODES: u32 = 1024;
/// Writes and truncates stay below this, past the single-indirect range.
const MAX_OFFSET: u64 = 5 << 20;

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: u16,
        name: u16,
        perm: u16,
    },
    Mkdir {
        dir: u16,
        name: u16,
    },
    Symlink {
        dir: u16,
        name: u16,
        target: u16,
    },
    Write {
        file: u16,
        offset: u64,
        len: u16,
        byte: u8,
    },
    Truncate {
        file: u16,
        size: u64,
    },
    Read {
        file: u16,
        offset: u64,
        len: u16,
    },
    Unlink {
        dir: u16,
        name: u16,
    },
    Rmdir {
        dir: u16,
        name: u16,
    },
    Rename {
        dir: u16,
        name: u16,
        to_dir: u16,
        to_name: u16,
        no_replace: bool,
    },
    Link {
        file: u16,
        dir: u16,
        name: u16,
    },
    Chmod {
        node: u16,
        perm: u16,
        uid: u16,
    },
    /// A change of owner that drops set-ID bits, as a FUSE server with
    /// `FUSE_HANDLE_KILLPRIV` asks.
    Chown {
        node: u16,
        uid: u16,
    },
    CreateMany {
        dir: u16,
        count: u16,
    },
    Open {
        file: u16,
    },
    Close {
        handle: u16,
    },
    WriteOpen {
        handle: u16,
        offset: u64,
        len: u16,
        byte: u8,
    },
    ReadOpen {
        handle: u16,
    },
    Readdir {
        dir: u16,
        stop_after: u8,
    },
    Remount,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let index = any::<u16>();
    let offset = prop_oneof![0u64..20_000, 0u64..MAX_OFFSET];
    prop_oneof![
        4 => (index, index, 0u16..0o7777).prop_map(|(dir, name, perm)| Op::Create { dir, name, perm }),
        3 => (index, index).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        1 => (index, index, index).prop_map(|(dir, name, target)| Op::Symlink { dir, name, target }),
        5 => (index, offset.clone(), 0u16..9000, any::<u8>())
            .prop_map(|(file, offset, len, byte)| Op::Write { file, offset, len, byte }),
        2 => (index, offset.clone()).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (index, offset.clone(), 0u16..9000).prop_map(|(file, offset, len)| Op::Read { file, offset, len }),
        2 => (index, index).prop_map(|(dir, name)| Op::Unlink { dir, name }),
        2 => (index, index).prop_map(|(dir, name)| Op::Rmdir { dir, name }),
        3 => (index, index, index, index, any::<bool>()).prop_map(|(dir, name, to_dir, to_name, no_replace)| {
            Op::Rename { dir, name, to_dir, to_name, no_replace }
        }),
        1 => (index, index, index).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        1 => (index, 0u16..0o7777, 0u16..3).prop_map(|(node, perm, uid)| Op::Chmod { node, perm, uid }),
        1 => (index, 0u16..3).prop_map(|(node, uid)| Op::Chown { node, uid }),
        1 => (index, 1u16..250).prop_map(|(dir, count)| Op::CreateMany { dir, count }),
        1 => index.prop_map(|file| Op::Open { file }),
        1 => index.prop_map(|handle| Op::Close { handle }),
        1 => (index, offset, 0u16..5000, any::<u8>())
            .prop_map(|(handle, offset, len, byte)| Op::WriteOpen { handle, offset, len, byte }),
        1 => index.prop_map(|handle| Op::ReadOpen { handle }),
        1 => (index, any::<u8>()).prop_map(|(dir, stop_after)| Op::Readdir { dir, stop_after }),
        1 => Just(Op::Remount),
    ]
}

/// Names: a few short ones that collide often, numbered ones that fill
/// directories past one block, and a 255-byte one.
fn name_of(index: u16) -> Vec<u8> {
    match index % 420 {
        0 => b"a".to_vec(),
        1 => b"b".to_vec(),
        2 => b"c".to_vec(),
        3 => b"dir".to_vec(),
        4 => vec![b'L'; 255],
        5 => vec![b'M'; 100],
        n => format!("entry-{:04}", n).into_bytes(),
    }
}

#[derive(Clone, Debug)]
enum Node {
    File { data: Vec<u8> },
    Dir { children: BTreeMap<Vec<u8>, u32>, parent: u32 },
    Symlink { target: Vec<u8> },
}

#[derive(Clone, Debug)]
struct ModelInode {
    node: Node,
    perm: u16,
    uid: u16,
    links: u32,
}

#[derive(Default)]
struct Model {
    inodes: BTreeMap<u32, ModelInode>,
    /// Handles: inode numbers, possibly of unlinked files.
    handles: Vec<u32>,
}

type Outcome = Result<(), i32>;

fn errno(error: Error) -> i32 {
    error.errno()
}

fn outcome<T>(result: Result<T, Error>) -> Outcome {
    result.map(|_| ()).map_err(errno)
}

impl Model {
    fn new() -> Self {
        let mut model = Model::default();
        model.inodes.insert(
            ROOT_INO,
            ModelInode {
                node: Node::Dir { children: BTreeMap::new(), parent: ROOT_INO },
                perm: 0o755,
                uid: 0,
                links: 2,
            },
        );
        model
    }

    fn children(&self, dir: u32) -> &BTreeMap<Vec<u8>, u32> {
        match &self.inodes[&dir].node {
            Node::Dir { children, .. } => children,
            _ => panic!("not a dir"),
        }
    }

    fn children_mut(&mut self, dir: u32) -> &mut BTreeMap<Vec<u8>, u32> {
        match &mut self.inodes.get_mut(&dir).unwrap().node {
            Node::Dir { children, .. } => children,
            _ => panic!("not a dir"),
        }
    }

    fn is_dir(&self, ino: u32) -> bool {
        matches!(self.inodes[&ino].node, Node::Dir { .. })
    }

    fn all_of(&self, want_dir: Option<bool>) -> Vec<u32> {
        // Reachable inodes in a stable order.
        let mut out = Vec::new();
        let mut stack = vec![ROOT_INO];
        let mut seen = BTreeSet::new();
        while let Some(dir) = stack.pop() {
            if want_dir != Some(false) {
                out.push(dir);
            }
            for &child in self.children(dir).values().rev() {
                if self.is_dir(child) {
                    stack.push(child);
                } else if want_dir != Some(true) && seen.insert(child) {
                    out.push(child);
                }
            }
        }
        out
    }

    fn pick(&self, index: u16, want_dir: Option<bool>) -> u32 {
        let all = self.all_of(want_dir);
        if all.is_empty() {
            ROOT_INO
        } else {
            all[index as usize % all.len()]
        }
    }

    fn files(&self) -> Vec<u32> {
        self.all_of(Some(false))
            .into_iter()
            .filter(|ino| matches!(self.inodes[ino].node, Node::File { .. }))
            .collect()
    }

    fn live_inodes(&self) -> usize {
        self.inodes.len()
    }

    fn is_ancestor(&self, ancestor: u32, mut ino: u32) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            ino = match &self.inodes[&ino].node {
                Node::Dir { parent, .. } => *parent,
                _ => unreachable!(),
            };
        }
    }

    fn drop_link(&mut self, ino: u32) {
        let entry = self.inodes.get_mut(&ino).unwrap();
        entry.links = if matches!(entry.node, Node::Dir { .. }) { 0 } else { entry.links - 1 };
        if entry.links == 0 && !self.handles.contains(&ino) {
            self.inodes.remove(&ino);
        }
    }
}

struct Harness {
    fs: Option<FileSystem<MemDevice>>,
    model: Model,
    /// Inodes ordinary files may use (the journal holds one more).
    usable_inodes: usize,
    system_inodes: u32,
}

fn clock() -> u32 {
    1_700_000_000
}

fn mount_options() -> MountOptions {
    MountOptions {
        cache_blocks: 8,
        read_only: false,
        relatime: false,
        journal: true,
        record_mount: true,
        clock,
    }
}

fn new_inode(perm: u16) -> NewInode {
    NewInode { perm, uid: 0, gid: 0 }
}

impl Harness {
    fn new(journal: bool) -> Self {
        let mut options = FormatOptions::new(BLOCKS);
        options.inode_count = Some(INODES);
        options.journal = journal;
        let device = format(MemDevice::new(BLOCKS), &options).unwrap();
        let fs = FileSystem::mount(device, mount_options()).unwrap();
        assert_eq!(fs.has_journal(), journal);
        let statfs = fs.statfs();
        let system_inodes = statfs.inodes - statfs.free_inodes - 1;
        assert_eq!(system_inodes, journal as u32);
        let usable_inodes = (statfs.inodes - system_inodes) as usize;
        Harness { fs: Some(fs), model: Model::new(), usable_inodes, system_inodes }
    }

    fn fs(&self) -> &FileSystem<MemDevice> {
        self.fs.as_ref().unwrap()
    }

    fn remount(&mut self) {
        for ino in std::mem::take(&mut self.model.handles) {
            self.fs().release(ino).unwrap();
            if self.model.inodes.get(&ino).is_some_and(|node| node.links == 0) {
                self.model.inodes.remove(&ino);
            }
        }
        let device = self.fs.take().unwrap().unmount().unwrap();
        self.fs = Some(FileSystem::mount(device, mount_options()).unwrap());
    }

    fn full_of_inodes(&self) -> bool {
        self.model.live_inodes() >= self.usable_inodes
    }

    /// Creates a node in both, checking the result agrees.
    fn create_node(&mut self, dir: u32, name: Vec<u8>, node: Node, perm: u16) {
        let expected = if self.model.children(dir).contains_key(&name) {
            Err(errno(Error::Exists))
        } else if self.full_of_inodes() {
            Err(errno(Error::NoSpace))
        } else {
            Ok(())
        };
        let fs = self.fs();
        let result = match &node {
            Node::File { .. } => fs.create(dir, &name, new_inode(perm)),
            Node::Dir { .. } => fs.mkdir(dir, &name, new_inode(perm)),
            Node::Symlink { target } => fs.symlink(dir, &name, target, 0, 0),
        };
        assert_eq!(outcome(result), expected, "create {:?} in {dir}", String::from_utf8_lossy(&name));
        if let Ok(attr) = result {
            let is_dir = matches!(node, Node::Dir { .. });
            let node = match node {
                Node::Dir { children, .. } => Node::Dir { children, parent: dir },
                other => other,
            };
            let perm = if matches!(node, Node::Symlink { .. }) { 0o777 } else { perm };
            assert!(!self.model.inodes.contains_key(&attr.ino), "inode {} reused while live", attr.ino);
            self.model
                .inodes
                .insert(attr.ino, ModelInode { node, perm, uid: 0, links: if is_dir { 2 } else { 1 } });
            self.model.children_mut(dir).insert(name, attr.ino);
            if is_dir {
                self.model.inodes.get_mut(&dir).unwrap().links += 1;
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create { dir, name, perm } => {
                let dir = self.model.pick(dir, Some(true));
                self.create_node(dir, name_of(name), Node::File { data: Vec::new() }, perm);
            }
            Op::Mkdir { dir, name } => {
                let dir = self.model.pick(dir, Some(true));
                let node = Node::Dir { children: BTreeMap::new(), parent: dir };
                self.create_node(dir, name_of(name), node, 0o755);
            }
            Op::Symlink { dir, name, target } => {
                let dir = self.model.pick(dir, Some(true));
                let target = format!("../target/{}", String::from_utf8_lossy(&name_of(target))).into_bytes();
                self.create_node(dir, name_of(name), Node::Symlink { target }, 0o777);
            }
            Op::CreateMany { dir, count } => {
                let dir = self.model.pick(dir, Some(true));
                for index in 0..count {
                    self.create_node(dir, name_of(6 + index), Node::File { data: Vec::new() }, 0o644);
                }
            }
            Op::Write { file, offset, len, byte } => {
                let files = self.model.files();
                if let Some(&ino) = files.get(file as usize % files.len().max(1)) {
                    self.write(ino, offset, len, byte);
                }
            }
            Op::WriteOpen { handle, offset, len, byte } => {
                if let Some(&ino) = self.model.handles.get(handle as usize % self.model.handles.len().max(1))
                {
                    self.write(ino, offset, len, byte);
                }
            }
            Op::Truncate { file, size } => {
                let files = self.model.files();
                if let Some(&ino) = files.get(file as usize % files.len().max(1)) {
                    let result = self.fs().setattr(ino, &SetAttr { size: Some(size), ..SetAttr::default() });
                    assert_eq!(result.map(|a| a.size), Ok(size));
                    if let Node::File { data } = &mut self.model.inodes.get_mut(&ino).unwrap().node {
                        data.resize(size as usize, 0);
                    }
                }
            }
            Op::Read { file, offset, len } => {
                let files = self.model.files();
                if let Some(&ino) = files.get(file as usize % files.len().max(1)) {
                    self.check_read(ino, offset, len as usize);
                }
            }
            Op::ReadOpen { handle } => {
                if let Some(&ino) = self.model.handles.get(handle as usize % self.model.handles.len().max(1))
                {
                    self.check_read(ino, 0, MAX_OFFSET as usize);
                }
            }
            Op::Unlink { dir, name } => {
                let dir = self.model.pick(dir, Some(true));
                let name = name_of(name);
                let expected = match self.model.children(dir).get(&name) {
                    None => Err(errno(Error::NotFound)),
                    Some(&ino) if self.model.is_dir(ino) => Err(errno(Error::IsDir)),
                    Some(_) => Ok(()),
                };
                assert_eq!(outcome(self.fs().unlink(dir, &name)), expected);
                if expected.is_ok() {
                    let ino = self.model.children_mut(dir).remove(&name).unwrap();
                    self.model.drop_link(ino);
                }
            }
            Op::Rmdir { dir, name } => {
                let dir = self.model.pick(dir, Some(true));
                let name = name_of(name);
                let expected = match self.model.children(dir).get(&name) {
                    None => Err(errno(Error::NotFound)),
                    Some(&ino) if !self.model.is_dir(ino) => Err(errno(Error::NotDir)),
                    Some(&ino) if !self.model.children(ino).is_empty() => Err(errno(Error::NotEmpty)),
                    Some(_) => Ok(()),
                };
                assert_eq!(outcome(self.fs().rmdir(dir, &name)), expected);
                if expected.is_ok() {
                    let ino = self.model.children_mut(dir).remove(&name).unwrap();
                    self.model.inodes.get_mut(&dir).unwrap().links -= 1;
                    self.model.drop_link(ino);
                }
            }
            Op::Rename { dir, name, to_dir, to_name, no_replace } => {
                // Pick a source that usually exists: an entry of `dir`.
                let dir = self.model.pick(dir, Some(true));
                let names: Vec<Vec<u8>> = self.model.children(dir).keys().cloned().collect();
                let name =
                    if names.is_empty() { name_of(name) } else { names[name as usize % names.len()].clone() };
                let to_dir = self.model.pick(to_dir, Some(true));
                let to_name = name_of(to_name);
                self.rename(dir, name, to_dir, to_name, no_replace);
            }
            Op::Link { file, dir, name } => {
                let files = self.model.files();
                let Some(&ino) = files.get(file as usize % files.len().max(1)) else {
                    return;
                };
                let dir = self.model.pick(dir, Some(true));
                let name = name_of(name);
                let expected = if self.model.children(dir).contains_key(&name) {
                    Err(errno(Error::Exists))
                } else {
                    Ok(())
                };
                let result = self.fs().link(ino, dir, &name);
                assert_eq!(outcome(result), expected);
                if expected.is_ok() {
                    self.model.children_mut(dir).insert(name, ino);
                    self.model.inodes.get_mut(&ino).unwrap().links += 1;
                    assert_eq!(result.unwrap().nlink as u32, self.model.inodes[&ino].links);
                }
            }
            Op::Chmod { node, perm, uid } => {
                let ino = self.model.pick(node, None);
                let changes = SetAttr { perm: Some(perm), uid: Some(uid as u32), ..SetAttr::default() };
                let attr = self.fs().setattr(ino, &changes).unwrap();
                assert_eq!((attr.perm, attr.uid), (perm, uid));
                let entry = self.model.inodes.get_mut(&ino).unwrap();
                entry.perm = perm;
                entry.uid = uid;
            }
            Op::Chown { node, uid } => {
                let ino = self.model.pick(node, None);
                let changes = SetAttr { uid: Some(uid as u32), drop_privileges: true, ..SetAttr::default() };
                let attr = self.fs().setattr(ino, &changes).unwrap();
                let entry = self.model.inodes.get_mut(&ino).unwrap();
                if !matches!(entry.node, Node::Dir { .. }) {
                    // Set-user-ID always; set-group-ID when the group may run it.
                    entry.perm &= !0o4000;
                    if entry.perm & 0o2010 == 0o2010 {
                        entry.perm &= !0o2000;
                    }
                }
                entry.uid = uid;
                assert_eq!((attr.perm, attr.uid), (entry.perm, uid));
            }
            Op::Open { file } => {
                let files = self.model.files();
                if let Some(&ino) = files.get(file as usize % files.len().max(1)) {
                    self.fs().open(ino).unwrap();
                    self.model.handles.push(ino);
                }
            }
            Op::Close { handle } => {
                if self.model.handles.is_empty() {
                    return;
                }
                let ino = self.model.handles.remove(handle as usize % self.model.handles.len());
                self.fs().release(ino).unwrap();
                if self.model.inodes[&ino].links == 0 && !self.model.handles.contains(&ino) {
                    self.model.inodes.remove(&ino);
                    assert_eq!(self.fs().getattr(ino).map_err(errno), Err(errno(Error::NotFound)));
                }
            }
            Op::Readdir { dir, stop_after } => {
                let dir = self.model.pick(dir, Some(true));
                self.check_readdir_resumes(dir, stop_after as usize % 7 + 1);
            }
            Op::Remount => {
                self.remount();
                self.check_tree();
            }
        }
    }

    fn write(&mut self, ino: u32, offset: u64, len: u16, byte: u8) {
        let data = vec![byte; len as usize];
        let written = self.fs().write(ino, offset, &data).unwrap();
        assert_eq!(written, data.len());
        if data.is_empty() {
            return;
        }
        if let Node::File { data: content } = &mut self.model.inodes.get_mut(&ino).unwrap().node {
            let end = offset as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        }
    }

    fn check_read(&self, ino: u32, offset: u64, len: usize) {
        let Node::File { data } = &self.model.inodes[&ino].node else {
            return;
        };
        let mut buf = vec![0xAAu8; len];
        let read = self.fs().read(ino, offset, &mut buf).unwrap();
        let start = (offset as usize).min(data.len());
        let end = (start + len).min(data.len());
        assert_eq!(read, end - start, "read length of inode {ino}");
        assert!(buf[..read] == data[start..end], "content of inode {ino} at {offset}");
    }

    fn rename(&mut self, dir: u32, name: Vec<u8>, to_dir: u32, to_name: Vec<u8>, no_replace: bool) {
        let model = &self.model;
        let source = model.children(dir).get(&name).copied();
        let existing = model.children(to_dir).get(&to_name).copied();
        let expected = match source {
            None => Err(errno(Error::NotFound)),
            Some(_) if existing.is_some() && no_replace => Err(errno(Error::Exists)),
            Some(source) if existing == Some(source) => Ok(()),
            Some(source) if model.is_dir(source) && to_dir != dir && model.is_ancestor(source, to_dir) => {
                Err(errno(Error::InvalidArgument))
            }
            Some(source) => match existing {
                Some(target) if model.is_dir(source) && !model.is_dir(target) => Err(errno(Error::NotDir)),
                Some(target) if !model.is_dir(source) && model.is_dir(target) => Err(errno(Error::IsDir)),
                Some(target) if model.is_dir(target) && !model.children(target).is_empty() => {
                    Err(errno(Error::NotEmpty))
                }
                _ => Ok(()),
            },
        };
        let flags = RenameFlags { no_replace };
        let result = self.fs().rename(dir, &name, to_dir, &to_name, flags);
        assert_eq!(
            outcome(result),
            expected,
            "rename {:?} in {dir} to {:?} in {to_dir}",
            String::from_utf8_lossy(&name),
            String::from_utf8_lossy(&to_name)
        );
        let (Ok(()), Some(source)) = (expected, source) else {
            return;
        };
        if existing == Some(source) {
            return;
        }
        let source_is_dir = self.model.is_dir(source);
        if let Some(target) = existing {
            if self.model.is_dir(target) {
                self.model.inodes.get_mut(&to_dir).unwrap().links -= 1;
            }
            self.model.drop_link(target);
        }
        self.model.children_mut(dir).remove(&name);
        self.model.children_mut(to_dir).insert(to_name, source);
        if source_is_dir {
            self.model.inodes.get_mut(&dir).unwrap().links -= 1;
            self.model.inodes.get_mut(&to_dir).unwrap().links += 1;
            if let Node::Dir { parent, .. } = &mut self.model.inodes.get_mut(&source).unwrap().node {
                *parent = to_dir;
            }
        }
    }

    /// Reads a directory in small batches, resuming from the returned
    /// cookies; the union must be exactly the model's entries.
    fn check_readdir_resumes(&self, dir: u32, batch: usize) {
        let mut seen = BTreeMap::new();
        let mut offset = 0;
        loop {
            let mut taken = 0;
            let mut next = offset;
            self.fs()
                .readdir(dir, offset, &mut |entry, cookie| {
                    if taken == batch {
                        return false;
                    }
                    assert!(seen.insert(entry.name.clone(), entry.ino).is_none(), "duplicate entry");
                    taken += 1;
                    next = cookie;
                    true
                })
                .unwrap();
            if taken == 0 {
                break;
            }
            offset = next;
        }
        self.compare_listing(dir, &seen);
    }

    fn compare_listing(&self, dir: u32, listed: &BTreeMap<Vec<u8>, u32>) {
        let mut expected = self.model.children(dir).clone();
        expected.insert(b".".to_vec(), dir);
        let parent = match self.model.inodes[&dir].node {
            Node::Dir { parent, .. } => parent,
            _ => unreachable!(),
        };
        expected.insert(b"..".to_vec(), parent);
        assert_eq!(listed, &expected, "listing of directory {dir}");
    }

    /// Walks the whole tree through the library and compares it with the model.
    fn check_tree(&self) {
        let fs = self.fs();
        for (&ino, entry) in &self.model.inodes {
            let attr = fs.getattr(ino).unwrap();
            assert_eq!(attr.perm, entry.perm, "perm of {ino}");
            assert_eq!(attr.uid, entry.uid, "uid of {ino}");
            assert_eq!(attr.nlink as u32, entry.links, "links of {ino}");
            match &entry.node {
                Node::File { data } => {
                    assert_eq!(attr.kind, FileType::Regular);
                    assert_eq!(attr.size, data.len() as u64, "size of {ino}");
                    let mut buf = vec![0u8; data.len()];
                    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), data.len());
                    assert!(&buf == data, "content of {ino}");
                }
                Node::Symlink { target } => {
                    assert_eq!(attr.kind, FileType::Symlink);
                    assert_eq!(&fs.readlink(ino).unwrap(), target);
                }
                Node::Dir { children, .. } => {
                    assert_eq!(attr.kind, FileType::Directory);
                    let mut listed = BTreeMap::new();
                    fs.readdir(ino, 0, &mut |entry, _| {
                        listed.insert(entry.name.clone(), entry.ino);
                        true
                    })
                    .unwrap();
                    self.compare_listing(ino, &listed);
                    for (name, &child) in children {
                        assert_eq!(fs.lookup(ino, name).unwrap().ino, child);
                    }
                }
            }
        }
        let statfs = fs.statfs();
        let open_orphans = self.model.inodes.values().filter(|node| node.links == 0).count();
        assert_eq!(
            statfs.inodes - statfs.free_inodes,
            self.model.inodes.len() as u32 + self.system_inodes,
            "inodes in use ({} open orphans)",
            open_orphans
        );
    }
}

fn run(ops: &[Op]) {
    run_on(ops, true);
    run_on(ops, false);
}

fn run_on(ops: &[Op], journal: bool) {
    let mut harness = Harness::new(journal);
    for op in ops {
        harness.apply(op);
    }
    harness.check_tree();
    harness.remount();
    harness.check_tree();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BLOCKFS_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn operations_agree_with_the_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run(&ops);
    }
}

#[test]
fn big_directory_then_removals_then_reinsertions() {
    let mut ops = vec![Op::CreateMany { dir: 0, count: 400 }];
    for index in (6..406).step_by(3) {
        ops.push(Op::Unlink { dir: 0, name: index });
    }
    ops.push(Op::Remount);
    ops.push(Op::Readdir { dir: 0, stop_after: 3 });
    ops.push(Op::CreateMany { dir: 0, count: 200 });
    ops.push(Op::Mkdir { dir: 0, name: 3 });
    ops.push(Op::Rename { dir: 0, name: 0, to_dir: 1, to_name: 4, no_replace: false });
    run(&ops);
}

#[test]
fn unlinked_open_file_keeps_its_data() {
    let ops = vec![
        Op::Create { dir: 0, name: 0, perm: 0o644 },
        Op::Write { file: 0, offset: 0, len: 5000, byte: 7 },
        Op::Open { file: 0 },
        Op::Unlink { dir: 0, name: 0 },
        Op::Create { dir: 0, name: 1, perm: 0o644 },
        Op::Write { file: 0, offset: 0, len: 9000, byte: 9 },
        Op::ReadOpen { handle: 0 },
        Op::WriteOpen { handle: 0, offset: 100, len: 10, byte: 1 },
        Op::ReadOpen { handle: 0 },
        Op::Close { handle: 0 },
    ];
    run(&ops);
}
