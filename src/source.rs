//! Open and validate the part files of each array definition and build the
//! virtual arrays: dtype agreement, order decision, geometry, header bytes.
//!
//! Reading part headers is the only I/O done here; the data itself is mapped
//! lazily by [`crate::parts`]. No file descriptor is kept open after
//! validation, so 100,000 parts cost nothing at rest.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::layout::{Layout, LayoutError};
use crate::manifest::{ArraySpec, ManifestError, PartSpec};
use crate::npy::{self, DType};

/// A bad input: the file at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct SourceError {
    pub path: PathBuf,
    pub reason: String,
}

impl SourceError {
    pub fn new(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        SourceError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<ManifestError> for SourceError {
    fn from(e: ManifestError) -> Self {
        SourceError {
            path: e.path,
            reason: e.message,
        }
    }
}

/// Process-wide unique part identities, so caches keyed by part survive a
/// rebuild of the array list without confusing an old part with a new one.
static NEXT_PART_ID: AtomicU64 = AtomicU64::new(1);

/// One validated part file: where its data lies.
#[derive(Debug, Clone)]
pub struct Part {
    pub id: u64,
    pub path: PathBuf,
    /// Byte offset of the element data in the file.
    pub data_offset: u64,
    /// Bytes of element data the array needs from this file.
    pub nbytes: u64,
    /// The part's shape (numpy semantics).
    pub shape: Vec<u64>,
    pub fortran_order: bool,
    /// Permission bits of the file when it was validated.
    pub mode: u32,
    pub mtime: SystemTime,
    /// File size when validated.
    pub file_size: u64,
    /// Device and inode: identity of the file when validated.
    pub dev_ino: (u64, u64),
}

/// A virtual `.npy` file: header bytes followed by the parts' data in layout order.
#[derive(Debug)]
pub struct VirtualArray {
    pub name: String,
    pub dtype: DType,
    pub layout: Layout,
    pub header: Vec<u8>,
    pub parts: Vec<Part>,
    /// The manifest or folder that defined it.
    pub origin: PathBuf,
    /// Permission bits: the intersection of the parts' bits.
    pub mode: u32,
    /// Newest mtime of the parts.
    pub mtime: SystemTime,
    /// The definition it was built from (for live reloads).
    pub spec: ArraySpec,
}

impl VirtualArray {
    /// Size of the virtual file in bytes.
    pub fn size(&self) -> u64 {
        (self.header.len() as u64).saturating_add(self.layout.nbytes())
    }

    pub fn header_len(&self) -> u64 {
        self.header.len() as u64
    }

    /// Human order name.
    pub fn order_name(&self) -> &'static str {
        if self.layout.fortran() {
            "F"
        } else {
            "C"
        }
    }
}

impl Part {
    /// Whether the file at the part's path is still exactly the file that
    /// was validated: same identity, size, mtime and mode.
    pub fn unchanged_on_disk(&self) -> bool {
        self.on_disk() == Some(DiskState::Same)
    }

    /// How the file at the part's path compares with the validated one
    /// (None: it cannot be looked at).
    pub fn on_disk(&self) -> Option<DiskState> {
        let m = std::fs::metadata(&self.path).ok()?;
        let same_file = (m.dev(), m.ino()) == self.dev_ino
            && m.len() == self.file_size
            && m.mode() & 0o7777 == self.mode;
        Some(match (same_file, m.modified().ok() == Some(self.mtime)) {
            (true, true) => DiskState::Same,
            (true, false) => DiskState::Touched,
            (false, _) => DiskState::Different,
        })
    }
}

/// A part file compared with what was validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// Same identity, size, mode and mtime.
    Same,
    /// Same identity, size and mode; a new mtime (its bytes may differ).
    Touched,
    /// Replaced, resized or its mode changed.
    Different,
}

/// Load a source (manifest or folder) and build every array it defines.
pub fn load(source: &Path) -> Result<Vec<VirtualArray>, SourceError> {
    let specs = crate::manifest::load_source(source)?;
    specs.iter().map(build_array).collect()
}

