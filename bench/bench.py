#!/usr/bin/env python3
"""npyfs benchmark: every operation against its baselines, in one run.

Called by scripts/bench (which builds the binary and provides a Python with
numpy, dask, h5py and matplotlib). Creates its own data under OUT/data,
mounts it on private temporary mount points (always unmounted), prints a
table and writes OUT/bench.json (and OUT/bench.png with matplotlib).

Cache states:
  warm            the file's pages (and the parts') are in the page cache
  cold            everything dropped: the mount is remounted (so the daemon
                  maps no part page) and posix_fadvise(DONTNEED) is applied to
                  the parts, the native file, the HDF5 files and the virtual file
  cold-virtual    only the virtual file's cache is dropped (fadvise DONTNEED);
                  the parts stay in the page cache
Every cold row records the fraction of its files still resident just before
the timed run ("resident_before"), measured with mincore(2).
"""

import argparse
import ctypes
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

MiB = 1 << 20
GiB = 1 << 30

# --------------------------------------------------------------------------
# page cache helpers


libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(path):
    """Bytes of `path` in the page cache (mincore on a fresh shared map)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            resident = int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1))
            return resident * PAGE
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def fadvise_dontneed(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_fraction(paths):
    total = sum(os.path.getsize(p) for p in paths)
    return round(sum(resident_bytes(p) for p in paths) / total, 4) if total else 0.0


# --------------------------------------------------------------------------
# mounts


def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == mnt for line in f)


class Mount:
    """An npyfs mount on its own temporary mount point."""

    def __init__(self, binary, source, extra_args, tmp_root):
        self.binary = binary
        self.source = source
        self.extra = list(extra_args)
        self.mnt = tempfile.mkdtemp(prefix="npyfs-bench-mnt-", dir=tmp_root)
        self.live = False
        self.pid = None

    def mount(self):
        t0 = time.perf_counter()
        r = subprocess.run([self.binary, "mount", self.source, self.mnt] + self.extra,
                           capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"npyfs mount failed: {r.stderr.strip()}")
        self.live = True
        self.pid = self._find_daemon()
        return dt

    def _find_daemon(self):
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 3 and argv[1] == b"mount" and argv[3] == self.mnt.encode() \
                    and argv[0] == self.binary.encode():
                return int(d)
        return None

    def rss(self):
        """VmRSS, RssAnon and RssFile of the daemon, in bytes."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(val.split()[0]) * 1024
        return out

    def unmount(self):
        if not self.live:
            return
        gc.collect()
        subprocess.run([self.binary, "unmount", self.mnt], capture_output=True)
        self.live = False
        pid, self.pid = self.pid, None
        deadline = time.time() + 10
        while pid and os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(") ")[1].startswith("Z"):
                        break
            except OSError:
                break
            time.sleep(0.01)

    def remount(self):
        self.unmount()
        return self.mount()

    def path(self, name):
        return os.path.join(self.mnt, name)

    def close(self):
        try:
            self.unmount()
        finally:
            if mounted(self.mnt):
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
            try:
                os.rmdir(self.mnt)
            except OSError:
                pass


# --------------------------------------------------------------------------
# data


def npy_header(dtype, shape):
    """The exact header np.save writes."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def make_parts(folder, nparts, rows, cols, seed):
    """nparts float32 parts of (rows, cols), values from a seeded generator."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    rng = np.random.default_rng(seed)
    for i in range(nparts):
        p = os.path.join(folder, f"part{i:03d}.npy")
        data = rng.standard_normal((rows, cols), dtype=np.float32)
        with open(p, "wb") as f:
            np.save(f, data)
            f.flush()
            os.fsync(f.fileno())  # dirty pages would survive fadvise(DONTNEED)
        paths.append(p)
    return paths


def make_small_parts(folder, count):
    """`count` tiny parts (8 x 16 float32) written directly, one header."""
    os.makedirs(folder, exist_ok=True)
    header = npy_header(np.float32, (8, 16))
    base = np.arange(8 * 16, dtype=np.float32)
    for i in range(count):
        with open(os.path.join(folder, f"p{i:06d}.npy"), "wb") as f:
            f.write(header)
            f.write((base + i).tobytes())


