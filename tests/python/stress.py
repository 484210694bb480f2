"""Load test for a mounted npyfs: many concurrent readers, every byte checked.

* 8 processes read random ranges (1 byte to 1 MiB, log-uniform) of one virtual
  file (the axis-1 array, whose reads interleave parts) with ``pread``;
* 8 threads read the arrays (two threads per array) front to back in random
  chunk sizes, starting at random offsets;
* every byte read is compared with numpy's own file: ``np.save`` of the
  concatenation written to a real file;
* readers drop the kernel's cached pages of their file now and then
  (``posix_fadvise(DONTNEED)``), so reads keep reaching the daemon instead of
  the page cache;
* the daemon's VmRSS (``/proc/PID/status``) is sampled every 0.25 s.

Used by ``test_stress.py`` (short, CI) and ``scripts/stress`` (long, figures):
``python tests/python/stress.py [SECONDS]`` builds a source, mounts it, runs
and prints figures, and always unmounts.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROCESSES = 8
THREADS = 8
MAX_READ = 1 << 20
FADVISE_EVERY = 32  # reads between page-cache drops
MIB = 1 << 20

# name -> (parts as (shape, dtype, fortran), axis, stack)
ARRAYS = {
    # axis 0, C order: a few contiguous runs per read
    "rows.npy": ([((n, 512), "<f4", False) for n in (1500, 2500, 1000, 3000)], 0, False),
    # axis 1, C order: every read interleaves the parts (the main target)
    "cols.npy": ([((1024, m), "<f8", False) for m in (300, 700, 500)], 1, False),
    # axis 0, Fortran order: interleaved too, the other way round
    "fcols.npy": ([((n, 300), ">i4", True) for n in (700, 1300)], 0, False),
    # np.stack along axis 1
    "stacked.npy": ([((256, 256), "<u2", False)] * 3, 1, True),
}
PROCESS_TARGET = "cols.npy"


def build_source(root: Path) -> tuple[Path, dict[str, Path]]:
    """Write the parts, a manifest and numpy's reference files under ROOT.

    Returns (manifest path, {array name: reference .npy path}).
    """
    rng = np.random.default_rng(1234)
    parts_dir = root / "parts"
    ref_dir = root / "reference"
    parts_dir.mkdir(parents=True, exist_ok=True)
    ref_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    refs = {}
    for name, (specs, axis, stack) in ARRAYS.items():
        arrays, files = [], []
        for i, (shape, dtype, fortran) in enumerate(specs):
            n = int(np.prod(shape))
            a = rng.integers(0, 1 << 15, size=n).astype(dtype).reshape(shape)
            if fortran:
                a = np.asfortranarray(a)
            path = parts_dir / f"{name[:-4]}_{i}.npy"
            np.save(path, a)
            arrays.append(a)
            files.append(path.name)
        whole = np.stack(arrays, axis) if stack else np.concatenate(arrays, axis)
        whole = whole.astype(arrays[0].dtype)
        if all(a.flags.f_contiguous and not a.flags.c_contiguous for a in arrays):
            whole = np.asfortranarray(whole)
        refs[name] = ref_dir / name
        np.save(refs[name], whole)
        parts = ", ".join(f'"parts/{f}"' for f in files)
        lines.append(
            f'[[array]]\nname = "{name}"\naxis = {axis}\nstack = {"true" if stack else "false"}\n'
            f"parts = [{parts}]\n"
        )
    manifest = root / "stress.toml"
    manifest.write_text("\n".join(lines))
    return manifest, refs


def vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of PID."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def daemon_pid(mnt: Path) -> int | None:
    """The npyfs process serving MNT (its command line names the mount point)."""
    want = {str(mnt), os.path.realpath(mnt)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "npyfs" and "mount" in argv and want & set(argv):
            return int(entry)
    return None


def _random_len(rng: random.Random) -> int:
    # log-uniform in [1, 1 MiB]
    return min(MAX_READ, max(1, int(2 ** rng.uniform(0, 20))))


def _process_reader(virt: str, ref: str, deadline: float, seed: int, out) -> None:
    rng = random.Random(seed)
    reads = nbytes = bad = 0
    first_bad = None
    with open(ref, "rb") as rf, mmap.mmap(rf.fileno(), 0, access=mmap.ACCESS_READ) as want:
        fd = os.open(virt, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            while time.monotonic() < deadline:
                off = rng.randrange(size)
                n = _random_len(rng)
                got = os.pread(fd, n, off)
                if got != want[off : off + n]:
                    bad += 1
                    first_bad = first_bad or (off, n, len(got))
                reads += 1
                nbytes += len(got)
                if reads % FADVISE_EVERY == 0:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except Exception as e:  # report, never hang the parent
            first_bad = first_bad or repr(e)
            bad += 1
        finally:
            os.close(fd)
    out.send((reads, nbytes, bad, first_bad))
    out.close()


@dataclass
class ThreadStats:
    reads: int = 0
    nbytes: int = 0
    passes: int = 0
    bad: list = field(default_factory=list)


def _thread_reader(virt: Path, want: bytes, deadline: float, seed: int, st: ThreadStats) -> None:
    rng = random.Random(seed)
    size = len(want)
    try:
        fd = os.open(virt, os.O_RDONLY)
        try:
            off = rng.randrange(size)
            while time.monotonic() < deadline:
                n = rng.choice((4096, 65536, 131072 + 17, MAX_READ, _random_len(rng)))
                got = os.pread(fd, n, off)
                if got != want[off : off + n]:
                    st.bad.append((str(virt), off, n, len(got)))
                st.reads += 1
                st.nbytes += len(got)
                off += n
                if off >= size:
                    off = 0
                    st.passes += 1
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except Exception as e:
        st.bad.append(repr(e))


@dataclass
class Result:
    seconds: float
    process_reads: int
    process_bytes: int
    thread_reads: int
    thread_bytes: int
    thread_passes: int
    mismatches: list
    rss_kib: list  # (t, kib)
    warm_index: int
    daemon_cpu: float | None = None

    @property
    def reads(self) -> int:
        return self.process_reads + self.thread_reads

    @property
    def nbytes(self) -> int:
        return self.process_bytes + self.thread_bytes

    def rss_ok(self) -> tuple[bool, str]:
        samples = [k for _, k in self.rss_kib]
        if len(samples) <= self.warm_index:
            return False, f"too few RSS samples: {samples}"
        first = samples[self.warm_index]
        final = samples[-1]
        limit = max(first * 1.5, first + 32 * 1024)
        return final <= limit, (
            f"RSS after warm-up {first / 1024:.1f} MiB, final {final / 1024:.1f} MiB, "
            f"max {max(samples) / 1024:.1f} MiB, limit {limit / 1024:.1f} MiB"
        )

    def report(self) -> str:
        mib = self.nbytes / MIB
        samples = ", ".join(f"{t:.1f}s:{k / 1024:.1f}" for t, k in self.rss_kib[:: max(1, len(self.rss_kib) // 12)])
        return "\n".join(
            [
                f"duration        {self.seconds:.1f} s",
                f"process reads   {self.process_reads} ({self.process_bytes / MIB:.1f} MiB, "
                f"{PROCESSES} processes, random 1 B..1 MiB of {PROCESS_TARGET})",
                f"thread reads    {self.thread_reads} ({self.thread_bytes / MIB:.1f} MiB, "
                f"{THREADS} threads over {len(ARRAYS)} arrays, {self.thread_passes} full passes)",
                f"total           {self.reads} reads, {mib:.1f} MiB, {mib / self.seconds:.1f} MiB/s, "
                f"{self.reads / self.seconds:.0f} reads/s",
                f"mismatches      {len(self.mismatches)}",
                f"daemon CPU      {self.daemon_cpu if self.daemon_cpu is None else round(self.daemon_cpu, 2)} s "
                "(reads served by the daemon, not only the page cache)",
                f"daemon VmRSS    (MiB) {samples}",
                f"RSS check       {self.rss_ok()[1]}",
            ]
        )


def run(mnt: Path, refs: dict[str, Path], seconds: float, pid: int | None = None) -> Result:
    """Run the load against the mounted MNT for SECONDS."""
    pid = pid or daemon_pid(mnt)
    if pid is None:
        raise RuntimeError(f"no npyfs daemon found for {mnt}")
    wants = {name: Path(p).read_bytes() for name, p in refs.items()}
    for name, want in wants.items():
        assert os.path.getsize(mnt / name) == len(want), f"{name}: size differs from numpy's file"

    cpu0 = cpu_seconds(pid)
    start = time.monotonic()
    deadline = start + seconds
    ctx = multiprocessing.get_context("fork")
    procs = []
    for i in range(PROCESSES):
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_process_reader,
            args=(str(mnt / PROCESS_TARGET), str(refs[PROCESS_TARGET]), deadline, 100 + i, tx),
        )
        p.start()
        tx.close()
        procs.append((p, rx))

    names = list(ARRAYS)
    stats = [ThreadStats() for _ in range(THREADS)]
    threads = [
        threading.Thread(
            target=_thread_reader,
            args=(mnt / names[i % len(names)], wants[names[i % len(names)]], deadline, i, stats[i]),
            daemon=True,
        )
        for i in range(THREADS)
    ]
    for t in threads:
        t.start()

    rss = []
    warm_index = None
    while time.monotonic() < deadline:
        now = time.monotonic() - start
        k = vm_rss_kib(pid)
        if k is not None:
            rss.append((now, k))
        # warm: every thread has read its whole array once, or a quarter of the run passed
        if warm_index is None and (all(s.passes for s in stats) or now >= seconds / 4):
            warm_index = max(0, len(rss) - 1)
        time.sleep(0.25)
    for t in threads:
        t.join(timeout=30)
    k = vm_rss_kib(pid)
    if k is not None:
        rss.append((time.monotonic() - start, k))
    cpu1 = cpu_seconds(pid)

    mismatches = []
    p_reads = p_bytes = 0
    for p, rx in procs:
        if rx.poll(60):
            reads, nbytes, bad, first_bad = rx.recv()
            p_reads += reads
            p_bytes += nbytes
            if bad:
                mismatches.append((PROCESS_TARGET, bad, first_bad))
        else:
            mismatches.append(("process gave no result", p.pid))
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    for s in stats:
        mismatches.extend(s.bad)
    if any(t.is_alive() for t in threads):
        mismatches.append("a reader thread did not finish")
    return Result(
        seconds=time.monotonic() - start,
        process_reads=p_reads,
        process_bytes=p_bytes,
        thread_reads=sum(s.reads for s in stats),
        thread_bytes=sum(s.nbytes for s in stats),
        thread_passes=sum(s.passes for s in stats),
        mismatches=mismatches,
        rss_kib=rss,
        warm_index=warm_index if warm_index is not None else 0,
        daemon_cpu=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
    )


def main(argv: list[str]) -> int:
    seconds = float(argv[1]) if len(argv) > 1 else 20.0
    binary = os.environ.get("NPYFS_BIN") or str(Path(__file__).resolve().parents[2] / "target/release/npyfs")
    with tempfile.TemporaryDirectory(prefix="npyfs-stress-") as tmp:
        root = Path(tmp)
        manifest, refs = build_source(root)
        mnt = root / "mnt"
        mnt.mkdir()
        r = subprocess.run([binary, "mount", str(manifest), str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"mount failed ({r.returncode}): {r.stderr}", file=sys.stderr)
            return 1
        try:
            result = run(mnt, refs, seconds)
        finally:
            u = subprocess.run([binary, "unmount", str(mnt)], capture_output=True, text=True)
            if u.returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    print(result.report())
    ok, why = result.rss_ok()
    if result.mismatches:
        print(f"FAILED: mismatches {result.mismatches[:5]}")
        return 1
    if not ok:
        print(f"FAILED: RSS grew: {why}")
        return 1
    print("stress: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
