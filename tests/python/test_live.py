"""Write-through (--writable), live folders and manifests, and faults.

Every test mounts on its own temporary mount point through the `mount`
fixture, which always unmounts.
"""

import errno
import io
import os
import time

import numpy as np
import pytest

from conftest import manifest_text, wait_until

WATCH = ("--watch-interval", "0.2")


def npy_bytes(arr) -> bytes:
    bio = io.BytesIO()
    np.save(bio, arr)
    return bio.getvalue()


def write_manifest(path, arrays):
    path.write_text(manifest_text(arrays))
    return path


# --------------------------------------------------------------------------
# write-through
# --------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
def test_memmap_r_plus_assignment_lands_in_parts(tmp_path, mount, axis):
    rng = np.random.default_rng(axis)
    shapes = [(4, 3), (4, 5), (4, 2)] if axis == 1 else [(3, 4), (5, 4), (2, 4)]
    parts = [rng.random(s) for s in shapes]
    for i, p in enumerate(parts):
        np.save(tmp_path / f"p{i}.npy", p)
    m = write_manifest(
        tmp_path / "m.toml",
        [{"name": "x.npy", "parts": [f"p{i}.npy" for i in range(3)], "axis": axis}],
    )
    expected = np.concatenate(parts, axis=axis)
    with mount(m, "--writable", *WATCH) as mnt:
        arr = np.load(mnt / "x.npy", mmap_mode="r+")
        # A block that straddles every part boundary.
        arr[1:4, 1:9] = -1.5
        expected[1:4, 1:9] = -1.5
        arr.flush()
        del arr
        assert open(mnt / "x.npy", "rb").read() == npy_bytes(expected)
    # After unmount the parts hold the new values.
    sizes = np.cumsum([s[axis] for s in shapes])[:-1]
    for i, want in enumerate(np.split(expected, sizes, axis=axis)):
        assert np.array_equal(np.load(tmp_path / f"p{i}.npy"), want)


def test_pwrite_header_rules_and_fixed_size(tmp_path, mount):
    np.save(tmp_path / "a.npy", np.arange(10, dtype="<i4"))
    np.save(tmp_path / "b.npy", np.arange(10, 20, dtype="<i4"))
    m = write_manifest(tmp_path / "m.toml", [{"name": "x.npy", "parts": ["a.npy", "b.npy"]}])
    with mount(m, "--writable", *WATCH) as mnt:
        path = mnt / "x.npy"
        size = os.stat(path).st_size
        fd = os.open(path, os.O_RDWR)
        try:
            header = os.pread(fd, 128, 0)
            assert os.pwrite(fd, header, 0) == 128  # identical bytes: fine
            with pytest.raises(OSError) as e:
                os.pwrite(fd, b"X", 20)
            assert e.value.errno == errno.EPERM
            with pytest.raises(OSError) as e:
                os.ftruncate(fd, 10)
            assert e.value.errno == errno.EPERM
            with pytest.raises(OSError) as e:
                os.pwrite(fd, b"\0" * 8, size)
            assert e.value.errno == errno.EPERM
            # Elements 9 and 10 straddle the two parts.
            os.pwrite(fd, np.array([-9, -10], dtype="<i4").tobytes(), 128 + 9 * 4)
            os.fsync(fd)
        finally:
            os.close(fd)
        # Durable in the parts already (fsync), before unmount.
        assert np.load(tmp_path / "a.npy")[9] == -9
        assert np.load(tmp_path / "b.npy")[0] == -10


def test_read_only_part_gives_eacces_others_work(tmp_path, mount):
    np.save(tmp_path / "a.npy", np.zeros(8))
    np.save(tmp_path / "b.npy", np.ones(8))
    os.chmod(tmp_path / "b.npy", 0o444)
    m = write_manifest(tmp_path / "m.toml", [{"name": "x.npy", "parts": ["a.npy", "b.npy"]}])
    with mount(m, "--writable", *WATCH) as mnt:
        fd = os.open(mnt / "x.npy", os.O_RDWR)
        try:
            os.pwrite(fd, np.float64(7).tobytes(), 128)  # in a.npy
            with pytest.raises(OSError) as e:
                os.pwrite(fd, np.float64(7).tobytes(), 128 + 8 * 8)  # in b.npy
            assert e.value.errno == errno.EACCES
        finally:
            os.close(fd)
    assert np.load(tmp_path / "a.npy")[0] == 7
    assert np.load(tmp_path / "b.npy")[0] == 1


