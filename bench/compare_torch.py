#!/usr/bin/env python3
"""Speed of `lstm` against PyTorch, ONNX Runtime and JAX, measured in one run on one machine.

For each case of the performance issue, times ``lstm bench`` and, with the same shapes, f32
and thread count, its anchors:

- PyTorch's built-in ``nn.LSTM`` (forward, forward+backward);
- ONNX Runtime's ``LSTM`` operator: that ``nn.LSTM`` exported by ``torch.onnx.export``
  (forward only, as an inference engine);
- JAX: the cell as ``jax.jit`` of ``lax.scan``, gradients by ``jax.value_and_grad``;
- for the custom cells (``forget_bias``, ``scaled_forget``, on case 1): the cell as an eager
  PyTorch loop (the way a researcher writes a new cell there), the same cell under
  ``torch.compile`` (inductor; by default its step, called by the Python loop, which compiles
  in seconds; ``--compile-scope loop`` compiles the whole unrolled loop instead, which takes
  minutes per cell at 100 steps), and JAX as above. ``torch.compile`` of the standard cell's
  eager loop is timed on case 1 too, to show how close it comes to ``nn.LSTM``.

It also times ``torch.matmul`` on two f32 products (1024³ and case 1's input projection,
6400×512 by 512×2048) at the same thread count: the sgemm peak (the faster of the two, each
the median of its repeats, as ``lstm bench``'s times are), against which case 1's forward
GFLOP/s (``lstm bench``'s ``2·T·B·4H·(I+H)`` over its forward time) is given.

``lstm bench`` runs as a fresh process each round: before its timed passes it runs three
untimed ones of each kind (its ``--warmup``), after which its allocations no longer fault in
fresh pages, as the frameworks here, long-lived in this process, are timed.

The machine's speed drifts (up to 2× over minutes), so every round measures everything, the
anchors and ``lstm`` back to back; the tables give medians over the rounds of each time and
of each round's ratio (``lstm`` time / anchor time: below 1 means ``lstm`` is faster).

    python3 -m venv .venv && .venv/bin/pip install -r bench/requirements.txt
    cargo build --release
    .venv/bin/python bench/compare_torch.py --threads 2 --plot bench/compare_torch.png
    .venv/bin/python bench/compare_torch.py --check          # every anchor computes the same
    .venv/bin/python bench/compare_torch.py --cases small --rounds 1 --repeats 2 --plot ''

Forward is inference (``torch.no_grad``, ONNX Runtime, a jitted forward; ``lstm bench``'s
forward keeps no activations); forward+backward is a training forward plus the backward pass
of ``output.sum()``, computing every weight gradient and the input's.

Threads: where the machine has more CPUs than ``--threads``, the process is bound to the
first ``--threads`` of them before any library starts a thread (``--no-pin`` not to), so no
framework, nor ``lstm bench`` (a child), can use more cores. Within that: PyTorch (and the
kernels inductor generates) by ``torch.set_num_threads`` (and ``OMP_NUM_THREADS``), one
inter-op thread; ONNX Runtime by ``intra_op_num_threads``, one inter-op thread, sequential
execution; JAX by ``PJRT_NPROC``, which sizes both of XLA's CPU thread pools (the executor's
and Eigen's intra-op one; set before JAX is imported); ``lstm`` by ``--threads``. ``--check``
gives each one's CPU time over wall time and the threads it keeps runnable (on a 2-core
machine, run it with ``--threads 1`` to see the limit hold).
"""

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# (batch, seq_len, input_size, hidden_size); the goals below refer to cases by index.
CASES = {
    "full": [(64, 100, 512, 512), (32, 200, 128, 256), (1, 1000, 64, 128)],
    # The same structure at sizes that run in seconds: for trying the script, not for figures.
    "small": [(8, 20, 64, 64), (4, 30, 32, 48), (1, 60, 16, 32)],
}
# The square sgemm of the peak measurement, per case set (the other is case 1's projection).
SQUARE = {"full": 1024, "small": 256}
CUSTOM_CELLS = ["forget_bias", "scaled_forget"]
ANCHORS = ["nn.LSTM", "ONNX Runtime", "JAX", "torch.compile", "eager", "our lstm"]
# Goals of the performance issue: (row, pass) -> [(anchor, bound on lstm time / anchor time)].
# A row is a case index (the plain LSTM) or a custom cell's name (on case 1). `our lstm`
# (a custom cell against the plain layer of `lstm`) is the earlier issue's goal.
GOALS = {
    (0, "fwd"): [("nn.LSTM", 1.0), ("ONNX Runtime", 1.0)],
    (0, "f+b"): [("nn.LSTM", 1.0)],
    (1, "fwd"): [("nn.LSTM", 1.0), ("ONNX Runtime", 1.0)],
    (1, "f+b"): [("nn.LSTM", 1.0)],
    (2, "fwd"): [("nn.LSTM", 0.5)],
    (2, "f+b"): [("nn.LSTM", 0.7)],
}
for _cell in CUSTOM_CELLS:
    for _pass in ("fwd", "f+b"):
        GOALS[(_cell, _pass)] = [("JAX", 0.9), ("torch.compile", 0.9), ("our lstm", 1.1)]
