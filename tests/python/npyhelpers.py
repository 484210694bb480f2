"""Helpers to write .npy parts in controlled ways and to compare results."""

from __future__ import annotations

import ast
import io
import struct

import numpy as np

MAGIC = b"\x93NUMPY"


def save_bytes(arr: np.ndarray) -> bytes:
    """Exactly the bytes np.save writes for ARR."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def npy_header(
    dtype: np.dtype,
    shape: tuple,
    fortran: bool,
    *,
    version: tuple[int, int] = (1, 0),
    align: int = 64,
    key_order: tuple[str, ...] = ("descr", "fortran_order", "shape"),
    trailing_comma: bool = True,
    descr=None,
) -> bytes:
    """A hand-made npy header (magic .. newline), any valid variant."""
    values = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)) if descr is None else descr,
        "fortran_order": bool(fortran),
        "shape": tuple(int(s) for s in shape),
    }
    items = [f"{k!r}: {values[k]!r}" for k in key_order]
    text = "{" + ", ".join(items) + (", }" if trailing_comma else "}")
    encoding = "utf8" if version == (3, 0) else "latin1"
    body = text.encode(encoding)
    len_size = 2 if version == (1, 0) else 4
    prefix = len(MAGIC) + 2 + len_size
    total = prefix + len(body) + 1
    pad = (-total) % align
    body = body + b" " * pad + b"\n"
    fmt = "<H" if len_size == 2 else "<I"
    return MAGIC + bytes(version) + struct.pack(fmt, len(body)) + body


def write_npy(
    path,
    arr: np.ndarray,
    *,
    fortran: bool | None = None,
    version: tuple[int, int] | None = None,
    **header_kw,
) -> None:
    """Write ARR as .npy.

    fortran=None and no header options: plain np.save (what users do).
    Otherwise a hand-made header with the given fortran_order, and the data
    laid out in that order.
    """
    arr = np.asarray(arr)
    if fortran is None and version is None and not header_kw:
        np.save(path, arr, allow_pickle=False)
        return
    if fortran is None:
        fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    header = npy_header(arr.dtype, arr.shape, fortran, version=version or (1, 0), **header_kw)
    with open(path, "wb") as f:
        f.write(header)
        f.write(arr.tobytes(order="F" if fortran else "C"))


def header_of(data: bytes) -> tuple[tuple[int, int], dict]:
    """(version, {shape, fortran_order, dtype}) of the npy bytes DATA."""
    if data[:6] != MAGIC:
        raise ValueError("not an npy file")
    version = (data[6], data[7])
    if version == (1, 0):
        (hlen,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", data[8:12]), 12
    text = data[start : start + hlen].decode("utf8" if version == (3, 0) else "latin1")
    d = ast.literal_eval(text)
    return version, {
        "shape": tuple(d["shape"]),
        "fortran_order": bool(d["fortran_order"]),
        "dtype": np.lib.format.descr_to_dtype(d["descr"]),
    }


def _copy_fields(dst: np.ndarray, src: np.ndarray) -> None:
    if dst.dtype.names:
        for name in dst.dtype.names:
            _copy_fields(dst[name], src[name])
    else:
        dst[...] = src


def zero_padding(arr: np.ndarray) -> np.ndarray:
    """ARR with the padding bytes of a structured dtype set to zero.

    numpy's concatenate/stack/astype leave the padding bytes of an aligned
    struct uninitialized, so np.save of their result is not reproducible.
    The parts the tests write have zero padding, and a virtual file made of
    their bytes has zero padding too; so does the oracle after this.
    """
    if not arr.dtype.names:
        return arr
    out = np.zeros(arr.shape, arr.dtype, order="F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C")
    _copy_fields(out, arr)
    return out


def ambiguous_order(shape) -> bool:
    """Bytes are the same in C and F order (at most one dim longer than 1)."""
    return sum(1 for s in shape if s > 1) <= 1


def _eq_kind(a, b) -> bool:
    if a.dtype.names:
        return all(_eq_kind(a[n], b[n]) for n in a.dtype.names)
    if a.dtype.subdtype is not None:  # should not happen after field access
        return np.array_equal(a, b)
    equal_nan = a.dtype.kind in "fcmM"
    return bool(np.array_equal(a, b, equal_nan=equal_nan))


def arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """array_equal that handles NaN/NaT and (nested) structured dtypes."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return _eq_kind(a, b)


