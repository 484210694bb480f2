//! The filesystem core, testable without a mount: a tree of directories and
//! virtual `.npy` files, the read path that maps a virtual byte range to the
//! parts' bytes, the write-through path, and live replacement of the array
//! list. The FUSE adapter in [`crate::fs`] only translates.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::parts::{PartStore, ReadSession};
use crate::source::VirtualArray;

/// Inode number of the root directory.
pub const ROOT: u64 = 1;

/// Errors of the core, each with its errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only file system")]
    ReadOnly,
    #[error("operation not permitted: {0}")]
    Perm(String),
    #[error("permission denied: {0}")]
    Access(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("no such attribute")]
    NoAttr,
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::Perm(_) => libc::EPERM,
            FsError::Access(_) => libc::EACCES,
            FsError::Io(_) => libc::EIO,
            FsError::NoAttr => libc::ENODATA,
        }
    }

    fn from_io(array: &VirtualArray, e: std::io::Error) -> FsError {
        log::error!("{:?}: {e}", array.name);
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => FsError::Access(e.to_string()),
            _ => FsError::Io(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// What `stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
    pub nlink: u32,
}

#[derive(Debug)]
enum NodeKind {
    Dir { children: BTreeMap<String, u64> },
    File { array: Arc<VirtualArray> },
}

#[derive(Debug)]
struct Node {
    parent: u64,
    kind: NodeKind,
}

/// A directory entry as `readdir` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

/// What changed when the array list was replaced, for the kernel's caches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The contents or attributes of this inode changed.
    Inode(u64),
    /// The name `name` in directory `parent` appeared or disappeared.
    Entry { parent: u64, name: String },
}

/// One immutable generation of the tree.
#[derive(Debug, Default)]
struct Tree {
    nodes: HashMap<u64, Node>,
    /// Path ("" for the root, "x", "x/a.npy") of each inode.
    paths: HashMap<u64, String>,
}

/// Stable inode numbers: a path keeps its inode across reloads.
#[derive(Debug)]
struct Inodes {
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Inodes {
    fn get(&mut self, path: &str) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_path.insert(path.to_string(), ino);
        ino
    }
}

/// How the tree may be used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Writes go through to the parts (`--writable`).
    pub writable: bool,
}

/// The mounted tree.
pub struct Vfs {
    tree: RwLock<Arc<Tree>>,
    inodes: Mutex<Inodes>,
    store: PartStore,
    options: Options,
    /// Part files written since their last fsync.
    dirty: Mutex<HashSet<PathBuf>>,
    /// Parts (by id) written through each array (by name) since the live
    /// reloader last looked: their new mtime is our own doing.
    written: Mutex<HashMap<String, HashSet<u64>>>,
    mount_time: SystemTime,
}

