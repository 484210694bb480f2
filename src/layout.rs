//! Pure geometry of a virtual concatenated / stacked array.
//!
//! A [`Layout`] describes how the data bytes of the virtual array
//! `np.concatenate(parts, axis)` (or `np.stack(parts, axis)`) map onto the data
//! bytes of the individual parts.  Offsets are relative to the start of the
//! array *data* (after the npy header) on both sides.  Nothing here does I/O.
//!
//! # How it works
//!
//! In C order, concatenating along axis `k` a result of shape `S` splits the
//! data into `outer = Π S[..k]` "rows"; each row is the concatenation of one
//! block per part, part `p` contributing `b_p = s_p[k] × Π S[k+1..] × itemsize`
//! bytes, the `r`-th of which is the part's bytes `[r × b_p, (r + 1) × b_p)`.
//! Stacking is concatenation of the parts with a 1 inserted at `k`.  Fortran
//! order is C order on the reversed shape, which swaps the roles of the
//! dimensions before and after the axis.
//!
//! A layout keeps only the parts whose block is non-empty (with their start
//! within a row), so a query costs one binary search plus O(1) per segment.
//! When exactly one part has a non-empty block, consecutive rows of that part
//! are contiguous, so the whole array is then treated as a single row.

use std::iter::FusedIterator;

/// One contiguous run of bytes inside one part's data region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the part in the `part_shapes` given to [`Layout::new`].
    pub part: usize,
    /// Byte offset inside that part's data.
    pub offset: u64,
    /// Number of bytes, never 0.
    pub len: u64,
}

/// Why a set of part shapes cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no parts")]
    NoParts,
    #[error("axis {axis} is out of range for a result with {ndim} dimensions")]
    AxisOutOfRange { axis: i64, ndim: usize },
    #[error("part has {found} dimensions, expected {expected}")]
    NdimMismatch {
        part: usize,
        expected: usize,
        found: usize,
    },
    #[error("part shape {found:?} does not match {expected:?} outside axis {axis}")]
    ShapeMismatch {
        part: usize,
        expected: Vec<u64>,
        found: Vec<u64>,
        axis: usize,
    },
    #[error("part shape {found:?} differs from {expected:?}; np.stack needs equal shapes")]
    StackShapeMismatch {
        part: usize,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("zero-dimensional arrays cannot be concatenated (use stack = true)")]
    ZeroDim { part: usize },
    #[error("array size overflows 64 bits")]
    Overflow,
}

impl LayoutError {
    /// The index of the part at fault, if the error is about one part.
    pub fn part(&self) -> Option<usize> {
        match self {
            LayoutError::NdimMismatch { part, .. }
            | LayoutError::ShapeMismatch { part, .. }
            | LayoutError::StackShapeMismatch { part, .. }
            | LayoutError::ZeroDim { part } => Some(*part),
            LayoutError::NoParts | LayoutError::AxisOutOfRange { .. } | LayoutError::Overflow => {
                None
            }
        }
    }
}

/// Mapping from the virtual array's data bytes to the parts' data bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<u64>,
    axis: usize,
    fortran: bool,
    itemsize: u64,
    nbytes: u64,
    /// Data bytes of every part.
    part_nbytes: Vec<u64>,
    /// Start, within a row, of every non-empty block, followed by the row size.
    /// Strictly increasing; `[0]` when the array is empty.
    starts: Vec<u64>,
    /// The part owning each non-empty block (`starts.len() - 1` entries).
    owners: Vec<usize>,
}

/// Product of `dims` times `init`, or `Overflow`.
fn product<'a>(mut dims: impl Iterator<Item = &'a u64>, init: u64) -> Result<u64, LayoutError> {
    dims.try_fold(init, |acc, &d| {
        acc.checked_mul(d).ok_or(LayoutError::Overflow)
    })
}

/// numpy's `normalize_axis_index`: `axis` in `[-ndim, ndim)` to `[0, ndim)`.
fn normalize_axis(axis: i64, ndim: usize) -> Result<usize, LayoutError> {
    let out_of_range = LayoutError::AxisOutOfRange { axis, ndim };
    let n = i64::try_from(ndim).map_err(|_| out_of_range.clone())?;
    let a = if axis < 0 {
        axis.checked_add(n)
    } else {
        Some(axis)
    };
    match a {
        Some(a) if a >= 0 && a < n => usize::try_from(a).map_err(|_| out_of_range),
        _ => Err(out_of_range),
    }
}

