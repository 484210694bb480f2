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
}

impl PartStore {
    pub fn new(max_maps: usize) -> Self {
        PartStore {
            cache: Mutex::new(Cache {
                maps: HashMap::new(),
                clock: 0,
            }),
            max_maps: max_maps.max(1),
        }
    }

    /// Number of maps currently held.
    pub fn mapped(&self) -> usize {
        self.lock().maps.len()
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
}

const RECENT: usize = 16;

impl<'a> ReadSession<'a> {
    pub fn new(store: &'a PartStore) -> Self {
        ReadSession {
            store,
            recent: Vec::new(),
        }
    }

    /// The bytes `[offset, offset + len)` of `part`'s data.
    pub fn bytes(&mut self, part: &Part, offset: u64, len: u64) -> io::Result<&[u8]> {
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
        let map = match self.recent.get(pos) {
            Some((_, map)) => map,
            None => return Err(io::Error::other("part map vanished")),
        };
        let start = part.data_offset.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(len));
        let range = match (start, end) {
            (Some(s), Some(e)) => usize::try_from(s).ok().zip(usize::try_from(e).ok()),
            _ => None,
        };
        range.and_then(|(s, e)| map.get(s..e)).ok_or_else(|| {
            io::Error::other(format!(
                "{}: read of {len} bytes at data offset {offset} is outside the part",
                part.path.display()
            ))
        })
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