thread_local! {
    /// One reused gather buffer per FUSE worker thread.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vfs {
    /// Build the tree. Array names are validated by the manifest module:
    /// relative, '/'-separated, no empty components, no file that is also a
    /// folder prefix. A clash that slipped through is skipped, never a panic.
    pub fn new(arrays: Vec<VirtualArray>, store: PartStore, options: Options) -> Vfs {
        let vfs = Vfs {
            tree: RwLock::new(Arc::new(Tree::default())),
            inodes: Mutex::new(Inodes {
                by_path: HashMap::from([(String::new(), ROOT)]),
                next: ROOT + 1,
            }),
            store,
            options,
            dirty: Mutex::new(HashSet::new()),
            written: Mutex::new(HashMap::new()),
            mount_time: SystemTime::now(),
        };
        vfs.replace(arrays.into_iter().map(Arc::new).collect());
        vfs
    }

    fn snapshot(&self) -> Arc<Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace the array list (a live reload). Arrays passed as the same
    /// `Arc` as before count as unchanged. Returns what the kernel must
    /// forget.
    pub fn replace(&self, arrays: Vec<Arc<VirtualArray>>) -> Vec<Change> {
        self.replace_quietly(arrays, &HashSet::new())
    }

    /// [`Vfs::replace`], except that the kernel keeps its cache of the
    /// arrays named in `quiet` (rebuilt only because of writes made through
    /// them, which the kernel's cache already holds).
    pub fn replace_quietly(
        &self,
        arrays: Vec<Arc<VirtualArray>>,
        quiet: &HashSet<String>,
    ) -> Vec<Change> {
        let quiet_inos: HashSet<u64> = quiet.iter().filter_map(|n| self.ino_of(n)).collect();
        let new = {
            let mut inodes = lock(&self.inodes);
            build_tree(arrays, &mut inodes)
        };
        let mut guard = self.tree.write().unwrap_or_else(|p| p.into_inner());
        let changes = diff(&guard, &new);
        // Maps of parts no longer served are dropped.
        let live: HashSet<u64> = new
            .nodes
            .values()
            .filter_map(|n| match &n.kind {
                NodeKind::File { array } => Some(array.parts.iter().map(|p| p.id)),
                NodeKind::Dir { .. } => None,
            })
            .flatten()
            .collect();
        self.store.retain(|id| live.contains(&id));
        *guard = Arc::new(new);
        changes
            .into_iter()
            .filter(|c| !matches!(c, Change::Inode(ino) if quiet_inos.contains(ino)))
            .collect()
    }

    /// The arrays served, in no particular order.
    pub fn arrays(&self) -> Vec<Arc<VirtualArray>> {
        self.snapshot()
            .nodes
            .values()
            .filter_map(|n| match &n.kind {
                NodeKind::File { array } => Some(array.clone()),
                NodeKind::Dir { .. } => None,
            })
            .collect()
    }

    /// The inode of the file named `name` ("x/a.npy"), if it is served.
    pub fn ino_of(&self, name: &str) -> Option<u64> {
        let tree = self.snapshot();
        name.split('/')
            .filter(|c| !c.is_empty())
            .try_fold(ROOT, |dir, c| child(&tree, dir, c))
    }

    /// Number of inodes (directories and files).
    pub fn inode_count(&self) -> u64 {
        self.snapshot().nodes.len() as u64
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        self.attr_in(&self.snapshot(), ino)
    }

    fn attr_in(&self, tree: &Tree, ino: u64) -> Result<Attr, FsError> {
        let node = tree.nodes.get(&ino).ok_or(FsError::NotFound)?;
        Ok(match &node.kind {
            NodeKind::Dir { children } => Attr {
                ino,
                kind: Kind::Dir,
                size: 0,
                perm: if self.options.writable { 0o755 } else { 0o555 },
                mtime: self.mount_time,
                nlink: 2 + children.values().filter(|c| is_dir(tree, **c)).count() as u32,
            },
            NodeKind::File { array } => {
                // Never wider than the parts allow; no write bits unless writable.
                let mask = if self.options.writable { 0o777 } else { 0o555 };
                Attr {
                    ino,
                    kind: Kind::File,
                    size: array.size(),
                    perm: (array.mode & mask) as u16,
                    mtime: array.mtime,
                    nlink: 1,
                }
            }
        })
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        let tree = self.snapshot();
        let node = tree.nodes.get(&parent).ok_or(FsError::NotFound)?;
        let NodeKind::Dir { children } = &node.kind else {
            return Err(FsError::NotDir);
        };
        let ino = match name {
            "." => parent,
            ".." => node.parent,
            _ => *children.get(name).ok_or(FsError::NotFound)?,
        };
        self.attr_in(&tree, ino)
    }

    /// All entries of a directory, "." and ".." first.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let tree = self.snapshot();
        let node = tree.nodes.get(&ino).ok_or(FsError::NotFound)?;
        let NodeKind::Dir { children } = &node.kind else {
            return Err(FsError::NotDir);
        };
        let mut entries = vec![
            DirEntry {
                ino,
                kind: Kind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: node.parent,
                kind: Kind::Dir,
                name: "..".into(),
            },
        ];
        for (name, &child) in children {
            let kind = if is_dir(&tree, child) {
                Kind::Dir
            } else {
                Kind::File
            };
            entries.push(DirEntry {
                ino: child,
                kind,
                name: name.clone(),
            });
        }
        Ok(entries)
    }

    /// Check an open: directories are refused, and writes unless writable.
    pub fn open(&self, ino: u64, write: bool) -> Result<(), FsError> {
        self.array_of(ino)?;
        if write && !self.options.writable {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// The array behind a file inode.
    pub fn array_of(&self, ino: u64) -> Result<Arc<VirtualArray>, FsError> {
        match self.snapshot().nodes.get(&ino).map(|n| &n.kind) {
            None => Err(FsError::NotFound),
            Some(NodeKind::Dir { .. }) => Err(FsError::IsDir),
            Some(NodeKind::File { array }) => Ok(array.clone()),
        }
    }

    /// Read `size` bytes at `offset` of file `ino` and hand them to `reply`
    /// (fewer at the end of the file, none past it). The bytes are gathered
    /// into a reused per-thread buffer: copying under the SIGBUS guard (see
    /// [`crate::parts`]) is what makes a part truncated mid-read an error
    /// rather than a crash or a hung request.
    pub fn read<R>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsError> {
        let array = self.array_of(ino)?;
        let array = array.as_ref();
        let end = offset.saturating_add(u64::from(size)).min(array.size());
        if offset >= end {
            return Ok(reply(&[]));
        }
        let header_len = array.header_len();
        if end <= header_len {
            let bytes = array
                .header
                .get(offset as usize..end as usize)
                .ok_or_else(|| FsError::Io("header range".into()))?;
            return Ok(reply(bytes));
        }
        let mut session = ReadSession::new(&self.store);
        GATHER.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            if offset < header_len {
                let bytes = array
                    .header
                    .get(offset as usize..)
                    .ok_or_else(|| FsError::Io("header range".into()))?;
                buf.extend_from_slice(bytes);
            }
            let data_off = offset.saturating_sub(header_len);
            let data_end = end - header_len;
            let segments = array.layout.segments(data_off, data_end - data_off);
            session
                .gather(&array.parts, segments, &mut buf)
                .map_err(|e| FsError::from_io(array, e))?;
            Ok(reply(&buf))
        })
    }

    /// Write `data` at `offset` of file `ino` through to the parts. The
    /// header is immutable (rewriting identical bytes is allowed) and the
    /// size is fixed.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        if !self.options.writable {
            return Err(FsError::ReadOnly);
        }
        let array = self.array_of(ino)?;
        let array = array.as_ref();
        let len = data.len() as u64;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| FsError::Perm("write past the end".into()))?;
        if end > array.size() {
            return Err(FsError::Perm(format!(
                "{}: the size of a virtual array is fixed ({} bytes)",
                array.name,
                array.size()
            )));
        }
        let header_len = array.header_len();
        if offset < header_len {
            let stop = end.min(header_len);
            let same = array
                .header
                .get(offset as usize..stop as usize)
                .zip(data.get(..(stop - offset) as usize))
                .is_some_and(|(old, new)| old == new);
            if !same {
                return Err(FsError::Perm(format!(
                    "{}: the npy header is immutable",
                    array.name
                )));
            }
        }
        if end <= header_len {
            return Ok(data.len() as u32);
        }
        let data_off = offset.saturating_sub(header_len);
        let mut pos = (header_len.saturating_sub(offset)) as usize;
        let mut writer = crate::parts::WriteSession::default();
        let mut touched = HashSet::new();
        let mut ids = HashSet::new();
        for seg in array.layout.segments(data_off, end - header_len - data_off) {
            let part = array
                .parts
                .get(seg.part)
                .ok_or_else(|| FsError::Io("segment names no part".into()))?;
            let chunk = data
                .get(pos..pos + seg.len as usize)
                .ok_or_else(|| FsError::Io("segment outside the write".into()))?;
            writer
                .write(part, seg.offset, chunk)
                .map_err(|e| FsError::from_io(array, e))?;
            touched.insert(part.path.clone());
            ids.insert(part.id);
            pos += seg.len as usize;
        }
        lock(&self.dirty).extend(touched);
        lock(&self.written)
            .entry(array.name.clone())
            .or_default()
            .extend(ids);
        Ok(data.len() as u32)
    }

    /// Take the record of parts written through each array since the last
    /// call (for the live reloader).
    pub fn take_written(&self) -> HashMap<String, HashSet<u64>> {
        std::mem::take(&mut *lock(&self.written))
    }

    /// Make every written byte durable in the parts (fsync each part
    /// written since the last sync).
    pub fn sync(&self) -> Result<(), FsError> {
        let dirty: Vec<PathBuf> = lock(&self.dirty).drain().collect();
        let mut first_error = None;
        for path in dirty {
            let result = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.sync_all());
            if let Err(e) = result {
                log::error!("fsync {}: {e}", path.display());
                lock(&self.dirty).insert(path);
                first_error.get_or_insert(FsError::Io(e.to_string()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A size change: only to the current size (a no-op) is allowed.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<(), FsError> {
        let array = self.array_of(ino)?;
        if size == array.size() {
            Ok(())
        } else if self.options.writable {
            Err(FsError::Perm(format!(
                "{}: the size of a virtual array is fixed",
                array.name
            )))
        } else {
            Err(FsError::ReadOnly)
        }
    }
}

/// Names of the extended attributes of every virtual file, in `listxattr` order.
pub const XATTR_NAMES: [&str; 5] = [
    "user.npyfs.parts",
    "user.npyfs.axis",
    "user.npyfs.shape",
    "user.npyfs.dtype",
    "user.npyfs.order",
];

/// The value of extended attribute `name` of `array`, if it has one:
/// part paths (newline-separated), axis, shape as Python prints it, dtype
/// as numpy names it, order ("C" or "F").
pub fn array_xattr(array: &VirtualArray, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    Some(match name {
        "user.npyfs.parts" => {
            let mut out = Vec::new();
            for (i, part) in array.parts.iter().enumerate() {
                if i > 0 {
                    out.push(b'\n');
                }
                out.extend_from_slice(part.path.as_os_str().as_bytes());
            }
            out
        }
        "user.npyfs.axis" => array.layout.axis().to_string().into_bytes(),
        "user.npyfs.shape" => crate::inspect::shape_repr(array.layout.shape()).into_bytes(),
        "user.npyfs.dtype" => crate::npy::dtype_name(&array.dtype).into_bytes(),
        "user.npyfs.order" => array.order_name().as_bytes().to_vec(),
        _ => return None,
    })
}

impl Vfs {
    /// The extended attribute names of `ino` as `listxattr(2)` returns
    /// them: each NUL-terminated. Directories have none.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        match self.array_of(ino) {
            Ok(_) => Ok(XATTR_NAMES
                .iter()
                .flat_map(|n| n.bytes().chain(std::iter::once(0)))
                .collect()),
            Err(FsError::IsDir) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The value of extended attribute `name` of `ino`; [`FsError::NoAttr`]
    /// for an unknown name and for every name on a directory.
    pub fn getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>, FsError> {
        match self.array_of(ino) {
            Ok(array) => array_xattr(&array, name).ok_or(FsError::NoAttr),
            Err(FsError::IsDir) => Err(FsError::NoAttr),
            Err(e) => Err(e),
        }
    }
}

fn is_dir(tree: &Tree, ino: u64) -> bool {
    matches!(
        tree.nodes.get(&ino),
        Some(Node {
            kind: NodeKind::Dir { .. },
            ..
        })
    )
}

fn build_tree(arrays: Vec<Arc<VirtualArray>>, inodes: &mut Inodes) -> Tree {
    let mut tree = Tree::default();
    tree.nodes.insert(
        ROOT,
        Node {
            parent: ROOT,
            kind: NodeKind::Dir {
                children: BTreeMap::new(),
            },
        },
    );
    tree.paths.insert(ROOT, String::new());
    for array in arrays {
        let name = array.name.clone();
        if !insert(&mut tree, inodes, &name, array) {
            log::warn!("skipping array {name:?}: its name clashes with another entry");
        }
    }
    tree
}

fn insert(tree: &mut Tree, inodes: &mut Inodes, name: &str, array: Arc<VirtualArray>) -> bool {
    let components: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
    let Some((file_name, dirs)) = components.split_last() else {
        return false;
    };
    let mut dir = ROOT;
    let mut path = String::new();
    for component in dirs {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(component);
        dir = match child(tree, dir, component) {
            Some(ino) if is_dir(tree, ino) => ino,
            Some(_) => return false,
            None => {
                let ino = inodes.get(&path);
                add_node(
                    tree,
                    dir,
                    component,
                    ino,
                    &path,
                    NodeKind::Dir {
                        children: BTreeMap::new(),
                    },
                );
                ino
            }
        };
    }
    if child(tree, dir, file_name).is_some() {
        return false;
    }
    let full = components.join("/");
    let ino = inodes.get(&full);
    add_node(tree, dir, file_name, ino, &full, NodeKind::File { array });
    true
}

fn add_node(tree: &mut Tree, parent: u64, name: &str, ino: u64, path: &str, kind: NodeKind) {
    tree.nodes.insert(ino, Node { parent, kind });
    tree.paths.insert(ino, path.to_string());
    if let Some(Node {
        kind: NodeKind::Dir { children },
        ..
    }) = tree.nodes.get_mut(&parent)
    {
        children.insert(name.to_string(), ino);
    }
}

fn child(tree: &Tree, dir: u64, name: &str) -> Option<u64> {
    match &tree.nodes.get(&dir)?.kind {
        NodeKind::Dir { children } => children.get(name).copied(),
        NodeKind::File { .. } => None,
    }
}

/// What the kernel must forget going from `old` to `new`.
fn diff(old: &Tree, new: &Tree) -> Vec<Change> {
    let mut changes = Vec::new();
    for (ino, node) in &old.nodes {
        match (&node.kind, new.nodes.get(ino).map(|n| &n.kind)) {
            (NodeKind::File { array: a }, Some(NodeKind::File { array: b }))
                if !Arc::ptr_eq(a, b) =>
            {
                changes.push(Change::Inode(*ino));
            }
            (NodeKind::Dir { children: a }, Some(NodeKind::Dir { children: b })) => {
                let names_changed = a.len() != b.len() || a.keys().any(|k| !b.contains_key(k));
                if names_changed {
                    changes.push(Change::Inode(*ino));
                }
                for name in a.keys().filter(|k| !b.contains_key(*k)) {
                    changes.push(Change::Entry {
                        parent: *ino,
                        name: name.clone(),
                    });
                }
            }
            // Gone or changed kind: the parent directory's entry loop above
            // reports the name.
            _ => {}
        }
    }
    changes.sort();
    changes.dedup();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ArraySpec, PartSpec};
    use crate::npy;
    use crate::parts::DEFAULT_MAX_MAPS;
    use std::io::Write;
    use std::path::Path;

    /// An npy part of u8 values start, start+1, … with the given shape.
    fn part(dir: &Path, name: &str, shape: &[u64], start: u8) -> PartSpec {
        let path = dir.join(name);
        let dtype = npy::parse_dtype("|u1").expect("dtype");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(&npy::write_header(&dtype, shape, false))
            .expect("header");
        let n: u64 = shape.iter().product();
        let data: Vec<u8> = (0..n).map(|i| start.wrapping_add(i as u8)).collect();
        f.write_all(&data).expect("data");
        PartSpec::Npy { path }
    }

    fn spec(dir: &Path, name: &str, parts: Vec<PartSpec>, axis: i64) -> ArraySpec {
        ArraySpec {
            name: name.into(),
            parts,
            axis,
            stack: false,
            origin: dir.join("m.toml"),
        }
    }

    fn read_all(vfs: &Vfs, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        vfs.read(ino, offset, size, |b| b.to_vec())
    }

    fn setup() -> (tempfile::TempDir, Vfs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let a = part(d, "a.npy", &[2, 3], 0);
        let b = part(d, "b.npy", &[2, 2], 100);
        let arrays = vec![
            crate::source::build_array(&spec(d, "x/cols.npy", vec![a.clone(), b], 1))
                .expect("cols"),
            crate::source::build_array(&spec(d, "rows.npy", vec![a.clone(), a], 0)).expect("rows"),
        ];
        (
            dir,
            Vfs::new(arrays, PartStore::new(DEFAULT_MAX_MAPS), Options::default()),
        )
    }

    #[test]
    fn tree_and_attributes() {
        let (_dir, vfs) = setup();
        let names: Vec<String> = vfs
            .readdir(ROOT)
            .expect("root")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [".", "..", "rows.npy", "x"]);
        let x = vfs.lookup(ROOT, "x").expect("x");
        assert_eq!(x.kind, Kind::Dir);
        let cols = vfs.lookup(x.ino, "cols.npy").expect("cols");
        assert_eq!(cols.kind, Kind::File);
        assert_eq!(cols.size, 128 + 10);
        assert_eq!(cols.perm & 0o222, 0, "read-only files have no write bits");
        assert_eq!(vfs.lookup(x.ino, "..").expect("..").ino, ROOT);
        assert_eq!(vfs.lookup(ROOT, "nope"), Err(FsError::NotFound));
        assert_eq!(vfs.lookup(cols.ino, "a"), Err(FsError::NotDir));
        assert_eq!(vfs.getattr(9999), Err(FsError::NotFound));
        assert_eq!(vfs.readdir(cols.ino), Err(FsError::NotDir));
    }

    #[test]
    fn open_refuses_writes_and_directories() {
        let (_dir, vfs) = setup();
        let rows = vfs.lookup(ROOT, "rows.npy").expect("rows").ino;
        assert_eq!(vfs.open(rows, false), Ok(()));
        assert_eq!(vfs.open(rows, true), Err(FsError::ReadOnly));
        assert_eq!(vfs.open(ROOT, false), Err(FsError::IsDir));
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
    }

    #[test]
    fn reads_cover_header_parts_and_eof() {
        let (_dir, vfs) = setup();
        let x = vfs.lookup(ROOT, "x").expect("x").ino;
        let cols = vfs.lookup(x, "cols.npy").expect("cols");
        let whole = read_all(&vfs, cols.ino, 0, 4096).expect("read");
        assert_eq!(whole.len() as u64, cols.size);
        let header = npy::read_header(&whole[..]).expect("header");
        assert_eq!(header.shape, vec![2, 5]);
        // Row 0: a[0,:] then b[0,:]; row 1: a[1,:] then b[1,:].
        assert_eq!(&whole[128..], &[0, 1, 2, 100, 101, 3, 4, 5, 102, 103]);
        // Every sub-range equals the slice of the whole.
        for off in 0..whole.len() as u64 + 3 {
            for size in [1u32, 2, 3, 7, 200] {
                let got = read_all(&vfs, cols.ino, off, size).expect("sub-read");
                let lo = (off as usize).min(whole.len());
                let hi = (off as usize + size as usize).min(whole.len());
                assert_eq!(got, &whole[lo..hi], "offset {off} size {size}");
            }
        }
        assert_eq!(read_all(&vfs, ROOT, 0, 10), Err(FsError::IsDir));
    }

    #[test]
    fn a_part_that_shrank_gives_an_io_error() {
        let (dir, vfs) = setup();
        let rows = vfs.lookup(ROOT, "rows.npy").expect("rows");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("a.npy"))
            .expect("open");
        f.set_len(130).expect("truncate");
        let err = read_all(&vfs, rows.ino, 128, 6).expect_err("must fail");
        assert!(matches!(err, FsError::Io(_)), "{err:?}");
        assert_eq!(err.errno(), libc::EIO);
    }
}

