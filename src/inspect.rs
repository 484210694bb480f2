//! `npyfs inspect`: describe each virtual array of a source.

use serde::Serialize;

use crate::npy;
use crate::source::VirtualArray;

/// One array as `inspect --json` prints it.
#[derive(Debug, Serialize)]
pub struct ArrayInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub fortran_order: bool,
    pub axis: usize,
    pub parts: Vec<String>,
    /// Bytes of element data.
    pub nbytes: u64,
    /// Bytes of the npy header.
    pub header_bytes: u64,
    /// Size of the virtual file (header + data).
    pub file_size: u64,
    /// The manifest or folder that defined it.
    pub origin: String,
}

impl From<&VirtualArray> for ArrayInfo {
    fn from(a: &VirtualArray) -> Self {
        ArrayInfo {
            name: a.name.clone(),
            dtype: npy::dtype_name(&a.dtype),
            shape: a.layout.shape().to_vec(),
            fortran_order: a.layout.fortran(),
            axis: a.layout.axis(),
            parts: a
                .parts
                .iter()
                .map(|p| p.path.display().to_string())
                .collect(),
            nbytes: a.layout.nbytes(),
            header_bytes: a.header_len(),
            file_size: a.size(),
            origin: a.origin.display().to_string(),
        }
    }
}

/// Python-style shape: "()", "(5,)", "(5, 3)".
pub fn shape_repr(shape: &[u64]) -> String {
    match shape {
        [] => "()".into(),
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A table, one array a line.
pub fn table(arrays: &[VirtualArray]) -> String {
    let rows: Vec<[String; 6]> = arrays
        .iter()
        .map(|a| {
            [
                a.name.clone(),
                npy::dtype_name(&a.dtype),
                shape_repr(a.layout.shape()),
                a.order_name().to_string(),
                a.parts.len().to_string(),
                a.layout.nbytes().to_string(),
            ]
        })
        .collect();
    let head = ["NAME", "DTYPE", "SHAPE", "ORDER", "PARTS", "BYTES"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&head).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn json(arrays: &[VirtualArray]) -> String {
    let infos: Vec<ArrayInfo> = arrays.iter().map(ArrayInfo::from).collect();
    serde_json::to_string_pretty(&infos).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(shape_repr(&[]), "()");
        assert_eq!(shape_repr(&[5]), "(5,)");
        assert_eq!(shape_repr(&[5, 3]), "(5, 3)");
    }
}
