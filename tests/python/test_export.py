"""`npyfs export` writes exactly np.save(np.concatenate(parts, axis)) (or
np.stack) for every axis and order, stacked and raw parts; it refuses to
overwrite without --force and leaves no temporary file behind.

Needs the release binary ($NPYFS_BIN or target/release/npyfs).
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binary() -> str:
    path = Path(os.environ.get("NPYFS_BIN") or REPO / "target" / "release" / "npyfs")
    if not path.is_file():
        pytest.skip(f"npyfs release binary not found at {path} (cargo build --release)")
    return str(path)


def saved(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def export(binary, source, name, out, *extra):
    return subprocess.run(
        [binary, "export", str(source), name, str(out), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


SHAPES = {
    0: [(3, 4, 5), (0, 4, 5), (6, 4, 5)],
    1: [(3, 2, 5), (3, 7, 5)],
    2: [(3, 4, 1), (3, 4, 6), (3, 4, 2)],
}


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", ["<f8", ">i2", "<c8"])
def test_concatenate(binary, tmp_path, order, axis, dtype):
    rng = np.random.default_rng(abs(hash((order, axis, dtype))) % 2**32)
    parts = []
    for i, shape in enumerate(SHAPES[axis % 3]):
        a = (rng.standard_normal(shape) * 1000).astype(dtype)
        a = np.asfortranarray(a) if order == "F" else np.ascontiguousarray(a)
        np.save(tmp_path / f"p{i}.npy", a)
        parts.append(a)
    names = ", ".join(f'"p{i}.npy"' for i in range(len(parts)))
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[[array]]\nname = "x.npy"\naxis = {axis}\nparts = [{names}]\n')
    # np.concatenate canonicalizes a non-native byte order; npyfs keeps the
    # parts' dtype (it never swaps bytes), so compare with that dtype.
    want = np.concatenate(parts, axis=axis).astype(parts[0].dtype)
    if order == "F":
        want = np.asfortranarray(want)
    r = export(binary, manifest, "x", tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.npy").read_bytes() == saved(want)


def test_stack(binary, tmp_path):
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 100, size=(4, 5), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(parts):
        np.save(tmp_path / f"s{i}.npy", a)
    (tmp_path / "m.toml").write_text(
        '[[array]]\nname = "s.npy"\naxis = 2\nstack = true\n'
        'parts = ["s0.npy", "s1.npy", "s2.npy"]\n'
    )
    r = export(binary, tmp_path / "m.toml", "s.npy", tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.npy").read_bytes() == saved(np.stack(parts, axis=2))


def test_raw_parts(binary, tmp_path):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 3))
    b = rng.standard_normal((6, 4))
    a.tofile(tmp_path / "a.array")
    (tmp_path / "b.array").write_bytes(b"x" * 16 + b.tobytes())
    (tmp_path / "m.toml").write_text(
        '[[array]]\nname = "raw.npy"\naxis = 1\nparts = [\n'
        '  { path = "a.array", dtype = "<f8", shape = [6, 3] },\n'
        '  { path = "b.array", dtype = "<f8", shape = [6, 4], offset = 16 } ]\n'
    )
    r = export(binary, tmp_path / "m.toml", "raw", tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.npy").read_bytes() == saved(np.concatenate([a, b], axis=1))


def test_large_parts_axis0(binary, tmp_path):
    """Whole-part runs over 1 MiB take the copy_file_range path."""
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((n, 64)) for n in (3000, 7, 2500)]
    for i, a in enumerate(parts):
        np.save(tmp_path / f"p{i}.npy", a)
    (tmp_path / "m.toml").write_text(
        '[[array]]\nname = "big.npy"\nparts = ["p0.npy", "p1.npy", "p2.npy"]\n'
    )
    for extra in ([], ["--no-copy-range"]):
        out = tmp_path / f"out{len(extra)}.npy"
        r = export(binary, tmp_path / "m.toml", "big", out, *extra)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == saved(np.concatenate(parts))


def test_force_and_refusal(binary, tmp_path):
    np.save(tmp_path / "p.npy", np.arange(10))
    (tmp_path / "m.toml").write_text('[[array]]\nname = "a.npy"\nparts = ["p.npy"]\n')
    out = tmp_path / "out.npy"
    out.write_bytes(b"keep me")
    r = export(binary, tmp_path / "m.toml", "a", out)
    assert r.returncode == 1
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_bytes() == b"keep me"
    r = export(binary, tmp_path / "m.toml", "a", out, "--force")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out), np.arange(10))
    r = export(binary, tmp_path / "m.toml", "b", tmp_path / "other.npy")
    assert r.returncode == 1
    assert 'no array named "b"; available: a.npy' in r.stderr
    assert not [p for p in os.listdir(tmp_path) if "npyfs-export" in p]
