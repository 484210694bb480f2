//! System integration on real mounts (always unmounted by Drop guards):
//! extended attributes, the mount(8) helper and `-o` options, logs,
//! completions and man pages, `inspect --at`.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{is_mounted, mount_line, write_npy, Mounted, Rng, Unmount, BIN};

/// Two arrays, one in a subfolder.
fn setup(dir: &Path) -> PathBuf {
    let mut rng = Rng(42);
    write_npy(&dir.join("a.npy"), "<f8", &[20, 10], false, &mut rng);
    write_npy(&dir.join("b.npy"), "<f8", &[20, 5], false, &mut rng);
    let manifest = dir.join("arrays.toml");
    std::fs::write(
        &manifest,
        "[[array]]\nname = \"wide.npy\"\naxis = 1\nparts = [\"a.npy\", \"b.npy\"]\n\n\
         [[array]]\nname = \"sub/a.npy\"\nparts = [\"a.npy\"]\n",
    )
    .expect("manifest");
    manifest
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL")
}

/// getxattr(2) with a buffer of `size` bytes: Ok(value or needed length) or errno.
fn getxattr(path: &Path, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let p = cpath(path);
    let n = CString::new(name).expect("name");
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), ptr, size) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    if size == 0 {
        return Ok((r as u64).to_le_bytes().to_vec());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn get(path: &Path, name: &str) -> String {
    String::from_utf8(getxattr(path, name, 4096).expect(name)).expect("utf-8")
}

fn listxattr(path: &Path) -> Vec<String> {
    let p = cpath(path);
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn xattrs_describe_each_virtual_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = setup(dir.path());
    let m = Mounted::new(&manifest);
    let wide = m.path().join("wide.npy");
    assert_eq!(
        listxattr(&wide),
        [
            "user.npyfs.parts",
            "user.npyfs.axis",
            "user.npyfs.shape",
            "user.npyfs.dtype",
            "user.npyfs.order"
        ]
    );
    let parts = get(&wide, "user.npyfs.parts");
    let want = format!(
        "{}\n{}",
        dir.path()
            .canonicalize()
            .expect("canon")
            .join("a.npy")
            .display(),
        dir.path()
            .canonicalize()
            .expect("canon")
            .join("b.npy")
            .display()
    );
    assert_eq!(parts, want);
    assert_eq!(get(&wide, "user.npyfs.axis"), "1");
    assert_eq!(get(&wide, "user.npyfs.shape"), "(20, 15)");
    assert_eq!(get(&wide, "user.npyfs.dtype"), "<f8");
    assert_eq!(get(&wide, "user.npyfs.order"), "C");
    assert_eq!(
        get(&m.path().join("sub/a.npy"), "user.npyfs.shape"),
        "(20, 10)"
    );

    // The size protocol: 0 asks for the length; too small is ERANGE.
    let needed = getxattr(&wide, "user.npyfs.shape", 0).expect("size");
    assert_eq!(needed, 8u64.to_le_bytes());
    assert_eq!(getxattr(&wide, "user.npyfs.shape", 3), Err(libc::ERANGE));
    assert_eq!(getxattr(&wide, "user.npyfs.nope", 100), Err(libc::ENODATA));
    assert_eq!(getxattr(&wide, "security.selinux", 100), Err(libc::ENODATA));

    // Directories have none.
    assert!(listxattr(&m.path().join("sub")).is_empty());
    assert!(listxattr(m.path()).is_empty());
    assert_eq!(
        getxattr(&m.path().join("sub"), "user.npyfs.shape", 100),
        Err(libc::ENODATA)
    );

    // getfattr -d, when installed (package "attr"), shows them.
    if let Ok(out) = Command::new("getfattr").arg("-d").arg(&wide).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("user.npyfs.shape=\"(20, 15)\""), "{text}");
    } else {
        eprintln!("getfattr not installed; checked with getxattr(2) only");
    }
}

/// `-o` as mount(8) passes it, after the positional arguments.
#[test]
fn helper_symlink_mounts_as_a_daemon_with_o_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = setup(dir.path());
    let bin = tempfile::tempdir().expect("bin");
    let helper = bin.path().join("mount.fuse.npyfs");
    std::os::unix::fs::symlink(BIN, &helper).expect("symlink");
    let mnt = tempfile::tempdir().expect("mnt");
    let log = dir.path().join("npyfs.log");
    let _guard = Unmount(mnt.path().to_path_buf());
    let out = Command::new(&helper)
        .arg(&manifest)
        .arg(mnt.path())
        .arg("-o")
        .arg(format!(
            "rw,noauto,allow_other,threads=2,nofail,_netdev,log_file={}",
            log.display()
        ))
        .env("RUST_LOG", "info")
        .output()
        .expect("run helper");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The helper returned: a daemon serves the mount.
    // fuser mounts as root with type "fuse" (via fusermount3 "fuse.npyfs").
    let line = mount_line(mnt.path()).expect("mounted");
    assert!(line.contains(" - fuse"), "{line}");
    assert!(line.contains("arrays.toml"), "source shown: {line}");
    assert!(line.contains("allow_other"), "{line}");
    assert!(
        line.contains(" ro,") || line.contains(" ro "),
        "read-only: {line}"
    );
    let served = std::fs::read(mnt.path().join("wide.npy")).expect("read");
    assert!(served.starts_with(b"\x93NUMPY"));
    // The daemon logs to the log_file given with -o.
    let logged = std::fs::read_to_string(&log).expect("log file");
    assert!(logged.contains("mounted"), "{logged}");

    // mount -f (fake) mounts nothing.
    let mnt2 = tempfile::tempdir().expect("mnt2");
    let out = Command::new(&helper)
        .arg(&manifest)
        .arg(mnt2.path())
        .args(["-f", "-o", "allow_other"])
        .output()
        .expect("run helper");
    assert!(out.status.success());
    assert!(!is_mounted(mnt2.path()));
}

