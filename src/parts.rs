//! Lazily memory-mapped part files: the only code that touches part bytes.
//!
//! No part holds a file descriptor or a map at rest: a part is mapped on its
//! first read and kept in a bounded least-recently-used set of maps, so a
//! mount of 100,000 parts stays within `vm.max_map_count` and `ulimit -n`.
//! The file descriptor is closed right after mapping (the map keeps the
//! file alive).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex};

use memmap2::{Mmap, MmapOptions};

use crate::layout::Segment;
use crate::source::Part;

/// Default number of part maps kept at once.
pub const DEFAULT_MAX_MAPS: usize = 1024;

struct Entry {
    map: Arc<Mmap>,
    last_used: u64,
}

struct Cache {
    maps: HashMap<u64, Entry>,
    clock: u64,
}

/// A bounded set of read-only part maps keyed by part id.
pub struct PartStore {
    cache: Mutex<Cache>,
    max_maps: usize,
    drop_cache: bool,
}

/// Runs at least this long are read ahead with `MADV_WILLNEED` before they
/// are copied (one large I/O instead of a fault per readaround window;
/// cold sequential reads measured 402 → 1219–1441 MiB/s).
const WILLNEED_MIN: u64 = 64 << 10;

impl PartStore {
    pub fn new(max_maps: usize) -> Self {
        PartStore {
            cache: Mutex::new(Cache {
                maps: HashMap::new(),
                clock: 0,
            }),
            max_maps: max_maps.max(1),
            drop_cache: false,
        }
    }

    /// After serving a range, also evict the parts' pages from the page
    /// cache (`MADV_PAGEOUT`), so the data is cached once, as the virtual
    /// file's pages (`--drop-part-cache`).
    pub fn with_drop_cache(mut self, drop_cache: bool) -> Self {
        self.drop_cache = drop_cache;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A poisoned lock only means another reader panicked mid-update of
        // the LRU bookkeeping; the maps themselves stay valid.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The map of `part`, mapping it if needed. The map covers the whole file
    /// and is checked to hold the part's data.
    pub fn map(&self, part: &Part) -> io::Result<Arc<Mmap>> {
        {
            let mut cache = self.lock();
            cache.clock += 1;
            let now = cache.clock;
            if let Some(entry) = cache.maps.get_mut(&part.id) {
                entry.last_used = now;
                return Ok(entry.map.clone());
            }
        }
        let map = Arc::new(map_part(part)?);
        let mut cache = self.lock();
        cache.clock += 1;
        let now = cache.clock;
        if cache.maps.len() >= self.max_maps {
            evict(&mut cache.maps, self.max_maps / 8 + 1);
        }
        let entry = cache.maps.entry(part.id).or_insert(Entry {
            map,
            last_used: now,
        });
        Ok(entry.map.clone())
    }

    /// Forget the map of a part (it changed on disk).
    pub fn forget(&self, part_id: u64) {
        self.lock().maps.remove(&part_id);
    }

    /// Keep only the maps of parts for which `keep(id)` holds.
    pub fn retain(&self, mut keep: impl FnMut(u64) -> bool) {
        self.lock().maps.retain(|id, _| keep(*id));
    }
}

/// Drop the `n` least recently used maps.
fn evict(maps: &mut HashMap<u64, Entry>, n: usize) {
    let mut ages: Vec<(u64, u64)> = maps.iter().map(|(k, e)| (e.last_used, *k)).collect();
    ages.sort_unstable();
    for (_, key) in ages.into_iter().take(n) {
        maps.remove(&key);
    }
}

/// Check that the file at the part's path is still the file that was
/// validated (same device and inode: not deleted or replaced), still large
/// enough (not truncated) and still readable. A part edited in place keeps
/// passing; the live reload notices its new mtime.
pub fn check_current(part: &Part) -> io::Result<()> {
    let meta = std::fs::metadata(&part.path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: part is gone: {e}", part.path.display()),
        )
    })?;
    if (meta.dev(), meta.ino()) != part.dev_ino {
        return Err(io::Error::other(format!(
            "{}: part was replaced by another file while mounted",
            part.path.display()
        )));
    }
    let needed = part.data_offset.saturating_add(part.nbytes);
    if meta.len() < needed {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: part was truncated to {} bytes while mounted, {needed} needed",
                part.path.display(),
                meta.len()
            ),
        ));
    }
    if meta.mode() & 0o444 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: part is no longer readable", part.path.display()),
        ));
    }
    Ok(())
}

