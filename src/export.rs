//! `npyfs export`: write one virtual array to a real `.npy` file, byte for
//! byte what the mount serves, without mounting.
//!
//! Runs of the output that come from one part in one piece (axis 0 in C
//! order, the last axis in Fortran order, ...) are copied with
//! `copy_file_range(2)`, which the kernel may turn into a reflink or a
//! server-side copy; interleaved runs are gathered from the part maps into a
//! large buffer and written with one `pwrite` per buffer.
//!
//! The file is written under a temporary name beside OUTPUT and renamed at
//! the end, so OUTPUT is either absent/untouched or complete. The temporary
//! file is removed on any error (and by [`remove_pending`] on a signal).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::parts::{PartStore, ReadSession};
use crate::source::VirtualArray;

/// Default gather buffer: 8 MiB.
pub const DEFAULT_BUFFER: usize = 8 << 20;

/// Runs at least this long go through `copy_file_range`.
const RANGE_COPY_MIN: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Replace an existing OUTPUT.
    pub force: bool,
    /// Gather buffer size in bytes.
    pub buffer_size: usize,
    /// Use `copy_file_range` for long contiguous runs.
    pub copy_range: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            force: false,
            buffer_size: DEFAULT_BUFFER,
            copy_range: true,
        }
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Bytes of the output file.
    pub bytes: u64,
    /// Data bytes copied in the kernel by `copy_file_range`.
    pub range_copied: u64,
    /// Data bytes gathered through the buffer.
    pub buffered: u64,
}

/// An export failure, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: already exists (use --force to replace it)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> ExportError {
    ExportError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The temporary file of the export in progress, for [`remove_pending`].
static PENDING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Remove the temporary file of an export in progress (call from a signal
/// handler thread before exiting).
pub fn remove_pending() {
    let pending = PENDING.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(path) = pending {
        let _ = std::fs::remove_file(path);
    }
}

fn set_pending(path: Option<PathBuf>) {
    *PENDING.lock().unwrap_or_else(|p| p.into_inner()) = path;
}

/// Write `array` to `output`. `progress(done, total)` is called with the
/// bytes written so far.
pub fn export(
    array: &VirtualArray,
    output: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport, ExportError> {
    if output.is_dir() {
        return Err(file_err(output, "is a directory; give a file name"));
    }
    if !opts.force && output.symlink_metadata().is_ok() {
        return Err(ExportError::Exists(output.to_path_buf()));
    }
    let file_name = output
        .file_name()
        .ok_or_else(|| file_err(output, "not a file name"))?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".npyfs-export-");
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(&dir)
        .map_err(|e| file_err(&dir, format!("cannot create a temporary file here: {e}")))?;
    set_pending(Some(temp.path().to_path_buf()));
    let result = write_all(array, temp.as_file(), temp.path(), opts, progress).and_then(|report| {
        // np.save's mode: 0666 less the umask.
        let mode = 0o666 & !current_umask();
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| file_err(temp.path(), e))?;
        let persisted = if opts.force {
            temp.persist(output).map(|_| ())
        } else {
            temp.persist_noclobber(output).map(|_| ())
        };
        // On failure the error owns the temporary file and removes it on drop.
        persisted.map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                ExportError::Exists(output.to_path_buf())
            } else {
                file_err(
                    output,
                    format!("cannot rename the temporary file into place: {}", e.error),
                )
            }
        })?;
        Ok(report)
    });
    set_pending(None);
    result
}

fn current_umask() -> u32 {
    // SAFETY: umask only swaps a process attribute; restored at once.
    let mask = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(mask) };
    mask as u32
}

