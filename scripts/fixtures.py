#!/usr/bin/env python3
"""Parity fixtures: what real PyTorch and real Keras 3 compute, for the Rust tests to match.

Writes one directory per case under `tests/fixtures/` (or the directory given as the first
argument). CI never runs this: the fixtures are committed, and the Rust tests only read them.
Regenerate with the pinned versions of `scripts/requirements.txt`:

    python -m venv venv && venv/bin/pip install -r scripts/requirements.txt
    venv/bin/python scripts/fixtures.py              # every case
    venv/bin/python scripts/fixtures.py --convert    # the `convert/` cases only
    venv/bin/python scripts/fixtures.py --only research   # the GRU and JANET cases only
    venv/bin/python scripts/fixtures.py --only headed     # the sLSTM and headed-LSTM cases only

Keras runs on its torch backend (`KERAS_BACKEND=torch`, set below before Keras is imported),
so one autograd computes the gradients of both frameworks' cases.

A case directory holds (see `write_case`):

- `case.json`: the cell (`cell`, a zoo name), the layer's configuration (`num_layers`,
  `bidirectional`, `merge_mode`, `proj_size`, `bias`, `batch_first`, `go_backwards`,
  `return_sequences`, `zero_output_for_mask`), `dtype` (`f32`/`f64`), `semantics`
  (`pytorch`: padded lengths as `pack_padded_sequence`; `keras`: Keras masks) and sizes.
- `weights.safetensors`: the weights under PyTorch's `state_dict` names
  (`weight_ih_l0_reverse`, …; a cell's extra parameters as `{param}_l{k}[_reverse]`).
  Keras cases also have `keras.safetensors` and `keras.npz`: the same weights under the
  paths Keras 3 gives them (`bidirectional/forward_lstm/lstm_cell/kernel`).
- `x.npy` (`(T, B, I)`, or `(B, T, I)` when `batch_first`); optional `lengths.npy` (int64,
  `(B,)`), `mask.npy` (bool, `(B, T)`), `h0.npy`/`c0.npy` (`(layers·dirs, B, ·)`).
- `y.npy`: the layer's output in the input's layout (`(dirs, B, T, H)` for Keras'
  `merge_mode=None`, which returns both directions; `(B, H_out)` without
  `return_sequences`); `h_n.npy`, `c_n.npy`: `(layers·dirs, B, ·)`.
- `grad_output.npy` (shaped like `y`) and `grads.safetensors`: the gradient of
  `sum(y * grad_output)` with respect to every weight (PyTorch names), `input` (shaped like
  `x`) and, when given, `h0` and `c0`. The `cell_gru*` cases come from `torch.nn.GRU`
  itself: no `c0`, no `c_n` (a GRU has no cell state).
- The `headed_cases` (`cell_slstm*`, `cell_lstm_heads`, `cell_lstm_diagonal`) have `heads`
  K in `case.json` and a block-diagonal `weight_hh` `(gates·H, H/K)`; the sLSTM's extra
  states are `n0.npy`/`m0.npy` in, `n_n.npy`/`m_n.npy` out and `n0`/`m0` gradients.

Besides the cases, `functions/values.safetensors` holds the spec language's functions at a
grid of points with their autograd derivatives (see `functions_case`); `--only functions`
rewrites that file alone.

Every hand-written PyTorch cell loop is first checked against `nn.LSTM` itself (the `lstm`
cell, same loop), so the loop that defines the custom cells is known to follow PyTorch's
stacking, bidirectional and packed-sequence semantics.
"""

import json
import os
import shutil
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TORCH_DTYPES = {"f32": torch.float32, "f64": torch.float64}
NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64}
KERAS_DTYPES = {"f32": "float32", "f64": "float64"}
LN_EPS = 1e-5

# Sizes every case shares unless it says otherwise: small enough that all fixtures together
# stay far below a few megabytes, large enough that no dimension is degenerate.
SEQ_LEN, BATCH, INPUT_SIZE, HIDDEN_SIZE = 5, 3, 4, 5

# Extra parameters of each custom cell: name -> length in hidden units (the number of gate
# blocks for `Gates` parameters, 1 for `PerUnit`).
CELL_PARAMS = {
    "lstm": {},
    "forget_bias": {"forget_bias": 1},
    "scaled_forget": {},
    "peephole": {"peephole_i": 1, "peephole_f": 1, "peephole_o": 1},
    "cifg": {},
    "hard_sigmoid": {},
    "layer_norm": {"gamma_x": 4, "gamma_h": 4, "gamma_c": 1, "beta_c": 1},
    "gru": {},
    "janet": {},
    "slstm": {},
}

# JANET's shift of the forget gate's pre-activation (van der Westhuizen & Lasenby 2018: 1).
JANET_BETA = 1.0


def gate_blocks(cell):
    """Gate blocks of the cell's weights: CIFG has no input gate (f, g, o); a GRU has r, z, n;
    JANET f and g."""
    return {"cifg": 3, "gru": 3, "janet": 2}.get(cell, 4)


def layer_norm(values):
    """PyTorch's layer norm over the last axis, without gain or bias (biased variance)."""
    mean = values.mean(dim=-1, keepdim=True)
    var = values.var(dim=-1, unbiased=False, keepdim=True)
    return (values - mean) / torch.sqrt(var + LN_EPS)


def cell_step(cell, p, x_t, h_prev, c_prev):
    """One step of a zoo cell, as the README and `lstm cells` define it.

    `p` holds one layer-direction's tensors under their names without the `_l{k}` suffix.
    Returns the new `(h, c)`; `h` is projected by `weight_hr` when present (LSTMP).
    """
    zx = x_t @ p["weight_ih"].T
    zh = h_prev @ p["weight_hh"].T
    if cell == "layer_norm":
        # haste's LayerNormLSTM: both projections normalised over all gates jointly.
        zx = layer_norm(zx) * p["gamma_x"]
        zh = layer_norm(zh) * p["gamma_h"]
    z = zx + zh
    if "bias_ih" in p:
        z = z + p["bias_ih"] + p["bias_hh"]
    sigmoid, tanh = torch.sigmoid, torch.tanh
    if cell == "janet":
        # The forget gate alone, shifted by beta; the cell state is the output.
        z_f, z_g = z.chunk(2, dim=1)
        f = sigmoid(z_f - JANET_BETA)
        c = f * c_prev + (1.0 - f) * tanh(z_g)
        return c, c
    if cell == "cifg":
        z_f, z_g, z_o = z.chunk(3, dim=1)
        f = sigmoid(z_f)
        i = 1.0 - f
    else:
        z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
        if cell == "hard_sigmoid":
            # Keras 3 and PyTorch: relu6(x + 3) / 6.
            i, f = torch.nn.functional.hardsigmoid(z_i), torch.nn.functional.hardsigmoid(z_f)
        elif cell == "peephole":
            i = sigmoid(z_i + p["peephole_i"] * c_prev)
            f = sigmoid(z_f + p["peephole_f"] * c_prev)
        elif cell == "forget_bias":
            i, f = sigmoid(z_i), sigmoid(z_f + p["forget_bias"])
        elif cell == "scaled_forget":
            i, f = sigmoid(z_i), sigmoid(1.5 * z_f)
        else:
            i, f = sigmoid(z_i), sigmoid(z_f)
    g = tanh(z_g)
    c = f * c_prev + i * g
    if cell == "hard_sigmoid":
        o = torch.nn.functional.hardsigmoid(z_o)
    elif cell == "peephole":
        o = sigmoid(z_o + p["peephole_o"] * c)
    else:
        o = sigmoid(z_o)
    if cell == "layer_norm":
        h = o * tanh(layer_norm(c) * p["gamma_c"] + p["beta_c"])
    else:
        h = o * tanh(c)
    if "weight_hr" in p:
        h = h @ p["weight_hr"].T
    return h, c


def reference_layers(cell, params, x, config, lengths, h0, c0):
    """The whole (stacked, bidirectional) layer as PyTorch defines it, one step at a time.

    `x` is time-major. Past a sequence's length the state stays as it was and the output is
    zero, which is what `pack_padded_sequence` gives: the reverse direction starts at the
    sequence's last valid step.
    """
    seq_len, batch, _ = x.shape
    dirs = 2 if config["bidirectional"] else 1
    if lengths is None:
        lengths = torch.full((batch,), seq_len, dtype=torch.int64)
    hs, cs = [], []
    layer_input = x
    for layer in range(config["num_layers"]):
        outputs = []
        for direction in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            p = {name[: -len(suffix)]: t for name, t in params.items() if name.endswith(suffix)}
            index = layer * dirs + direction
            h, c = h0[index], c0[index]
            steps = range(seq_len - 1, -1, -1) if direction else range(seq_len)
            out = [None] * seq_len
            for t in steps:
                h_new, c_new = cell_step(cell, p, layer_input[t], h, c)
                valid = (t < lengths).unsqueeze(1)
                h = torch.where(valid, h_new, h)
                c = torch.where(valid, c_new, c)
                out[t] = torch.where(valid, h_new, torch.zeros_like(h_new))
            outputs.append(torch.stack(out))
            hs.append(h)
            cs.append(c)
        layer_input = torch.cat(outputs, dim=2)
    return layer_input, torch.stack(hs), torch.stack(cs)


