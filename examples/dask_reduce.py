#!/usr/bin/env python3
"""Reduce a virtual npyfs array with dask.distributed, every worker reading
the mount itself.

    npyfs mount arrays.toml /mnt/npy
    python examples/dask_reduce.py /mnt/npy/all.npy --workers 2 --check

The array is opened with np.load(path, mmap_mode='r') and handed to
da.from_array. A raw np.memmap would be pickled *with its data* into the
task graph (numpy pickles a memmap as a full in-memory copy), so the client
would ship the whole array to the workers. MountedNpy pickles only the path:
each worker process opens the same path with np.load(..., mmap_mode='r') and
reads its chunks through its own (local) mount. On a cluster, mount the same
manifest at the same path on every node and point the workers at it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


# One map per file per process, kept for the life of the worker: reopening
# the file for every chunk would cost a header read and an mmap each time.
_MAPS: dict[str, np.ndarray] = {}


class MountedNpy:
    """An array-like over ``np.load(path, mmap_mode='r')`` that pickles as
    its path, so each process maps the file itself (dask slices it with
    ``__getitem__``)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._map = None
        m = self._array()
        self.shape = m.shape
        self.dtype = m.dtype
        self.ndim = m.ndim

    def _array(self) -> np.ndarray:
        if self._map is None:
            m = _MAPS.get(self.path)
            if m is None:
                m = _MAPS[self.path] = np.load(self.path, mmap_mode="r")
            self._map = m
        return self._map

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self._array()[key])

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype, "ndim": self.ndim}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._map = None

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0


def mapped_from(prefix: str) -> list[str]:
    """Files under ``prefix`` this process has mapped (run on workers to see
    that they read the mount themselves)."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip().startswith(prefix):
                found.add(parts[5].strip())
    return sorted(found)


def reduce_on_cluster(path: str, n_workers: int = 2, chunk_rows: int | None = None):
    """Sum and mean over axis 0 and the grand total of the array at ``path``
    (a file on an npyfs mount), computed by a LocalCluster of ``n_workers``
    worker processes. Returns (col_sums, col_means, total, worker_maps)."""
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    arr = MountedNpy(path)
    rows = arr.shape[0] if arr.ndim else 1
    chunk_rows = chunk_rows or max(1, rows // (4 * n_workers))
    chunks = (chunk_rows,) + tuple(arr.shape[1:])
    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    ) as cluster, Client(cluster) as client:
        x = da.from_array(arr, chunks=chunks)
        acc = np.int64 if np.issubdtype(arr.dtype, np.integer) else np.float64
        col_sums, col_means, total = da.compute(
            x.sum(axis=0, dtype=acc), x.mean(axis=0), x.sum(dtype=acc)
        )
        worker_maps = client.run(mapped_from, os.path.dirname(os.path.abspath(path)))
    return col_sums, col_means, total, worker_maps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="a virtual .npy file on an npyfs mount")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=None)
    p.add_argument("--check", action="store_true", help="compare with numpy in this process")
    args = p.parse_args(argv)
    sums, means, total, maps = reduce_on_cluster(args.path, args.workers, args.chunk_rows)
    print(f"total = {total}")
    print(f"column sums[:5] = {sums[:5]}")
    print(f"column means[:5] = {means[:5]}")
    for worker, files in maps.items():
        print(f"{worker} mapped {files}")
    if args.check:
        ref = np.load(args.path, mmap_mode="r")
        ok = np.allclose(sums, ref.sum(axis=0)) and np.allclose(means, ref.mean(axis=0))
        print("matches numpy" if ok else "DIFFERS from numpy")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    # Run as the module "dask_reduce", not "__main__", so MountedNpy is
    # pickled by reference: the workers import it (the script's folder is on
    # their sys.path too) and keep one map per file in its _MAPS.
    import dask_reduce

    sys.exit(dask_reduce.main())