impl Layout {
    /// Lay out `np.concatenate(parts, axis)` (or `np.stack(parts, axis)` when
    /// `stack`) for parts of the given numpy shapes.
    ///
    /// `axis` may be negative (counted from the end); for concatenation it must
    /// lie in `[-ndim, ndim)`, for stacking in `[-(ndim + 1), ndim + 1)`.
    /// `fortran` says the result and every part are stored in Fortran order.
    /// `itemsize` may be 0, giving an empty array.
    ///
    /// # Errors
    ///
    /// [`LayoutError::NoParts`] for an empty `part_shapes`;
    /// [`LayoutError::ZeroDim`] when concatenating 0-d parts;
    /// [`LayoutError::AxisOutOfRange`] for a bad `axis`;
    /// [`LayoutError::NdimMismatch`], [`LayoutError::ShapeMismatch`] or
    /// [`LayoutError::StackShapeMismatch`] for the first part whose shape does
    /// not fit the first part's; [`LayoutError::Overflow`] when the result's
    /// axis length or (for a non-empty result) its byte size exceeds `u64`.
    /// A result with a zero dimension or a zero itemsize is never an overflow.
    pub fn new(
        part_shapes: &[Vec<u64>],
        axis: i64,
        stack: bool,
        fortran: bool,
        itemsize: u64,
    ) -> Result<Layout, LayoutError> {
        let first = part_shapes.first().ok_or(LayoutError::NoParts)?;
        let ndim = first.len();
        // Same order of checks as numpy: a 0-d first array, then the axis,
        // then each array in turn.
        if !stack && ndim == 0 {
            return Err(LayoutError::ZeroDim { part: 0 });
        }
        let out_ndim = if stack {
            ndim.checked_add(1).ok_or(LayoutError::Overflow)?
        } else {
            ndim
        };
        let axis = normalize_axis(axis, out_ndim)?;

        for (part, found) in part_shapes.iter().enumerate().skip(1) {
            if found.len() != ndim {
                return Err(LayoutError::NdimMismatch {
                    part,
                    expected: ndim,
                    found: found.len(),
                });
            }
            if stack {
                if found != first {
                    return Err(LayoutError::StackShapeMismatch {
                        part,
                        expected: first.clone(),
                        found: found.clone(),
                    });
                }
            } else if found
                .iter()
                .zip(first)
                .enumerate()
                .any(|(i, (a, b))| i != axis && a != b)
            {
                return Err(LayoutError::ShapeMismatch {
                    part,
                    expected: first.clone(),
                    found: found.clone(),
                    axis,
                });
            }
        }

        // Length of every part along the (result) axis.
        let axis_len = |s: &Vec<u64>| -> u64 {
            if stack {
                1
            } else {
                s.get(axis).copied().unwrap_or(0)
            }
        };
        let total_axis = if stack {
            u64::try_from(part_shapes.len()).map_err(|_| LayoutError::Overflow)?
        } else {
            part_shapes.iter().try_fold(0u64, |acc, s| {
                acc.checked_add(axis_len(s)).ok_or(LayoutError::Overflow)
            })?
        };
        let shape: Vec<u64> = if stack {
            first
                .iter()
                .take(axis)
                .copied()
                .chain(std::iter::once(total_axis))
                .chain(first.iter().skip(axis).copied())
                .collect()
        } else {
            first
                .iter()
                .enumerate()
                .map(|(i, &d)| if i == axis { total_axis } else { d })
                .collect()
        };

        let empty = itemsize == 0 || shape.contains(&0);
        if empty {
            return Ok(Layout {
                shape,
                axis,
                fortran,
                itemsize,
                nbytes: 0,
                part_nbytes: vec![0; part_shapes.len()],
                starts: vec![0],
                owners: Vec::new(),
            });
        }

        let before = shape.iter().take(axis);
        let after = shape.iter().skip(axis.saturating_add(1));
        let (outer, inner) = if fortran {
            (product(after, 1)?, product(before, itemsize)?)
        } else {
            (product(before, 1)?, product(after, itemsize)?)
        };
        let row = total_axis.checked_mul(inner).ok_or(LayoutError::Overflow)?;
        let nbytes = outer.checked_mul(row).ok_or(LayoutError::Overflow)?;

        let mut part_nbytes = Vec::with_capacity(part_shapes.len());
        let mut starts = Vec::new();
        let mut owners = Vec::new();
        let mut cursor = 0u64;
        for (part, s) in part_shapes.iter().enumerate() {
            let block = axis_len(s)
                .checked_mul(inner)
                .ok_or(LayoutError::Overflow)?;
            part_nbytes.push(outer.checked_mul(block).ok_or(LayoutError::Overflow)?);
            if block > 0 {
                starts.push(cursor);
                owners.push(part);
                cursor = cursor.checked_add(block).ok_or(LayoutError::Overflow)?;
            }
        }
        if owners.len() == 1 {
            // A single non-empty part: its rows follow each other in the part
            // too, so the whole array is one run.
            starts.clear();
            starts.push(0);
            cursor = nbytes;
        }
        starts.push(cursor);

        Ok(Layout {
            shape,
            axis,
            fortran,
            itemsize,
            nbytes,
            part_nbytes,
            starts,
            owners,
        })
    }

