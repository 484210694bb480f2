//! The checks behind the fuzz targets, shared with `tests/fuzz_regressions.rs`
//! (which includes this file with `#[path]`), so stable `cargo test` runs every
//! saved input in `fuzz/regressions/<target>/` through exactly what the fuzzer ran.
//!
//! Each check panics on a violated property; an `Err` from npyfs is never a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use npyfs::layout::{Layout, Segment};
use npyfs::{manifest, npy};

// ---------------------------------------------------------------------------
// npy_header: read_header, and write_header of whatever parses
// ---------------------------------------------------------------------------

pub fn npy_header(data: &[u8]) {
    let Ok(h) = npy::read_header(data) else {
        return;
    };
    let offset = usize::try_from(h.data_offset).expect("data_offset fits usize");
    assert!(offset <= data.len(), "data_offset {offset} past the input");
    assert!(h.shape.len() <= npy::MAX_NDIM);
    // Helpers used on every part must not panic.
    let _ = npy::itemsize(&h.dtype);
    let _ = npy::dtype_name(&h.dtype);
    let descr = npy::descr_repr(&h.dtype);
    let concat = npy::concat_dtype(&h.dtype);

    // Whatever parses, numpy-style writing round-trips.
    let written = npy::write_header(&h.dtype, &h.shape, h.fortran_order);
    assert_eq!(written.len() % 64, 0, "header length not 64-aligned");
    let again = npy::read_header(&written[..])
        .unwrap_or_else(|e| panic!("written header does not parse: {e}\n{written:?}"));
    assert_eq!(again.dtype, h.dtype, "dtype changed by write+read");
    assert_eq!(again.shape, h.shape, "shape changed by write+read");
    assert_eq!(again.fortran_order, h.fortran_order);
    assert_eq!(again.data_offset, written.len() as u64);
    assert_eq!(
        npy::write_header(&again.dtype, &again.shape, again.fortran_order),
        written,
        "write_header not stable"
    );
    // The descr repr is itself a dtype string parse_dtype accepts.
    let parsed = npy::parse_dtype(&descr)
        .unwrap_or_else(|e| panic!("descr_repr {descr:?} does not parse: {e}"));
    assert_eq!(parsed, h.dtype, "parse_dtype(descr_repr) differs");
    let _ = npy::write_header(&concat, &h.shape, h.fortran_order);
}

// ---------------------------------------------------------------------------
// manifest: load_manifest on the input as a file; parse_dtype on it as text
// ---------------------------------------------------------------------------

pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        dtype_text(text);
    }
    if escapes_scratch_dir(data) {
        return;
    }
    let dir = scratch_dir();
    let path = dir.join("m.toml");
    std::fs::write(&path, data).expect("write scratch manifest");
    let result = manifest::load_manifest(&path);
    let _ = std::fs::remove_file(&path);
    match result {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
        }
        Ok(arrays) => {
            let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
            assert!(
                names.windows(2).all(|w| w[0] < w[1]),
                "not sorted/unique: {names:?}"
            );
            for a in &arrays {
                assert!(a.name.ends_with(".npy"), "name {:?}", a.name);
                assert!(!a.parts.is_empty(), "array {:?} without parts", a.name);
                for p in &a.parts {
                    assert!(p.path().is_absolute(), "relative part path {:?}", p.path());
                }
            }
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

fn dtype_text(text: &str) {
    let Ok(d) = npy::parse_dtype(text) else {
        return;
    };
    npy::itemsize(&d).expect("parse_dtype accepted a dtype without an itemsize");
    let descr = npy::descr_repr(&d);
    let again = npy::parse_dtype(&descr)
        .unwrap_or_else(|e| panic!("descr_repr {descr:?} of {text:?} does not parse: {e}"));
    assert_eq!(again, d, "parse_dtype(descr_repr(parse_dtype({text:?})))");
    let _ = npy::dtype_name(&d);
    let header = npy::write_header(&d, &[2, 3], false);
    let h = npy::read_header(&header[..]).expect("header of a parsed dtype parses");
    assert_eq!(h.dtype, d);
}

/// True when some string in the TOML could name a path outside the scratch
/// folder (absolute, `..`, or a recursive glob): globbing `/**` would walk the
/// whole machine, which is slow, not wrong. Unparseable TOML cannot name paths.
fn escapes_scratch_dir(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    fn bad(v: &toml::Value) -> bool {
        match v {
            toml::Value::String(s) => s.starts_with('/') || s.contains("..") || s.contains("**"),
            toml::Value::Array(a) => a.iter().any(bad),
            toml::Value::Table(t) => t.values().any(bad),
            _ => false,
        }
    }
    table.values().any(bad)
}

fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("npyfs-fuzz-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

// ---------------------------------------------------------------------------
// layout: random geometry, segments vs a brute-force element walk
// ---------------------------------------------------------------------------

/// Reads the fuzz input as a stream of numbers, zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        for b in v.iter_mut() {
            *b = self.u8();
        }
        u64::from_le_bytes(v)
    }
}