def make_sparse_parts(folder, count, rows, cols):
    os.makedirs(folder, exist_ok=True)
    header = npy_header(np.float32, (rows, cols))
    size = len(header) + rows * cols * 4
    for i in range(count):
        p = os.path.join(folder, f"s{i:03d}.npy")
        with open(p, "wb") as f:
            f.write(header)
            f.truncate(size)
    return size * count


def make_h5(h5dir, parts, shape_per_part, total_shape):
    """One HDF5 file per part whose dataset is the part's own bytes (external
    storage, no copy), and a virtual dataset concatenating them."""
    import h5py
    os.makedirs(h5dir, exist_ok=True)
    layout = h5py.VirtualLayout(shape=total_shape, dtype=np.float32)
    row = 0
    srcs = []
    for i, p in enumerate(parts):
        off = os.path.getsize(p) - int(np.prod(shape_per_part)) * 4
        src = os.path.join(h5dir, f"src{i:03d}.h5")
        with h5py.File(src, "w") as f:
            f.create_dataset("data", shape=shape_per_part, dtype=np.float32,
                             external=[(os.path.abspath(p), off, int(np.prod(shape_per_part)) * 4)])
        layout[row:row + shape_per_part[0]] = h5py.VirtualSource(
            os.path.abspath(src), "data", shape=shape_per_part)
        row += shape_per_part[0]
        srcs.append(src)
    vds = os.path.join(h5dir, "vds.h5")
    with h5py.File(vds, "w") as f:
        f.create_virtual_dataset("data", layout)
    return vds, srcs


# --------------------------------------------------------------------------
# operations


BUF = bytearray(MiB)


def seq_read(path):
    n = 0
    mv = memoryview(BUF)
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(mv)
            if not k:
                break
            n += k
    return n


def seq_read_many(paths):
    return sum(seq_read(p) for p in paths)


def load_sum(path):
    a = np.load(path, mmap_mode="r")
    s = float(a.sum(dtype=np.float64))
    del a
    return s


def dask_array(parts, axis=0):
    import dask.array as da
    arrs = [np.load(p, mmap_mode="r") for p in parts]
    return da.concatenate([da.from_array(a, chunks=a.shape) for a in arrs], axis=axis)


def dask_sum(parts):
    return float(dask_array(parts).sum(dtype=np.float64).compute())


def h5_sum(vds):
    import h5py
    with h5py.File(vds, "r") as f:
        return float(f["data"][...].sum(dtype=np.float64))


def rows_npy(path, idx):
    a = np.load(path, mmap_mode="r")
    out = np.array(a[idx])
    del a
    return out


def rows_dask(parts, idx):
    return dask_array(parts)[idx].compute()


def rows_h5(vds, idx):
    import h5py
    uniq, inverse = np.unique(idx, return_inverse=True)  # h5py wants increasing indices
    with h5py.File(vds, "r") as f:
        got = f["data"][uniq]
    return got[inverse]