def test_without_writable_writes_are_erofs(tmp_path, mount):
    np.save(tmp_path / "a.npy", np.zeros(8))
    m = write_manifest(tmp_path / "m.toml", [{"name": "x.npy", "parts": ["a.npy"]}])
    with mount(m) as mnt:
        with pytest.raises(OSError) as e:
            os.open(mnt / "x.npy", os.O_RDWR)
        assert e.value.errno == errno.EROFS


# --------------------------------------------------------------------------
# live folders and manifests
# --------------------------------------------------------------------------


def shape_of(path):
    try:
        return np.load(path, mmap_mode="r").shape
    except (OSError, ValueError):
        return None


def test_folder_grows_and_subfolders_come_and_go(tmp_path, mount):
    src = tmp_path / "src"
    (src / "day").mkdir(parents=True)
    np.save(src / "day" / "s1.npy", np.zeros((2, 3)))
    with mount(src, *WATCH) as mnt:
        assert shape_of(mnt / "day.npy") == (2, 3)
        mapped = np.load(mnt / "day.npy", mmap_mode="r")
        np.save(src / "day" / "s2.npy", np.ones((4, 3)))
        assert wait_until(lambda: shape_of(mnt / "day.npy") == (6, 3), timeout=5)
        want = np.concatenate([np.zeros((2, 3)), np.ones((4, 3))])
        assert open(mnt / "day.npy", "rb").read() == npy_bytes(want)
        # A process that mapped the file before keeps its old view.
        assert mapped.shape == (2, 3) and mapped.sum() == 0
        del mapped

        (src / "night").mkdir()
        np.save(src / "night" / "a.npy", np.arange(5))
        assert wait_until(lambda: "night.npy" in os.listdir(mnt), timeout=5)
        assert np.array_equal(np.load(mnt / "night.npy"), np.arange(5))

        for f in (src / "night").iterdir():
            f.unlink()
        (src / "night").rmdir()
        assert wait_until(lambda: "night.npy" not in os.listdir(mnt), timeout=5)
        assert not (mnt / "night.npy").exists()


def test_part_edited_in_place_is_seen_by_next_open(tmp_path, mount):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    np.save(src / "d" / "a.npy", np.zeros(16))
    with mount(src, *WATCH) as mnt:
        assert np.load(mnt / "d.npy").sum() == 0  # pages now cached (KEEP_CACHE)
        time.sleep(0.05)  # a new mtime
        np.save(src / "d" / "a.npy", np.full(16, 2.0))
        assert wait_until(lambda: np.load(mnt / "d.npy").sum() == 32, timeout=5)


def test_manifest_edits_and_invalid_edit_keeps_last_good(tmp_path, mount):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.save(tmp_path / "b.npy", np.ones(4))
    m = write_manifest(tmp_path / "m.toml", [{"name": "x.npy", "parts": ["a.npy"]}])
    log = tmp_path / "log"
    with mount(m, *WATCH, "--log-file", log) as mnt:
        write_manifest(m, [{"name": "x.npy", "parts": ["a.npy", "b.npy"]},
                           {"name": "y.npy", "parts": ["b.npy"]}])
        assert wait_until(lambda: shape_of(mnt / "x.npy") == (7,), timeout=5)
        assert shape_of(mnt / "y.npy") == (4,)
        m.write_text("[[array]\nname = broken")
        time.sleep(1.0)
        assert shape_of(mnt / "x.npy") == (7,)
        assert shape_of(mnt / "y.npy") == (4,)
        assert "keeping the last good state" in log.read_text()
        assert "m.toml" in log.read_text()


# --------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------


def fault_setup(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(1000.0))
    np.save(tmp_path / "b.npy", np.arange(1000.0, 2000.0))
    np.save(tmp_path / "c.npy", np.arange(5.0))
    return write_manifest(
        tmp_path / "m.toml",
        [{"name": "x.npy", "parts": ["a.npy", "b.npy"]}, {"name": "other.npy", "parts": ["c.npy"]}],
    )


def read_range(path, offset, size):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def expect_error(path, offset, size, errnos, timeout=5.0):
    """Reads of the range fail (after at most the watch interval), never
    returning bytes."""
    def failing():
        try:
            read_range(path, offset, size)
            return False
        except OSError as e:
            assert e.errno in errnos, e
            return True
    assert wait_until(failing, timeout=timeout)


