"""Every invalid source is refused: by `inspect` (exit 2) and by `mount`
(non-zero exit, no mount left), with a message on stderr that names the
offending file and says what is wrong."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    MOUNT_TIMEOUT,
    daemon_pids,
    force_unmount,
    is_mounted,
    manifest_text,
    npyfs_bin,
    wait_until,
)
from npyhelpers import npy_header

# --------------------------------------------------------------------------
# refusal builders: (root) -> (source, names, keyword groups)
#   names:    the message must contain at least one of these
#   keywords: every group must match (any alternative, case-insensitive,
#             regex) in the message after file paths were blanked out
# --------------------------------------------------------------------------

NOT_FOUND = ("no such", "not found", "does not exist", "doesn't exist", "not exist", "missing", "cannot open", "can't open")
NOT_NPY = ("magic", r"not an? \.?npy", "numpy", "format", "invalid", "signature")
TOO_SMALL = ("truncat", "too small", "too short", "short", "smaller", "expected", "size", "bytes", "incomplete")


def _manifest(root: Path, arrays, name="m.toml") -> Path:
    path = root / name
    path.write_text(manifest_text(arrays))
    return path


def r_dtype_mismatch(root):
    np.save(root / "first.npy", np.zeros((3, 4), "<f8"))
    np.save(root / "second.npy", np.zeros((3, 4), "<f4"))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"]}])
    return m, ["second.npy"], [("dtype", "type")]


def r_shape_mismatch(root):
    np.save(root / "first.npy", np.zeros((3, 4)))
    np.save(root / "second.npy", np.zeros((3, 5)))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"]}])
    return m, ["second.npy"], [("shape", "dimension")]


def r_shape_mismatch_stack(root):
    np.save(root / "first.npy", np.zeros((3, 4)))
    np.save(root / "second.npy", np.zeros((4, 4)))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"], "stack": True}])
    return m, ["second.npy"], [("shape", "dimension")]


def r_ndim_mismatch(root):
    np.save(root / "first.npy", np.zeros((3, 4)))
    np.save(root / "second.npy", np.zeros((3, 4, 1)))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"]}])
    return m, ["second.npy"], [("shape", "dimension", "ndim")]


def r_order_mismatch(root):
    np.save(root / "first.npy", np.asfortranarray(np.arange(12.0).reshape(3, 4)))
    np.save(root / "second.npy", np.arange(12.0).reshape(3, 4))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"]}])
    return m, ["first.npy", "second.npy"], [("order", "fortran", "contiguous")]


def r_raw_order_mismatch(root):
    np.arange(12.0).tofile(root / "first.array")
    np.arange(12.0).tofile(root / "second.array")
    parts = [
        {"path": "first.array", "dtype": "<f8", "shape": [3, 4], "order": "F"},
        {"path": "second.array", "dtype": "<f8", "shape": [3, 4], "order": "C"},
    ]
    m = _manifest(root, [{"name": "x.npy", "parts": parts}])
    return m, ["first.array", "second.array"], [("order", "fortran", "contiguous")]


def _axis_case(axis, stack=False):
    def build(root):
        np.save(root / "first.npy", np.zeros((3, 4)))
        np.save(root / "second.npy", np.zeros((3, 4)))
        entry = {"name": "x.npy", "parts": ["first.npy", "second.npy"], "axis": axis}
        if stack:
            entry["stack"] = True
        m = _manifest(root, [entry])
        return m, ["m.toml", "x.npy", "first.npy"], [("axis",)]

    return build


def r_missing_part(root):
    np.save(root / "first.npy", np.zeros(3))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "gone.npy"]}])
    return m, ["gone.npy"], [NOT_FOUND]


def r_missing_raw_part(root):
    parts = [{"path": "gone.array", "dtype": "<f8", "shape": [3]}]
    m = _manifest(root, [{"name": "x.npy", "parts": parts}])
    return m, ["gone.array"], [NOT_FOUND]


def r_unreadable_part(root):
    np.save(root / "first.npy", np.zeros(3))
    np.save(root / "locked.npy", np.zeros(3))
    os.chmod(root / "locked.npy", 0)
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "locked.npy"]}])
    return m, ["locked.npy"], [("permission", "denied", "unreadable", "cannot read", "can't read", "access", "EACCES")]


def r_part_is_directory(root):
    np.save(root / "first.npy", np.zeros(3))
    (root / "adir.npy").mkdir()
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "adir.npy"]}])
    return m, ["adir.npy"], [("director", "not a (regular )?file", "unreadable", "cannot read", "EISDIR")]


def r_truncated_part(root):
    np.save(root / "first.npy", np.zeros(10))
    np.save(root / "cut.npy", np.arange(10.0))
    size = (root / "cut.npy").stat().st_size
    os.truncate(root / "cut.npy", size - 40)
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "cut.npy"]}])
    return m, ["cut.npy"], [TOO_SMALL]


def r_not_npy(root):
    np.save(root / "first.npy", np.zeros(3))
    (root / "text.npy").write_text("hello, this is not a NumPy array file\n" * 4)
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "text.npy"]}])
    return m, ["text.npy"], [NOT_NPY]


def r_empty_file(root):
    np.save(root / "first.npy", np.zeros(3))
    (root / "zero.npy").write_bytes(b"")
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "zero.npy"]}])
    return m, ["zero.npy"], [NOT_NPY + ("empty", "short", "truncat", "eof")]


def r_bad_version(root):
    np.save(root / "first.npy", np.zeros(3))
    data = bytearray((root / "first.npy").read_bytes())
    data[6:8] = bytes([4, 0])
    (root / "v4.npy").write_bytes(bytes(data))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "v4.npy"]}])
    return m, ["v4.npy"], [("version",), (r"\b4\b",)]


def r_absurd_header_len_v1(root):
    np.save(root / "first.npy", np.zeros(3))
    data = bytearray((root / "first.npy").read_bytes())
    data[8:10] = struct.pack("<H", 0xFFFF)
    (root / "hdr.npy").write_bytes(bytes(data))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "hdr.npy"]}])
    return m, ["hdr.npy"], [("header",)]


def r_absurd_header_len_v2(root):
    np.save(root / "first.npy", np.zeros(3))
    data = np.lib.format.magic(2, 0) + struct.pack("<I", 0xFFFFFFF0) + b"{'descr': '<f8'"
    (root / "hdr.npy").write_bytes(data)
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "hdr.npy"]}])
    return m, ["hdr.npy"], [("header",)]


def r_garbage_header(root):
    np.save(root / "first.npy", np.zeros(3))
    hdr = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': os.system('x')}"
    hdr = hdr + b" " * ((-(10 + len(hdr) + 1)) % 64) + b"\n"
    (root / "hdr.npy").write_bytes(np.lib.format.magic(1, 0) + struct.pack("<H", len(hdr)) + hdr + bytes(24))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "hdr.npy"]}])
    return m, ["hdr.npy"], [("header", "parse", "invalid", "unexpected", "unknown", "key")]


def r_object_dtype(root):
    np.save(root / "first.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    np.save(root / "second.npy", np.array([2, "b", None], dtype=object), allow_pickle=True)
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"]}])
    return m, ["first.npy"], [("object", r"'O'", r"\|O", "pickle", "dtype")]


def r_toml_syntax(root):
    np.save(root / "first.npy", np.zeros(3))
    m = root / "m.toml"
    m.write_text('[[array]]\nname = "x.npy"\naxis = = 1\nparts = ["first.npy"]\n')
    return m, ["m.toml"], [(r"line\s*3\b", r"\b3:\d+", r"line:\s*3\b")]


def r_unknown_key(root):
    np.save(root / "first.npy", np.zeros(3))
    m = root / "m.toml"
    m.write_text('[[array]]\nname = "x.npy"\nparts = ["first.npy"]\naxes = 0\n')
    return m, ["m.toml"], [("axes",), ("unknown", "unexpected", "not allowed", "invalid", "unrecognized")]


def r_unknown_raw_key(root):
    np.zeros(3).tofile(root / "first.array")
    m = root / "m.toml"
    m.write_text(
        '[[array]]\nname = "x.npy"\n'
        'parts = [{ path = "first.array", dtype = "<f8", shape = [3], ofset = 0 }]\n'
    )
    return m, ["m.toml"], [("ofset",), ("unknown", "unexpected", "not allowed", "invalid", "unrecognized")]


def r_unknown_top_key(root):
    np.save(root / "first.npy", np.zeros(3))
    m = root / "m.toml"
    m.write_text('arrays_dir = "x"\n\n[[array]]\nname = "x.npy"\nparts = ["first.npy"]\n')
    return m, ["m.toml"], [("arrays_dir",), ("unknown", "unexpected", "not allowed", "invalid", "unrecognized")]


def r_duplicate_names(root):
    np.save(root / "first.npy", np.zeros(3))
    np.save(root / "second.npy", np.zeros(3))
    m = _manifest(
        root,
        [
            {"name": "sub/dup.npy", "parts": ["first.npy"]},
            {"name": "sub/dup.npy", "parts": ["second.npy"]},
        ],
    )
    return m, ["m.toml", "sub/dup.npy"], [("duplicate", "more than once", "twice", "already"), ("dup",)]


def r_empty_parts(root):
    m = _manifest(root, [{"name": "x.npy", "parts": []}])
    return m, ["m.toml", "x.npy"], [("empty", "no parts", "at least one", "missing")]


def r_glob_nothing(root):
    np.save(root / "first.npy", np.zeros(3))
    (root / "nothing").mkdir()
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "nothing/*.npy"]}])
    return m, ["nothing/*.npy", "*.npy"], [("match", "no file", "nothing", "found", "empty")]


def r_raw_too_small(root):
    np.zeros(20).tofile(root / "small.array")  # 160 bytes, 200 needed
    parts = [{"path": "small.array", "dtype": "<f8", "shape": [5, 5]}]
    m = _manifest(root, [{"name": "x.npy", "parts": parts}])
    return m, ["small.array"], [TOO_SMALL]


def r_raw_too_small_offset(root):
    np.zeros(25).tofile(root / "small.array")  # exactly 200 bytes, offset 8
    parts = [{"path": "small.array", "dtype": "<f8", "shape": [5, 5], "offset": 8}]
    m = _manifest(root, [{"name": "x.npy", "parts": parts}])
    return m, ["small.array"], [TOO_SMALL]


def r_concat_0d(root):
    np.save(root / "first.npy", np.float64(1.0))
    np.save(root / "second.npy", np.float64(2.0))
    m = _manifest(root, [{"name": "x.npy", "parts": ["first.npy", "second.npy"]}])
    return m, ["first.npy", "second.npy", "m.toml", "x.npy"], [
        ("0-d", "0d", "zero-dim", "0-dim", "scalar", "dimension", "ndim", "stack")
    ]


def r_folder_dtype_mismatch(root):
    d = root / "dataset"
    (d / "sub").mkdir(parents=True)
    np.save(d / "sub" / "p1.npy", np.zeros(3, "<f8"))
    np.save(d / "sub" / "p2.npy", np.zeros(3, "<i4"))
    return d, ["p2.npy"], [("dtype", "type")]


def r_folder_bad_manifest(root):
    d = root / "dataset"
    (d / "sub").mkdir(parents=True)
    np.save(d / "sub" / "p1.npy", np.zeros(3))
    (d / "npyfs.toml").write_text('[[array]]\nname = "x.npy"\nparts = ["sub/p1.npy"]\nstak = true\n')
    return d, ["npyfs.toml"], [("stak",)]


REFUSALS = {
    "dtype-mismatch": r_dtype_mismatch,
    "shape-mismatch": r_shape_mismatch,
    "shape-mismatch-stack": r_shape_mismatch_stack,
    "ndim-mismatch": r_ndim_mismatch,
    "order-mismatch": r_order_mismatch,
    "order-mismatch-raw": r_raw_order_mismatch,
    "axis-out-of-range": _axis_case(2),
    "axis-out-of-range-negative": _axis_case(-3),
    "axis-out-of-range-stack": _axis_case(3, stack=True),
    "missing-part": r_missing_part,
    "missing-raw-part": r_missing_raw_part,
    "unreadable-part": r_unreadable_part,
    "part-is-directory": r_part_is_directory,
    "truncated-part": r_truncated_part,
    "not-npy": r_not_npy,
    "empty-file": r_empty_file,
    "unsupported-version": r_bad_version,
    "absurd-header-length-v1": r_absurd_header_len_v1,
    "absurd-header-length-v2": r_absurd_header_len_v2,
    "garbage-header": r_garbage_header,
    "object-dtype": r_object_dtype,
    "toml-syntax-error": r_toml_syntax,
    "unknown-key": r_unknown_key,
    "unknown-raw-key": r_unknown_raw_key,
    "unknown-top-level-key": r_unknown_top_key,
    "duplicate-names": r_duplicate_names,
    "empty-parts": r_empty_parts,
    "glob-matches-nothing": r_glob_nothing,
    "raw-too-small": r_raw_too_small,
    "raw-too-small-offset": r_raw_too_small_offset,
    "concat-0d": r_concat_0d,
    "folder-dtype-mismatch": r_folder_dtype_mismatch,
    "folder-manifest-unknown-key": r_folder_bad_manifest,
}

# Refusals that need the process to lack root's DAC override.
NEEDS_NO_DAC = {"unreadable-part"}


def _wrapper(case: str) -> list[str]:
    if case not in NEEDS_NO_DAC or os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def _scrub(text: str, tmp_path: Path, source: Path) -> str:
    """The message with file paths and names blanked out, so keywords must come
    from the explanation rather than from a path."""
    out = text
    paths = {str(tmp_path), os.path.realpath(tmp_path)}
    for p in sorted(paths, key=len, reverse=True):
        out = out.replace(p, "<TMP>")
    root = source if source.is_dir() else source.parent
    names = {p.name for p in root.rglob("*")} | {source.name}
    for n in sorted(names, key=len, reverse=True):
        if n:
            out = out.replace(n, "<FILE>")
    return out.replace("npyfs", "<PROG>")


def _check_message(stderr: str, tmp_path: Path, source: Path, names, keywords, what: str):
    assert stderr.strip(), f"{what}: nothing on stderr"
    assert any(n in stderr for n in names), f"{what}: stderr names none of {names}:\n{stderr}"
    scrubbed = _scrub(stderr, tmp_path, source)
    for group in keywords:
        assert any(re.search(k, scrubbed, re.IGNORECASE) for k in group), (
            f"{what}: stderr does not say why (expected one of {group}):\n{stderr}"
        )


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_inspect_refuses(case, tmp_path, npyfs):
    root = tmp_path / "src"
    root.mkdir()
    source, names, keywords = REFUSALS[case](root)
    cmd = [*_wrapper(case), npyfs, "inspect", str(source)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, f"inspect {case}: exit {r.returncode}, expected 2\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    _check_message(r.stderr, tmp_path, source, names, keywords, f"inspect {case}")
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, f"inspect --json {case}: exit {r.returncode}\n{r.stderr}"


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_mount_refuses(case, tmp_path, npyfs):
    root = tmp_path / "src"
    root.mkdir()
    source, names, keywords = REFUSALS[case](root)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = [*_wrapper(case), npyfs, "mount", str(source), str(mnt)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, stdin=subprocess.DEVNULL)
        assert r.returncode != 0, f"mount {case}: exited 0 (mounted: {is_mounted(mnt)})\n{r.stderr}"
        _check_message(r.stderr, tmp_path, source, names, keywords, f"mount {case}")
        assert not is_mounted(mnt), f"mount {case}: refused but {mnt} is mounted"
        assert wait_until(lambda: not daemon_pids(mnt), timeout=5), f"mount {case}: a daemon is left"
    finally:
        force_unmount(mnt)


def test_folder_with_one_bad_subfolder_is_refused(tmp_path, npyfs):
    """A folder with one good and one bad subfolder: refused as a whole."""
    d = tmp_path / "dataset"
    (d / "good").mkdir(parents=True)
    (d / "bad").mkdir()
    np.save(d / "good" / "p1.npy", np.zeros(3))
    np.save(d / "bad" / "p1.npy", np.zeros((3, 2)))
    np.save(d / "bad" / "p2.npy", np.zeros((3, 4)))
    r = subprocess.run([npyfs, "inspect", str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert "p2.npy" in r.stderr or "bad" in r.stderr, r.stderr


def test_handwritten_header_is_accepted(tmp_path, npyfs):
    """Sanity check of the helpers used above: a hand-written valid header is
    accepted (so refusals are about what they claim, not about our writer)."""
    root = tmp_path / "src"
    root.mkdir()
    arr = np.arange(6.0).reshape(2, 3)
    (root / "a.npy").write_bytes(npy_header(arr.dtype, arr.shape, False) + arr.tobytes())
    assert np.array_equal(np.load(root / "a.npy"), arr)
    m = _manifest(root, [{"name": "x.npy", "parts": ["a.npy"]}])
    r = subprocess.run([npyfs_bin(), "inspect", str(m)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