def describe_diff(got: bytes, want: bytes) -> str:
    """Human-readable summary of the first difference between two npy blobs."""
    lines = [f"sizes: got {len(got)}, want {len(want)}"]
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), None)
    if first is None and len(got) != len(want):
        first = n
    if first is not None:
        lines.append(f"first difference at byte {first}")
        lo = max(0, first - 16)
        lines.append(f"  got [{lo}:{first + 16}]  = {got[lo:first + 16]!r}")
        lines.append(f"  want[{lo}:{first + 16}]  = {want[lo:first + 16]!r}")
    for label, blob in (("got", got), ("want", want)):
        if blob[:6] == MAGIC:
            ver = (blob[6], blob[7]) if len(blob) > 7 else None
            if ver == (1, 0):
                hl = struct.unpack("<H", blob[8:10])[0]
                hdr = blob[10 : 10 + hl]
            elif len(blob) > 12:
                hl = struct.unpack("<I", blob[8:12])[0]
                hdr = blob[12 : 12 + min(hl, 400)]
            else:
                hdr = b"?"
            lines.append(f"{label} header v{ver}: {hdr[:300]!r}")
        else:
            lines.append(f"{label} does not start with the npy magic: {blob[:16]!r}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# random values
# --------------------------------------------------------------------------

_UNICODE_POOL = "abcXYZ019 éßø中文字😀𝔘\u00ff"


def random_values(rng: np.random.Generator, dtype, shape) -> np.ndarray:
    """A C-ordered array of SHAPE and DTYPE with varied, valid values.

    Structured values start from np.zeros so padding bytes are zero.
    """
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    if dtype.names:
        out = np.zeros(shape, dtype)
        for name in dtype.names:
            fdt = dtype.fields[name][0]
            if fdt.subdtype is not None:
                base, sub = fdt.subdtype
                out[name] = random_values(rng, base, shape + sub)
            else:
                out[name] = random_values(rng, fdt, shape)
        return out
    kind = dtype.kind
    native = dtype.newbyteorder("=")
    if kind in "iu":
        info = np.iinfo(native)
        vals = rng.integers(info.min, info.max, size=n, dtype=native, endpoint=True)
    elif kind == "b":
        vals = rng.random(n) < 0.5
    elif kind == "f":
        vals = (rng.standard_normal(n) * 1000).astype(native)
        special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype=native)
        mask = rng.random(n) < 0.1
        vals[mask] = rng.choice(special, size=int(mask.sum()))
    elif kind == "c":
        ftype = np.dtype(f"f{native.itemsize // 2}")
        re = (rng.standard_normal(n) * 100).astype(ftype)
        im = (rng.standard_normal(n) * 100).astype(ftype)
        mask = rng.random(n) < 0.1
        re[mask] = np.nan
        vals = (re + 1j * im).astype(native)
    elif kind in "mM":
        ints = rng.integers(-(2**62), 2**62, size=n, dtype=np.int64)
        ints[rng.random(n) < 0.1] = np.iinfo(np.int64).min  # NaT
        vals = ints.view(native)
    elif kind == "S":
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 -_", dtype="S1")
        vals = np.array(
            [b"".join(rng.choice(letters, size=rng.integers(0, dtype.itemsize + 1))) for _ in range(n)],
            dtype=dtype,
        )
    elif kind == "U":
        width = dtype.itemsize // 4
        vals = np.array(
            ["".join(rng.choice(list(_UNICODE_POOL), size=rng.integers(0, width + 1))) for _ in range(n)],
            dtype=native,
        )
    elif kind == "V":
        vals = np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype)
    else:
        raise NotImplementedError(dtype)
    return np.asarray(vals).astype(dtype).reshape(shape)