/// Refuse an array with a part inside `mountpoint`: the daemon would read
/// its own files (a folder source holding the mount point, or a glob that
/// reaches into it).
pub fn check_outside(spec: &ArraySpec, mountpoint: &Path) -> Result<(), SourceError> {
    match spec.parts.iter().find(|p| p.path().starts_with(mountpoint)) {
        Some(part) => Err(SourceError::new(
            part.path(),
            format!(
                "array \"{}\": part is inside the mount point {}; npyfs would read its own files",
                spec.name,
                mountpoint.display()
            ),
        )),
        None => Ok(()),
    }
}

/// What a part's header (or a raw part's manifest entry) says.
struct Described {
    dtype: DType,
    shape: Vec<u64>,
    fortran_order: bool,
    data_offset: u64,
    raw: bool,
}

/// Validate one array definition and build its virtual file.
pub fn build_array(spec: &ArraySpec) -> Result<VirtualArray, SourceError> {
    let array_err = |reason: String| {
        SourceError::new(&spec.origin, format!("array \"{}\": {reason}", spec.name))
    };
    if spec.parts.is_empty() {
        return Err(array_err("parts list is empty".into()));
    }
    let mut parts = Vec::with_capacity(spec.parts.len());
    let mut first: Option<(DType, PathBuf)> = None;
    let mut itemsize = 0;
    for part_spec in &spec.parts {
        let path = part_spec.path();
        let part_err = |reason: String| SourceError::new(path, reason);
        let file = File::open(path).map_err(|e| part_err(format!("cannot open part: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| part_err(format!("cannot stat part: {e}")))?;
        if meta.is_dir() {
            return Err(part_err("part is a directory, not a file".into()));
        }
        let described = describe(part_spec, &file).map_err(&part_err)?;
        match &first {
            None => {
                itemsize = npy::itemsize(&described.dtype).map_err(&part_err)?;
                first = Some((described.dtype.clone(), path.to_path_buf()));
            }
            Some((dtype, first_path)) => {
                if *dtype != described.dtype {
                    return Err(part_err(format!(
                        "dtype {} differs from {} of the first part {} (array \"{}\")",
                        npy::dtype_name(&described.dtype),
                        npy::dtype_name(dtype),
                        first_path.display(),
                        spec.name
                    )));
                }
            }
        }
        let nbytes = described
            .shape
            .iter()
            .try_fold(itemsize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| part_err("part size overflows 64 bits".into()))?;
        let needed = described
            .data_offset
            .checked_add(nbytes)
            .ok_or_else(|| part_err("part size overflows 64 bits".into()))?;
        let file_size = meta.len();
        if file_size < needed {
            let what = if described.raw {
                format!(
                    "raw part too small: offset {} + {} bytes (dtype {}, shape {:?}) needs {} bytes, the file holds {}",
                    described.data_offset,
                    nbytes,
                    npy::dtype_name(&described.dtype),
                    described.shape,
                    needed,
                    file_size
                )
            } else {
                format!(
                    "truncated part: its header promises {nbytes} data bytes after offset {} \
                     (shape {:?}), the file holds only {} bytes",
                    described.data_offset,
                    described.shape,
                    file_size.saturating_sub(described.data_offset)
                )
            };
            return Err(part_err(what));
        }
        parts.push(Part {
            id: NEXT_PART_ID.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
            data_offset: described.data_offset,
            nbytes,
            shape: described.shape,
            fortran_order: described.fortran_order,
            mode: meta.mode() & 0o7777,
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            file_size,
            dev_ino: (meta.dev(), meta.ino()),
        });
    }
    let Some((dtype, _)) = first else {
        return Err(array_err("parts list is empty".into()));
    };

    let fortran = decide_order(&parts, spec)?;
    let shapes: Vec<Vec<u64>> = parts.iter().map(|p| p.shape.clone()).collect();
    let layout = Layout::new(&shapes, spec.axis, spec.stack, fortran, itemsize)
        .map_err(|e| layout_error(e, spec, &parts))?;
    let header = npy::write_header(&dtype, layout.shape(), layout.fortran());
    let mode = parts.iter().fold(0o7777, |m, p| m & p.mode) & 0o777;
    let mtime = parts
        .iter()
        .map(|p| p.mtime)
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(VirtualArray {
        name: spec.name.clone(),
        dtype,
        layout,
        header,
        parts,
        origin: spec.origin.clone(),
        mode,
        mtime,
        spec: spec.clone(),
    })
}

/// Read what a part file holds: its npy header, or the manifest's word for a raw part.
fn describe(spec: &PartSpec, file: &File) -> Result<Described, String> {
    match spec {
        PartSpec::Npy { .. } => {
            let h = npy::read_header(BufReader::new(file.take(npy::MAX_HEADER_LEN + 64)))?;
            Ok(Described {
                dtype: h.dtype,
                shape: h.shape,
                fortran_order: h.fortran_order,
                data_offset: h.data_offset,
                raw: false,
            })
        }
        PartSpec::Raw {
            dtype,
            shape,
            fortran_order,
            offset,
            ..
        } => {
            let dtype = npy::parse_dtype(dtype).map_err(|e| format!("raw part dtype: {e}"))?;
            Ok(Described {
                dtype,
                shape: shape.clone(),
                fortran_order: *fortran_order,
                data_offset: *offset,
                raw: true,
            })
        }
    }
}

/// An array whose bytes are the same in C and Fortran order: no elements,
/// or at most one dimension longer than 1. numpy calls such an array
/// C-contiguous, so `np.save` labels it C.
fn order_neutral(shape: &[u64]) -> bool {
    shape.contains(&0) || shape.iter().filter(|&&d| d > 1).count() <= 1
}

/// Fortran when the result has more than one dimension and the parts are
/// Fortran-order; order-neutral parts decide nothing; real mixes are refused.
fn decide_order(parts: &[Part], spec: &ArraySpec) -> Result<bool, SourceError> {
    let mut decided: Option<&Part> = None;
    for part in parts.iter().filter(|p| !order_neutral(&p.shape)) {
        match decided {
            None => decided = Some(part),
            Some(first) if first.fortran_order != part.fortran_order => {
                let name = |f: bool| if f { "Fortran" } else { "C" };
                return Err(SourceError::new(
                    &part.path,
                    format!(
                        "order mismatch: this part is {}-order but {} is {}-order (array \"{}\")",
                        name(part.fortran_order),
                        first.path.display(),
                        name(first.fortran_order),
                        spec.name
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(decided.is_some_and(|p| p.fortran_order))
}

fn layout_error(e: LayoutError, spec: &ArraySpec, parts: &[Part]) -> SourceError {
    let reason = format!("array \"{}\": {e}", spec.name);
    match e.part().and_then(|i| parts.get(i)) {
        Some(part) => SourceError::new(&part.path, reason),
        None => SourceError::new(&spec.origin, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_inside_the_mount_point_are_refused() {
        let spec = ArraySpec {
            name: "x.npy".into(),
            parts: vec![
                PartSpec::Npy {
                    path: "/data/a.npy".into(),
                },
                PartSpec::Npy {
                    path: "/data/mnt/b.npy".into(),
                },
            ],
            axis: 0,
            stack: false,
            origin: "/data/m.toml".into(),
        };
        let e = check_outside(&spec, Path::new("/data/mnt")).expect_err("inside");
        assert_eq!(e.path, Path::new("/data/mnt/b.npy"));
        assert!(e.reason.contains("inside the mount point /data/mnt"), "{e}");
        assert!(
            check_outside(&spec, Path::new("/data/mn")).is_ok(),
            "a prefix of a name is not a folder"
        );
        assert!(check_outside(&spec, Path::new("/elsewhere")).is_ok());
    }

    #[test]
    fn neutral_shapes() {
        assert!(order_neutral(&[]));
        assert!(order_neutral(&[5]));
        assert!(order_neutral(&[1, 5]));
        assert!(order_neutral(&[5, 1, 1]));
        assert!(order_neutral(&[0, 1]));
        assert!(order_neutral(&[0, 4, 5]));
        assert!(order_neutral(&[3, 0, 5]));
        assert!(!order_neutral(&[2, 5]));
        assert!(order_neutral(&[3, 0, 5]), "no elements fits either order");
    }
}
