"""Randomized oracle: every virtual file must be byte-identical to np.save.

For each generated case the oracle is computed from the parts exactly as the
contract states it::

    parts = [np.load(p) ...]                      # or np.memmap for raw parts
    res = np.concatenate(parts, axis)             # np.stack when stack = true
    res = res.astype(parts[0].dtype)
    np.save(buf, np.asfortranarray(res) if fortran_parts else res)

The cases (>= 200, seeded: NPYFS_SEED=... reproduces a run) are grouped by
50 into one manifest per mount.  A batch whose mount is refused is re-checked
case by case with `npyfs inspect`, the refused cases fail with npyfs's
message, and the rest are mounted again so one bad case cannot hide others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import MountError, manifest_text, mounted, run_cli
from npyhelpers import (
    ambiguous_order,
    arrays_equal,
    describe_diff,
    header_of,
    load_bytes,
    random_values,
    save_bytes,
    write_npy,
    zero_padding,
)
from oracle_seed import SEED

N_CASES = int(os.environ.get("NPYFS_ORACLE_CASES", "250"))
BATCH = 50

# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------

STRUCT_DTYPES = {
    "struct": np.dtype([("a", "<i4"), ("b", ">f8"), ("c", "S3"), ("d", "?")]),
    "struct_subarray": np.dtype([("x", "<f4", (2, 3)), ("y", "u1"), ("z", ">i2", (2,))]),
    "struct_nested": np.dtype(
        [("p", [("q", "<i2"), ("r", ">u4"), ("t", [("u", "<f2"), ("v", "S2")])]), ("s", "<f8")]
    ),
    "struct_aligned": np.dtype([("a", "u1"), ("b", "<f8"), ("c", "<i2")], align=True),
}

SIMPLE_DTYPES = [
    "|i1", "<i2", ">i2", "<i4", ">i4", "<i8", ">i8",
    "|u1", "<u2", ">u2", "<u4", ">u4", "<u8", ">u8",
    "<f2", ">f2", "<f4", ">f4", "<f8", ">f8",
    "|b1", "<c8", ">c8", "<c16", ">c16",
    "<M8[ns]", ">M8[ns]", "<m8[s]", ">m8[s]",
    "|S5", "<U3", ">U3",
]  # fmt: skip


def dtype_label(dt: np.dtype) -> str:
    for k, v in STRUCT_DTYPES.items():
        if v == dt and v.isalignedstruct == dt.isalignedstruct:
            return k
    return dt.str.replace("<", "le").replace(">", "be").replace("|", "").replace("[", "").replace("]", "")


# --------------------------------------------------------------------------
# case model
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Part:
    relpath: str  # relative to the batch directory (= the manifest's folder)
    values: np.ndarray  # logical values
    raw: bool = False
    fortran: bool = False  # layout on disk (header flag for npy parts)
    header: str = "np.save"  # np.save | v2 | v3 | explicit | variant
    offset: int = 0
    with_order_key: bool = False
    with_offset_key: bool = False


@dataclasses.dataclass
class Case:
    idx: int
    name: str  # name inside the mount
    parts: list[Part]
    axis: int
    stack: bool
    manifest_parts: list  # what goes into `parts = [...]`
    label: str
    with_axis_key: bool = True
    big: bool = False


def _natural_numbers(rng, k):
    """k distinct increasing numbers whose decimal strings do not sort lexically."""
    nums = sorted(int(x) for x in rng.choice(np.arange(1, 40), size=k, replace=False))
    return nums


def _shape_dims(rng, ndim, small):
    hi = 3 if small else 4
    dims = []
    for _ in range(ndim):
        r = rng.random()
        if r < 0.015:  # a zero in any dim: an empty result
            dims.append(0)
        elif r < 0.25:
            dims.append(1)
        else:
            dims.append(int(rng.integers(2, hi + 1)))
    return dims


def generate_case(rng: np.random.Generator, idx: int) -> Case:
    r = rng.random()
    kind = "concat" if r < 0.62 else ("stack" if r < 0.8 else "raw")
    if kind == "raw":
        dtype = np.dtype(SIMPLE_DTYPES[rng.integers(len(SIMPLE_DTYPES))])
    else:
        pool = SIMPLE_DTYPES + list(STRUCT_DTYPES)
        pick = pool[rng.integers(len(pool))]
        dtype = STRUCT_DTYPES[pick] if pick in STRUCT_DTYPES else np.dtype(pick)

    stack = kind == "stack" or (kind == "raw" and rng.random() < 0.2)
    nparts = int(rng.integers(1, 6))
    if stack:
        part_ndim = int(rng.integers(0 if kind != "raw" else 1, 5))
        out_ndim = part_ndim + 1
        axis = int(rng.integers(-out_ndim, out_ndim))
        base = _shape_dims(rng, part_ndim, small=part_ndim >= 3)
        shapes = [tuple(base)] * nparts
    else:
        part_ndim = int(rng.integers(1, 6))
        out_ndim = part_ndim
        axis = int(rng.integers(-part_ndim, part_ndim))
        base = _shape_dims(rng, part_ndim, small=part_ndim >= 3)
        shapes = []
        for _ in range(nparts):
            s = list(base)
            s[axis] = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.15, 0.15, 0.2, 0.2, 0.15, 0.15]))
            shapes.append(tuple(s))

    order = "F" if (part_ndim >= 2 and rng.random() < 0.5) else "C"
    flags = []
    parts: list[Part] = []
    case_dir = f"c{idx:03d}"
    nums = _natural_numbers(rng, nparts)
    list_order_variant = not stack and kind != "raw" and nparts > 1 and rng.random() < 0.1
    if list_order_variant:
        # explicit listing whose order is NOT the natural order of the names
        nums = list(reversed(nums))
        flags.append("listorder")
    for k, shape in enumerate(shapes):
        vals = random_values(rng, dtype, shape)
        if kind == "raw":
            fname = f"{case_dir}/r{nums[k]}.array"
            p = Part(fname, vals, raw=True, fortran=(order == "F"))
            p.offset = int(rng.choice([0, 0, 0, 8, 13, 128, 4096]))
            p.with_offset_key = p.offset != 0 or rng.random() < 0.3
            p.with_order_key = order == "F" or rng.random() < 0.3
        else:
            fname = f"{case_dir}/p{nums[k]}.npy"
            p = Part(fname, vals)
            if order == "F":
                # (asfortranarray leaves struct padding uninitialized: zero it)
                p.values = zero_padding(np.asfortranarray(vals))
                # what np.save writes: F only when not also C-contiguous
                p.fortran = bool(p.values.flags.f_contiguous and not p.values.flags.c_contiguous)
                if vals.size == 0 and not ambiguous_order(shape):
                    # np.save writes fortran_order False for empty arrays; say F
                    # explicitly so the case is unambiguous (see test below).
                    p.fortran, p.header = True, "explicit"
            elif ambiguous_order(shape) and vals.ndim >= 1 and rng.random() < 0.15:
                # same bytes in both orders: a header that says F must fit too
                p.fortran, p.header = True, "explicit"
                if "flipF" not in flags:
                    flags.append("flipF")
            hv = rng.random()
            if p.header == "np.save":
                if hv < 0.08:
                    p.header = "v2"
                elif hv < 0.12:
                    p.header = "v3"
                elif hv < 0.2:
                    p.header = "variant"
        parts.append(p)

    strict = [not ambiguous_order(p.values.shape) for p in parts]
    if kind == "raw" and order == "F" and not any(strict):
        # every part fits either order: which order the output takes would be
        # a guess, so keep such cases C.
        for p in parts:
            p.fortran = False
        order = "C"
    if "flipF" in flags and out_ndim > 1 and not any(
        s and not p.fortran for s, p in zip(strict, parts)
    ):
        # only F-headed parts that fit either order and no strictly C part:
        # ambiguous too, so write them the way np.save does.
        for p in parts:
            if p.header == "explicit":
                p.fortran, p.header = False, "np.save"
        flags = [f for f in flags if f != "flipF"]

    # manifest `parts`
    manifest_parts: list = []
    if kind == "raw":
        for p in parts:
            entry = {"path": p.relpath, "dtype": dtype.str, "shape": list(p.values.shape)}
            if p.with_order_key:
                entry["order"] = "F" if p.fortran else "C"
            if p.with_offset_key:
                entry["offset"] = p.offset
            manifest_parts.append(entry)
    else:
        g = rng.random()
        if not list_order_variant and g < 0.25:
            manifest_parts = [f"{case_dir}/*.npy"]
            flags.append("glob")
        elif not list_order_variant and nparts >= 2 and g < 0.35:
            # first part explicit, the others through a glob in a subfolder
            for p in parts[1:]:
                p.relpath = p.relpath.replace(f"{case_dir}/", f"{case_dir}/more/")
            manifest_parts = [parts[0].relpath, f"{case_dir}/more/*.npy"]
            flags.append("glob2")
        else:
            manifest_parts = [p.relpath for p in parts]

    if rng.random() < 0.3:
        name = f"sub{idx % 4}/d{idx % 3}/case{idx:03d}.npy"
    else:
        name = f"case{idx:03d}.npy"
    with_axis_key = not (axis == 0 and rng.random() < 0.5)
    if not with_axis_key:
        flags.append("defaultaxis")
    hdrs = sorted({p.header for p in parts} - {"np.save"})
    label = (
        f"{idx:03d}-{kind}-{dtype_label(dtype)}-nd{part_ndim}-ax{axis}-{order}-{nparts}p"
        + "".join(f"-{f}" for f in flags + hdrs)
    )
    return Case(idx, name, parts, axis, stack, manifest_parts, label, with_axis_key)


def generate_big_cases(start: int) -> list[Case]:
    """A few multi-megabyte arrays: many FUSE read requests, page boundaries."""
    rng = np.random.default_rng([SEED, 7])
    cases = []
    specs = [
        ("<f8", [(300, 500), (700, 500)], 0, "C"),
        ("<f8", [(400, 300), (400, 900)], 1, "F"),
        (">i4", [(257, 311), (1, 311), (513, 311)], 0, "C"),
        ("<c16", [(90, 80, 3), (90, 80, 5)], -1, "C"),
    ]
    for j, (dt, shapes, axis, order) in enumerate(specs):
        idx = start + j
        parts = []
        for k, shape in enumerate(shapes):
            vals = random_values(rng, dt, shape)
            if order == "F":
                vals = np.asfortranarray(vals)
            parts.append(Part(f"c{idx:03d}/p{k + 1}.npy", vals, fortran=order == "F" and not ambiguous_order(shape)))
        cases.append(
            Case(
                idx, f"big/case{idx:03d}.npy", parts, axis, False,
                [p.relpath for p in parts], f"{idx:03d}-big-{dt}-{order}", big=True,
            )
        )  # fmt: skip
    return cases


def generate_cases(seed: int, n: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = [generate_case(rng, i) for i in range(n)]
    return cases


CASES = generate_cases(SEED, N_CASES)
BIG_CASES = generate_big_cases(len(CASES))


# --------------------------------------------------------------------------
# writing and the oracle
# --------------------------------------------------------------------------


def write_part(root: Path, p: Part, rng: np.random.Generator) -> None:
    path = root / p.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if p.raw:
        with open(path, "wb") as f:
            f.write(rng.bytes(p.offset))
            f.write(p.values.tobytes(order="F" if p.fortran else "C"))
        return
    if p.header == "np.save":
        write_npy(path, p.values)
    elif p.header == "v2":
        with open(path, "wb") as f:
            np.lib.format.write_array(f, p.values, version=(2, 0), allow_pickle=False)
    elif p.header == "v3":
        with open(path, "wb") as f:
            np.lib.format.write_array(f, p.values, version=(3, 0), allow_pickle=False)
    elif p.header == "explicit":
        write_npy(path, p.values, fortran=p.fortran)
    elif p.header == "variant":
        # valid headers numpy itself reads: other key order, 16-byte
        # alignment (numpy < 1.14), no trailing comma
        keys = ["descr", "fortran_order", "shape"]
        rng.shuffle(keys)
        write_npy(
            path,
            p.values,
            fortran=p.fortran,
            align=int(rng.choice([16, 64])),
            key_order=tuple(keys),
            trailing_comma=bool(rng.random() < 0.5),
        )
    else:
        raise AssertionError(p.header)


def load_part(root: Path, p: Part) -> np.ndarray:
    path = root / p.relpath
    if p.raw:
        dt = p.values.dtype
        count = int(np.prod(p.values.shape, dtype=np.int64))
        flat = np.fromfile(path, dtype=dt, count=count, offset=p.offset)
        assert flat.size == count
        return flat.reshape(p.values.shape, order="F" if p.fortran else "C")
    return np.load(path, allow_pickle=False)


def part_header_fortran(root: Path, p: Part) -> bool:
    if p.raw:
        return p.fortran
    return header_of((root / p.relpath).read_bytes())[1]["fortran_order"]


def oracle_for(root: Path, case: Case) -> tuple[np.ndarray, bytes]:
    arrays = [load_part(root, p) for p in case.parts]
    if case.stack:
        res = np.stack(arrays, axis=case.axis)
    else:
        res = np.concatenate(arrays, axis=case.axis)
    res = res.astype(arrays[0].dtype)
    fortran_parts = res.ndim > 1 and any(
        part_header_fortran(root, p) and not ambiguous_order(a.shape)
        for p, a in zip(case.parts, arrays)
    )
    res = np.asfortranarray(res) if fortran_parts else np.ascontiguousarray(res)
    res = zero_padding(res)
    return res, save_bytes(res)


def manifest_entry(case: Case) -> dict:
    d = {"name": case.name, "parts": case.manifest_parts}
    if case.with_axis_key:
        d["axis"] = case.axis
    if case.stack:
        d["stack"] = True
    elif case.idx % 7 == 0:
        d["stack"] = False
    return d


# --------------------------------------------------------------------------
# batches: write, mount lazily, keep mounted for the module
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Batch:
    key: str
    cases: list[Case]
    root: Path
    mnt: Path | None = None
    expected: dict = dataclasses.field(default_factory=dict)
    oracle: dict = dataclasses.field(default_factory=dict)
    refused: dict = dataclasses.field(default_factory=dict)  # idx -> message
    mount_error: str | None = None
    inspect_json: object = None


class Batches:
    def __init__(self, tmp_factory, stack: contextlib.ExitStack):
        self.tmp_factory = tmp_factory
        self.stack = stack
        self.batches: dict[str, Batch] = {}
        self.lock = threading.Lock()

    def get(self, key: str, cases: list[Case]) -> Batch:
        with self.lock:
            if key not in self.batches:
                self.batches[key] = self._build(key, cases)
            return self.batches[key]

    def _build(self, key: str, cases: list[Case]) -> Batch:
        root = self.tmp_factory.mktemp(f"oracle_{key}")
        b = Batch(key, cases, root)
        rng = np.random.default_rng([SEED, 99, len(key)])
        for c in cases:
            for p in c.parts:
                write_part(root, p, rng)
        for c in cases:
            b.expected[c.idx], b.oracle[c.idx] = oracle_for(root, c)
        live = list(cases)
        (root / "npyfs.toml").write_text(manifest_text([manifest_entry(c) for c in live]))
        mnt = self.tmp_factory.mktemp(f"mnt_{key}")
        try:
            b.mnt = self.stack.enter_context(mounted(root / "npyfs.toml", mnt))
        except MountError as e:
            b.mount_error = str(e)
            # find the refused cases with `inspect`, mount the others
            for c in cases:
                single = root / f"single_{c.idx:03d}.toml"
                single.write_text(manifest_text([manifest_entry(c)]))
                r = run_cli("inspect", single)
                if r.returncode != 0:
                    b.refused[c.idx] = f"exit {r.returncode}: {r.stderr.strip()}"
            live = [c for c in cases if c.idx not in b.refused]
            if live and len(live) < len(cases):
                (root / "rest.toml").write_text(manifest_text([manifest_entry(c) for c in live]))
                mnt2 = self.tmp_factory.mktemp(f"mnt_{key}_rest")
                with contextlib.suppress(MountError):
                    b.mnt = self.stack.enter_context(mounted(root / "rest.toml", mnt2))
        return b


@pytest.fixture(scope="module")
def batches(npyfs, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        yield Batches(tmp_path_factory, stack)


def batch_of(case: Case) -> tuple[str, list[Case]]:
    if case.big:
        return "big", BIG_CASES
    b = case.idx // BATCH
    return f"b{b}", CASES[b * BATCH : (b + 1) * BATCH]


def mounted_case(batches: Batches, case: Case) -> tuple[Batch, Path]:
    b = batches.get(*batch_of(case))
    if case.idx in b.refused:
        pytest.fail(
            f"[seed {SEED}] npyfs refused valid case {case.label} "
            f"(manifest {b.root}/single_{case.idx:03d}.toml):\n{b.refused[case.idx]}",
            pytrace=False,
        )
    if b.mnt is None:
        pytest.fail(f"[seed {SEED}] batch {b.key} could not be mounted:\n{b.mount_error}", pytrace=False)
    return b, b.mnt / case.name


# --------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------


def check_case(batches: Batches, case: Case) -> None:
    b, path = mounted_case(batches, case)
    want = b.oracle[case.idx]
    expected = b.expected[case.idx]
    ctx = f"[seed {SEED}] case {case.label} -> {path} (parts in {b.root / f'c{case.idx:03d}'})"

    with open(path, "rb") as f:
        got = f.read()
    assert got == want, f"{ctx}: bytes differ from np.save\n{describe_diff(got, want)}"

    assert os.stat(path).st_size == len(want), ctx

    m = np.load(path, mmap_mode="r", allow_pickle=False)
    ref = load_bytes(want)
    assert m.dtype == ref.dtype and m.dtype == expected.dtype, (ctx, m.dtype, expected.dtype)
    assert m.shape == expected.shape, (ctx, m.shape, expected.shape)
    assert arrays_equal(np.asarray(m), expected), f"{ctx}: np.load(mmap_mode='r') differs"
    del m

    rng = np.random.default_rng([SEED, case.idx])
    n = len(want)
    probes = [(0, 1), (0, n), (n, 1), (n, 4096), (n + 4096, 10), (max(0, n - 1), 100)]
    for _ in range(12):
        off = int(rng.integers(0, n + 200))
        size = int(rng.integers(0, min(n, 300_000) + 50))
        probes.append((off, size))
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, size in probes:
            chunk = os.pread(fd, size, off)
            assert chunk == want[off : off + size], f"{ctx}: pread(size={size}, offset={off}) of {n} bytes"
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_oracle_case(batches, case):
    check_case(batches, case)


@pytest.mark.parametrize("case", BIG_CASES, ids=[c.label for c in BIG_CASES])
def test_oracle_big_case(batches, case):
    check_case(batches, case)


def test_concurrent_reads_of_big_file(batches):
    case = BIG_CASES[0]
    b, path = mounted_case(batches, case)
    want = b.oracle[case.idx]
    errors = []

    def reader(t):
        rng = np.random.default_rng([SEED, 1000 + t])
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(60):
                off = int(rng.integers(0, len(want)))
                size = int(rng.integers(1, 200_000))
                if os.pread(fd, size, off) != want[off : off + size]:
                    errors.append((t, off, size))
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"[seed {SEED}] concurrent preads differ: {errors[:5]}"


def _inspect_entries(b: Batch) -> dict:
    manifest = b.root / "npyfs.toml"
    r = run_cli("inspect", manifest, "--json")
    assert r.returncode == 0, f"inspect --json {manifest} exited {r.returncode}: {r.stderr}"
    data = json.loads(r.stdout)
    assert isinstance(data, list), data
    return {e["name"]: e for e in data}


@pytest.mark.parametrize("key", ["b0", "big"])
def test_inspect_json(batches, key):
    cases = BIG_CASES if key == "big" else CASES[:BATCH]
    b = batches.get(key, cases)
    entries = _inspect_entries(b)
    problems = []
    for c in cases:
        if c.idx in b.refused:
            continue
        e = entries.get(c.name)
        if e is None:
            problems.append(f"{c.name}: missing from inspect --json")
            continue
        exp = b.expected[c.idx]
        want = b.oracle[c.idx]
        hdr = header_of(want)[1]
        if list(e.get("shape", [])) != list(exp.shape):
            problems.append(f"{c.label}: shape {e.get('shape')} != {list(exp.shape)}")
        if e.get("nbytes") not in (exp.nbytes, len(want)):
            problems.append(f"{c.label}: nbytes {e.get('nbytes')} is neither {exp.nbytes} nor file size {len(want)}")
        if bool(e.get("fortran_order")) != hdr["fortran_order"]:
            problems.append(f"{c.label}: fortran_order {e.get('fortran_order')} != {hdr['fortran_order']}")
        if not exp.dtype.names:
            try:
                ok = np.dtype(e.get("dtype")) == exp.dtype
            except Exception:  # noqa: BLE001
                ok = False
            if not ok:
                problems.append(f"{c.label}: dtype {e.get('dtype')!r} != {exp.dtype.str!r}")
        else:
            assert isinstance(e.get("dtype"), str) and e["dtype"], e
        parts = e.get("parts")
        if not isinstance(parts, list) or [Path(x).name for x in parts] != [Path(p.relpath).name for p in c.parts]:
            problems.append(f"{c.label}: parts {parts} != {[p.relpath for p in c.parts]}")
    assert not problems, f"[seed {SEED}] inspect --json mismatches:\n" + "\n".join(problems[:30])


# --------------------------------------------------------------------------
# dedicated cases beyond the random mix
# --------------------------------------------------------------------------


def _single_mount_check(tmp_path, mount, arrays_fn, entry_extra=None, name="x.npy", write=None):
    """Write parts, mount a one-array manifest, compare with the oracle."""
    root = tmp_path / "src"
    root.mkdir()
    arrays = arrays_fn()
    rels = []
    for k, a in enumerate(arrays):
        rel = f"p{k}.npy"
        (write or (lambda path, arr: np.save(path, arr)))(root / rel, a)
        rels.append(rel)
    entry = {"name": name, "parts": rels}
    entry.update(entry_extra or {})
    (root / "m.toml").write_text(manifest_text([entry]))
    loaded = [np.load(root / r, max_header_size=10**7) for r in rels]
    axis = entry.get("axis", 0)
    res = (np.stack if entry.get("stack") else np.concatenate)(loaded, axis=axis).astype(loaded[0].dtype)
    fparts = res.ndim > 1 and any(
        header_of((root / r).read_bytes())[1]["fortran_order"] and not ambiguous_order(a.shape)
        for r, a in zip(rels, loaded)
    )
    res = zero_padding(np.asfortranarray(res) if fparts else res)
    want = save_bytes(res)
    with mount(root / "m.toml") as mnt:
        got = (mnt / name).read_bytes()
        assert got == want, describe_diff(got, want)
        assert arrays_equal(np.load(mnt / name, mmap_mode="r", max_header_size=10**7), res)


@pytest.mark.filterwarnings("ignore:Stored array in format")
def test_header_version_2_for_huge_descr(tmp_path, mount):
    """A descr longer than 64 KiB makes np.save write a version 2.0 header."""
    dt = np.dtype([(f"field_{i:05d}", "<i2") for i in range(3500)])
    rng = np.random.default_rng(SEED)
    arrays = lambda: [random_values(rng, dt, (2,)), random_values(rng, dt, (3,))]  # noqa: E731
    _single_mount_check(tmp_path, mount, arrays)


@pytest.mark.filterwarnings("ignore:Stored array in format")
def test_header_version_3_for_utf8_field_names(tmp_path, mount):
    """Non-latin1 field names make np.save write a version 3.0 header."""
    dt = np.dtype([("größe", "<f4"), ("名前", "S4"), ("😀", "<i8")])
    rng = np.random.default_rng(SEED)
    arrays = lambda: [random_values(rng, dt, (3,)), random_values(rng, dt, (4,))]  # noqa: E731
    _single_mount_check(tmp_path, mount, arrays)


def test_empty_fortran_part_written_by_np_save(tmp_path, mount):
    """np.save writes fortran_order False for an empty F array (it is also
    C-contiguous); its (zero) bytes are the same in both orders, so it must fit
    among Fortran parts."""
    rng = np.random.default_rng(SEED)

    def arrays():
        a = np.asfortranarray(random_values(rng, "<f8", (3, 4, 5)))
        e = np.asfortranarray(np.zeros((0, 4, 5)))
        c = np.asfortranarray(random_values(rng, "<f8", (2, 4, 5)))
        return [a, e, c]

    _single_mount_check(tmp_path, mount, arrays)


def test_empty_result_of_fortran_parts_has_numpy_header(tmp_path, mount):
    """np.save writes fortran_order False for any empty array (it is
    C-contiguous too), even np.asfortranarray of one."""
    root = tmp_path / "src"
    root.mkdir()
    for name in ("a.array", "b.array"):
        (root / name).write_bytes(b"")
    parts = [{"path": n, "dtype": "<f8", "shape": [2, 0, 3], "order": "F"} for n in ("a.array", "b.array")]
    (root / "m.toml").write_text(manifest_text([{"name": "e.npy", "parts": parts}]))
    want = save_bytes(np.asfortranarray(np.zeros((4, 0, 3), order="F")))
    assert b"'fortran_order': False" in want
    with mount(root / "m.toml") as mnt:
        got = (mnt / "e.npy").read_bytes()
        assert got == want, describe_diff(got, want)


def test_mixed_raw_and_npy_parts(tmp_path, mount):
    root = tmp_path / "src"
    root.mkdir()
    rng = np.random.default_rng(SEED)
    a = random_values(rng, "<i4", (3, 5))
    b = random_values(rng, "<i4", (2, 5))
    np.save(root / "a.npy", a)
    b.tofile(root / "b.array")
    (root / "m.toml").write_text(
        manifest_text([{"name": "x.npy", "parts": ["a.npy", {"path": "b.array", "dtype": "<i4", "shape": [2, 5]}]}])
    )
    with mount(root / "m.toml") as mnt:
        assert (mnt / "x.npy").read_bytes() == save_bytes(np.concatenate([a, b]))


def test_raw_memmap_parts_like_the_original_question(tmp_path, mount):
    """axis=1 of two raw np.memmap files (scaled down), F and C layouts."""
    root = tmp_path / "src"
    root.mkdir()
    rng = np.random.default_rng(SEED)
    a = np.memmap(root / "a.array", dtype="<f8", mode="w+", shape=(500, 300))
    a[:] = rng.standard_normal(a.shape)
    a.flush()
    b = np.memmap(root / "b.array", dtype="<f8", mode="w+", shape=(500, 100))
    b[:] = rng.standard_normal(b.shape)
    b.flush()
    (root / "m.toml").write_text(
        manifest_text(
            [
                {
                    "name": "raw.npy",
                    "axis": 1,
                    "parts": [
                        {"path": "a.array", "dtype": "<f8", "shape": [500, 300]},
                        {"path": "b.array", "dtype": "<f8", "shape": [500, 100], "order": "C", "offset": 0},
                    ],
                }
            ]
        )
    )
    want = np.concatenate([np.asarray(a), np.asarray(b)], axis=1)
    with mount(root / "m.toml") as mnt:
        assert (mnt / "raw.npy").read_bytes() == save_bytes(want)
        m = np.load(mnt / "raw.npy", mmap_mode="r")
        assert np.array_equal(m, want)


def test_glob_natural_order(tmp_path, mount):
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    arrays = {}
    for n in (10, 2, 1, 33, 9, 100):
        arrays[n] = np.full((2, 3), n, dtype="<i2")
        np.save(root / "d" / f"p{n}.npy", arrays[n])
    (root / "m.toml").write_text(manifest_text([{"name": "g.npy", "parts": ["d/*.npy"]}]))
    want = np.concatenate([arrays[n] for n in sorted(arrays)])
    with mount(root / "m.toml") as mnt:
        got = np.load(mnt / "g.npy")
        assert np.array_equal(got, want), got[:, 0]
        assert (mnt / "g.npy").read_bytes() == save_bytes(want)


def test_many_parts_with_few_maps(tmp_path, mount, run_cli):
    """More parts than --max-maps (an implementation option, skipped when
    absent): maps get recycled while reading, bytes stay right."""
    if "--max-maps" not in run_cli("mount", "--help").stdout:
        pytest.skip("npyfs mount has no --max-maps option")
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    parts = [random_values(rng, "<i8", (int(rng.integers(0, 600)), 3)) for _ in range(24)]
    for k, p in enumerate(parts):
        np.save(root / "d" / f"p{k}.npy", p)
    (root / "m.toml").write_text(manifest_text([{"name": "m.npy", "parts": ["d/*.npy"]}]))
    want = save_bytes(np.concatenate(parts))
    with mount(root / "m.toml", "--max-maps", "2") as mnt:
        assert (mnt / "m.npy").read_bytes() == want
        errors = []

        def reader(t):
            r = np.random.default_rng([SEED, t])
            fd = os.open(mnt / "m.npy", os.O_RDONLY)
            try:
                for _ in range(200):
                    off = int(r.integers(0, len(want)))
                    size = int(r.integers(1, 20_000))
                    if os.pread(fd, size, off) != want[off : off + size]:
                        errors.append((off, size))
            finally:
                os.close(fd)

        threads = [threading.Thread(target=reader, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
