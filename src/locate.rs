//! `npyfs inspect SOURCE --at OFFSET_OR_INDEX`: which part, and which byte
//! of that part's file, serves a byte of a virtual file or an element of a
//! virtual array.

use std::fmt::Write as _;

use serde::Serialize;

use crate::inspect::shape_repr;
use crate::npy;
use crate::source::VirtualArray;

/// A position asked for with `--at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// A byte offset in the virtual file (header included).
    Byte(u64),
    /// An element multi-index; negative entries count from the end.
    Index(Vec<i64>),
}

/// Parse `--at`: `4096` or `byte:4096` (a byte offset of the virtual file),
/// `12,7` or `index:12,7` or `index:-1` (an element index).
pub fn parse_at(s: &str) -> Result<At, String> {
    let s = s.trim();
    let (kind, rest) = match s.split_once(':') {
        Some((k, r)) => (Some(k.trim()), r.trim()),
        None => (None, s),
    };
    let byte = |r: &str| {
        r.parse::<u64>()
            .map(At::Byte)
            .map_err(|_| format!("--at {s:?}: \"{r}\" is not a byte offset (a whole number >= 0)"))
    };
    let index = |r: &str| {
        let r = r.trim_start_matches('(').trim_end_matches(')');
        let parts: Vec<&str> = r.split(',').map(str::trim).collect();
        // "(5,)" is Python's one-element tuple.
        let parts = match parts.as_slice() {
            [head @ .., ""] if !head.is_empty() => head.to_vec(),
            _ => parts,
        };
        parts
            .iter()
            .map(|p| {
                p.parse::<i64>()
                    .map_err(|_| format!("--at {s:?}: \"{p}\" is not an index (a whole number)"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(At::Index)
    };
    match kind {
        Some("byte" | "b" | "offset") => byte(rest),
        Some("index" | "i" | "idx") => index(rest),
        Some(other) => Err(format!(
            "--at {s:?}: unknown kind \"{other}\" (use byte:OFFSET or index:I,J,...)"
        )),
        None if rest.contains(',') || rest.starts_with('(') => index(rest),
        None => byte(rest),
    }
}

/// Where a position of a virtual array comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub array: String,
    /// Byte offset in the virtual file.
    pub virtual_offset: u64,
    /// The element holding that byte (none in the header).
    pub element: Option<Vec<u64>>,
    /// Byte of that element (0 = its first byte).
    pub byte_in_element: Option<u64>,
    pub served_by: Served,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Served {
    /// The npy header that npyfs generates: no part holds it.
    Header { header_bytes: u64 },
    Part {
        /// Index of the part in the array's parts list.
        part: usize,
        path: String,
        /// Byte offset in the part file (its header included).
        file_offset: u64,
        /// Byte offset in the part's element data.
        data_offset: u64,
        /// The element's index in the part.
        part_element: Vec<u64>,
        /// Contiguous bytes this part serves from here on.
        run_bytes: u64,
    },
}

/// Locate `at` in `array`.
pub fn locate(array: &VirtualArray, at: &At) -> Result<Location, String> {
    let layout = &array.layout;
    let header_len = array.header_len();
    let itemsize = layout.itemsize();
    let virtual_offset = match at {
        At::Byte(b) => *b,
        At::Index(idx) => {
            let flat = flat_index(idx, layout.shape(), layout.fortran())?;
            flat.checked_mul(itemsize)
                .and_then(|b| b.checked_add(header_len))
                .ok_or_else(|| "index overflows 64 bits".to_string())?
        }
    };
    if virtual_offset >= array.size() {
        return Err(format!(
            "byte {virtual_offset} is past the end of {} ({} bytes: {header_len} of header, {} of data)",
            array.name,
            array.size(),
            layout.nbytes()
        ));
    }
    if virtual_offset < header_len {
        return Ok(Location {
            array: array.name.clone(),
            virtual_offset,
            element: None,
            byte_in_element: None,
            served_by: Served::Header {
                header_bytes: header_len,
            },
        });
    }
    let data_off = virtual_offset - header_len;
    let seg = layout
        .locate(data_off)
        .ok_or_else(|| format!("byte {virtual_offset} of {} maps to no part", array.name))?;
    let part = array
        .parts
        .get(seg.part)
        .ok_or_else(|| format!("byte {virtual_offset} of {} maps to no part", array.name))?;
    let element = data_off.checked_div(itemsize).unwrap_or(0);
    let part_elem = seg.offset.checked_div(itemsize).unwrap_or(0);
    Ok(Location {
        array: array.name.clone(),
        virtual_offset,
        element: Some(unravel(element, layout.shape(), layout.fortran())),
        byte_in_element: Some(data_off.checked_rem(itemsize).unwrap_or(0)),
        served_by: Served::Part {
            part: seg.part,
            path: part.path.display().to_string(),
            file_offset: part.data_offset.saturating_add(seg.offset),
            data_offset: seg.offset,
            part_element: unravel(part_elem, &part.shape, layout.fortran()),
            run_bytes: seg.len,
        },
    })
}

/// Row-major (C) or column-major (Fortran) flat index of a multi-index,
/// checked against the shape; negative entries count from the end.
pub fn flat_index(idx: &[i64], shape: &[u64], fortran: bool) -> Result<u64, String> {
    if idx.len() != shape.len() {
        return Err(format!(
            "index {} has {} entries but the array has {} dimensions, shape {}",
            index_repr(idx),
            idx.len(),
            shape.len(),
            shape_repr(shape)
        ));
    }
    let mut resolved = Vec::with_capacity(idx.len());
    for (axis, (&i, &n)) in idx.iter().zip(shape).enumerate() {
        let r = if i < 0 {
            n.checked_sub(i.unsigned_abs())
        } else {
            Some(i.unsigned_abs()).filter(|&u| u < n)
        };
        match r {
            Some(r) if r < n => resolved.push(r),
            _ => {
                return Err(format!(
                    "index {i} is out of bounds for axis {axis} with size {n} (shape {})",
                    shape_repr(shape)
                ))
            }
        }
    }
    let dims: Vec<(u64, u64)> = if fortran {
        resolved
            .into_iter()
            .zip(shape.iter().copied())
            .rev()
            .collect()
    } else {
        resolved.into_iter().zip(shape.iter().copied()).collect()
    };
    // Horner over the dimensions, slowest first; fits since the array's
    // byte size did.
    Ok(dims
        .into_iter()
        .fold(0u64, |acc, (i, n)| acc.saturating_mul(n).saturating_add(i)))
}

/// The multi-index of flat element `flat` in `shape` (C or Fortran order).
pub fn unravel(mut flat: u64, shape: &[u64], fortran: bool) -> Vec<u64> {
    let mut out = vec![0u64; shape.len()];
    let order: Vec<usize> = if fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for axis in order {
        let (Some(slot), Some(&n)) = (out.get_mut(axis), shape.get(axis)) else {
            continue;
        };
        if n > 0 {
            *slot = flat % n;
            flat /= n;
        }
    }
    out
}

fn index_repr(idx: &[i64]) -> String {
    let v: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
    match v.len() {
        1 => format!("({},)", v.join("")),
        _ => format!("({})", v.join(", ")),
    }
}

/// The human description of a location.
pub fn render(array: &VirtualArray, loc: &Location) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "array      {} (shape {}, dtype {}, {} order, {} header bytes, {} bytes)",
        array.name,
        shape_repr(array.layout.shape()),
        npy::dtype_name(&array.dtype),
        array.order_name(),
        array.header_len(),
        array.size()
    );
    let _ = write!(out, "virtual    byte {}", loc.virtual_offset);
    if let (Some(el), Some(b)) = (&loc.element, loc.byte_in_element) {
        let _ = write!(
            out,
            " = element {} (byte {b} of {})",
            shape_repr(el),
            array.layout.itemsize()
        );
    }
    out.push('\n');
    match &loc.served_by {
        Served::Header { header_bytes } => {
            let _ = writeln!(
                out,
                "served by  header (bytes 0..{header_bytes} of the virtual file, generated by npyfs; no part holds them)"
            );
        }
        Served::Part {
            part,
            path,
            file_offset,
            data_offset,
            part_element,
            run_bytes,
        } => {
            let _ = writeln!(out, "served by  part {part}: {path}");
            let _ = writeln!(
                out,
                "part byte  {file_offset} of the part file (data offset {data_offset} after its {}-byte header)",
                file_offset.saturating_sub(*data_offset)
            );
            let _ = writeln!(out, "part index {}", shape_repr(part_element));
            let _ = writeln!(
                out,
                "run        {run_bytes} contiguous bytes of this part from here"
            );
        }
    }
    out
}

/// The array called `name` (or `name` + ".npy"); with no name, the only
/// array. Errors list the available names.
pub fn find_array<'a>(
    arrays: &'a [VirtualArray],
    name: Option<&str>,
) -> Result<&'a VirtualArray, String> {
    let names = || {
        arrays
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        None => match arrays {
            [only] => Ok(only),
            [] => Err("the source defines no arrays".into()),
            _ => Err(format!(
                "the source defines {} arrays; choose one with --name: {}",
                arrays.len(),
                names()
            )),
        },
        Some(name) => {
            let trimmed = name.trim_start_matches('/');
            arrays
                .iter()
                .find(|a| a.name == trimmed)
                .or_else(|| {
                    arrays
                        .iter()
                        .find(|a| a.name.strip_suffix(".npy") == Some(trimmed))
                })
                .ok_or_else(|| {
                    if arrays.is_empty() {
                        format!("no array named \"{name}\": the source defines no arrays")
                    } else {
                        format!("no array named \"{name}\"; available: {}", names())
                    }
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(parse_at("4096"), Ok(At::Byte(4096)));
        assert_eq!(parse_at("byte:4096"), Ok(At::Byte(4096)));
        assert_eq!(parse_at(" byte: 7 "), Ok(At::Byte(7)));
        assert_eq!(parse_at("12,7"), Ok(At::Index(vec![12, 7])));
        assert_eq!(parse_at("index:12,7"), Ok(At::Index(vec![12, 7])));
        assert_eq!(parse_at("index:5"), Ok(At::Index(vec![5])));
        assert_eq!(parse_at("(5,)"), Ok(At::Index(vec![5])));
        assert_eq!(parse_at("(1, -2, 3)"), Ok(At::Index(vec![1, -2, 3])));
        assert_eq!(parse_at("index:-1"), Ok(At::Index(vec![-1])));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "-5",
            "x",
            "byte:-1",
            "index:1,,2",
            "index:a",
            "row:3",
            "1.5",
        ] {
            assert!(parse_at(bad).is_err(), "{bad:?} should fail");
        }
        let e = parse_at("row:3").expect_err("kind");
        assert!(e.contains("unknown kind"), "{e}");
    }

    #[test]
    fn flat_and_unravel() {
        let shape = [4, 5, 6];
        assert_eq!(flat_index(&[1, 2, 3], &shape, false), Ok(30 + 2 * 6 + 3));
        assert_eq!(flat_index(&[1, 2, 3], &shape, true), Ok(1 + 2 * 4 + 3 * 20));
        assert_eq!(flat_index(&[-1, -1, -1], &shape, false), Ok(119));
        for fortran in [false, true] {
            for flat in 0..120 {
                let idx = unravel(flat, &shape, fortran);
                let signed: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
                assert_eq!(flat_index(&signed, &shape, fortran), Ok(flat));
            }
        }
        assert_eq!(unravel(0, &[], false), Vec::<u64>::new());
        assert_eq!(flat_index(&[], &[], false), Ok(0));
    }

    #[test]
    fn index_errors() {
        let e = flat_index(&[4, 0, 0], &[4, 5, 6], false).expect_err("oob");
        assert!(e.contains("out of bounds for axis 0 with size 4"), "{e}");
        let e = flat_index(&[0, -6, 0], &[4, 5, 6], false).expect_err("oob");
        assert!(e.contains("index -6 is out of bounds for axis 1"), "{e}");
        let e = flat_index(&[1], &[4, 5], false).expect_err("ndim");
        assert!(
            e.contains("has 1 entries but the array has 2 dimensions"),
            "{e}"
        );
        assert!(flat_index(&[i64::MIN], &[4], false).is_err());
    }
}

#[cfg(test)]
mod array_tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    fn part(dir: &Path, name: &str, shape: &[u64], fortran: bool) -> u64 {
        let dtype = npy::parse_dtype("<u4").expect("dtype");
        let header = npy::write_header(&dtype, shape, fortran);
        let mut f = std::fs::File::create(dir.join(name)).expect("create");
        f.write_all(&header).expect("header");
        let n: u64 = shape.iter().product();
        for i in 0..n {
            f.write_all(&(i as u32).to_le_bytes()).expect("data");
        }
        header.len() as u64
    }

    fn load(dir: &Path, manifest: &str) -> Vec<VirtualArray> {
        let path = dir.join("m.toml");
        std::fs::write(&path, manifest).expect("manifest");
        crate::source::load(&path).expect("load")
    }

    #[test]
    fn axis1_c_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ha = part(dir.path(), "a.npy", &[2, 3], false);
        let hb = part(dir.path(), "b.npy", &[2, 2], false);
        let arrays = load(
            dir.path(),
            "[[array]]\nname = \"x.npy\"\nparts = [\"a.npy\", \"b.npy\"]\naxis = 1\n",
        );
        let a = find_array(&arrays, Some("x")).expect("find");
        let h = a.header_len();

        let loc = locate(a, &At::Index(vec![1, 4])).expect("locate");
        assert_eq!(loc.virtual_offset, h + 9 * 4);
        assert_eq!(loc.element, Some(vec![1, 4]));
        let Served::Part {
            part,
            file_offset,
            data_offset,
            part_element,
            run_bytes,
            ..
        } = loc.served_by
        else {
            panic!("header?")
        };
        assert_eq!((part, data_offset, file_offset), (1, 12, hb + 12));
        assert_eq!(part_element, vec![1, 1]);
        assert_eq!(run_bytes, 4);

        // Byte 2 of element (1, 2), by byte offset and by negative index.
        let loc = locate(a, &At::Byte(h + 7 * 4 + 2)).expect("locate");
        assert_eq!(loc.element, Some(vec![1, 2]));
        assert_eq!(loc.byte_in_element, Some(2));
        let Served::Part {
            part,
            file_offset,
            part_element,
            run_bytes,
            ..
        } = &loc.served_by
        else {
            panic!("header?")
        };
        assert_eq!((*part, *file_offset), (0, ha + 22));
        assert_eq!(part_element, &vec![1, 2]);
        assert_eq!(*run_bytes, 2);
        let by_index = locate(a, &At::Index(vec![-1, -3])).expect("locate");
        assert_eq!(by_index.virtual_offset, h + 7 * 4);

        let text = render(a, &loc);
        assert!(text.contains("b.npy") || text.contains("a.npy"), "{text}");
        assert!(text.contains(&format!("part byte  {}", ha + 22)), "{text}");
    }

    #[test]
    fn header_end_and_fortran() {
        let dir = tempfile::tempdir().expect("tempdir");
        part(dir.path(), "a.npy", &[3, 2], true);
        let hb = part(dir.path(), "b.npy", &[1, 2], true);
        let arrays = load(
            dir.path(),
            "[[array]]\nname = \"f.npy\"\nparts = [\"a.npy\", \"b.npy\"]\n",
        );
        let a = find_array(&arrays, None).expect("only array");
        assert!(a.layout.fortran());
        let loc = locate(a, &At::Byte(10)).expect("header");
        assert!(matches!(loc.served_by, Served::Header { .. }));
        assert!(render(a, &loc).contains("header"));
        let e = locate(a, &At::Byte(a.size())).expect_err("past end");
        assert!(e.contains("past the end of f.npy"), "{e}");
        // Fortran (4, 2): element (3, 0) is the first of column 0 in part b.
        let loc = locate(a, &At::Index(vec![3, 0])).expect("locate");
        assert_eq!(loc.virtual_offset, a.header_len() + 3 * 4);
        let Served::Part {
            part,
            file_offset,
            part_element,
            ..
        } = loc.served_by
        else {
            panic!("header?")
        };
        assert_eq!((part, file_offset), (1, hb));
        assert_eq!(part_element, vec![0, 0]);
    }

    #[test]
    fn names() {
        let dir = tempfile::tempdir().expect("tempdir");
        part(dir.path(), "a.npy", &[2], false);
        let arrays = load(
            dir.path(),
            "[[array]]\nname = \"one.npy\"\nparts = [\"a.npy\"]\n\n\
             [[array]]\nname = \"sub/two.npy\"\nparts = [\"a.npy\"]\n",
        );
        assert_eq!(
            find_array(&arrays, Some("sub/two")).map(|a| &a.name[..]),
            Ok("sub/two.npy")
        );
        assert_eq!(
            find_array(&arrays, Some("/one.npy")).map(|a| &a.name[..]),
            Ok("one.npy")
        );
        let e = find_array(&arrays, Some("three")).expect_err("unknown");
        assert!(e.contains("available: one.npy, sub/two.npy"), "{e}");
        let e = find_array(&arrays, None).expect_err("ambiguous");
        assert!(e.contains("--name"), "{e}");
    }
}
