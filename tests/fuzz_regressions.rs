//! Runs every saved fuzz input in `fuzz/regressions/<target>/` through the same
//! checks the `cargo fuzz` targets run (`fuzz/checks.rs`), with stable cargo, so
//! CI keeps every crash the fuzzer ever found fixed.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn run(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let files = checks::corpus(&dir);
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for file in files {
        let data = std::fs::read(&file).expect("read regression input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", file.display());
    }
}

#[test]
fn npy_header_regressions() {
    run("npy_header", checks::npy_header);
}

#[test]
fn manifest_regressions() {
    run("manifest", checks::manifest);
}

#[test]
fn layout_regressions() {
    run("layout", checks::layout);
}
