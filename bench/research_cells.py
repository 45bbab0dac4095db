"""Issue 20's speed figures for the research cells, ratios taken back to back in one run.

On case 64, 100, 512, 512 (batch, seq_len, input_size, hidden_size), f32, 2 threads:

- `gru` forward+backward against PyTorch's `nn.GRU` (goal ≤ 1.0×),
- `slstm` with one head against our `lstm` (goal ≤ 1.15×),
- `slstm` with 4 heads against `slstm` with one (goal: faster).

Each round times every candidate once (medians of `--repeats` runs each, `lstm bench` for
ours, `time.perf_counter` for PyTorch), and the ratios are taken within the round; the script
prints every round and the median ratio of the rounds, with the CPU model.

    python bench/research_cells.py --rounds 5 --repeats 5
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

CASE = (64, 100, 512, 512)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per candidate")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every candidate")
    parser.add_argument("--binary", default="target/release/lstm")
    return parser.parse_args()


def cpu_model():
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def lstm_bench(args, cell, heads=1):
    batch, seq_len, input_size, hidden_size = CASE
    command = [
        args.binary, "bench", "--batch", str(batch), "--seq-len", str(seq_len),
        "--input-size", str(input_size), "--hidden-size", str(hidden_size),
        "--cell", cell, "--threads", str(args.threads), "--repeats", str(args.repeats),
        "--heads", str(heads), "--json",
    ]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def torch_gru_ms(args):
    """Median forward+backward time of `nn.GRU` on the case, in milliseconds."""
    batch, seq_len, input_size, hidden_size = CASE
    gru = torch.nn.GRU(input_size, hidden_size)
    x = torch.randn(seq_len, batch, input_size, requires_grad=True)

    def forward_backward():
        gru.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = gru(x)
        out.sum().backward()

    forward_backward()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        forward_backward()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads, f32, "
          f"case {CASE}")
    ratios = {"gru / nn.GRU (f+b)": [], "slstm / lstm (f+b)": [], "slstm 4 heads / 1 (f+b)": []}
    for round_index in range(args.rounds):
        gru = lstm_bench(args, "gru")
        torch_gru = torch_gru_ms(args)
        lstm = lstm_bench(args, "lstm")
        slstm = lstm_bench(args, "slstm")
        slstm4 = lstm_bench(args, "slstm", heads=4)
        row = {
            "gru / nn.GRU (f+b)": gru["fwdbwd_ms"] / torch_gru,
            "slstm / lstm (f+b)": slstm["fwdbwd_ms"] / lstm["fwdbwd_ms"],
            "slstm 4 heads / 1 (f+b)":
                slstm4["fwdbwd_ms"] / slstm["fwdbwd_ms"],
        }
        for name, value in row.items():
            ratios[name].append(value)
        print(f"round {round_index + 1} (isa {gru.get('isa', '?')}): "
              f"gru {gru['fwdbwd_ms']:.1f} ms, nn.GRU {torch_gru:.1f} ms, "
              f"lstm {lstm['fwdbwd_ms']:.1f} ms, slstm {slstm['fwdbwd_ms']:.1f} ms, "
              f"slstm 4 heads {slstm4['fwdbwd_ms']:.1f} ms (f+b); "
              + ", ".join(f"{name} {value:.2f}x" for name, value in row.items()))
    for name, values in ratios.items():
        print(f"median {name}: {statistics.median(values):.2f}x")


if __name__ == "__main__":
    main()
