"""Writes the committed seed corpora of the cargo fuzz targets (fuzz/seeds/<target>/): small
valid files of every element type the readers accept, which the fuzzer then mutates.
The checkpoint seed is a real checkpoint of `lstm train` (copied in by hand, see
fuzz/README.md).

    python scripts/fuzz_seeds.py
"""

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

SEEDS = Path(__file__).resolve().parent.parent / "fuzz" / "seeds"


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def safetensors_bytes(tensors, metadata=None):
    header, data, offset = {}, b"", 0
    for name, array in tensors.items():
        dtype = {"float32": "F32", "float64": "F64", "int32": "I32", "int64": "I64",
                 "bool": "BOOL"}[str(array.dtype)]
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64": np.array([0.5, -1.25]),
        "i32": np.array([[1, 2]], dtype=np.int32),
        "i64": np.array([7, 0, 3], dtype=np.int64),
        "bool": np.array([[True, False], [False, True]]),
        "scalar": np.float32(2.5),
    }
    for target in ("npy", "npz", "safetensors"):
        (SEEDS / target).mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (SEEDS / "npy" / f"{name}.npy").write_bytes(npy_bytes(array))
    for compressed in (False, True):
        buffer = io.BytesIO()
        save = np.savez_compressed if compressed else np.savez
        save(buffer, x=np.zeros((2, 3, 1), np.float32), y=np.array([0, 1]),
             lengths=np.array([3, 1]), mask=np.ones((2, 3), bool))
        name = "compressed.npz" if compressed else "stored.npz"
        (SEEDS / "npz" / name).write_bytes(buffer.getvalue())
    (SEEDS / "safetensors" / "all_dtypes.safetensors").write_bytes(
        safetensors_bytes({k: v for k, v in arrays.items() if k != "scalar"},
                          {"format": "pt"}))


if __name__ == "__main__":
    main()
