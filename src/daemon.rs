//! Mount lifecycle: validate, detach a daemon (fork, no re-exec), mount,
//! tune readahead, serve, and unmount lazily on SIGINT/SIGTERM.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use std::ffi::OsStr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionACL};

use crate::fs::NpyFs;
use crate::parts::PartStore;
use crate::source;
use crate::vfs::{Change, Options, Vfs};

/// Everything a mount needs, independent of how it was asked for.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub allow_other: bool,
    pub threads: usize,
    pub log_file: Option<PathBuf>,
    pub read_ahead_kb: u32,
    pub max_maps: usize,
    /// Writes go through to the parts.
    pub writable: bool,
    /// How often to look for changes of the source; None: never.
    pub watch_interval: Option<Duration>,
    pub drop_part_cache: bool,
}

/// Validate the source and mount it. In daemon mode this returns in the
/// parent once the child reports the mount live (or its error).
pub fn mount(cfg: &MountConfig) -> Result<()> {
    let source = cfg
        .source
        .canonicalize()
        .map_err(|e| anyhow!("{}: {}", cfg.source.display(), e))?;
    let mountpoint = cfg
        .mountpoint
        .canonicalize()
        .map_err(|e| anyhow!("{}: mount point: {}", cfg.mountpoint.display(), e))?;
    if !mountpoint.is_dir() {
        bail!("{}: mount point is not a directory", mountpoint.display());
    }
    let arrays = source::load(&source)?;
    for array in &arrays {
        source::check_outside(&array.spec, &mountpoint)?;
    }
    if cfg.foreground {
        crate::logging::init(cfg.log_file.as_deref())?;
        let result = serve(cfg, &source, &mountpoint, arrays, None);
        return result;
    }

    let (read_fd, write_fd) = pipe()?;
    // SAFETY: no thread has been started yet (validation is single-threaded),
    // so the child may continue running Rust code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            // Child: the daemon.
            unsafe { libc::close(read_fd) };
            let mut status = unsafe { File::from_raw_fd(write_fd) };
            let code = match daemon_child(cfg, &source, &mountpoint, arrays, &mut status) {
                Ok(()) => 0,
                Err(e) => {
                    // Reaches the parent only if the mount never went live.
                    let _ = writeln!(status, "{e:#}");
                    log::error!("{e:#}");
                    1
                }
            };
            std::process::exit(code);
        }
        _child => {
            unsafe { libc::close(write_fd) };
            // The daemon keeps its end open while it serves: read its first
            // line ("OK"), or everything until it exits (an error).
            let mut status = BufReader::new(unsafe { File::from_raw_fd(read_fd) });
            let mut message = String::new();
            let _ = status.read_line(&mut message);
            if message == "OK\n" {
                return Ok(());
            }
            let _ = status.read_to_string(&mut message);
            if message.trim().is_empty() {
                bail!("the npyfs daemon exited before the mount was live")
            } else {
                Err(anyhow!("{}", message.trim_end()))
            }
        }
    }
}

fn daemon_child(
    cfg: &MountConfig,
    source: &Path,
    mountpoint: &Path,
    arrays: Vec<source::VirtualArray>,
    status: &mut File,
) -> Result<()> {
    unsafe { libc::setsid() };
    detach_stdio(cfg.log_file.as_deref())?;
    crate::logging::init(cfg.log_file.as_deref())?;
    serve(cfg, source, mountpoint, arrays, Some(status))
}

/// Point stdin/stdout at /dev/null and stderr at the log file (or /dev/null),
/// so the caller's terminal or pipes are released.
fn detach_stdio(log_file: Option<&Path>) -> Result<()> {
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    let err = match log_file {
        Some(p) => File::options()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("{}: cannot open log file", p.display()))?,
        None => null.try_clone()?,
    };
    use std::os::fd::AsRawFd;
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(err.as_raw_fd(), 2);
    }
    Ok(())
}

fn pipe() -> Result<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    Ok((fds[0], fds[1]))
}