fn map_part(part: &Part) -> io::Result<Mmap> {
    let file = File::open(&part.path)?;
    let needed = part.data_offset.saturating_add(part.nbytes);
    // SAFETY: the map is read-only. Another process may still modify or
    // truncate the file; truncation below the checked size would make a
    // later access fault, which is the documented hazard of shared maps.
    let map = unsafe { MmapOptions::new().len(usize_len(needed)?).map(&file)? };
    Ok(map)
}

fn usize_len(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::other("part larger than the address space"))
}

/// A per-read view of the store that remembers the last few maps it used, so
/// interleaved reads (axis > 0) take the store's lock once per part, not
/// once per segment.
pub struct ReadSession<'a> {
    store: &'a PartStore,
    recent: Vec<(u64, Arc<Mmap>)>,
    /// Index in `recent` of the map used last.
    last: usize,
    /// Ranges copied (map, start, end), released when the session ends.
    served: Vec<(Arc<Mmap>, usize, usize)>,
}

const RECENT: usize = 16;

impl<'a> ReadSession<'a> {
    pub fn new(store: &'a PartStore) -> Self {
        ReadSession {
            store,
            recent: Vec::new(),
            last: 0,
            served: Vec::new(),
        }
    }

    /// Remember a copied range; interleaved reads (axis > 0) copy each
    /// part's bytes in contiguous runs, so extend the part's last range.
    fn served(&mut self, map: &Arc<Mmap>, start: usize, end: usize) {
        let last = self
            .served
            .iter_mut()
            .rev()
            .take(RECENT)
            .find(|(m, _, e)| *e == start && Arc::ptr_eq(m, map));
        match last {
            Some((_, _, e)) => *e = end,
            None => self.served.push((map.clone(), start, end)),
        }
    }

    /// Append the bytes `[offset, offset + len)` of `part`'s data to `dst`.
    pub fn copy_into(
        &mut self,
        part: &Part,
        offset: u64,
        len: u64,
        dst: &mut Vec<u8>,
    ) -> io::Result<()> {
        let guard = sigbus::Guard::enter();
        let copied = self.copy_run(part, offset, len, dst);
        self.finish(guard, copied)
    }

    /// Append the bytes of every segment (runs of `parts`' data) to `dst`,
    /// in order. One SIGBUS guard covers the whole gather, so an
    /// interleaved read of thousands of short runs pays for it once.
    pub fn gather(
        &mut self,
        parts: &[Part],
        segments: impl Iterator<Item = Segment>,
        dst: &mut Vec<u8>,
    ) -> io::Result<()> {
        let guard = sigbus::Guard::enter();
        let mut copied = Ok(());
        for seg in segments {
            let Some(part) = parts.get(seg.part) else {
                copied = Err(io::Error::other("segment names no part"));
                break;
            };
            copied = self.copy_run(part, seg.offset, seg.len, dst);
            if copied.is_err() {
                break;
            }
        }
        self.finish(guard, copied)
    }

