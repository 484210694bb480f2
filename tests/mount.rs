//! Real FUSE mounts: every test mounts on its own temporary directory and
//! always unmounts (a Drop guard), even when it fails.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{is_mounted, Mounted, Rng, Unmount, BIN};
use npyfs::npy;

/// Write an npy part of u32 elements, C order.
fn write_part(path: &Path, shape: &[u64], values: &[u32]) {
    let dtype = npy::parse_dtype("<u4").expect("dtype");
    let mut f = File::create(path).expect("create part");
    f.write_all(&npy::write_header(&dtype, shape, false))
        .expect("header");
    for v in values {
        f.write_all(&v.to_le_bytes()).expect("data");
    }
}

/// Two 2-d parts (rows × cols_i), and the concatenation along `axis`
/// computed element by element.
fn setup(dir: &Path, axis: usize) -> (PathBuf, Vec<u8>) {
    let rows = 300u64;
    let cols = [7u64, 0, 13];
    let mut parts = Vec::new();
    let mut counter = 0u32;
    for (i, &c) in cols.iter().enumerate() {
        let shape = if axis == 0 { [c, rows] } else { [rows, c] };
        let n = (shape[0] * shape[1]) as usize;
        let values: Vec<u32> = (0..n)
            .map(|_| {
                counter += 1;
                counter
            })
            .collect();
        let path = dir.join(format!("p{i}.npy"));
        write_part(&path, &shape, &values);
        parts.push((shape, values));
    }
    let total: u64 = cols.iter().sum();
    let shape = if axis == 0 {
        [total, rows]
    } else {
        [rows, total]
    };
    let mut data = Vec::new();
    for r in 0..shape[0] {
        for c in 0..shape[1] {
            // Find the part holding (r, c).
            let (mut r, mut c) = (r, c);
            for (pshape, values) in &parts {
                let along = if axis == 0 { &mut r } else { &mut c };
                let len = pshape[axis];
                if *along < len {
                    let v = values[(r * pshape[1] + c) as usize];
                    data.extend_from_slice(&v.to_le_bytes());
                    break;
                }
                *along -= len;
            }
        }
    }
    let dtype = npy::parse_dtype("<u4").expect("dtype");
    let mut expected = npy::write_header(&dtype, &shape, false);
    expected.extend_from_slice(&data);
    let names: Vec<String> = (0..cols.len()).map(|i| format!("\"p{i}.npy\"")).collect();
    let manifest = dir.join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[array]]\nname = \"sub/x.npy\"\naxis = {axis}\nparts = [{}]\n",
            names.join(", ")
        ),
    )
    .expect("manifest");
    (manifest, expected)
}

fn check_reads(file: &Path, expected: &[u8], seed: u64) {
    assert_eq!(std::fs::read(file).expect("read whole"), expected);
    let f = File::open(file).expect("open");
    let mut rng = Rng(seed);
    let len = expected.len() as u64;
    for _ in 0..300 {
        let offset = rng.below(len + 100);
        let cap = if rng.below(4) == 0 { 300_000 } else { 5000 };
        let size = 1 + rng.below(cap);
        let mut buf = vec![0u8; size as usize];
        let n = f.read_at(&mut buf, offset).expect("pread");
        let lo = offset.min(len) as usize;
        let hi = (offset + size).min(len) as usize;
        assert_eq!(&buf[..n], &expected[lo..hi], "offset {offset} size {size}");
    }
}

#[test]
fn axis0_and_axis1_reads_match_element_walk() {
    for axis in [0usize, 1] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (manifest, expected) = setup(dir.path(), axis);
        let m = Mounted::new(&manifest);
        let file = m.path().join("sub/x.npy");
        assert_eq!(
            std::fs::metadata(&file).expect("stat").len(),
            expected.len() as u64
        );
        assert!(m.path().join("sub").is_dir());
        check_reads(&file, &expected, 0x9e37_79b9 + axis as u64);
    }
}

#[test]
fn writes_are_refused_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manifest, _) = setup(dir.path(), 0);
    let m = Mounted::new(&manifest);
    let err = File::options()
        .write(true)
        .open(m.path().join("sub/x.npy"))
        .expect_err("write open must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn folder_mode_lists_subfolders_as_arrays() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (folder, n) in [("day", 12u32), ("night", 3)] {
        let sub = dir.path().join(folder);
        std::fs::create_dir(&sub).expect("mkdir");
        for i in 1..=n {
            write_part(&sub.join(format!("s{i}.npy")), &[2, 3], &[i; 6]);
        }
    }
    let m = Mounted::new(dir.path());
    let mut names: Vec<String> = std::fs::read_dir(m.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["day.npy", "night.npy"]);
    let bytes = std::fs::read(m.path().join("day.npy")).expect("read");
    let header = npy::read_header(&bytes[..]).expect("header");
    assert_eq!(header.shape, vec![24, 3]);
    // Natural order: s1, s2, …, s10, s11, s12.
    let data = &bytes[header.data_offset as usize..];
    let firsts: Vec<u32> = data
        .chunks(24)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(firsts, (1..=12).collect::<Vec<u32>>());
}

#[test]
fn daemon_mode_returns_and_sigterm_unmounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manifest, expected) = setup(dir.path(), 1);
    let mnt = tempfile::tempdir().expect("mnt");
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&manifest)
        .arg(mnt.path())
        .output()
        .expect("run mount");
    // Guard first, so a failing assertion still unmounts.
    let _guard = Unmount(mnt.path().to_path_buf());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(mnt.path()));
    assert_eq!(
        std::fs::read(mnt.path().join("sub/x.npy")).expect("read"),
        expected
    );
    // Find the daemon by its command line and signal it.
    let pid = find_daemon(mnt.path()).expect("daemon process");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    while is_mounted(mnt.path()) || Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn find_daemon(mnt: &Path) -> Option<i32> {
    let want = mnt.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if args.iter().any(|a| a == "mount") && args.contains(&want) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn invalid_source_mounts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "[[array]]\nname = \"x.npy\"\nparts = [\"missing.npy\"]\n",
    )
    .expect("manifest");
    let mnt = tempfile::tempdir().expect("mnt");
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&manifest)
        .arg(mnt.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.npy"), "{stderr}");
    assert!(!is_mounted(mnt.path()));
}