#[cfg(test)]
mod xattr_tests {
    use super::*;
    use std::io::Write;

    fn vfs(dir: &std::path::Path) -> Vfs {
        let dtype = crate::npy::parse_dtype("<i2").expect("dtype");
        for (name, shape) in [("a.npy", [3u64, 2]), ("b.npy", [3, 5])] {
            let mut f = std::fs::File::create(dir.join(name)).expect("create");
            f.write_all(&crate::npy::write_header(&dtype, &shape, false))
                .expect("header");
            f.write_all(&vec![0u8; (shape[0] * shape[1] * 2) as usize])
                .expect("data");
        }
        let manifest = dir.join("m.toml");
        std::fs::write(
            &manifest,
            "[[array]]\nname = \"d/x.npy\"\naxis = 1\nparts = [\"a.npy\", \"b.npy\"]\n",
        )
        .expect("manifest");
        Vfs::new(
            crate::source::load(&manifest).expect("load"),
            PartStore::new(4),
            Options::default(),
        )
    }

    #[test]
    fn xattrs_of_files_and_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = vfs(dir.path());
        let d = v.lookup(ROOT, "d").expect("d").ino;
        let x = v.lookup(d, "x.npy").expect("x").ino;
        let names = v.listxattr(x).expect("list");
        assert_eq!(
            names,
            b"user.npyfs.parts\0user.npyfs.axis\0user.npyfs.shape\0user.npyfs.dtype\0user.npyfs.order\0"
        );
        let get = |n: &str| String::from_utf8(v.getxattr(x, n).expect(n)).expect("utf-8");
        assert_eq!(get("user.npyfs.shape"), "(3, 7)");
        assert_eq!(get("user.npyfs.axis"), "1");
        assert_eq!(get("user.npyfs.dtype"), "<i2");
        assert_eq!(get("user.npyfs.order"), "C");
        let parts = get("user.npyfs.parts");
        let lines: Vec<&str> = parts.split('\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with("/a.npy") && lines[1].ends_with("/b.npy"),
            "{parts}"
        );

        assert_eq!(v.getxattr(x, "user.other"), Err(FsError::NoAttr));
        assert_eq!(FsError::NoAttr.errno(), libc::ENODATA);
        for dir_ino in [ROOT, d] {
            assert_eq!(v.listxattr(dir_ino), Ok(Vec::new()));
            assert_eq!(
                v.getxattr(dir_ino, "user.npyfs.shape"),
                Err(FsError::NoAttr)
            );
        }
        assert_eq!(v.listxattr(999), Err(FsError::NotFound));
        assert_eq!(v.getxattr(999, "user.npyfs.shape"), Err(FsError::NotFound));
    }
}