/// Header then data, at their offsets.
fn write_all(
    array: &VirtualArray,
    out: &File,
    out_path: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport, ExportError> {
    let header_len = array.header_len();
    let total = array.size();
    out.set_len(total).map_err(|e| {
        file_err(
            out_path,
            format!("cannot size the output to {total} bytes: {e}"),
        )
    })?;
    out.write_all_at(&array.header, 0)
        .map_err(|e| file_err(out_path, e))?;
    progress(header_len, total);

    let store = PartStore::new(64);
    let mut session = ReadSession::new(&store);
    let mut report = ExportReport {
        bytes: total,
        ..ExportReport::default()
    };
    let cap = opts.buffer_size.max(4096);
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    // Virtual file offset where `buf` goes.
    let mut buf_at = header_len;
    // Virtual file offset of the next segment.
    let mut pos = header_len;
    let mut range_ok = opts.copy_range;
    let mut open: Option<(usize, File)> = None;

    let flush = |buf: &mut Vec<u8>, at: u64, report: &mut ExportReport| {
        out.write_all_at(buf, at)
            .map_err(|e| file_err(out_path, e))?;
        report.buffered += buf.len() as u64;
        buf.clear();
        Ok::<(), ExportError>(())
    };

    for seg in array.layout.segments(0, array.layout.nbytes()) {
        let part = array.parts.get(seg.part).ok_or_else(|| {
            file_err(
                &array.origin,
                format!("array \"{}\": segment names no part", array.name),
            )
        })?;
        if range_ok && seg.len >= RANGE_COPY_MIN {
            flush(&mut buf, buf_at, &mut report)?;
            buf_at = pos;
            if open.as_ref().map(|(i, _)| *i) != Some(seg.part) {
                let f = File::open(&part.path)
                    .map_err(|e| file_err(&part.path, format!("cannot open part: {e}")))?;
                open = Some((seg.part, f));
            }
            if let Some((_, src)) = &open {
                let src_off = part.data_offset.saturating_add(seg.offset);
                match copy_range(src, src_off, out, pos, seg.len) {
                    Ok(()) => {
                        report.range_copied += seg.len;
                        pos += seg.len;
                        buf_at = pos;
                        progress(pos, total);
                        continue;
                    }
                    Err(RangeError::Unsupported(e)) => {
                        log::info!("copy_file_range unsupported ({e}); copying through a buffer");
                        range_ok = false;
                    }
                    Err(RangeError::Short(done)) => {
                        return Err(file_err(
                            &part.path,
                            format!(
                                "part ended early: {} of {} bytes at file offset {src_off} \
                                 (did it shrink since it was validated?)",
                                done, seg.len
                            ),
                        ))
                    }
                    Err(RangeError::Io(e)) => {
                        return Err(file_err(
                            &part.path,
                            format!("copy to {}: {e}", out_path.display()),
                        ))
                    }
                }
            }
        }
        // Buffered: gather this segment, in buffer-sized pieces.
        let mut off = seg.offset;
        let mut left = seg.len;
        while left > 0 {
            if buf.len() >= cap {
                flush(&mut buf, buf_at, &mut report)?;
                buf_at = pos;
                progress(pos, total);
                // Release the pages copied so far from this process.
                session = ReadSession::new(&store);
            }
            let room = (cap - buf.len()) as u64;
            let take = left.min(room);
            session
                .copy_into(part, off, take, &mut buf)
                .map_err(|e| file_err(&part.path, e))?;
            off += take;
            left -= take;
            pos += take;
        }
    }
    flush(&mut buf, buf_at, &mut report)?;
    progress(total, total);
    Ok(report)
}

enum RangeError {
    /// Not supported for these files: fall back to buffered copies.
    Unsupported(io::Error),
    /// The source ended after this many bytes.
    Short(u64),
    Io(io::Error),
}

/// Copy `len` bytes from `src` at `src_off` to `dst` at `dst_off` in the kernel.
fn copy_range(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> Result<(), RangeError> {
    let mut done = 0u64;
    while done < len {
        let (Ok(mut off_in), Ok(mut off_out)) = (
            libc::loff_t::try_from(src_off + done),
            libc::loff_t::try_from(dst_off + done),
        ) else {
            return Err(RangeError::Io(io::Error::other("offset beyond 2^63")));
        };
        let chunk = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        // SAFETY: valid descriptors and offset pointers for the call's duration.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP | libc::EINVAL) if done == 0 => {
                    Err(RangeError::Unsupported(e))
                }
                _ => Err(RangeError::Io(e)),
            };
        }
        if n == 0 {
            return Err(RangeError::Short(done));
        }
        done += n as u64;
    }
    Ok(())
}
