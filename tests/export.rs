//! `npyfs export`: the file written is byte for byte what a real mount of
//! the same source serves, for every axis, order, stack and raw parts; it is
//! written atomically and never overwrites without --force.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{random_bytes, write_npy, Mounted, Rng, BIN};
use npyfs::export::{self, ExportOptions};

/// Names of the arrays `setup` defines.
const NAMES: &[&str] = &[
    "c_axis0.npy",
    "c_axis1.npy",
    "c_axis2.npy",
    "f_axis0.npy",
    "f_axis1.npy",
    "f_axis2.npy",
    "stack1.npy",
    "raw_axis1.npy",
    "big_axis0.npy",
    "big_f_last.npy",
];

/// Parts and a manifest defining every case in `NAMES`.
fn setup(dir: &Path) -> PathBuf {
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut manifest = String::new();
    let mut array = |name: &str, extra: &str, parts: Vec<String>| {
        let list: Vec<String> = parts.iter().map(|p| format!("\"{p}\"")).collect();
        manifest.push_str(&format!(
            "[[array]]\nname = \"{name}\"\n{extra}parts = [{}]\n\n",
            list.join(", ")
        ));
    };
    for (order, fortran) in [("c", false), ("f", true)] {
        let shapes: [&[[u64; 3]]; 3] = [
            &[[4, 5, 3], [0, 5, 3], [7, 5, 3]],
            &[[4, 2, 3], [4, 5, 3], [4, 1, 3]],
            &[[4, 5, 1], [4, 5, 6], [4, 5, 2]],
        ];
        for (axis, shapes) in shapes.iter().enumerate() {
            let mut parts = Vec::new();
            for (i, shape) in shapes.iter().enumerate() {
                let p = format!("{order}{axis}_{i}.npy");
                write_npy(&dir.join(&p), "<u2", shape, fortran, &mut rng);
                parts.push(p);
            }
            array(
                &format!("{order}_axis{axis}.npy"),
                &format!("axis = {axis}\n"),
                parts,
            );
        }
    }
    let mut parts = Vec::new();
    for i in 0..3 {
        let p = format!("s{i}.npy");
        write_npy(&dir.join(&p), "<f4", &[4, 5], false, &mut rng);
        parts.push(p);
    }
    array("stack1.npy", "axis = 1\nstack = true\n", parts);

    // Raw parts: a plain dump and one after a 16-byte prefix.
    std::fs::write(dir.join("a.array"), random_bytes(6 * 3 * 8, &mut rng)).expect("raw a");
    std::fs::write(dir.join("b.array"), random_bytes(16 + 6 * 4 * 8, &mut rng)).expect("raw b");
    manifest.push_str(
        "[[array]]\nname = \"raw_axis1.npy\"\naxis = 1\nparts = [\n\
         { path = \"a.array\", dtype = \"<f8\", shape = [6, 3] },\n\
         { path = \"b.array\", dtype = \"<f8\", shape = [6, 4], offset = 16 } ]\n\n",
    );

    // Large whole-part runs: the copy_file_range path.
    let mut array = |name: &str, extra: &str, parts: Vec<String>| {
        let list: Vec<String> = parts.iter().map(|p| format!("\"{p}\"")).collect();
        manifest.push_str(&format!(
            "[[array]]\nname = \"{name}\"\n{extra}parts = [{}]\n\n",
            list.join(", ")
        ));
    };
    write_npy(&dir.join("big0.npy"), "<f8", &[300_000], false, &mut rng);
    write_npy(&dir.join("big1.npy"), "<f8", &[1000], false, &mut rng);
    write_npy(&dir.join("big2.npy"), "<f8", &[200_000], false, &mut rng);
    array(
        "big_axis0.npy",
        "",
        vec!["big0.npy".into(), "big1.npy".into(), "big2.npy".into()],
    );
    write_npy(&dir.join("bf0.npy"), "<i8", &[1000, 150], true, &mut rng);
    write_npy(&dir.join("bf1.npy"), "<i8", &[1000, 200], true, &mut rng);
    array(
        "big_f_last.npy",
        "axis = 1\n",
        vec!["bf0.npy".into(), "bf1.npy".into()],
    );

    let path = dir.join("arrays.toml");
    std::fs::write(&path, manifest).expect("manifest");
    path
}

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(BIN)
        .arg("export")
        .args(args)
        .output()
        .expect("run npyfs export")
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("readdir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("npyfs-export"))
        .collect()
}

