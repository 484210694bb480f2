//! The `fuser::Filesystem` adapter: translates kernel requests to calls on
//! [`Vfs`] and its errors to errno values. Nothing else lives here.

use std::ffi::OsStr;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::vfs::{Attr, FsError, Kind, Vfs};

/// How long the kernel may cache attributes and names. The tree only
/// changes when the daemon says so (and then it invalidates explicitly).
const TTL: Duration = Duration::from_secs(3600);

/// Block size shown by `stat`: programs like `cp` size their buffers by it.
const MAX_READ: u32 = 1 << 20;

pub struct NpyFs {
    vfs: Arc<Vfs>,
    uid: u32,
    gid: u32,
}

impl NpyFs {
    pub fn new(vfs: Arc<Vfs>, uid: u32, gid: u32) -> Self {
        NpyFs { vfs, uid, gid }
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.mtime,
            mtime: a.mtime,
            ctime: a.mtime,
            crtime: a.mtime,
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: a.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: MAX_READ,
            flags: 0,
        }
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// Run a handler; a panic becomes EIO for this request (the reply, dropped
/// unsent while unwinding, answers EIO itself) and a log line, never the
/// end of the daemon.
fn guarded(op: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!("{op}: handler panicked; answered EIO");
    }
}

impl Filesystem for NpyFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // The kernel offers 128 KiB of readahead at init and accepts no more
        // here; the daemon raises it afterwards through the mount's bdi
        // (`--read-ahead-kb`). Requests are up to 1 MiB (max_pages).
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guarded("lookup", || {
            let Some(name) = name.to_str() else {
                return reply.error(Errno::ENOENT);
            };
            match self.vfs.lookup(parent.0, name) {
                Ok(a) => reply.entry(&TTL, &self.file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        })
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guarded("getattr", || match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &self.file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        guarded("open", || {
            let write = flags.acc_mode() != OpenAccMode::O_RDONLY
                || flags.0 & (libc::O_TRUNC | libc::O_APPEND) != 0;
            match self.vfs.open(ino.0, write) {
                // Keep the page cache across opens; never DIRECT_IO (it breaks mmap).
                Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(errno(&e)),
            }
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guarded("read", || {
            let mut reply = Some(reply);
            let result = self.vfs.read(ino.0, offset, size, |bytes| {
                if let Some(r) = reply.take() {
                    r.data(bytes)
                }
            });
            if let (Err(e), Some(r)) = (result, reply.take()) {
                r.error(errno(&e));
            }
        })
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guarded("write", || match self.vfs.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guarded("setattr", || {
            if mode.is_some() || uid.is_some() || gid.is_some() {
                return reply.error(Errno::EPERM);
            }
            if let Some(size) = size {
                if let Err(e) = self.vfs.truncate(ino.0, size) {
                    return reply.error(errno(&e));
                }
            }
            // Times follow the parts; a touch is accepted and changes nothing.
            match self.vfs.getattr(ino.0) {
                Ok(a) => reply.attr(&TTL, &self.file_attr(&a)),
                Err(e) => reply.error(errno(&e)),
            }
        })
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guarded("fsync", || match self.vfs.sync() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn destroy(&mut self) {
        if let Err(e) = self.vfs.sync() {
            log::error!("final sync: {e}");
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guarded("opendir", || match self.vfs.readdir(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR),
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        guarded("readdir", || match self.vfs.readdir(ino.0) {
            Ok(entries) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, entry) in entries.iter().enumerate().skip(start) {
                    let next = (i + 1) as u64;
                    if reply.add(INodeNo(entry.ino), next, file_type(entry.kind), &entry.name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        guarded("statfs", || {
            let bytes: u64 = self
                .vfs
                .arrays()
                .iter()
                .fold(0u64, |acc, a| acc.saturating_add(a.size()));
            let bsize = 4096u32;
            reply.statfs(
                bytes.div_ceil(u64::from(bsize)),
                0,
                0,
                self.vfs.inode_count(),
                0,
                bsize,
                255,
                bsize,
            )
        })
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        guarded("getxattr", || {
            let Some(name) = name.to_str() else {
                return reply.error(Errno::ENODATA);
            };
            match self.vfs.getxattr(ino.0, name) {
                Ok(value) => reply_xattr(reply, size, &value),
                Err(e) => reply.error(errno(&e)),
            }
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        guarded("listxattr", || match self.vfs.listxattr(ino.0) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(e) => reply.error(errno(&e)),
        })
    }
}

/// The xattr size protocol: size 0 asks for the length, a buffer too small
/// gets ERANGE, else the bytes.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(needed) = u32::try_from(value.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(needed)
    } else if size < needed {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn guarded_catches_a_panicking_handler() {
        let ran_after = AtomicBool::new(false);
        guarded("test", || panic!("handler bug"));
        // an out-of-bounds index, the panic the lints keep out of src
        let v: Vec<u8> = Vec::new();
        let i = v.len() + 1;
        guarded("test", || {
            let _ = v[i];
        });
        guarded("test", || ran_after.store(true, Ordering::SeqCst));
        assert!(
            ran_after.load(Ordering::SeqCst),
            "handlers run normally after a panic"
        );
    }
}