PEAK_GOAL = 0.75  # case 1's forward GFLOP/s as a fraction of the sgemm peak
PASSES = ("fwd", "f+b")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed repetitions of each measurement (their median is used)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every measurement; the tables give medians over rounds")
    parser.add_argument("--cases", choices=sorted(CASES), default="full",
                        help="`small` shrinks every shape, for trying the script out")
    parser.add_argument("--skip", default="",
                        help="comma-separated anchors not to run: onnx, jax, compile, eager")
    parser.add_argument("--compile-scope", choices=["step", "loop"], default="step",
                        help="what torch.compile compiles: the cell's step, called by the "
                             "Python loop (default), or the whole loop, unrolled into one "
                             "graph (minutes of compilation per cell at 100 steps)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not bind the process to --threads CPUs")
    parser.add_argument("--binary", default="target/release/lstm")
    parser.add_argument("--plot", default="bench/compare_torch.png",
                        help="where to write the bar chart ('' for none)")
    parser.add_argument("--check", action="store_true",
                        help="instead of timing, check on a tiny shape that every anchor and "
                             "`lstm infer` compute nn.LSTM's (or the eager cell's) outputs "
                             "and gradients, and measure each one's parallelism")
    args = parser.parse_args()
    args.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = args.skip - {"onnx", "jax", "compile", "eager"}
    if unknown:
        parser.error(f"--skip: unknown anchors {sorted(unknown)}")
    return args


ARGS = parse_args()
# Every framework runs on at most `threads` cores: the process (and so every thread the
# libraries start later, and `lstm bench`) is bound to the first `threads` of its CPUs. This
# is a no-op where there are no more; the thread counts below then do the limiting.
if hasattr(os, "sched_setaffinity") and not ARGS.no_pin:
    _cpus = sorted(os.sched_getaffinity(0))
    if len(_cpus) > ARGS.threads:
        os.sched_setaffinity(0, _cpus[:ARGS.threads])
# Thread limits that must be in place before the libraries start their pools.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["PJRT_NPROC"] = str(ARGS.threads)  # XLA's CPU client sizes its pools by it
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)
torch.set_num_interop_threads(1)
# Each compiled cell takes up to three graphs of the one `EagerCell.step` (inference, and
# training with a first state that does or does not require a gradient): past the default
# limit of 8 graphs per function, dynamo would silently run the rest eagerly.
torch._dynamo.config.recompile_limit = 64
torch._dynamo.config.fail_on_recompile_limit_hit = True
logging.getLogger("torch.onnx").setLevel(logging.ERROR)
logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
logging.getLogger("torch._inductor").setLevel(logging.ERROR)


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The cells
# ---------------------------------------------------------------------------------------------

class EagerCell(torch.nn.Module):
    """A (custom) LSTM cell as a PyTorch researcher writes it: one fused gate matmul per step,
    the gate equations in eager Python, unrolled by a Python loop. `kind` is `lstm` (the
    standard cell, for checking against nn.LSTM), `forget_bias` or `scaled_forget`, as
    `lstm cells` defines them."""

    def __init__(self, input_size, hidden_size, kind):
        super().__init__()
        self.hidden_size = hidden_size
        self.kind = kind
        self.weight_ih = torch.nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.05)
        self.weight_hh = torch.nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.05)
        self.bias_ih = torch.nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = torch.nn.Parameter(torch.zeros(4 * hidden_size))
        if kind == "forget_bias":
            self.forget_bias = torch.nn.Parameter(torch.ones(hidden_size))

    def step(self, zx_t, h, c):
        """One time step from the step's input projection `zx_t` and the previous state."""
        z = zx_t + torch.nn.functional.linear(h, self.weight_hh, self.bias_hh)
        z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
        if self.kind == "forget_bias":
            f = torch.sigmoid(z_f + self.forget_bias)
        elif self.kind == "scaled_forget":
            f = torch.sigmoid(1.5 * z_f)
        else:
            f = torch.sigmoid(z_f)
        c = f * c + torch.sigmoid(z_i) * torch.tanh(z_g)
        h = torch.sigmoid(z_o) * torch.tanh(c)
        return h, c

    def forward(self, x, step=None):
        seq_len, batch, _ = x.shape
        step = step or self.step
        h = x.new_zeros(batch, self.hidden_size)
        c = x.new_zeros(batch, self.hidden_size)
        # The input projection of every step at once, as a careful researcher would.
        zx = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)
        outputs = []
        for t in range(seq_len):
            h, c = step(zx[t], h, c)
            outputs.append(h)
        return torch.stack(outputs)