def torch_params(cell, config, input_size, hidden, dtype, generator, heads=1):
    """Random weights for `cell` under PyTorch's names, as leaf tensors requiring grad.
    With `heads` K, `weight_hh` is block-diagonal: `(gates·H, H/K)` (see `headed_recurrence`)."""
    proj = config["proj_size"]
    out_size = proj or hidden
    dirs = 2 if config["bidirectional"] else 1
    rows = gate_blocks(cell) * hidden
    bound = 0.6

    def uniform(*shape):
        values = (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        return values.to(dtype).requires_grad_()

    params = {}
    for layer in range(config["num_layers"]):
        layer_input = input_size if layer == 0 else out_size * dirs
        for direction in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            params["weight_ih" + suffix] = uniform(rows, layer_input)
            assert out_size % heads == 0, (out_size, heads)
            params["weight_hh" + suffix] = uniform(rows, out_size // heads)
            if config["bias"]:
                params["bias_ih" + suffix] = uniform(rows)
                params["bias_hh" + suffix] = uniform(rows)
            if proj:
                params["weight_hr" + suffix] = uniform(proj, hidden)
            for name, blocks in CELL_PARAMS[cell].items():
                params[name + suffix] = uniform(blocks * hidden)
    return params


def nn_lstm(params, x, config, lengths, h0, c0, input_size, hidden):
    """`nn.LSTM` itself with the given weights; time-major `x` in, time-major output out."""
    module = torch.nn.LSTM(
        input_size,
        hidden,
        num_layers=config["num_layers"],
        bias=config["bias"],
        bidirectional=config["bidirectional"],
        proj_size=config["proj_size"],
    ).to(x.dtype)

    def run(inputs):
        # `functional_call` runs the module on `params` themselves, so autograd reaches them.
        return torch.func.functional_call(module, params, (inputs, (h0, c0)))

    if lengths is None:
        output, (h_n, c_n) = run(x)
        return output, h_n, c_n
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, (h_n, c_n) = run(packed)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, total_length=x.shape[0])
    return output, h_n, c_n


def to_numpy(tensor):
    return np.ascontiguousarray(tensor.detach().cpu().numpy())


def write_case(root, name, meta, arrays, weights, grads, keras_weights=None):
    """One case directory: `case.json`, the arrays as `.npy`, weights and gradients."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "case.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for stem, array in arrays.items():
        if array is not None:
            np.save(directory / f"{stem}.npy", np.ascontiguousarray(array))
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, directory / "weights.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in grads.items()}, directory / "grads.safetensors")
    if keras_weights is not None:
        keras_weights = {k: np.ascontiguousarray(v) for k, v in keras_weights.items()}
        save_file(keras_weights, directory / "keras.safetensors")
        np.savez(directory / "keras.npz", **keras_weights)


def base_config(**overrides):
    config = {
        "num_layers": 1,
        "bidirectional": False,
        "merge_mode": "concat",
        "proj_size": 0,
        "bias": True,
        "batch_first": False,
        "go_backwards": False,
        "return_sequences": True,
        "zero_output_for_mask": False,
    }
    config.update(overrides)
    return config


def pytorch_case(root, name, cell, seed, dtype="f64", lengths=None, initial_state=False,
                 seq_len=SEQ_LEN, hidden=HIDDEN_SIZE, description="", **overrides):
    """A case with PyTorch semantics: `nn.LSTM` for the standard cell, the reference loop
    (checked against `nn.LSTM`) for the others."""
    config = base_config(**overrides)
    torch_dtype = TORCH_DTYPES[dtype]
    generator = torch.Generator().manual_seed(seed)
    params = torch_params(cell, config, INPUT_SIZE, hidden, torch_dtype, generator)
    dirs = 2 if config["bidirectional"] else 1
    out_size = config["proj_size"] or hidden
    states = config["num_layers"] * dirs
    x = torch.randn(seq_len, BATCH, INPUT_SIZE, generator=generator, dtype=torch.float64)
    x = x.to(torch_dtype).requires_grad_()
    if initial_state:
        h0 = (torch.randn(states, BATCH, out_size, generator=generator, dtype=torch.float64) * 0.5)
        c0 = (torch.randn(states, BATCH, hidden, generator=generator, dtype=torch.float64) * 0.5)
        h0, c0 = h0.to(torch_dtype).requires_grad_(), c0.to(torch_dtype).requires_grad_()
    else:
        h0 = torch.zeros(states, BATCH, out_size, dtype=torch_dtype)
        c0 = torch.zeros(states, BATCH, hidden, dtype=torch_dtype)
    length_tensor = None if lengths is None else torch.tensor(lengths, dtype=torch.int64)

    y, h_n, c_n = reference_layers(cell, params, x, config, length_tensor, h0, c0)
    if cell == "lstm":
        # The loop is the definition of the custom cells: check it against PyTorch itself,
        # then use PyTorch's own numbers for the standard cell.
        y_ref, h_ref, c_ref = nn_lstm(params, x, config, length_tensor, h0, c0, INPUT_SIZE, hidden)
        tolerance = 1e-12 if dtype == "f64" else 1e-5
        for ours, theirs in [(y, y_ref), (h_n, h_ref), (c_n, c_ref)]:
            assert torch.allclose(ours, theirs, atol=tolerance, rtol=tolerance), name
        y, h_n, c_n = y_ref, h_ref, c_ref

    grad_output = torch.randn(y.shape, generator=generator, dtype=torch.float64).to(torch_dtype)
    wrt = dict(params)
    wrt["input"] = x
    if initial_state:
        wrt["h0"], wrt["c0"] = h0, c0
    gradients = torch.autograd.grad((y * grad_output).sum(), list(wrt.values()))
    grads = {key: to_numpy(g) for key, g in zip(wrt, gradients)}

    layout = (lambda t: to_numpy(t).swapaxes(0, 1)) if config["batch_first"] else to_numpy
    grads["input"] = grads["input"].swapaxes(0, 1) if config["batch_first"] else grads["input"]
    meta = dict(config, cell=cell, dtype=dtype, semantics="pytorch", input_size=INPUT_SIZE,
                hidden_size=hidden, description=description)
    arrays = {
        "x": layout(x),
        "lengths": None if lengths is None else np.array(lengths, dtype=np.int64),
        "h0": to_numpy(h0) if initial_state else None,
        "c0": to_numpy(c0) if initial_state else None,
        "y": layout(y),
        "h_n": to_numpy(h_n),
        "c_n": to_numpy(c_n),
        "grad_output": layout(grad_output),
    }
    write_case(root, name, meta, arrays, {k: to_numpy(v) for k, v in params.items()}, grads)


def gru_case(root, name, seed, dtype="f64", lengths=None, initial_state=False, description="",
             **overrides):
    """`torch.nn.GRU` itself, its `state_dict` as the zoo's `gru` cell loads it (rows r, z, n in
    the i, f, g blocks). A GRU has no cell state: `h0` alone, and no `c_n`."""
    config = base_config(**overrides)
    torch_dtype = TORCH_DTYPES[dtype]
    generator = torch.Generator().manual_seed(seed)
    params = torch_params("gru", config, INPUT_SIZE, HIDDEN_SIZE, torch_dtype, generator)
    dirs = 2 if config["bidirectional"] else 1
    states = config["num_layers"] * dirs
    x = torch.randn(SEQ_LEN, BATCH, INPUT_SIZE, generator=generator, dtype=torch.float64)
    x = x.to(torch_dtype).requires_grad_()
    if initial_state:
        h0 = torch.randn(states, BATCH, HIDDEN_SIZE, generator=generator, dtype=torch.float64) * 0.5
        h0 = h0.to(torch_dtype).requires_grad_()
    else:
        h0 = torch.zeros(states, BATCH, HIDDEN_SIZE, dtype=torch_dtype)
    module = torch.nn.GRU(
        INPUT_SIZE,
        HIDDEN_SIZE,
        num_layers=config["num_layers"],
        bias=config["bias"],
        bidirectional=config["bidirectional"],
    ).to(torch_dtype)

    def run(inputs):
        return torch.func.functional_call(module, params, (inputs, h0))

    if lengths is None:
        y, h_n = run(x)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths, dtype=torch.int64), enforce_sorted=False)
        y, h_n = run(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=SEQ_LEN)

    grad_output = torch.randn(y.shape, generator=generator, dtype=torch.float64).to(torch_dtype)
    wrt = dict(params)
    wrt["input"] = x
    if initial_state:
        wrt["h0"] = h0
    gradients = torch.autograd.grad((y * grad_output).sum(), list(wrt.values()))
    grads = {key: to_numpy(g) for key, g in zip(wrt, gradients)}

    layout = (lambda t: to_numpy(t).swapaxes(0, 1)) if config["batch_first"] else to_numpy
    grads["input"] = grads["input"].swapaxes(0, 1) if config["batch_first"] else grads["input"]
    meta = dict(config, cell="gru", dtype=dtype, semantics="pytorch", input_size=INPUT_SIZE,
                hidden_size=HIDDEN_SIZE, description=description)
    arrays = {
        "x": layout(x),
        "lengths": None if lengths is None else np.array(lengths, dtype=np.int64),
        "h0": to_numpy(h0) if initial_state else None,
        "y": layout(y),
        "h_n": to_numpy(h_n),
        "grad_output": layout(grad_output),
    }
    write_case(root, name, meta, arrays, {k: to_numpy(v) for k, v in params.items()}, grads)


def research_cases(root):
    """The cells beyond the LSTM: `torch.nn.GRU` itself (one layer, float32, two bidirectional
    layers with lengths, `batch_first` and an initial state) and JANET by the reference loop."""
    gru_case(root, "cell_gru", 35, description="torch.nn.GRU, one layer")
    gru_case(root, "cell_gru_f32", 36, dtype="f32", lengths=[5, 2, 4],
             description="torch.nn.GRU in float32 with lengths")
    gru_case(root, "cell_gru_stacked_bidirectional", 37, num_layers=2, bidirectional=True,
             lengths=[3, 5, 1], batch_first=True, initial_state=True,
             description="torch.nn.GRU: two bidirectional layers, lengths, batch_first, h0")
    pytorch_case(root, "cell_janet", "janet", 38, description="JANET (forget gate only, h = c), one layer")
    pytorch_case(root, "cell_janet_stacked_bidirectional", "janet", 39, num_layers=2,
                 bidirectional=True, lengths=[4, 1, 5], initial_state=True,
                 description="JANET: two bidirectional layers, lengths, initial states")


# --- sLSTM and block-diagonal ("headed") recurrence ---
#
# `weight_hh` of a layer with K heads is `(gates·H, H/K)`: row `r = gate·H + j` belongs to unit
# `j` of head `k = j // (H/K)`, which reads only `h_prev[k·H/K:(k+1)·H/K]`. K = 1 is the dense
# PyTorch layout, K = H a diagonal (IndRNN-style) recurrence.

SLSTM_STATES = ["h", "c", "n", "m"]
LSTM_STATES = ["h", "c"]


def headed_recurrence(weight_hh, h_prev, heads):
    """`(block-diagonal W_hh) h_prev`, `(B, gates·H)`."""
    rows, width = weight_hh.shape
    batch, hidden = h_prev.shape
    assert hidden == heads * width, (hidden, heads, width)
    # (gate, head, unit within the head, input within the head)
    w = weight_hh.reshape(rows // hidden, heads, width, width)
    return torch.einsum("gkje,bke->bgkj", w, h_prev.reshape(batch, heads, width)).reshape(batch, rows)


def dense_weight_hh(weight_hh, heads):
    """The block-diagonal `weight_hh` as the dense `(gates·H, H)` matrix it stands for (zero
    off the heads' blocks): what `nn.LSTM` multiplies by."""
    rows, width = weight_hh.shape
    hidden = heads * width
    return torch.cat([torch.block_diag(*gate.split(width)) for gate in weight_hh.split(hidden)])


def headed_lstm_step(p, x_t, state, heads):
    """PyTorch's LSTM step (gates i, f, g, o) with the block-diagonal recurrence."""
    h, c = state
    z = x_t @ p["weight_ih"].T + headed_recurrence(p["weight_hh"], h, heads)
    if "bias_ih" in p:
        z = z + p["bias_ih"] + p["bias_hh"]
    z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
    c = torch.sigmoid(z_f) * c + torch.sigmoid(z_i) * torch.tanh(z_g)
    h = torch.sigmoid(z_o) * torch.tanh(c)
    return h, (h, c)


def slstm_step(p, x_t, state, heads, stabilised=True):
    """One sLSTM step (xLSTM, Beck et al. 2024), gate blocks i, f, z, o; exponential input
    gate, sigmoid forget gate, normaliser `n` and (stabilised) log-scale stabiliser `m`:

        m = max(logsigmoid(z_f) + m_prev, z_i)
        i' = exp(z_i - m),  f' = exp(logsigmoid(z_f) + m_prev - m)
        c = f' c_prev + i' tanh(z_z),  n = f' n_prev + i',  h = sigmoid(z_o) c / n

    Unstabilised (`stabilised=False`, for the check only): i' = exp(z_i), f' = sigmoid(z_f),
    `m` carried unchanged. No stop-gradient anywhere."""
    h, c, n, m = state
    z = x_t @ p["weight_ih"].T + headed_recurrence(p["weight_hh"], h, heads)
    if "bias_ih" in p:
        z = z + p["bias_ih"] + p["bias_hh"]
    z_i, z_f, z_z, z_o = z.chunk(4, dim=1)
    if stabilised:
        log_f = torch.nn.functional.logsigmoid(z_f)
        m_new = torch.maximum(log_f + m, z_i)
        i = torch.exp(z_i - m_new)
        f = torch.exp(log_f + m - m_new)
    else:
        m_new = m
        i = torch.exp(z_i)
        f = torch.sigmoid(z_f)
    c = f * c + i * torch.tanh(z_z)
    n = f * n + i
    h = torch.sigmoid(z_o) * c / n
    return h, (h, c, n, m_new)


def headed_layers(step, params, x, config, lengths, initial):
    """`reference_layers` for a cell whose state is a tuple of `(B, H)` tensors (`h` first):
    `step(p, x_t, state) -> (output, new_state)`; `initial` holds one `(layers·dirs, B, H)`
    tensor per state. PyTorch's packed-sequence semantics: zero outputs past a length, final
    states from the last valid step, the reverse direction over the valid part only, stacked
    layers reading `[forward, reverse]`. Returns the output and the final states, stacked."""
    seq_len, batch, _ = x.shape
    dirs = 2 if config["bidirectional"] else 1
    if lengths is None:
        lengths = torch.full((batch,), seq_len, dtype=torch.int64)
    finals = []
    layer_input = x
    for layer in range(config["num_layers"]):
        outputs = []
        for direction in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            p = {name[: -len(suffix)]: t for name, t in params.items() if name.endswith(suffix)}
            state = tuple(s[layer * dirs + direction] for s in initial)
            steps = range(seq_len - 1, -1, -1) if direction else range(seq_len)
            out = [None] * seq_len
            for t in steps:
                output, new = step(p, layer_input[t], state)
                valid = (t < lengths).unsqueeze(1)
                state = tuple(torch.where(valid, a, b) for a, b in zip(new, state))
                out[t] = torch.where(valid, output, torch.zeros_like(output))
            outputs.append(torch.stack(out))
            finals.append(state)
        layer_input = torch.cat(outputs, dim=2)
    return layer_input, [torch.stack(states) for states in zip(*finals)]


def check_headed(cell, params, x, config, lengths, initial, heads, name):
    """The checks that make the loop trustworthy, in float64 on detached copies:

    - the block-diagonal product equals the dense block-diagonal matrix's;
    - `lstm`: the loop with K heads equals the loop with K = 1 on the dense block-diagonal
      `weight_hh`, and that equals `nn.LSTM` itself (with `pack_padded_sequence`);
    - `slstm`: the stabilised loop's `h` (outputs and `h_n`) equals the unstabilised form's,
      whose state starts at `c0·exp(m0)`, `n0·exp(m0)`; and `c_n`, `n_n` equal the
      unstabilised ones times `exp(-m_n)`."""
    tolerance = 1e-10
    params = {k: v.detach().double() for k, v in params.items()}
    x = x.detach().double()
    initial = [s.detach().double() for s in initial]

    def close(ours, theirs, what):
        assert torch.allclose(ours, theirs, atol=tolerance, rtol=tolerance), (name, what)

    for key, weight in params.items():
        if key.startswith("weight_hh"):
            h = torch.randn(3, weight.shape[1] * heads, dtype=torch.float64)
            close(headed_recurrence(weight, h, heads), h @ dense_weight_hh(weight, heads).T, key)
    if cell == "lstm":
        dense = {k: dense_weight_hh(v, heads) if k.startswith("weight_hh") else v for k, v in params.items()}
        y, (h_n, c_n) = headed_layers(lambda p, x_t, s: headed_lstm_step(p, x_t, s, heads),
                                      params, x, config, lengths, initial)
        y1, (h1, c1) = headed_layers(lambda p, x_t, s: headed_lstm_step(p, x_t, s, 1),
                                     dense, x, config, lengths, initial)
        hidden = initial[0].shape[2]
        y_ref, h_ref, c_ref = nn_lstm(dense, x, config, lengths, initial[0], initial[1], x.shape[2], hidden)
        for what, ours, k1, theirs in [("y", y, y1, y_ref), ("h_n", h_n, h1, h_ref), ("c_n", c_n, c1, c_ref)]:
            close(k1, theirs, what + " (K = 1 against nn.LSTM)")
            close(ours, theirs, what + f" (K = {heads} against nn.LSTM)")
    else:
        assert cell == "slstm", cell
        y, (h_n, c_n, n_n, m_n) = headed_layers(lambda p, x_t, s: slstm_step(p, x_t, s, heads),
                                                params, x, config, lengths, initial)
        h0, c0, n0, m0 = initial
        raw = [h0, c0 * torch.exp(m0), n0 * torch.exp(m0), m0]
        y_u, (h_u, c_u, n_u, _) = headed_layers(
            lambda p, x_t, s: slstm_step(p, x_t, s, heads, stabilised=False),
            params, x, config, lengths, raw)
        close(y, y_u, "y (stabilised against unstabilised)")
        close(h_n, h_u, "h_n (stabilised against unstabilised)")
        close(c_n, c_u * torch.exp(-m_n), "c_n exp(m_n) against the unstabilised c_n")
        close(n_n, n_u * torch.exp(-m_n), "n_n exp(m_n) against the unstabilised n_n")


def headed_case(root, name, cell, seed, heads, dtype="f64", lengths=None, initial_state=False,
                hidden=HIDDEN_SIZE, description="", **overrides):
    """A case of `slstm` or of the `lstm` cell with K heads, by `headed_layers` (checked by
    `check_headed`). `case.json` has `heads`; the sLSTM's `n`, `m` states are `n0`/`m0`
    inputs, `n_n`/`m_n` outputs, and `n0`/`m0` gradients like `h0`/`c0`'s."""
    assert config_is_plain(overrides), overrides
    config = base_config(**overrides)
    torch_dtype = TORCH_DTYPES[dtype]
    generator = torch.Generator().manual_seed(seed)
    params = torch_params(cell, config, INPUT_SIZE, hidden, torch_dtype, generator, heads=heads)
    dirs = 2 if config["bidirectional"] else 1
    states = config["num_layers"] * dirs
    names = SLSTM_STATES if cell == "slstm" else LSTM_STATES
    x = torch.randn(SEQ_LEN, BATCH, INPUT_SIZE, generator=generator, dtype=torch.float64)
    x = x.to(torch_dtype).requires_grad_()
    initial = []
    for state in names:
        if not initial_state:
            value = torch.zeros(states, BATCH, hidden, dtype=torch.float64)
        elif state == "n":
            # A normaliser is a sum of positive input gates: it stays positive.
            value = torch.rand(states, BATCH, hidden, generator=generator, dtype=torch.float64) + 0.5
        else:
            value = torch.randn(states, BATCH, hidden, generator=generator, dtype=torch.float64) * 0.5
        value = value.to(torch_dtype)
        initial.append(value.requires_grad_() if initial_state else value)
    length_tensor = None if lengths is None else torch.tensor(lengths, dtype=torch.int64)

    check_headed(cell, params, x, config, length_tensor, initial, heads, name)
    if cell == "slstm":
        step = lambda p, x_t, s: slstm_step(p, x_t, s, heads)  # noqa: E731
    else:
        step = lambda p, x_t, s: headed_lstm_step(p, x_t, s, heads)  # noqa: E731
    y, finals = headed_layers(step, params, x, config, length_tensor, initial)

    grad_output = torch.randn(y.shape, generator=generator, dtype=torch.float64).to(torch_dtype)
    wrt = dict(params)
    wrt["input"] = x
    if initial_state:
        wrt.update({f"{state}0": value for state, value in zip(names, initial)})
    gradients = torch.autograd.grad((y * grad_output).sum(), list(wrt.values()))
    grads = {key: to_numpy(g) for key, g in zip(wrt, gradients)}

    meta = dict(config, cell=cell, heads=heads, dtype=dtype, semantics="pytorch",
                input_size=INPUT_SIZE, hidden_size=hidden, description=description)
    arrays = {
        "x": to_numpy(x),
        "lengths": None if lengths is None else np.array(lengths, dtype=np.int64),
        "y": to_numpy(y),
        "grad_output": to_numpy(grad_output),
    }
    for state, value, final in zip(names, initial, finals):
        arrays[f"{state}0"] = to_numpy(value) if initial_state else None
        arrays[f"{state}_n"] = to_numpy(final)
    write_case(root, name, meta, arrays, {k: to_numpy(v) for k, v in params.items()}, grads)


def config_is_plain(overrides):
    """The headed cases are time-major PyTorch layers without projection (LSTMP's `h` is not
    `H` wide, so it has no heads)."""
    return not overrides.get("batch_first") and not overrides.get("proj_size")


# The cases `headed_cases` writes (`--only headed` deletes and rewrites these alone).
HEADED_CASES = [
    "cell_slstm",
    "cell_slstm_heads",
    "cell_slstm_stacked_bidirectional",
    "cell_slstm_f32",
    "cell_slstm_initial_state",
    "cell_lstm_heads",
    "cell_lstm_diagonal",
]


def headed_cases(root):
    """sLSTM (K = 1 and K = 4 heads of 2 units) and the standard LSTM with a block-diagonal
    recurrence (K = 4, and K = H = 8: diagonal). Seeds 60-66."""
    headed_case(root, "cell_slstm", "slstm", 60, heads=1, description="sLSTM, one layer, one head")
    headed_case(root, "cell_slstm_heads", "slstm", 61, heads=4, hidden=8,
                description="sLSTM, one layer, hidden 8 in 4 heads (block-diagonal recurrence)")
    headed_case(root, "cell_slstm_stacked_bidirectional", "slstm", 62, heads=2, hidden=8,
                num_layers=2, bidirectional=True, lengths=[4, 1, 5],
                description="sLSTM: two bidirectional layers, lengths, hidden 8 in 2 heads")
    headed_case(root, "cell_slstm_f32", "slstm", 63, heads=1, dtype="f32", lengths=[2, 5, 3],
                description="sLSTM in float32 with lengths, one head")
    headed_case(root, "cell_slstm_initial_state", "slstm", 64, heads=1, num_layers=2,
                initial_state=True,
                description="sLSTM: two layers, random initial h0, c0, n0 (positive), m0")
    headed_case(root, "cell_lstm_heads", "lstm", 65, heads=4, hidden=8, bidirectional=True,
                lengths=[3, 5, 2],
                description="LSTM with weight_hh block-diagonal in 4 heads, bidirectional, lengths")
    headed_case(root, "cell_lstm_diagonal", "lstm", 66, heads=8, hidden=8, num_layers=2,
                description="LSTM with diagonal weight_hh (heads = hidden = 8, IndRNN-style), two layers")


def keras_lstm(units, config, recurrent_activation="sigmoid", unit_forget_bias=True):
    return keras.layers.LSTM(
        units,
        recurrent_activation=recurrent_activation,
        use_bias=config["bias"],
        unit_forget_bias=unit_forget_bias,
        return_sequences=config["return_sequences"],
        return_state=True,
        go_backwards=config["go_backwards"],
        zero_output_for_mask=config["zero_output_for_mask"],
    )


def keras_to_pytorch(path_weights, layer_of_prefix):
    """Keras weights (`{prefix}/kernel`, …) to PyTorch names: transposed kernels, the one
    Keras bias as `bias_ih` with a zero `bias_hh`."""
    params = {}
    for path, value in path_weights.items():
        prefix, leaf = path.rsplit("/", 1)
        suffix = layer_of_prefix(prefix)
        if leaf == "kernel":
            params["weight_ih" + suffix] = value.T
        elif leaf == "recurrent_kernel":
            params["weight_hh" + suffix] = value.T
        elif leaf == "bias":
            params["bias_ih" + suffix] = value
            params["bias_hh" + suffix] = np.zeros_like(value)
        else:
            raise ValueError(f"unexpected Keras weight {path}")
    return params


def keras_suffix(prefix):
    """PyTorch suffix of a Keras weight prefix: stacked layers `lstm`, `lstm_1`, … in
    creation order; `forward_`/`backward_` sublayers of `Bidirectional`."""
    parts = prefix.split("/")
    reverse = any(part.startswith("backward_") for part in parts)
    head = parts[0]
    layer = int(head.rsplit("_", 1)[1]) if head.rsplit("_", 1)[-1].isdigit() else 0
    return f"_l{layer}" + ("_reverse" if reverse else "")


def keras_case(root, name, seed, dtype="f64", mask=None, initial_state=False,
               bidirectional=False, merge_mode="concat", num_layers=1, recurrent_activation="sigmoid",
               randomize_bias=True, description="", **overrides):
    """A case run by Keras 3 itself (`LSTM`, `Bidirectional`, stacked `LSTM`s)."""
    keras.backend.clear_session()  # layer names restart at `lstm`, `bidirectional`
    keras.config.set_floatx(KERAS_DTYPES[dtype])
    cell = "hard_sigmoid" if recurrent_activation == "hard_sigmoid" else "lstm"
    config = base_config(batch_first=True, bidirectional=bidirectional,
                         merge_mode=merge_mode if bidirectional else "concat",
                         num_layers=num_layers, **overrides)
    config["return_sequences"] = overrides.get("return_sequences", True)
    torch_dtype = TORCH_DTYPES[dtype]
    rng = np.random.default_rng(seed)
    hidden = HIDDEN_SIZE
    dirs = 2 if bidirectional else 1

    layers = []
    for layer in range(num_layers):
        last = layer == num_layers - 1
        layer_config = dict(config, return_sequences=config["return_sequences"] or not last)
        if bidirectional:
            layers.append(keras.layers.Bidirectional(
                keras_lstm(hidden, layer_config, recurrent_activation), merge_mode=merge_mode))
        else:
            layers.append(keras_lstm(hidden, layer_config, recurrent_activation))

    x_np = rng.standard_normal((BATCH, SEQ_LEN, INPUT_SIZE)) * (2.0 if cell == "hard_sigmoid" else 1.0)
    x = torch.tensor(x_np, dtype=torch_dtype, requires_grad=True)
    mask_t = None if mask is None else torch.tensor(np.array(mask, dtype=bool))
    states = num_layers * dirs
    h0 = c0 = None
    if initial_state:
        h0 = torch.tensor(rng.standard_normal((states, BATCH, hidden)) * 0.5, dtype=torch_dtype, requires_grad=True)
        c0 = torch.tensor(rng.standard_normal((states, BATCH, hidden)) * 0.5, dtype=torch_dtype, requires_grad=True)

    # Build, then give every weight random values (except a kept unit-forget-bias init), or
    # the weights of a PyTorch `nn.LSTM` converted to Keras' layout.
    hs, cs = [], []
    layer_input = x
    for index, layer in enumerate(layers):
        kwargs = {}
        if mask_t is not None:
            kwargs["mask"] = mask_t
        if initial_state:
            first = index * dirs
            init = [h0[first], c0[first]] + ([h0[first + 1], c0[first + 1]] if bidirectional else [])
            kwargs["initial_state"] = init
        layer.build(tuple(layer_input.shape))
        for weight in layer.weights:
            leaf = weight.path.rsplit("/", 1)[1]
            if leaf == "bias" and not randomize_bias:
                continue
            weight.assign(rng.uniform(-0.6, 0.6, weight.shape))
        result = layer(layer_input, **kwargs)
        if bidirectional and merge_mode is None:
            outputs, states_out = result[:2], result[2:]
            output = torch.stack(outputs)
        else:
            output, states_out = result[0], result[1:]
        hs += [states_out[0]] + ([states_out[2]] if bidirectional else [])
        cs += [states_out[1]] + ([states_out[3]] if bidirectional else [])
        layer_input = output

    y = layer_input
    h_n, c_n = torch.stack(hs), torch.stack(cs)
    weights = [w for layer in layers for w in layer.weights]
    keras_weights = {w.path: to_numpy(w.value) for w in weights}
    grad_output = torch.tensor(rng.standard_normal(tuple(y.shape)), dtype=torch_dtype)
    wrt = [w.value for w in weights] + [x] + ([h0, c0] if initial_state else [])
    gradients = torch.autograd.grad((y * grad_output).sum(), wrt)
    keras_grads = {w.path: to_numpy(g) for w, g in zip(weights, gradients)}
    grads = keras_to_pytorch(keras_grads, keras_suffix)
    for key in list(grads):
        if key.startswith("bias_hh"):
            # The Keras bias stands for b_ih + b_hh: both have its gradient.
            grads[key] = grads["bias_ih" + key[len("bias_hh"):]]
    grads["input"] = to_numpy(gradients[len(weights)])
    if initial_state:
        grads["h0"], grads["c0"] = to_numpy(gradients[-2]), to_numpy(gradients[-1])

    meta = dict(config, cell=cell, dtype=dtype, semantics="keras", input_size=INPUT_SIZE,
                hidden_size=hidden, description=description)
    arrays = {
        "x": to_numpy(x),
        "mask": None if mask is None else np.array(mask, dtype=bool),
        "h0": None if h0 is None else to_numpy(h0),
        "c0": None if c0 is None else to_numpy(c0),
        "y": to_numpy(y),
        "h_n": to_numpy(h_n),
        "c_n": to_numpy(c_n),
        "grad_output": to_numpy(grad_output),
    }
    write_case(root, name, meta, arrays, keras_to_pytorch(keras_weights, keras_suffix), grads, keras_weights)


def keras_from_pytorch_case(root, name, seed, description=""):
    """`nn.LSTM` weights (non-zero `bias_hh`) converted to Keras' layout by hand and run by
    Keras: both frameworks agree, and the Rust export must produce the same Keras file."""
    keras.backend.clear_session()
    keras.config.set_floatx("float64")
    config = base_config(batch_first=True, bidirectional=True)
    generator = torch.Generator().manual_seed(seed)
    hidden = HIDDEN_SIZE
    params = torch_params("lstm", config, INPUT_SIZE, hidden, torch.float64, generator)
    x = torch.randn(BATCH, SEQ_LEN, INPUT_SIZE, generator=generator, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(2, BATCH, hidden, dtype=torch.float64)
    y, h_n, c_n = nn_lstm(params, x.transpose(0, 1), config, None, zeros, zeros, INPUT_SIZE, hidden)
    y = y.transpose(0, 1)

    layer = keras.layers.Bidirectional(keras_lstm(hidden, config))
    layer.build(tuple(x.shape))
    for weight in layer.weights:
        prefix, leaf = weight.path.rsplit("/", 1)
        suffix = keras_suffix(prefix)
        if leaf == "kernel":
            value = params["weight_ih" + suffix].T
        elif leaf == "recurrent_kernel":
            value = params["weight_hh" + suffix].T
        else:
            value = params["bias_ih" + suffix] + params["bias_hh" + suffix]
        weight.assign(to_numpy(value))
    keras_y, keras_h, keras_c, keras_hb, keras_cb = layer(x)
    assert torch.allclose(keras_y, y, atol=1e-12), name
    assert torch.allclose(torch.stack([keras_h, keras_hb]), h_n, atol=1e-12), name
    assert torch.allclose(torch.stack([keras_c, keras_cb]), c_n, atol=1e-12), name

    grad_output = torch.randn(y.shape, generator=generator, dtype=torch.float64)
    wrt = dict(params)
    wrt["input"] = x
    gradients = torch.autograd.grad((y * grad_output).sum(), list(wrt.values()))
    grads = {key: to_numpy(g) for key, g in zip(wrt, gradients)}
    keras_weights = {w.path: to_numpy(w.value) for w in layer.weights}
    meta = dict(config, cell="lstm", dtype="f64", semantics="keras", input_size=INPUT_SIZE,
                hidden_size=hidden, description=description)
    arrays = {"x": to_numpy(x), "y": to_numpy(y), "h_n": to_numpy(h_n), "c_n": to_numpy(c_n),
              "grad_output": to_numpy(grad_output)}
    write_case(root, name, meta, arrays, {k: to_numpy(v) for k, v in params.items()}, grads, keras_weights)



# --- `lstm convert`: weights in the layouts of the seed documents and other frameworks ---
#
# Each case directory under `convert/` holds the source framework's weights file in its own
# layout, `x.npy` and what the source framework computed from it (`y.npy`, `h_n.npy`,
# `c_n.npy`, all f64), and `convert.json`: the arguments of `lstm convert` (the README's
# table quotes them, and `tests/convert_cli.rs` runs them) and of `lstm infer`. The cells are
# the seeds' own code (`/work/shared/seeds/`, quoted below with the changes each needs to run
# over a sequence, said where they are made).

SEED_BATCH, SEED_INPUT, SEED_HIDDEN = 3, 4, 5


def convert_case(root, name, description, files, convert, infer, x, y, h_n, c_n, expected=None):
    """One `convert/` case: the source files, the arrays, and the commands."""
    directory = root / "convert" / name
    directory.mkdir(parents=True)
    for file_name, write in files.items():
        write(directory / file_name)
    for stem, array in {"x": x, "y": y, "h_n": h_n, "c_n": c_n}.items():
        np.save(directory / f"{stem}.npy", np.ascontiguousarray(np.asarray(array, dtype=np.float64)))
    if expected is not None:
        save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, directory / "expected.safetensors")
    meta = {"description": description, "convert": convert, "infer": infer}
    (directory / "convert.json").write_text(json.dumps(meta, indent=2) + "\n")


def safetensors_writer(tensors):
    return lambda path: save_file({k: np.ascontiguousarray(to_numpy(v) if torch.is_tensor(v) else v)
                                   for k, v in tensors.items()}, path)


def npz_writer(tensors):
    return lambda path: np.savez(path, **{k: np.ascontiguousarray(v) for k, v in tensors.items()})


def seed_000_case(root):
    """Seed 000's PyTorch `CustomLSTMCell`: one `nn.Linear(input + hidden, 4·hidden)` over
    `cat([x, h])`, chunked i, f, o, g, with the forget gate's logits scaled by 1.5 (the zoo's
    `scaled_forget`). The seed defines one step; it is unrolled over a sequence here."""
    import torch.nn as nn

    class CustomLSTMCell(nn.Module):  # the seed's code, verbatim
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.input_size = input_size
            self.hidden_size = hidden_size
            self.gate_linear = nn.Linear(input_size + hidden_size, 4 * hidden_size)

        def forward(self, x, hidden):
            h_prev, c_prev = hidden
            combined = torch.cat([x, h_prev], dim=1)
            i, f, o, g = torch.chunk(self.gate_linear(combined), 4, dim=1)
            i = torch.sigmoid(i)
            f = torch.sigmoid(f * 1.5)
            o = torch.sigmoid(o)
            g = torch.tanh(g)
            c_current = f * c_prev + i * g
            h_current = o * torch.tanh(c_current)
            return h_current, (h_current, c_current)

    torch.manual_seed(100)
    cell = CustomLSTMCell(SEED_INPUT, SEED_HIDDEN).double()
    x = torch.randn(SEQ_LEN, SEED_BATCH, SEED_INPUT, dtype=torch.float64)
    h = c = torch.zeros(SEED_BATCH, SEED_HIDDEN, dtype=torch.float64)
    outputs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, (h, c) = cell(x[t], (h, c))
            outputs.append(out)
    state = cell.state_dict()
    # What the conversion must give, sliced here independently of the Rust mapping: PyTorch's
    # gate order i, f, g, o from the seed's i, f, o, g, and the [x, h] columns split.
    weight, bias = state["gate_linear.weight"], state["gate_linear.bias"]
    blocks = weight.chunk(4, dim=0)
    bias_blocks = bias.chunk(4)
    order = [0, 1, 3, 2]
    stacked = torch.cat([blocks[k] for k in order])
    expected = {
        "weight_ih_l0": to_numpy(stacked[:, :SEED_INPUT]),
        "weight_hh_l0": to_numpy(stacked[:, SEED_INPUT:]),
        "bias_ih_l0": to_numpy(torch.cat([bias_blocks[k] for k in order])),
        "bias_hh_l0": np.zeros(4 * SEED_HIDDEN),
    }
    convert_case(
        root, "seed_000_combined",
        "seed 000: PyTorch CustomLSTMCell (gate_linear over cat([x, h]), gates i, f, o, g, forget logits x1.5)",
        {"seed_000.safetensors": safetensors_writer(state)},
        ["seed_000.safetensors", "lstm.safetensors", "--from", "combined", "--weight", "gate_linear.weight",
         "--bias", "gate_linear.bias", "--columns", "x,h", "--gates", "ifog"],
        ["--cell", "scaled_forget"],
        to_numpy(x), to_numpy(torch.stack(outputs)), to_numpy(h[None]), to_numpy(c[None]),
        expected=expected,
    )


def seed_003_case(root):
    """Seed 003's `NaiveLSTM`: per-gate `w_i{g}`, `w_h{g}`, `b_i{g}`, `b_h{g}` (biases
    `(H, 1)`). Its `forward` steps once (`seq_size = 1`) and takes the state, so it is called
    once per step of the sequence, as its docstring's shapes say."""
    import math
    import torch.nn as nn
    from torch import Tensor
    from torch.nn import Parameter, init

    class NaiveLSTM(nn.Module):  # the seed's code, verbatim (bar comments)
        def __init__(self, input_size, hidden_size):
            super(NaiveLSTM, self).__init__()
            self.input_size = input_size
            self.hidden_size = hidden_size
            self.w_ii = Parameter(Tensor(hidden_size, input_size))
            self.w_hi = Parameter(Tensor(hidden_size, hidden_size))
            self.b_ii = Parameter(Tensor(hidden_size, 1))
            self.b_hi = Parameter(Tensor(hidden_size, 1))
            self.w_if = Parameter(Tensor(hidden_size, input_size))
            self.w_hf = Parameter(Tensor(hidden_size, hidden_size))
            self.b_if = Parameter(Tensor(hidden_size, 1))
            self.b_hf = Parameter(Tensor(hidden_size, 1))
            self.w_io = Parameter(Tensor(hidden_size, input_size))
            self.w_ho = Parameter(Tensor(hidden_size, hidden_size))
            self.b_io = Parameter(Tensor(hidden_size, 1))
            self.b_ho = Parameter(Tensor(hidden_size, 1))
            self.w_ig = Parameter(Tensor(hidden_size, input_size))
            self.w_hg = Parameter(Tensor(hidden_size, hidden_size))
            self.b_ig = Parameter(Tensor(hidden_size, 1))
            self.b_hg = Parameter(Tensor(hidden_size, 1))
            self.reset_weigths()

        def reset_weigths(self):
            stdv = 1.0 / math.sqrt(self.hidden_size)
            for weight in self.parameters():
                init.uniform_(weight, -stdv, stdv)

        def forward(self, inputs, state):
            if state is None:
                h_t = torch.zeros(1, self.hidden_size).t()
                c_t = torch.zeros(1, self.hidden_size).t()
            else:
                (h, c) = state
                h_t = h.squeeze(0).t()
                c_t = c.squeeze(0).t()
            hidden_seq = []
            seq_size = 1
            for t in range(seq_size):
                x = inputs[:, t, :].t()
                i = torch.sigmoid(self.w_ii @ x + self.b_ii + self.w_hi @ h_t + self.b_hi)
                f = torch.sigmoid(self.w_if @ x + self.b_if + self.w_hf @ h_t + self.b_hf)
                g = torch.tanh(self.w_ig @ x + self.b_ig + self.w_hg @ h_t + self.b_hg)
                o = torch.sigmoid(self.w_io @ x + self.b_io + self.w_ho @ h_t + self.b_ho)
                c_next = f * c_t + i * g
                h_next = o * torch.tanh(c_next)
                c_next_t = c_next.t().unsqueeze(0)
                h_next_t = h_next.t().unsqueeze(0)
                hidden_seq.append(h_next_t)
            hidden_seq = torch.cat(hidden_seq, dim=0)
            return hidden_seq, (h_next_t, c_next_t)

    torch.manual_seed(103)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    model = NaiveLSTM(SEED_INPUT, SEED_HIDDEN)
    torch.set_default_dtype(previous)
    x = torch.randn(SEED_BATCH, SEQ_LEN, SEED_INPUT, dtype=torch.float64)  # batch-first, as its forward reads it
    state = (torch.zeros(1, SEED_BATCH, SEED_HIDDEN, dtype=torch.float64),) * 2
    outputs = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            out, state = model(x[:, t:t + 1, :], state)
            outputs.append(out[0])
    convert_case(
        root, "seed_003_per_gate",
        "seed 003: PyTorch NaiveLSTM (w_i{g}, w_h{g}, b_i{g}, b_h{g} of shape (H, 1)), called once per step",
        {"seed_003.safetensors": safetensors_writer(model.state_dict())},
        ["seed_003.safetensors", "lstm.safetensors", "--from", "per-gate", "--weight", "w_i{g}",
         "--weight-h", "w_h{g}", "--bias", "b_i{g}", "--bias-h", "b_h{g}", "--gates", "ifgo"],
        ["--batch-first"],
        to_numpy(x), to_numpy(torch.stack(outputs, dim=1)), to_numpy(state[0]), to_numpy(state[1]),
    )


def seed_001_case(root):
    """Seed 001's Keras `customLSTM1`: per-gate `Wf, Wi, Wo, Wc` `(units + input, units)` over
    `cat([h, x])`, biases `(1, units)`. The seed's TensorFlow calls are Keras 3's `ops` here
    (the same functions), its loop's `h_prev = h_prev` is fixed to `h_prev = h_next` (as
    printed the recurrence never sees h), and `call` also returns every step's output and
    the final cell state."""
    keras.backend.clear_session()
    keras.config.set_floatx("float64")
    ops = keras.ops

    class customLSTM1(keras.layers.Layer):
        def __init__(self, units, name="customLSTM1", **kwargs):
            super(customLSTM1, self).__init__(name=name, **kwargs)
            self.units = units

        def build(self, input_shape):
            input_dim = input_shape[-1]
            self.Wf = self.add_weight(name="Wf", shape=(self.units + input_dim, self.units))
            self.bf = self.add_weight(name="bf", shape=(1, self.units))
            self.Wi = self.add_weight(name="Wi", shape=(self.units + input_dim, self.units))
            self.bi = self.add_weight(name="bi", shape=(1, self.units))
            self.Wo = self.add_weight(name="Wo", shape=(self.units + input_dim, self.units))
            self.bo = self.add_weight(name="bo", shape=(1, self.units))
            self.Wc = self.add_weight(name="Wc", shape=(self.units + input_dim, self.units))
            self.bc = self.add_weight(name="bc", shape=(1, self.units))
            super(customLSTM1, self).build(input_shape)

        def lstm_cell_forward(self, xt, c_prev, h_prev):
            concat_x = ops.concatenate([h_prev, xt], axis=1)
            forget_gate = ops.sigmoid(ops.matmul(concat_x, self.Wf) + self.bf)
            input_gate = ops.sigmoid(ops.matmul(concat_x, self.Wi) + self.bi)
            output_gate = ops.sigmoid(ops.matmul(concat_x, self.Wo) + self.bo)
            ctt = ops.tanh(ops.matmul(concat_x, self.Wc) + self.bc)
            c_next = forget_gate * c_prev + input_gate * ctt
            h_next = output_gate * ops.tanh(c_next)
            return h_next, c_next, h_next

        def call(self, x):
            batch_size, n_sequences = x.shape[0], x.shape[1]
            c_prev = ops.zeros(shape=(batch_size, self.units))
            h_prev = ops.zeros(shape=(batch_size, self.units))
            outputs = []
            for t in range(n_sequences):
                h_next, c_next, _ = self.lstm_cell_forward(x[:, t, :], c_prev, h_prev)
                h_prev = h_next  # the seed's `h_prev = h_prev`, fixed
                c_prev = c_next
                outputs.append(h_next)
            return ops.stack(outputs, axis=1), h_next, c_next

    keras.utils.set_random_seed(101)
    layer = customLSTM1(SEED_HIDDEN)
    layer.build((None, SEQ_LEN, SEED_INPUT))
    rng = np.random.default_rng(101)
    for weight in layer.weights:
        weight.assign(rng.uniform(-0.6, 0.6, weight.shape))
    x = rng.standard_normal((SEED_BATCH, SEQ_LEN, SEED_INPUT))
    y, h_n, c_n = layer(keras.ops.convert_to_tensor(x))
    convert_case(
        root, "seed_001_per_gate",
        "seed 001: Keras customLSTM1 (W{g} (units + input, units) over cat([h, x]), b{g} (1, units)), recurrence fixed",
        {"seed_001.npz": npz_writer({w.path: to_numpy(w.value) for w in layer.weights})},
        ["seed_001.npz", "lstm.safetensors", "--from", "per-gate", "--weight", "customLSTM1/W{g}",
         "--bias", "customLSTM1/b{g}", "--gates", "fioc", "--columns", "h,x", "--transposed"],
        ["--batch-first"],
        x, to_numpy(y), to_numpy(h_n)[None], to_numpy(c_n)[None],
    )


def tf1_case(root):
    """TensorFlow 1's fused `LSTMCell`/`BasicLSTMCell` kernel `(input + hidden, 4·hidden)`
    over `concat([inputs, h])`, gates i, j, f, o, saved under its checkpoint names
    (`rnn/lstm_cell/kernel`, `rnn/lstm_cell/bias`). TensorFlow is not installed here, so the
    step is TF1's `BasicLSTMCell.call` transcribed to numpy, with `forget_bias=0.0`: TF1 adds
    that constant (default 1.0) at run time and keeps it out of the checkpoint."""
    rng = np.random.default_rng(104)
    kernel = rng.uniform(-0.6, 0.6, (SEED_INPUT + SEED_HIDDEN, 4 * SEED_HIDDEN))
    bias = rng.uniform(-0.6, 0.6, 4 * SEED_HIDDEN)
    forget_bias = 0.0
    x = rng.standard_normal((SEQ_LEN, SEED_BATCH, SEED_INPUT))
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
    c = h = np.zeros((SEED_BATCH, SEED_HIDDEN))
    outputs = []
    for t in range(SEQ_LEN):
        gate_inputs = np.concatenate([x[t], h], axis=1) @ kernel + bias
        i, j, f, o = np.split(gate_inputs, 4, axis=1)
        c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
        outputs.append(h)
    convert_case(
        root, "tf1_combined",
        "TensorFlow 1 LSTMCell: kernel (input + hidden, 4 hidden) over [x, h], gates i, j, f, o; forget_bias=0",
        {"tf1.npz": npz_writer({"rnn/lstm_cell/kernel": kernel, "rnn/lstm_cell/bias": bias})},
        ["tf1.npz", "lstm.safetensors", "--from", "combined", "--weight", "rnn/lstm_cell/kernel",
         "--bias", "rnn/lstm_cell/bias", "--columns", "x,h", "--gates", "ijfo", "--transposed"],
        [],
        x, np.stack(outputs), h[None], c[None],
    )


def flax_case(root):
    """Flax's `OptimizedLSTMCell`, stepped over a sequence, its parameters flattened with `/`
    (`flax.traverse_util.flatten_dict(params, sep="/")`) into an `.npz`."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import flax.linen as nn
    import jax.numpy as jnp
    from flax.traverse_util import flatten_dict

    cell = nn.OptimizedLSTMCell(features=SEED_HIDDEN, param_dtype=jnp.float64, dtype=jnp.float64)
    rng = np.random.default_rng(105)
    x = rng.standard_normal((SEQ_LEN, SEED_BATCH, SEED_INPUT))
    carry = cell.initialize_carry(jax.random.PRNGKey(105), (SEED_BATCH, SEED_INPUT))
    params = cell.init(jax.random.PRNGKey(106), carry, jnp.asarray(x[0]))
    # Flax initialises biases to zeros: give them values, so the test sees where they go.
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.uniform(-0.6, 0.6, p.shape)), params)
    outputs = []
    for t in range(SEQ_LEN):
        carry, out = cell.apply(params, carry, jnp.asarray(x[t]))
        outputs.append(np.asarray(out))
    c, h = carry
    flat = {key: np.asarray(value) for key, value in flatten_dict(params, sep="/").items()}
    convert_case(
        root, "flax_optimized_lstm_cell",
        "Flax OptimizedLSTMCell: ii, if, ig, io kernels, hi, hf, hg, ho kernels and biases, (in, out)",
        {"flax.npz": npz_writer(flat)},
        ["flax.npz", "lstm.safetensors", "--from", "flax"],
        [],
        x, np.stack(outputs), np.asarray(h)[None], np.asarray(c)[None],
    )


def pytorch_cell_case(root):
    """`nn.LSTMCell` inside a model (a `BatchNorm1d` beside it brings `num_batches_tracked`):
    `--prefix` picks the cell's keys out of the whole `state_dict`."""
    import torch.nn as nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTMCell(SEED_INPUT, SEED_HIDDEN)
            self.norm = nn.BatchNorm1d(SEED_HIDDEN)

    torch.manual_seed(107)
    model = Model().double()
    x = torch.randn(SEQ_LEN, SEED_BATCH, SEED_INPUT, dtype=torch.float64)
    h = c = torch.zeros(SEED_BATCH, SEED_HIDDEN, dtype=torch.float64)
    outputs = []
    with torch.no_grad():
        for t in range(SEQ_LEN):
            h, c = model.encoder(x[t], (h, c))
            outputs.append(h)
    convert_case(
        root, "pytorch_lstm_cell_prefix",
        "nn.LSTMCell as `encoder` of a model with a BatchNorm1d (num_batches_tracked), unrolled",
        {"model.safetensors": safetensors_writer(model.state_dict())},
        ["model.safetensors", "lstm.safetensors", "--from", "pytorch", "--prefix", "encoder"],
        [],
        to_numpy(x), to_numpy(torch.stack(outputs)), to_numpy(h[None]), to_numpy(c[None]),
    )


def keras_file_models(build):
    """The model `build(floatx)` makes, in float32 with random weights (what a user saves),
    and its float64 twin holding the same values: Keras' own f64 run of the saved file."""
    keras.backend.clear_session()
    keras.config.set_floatx("float32")
    model = build()
    rng = np.random.default_rng(108)
    for weight in model.weights:
        weight.assign(rng.uniform(-0.6, 0.6, weight.shape).astype(np.float32))
    keras.backend.clear_session()
    keras.config.set_floatx("float64")
    twin = build()
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    keras.config.set_floatx("float32")
    return model, twin


def keras_paths_writer(model):
    """The same weights under their Keras 3 paths in an `.npz` (`{w.path: w.numpy()}`), what
    `tests/keras_files.rs` checks the HDF5 reading against, value for value."""
    return npz_writer({w.path: to_numpy(w.value) for w in model.weights})


def keras_archive_case(root):
    """Keras 3's `.keras` file (`model.save`) of a functional model around one `LSTM` that
    returns its sequence and final states; weights stored as Keras keeps them, f32, in
    `model.weights.h5` inside the zip (`layers/lstm/cell/vars/0`, …)."""
    def build():
        inputs = keras.Input((SEQ_LEN, SEED_INPUT))
        y, h, c = keras.layers.LSTM(SEED_HIDDEN, return_sequences=True, return_state=True)(inputs)
        return keras.Model(inputs, [y, h, c])

    model, twin = keras_file_models(build)
    x = np.random.default_rng(109).standard_normal((SEED_BATCH, SEQ_LEN, SEED_INPUT))
    y, h_n, c_n = (to_numpy(out) for out in twin(keras.ops.convert_to_tensor(x)))
    convert_case(
        root, "keras_lstm_archive",
        "Keras 3 .keras file (model.save) of an LSTM, f32 weights in model.weights.h5; Keras' f64 run",
        {"model.keras": model.save, "keras_paths.npz": keras_paths_writer(model)},
        ["model.keras", "lstm.safetensors", "--from", "keras"],
        ["--batch-first"],
        x, y, h_n[None], c_n[None],
    )


def keras_weights_h5_case(root):
    """Keras 3's `.weights.h5` (`model.save_weights`) of two stacked `Bidirectional(LSTM)`s:
    `layers/bidirectional{,_1}/{forward,backward}_layer/cell/vars/…`.
    Every layer's final states are outputs of the model, in PyTorch's order (layer 0
    forward, layer 0 backward, layer 1 forward, …)."""
    def build():
        inputs = keras.Input((SEQ_LEN, SEED_INPUT))
        y, *first = keras.layers.Bidirectional(
            keras.layers.LSTM(SEED_HIDDEN, return_sequences=True, return_state=True))(inputs)
        y, *second = keras.layers.Bidirectional(
            keras.layers.LSTM(SEED_HIDDEN, return_sequences=True, return_state=True))(y)
        # Bidirectional returns [y, h_fw, c_fw, h_bw, c_bw].
        hs = [first[0], first[2], second[0], second[2]]
        cs = [first[1], first[3], second[1], second[3]]
        return keras.Model(inputs, [y, *hs, *cs])

    model, twin = keras_file_models(build)
    x = np.random.default_rng(110).standard_normal((SEED_BATCH, SEQ_LEN, SEED_INPUT))
    outputs = [to_numpy(out) for out in twin(keras.ops.convert_to_tensor(x))]
    y, hs, cs = outputs[0], outputs[1:5], outputs[5:9]
    convert_case(
        root, "keras_bidirectional_weights_h5",
        "Keras 3 .weights.h5 (model.save_weights) of two stacked Bidirectional(LSTM), f32; Keras' f64 run",
        {"model.weights.h5": model.save_weights, "keras_paths.npz": keras_paths_writer(model)},
        ["model.weights.h5", "lstm.safetensors", "--from", "keras"],
        ["--batch-first"],
        x, y, np.stack(hs), np.stack(cs),
    )


def keras_dense_head_case(root):
    """Keras 3's `.keras` file of the usual Keras model: an `LSTM` under a `Dense` head.
    `--ignore-layer dense` leaves the head out; the LSTM's own sequence and final states are
    what `lstm infer` must give."""
    def build():
        inputs = keras.Input((SEQ_LEN, SEED_INPUT))
        y, h, c = keras.layers.LSTM(SEED_HIDDEN, return_sequences=True, return_state=True)(inputs)
        return keras.Model(inputs, [keras.layers.Dense(2)(y), y, h, c])

    model, twin = keras_file_models(build)
    x = np.random.default_rng(111).standard_normal((SEED_BATCH, SEQ_LEN, SEED_INPUT))
    _, y, h_n, c_n = (to_numpy(out) for out in twin(keras.ops.convert_to_tensor(x)))
    convert_case(
        root, "keras_dense_head",
        "Keras 3 .keras file of an LSTM under a Dense head, the head left out; Keras' f64 run",
        {"model.keras": model.save},
        ["model.keras", "lstm.safetensors", "--from", "keras", "--ignore-layer", "dense"],
        ["--batch-first"],
        x, y, h_n[None], c_n[None],
    )


def keras_legacy_h5_case(root):
    """Keras' legacy HDF5 file, the format Keras 2 saved whole models in (`model.save("m.h5")`:
    `model_weights/{layer}/{layer}/lstm_cell/kernel`), of two stacked `LSTM`s under a `Dense`
    head the model calls `head`."""
    def build():
        inputs = keras.Input((SEQ_LEN, SEED_INPUT))
        y, h1, c1 = keras.layers.LSTM(SEED_HIDDEN, return_sequences=True, return_state=True,
                                      name="lstm")(inputs)
        y, h2, c2 = keras.layers.LSTM(SEED_HIDDEN, return_sequences=True, return_state=True,
                                      name="lstm_1")(y)
        head = keras.layers.Dense(2, name="head")(y)
        return keras.Model(inputs, [head, y, h1, h2, c1, c2])

    model, twin = keras_file_models(build)
    x = np.random.default_rng(112).standard_normal((SEED_BATCH, SEQ_LEN, SEED_INPUT))
    _, y, h1, h2, c1, c2 = (to_numpy(out) for out in twin(keras.ops.convert_to_tensor(x)))
    convert_case(
        root, "keras_legacy_h5",
        "Keras legacy .h5 (Keras 2's format) of two stacked LSTMs under a Dense head `head`, "
        "the head left out; Keras' f64 run",
        {"model.h5": model.save},
        ["model.h5", "lstm.safetensors", "--from", "keras", "--ignore-layer", "head"],
        ["--batch-first"],
        x, y, np.stack([h1, h2]), np.stack([c1, c2]),
    )


def convert_cases(root):
    seed_000_case(root)
    seed_003_case(root)
    seed_001_case(root)
    tf1_case(root)
    flax_case(root)
    pytorch_cell_case(root)
    keras_archive_case(root)
    keras_weights_h5_case(root)
    keras_dense_head_case(root)
    keras_legacy_h5_case(root)

# Masks with holes: a row with a gap in the middle, a row masked at the end, a full row.
MASK = [
    [True, False, True, True, False],
    [True, True, True, False, False],
    [True, True, True, True, True],
]


# The spec language's functions as PyTorch computes them, each with its derivative by
# autograd: name -> (points, function). Points include each function's kinks and thresholds
# (0 for abs and elu, 20 for softplus, p = 0 for pow) so the Rust side checks PyTorch's
# conventions there, where finite differences cannot.
GRID = [-25.0, -7.5, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 7.5, 19.5, 20.0, 20.5, 25.0]
POSITIVE = [0.0, 1e-3, 0.25, 0.5, 1.0, 2.0, 7.5, 25.0]
FUNCTIONS = {
    "log": (POSITIVE, torch.log),
    "logsigmoid": (GRID, torch.nn.functional.logsigmoid),
    "softplus": (GRID, torch.nn.functional.softplus),
    "silu": (GRID, torch.nn.functional.silu),
    "gelu": (GRID, torch.nn.functional.gelu),
    "elu": (GRID, torch.nn.functional.elu),
    "elu_alpha": (GRID, lambda x: torch.nn.functional.elu(x, alpha=0.7)),
    "abs": (GRID, torch.abs),
    "sqrt": (POSITIVE, torch.sqrt),
    "pow_2": (GRID, lambda x: torch.pow(x, 2)),
    "pow_3": (GRID, lambda x: torch.pow(x, 3)),
    "pow_minus_2": (GRID, lambda x: torch.pow(x, -2)),
    "pow_half": (POSITIVE, lambda x: torch.pow(x, 0.5)),
    "pow_1_5": (GRID, lambda x: torch.pow(x, 1.5)),
    "pow_0": (GRID, lambda x: torch.pow(x, 0)),
    "stop_gradient": (GRID, lambda x: x.detach() * x),
}


def functions_case(root):
    """`functions/values.safetensors`: for each function, `{name}.x`, `{name}.y` (the value)
    and `{name}.grad` (dy/dx by autograd), in float64. `stop_gradient` is `detach(x) * x`,
    whose gradient is `x` (not `2x`): the detached factor gets none."""
    arrays = {}
    for name, (points, function) in FUNCTIONS.items():
        x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
        y = function(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        arrays[f"{name}.x"] = to_numpy(x)
        arrays[f"{name}.y"] = to_numpy(y)
        arrays[f"{name}.grad"] = to_numpy(grad)
    directory = root / "functions"
    directory.mkdir(parents=True, exist_ok=True)
    save_file(arrays, directory / "values.safetensors")


def main():
    args = sys.argv[1:]
    # `--only GROUP` rewrites that group alone, leaving every other fixture as it is:
    # regenerating the parity cases on another machine changes their last bits (BLAS), which
    # is churn, not news. `--convert` is `--only convert`.
    only = None
    if "--only" in args:
        at = args.index("--only")
        only = args[at + 1]
        del args[at:at + 2]
    if "--convert" in args:
        args.remove("--convert")
        only = "convert"
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    torch.set_num_threads(1)
    if only == "functions":
        functions_case(root)
        return
    if only == "research":
        for stale in [*root.glob("cell_gru*"), *root.glob("cell_janet*")]:
            shutil.rmtree(stale)
        research_cases(root)
        return
    if only == "convert":
        if (root / "convert").exists():
            shutil.rmtree(root / "convert")
        convert_cases(root)
        return
    if only == "headed":
        for stale in HEADED_CASES:
            if (root / stale).exists():
                shutil.rmtree(root / stale)
        headed_cases(root)
        return
    if only is not None:
        sys.exit(f"unknown group {only}; expected functions, research, headed or convert")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    functions_case(root)

    # PyTorch semantics: nn.LSTM and the reference loop.
    pytorch_case(root, "pytorch_lstm", "lstm", 1, description="nn.LSTM, one layer")
    pytorch_case(root, "pytorch_lstm_f32", "lstm", 2, dtype="f32", description="nn.LSTM in float32")
    pytorch_case(root, "pytorch_stacked", "lstm", 3, num_layers=2, description="two stacked layers")
    pytorch_case(root, "pytorch_bidirectional", "lstm", 4, bidirectional=True, description="bidirectional")
    pytorch_case(root, "pytorch_lengths", "lstm", 5, lengths=[5, 2, 3], description="padded lengths")
    pytorch_case(root, "pytorch_batch_first", "lstm", 6, batch_first=True, description="batch_first=True")
    pytorch_case(root, "pytorch_proj", "lstm", 7, proj_size=3, num_layers=2, bidirectional=True,
                 initial_state=True, description="proj_size=3, two bidirectional layers, initial states")
    pytorch_case(root, "pytorch_no_bias", "lstm", 8, bias=False, num_layers=2, description="bias=False")
    pytorch_case(root, "pytorch_initial_state", "lstm", 9, num_layers=2, initial_state=True,
                 description="h0 and c0 for two layers")
    pytorch_case(root, "pytorch_stacked_bidirectional_lengths", "lstm", 10, num_layers=2,
                 bidirectional=True, lengths=[3, 5, 1], batch_first=True, initial_state=True,
                 description="two bidirectional layers, lengths, batch_first, initial states")
    pytorch_case(root, "pytorch_bidirectional_lengths_f32", "lstm", 11, dtype="f32", bidirectional=True,
                 lengths=[2, 5, 4], description="bidirectional with lengths in float32")

    # Custom cells: the reference loop.
    for seed, cell in enumerate(["forget_bias", "scaled_forget", "peephole", "cifg", "hard_sigmoid"], 20):
        pytorch_case(root, f"cell_{cell}", cell, seed, description=f"zoo cell {cell}, one layer")
    pytorch_case(root, "cell_peephole_stacked_bidirectional", "peephole", 30, num_layers=2,
                 bidirectional=True, lengths=[4, 5, 2], initial_state=True,
                 description="peephole: two bidirectional layers, lengths, initial states")
    pytorch_case(root, "cell_cifg_bidirectional", "cifg", 31, bidirectional=True, num_layers=2,
                 description="cifg (3 gate blocks): two bidirectional layers")
    pytorch_case(root, "cell_forget_bias_f32", "forget_bias", 32, dtype="f32", lengths=[5, 1, 3],
                 description="forget_bias in float32 with lengths")
    pytorch_case(root, "cell_layer_norm", "layer_norm", 33, description="haste LayerNormLSTM, one layer")
    pytorch_case(root, "cell_layer_norm_bidirectional", "layer_norm", 34, bidirectional=True,
                 lengths=[5, 3, 4], description="haste LayerNormLSTM, bidirectional with lengths")
    research_cases(root)
    headed_cases(root)

    # Keras semantics: Keras 3 itself.
    keras_case(root, "keras_lstm", 40, description="LSTM(return_sequences=True, return_state=True)")
    keras_case(root, "keras_mask", 41, mask=MASK, description="mask with holes")
    keras_case(root, "keras_mask_zero_output", 42, mask=MASK, zero_output_for_mask=True,
               description="mask with holes, zero_output_for_mask=True")
    keras_case(root, "keras_go_backwards", 43, go_backwards=True, description="go_backwards=True")
    for seed, mode in enumerate(["concat", "sum", "ave", "mul", None], 44):
        keras_case(root, f"keras_bidirectional_{str(mode).lower()}", seed, bidirectional=True,
                   merge_mode=mode, description=f"Bidirectional(merge_mode={mode!r})")
    keras_case(root, "keras_bidirectional_mask", 49, bidirectional=True, mask=MASK, zero_output_for_mask=True,
               description="Bidirectional with a mask (Keras forces zero_output_for_mask)")
    keras_case(root, "keras_last_output", 50, return_sequences=False, description="return_sequences=False")
    keras_case(root, "keras_bidirectional_last_output", 51, bidirectional=True, return_sequences=False,
               mask=MASK, description="Bidirectional, return_sequences=False, mask")
    keras_case(root, "keras_unit_forget_bias", 52, randomize_bias=False,
               description="unit_forget_bias=True: Keras' own bias init (ones on f)")
    keras_case(root, "keras_hard_sigmoid", 53, recurrent_activation="hard_sigmoid",
               description="recurrent_activation='hard_sigmoid' (relu6(x + 3) / 6)")
    keras_case(root, "keras_no_bias", 54, bias=False, description="use_bias=False")
    keras_case(root, "keras_stacked", 55, num_layers=2, description="two stacked LSTM layers")
    keras_case(root, "keras_initial_state", 56, bidirectional=True, initial_state=True,
               description="Bidirectional with initial_state")
    keras_case(root, "keras_mask_f32", 57, dtype="f32", mask=MASK, description="mask with holes, float32")
    keras_from_pytorch_case(root, "keras_from_pytorch", 58,
                            description="nn.LSTM weights converted to Keras by hand; Keras agrees")

    # `lstm convert`: the seeds' cells and other frameworks' layouts.
    convert_cases(root)


if __name__ == "__main__":
    main()