#[test]
fn export_matches_the_mount_byte_for_byte() {
    let src = tempfile::tempdir().expect("tempdir");
    let manifest = setup(src.path());
    let out = tempfile::tempdir().expect("out");
    let mount = Mounted::new(&manifest);
    let arrays = npyfs::source::load(&manifest).expect("load");
    for name in NAMES {
        let served = std::fs::read(mount.path().join(name)).expect("read mount");
        let target = out.path().join(name);
        let o = run(&[manifest.as_os_str(), name.as_ref(), target.as_os_str()]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout.is_empty(), "no progress bar when piped");
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let written = std::fs::read(&target).expect("read export");
        assert_eq!(written.len(), served.len(), "{name}: size");
        assert!(written == served, "{name}: bytes differ from the mount");

        // The library, with a tiny buffer and no copy_file_range: same bytes.
        let array = npyfs::locate::find_array(&arrays, Some(name)).expect("find");
        let small = out.path().join(format!("small_{name}"));
        let opts = ExportOptions {
            force: false,
            buffer_size: 4096,
            copy_range: false,
        };
        let mut calls = 0u64;
        let mut last = 0u64;
        let report = export::export(array, &small, &opts, &mut |done, total| {
            assert!(done >= last && done <= total);
            last = done;
            calls += 1;
        })
        .expect("export");
        assert_eq!(report.range_copied, 0);
        assert_eq!(report.bytes, served.len() as u64);
        assert_eq!(last, report.bytes);
        assert!(
            std::fs::read(&small).expect("read") == served,
            "{name}: small buffer"
        );

        // With copy_file_range, big whole-part runs go through the kernel.
        if name.starts_with("big") {
            let ranged = out.path().join(format!("ranged_{name}"));
            let report = export::export(array, &ranged, &ExportOptions::default(), &mut |_, _| {})
                .expect("export");
            assert!(report.range_copied > 0, "{name}: {report:?}");
            assert!(
                std::fs::read(&ranged).expect("read") == served,
                "{name}: ranged"
            );
        }
    }
    assert!(leftovers(out.path()).is_empty());
    drop(mount);
}

