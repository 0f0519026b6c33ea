"""The wire codec: openpi-compatible numpy encoding, and clear refusals of anything unsafe or malformed."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from vlajepa.serve.codec import DecodeError, packb, unpackb


def _openpi_array(array: np.ndarray) -> dict:
    # Exactly how openpi_client.msgpack_numpy packs an array (shape as a tuple, keys as bytes).
    return {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": array.shape}


def test_roundtrip_nested_arrays_scalars_and_strings():
    message = {
        "image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "state": np.array([0.5, -1.0], dtype=np.float32),
        "nested": {"x": np.float64(2.5), "flags": np.array([True, False])},
        "prompt": "pick up the cube",
        "n": 3,
    }
    decoded = unpackb(packb(message))
    assert decoded["image"].dtype == np.uint8 and np.array_equal(decoded["image"], message["image"])
    assert np.array_equal(decoded["state"], message["state"])
    assert decoded["nested"]["x"] == 2.5 and decoded["nested"]["flags"].dtype == np.bool_
    assert decoded["prompt"] == "pick up the cube" and decoded["n"] == 3
    decoded["image"][0, 0, 0] = 99  # decoded arrays are writable copies


def test_reads_openpi_packing_and_numpy_generics():
    array = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    generic = {b"__npgeneric__": True, b"data": 7, b"dtype": np.dtype(np.int16).str}
    raw = msgpack.packb({"a": _openpi_array(array), "g": generic})
    decoded = unpackb(raw)
    assert np.array_equal(decoded["a"], array)
    assert decoded["g"].dtype == np.int16 and decoded["g"] == 7


def test_encodes_like_openpi():
    array = np.ones((2, 2), dtype=np.float32)
    raw = msgpack.unpackb(packb({"actions": array}))["actions"]
    assert raw[b"__ndarray__"] is True and raw[b"dtype"] == "<f4" and list(raw[b"shape"]) == [2, 2]
    assert raw[b"data"] == array.tobytes()


@pytest.mark.parametrize("dtype", ["O", "|O", "V8", "c8", "<M8[s]", "i4,f4", "(2,)i4", "U3", "not-a-dtype"])
def test_refuses_unsafe_or_unknown_dtypes(dtype):
    raw = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": dtype, b"shape": [1]})
    with pytest.raises(DecodeError, match="dtype"):
        unpackb(raw)


def test_refuses_byte_count_shape_mismatch_and_bad_shapes():
    cases = [(b"\0" * 7, [2]), (b"\0" * 16, [1]), (b"", [-1]), (b"", "3"), (b"", [1.5]), (b"", [1] * 9)]
    for data, shape in cases:
        raw = msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": "<f4", b"shape": shape})
        with pytest.raises(DecodeError):
            unpackb(raw)


def test_refuses_object_arrays_when_encoding():
    with pytest.raises(TypeError, match="dtype"):
        packb({"x": np.array([object()])})


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x81\xa1a", packb({"x": np.zeros(100, np.float32)})[:-7], packb(1) + b"\x00"],
    ids=["empty", "reserved-byte", "truncated-map", "truncated-array", "extra-bytes"],
)
def test_garbage_gives_decode_errors(data):
    with pytest.raises(DecodeError):
        unpackb(data)


def test_deep_nesting_is_a_decode_error_not_a_crash():
    with pytest.raises(DecodeError):
        unpackb(b"\x91" * 100_000)
