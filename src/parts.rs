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
    drop_cache: bool,
}

/// Segments at least this long are read ahead with `MADV_WILLNEED` before
/// they are copied (one large I/O instead of a fault per readaround window).
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
    /// file's pages.
    pub fn with_drop_cache(mut self, drop_cache: bool) -> Self {
        self.drop_cache = drop_cache;
        self
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

    /// Forget every map.
    pub fn clear(&self) {
        self.lock().maps.clear();
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

fn map_part(part: &Part) -> io::Result<Mmap> {
    let file = File::open(&part.path)?;
    let size = file.metadata()?.len();
    let needed = part.data_offset.saturating_add(part.nbytes);
    if size < needed {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: part shrank to {size} bytes, {needed} needed",
                part.path.display()
            ),
        ));
    }
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
    /// Ranges served (index into `recent`'s maps kept alive, start, end),
    /// released by [`ReadSession::release`] once the reply is sent.
    served: Vec<(Arc<Mmap>, usize, usize)>,
}

const RECENT: usize = 16;

impl<'a> ReadSession<'a> {
    pub fn new(store: &'a PartStore) -> Self {
        ReadSession {
            store,
            recent: Vec::new(),
            served: Vec::new(),
        }
    }

    /// Call once the bytes handed out have been copied (the reply is sent):
    /// unmap the served pages from the daemon (`MADV_DONTNEED`; the page
    /// cache keeps them, the daemon's RSS does not), and with `drop_cache`
    /// evict them from the page cache too (`MADV_PAGEOUT`). Best effort.
    pub fn release(&mut self) {
        let advice = if self.store.drop_cache {
            libc::MADV_PAGEOUT
        } else {
            libc::MADV_DONTNEED
        };
        for (map, start, end) in self.served.drain(..) {
            advise(&map, start, end, advice);
        }
    }

    /// The bytes `[offset, offset + len)` of `part`'s data.
    pub fn bytes(&mut self, part: &Part, offset: u64, len: u64) -> io::Result<&[u8]> {
        let pos = match self.recent.iter().position(|(id, _)| *id == part.id) {
            Some(pos) => pos,
            None => {
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
        match (start, end) {
            (Some(s), Some(e)) if e <= map.len() as u64 => {
                let (s, e) = (s as usize, e as usize);
                if len >= WILLNEED_MIN {
                    advise(map, s, e, libc::MADV_WILLNEED);
                }
                // Interleaved reads (axis > 0) serve each part's bytes in
                // contiguous runs: extend the part's last range.
                if let Some((_, _, end)) = self
                    .served
                    .iter_mut()
                    .rev()
                    .take(RECENT)
                    .find(|(m, _, end)| *end == s && Arc::ptr_eq(m, map))
                {
                    *end = e;
                } else {
                    self.served.push((map.clone(), s, e));
                }
                Ok(&map[s..e])
            }
            _ => Err(io::Error::other(format!(
                "{}: read of {len} bytes at data offset {offset} is outside the part",
                part.path.display()
            ))),
        }
    }
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
    // bytes back in, so no slice handed out can observe a change.
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