# --------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.extra = {}
        self.mounts = []

    def new_mount(self, source, extra=None):
        m = Mount(self.args.binary, source, self.args.mount_args if extra is None else extra,
                  self.args.tmp)
        self.mounts.append(m)
        m.mount()
        return m

    def close(self):
        for m in self.mounts:
            try:
                m.close()
            except Exception as e:  # keep unmounting the others
                print(f"warning: {e}", file=sys.stderr)

    def measure(self, op, system, state, fn, prepare=None, nbytes=None, ref=None,
                target=None, check=None, note=None):
        """Median of `reps` runs of fn(); `prepare(rep)` sets the cache state
        and may return the resident fraction it left."""
        times, resident = [], []
        for rep in range(self.args.reps):
            gc.collect()
            if prepare is not None:
                r = prepare(rep)
                if r is not None:
                    resident.append(r)
            t0 = time.perf_counter()
            val = fn(rep)
            times.append(time.perf_counter() - t0)
            if check is not None:
                check(val)
        med = statistics.median(times)
        row = {"op": op, "system": system, "state": state, "reps": len(times),
               "times_s": [round(t, 6) for t in times], "median_s": round(med, 6)}
        if nbytes:
            row["mib_per_s"] = round(nbytes / MiB / med, 1)
        if resident:
            row["resident_before"] = max(resident)
        if note:
            row["note"] = note
        if ref is not None:
            row["ref"] = ref
        if target is not None:
            row["target"] = target
        self.rows.append(row)
        self.print_row(row)
        return row

    def find(self, op, system, state):
        for r in self.rows:
            if (r["op"], r["system"], r["state"]) == (op, system, state):
                return r
        return None

    @staticmethod
    def print_row(r):
        tput = f"{r['mib_per_s']:>9.0f}" if "mib_per_s" in r else " " * 9
        print(f"  {r['op']:<22} {r['system']:<18} {r['state']:<13} "
              f"{r['median_s'] * 1000:>10.2f} ms {tput} MiB/s", flush=True)

    # ---- ratios -----------------------------------------------------------

    def finish_ratios(self):
        """ratio = speed of the row / speed of its reference (higher is better)."""
        for r in self.rows:
            if "ref" in r:
                ref = self.find(*r["ref"])
                if ref:
                    r["ratio"] = round(ref["median_s"] / r["median_s"], 3)
            t = r.get("target")
            if t and "ratio" in r:
                r["target_met"] = r["ratio"] >= t["min_ratio"]

    # ---- the operations -----------------------------------------------------

    def run(self):
        a = self.args
        data = os.path.join(a.out, "data")
        os.makedirs(data, exist_ok=True)
        tag = f"{a.parts}x{a.part_mib}MiB"
        cols = 64
        rows_per_part = a.part_mib * MiB // (cols * 4)
        parts_dir = os.path.join(data, f"axis0-{tag}", "all")
        t0 = time.time()
        if not os.path.isdir(parts_dir) or len(os.listdir(parts_dir)) != a.parts:
            shutil.rmtree(parts_dir, ignore_errors=True)
            make_parts(parts_dir, a.parts, rows_per_part, cols, seed=1)
        parts = sorted(os.path.join(parts_dir, p) for p in os.listdir(parts_dir))
        native = os.path.join(data, f"native-{tag}.npy")
        if not os.path.exists(native):
            with open(native + ".tmp", "wb") as f:
                np.save(f, np.concatenate([np.load(p) for p in parts]))
                f.flush()
                os.fsync(f.fileno())
            os.rename(native + ".tmp", native)
        total_rows = rows_per_part * a.parts
        h5dir = os.path.join(data, f"h5-{tag}")
        vds, h5srcs = make_h5(h5dir, parts, (rows_per_part, cols), (total_rows, cols))
        data_bytes = total_rows * cols * 4
        print(f"data ready in {time.time() - t0:.1f} s: {a.parts} parts x {a.part_mib} MiB "
              f"float32 ({total_rows} x {cols}), {data_bytes / MiB:.0f} MiB", flush=True)

        m = self.new_mount(os.path.dirname(parts_dir))
        virt = m.path("all.npy")
        vsize = os.path.getsize(virt)
        assert vsize == os.path.getsize(native), "virtual size differs from the native file"
        with open(virt, "rb") as f1, open(native, "rb") as f2:
            assert f1.read(4096) == f2.read(4096), "virtual header/bytes differ from native"
        everything = parts + [native] + h5srcs + [vds]

        def cold_all(paths_to_check):
            def prep(_rep):
                m.remount()
                fadvise_dontneed(everything)
                fadvise_dontneed([virt])
                return resident_fraction(paths_to_check)
            return prep

        def cold_virtual(_rep):
            fadvise_dontneed([virt])
            return resident_fraction([virt])

        def warm(fn):
            fn(None)
            return None

        want = set(a.ops.split(","))

        # 1. sequential read ---------------------------------------------------
        op = "1 sequential read"
        if "1" in want:
            self.op1(op, parts, native, virt, vsize, cold_all, cold_virtual)
        if "2" in want:
            self.op2(parts, native, virt, vsize, vds, cold_all, cold_virtual)
        if "3" in want:
            self.op3(parts, native, virt, vds, total_rows, cold_all, cold_virtual, warm)
        if "7" in want:
            self.op7(parts, virt, vsize, cold_all)
        m.close()
        if "4" in want:
            self.op4(data, tag)
        if "5" in want:
            self.op5(data)
        if "6" in want:
            self.op6(data)

    def op1(self, op, parts, native, virt, vsize, cold_all, cold_virtual):
        print(f"\n{op}")
        part_bytes = sum(os.path.getsize(p) for p in parts)
        seq_read_many(parts)
        self.measure(op, "parts direct", "warm", lambda _: seq_read_many(parts),
                     nbytes=part_bytes)
        self.measure(op, "parts direct", "cold", lambda _: seq_read_many(parts),
                     prepare=cold_all(parts), nbytes=part_bytes,
                     ref=(op, "parts direct", "warm"))
        seq_read(native)
        self.measure(op, "native .npy", "warm", lambda _: seq_read(native), nbytes=vsize,
                     ref=(op, "parts direct", "warm"))
        self.measure(op, "native .npy", "cold", lambda _: seq_read(native),
                     prepare=cold_all([native]), nbytes=vsize, ref=(op, "parts direct", "cold"))
        self.measure(op, "npyfs", "cold", lambda _: seq_read(virt),
                     prepare=cold_all(parts + [virt]), nbytes=vsize,
                     ref=(op, "parts direct", "cold"))
        seq_read(virt)
        self.measure(op, "npyfs", "cold-virtual", lambda _: seq_read(virt),
                     prepare=cold_virtual, nbytes=vsize, ref=(op, "parts direct", "warm"),
                     target={"min_ratio": 0.4, "text": ">= 0.4 x direct read of the parts"})
        seq_read(virt)
        self.measure(op, "npyfs", "warm", lambda _: seq_read(virt), nbytes=vsize,
                     ref=(op, "parts direct", "warm"))

    def op2(self, parts, native, virt, vsize, vds, cold_all, cold_virtual):
        op = "2 np.load+sum"
        print(f"\n{op}")
        expect = load_sum(native)

        def close_to(v):
            assert abs(v - expect) <= 1e-6 * max(1.0, abs(expect)) + 1e-3, (v, expect)

        self.measure(op, "native .npy", "warm", lambda _: load_sum(native), nbytes=vsize,
                     check=close_to)
        self.measure(op, "native .npy", "cold", lambda _: load_sum(native),
                     prepare=cold_all([native]), nbytes=vsize, check=close_to,
                     ref=(op, "native .npy", "cold"))
        load_sum(virt)
        self.measure(op, "npyfs", "warm", lambda _: load_sum(virt), nbytes=vsize,
                     check=close_to, ref=(op, "native .npy", "warm"),
                     target={"min_ratio": 0.9, "text": ">= 0.9 x native"})
        self.measure(op, "npyfs", "cold-virtual", lambda _: load_sum(virt),
                     prepare=cold_virtual, nbytes=vsize, check=close_to,
                     ref=(op, "native .npy", "cold"))
        self.measure(op, "npyfs", "cold", lambda _: load_sum(virt),
                     prepare=cold_all(parts + [virt]), nbytes=vsize, check=close_to,
                     ref=(op, "native .npy", "cold"))
        dask_sum(parts)
        self.measure(op, "dask", "warm", lambda _: dask_sum(parts), nbytes=vsize,
                     check=close_to, ref=(op, "native .npy", "warm"))
        self.measure(op, "dask", "cold", lambda _: dask_sum(parts), prepare=cold_all(parts),
                     nbytes=vsize, check=close_to, ref=(op, "native .npy", "cold"))
        h5_sum(vds)
        self.measure(op, "h5py VDS", "warm", lambda _: h5_sum(vds), nbytes=vsize,
                     check=close_to, ref=(op, "native .npy", "warm"))
        self.measure(op, "h5py VDS", "cold", lambda _: h5_sum(vds), prepare=cold_all(parts),
                     nbytes=vsize, check=close_to, ref=(op, "native .npy", "cold"))

    def op3(self, parts, native, virt, vds, total_rows, cold_all, cold_virtual, warm):
        a = self.args
        op = "3 random rows"
        print(f"\n{op} ({a.random_rows} rows)")
        idxs = [np.random.default_rng(100 + r).integers(0, total_rows, a.random_rows)
                for r in range(a.reps)]
        ref_native = np.load(native, mmap_mode="r")
        expected_rows = [np.array(ref_native[i]) for i in idxs]
        del ref_native

        def rows_check(rep_holder):
            def check(v):
                assert np.array_equal(v, expected_rows[rep_holder[0]])
            return check

        cur = [0]

        def with_rep(fn):
            def run(rep):
                cur[0] = rep
                return fn(idxs[rep])
            return run

        chk = rows_check(cur)
        self.measure(op, "dask", "warm", with_rep(lambda i: rows_dask(parts, i)),
                     prepare=lambda _: warm(lambda _x: dask_sum(parts)), check=chk)
        self.measure(op, "dask", "cold", with_rep(lambda i: rows_dask(parts, i)),
                     prepare=cold_all(parts), check=chk)
        self.measure(op, "native .npy", "warm", with_rep(lambda i: rows_npy(native, i)),
                     check=chk, ref=(op, "dask", "warm"))
        self.measure(op, "native .npy", "cold", with_rep(lambda i: rows_npy(native, i)),
                     prepare=cold_all([native]), check=chk, ref=(op, "dask", "cold"))
        seq_read(virt)
        self.measure(op, "npyfs", "warm", with_rep(lambda i: rows_npy(virt, i)),
                     check=chk, ref=(op, "dask", "warm"),
                     target={"min_ratio": 3.0, "text": ">= 3 x faster than dask"})
        self.measure(op, "npyfs", "cold-virtual", with_rep(lambda i: rows_npy(virt, i)),
                     prepare=cold_virtual, check=chk, ref=(op, "dask", "warm"))
        self.measure(op, "npyfs", "cold", with_rep(lambda i: rows_npy(virt, i)),
                     prepare=cold_all(parts + [virt]), check=chk, ref=(op, "dask", "cold"),
                     target={"min_ratio": 0.25, "text": ">= 0.25 x the speed of dask"})
        h5_sum(vds)
        self.measure(op, "h5py VDS", "warm", with_rep(lambda i: rows_h5(vds, i)),
                     check=chk, ref=(op, "dask", "warm"))
        self.measure(op, "h5py VDS", "cold", with_rep(lambda i: rows_h5(vds, i)),
                     prepare=cold_all(parts), check=chk, ref=(op, "dask", "cold"))

    def op7(self, parts, virt, vsize, cold_all):
        a = self.args
        op = "7 page cache"
        print(f"\n{op}")
        cold_all(parts + [virt])(0)
        seq_read(virt)
        fp = {"parts_resident_mib": round(sum(resident_bytes(p) for p in parts) / MiB, 1),
              "virtual_resident_mib": round(resident_bytes(virt) / MiB, 1),
              "data_mib": round(vsize / MiB, 1)}
        fp["total_mib"] = round(fp["parts_resident_mib"] + fp["virtual_resident_mib"], 1)
        fp["ratio_to_data"] = round(fp["total_mib"] / fp["data_mib"], 2)
        fp["mount_args"] = a.mount_args
        self.extra["page_cache_after_scan"] = fp
        print(f"  after one full scan: parts {fp['parts_resident_mib']} MiB + virtual "
              f"{fp['virtual_resident_mib']} MiB = {fp['total_mib']} MiB for "
              f"{fp['data_mib']} MiB of data ({fp['ratio_to_data']}x)")

    def op4(self, data, tag):
        a = self.args
        op = "4 axis=1 seq read"
        print(f"\n{op}")
        cols1 = 32
        rows1 = a.part_mib * MiB // (cols1 * 4)
        ax1 = os.path.join(data, f"axis1-{tag}")
        p1dir = os.path.join(ax1, "parts")
        if not os.path.isdir(p1dir) or len(os.listdir(p1dir)) != a.parts:
            shutil.rmtree(ax1, ignore_errors=True)
            make_parts(p1dir, a.parts, rows1, cols1, seed=2)
        parts1 = sorted(os.path.join(p1dir, p) for p in os.listdir(p1dir))
        manifest = os.path.join(ax1, "npyfs.toml")
        with open(manifest, "w") as f:
            f.write('[[array]]\nname = "wide.npy"\nparts = ["parts/*.npy"]\naxis = 1\n')
        m1 = self.new_mount(manifest)
        wide = m1.path("wide.npy")
        wsize = os.path.getsize(wide)
        with open(wide, "rb") as f:
            hdr = f.read(128)
        assert f"({rows1}, {cols1 * a.parts})".encode() in hdr, hdr
        p1bytes = sum(os.path.getsize(p) for p in parts1)
        seq_read_many(parts1)
        self.measure(op, "parts direct", "warm", lambda _: seq_read_many(parts1),
                     nbytes=p1bytes)
        seq_read(wide)
        self.measure(op, "npyfs axis=1", "cold-virtual", lambda _: seq_read(wide),
                     prepare=lambda _: (fadvise_dontneed([wide]), resident_fraction([wide]))[1],
                     nbytes=wsize, ref=(op, "parts direct", "warm"),
                     target={"min_ratio": 0.25, "text": ">= 0.25 x direct read of the parts"})
        self.measure(op, "npyfs axis=1", "warm", lambda _: seq_read(wide), nbytes=wsize,
                     ref=(op, "parts direct", "warm"))
        w = np.load(wide, mmap_mode="r")
        for i, p in enumerate(parts1):
            assert np.array_equal(w[-3:, i * cols1:(i + 1) * cols1], np.load(p)[-3:])
        del w
        m1.close()

    def op5(self, data):
        a = self.args
        op = "5 many parts"
        print(f"\n{op}")
        for count, limit in ((a.small_parts, 1.0), (a.many_parts, 5.0)):
            src = os.path.join(data, f"small-{count}")
            folder = os.path.join(src, "many")
            if not os.path.isdir(folder) or len(os.listdir(folder)) != count:
                shutil.rmtree(src, ignore_errors=True)
                t0 = time.time()
                make_small_parts(folder, count)
                print(f"  created {count} parts in {time.time() - t0:.1f} s", flush=True)
            mm = Mount(a.binary, src, a.mount_args, a.tmp)
            self.mounts.append(mm)
            times = []
            try:
                for _rep in range(a.reps):
                    times.append(mm.mount())
                    rss_mounted = mm.rss()
                    if _rep < a.reps - 1:
                        mm.unmount()
                vm = mm.path("many.npy")
                t0 = time.perf_counter()
                arr = np.load(vm, mmap_mode="r")
                ok = arr.shape == (8 * count, 16)
                got = np.asarray(arr[::8, 0])
                ok = ok and np.array_equal(got, np.arange(count, dtype=np.float32))
                ok = ok and float(arr[-1, -1]) == float(127 + count - 1)
                del arr
                scan_s = time.perf_counter() - t0
                rss_after = mm.rss()
            finally:
                mm.close()
            med = statistics.median(times)
            row = {"op": op, "system": f"npyfs {count} parts", "state": "warm metadata",
                   "reps": len(times), "times_s": [round(t, 4) for t in times],
                   "median_s": round(med, 4),
                   "target": {"max_s": limit, "text": f"mount < {limit:g} s"},
                   "target_met": med < limit and ok,
                   "works": ok, "full_scan_s": round(scan_s, 3),
                   "rss_after_mount": rss_mounted, "rss_after_scan": rss_after}
            if count == a.small_parts:
                row["rss_target"] = {"max_mib": 64, "met": rss_after["VmRSS"] < 64 * MiB}
            self.rows.append(row)
            print(f"  {count:>7} parts: mount {med * 1000:.0f} ms (limit {limit:g} s), "
                  f"RSS {rss_mounted['VmRSS'] / MiB:.1f} MiB after mount, "
                  f"{rss_after['VmRSS'] / MiB:.1f} MiB after a full scan ({scan_s:.2f} s), "
                  f"works={ok}", flush=True)

    def op6(self, data):
        a = self.args
        op = "6 1 TiB sparse"
        print(f"\n{op}")
        src = os.path.join(data, "sparse")
        folder = os.path.join(src, "huge")
        srows = a.sparse_part_gib * GiB // (64 * 4)
        if not os.path.isdir(folder) or len(os.listdir(folder)) != a.sparse_parts:
            shutil.rmtree(src, ignore_errors=True)
        total = make_sparse_parts(folder, a.sparse_parts, srows, 64)
        ms = Mount(a.binary, src, a.mount_args, a.tmp)
        self.mounts.append(ms)
        try:
            mt = ms.mount()
            huge = ms.path("huge.npy")
            hsize = os.path.getsize(huge)
            arr = np.load(huge, mmap_mode="r")
            rng = np.random.default_rng(7)
            idx = np.sort(rng.integers(0, arr.shape[0], a.random_rows))
            t0 = time.perf_counter()
            vals = np.array(arr[idx])
            first_last = float(arr[0, 0]) + float(arr[-1, -1])
            # 64 MiB sequential at the start of every 16th part
            with open(huge, "rb", buffering=0) as f:
                for k in range(0, a.sparse_parts, 16):
                    f.seek(128 + k * srows * 256)
                    left = a.sparse_scan_mib * MiB
                    while left > 0:
                        n = f.readinto(BUF)
                        if not n:
                            break
                        left -= n
            serve_s = time.perf_counter() - t0
            ok = arr.shape == (srows * a.sparse_parts, 64) and not vals.any() and first_last == 0
            del arr
            rss = ms.rss()
        finally:
            ms.close()
        row = {"op": op, "system": f"npyfs {a.sparse_parts} x {a.sparse_part_gib} GiB",
               "state": "sparse", "reps": 1, "times_s": [round(mt, 4)], "median_s": round(mt, 4),
               "virtual_bytes": hsize, "works": ok, "serve_s": round(serve_s, 3),
               "rss_after_serving": rss,
               "rss_target": {"max_mib": 64, "met": rss["VmRSS"] < 64 * MiB},
               "note": f"mount time; then {a.random_rows} random rows, first/last element, "
                       f"{a.sparse_scan_mib} MiB sequential in every 16th part"}
        self.rows.append(row)
        print(f"  {hsize / GiB:.0f} GiB virtual: mount {mt * 1000:.0f} ms, RSS "
              f"{rss['VmRSS'] / MiB:.1f} MiB (anon {rss['RssAnon'] / MiB:.1f}, file "
              f"{rss['RssFile'] / MiB:.1f}) after serving, works={ok}", flush=True)
        del total