class CompiledStep(torch.nn.Module):
    """An eager cell whose step runs under torch.compile; the loop over steps stays Python."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell
        self.compiled_step = torch.compile(cell.step, dynamic=False, fullgraph=True)

    def forward(self, x):
        return self.cell(x, step=self.compiled_step)


def compiled(cell, scope):
    """`cell` under torch.compile (inductor, static shapes, one graph without breaks): its step
    (`step`; the loop over time stays Python) or its whole forward (`loop`: the loop is
    unrolled into one graph, which takes minutes to compile at 100 steps)."""
    if scope == "step":
        return CompiledStep(cell)
    return torch.compile(cell, dynamic=False, fullgraph=True)


def torch_params(module):
    """A module's parameters under nn.LSTM's names without the `_l0` suffix, as numpy."""
    return {name.removesuffix("_l0"): value.detach().numpy().copy()
            for name, value in module.named_parameters()}


def jax_layer(kind):
    """The cell `kind` over a sequence in JAX: `jax.jit` of `lax.scan`, the input projection of
    every step hoisted out of the scan as in the eager cell. Returns the jitted forward
    `(params, x) -> y` and forward+backward `(params, x) -> (sum(y), (dparams, dx))`."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def layer(params, x):
        hidden = params["weight_hh"].shape[1]
        zx = jnp.einsum("tbi,gi->tbg", x, params["weight_ih"]) + params["bias_ih"]
        zeros = jnp.zeros((x.shape[1], hidden), x.dtype)

        def step(carry, zx_t):
            h, c = carry
            z = zx_t + h @ params["weight_hh"].T + params["bias_hh"]
            z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=1)
            if kind == "forget_bias":
                f = jax.nn.sigmoid(z_f + params["forget_bias"])
            elif kind == "scaled_forget":
                f = jax.nn.sigmoid(1.5 * z_f)
            else:
                f = jax.nn.sigmoid(z_f)
            c = f * c + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)
            h = jax.nn.sigmoid(z_o) * jnp.tanh(c)
            return (h, c), h

        _, ys = lax.scan(step, (zeros, zeros), zx)
        return ys

    forward = jax.jit(layer)
    forward_backward = jax.jit(jax.value_and_grad(lambda p, x: layer(p, x).sum(),
                                                  argnums=(0, 1)))
    return forward, forward_backward