    /// The numpy shape of the result.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The normalized (non-negative) axis in the result.
    pub fn axis(&self) -> usize {
        self.axis
    }

    /// Whether the result and the parts are stored in Fortran order.
    pub fn fortran(&self) -> bool {
        self.fortran
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> u64 {
        self.itemsize
    }

    /// Number of parts.
    pub fn num_parts(&self) -> usize {
        self.part_nbytes.len()
    }

    /// Total data bytes of the result.
    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }

    /// Data bytes of part `part`, 0 if there is no such part.
    pub fn part_nbytes(&self, part: usize) -> u64 {
        self.part_nbytes.get(part).copied().unwrap_or(0)
    }

    /// Bytes in one row (all non-empty blocks); 0 for an empty array.
    fn row_bytes(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Start within a row, length and owner of non-empty block `j`.
    fn block(&self, j: usize) -> Option<(u64, u64, usize)> {
        let start = *self.starts.get(j)?;
        let end = *self.starts.get(j.checked_add(1)?)?;
        let owner = *self.owners.get(j)?;
        Some((start, end.checked_sub(start)?, owner))
    }

    /// Segments covering the virtual data bytes
    /// `[offset, min(offset + len, nbytes))`, in order.
    ///
    /// Segments are never empty and two consecutive segments are never
    /// mergeable (same part, second starting where the first ends).
    pub fn segments(&self, offset: u64, len: u64) -> Segments<'_> {
        let end = offset.saturating_add(len).min(self.nbytes);
        let mut it = Segments {
            layout: self,
            row: 0,
            block: 0,
            within: 0,
            remaining: 0,
        };
        if offset >= end {
            return it;
        }
        let row_bytes = self.row_bytes();
        let (Some(row), Some(w)) = (offset.checked_div(row_bytes), offset.checked_rem(row_bytes))
        else {
            return it;
        };
        // First block starting after `w`, minus one: the block holding `w`
        // (empty blocks are not stored, so this is unique).
        let Some(block) = self.starts.partition_point(|&s| s <= w).checked_sub(1) else {
            return it;
        };
        let Some((start, _, _)) = self.block(block) else {
            return it;
        };
        it.row = row;
        it.block = block;
        it.within = w.saturating_sub(start);
        it.remaining = end.saturating_sub(offset);
        it
    }

    /// The segment serving virtual data byte `offset`, running to the end of
    /// its contiguous run, or `None` past the end.
    pub fn locate(&self, offset: u64) -> Option<Segment> {
        self.segments(offset, u64::MAX).next()
    }
}

/// Iterator over the [`Segment`]s of a byte range, from [`Layout::segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    layout: &'a Layout,
    /// Current row.
    row: u64,
    /// Current non-empty block within the row.
    block: usize,
    /// Offset within the current block (always less than its length).
    within: u64,
    /// Bytes still to cover.
    remaining: u64,
}

impl Segments<'_> {
    fn step(&mut self) -> Option<Segment> {
        let (_, block_len, part) = self.layout.block(self.block)?;
        let take = block_len.checked_sub(self.within)?.min(self.remaining);
        if take == 0 {
            return None;
        }
        let offset = self.row.checked_mul(block_len)?.checked_add(self.within)?;
        self.remaining = self.remaining.checked_sub(take)?;
        self.within = 0;
        self.block = self.block.checked_add(1)?;
        if self.block >= self.layout.owners.len() {
            self.block = 0;
            self.row = self.row.checked_add(1)?;
        }
        Some(Segment {
            part,
            offset,
            len: take,
        })
    }
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        if self.remaining == 0 {
            return None;
        }
        let segment = self.step();
        if segment.is_none() {
            // Unreachable for a consistent layout; end rather than loop.
            self.remaining = 0;
        }
        segment
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.remaining > 0), None)
    }
}