#[test]
fn unknown_o_option_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = setup(dir.path());
    let mnt = tempfile::tempdir().expect("mnt");
    let _guard = Unmount(mnt.path().to_path_buf());
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&manifest)
        .arg(mnt.path())
        .args(["-o", "ro,turbo=1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mount option \"turbo=1\": unknown option"),
        "{err}"
    );
    assert!(!is_mounted(mnt.path()));
}

/// `mount -t fuse.npyfs` through /sbin/mount.fuse.npyfs, when this machine
/// lets the test install the helper (root, util-linux mount, no helper yet).
#[test]
fn mount_t_fuse_npyfs_for_real() {
    let sbin = Path::new("/sbin/mount.fuse.npyfs");
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP mount_t_fuse_npyfs_for_real: needs root");
        return;
    }
    if sbin.symlink_metadata().is_ok() {
        eprintln!(
            "SKIP mount_t_fuse_npyfs_for_real: {} exists already; not replacing it",
            sbin.display()
        );
        return;
    }
    if Command::new("mount").arg("--version").output().is_err() {
        eprintln!("SKIP mount_t_fuse_npyfs_for_real: no mount(8)");
        return;
    }
    struct RemoveLink<'a>(&'a Path);
    impl Drop for RemoveLink<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    if let Err(e) = std::os::unix::fs::symlink(BIN, sbin) {
        eprintln!(
            "SKIP mount_t_fuse_npyfs_for_real: cannot create {}: {e}",
            sbin.display()
        );
        return;
    }
    let _link = RemoveLink(sbin);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = setup(dir.path());
    let mnt = tempfile::tempdir().expect("mnt");
    let _guard = Unmount(mnt.path().to_path_buf());
    let out = Command::new("mount")
        .args(["-t", "fuse.npyfs"])
        .arg(&manifest)
        .arg(mnt.path())
        .args(["-o", "allow_other,threads=2,noatime"])
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount -t fuse.npyfs: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = mount_line(mnt.path()).expect("mounted");
    assert!(
        line.contains(" - fuse") && line.contains("allow_other"),
        "{line}"
    );
    let bytes = std::fs::read(mnt.path().join("sub/a.npy")).expect("read");
    assert_eq!(
        bytes,
        std::fs::read(dir.path().join("a.npy")).expect("part")
    );
    let out = Command::new("umount")
        .arg(mnt.path())
        .output()
        .expect("umount");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(mnt.path()));

    // An fstab line, from a private fstab file (mount -T), so /etc/fstab is
    // left alone.
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test\n{}  {}  fuse.npyfs  ro,allow_other,threads=2,nofail,_netdev,noauto  0  0\n",
            manifest.display(),
            mnt.path().display()
        ),
    )
    .expect("fstab");
    let out = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(mnt.path())
        .output()
        .expect("run mount -T");
    assert!(
        out.status.success(),
        "mount -T fstab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(mnt.path()));
    assert!(mnt.path().join("wide.npy").is_file());
    let out = Command::new("umount")
        .arg(mnt.path())
        .output()
        .expect("umount");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(mnt.path()));
}

#[test]
fn foreground_logs_go_to_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = setup(dir.path());
    let m = Mounted::with(&manifest, &[], &[("RUST_LOG", "info")]);
    let err = m.finish();
    assert!(err.contains("mounted"), "stderr: {err}");
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("export") && text.contains("inspect"),
            "{shell}: {text}"
        );
    }
    let out = Command::new(BIN).arg("man").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(".TH npyfs 1"), "{text}");
    assert!(text.contains("export"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "npyfs.1",
        "npyfs-mount.1",
        "npyfs-export.1",
        "npyfs-inspect.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.contains(".TH"), "{page}");
    }
    let mount = std::fs::read_to_string(dir.path().join("npyfs-mount.1")).expect("page");
    assert!(mount.contains("allow_other"), "the -o help is in the page");
}

#[test]
fn inspect_at_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = setup(dir.path());
    let inspect = |args: &[&str]| {
        Command::new(BIN)
            .arg("inspect")
            .arg(&manifest)
            .args(args)
            .output()
            .expect("run")
    };
    let out = inspect(&["--name", "wide", "--at", "index:3,12"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("element (3, 12)"), "{text}");
    assert!(text.contains("part 1:") && text.contains("b.npy"), "{text}");
    assert!(text.contains("part index (3, 2)"), "{text}");

    let out = inspect(&["--name", "wide.npy", "--at", "byte:5"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("header"));

    let out = inspect(&["--name", "wide", "--at=-1,-1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["served_by"]["kind"], "part");
    assert_eq!(v["served_by"]["part_element"], serde_json::json!([19, 4]));

    let out = inspect(&["--at", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--name") && err.contains("sub/a.npy, wide.npy"),
        "{err}"
    );

    let out = inspect(&["--name", "wide", "--at", "index:20,0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("out of bounds for axis 0 with size 20"),
        "{err}"
    );
    assert!(err.contains("arrays.toml"), "names the source: {err}");
}