    /// Leave the guarded copy. A fault means a part shrank between its
    /// check and the copy: the faulting map is now patched with zero pages,
    /// so every map this session used is thrown away and the read fails.
    fn finish(&mut self, guard: sigbus::Guard, copied: io::Result<()>) -> io::Result<()> {
        if !guard.leave() {
            let failed: Vec<String> = self
                .recent
                .drain(..)
                .map(|(id, _)| {
                    self.store.forget(id);
                    id.to_string()
                })
                .collect();
            self.served.clear();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "a part was truncated during a read (part ids {})",
                    failed.join(", ")
                ),
            ));
        }
        copied
    }

    /// The index in `recent` of `part`'s map, mapping it (after checking
    /// the file is still the one validated) on first use in this session.
    fn slot(&mut self, part: &Part) -> io::Result<usize> {
        if let Some((id, _)) = self.recent.get(self.last) {
            if *id == part.id {
                return Ok(self.last);
            }
        }
        let pos = match self.recent.iter().position(|(id, _)| *id == part.id) {
            Some(pos) => pos,
            None => {
                // Once per part per request: a part changed under the mount
                // gives an error, never stale or foreign bytes.
                if let Err(e) = check_current(part) {
                    self.store.forget(part.id);
                    return Err(e);
                }
                let map = self.store.map(part)?;
                if self.recent.len() >= RECENT {
                    self.recent.remove(0);
                }
                self.recent.push((part.id, map));
                self.recent.len() - 1
            }
        };
        self.last = pos;
        Ok(pos)
    }

    /// Copy one run (no guard: callers hold one).
    fn copy_run(
        &mut self,
        part: &Part,
        offset: u64,
        len: u64,
        dst: &mut Vec<u8>,
    ) -> io::Result<()> {
        let pos = self.slot(part)?;
        let Some((_, map)) = self.recent.get(pos) else {
            return Err(io::Error::other("part map vanished"));
        };
        let start = part.data_offset.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(len));
        let src = match (start, end) {
            (Some(s), Some(e)) if e <= map.len() as u64 => map.get(s as usize..e as usize),
            _ => None,
        };
        let Some(src) = src else {
            return Err(io::Error::other(format!(
                "{}: read of {len} bytes at data offset {offset} is outside the part",
                part.path.display()
            )));
        };
        if len >= WILLNEED_MIN {
            advise(map, s_usize(start), s_usize(end), libc::MADV_WILLNEED);
        }
        dst.extend_from_slice(src);
        let map = map.clone();
        self.served(&map, s_usize(start), s_usize(end));
        Ok(())
    }
}

impl Drop for ReadSession<'_> {
    /// Unmap the copied pages from the daemon (`MADV_DONTNEED`: the page
    /// cache keeps them, the daemon's RSS does not: 137.7 → 7.6 MiB serving
    /// a 1 TiB array), or with `--drop-part-cache` evict them from the page
    /// cache too (`MADV_PAGEOUT`). Best effort.
    fn drop(&mut self) {
        let advice = if self.store.drop_cache {
            libc::MADV_PAGEOUT
        } else {
            libc::MADV_DONTNEED
        };
        for (map, start, end) in self.served.drain(..) {
            advise(&map, start, end, advice);
        }
    }
}

fn s_usize(v: Option<u64>) -> usize {
    v.and_then(|v| usize::try_from(v).ok()).unwrap_or(0)
}

/// `madvise` the whole pages within `[start, end)` of `map` (a partial page
/// at either end is left alone: it may hold a neighbour's bytes). Best effort.
fn advise(map: &Mmap, start: usize, end: usize, advice: libc::c_int) {
    let page = page_size();
    let first = start.div_ceil(page) * page;
    let last = (end / page) * page;
    if last <= first || last > map.len() {
        return;
    }
    // SAFETY: the range lies within the map, which is read-only and shared:
    // WILLNEED only reads ahead; DONTNEED and PAGEOUT drop page-table entries
    // (and clean page-cache pages), and later accesses fault the file's
    // bytes back in, so no byte seen through the map changes.
    unsafe {
        libc::madvise(
            map.as_ptr().add(first) as *mut libc::c_void,
            last - first,
            advice,
        );
    }
}

fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
    })
}

