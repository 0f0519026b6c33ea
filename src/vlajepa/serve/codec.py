"""msgpack with numpy arrays, wire-compatible with openpi's ``msgpack_numpy`` — and safe on untrusted input.

An array travels as a map ``{b"__ndarray__": True, b"data": <raw bytes>, b"dtype": <numpy dtype str>,
b"shape": [...]}`` and a numpy scalar as ``{b"__npgeneric__": True, b"data": <python value>, b"dtype":
<str>}``, exactly as openpi's client packs them, so its unmodified clients can talk to our server. Nothing is
ever pickled.

Decoding differs from openpi's on purpose: a server must survive whatever bytes a client sends, so every array
header is checked (plain numeric or bool dtype only — object, void, structured, complex and datetime dtypes
are refused; shape entries non-negative integers; the byte count must match the shape exactly) and every
failure becomes a :class:`DecodeError` with a message that names the problem. Decoded arrays are writable
copies, so a policy may modify its inputs without touching the message buffer.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

# dtype kinds a message may carry: bool, signed and unsigned integers, floats.
ALLOWED_DTYPE_KINDS = frozenset("biuf")
MAX_NDIM = 8  # generous for observations and actions; bounds the work spent on a hostile header


class DecodeError(ValueError):
    """A message could not be decoded (not msgpack, truncated, or an invalid array header)."""


def _check_dtype(spec: Any) -> np.dtype:
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", errors="replace")
    if not isinstance(spec, str):
        raise DecodeError(f"array dtype must be a string, got {type(spec).__name__}")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError) as err:
        raise DecodeError(f"unknown array dtype {spec!r}") from err
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DecodeError(f"unsupported array dtype {spec!r}: only bool, integer and float arrays pass")
    return dtype


def _decode_ndarray(obj: dict) -> np.ndarray:
    data, shape = obj.get(b"data"), obj.get(b"shape")
    dtype = _check_dtype(obj.get(b"dtype"))
    if not isinstance(data, bytes):
        raise DecodeError(f"array data must be bytes, got {type(data).__name__}")
    if not isinstance(shape, list | tuple) or len(shape) > MAX_NDIM:
        raise DecodeError(f"array shape must be a list of at most {MAX_NDIM} integers, got {shape!r:.80}")
    if not all(type(n) is int and n >= 0 for n in shape):
        raise DecodeError(f"array shape entries must be non-negative integers, got {shape!r:.80}")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(data):
        raise DecodeError(
            f"array of shape {list(shape)} and dtype {dtype.str} needs {expected} bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _decode_generic(obj: dict) -> np.generic:
    dtype = _check_dtype(obj.get(b"dtype"))
    value = obj.get(b"data")
    if type(value) not in (bool, int, float):
        raise DecodeError(f"numpy scalar data must be a number, got {type(value).__name__}")
    try:
        return dtype.type(value)
    except (OverflowError, ValueError) as err:
        raise DecodeError(f"numpy scalar {value!r} does not fit dtype {dtype.str}") from err


def _object_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return _decode_ndarray(obj)
    if b"__npgeneric__" in obj:
        return _decode_generic(obj)
    return obj


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise TypeError(f"cannot send numpy dtype {obj.dtype}: only bool, integer and float arrays travel")
    if isinstance(obj, np.ndarray):
        shape = list(obj.shape)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send an object of type {type(obj).__name__}")


def packb(obj: Any) -> bytes:
    """Serialize ``obj`` (dicts, lists, str, numbers, numpy arrays and scalars) to msgpack bytes."""
    return msgpack.packb(obj, default=_encode_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Deserialize msgpack ``data``; raise :class:`DecodeError` naming the problem if it is invalid."""
    try:
        return msgpack.unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=True)
    except DecodeError:
        raise
    except msgpack.OutOfData as err:
        raise DecodeError(f"truncated msgpack message ({len(data)} bytes)") from err
    except ValueError as err:
        if "incomplete input" in str(err):  # how the C unpacker reports truncation
            raise DecodeError(f"truncated msgpack message ({len(data)} bytes)") from err
        raise DecodeError(f"not a valid msgpack message: {err}") from err
    except msgpack.ExtraData as err:
        raise DecodeError("extra bytes after the msgpack message") from err
    except Exception as err:  # noqa: BLE001 - any parser failure on untrusted bytes is a decode error
        raise DecodeError(f"not a valid msgpack message: {type(err).__name__}: {err}") from err