class OutputOnly(torch.nn.Module):
    """nn.LSTM returning its output sequence only, for export."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x):
        return self.lstm(x)[0]


def onnx_session(module, x, threads, directory):
    """`module` (an nn.LSTM) exported by torch.onnx.export and loaded in ONNX Runtime with
    `threads` intra-op threads, one inter-op thread, sequential execution. The exported graph
    must run the LSTM as ONNX's one `LSTM` operator."""
    import onnx
    import onnxruntime as ort

    path = Path(directory) / f"lstm_{'x'.join(map(str, x.shape))}.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(OutputOnly(module), (x.detach(),), str(path), input_names=["x"],
                          output_names=["y"], dynamo=True, verbose=False)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    if ops.count("LSTM") != 1:
        raise RuntimeError(f"the exported graph does not run one LSTM operator: {ops}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, ops


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def median_ms(fn, repeats):
    fn()  # warm-up (and, for torch.compile and JAX, compilation on the first call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def torch_passes(module, x):
    """Inference forward and training forward+backward of a PyTorch module."""
    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    return forward, forward_backward


def jax_passes(kind, params, x):
    import jax
    import jax.numpy as jnp

    forward, forward_backward = jax_layer(kind)
    params = {name: jnp.asarray(value) for name, value in params.items()}
    x = jnp.asarray(x)
    return (lambda: forward(params, x).block_until_ready(),
            lambda: jax.block_until_ready(forward_backward(params, x)))


def lstm_bench(binary, shape, cell, threads, repeats):
    batch, seq_len, input_size, hidden_size = shape
    command = [
        binary, "bench", "--batch", str(batch), "--seq-len", str(seq_len),
        "--input-size", str(input_size), "--hidden-size", str(hidden_size),
        "--cell", cell, "--threads", str(threads), "--repeats", str(repeats), "--json",
    ]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def sgemm_gflops(m, k, n, repeats):
    """torch.matmul of an m×k by a k×n f32 matrix, in GFLOP/s (multiply-adds count 2)."""
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    return 2.0 * m * k * n / (median_ms(lambda: torch.matmul(a, b, out=out), repeats) * 1e6)


class Runners:
    """Everything a round times, built once: modules, compiled functions, ONNX sessions."""

    def __init__(self, args, cases, directory):
        self.args = args
        self.cases = cases
        self.plain = []  # per case: {anchor: (forward, forward_backward or None)}
        for shape in cases:
            batch, seq_len, input_size, hidden_size = shape
            # The input requires a gradient: `lstm bench` computes the input's as well.
            x = torch.randn(seq_len, batch, input_size, requires_grad=True)
            module = torch.nn.LSTM(input_size, hidden_size)
            anchors = {"nn.LSTM": torch_passes(module, x)}
            if "onnx" not in args.skip:
                log(f"exporting nn.LSTM {shape} to ONNX")
                session, _ = onnx_session(module, x, args.threads, directory)
                feed = {"x": x.detach().numpy()}
                anchors["ONNX Runtime"] = (lambda s=session, f=feed: s.run(None, f), None)
            if "jax" not in args.skip:
                anchors["JAX"] = jax_passes("lstm", torch_params(module), x.detach().numpy())
            if "compile" not in args.skip and shape == cases[0]:
                # How close torch.compile of an eager loop gets to nn.LSTM: the strength of
                # the custom cells' anchor (case 1 only, where they run).
                eager = EagerCell(input_size, hidden_size, "lstm")
                anchors["torch.compile"] = torch_passes(compiled(eager, args.compile_scope), x)
            self.plain.append(anchors)
        shape = cases[0]
        batch, seq_len, input_size, hidden_size = shape
        x = torch.randn(seq_len, batch, input_size, requires_grad=True)
        self.custom = {}
        for cell in CUSTOM_CELLS:
            module = EagerCell(input_size, hidden_size, cell)
            anchors = {}
            if "eager" not in args.skip:
                anchors["eager"] = torch_passes(module, x)
            if "compile" not in args.skip:
                anchors["torch.compile"] = torch_passes(compiled(module, args.compile_scope), x)
            if "jax" not in args.skip:
                anchors["JAX"] = jax_passes(cell, torch_params(module), x.detach().numpy())
            self.custom[cell] = anchors
        projection = (shape[1] * shape[0], shape[2], 4 * shape[3])
        square = SQUARE[args.cases]
        self.sgemm_shapes = [(square, square, square), projection]
        # The first call compiles (torch.compile, JAX) or allocates: done once here, so that
        # the rounds' times (each after a warm-up call of its own) are taken back to back.
        for row, anchors in list(enumerate(self.plain)) + list(self.custom.items()):
            for anchor, passes in anchors.items():
                start = time.perf_counter()
                for fn in passes:
                    if fn is not None:
                        fn()
                log(f"first calls of {row_name(row, cases)} in {anchor}: "
                    f"{time.perf_counter() - start:.1f} s")

    def round(self):
        """One round: every measurement, each case's anchors and `lstm` back to back.
        Returns {(row, who): (fwd_ms, f+b_ms or None)}, the sgemm GFLOP/s and lstm's JSON."""
        args, measured, reports = self.args, {}, []
        for index, (shape, anchors) in enumerate(zip(self.cases, self.plain)):
            for anchor, (forward, forward_backward) in anchors.items():
                measured[(index, anchor)] = (
                    median_ms(forward, args.repeats),
                    median_ms(forward_backward, args.repeats) if forward_backward else None)
            report = lstm_bench(args.binary, shape, "lstm", args.threads, args.repeats)
            measured[(index, "lstm")] = (report["fwd_ms"], report["fwdbwd_ms"])
            reports.append(report)
        for cell, anchors in self.custom.items():
            for anchor, (forward, forward_backward) in anchors.items():
                log(f"timing {cell} in {anchor}")
                measured[(cell, anchor)] = (median_ms(forward, args.repeats),
                                            median_ms(forward_backward, args.repeats))
            report = lstm_bench(args.binary, self.cases[0], cell, args.threads, args.repeats)
            measured[(cell, "lstm")] = (report["fwd_ms"], report["fwdbwd_ms"])
            measured[(cell, "our lstm")] = measured[(0, "lstm")]
            reports.append(report)
        sgemm = [sgemm_gflops(*mkn, args.repeats) for mkn in self.sgemm_shapes]
        return measured, sgemm, reports


# ---------------------------------------------------------------------------------------------
# --check: every anchor computes the same function, on a tiny shape
# ---------------------------------------------------------------------------------------------

def read_safetensors(path):
    """A safetensors file's f32/f64 tensors as numpy arrays (the format is a length-prefixed
    JSON header followed by the raw little-endian data)."""
    raw = Path(path).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    data = raw[8 + size:]
    dtypes = {"F32": "<f4", "F64": "<f8"}
    return {name: np.frombuffer(data[meta["data_offsets"][0]:meta["data_offsets"][1]],
                                dtypes[meta["dtype"]]).reshape(meta["shape"])
            for name, meta in header.items() if name != "__metadata__"}


def lstm_infer(binary, cell, params, x, directory):
    """`lstm infer` on `params` (names without `_l0`) and `x`, with the gradient of sum(y):
    returns y and {name: gradient} (`input` for x's)."""
    directory = Path(directory)
    np.savez(directory / "w.npz", **{f"{name}_l0": value for name, value in params.items()})
    np.save(directory / "x.npy", x)
    np.save(directory / "g.npy", np.ones((x.shape[0], x.shape[1], params["weight_hh"].shape[1]),
                                         np.float32))
    command = [binary, "infer", "--weights", str(directory / "w.npz"),
               "--input", str(directory / "x.npy"), "--cell", cell,
               "--output", str(directory / "y.npy"), "--grad-output", str(directory / "g.npy"),
               "--grads", str(directory / "grads.safetensors")]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {run.stderr.strip()}")
    grads = read_safetensors(directory / "grads.safetensors")
    return np.load(directory / "y.npy"), {name.removesuffix("_l0"): value
                                          for name, value in grads.items()}


def torch_reference(module, x):
    """Output and gradients of sum(output) w.r.t. every parameter (names without `_l0`) and
    the input (`input`)."""
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = module(x)
    y = y[0] if isinstance(y, tuple) else y
    y.sum().backward()
    # Names lose the prefixes of torch.compile's wrapper (`_orig_mod.`) and of CompiledStep's.
    grads = {name.removeprefix("_orig_mod.").removeprefix("cell.").removesuffix("_l0"):
             p.grad.numpy().copy() for name, p in module.named_parameters()}
    grads["input"] = x.grad.numpy().copy()
    return y.detach().numpy().copy(), grads


def compare(what, reference, candidate, failures, rtol=1e-4, atol=1e-5):
    error = float(np.max(np.abs(np.asarray(candidate, np.float64) - reference)))
    ok = np.allclose(candidate, reference, rtol=rtol, atol=atol)
    log(f"  {'ok  ' if ok else 'FAIL'} {what}: max |difference| {error:.2e}")
    if not ok:
        failures.append(what)


def compare_all(name, reference, candidate, failures):
    if callable(candidate):
        try:
            candidate = candidate()
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            log(f"  FAIL {name}: {error}")
            failures.append(name)
            return
    (y_ref, grads_ref), (y, grads) = reference, candidate
    compare(f"{name} output", y_ref, y, failures)
    if grads is None:
        return
    if set(grads) != set(grads_ref):
        failures.append(f"{name} gradients")
        log(f"  FAIL {name}: gradients of {sorted(grads)}, expected {sorted(grads_ref)}")
        return
    for key in sorted(grads_ref):
        compare(f"{name} d{key}", grads_ref[key], grads[key], failures)


def jax_reference(kind, params, x):
    forward, forward_backward = jax_layer(kind)
    y = np.asarray(forward(params, x))
    _, (dparams, dx) = forward_backward(params, x)
    grads = {name: np.asarray(value) for name, value in dparams.items()}
    grads["input"] = np.asarray(dx)
    return y, grads


def running_threads(fn, pid=None, seconds=2.0):
    """Runs `fn` again and again for about `seconds` while a sampler thread counts, every
    millisecond, the threads of this process (less the sampler) or of the child process
    whose id `pid()` returns that are running or ready to run (state R): threads a framework
    keeps busy, counted whether or not other tenants leave them a core. Returns the 95th
    percentile and the maximum of the counts, and CPU time over wall time (how many cores
    the run got, which on a busy machine can be fewer)."""
    import threading

    fn()
    counts, stop = [], threading.Event()

    def sample():
        sampler = threading.get_native_id()
        while not stop.is_set():
            target = os.getpid() if pid is None else pid()
            running = 0
            try:
                tasks = os.listdir(f"/proc/{target}/task") if target else []
            except OSError:
                tasks = []
            for task in tasks:
                if pid is None and int(task) == sampler:
                    continue
                try:
                    with open(f"/proc/{target}/task/{task}/stat") as stat:
                        running += stat.read().rsplit(")", 1)[1].split()[0] == "R"
                except OSError:
                    pass
            if tasks:
                counts.append(running)
            time.sleep(0.001)

    own, children = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    cpu = lambda: sum(getattr(resource.getrusage(w), f) for w in (own, children)
                      for f in ("ru_utime", "ru_stime"))
    sampler = threading.Thread(target=sample, daemon=True)
    start_cpu, start = cpu(), time.perf_counter()
    sampler.start()
    while time.perf_counter() - start < seconds:
        fn()
    stop.set()
    sampler.join()
    used = (cpu() - start_cpu) / (time.perf_counter() - start)
    counts.sort()
    return counts[int(0.95 * (len(counts) - 1))], counts[-1], used


def lstm_bench_process(binary, shape, threads, repeats, holder):
    """`lstm bench` as a child process whose id is left in `holder` while it runs."""
    batch, seq_len, input_size, hidden_size = shape
    command = [binary, "bench", "--batch", str(batch), "--seq-len", str(seq_len),
               "--input-size", str(input_size), "--hidden-size", str(hidden_size),
               "--threads", str(threads), "--repeats", str(repeats), "--json"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL) as process:
        holder["pid"] = process.pid
        process.wait()
        holder["pid"] = None


def check(args):
    seq_len, batch, input_size, hidden_size = 7, 3, 4, 5
    failures = []
    torch.manual_seed(0)
    x = torch.randn(seq_len, batch, input_size)
    x_np = x.numpy().copy()
    with tempfile.TemporaryDirectory() as directory:
        module = torch.nn.LSTM(input_size, hidden_size)
        reference = torch_reference(module, x)
        params = torch_params(module)
        log(f"lstm, T={seq_len} B={batch} I={input_size} H={hidden_size}, against nn.LSTM:")
        eager = EagerCell(input_size, hidden_size, "lstm")
        eager.load_state_dict({name: torch.from_numpy(value) for name, value in params.items()})
        compare_all("eager loop", reference, torch_reference(eager, x), failures)
        if "onnx" not in args.skip:
            session, ops = onnx_session(module, x, args.threads, directory)
            log(f"  (ONNX graph: {' '.join(ops)})")
            compare_all("ONNX Runtime", reference, (session.run(None, {"x": x_np})[0], None),
                        failures)
        if "jax" not in args.skip:
            compare_all("JAX", reference, jax_reference("lstm", params, x_np), failures)
        compare_all("lstm infer", reference,
                    lambda: lstm_infer(args.binary, "lstm", params, x_np, directory), failures)
        for cell in CUSTOM_CELLS:
            log(f"{cell}, against the eager PyTorch cell:")
            eager = EagerCell(input_size, hidden_size, cell)
            with torch.no_grad():  # away from the initial values, so that every term counts
                for p in eager.parameters():
                    p.add_(0.3 * torch.randn_like(p))
            reference = torch_reference(eager, x)
            params = torch_params(eager)
            if "compile" not in args.skip:
                compare_all("torch.compile", reference,
                            torch_reference(compiled(eager, args.compile_scope), x), failures)
            if "jax" not in args.skip:
                compare_all("JAX", reference, jax_reference(cell, params, x_np), failures)
            compare_all("lstm infer", reference,
                        lambda: lstm_infer(args.binary, cell, params, x_np, directory), failures)

        # The cores each framework's training pass (ONNX Runtime: inference) keeps busy, on
        # the first small case.
        batch, seq_len, input_size, hidden_size = shape = CASES["small"][0]
        log(f"cores used at --threads {args.threads} ({describe_binding()}): CPU time over wall "
            f"time (at most {args.threads}; fewer where other tenants take cores), and the "
            f"threads runnable at once (95th percentile, maximum of 1 ms samples)")
        x = torch.randn(seq_len, batch, input_size, requires_grad=True)
        module = torch.nn.LSTM(input_size, hidden_size)
        passes = {"nn.LSTM": torch_passes(module, x)[1]}
        if "onnx" not in args.skip:
            session, _ = onnx_session(module, x, args.threads, directory)
            feed = {"x": x.detach().numpy()}
            passes["ONNX Runtime"] = lambda: session.run(None, feed)
        if "jax" not in args.skip:
            passes["JAX"] = jax_passes("lstm", torch_params(module), x.detach().numpy())[1]
        if "compile" not in args.skip:
            cell = EagerCell(input_size, hidden_size, "forget_bias")
            passes["torch.compile"] = torch_passes(compiled(cell, args.compile_scope), x)[1]
        child = {"pid": None}
        passes["lstm bench"] = lambda: lstm_bench_process(args.binary, shape, args.threads,
                                                          200, child)
        for name, fn in passes.items():
            typical, most, used = running_threads(
                fn, pid=(lambda: child["pid"]) if name == "lstm bench" else None)
            ok = used <= args.threads * 1.05 + 0.05
            log(f"  {'ok  ' if ok else 'FAIL'} {name}: {used:.2f} cores; {typical} threads "
                f"runnable ({most} at most)")
            if not ok:
                failures.append(f"{name} threads")
    if failures:
        sys.exit(f"check failed: {', '.join(failures)}")
    print("check passed: every anchor computes the same outputs and gradients")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def describe_binding():
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus and len(cpus) < (os.cpu_count() or 0):
        return f"bound to CPUs {','.join(map(str, cpus))} of {os.cpu_count()}"
    return f"all {os.cpu_count()} CPUs, unbound"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "no AVX2"
    except OSError:
        pass
    return "flags unknown"


def versions():
    found = [f"torch {torch.__version__} (CPU capability "
             f"{torch.backends.cpu.get_cpu_capability()})"]
    for module in ("onnxruntime", "onnx", "onnxscript", "jax", "jaxlib", "numpy"):
        try:
            found.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    found.append(f"Python {platform.python_version()}")
    return ", ".join(found)


def format_ratio(ratio):
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.3f}×"