@pytest.mark.parametrize("fault", ["truncate", "delete", "chmod"])
def test_faults_give_errors_other_arrays_work(tmp_path, mount, fault):
    m = fault_setup(tmp_path)
    with mount(m, *WATCH) as mnt:
        x = mnt / "x.npy"
        assert np.load(x).sum() == np.arange(2000.0).sum()
        b = tmp_path / "b.npy"
        if fault == "truncate":
            os.truncate(b, 200)
        elif fault == "delete":
            b.unlink()
        else:
            os.chmod(b, 0)
        b_range = (128 + 1000 * 8 + 4096, 4096)
        expect_error(x, *b_range, {errno.EIO, errno.EACCES})
        # The part that is fine still serves its range; other arrays work.
        assert read_range(x, 128, 800) == np.arange(1000.0).tobytes()[:800]
        assert np.array_equal(np.load(mnt / "other.npy"), np.arange(5.0))


def test_replaced_part_is_revalidated_never_stale(tmp_path, mount):
    m = fault_setup(tmp_path)
    with mount(m, *WATCH) as mnt:
        x = mnt / "x.npy"
        assert np.load(x)[1500] == 1500.0
        tmp = tmp_path / "new.npy"
        np.save(tmp, np.full(1000, -1.0))
        os.replace(tmp, tmp_path / "b.npy")
        assert wait_until(lambda: np.load(x)[1500] == -1.0, timeout=5)
        assert np.load(x)[10] == 10.0


def resident_fraction(path) -> float:
    """Fraction of the file's pages in the page cache (mincore on a map)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) / pages


def test_own_writes_keep_the_cache_external_edits_drop_it(tmp_path, mount):
    np.save(tmp_path / "a.npy", np.zeros(1 << 16))
    np.save(tmp_path / "b.npy", np.ones(1 << 16))
    m = write_manifest(tmp_path / "m.toml", [{"name": "x.npy", "parts": ["a.npy", "b.npy"]}])
    with mount(m, "--writable", *WATCH) as mnt:
        x = mnt / "x.npy"
        open(x, "rb").read()
        assert resident_fraction(x) == 1.0
        fd = os.open(x, os.O_RDWR)
        try:
            os.pwrite(fd, np.float64(5).tobytes(), 128)
        finally:
            os.close(fd)
        time.sleep(1.0)  # several watcher looks
        assert resident_fraction(x) == 1.0, "a write through the mount dropped the cache"
        assert np.load(x, mmap_mode="r")[0] == 5
        # An edit of a part from outside must drop the cache.
        time.sleep(0.05)
        np.save(tmp_path / "b.npy", np.full(1 << 16, 2.0))
        assert wait_until(lambda: resident_fraction(x) < 1.0, timeout=5)
        assert np.load(x)[-1] == 2.0


def test_mount_point_inside_the_source_folder_is_never_read_as_parts(tmp_path, mount):
    src = tmp_path / "src"
    (src / "day").mkdir(parents=True)
    np.save(src / "day" / "a.npy", np.arange(4))
    log = tmp_path / "log"
    # The mount point is a subfolder of the source folder: once mounted it
    # holds day.npy, which must not become an array "inner.npy".
    with mount(src, *WATCH, "--log-file", log, name="src/inner") as mnt:
        assert os.listdir(mnt) == ["day.npy"]
        time.sleep(1.0)
        assert sorted(os.listdir(mnt)) == ["day.npy"]
        assert "inside the mount point" in log.read_text()
        assert np.array_equal(np.load(mnt / "day.npy"), np.arange(4))


def test_renamed_array_whose_new_definition_is_invalid_goes_away(tmp_path, mount):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.save(tmp_path / "bad.npy", np.zeros(1000))
    os.truncate(tmp_path / "bad.npy", 200)  # header promises more than the file holds
    m = write_manifest(tmp_path / "m.toml", [{"name": "x.npy", "parts": ["a.npy"]}])
    log = tmp_path / "log"
    with mount(m, *WATCH, "--log-file", log) as mnt:
        assert os.listdir(mnt) == ["x.npy"]
        write_manifest(m, [{"name": "y.npy", "parts": ["bad.npy"]}])
        assert wait_until(lambda: os.listdir(mnt) == [], timeout=5)
        assert "not added" in log.read_text() and "bad.npy" in log.read_text()
