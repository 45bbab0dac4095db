"""Converts the Japanese Vowels data set (UCI, CC BY 4.0) from the `.ts` files that the sktime
wheel ships (sktime/datasets/data/JapaneseVowels/) into the `.npz` files `lstm train --data`
reads: `x` (N, 29, 12) float32, zero-padded; `lengths` (N,) int64, 7 to 29; `y` (N,) int64,
the speaker 0..8.

    pip download --no-deps sktime==1.2.0   # then unzip the two .ts files
    python scripts/japanese_vowels.py JapaneseVowels_TRAIN.ts JapaneseVowels_TEST.ts data/japanese_vowels
"""

import sys
from pathlib import Path

import numpy as np

MAX_LEN = 29
CHANNELS = 12


def read_ts(path):
    """The sequences (each (length, 12)) and labels of a `.ts` file of sktime's format."""
    sequences, labels = [], []
    in_data = False
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            in_data = True
            continue
        if not in_data:
            continue
        *channels, label = line.split(":")
        assert len(channels) == CHANNELS, f"{path}: {len(channels)} channels"
        values = [np.array([float(v) for v in channel.split(",")]) for channel in channels]
        sequences.append(np.stack(values, axis=1))
        labels.append(int(label) - 1)
    return sequences, np.array(labels, dtype=np.int64)


def write(sequences, labels, path):
    x = np.zeros((len(sequences), MAX_LEN, CHANNELS), dtype=np.float32)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    for row, sequence in enumerate(sequences):
        x[row, : len(sequence)] = sequence
    np.savez_compressed(path, x=x, y=labels, lengths=lengths)
    print(f"{path}: x {x.shape}, lengths {lengths.min()}..{lengths.max()}, "
          f"classes {np.bincount(labels).tolist()}")


def main():
    train, test, out = sys.argv[1:4]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write(*read_ts(train), out / "train.npz")
    write(*read_ts(test), out / "test.npz")


if __name__ == "__main__":
    main()