def machine():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "numpy": np.__version__}
    with open("/proc/meminfo") as f:
        info["mem_gib"] = round(int(f.readline().split()[1]) / (1 << 20), 1)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["loadavg_start"] = os.getloadavg()
    for mod in ("dask", "h5py"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info


def print_table(rows):
    print("\n| operation | system | cache | median | MiB/s | ratio | target |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        tput = f"{r['mib_per_s']:.0f}" if "mib_per_s" in r else ""
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        if "ref" in r and "ratio" in r:
            ratio += f" vs {r['ref'][1]} {r['ref'][2]}"
        t = r.get("target")
        tgt = ""
        if t:
            tgt = t["text"] + (": **met**" if r.get("target_met") else ": not met")
        med = r["median_s"]
        ms = f"{med * 1000:.1f} ms" if med < 10 else f"{med:.1f} s"
        print(f"| {r['op']} | {r['system']} | {r['state']} | {ms} | {tput} | {ratio} | {tgt} |")


def plot(rows, extra, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no chart")
        return False
    ops = [o for o in dict.fromkeys(r["op"] for r in rows) if o[0] in "1234"]
    fig, axes = plt.subplots(len(ops), 1, figsize=(9, 2.2 + 1.9 * len(ops)))
    for ax, op in zip(np.atleast_1d(axes), ops):
        rs = [r for r in rows if r["op"] == op]
        labels = [f"{r['system']} ({r['state']})" for r in rs]
        vals = [r["median_s"] * 1000 for r in rs]
        colors = ["tab:orange" if r["system"].startswith("npyfs") else "tab:blue" for r in rs]
        ax.barh(labels, vals, color=colors)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("median time, ms (log; shorter is better)")
        ax.set_title(op)
        for y, (v, r) in enumerate(zip(vals, rs)):
            txt = f"{v:.1f} ms"
            if "ratio" in r:
                txt += f"  ({r['ratio']:.2f}x)"
            ax.text(v, y, " " + txt, va="center", fontsize=7)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("npyfs vs baselines (orange: npyfs; ratio = speed / reference)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True, help="the npyfs binary")
    p.add_argument("--out", default="bench-out")
    p.add_argument("--parts", type=int, default=8)
    p.add_argument("--part-mib", type=int, default=64, help="size of each part, MiB")
    p.add_argument("--size-mib", type=int, help="total size, MiB (sets --part-mib)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--random-rows", type=int, default=1000)
    p.add_argument("--small-parts", type=int, default=10000)
    p.add_argument("--many-parts", type=int, default=100000)
    p.add_argument("--sparse-parts", type=int, default=128)
    p.add_argument("--sparse-part-gib", type=int, default=8)
    p.add_argument("--sparse-scan-mib", type=int, default=64)
    p.add_argument("--smoke", action="store_true",
                   help="tiny data, 1 repetition: checks that everything runs")
    p.add_argument("--mount-arg", dest="mount_args", action="append", default=[],
                   help="extra argument for npyfs mount (repeatable), e.g. --mount-arg=--threads=2")
    p.add_argument("--ops", default="1,2,3,4,5,6,7",
                   help="operations to run, comma-separated numbers (default: all)")
    p.add_argument("--label", default="", help="free text stored in the JSON")
    a = p.parse_args()
    if a.size_mib:
        a.part_mib = max(1, a.size_mib // a.parts)
    if a.smoke:
        a.part_mib, a.reps, a.random_rows = 1, 1, 100
        a.small_parts, a.many_parts, a.sparse_scan_mib = 200, 1000, 1
    a.out = os.path.abspath(a.out)
    a.binary = os.path.abspath(a.binary)
    os.makedirs(a.out, exist_ok=True)
    a.tmp = tempfile.mkdtemp(prefix="npyfs-bench-", dir=None)
    bench = Bench(a)
    t0 = time.time()
    info = machine()
    print(f"npyfs bench: {info['nproc']} cpus, {info['mem_gib']} GiB, kernel {info['kernel']}, "
          f"load {info['loadavg_start'][0]:.2f}, mount args {a.mount_args or '(defaults)'}",
          flush=True)
    try:
        bench.run()
    finally:
        bench.close()
        shutil.rmtree(a.tmp, ignore_errors=True)
    bench.finish_ratios()
    info["loadavg_end"] = os.getloadavg()
    info["elapsed_s"] = round(time.time() - t0, 1)
    result = {"machine": info, "label": a.label, "smoke": a.smoke,
              "params": {k: getattr(a, k) for k in
                         ("parts", "part_mib", "reps", "random_rows", "small_parts",
                          "many_parts", "sparse_parts", "sparse_part_gib", "mount_args")},
              "command": " ".join(["scripts/bench"] + sys.argv[1:]),
              "rows": bench.rows, **bench.extra}
    print_table(bench.rows)
    jpath = os.path.join(a.out, "bench.json")
    with open(jpath, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {jpath}")
    if plot(bench.rows, bench.extra, os.path.join(a.out, "bench.png")):
        print(f"wrote {os.path.join(a.out, 'bench.png')}")
    print(f"elapsed {info['elapsed_s']} s")


if __name__ == "__main__":
    main()
