#!/usr/bin/env python3
"""Speed of `lstm` against PyTorch, measured in one run on one machine.

For each case of the performance issue, times PyTorch's built-in ``nn.LSTM`` (and, for the
custom cells, the same cells written as eager PyTorch loops, the way a researcher writes a
new cell there) and ``lstm bench`` with the same shapes and thread count, then prints a
ratio table (``lstm`` time / PyTorch time: below 1 means faster) and writes a bar chart.
Every round measures everything; the table gives medians over the rounds, and each ratio is
the median of the ratios of times taken back to back in one round.

    python3 -m venv .venv && .venv/bin/pip install -r bench/requirements.txt
    cargo build --release
    .venv/bin/python bench/compare_torch.py --threads 2 --plot bench/compare_torch.png

Forward is timed in inference mode (``torch.no_grad``; ``lstm bench``'s forward keeps no
activations); forward+backward is a training forward plus the backward pass of
``output.sum()``, computing every weight gradient and the input's.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

CASES = [
    # (batch, seq_len, input_size, hidden_size, goal forward, goal forward+backward)
    (64, 100, 512, 512, 1.0, 1.0),
    (32, 200, 128, 256, 1.0, 1.0),
    (1, 1000, 64, 128, 0.5, 0.7),
]
CUSTOM_CELLS = ["forget_bias", "scaled_forget"]


class EagerCell(torch.nn.Module):
    """A custom LSTM cell as a PyTorch researcher writes it: one fused gate matmul per step,
    the gate equations in eager Python, unrolled by a Python loop."""

    def __init__(self, input_size, hidden_size, kind):
        super().__init__()
        self.hidden_size = hidden_size
        self.kind = kind
        self.weight_ih = torch.nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.05)
        self.weight_hh = torch.nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.05)
        self.bias_ih = torch.nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = torch.nn.Parameter(torch.zeros(4 * hidden_size))
        self.forget_bias = torch.nn.Parameter(torch.ones(hidden_size))

    def forward(self, x):
        seq_len, batch, _ = x.shape
        h = x.new_zeros(batch, self.hidden_size)
        c = x.new_zeros(batch, self.hidden_size)
        # The input projection of every step at once, as a careful researcher would.
        zx = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)
        outputs = []
        for t in range(seq_len):
            z = zx[t] + torch.nn.functional.linear(h, self.weight_hh, self.bias_hh)
            z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
            if self.kind == "forget_bias":
                f = torch.sigmoid(z_f + self.forget_bias)
            else:
                f = torch.sigmoid(1.5 * z_f)
            c = f * c + torch.sigmoid(z_i) * torch.tanh(z_g)
            h = torch.sigmoid(z_o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs)


def median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_torch(module, x, repeats):
    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    return median_ms(forward, repeats), median_ms(forward_backward, repeats)


def time_lstm(binary, batch, seq_len, input_size, hidden_size, cell, threads, repeats):
    command = [
        binary, "bench", "--batch", str(batch), "--seq-len", str(seq_len),
        "--input-size", str(input_size), "--hidden-size", str(hidden_size),
        "--cell", cell, "--threads", str(threads), "--repeats", str(repeats), "--json",
    ]
    line = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(line.strip().splitlines()[-1])
    return result["fwd_ms"], result["fwdbwd_ms"], result["gflops"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every measurement; the table gives medians over rounds")
    parser.add_argument("--binary", default="target/release/lstm")
    parser.add_argument("--plot", default="bench/compare_torch.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")

    # Every round measures every case, PyTorch then lstm back to back; the table gives the
    # median over rounds of each time and of each round's ratio. This machine's speed drifts
    # (other tenants) by up to 2x over minutes: a ratio of two times taken far apart measures
    # the drift, one of times taken together does not.
    per_round = []
    for _ in range(args.rounds):
        measured = {}
        for batch, seq_len, input_size, hidden_size, _, _ in CASES:
            shape = (batch, seq_len, input_size, hidden_size)
            # The input requires a gradient: `lstm bench` computes the input's as well.
            x = torch.randn(seq_len, batch, input_size, requires_grad=True)
            module = torch.nn.LSTM(input_size, hidden_size)
            measured[("torch", shape)] = time_torch(module, x, args.repeats)
            measured[("lstm", shape)] = time_lstm(args.binary, *shape, "lstm", args.threads,
                                                  args.repeats)
        shape = CASES[0][:4]
        x = torch.randn(shape[1], shape[0], shape[2], requires_grad=True)
        for cell in CUSTOM_CELLS:
            measured[("eager " + cell, shape)] = time_torch(
                EagerCell(shape[2], shape[3], cell), x, args.repeats)
            measured[(cell, shape)] = time_lstm(args.binary, *shape, cell, args.threads,
                                                args.repeats)
        per_round.append(measured)

    def median_of(key, index):
        return statistics.median(m[key][index] for m in per_round)

    def median_ratio(key, reference, index):
        return statistics.median(m[key][index] / m[reference][index] for m in per_round)

    rows = []
    for batch, seq_len, input_size, hidden_size, goal_fwd, goal_fwdbwd in CASES:
        shape = (batch, seq_len, input_size, hidden_size)
        ours, theirs = ("lstm", shape), ("torch", shape)
        rows.append({
            "case": f"lstm {batch},{seq_len},{input_size},{hidden_size}",
            "against": "torch nn.LSTM",
            "torch_fwd_ms": median_of(theirs, 0), "torch_fwdbwd_ms": median_of(theirs, 1),
            "ours_fwd_ms": median_of(ours, 0), "ours_fwdbwd_ms": median_of(ours, 1),
            "gflops": median_of(ours, 2),
            "ratio_fwd": median_ratio(ours, theirs, 0),
            "ratio_fwdbwd": median_ratio(ours, theirs, 1),
            "goal_fwd": goal_fwd, "goal_fwdbwd": goal_fwdbwd,
        })
    shape = CASES[0][:4]
    batch, seq_len, input_size, hidden_size = shape
    for cell in CUSTOM_CELLS:
        ours, eager, lstm = (cell, shape), ("eager " + cell, shape), ("lstm", shape)
        rows.append({
            "case": f"{cell} {batch},{seq_len},{input_size},{hidden_size}",
            "against": "our lstm",
            "torch_fwd_ms": median_of(eager, 0), "torch_fwdbwd_ms": median_of(eager, 1),
            "ours_fwd_ms": median_of(ours, 0), "ours_fwdbwd_ms": median_of(ours, 1),
            "gflops": median_of(ours, 2),
            "ratio_fwd": median_ratio(ours, lstm, 0), "ratio_fwdbwd": median_ratio(ours, lstm, 1),
            "goal_fwd": 1.1, "goal_fwdbwd": 1.1,
            "eager_ratio_fwd": median_ratio(ours, eager, 0),
            "eager_ratio_fwdbwd": median_ratio(ours, eager, 1),
        })

    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {args.threads} threads each, torch {torch.__version__}, "
          f"medians of {args.rounds} rounds of {args.repeats} repeats")
    header = ("case (B,T,I,H)", "ratio vs", "torch fwd", "torch f+b", "lstm fwd", "lstm f+b",
              "fwd ratio", "f+b ratio", "goal", "met")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        met = row["ratio_fwd"] <= row["goal_fwd"] and row["ratio_fwdbwd"] <= row["goal_fwdbwd"]
        print(f"| {row['case']} | {row['against']} | {row['torch_fwd_ms']:.1f} ms | "
              f"{row['torch_fwdbwd_ms']:.1f} ms | {row['ours_fwd_ms']:.1f} ms | "
              f"{row['ours_fwdbwd_ms']:.1f} ms | {row['ratio_fwd']:.2f}× | "
              f"{row['ratio_fwdbwd']:.2f}× | ≤{row['goal_fwd']}× / ≤{row['goal_fwdbwd']}× | "
              f"{'yes' if met else 'no'} |")
    for row in rows:
        if "eager_ratio_fwd" in row:
            print(f"{row['case']}: {row['eager_ratio_fwd']:.2f}× the eager PyTorch cell's forward, "
                  f"{row['eager_ratio_fwdbwd']:.2f}× its forward+backward")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = [row["case"] for row in rows]
        positions = range(len(rows))
        figure, axis = plt.subplots(figsize=(10, 4.5))
        axis.bar([p - 0.2 for p in positions], [r["ratio_fwd"] for r in rows], 0.4, label="forward")
        axis.bar([p + 0.2 for p in positions], [r["ratio_fwdbwd"] for r in rows], 0.4,
                 label="forward+backward")
        axis.scatter(list(positions), [r["goal_fwd"] for r in rows], marker="_", s=900,
                     color="black", label="goal (forward)")
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_xticks(list(positions))
        axis.set_xticklabels(labels, rotation=15, ha="right")
        axis.set_ylabel("lstm time / reference time")
        axis.set_title(f"lstm vs PyTorch ({args.threads} threads); custom cells vs our lstm")
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