impl FusedIterator for Segments<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    // ----- brute-force reference model -----

    /// Multi-index of the `e`-th element in storage order.
    fn unravel(mut e: u64, shape: &[u64], fortran: bool) -> Vec<u64> {
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
    }

    /// Storage-order linear index of a multi-index.
    fn ravel(idx: &[u64], shape: &[u64], fortran: bool) -> u64 {
        let order: Vec<usize> = if fortran {
            (0..shape.len()).rev().collect()
        } else {
            (0..shape.len()).collect()
        };
        order.into_iter().fold(0, |acc, i| acc * shape[i] + idx[i])
    }

    /// Result shape and, for every virtual data byte, (part, byte offset in part).
    fn model(
        shapes: &[Vec<u64>],
        axis: usize,
        stack: bool,
        fortran: bool,
        itemsize: u64,
    ) -> (Vec<u64>, Vec<(usize, u64)>) {
        let mut result = shapes[0].clone();
        if stack {
            result.insert(axis, shapes.len() as u64);
        } else {
            result[axis] = shapes.iter().map(|s| s[axis]).sum();
        }
        let count: u64 = result.iter().product();
        let mut bytes = Vec::new();
        for e in 0..count {
            let idx = unravel(e, &result, fortran);
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
            let element = ravel(&local, &shapes[part], fortran);
            for b in 0..itemsize {
                bytes.push((part, element * itemsize + b));
            }
        }
        (result, bytes)
    }

    /// Check `segments(offset, len)` against the model.
    fn check_range(layout: &Layout, bytes: &[(usize, u64)], offset: u64, len: u64) {
        let n = bytes.len() as u64;
        let end = offset.saturating_add(len).min(n);
        let expected: &[(usize, u64)] = if offset >= end {
            &[]
        } else {
            &bytes[offset as usize..end as usize]
        };
        let segs: Vec<Segment> = layout.segments(offset, len).collect();
        let mut got = Vec::with_capacity(expected.len());
        for (i, s) in segs.iter().enumerate() {
            assert!(s.len > 0, "empty segment {s:?}");
            assert!(
                s.offset + s.len <= layout.part_nbytes(s.part),
                "segment {s:?} past end of part"
            );
            if i > 0 {
                let prev = segs[i - 1];
                assert!(
                    !(prev.part == s.part && prev.offset + prev.len == s.offset),
                    "mergeable neighbours {prev:?} {s:?}"
                );
            }
            got.extend((0..s.len).map(|b| (s.part, s.offset + b)));
        }
        assert_eq!(got, expected, "range ({offset}, {len}) segments {segs:?}");
    }

    #[derive(Debug, Clone)]
    struct Case {
        shapes: Vec<Vec<u64>>,
        axis: i64,
        stack: bool,
        fortran: bool,
        itemsize: u64,
        ranges: Vec<(u64, u64, u64)>,
    }

    fn dim() -> impl Strategy<Value = u64> {
        prop_oneof![1 => Just(0u64), 6 => 1u64..=5]
    }

    fn case() -> impl Strategy<Value = Case> {
        (any::<bool>(), 0usize..=4, 1usize..=4)
            .prop_flat_map(|(stack, ndim0, ndim1)| {
                let ndim = if stack { ndim0 } else { ndim1 };
                let out_ndim = if stack { ndim + 1 } else { ndim } as i64;
                (
                    Just(stack),
                    proptest::collection::vec(dim(), ndim),
                    proptest::collection::vec(0u64..=5, 1..=5),
                    -out_ndim..out_ndim,
                    any::<bool>(),
                    1u64..=9,
                    proptest::collection::vec((0u64..4, any::<u64>(), any::<u64>()), 1..6),
                )
            })
            .prop_map(|(stack, dims, lens, axis, fortran, itemsize, ranges)| {
                let out_ndim = if stack { dims.len() + 1 } else { dims.len() } as i64;
                let axis_n = if axis < 0 { axis + out_ndim } else { axis } as usize;
                let shapes = lens
                    .iter()
                    .map(|&l| {
                        let mut s = dims.clone();
                        if !stack {
                            s[axis_n] = l;
                        }
                        s
                    })
                    .collect();
                Case {
                    shapes,
                    axis,
                    stack,
                    fortran,
                    itemsize,
                    ranges,
                }
            })
    }

    fn run_case(c: &Case) {
        let layout = Layout::new(&c.shapes, c.axis, c.stack, c.fortran, c.itemsize).unwrap();
        let (shape, bytes) = model(&c.shapes, layout.axis(), c.stack, c.fortran, c.itemsize);
        let n = bytes.len() as u64;
        assert_eq!(layout.shape(), &shape[..]);
        assert_eq!(layout.nbytes(), n);
        assert_eq!(layout.num_parts(), c.shapes.len());
        assert_eq!(layout.fortran(), c.fortran);
        assert_eq!(layout.itemsize(), c.itemsize);
        for (p, s) in c.shapes.iter().enumerate() {
            assert_eq!(
                layout.part_nbytes(p),
                s.iter().product::<u64>() * c.itemsize
            );
        }
        assert_eq!(layout.part_nbytes(c.shapes.len()), 0);

        check_range(&layout, &bytes, 0, n);
        check_range(&layout, &bytes, 0, u64::MAX);
        for &(mode, a, b) in &c.ranges {
            let (offset, len) = match mode {
                0 => (a % (n + 4), b % (n + 4)),
                1 => (a % (n + 4), u64::MAX - b % 3),
                2 => (u64::MAX - a % 5, b),
                _ => (a % (n + 4), b % 20),
            };
            check_range(&layout, &bytes, offset, len);
        }

        // locate: agrees with the model and runs to the end of a maximal run.
        let mut run_left = vec![0u64; bytes.len()];
        for i in (0..bytes.len()).rev() {
            let (p, o) = bytes[i];
            run_left[i] = 1 + match bytes.get(i + 1) {
                Some(&(q, o2)) if q == p && o2 == o + 1 => run_left[i + 1],
                _ => 0,
            };
        }
        for (i, &(p, o)) in bytes.iter().enumerate() {
            let s = layout.locate(i as u64);
            assert_eq!(
                s,
                Some(Segment {
                    part: p,
                    offset: o,
                    len: run_left[i]
                }),
                "locate({i})"
            );
        }
        assert_eq!(layout.locate(n), None);
        assert_eq!(layout.locate(u64::MAX), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn matches_reference_model(c in case()) {
            run_case(&c);
        }
    }

    // ----- fixed examples -----

    fn shape_of(shapes: &[Vec<u64>], axis: i64, stack: bool) -> Vec<u64> {
        Layout::new(shapes, axis, stack, false, 8)
            .unwrap()
            .shape()
            .to_vec()
    }

    #[test]
    fn numpy_shapes() {
        let l = Layout::new(&[vec![5000, 1000], vec![15000, 1000]], 0, false, false, 8).unwrap();
        assert_eq!(l.shape(), &[20000, 1000]);
        assert_eq!(l.nbytes(), 20000 * 1000 * 8);
        assert_eq!(l.part_nbytes(1), 15000 * 1000 * 8);
        assert_eq!(
            shape_of(&[vec![5000, 3000], vec![5000, 1000]], 1, false),
            vec![5000, 4000]
        );
        assert_eq!(
            shape_of(&[vec![5000, 3000], vec![5000, 1000]], -1, false),
            vec![5000, 4000]
        );
        let l = Layout::new(&[vec![2, 3], vec![2, 3]], 1, true, false, 4).unwrap();
        assert_eq!(l.shape(), &[2, 2, 3]);
        assert_eq!(l.axis(), 1);
        assert_eq!(l.nbytes(), 48);
        assert_eq!(shape_of(&[vec![2, 3], vec![2, 3]], -1, true), vec![2, 3, 2]);
        assert_eq!(shape_of(&[vec![2, 3], vec![2, 3]], -3, true), vec![2, 2, 3]);
        assert_eq!(shape_of(&[vec![], vec![], vec![]], 0, true), vec![3]);
        assert_eq!(shape_of(&[vec![], vec![], vec![]], -1, true), vec![3]);
    }

    #[test]
    fn contiguous_concat_is_one_segment_per_part() {
        // Axis 0, C order: each part is one run.
        let l = Layout::new(&[vec![2, 3], vec![0, 3], vec![4, 3]], 0, false, false, 2).unwrap();
        let segs: Vec<Segment> = l.segments(0, u64::MAX).collect();
        assert_eq!(
            segs,
            vec![
                Segment {
                    part: 0,
                    offset: 0,
                    len: 12
                },
                Segment {
                    part: 2,
                    offset: 0,
                    len: 24
                },
            ]
        );
        // Last axis, Fortran order: same.
        let l = Layout::new(&[vec![3, 2], vec![3, 4]], 1, false, true, 1).unwrap();
        let segs: Vec<Segment> = l.segments(1, 100).collect();
        assert_eq!(
            segs,
            vec![
                Segment {
                    part: 0,
                    offset: 1,
                    len: 5
                },
                Segment {
                    part: 1,
                    offset: 0,
                    len: 12
                },
            ]
        );
    }

    #[test]
    fn single_non_empty_part_is_one_run() {
        let l = Layout::new(&[vec![3, 0], vec![3, 4], vec![3, 0]], 1, false, false, 1).unwrap();
        assert_eq!(
            l.segments(2, 100).collect::<Vec<_>>(),
            vec![Segment {
                part: 1,
                offset: 2,
                len: 10
            }]
        );
        assert_eq!(
            l.locate(5),
            Some(Segment {
                part: 1,
                offset: 5,
                len: 7
            })
        );
    }

    #[test]
    fn interleaved_rows() {
        // (2,1) + (2,2) along axis 1, itemsize 1: rows [a0 b0 b1][a1 b2 b3].
        let l = Layout::new(&[vec![2, 1], vec![2, 2]], 1, false, false, 1).unwrap();
        assert_eq!(
            l.segments(0, 6).collect::<Vec<_>>(),
            vec![
                Segment {
                    part: 0,
                    offset: 0,
                    len: 1
                },
                Segment {
                    part: 1,
                    offset: 0,
                    len: 2
                },
                Segment {
                    part: 0,
                    offset: 1,
                    len: 1
                },
                Segment {
                    part: 1,
                    offset: 2,
                    len: 2
                },
            ]
        );
        assert_eq!(
            l.segments(2, 2).collect::<Vec<_>>(),
            vec![
                Segment {
                    part: 1,
                    offset: 1,
                    len: 1
                },
                Segment {
                    part: 0,
                    offset: 1,
                    len: 1
                },
            ]
        );
    }

    #[test]
    fn empty_ranges() {
        let l = Layout::new(&[vec![4]], 0, false, false, 2).unwrap();
        assert_eq!(l.segments(0, 0).count(), 0);
        assert_eq!(l.segments(8, 1).count(), 0);
        assert_eq!(l.segments(u64::MAX, u64::MAX).count(), 0);
        assert_eq!(
            l.segments(7, u64::MAX).collect::<Vec<_>>(),
            vec![Segment {
                part: 0,
                offset: 7,
                len: 1
            }]
        );
        let mut it = l.segments(0, 1);
        assert!(it.next().is_some());
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }

    #[test]
    fn zero_sized_results() {
        let l = Layout::new(&[vec![0, 3], vec![0, 3]], 0, false, false, 8).unwrap();
        assert_eq!(l.shape(), &[0, 3]);
        assert_eq!(l.nbytes(), 0);
        assert_eq!(l.segments(0, 10).count(), 0);
        assert_eq!(l.locate(0), None);
        let l = Layout::new(&[vec![2, 3], vec![2, 3]], 0, true, true, 0).unwrap();
        assert_eq!(l.shape(), &[2, 2, 3]);
        assert_eq!(l.nbytes(), 0);
        assert_eq!(l.part_nbytes(0), 0);
        assert_eq!(l.locate(0), None);
        // Empty, but the product of the other dimensions would overflow.
        let l = Layout::new(&[vec![0, u64::MAX, u64::MAX]], 0, false, false, 8).unwrap();
        assert_eq!(l.nbytes(), 0);
        let l = Layout::new(&[vec![u64::MAX, u64::MAX]], 0, false, false, 0).unwrap();
        assert_eq!(l.nbytes(), 0);
        assert_eq!(l.part_nbytes(0), 0);
    }

    // ----- errors -----

    #[test]
    fn error_no_parts() {
        let e = Layout::new(&[], 0, false, false, 1).unwrap_err();
        assert_eq!(e, LayoutError::NoParts);
        assert_eq!(e.part(), None);
        assert_eq!(
            Layout::new(&[], 0, true, false, 1).unwrap_err(),
            LayoutError::NoParts
        );
    }

    #[test]
    fn error_axis_out_of_range() {
        let shapes = [vec![2, 3], vec![2, 3]];
        for (axis, stack, ndim) in [
            (2, false, 2),
            (-3, false, 2),
            (3, true, 3),
            (-4, true, 3),
            (i64::MIN, false, 2),
            (i64::MAX, true, 3),
        ] {
            let e = Layout::new(&shapes, axis, stack, false, 1).unwrap_err();
            assert_eq!(e, LayoutError::AxisOutOfRange { axis, ndim });
            assert_eq!(e.part(), None);
        }
        let e = Layout::new(&[vec![], vec![]], 1, true, false, 1).unwrap_err();
        assert_eq!(e, LayoutError::AxisOutOfRange { axis: 1, ndim: 1 });
    }

    #[test]
    fn error_ndim_mismatch() {
        let e = Layout::new(&[vec![2, 3], vec![2, 3], vec![6]], 0, false, false, 1).unwrap_err();
        assert_eq!(
            e,
            LayoutError::NdimMismatch {
                part: 2,
                expected: 2,
                found: 1
            }
        );
        assert_eq!(e.part(), Some(2));
        let e = Layout::new(&[vec![2], vec![2, 1]], 0, true, false, 1).unwrap_err();
        assert_eq!(
            e,
            LayoutError::NdimMismatch {
                part: 1,
                expected: 1,
                found: 2
            }
        );
        // A 0-d part after an n-d one: numpy reports the dimension mismatch.
        let e = Layout::new(&[vec![2], vec![]], 0, false, false, 1).unwrap_err();
        assert_eq!(
            e,
            LayoutError::NdimMismatch {
                part: 1,
                expected: 1,
                found: 0
            }
        );
    }

    #[test]
    fn error_shape_mismatch() {
        let shapes = [vec![2, 3], vec![5, 3], vec![5, 4], vec![1, 2]];
        let e = Layout::new(&shapes, 0, false, false, 1).unwrap_err();
        assert_eq!(
            e,
            LayoutError::ShapeMismatch {
                part: 2,
                expected: vec![2, 3],
                found: vec![5, 4],
                axis: 0
            }
        );
        assert_eq!(e.part(), Some(2));
        let e = Layout::new(&[vec![2, 3], vec![2, 4], vec![3, 3]], -1, false, true, 1).unwrap_err();
        assert_eq!(
            e,
            LayoutError::ShapeMismatch {
                part: 2,
                expected: vec![2, 3],
                found: vec![3, 3],
                axis: 1
            }
        );
    }

    #[test]
    fn error_stack_shape_mismatch() {
        let e = Layout::new(&[vec![2, 3], vec![2, 3], vec![3, 3]], 0, true, false, 1).unwrap_err();
        assert_eq!(
            e,
            LayoutError::StackShapeMismatch {
                part: 2,
                expected: vec![2, 3],
                found: vec![3, 3]
            }
        );
        assert_eq!(e.part(), Some(2));
    }

    #[test]
    fn error_zero_dim() {
        let e = Layout::new(&[vec![], vec![]], 0, false, false, 1).unwrap_err();
        assert_eq!(e, LayoutError::ZeroDim { part: 0 });
        assert_eq!(e.part(), Some(0));
        assert_eq!(
            e.to_string(),
            "zero-dimensional arrays cannot be concatenated (use stack = true)"
        );
        // numpy checks the first array's ndim before the axis.
        assert_eq!(
            Layout::new(&[vec![], vec![3]], 5, false, false, 1).unwrap_err(),
            LayoutError::ZeroDim { part: 0 }
        );
    }

    #[test]
    fn error_overflow() {
        let big = 1u64 << 63;
        // Axis sum overflows.
        let e = Layout::new(&[vec![big, 1], vec![big, 1]], 0, false, false, 1).unwrap_err();
        assert_eq!(e, LayoutError::Overflow);
        assert_eq!(e.part(), None);
        // Element count overflows.
        let e = Layout::new(&[vec![1 << 32, 1 << 32]], 0, false, false, 1).unwrap_err();
        assert_eq!(e, LayoutError::Overflow);
        // Byte count overflows.
        for fortran in [false, true] {
            for axis in [0, 1, -1] {
                let e =
                    Layout::new(&[vec![1 << 31, 1 << 31]], axis, false, fortran, 4).unwrap_err();
                assert_eq!(e, LayoutError::Overflow);
            }
        }
        let e = Layout::new(&[vec![u64::MAX]], 0, false, false, 2).unwrap_err();
        assert_eq!(e, LayoutError::Overflow);
        let e = Layout::new(&[vec![u64::MAX], vec![u64::MAX]], 0, true, false, 1).unwrap_err();
        assert_eq!(e, LayoutError::Overflow);
        let e = Layout::new(&[vec![1], vec![1]], 0, false, false, u64::MAX).unwrap_err();
        assert_eq!(e, LayoutError::Overflow);
        // Just fits.
        let l = Layout::new(&[vec![1 << 31, 1 << 31]], 0, false, false, 3).unwrap();
        assert_eq!(l.nbytes(), 3 << 62);
        let l = Layout::new(&[vec![u64::MAX]], 0, false, false, 1).unwrap();
        assert_eq!(
            l.locate(u64::MAX - 1),
            Some(Segment {
                part: 0,
                offset: u64::MAX - 1,
                len: 1
            })
        );
        assert_eq!(l.locate(u64::MAX), None);
    }

    #[test]
    fn huge_interleaved_near_end() {
        // Two parts of 2^31 x 1 along axis 1, itemsize 2^30: rows of 2^31 bytes.
        let l = Layout::new(
            &[vec![1 << 31, 1], vec![1 << 31, 1]],
            1,
            false,
            false,
            1 << 30,
        )
        .unwrap();
        assert_eq!(l.nbytes(), 1 << 62);
        let segs: Vec<Segment> = l.segments((1 << 62) - (1 << 30) - 5, u64::MAX).collect();
        assert_eq!(
            segs,
            vec![
                Segment {
                    part: 0,
                    offset: (1 << 61) - 5,
                    len: 5
                },
                Segment {
                    part: 1,
                    offset: (1 << 61) - (1 << 30),
                    len: 1 << 30
                },
            ]
        );
    }

    // ----- scale -----

    #[test]
    fn hundred_thousand_parts() {
        let n = 100_000usize;
        // Interleaved: 3 rows of 100,000 blocks of 8 bytes, every 7th part empty.
        let shapes: Vec<Vec<u64>> = (0..n)
            .map(|p| vec![3, if p % 7 == 3 { 0 } else { 2 }])
            .collect();
        let start = Instant::now();
        let l = Layout::new(&shapes, 1, false, false, 4).unwrap();
        let build = start.elapsed();
        let row = l.shape()[1] * 4;
        assert_eq!(l.nbytes(), 3 * row);

        let start = Instant::now();
        let mut total = 0;
        for q in 0..1000u64 {
            let offset = (q * 7_919_993) % l.nbytes();
            let segs: Vec<Segment> = l.segments(offset, 100).collect();
            assert!(!segs.is_empty());
            total += segs.len();
            let s = l.locate(offset).unwrap();
            assert_eq!(s, segs[0]);
        }
        let queries = start.elapsed();
        assert!(total >= 1000);

        // Crossing a row boundary: the last block of row 0 then the first of row 1.
        let segs: Vec<Segment> = l.segments(row - 8, 16).collect();
        assert_eq!(
            segs,
            vec![
                Segment {
                    part: n - 1,
                    offset: 0,
                    len: 8
                },
                Segment {
                    part: 0,
                    offset: 8,
                    len: 8
                },
            ]
        );

        // Mostly empty parts: only every 10,000th has data, axis 0 contiguous.
        let shapes: Vec<Vec<u64>> = (0..n)
            .map(|p| vec![if p % 10_000 == 0 { 5 } else { 0 }, 4])
            .collect();
        let l = Layout::new(&shapes, 0, false, false, 1).unwrap();
        let segs: Vec<Segment> = l.segments(0, u64::MAX).collect();
        assert_eq!(segs.len(), 10);
        assert_eq!(
            segs[9],
            Segment {
                part: 90_000,
                offset: 0,
                len: 20
            }
        );

        // Stack of 100,000 scalars.
        let shapes = vec![Vec::new(); n];
        let l = Layout::new(&shapes, 0, true, false, 8).unwrap();
        assert_eq!(l.shape(), &[n as u64]);
        assert_eq!(
            l.locate(8 * 54_321 + 3),
            Some(Segment {
                part: 54_321,
                offset: 3,
                len: 5
            })
        );

        assert!(build < Duration::from_secs(2), "build took {build:?}");
        assert!(queries < Duration::from_secs(2), "queries took {queries:?}");
    }
}
