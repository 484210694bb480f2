//! Live folders and manifests: re-read the source, rebuild only the arrays
//! whose definition or parts changed, keep the last good state when an edit
//! is invalid, and tell the kernel what to forget.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::source::{self, DiskState, SourceError, VirtualArray};
use crate::vfs::{Change, Vfs};

/// Re-reads one source; remembers what it last complained about so a
/// lasting problem is logged once, not at every look.
#[derive(Debug)]
pub struct Reloader {
    source: PathBuf,
    mountpoint: PathBuf,
    complaints: HashMap<String, String>,
}

impl Reloader {
    /// Watch `source`, served at `mountpoint` (parts inside it are refused).
    pub fn new(source: &Path, mountpoint: &Path) -> Self {
        Reloader {
            source: source.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            complaints: HashMap::new(),
        }
    }

    fn complain(&mut self, key: &str, message: String) {
        if self.complaints.get(key) != Some(&message) {
            log::warn!("{message}");
            self.complaints.insert(key.to_string(), message);
        }
    }

    /// Bring `vfs` up to date with the source. Returns what the kernel must
    /// forget (empty when nothing changed). An invalid source (a bad
    /// manifest edit) changes nothing. An array whose rebuild fails keeps
    /// its last good state, and its cached pages are dropped so that reads
    /// of its broken ranges reach the daemon and fail with EIO.
    pub fn reload(&mut self, vfs: &Vfs) -> Vec<Change> {
        let specs = match crate::manifest::load_source(&self.source) {
            Ok(specs) => {
                self.complaints.remove("");
                specs
            }
            Err(e) => {
                let e = SourceError::from(e);
                self.complain(
                    "",
                    format!("source is invalid, keeping the last good state: {e}"),
                );
                // Arrays whose parts changed under them must not be served
                // from the kernel's cache: their reads now fail instead.
                return vfs
                    .arrays()
                    .iter()
                    .filter(|a| !a.parts.iter().all(|p| p.unchanged_on_disk()))
                    .filter_map(|a| vfs.ino_of(&a.name).map(Change::Inode))
                    .collect();
            }
        };
        let current: HashMap<String, Arc<VirtualArray>> = vfs
            .arrays()
            .into_iter()
            .map(|a| (a.name.clone(), a))
            .collect();
        let written = vfs.take_written();
        let mut stale = Vec::new();
        let mut quiet = HashSet::new();
        let mut next = Vec::with_capacity(specs.len());
        for spec in &specs {
            let old = current.get(&spec.name);
            if let Some(old) = old.filter(|old| old.spec == *spec) {
                let ours = written.get(&spec.name);
                let mut own_writes_only = true;
                let mut same = true;
                for part in &old.parts {
                    match part.on_disk() {
                        Some(DiskState::Same) => {}
                        Some(DiskState::Touched)
                            if ours.is_some_and(|ids| ids.contains(&part.id)) =>
                        {
                            same = false;
                        }
                        _ => {
                            same = false;
                            own_writes_only = false;
                        }
                    }
                }
                if same {
                    next.push(old.clone());
                    continue;
                }
                if own_writes_only {
                    // New mtimes from writes through this very array: the
                    // kernel's cache of it already holds those bytes.
                    quiet.insert(spec.name.clone());
                }
            }
            let built = source::check_outside(spec, &self.mountpoint)
                .and_then(|()| source::build_array(spec));
            match built {
                Ok(array) => {
                    log::info!("array {:?} rebuilt", spec.name);
                    self.complaints.remove(&spec.name);
                    next.push(Arc::new(array));
                }
                Err(e) => {
                    let message = format!("array {:?}: {e}", spec.name);
                    match old {
                        Some(old) => {
                            self.complain(
                                &spec.name,
                                format!("{message}; keeping the last good state"),
                            );
                            stale.extend(vfs.ino_of(&old.name).map(Change::Inode));
                            next.push(old.clone());
                        }
                        None => self.complain(&spec.name, format!("{message}; not added")),
                    }
                }
            }
        }
        let unchanged = next.len() == current.len()
            && next
                .iter()
                .all(|a| current.get(&a.name).is_some_and(|c| Arc::ptr_eq(c, a)));
        let mut changes = if unchanged {
            Vec::new()
        } else {
            vfs.replace_quietly(next, &quiet)
        };
        changes.extend(stale);
        changes.sort();
        changes.dedup();
        changes
    }
}