/// Copying from a map whose file was truncated raises SIGBUS. The handler
/// installed here turns that into an error for the copy that hit it: it
/// maps a zero page over the faulting address (so the copy can finish) and
/// flags the copy as failed; the caller then throws the map away. A SIGBUS
/// outside such a copy keeps its default action.
mod sigbus {
    use std::cell::Cell;
    use std::sync::atomic::{compiler_fence, Ordering};
    use std::sync::Once;

    thread_local! {
        static IN_COPY: Cell<bool> = const { Cell::new(false) };
        static FAULTED: Cell<bool> = const { Cell::new(false) };
    }

    static INSTALL: Once = Once::new();

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        let ours = IN_COPY.with(|c| c.get());
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { info.as_ref().map(|i| i.si_addr() as usize) };
        match (ours, addr) {
            (true, Some(addr)) => {
                // SAFETY: sysconf and mmap are async-signal-safe; the page
                // replaced belongs to a part map that is discarded after
                // this copy.
                unsafe {
                    let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
                    let base = addr & !(page - 1);
                    libc::mmap(
                        base as *mut libc::c_void,
                        page,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    );
                }
                FAULTED.with(|f| f.set(true));
            }
            _ => unsafe {
                // Not a guarded copy: restore the default action; returning
                // re-runs the faulting access, which then ends the process.
                libc::signal(sig, libc::SIG_DFL);
            },
        }
    }

    fn install() {
        INSTALL.call_once(|| unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                log::warn!("cannot install the SIGBUS handler");
            }
        });
    }

    /// While alive, a SIGBUS on this thread is a failed copy, not a crash.
    pub(super) struct Guard(());

    impl Guard {
        pub(super) fn enter() -> Guard {
            install();
            FAULTED.with(|f| f.set(false));
            IN_COPY.with(|c| c.set(true));
            compiler_fence(Ordering::SeqCst);
            Guard(())
        }

        /// End the guarded copy; false if it faulted.
        pub(super) fn leave(self) -> bool {
            drop(self);
            !FAULTED.with(|f| f.get())
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            compiler_fence(Ordering::SeqCst);
            IN_COPY.with(|c| c.set(false));
        }
    }
}

/// Writes through to part files (`--writable`), keeping each part's
/// read-write descriptor for the duration of one request.
#[derive(Default)]
pub struct WriteSession {
    open: Vec<(u64, File)>,
}

impl WriteSession {
    /// Write `bytes` at data offset `offset` of `part`.
    pub fn write(&mut self, part: &Part, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let end = offset.saturating_add(bytes.len() as u64);
        if end > part.nbytes {
            return Err(io::Error::other(format!(
                "{}: write outside the part's data",
                part.path.display()
            )));
        }
        let pos = match self.open.iter().position(|(id, _)| *id == part.id) {
            Some(pos) => pos,
            None => {
                check_current(part)?;
                // Even a root daemon honours the part's write bits.
                let mode = std::fs::metadata(&part.path)?.mode();
                if mode & 0o222 == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{}: part is not writable", part.path.display()),
                    ));
                }
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&part.path)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("{}: cannot open for writing: {e}", part.path.display()),
                        )
                    })?;
                self.open.push((part.id, file));
                self.open.len() - 1
            }
        };
        let Some((_, file)) = self.open.get(pos) else {
            return Err(io::Error::other("part file vanished"));
        };
        file.write_all_at(bytes, part.data_offset + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_from_a_truncated_map_fails_instead_of_crashing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        std::fs::write(&path, vec![7u8; 3 * 4096]).expect("write");
        let file = File::open(&path).expect("open");
        let map = unsafe { MmapOptions::new().map(&file) }.expect("map");
        let copy = |dst: &mut Vec<u8>| {
            let guard = sigbus::Guard::enter();
            dst.extend_from_slice(&map[..]);
            guard.leave()
        };
        let mut dst = Vec::new();
        assert!(copy(&mut dst));
        assert_eq!(dst, vec![7u8; 3 * 4096]);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(100))
            .expect("truncate");
        dst.clear();
        assert!(!copy(&mut dst), "the copy must report the fault");
    }
}
