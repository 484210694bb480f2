"""Scale-out: a dask.distributed LocalCluster with 2 worker processes reduces
a virtual array through a real npyfs mount and gets numpy's answer; each
worker maps the mounted file itself.

Needs dask[distributed] (skipped with the reason otherwise) and the release
binary ($NPYFS_BIN or target/release/npyfs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip(
    "dask.distributed",
    reason="dask[distributed] is not installed (pip install 'dask[distributed]')",
)

sys.path.insert(0, str(REPO / "examples"))
import dask_reduce  # noqa: E402


def npyfs_binary() -> str:
    path = Path(os.environ.get("NPYFS_BIN") or REPO / "target" / "release" / "npyfs")
    if not path.is_file():
        pytest.skip(f"npyfs release binary not found at {path} (cargo build --release)")
    return str(path)


def is_mounted(mnt: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == str(mnt) for line in f)


@pytest.fixture
def mounted(tmp_path):
    """Mount a manifest of 4 int32 parts (axis 0) and yield (file, expected)."""
    binary = npyfs_binary()
    rng = np.random.default_rng(20261127)
    parts = []
    src = tmp_path / "src"
    src.mkdir()
    for i, rows in enumerate([60_000, 1, 45_000, 94_999]):
        a = rng.integers(-1000, 1000, size=(rows, 24), dtype=np.int32)
        np.save(src / f"p{i}.npy", a)
        parts.append(a)
    names = ", ".join(f'"p{i}.npy"' for i in range(len(parts)))
    (src / "arrays.toml").write_text(f'[[array]]\nname = "all.npy"\nparts = [{names}]\n')
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(
        [binary, "mount", str(src / "arrays.toml"), str(mnt)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    try:
        assert is_mounted(mnt)
        yield mnt / "all.npy", np.concatenate(parts, axis=0)
    finally:
        subprocess.run([binary, "unmount", str(mnt)], timeout=30, capture_output=True)
        deadline = time.monotonic() + 5
        while is_mounted(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)


def test_local_cluster_reduces_through_the_mount(mounted):
    path, expected = mounted
    start = time.monotonic()
    sums, means, total, maps = dask_reduce.reduce_on_cluster(str(path), n_workers=2)
    assert np.array_equal(sums, expected.sum(axis=0, dtype=np.int64))
    assert np.allclose(means, expected.mean(axis=0))
    assert total == expected.sum(dtype=np.int64)
    # Both worker processes read the mounted file themselves.
    assert len(maps) == 2
    for worker, files in maps.items():
        assert str(path) in files, f"{worker} did not map {path}: {files}"
    assert time.monotonic() - start < 60