def row_name(row, cases):
    shape = cases[row if isinstance(row, int) else 0]
    return f"{'lstm' if isinstance(row, int) else row} {','.join(map(str, shape))}"


def main():
    args = ARGS
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    if args.check:
        check(args)
        return
    torch.manual_seed(0)
    cases = CASES[args.cases]
    with tempfile.TemporaryDirectory() as directory:
        runners = Runners(args, cases, directory)
        # This machine's speed drifts (other tenants) by up to 2x over minutes: a ratio of two
        # times taken far apart measures the drift, one of times taken together does not.
        per_round = []
        for number in range(args.rounds):
            log(f"round {number + 1} of {args.rounds}")
            per_round.append(runners.round())

    rows = list(range(len(cases))) + CUSTOM_CELLS
    anchors_of = {row: [a for a in ANCHORS if (row, a) in per_round[0][0]] for row in rows}

    def time_of(row, who, index):
        values = [m[(row, who)][index] for m, _, _ in per_round]
        return None if values[0] is None else statistics.median(values)

    def ratio(row, anchor, index):
        if (row, anchor) not in per_round[0][0] or per_round[0][0][(row, anchor)][index] is None:
            return None
        return statistics.median(m[(row, "lstm")][index] / m[(row, anchor)][index]
                                 for m, _, _ in per_round)

    reports = [report for _, _, round_reports in per_round for report in round_reports]
    isas = sorted({report.get("isa", "unreported") for report in reports})
    if any(report["threads"] != args.threads for report in reports):
        log(f"warning: lstm bench ran at {sorted({r['threads'] for r in reports})} threads")
    sgemm = [statistics.median(s[i] for _, s, _ in per_round)
             for i in range(len(runners.sgemm_shapes))]
    # Case 1's forward GFLOP/s over the round's best sgemm, per round.
    peak_fraction = statistics.median(round_reports[0]["gflops"] / max(s)
                                      for _, s, round_reports in per_round)
    lstm_gflops = statistics.median(round_reports[0]["gflops"] for _, _, round_reports in per_round)

    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_model()} ({cpu_flags()}), {describe_binding()}, "
          f"{args.threads} threads each, f32, medians of {args.rounds} rounds of {args.repeats} "
          f"repeats{'' if args.cases == 'full' else ', SMALL cases (not for figures)'}; "
          f"torch.compile of the cell's {args.compile_scope}")
    print(f"# lstm kernels at ISA level {', '.join(isas)} "
          f"(LSTM_ISA={os.environ.get('LSTM_ISA', 'unset')}); {versions()}")
    shapes = ", ".join(f"{m}×{k}×{n} {gflops:.1f}"
                       for (m, k, n), gflops in zip(runners.sgemm_shapes, sgemm))
    print(f"# sgemm (torch.matmul, f32, {args.threads} threads), GFLOP/s: {shapes}; "
          f"peak {max(sgemm):.1f}")
    print()

    # Times.
    header = ["case (B,T,I,H)", "pass", "lstm"] + [a for a in ANCHORS if a != "our lstm"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        for index, name in enumerate(PASSES):
            cells = [row_name(row, cases), name, f"{time_of(row, 'lstm', index):.1f} ms"]
            for anchor in header[3:]:
                value = time_of(row, anchor, index) if anchor in anchors_of[row] else None
                cells.append("" if value is None else f"{value:.1f} ms")
            print("| " + " | ".join(cells) + " |")
    print()

    # Ratios and goals.
    header = ["case (B,T,I,H)", "pass"] + [f"vs {a}" for a in ANCHORS] + ["goal", "met"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    all_met, bars = True, []
    for row in rows:
        for index, name in enumerate(PASSES):
            goals = GOALS.get((row, name), [])
            ratios = {a: ratio(row, a, index) for a in ANCHORS}
            cells = [row_name(row, cases), name]
            cells += ["" if ratios[a] is None else format_ratio(ratios[a]) for a in ANCHORS]
            checked = [(a, bound) for a, bound in goals if ratios[a] is not None]
            met = all(ratios[a] <= bound for a, bound in checked)
            missing = len(checked) < len(goals)
            all_met &= met and not missing
            cells.append(", ".join(f"≤{bound}× {a}" for a, bound in goals))
            cells.append(("yes" if met else "no") + (" (anchors skipped)" if missing else ""))
            print("| " + " | ".join(cells) + " |")
            bars.append((row_name(row, cases).replace(" ", "\n") + f"\n{name}", ratios, goals))
    met = peak_fraction >= PEAK_GOAL
    all_met &= met
    print(f"| {row_name(0, cases)} | fwd | {lstm_gflops:.1f} GFLOP/s = {100 * peak_fraction:.0f}%"
          f" of the sgemm peak |" + " |" * (len(ANCHORS) - 1)
          + f" ≥{100 * PEAK_GOAL:.0f}% sgemm peak | {'yes' if met else 'no'} |")
    print()
    print(f"every goal met: {'yes' if all_met else 'no'}")

    if args.plot:
        plot(args, bars)


def plot(args, bars):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [a for a in ANCHORS if any(ratios[a] is not None for _, ratios, _ in bars)]
    width = 0.8 / len(shown)
    figure, axis = plt.subplots(figsize=(max(10, 1.1 * len(bars)), 5))
    for k, anchor in enumerate(shown):
        offsets = [p - 0.4 + width * (k + 0.5) for p in range(len(bars))]
        values = [ratios[anchor] if ratios[anchor] is not None else 0 for _, ratios, _ in bars]
        axis.bar(offsets, values, width, label=f"vs {anchor}")
        for offset, (_, _, goals) in zip(offsets, bars):
            bound = dict(goals).get(anchor)
            if bound is not None:
                axis.hlines(bound, offset - width / 2, offset + width / 2, color="black",
                            linewidth=2, zorder=3)
    axis.plot([], [], color="black", linewidth=2, label="goal")
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xticks(list(range(len(bars))))
    axis.set_xticklabels([label for label, _, _ in bars], fontsize=8)
    axis.set_ylabel("lstm time / anchor time")
    axis.set_title(f"lstm against its anchors ({args.threads} threads, f32; below 1: lstm faster)")
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
