//! The filesystem core, testable without a mount: a tree of directories and
//! virtual `.npy` files, and the read path that maps a virtual byte range to
//! the parts' bytes. The FUSE adapter in [`crate::fs`] only translates.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
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
            FsError::Io(_) => libc::EIO,
            FsError::NoAttr => libc::ENODATA,
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
    File { array: usize },
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

/// The mounted tree.
pub struct Vfs {
    nodes: Vec<Node>,
    arrays: Vec<Arc<VirtualArray>>,
    store: PartStore,
    mount_time: SystemTime,
}

thread_local! {
    /// One reused gather buffer per FUSE worker thread.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Vfs {
    /// Build the tree. Array names are validated by the manifest module:
    /// relative, '/'-separated, no empty components, no file that is also a
    /// folder prefix. A clash that slipped through is skipped, never a panic.
    pub fn new(arrays: Vec<VirtualArray>, store: PartStore) -> Vfs {
        let mut vfs = Vfs {
            nodes: vec![Node {
                parent: ROOT,
                kind: NodeKind::Dir {
                    children: BTreeMap::new(),
                },
            }],
            arrays: Vec::with_capacity(arrays.len()),
            store,
            mount_time: SystemTime::now(),
        };
        for array in arrays {
            let index = vfs.arrays.len();
            let name = array.name.clone();
            if vfs.insert(&name, index) {
                vfs.arrays.push(Arc::new(array));
            } else {
                log::warn!("skipping array {name:?}: its name clashes with another entry");
            }
        }
        vfs
    }

    fn insert(&mut self, name: &str, array: usize) -> bool {
        let components: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
        let Some((file_name, dirs)) = components.split_last() else {
            return false;
        };
        let mut dir = ROOT;
        for component in dirs {
            dir = match self.child(dir, component) {
                Some(ino) if self.is_dir(ino) => ino,
                Some(_) => return false,
                None => self.add_node(
                    dir,
                    component,
                    NodeKind::Dir {
                        children: BTreeMap::new(),
                    },
                ),
            };
        }
        if self.child(dir, file_name).is_some() {
            return false;
        }
        self.add_node(dir, file_name, NodeKind::File { array });
        true
    }

    fn add_node(&mut self, parent: u64, name: &str, kind: NodeKind) -> u64 {
        self.nodes.push(Node { parent, kind });
        let ino = self.nodes.len() as u64;
        if let Some(Node {
            kind: NodeKind::Dir { children },
            ..
        }) = self.node_mut(parent)
        {
            children.insert(name.to_string(), ino);
        }
        ino
    }

    fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(ino.checked_sub(1)?).ok()?)
    }

    fn node_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes
            .get_mut(usize::try_from(ino.checked_sub(1)?).ok()?)
    }

    fn child(&self, dir: u64, name: &str) -> Option<u64> {
        match &self.node(dir)?.kind {
            NodeKind::Dir { children } => children.get(name).copied(),
            NodeKind::File { .. } => None,
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(
            self.node(ino),
            Some(Node {
                kind: NodeKind::Dir { .. },
                ..
            })
        )
    }

    /// The arrays served, in the order given.
    pub fn arrays(&self) -> &[Arc<VirtualArray>] {
        &self.arrays
    }

    /// Number of inodes (directories and files).
    pub fn inode_count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// The part maps' store.
    pub fn store(&self) -> &PartStore {
        &self.store
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let node = self.node(ino).ok_or(FsError::NotFound)?;
        Ok(match &node.kind {
            NodeKind::Dir { children } => Attr {
                ino,
                kind: Kind::Dir,
                size: 0,
                perm: 0o555,
                mtime: self.mount_time,
                nlink: 2 + children.values().filter(|&&c| self.is_dir(c)).count() as u32,
            },
            NodeKind::File { array } => {
                let array = self.arrays.get(*array).ok_or(FsError::NotFound)?;
                Attr {
                    ino,
                    kind: Kind::File,
                    size: array.size(),
                    // Read-only: never wider than the parts allow, no write bits.
                    perm: (array.mode & 0o555) as u16,
                    mtime: array.mtime,
                    nlink: 1,
                }
            }
        })
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        let node = self.node(parent).ok_or(FsError::NotFound)?;
        let NodeKind::Dir { children } = &node.kind else {
            return Err(FsError::NotDir);
        };
        let ino = match name {
            "." => parent,
            ".." => node.parent,
            _ => *children.get(name).ok_or(FsError::NotFound)?,
        };
        self.getattr(ino)
    }

    /// All entries of a directory, "." and ".." first.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let node = self.node(ino).ok_or(FsError::NotFound)?;
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
            let kind = if self.is_dir(child) {
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

    /// Check an open: directories and writes are refused.
    pub fn open(&self, ino: u64, write: bool) -> Result<(), FsError> {
        match self.node(ino).map(|n| &n.kind) {
            None => Err(FsError::NotFound),
            Some(NodeKind::Dir { .. }) => Err(FsError::IsDir),
            Some(NodeKind::File { .. }) if write => Err(FsError::ReadOnly),
            Some(NodeKind::File { .. }) => Ok(()),
        }
    }

    fn array_of(&self, ino: u64) -> Result<&VirtualArray, FsError> {
        match self.node(ino).map(|n| &n.kind) {
            None => Err(FsError::NotFound),
            Some(NodeKind::Dir { .. }) => Err(FsError::IsDir),
            Some(NodeKind::File { array }) => self
                .arrays
                .get(*array)
                .map(|a| a.as_ref())
                .ok_or(FsError::NotFound),
        }
    }

    /// Read `size` bytes at `offset` of file `ino` and hand them to `reply`
    /// (fewer at the end of the file, none past it). A read that falls in
    /// the header or in one part is handed over straight from its bytes;
    /// otherwise it is gathered into a reused per-thread buffer.
    pub fn read<R>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsError> {
        let array = self.array_of(ino)?;
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
        if offset >= header_len {
            let data_off = offset - header_len;
            let mut segments = array.layout.segments(data_off, end - offset);
            if let (Some(seg), None) = (segments.next(), segments.next()) {
                let part = array
                    .parts
                    .get(seg.part)
                    .ok_or_else(|| FsError::Io("segment names no part".into()))?;
                let bytes = session
                    .bytes(part, seg.offset, seg.len)
                    .map_err(|e| read_error(array, e))?;
                return Ok(reply(bytes));
            }
        }
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
            for seg in array.layout.segments(data_off, data_end - data_off) {
                let part = array
                    .parts
                    .get(seg.part)
                    .ok_or_else(|| FsError::Io("segment names no part".into()))?;
                let bytes = session
                    .bytes(part, seg.offset, seg.len)
                    .map_err(|e| read_error(array, e))?;
                buf.extend_from_slice(bytes);
            }
            Ok(reply(&buf))
        })
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
            Ok(array) => array_xattr(array, name).ok_or(FsError::NoAttr),
            Err(FsError::IsDir) => Err(FsError::NoAttr),
            Err(e) => Err(e),
        }
    }
}

fn read_error(array: &VirtualArray, e: std::io::Error) -> FsError {
    log::error!("read of {:?} failed: {e}", array.name);
    FsError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
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