#[test]
fn refuses_to_overwrite_without_force() {
    let src = tempfile::tempdir().expect("tempdir");
    let manifest = setup(src.path());
    let out = tempfile::tempdir().expect("out");
    let target = out.path().join("x.npy");
    std::fs::write(&target, b"precious").expect("write");
    let o = run(&[manifest.as_os_str(), "c_axis1".as_ref(), target.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert!(
        err.contains(&*target.to_string_lossy()),
        "names the file: {err}"
    );
    assert_eq!(std::fs::read(&target).expect("read"), b"precious");

    let o = run(&[
        manifest.as_os_str(),
        "c_axis1".as_ref(),
        target.as_os_str(),
        "--force".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&target).expect("read");
    assert!(bytes.starts_with(b"\x93NUMPY"));
    // np.save's permissions: 0666 less the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&target)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o200, 0o200, "owner-writable: {mode:o}");
    assert!(leftovers(out.path()).is_empty());
}

#[test]
fn unknown_name_lists_the_available_ones() {
    let src = tempfile::tempdir().expect("tempdir");
    let manifest = setup(src.path());
    let out = tempfile::tempdir().expect("out");
    let target = out.path().join("x.npy");
    let o = run(&[manifest.as_os_str(), "nope".as_ref(), target.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no array named \"nope\""), "{err}");
    assert!(err.contains("c_axis0.npy, c_axis1.npy"), "{err}");
    assert!(!target.exists());
}

#[test]
fn a_failure_leaves_no_temporary_file_and_no_output() {
    let src = tempfile::tempdir().expect("tempdir");
    let manifest = setup(src.path());
    let arrays = npyfs::source::load(&manifest).expect("load");
    let out = tempfile::tempdir().expect("out");
    // A part shrinks after validation: both copy paths must fail cleanly.
    let f = std::fs::File::options()
        .write(true)
        .open(src.path().join("big2.npy"))
        .expect("open");
    f.set_len(1000).expect("truncate");
    let array = npyfs::locate::find_array(&arrays, Some("big_axis0")).expect("find");
    for copy_range in [true, false] {
        let target = out.path().join(format!("big_{copy_range}.npy"));
        let opts = ExportOptions {
            copy_range,
            ..ExportOptions::default()
        };
        let e = export::export(array, &target, &opts, &mut |_, _| {}).expect_err("must fail");
        assert!(e.to_string().contains("big2.npy"), "names the part: {e}");
        assert!(!target.exists(), "no output after a failure");
        assert!(
            leftovers(out.path()).is_empty(),
            "{:?}",
            leftovers(out.path())
        );
    }

    // An output folder that does not exist.
    let target = out.path().join("missing/x.npy");
    let e = export::export(array, &target, &ExportOptions::default(), &mut |_, _| {})
        .expect_err("must fail");
    assert!(e.to_string().contains("missing"), "{e}");

    // OUTPUT is a directory.
    let e = export::export(array, out.path(), &ExportOptions::default(), &mut |_, _| {})
        .expect_err("must fail");
    assert!(e.to_string().contains("is a directory"), "{e}");
    assert!(leftovers(out.path()).is_empty());
}

#[test]
fn folder_source_and_name_without_suffix() {
    let src = tempfile::tempdir().expect("tempdir");
    let sub = src.path().join("train");
    std::fs::create_dir(&sub).expect("mkdir");
    let mut rng = Rng(7);
    for i in 0..3 {
        write_npy(
            &sub.join(format!("{i}.npy")),
            "<i4",
            &[10, 2],
            false,
            &mut rng,
        );
    }
    let out = tempfile::tempdir().expect("out");
    let target = out.path().join("t.npy");
    let o = run(&[src.path().as_os_str(), "train".as_ref(), target.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mount = Mounted::new(src.path());
    let served = std::fs::read(mount.path().join("train.npy")).expect("read");
    assert!(std::fs::read(&target).expect("read") == served);
}

#[test]
fn an_interrupted_export_removes_its_temporary_file() {
    let src = tempfile::tempdir().expect("tempdir");
    // Two sparse raw parts interleaved byte by byte: slow enough to interrupt.
    let n: u64 = 16 << 20;
    for name in ["a.raw", "b.raw"] {
        let f = std::fs::File::create(src.path().join(name)).expect("create");
        f.set_len(n).expect("sparse");
    }
    let manifest = src.path().join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[array]]\nname = \"slow.npy\"\naxis = 1\nparts = [\n\
             {{ path = \"a.raw\", dtype = \"|u1\", shape = [{n}, 1] }},\n\
             {{ path = \"b.raw\", dtype = \"|u1\", shape = [{n}, 1] }} ]\n"
        ),
    )
    .expect("manifest");
    let out = tempfile::tempdir().expect("out");
    let target = out.path().join("slow.npy");
    let mut child = Command::new(BIN)
        .arg("export")
        .arg(&manifest)
        .arg("slow")
        .arg(&target)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while leftovers(out.path()).is_empty() {
        if start.elapsed() > std::time::Duration::from_secs(20) || target.exists() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("SKIP: the export finished before it could be interrupted");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().expect("wait");
    if target.exists() {
        eprintln!("SKIP: the export finished before the signal arrived");
        return;
    }
    assert_eq!(status.code(), Some(130));
    assert!(
        leftovers(out.path()).is_empty(),
        "{:?}",
        leftovers(out.path())
    );
}
