//! Helpers shared by the integration tests of export, xattrs and the mount
//! helper: real mounts that are always unmounted (Drop guards).
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use npyfs::npy;

pub const BIN: &str = env!("CARGO_BIN_EXE_npyfs");

pub fn is_mounted(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|p| p == want))
}

/// The mountinfo line of `mnt`, if mounted.
pub fn mount_line(mnt: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy().to_string();
    info.lines()
        .find(|l| l.split(' ').nth(4).is_some_and(|p| p == want))
        .map(str::to_string)
}

pub fn wait_mounted(mnt: &Path) {
    let start = Instant::now();
    while !is_mounted(mnt) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "mount never appeared at {}",
            mnt.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts (lazily, via `npyfs unmount`) when dropped.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new(BIN)
                .arg("unmount")
                .arg(&self.0)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A foreground daemon serving SOURCE at a fresh mount point.
pub struct Mounted {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mounted {
    pub fn new(source: &Path) -> Mounted {
        Mounted::with(source, &[], &[])
    }

    pub fn with(source: &Path, args: &[&str], env: &[(&str, &str)]) -> Mounted {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(BIN)
            .arg("mount")
            .arg(source)
            .arg(dir.path())
            .arg("--foreground")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn npyfs");
        let m = Mounted {
            dir,
            child: Some(child),
        };
        wait_mounted(m.path());
        m
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Unmount, wait for the daemon, and return its stderr.
    pub fn finish(mut self) -> String {
        self.stop()
    }

    fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let _ = Command::new(BIN)
            .arg("unmount")
            .arg(self.dir.path())
            .status();
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                _ if start.elapsed() > Duration::from_secs(5) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            use std::io::Read;
            let _ = s.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tiny deterministic generator (no extra dependency).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Write an npy part: header for (dtype, shape, order) and `nbytes` of
/// pseudo-random data. Returns the path.
pub fn write_npy(path: &Path, dtype: &str, shape: &[u64], fortran: bool, rng: &mut Rng) -> PathBuf {
    let dt = npy::parse_dtype(dtype).expect("dtype");
    let itemsize = npy::itemsize(&dt).expect("itemsize");
    let mut f = File::create(path).expect("create part");
    f.write_all(&npy::write_header(&dt, shape, fortran))
        .expect("header");
    let n = shape.iter().product::<u64>() * itemsize;
    f.write_all(&random_bytes(n as usize, rng)).expect("data");
    path.to_path_buf()
}

pub fn random_bytes(n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(n);
    out
}