/// Model of a layout small enough to enumerate: (result shape, per virtual
/// data byte its (part, byte offset in part)).
fn model(
    shapes: &[Vec<u64>],
    axis: usize,
    stack: bool,
    fortran: bool,
    itemsize: u64,
) -> (Vec<u64>, Vec<(usize, u64)>) {
    let unravel = |mut e: u64, shape: &[u64]| -> Vec<u64> {
        let mut idx = vec![0; shape.len()];
        let order: Vec<usize> = if fortran {
            (0..shape.len()).collect()
        } else {
            (0..shape.len()).rev().collect()
        };
        for i in order {
            idx[i] = e % shape[i];
            e /= shape[i];
        }
        idx
    };
    let ravel = |idx: &[u64], shape: &[u64]| -> u64 {
        let order: Vec<usize> = if fortran {
            (0..shape.len()).rev().collect()
        } else {
            (0..shape.len()).collect()
        };
        order.into_iter().fold(0, |acc, i| acc * shape[i] + idx[i])
    };
    let mut result = shapes[0].clone();
    if stack {
        result.insert(axis, shapes.len() as u64);
    } else {
        result[axis] = shapes.iter().map(|s| s[axis]).sum();
    }
    // (a zero dimension empties the array, however large the others)
    let count: u64 = if result.contains(&0) {
        0
    } else {
        result.iter().product()
    };
    let mut bytes = Vec::new();
    for e in 0..count {
        let idx = unravel(e, &result);
        let (part, local) = if stack {
            let mut local = idx.clone();
            local.remove(axis);
            (idx[axis] as usize, local)
        } else {
            let mut i = idx[axis];
            let mut p = 0;
            while i >= shapes[p][axis] {
                i -= shapes[p][axis];
                p += 1;
            }
            let mut local = idx.clone();
            local[axis] = i;
            (p, local)
        };
        let element = ravel(&local, &shapes[part]);
        for b in 0..itemsize {
            bytes.push((part, element * itemsize + b));
        }
    }
    (result, bytes)
}

/// Largest model (virtual data bytes) the brute-force walk builds.
const MODEL_MAX: u64 = 1 << 14;
/// Most segments checked per range.
const SEGMENTS_MAX: usize = 1 << 12;