/// Mount and serve until unmounted or signalled.
fn serve(
    cfg: &MountConfig,
    source: &Path,
    mountpoint: &Path,
    arrays: Vec<source::VirtualArray>,
    status: Option<&mut File>,
) -> Result<()> {
    block_signals();
    let count = arrays.len();
    let vfs = Arc::new(Vfs::new(
        arrays,
        PartStore::new(cfg.max_maps).with_drop_cache(cfg.drop_part_cache),
        Options {
            writable: cfg.writable,
        },
    ));
    let fs = NpyFs::new(vfs.clone(), unsafe { libc::getuid() }, unsafe {
        libc::getgid()
    });

    let mut options = vec![
        MountOption::FSName(source.display().to_string()),
        MountOption::Subtype("npyfs".into()),
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
    ];
    options.push(if cfg.writable {
        MountOption::RW
    } else {
        MountOption::RO
    });
    if cfg.allow_other {
        options.push(MountOption::DefaultPermissions);
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = true;

    let session = Session::new(fs, mountpoint, &config)
        .map_err(|e| anyhow!("{}: cannot mount: {e}", mountpoint.display()))?;
    if cfg.read_ahead_kb > 0 {
        if let Err(e) = set_read_ahead(mountpoint, cfg.read_ahead_kb) {
            log::warn!("cannot raise readahead: {e:#}");
        }
    }
    log::info!(
        "mounted {} at {} ({count} arrays)",
        source.display(),
        mountpoint.display()
    );

    let (done_tx, done_rx) = mpsc::channel::<()>();
    spawn_signal_thread(mountpoint.to_path_buf(), vfs.clone(), done_rx)?;
    if let Some(interval) = cfg.watch_interval {
        spawn_watcher(
            source.to_path_buf(),
            mountpoint.to_path_buf(),
            vfs,
            session.notifier(),
            interval,
        )?;
    }

    if let Some(status) = status {
        status.write_all(b"OK\n").context("report to parent")?;
    }
    let result = session.run();
    let _ = done_tx.send(());
    result.map_err(|e| anyhow!("{}: session ended: {e}", mountpoint.display()))
}

/// Block the termination signals in this thread (and so in every thread it
/// starts), so only the signal thread receives them.
fn block_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// On SIGINT/SIGTERM/SIGHUP: unmount lazily (a process that still maps a
/// file keeps its view), give the session a moment to finish, exit 0.
fn spawn_signal_thread(mountpoint: PathBuf, vfs: Arc<Vfs>, done: mpsc::Receiver<()>) -> Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            let mut sig: libc::c_int = 0;
            unsafe {
                libc::sigemptyset(&mut set);
                for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::sigaddset(&mut set, s);
                }
                libc::sigwait(&set, &mut sig);
            }
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = unmount(&mountpoint) {
                log::warn!("{e:#}");
            }
            // The session ends by itself once no process uses the mount; if a
            // process still maps a file, leave it its mapping and go.
            let _ = done.recv_timeout(Duration::from_secs(2));
            if let Err(e) = vfs.sync() {
                log::error!("final sync: {e}");
            }
            std::process::exit(0);
        })
        .context("signal thread")?;
    Ok(())
}

/// Poll the source for changes and apply them, telling the kernel which
/// cached pages, attributes and names to forget.
fn spawn_watcher(
    source: PathBuf,
    mountpoint: PathBuf,
    vfs: Arc<Vfs>,
    notifier: Notifier,
    interval: Duration,
) -> Result<()> {
    std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let mut reloader = crate::live::Reloader::new(&source, &mountpoint);
            let mut pause = interval;
            loop {
                std::thread::sleep(pause);
                let started = std::time::Instant::now();
                for change in reloader.reload(&vfs) {
                    notify(&notifier, &change);
                }
                // A look costs a stat per part: with very many parts, look
                // less often so that watching stays under ~10% of a core.
                pause = interval.max(started.elapsed() * 10);
            }
        })
        .context("watcher thread")?;
    Ok(())
}

fn notify(notifier: &Notifier, change: &Change) {
    // ENOENT only means the kernel holds nothing to forget.
    let result = match change {
        Change::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
        Change::Entry { parent, name } => notifier.inval_entry(INodeNo(*parent), OsStr::new(name)),
    };
    if let Err(e) = result {
        if e.raw_os_error() != Some(libc::ENOENT) {
            log::debug!("invalidate {change:?}: {e}");
        }
    }
}

/// Lazily unmount `mountpoint`: works while files are mapped, and on a stale
/// mount whose daemon died ("Transport endpoint is not connected").
pub fn unmount(mountpoint: &Path) -> Result<()> {
    let path = if mountpoint.is_absolute() {
        mountpoint.to_path_buf()
    } else {
        std::env::current_dir()?.join(mountpoint)
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("{}: path contains a NUL byte", path.display()))?;
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        // Not root: the setuid helper can do it for the mounting user.
        for helper in ["fusermount3", "fusermount"] {
            if let Ok(out) = std::process::Command::new(helper)
                .args(["-u", "-z"])
                .arg(&path)
                .output()
            {
                if out.status.success() {
                    return Ok(());
                }
            }
        }
    }
    if err.raw_os_error() == Some(libc::EINVAL) {
        bail!("{}: not a mount point", path.display());
    }
    Err(anyhow!("{}: cannot unmount: {err}", path.display()))
}

/// Raise the kernel readahead of the mount's backing device info; the kernel
/// caps FUSE readahead at 128 KiB otherwise.
fn set_read_ahead(mountpoint: &Path, kib: u32) -> Result<()> {
    let dev = mount_device(mountpoint)?;
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    std::fs::write(&path, format!("{kib}\n")).with_context(|| path.clone())?;
    log::info!("{path} = {kib}");
    Ok(())
}

/// "major:minor" of the mount at `mountpoint`, from /proc/self/mountinfo
/// (a stat of the mount point would ask this very daemon, not yet serving).
pub fn mount_device(mountpoint: &Path) -> Result<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("/proc/self/mountinfo")?;
    let wanted = mountpoint.to_string_lossy();
    info.lines()
        .rev()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let dev = fields.nth(2)?;
            let point = fields.nth(1)?;
            (unescape_mountinfo(point) == wanted).then(|| dev.to_string())
        })
        .next()
        .ok_or_else(|| anyhow!("{}: not found in mountinfo", mountpoint.display()))
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if let [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] = rest {
            out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
            rest = rest.get(4..).unwrap_or_default();
            continue;
        }
        out.push(first);
        rest = tail;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }
}
