"""Time per epoch of `lstm train --data` against the same model trained the same way in
PyTorch, in the same run, on the Japanese Vowels data set (data/japanese_vowels/).

The model: one LSTM layer of HIDDEN units over the 12 features, a linear head on each
sequence's last valid step (PyTorch: `pack_padded_sequence`, `h_n`), cross-entropy over the 9
speakers; Adam (lr LR), gradients clipped to norm 1, batches of BATCH shuffled every epoch;
after every epoch the test set is evaluated (both sides do this, and it is in the epoch time).

    cargo build --release
    python bench/japanese_vowels_torch.py [--epochs 30] [--threads 2] [--rounds 3]

Prints, per round, each side's median epoch time and test accuracy, and the ratio.
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "japanese_vowels"
HIDDEN, BATCH, LR = 64, 32, 0.01


class Model(nn.Module):
    def __init__(self, inputs, hidden, classes):
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.head(h_n[-1])


def load(name):
    arrays = np.load(DATA / f"{name}.npz")
    x = torch.from_numpy(arrays["x"]).transpose(0, 1).contiguous()  # time-major
    return x, torch.from_numpy(arrays["lengths"]), torch.from_numpy(arrays["y"])


def torch_epochs(epochs, seed):
    torch.manual_seed(seed)
    (x, lengths, y), (tx, tlengths, ty) = load("train"), load("test")
    model = Model(x.shape[2], HIDDEN, int(y.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    times, accuracy = [], 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for rows in torch.randperm(x.shape[1]).split(BATCH):
            optimizer.zero_grad()
            loss = loss_fn(model(x[:, rows], lengths[rows]), y[rows])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(tx, tlengths).argmax(1) == ty).float().mean().item()
        times.append(time.perf_counter() - start)
    return statistics.median(times), accuracy


def lstm_epochs(binary, epochs, seed):
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [binary, "train", "--data", DATA / "train.npz", "--val", DATA / "test.npz",
             "--hidden", str(HIDDEN), "--batch", str(BATCH), "--lr", str(LR),
             "--epochs", str(epochs), "--seed", str(seed), "--quiet", "--out", Path(out) / "run"],
            check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((Path(out) / "run" / "metrics.json").read_text())
    # Per-epoch times are not recorded one by one; the mean over the run is.
    return metrics["epoch_seconds"], metrics["history"][-1]["val_accuracy"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "lstm"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ratios = []
    for round_ in range(args.rounds):
        ours, our_accuracy = lstm_epochs(args.binary, args.epochs, round_)
        theirs, their_accuracy = torch_epochs(args.epochs, round_)
        ratios.append(ours / theirs)
        print(f"round {round_ + 1}: lstm {1000 * ours:.1f} ms/epoch (test accuracy "
              f"{100 * our_accuracy:.1f}%), PyTorch {1000 * theirs:.1f} ms/epoch (test accuracy "
              f"{100 * their_accuracy:.1f}%), ratio {ours / theirs:.2f}x", flush=True)
    print(f"median ratio {statistics.median(ratios):.2f}x (goal <= 0.5x)")


if __name__ == "__main__":
    main()