pub fn layout(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8();
    let stack = mode & 1 != 0;
    let fortran = mode & 2 != 0;
    let big = mode & 4 != 0; // huge dimensions and itemsizes (overflow paths)
    let wild = mode & 8 != 0; // arbitrary shapes and axis (error paths)
    let ndim = usize::from(input.u8() % 5);
    let nparts = 1 + usize::from(input.u8() % 5);
    let dim = |input: &mut Input| -> u64 {
        if big {
            match input.u8() % 4 {
                0 => input.u64(),
                1 => u64::from(input.u8() % 6),
                _ => input.u64() >> (input.u8() % 64),
            }
        } else {
            u64::from(input.u8() % 6)
        }
    };
    let out_ndim = if stack { ndim + 1 } else { ndim };
    let raw_axis = i64::from(input.u8() as i8);
    let axis = if wild || out_ndim == 0 {
        raw_axis
    } else {
        let n = out_ndim as i64;
        raw_axis.rem_euclid(2 * n) - n
    };
    let norm_axis = if (-(out_ndim as i64)..out_ndim as i64).contains(&axis) {
        Some(axis.rem_euclid((out_ndim as i64).max(1)) as usize)
    } else {
        None
    };
    let first: Vec<u64> = (0..ndim).map(|_| dim(&mut input)).collect();
    let mut shapes = vec![first.clone()];
    for _ in 1..nparts {
        let mut s = first.clone();
        if wild {
            let n = usize::from(input.u8() % 5);
            s = (0..n).map(|_| dim(&mut input)).collect();
        } else if !stack {
            if let Some(a) = norm_axis {
                if let Some(d) = s.get_mut(a) {
                    *d = dim(&mut input);
                }
            }
        }
        shapes.push(s);
    }
    let itemsize = if big {
        input.u64() >> (input.u8() % 64)
    } else {
        u64::from(input.u8() % 5)
    };

    let consistent = !wild && norm_axis.is_some() && (stack || ndim > 0);
    let layout = match Layout::new(&shapes, axis, stack, fortran, itemsize) {
        Ok(l) => l,
        Err(e) => {
            assert!(
                !consistent || big,
                "consistent small shapes refused: {e} {shapes:?} axis {axis} stack {stack}"
            );
            return;
        }
    };
    let nbytes = layout.nbytes();
    assert_eq!(layout.num_parts(), nparts);
    assert!(layout.axis() < layout.shape().len());
    assert_eq!(layout.itemsize(), itemsize);
    assert_eq!(layout.fortran(), fortran);

    // Part sizes are their shapes' bytes, and add up to the total.
    let mut sum = 0u128;
    for (p, s) in shapes.iter().enumerate() {
        let want = s.iter().fold(u128::from(itemsize), |acc, &d| {
            acc.saturating_mul(u128::from(d))
        });
        let got = u128::from(layout.part_nbytes(p));
        if nbytes > 0 {
            assert_eq!(got, want, "part {p} nbytes");
        }
        sum += got;
    }
    if nbytes > 0 {
        assert_eq!(sum, u128::from(nbytes), "parts do not add up to the total");
    }
    let elements = layout.shape().iter().fold(u128::from(itemsize), |acc, &d| {
        acc.saturating_mul(u128::from(d))
    });
    assert_eq!(u128::from(nbytes), elements, "nbytes vs shape");

    let model_elements = layout
        .shape()
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(u128::from(d)));
    let small = model_elements <= u128::from(MODEL_MAX) && nbytes <= MODEL_MAX;
    let model = (small && consistent).then(|| {
        let (shape, bytes) = model(&shapes, norm_axis.unwrap_or(0), stack, fortran, itemsize);
        assert_eq!(layout.shape(), &shape[..], "result shape");
        assert_eq!(bytes.len() as u64, nbytes, "model size");
        bytes
    });

    let ranges = 1 + input.u8() % 8;
    for _ in 0..ranges {
        let offset = match input.u8() % 3 {
            0 => input.u64(),
            _ => input.u64() % nbytes.saturating_add(2),
        };
        let len = match input.u8() % 4 {
            0 => u64::MAX,
            1 => input.u64(),
            2 => u64::from(input.u8()),
            _ => input.u64() % nbytes.saturating_add(2),
        };
        check_range(&layout, model.as_deref(), offset, len);
    }
}

fn check_range(layout: &Layout, model: Option<&[(usize, u64)]>, offset: u64, len: u64) {
    let nbytes = layout.nbytes();
    let end = offset.saturating_add(len).min(nbytes);
    let want_total = end.saturating_sub(offset);
    let mut total = 0u64;
    let mut prev: Option<Segment> = None;
    let mut complete = true;
    for (i, s) in layout.segments(offset, len).enumerate() {
        if i >= SEGMENTS_MAX {
            complete = false;
            break;
        }
        assert!(s.len > 0, "empty segment {s:?}");
        assert!(s.part < layout.num_parts(), "segment {s:?} names no part");
        let seg_end = s.offset.checked_add(s.len).expect("segment end overflows");
        assert!(
            seg_end <= layout.part_nbytes(s.part),
            "segment {s:?} past the end of its part ({})",
            layout.part_nbytes(s.part)
        );
        if let Some(p) = prev {
            assert!(
                !(p.part == s.part && p.offset + p.len == s.offset),
                "mergeable neighbours {p:?} {s:?}"
            );
        }
        let virt = offset + total;
        if i < 64 {
            // The segment starting at `virt` is what locate() says serves it.
            let at = layout.locate(virt).expect("locate inside the array");
            assert_eq!((at.part, at.offset), (s.part, s.offset), "locate({virt})");
            assert!(at.len >= s.len);
        }
        if let Some(bytes) = model {
            for b in 0..s.len {
                let v = usize::try_from(virt + b).expect("small");
                assert_eq!(
                    bytes.get(v).copied(),
                    Some((s.part, s.offset + b)),
                    "virtual byte {v} (range {offset}+{len}, segment {s:?})"
                );
            }
        }
        total = total.checked_add(s.len).expect("total overflows");
        assert!(total <= want_total, "segments exceed the range");
        prev = Some(s);
    }
    if complete {
        assert_eq!(
            total, want_total,
            "segments cover {total} of {want_total} bytes"
        );
    }
    if offset >= nbytes {
        assert_eq!(layout.locate(offset), None);
    }
}

/// Every regular file directly in `dir`, sorted (the regression corpus).
pub fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
